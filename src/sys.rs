//! The few syscalls neither std nor the `inotify` crate offers: signal masks and signalfd,
//! the terminal's foreground group and the subreaper bit for the app, `ppoll`, pidfds and `kill`, `openat` under `/proc`, `statfs`, `waitpid`, and a non-blocking
//! TCP connect. Every `unsafe` of the crate is here, one syscall per wrapper, with typed
//! arguments; what an error means is the caller's call.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A process we may signal: a positive pid that is not our own, so no call through this type
/// can broadcast (pid 0 and negatives address process groups, -1 everyone) or hit us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(i32);

impl Pid {
    /// `None` for 0, negatives and our own pid.
    pub fn new(raw: i32) -> Option<Pid> {
        // musl makes getpid a syscall each time, and the /proc scan asks once per process.
        static OWN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let own = *OWN.get_or_init(std::process::id);
        (raw > 0 && raw.unsigned_abs() != own).then_some(Pid(raw))
    }

    /// The number.
    pub fn get(self) -> i32 {
        self.0
    }
}

/// A set of signals 1-64, bit `signum - 1`: the kernel's own `sigset_t` layout (64 bits on
/// every architecture we build for), passed to the raw syscalls so no libc call has to fill it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigSet(pub u64);

impl SigSet {
    /// The set holding exactly `signals` (numbers outside 1-64 are left out).
    pub fn of(signals: &[i32]) -> SigSet {
        SigSet(
            signals
                .iter()
                .filter(|s| (1..=64).contains(*s))
                .fold(0, |set, s| set | 1 << (s - 1)),
        )
    }
}

/// Size of the kernel's sigset, the last argument of rt_sigprocmask and signalfd4.
const SIGSET_SIZE: libc::size_t = 8;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Blocks `set` in the calling thread (we have only one), so those signals wait in a signalfd
/// instead of running their default action.
pub fn block_signals(set: SigSet) -> io::Result<()> {
    // SAFETY: rt_sigprocmask reads 8 bytes from a live u64 and writes nothing (null old set).
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &set.0 as *const u64,
            std::ptr::null_mut::<u64>(),
            SIGSET_SIZE,
        )
    })
    .map(drop)
}

/// Makes the child `cmd` starts begin with no signal blocked. std hands a child the
/// parent's mask (it stopped resetting it: "Inherit the signal mask from the parent rather than
/// resetting it", library/std/src/sys/process/unix/unix.rs), and ours blocks nearly every
/// signal for the signalfd: an app that never sets its own mask (sleep, a shell script, most
/// interpreters) would be deaf to the SIGTERM we forward.
pub fn unblock_signals_on_exec(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe calls
    // may run: rt_sigprocmask is one (signal-safety(7)); it reads 8 bytes from a live u64.
    unsafe {
        cmd.pre_exec(|| {
            let none = 0u64;
            check(libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &none as *const u64,
                std::ptr::null_mut::<u64>(),
                SIGSET_SIZE,
            ))
            .map(drop)
        });
    }
}

/// Makes the child `cmd` starts the foreground process group of the terminal on its stdin,
/// as tini does: then the terminal's Ctrl-C (SIGINT to the foreground group) reaches the app
/// alone, once, and the app may read the terminal. Runs after std has put the child in a group
/// of its own (`process_group(0)`) and before the hook that clears its signal mask: until then
/// our mask blocks SIGTTOU, which tcsetpgrp from a background group would otherwise raise.
/// Its error (ENOTTY: stdin is no terminal of ours) is ignored: the app runs either way.
pub fn foreground_on_exec(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe calls
    // may run: getpgrp and tcsetpgrp are (signal-safety(7)); both take and return integers.
    unsafe {
        cmd.pre_exec(|| {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
            Ok(())
        });
    }
}

