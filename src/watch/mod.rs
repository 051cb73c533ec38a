//! Watching: one inotify instance, a watch on every directory of each configured tree, kept by
//! watch descriptor.
//!
//! The kubelet never edits a ConfigMap file in place: it writes a new `..<timestamp>` directory
//! and renames a `..data_tmp` symlink over `..data` (the commit point). So we watch
//! directories, never files (a watch on a file stays on the old inode and dies), never the `..`
//! internals, and `IN_MOVED_TO ..data` says "new content is complete".
//!
//! Each event only answers "might the content have changed?" (the kernel merges an event
//! identical to the last unread one, so events are never counted); the fingerprint decides.
//! Which directories are watched is not decided here: each fingerprint walk calls
//! [`Watcher::ensure`] for every directory it lists, and [`Watcher::sweep`] drops the rest.
//! A watch is forgotten by its descriptor, never by its path: the `IN_IGNORED` of a directory
//! replaced at the same path arrives after the new one is already watched there. Directories
//! are known by (`st_dev`, `st_ino`): a filesystem mounted on one is another directory. The
//! directories holding the targets of symlinked files outside the trees are watched too, for
//! those names only (`links`). sed's temp files not renamed yet are `sed`'s bookkeeping,
//! told of each content event; the watcher only forwards its hold.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::fingerprint::{self, Hooks, Sink};
use crate::log::Logger;

mod events;
mod links;
mod rearm;
mod sed;

pub use events::Change;
use sed::SedTemps;

/// What we ask the kernel for. `IN_MODIFY` because `truncate(2)` and a writer that never
/// closes raise nothing else. No `IN_ATTRIB` (chmod, touch, fsGroup passes change nothing the
/// app reads), no `IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE` (our own fingerprint reads would wake us).
const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::EXCL_UNLINK);

/// One kernel watch. Kept small: a tree of 10,000 directories holds 10,000 of them.
struct Watch {
    wd: WatchDescriptor,
    /// The path it was last added for (for logs and the subtree of a rename); boxed, exactly
    /// as long as it is.
    path: Box<Path>,
    /// The directory it sits on: (`st_dev`, `st_ino`).
    ino: (u64, u64),
    /// The last walk that saw it as a directory of a configured tree; 0: not content (only
    /// a trigger watch of `rearm`).
    seen: u32,
}

/// Directories a walk could not watch, by reason, for one summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unwatched {
    /// `ENOSPC`: the per-UID watch limit.
    pub limit: usize,
    /// Any other error: how many, and the first one's text.
    pub other: usize,
    /// The first other error.
    pub reason: Option<String>,
}

/// The inotify instance and its watches.
pub struct Watcher {
    inotify: Inotify,
    watches: HashMap<i32, Watch>,
    /// Content watches by the inode they sit on: the walk finds a directory's watch here
    /// and checks its path, without a second copy of every path.
    by_ino: HashMap<(u64, u64), i32>,
    /// Names whose events mean a configured path may lead elsewhere now (see `rearm`), by
    /// the watch of the directory that holds them.
    triggers: HashMap<i32, Vec<OsString>>,
    /// Names whose events mean a symlinked file's target may have changed, by the watch of
    /// the directory outside the trees that holds them.
    link_targets: HashMap<i32, Vec<OsString>>,
    roots: Vec<PathBuf>,
    /// Which configured directories were missing at the last plan.
    missing: Vec<bool>,
    /// The current walk (from 1).
    gen: u32,
    unwatched: Unwatched,
    /// `st_dev` of the kernel interfaces mounted.
    kernel: Vec<u64>,
    /// sed's temp files not yet renamed away, told of every content event (`sed`).
    sed: SedTemps,
    buf: Vec<u8>,
    /// Events read, and read errors plus queue overflows, for the metrics.
    pub events: u64,
    pub errors: u64,
}

