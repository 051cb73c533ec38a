//! What to watch besides the content, so that a configured directory is followed by its path:
//! the nearest existing ancestor of a directory that is missing (to see it come back), and the
//! directory holding each symlink on a configured path (to see it re-pointed). A watch on the
//! content itself sits on inodes, which never hear of either.
//!
//! Planning is pure, over the filesystem as it is now ([`plan`]); [`Watcher::replan`] applies
//! the plan to the watches.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::{Watch, Watcher, MASK};
use crate::log::Logger;

/// What to watch for one configured directory, besides its content.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Whether the directory exists now (through any symlinks).
    pub present: bool,
    /// `(dir, name)`: an event about `name` in `dir` means the path may lead elsewhere now.
    pub triggers: Vec<(PathBuf, OsString)>,
}

/// Plans `root`: a trigger on each symlink of its path (the root itself included), and while
/// it is missing, on the next component below its nearest existing ancestor.
pub fn plan(root: &Path) -> Plan {
    let mut triggers = Vec::new();
    let mut path = PathBuf::new();
    for component in root.components() {
        path.push(component);
        let Component::Normal(name) = component else {
            continue;
        };
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            triggers.push((holder(&path), name.to_os_string()));
        }
    }
    let present = root.metadata().is_ok_and(|m| m.is_dir());
    if !present {
        if let Some((dir, name)) = nearest_existing(root) {
            triggers.push((dir, name));
        }
    }
    Plan { present, triggers }
}

/// The deepest ancestor of `root` that is a directory now, and the name below it on the way.
fn nearest_existing(root: &Path) -> Option<(PathBuf, OsString)> {
    let mut child = root;
    while let Some(parent) = child.parent() {
        let dir = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if dir.metadata().is_ok_and(|m| m.is_dir()) {
            return Some((dir.to_path_buf(), child.file_name()?.to_os_string()));
        }
        child = parent;
    }
    None
}

/// The directory holding `path`, as inotify must be given it: a bare relative name like `conf`
/// is held by `.`, not by the empty path `Path::parent` returns.
fn holder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Watcher {
    /// Re-plans the watches that follow each configured path (see `rearm`). True if a
    /// configured directory that was missing is back.
    pub(super) fn replan(&mut self, log: &Logger) -> bool {
        let mut wanted: HashMap<PathBuf, Vec<OsString>> = HashMap::new();
        let mut back = false;
        for (root, missing) in self.roots.iter().zip(self.missing.iter_mut()) {
            let plan = plan(root);
            if !plan.present && !*missing {
                log.warn(
                    "watched directory is gone; waiting for it to come back",
                    &[("dir", root.as_path().into())],
                );
            }
            back |= plan.present && *missing;
            *missing = !plan.present;
            for (dir, name) in plan.triggers {
                wanted.entry(dir).or_default().push(name);
            }
        }
        // Every trigger watch is planned afresh: those no longer needed go, unless content.
        let ids: Vec<i32> = self.triggers.drain().map(|(id, _)| id).collect();
        for id in ids {
            if self.watches.get(&id).is_some_and(|w| w.seen == 0) {
                self.remove(id);
            }
        }
        for (dir, names) in wanted {
            match self.inotify.watches().add(&dir, MASK) {
                Ok(wd) => {
                    let id = wd.get_watch_descriptor_id();
                    self.watches.entry(id).or_insert_with(|| Watch {
                        wd,
                        path: Box::from(dir.as_path()),
                        ino: (0, 0),
                        seen: 0,
                    });
                    self.triggers.insert(id, names);
                }
                Err(e) => log.warn(
                    "cannot watch directory",
                    &[
                        ("dir", dir.as_path().into()),
                        ("error", e.to_string().into()),
                    ],
                ),
            }
        }
        back
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rearm-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn a_missing_directory_is_awaited_in_its_nearest_existing_ancestor() {
        let t = tmp("missing");
        let p = plan(&t.join("a/b/c"));
        assert!(!p.present);
        assert_eq!(p.triggers, vec![(t.clone(), "a".into())]);
        fs::create_dir_all(t.join("a/b/c")).unwrap();
        assert_eq!(
            plan(&t.join("a/b/c")),
            Plan {
                present: true,
                triggers: vec![]
            }
        );
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn each_symlink_on_the_path_is_watched_in_its_holder() {
        let t = tmp("links");
        fs::create_dir_all(t.join("real/v1")).unwrap();
        symlink(t.join("real"), t.join("cur")).unwrap();
        symlink("v1", t.join("real/conf")).unwrap();
        let p = plan(&t.join("cur/conf"));
        assert!(p.present);
        assert_eq!(
            p.triggers,
            vec![(t.clone(), "cur".into()), (t.join("cur"), "conf".into())]
        );
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_bare_relative_name_is_held_by_dot() {
        assert_eq!(holder(Path::new("conf")), PathBuf::from("."));
        assert_eq!(holder(Path::new("a/conf")), PathBuf::from("a"));
        assert_eq!(holder(Path::new("/etc/conf")), PathBuf::from("/etc"));
    }
}