/// Registers us as a child subreaper (PR_SET_CHILD_SUBREAPER, Linux 3.4): orphans of the app
/// are re-parented to us, not to PID 1, so we reap them when we are not PID 1 ourselves.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes integers and touches no memory of ours.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }.into()).map(drop)
}

/// A new non-blocking, close-on-exec signalfd reading the (blocked) signals of `set`.
pub fn signalfd(set: SigSet) -> io::Result<OwnedFd> {
    // SAFETY: signalfd4 reads 8 bytes from a live u64; on success the returned fd is new and
    // ours alone, so OwnedFd may own and close it.
    unsafe {
        let fd = check(libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &set.0 as *const u64,
            SIGSET_SIZE,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd as RawFd))
    }
}

/// What `ppoll` found for one fd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Readable (or hung up / in error: a read surfaces which).
    pub read: bool,
    /// Writable (a non-blocking connect finished, well or badly).
    pub write: bool,
}

/// What to wait for on one fd.
#[derive(Clone, Copy, Debug)]
pub struct Interest<'a> {
    /// The fd.
    pub fd: BorrowedFd<'a>,
    /// Wake when it is writable, not when it is readable.
    pub write: bool,
    /// Wake only on priority data (`POLLPRI`: a change of `/proc/self/mountinfo`), reported as
    /// readable.
    pub priority: bool,
}

impl<'a> Interest<'a> {
    /// Wake when `fd` is readable.
    pub fn read(fd: BorrowedFd<'a>) -> Interest<'a> {
        Interest {
            fd,
            write: false,
            priority: false,
        }
    }

    /// Wake when `fd` is writable.
    pub fn write(fd: BorrowedFd<'a>) -> Interest<'a> {
        Interest {
            write: true,
            ..Interest::read(fd)
        }
    }

    /// Wake when `fd` has priority data.
    pub fn priority(fd: BorrowedFd<'a>) -> Interest<'a> {
        Interest {
            priority: true,
            ..Interest::read(fd)
        }
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: for ever).
///
/// `ppoll` for its nanosecond timeout: a debounce of a few ms rounded to whole ms the wrong
/// way would wake us early for nothing. EINTR (no signal is unblocked, but a stop/continue
/// can still interrupt) reads as "nothing ready".
pub fn ppoll(fds: &[Interest<'_>], timeout: Option<Duration>) -> io::Result<Vec<Ready>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|i| libc::pollfd {
            fd: i.fd.as_raw_fd(),
            events: match (i.write, i.priority) {
                (_, true) => libc::POLLPRI,
                (true, _) => libc::POLLOUT,
                _ => libc::POLLIN,
            },
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as _,
        // Below 10^9, so it fits c_long everywhere; `.into()` did not build where c_long is
        // i32 (armv7).
        tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: pfds is a live array of pfds.len() pollfds; ts_ptr is null or a live timespec;
    // a null sigmask keeps the current one.
    let n = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if n == -1 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        pfds.iter_mut().for_each(|p| p.revents = 0);
    }
    let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
    Ok(pfds
        .iter()
        .map(|p| Ready {
            read: p.revents & (libc::POLLIN | libc::POLLPRI | bad) != 0,
            write: p.revents & (libc::POLLOUT | bad) != 0,
        })
        .collect())
}

/// A pidfd for `pid` (pidfd_open(2), Linux 5.3): it keeps naming the same process even if
/// the pid is reused after that process exits.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; on success the fd is new and ours alone.
    unsafe {
        let fd = check(libc::syscall(libc::SYS_pidfd_open, pid.get(), 0))?;
        Ok(OwnedFd::from_raw_fd(fd as RawFd))
    }
}

/// Sends `sig` to the process behind `pidfd` (pidfd_send_signal(2), Linux 5.1).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a live pidfd, a signal number, a null siginfo (kill(2) semantics) and flags 0.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Sends `sig` to one process with kill(2).
pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours; `Pid` is never <= 0.
    check(unsafe { libc::kill(pid.get(), sig) }.into()).map(drop)
}

/// Sends `sig` to every process of the group `pgid` leads (kill(2) with `-pgid`): a
/// validation command started in a group of its own, with whatever it forked.
pub fn kill_group(pgid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours; `Pid` is never <= 0,
    // so `-pgid` names one group, never every process (-1) or our own group (0).
    check(unsafe { libc::kill(-pgid.get(), sig) }.into()).map(drop)
}

/// Opens `path` read-only, close-on-exec and non-blocking (a fifo must not hang us), relative
/// to the directory `dir` or, without one, to the working directory. One syscall: the `/proc`
/// scan opens `PID/comm` under one `/proc` fd instead of walking `/proc` again for every
/// process, and std's `File::open` on musl adds an `fcntl` to every open.
pub fn open_at(dir: Option<BorrowedFd<'_>>, path: &CStr) -> io::Result<OwnedFd> {
    let dir = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: a live directory fd (or AT_FDCWD) and a NUL-terminated path that outlives the
    // call; on success the fd is new and ours alone.
    unsafe {
        let fd = check(libc::openat(dir, path.as_ptr(), flags).into())?;
        Ok(OwnedFd::from_raw_fd(fd as RawFd))
    }
}

/// Opens `path` with [`open_at`] as a `File`.
pub fn open(path: &Path) -> io::Result<std::fs::File> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    open_at(None, &path).map(std::fs::File::from)
}

/// A small file of `/proc` in one read (the kernel renders it whole up to a page), with a
/// second read only if it filled the buffer: three syscalls, where `fs::read` makes six.
pub fn read_small(path: &str) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open(Path::new(path))?;
    let mut buf = vec![0; 4096];
    let mut len = 0;
    loop {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    buf.resize(len * 2, 0);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}
/// The filesystem type (`f_type`, a magic number from statfs(2)) that holds `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let mut buf = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of one statfs, which the kernel fills on
    // success; it is read only then.
    let sfs = unsafe {
        check(libc::statfs(path.as_ptr(), buf.as_mut_ptr()).into())?;
        buf.assume_init()
    };
    Ok(sfs.f_type as i64)
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// exit(N)
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Reaps one exited child, any child (orphans re-parented to us included), without waiting:
/// `None` when none has exited. ECHILD (no children at all) is `None` too.
pub fn reap_any() -> io::Result<Option<(i32, Exit)>> {
    let mut status = 0;
    // SAFETY: waitpid writes one int to a live local.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid == -1 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ECHILD) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if pid == 0 {
        return Ok(None);
    }
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Some((pid, exit)))
}

