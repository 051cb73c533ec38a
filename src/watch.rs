//! Watching: one inotify instance, a watch per directory of each configured tree, re-armed
//! when a directory disappears and comes back.
//!
//! Kubernetes never edits a ConfigMap file in place: it writes a new `..<timestamp>` directory
//! and renames a `..data_tmp` symlink over `..data` (the commit point), see
//! `../shared/kubelet-volume-updates.md`. So we watch directories, never files (a watch on a
//! file stays on the old inode and dies), never the `..` internals, and treat
//! `IN_MOVED_TO ..data` as the one event that says "new content is complete".
//!
//! The kernel merges an event identical to the last unread one, so events are never counted:
//! each one only answers "might the content have changed?"; the fingerprint in `settle` decides.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ffi::c_int;
use core::fmt;
use core::ops::BitOr;

use crate::log::{Logger, Value};
use crate::sys::{self, Errno, Fd};

/// What we ask the kernel for. No IN_ATTRIB (chmod/touch/fsGroup passes change nothing the app
/// reads), no IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE (our own fingerprint reads would wake us).
const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_EXCL_UNLINK;

/// The `mask` of an inotify event (inotify(7)).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventMask(pub u32);

/// Flag names in the order `Debug` prints them (that of the `inotify` crate we used before, so
/// verbose log lines did not change).
const MASK_NAMES: [(u32, &str); 16] = [
    (libc::IN_ACCESS, "ACCESS"),
    (libc::IN_ATTRIB, "ATTRIB"),
    (libc::IN_CLOSE_WRITE, "CLOSE_WRITE"),
    (libc::IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"),
    (libc::IN_CREATE, "CREATE"),
    (libc::IN_DELETE, "DELETE"),
    (libc::IN_DELETE_SELF, "DELETE_SELF"),
    (libc::IN_MODIFY, "MODIFY"),
    (libc::IN_MOVE_SELF, "MOVE_SELF"),
    (libc::IN_MOVED_FROM, "MOVED_FROM"),
    (libc::IN_MOVED_TO, "MOVED_TO"),
    (libc::IN_OPEN, "OPEN"),
    (libc::IN_IGNORED, "IGNORED"),
    (libc::IN_ISDIR, "ISDIR"),
    (libc::IN_Q_OVERFLOW, "Q_OVERFLOW"),
    (libc::IN_UNMOUNT, "UNMOUNT"),
];

impl EventMask {
    /// A file was written and closed.
    pub const CLOSE_WRITE: EventMask = EventMask(libc::IN_CLOSE_WRITE);
    /// An entry was created.
    pub const CREATE: EventMask = EventMask(libc::IN_CREATE);
    /// An entry was deleted.
    pub const DELETE: EventMask = EventMask(libc::IN_DELETE);
    /// The watched directory itself was moved.
    pub const MOVE_SELF: EventMask = EventMask(libc::IN_MOVE_SELF);
    /// An entry was renamed away.
    pub const MOVED_FROM: EventMask = EventMask(libc::IN_MOVED_FROM);
    /// An entry was renamed here.
    pub const MOVED_TO: EventMask = EventMask(libc::IN_MOVED_TO);
    /// The watch is gone (removed, directory deleted, unmounted).
    pub const IGNORED: EventMask = EventMask(libc::IN_IGNORED);
    /// The entry is a directory.
    pub const ISDIR: EventMask = EventMask(libc::IN_ISDIR);
    /// The kernel's queue overflowed; events were lost.
    pub const Q_OVERFLOW: EventMask = EventMask(libc::IN_Q_OVERFLOW);
}

impl EventMask {
    /// Every bit of `other` is set.
    pub fn contains(self, other: EventMask) -> bool {
        self.0 & other.0 == other.0
    }
    /// Some bit of `other` is set.
    pub fn intersects(self, other: EventMask) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for EventMask {
    type Output = EventMask;
    fn bitor(self, other: EventMask) -> EventMask {
        EventMask(self.0 | other.0)
    }
}

/// `EventMask(CREATE | ISDIR)`, unknown bits in hex, as the `bitflags` crate printed it.
impl fmt::Debug for EventMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventMask(")?;
        let mut rest = self.0;
        let mut first = true;
        for (bit, name) in MASK_NAMES {
            if rest & bit != 0 {
                f.write_str(if first { "" } else { " | " })?;
                f.write_str(name)?;
                rest &= !bit;
                first = false;
            }
        }
        if rest != 0 || first {
            write!(f, "{}{rest:#x}", if first { "" } else { " | " })?;
        }
        f.write_str(")")
    }
}

/// Why an event may mean new content; only used to explain decisions in verbose logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `..data` was replaced: a kubelet atomic update was committed.
    KubeletCommit,
    /// A file was written and closed.
    Written,
    /// An entry appeared.
    Created,
    /// An entry disappeared.
    Removed,
    /// An entry was renamed in or out.
    Renamed,
    /// A subdirectory appeared and is now watched.
    DirAdded,
    /// A watched directory went away.
    DirGone,
    /// A configured directory came back and is watched again.
    Rearmed,
    /// The kernel's event queue overflowed: anything may have changed.
    Overflow,
    /// A symlink on the path of a configured directory was replaced or removed.
    Relinked,
}

