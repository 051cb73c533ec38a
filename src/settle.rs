//! Settling: wait until the writers are done, then decide from the content whether anything
//! the application reads really changed.
//!
//! Two windows, as in watchexec: every event restarts a quiet timer (`debounce`), and a cap
//! (`max_delay`) fires during an endless stream of changes. After the cap fires, later events
//! open a new window, so the last change always gets a full settle and the app ends up with
//! the final content. Then a fingerprint of the content (names and bytes, following the
//! kubelet's `..data` symlink) is compared with the one at the last signal: chmod, touch and a
//! same-content rewrite change nothing and send nothing.

use alloc::vec::Vec;
use core::time::Duration;

use crate::sys::{self, Errno, Instant, Kind};
use crate::watch::{is_internal, is_scratch};

/// The debounce window and the cap on it.
#[derive(Debug)]
pub struct Settle {
    debounce: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Settle {
    /// A settle with no pending change.
    pub fn new(debounce: Duration, max_delay: Duration) -> Settle {
        Settle {
            debounce,
            max_delay,
            first: None,
            last: None,
        }
    }

    /// Records a possible change at `now`.
    pub fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending change is due; `None` when nothing is pending (poll sleeps forever).
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.debounce).min(first + self.max_delay))
    }

    /// True once the pending change is due; the window then closes.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if d <= now => {
                self.first = None;
                self.last = None;
                true
            }
            _ => false,
        }
    }
}

/// A digest of everything the application reads from the watched directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub u128);

/// FNV-1a with 128 bits of state: a few lines, no tables, deterministic across runs.
///
/// It replaces std's SipHash `DefaultHasher`, which is not in `core`. Neither is a
/// cryptographic hash and neither needs to be: whoever can make two configurations collide can
/// write the configuration anyway, and the cost of a collision is one skipped reload. With 128
/// bits an accidental collision between two versions of a config is out of the question (with
/// 64 bits it already was).
struct Hasher(u128);

impl Hasher {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;

