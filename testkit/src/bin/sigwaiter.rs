//! `sigwaiter`: an application that takes signals with `sigwaitinfo(2)` instead of a handler,
//! the way tini, dumb-init, many C daemons and Python's `signal.sigwait` do, plus the
//! multithreaded app that a signal would kill.
//!
//! While a thread sleeps in `sigwaitinfo`, the kernel moves the waited signals out of its
//! blocked set (into `real_blocked`, which `/proc` does not show): `/proc/PID/task/TID/status`
//! then reads `SigBlk: 0000000000000000` and `/proc/PID/task/TID/wchan` reads `do_sigtimedwait`.
//! The modes give the reloader each shape of process it must judge:
//!
//! - `--sigwait-main`: one thread; every signal blocked; the main thread loops on sigwaitinfo.
//! - `--sigwait-thread`: every signal blocked before any thread starts; three worker threads
//!   park, a dedicated thread loops on sigwaitinfo, the main thread joins it.
//! - `--one-thread-unblocked`: a thread is started with nothing blocked, then the main thread
//!   blocks SIGHUP; there is no handler, so SIGHUP sent to the process reaches the other thread
//!   and its default action ends the whole process (exit 129). It records nothing.
//!
//! Output lines are sigrecord's (`testkit::recorder` parses them), each one `write(2)` to an
//! `O_APPEND` file: `ready pid=P`, then `sig pid=P signo=N t_ns=T content=C` per signal (C is
//! what `--read` returned then), and `exit pid=P` when SIGTERM ends a waiting mode.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use testkit::recorder::sig_line;

const USAGE: &str = "usage: sigwaiter --out FILE [--read PATH] \
(--sigwait-main | --sigwait-thread | --one-thread-unblocked)
  --out FILE               append one line per event to FILE (mandatory)
  --read PATH              on each signal, re-read PATH and record its content
  --sigwait-main           block every signal; the main thread loops on sigwaitinfo
  --sigwait-thread         block every signal; a dedicated thread loops on sigwaitinfo while
                           three more threads and the main thread only block
  --one-thread-unblocked   a thread with nothing blocked and no handler, the main thread
                           blocking SIGHUP: SIGHUP to the process kills it
SIGTERM ends the waiting modes cleanly.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    SigwaitMain,
    SigwaitThread,
    OneThreadUnblocked,
}

struct Args {
    out: PathBuf,
    read: Option<PathBuf>,
    shape: Shape,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("sigwaiter: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sigwaiter: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(argv: Vec<OsString>) -> Result<Args, String> {
    let (mut out, mut read, mut shape) = (None, None, None);
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        let mut set_shape = |s: Shape| match shape.replace(s) {
            None => Ok(()),
            Some(_) => Err("give exactly one of the mode flags".to_string()),
        };
        match flag.as_str() {
            "--sigwait-main" => set_shape(Shape::SigwaitMain)?,
            "--sigwait-thread" => set_shape(Shape::SigwaitThread)?,
            "--one-thread-unblocked" => set_shape(Shape::OneThreadUnblocked)?,
            "--out" | "--read" => {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                let slot = if flag == "--out" { &mut out } else { &mut read };
                *slot = Some(PathBuf::from(value));
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    Ok(Args {
        out: out.ok_or("--out FILE is mandatory")?,
        read,
        shape: shape.ok_or("a mode flag is mandatory")?,
    })
}

fn run(args: Args) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.out)
        .map_err(|e| ctx(e, &format!("open --out {}", args.out.display())))?;
    // Start from a known state: an inherited blocked or ignored SIGHUP (nohup) would hide what
    // the mode says.
    sys::set_mask(libc::SIG_SETMASK, &sys::empty())?;
    sys::default_disposition(libc::SIGHUP)?;
    let ready = format!("ready pid={}\n", std::process::id());
    match args.shape {
        Shape::SigwaitMain => {
            sys::set_mask(libc::SIG_BLOCK, &sys::full())?;
            line(&mut out, &ready)?;
            wait_loop(&args, &mut out)
        }
        Shape::SigwaitThread => {
            // Before any thread exists, so that every thread inherits the full mask.
            sys::set_mask(libc::SIG_BLOCK, &sys::full())?;
            for _ in 0..3 {
                std::thread::spawn(|| loop {
                    std::thread::park();
                });
            }
            // The waiter writes `ready` itself, once every thread exists.
            let waiter = std::thread::spawn(move || wait_loop(&args, &mut out));
            waiter.join().expect("sigwait thread panicked")
        }
        Shape::OneThreadUnblocked => {
            std::thread::spawn(|| loop {
                std::thread::sleep(Duration::from_secs(3600));
            });
            sys::set_mask(libc::SIG_BLOCK, &sys::set_of(&[libc::SIGHUP]))?;
            line(&mut out, &ready)?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// Takes every signal with sigwaitinfo and records it; SIGTERM records `exit` and ends.
fn wait_loop(args: &Args, out: &mut File) -> io::Result<()> {
    if args.shape == Shape::SigwaitThread {
        line(out, &format!("ready pid={}\n", std::process::id()))?;
    }
    let all = sys::full();
    loop {
        let signo = sys::sigwaitinfo(&all)?;
        let t_ns = testkit::monotonic_ns();
        if signo == libc::SIGTERM {
            return line(out, &format!("exit pid={}\n", std::process::id()));
        }
        line(out, &sig_line(signo, t_ns, args.read.as_deref()))?;
    }
}

/// Appends one line with a single write.
fn line(out: &mut File, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|e| ctx(e, "write --out"))
}

fn ctx(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Thin wrappers: one libc call each, `-1 → io::Error::last_os_error()`.
mod sys {
    use super::*;

    fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
        if ret < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(ret)
    }

    pub fn empty() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            set.assume_init()
        }
    }

    /// Every signal; the kernel leaves SIGKILL and SIGSTOP out of any mask by itself.
    pub fn full() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the set it is given.
        unsafe {
            libc::sigfillset(set.as_mut_ptr());
            set.assume_init()
        }
    }

    pub fn set_of(sigs: &[i32]) -> libc::sigset_t {
        let mut set = empty();
        for &s in sigs {
            // SAFETY: set is initialised; s is a valid signal number.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        set
    }

    /// pthread_sigmask: this thread's mask, inherited by threads it starts afterwards.
    pub fn set_mask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
        // SAFETY: set is initialised; the old mask is not wanted (null is allowed).
        let rc = unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) };
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            return Err(io::Error::new(e.kind(), format!("pthread_sigmask: {e}")));
        }
        Ok(())
    }

    pub fn default_disposition(sig: i32) -> io::Result<()> {
        // SAFETY: signal() with SIG_DFL installs no code of ours.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(ctx(io::Error::last_os_error(), "signal SIG_DFL"));
        }
        Ok(())
    }

    /// Waits for one of `set` (which the caller blocks); EINTR (a stop and continue) retries.
    pub fn sigwaitinfo(set: &libc::sigset_t) -> io::Result<i32> {
        loop {
            // SAFETY: set is initialised; the siginfo is not wanted (null is allowed).
            let r = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
            match check(r, "sigwaitinfo") {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}