impl Change {
    /// Name used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::KubeletCommit => "kubelet-update",
            Change::Written => "written",
            Change::Created => "created",
            Change::Removed => "removed",
            Change::Renamed => "renamed",
            Change::DirAdded => "dir-added",
            Change::DirGone => "dir-gone",
            Change::Rearmed => "rearmed",
            Change::Overflow => "queue-overflow",
            Change::Relinked => "symlink-replaced",
        }
    }
}

/// Whether a name belongs to the kubelet's machinery (`..data`, `..data_tmp`, `..<timestamp>`)
/// rather than to the content. Keys themselves may start with a single dot.
pub fn is_internal(name: &[u8]) -> bool {
    name.starts_with(b"..")
}

/// Whether a name is an editor's or sed's scratch file, never read by the app: vim's `4913`
/// probe, `file~` backups and `.file.swp` swap files, `sed -i`'s `sedXXXXXX`.
pub fn is_scratch(name: &[u8]) -> bool {
    let b = name;
    if b == b"4913" || b.ends_with(b"~") {
        return true;
    }
    if b.len() >= 5 && b[0] == b'.' && b[b.len() - 4..b.len() - 1] == *b".sw" {
        return true;
    }
    b.len() == 9 && b.starts_with(b"sed") && b[3..].iter().all(u8::is_ascii_alphanumeric)
}

/// Decides what one event on a watched content directory means. Pure, so it is unit-tested.
pub fn classify(mask: EventMask, name: Option<&[u8]>) -> Option<Change> {
    let name = name?;
    let is_dir = mask.contains(EventMask::ISDIR);
    if is_internal(name) {
        // The rename of ..data_tmp over ..data is the commit; a first population may create it.
        let commit = name == b"..data" && mask.intersects(EventMask::MOVED_TO | EventMask::CREATE);
        return commit.then_some(Change::KubeletCommit);
    }
    if !is_dir && is_scratch(name) {
        return None;
    }
    if is_dir && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
        return Some(Change::DirAdded);
    }
    if mask.contains(EventMask::CLOSE_WRITE) {
        Some(Change::Written)
    } else if mask.contains(EventMask::CREATE) {
        Some(Change::Created)
    } else if mask.contains(EventMask::DELETE) {
        Some(Change::Removed)
    } else if mask.intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO) {
        Some(Change::Renamed)
    } else {
        None
    }
}

/// One watch: the directory's path and whether it is content (inside a configured tree) or
/// only an ancestor we watch while waiting for a missing configured directory to come back.
struct Entry {
    path: Vec<u8>,
    content: bool,
}

/// The inotify instance and the set of watched directories, by watch descriptor.
pub struct Watcher {
    inotify: Fd,
    entries: BTreeMap<i32, Entry>,
    roots: Vec<Vec<u8>>,
    armed: Vec<bool>,
    buf: Vec<u8>,
    /// Directories we could not watch because the watch limit was hit, for the log line.
    missed: usize,
    /// Symlinks on the paths of the configured directories (a root itself or an ancestor), as
    /// written; the directory holding each is watched so that re-pointing it is noticed.
    links: Vec<Vec<u8>>,
}

