//! `sigrecord`: a stand-in for the application that the sidecar signals.
//!
//! It records every signal it receives as one line in `--out`, optionally with the content of a
//! config file it re-reads at that moment, so a test can assert both "the app got exactly one
//! SIGHUP" and "the app saw the new content". Its dispositions are chosen by flags so tests can
//! show the sidecar the three kinds of apps it meets: ones that catch the signal with a handler,
//! ones that block it and read a signalfd, and ones that ignore it; `--default` is an app that
//! would be killed by SIGHUP.
//!
//! Output lines (each written with one `write(2)` to an `O_APPEND` file, so lines from the parent
//! and its children never interleave):
//!
//! ```text
//! ready pid=<pid>
//! sig pid=<pid> signo=<n> t_ns=<CLOCK_MONOTONIC ns> content=<percent-escaped bytes|-|ERR:<errno>>
//! exit pid=<pid>
//! ```
//!
//! Caught signals are handled with a self-pipe: the handler only calls `clock_gettime` and
//! `write`, both async-signal-safe (signal-safety(7)), and the main loop does the rest.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use testkit::recorder::sig_line;

const USAGE: &str = "usage: sigrecord --out FILE [--read PATH] [--catch SIGS] [--block SIGS] \
[--ignore SIGS] [--default] [--children N]
  --out FILE      append one line per event to FILE (mandatory)
  --read PATH     on each signal, re-read PATH (following symlinks) and record its content
  --catch SIGS    install handlers for SIGS (comma list: HUP,USR1,RTMIN+2,10); HUP if no
                  --catch/--block/--ignore/--default is given
  --block SIGS    block SIGS and consume them from a signalfd, like signalfd-based apps
  --ignore SIGS   set SIGS to SIG_IGN; they are never recorded
  --default       catch nothing: SIGHUP keeps its default action and kills the process
  --children N    fork N children (same process image and name) that record too
SIGTERM always ends the process cleanly (children first) unless --default or --ignore TERM.";

/// Write end of the self-pipe, read by the signal handler; -1 until set up.
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);

/// One record on the self-pipe: the signal number and the handler's monotonic timestamp.
const RECORD: usize = 12;

struct Args {
    out: PathBuf,
    read: Option<PathBuf>,
    catch: Vec<i32>,
    block: Vec<i32>,
    ignore: Vec<i32>,
    default: bool,
    children: u32,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("sigrecord: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sigrecord: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(argv: Vec<OsString>) -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::new(),
        read: None,
        catch: Vec::new(),
        block: Vec::new(),
        ignore: Vec::new(),
        default: false,
        children: 0,
    };
    let mut out = None;
    let mut catch_given = false;
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        if flag == "--default" {
            args.default = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let text = value.to_string_lossy().into_owned();
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value)),
            "--read" => args.read = Some(PathBuf::from(value)),
            "--catch" => {
                catch_given = true;
                args.catch = parse_signals(&flag, &text)?;
            }
            "--block" => args.block = parse_signals(&flag, &text)?,
            "--ignore" => args.ignore = parse_signals(&flag, &text)?,
            "--children" => {
                args.children = text
                    .parse()
                    .map_err(|_| format!("--children {text:?} is not a number; use 0-64"))?;
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    args.out = out.ok_or("--out FILE is mandatory")?;
    if !catch_given && !args.default && args.block.is_empty() && args.ignore.is_empty() {
        args.catch = vec![libc::SIGHUP];
    }
    Ok(args)
}

/// Parses `HUP,SIGUSR1,RTMIN+2,RTMAX-1,10` into signal numbers (RTMIN as this build's libc
/// defines it: 34 with glibc, 35 with musl).
fn parse_signals(flag: &str, list: &str) -> Result<Vec<i32>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_signal(s).ok_or_else(|| {
                format!("{flag} {s:?} is not a signal; use a name like HUP or SIGUSR1, RTMIN+N, or a number 1-64")
            })
        })
        .collect()
}

fn parse_signal(s: &str) -> Option<i32> {
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let off = if rest.is_empty() {
            0
        } else {
            rest.get(1..)?.parse::<i32>().ok()?
        };
        let n = base + sign * off;
        (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(libc::SIGRTMIN(), rest, 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(libc::SIGRTMAX(), rest, -1);
    }
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    };
    Some(n)
}

/// Everything the main loop needs, per process (parent and each child has its own pipe).
struct State<'a> {
    args: &'a Args,
    out: File,
    pipe_rd: i32,
    sfd: Option<i32>,
    children: Vec<i32>,
}

