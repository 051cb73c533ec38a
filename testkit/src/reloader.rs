//! Running the real `config-reloader` binary in tests and reading its log lines.
//!
//! The binary's path is [`binary`]: `$CONFIG_RELOADER_BIN` (the shipped static musl binary, as
//! `make test` sets it), else the calling test's `env!("CARGO_BIN_EXE_config-reloader")`,
//! since only the product crate's own tests know that one. stderr goes to a file so that a test can
//! read the log at any time without a reader thread.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::recorder::{Received, Recorder};
use crate::{wait_until, TempDir};

/// How long [`Reloader::start`] waits for the `info watching` line (text or JSON).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running config-reloader; SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Reloader {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

/// The binary under test: `$CONFIG_RELOADER_BIN` if set (`make test` points it at the release
/// musl binary, the one the image ships), else `fallback` (cargo's own build).
pub fn binary(fallback: &str) -> PathBuf {
    std::env::var_os("CONFIG_RELOADER_BIN")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(fallback), PathBuf::from)
}

/// `<target>/TRIPLE/release/config-reloader`, the binary `make` builds for that Rust target;
/// see [`release_build`].
pub fn release_binary(triple: &str) -> PathBuf {
    release_build(triple, "config-reloader", "make")
}

/// `<target>/TRIPLE/release/NAME` (`target/` of the workspace, or `$CARGO_TARGET_DIR`), checked
/// to be newer than every source file cargo's dep-info (`NAME.d`) lists for it; panics naming
/// `make` (the make command that builds it) when it is missing or stale.
///
/// `cargo test` cannot build it: another target and profile, and a nested cargo would wait
/// forever on the build directory lock the outer one holds. `make test` builds it first.
pub fn release_build(triple: &str, name: &str, make: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let bin = target.join(triple).join("release").join(name);
    let hint = format!("build it with `{make}` (`make test` does)");
    let built = fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; {hint}", bin.display()));
    // `path/to/bin: src/main.rs src/config.rs ...`
    let dep_info = fs::read_to_string(bin.with_extension("d")).unwrap_or_default();
    let sources = dep_info.split_once(": ").map_or("", |(_, deps)| deps);
    for source in sources.split_whitespace() {
        if let Ok(changed) = fs::metadata(source).and_then(|m| m.modified()) {
            assert!(
                built >= changed,
                "{} is older than {source}; {hint}",
                bin.display()
            );
        }
    }
    bin
}

/// Path of the testkit binary `name` (`sigrecord`, `sigwaiter`, `nopidfd`) built with the
/// workspace: `target/<profile>/NAME` next to the running test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} binary not found at {candidates:?}: build it with `cargo test --workspace` (make test does)"
            )
        })
}

