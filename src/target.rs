//! Whom to signal: scan `/proc` at signal time, match the process name exactly, keep roots,
//! and pin each one with a pidfd.
//!
//! PIDs are never cached: the app may restart between two reloads. Matching uses
//! `/proc/PID/comm`, which the kernel cuts to 15 bytes; for longer names the basename of
//! argv[0] from `/proc/PID/cmdline` decides. Everything under `/proc` is bytes: a name need not
//! be UTF-8, and a 15-byte cut may split a character. Files under `/proc/PID` vanish whenever
//! a process exits, so ENOENT/ESRCH there is normal and skips that process. A process is
//! alive while any of its threads is, even when its leader thread has exited.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::signal::Recipient;
use crate::sys::{self, Pid};

/// Longest name `/proc/PID/comm` holds (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// A live process whose name matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    /// Its pid in our PID namespace.
    pub pid: Pid,
    /// Its parent's pid (0 for a namespace's init seen from inside).
    pub ppid: i32,
    /// Start time in clock ticks since boot (field 22 of stat): with the pid, its identity.
    pub start_time: u64,
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat<'a> {
    /// comm, between the parentheses, as bytes.
    pub comm: &'a [u8],
    /// One-letter state; `Z` is a zombie, `X` dead.
    pub state: u8,
    /// Parent pid.
    pub ppid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. comm sits in parentheses and may itself hold `)`, spaces or any
/// byte but NUL, so the fields after it start after the LAST `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat<'_>> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = text.get(open + 1..close)?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    // After state (field 3) and ppid (4), start time is field 22: skip fields 5..=21.
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        start_time,
    })
}

/// Whether a process with this comm (and, read lazily, its NUL-separated cmdline) is exactly
/// `wanted`.
///
/// A comm shorter than 15 bytes is the whole name. A 15-byte comm may be a cut longer name:
/// then the name the program was started by decides, so `my-long-server-2` never matches
/// `my-long-server-` and a 27-byte name still matches. That name is argv[0]'s basename, or
/// for a `#!` script the script's (see [`script`]). The cmdline is read only in that case.
pub fn name_matches(wanted: &[u8], comm: &[u8], cmdline: impl FnOnce() -> Option<Vec<u8>>) -> bool {
    if comm.len() < COMM_LEN {
        return comm == wanted;
    }
    if !wanted.starts_with(comm) {
        return false;
    }
    let cmdline = cmdline();
    let args: Vec<&[u8]> = cmdline
        .as_deref()
        .map(|c| c.split(|&b| b == 0).collect())
        .unwrap_or_default();
    let base = args.first().map(|a| basename(a));
    let script = script(&args, comm).map(basename);
    if wanted.len() == COMM_LEN {
        // comm equals the name; only reject when the started name shows it is longer.
        let longer = |b: &[u8]| b.len() > COMM_LEN && b.starts_with(comm);
        return !(base.is_some_and(longer) || script.is_some_and(longer));
    }
    base == Some(wanted) || script == Some(wanted)
}

/// The script's path when `args` is the argv the kernel builds for a `#!` script: the
/// interpreter's path (argv[0], absolute as a `#!` line gives it), the line's one optional
/// argument (`-u`, `-e`), then the script's path as exec'd. The kernel names the process
/// after the script, so `comm` is the cut of its name, while argv[0] names the interpreter: an
/// argv[0] whose name starts with `comm` is the program itself, not an interpreter.
fn script<'a>(args: &[&'a [u8]], comm: &[u8]) -> Option<&'a [u8]> {
    let interpreter = args.first()?;
    if !interpreter.starts_with(b"/") || basename(interpreter).starts_with(comm) {
        return None;
    }
    match args.get(1)? {
        opt if opt.starts_with(b"-") => args.get(2).copied(),
        path => Some(path),
    }
}

fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Keeps the matches whose parent is not itself a match: the nginx master, not its workers.
pub fn pick_roots(matches: Vec<Process>) -> Vec<Process> {
    let pids: Vec<i32> = matches.iter().map(|p| p.pid.get()).collect();
    matches
        .into_iter()
        .filter(|p| !pids.contains(&p.ppid))
        .collect()
}

/// Every live process named `wanted`, except ourselves, by pid. Fails only if `/proc` itself
/// cannot be listed.
///
/// With thousands of processes this loop is the cost of a reload, so per process it makes only
/// the syscalls it must: `openat` of `PID/comm` relative to one `/proc` fd, one read, close.
/// `stat` and `cmdline` are read only for a name that matches.
pub fn scan(wanted: &[u8]) -> io::Result<Vec<Process>> {
    let proc_dir = sys::open(std::path::Path::new("/proc"))?;
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = parse_pid(name.as_encoded_bytes()).and_then(Pid::new) else {
            continue;
        };
        let Ok(path) = CString::new(format!("{}/comm", pid.get())) else {
            continue;
        };
        // comm is at most 15 bytes and a newline, and the kernel hands it over in one read.
        // An error (the process exited: ENOENT/ESRCH) skips it; EINTR cannot happen, as every
        // signal we take is blocked and read from a signalfd.
        let mut comm = [0u8; 32];
        let n = match sys::open_at(Some(proc_dir.as_fd()), &path)
            .and_then(|fd| File::from(fd).read(&mut comm))
        {
            Ok(n) => n,
            // Out of descriptors, every later process would be skipped too: a scan that
            // finds nobody for that reason must not read as "no process named ...".
            Err(e) if crate::limits::is_emfile(&e) => return Err(e),
            Err(_) => continue,
        };
        let comm = comm[..n].strip_suffix(b"\n").unwrap_or(&comm[..n]);
        if !name_matches(wanted, comm, || cmdline(pid)) {
            continue;
        }
        let Ok(stat) = sys::read_small(&format!("/proc/{}/stat", pid.get())) else {
            continue;
        };
        match parse_stat(&stat) {
            Some(s) if alive(pid, s.state) => found.push(Process {
                pid,
                ppid: s.ppid,
                start_time: s.start_time,
            }),
            _ => {}
        }
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// Whether `p` is `ancestor` or runs below it, by the parent chain in `/proc` (for
/// `PROCESS_NAME` inside the tree of the app we started).
pub fn descends_from(p: &Process, ancestor: Pid) -> bool {
    let mut pid = p.pid.get();
    let mut ppid = p.ppid;
    // A chain longer than this is a loop of reused pids, not a process tree.
    for _ in 0..256 {
        if pid == ancestor.get() {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        pid = ppid;
        ppid = match sys::read_small(&format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            Some(s) => s.ppid,
            None => return false,
        };
    }
    false
}

/// The process `pid` as a target, if it is alive.
pub fn process(pid: Pid) -> Option<Process> {
    let stat = sys::read_small(&format!("/proc/{}/stat", pid.get())).ok()?;
    let s = parse_stat(&stat).filter(|s| alive(pid, s.state))?;
    Some(Process {
        pid,
        ppid: s.ppid,
        start_time: s.start_time,
    })
}

/// Whether a process whose leader is in `state` lives: while any of its threads does. A
/// leader that called `pthread_exit` is a zombie (`Z`) while its other threads run on.
fn alive(pid: Pid, state: u8) -> bool {
    if state != b'Z' {
        return state != b'X';
    }
    let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", pid.get())) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let stat = sys::read_small(&format!(
            "/proc/{}/task/{}/stat",
            pid.get(),
            t.file_name().to_string_lossy()
        ));
        stat.ok()
            .as_deref()
            .and_then(parse_stat)
            .is_some_and(|s| s.state != b'Z' && s.state != b'X')
    })
}