fn run(args: &Args) -> io::Result<()> {
    let out = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.out)
        .map_err(|e| ctx(e, &format!("open --out {}", args.out.display())))?;

    // Start from a known mask: an inherited blocked SIGHUP would hide what the flags say.
    sys::set_mask(libc::SIG_SETMASK, &[])?;
    let pipe_rd = new_self_pipe()?;
    let handled = handled_signals(args);
    for &sig in &handled {
        sys::catch(sig, on_signal)?;
    }
    for &sig in &args.ignore {
        sys::set_disposition(sig, libc::SIG_IGN)?;
    }
    if args.default {
        for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGTERM] {
            if !handled.contains(&sig) && !args.ignore.contains(&sig) {
                sys::set_disposition(sig, libc::SIG_DFL)?;
            }
        }
    }
    let sfd = if args.block.is_empty() {
        None
    } else {
        sys::set_mask(libc::SIG_BLOCK, &args.block)?;
        Some(sys::signalfd(&args.block)?)
    };
    let mut state = State {
        args,
        out,
        pipe_rd,
        sfd,
        children: Vec::new(),
    };
    state.line(&format!("ready pid={}\n", std::process::id()))?;

    // Signals stay blocked across fork until the child has its own self-pipe, so a signal sent
    // to a fresh child can never land in (and be recorded by) the parent's pipe.
    sys::set_mask(libc::SIG_BLOCK, &handled)?;
    for _ in 0..args.children {
        // SAFETY: sigrecord has a single thread, so the child may keep running Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(ctx(io::Error::last_os_error(), "fork"));
        }
        if pid == 0 {
            sys::close(state.pipe_rd);
            sys::close(PIPE_WR.load(Ordering::Relaxed));
            state.pipe_rd = new_self_pipe()?;
            state.children.clear();
            sys::set_mask(libc::SIG_UNBLOCK, &handled)?;
            state.line(&format!("ready pid={}\n", std::process::id()))?;
            return state.serve();
        }
        state.children.push(pid);
    }
    sys::set_mask(libc::SIG_UNBLOCK, &handled)?;
    state.serve()
}

/// The signals that get the self-pipe handler: `--catch`, plus SIGTERM (clean exit) and, for a
/// parent, SIGCHLD (reaping), unless the flags say otherwise.
fn handled_signals(args: &Args) -> Vec<i32> {
    let mut sigs = args.catch.clone();
    let free = |s: i32| !sigs.contains(&s) && !args.block.contains(&s) && !args.ignore.contains(&s);
    let mut extra = Vec::new();
    if !args.default && free(libc::SIGTERM) {
        extra.push(libc::SIGTERM);
    }
    if !args.default && args.children > 0 && free(libc::SIGCHLD) {
        extra.push(libc::SIGCHLD);
    }
    sigs.extend(extra);
    sigs
}

/// Creates the self-pipe, publishes its write end to the handler and returns the read end.
fn new_self_pipe() -> io::Result<i32> {
    let (rd, wr) = sys::pipe()?;
    PIPE_WR.store(wr, Ordering::Relaxed);
    Ok(rd)
}

