//! Whether a process can take a signal without dying, judged per thread.
//!
//! SIGHUP's default action terminates a process, so before sending we read how the target
//! handles the signal (proc(5)). `SigCgt` and `SigIgn` are process-wide; `SigBlk` is per
//! thread, and a process-directed signal goes to any thread that does not block it. A thread
//! sleeping in `sigwait`/`sigwaitinfo`/`sigtimedwait` (tini, dumb-init, Python's
//! `signal.sigwait`) has the waited signals taken OUT of its blocked mask for the wait (the
//! kernel keeps them in `real_blocked`, which `/proc` does not show), so such a thread is
//! recognised by its `wchan`, `do_sigtimedwait`. Safe = caught or ignored, or every thread
//! blocks the signal or waits for it.
//!
//! What it cannot see: a thread in sigwait for *other* signals, with this one left unblocked,
//! looks the same as one waiting for it (`real_blocked` is not in `/proc`).

use std::fs;
use std::io;

use crate::signal::Signal;
use crate::sys::{self, Pid};

/// How a process as a whole would take a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// A handler is installed (`SigCgt`).
    Caught,
    /// Ignored (`SigIgn`): harmless, but reloads nothing.
    Ignored,
    /// Every thread blocks it: it queues for a signalfd or a later sigwait.
    Blocked,
    /// Every thread blocks it or sleeps in sigwait for it, and at least one sleeps.
    Waited,
    /// Some thread neither blocks nor waits for it, and there is no handler.
    Default,
    /// Some thread neither blocks it nor can be seen to wait for it (its `wchan` is unreadable).
    Unknown,
}

impl Handling {
    /// Lower-case name for log lines and `--check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Caught => "caught",
            Handling::Ignored => "ignored",
            Handling::Blocked => "blocked",
            Handling::Waited => "waited",
            Handling::Default => "default",
            Handling::Unknown => "unknown",
        }
    }
}

/// What one thread does with the signal right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thread {
    /// In its `SigBlk`.
    Blocks,
    /// Not blocked, and the thread sleeps in `do_sigtimedwait`.
    Waits,
    /// Not blocked, and the thread is elsewhere: the signal may land here.
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
}

/// The pure rule: caught or ignored process-wide, else every thread blocks or waits.
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
        None => (Handling::Blocked, None),
    }
}

impl Verdict {
    /// Whether the signal may be sent (`force`: RELOAD_FORCE, the operator's word).
    pub fn sends(&self, force: bool) -> bool {
        force || !matches!(self.handling, Handling::Default | Handling::Unknown)
    }

    /// Why, in one sentence for the log and `--check`.
    pub fn reason(&self) -> String {
        let sig = self.signal.name();
        let tid = self.tid.map_or_else(String::new, |t| t.to_string());
        match self.handling {
            Handling::Caught => format!("it has a handler for {sig}"),
            Handling::Ignored => format!("it ignores {sig}: harmless, but the app will not reload"),
            Handling::Blocked => format!("every thread blocks {sig}, so it waits for a signalfd or sigwait"),
            Handling::Waited => format!("thread {tid} waits for signals in sigwait and every other thread blocks or waits for {sig}"),
            Handling::Default if self.ns_init => format!("it is PID 1 of its PID namespace with no handler for {sig}, and no thread blocks or waits for it, so the kernel would drop the signal and nothing would reload"),
            Handling::Default if self.signal.ignored_by_default() => format!("no handler for {sig}, whose default action is to do nothing, so nothing would reload"),
            Handling::Default => format!("thread {tid} neither blocks nor waits for {sig} and there is no handler, so its default action would terminate the app"),
            Handling::Unknown => format!("thread {tid} does not block {sig} and where it sleeps cannot be read (its wchan reads 0: no ptrace access to it, or a kernel without kallsyms), so the signal might terminate the app; set RELOAD_FORCE=true if you know it waits for {sig}"),
        }
    }
}

/// Reads how `pid` would take `sig` now: its status, then every thread's `SigBlk` and, for a
/// thread that does not block it, its `wchan`. Any process's status is readable; `wchan`
/// needs ptrace read access (same UID, or CAP_SYS_PTRACE) and reads `0` without it.
pub fn judge(pid: Pid, sig: Signal) -> io::Result<Verdict> {
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
            // A thread that exits while we look blocks nothing any more: skip it.
            if let Some(state) = thread_state(pid, tid, sig) {
                threads.push((tid, state));
            }
        }
    }
    let (handling, tid) = decide(caught, ignored, &threads, sig);
    Ok(Verdict {
        handling,
        ns_init,
        tid,
        signal: sig,
    })
}