impl Watcher {
    /// Creates the inotify instance and plans the watches of each configured directory's path.
    /// The content itself is watched by the first walk. Fails only if inotify is unavailable.
    pub fn new(roots: &[PathBuf], log: &Logger) -> Result<Watcher, String> {
        let inotify = Inotify::init().map_err(|e| match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) if crate::limits::out_of_fds() => format!(
                "cannot create an inotify instance: {}",
                crate::limits::emfile_hint(&e)
            ),
            Some(libc::EMFILE) => {
                let (name, now) = crate::limits::inotify("instances");
                format!("cannot create an inotify instance: too many instances for this user (EMFILE); raise {name} (now {now}), shared by every container of this UID on the node")
            }
            _ => format!("cannot create an inotify instance: {e}"),
        })?;
        let mut w = Watcher {
            inotify,
            watches: HashMap::new(),
            by_ino: HashMap::new(),
            triggers: HashMap::new(),
            link_targets: HashMap::new(),
            roots: roots.to_vec(),
            missing: vec![false; roots.len()],
            gen: 0,
            unwatched: Unwatched::default(),
            kernel: Vec::new(),
            sed: SedTemps::default(),
            // Room for many events per read; one event needs at most 16 + NAME_MAX + 1 bytes.
            buf: vec![0; 16 * 1024],
            events: 0,
            errors: 0,
        };
        w.replan(log);
        Ok(w)
    }

    /// The inotify fd, for ppoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Number of directories watched as content.
    pub fn count(&self) -> usize {
        self.watches.values().filter(|w| w.seen != 0).count()
    }

    /// Starts a walk: the directories it ensures are the content from now on.
    pub fn begin_walk(&mut self) {
        self.gen = self.gen.wrapping_add(1).max(1);
        self.unwatched = Unwatched::default();
    }

    /// Makes sure `dir` (identity `ino`: `st_dev`, `st_ino`) is watched as content. Called by
    /// the walk before it lists `dir`, so anything that changes after the listing raises an
    /// event.
    pub fn ensure(&mut self, dir: &Path, ino: (u64, u64)) {
        let known = self
            .by_ino
            .get(&ino)
            .and_then(|id| self.watches.get_mut(id));
        if let Some(w) = known.filter(|w| *w.path == *dir) {
            w.seen = self.gen;
            return;
        }
        // New, replaced (another inode at this path), or reached by another path: the kernel
        // returns the existing descriptor for an inode it already watches.
        match self.inotify.watches().add(dir, MASK) {
            Ok(wd) => {
                let id = wd.get_watch_descriptor_id();
                let w = self.watches.entry(id).or_insert_with(|| Watch {
                    wd,
                    path: Box::from(dir),
                    ino,
                    seen: 0,
                });
                if *w.path != *dir {
                    w.path = Box::from(dir);
                }
                w.ino = ino;
                w.seen = self.gen;
                self.by_ino.insert(ino, id);
            }
            // Gone or replaced by a file since it was listed: its parent's event follows.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => self.unwatched.limit += 1,
            Err(e) => {
                self.unwatched.other += 1;
                self.unwatched
                    .reason
                    .get_or_insert_with(|| format!("{}: {e}", dir.display()));
            }
        }
    }

    /// Ends a complete walk: content watches it did not see (directories moved out of the tree
    /// or replaced) are removed. Returns what could not be watched.
    pub fn sweep(&mut self) -> Unwatched {
        let gen = self.gen;
        let stale: Vec<i32> = self
            .watches
            .iter()
            .filter(|(_, w)| w.seen != 0 && w.seen != gen)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.unmark(id);
        }
        std::mem::take(&mut self.unwatched)
    }

    /// Drops `id` as content; removes the kernel watch unless it still holds triggers.
    fn unmark(&mut self, id: i32) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        w.seen = 0;
        if !self.triggers.contains_key(&id) && !self.link_targets.contains_key(&id) {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: i32) {
        if let Some(w) = self.watches.remove(&id) {
            if self.by_ino.get(&w.ino) == Some(&id) {
                self.by_ino.remove(&w.ino);
            }
            self.triggers.remove(&id);
            self.link_targets.remove(&id);
            // Fails with EINVAL when the kernel already dropped it (IN_IGNORED): expected.
            let _ = self.inotify.watches().remove(w.wd);
        }
    }

    /// How long sed-shaped temp files created lately hold the settle: until the latest one
    /// is renamed away or `max_delay` after it appeared, whichever comes first; `None` if none.
    pub fn sed_hold(&mut self, now: Instant, max_delay: Duration) -> Option<Instant> {
        self.sed.hold(now, max_delay)
    }

    /// Reads every pending event; returns the first reason to suspect a change, if any.
    /// Never blocks: the fd is non-blocking and ppoll said it is readable.
    pub fn read(&mut self, now: Instant, log: &Logger) -> Option<Change> {
        let mut change = None;
        let mut replan = false;
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let events = match self.inotify.read_events(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.errors += 1;
                    log.error(
                        "reading inotify events failed",
                        &[("error", e.to_string().into())],
                    );
                    break;
                }
            };
            for event in events {
                self.events += 1;
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    self.errors += 1;
                }
                let c = self.handle(
                    event.wd.get_watch_descriptor_id(),
                    event.mask,
                    event.name,
                    now,
                    log,
                    &mut replan,
                );
                change = Change::or(change, c);
            }
        }
        self.buf = buf;
        if replan && self.replan(log) {
            change = Change::or(change, Some(Change::Rearmed));
        }
        change
    }

    fn handle(
        &mut self,
        id: i32,
        mask: EventMask,
        name: Option<&OsStr>,
        now: Instant,
        log: &Logger,
        replan: &mut bool,
    ) -> Option<Change> {
        if mask.contains(EventMask::Q_OVERFLOW) {
            let (sysctl, limit) = (
                "fs.inotify.max_queued_events",
                crate::limits::read("fs/inotify/max_queued_events"),
            );
            log.warn(
                "inotify queue overflowed; rescanning every watched directory",
                &[("sysctl", sysctl.into()), ("limit", limit.into())],
            );
            *replan = true;
            return Some(Change::Overflow);
        }
        // A descriptor we removed (or never knew) still has events queued: drop them.
        let w = self.watches.get(&id)?;
        if log.verbose() {
            let name = name
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            log.debug(
                "event",
                &[
                    ("dir", (*w.path).into()),
                    ("name", name.into()),
                    ("mask", format!("{mask:?}").into()),
                ],
            );
        }
        let content = w.seen != 0;
        let is_root = content && self.roots.iter().any(|r| **r == *w.path);
        let triggers = self.triggers.get(&id);
        let linked = self.link_targets.get(&id);
        if mask.contains(EventMask::IGNORED) {
            // The kernel dropped this very watch; a newer one at the same path is untouched.
            *replan |= is_root || triggers.is_some();
            let target_gone = linked.is_some();
            self.remove(id);
            return (content || target_gone).then_some(Change::DirGone);
        }
        if mask.intersects(EventMask::MOVE_SELF | EventMask::DELETE_SELF) {
            // Inside a tree, the parent's own event tells what happened; a configured directory
            // has no watched parent, so it is followed by its path again.
            if is_root {
                if mask.contains(EventMask::MOVE_SELF) {
                    self.remove(id);
                }
                *replan = true;
                return Some(Change::DirGone);
            }
            return None;
        }
        let name = name?;
        let mut change = None;
        if triggers.is_some_and(|t| t.iter().any(|t| t == name)) {
            *replan = true;
            change = Some(Change::Rearmed);
        }
        if linked.is_some_and(|t| t.iter().any(|t| t == name)) {
            change = change.or(Some(Change::LinkTarget));
        }
        if !content {
            return change;
        }
        let dir = w.path.join(name);
        change.or_else(|| self.classify(id, dir, mask, name, now))
    }

    /// What an event on a content directory means; tells `sed` of it and keeps the subtrees
    /// that left in step.
    fn classify(
        &mut self,
        id: i32,
        path: PathBuf,
        mask: EventMask,
        name: &OsStr,
        now: Instant,
    ) -> Option<Change> {
        let mut change = events::classify(mask, name)?;
        let is_dir = mask.contains(EventMask::ISDIR);
        // A link (never a directory) beside `..data` is the kubelet's, after its commit.
        if !is_dir && change.may_be_link() {
            let volume = path.parent().map(|d| d.join("..data"));
            if volume.is_some_and(|v| v.symlink_metadata().is_ok()) {
                change = Change::KubeletLinked;
            }
        }
        self.sed.note(id, mask, name, now);
        if is_dir && mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
            // Stop hearing from a subtree that left; this event is ordered before any
            // re-creation at the same path, so only the old watches are under it now.
            let gone: Vec<i32> = self
                .watches
                .iter()
                .filter(|(_, w)| w.seen != 0 && w.path.starts_with(&path))
                .map(|(i, _)| *i)
                .collect();
            gone.into_iter().for_each(|i| self.unmark(i));
        }
        if change == Change::DirAdded {
            self.arm_tree(path);
        }
        Some(change)
    }

    /// Watches a directory that just appeared and every real directory below it at once, not
    /// at the next settle: a burst of writes inside it then keeps the settle open, so the app
    /// is not reloaded halfway through. The fingerprint's own walk does it (each directory
    /// watched before it is listed, the same names and bounds), reading no file.
    fn arm_tree(&mut self, top: PathBuf) {
        let kernel = std::mem::take(&mut self.kernel);
        fingerprint::take(
            &[top],
            Hooks {
                sink: Sink::Nothing,
                kernel: &kernel,
                on_dir: &mut |dir, id| self.ensure(dir, id),
                stop: &mut crate::stop::pending,
            },
        );
        self.kernel = kernel;
    }

    /// The kernel interfaces' `st_dev`, which arming a new subtree never enters.
    pub fn set_kernel(&mut self, kernel: &[u64]) {
        kernel.clone_into(&mut self.kernel);
    }
}