/// Signal handler: timestamps the signal and passes it to the main loop through the pipe.
/// Only async-signal-safe calls (clock_gettime, write), and errno is preserved.
extern "C" fn on_signal(signo: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    let t = testkit::monotonic_ns();
    let mut rec = [0u8; RECORD];
    rec[..4].copy_from_slice(&signo.to_ne_bytes());
    rec[4..].copy_from_slice(&t.to_ne_bytes());
    let fd = PIPE_WR.load(Ordering::Relaxed);
    // SAFETY: rec is a valid buffer of RECORD bytes; a write below PIPE_BUF is atomic, and if the
    // pipe is full (it never is in tests) the record is dropped rather than blocking a handler.
    unsafe { libc::write(fd, rec.as_ptr().cast(), RECORD) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

impl State<'_> {
    /// The main loop: waits on the self-pipe and the signalfd, records, exits on SIGTERM.
    fn serve(&mut self) -> io::Result<()> {
        let mut buf = [0u8; RECORD * 64];
        loop {
            let mut fds = vec![self.pipe_rd];
            fds.extend(self.sfd);
            let ready = sys::poll_in(&fds)?;
            let mut events = Vec::new();
            if ready[0] {
                let n = sys::read(self.pipe_rd, &mut buf)?;
                for rec in buf[..n].chunks_exact(RECORD) {
                    let signo = i32::from_ne_bytes(rec[..4].try_into().expect("4 bytes"));
                    let t_ns = u64::from_ne_bytes(rec[4..].try_into().expect("8 bytes"));
                    events.push((signo, t_ns));
                }
            }
            if let (Some(sfd), Some(true)) = (self.sfd, ready.get(1)) {
                while let Some(signo) = sys::read_signalfd(sfd)? {
                    events.push((signo, testkit::monotonic_ns()));
                }
            }
            // One batch may hold signals from the pipe and the signalfd: record them in the
            // order they arrived.
            events.sort_by_key(|&(_, t_ns)| t_ns);
            for (signo, t_ns) in events {
                if signo == libc::SIGCHLD && !self.args.catch.contains(&signo) {
                    self.reap(false);
                    continue;
                }
                let listed = self.args.catch.contains(&signo) || self.args.block.contains(&signo);
                if listed {
                    self.record(signo, t_ns)?;
                }
                if signo == libc::SIGTERM {
                    return self.exit();
                }
            }
        }
    }

    fn record(&mut self, signo: i32, t_ns: u64) -> io::Result<()> {
        self.line(&sig_line(signo, t_ns, self.args.read.as_deref()))
    }

    /// Ends children first (SIGTERM, then reap), so a test's SIGTERM leaves no orphans behind.
    fn exit(&mut self) -> io::Result<()> {
        for &pid in &self.children {
            if let Err(e) = sys::kill(pid, libc::SIGTERM) {
                eprintln!("sigrecord: kill {pid} SIGTERM: {e}");
            }
        }
        self.reap(true);
        self.line(&format!("exit pid={}\n", std::process::id()))
    }

    fn reap(&mut self, block: bool) {
        self.children.retain(|&pid| !sys::reaped(pid, block));
    }

    /// Appends one line with a single write, so concurrent writers never interleave.
    fn line(&mut self, line: &str) -> io::Result<()> {
        self.out
            .write_all(line.as_bytes())
            .map_err(|e| ctx(e, "write --out"))
    }
}

fn ctx(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Thin wrappers: one libc call each, `-1 → io::Error::last_os_error()`.
mod sys {
    use std::io;
    use std::mem::MaybeUninit;

    fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
        if ret < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(ret)
    }

    fn sigset(sigs: &[i32]) -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset only fails for bad
        // numbers, which parse_signal has already excluded.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &s in sigs {
                libc::sigaddset(set.as_mut_ptr(), s);
            }
            set.assume_init()
        }
    }

    pub fn set_mask(how: libc::c_int, sigs: &[i32]) -> io::Result<()> {
        let set = sigset(sigs);
        // SAFETY: set is initialised; the old mask is not wanted (null is allowed).
        check(
            unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) },
            "sigprocmask",
        )
        .map(drop)
    }

    /// Installs `handler` with SA_RESTART, so reads interrupted by a signal resume.
    pub fn catch(sig: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
        install(sig, handler as libc::sighandler_t, libc::SA_RESTART)
    }

    pub fn set_disposition(sig: i32, disp: libc::sighandler_t) -> io::Result<()> {
        install(sig, disp, 0)
    }

    fn install(sig: i32, disp: libc::sighandler_t, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: a zeroed sigaction is a valid value; every field we rely on is set below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = disp;
        sa.sa_flags = flags;
        sa.sa_mask = sigset(&[]);
        // SAFETY: sa is fully initialised; the handler only does async-signal-safe work.
        check(
            unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) },
            &format!("sigaction {sig}"),
        )
        .map(drop)
    }

    pub fn signalfd(sigs: &[i32]) -> io::Result<i32> {
        let set = sigset(sigs);
        // SAFETY: set is initialised; -1 asks for a new descriptor.
        check(
            unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) },
            "signalfd",
        )
    }

    /// Reads one queued signal from a non-blocking signalfd; `None` when none is left.
    pub fn read_signalfd(fd: i32) -> io::Result<Option<i32>> {
        // SAFETY: signalfd_siginfo is plain old data; zeroed is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: info is a writable buffer of exactly `size` bytes.
        let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(io::Error::new(e.kind(), format!("read signalfd: {e}"))),
            };
        }
        Ok(Some(info.ssi_signo as i32))
    }

    /// A close-on-exec pipe with a non-blocking write end (a handler must never block).
    pub fn pipe() -> io::Result<(i32, i32)> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        check(rc, "pipe2")?;
        Ok((fds[0], fds[1]))
    }

    pub fn close(fd: i32) {
        // SAFETY: closing a descriptor we own; errors are irrelevant here.
        unsafe { libc::close(fd) };
    }

    /// Waits until one of `fds` is readable; EINTR (SIGCHLD, a caught signal) returns no fd,
    /// and the caller simply loops.
    pub fn poll_in(fds: &[i32]) -> io::Result<Vec<bool>> {
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pfds is a valid array of pfds.len() pollfd structs.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(vec![false; fds.len()]);
            }
            return Err(io::Error::new(e.kind(), format!("poll: {e}")));
        }
        Ok(pfds.iter().map(|p| p.revents != 0).collect())
    }

    /// Reads from the non-blocking self-pipe; EAGAIN and EINTR read nothing.
    pub fn read(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(io::Error::new(e.kind(), format!("read self-pipe: {e}"))),
            };
        }
        Ok(n as usize)
    }

    pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
        assert!(pid > 0, "never signal pid {pid}: it would broadcast");
        // SAFETY: pid is one of our own children, a positive pid.
        check(unsafe { libc::kill(pid, sig) }, "kill").map(drop)
    }

    /// True once `pid` has been reaped (or is gone); with `block`, waits for it.
    pub fn reaped(pid: i32, block: bool) -> bool {
        let flags = if block { 0 } else { libc::WNOHANG };
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-pointer; pid is our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, flags) };
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return r != 0;
        }
    }
}