/// Builds a config-reloader command with a clean environment (only PATH and the run mark of
/// [`crate::tree::run_mark`] are kept), so the
/// settings of the developer's shell never leak into a test.
pub fn command(bin: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(crate::tree::run_mark());
    cmd.envs(
        env.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    cmd.args(args);
    cmd
}

impl Reloader {
    /// Starts the reloader with `env` and `args` and waits until it logs `info watching`
    /// (every watch armed, baseline fingerprint taken).
    pub fn start(bin: &Path, env: &[(&str, &str)], args: &[&str]) -> Reloader {
        Self::start_command(command(bin, env, args))
    }

    /// Like [`Reloader::start`] for a prepared command (e.g. wrapped in `setpriv`).
    pub fn start_command(mut cmd: Command) -> Reloader {
        let mut r = Self::spawn_command(&mut cmd);
        wait_until(
            READY_TIMEOUT,
            "config-reloader to log `info watching`",
            || {
                let ready = |l: &str| {
                    l.starts_with("info watching")
                        || l.starts_with(r#"{"level":"info","msg":"watching""#)
                };
                if r.log().lines().any(ready) {
                    return Some(());
                }
                if let Ok(Some(status)) = r.child.try_wait() {
                    panic!(
                        "config-reloader exited during start-up ({}):\n{}",
                        describe(status),
                        r.log()
                    );
                }
                None
            },
        );
        r
    }

    /// Spawns without waiting for readiness (for bad-configuration tests).
    pub fn spawn_command(cmd: &mut Command) -> Reloader {
        let dir = TempDir::new("reloader-log").expect("temp dir for the reloader log");
        let log = dir.join("stderr");
        let file = fs::File::create(&log).expect("create log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        Reloader {
            child,
            log,
            _dir: dir,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines starting with `prefix` (e.g. `"info reloaded"`).
    pub fn lines(&self, prefix: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `n` lines start with `prefix`, and returns them.
    pub fn wait_lines(&self, prefix: &str, n: usize, timeout: Duration) -> Vec<String> {
        wait_until(
            timeout,
            &format!("{n} log line(s) starting with {prefix:?}"),
            || {
                let lines = self.lines(prefix);
                (lines.len() >= n).then_some(lines)
            },
        )
    }

    /// Whether it is still running (reaps it if it exited).
    pub fn is_running(&self) -> bool {
        // /proc/PID/stat state Z means exited but not yet reaped by us.
        match fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            Ok(s) => !s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Sends `sig` to it.
    pub fn signal(&self, sig: i32) {
        crate::kill(self.pid(), sig).expect("signal config-reloader");
    }

    /// Waits for it to exit and returns the status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_until(timeout, "config-reloader to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Drop for Reloader {
    /// Ends the reloader and whatever it started (`-- APP` and the app's own children): killed
    /// alone, it left them to init, still running long after the test.
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if let Ok(None) = self.child.try_wait() {
            let _ = crate::kill(pid, libc::SIGSTOP);
            crate::tree::kill_descendants(pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=` in a log or `--check` line, without its quotes: `field(l, "reason")`.
pub fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(q) => Some(q[..q.find('"')?].to_string()),
        None => Some(rest.split(' ').next()?.to_string()),
    }
}

/// Waits until `app` has received `n` signals, then watches for `quiet` to show that no more
/// come, and returns them; fails at once, quoting the line, if `rel` logged that it refused,
/// failed to send or found no such process instead (the caller expects none of these).
pub fn expect_sent(
    app: &Recorder,
    rel: &Reloader,
    n: usize,
    timeout: Duration,
    quiet: Duration,
) -> Vec<Received> {
    wait_until(timeout, &format!("{n} signal(s) to reach the app"), || {
        let log = rel.log();
        let not_sent = log.lines().find(|l| {
            [
                "warn refusing to send",
                "error signal failed",
                "warn no process named",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        });
        if let Some(line) = not_sent {
            panic!("not sent: {line}\nlog:\n{log}");
        }
        (app.received().len() >= n).then_some(())
    });
    app.expect_exactly(n, timeout, quiet)
}

/// Runs `change`, then waits for the line refusing to signal `pid` that follows it (one
/// logged before, e.g. at start-up, does not count) and returns it; `None` as soon as
/// `gone()` says the target died instead.
pub fn refused_after(
    rel: &Reloader,
    pid: i32,
    timeout: Duration,
    change: impl FnOnce(),
    gone: impl Fn() -> bool,
) -> Option<String> {
    let refusals = || -> Vec<String> {
        let pid = pid.to_string();
        let lines = rel.lines("warn refusing to send ");
        let mine = |l: &String| field(l, "pid").as_deref() == Some(pid.as_str());
        lines.into_iter().filter(mine).collect()
    };
    let before = refusals().len();
    change();
    wait_until(timeout, &format!("a refusal to signal pid {pid}"), || {
        if gone() {
            return Some(None);
        }
        refusals().into_iter().nth(before).map(Some)
    })
}

/// `config-reloader --check` run by `cmd` (from [`command`], maybe wrapped): its exit code and
/// the `target pid=PID ...` line; panics with the whole output if there is no such line.
pub fn check_target(mut cmd: Command, pid: i32) -> (i32, String) {
    let out = cmd
        .arg("--check")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {:?} --check: {e}", cmd.get_program()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("target pid={pid} ")))
        .unwrap_or_else(|| panic!("no `target pid={pid}` line in --check output:\n{stdout}"))
        .to_string();
    (code(out.status), line)
}

/// Runs config-reloader to completion (bad configuration, `--check`, `--help`) and returns
/// (exit status, stdout, stderr).
pub fn run_to_exit(
    bin: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (ExitStatus, String, String) {
    let out = command(bin, env, args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `exit 2`, or `exit 139 = killed by SIGSEGV`, as a shell would report it.
fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(sig) => format!("exit {} = killed by signal {sig}", code(status)),
        None => format!("exit {}", code(status)),
    }
}

/// Exit code, or 128 + signal for a process killed by a signal (as a shell reports it).
pub fn code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `OsStr` helper for building env lists from paths.
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| {
        panic!(
            "test path is not UTF-8: {}",
            OsStr::new(p).to_string_lossy()
        )
    })
}
