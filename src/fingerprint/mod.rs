//! The fingerprint: one digest of everything the application reads from the watched trees,
//! compared with the one at the last signal. chmod, touch and same-content rewrites leave it
//! unchanged, so they send nothing.
//!
//! Content is names and bytes: files by their bytes, and also empty directories, dangling
//! symlinks and special files by their names (an app's `include conf.d/*` sees those too). A
//! kubelet volume is read through `..data`, re-read if the kubelet swaps it meanwhile; its
//! visible `key -> ..data/key` links must match `..data`'s names before the update counts as
//! complete. Every field is framed (a tag, then a length or a fixed size), so two different
//! layouts never feed the hasher the same bytes.
//!
//! The walk is iterative (a 1,200-level tree costs no stack) and holds no directory open while
//! it descends. Symlinked directories are followed, bounded three ways, each cut reported once:
//! a loop back to a directory on the current path, a depth of nested symlinks, and a number of
//! entries reached through symlinks. The same walk calls `on_dir` for every real directory
//! (reached without a symlink, not under `..data`) before listing it: the watcher arms its
//! watches there, so the first walk watches and fingerprints in one pass, and every later one
//! re-checks that each directory is watched on its current inode.

use std::ffi::OsString;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::names;
use crate::sys;

/// A digest of the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub u64);

/// Symlinked directories nested deeper than this are not followed.
const MAX_LINK_DEPTH: u8 = 8;
/// Entries reached through symlinks, per fingerprint, beyond which none is followed further.
const MAX_LINKED_ENTRIES: usize = 100_000;
/// Attempts at reading a kubelet volume whose `..data` keeps moving.
const KUBELET_RETRIES: usize = 8;

/// Why a walk did not follow a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// It leads back to a directory on the current path.
    Loop,
    /// Too many symlinked directories nested.
    Depth,
    /// Too many entries reached through symlinks.
    Entries,
}

impl CutReason {
    /// For the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            CutReason::Loop => "symlink loop: it leads back to a directory on its own path",
            CutReason::Depth => "symlink depth: more than 8 symlinked directories nested",
            CutReason::Entries => "entries: more than 100000 entries reached through symlinks",
        }
    }
}

/// The first symlink the walk did not follow for a reason (the others are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The symlink.
    pub at: PathBuf,
    /// Why.
    pub reason: CutReason,
}

/// What a walk found.
#[derive(Debug)]
pub struct Report {
    /// The digest, or the configured directory that is missing (then nothing may be
    /// signalled: the app would read nothing).
    pub outcome: Result<Fingerprint, PathBuf>,
    /// A kubelet volume whose visible links do not match `..data`'s names yet.
    pub incomplete: Option<PathBuf>,
    /// Symlinks not followed.
    pub cuts: Vec<Cut>,
}

// Frame tags: each is followed by fixed-size or length-prefixed fields only.
const ROOT: u8 = 1;
const DIR: u8 = 2;
const END: u8 = 3;
const FILE: u8 = 4;
const SPECIAL: u8 = 5;
const ERROR: u8 = 6;
const CUT: u8 = 7;
const KUBELET: u8 = 8;
const UNSTABLE: u8 = 9;

/// Fingerprints `dirs` in order, calling `on_dir(path, inode)` for each real directory.
/// Directories in `skip` (the mount points of kernel interfaces such as `/proc`) count by
/// their name only: the walk neither reads nor watches them.
pub fn take(dirs: &[PathBuf], skip: &[PathBuf], on_dir: &mut dyn FnMut(&Path, u64)) -> Report {
    let mut w = Walker {
        on_dir,
        skip,
        cuts: Vec::new(),
        linked: 0,
        incomplete: None,
    };
    let mut h = DefaultHasher::new();
    for dir in dirs {
        let meta = match fs::metadata(dir) {
            Ok(m) if m.is_dir() => m,
            _ => {
                return Report {
                    outcome: Err(dir.clone()),
                    incomplete: None,
                    cuts: w.cuts,
                }
            }
        };
        h.write_u8(ROOT);
        bytes(&mut h, dir.as_os_str().as_encoded_bytes());
        w.tree(&mut h, dir, (meta.dev(), meta.ino()), Mode::REAL, &[]);
    }
    Report {
        outcome: Ok(Fingerprint(h.finish())),
        incomplete: w.incomplete,
        cuts: w.cuts,
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

/// What a listing entry is, from its d_type (no stat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Special,
}

struct Entry {
    name: OsString,
    kind: Kind,
    ino: u64,
}

/// A listed directory whose entries are being hashed.
struct Frame {
    dir: PathBuf,
    id: (u64, u64),
    mode: Mode,
    entries: Vec<Entry>,
    next: usize,
}

struct Walker<'a> {
    on_dir: &'a mut dyn FnMut(&Path, u64),
    skip: &'a [PathBuf],
    cuts: Vec<Cut>,
    /// Entries reached through symlinks so far.
    linked: usize,
    incomplete: Option<PathBuf>,
}

/// A length-prefixed byte string.
fn bytes(h: &mut DefaultHasher, b: &[u8]) {
    h.write_u64(b.len() as u64);
    h.write(b);
}

