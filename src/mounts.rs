//! Mounts that change what watching can promise, from `/proc/self/mountinfo` (proc(5)).
//!
//! A subPath mount binds the resolved `…/..<timestamp>/key` at pod start; the kubelet later
//! swaps `..data` elsewhere, so the mount keeps the old content for ever (kubernetes#50345). A
//! single-file bind mount keeps the old inode when the file is replaced. Both are warned about
//! once at start.
//!
//! [`MountWatch`] notices mounts appearing and vanishing at or below a configured directory
//! (the walk must then move its watches onto the new filesystem, or back).

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::log::Logger;
use crate::sys::Interest;

/// One line of mountinfo: the fields we use.
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    /// Field 3: the `st_dev` of the files on it (`major:minor`).
    pub dev: u64,
    /// Field 4: the root of the mount within its filesystem.
    pub root: PathBuf,
    /// Field 5: where it is mounted.
    pub point: PathBuf,
    /// The filesystem type after the ` - ` separator (`tmpfs`, `fuse.bindfs`, `nfs4`).
    pub fstype: String,
}

/// Every mount of our mount namespace; empty if mountinfo cannot be read.
pub fn all() -> Vec<Mount> {
    fs::read("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let sep = fields.iter().position(|f| *f == b"-")?;
            let (major, minor) = std::str::from_utf8(fields.get(2)?).ok()?.split_once(':')?;
            Some(Mount {
                dev: libc::makedev(major.parse().ok()?, minor.parse().ok()?),
                root: unescape(fields.get(3)?),
                point: unescape(fields.get(4)?),
                fstype: String::from_utf8_lossy(fields.get(sep + 1)?).into_owned(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|d| s[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Kernel interfaces mounted as filesystems: never configuration, and some of their files never
/// end (`/proc/kcore`), block, or change on every read.
const KERNEL: [&str; 19] = [
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "devpts",
    "bpf",
    "pstore",
    "configfs",
    "efivarfs",
    "selinuxfs",
    "fusectl",
    "binfmt_misc",
    "mqueue",
    "hugetlbfs",
    "rpc_pipefs",
    "nsfs",
];

/// Whether `fstype` (as mountinfo names it) is a kernel interface.
pub fn is_kernel(fstype: &str) -> bool {
    KERNEL.contains(&fstype)
}

/// The filesystem type holding `path`: that of the longest mount point above it.
pub fn fstype_of<'a>(path: &Path, mounts: &'a [Mount]) -> Option<&'a str> {
    let real = path.canonicalize().ok()?;
    mounts
        .iter()
        .filter(|m| real.starts_with(&m.point))
        .max_by_key(|m| m.point.as_os_str().len())
        .map(|m| m.fstype.as_str())
}

/// The `st_dev` of every kernel interface mounted: a walk reads nothing on one, however it
/// reaches it (a symlink to `/proc` included).
pub fn kernel_devs(mounts: &[Mount]) -> Vec<u64> {
    mounts
        .iter()
        .filter(|m| is_kernel(&m.fstype))
        .map(|m| m.dev)
        .collect()
}

/// Mounts appearing or vanishing at or below a configured directory. The kernel flags
/// `/proc/self/mountinfo` with `POLLPRI` (and `POLLERR`) at each change of our mount table and
/// never otherwise (proc(5)), so waiting on it costs no wake-up while nothing is mounted;
/// `POLLIN` is always set there, so only `POLLPRI` is asked for. A poll clears the flag.
pub struct MountWatch {
    /// Open only to be polled; the table is read afresh each time.
    file: Option<File>,
    dirs: Vec<PathBuf>,
    mounts: Vec<Mount>,
    /// The mounts at or below a configured directory: `(point, dev, root)`.
    relevant: Vec<(PathBuf, u64, PathBuf)>,
}

impl MountWatch {
    /// Reads the table; watches it for the configured `dirs` (unwatched if mountinfo cannot be
    /// opened: the walk still runs at each change inotify reports).
    pub fn new(dirs: &[PathBuf]) -> MountWatch {
        let mut w = MountWatch {
            file: File::open("/proc/self/mountinfo").ok(),
            dirs: dirs.to_vec(),
            mounts: Vec::new(),
            relevant: Vec::new(),
        };
        w.reread();
        w
    }

    /// The mounts as last read.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// What to wait for.
    pub fn interest(&self) -> Option<Interest<'_>> {
        self.file.as_ref().map(|f| Interest::priority(f.as_fd()))
    }

    /// The table changed: re-reads it. True when a mount at or below a configured directory
    /// appeared, vanished or changed, so the trees must be walked again.
    pub fn ready(&mut self) -> bool {
        let before = std::mem::take(&mut self.relevant);
        self.reread();
        before != self.relevant
    }

    fn reread(&mut self) {
        self.mounts = all();
        let dirs: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        self.relevant = self
            .mounts
            .iter()
            .filter(|m| dirs.iter().any(|d| m.point.starts_with(d)))
            .map(|m| (m.point.clone(), m.dev, m.root.clone()))
            .collect();
    }
}

/// A mount under or above a configured directory that the kubelet will never update.
#[derive(Debug, PartialEq, Eq)]
pub struct Pinned {
    /// Where it is mounted.
    pub point: PathBuf,
    /// `subPath` (root inside a `..<timestamp>` dir) or `file` (single-file bind mount).
    pub kind: &'static str,
}

/// The subPath and single-file bind mounts affecting `dirs`.
pub fn pinned(dirs: &[PathBuf], mounts: &[Mount]) -> Vec<Pinned> {
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
        .collect();
    let mut found = Vec::new();
    for m in mounts {
        let below = dirs.iter().any(|d| m.point.starts_with(d));
        if !below && !dirs.iter().any(|d| d.starts_with(&m.point)) {
            continue;
        }
        let kind = if is_subpath_root(&m.root) {
            "subPath"
        } else if below && m.point.metadata().is_ok_and(|md| !md.is_dir()) {
            "file"
        } else {
            continue;
        };
        found.push(Pinned {
            point: m.point.clone(),
            kind,
        });
    }
    found
}

/// True for a mount root inside a kubelet data dir: a component `..` + 4 digits + `_`.
pub fn is_subpath_root(root: &Path) -> bool {
    root.as_os_str()
        .as_encoded_bytes()
        .windows(8)
        .any(|w| w.starts_with(b"/..") && w[3..7].iter().all(u8::is_ascii_digit) && w[7] == b'_')
}

/// Logs a warning per pinned mount; called once at start.
pub fn warn_pinned(dirs: &[PathBuf], mounts: &[Mount], log: &Logger) {
    for m in pinned(dirs, mounts) {
        let hint = match m.kind {
            "subPath" => "a subPath mount is never updated by the kubelet; mount the whole volume and point CONFIG_DIR at it",
            _ => "a single-file bind mount keeps the old inode when the file is replaced; mount the directory instead",
        };
        log.warn(
            "configuration mount will never change",
            &[
                ("mount", m.point.as_path().into()),
                ("kind", m.kind.into()),
                ("hint", hint.into()),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpath_roots_are_recognised() {
        assert!(is_subpath_root(Path::new("/var/lib/kubelet/pods/x/volumes/kubernetes.io~configmap/cfg/..2026_11_25_10_00_00.123/app.conf")));
        assert!(is_subpath_root(Path::new(
            "/..2021_01_01_00_00_00.1/app.conf//deleted"
        )));
        assert!(!is_subpath_root(Path::new(
            "/var/lib/docker/volumes/cfg/_data"
        )));
        assert!(!is_subpath_root(Path::new("/..data/app.conf")));
    }

    #[test]
    fn mountinfo_lines_are_parsed_with_octal_escapes() {
        let text = b"36 35 98:0 /a\\040b /mnt/x\\134y rw,noatime master:1 - fuse.bindfs /dev/x rw\nbad line\n";
        let m = parse(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].root, PathBuf::from("/a b"));
        assert_eq!(m[0].point, PathBuf::from("/mnt/x\\y"));
        assert_eq!(m[0].fstype, "fuse.bindfs");
    }

    #[test]
    fn kernel_interfaces_are_known_by_their_type_and_found_by_path() {
        let text = b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:5 / /proc rw - proc proc rw\n3 1 0:6 / /sys rw - sysfs sysfs rw\n4 1 0:7 / /tmp rw - tmpfs tmpfs rw\n";
        let m = parse(text);
        assert_eq!(
            kernel_devs(&m),
            vec![libc::makedev(0, 5), libc::makedev(0, 6)]
        );
        assert!(is_kernel("cgroup2") && !is_kernel("tmpfs") && !is_kernel("fuse.bindfs"));
        let real = parse(&fs::read("/proc/self/mountinfo").unwrap());
        assert_eq!(fstype_of(Path::new("/proc/self"), &real), Some("proc"));
        use std::os::unix::fs::MetadataExt;
        let proc_dev = fs::metadata("/proc/self").unwrap().dev();
        assert!(
            kernel_devs(&real).contains(&proc_dev),
            "st_dev matches field 3"
        );
        let tmp_dev = fs::metadata(std::env::temp_dir()).unwrap().dev();
        assert!(!kernel_devs(&real).contains(&tmp_dev));
    }
}
