//! Watches outside the trees for symlinked files: an edit of a link's target raises events
//! only in the target's directory (Debian's `sites-enabled/default ->
//! ../sites-available/default`), so each complete walk reports where such links lead and the
//! watcher watches those directories, for those names only, re-pointed as the links change.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Watch, Watcher, MASK};
use crate::log::Logger;

impl Watcher {
    /// Watches the directory of each symlinked file's target (`(dir, name)`, as the last
    /// complete walk found them), for those names; drops the watches no link leads to now.
    pub fn watch_link_targets(&mut self, targets: &[(PathBuf, OsString)], log: &Logger) {
        let mut wanted: HashMap<&Path, Vec<OsString>> = HashMap::new();
        for (dir, name) in targets {
            let names = wanted.entry(dir.as_path()).or_default();
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let old: Vec<i32> = self.link_targets.drain().map(|(id, _)| id).collect();
        for (dir, names) in wanted {
            match self.inotify.watches().add(dir, MASK) {
                Ok(wd) => {
                    let id = wd.get_watch_descriptor_id();
                    self.watches.entry(id).or_insert_with(|| Watch {
                        wd,
                        path: Box::from(dir),
                        ino: (0, 0),
                        seen: 0,
                    });
                    self.link_targets.insert(id, names);
                }
                Err(e) => log.debug(
                    "cannot watch the directory of a symlink target",
                    &[("dir", dir.into()), ("error", e.to_string().into())],
                ),
            }
        }
        for id in old {
            let idle = self.watches.get(&id).is_some_and(|w| w.seen == 0);
            if idle && !self.link_targets.contains_key(&id) && !self.triggers.contains_key(&id) {
                self.remove(id);
            }
        }
    }
}