fn error(h: &mut DefaultHasher, e: &io::Error) {
    h.write_u8(ERROR);
    h.write_i32(e.raw_os_error().unwrap_or(-1));
}

impl Walker<'_> {
    /// Hashes the tree at `root` (already known to be a directory with identity `id`).
    /// `outer` holds the identities of the directories above it, for loop detection.
    fn tree(
        &mut self,
        h: &mut DefaultHasher,
        root: &Path,
        id: (u64, u64),
        mode: Mode,
        outer: &[(u64, u64)],
    ) -> Vec<OsString> {
        let mut stack: Vec<Frame> = Vec::new();
        // The identities of every directory on the current path, for loop detection.
        let mut ids: Vec<(u64, u64)> = outer.to_vec();
        // The root's names, returned: a kubelet volume compares them with its links.
        let mut top = Vec::new();
        if let Some(frame) = self.open(h, root.to_path_buf(), id, mode, &ids) {
            top = frame.entries.iter().map(|e| e.name.clone()).collect();
            ids.push(frame.id);
            stack.push(frame);
        }
        while let Some(top) = stack.last_mut() {
            let Some(entry) = top.entries.get(top.next) else {
                h.write_u8(END);
                stack.pop();
                ids.pop();
                continue;
            };
            top.next += 1;
            let (path, parent_id, parent_mode) = (top.dir.join(&entry.name), top.id, top.mode);
            bytes(h, entry.name.as_encoded_bytes());
            if parent_mode.links > 0 {
                self.linked += 1;
            }
            let next = match entry.kind {
                Kind::File => {
                    self.file(h, &path);
                    None
                }
                Kind::Special => {
                    h.write_u8(SPECIAL);
                    None
                }
                Kind::Dir => Some(((parent_id.0, entry.ino), parent_mode)),
                Kind::Symlink => match fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {
                        let linked = Mode {
                            real: false,
                            links: parent_mode.links.saturating_add(1),
                            ..parent_mode
                        };
                        Some(((m.dev(), m.ino()), linked))
                    }
                    Ok(m) if m.is_file() => {
                        self.file(h, &path);
                        None
                    }
                    Ok(_) => {
                        h.write_u8(SPECIAL);
                        None
                    }
                    Err(e) => {
                        error(h, &e);
                        None
                    }
                },
            };
            let Some((child_id, child_mode)) = next else {
                continue;
            };
            if self.skip.contains(&path) {
                h.write_u8(SPECIAL);
                continue;
            }
            if !child_mode.real {
                if let Some(reason) = self.cut_reason(child_id, child_mode, &ids) {
                    h.write_u8(CUT);
                    h.write_u8(reason as u8);
                    self.cut(path, reason);
                    continue;
                }
            }
            if let Some(frame) = self.open(h, path, child_id, child_mode, &ids) {
                ids.push(frame.id);
                stack.push(frame);
            }
        }
        top
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

    /// Records a cut: the first symlink cut for each reason stands for all of them, so a huge
    /// tree costs one record (and one log line) per reason, not one per path.
    fn cut(&mut self, at: PathBuf, reason: CutReason) {
        if !self.cuts.iter().any(|c| c.reason == reason) {
            self.cuts.push(Cut { at, reason });
        }
    }

    /// Lists `dir` (a kubelet volume is hashed whole here and yields no frame).
    fn open(
        &mut self,
        h: &mut DefaultHasher,
        dir: PathBuf,
        id: (u64, u64),
        mode: Mode,
        ancestors: &[(u64, u64)],
    ) -> Option<Frame> {
        // Watch first, then list: whatever changes after the watch exists raises an event,
        // whatever changed before is in the listing.
        if mode.real {
            (self.on_dir)(&dir, id.1);
        }
        let listing = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) => {
                error(h, &e);
                return None;
            }
        };
        let mut entries = Vec::new();
        let mut kubelet = false;
        for entry in listing {
            let Ok(entry) = entry else { continue };
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => Kind::Dir,
                Ok(t) if t.is_file() => Kind::File,
                Ok(t) if t.is_symlink() => Kind::Symlink,
                _ => Kind::Special,
            };
            let name = entry.file_name();
            kubelet |= name == "..data" && kind == Kind::Symlink;
            if !names::skip(&name, kind == Kind::Dir) {
                let ino = entry.ino();
                entries.push(Entry { name, kind, ino });
            }
        }
        if kubelet && !mode.data && self.kubelet(h, &dir, &entries, mode, ancestors, id) {
            return None;
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        h.write_u8(DIR);
        h.write_u64(entries.len() as u64);
        Some(Frame {
            dir,
            id,
            mode,
            entries,
            next: 0,
        })
    }

    /// A file's bytes, framed by their length, into one digest field.
    fn file(&mut self, h: &mut DefaultHasher, path: &Path) {
        // Non-blocking: a fifo that replaced the file since the listing must not hang the open.
        let mut f = match sys::open(path) {
            Ok(f) => f,
            Err(e) => return error(h, &e),
        };
        let mut inner = DefaultHasher::new();
        let mut len = 0u64;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    inner.write(&buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return error(h, &e),
            }
        }
        h.write_u8(FILE);
        h.write_u64(len);
        h.write_u64(inner.finish());
    }
}

mod kubelet;

#[cfg(test)]
mod tests;
