//! What the polling tests (`tests/polling.rs`, `tests/polling_idle.rs`) share: the binary,
//! the timings `auto` promises, and a scratch directory with a bindfs view of it.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use testkit::fuse::Bindfs;
use testkit::recorder::{Options, Recorder};
use testkit::reloader::{path_str, Reloader};
use testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_config-reloader");

/// `auto`'s interval on a blind filesystem (config::AUTO_POLL).
pub const AUTO: Duration = Duration::from_secs(5);
/// The default RELOAD_DEBOUNCE.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Slack on top of interval + debounce for a shared 2-core machine under load.
pub const GRACE: Duration = Duration::from_secs(1);
/// Generous deadline for what normally holds within milliseconds.
pub const T: Duration = Duration::from_secs(10);
/// How long we watch for a signal that must NOT come after inotify (not polling) saw a change:
/// well past the 100 ms debounce.
pub const QUIET: Duration = Duration::from_millis(600);
/// The reason `auto` gives for each directory it polls.
pub const BLIND_REASON: &str = "changes made outside this mount raise no inotify event";

/// The binary under test: the shipped musl binary under `make test`, else cargo's build.
pub fn bin() -> &'static Path {
    static BIN_PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN_PATH.get_or_init(|| testkit::reloader::binary(BIN))
}

/// An app named `name` that catches SIGHUP and re-reads `read`.
pub fn spawn_app(name: &str, read: &Path) -> Recorder {
    Recorder::spawn(Options {
        name: Some(name.into()),
        read: Some(read.into()),
        ..Options::default()
    })
}

/// The reloader watching `dirs` (comma-joined) for `name`, with `extra` settings.
pub fn start(dirs: &[&Path], name: &str, extra: &[(&str, &str)]) -> Reloader {
    let dirs: Vec<&str> = dirs.iter().map(|d| path_str(d)).collect();
    let joined = dirs.join(",");
    let mut env = vec![("CONFIG_DIR", joined.as_str()), ("PROCESS_NAME", name)];
    env.extend_from_slice(extra);
    Reloader::start(bin(), &env, &[])
}

/// `(key, bytes)` pairs for the kubelet writer.
pub fn kv<'a>(files: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
    files.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
}

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