/// A non-blocking, close-on-exec TCP socket connecting to `addr`; ready for writing once the
/// connect finished (then `take_error` tells how). std's connect only blocks.
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) takes integers; on success the fd is new and ours alone.
    let sock = unsafe {
        let fd = check(
            libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
            .into(),
        )?;
        OwnedFd::from_raw_fd(fd as RawFd)
    };
    let raw = RawAddr::from(addr);
    // SAFETY: a live socket fd and a sockaddr of `raw.len()` valid bytes that outlives the call.
    let ret = unsafe { libc::connect(sock.as_raw_fd(), raw.as_ptr(), raw.len()) };
    if ret == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(TcpStream::from(sock))
}

/// A socket address as the kernel takes it.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl From<SocketAddr> for RawAddr {
    fn from(addr: SocketAddr) -> RawAddr {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }
}

impl RawAddr {
    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            RawAddr::V4(a) => std::ptr::from_ref(a).cast(),
            RawAddr::V6(a) => std::ptr::from_ref(a).cast(),
        }
    }

    fn len(&self) -> libc::socklen_t {
        let len = match self {
            RawAddr::V4(_) => std::mem::size_of::<libc::sockaddr_in>(),
            RawAddr::V6(_) => std::mem::size_of::<libc::sockaddr_in6>(),
        };
        len as libc::socklen_t
    }
}
