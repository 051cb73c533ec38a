//! What the integration tests share: the binary under test, the deadlines, an app that records
//! its signals, the reloader started on a directory for it, and the wrappers (`prlimit`,
//! `strace`) a few tests run it under. Each test file includes it (`mod support;`).

#![allow(dead_code)] // each test binary uses its own part

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use testkit::apps::{debian, ppid};
use testkit::recorder::{Options, Recorder};
use testkit::reloader::{command, path_str, Reloader};
use testkit::wait_until;

/// Generous deadline for conditions that normally hold within milliseconds (shared CI machines).
pub const T: Duration = Duration::from_secs(10);
/// How long we watch for a signal or request that must NOT come: six times the 100 ms default
/// debounce; the fingerprint and a loopback request fit in it several times over. Only proves
/// an absence.
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

/// The reloader's environment: `CONFIG_DIR=dir`, `PROCESS_NAME=name`, then `extra`.
pub fn env<'a>(
    dir: &'a Path,
    name: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("CONFIG_DIR", path_str(dir)), ("PROCESS_NAME", name)];
    env.extend_from_slice(extra);
    env
}

/// Starts a reloader on `dir` for the process `name` and waits until it is watching.
pub fn start(dir: &Path, name: &str, extra: &[(&str, &str)]) -> Reloader {
    start_dirs(&[dir], name, extra)
}

/// [`start`] on several directories: `CONFIG_DIR` is their paths, comma-joined.
pub fn start_dirs(dirs: &[&Path], name: &str, extra: &[(&str, &str)]) -> Reloader {
    let dirs: Vec<&str> = dirs.iter().map(|d| path_str(d)).collect();
    let joined = dirs.join(",");
    let mut env = vec![("CONFIG_DIR", joined.as_str()), ("PROCESS_NAME", name)];
    env.extend_from_slice(extra);
    Reloader::start(bin(), &env, &[])
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

/// The command that runs the reloader on `dir` for `name` with `args`, inside the PID and
/// mount namespaces of `pid1` (a host pid, PID 1 in there), with `nsenter` (util-linux).
pub fn inside(pid1: i32, dir: &Path, name: &str, args: &[&str]) -> Command {
    let t = pid1.to_string();
    let mut argv = vec!["-t", &t, "-p", "-m", "--", path_str(bin())];
    argv.extend_from_slice(args);
    command(Path::new("nsenter"), &env(dir, name, &[]), &argv)
}

/// The command that runs the reloader under `strace -f` (Debian's strace), with `filters`
/// (`-e trace=...`, `-e inject=...`, `-P PATH`) and its output thrown away: a test delays the
/// reloader's syscalls with it. Find the reloader itself with [`tracee`].
pub fn under_strace(filters: &[&str], env: &[(&str, &str)]) -> Command {
    let strace = debian("/usr/bin/strace", "strace");
    let mut args = vec!["-f", "-qq", "--seccomp-bpf", "-o", "/dev/null"];
    args.extend_from_slice(filters);
    args.push(path_str(bin()));
    command(&strace, env, &args)
}

/// The reloader that `strace` (started by [`under_strace`]) runs: the child of strace whose
/// `/proc/PID/exe` is [`bin`]. strace 6.1 forks short-lived children of its own at start (to
/// probe ptrace and seccomp), so "any child of strace" is sometimes one of those and dead a
/// moment later. SIGKILLed on drop: strace 6.1 has no --kill-on-exit, and the tracee outlives
/// a SIGKILLed strace otherwise.
pub fn tracee(strace: &Reloader) -> Tracee {
    let exe = bin().canonicalize().expect("canonical path of the binary");
    let pid = wait_until(T, "the traced reloader's pid", || {
        fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&p| ppid(p) == Some(strace.pid()))
            .find(|p| fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
    });
    Tracee(pid)
}

/// The reloader run by strace, by pid; SIGKILLed when dropped.
pub struct Tracee(pub i32);

impl Drop for Tracee {
    fn drop(&mut self) {
        let _ = testkit::kill(self.0, libc::SIGKILL);
    }
}

/// `(key, bytes)` pairs from string pairs, for the kubelet writer.
pub fn kv<'a>(files: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
    files.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
}

/// Writes `content` to `path`, naming the path if that fails.
pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `OsString`s for [`Options::wrapper`] and other argv lists.
pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The number after `key=` in `line`.
pub fn field_num(line: &str, key: &str) -> Option<usize> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}