impl Watcher {
    /// Creates the inotify instance and watches every configured tree.
    /// Fails only if inotify itself is unavailable, with the line to log.
    pub fn new(roots: &[Vec<u8>], log: &Logger) -> Result<Watcher, String> {
        let inotify = sys::inotify_init().map_err(|e| match e.0 {
            libc::EMFILE => {
                let (name, now) = limit("instances");
                format!("cannot create an inotify instance: too many instances for this user (EMFILE); raise {name} (now {now}), shared by every container of this UID on the node")
            }
            _ => format!("cannot create an inotify instance: {e}"),
        })?;
        let mut w = Watcher {
            inotify,
            entries: BTreeMap::new(),
            roots: roots.to_vec(),
            armed: alloc::vec![false; roots.len()],
            // Room for many events per read; one event needs at most 16 + NAME_MAX + 1 bytes.
            buf: alloc::vec![0; 16 * 1024],
            missed: 0,
            links: Vec::new(),
        };
        w.rearm(log);
        w.report_missed(log);
        Ok(w)
    }

    /// The inotify fd, for poll.
    pub fn fd(&self) -> c_int {
        self.inotify.raw()
    }

    /// Number of directories watched as content.
    pub fn count(&self) -> usize {
        self.entries.values().filter(|e| e.content).count()
    }

    /// Reads every pending event and returns the first reason to suspect a change, if any.
    /// Never blocks: the fd is non-blocking and poll said it is readable.
    pub fn read(&mut self, log: &Logger) -> Option<Change> {
        let mut change = None;
        let mut buf = core::mem::take(&mut self.buf);
        loop {
            let n = match sys::read(&self.inotify, &mut buf) {
                // Never happens for inotify with a buffer this size; do not spin on it.
                Ok(0) => break,
                Ok(n) => n,
                Err(Errno(libc::EAGAIN)) => break,
                Err(Errno(libc::EINTR)) => continue,
                Err(e) => {
                    log.error(
                        "reading inotify events failed",
                        &[("error", e.to_string().into())],
                    );
                    break;
                }
            };
            let mut pending_rearm = false;
            let mut events = &buf[..n.min(buf.len())];
            while let Some((wd, mask, name, rest)) = next_event(events) {
                events = rest;
                let c = self.handle(wd, mask, name, log, &mut pending_rearm);
                change = change.or(c);
            }
            if pending_rearm && self.rearm(log) {
                change = change.or(Some(Change::Rearmed));
            }
        }
        self.buf = buf;
        self.report_missed(log);
        change
    }

    fn handle(
        &mut self,
        wd: i32,
        mask: EventMask,
        name: Option<&[u8]>,
        log: &Logger,
        pending_rearm: &mut bool,
    ) -> Option<Change> {
        if mask.contains(EventMask::Q_OVERFLOW) {
            log.warn(
                "inotify queue overflowed; rescanning every watched directory",
                &[
                    ("sysctl", "fs.inotify.max_queued_events".into()),
                    ("limit", sysctl("max_queued_events").into()),
                ],
            );
            self.rescan(log);
            return Some(Change::Overflow);
        }
        let entry = self.entries.get(&wd)?;
        let (dir, content) = (entry.path.clone(), entry.content);
        if log.verbose() {
            log.debug(
                "event",
                &[
                    ("dir", sys::display(&dir).into()),
                    ("name", name.map(sys::display).unwrap_or_default().into()),
                    ("mask", format!("{mask:?}").into()),
                ],
            );
        }
        if mask.contains(EventMask::IGNORED) || mask.contains(EventMask::MOVE_SELF) {
            // IGNORED follows DELETE_SELF, an unmount or our own rm_watch; after MOVE_SELF the
            // watch follows the directory to a path we no longer know. Either way the path is
            // no longer watched: forget it (and its subtree) and watch for it to come back.
            self.forget_tree(&dir);
            if self.roots.iter().any(|r| sys::same_path(r, &dir)) {
                for (i, r) in self.roots.iter().enumerate() {
                    if sys::same_path(r, &dir) {
                        self.armed[i] = false;
                    }
                }
                log.warn(
                    "watched directory is gone; waiting for it to come back",
                    &[("dir", sys::display(&dir).into())],
                );
            }
            *pending_rearm = true;
            return content.then_some(Change::DirGone);
        }
        if let Some(link) = self.replaced_link(&dir, mask, name) {
            // Our watches sit on the inodes the link used to lead to, which never hear of the
            // swap: forget them and arm the path again, wherever it leads now.
            for i in 0..self.roots.len() {
                if sys::starts_with(&self.roots[i], &link) {
                    let root = self.roots[i].clone();
                    self.forget_tree(&root);
                    self.armed[i] = false;
                }
            }
            *pending_rearm = true;
            return Some(Change::Relinked);
        }
        if self.armed.iter().any(|a| !a) && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
        {
            *pending_rearm = true;
        }
        if !content {
            return None;
        }
        let change = classify(mask, name)?;
        let path = sys::join(&dir, name?);
        match change {
            Change::DirAdded => {
                // Add the watch first, then scan: files created before the watch existed are
                // found by the scan, files created after it produce events (none missed).
                self.add_tree(&path, log);
            }
            Change::Renamed if mask.contains(EventMask::ISDIR | EventMask::MOVED_FROM) => {
                self.forget_tree(&path)
            }
            _ => {}
        }
        Some(change)
    }

