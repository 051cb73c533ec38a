//! Whether a process can take a signal without dying, judged per thread.
//!
//! SIGHUP's default action terminates a process, so before sending we read how the target
//! handles the signal (proc(5)). `SigCgt` and `SigIgn` are process-wide; `SigBlk` is per
//! thread, and a process-directed signal goes to any live thread that does not block it (a
//! zombie thread, such as a leader that called `pthread_exit`, takes none). A thread sleeping
//! in `sigwait`/`sigwaitinfo`/`sigtimedwait` (tini, dumb-init, Python's `signal.sigwait`) has
//! the waited signals taken OUT of its blocked mask for the wait (the kernel keeps them in
//! `real_blocked`, which `/proc` does not show), so such a thread is recognised by its
//! `wchan`, `do_sigtimedwait`.
//!
//! A mask alone is no evidence: dash around a fork, CPython's `subprocess` and glibc's
//! `posix_spawn` block every signal for a moment, and a signal pending then takes its default
//! action once the mask is restored. Blocked is safe only when something will consume it: a
//! thread waiting for it, or a signalfd of the process whose mask holds it
//! (`/proc/PID/fdinfo/N`, `sigmask:`). A handler is no evidence either when it is a runtime's
//! catch-all (Go, a JVM, Ruby: see `runtime`) rather than the app's.
//!
//! What it cannot see: a thread in sigwait for *other* signals, with this one left unblocked,
//! looks the same as one waiting for it (`real_blocked` is not in `/proc`).

use std::fs;
use std::io;

use crate::runtime::{self, Runtime};
use crate::signal::Signal;
use crate::sys::{self, Pid};

/// How a process as a whole would take a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// A handler is installed (`SigCgt`), and it is not a runtime's catch-all, or the operator
    /// said the app handles it (`RELOAD_TRUST_HANDLER`).
    Caught,
    /// The handler is the catch-all of this runtime: the app may well exit on it.
    Runtime(Runtime),
    /// Ignored (`SigIgn`): harmless, but nothing would reload.
    Ignored,
    /// Every thread blocks it and a signalfd of the process reads it.
    Blocked,
    /// Every thread blocks it, but nothing shows it will be consumed: maybe only a moment.
    Masked,
    /// Every thread blocks it or sleeps in sigwait for it, and at least one sleeps.
    Waited,
    /// Some thread neither blocks nor waits for it (it runs, or sleeps elsewhere), and there
    /// is no handler.
    Default,
    /// Some thread neither blocks it nor can be seen to wait for it (its `wchan` is unreadable).
    Unknown,
}

impl Handling {
    /// Lower-case name for log lines and `--check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Caught => "caught",
            Handling::Runtime(_) => "runtime",
            Handling::Ignored => "ignored",
            Handling::Blocked => "blocked",
            Handling::Masked => "masked",
            Handling::Waited => "waited",
            Handling::Default => "default",
            Handling::Unknown => "unknown",
        }
    }

    /// Whether a refusal may turn into a send later without anyone changing the app: a mask
    /// that was only a moment, a handler not installed yet, a thread caught between two waits.
    pub fn retried(self) -> bool {
        matches!(
            self,
            Handling::Masked | Handling::Default | Handling::Unknown
        )
    }
}

/// What one thread does with the signal right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thread {
    /// In its `SigBlk`.
    Blocks,
    /// Not blocked, and the thread sleeps in `do_sigtimedwait`.
    Waits,
    /// Not blocked, and the thread runs or sleeps elsewhere: the signal may land here.
    Exposed,
    /// Not blocked, and where the thread sleeps cannot be read.
    Unreadable,
}

/// The judgement on one target, with what it rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// How the process takes the signal.
    pub handling: Handling,
    /// PID 1 of its own PID namespace (`NSpid` ends in 1): the kernel drops a signal it has
    /// no handler for instead of killing it.
    pub ns_init: bool,
    /// The thread that decided a `Default`, `Unknown` or `Waited` handling.
    pub tid: Option<i32>,
    /// The signal judged.
    pub signal: Signal,
    /// The runtime whose handler was trusted on the operator's word (`Caught` only).
    pub trusted: Option<Runtime>,
}

