//! Whether a stop signal (SIGTERM or SIGINT) waits, blocked, for the loop to read it: asked
//! every [`EVERY`] by the one walk (the fingerprint, a poll stamp, arming a new subtree), which
//! then ends at once so that the loop reads the signal and stops. A walk of a huge tree or a
//! slow filesystem never keeps a stop waiting for more than a few milliseconds (plus the
//! syscall in progress).
//!
//! Read from `/proc/self/status`, never from the signalfd: a read would consume the signal,
//! and a poll would also report the SIGCHLD or SIGHUP that may wait there. Deciding what a stop
//! means is the loop's business, never this module's.

use std::time::Duration;

use crate::sys;

/// How often a long loop asks: well inside the 100 ms a stop may take, and rare enough that
/// the question (one read of `/proc/self/status`, ~20 µs) costs under 1 % of a long walk.
pub const EVERY: Duration = Duration::from_millis(5);

/// Whether SIGTERM or SIGINT is pending: `ShdPnd` (sent to the process, as `kill` does) or
/// `SigPnd` (to this thread). False if `/proc` cannot be read.
pub fn pending() -> bool {
    sys::read_small("/proc/self/status").is_ok_and(|s| stop_in(&s))
}

/// Whether the pending masks of a `/proc/PID/status` text hold SIGTERM or SIGINT.
fn stop_in(status: &[u8]) -> bool {
    let stop = 1u64 << (libc::SIGTERM - 1) | 1u64 << (libc::SIGINT - 1);
    status.split(|&b| b == b'\n').any(|line| {
        let Some(mask) = line
            .strip_prefix(b"ShdPnd:")
            .or_else(|| line.strip_prefix(b"SigPnd:"))
        else {
            return false;
        };
        let hex = String::from_utf8_lossy(mask);
        u64::from_str_radix(hex.trim(), 16).is_ok_and(|m| m & stop != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_or_sigint_in_either_pending_mask_is_a_stop_and_others_are_not() {
        let status = |shd: &str, sig: &str| {
            format!("Name:\tx\nSigPnd:\t{sig}\nShdPnd:\t{shd}\nSigBlk:\tffffffffffffffff\n")
        };
        let none = "0000000000000000";
        assert!(!stop_in(status(none, none).as_bytes()));
        assert!(
            stop_in(status("0000000000004000", none).as_bytes()),
            "SIGTERM, process-wide"
        );
        assert!(
            stop_in(status(none, "0000000000000002").as_bytes()),
            "SIGINT, this thread"
        );
        assert!(
            !stop_in(status("0000000000010001", none).as_bytes()),
            "SIGCHLD and SIGHUP are not"
        );
        assert!(!pending(), "nothing is pending in the test process");
    }
}