    /// Watches every configured directory not yet watched; for one that is missing, watches
    /// its nearest existing ancestor so its return is noticed. True if any root was re-armed.
    fn rearm(&mut self, log: &Logger) -> bool {
        let mut rearmed = false;
        for i in 0..self.roots.len() {
            if self.armed[i] {
                continue;
            }
            let root = self.roots[i].clone();
            // A directory on the way that appears between our look and our watch on its
            // parent sends that watch no event: look again, at most once per level.
            for _ in 0..=sys::components(&root).count() {
                let was_dir = sys::is_dir(&root);
                if was_dir && self.add_tree(&root, log) {
                    self.armed[i] = true;
                    rearmed = true;
                    self.watch_links(&root, log);
                    break;
                }
                match self.watch_nearest_ancestor(&root, log) {
                    Some(below)
                        if (!sys::same_path(&below, &root) || !was_dir) && sys::is_dir(&below) =>
                    {
                        continue
                    }
                    _ => break,
                }
            }
        }
        if self.armed.iter().all(|a| *a) {
            self.drop_ancestors();
        }
        rearmed
    }

    /// Watches the nearest existing ancestor of `root`, as a non-content watch that tells us
    /// when the way down comes back. Returns the path one level below it, if one was watched.
    fn watch_nearest_ancestor(&mut self, root: &[u8], log: &Logger) -> Option<Vec<u8>> {
        let mut below = root;
        while let Some(dir) = holder(below) {
            if self.add(dir, false, log).is_some() {
                return Some(below.to_vec());
            }
            below = dir;
        }
        None
    }

    /// Watches the directory holding each symlink on the way to `root` (`root` included): a
    /// link re-pointed with `ln -sfn` or a rename over it changes what the app reads, but only
    /// the link's own directory hears of it.
    fn watch_links(&mut self, root: &[u8], log: &Logger) {
        let mut path = Some(root);
        while let Some(p) = path {
            path = sys::parent(p);
            let is_link = sys::lstat(p).is_ok_and(|m| m.is_symlink());
            let Some(dir) = holder(p).filter(|_| is_link) else {
                continue;
            };
            if self.add(dir, false, log).is_some()
                && !self.links.iter().any(|l| sys::same_path(l, p))
            {
                self.links.push(p.to_vec());
            }
        }
    }

    /// The watched symlink that an event in `dir` replaced or removed, if any.
    fn replaced_link(&self, dir: &[u8], mask: EventMask, name: Option<&[u8]>) -> Option<Vec<u8>> {
        let name = name?;
        if !mask.intersects(
            EventMask::CREATE | EventMask::MOVED_TO | EventMask::DELETE | EventMask::MOVED_FROM,
        ) {
            return None;
        }
        self.links
            .iter()
            .find(|l| {
                holder(l).is_some_and(|h| sys::same_path(h, dir)) && sys::file_name(l) == Some(name)
            })
            .cloned()
    }