/// A `/proc` entry's name as a positive pid; `None` for `self`, `sys` and the like.
fn parse_pid(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name)
        .ok()?
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// The start time of `pid`; ESRCH once it is gone.
pub fn start_time(pid: Pid) -> io::Result<u64> {
    let gone = || io::Error::from_raw_os_error(libc::ESRCH);
    let stat = sys::read_small(&format!("/proc/{}/stat", pid.get())).map_err(|_| gone())?;
    parse_stat(&stat).map(|s| s.start_time).ok_or_else(gone)
}

/// What `/proc/PID/comm` holds now: it changes when the process execs another program, which
/// its pid and start time do not show.
pub fn comm(pid: Pid) -> Option<Vec<u8>> {
    let mut c = sys::read_small(&format!("/proc/{}/comm", pid.get())).ok()?;
    if c.last() == Some(&b'\n') {
        c.pop();
    }
    Some(c)
}

/// Pins `p` for the send: opens a pidfd, then checks through `/proc` that the pid still names
/// the process scanned (same start time), so a reused pid is never signalled. Where the kernel
/// has no pidfds (ENOSYS) or a seccomp profile refuses them (EPERM) the send falls back to
/// kill(2) by pid. ESRCH: the process is gone.
pub fn pin(p: &Process) -> io::Result<Recipient> {
    let pidfd = match sys::pidfd_open(p.pid) {
        Ok(fd) => Some(fd),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => None,
        Err(e) => return Err(e),
    };
    if start_time(p.pid)? != p.start_time {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(Recipient { pid: p.pid, pidfd })
}

/// USER_HZ, the unit of `/proc/PID/stat`'s start time: 100 on every architecture we ship
/// (x86_64, aarch64); `sysconf(_SC_CLK_TCK)` returns this constant of the kernel's ABI.
pub const USER_HZ: u64 = 100;

/// The time since boot now, in the clock of `/proc/PID/stat`'s start times (`/proc/uptime`:
/// suspend included, 10 ms grain).
pub fn since_boot() -> Option<Duration> {
    let text = fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// Whether `p` was already running at `at` (a moment ago), to the clocks' grain (two ticks),
/// which counts in its favour; true when the clock cannot be read.
pub fn started_by(p: &Process, at: Instant) -> bool {
    let Some(boot_at) = since_boot().and_then(|b| b.checked_sub(at.elapsed())) else {
        return true;
    };
    let ticks = boot_at.as_millis() as u64 * USER_HZ / 1000;
    p.start_time <= ticks + 2
}

/// Whether `pid` is named `wanted` now, as a scan would match it.
pub fn is_named(pid: Pid, wanted: &[u8]) -> bool {
    comm(pid).is_some_and(|c| name_matches(wanted, &c, || cmdline(pid)))
}

/// `/proc/PID/cmdline`: the arguments, each ended by a NUL (the last NUL dropped).
fn cmdline(pid: Pid) -> Option<Vec<u8>> {
    let mut buf = sys::read_small(&format!("/proc/{}/cmdline", pid.get())).ok()?;
    if buf.last() == Some(&0) {
        buf.pop();
    }
    Some(buf)
}

/// Whether any process other than ourselves is visible: without `shareProcessNamespace` (or
/// docker's `--pid=container:`) we are alone in our PID namespace and can signal nobody. An
/// error when `/proc` cannot be listed: that says nothing about who is there.
pub fn others_visible() -> io::Result<bool> {
    let mut rd = fs::read_dir("/proc")?;
    Ok(rd.any(|e| {
        e.is_ok_and(|e| {
            parse_pid(e.file_name().as_encoded_bytes())
                .and_then(Pid::new)
                .is_some()
        })
    }))
}

/// The hint for a `/proc` that cannot be listed or read.
pub fn list_hint(e: &io::Error) -> &'static str {
    if crate::limits::is_emfile(e) {
        crate::limits::emfile_hint(e)
    } else {
        "check that /proc is mounted and readable"
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
