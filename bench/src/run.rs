//! Starting and stopping the two contestants: our binary and the shell baseline.
//!
//! Each runs in its own process group, so one `kill(-pgid)` ends it with every child it made
//! (the baseline's `inotifywait`, its `while` subshell and any `pkill` in flight).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::procfs::{self, Usage};

/// The process name both contestants signal (`PROCESS_NAME`, `pkill -x`): the sigrecord target.
pub const APP: &str = "benchapp";

/// The baseline, the shell loop the other sidecars amount to; `$1` is the directory, `$2` the process name.
pub const BASELINE_SCRIPT: &str =
    "inotifywait -m -r -e modify,create,delete,move,close_write \"$1\" \
| while read -r _; do pkill -HUP -x \"$2\"; done";

/// Which implementation is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `config-reloader`, the release musl build.
    Ours,
    /// `inotifywait -m -r … | while read -r _; do pkill -HUP -x NAME; done` under `/bin/sh`.
    Baseline,
}

impl Tool {
    /// The stderr line that says every watch is armed.
    fn ready_marker(self) -> &'static str {
        match self {
            Tool::Ours => "info watching",
            Tool::Baseline => "Watches established.",
        }
    }
}

/// Where the binaries under test are.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `target/x86_64-unknown-linux-musl/release/config-reloader`.
    pub reloader: PathBuf,
    /// `target/x86_64-unknown-linux-musl/release/sigrecord`.
    pub sigrecord: PathBuf,
}

/// One 8-byte `MAP_SHARED` page slot the child writes its exec time into from `pre_exec`.
struct ExecStamp(*mut AtomicU64);

impl ExecStamp {
    fn new() -> io::Result<ExecStamp> {
        // SAFETY: an anonymous shared mapping with no address hint; checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(ExecStamp(p.cast()))
    }

    fn get(&self) -> u64 {
        // SAFETY: the mapping lives as long as self and is 8-aligned (page-aligned).
        unsafe { (*self.0).load(Ordering::SeqCst) }
    }
}

impl Drop for ExecStamp {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new().
        unsafe { libc::munmap(self.0.cast(), 8) };
    }
}

/// A started contestant; killed (whole process group) and reaped on drop.
pub struct Running {
    /// Which one.
    pub tool: Tool,
    child: Child,
    stderr: PathBuf,
    stamp: ExecStamp,
}

impl Running {
    /// Starts `tool` watching `dirs`, stderr to the file `stderr`, with extra environment
    /// (ours only: e.g. `RELOAD_DEBOUNCE=0`).
    pub fn start(
        tool: Tool,
        paths: &Paths,
        dirs: &[&Path],
        env: &[(&str, &str)],
        stderr: &Path,
    ) -> Result<Running, String> {
        let mut cmd = match tool {
            Tool::Ours => {
                let mut c = Command::new(&paths.reloader);
                let joined: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                c.env("CONFIG_DIR", joined.join(","))
                    .env("PROCESS_NAME", APP)
                    .envs(env.iter().copied());
                c
            }
            Tool::Baseline => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(BASELINE_SCRIPT).arg("sh");
                // The baseline takes one directory; the bench only ever gives it one.
                c.arg(dirs[0]).arg(APP);
                c
            }
        };
        let file =
            fs::File::create(stderr).map_err(|e| format!("create {}: {e}", stderr.display()))?;
        let stamp = ExecStamp::new().map_err(|e| format!("mmap: {e}"))?;
        let slot = stamp.0 as usize;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0);
        // SAFETY: the closure only calls clock_gettime and an atomic store into a shared
        // mapping, both async-signal-safe, as required between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                (*(slot as *mut AtomicU64)).store(testkit::monotonic_ns(), Ordering::SeqCst);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {tool:?} ({:?}): {e}", cmd.get_program()))?;
        Ok(Running {
            tool,
            child,
            stderr: stderr.to_path_buf(),
            stamp,
        })
    }

    /// Pid of the process we spawned (ours, or the baseline's outer `sh`).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// CLOCK_MONOTONIC ns just before `execve`.
    pub fn exec_ns(&self) -> u64 {
        self.stamp.get()
    }

    /// Everything written to stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether the ready line is there.
    pub fn is_ready(&self) -> bool {
        self.stderr_text().contains(self.tool.ready_marker())
    }

    /// Polls stderr every 100 µs for the ready line; returns CLOCK_MONOTONIC ns when seen.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready() {
                return Ok(testkit::monotonic_ns());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{:?} exited ({status}) before it was ready: {}",
                    self.tool,
                    self.stderr_text().trim()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{:?} not ready after {timeout:?}: {}",
                    self.tool,
                    self.stderr_text().trim()
                ));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The long-lived processes: ours, or the baseline's `sh`, `inotifywait` and `while`
    /// subshell (a `pkill` in flight is left out; its CPU shows in the subshell's `cutime`).
    pub fn procs(&self) -> Vec<i32> {
        match self.tool {
            Tool::Ours => vec![self.pid()],
            Tool::Baseline => procfs::tree(self.pid())
                .into_iter()
                .filter(|&p| procfs::comm(p).is_some_and(|c| c != "pkill"))
                .collect(),
        }
    }

    /// [`Running::procs`]' figures, summed.
    pub fn usage(&self) -> Usage {
        self.procs()
            .into_iter()
            .filter_map(|p| procfs::usage(p).ok())
            .fold(Usage::default(), Usage::add)
    }

    /// Inotify watches held by [`Running::procs`].
    pub fn watches(&self) -> usize {
        self.procs()
            .into_iter()
            .map(|p| procfs::inotify_watches(p, false))
            .sum()
    }

    /// `took_ms` of every `reloaded` line ours logged (empty for the baseline).
    pub fn reloads_logged(&self) -> Vec<f64> {
        self.stderr_text()
            .lines()
            .filter(|l| l.starts_with("info reloaded "))
            .filter_map(|l| {
                l.split(' ')
                    .find_map(|kv| kv.strip_prefix("took_ms="))?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Ends the contestant: SIGTERM for ours (its clean exit path), then SIGKILL for the group.
    pub fn stop(mut self) {
        if self.tool == Tool::Ours {
            let _ = testkit::kill(self.pid(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Drop does the rest.
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill has no memory arguments; the pgid is the group spawn() created (> 1).
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Polls every ~20 µs until `running` or one of its children holds an inotify watch; returns
/// the CLOCK_MONOTONIC ns when first seen. The poll sleeps between looks: a spinning poller
/// on a 2-core machine takes the CPU the starting process needs and triples its start-up.
pub fn wait_first_watch(running: &mut Running, timeout: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = match running.tool {
            Tool::Ours => procfs::inotify_watches(running.pid(), true) > 0,
            Tool::Baseline => procfs::tree(running.pid())
                .into_iter()
                .skip(1)
                .any(|p| procfs::inotify_watches(p, true) > 0),
        };
        if found {
            return Ok(testkit::monotonic_ns());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{:?}: no inotify watch after {timeout:?}: {}",
                running.tool,
                running.stderr_text().trim()
            ));
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!("{:?} exited ({status})", running.tool));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}
