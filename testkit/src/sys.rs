//! Thin syscall wrappers: one `unsafe` call each, `-1 → io::Error::last_os_error()`.

use std::io;

/// CLOCK_MONOTONIC in nanoseconds: the same clock `sigrecord` stamps signals with, so the two
/// can be subtracted (commit → signal latency). Async-signal-safe (signal-safety(7)): sigrecord
/// calls it in its signal handler.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends `sig` to the process `pid`; panics on `pid <= 0`, which would broadcast.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    assert!(
        pid > 0,
        "refusing to kill pid {pid}: it would signal a group or everyone"
    );
    // SAFETY: kill has no memory arguments; pid is a single positive pid.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to the process group `pgid` (which the caller created).
pub(crate) fn kill_group(pgid: i32, sig: i32) -> io::Result<()> {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: kill has no memory arguments; -pgid names one group we created.
    if unsafe { libc::kill(-pgid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
