//! The fingerprint: one digest of everything the application reads from the watched trees,
//! compared with the one at the last signal. chmod, touch and same-content rewrites leave it
//! unchanged, so they send nothing.
//!
//! Content is names and bytes: files by their bytes, and also empty directories, dangling
//! symlinks and special files by their names (an app's `include conf.d/*` sees those too). A
//! file the sidecar may not read, or one above [`MAX_READ`], counts by its name, size, mtime and
//! inode instead (see `file`). A kubelet volume is read through `..data`, re-read if the kubelet
//! swaps it meanwhile; its visible `key -> ..data/key` links must match `..data`'s names before
//! the update counts as complete. Every field is framed (a tag, then a length or a fixed size),
//! so two different layouts never feed the hasher the same bytes.
//!
//! The walk is iterative (a 1,200-level tree costs no stack) and holds no directory open while
//! it descends. It streams each listing: an entry is hashed on its own and the digests of a
//! directory's entries are summed, so the order of the listing does not matter and no listing
//! is kept whole. What a directory still holds until it is walked is the name of each of its
//! subdirectories and symlinks (a `PathBuf`-sized header, 24 bytes, plus the name and
//! allocator rounding: about 50 bytes each); a plain file costs nothing once hashed.
//!
//! Directories are known by `stat` (`st_dev`, `st_ino`), never by the listing's `d_ino`, which
//! at a mount point is the covered directory's. Nothing on a kernel interface (proc, sysfs,
//! cgroup, debugfs, ...) is read or descended into, however it is reached: the filesystem of
//! what each directory and symlink leads to is checked against theirs (`st_dev`), and the cut
//! is reported once. Symlinked directories are followed, bounded three more ways, each cut
//! reported once: a loop back to a directory on the current path, a depth of nested symlinks,
//! and a number of entries reached through symlinks. Every few milliseconds the walk asks its
//! caller whether to stop (a stop signal is pending) and, if so, ends at once, interrupted.
//!
//! The same walk calls `on_dir` for every real directory (reached without a symlink, not under
//! `..data`) before listing it: the watcher arms its watches there, so the first walk watches
//! and fingerprints in one pass, and every later one re-checks that each directory is watched
//! on its current inode. It also reports where each symlinked file leads, for a watch there.
//!
//! It is the one walk of the program ([`Sink`]): the poll stamp takes it with every file by its
//! metadata, and the watcher arms a new subtree with it, reading nothing; `--check` counts
//! directories with it the same way. One rule for what is content, one set of bounds.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::stop;

mod file;
mod kubelet;
mod listing;

pub use file::MAX_READ;
use listing::{Names, Opened};

/// A digest of the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub u64);

/// Symlinked directories nested deeper than this are not followed.
const MAX_LINK_DEPTH: u8 = 8;
/// Entries reached through symlinks, per fingerprint, beyond which none is followed further.
const MAX_LINKED_ENTRIES: usize = 100_000;
/// Attempts at reading a kubelet volume whose `..data` keeps moving.
const KUBELET_RETRIES: usize = 8;
/// Paths named per kind of file seen by metadata only; the rest are counted.
const LISTED: usize = 16;
/// Symlinked files whose target's directory is reported, per walk.
const MAX_LINK_TARGETS: usize = 4096;

/// Why a walk did not follow a symlink or enter a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// It leads back to a directory on the current path.
    Loop,
    /// Too many symlinked directories nested.
    Depth,
    /// Too many entries reached through symlinks.
    Entries,
    /// It is on a kernel interface (proc, sysfs, ...).
    Kernel,
}

impl CutReason {
    /// For the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            CutReason::Loop => "symlink loop: it leads back to a directory on its own path",
            CutReason::Depth => "symlink depth: more than 8 symlinked directories nested",
            CutReason::Entries => "entries: more than 100000 entries reached through symlinks",
            CutReason::Kernel => "kernel interface (proc, sysfs, cgroup, ...): never read; it counts by its name only",
        }
    }
}

/// The first entry the walk did not follow for a reason (the others are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The symlink or directory.
    pub at: PathBuf,
    /// Why.
    pub reason: CutReason,
}

/// Files seen by their metadata only: the first [`LISTED`] by path, all of them counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// The first ones.
    pub paths: Vec<PathBuf>,
    /// How many in all.
    pub count: usize,
}