    /// Watches `dir` and every real subdirectory below it (not symlinks, not `..` internals).
    /// False if `dir` itself could not be watched.
    fn add_tree(&mut self, dir: &[u8], log: &Logger) -> bool {
        let watched = self.add(dir, true, log).is_some();
        // Past the watch limit keep walking, only to count what is left for the log line.
        if !watched && self.missed == 0 {
            return false;
        }
        let Ok(rd) = sys::read_dir(dir) else {
            return true;
        };
        for entry in rd {
            if is_internal(&entry.name) {
                continue;
            }
            // is_dir does not follow symlinks: `sub -> ..data/sub` is not descended into.
            if entry.is_dir {
                self.add_tree(&sys::join(dir, &entry.name), log);
            }
        }
        watched
    }

    fn add(&mut self, dir: &[u8], content: bool, log: &Logger) -> Option<i32> {
        if self.missed > 0 && content {
            self.missed += 1;
            return None;
        }
        match sys::inotify_add_watch(&self.inotify, dir, MASK) {
            Ok(id) => {
                let content = content || self.entries.get(&id).is_some_and(|e| e.content);
                self.entries.insert(
                    id,
                    Entry {
                        path: dir.to_vec(),
                        content,
                    },
                );
                Some(id)
            }
            Err(e) => {
                match e.0 {
                    libc::ENOSPC if content => self.missed += 1,
                    // Gone or replaced by a file between listing and watching: nothing to watch.
                    libc::ENOENT | libc::ENOTDIR => {}
                    _ => log.warn(
                        "cannot watch directory",
                        &[
                            ("dir", sys::display(dir).into()),
                            ("error", e.to_string().into()),
                        ],
                    ),
                }
                None
            }
        }
    }

    /// Logs, once per attempt, how many directories the watch limit left unwatched.
    fn report_missed(&mut self, log: &Logger) {
        if self.missed == 0 {
            return;
        }
        let needed = self.count() + self.missed;
        let (name, now) = limit("watches");
        log.error(
            "inotify watch limit reached; some directories are not watched",
            &[
                ("sysctl", name.as_str().into()),
                ("limit", now.into()),
                ("watched", self.count().into()),
                ("unwatched", self.missed.into()),
                ("hint", format!("raise {name} to at least {needed} plus what other processes of this UID use on the node").into()),
            ],
        );
        self.missed = 0;
    }

    /// Forgets `dir` and every watch below it, removing the kernel watches that still exist.
    fn forget_tree(&mut self, dir: &[u8]) {
        let gone: Vec<i32> = self
            .entries
            .iter()
            .filter(|(_, e)| sys::starts_with(&e.path, dir))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if self.entries.remove(&id).is_some() {
                // Fails with EINVAL when the kernel already dropped it (IN_IGNORED): expected.
                let _ = sys::inotify_rm_watch(&self.inotify, id);
            }
        }
    }

    /// Drops the non-content watches that were only waiting for a missing directory; the
    /// ones holding a symlink of [`Watcher::links`] stay.
    fn drop_ancestors(&mut self) {
        let ancestors: Vec<i32> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                !e.content
                    && !self
                        .links
                        .iter()
                        .any(|l| holder(l).is_some_and(|h| sys::same_path(h, &e.path)))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ancestors {
            if self.entries.remove(&id).is_some() {
                let _ = sys::inotify_rm_watch(&self.inotify, id);
            }
        }
    }

    /// After a queue overflow events were lost, including directory creations: start afresh.
    fn rescan(&mut self, log: &Logger) {
        let all: Vec<i32> = self.entries.keys().copied().collect();
        for id in all {
            if self.entries.remove(&id).is_some() {
                let _ = sys::inotify_rm_watch(&self.inotify, id);
            }
        }
        self.armed.iter_mut().for_each(|a| *a = false);
        self.rearm(log);
    }
}

