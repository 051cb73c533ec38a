//! A real FUSE filesystem for tests: Debian's `bindfs` mirrors a directory onto another.
//!
//! inotify only reports changes made through the mount it watches: a write to the underlying
//! directory raises no event on the bindfs view, exactly as a kubelet writing from outside a
//! gVisor, Kata (virtiofs/9p) or NFS mount raises none inside the pod. Tests write through
//! [`Bindfs::source`] and watch [`Bindfs::view`].
//!
//! bindfs runs in the foreground as our child; drop unmounts (`fusermount -u`, else a lazy
//! `umount -l`) and reaps it, even when the test failed. A missing `/dev/fuse`, bindfs or
//! fusermount fails with one line naming what to install.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{wait_until, TempDir};

/// statfs `f_type` of every FUSE filesystem (linux/magic.h `FUSE_SUPER_MAGIC`).
pub const FUSE_MAGIC: i64 = 0x6573_5546;

/// How long bindfs may take to mount, or to exit once unmounted.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bindfs mount of `source` onto `view`; unmounted and reaped on drop.
#[derive(Debug)]
pub struct Bindfs {
    source: PathBuf,
    view: PathBuf,
    child: Child,
    log: TempDir,
}

/// Panics with one line unless `/dev/fuse`, bindfs and fusermount are there.
pub fn require() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the FUSE tests need it (modprobe fuse; in a container, --device /dev/fuse --cap-add SYS_ADMIN)"
    );
    for (path, package) in [
        ("/usr/bin/bindfs", "bindfs"),
        ("/usr/bin/fusermount", "fuse3"),
    ] {
        assert!(
            Path::new(path).is_file(),
            "{path} is missing: install the Debian package {package} (make deps-apt does)"
        );
    }
}

/// statfs `f_type` of `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a NUL-terminated path and room for one statfs, read only when the call succeeds.
    if unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so the kernel filled the buffer.
    let sfs = unsafe { buf.assume_init() };
    // `f_type` is a `__fsword_t`: i64 here, i32 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(sfs.f_type as i64)
}

/// Whether `point` is a mount point in our mount namespace (`/proc/self/mountinfo` field 5;
/// test paths hold no characters mountinfo would escape).
pub fn is_mount_point(point: &Path) -> bool {
    let Some(p) = point.to_str() else {
        return false;
    };
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p))
}

impl Bindfs {
    /// Mounts `source` onto the existing directory `view` and waits until `view` is FUSE.
    pub fn mount(source: &Path, view: &Path) -> Bindfs {
        require();
        let log = TempDir::new("bindfs-log").expect("temp dir for the bindfs log");
        let stderr = fs::File::create(log.join("stderr")).expect("create bindfs log");
        // -f: stay in the foreground as our child, so drop can reap it.
        let child = Command::new("/usr/bin/bindfs")
            .arg("-f")
            .arg(source)
            .arg(view)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bindfs: {e}"));
        let mut b = Bindfs {
            source: source.to_path_buf(),
            view: view.to_path_buf(),
            child,
            log,
        };
        let what = format!("bindfs to mount {} on {}", source.display(), view.display());
        wait_until(MOUNT_TIMEOUT, &what, || {
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!("bindfs exited ({status}): {}", b.stderr());
            }
            (fs_type(view).ok() == Some(FUSE_MAGIC)).then_some(())
        });
        b
    }

    /// The underlying directory: writes here raise no inotify event on [`Bindfs::view`].
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The FUSE mount point.
    pub fn view(&self) -> &Path {
        &self.view
    }

    /// What bindfs wrote to stderr.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.log.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        let quiet = |cmd: &mut Command| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // The app or reloader of a failing test may still hold the mount busy: detach it
        // lazily then, so no mount outlives the test.
        if !quiet(
            Command::new("/usr/bin/fusermount")
                .arg("-u")
                .arg(&self.view),
        ) && is_mount_point(&self.view)
        {
            quiet(Command::new("umount").arg("-l").arg(&self.view));
        }
        let deadline = std::time::Instant::now() + MOUNT_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
