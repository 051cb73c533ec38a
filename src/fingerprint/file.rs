//! One file inside a walk: its bytes, or what can be seen of it when they cannot or should not
//! be read.
//!
//! - A file the sidecar may not read (another UID, mode 0600) counts by its size, mtime and
//!   inode: a rotation in place or by the kubelet changes at least one of them, so it is still
//!   seen, where hashing only the errno hid every change.
//! - A file above [`MAX_READ`] counts the same way: a ConfigMap or Secret holds at most 1 MiB,
//!   so a larger file is a database or an image, not configuration, and hashing a 2 GiB one
//!   took seconds at every change.
//! - A file on a kernel interface (a single file bind-mounted from `/proc`) is never read.

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
    pub(super) fn file(&mut self, path: &Path) -> u64 {
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
        let meta = match f.metadata() {
            Ok(m) => m,
            Err(e) => return error_value(&e),
        };
        if self.is_kernel(meta.dev()) {
            self.cut(path.to_path_buf(), CutReason::Kernel);
            return cut_value(CutReason::Kernel);
        }
        if !meta.is_file() {
            return tagged(SPECIAL);
        }
        if meta.len() > MAX_READ {
            self.large.note(path);
            return metadata_value(&meta);
        }
        let mut inner = DefaultHasher::new();
        let mut len = 0u64;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.stopped() {
                return 0;
            }
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
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
}

/// What can be seen of a file without reading it.
fn metadata_value(m: &fs::Metadata) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(META);
    h.write_u64(m.size());
    h.write_i64(m.mtime());
    h.write_i64(m.mtime_nsec());
    h.write_u64(m.ino());
    h.finish()
}