/// The directory holding `path`, as inotify must be given it: a bare relative name like
/// `conf` is held by `.`, not by the empty path that `Path::parent` returns (which cannot be
/// watched, and would leave a deleted relative directory unwatched for good).
fn holder(path: &[u8]) -> Option<&[u8]> {
    match sys::parent(path) {
        Some(b"") => (!sys::same_path(path, b".")).then_some(b"."),
        other => other,
    }
}

/// Reads `/proc/sys/fs/inotify/NAME` for log lines; "unknown" if unreadable.
fn sysctl(name: &str) -> String {
    sys::read_text(format!("/proc/sys/fs/inotify/{name}").as_bytes())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Splits the first event off a buffer filled by read(2) on an inotify fd:
/// `struct inotify_event { int wd; u32 mask, cookie, len; char name[len]; }`, the name
/// NUL-padded; `None` for a watched directory's own events. Returns the rest of the buffer.
#[allow(clippy::type_complexity)]
fn next_event(buf: &[u8]) -> Option<(i32, EventMask, Option<&[u8]>, &[u8])> {
    let field = |i: usize| -> Option<[u8; 4]> { buf.get(i * 4..i * 4 + 4)?.try_into().ok() };
    let wd = i32::from_ne_bytes(field(0)?);
    let mask = u32::from_ne_bytes(field(1)?);
    let len = u32::from_ne_bytes(field(3)?) as usize;
    let name = buf.get(16..16 + len)?;
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(len)];
    let name = (!name.is_empty()).then_some(name);
    Some((wd, EventMask(mask), name, &buf[16 + len..]))
}

/// The per-UID inotify limit on `what` (`watches` or `instances`) that is in force, as (sysctl
/// name, value) for log lines. Each user namespace has its own `user.max_inotify_*`, checked
/// together with the host's `fs.inotify.max_user_*` (user_namespaces(7)); in the initial
/// namespace both are the same number, inside a user namespace the lower one is what bites.
fn limit(what: &str) -> (String, String) {
    let read =
        |path: String| -> Option<u64> { sys::read_text(path.as_bytes()).ok()?.trim().parse().ok() };
    let host = read(format!("/proc/sys/fs/inotify/max_user_{what}"));
    let userns = read(format!("/proc/sys/user/max_inotify_{what}"));
    match (host, userns) {
        (Some(h), Some(u)) if u < h => (format!("user.max_inotify_{what}"), u.to_string()),
        (None, Some(u)) => (format!("user.max_inotify_{what}"), u.to_string()),
        (h, _) => (
            format!("fs.inotify.max_user_{what}"),
            h.map_or_else(|| "unknown".to_string(), |h| h.to_string()),
        ),
    }
}

/// A mount under or above a configured directory that the kubelet will never update.
#[derive(Debug, PartialEq, Eq)]
pub struct PinnedMount {
    /// Where it is mounted.
    pub mount_point: Vec<u8>,
    /// `subPath` (root inside a `..<timestamp>` dir) or `file` (single-file bind mount).
    pub kind: &'static str,
}

/// Finds subPath and single-file bind mounts affecting `dirs` in `/proc/self/mountinfo`.
///
/// A subPath mount binds the resolved `…/..<timestamp>/key` at pod start; the kubelet later
/// swaps `..data` elsewhere, so the mount keeps the old content forever (kubernetes#50345).
pub fn pinned_mounts(dirs: &[Vec<u8>]) -> Vec<PinnedMount> {
    let Ok(text) = sys::read_text(b"/proc/self/mountinfo") else {
        return Vec::new();
    };
    let dirs: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| sys::realpath(d).unwrap_or_else(|_| d.clone()))
        .collect();
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let (root, point) = (unescape(root), unescape(point).into_bytes());
        let related = dirs
            .iter()
            .any(|d| sys::starts_with(&point, d) || sys::starts_with(d, &point));
        if !related {
            continue;
        }
        let kind = if is_subpath_root(&root) {
            "subPath"
        } else if dirs.iter().any(|d| sys::starts_with(&point, d))
            && sys::stat(&point).is_ok_and(|m| !m.is_dir())
        {
            "file"
        } else {
            continue;
        };
        found.push(PinnedMount {
            mount_point: point,
            kind,
        });
    }
    found
}

