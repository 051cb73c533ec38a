//! Thin wrappers over the few syscalls the standard library and the `inotify` crate lack.
//!
//! Each wrapper makes one `unsafe` call, turns `-1` into `io::Error::last_os_error()` and adds
//! nothing else, so the rest of the program stays safe code.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A set of signals, as used by `sigprocmask` and `signalfd`.
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// A set holding exactly `signals`.
    pub fn of(signals: &[libc::c_int]) -> SigSet {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset only fails for invalid
        // signal numbers, and callers pass libc's constants.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in signals {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            SigSet(set.assume_init())
        }
    }
}

/// Blocks `set` for this (single-threaded) process so the signals queue for a signalfd instead
/// of running their default action.
pub fn block_signals(set: &SigSet) -> io::Result<()> {
    // SAFETY: both pointers are valid for the call; a null old-set pointer is allowed.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set.0, std::ptr::null_mut()) }).map(drop)
}

/// Creates a non-blocking, close-on-exec signalfd that reads the (blocked) signals in `set`.
pub fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new fd; the set pointer is valid for the call.
    let fd = check(unsafe { libc::signalfd(-1, &set.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a signalfd; `Ok(None)` when none is pending.
pub fn read_signalfd(fd: &OwnedFd) -> io::Result<Option<libc::c_int>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is exactly one signalfd_siginfo, the only size signalfd reads accept.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n == -1 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    if n as usize != size {
        return Ok(None);
    }
    // SAFETY: the kernel filled all `size` bytes.
    Ok(Some(unsafe { info.assume_init() }.ssi_signo as libc::c_int))
}

/// Which of the polled fds are readable.
pub struct Ready {
    /// `fds[i]` had POLLIN (or an error condition worth a read to surface it).
    pub readable: [bool; 2],
}

/// Waits until one of two fds is readable or `timeout` passes (`None`: wait forever).
///
/// `ppoll` rather than `poll` for its nanosecond timeout: the debounce may be a few ms and
/// rounding it to whole ms in the wrong direction would wake us early for nothing.
/// EINTR is reported as "nothing ready" so the caller simply loops.
pub fn poll2(fds: [RawFd; 2], timeout: Option<Duration>) -> io::Result<Ready> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: pfds is a valid array of 2 pollfd; ts_ptr is null or points to a live timespec;
    // a null sigmask keeps the current mask.
    let n = unsafe { libc::ppoll(pfds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
    if n == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Ready {
                readable: [false; 2],
            });
        }
        return Err(e);
    }
    let hit = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    Ok(Ready {
        readable: [hit(&pfds[0]), hit(&pfds[1])],
    })
}

/// Opens a pidfd for `pid`: a handle that keeps naming the same process even if the pid is
/// reused after it exits (pidfd_open(2), Linux 5.3).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` to the process behind `pidfd` (pidfd_send_signal(2), Linux 5.1).
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, a null siginfo (kill(2) semantics) and flags 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to one process with kill(2); only for kernels without pidfds.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // Callers must never reach here with pid <= 0 (0 and negatives broadcast to process groups).
    debug_assert!(pid > 0);
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}
