//! What the polling tests (`tests/polling.rs`, `tests/polling_idle.rs`) share beyond
//! `support`: the timings `auto` promises, and a scratch directory with a bindfs view of it.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::T;
use testkit::fuse::Bindfs;
use testkit::TempDir;

/// `auto`'s interval on a blind filesystem (config::AUTO_POLL).
pub const AUTO: Duration = Duration::from_secs(5);
/// The default RELOAD_DEBOUNCE.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Slack on top of interval + debounce for a shared 2-core machine under load.
pub const GRACE: Duration = Duration::from_secs(1);
/// The reason `auto` gives for each directory it polls.
pub const BLIND_REASON: &str = "changes made outside this mount raise no inotify event";

/// A scratch dir holding `a/` (the underlying directory, written by the test) and `b/` (its
/// bindfs view, watched). Field order is drop order: unmount, then remove the dirs.
pub struct View {
    pub fuse: Bindfs,
    pub tmp: TempDir,
}

impl View {
    pub fn new(prefix: &str) -> View {
        let tmp = TempDir::new(prefix).expect("temp dir");
        for d in ["a", "b"] {
            fs::create_dir(tmp.join(d)).expect("mkdir");
        }
        let fuse = Bindfs::mount(&tmp.join("a"), &tmp.join("b"));
        View { fuse, tmp }
    }

    /// Where the test writes: no inotify event reaches the view.
    pub fn a(&self) -> &Path {
        self.fuse.source()
    }

    /// What the reloader watches and the app reads.
    pub fn b(&self) -> &Path {
        self.fuse.view()
    }
}

/// The line `auto` logs for a directory it polls.
pub fn polling_line(dir: &Path, fs: &str) -> String {
    format!(
        "info polling dir={} fs={fs} interval=5s reason=\"{BLIND_REASON}\"",
        dir.display()
    )
}

/// Voluntary plus involuntary context switches of `pid` so far: each wake-up counts one.
pub fn switches(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// Waits until `pid` sleeps in ppoll (`/proc/PID/wchan`), i.e. start-up is over.
pub fn await_idle(pid: i32) {
    testkit::wait_until(T, &format!("pid {pid} to sleep in ppoll"), || {
        let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        wchan.contains("poll").then_some(())
    });
}
