//! Polling where inotify is blind. inotify reports changes made through the same kernel mount
//! only: on FUSE (bindfs, virtiofs), 9p (gVisor's gofer, Kata), NFS, CIFS/SMB and Ceph, a
//! kubelet writing from outside the mount the app sees raises no event at all.
//!
//! Each configured directory, and each mount point below one, is `statfs`ed at start and when
//! a directory is re-armed; those that need it are polled on a timer in the main loop (no
//! thread), inotify still watching everywhere. A poll costs almost nothing: one `readlink` of
//! `..data` for a kubelet volume, else a walk comparing names, sizes, mtimes and inodes. A
//! change found goes through the same settle and fingerprint as an event, so it reloads once.

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fingerprint::{self, Hooks, Sink};
use crate::mounts::Mount;
use crate::stop;
use crate::sys;

/// Filesystems (statfs `f_type`, linux/magic.h) whose changes may come from outside the
/// mount, where inotify cannot see them.
const BLIND: [(i64, &str); 13] = [
    (0x6573_5546, "fuse"),
    (0x0102_1997, "9p"),
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x00C3_6400, "ceph"),
    (0x5346_414F, "afs"),
    (0x7375_7245, "coda"),
    (0x564C, "ncp"),
    (0x0116_1970, "gfs2"),
    (0x0BD0_0BD0, "lustre"),
    (0x2003_0528, "orangefs"),
];

/// When to poll as well as watch (`RELOAD_POLL_INTERVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Every [`AUTO`], only the directories on filesystems inotify cannot see changed from
    /// outside.
    Auto,
    /// Every directory at this interval.
    Every(Duration),
    /// Never.
    Off,
}

/// The interval `auto` polls at.
pub const AUTO: Duration = Duration::from_secs(5);

/// What to poll, how often and why; `dirs` is empty when nothing is polled.
#[derive(Debug)]
pub struct Plan {
    /// The interval.
    pub every: Duration,
    /// Each directory and its filesystem family (`any` when every directory is polled).
    pub dirs: Vec<(PathBuf, &'static str)>,
    /// Why, for the log and `--check`.
    pub reason: &'static str,
}

/// The plan for `mode` over the configured `dirs`, given the mounts of our namespace.
pub fn plan(mode: Poll, dirs: &[PathBuf], mounts: &[Mount]) -> Plan {
    match mode {
        Poll::Off => Plan {
            every: AUTO,
            dirs: Vec::new(),
            reason: "",
        },
        Poll::Auto => Plan {
            every: AUTO,
            dirs: needed(dirs, mounts),
            reason: "changes made outside this mount raise no inotify event",
        },
        Poll::Every(every) => Plan {
            every,
            dirs: dirs.iter().map(|d| (d.clone(), "any")).collect(),
            reason: "RELOAD_POLL_INTERVAL asks for it",
        },
    }
}

/// The blind filesystem family of `f_type`, if it is one.
pub fn blind(f_type: i64) -> Option<&'static str> {
    BLIND.iter().find(|(m, _)| *m == f_type).map(|(_, n)| *n)
}

/// One directory to poll, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The directory.
    pub dir: PathBuf,
    /// Its filesystem family (`fuse`, `nfs`), or `any` when every directory is polled.
    pub fs: &'static str,
    /// Cheap stamp at the last poll.
    stamp: u64,
}

