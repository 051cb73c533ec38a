//! Targets other than sigrecord: `sigwaiter` (sigwait in the main thread or a dedicated
//! thread, or a thread left unblocked), Python scripts run by Debian's python3, and Debian's
//! own programs (tini, dumb-init) run under a name of the test's choosing.
//!
//! A Debian program that is missing fails the test with one line that names its package
//! (`make deps-apt` installs them all).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::recorder::{Mode, Options, Program};
use crate::reloader::workspace_bin;
use crate::wait_until;

/// `path`, which the Debian package `package` installs; panics with one line if it is missing.
pub fn debian(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install the Debian package {package} (make deps-apt does)"
    );
    p
}

/// A symlink `dir/name` to `target`: exec'd through it, the process is called `name` (its
/// `/proc/PID/comm` holds the first 15 bytes), whatever the program.
pub fn link_as(dir: &Path, name: &str, target: &Path) -> PathBuf {
    let link = dir.join(name);
    std::os::unix::fs::symlink(target, &link)
        .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", link.display(), target.display()));
    link
}

/// Options for `sigwaiter MODE` named `name`, re-reading `read` on each signal. MODE is
/// `--sigwait-main`, `--sigwait-thread` or `--one-thread-unblocked`.
pub fn sigwaiter(name: &str, read: Option<&Path>, mode: &str) -> Options {
    Options {
        name: Some(name.into()),
        read: read.map(Path::to_path_buf),
        mode: Mode::Custom(vec![mode.into()]),
        program: Some(Program {
            path: workspace_bin("sigwaiter"),
            args: Vec::new(),
        }),
        ..Options::default()
    }
}

/// Options for Debian's python3 running `testkit/scripts/pysig.py MODE`, named `name`. MODE is
/// `--sigwait-main` (signal.sigwait) or `--victim` (a thread, then pthread_sigmask in main).
pub fn python(name: &str, read: Option<&Path>, mode: &str) -> Options {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pysig.py");
    Options {
        name: Some(name.into()),
        read: read.map(Path::to_path_buf),
        mode: Mode::Custom(vec![mode.into()]),
        program: Some(Program {
            path: debian("/usr/bin/python3", "python3"),
            args: vec![OsString::from(script)],
        }),
        ..Options::default()
    }
}

/// What each thread of `pid` sleeps in (`/proc/PID/task/TID/wchan`), as we (root) read it.
pub fn wchans(pid: i32) -> Vec<String> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("wchan")).ok())
        .collect()
}

/// Whether some thread of `pid` sleeps in sigwait/sigwaitinfo/sigtimedwait: the kernel
/// function is `do_sigtimedwait` (`do_sigtimedwait.isra.0` on some builds).
pub fn waits_for_signals(pid: i32) -> bool {
    wchans(pid).iter().any(|w| w.contains("sigtimedwait"))
}

/// Waits until a thread of `pid` sleeps in sigtimedwait: from then on its `SigBlk` lacks the
/// waited signals, the state the reloader must judge right.
pub fn await_waiting(pid: i32, timeout: Duration) {
    let what = format!("pid {pid} to wait in sigtimedwait");
    wait_until(timeout, &what, || waits_for_signals(pid).then_some(()));
}

/// The parent of `pid` (field 4 of `/proc/PID/stat`, after the last `)`).
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    String::from_utf8_lossy(&stat)
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The last `NSpid` field of `pid`: its pid in its own (innermost) PID namespace.
pub fn innermost_pid(pid: i32) -> Option<i32> {
    let status = fs::read(format!("/proc/{pid}/status")).ok()?;
    String::from_utf8_lossy(&status)
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}