impl Listed {
    fn note(&mut self, path: &Path) {
        self.count += 1;
        if self.paths.len() < LISTED {
            self.paths.push(path.to_path_buf());
        }
    }
}

/// What a walk found.
#[derive(Debug)]
pub struct Report {
    /// The digest, or the configured directory that is missing (then nothing may be
    /// signalled: the app would read nothing).
    pub outcome: Result<Fingerprint, PathBuf>,
    /// The caller asked it to stop: the outcome means nothing.
    pub interrupted: bool,
    /// A kubelet volume whose visible links do not match `..data`'s names yet.
    pub incomplete: Option<PathBuf>,
    /// Symlinks and directories not followed.
    pub cuts: Vec<Cut>,
    /// Files whose content the sidecar may not read.
    pub unreadable: Listed,
    /// Files above [`MAX_READ`].
    pub large: Listed,
    /// Where symlinked files lead, resolved: `(directory, name)`.
    pub link_targets: Vec<(PathBuf, OsString)>,
}

/// What a walk records of each file: the one walk serves the fingerprint, the poll stamp and
/// the arming of a new subtree, with one rule for what is content (`names`), the same bounds
/// and the same watch-before-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Its bytes: the fingerprint.
    Bytes,
    /// Its size, mtime and inode, without opening it; a kubelet volume by where `..data`
    /// points (the kubelet changes nothing else): the poll stamp, cheap on a filesystem that
    /// has to be polled.
    Metadata,
    /// Nothing: the walk arms watches and counts directories only, and follows no symlink.
    Nothing,
}

/// What the walk needs from its caller.
pub struct Hooks<'a> {
    /// What it records of each file.
    pub sink: Sink,
    /// `st_dev` of every kernel interface mounted (proc, sysfs, ...): nothing on one is read.
    pub kernel: &'a [u64],
    /// Called with each real directory and its (`st_dev`, `st_ino`) before it is listed.
    pub on_dir: &'a mut dyn FnMut(&Path, (u64, u64)),
    /// Asked every [`stop::EVERY`]: true to stop now.
    pub stop: &'a mut dyn FnMut() -> bool,
}

// Frame tags: each is followed by fixed-size or length-prefixed fields only.
const ROOT: u8 = 1;
const DIR: u8 = 2;
const FILE: u8 = 4;
const SPECIAL: u8 = 5;
const ERROR: u8 = 6;
const CUT: u8 = 7;
const KUBELET: u8 = 8;
const UNSTABLE: u8 = 9;
const META: u8 = 10;

/// Fingerprints `dirs` in order.
pub fn take(dirs: &[PathBuf], hooks: Hooks<'_>) -> Report {
    let mut w = Walker {
        hooks,
        cuts: Vec::new(),
        linked: 0,
        incomplete: None,
        unreadable: Listed::default(),
        large: Listed::default(),
        link_targets: Vec::new(),
        interrupted: false,
        checked: Instant::now(),
    };
    let mut h = DefaultHasher::new();
    let mut missing = None;
    for dir in dirs {
        let meta = match fs::metadata(dir) {
            Ok(m) if m.is_dir() => m,
            _ => {
                missing = Some(dir.clone());
                break;
            }
        };
        h.write_u8(ROOT);
        bytes(&mut h, dir.as_os_str().as_encoded_bytes());
        if w.is_kernel(meta.dev()) {
            w.cut(dir.clone(), CutReason::Kernel);
            h.write_u64(cut_value(CutReason::Kernel));
            continue;
        }
        let (digest, _) = w.tree(dir, (meta.dev(), meta.ino()), Mode::REAL, &[]);
        h.write_u64(digest);
    }
    Report {
        outcome: missing.map_or(Ok(Fingerprint(h.finish())), Err),
        interrupted: w.interrupted,
        incomplete: w.incomplete,
        cuts: w.cuts,
        unreadable: w.unreadable,
        large: w.large,
        link_targets: w.link_targets,
    }
}

/// How a directory was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    /// Reached without a symlink and not under `..data`: watched.
    real: bool,
    /// Under a kubelet `..data`: no nested volume is looked for.
    data: bool,
    /// Symlinked directories on the way here.
    links: u8,
}

impl Mode {
    const REAL: Mode = Mode {
        real: true,
        data: false,
        links: 0,
    };
}