/// The pure rule on the threads: caught or ignored process-wide, else every thread blocks or
/// waits. `Masked` (every thread blocks, none waits) is safe only once a signalfd is found.
pub fn decide(
    caught: u64,
    ignored: u64,
    threads: &[(i32, Thread)],
    sig: Signal,
) -> (Handling, Option<i32>) {
    if caught & sig.bit() != 0 {
        return (Handling::Caught, None);
    }
    if ignored & sig.bit() != 0 {
        return (Handling::Ignored, None);
    }
    let first = |want: Thread| {
        threads
            .iter()
            .find(|(_, t)| *t == want)
            .map(|(tid, _)| *tid)
    };
    if let Some(tid) = first(Thread::Exposed) {
        return (Handling::Default, Some(tid));
    }
    if let Some(tid) = first(Thread::Unreadable) {
        return (Handling::Unknown, Some(tid));
    }
    match first(Thread::Waits) {
        Some(tid) => (Handling::Waited, Some(tid)),
        None => (Handling::Masked, None),
    }
}

/// The evidence beyond the threads, looked up only where it decides: a signalfd for a mask,
/// the runtime behind a handler (unless the operator trusts it).
pub fn refine(
    handling: Handling,
    signalfd: impl FnOnce() -> bool,
    runtime: impl FnOnce() -> Option<Runtime>,
    trust: bool,
) -> (Handling, Option<Runtime>) {
    match handling {
        Handling::Masked if signalfd() => (Handling::Blocked, None),
        Handling::Caught => match runtime() {
            Some(rt) if trust => (Handling::Caught, Some(rt)),
            Some(rt) => (Handling::Runtime(rt), None),
            None => (Handling::Caught, None),
        },
        h => (h, None),
    }
}

impl Verdict {
    /// Whether the signal may be sent (`force`: RELOAD_FORCE, the operator's word).
    pub fn sends(&self, force: bool) -> bool {
        force
            || matches!(
                self.handling,
                Handling::Caught | Handling::Blocked | Handling::Waited
            )
    }

    /// Why, in one sentence for the log and `--check`.
    pub fn reason(&self) -> String {
        let sig = self.signal.name();
        let tid = self.tid.map_or_else(String::new, |t| t.to_string());
        match self.handling {
            Handling::Caught => match self.trusted {
                Some(rt) => format!("it has a handler for {sig}, installed by its runtime ({}), which RELOAD_TRUST_HANDLER says the app uses to reload", rt.as_str()),
                None => format!("it has a handler for {sig}"),
            },
            Handling::Runtime(rt) => format!("its handler for {sig} may not be the app's: {}; set RELOAD_TRUST_HANDLER=true if this app reloads on {sig}, or reload it over HTTP (RELOAD_WEBHOOK_URL)", rt.what()),
            Handling::Ignored => format!("it ignores {sig} (SIG_IGN, as under nohup), so the signal would do nothing there and the app would not reload"),
            Handling::Blocked => format!("every thread blocks {sig} and a signalfd of the process reads it"),
            Handling::Masked => format!("every thread blocks {sig}, but no thread waits for it in sigwait and no signalfd of the process reads it: a mask may last only a moment (around a fork, say), and then the default action would terminate the app"),
            Handling::Waited => format!("thread {tid} waits for signals in sigwait and every other thread blocks or waits for {sig}"),
            Handling::Default if self.ns_init => format!("it is PID 1 of its PID namespace with no handler for {sig}, and no thread blocks or waits for it, so the kernel would drop the signal and nothing would reload"),
            Handling::Default if self.signal.ignored_by_default() => format!("no handler for {sig}, whose default action is to do nothing, so nothing would reload"),
            Handling::Default => format!("thread {tid} neither blocks nor waits for {sig} and there is no handler (yet), so its default action would terminate the app"),
            Handling::Unknown => format!("thread {tid} does not block {sig} and where it sleeps cannot be read (its wchan reads 0: no ptrace access to it, or a kernel without kallsyms), so the signal might terminate the app; set RELOAD_FORCE=true if you know it waits for {sig}"),
        }
    }
}

