//! One directory inside a walk: listed entry by entry, each file hashed as it comes (the sink
//! says how), each subdirectory and symlink kept by name until the listing ends. The listing
//! is never held: only those names are, about 50 bytes each.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{
    bytes, cut_value, entry, error_value, file, tagged, CutReason, Mode, Sink, Walker, DIR,
    MAX_LINK_TARGETS, SPECIAL,
};
use crate::names;

/// The names of a directory that a kubelet volume compares (without scratch names): a sum of
/// their digests and their number, so no name is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Names {
    pub(super) sum: u64,
    pub(super) count: u64,
}

impl Names {
    pub(super) fn add(&mut self, name: &OsStr) {
        if !names::is_scratch(name) {
            let mut h = DefaultHasher::new();
            bytes(&mut h, name.as_encoded_bytes());
            self.sum = self.sum.wrapping_add(h.finish());
            self.count += 1;
        }
    }
}

/// A subdirectory to walk once its parent's listing is over.
pub(super) struct Sub {
    pub(super) name: OsString,
    pub(super) id: (u64, u64),
    pub(super) mode: Mode,
}

/// A listed directory whose subdirectories are being walked.
pub(super) struct Frame {
    pub(super) dir: PathBuf,
    /// Its name in its parent (empty for a root).
    pub(super) name: OsString,
    pub(super) id: (u64, u64),
    pub(super) mode: Mode,
    /// The entries so far: the sum of their digests (order-free) and their number.
    pub(super) sum: u64,
    pub(super) count: u64,
    pub(super) names: Names,
    pub(super) pending: Vec<Sub>,
}

impl Frame {
    pub(super) fn add(&mut self, entry: u64) {
        self.sum = self.sum.wrapping_add(entry);
        self.count += 1;
    }

    /// The directory as an entry of its parent.
    pub(super) fn entry(&self) -> u64 {
        let mut h = DefaultHasher::new();
        h.write_u8(DIR);
        h.write_u64(self.count);
        h.write_u64(self.sum);
        entry(&self.name, h.finish())
    }
}

/// What opening a directory gave.
pub(super) enum Opened {
    /// Listed; its subdirectories are still to walk.
    Frame(Frame),
    /// Done already (an error, or a kubelet volume hashed whole): its digest as an entry.
    Done(u64),
}

/// What a listing entry is, from its d_type (no stat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Special,
}

impl Walker<'_> {
    /// Lists `dir`, hashing its files on the way; its subdirectories are left in the frame. A
    /// kubelet volume is hashed whole here.
    pub(super) fn open(
        &mut self,
        dir: PathBuf,
        name: OsString,
        id: (u64, u64),
        mode: Mode,
        ancestors: &[(u64, u64)],
    ) -> Opened {
        // Watch first, then list: whatever changes after the watch exists raises an event,
        // whatever changed before is in the listing.
        if mode.real {
            (self.hooks.on_dir)(&dir, id);
        }
        let listing = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) => return Opened::Done(entry(&name, error_value(&e))),
        };
        let mut f = Frame {
            dir,
            name,
            id,
            mode,
            sum: 0,
            count: 0,
            names: Names::default(),
            pending: Vec::new(),
        };
        // Symlinks wait for the end of the listing: in a kubelet volume they are the
        // `key -> ..data/key` links, never read (the volume is read through `..data`).
        let mut links = Vec::new();
        let mut kubelet = false;
        for e in listing {
            if self.stopped() {
                return Opened::Frame(f);
            }
            let Ok(e) = e else { continue };
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => Kind::Dir,
                Ok(t) if t.is_file() => Kind::File,
                Ok(t) if t.is_symlink() => Kind::Symlink,
                _ => Kind::Special,
            };
            let name = e.file_name();
            kubelet |= name == "..data" && kind == Kind::Symlink;
            if names::skip(&name, kind == Kind::Dir) {
                continue;
            }
            f.names.add(&name);
            if mode.links > 0 {
                self.linked += 1;
            }
            match kind {
                Kind::Symlink => links.push(name),
                Kind::Dir => self.subdir(&mut f, name, &e),
                Kind::File => {
                    let value = match self.hooks.sink {
                        Sink::Bytes => self.file(&f.dir.join(&name), None),
                        Sink::Metadata => e
                            .metadata()
                            .map_or_else(|e| error_value(&e), |m| file::metadata_value(&m)),
                        Sink::Nothing => 0,
                    };
                    f.add(entry(&name, value));
                }
                Kind::Special => f.add(entry(&name, tagged(SPECIAL))),
            }
        }
        if self.hooks.sink == Sink::Nothing {
            return Opened::Frame(f);
        }
        if kubelet && !mode.data {
            if let Some(value) = self.kubelet(&f.dir, f.names, mode, ancestors, id) {
                return Opened::Done(entry(&f.name, value));
            }
        }
        for name in links {
            self.symlink(&mut f, name);
        }
        Opened::Frame(f)
    }

    /// A real subdirectory: by its `stat`, which at a mount point is the mounted root.
    fn subdir(&mut self, f: &mut Frame, name: OsString, e: &fs::DirEntry) {
        let meta = match e.metadata() {
            Ok(m) => m,
            Err(err) => return f.add(entry(&name, error_value(&err))),
        };
        if self.is_kernel(meta.dev()) {
            self.cut(f.dir.join(&name), CutReason::Kernel);
            return f.add(entry(&name, cut_value(CutReason::Kernel)));
        }
        f.pending.push(Sub {
            name,
            id: (meta.dev(), meta.ino()),
            mode: f.mode,
        });
    }

    /// A symlink, by what it leads to.
    fn symlink(&mut self, f: &mut Frame, name: OsString) {
        let path = f.dir.join(&name);
        let value = match fs::metadata(&path) {
            Ok(m) if self.is_kernel(m.dev()) => {
                self.cut(path, CutReason::Kernel);
                cut_value(CutReason::Kernel)
            }
            Ok(m) if m.is_dir() => {
                let mode = Mode {
                    real: false,
                    links: f.mode.links.saturating_add(1),
                    ..f.mode
                };
                let id = (m.dev(), m.ino());
                return f.pending.push(Sub { name, id, mode });
            }
            Ok(m) if m.is_file() && self.hooks.sink == Sink::Metadata => file::metadata_value(&m),
            Ok(m) if m.is_file() => {
                if !f.mode.data {
                    self.link_target(&path);
                }
                self.file(&path, Some(&m))
            }
            Ok(_) => tagged(SPECIAL),
            Err(e) => error_value(&e),
        };
        f.add(entry(&name, value));
    }

    /// Reports the directory and name a symlinked file finally leads to, for a watch there:
    /// an edit of `../sites-available/default` must be heard through `sites-enabled/default`.
    fn link_target(&mut self, link: &Path) {
        if self.link_targets.len() >= MAX_LINK_TARGETS {
            return;
        }
        let Ok(real) = fs::canonicalize(link) else {
            return;
        };
        if let (Some(dir), Some(name)) = (real.parent(), real.file_name()) {
            self.link_targets
                .push((dir.to_path_buf(), name.to_os_string()));
        }
    }
}