/// True for a mount root inside a kubelet data dir: contains `/..` + 4 digits + `_`.
pub fn is_subpath_root(root: &str) -> bool {
    root.match_indices("/..").any(|(i, _)| {
        let rest = root.as_bytes().get(i + 3..i + 8);
        matches!(rest, Some(r) if r[..4].iter().all(u8::is_ascii_digit) && r[4] == b'_')
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Logs a warning per pinned mount; called once at start.
pub fn warn_pinned(dirs: &[Vec<u8>], log: &Logger) {
    for m in pinned_mounts(dirs) {
        let hint = match m.kind {
            "subPath" => "a subPath mount is never updated by the kubelet; mount the whole volume and point CONFIG_DIR at it",
            _ => "a single-file bind mount keeps the old inode when the file is replaced; mount the directory instead",
        };
        log.warn(
            "configuration mount will never change",
            &[
                ("mount", sys::display(&m.mount_point).into()),
                ("kind", Value::Str(m.kind)),
                ("hint", hint.into()),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(mask: EventMask, name: &str) -> Option<Change> {
        classify(mask, Some(name.as_bytes()))
    }

    #[test]
    fn kubelet_commit_is_the_only_internal_event_that_counts() {
        assert_eq!(
            c(EventMask::MOVED_TO, "..data"),
            Some(Change::KubeletCommit)
        );
        assert_eq!(
            c(
                EventMask::CREATE | EventMask::ISDIR,
                "..2026_11_25_10_00_00.1234567890"
            ),
            None
        );
        assert_eq!(c(EventMask::CREATE, "..data_tmp"), None);
        assert_eq!(c(EventMask::MOVED_FROM, "..data_tmp"), None);
        assert_eq!(
            c(
                EventMask::DELETE | EventMask::ISDIR,
                "..2026_11_25_10_00_00.1234567890"
            ),
            None
        );
        // A key may start with one dot.
        assert_eq!(c(EventMask::CREATE, ".env"), Some(Change::Created));
    }

    #[test]
    fn editor_scratch_files_are_ignored() {
        for n in [
            "4913",
            "app.conf~",
            ".app.conf.swp",
            ".app.conf.swx",
            "sedAb12Z9",
        ] {
            assert_eq!(c(EventMask::CLOSE_WRITE, n), None, "{n}");
        }
        for n in ["app.conf", "sed.conf", "4914", "swp", ".swp"] {
            assert_eq!(c(EventMask::CLOSE_WRITE, n), Some(Change::Written), "{n}");
        }
        // sed -i's rename over the real file counts.
        assert_eq!(c(EventMask::MOVED_TO, "app.conf"), Some(Change::Renamed));
    }

    #[test]
    fn plain_events_map_to_changes() {
        assert_eq!(
            c(EventMask::CREATE | EventMask::ISDIR, "conf.d"),
            Some(Change::DirAdded)
        );
        assert_eq!(
            c(EventMask::MOVED_TO | EventMask::ISDIR, "conf.d"),
            Some(Change::DirAdded)
        );
        assert_eq!(c(EventMask::DELETE, "a"), Some(Change::Removed));
        assert_eq!(c(EventMask::CREATE, "a"), Some(Change::Created));
        assert_eq!(classify(EventMask::CLOSE_WRITE, None), None);
    }

    #[test]
    fn a_bare_relative_name_is_held_by_dot() {
        assert_eq!(holder(b"conf"), Some(&b"."[..]));
        assert_eq!(holder(b"a/conf"), Some(&b"a"[..]));
        assert_eq!(holder(b"/etc/conf"), Some(&b"/etc"[..]));
        assert_eq!(holder(b"."), None);
        assert_eq!(holder(b"/"), None);
    }

    #[test]
    fn subpath_roots_are_recognised() {
        assert!(is_subpath_root("/var/lib/kubelet/pods/x/volumes/kubernetes.io~configmap/cfg/..2026_11_25_10_00_00.123/app.conf"));
        assert!(is_subpath_root(
            "/..2021_01_01_00_00_00.1/app.conf//deleted"
        ));
        assert!(!is_subpath_root("/var/lib/docker/volumes/cfg/_data"));
        assert!(!is_subpath_root("/..data/app.conf"));
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
