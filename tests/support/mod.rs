//! What the watcher regression tests and the randomized test share: the binary under test, the
//! deadlines, and starting an app and a reloader that targets it by a per-run name.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use testkit::recorder::{Options, Recorder};
use testkit::reloader::{command, path_str, Reloader};

/// Generous deadline for conditions that normally hold within milliseconds (shared CI machines).
pub const T: Duration = Duration::from_secs(10);
/// How long we watch for a signal that must NOT come: six times the 100 ms default debounce.
pub const QUIET: Duration = Duration::from_millis(600);

/// The binary under test: the shipped musl binary under `make test`, else cargo's build.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| testkit::reloader::binary(env!("CARGO_BIN_EXE_config-reloader")))
}

/// An app named `name` that catches SIGHUP and re-reads `read` on each one.
pub fn spawn_app(name: &str, read: &Path) -> Recorder {
    Recorder::spawn(Options {
        name: Some(name.into()),
        read: Some(read.into()),
        ..Options::default()
    })
}

/// The reloader's environment: `CONFIG_DIR=dirs`, `PROCESS_NAME=name`, then `extra`.
pub fn env<'a>(
    dirs: &'a str,
    name: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("CONFIG_DIR", dirs), ("PROCESS_NAME", name)];
    env.extend_from_slice(extra);
    env
}

/// Starts a reloader on `dir` for the process `name` and waits until it is watching.
pub fn start(dir: &Path, name: &str, extra: &[(&str, &str)]) -> Reloader {
    Reloader::start(bin(), &env(path_str(dir), name, extra), &[])
}

/// The command that runs the reloader under `prlimit --nofile=N:N` (util-linux), so it gets
/// a low open-file limit whatever the test process has.
pub fn under_nofile_limit(limit: u32, env: &[(&str, &str)]) -> Command {
    let prlimit = Path::new("/usr/bin/prlimit");
    assert!(
        prlimit.is_file(),
        "prlimit not found: install the Debian package util-linux (make deps does)"
    );
    let nofile = format!("--nofile={limit}:{limit}");
    command(prlimit, env, &[&nofile, "--", path_str(bin())])
}

/// `(key, bytes)` pairs from string pairs, for the kubelet writer.
pub fn kv<'a>(files: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
    files.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
}

/// The number after `key=` in `line`.
pub fn field_num(line: &str, key: &str) -> Option<usize> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}
