//! Validation before a reload (`RELOAD_VALIDATE_COMMAND`): the command, split into words as
//! the setting is parsed, and the one run of it at a time, as a source of the loop.
//!
//! The command runs in a process group of its own, stdin on `/dev/null`, stdout and stderr
//! on one socket we read in the `ppoll` (only its first [`HEAD`] bytes are kept; the rest is
//! read and dropped, so a chatty validator never blocks on a full pipe). It inherits our
//! environment, which with `-- APP` is the app's. Its exit comes as SIGCHLD through the
//! signalfd and the loop's reaping hands it to [`Validator::exited`]; past its timeout the
//! whole group is killed. A newer change, or a stop, kills the run in flight: it was checking
//! content that is no longer the one to apply.
//!
//! Never signals, requests or reaps: it holds the reload it validates (its `validate` step
//! pending) and hands it back with that step filled in ([`Validated`]); the loop acts on it.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::log::{self, Logger};
use crate::outcome::{Reload, Step};
use crate::settle::Due;
use crate::sys::{self, Exit, Interest, Pid, Ready};
use crate::values::{err, ConfigError};

/// How much of the command's output is kept for the log line.
pub const HEAD: usize = 4096;
/// At most this many of its lines are logged.
const LINES: usize = 10;
/// Reads of its output per wake-up (64 KiB).
const READS: usize = 16;

/// A checked validation command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validate {
    /// Its words, as given.
    pub argv: Vec<String>,
    /// The first word as found in PATH at start-up.
    pub program: PathBuf,
    /// How long one run may take.
    pub timeout: Duration,
}

/// What one validation found: the lead plugs this into the reload's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Exit 0: reload.
    Passed,
    /// Any other end, with the first lines of what it printed.
    Failed { exit: Exit, output: String },
    /// Ran past its timeout; its process group was killed.
    TimedOut { after: Duration },
    /// Could not be started (e.g. removed since start-up).
    NotStarted { error: String },
}

impl Validation {
    /// Why the reload fails, for its outcome (the status, and the first line the command
    /// printed); `None` when it passed.
    pub fn failure(&self) -> Option<String> {
        let said = |output: &str| match output.split(" | ").next() {
            Some(l) if !l.is_empty() => format!(": {}", cut(l, REASON)),
            _ => String::new(),
        };
        match self {
            Validation::Passed => None,
            Validation::Failed {
                exit: Exit::Code(c),
                output,
            } => Some(format!("validation failed (exit {c}){}", said(output))),
            Validation::Failed {
                exit: Exit::Signal(s),
                output,
            } => Some(format!("validation failed (signal {s}){}", said(output))),
            Validation::TimedOut { after } => Some(format!(
                "validation timed out after {}",
                log::seconds(*after)
            )),
            Validation::NotStarted { .. } => Some("validation could not start".to_string()),
        }
    }

    /// The validate step of the reload this validation was for.
    pub fn step(&self) -> Step {
        self.failure().map_or(Step::Ok, Step::Failed)
    }
}

/// At most this many bytes of the command's first line go into the reload's outcome.
const REASON: usize = 200;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits `s` into words at whitespace; single and double quotes group (and are removed),
/// nothing else is special. `Err`: a quote left open.
pub fn split(s: &str) -> Result<Vec<String>, char> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    match quote {
        Some(q) => Err(q),
        None => {
            words.extend(word);
            Ok(words)
        }
    }
}

/// `RELOAD_VALIDATE_COMMAND`: split and its program found, or one line naming what is wrong.
pub fn parse(source: &str, value: &str, timeout: Duration) -> Result<Validate, ConfigError> {
    let argv = match split(value) {
        Ok(w) if !w.is_empty() => w,
        Ok(_) => return err(format!("{source}={value:?} is empty; give a command, e.g. {source}=\"nginx -t -q\"")),
        Err(q) => return err(format!("{source}={value:?} has an unclosed {q}; quote words with matching ' or \" (no other shell syntax)")),
    };
    let Some(program) = find(&argv[0]) else {
        return err(format!("{source}={value:?}: {:?} is not found or not executable (give a path, or a name in PATH); the validator must exist where config-reloader runs", argv[0]));
    };
    Ok(Validate {
        argv,
        program,
        timeout,
    })
}

/// `name` itself if it holds a `/`, else the first executable file of that name in PATH.
fn find(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return runnable(Path::new(name)).then(|| PathBuf::from(name));
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|d| d.join(name))
        .find(|p| runnable(p))
}

/// The run in flight.
struct Running {
    pid: Pid,
    out: Option<UnixStream>,
    head: Vec<u8>,
    started: Instant,
    reload: Reload,
    due: Due,
}

/// A validation that ended: the reload it was for, its `validate` step filled in, and the
/// settle that reload came from.
#[derive(Debug)]
pub struct Validated {
    pub validation: Validation,
    pub reload: Reload,
    pub due: Due,
}

/// The validation command and its one run at a time.
pub struct Validator {
    cmd: Validate,
    running: Option<Running>,
}

impl Validator {
    pub fn new(cmd: Validate) -> Validator {
        Validator { cmd, running: None }
    }

