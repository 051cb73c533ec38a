//! Whom to signal: scan `/proc` at signal time, match the process name exactly, keep roots,
//! and pin each one with a pidfd.
//!
//! PIDs are never cached: the app may restart between two reloads. Matching uses
//! `/proc/PID/comm`, which the kernel cuts to 15 bytes; for longer names the basename of
//! argv[0] from `/proc/PID/cmdline` decides. Everything under `/proc` is bytes: a name need not
//! be UTF-8, and a 15-byte cut may split a character. Files under `/proc/PID` vanish whenever
//! a process exits, so ENOENT/ESRCH there is normal and skips that process.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsFd;

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

/// Whether a process with this comm (and, read lazily, argv[0]) is exactly `wanted`.
///
/// A comm shorter than 15 bytes is the whole name. A 15-byte comm may be a cut longer name:
/// then argv[0]'s basename decides, so `my-long-server-2` never matches `my-long-server-`
/// and a 27-byte name still matches. argv[0] is read only in that case.
pub fn name_matches(wanted: &[u8], comm: &[u8], argv0: impl FnOnce() -> Option<Vec<u8>>) -> bool {
    if comm.len() < COMM_LEN {
        return comm == wanted;
    }
    if !wanted.starts_with(comm) {
        return false;
    }
    let arg0 = argv0();
    let base = arg0.as_deref().map(basename);
    if wanted.len() == COMM_LEN {
        // comm equals the name; only reject when argv[0] shows the real name is longer.
        return !matches!(base, Some(b) if b.len() > COMM_LEN && b.starts_with(comm));
    }
    base == Some(wanted)
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
        if !name_matches(wanted, comm, || argv0(pid)) {
            continue;
        }
        let Ok(stat) = sys::read_small(&format!("/proc/{}/stat", pid.get())) else {
            continue;
        };
        match parse_stat(&stat) {
            Some(s) if s.state != b'Z' && s.state != b'X' => found.push(Process {
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
    let s = parse_stat(&stat).filter(|s| s.state != b'Z' && s.state != b'X')?;
    Some(Process {
        pid,
        ppid: s.ppid,
        start_time: s.start_time,
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

fn argv0(pid: Pid) -> Option<Vec<u8>> {
    let mut buf = sys::read_small(&format!("/proc/{}/cmdline", pid.get())).ok()?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(end);
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
mod tests {
    use super::*;

    #[test]
    fn stat_comm_may_hold_parentheses_spaces_and_any_byte() {
        let line = b"42 (my (weird) app) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.comm, b"my (weird) app");
        assert_eq!((s.state, s.ppid, s.start_time), (b'S', 7, 123456));
        assert!(parse_stat(b"42 (x) S").is_none());
        // A comm cut in the middle of a UTF-8 character is still parsed.
        let mut cut = b"9 (abcdefghijklmn\xc3) S 1 ".to_vec();
        cut.extend_from_slice(&b"0 ".repeat(17));
        cut.extend_from_slice(b"77 0");
        let s = parse_stat(&cut).expect("parses non-UTF-8 comm");
        assert_eq!(s.comm, b"abcdefghijklmn\xc3");
        assert_eq!(s.start_time, 77);
    }

    #[test]
    fn only_positive_decimal_names_are_pids() {
        assert_eq!(parse_pid(b"1"), Some(1));
        assert_eq!(parse_pid(b"2147483647"), Some(i32::MAX));
        for name in [
            &b"0"[..],
            b"",
            b"self",
            b"12a",
            b"-3",
            b"2147483648",
            b"99999999999",
        ] {
            assert_eq!(parse_pid(name), None, "{name:?}");
        }
    }

    fn never() -> Option<Vec<u8>> {
        panic!("argv[0] must not be read for short names")
    }

    #[test]
    fn short_names_match_comm_exactly_never_a_prefix() {
        assert!(name_matches(b"nginx", b"nginx", never));
        assert!(!name_matches(b"nginx", b"nginx-exporter", never));
        assert!(!name_matches(b"ngin", b"nginx", never));
        assert!(!name_matches(b"nginx", b"ngin", never));
    }

    #[test]
    fn long_names_match_argv0_basename() {
        let name = b"my-very-long-process-name27";
        let comm = &name[..15];
        assert!(name_matches(name, comm, || Some(
            b"/opt/bin/my-very-long-process-name27".to_vec()
        )));
        assert!(!name_matches(name, comm, || Some(
            b"/opt/bin/my-very-long-process-other".to_vec()
        )));
        assert!(!name_matches(b"my-very-long-process", comm, || Some(
            name.to_vec()
        )));
        assert!(!name_matches(name, comm, || None));
        // A multi-byte character split by the 15-byte cut.
        let wide = "abcdefghijklmné.conf".as_bytes();
        assert!(name_matches(wide, &wide[..15], || Some(wide.to_vec())));
    }

    #[test]
    fn a_fifteen_byte_name_is_not_a_prefix_of_a_longer_program() {
        let wanted = b"exactly-15-char";
        assert!(name_matches(wanted, wanted, || Some(
            b"/usr/bin/exactly-15-char".to_vec()
        )));
        assert!(name_matches(wanted, wanted, || None));
        assert!(!name_matches(wanted, wanted, || Some(
            b"/usr/bin/exactly-15-char-and-more".to_vec()
        )));
    }

    fn p(pid: i32, ppid: i32) -> Process {
        Process {
            pid: Pid::new(pid).unwrap(),
            ppid,
            start_time: 0,
        }
    }

    #[test]
    fn roots_are_matches_without_a_matching_parent() {
        let all = vec![p(10, 1), p(11, 10), p(12, 10), p(20, 5)];
        assert_eq!(pick_roots(all), vec![p(10, 1), p(20, 5)]);
        assert_eq!(pick_roots(vec![p(11, 1)]), vec![p(11, 1)]);
    }

    #[test]
    fn scan_finds_a_real_child_by_name_and_never_ourselves() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = scan(b"sleep").unwrap();
        let pid = child.id() as i32;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|p| p.pid.get() == pid), "{found:?}");
        let me = fs::read("/proc/self/comm").unwrap();
        let own = std::process::id() as i32;
        assert!(scan(me.trim_ascii_end())
            .unwrap()
            .iter()
            .all(|p| p.pid.get() != own));
        assert!(others_visible().expect("/proc lists"));
    }
}