    fn new() -> Hasher {
        Hasher(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u128::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

/// Computes fingerprints, reusing one read buffer so steady-state reloads do not allocate it.
pub struct Fingerprinter {
    buf: Vec<u8>,
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Fingerprinter {
            buf: alloc::vec![0; 32 * 1024],
        }
    }
}

/// How many times a kubelet directory is re-read when `..data` moves during the read.
const KUBELET_RETRIES: usize = 8;
/// Symlinked directories may loop; content deeper than this is not followed.
const MAX_DEPTH: usize = 32;

impl Fingerprinter {
    /// Fingerprints `dirs` in order; `Err(dir)` names a configured directory that is missing,
    /// in which case nothing must be signalled (the app would read nothing).
    pub fn fingerprint(&mut self, dirs: &[Vec<u8>]) -> Result<Fingerprint, Vec<u8>> {
        let mut h = Hasher::new();
        for dir in dirs {
            if !sys::is_dir(dir) {
                return Err(dir.clone());
            }
            h.write(dir);
            h.write_u8(0);
            let mut links = Vec::new();
            self.hash_dir(&mut h, dir, 0, &mut links);
        }
        Ok(Fingerprint(h.finish()))
    }

    /// Hashes a directory: a kubelet volume by the tree `..data` points to, otherwise its
    /// entries sorted by name, following symlinks, minus internals and editor scratch files.
    ///
    /// The listing's d_type says what each entry is, so only symlinks are stat'ed (the walk
    /// of a 10,000-directory tree made three stats per directory before). A loop can only go
    /// through a symlink, so only the directories reached through one are remembered in
    /// `links` (device, inode); `depth` stops anything else, such as a bind mount of an
    /// ancestor.
    fn hash_dir(&mut self, h: &mut Hasher, dir: &[u8], depth: usize, links: &mut Vec<(u64, u64)>) {
        if depth >= MAX_DEPTH {
            h.write(b"\x01loop");
            return;
        }
        let data = || sys::join(dir, b"..data");
        let mut rd = match sys::read_dir(dir) {
            Ok(rd) => rd,
            // A directory we may enter but not list can still be a kubelet volume.
            Err(_) if sys::lstat(&data()).is_ok_and(|m| m.is_symlink()) => {
                return self.hash_kubelet(h, dir, &data(), depth, links);
            }
            Err(e) => return hash_error(h, e),
        };
        // Names in one buffer, entries as (start, end, kind) into it: two allocations per
        // directory instead of one per name.
        let mut names = Vec::new();
        let mut entries = Vec::new();
        let mut kubelet = false;
        while let Some((name, kind)) = rd.next_entry() {
            if is_internal(name) {
                kubelet |= name == b"..data" && kind == Kind::Symlink;
            } else if !is_scratch(name) {
                entries.push((names.len(), names.len() + name.len(), kind));
                names.extend_from_slice(name);
            }
        }
        drop(rd);
        if kubelet {
            return self.hash_kubelet(h, dir, &data(), depth, links);
        }
        entries.sort_unstable_by(|a, b| names[a.0..a.1].cmp(&names[b.0..b.1]));
        for (start, end, kind) in entries {
            let name = &names[start..end];
            h.write(name);
            h.write_u8(0);
            let path = sys::join(dir, name);
            match kind {
                Kind::Dir => {
                    h.write(b"\x02{");
                    self.hash_dir(h, &path, depth + 1, links);
                    h.write(b"}");
                }
                Kind::File => self.hash_file(h, &path),
                Kind::Symlink => match sys::stat(&path) {
                    Ok(m) if m.is_dir() => {
                        h.write(b"\x02{");
                        let id = (m.dev, m.ino);
                        if links.contains(&id) {
                            h.write(b"\x01loop");
                        } else {
                            links.push(id);
                            self.hash_dir(h, &path, depth + 1, links);
                            links.pop();
                        }
                        h.write(b"}");
                    }
                    Ok(m) if m.is_file() => self.hash_file(h, &path),
                    Ok(_) => h.write(b"\x03special"),
                    Err(e) => hash_error(h, e),
                },
                // Sockets, fifos, devices: never opened (a fifo would block), only named.
                Kind::Special => h.write(b"\x03special"),
            }
        }
    }

    /// A kubelet volume: hash the tree under the target of `..data`, and start again if the
    /// kubelet swapped `..data` (or removed the old dir) while we were reading.
    fn hash_kubelet(
        &mut self,
        h: &mut Hasher,
        dir: &[u8],
        data: &[u8],
        depth: usize,
        links: &mut Vec<(u64, u64)>,
    ) {
        for _ in 0..KUBELET_RETRIES {
            let Ok(before) = sys::readlink(data) else {
                continue;
            };
            let mut inner = Hasher::new();
            self.hash_dir(&mut inner, &sys::join(dir, &before), depth, links);
            if sys::readlink(data).ok().as_ref() == Some(&before) {
                h.write(&inner.finish().to_le_bytes());
                return;
            }
        }
        h.write(b"\x01unstable");
    }

    fn hash_file(&mut self, h: &mut Hasher, path: &[u8]) {
        // O_NONBLOCK: if a fifo replaced the file since we stat'ed it, open must not hang.
        let f = match sys::open(path, libc::O_NONBLOCK) {
            Ok(f) => f,
            Err(e) => return hash_error(h, e),
        };
        h.write(b"\x04");
        loop {
            match sys::read(&f, &mut self.buf) {
                Ok(0) => break,
                Ok(n) => h.write(&self.buf[..n]),
                Err(Errno(libc::EINTR)) => continue,
                Err(e) => return hash_error(h, e),
            }
        }
        h.write_u8(0xff);
    }
}

/// An unreadable or vanished entry hashes as its error, so it counts as a change from the
/// readable content and never crashes the loop.
fn hash_error(h: &mut Hasher, e: Errno) {
    h.write(b"\x05err");
    h.write(&e.0.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_event_restarts_the_quiet_time() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(2000));
        assert_eq!(s.deadline(), None);
        s.note(t0);
        assert_eq!(s.deadline(), Some(t0 + ms(100)));
        s.note(t0 + ms(50));
        assert!(!s.take_due(t0 + ms(120)));
        assert!(s.take_due(t0 + ms(150)));
        assert_eq!(s.deadline(), None, "window closes once taken");
    }

    #[test]
    fn max_delay_caps_an_endless_stream_and_the_last_event_still_settles() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(300));
        let mut fired = Vec::new();
        for i in 0..50u64 {
            let now = t0 + ms(i * 20);
            if s.take_due(now) {
                fired.push(i * 20);
            }
            s.note(now);
        }
        // Events every 20 ms never leave 100 ms of quiet: only the cap fires, every ~300 ms.
        assert_eq!(fired, vec![300, 600, 900]);
        let last = t0 + ms(49 * 20);
        assert_eq!(
            s.deadline(),
            Some(last + ms(100)),
            "the last event gets a full quiet time"
        );
    }

    #[test]
    fn zero_debounce_is_due_at_once() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::ZERO, Duration::ZERO);
        s.note(t0);
        assert!(s.take_due(t0));
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("settle-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn bytes(p: &std::path::Path) -> Vec<u8> {
        p.to_str().unwrap().as_bytes().to_vec()
    }

    fn fp(dirs: &[PathBuf]) -> Fingerprint {
        let dirs: Vec<Vec<u8>> = dirs.iter().map(|d| bytes(d)).collect();
        Fingerprinter::default().fingerprint(&dirs).unwrap()
    }

    #[test]
    fn fingerprint_sees_bytes_and_names_but_not_modes_or_scratch() {
        let d = Dir::new("plain");
        let dirs = vec![d.0.clone()];
        fs::write(d.0.join("a.conf"), "one").unwrap();
        let a = fp(&dirs);
        fs::write(d.0.join("a.conf"), "one").unwrap();
        fs::set_permissions(
            d.0.join("a.conf"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        fs::write(d.0.join(".a.conf.swp"), "vim").unwrap();
        fs::write(d.0.join("a.conf~"), "backup").unwrap();
        assert_eq!(
            fp(&dirs),
            a,
            "mode, same bytes and scratch files are no change"
        );
        fs::write(d.0.join("a.conf"), "two").unwrap();
        let b = fp(&dirs);
        assert_ne!(b, a);
        fs::rename(d.0.join("a.conf"), d.0.join("b.conf")).unwrap();
        assert_ne!(fp(&dirs), b, "a rename is a change");
        fs::create_dir(d.0.join("sub")).unwrap();
        let c = fp(&dirs);
        fs::write(d.0.join("sub/x"), "").unwrap();
        assert_ne!(fp(&dirs), c, "an empty file in a subdir is a change");
    }

    #[test]
    fn kubelet_volume_is_read_through_data_and_old_dirs_do_not_count() {
        let d = Dir::new("kubelet");
        let dirs = vec![d.0.clone()];
        fs::create_dir(d.0.join("..2026_01_01_00_00_00.1")).unwrap();
        fs::write(d.0.join("..2026_01_01_00_00_00.1/app.conf"), "v1").unwrap();
        symlink("..2026_01_01_00_00_00.1", d.0.join("..data")).unwrap();
        symlink("..data/app.conf", d.0.join("app.conf")).unwrap();
        let v1 = fp(&dirs);
        // A new dir that is not yet committed changes nothing.
        fs::create_dir(d.0.join("..2026_01_01_00_00_01.2")).unwrap();
        fs::write(d.0.join("..2026_01_01_00_00_01.2/app.conf"), "v2").unwrap();
        assert_eq!(fp(&dirs), v1);
        symlink("..2026_01_01_00_00_01.2", d.0.join("..data_tmp")).unwrap();
        fs::rename(d.0.join("..data_tmp"), d.0.join("..data")).unwrap();
        let v2 = fp(&dirs);
        assert_ne!(v2, v1);
        fs::remove_dir_all(d.0.join("..2026_01_01_00_00_00.1")).unwrap();
        assert_eq!(fp(&dirs), v2, "removing the old dir is no change");
    }

    #[test]
    fn missing_dir_is_reported_and_symlink_loops_end() {
        let d = Dir::new("loop");
        symlink(".", d.0.join("self")).unwrap();
        fs::write(d.0.join("f"), "x").unwrap();
        let dirs = vec![d.0.clone()];
        let a = fp(&dirs);
        assert_eq!(a, fp(&dirs), "a symlink loop hashes the same every time");
        let gone = d.0.join("nope");
        assert_eq!(
            Fingerprinter::default().fingerprint(&[bytes(&d.0), bytes(&gone)]),
            Err(bytes(&gone))
        );
    }
}
