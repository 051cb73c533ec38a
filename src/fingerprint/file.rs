//! One file inside a walk: its bytes, or what can be seen of it when they cannot or should not
//! be read.
//!
//! - A file the sidecar may not read (another UID, mode 0600) counts by its size, mtime and
//!   inode: a rotation in place or by the kubelet changes at least one of them, so it is still
//!   seen, where hashing only the errno hid every change.
//! - A file above [`MAX_READ`] counts the same way: a ConfigMap or Secret holds at most 1 MiB,
//!   so a larger file is a database or an image, not configuration, and hashing a 2 GiB one
//!   took seconds at every change.
//! - A file on a kernel interface is never read: reached through a symlink, it is known by the
//!   `stat` of its target before it is opened; a single file bind-mounted from `/proc` into a
//!   plain directory is found out once it has given [`MAX_READ`] bytes.

use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{cut_value, error_value, tagged, CutReason, Walker, FILE, META, SPECIAL};
use crate::sys;

/// Files larger than this count by their metadata: 16 times the largest ConfigMap or Secret,
/// and read in about 10 ms by the release build, so a stop is still prompt.
pub const MAX_READ: u64 = 16 << 20;

impl Walker<'_> {
    /// A file's content, as one value: its bytes, framed by their length, or its metadata.
    /// `stat`: what a symlink led to, already checked for a kernel interface. A file listed
    /// in a directory is on the directory's filesystem (already checked) unless it is a mount
    /// point itself: one that fits in the first read is read without a `stat` (a syscall per
    /// file fewer); a larger one is `stat`ed after that read.
    pub(super) fn file(&mut self, path: &Path, stat: Option<&fs::Metadata>) -> u64 {
        if let Some(m) = stat.filter(|m| m.len() > MAX_READ) {
            self.large.note(path);
            return metadata_value(m);
        }
        // Non-blocking: a fifo that replaced the file since the listing must not hang the open.
        let mut f = match sys::open(path) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                return match fs::metadata(path) {
                    Ok(m) => {
                        self.unreadable.note(path);
                        metadata_value(&m)
                    }
                    Err(e) => error_value(&e),
                };
            }
            Err(e) => return error_value(&e),
        };
        let mut inner = DefaultHasher::new();
        let mut len = 0u64;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.stopped() {
                return 0;
            }
            if len > MAX_READ {
                // Its size said less: it grew, or the filesystem does not tell (/proc).
                return self.too_large(path, &f).unwrap_or_else(|| {
                    self.large.note(path);
                    f.metadata()
                        .map_or_else(|e| error_value(&e), |m| metadata_value(&m))
                });
            }
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // More than one buffer: worth a `stat` before reading on (a 2 GiB file is
                    // then never read past its first 16 KiB).
                    if len == 0 && n == buf.len() && stat.is_none() {
                        if let Some(value) = self.too_large(path, &f) {
                            return value;
                        }
                    }
                    inner.write(&buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return error_value(&e),
            }
        }
        let mut h = DefaultHasher::new();
        h.write_u8(FILE);
        h.write_u64(len);
        h.write_u64(inner.finish());
        h.finish()
    }

    /// The value of a file that must not be read on: on a kernel interface (a single file
    /// bind-mounted from `/proc`, which may never end), not a regular file, or above
    /// [`MAX_READ`]. `None`: read on.
    fn too_large(&mut self, path: &Path, f: &fs::File) -> Option<u64> {
        match f.metadata() {
            Ok(m) if self.is_kernel(m.dev()) => {
                self.cut(path.to_path_buf(), CutReason::Kernel);
                Some(cut_value(CutReason::Kernel))
            }
            // A device that replaced the file since the listing (`/dev/zero` never ends).
            Ok(m) if !m.is_file() => Some(tagged(SPECIAL)),
            Ok(m) if m.len() > MAX_READ => {
                self.large.note(path);
                Some(metadata_value(&m))
            }
            Ok(_) => None,
            Err(e) => Some(error_value(&e)),
        }
    }
}

/// What can be seen of a file without reading it.
pub(super) fn metadata_value(m: &fs::Metadata) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(META);
    h.write_u64(m.size());
    h.write_i64(m.mtime());
    h.write_i64(m.mtime_nsec());
    h.write_u64(m.ino());
    h.finish()
}