/// Which directories `auto` polls: each configured directory on a blind filesystem, and each
/// blind mount point below one.
pub fn needed(dirs: &[PathBuf], mounts: &[Mount]) -> Vec<(PathBuf, &'static str)> {
    let mut out: Vec<(PathBuf, &'static str)> = Vec::new();
    for dir in dirs {
        if let Some(fs) = sys::fs_type(dir).ok().and_then(blind) {
            out.push((dir.clone(), fs));
            continue;
        }
        let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        for m in mounts
            .iter()
            .filter(|m| m.point != real && m.point.starts_with(&real))
        {
            if let Some(fs) = sys::fs_type(&m.point).ok().and_then(blind) {
                let below = dir.join(m.point.strip_prefix(&real).unwrap_or(&m.point));
                if !out.iter().any(|(d, _)| *d == below) {
                    out.push((below, fs));
                }
            }
        }
    }
    out
}

/// The polling timer and what it polls.
#[derive(Debug, Default)]
pub struct Poller {
    every: Option<Duration>,
    targets: Vec<Target>,
    next: Option<Instant>,
    /// `st_dev` of the kernel interfaces mounted: a stamp never enters one.
    kernel: Vec<u64>,
}

impl Poller {
    /// Polls `targets` every `every`; nothing (and no wake-up) when there is none.
    pub fn new(
        every: Duration,
        targets: Vec<(PathBuf, &'static str)>,
        kernel: Vec<u64>,
        now: Instant,
    ) -> Poller {
        let targets: Vec<Target> = targets
            .into_iter()
            .map(|(dir, fs)| Target {
                stamp: stamp(&dir, &kernel).unwrap_or_default(),
                dir,
                fs,
            })
            .collect();
        let next = (!targets.is_empty()).then(|| now + every);
        Poller {
            every: Some(every),
            targets,
            next,
            kernel,
        }
    }

    /// Polls `targets` from now on (`auto` re-detecting after a re-arm) and returns those that
    /// were not polled before. A directory still polled keeps its stamp, so a change it has not
    /// been polled for yet is still found, and the schedule is kept: re-arms as frequent as
    /// the interval must not postpone every poll.
    pub fn replan(
        &mut self,
        targets: Vec<(PathBuf, &'static str)>,
        kernel: Vec<u64>,
        now: Instant,
    ) -> Vec<(PathBuf, &'static str)> {
        self.kernel = kernel;
        let mut old = std::mem::take(&mut self.targets);
        let mut added = Vec::new();
        for (dir, fs) in targets {
            let target = match old.iter().position(|t| t.dir == dir) {
                Some(i) => Target {
                    fs,
                    ..old.swap_remove(i)
                },
                None => {
                    added.push((dir.clone(), fs));
                    Target {
                        stamp: stamp(&dir, &self.kernel).unwrap_or_default(),
                        dir,
                        fs,
                    }
                }
            };
            self.targets.push(target);
        }
        self.next = match self.every {
            Some(every) if !self.targets.is_empty() => Some(self.next.unwrap_or(now + every)),
            _ => None,
        };
        added
    }

    /// When the next poll is due; `None`: never (zero wake-ups).
    pub fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Polls if due; true if some directory's stamp changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let (Some(next), Some(every)) = (self.next, self.every) else {
            return false;
        };
        if now < next {
            return false;
        }
        self.next = Some(now + every);
        let mut changed = false;
        for t in &mut self.targets {
            // A stop is pending: the loop reads it next; nothing is decided on half a poll.
            let Some(s) = stamp(&t.dir, &self.kernel) else {
                return false;
            };
            changed |= s != t.stamp;
            t.stamp = s;
        }
        changed
    }
}

/// A cheap digest of what may have changed under `dir`: the walk of the fingerprint with
/// every file by its size, mtime and inode instead of its bytes (the bytes are read only by the
/// fingerprint, once this differs), a kubelet volume by where `..data` points. The same names
/// count as for the fingerprint and the watcher, and nothing on a kernel interface (`kernel`:
/// their `st_dev`) is entered. `None` when a stop signal came meanwhile.
pub fn stamp(dir: &Path, kernel: &[u64]) -> Option<u64> {
    // A kubelet volume: one readlink, where the walk would list the volume first.
    if let Ok(target) = std::fs::read_link(dir.join("..data")) {
        let mut h = DefaultHasher::new();
        h.write(target.as_os_str().as_encoded_bytes());
        return Some(h.finish());
    }
    let report = fingerprint::take(
        std::slice::from_ref(&dir.to_path_buf()),
        Hooks {
            sink: Sink::Metadata,
            kernel,
            on_dir: &mut |_, _| {},
            stop: &mut stop::pending,
        },
    );
    if report.interrupted {
        return None;
    }
    // A missing directory stamps as 0: its return is a change.
    Some(report.outcome.map_or(0, |f| f.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn stamp(dir: &Path) -> u64 {
        let kernel = [fs::metadata("/proc").unwrap().dev()];
        super::stamp(dir, &kernel).unwrap()
    }

    #[test]
    fn stamps_change_with_metadata_and_data_links_only() {
        let d = std::env::temp_dir().join(format!("poll-stamp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/a"), "1").unwrap();
        let a = stamp(&d);
        assert_eq!(stamp(&d), a);
        fs::write(d.join("sub/a"), "22").unwrap();
        assert_ne!(stamp(&d), a, "a size change shows");
        symlink("..x", d.join("..data")).unwrap();
        let k = stamp(&d);
        fs::write(d.join("sub/a"), "333").unwrap();
        assert_eq!(stamp(&d), k, "a kubelet volume is stamped by ..data alone");
        fs::remove_file(d.join("..data")).unwrap();
        symlink("/proc", d.join("p")).unwrap();
        assert_eq!(
            stamp(&d),
            stamp(&d),
            "a link to /proc is stamped, not entered"
        );
        let s = stamp(&d);
        fs::write(d.join(".x.conf.swp"), "vim").unwrap();
        assert_eq!(stamp(&d), s, "scratch files are not content here either");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replanning_keeps_the_schedule_and_the_stamps_and_reports_new_dirs() {
        let d = std::env::temp_dir().join(format!("poll-replan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("b")).unwrap();
        let (a, b) = (d.clone(), d.join("b"));
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut p = Poller::new(every, vec![(a.clone(), "fuse")], Vec::new(), t0);
        fs::write(a.join("x"), "changed before the re-plan").unwrap();
        let later = t0 + Duration::from_secs(3);
        let added = p.replan(
            vec![(a.clone(), "fuse"), (b.clone(), "nfs")],
            Vec::new(),
            later,
        );
        assert_eq!(added, [(b, "nfs")], "only the new directory is reported");
        assert_eq!(p.deadline(), Some(t0 + every), "the schedule is kept");
        assert!(
            p.tick(t0 + every),
            "the change before the re-plan is still found"
        );
        assert!(p.replan(Vec::new(), Vec::new(), later).is_empty());
        assert_eq!(p.deadline(), None, "nothing polled: no timer");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn blind_filesystems_are_known_by_their_magic() {
        assert_eq!(blind(0x6573_5546), Some("fuse"));
        assert_eq!(blind(0x6969), Some("nfs"));
        assert_eq!(blind(0x0102_1994), None, "tmpfs is not blind");
        assert_eq!(blind(0xEF53), None, "ext4 is not blind");
        // Was `needed(..).is_empty() || fs_type(..).is_ok()`, true whatever `needed` said.
        // A real directory is polled exactly when its filesystem is blind: the temp dir (ext4,
        // tmpfs, overlay: none blind here) and /proc are not.
        for here in [std::env::temp_dir(), PathBuf::from("/proc")] {
            let fs = sys::fs_type(&here).expect("statfs of a directory that exists");
            let want: Vec<_> = blind(fs).map(|n| (here.clone(), n)).into_iter().collect();
            assert_eq!(needed(std::slice::from_ref(&here), &[]), want, "{here:?}");
        }
    }
}
