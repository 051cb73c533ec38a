//! Signals: names and numbers, what a target does with a signal, and sending it safely.
//!
//! SIGHUP's default action terminates a process. A sidecar that sends it to an app without a
//! handler kills the very app it was meant to reload, so before sending we read the target's
//! `SigBlk`, `SigIgn` and `SigCgt` masks from `/proc/PID/status` (proc(5)).

use alloc::format;
use alloc::string::{String, ToString};

use crate::sys;

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
    /// SIGHUP, the default reload signal.
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
}

/// What a process does with a given signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// A handler is installed (SigCgt).
    Caught,
    /// Blocked, so it queues for sigwait/signalfd (SigBlk): how many modern apps handle it.
    Blocked,
    /// Ignored (SigIgn): sending it is harmless but reloads nothing.
    Ignored,
    /// Default action: for SIGHUP, termination (for PID 1 the kernel drops it instead).
    Default,
}

/// The signal masks of one process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispositions {
    /// `SigBlk`: blocked signals.
    pub blocked: u64,
    /// `SigIgn`: ignored signals.
    pub ignored: u64,
    /// `SigCgt`: signals with a handler.
    pub caught: u64,
}

impl Dispositions {
    /// Extracts the three masks from the text of `/proc/PID/status`; `None` if any is missing.
    pub fn parse(status: &str) -> Option<Dispositions> {
        let mut d = Dispositions::default();
        let mut seen = 0;
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let slot = match key {
                "SigBlk" => &mut d.blocked,
                "SigIgn" => &mut d.ignored,
                "SigCgt" => &mut d.caught,
                _ => continue,
            };
            *slot = u64::from_str_radix(value.trim(), 16).ok()?;
            seen += 1;
        }
        (seen == 3).then_some(d)
    }

    /// How `sig` would be handled; bit `signum - 1` of each mask.
    pub fn handling(&self, sig: Signal) -> Handling {
        let bit = 1u64 << (sig.0 - 1);
        if self.caught & bit != 0 {
            Handling::Caught
        } else if self.blocked & bit != 0 {
            Handling::Blocked
        } else if self.ignored & bit != 0 {
            Handling::Ignored
        } else {
            Handling::Default
        }
    }
}

/// Reads the dispositions of `pid`. Any process's status is readable, whatever its UID.
pub fn dispositions(pid: i32) -> Result<Dispositions, sys::Error> {
    let text = sys::read_text(format!("/proc/{pid}/status").as_bytes())?;
    Dispositions::parse(&text).ok_or(sys::Error::Invalid(
        "no SigCgt/SigBlk/SigIgn in /proc/PID/status",
    ))
}

/// Sends `sig` to `pid` only if it is still the process that started at `start_time`.
///
/// PIDs are reused: between our `/proc` scan and the send, the target may exit and an
/// unrelated process may take its pid. A pidfd pins the process; re-reading its start time
/// through `/proc` after opening the pidfd proves it is the one we scanned. If the kernel lacks
/// pidfds (before 5.3) we fall back to kill(2).
pub fn send(pid: i32, start_time: u64, sig: Signal) -> Result<(), sys::Error> {
    // Never broadcast: pid 0 and negatives address process groups, -1 every process we may signal.
    if pid <= 0 || pid == sys::getpid() {
        return Err(sys::Error::Invalid(
            "refusing to signal pid <= 0 or ourselves",
        ));
    }
    match sys::pidfd_open(pid) {
        Ok(fd) => {
            if crate::target::start_time(pid)? != start_time {
                return Err(sys::Errno(libc::ESRCH).into());
            }
            Ok(sys::pidfd_send_signal(&fd, sig.0)?)
        }
        Err(sys::Errno(libc::ENOSYS)) => Ok(sys::kill(pid, sig.0)?),
        Err(e) => Err(e.into()),
    }
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
        assert_eq!(Signal(1).name(), "SIGHUP");
        assert_eq!(Signal(10).name(), "SIGUSR1");
        assert_eq!(Signal(36).name(), "SIGRTMIN+2");
        assert_eq!(Signal::parse("rtmax-2"), Some(Signal(62)));
        assert_eq!(Signal::parse("SIGRTMIN+31"), None);
        assert_eq!(Signal::parse("SIGFOO"), None);
        assert_eq!(Signal::parse(""), None);
        assert_eq!(Signal::parse("-1"), None);
    }

    // Lines as the kernel prints them (nginx master: HUP, USR1, ... caught).
    const STATUS: &str = "Name:\tnginx\nState:\tS (sleeping)\nSigQ:\t0/95426\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t00000001b8014a07\n";

    #[test]
    fn sigcgt_is_decoded_bit_signum_minus_one() {
        let d = Dispositions::parse(STATUS).expect("parses");
        assert_eq!(d.caught, 0x1b8014a07);
        assert_eq!(d.handling(Signal::HUP), Handling::Caught);
        assert_eq!(d.handling(Signal(libc::SIGUSR1)), Handling::Caught);
        assert_eq!(d.handling(Signal(libc::SIGPIPE)), Handling::Ignored);
        assert_eq!(d.handling(Signal(libc::SIGUSR2)), Handling::Caught);
        assert_eq!(d.handling(Signal(libc::SIGQUIT)), Handling::Caught);
        assert_eq!(d.handling(Signal(libc::SIGTRAP)), Handling::Default);
        assert_eq!(d.handling(Signal(64)), Handling::Default);
    }

    #[test]
    fn blocked_counts_as_handled_and_caught_wins() {
        let d = Dispositions {
            blocked: 1,
            ignored: 1,
            caught: 0,
        };
        assert_eq!(d.handling(Signal::HUP), Handling::Blocked);
        let d = Dispositions {
            blocked: 0,
            ignored: 0,
            caught: 1 << 63,
        };
        assert_eq!(d.handling(Signal(64)), Handling::Caught);
        assert_eq!(d.handling(Signal::HUP), Handling::Default);
    }

    #[test]
    fn incomplete_status_is_rejected() {
        assert_eq!(Dispositions::parse("SigBlk:\t0\nSigIgn:\t0\n"), None);
        assert_eq!(
            Dispositions::parse("SigBlk:\tzz\nSigIgn:\t0\nSigCgt:\t0\n"),
            None
        );
    }

    #[test]
    fn our_own_dispositions_are_readable() {
        let d = dispositions(std::process::id() as i32).expect("own status");
        // The Rust runtime ignores SIGPIPE.
        assert_eq!(d.handling(Signal(libc::SIGPIPE)), Handling::Ignored);
    }

    #[test]
    fn never_signals_broadcast_pids_or_itself() {
        for pid in [0, -1, -42, std::process::id() as i32] {
            // Signal 0 delivers nothing, so even a broken guard could not hurt the test run.
            let e = send(pid, 0, Signal(0)).expect_err("must refuse");
            assert!(
                e.raw_os_error().is_none(),
                "pid {pid} reached the kernel: {e}"
            );
        }
    }
}