    /// The pid of the run in flight, for the `info` line.
    pub fn pid(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.pid.get())
    }

    /// Starts validating the content of `reload`, which the settle `due` found, killing a
    /// run still in flight. `Some` when it could not even start.
    pub fn start(&mut self, reload: Reload, due: Due, log: &Logger) -> Option<Validated> {
        if self.cancel() {
            log.debug("newer content: the validation in flight is killed", &[]);
        }
        let started = Instant::now();
        match self.spawn() {
            Ok((pid, out)) => {
                log.debug("validating", &[("pid", pid.get().into())]);
                self.running = Some(Running {
                    pid,
                    out: Some(out),
                    head: Vec::new(),
                    started,
                    reload,
                    due,
                });
                None
            }
            Err(e) => Some(self.report(
                Validation::NotStarted {
                    error: e.to_string(),
                },
                reload,
                due,
                log,
            )),
        }
    }

    fn spawn(&self) -> io::Result<(Pid, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let theirs = OwnedFd::from(theirs);
        let mut cmd = Command::new(&self.cmd.program);
        cmd.arg0(&self.cmd.argv[0])
            .args(&self.cmd.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(theirs.try_clone()?))
            .stderr(Stdio::from(theirs))
            .process_group(0);
        sys::unblock_signals_on_exec(&mut cmd);
        let child = cmd.spawn()?;
        let raw = i32::try_from(child.id()).unwrap_or(0);
        // Reaped by the loop's SIGCHLD arm, never through std's handle.
        drop(child);
        let pid = Pid::new(raw).ok_or_else(|| io::Error::other("started with an unusable pid"))?;
        Ok((pid, ours))
    }

    /// Kills the run in flight and its process group, if any; true if there was one. Its exit
    /// is reaped later as an unknown child.
    pub fn cancel(&mut self) -> bool {
        let Some(r) = self.running.take() else {
            return false;
        };
        let _ = sys::kill_group(r.pid, libc::SIGKILL);
        true
    }

    /// The loop reaped `pid`: if it was the run in flight, what it found (logged).
    pub fn exited(&mut self, pid: i32, exit: Exit, log: &Logger) -> Option<Validated> {
        if self.pid() != Some(pid) {
            return None;
        }
        let mut r = self.running.take()?;
        // What it wrote before it exited is in the socket now.
        drain(&mut r);
        // Its children may live on in its group, holding the config or the socket.
        let _ = sys::kill_group(r.pid, libc::SIGKILL);
        let validation = match exit {
            Exit::Code(0) => Validation::Passed,
            exit => Validation::Failed {
                exit,
                output: first_lines(&r.head),
            },
        };
        Some(self.report(validation, r.reload, r.due, log))
    }

    /// Logs what a validation found: debug when it passed, one error line otherwise.
    fn report(&self, v: Validation, mut reload: Reload, due: Due, log: &Logger) -> Validated {
        let command = self.cmd.argv[0].as_str().into();
        match &v {
            Validation::Passed => log.debug("validation passed", &[("command", command)]),
            Validation::Failed { exit, output } => {
                let status = match exit {
                    Exit::Code(c) => format!("exit {c}"),
                    Exit::Signal(s) => format!("signal {s}"),
                };
                log.error(
                    "validation failed; not reloading",
                    &[
                        ("command", command),
                        ("status", status.into()),
                        ("output", output.as_str().into()),
                        ("hint", "fix the config; the next change is validated again".into()),
                    ],
                );
            }
            Validation::TimedOut { after } => log.error(
                "validation timed out; killed it, not reloading",
                &[
                    ("command", command),
                    ("timeout", log::seconds(*after).into()),
                    ("hint", "raise RELOAD_VALIDATE_TIMEOUT if the check is slow; the next change is validated again".into()),
                ],
            ),
            Validation::NotStarted { error } => log.error(
                "validation command cannot be started; not reloading",
                &[("command", command), ("error", error.as_str().into())],
            ),
        }
        reload.validate = v.step();
        Validated {
            validation: v,
            reload,
            due,
        }
    }
}

/// Reads what is there, keeping the first [`HEAD`] bytes; drops the socket at EOF or error.
/// At most [`READS`] reads: a writer faster than us must not keep the loop from its signals.
fn drain(r: &mut Running) {
    let mut buf = [0u8; 4096];
    for _ in 0..READS {
        let Some(out) = &mut r.out else { return };
        match out.read(&mut buf) {
            Ok(0) => r.out = None,
            Ok(n) => {
                let room = HEAD.saturating_sub(r.head.len());
                r.head.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => r.out = None,
        }
    }
}

/// The first [`LINES`] non-empty lines of `head`, joined by ` | ` on one line.
pub fn first_lines(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .take(LINES)
        .collect();
    lines.join(" | ")
}

impl Validator {
    /// The socket of the run in flight while it may still write.
    pub fn interest(&self) -> Option<Interest<'_>> {
        let out = self.running.as_ref()?.out.as_ref()?;
        Some(Interest::read(out.as_fd()))
    }

    /// When the run in flight times out.
    pub fn deadline(&self) -> Option<Instant> {
        Some(self.running.as_ref()?.started + self.cmd.timeout)
    }

    /// After a wait: reads its output; past the timeout, kills it and reports it failed.
    pub fn advance(&mut self, ready: Ready, now: Instant, log: &Logger) -> Option<Validated> {
        let r = self.running.as_mut()?;
        if ready.read {
            drain(r);
        }
        if now < r.started + self.cmd.timeout {
            return None;
        }
        let _ = sys::kill_group(r.pid, libc::SIGKILL);
        let r = self.running.take()?;
        let after = self.cmd.timeout;
        Some(self.report(Validation::TimedOut { after }, r.reload, r.due, log))
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
