//! Signals: their names and numbers, the set we block for the signalfd, and the send itself
//! (through a pidfd where there is one). Whether a process can take a signal is `verdict`'s
//! question; whom to send to, `target`'s.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys::{self, Pid, SigSet};

/// A signal number, 1-64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(pub i32);

/// Standard signal names without their `SIG` prefix, at index `number - 1` (Linux x86/arm).
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// SIGRTMIN as glibc programs (and `kill -l`) see it: the kernel's 32 and 33 are reserved by
/// glibc's threading, so glibc apps number real-time signals from 34. musl reserves one more,
/// which is why we do not use libc::SIGRTMIN() of our own (static musl) binary.
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

impl Signal {
    /// SIGHUP, what the default reload signal's text (`settings`) parses to; the parser takes
    /// the default from that text, so only tests name it.
    #[cfg(test)]
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// SIGKILL, refused as a reload signal.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// SIGSTOP, refused as a reload signal.
    pub const STOP: Signal = Signal(libc::SIGSTOP);

    /// Parses `SIGHUP`, `HUP`, `hup`, `1`, `SIGRTMIN+2`, `RTMAX-1`; `None` if not a signal 1-64.
    pub fn parse(s: &str) -> Option<Signal> {
        if let Ok(n) = s.parse::<i32>() {
            return (1..=64).contains(&n).then_some(Signal(n));
        }
        let upper = s.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(i) = NAMES.iter().position(|n| *n == name) {
            return Some(Signal(i as i32 + 1));
        }
        match name {
            "POLL" => return Some(Signal(libc::SIGIO)),
            "IOT" => return Some(Signal(libc::SIGABRT)),
            "RTMIN" => return Some(Signal(RTMIN)),
            "RTMAX" => return Some(Signal(RTMAX)),
            _ => {}
        }
        let offset = |rest: &str| {
            rest.parse::<i32>()
                .ok()
                .filter(|n| (0..=RTMAX - RTMIN).contains(n))
        };
        if let Some(n) = name.strip_prefix("RTMIN+").and_then(offset) {
            return Some(Signal(RTMIN + n));
        }
        if let Some(n) = name.strip_prefix("RTMAX-").and_then(offset) {
            return Some(Signal(RTMAX - n));
        }
        None
    }

    /// The conventional name: `SIGHUP`, `SIGRTMIN+2`, or the number for 32/33.
    pub fn name(self) -> String {
        match self.0 {
            n @ 1..=31 => format!("SIG{}", NAMES[n as usize - 1]),
            RTMIN => "SIGRTMIN".to_string(),
            RTMAX => "SIGRTMAX".to_string(),
            n if n > RTMIN && n < RTMAX => format!("SIGRTMIN+{}", n - RTMIN),
            n => n.to_string(),
        }
    }

    /// Whether the default action is to do nothing (signal(7)): such a signal never kills,
    /// but reloads nothing either.
    pub fn ignored_by_default(self) -> bool {
        matches!(
            self.0,
            libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH
        )
    }

    pub fn bit(self) -> u64 {
        1u64 << (self.0 - 1)
    }
}

/// Every signal but the ones a fault raises synchronously (and SIGKILL/SIGSTOP, which cannot
/// be blocked): blocked, they wait in the signalfd instead of running a default action, so a
/// stray SIGHUP or SIGPIPE in a shared PID namespace cannot end us (as catatonit does).
pub fn blocked() -> SigSet {
    let faults = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGABRT,
    ];
    let all: Vec<i32> = (1..=64).filter(|s| !faults.contains(s)).collect();
    SigSet::of(&all)
}

/// A process pinned for the send: through a pidfd whenever the kernel and seccomp allow one,
/// so a pid reused since the scan is never hit; else only by pid.
#[derive(Debug)]
pub struct Recipient {
    /// The process.
    pub pid: Pid,
    /// Its pidfd, `None` where pidfd_open is unavailable (ENOSYS) or refused (EPERM).
    pub pidfd: Option<OwnedFd>,
}

/// Sends `sig`; the error is the send's own errno (EPERM, ESRCH: the process is gone).
pub fn send(to: &Recipient, sig: Signal) -> io::Result<()> {
    match &to.pidfd {
        Some(fd) => sys::pidfd_send_signal(fd.as_fd(), sig.0),
        None => sys::kill(to.pid, sig.0),
    }
}

/// The errno's name for log lines (`EPERM`), or the error's text when it has no errno.
pub fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ESRCH) => "ESRCH",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOENT) => "ENOENT",
        Some(n) => return format!("errno{n}"),
        None => return e.kind().to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in 1..=64 {
            let s = Signal(n);
            assert_eq!(Signal::parse(&s.name()), Some(s), "{}", s.name());
        }
        assert_eq!(Signal(36).name(), "SIGRTMIN+2");
        assert_eq!(Signal::parse("rtmax-2"), Some(Signal(62)));
        for bad in ["SIGRTMIN+31", "SIGFOO", "", "-1", "0", "65"] {
            assert_eq!(Signal::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn faults_stay_unblocked_and_everything_else_is_blocked() {
        let set = blocked();
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGABRT,
        ] {
            assert_eq!(set.0 & 1 << (s - 1), 0, "{s}");
        }
        for s in [
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGPIPE,
            libc::SIGTERM,
            libc::SIGCHLD,
            64,
        ] {
            assert_ne!(set.0 & 1 << (s - 1), 0, "{s}");
        }
    }
}