struct Walker<'a> {
    hooks: Hooks<'a>,
    cuts: Vec<Cut>,
    /// Entries reached through symlinks so far.
    linked: usize,
    incomplete: Option<PathBuf>,
    unreadable: Listed,
    large: Listed,
    link_targets: Vec<(PathBuf, OsString)>,
    interrupted: bool,
    /// When `stop` was last asked.
    checked: Instant,
}

/// A length-prefixed byte string.
fn bytes(h: &mut DefaultHasher, b: &[u8]) {
    h.write_u64(b.len() as u64);
    h.write(b);
}

/// One entry: its name, then what it is (`value`, itself a digest of a tag and fields).
fn entry(name: &OsStr, value: u64) -> u64 {
    let mut h = DefaultHasher::new();
    bytes(&mut h, name.as_encoded_bytes());
    h.write_u64(value);
    h.finish()
}

fn tagged(tag: u8) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(tag);
    h.finish()
}

fn error_value(e: &io::Error) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(ERROR);
    h.write_i32(e.raw_os_error().unwrap_or(-1));
    h.finish()
}

fn cut_value(reason: CutReason) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(CUT);
    h.write_u8(reason as u8);
    h.finish()
}

impl Walker<'_> {
    /// Hashes the tree at `root` (already known to be a directory with identity `id`).
    /// `outer` holds the identities of the directories above it, for loop detection. Returns
    /// the tree's digest and its root's names.
    fn tree(
        &mut self,
        root: &Path,
        id: (u64, u64),
        mode: Mode,
        outer: &[(u64, u64)],
    ) -> (u64, Names) {
        // The identities of every directory on the current path, for loop detection.
        let mut ids: Vec<(u64, u64)> = outer.to_vec();
        let mut stack = match self.open(root.to_path_buf(), OsString::new(), id, mode, &ids) {
            Opened::Frame(f) => vec![f],
            Opened::Done(digest) => return (digest, Names::default()),
        };
        let top_names = stack[0].names;
        ids.push(id);
        let mut digest = 0;
        while let Some(top) = stack.last_mut() {
            if self.stopped() {
                break;
            }
            let Some(sub) = top.pending.pop() else {
                let done = stack.pop().map(|f| f.entry()).unwrap_or_default();
                ids.pop();
                match stack.last_mut() {
                    Some(parent) => parent.add(done),
                    None => digest = done,
                }
                continue;
            };
            let path = top.dir.join(&sub.name);
            if !sub.mode.real {
                if let Some(reason) = self.cut_reason(sub.id, sub.mode, &ids) {
                    top.add(entry(&sub.name, cut_value(reason)));
                    self.cut(path, reason);
                    continue;
                }
            }
            match self.open(path, sub.name, sub.id, sub.mode, &ids) {
                Opened::Frame(f) => {
                    ids.push(f.id);
                    stack.push(f);
                }
                Opened::Done(d) => {
                    if let Some(parent) = stack.last_mut() {
                        parent.add(d);
                    }
                }
            }
        }
        (digest, top_names)
    }

    /// True once the caller asked to stop; asks it every [`stop::EVERY`].
    fn stopped(&mut self) -> bool {
        if !self.interrupted && self.checked.elapsed() >= stop::EVERY {
            self.interrupted = (self.hooks.stop)();
            self.checked = Instant::now();
        }
        self.interrupted
    }

    fn is_kernel(&self, dev: u64) -> bool {
        self.hooks.kernel.contains(&dev)
    }

    fn cut_reason(
        &self,
        id: (u64, u64),
        mode: Mode,
        ancestors: &[(u64, u64)],
    ) -> Option<CutReason> {
        if ancestors.contains(&id) {
            Some(CutReason::Loop)
        } else if mode.links > MAX_LINK_DEPTH {
            Some(CutReason::Depth)
        } else if self.linked >= MAX_LINKED_ENTRIES {
            Some(CutReason::Entries)
        } else {
            None
        }
    }

    /// Records a cut: the first one for each reason stands for all of them, so a huge tree
    /// costs one record (and one log line) per reason, not one per path.
    fn cut(&mut self, at: PathBuf, reason: CutReason) {
        if !self.cuts.iter().any(|c| c.reason == reason) {
            self.cuts.push(Cut { at, reason });
        }
    }
}

#[cfg(test)]
mod tests;