/// Reads how `pid` would take `sig` now: its status, then every live thread's `SigBlk` and,
/// for a thread that does not block it, its state and `wchan`; then, where they decide, its
/// signalfds and its runtime (`trust`: RELOAD_TRUST_HANDLER). Any process's status is
/// readable; `wchan`, `fd/` and `exe` need ptrace read access (same UID, or CAP_SYS_PTRACE).
pub fn judge(pid: Pid, sig: Signal, trust: bool) -> io::Result<Verdict> {
    let status = sys::read_small(&format!("/proc/{}/status", pid.get()))?;
    let field = |name: &str| status_field(&status, name);
    let mask = |name: &str| field(name).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    let (Some(caught), Some(ignored)) = (mask("SigCgt"), mask("SigIgn")) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no SigCgt/SigIgn in /proc/PID/status",
        ));
    };
    let ns_init = field("NSpid")
        .and_then(|v| v.split_whitespace().last().map(str::to_owned))
        .as_deref()
        == Some("1");
    let mut threads = Vec::new();
    if caught & sig.bit() == 0 && ignored & sig.bit() == 0 {
        for entry in fs::read_dir(format!("/proc/{}/task", pid.get()))? {
            let Some(tid) = entry?
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
            else {
                continue;
            };
            // A thread that exits while we look, or is a zombie, takes nothing: skip it.
            if let Some(state) = thread_state(pid, tid, sig) {
                threads.push((tid, state));
            }
        }
    }
    let (handling, tid) = decide(caught, ignored, &threads, sig);
    let (handling, trusted) = refine(
        handling,
        || signalfd_reads(pid, sig),
        || runtime::of(pid),
        trust,
    );
    Ok(Verdict {
        handling,
        ns_init,
        tid,
        signal: sig,
        trusted,
    })
}

/// `None` when the thread is gone or a zombie.
fn thread_state(pid: Pid, tid: i32, sig: Signal) -> Option<Thread> {
    let dir = format!("/proc/{}/task/{tid}", pid.get());
    let status = sys::read_small(&format!("{dir}/status")).ok()?;
    let state =
        |status: &[u8]| status_field(status, "State").and_then(|s| s.trim_start().bytes().next());
    if matches!(state(&status), Some(b'Z' | b'X')) {
        return None;
    }
    let blocked =
        status_field(&status, "SigBlk").and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    if blocked & sig.bit() != 0 {
        return Some(Thread::Blocks);
    }
    // wchan reads 0 for a thread that runs (or is runnable), and for anyone without ptrace
    // access: the state tells them apart, and a running thread waits for nothing.
    for _ in 0..3 {
        match sys::read_small(&format!("{dir}/wchan")) {
            Ok(w) if w.starts_with(b"do_sigtimedwait") => return Some(Thread::Waits),
            Ok(w) if !w.is_empty() && w != b"0" => return Some(Thread::Exposed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => break,
        }
        match sys::read_small(&format!("{dir}/status"))
            .ok()
            .as_deref()
            .map(state)
        {
            None => return None,
            Some(Some(b'R')) => return Some(Thread::Exposed),
            Some(Some(b'Z' | b'X')) => return None,
            Some(_) => std::thread::yield_now(),
        }
    }
    Some(Thread::Unreadable)
}

/// Whether a signalfd of `pid` has `sig` in its mask: `/proc/PID/fd/N` links to
/// `anon_inode:[signalfd]`, and `/proc/PID/fdinfo/N` lists its mask as `sigmask:` (hex, as
/// `SigBlk`). False when the fds cannot be listed (another UID without CAP_SYS_PTRACE).
fn signalfd_reads(pid: Pid, sig: Signal) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", pid.get())) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let is_signalfd = fs::read_link(fd.path())
            .is_ok_and(|t| t.as_os_str().as_encoded_bytes() == b"anon_inode:[signalfd]");
        is_signalfd
            && sys::read_small(&format!(
                "/proc/{}/fdinfo/{}",
                pid.get(),
                fd.file_name().to_string_lossy()
            ))
            .ok()
            .and_then(|info| {
                let v = status_field(&info, "sigmask")?;
                u64::from_str_radix(v.trim(), 16).ok()
            })
            .is_some_and(|m| m & sig.bit() != 0)
    })
}

/// The value of `Name:\tvalue` in a `/proc` status file, as text.
fn status_field<'a>(status: &'a [u8], name: &str) -> Option<&'a str> {
    status.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(name.as_bytes())?.strip_prefix(b":")?;
        std::str::from_utf8(rest).ok()
    })
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