/// `None` when the thread is gone.
fn thread_state(pid: Pid, tid: i32, sig: Signal) -> Option<Thread> {
    let dir = format!("/proc/{}/task/{tid}", pid.get());
    let status = sys::read_small(&format!("{dir}/status")).ok()?;
    let blocked =
        status_field(&status, "SigBlk").and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    if blocked & sig.bit() != 0 {
        return Some(Thread::Blocks);
    }
    // wchan reads 0 while the thread runs, e.g. tini between two sigtimedwait calls: look
    // again a few times before calling it unreadable.
    for _ in 0..3 {
        match sys::read_small(&format!("{dir}/wchan")) {
            Ok(w) if w.starts_with(b"do_sigtimedwait") => return Some(Thread::Waits),
            Ok(w) if !w.is_empty() && w != b"0" => return Some(Thread::Exposed),
            Ok(_) => std::thread::yield_now(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => break,
        }
    }
    Some(Thread::Unreadable)
}

/// The value of `Name:\tvalue` in a `/proc` status file, as text.
fn status_field<'a>(status: &'a [u8], name: &str) -> Option<&'a str> {
    status.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(name.as_bytes())?.strip_prefix(b":")?;
        std::str::from_utf8(rest).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUP: Signal = Signal::HUP;

    #[test]
    fn caught_or_ignored_wins_whatever_the_threads_do() {
        let exposed = [(7, Thread::Exposed)];
        assert_eq!(decide(1, 0, &exposed, HUP), (Handling::Caught, None));
        assert_eq!(decide(0, 1, &exposed, HUP), (Handling::Ignored, None));
        assert_eq!(decide(1 << 63, 0, &exposed, Signal(64)).0, Handling::Caught);
    }

    #[test]
    fn one_exposed_thread_is_enough_to_refuse() {
        // The multithreaded victim: the main thread blocks SIGHUP, a worker does not.
        let threads = [(10, Thread::Blocks), (11, Thread::Exposed)];
        assert_eq!(decide(0, 0, &threads, HUP), (Handling::Default, Some(11)));
        let threads = [(10, Thread::Waits), (11, Thread::Unreadable)];
        assert_eq!(decide(0, 0, &threads, HUP), (Handling::Unknown, Some(11)));
    }

    #[test]
    fn every_thread_blocking_or_waiting_is_safe() {
        assert_eq!(
            decide(0, 0, &[(1, Thread::Blocks), (2, Thread::Blocks)], HUP),
            (Handling::Blocked, None)
        );
        // tini, dumb-init: one thread, in sigtimedwait, SigBlk 0 for the wait.
        assert_eq!(
            decide(0, 0, &[(1, Thread::Waits)], HUP),
            (Handling::Waited, Some(1))
        );
        assert_eq!(
            decide(0, 0, &[(1, Thread::Blocks), (2, Thread::Waits)], HUP),
            (Handling::Waited, Some(2))
        );
    }

    #[test]
    fn verdicts_send_only_when_safe_unless_forced() {
        let v = |handling, ns_init| Verdict {
            handling,
            ns_init,
            tid: Some(5),
            signal: HUP,
        };
        assert!(v(Handling::Waited, true).sends(false));
        assert!(!v(Handling::Default, false).sends(false));
        assert!(v(Handling::Default, false).sends(true));
        assert!(!v(Handling::Unknown, false).sends(false));
        assert!(v(Handling::Unknown, false)
            .reason()
            .contains("RELOAD_FORCE"));
        assert!(v(Handling::Default, true)
            .reason()
            .contains("kernel would drop"));
        assert!(v(Handling::Default, false).reason().contains("terminate"));
    }

    #[test]
    fn our_own_status_is_readable_and_the_test_harness_threads_are_seen() {
        // The test harness does not handle SIGUSR2 and its threads do not block it.
        let me = std::process::id() as i32;
        let status = fs::read(format!("/proc/{me}/status")).unwrap();
        assert!(status_field(&status, "SigCgt").is_some());
        assert_eq!(
            status_field(&status, "NSpid")
                .map(str::trim)
                .map(|s| s.split_whitespace().count() >= 1),
            Some(true)
        );
    }
}
