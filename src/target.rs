//! Whom to signal: scan `/proc` at signal time, match the process name exactly, pick roots.
//!
//! PIDs are never cached: the app may restart between two reloads. Matching uses
//! `/proc/PID/comm`, which the kernel cuts to 15 bytes; for longer names the basename of
//! argv[0] from `/proc/PID/cmdline` decides (peers stop at 15 chars and can never match).
//! Files under `/proc/PID` vanish whenever a process exits, so ENOENT/ESRCH there is normal.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::sys;

/// Longest name `/proc/PID/comm` holds (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// A process that matched the wanted name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Its pid in our PID namespace.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// Start time in clock ticks since boot (field 22 of stat): with the pid, its identity.
    pub start_time: u64,
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    /// comm, between the parentheses.
    pub comm: String,
    /// One-letter state; `Z` is a zombie.
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. comm sits in parentheses and may itself hold `)` and spaces, so
/// the fields after it start after the LAST `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    // After state (field 3) and ppid (4), start time is field 22: skip fields 5..=21.
    let start_time = rest.nth(17)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        start_time,
    })
}

/// Whether a process with this comm (and, lazily, argv[0]) is exactly `wanted`.
///
/// A comm shorter than 15 bytes is the whole name. A 15-byte comm may be a cut longer name:
/// then argv[0]'s basename decides, so `my-long-server-2` never matches `my-long-server-`
/// and a 27-char name still matches. argv[0] is read only in that case.
pub fn name_matches(wanted: &str, comm: &[u8], argv0: impl FnOnce() -> Option<Vec<u8>>) -> bool {
    let wanted = wanted.as_bytes();
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
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Keeps the matches whose parent is not itself a match: the nginx master, not its workers.
pub fn pick_roots(matches: Vec<Process>) -> Vec<Process> {
    let pids: Vec<i32> = matches.iter().map(|p| p.pid).collect();
    matches
        .into_iter()
        .filter(|p| !pids.contains(&p.ppid))
        .collect()
}

/// Finds every live process named `wanted`, except ourselves. Never fails on a process that
/// exits mid-scan; fails only if `/proc` itself cannot be listed.
///
/// With thousands of processes this loop is the cost of a reload, so per process it makes
/// only the three syscalls it must (openat of `PID/comm` relative to `/proc`, one read, close)
/// and allocates nothing; `stat` and `cmdline` are read only for a name that matches.
pub fn scan(wanted: &str) -> sys::Result<Vec<Process>> {
    let own = sys::getpid();
    let mut found = Vec::new();
    let mut proc = sys::read_dir(b"/proc")?;
    // "PID/comm": a pid has at most 10 digits.
    let mut path = [0u8; 16];
    while let Some((name, _)) = proc.next_entry() {
        let Some(pid) = parse_pid(name) else {
            continue;
        };
        if pid == own {
            continue;
        }
        let len = name.len() + b"/comm".len();
        path[..name.len()].copy_from_slice(name);
        path[name.len()..len].copy_from_slice(b"/comm");
        // comm is at most 15 bytes and a newline, and the kernel hands it over in one read.
        // An error (the process exited: ENOENT/ESRCH) skips it; EINTR cannot happen, as the
        // only signals we take are blocked and read from a signalfd.
        let mut comm = [0u8; 32];
        let Ok(n) = sys::open_at(proc.fd(), &path[..len], 0).and_then(|f| sys::read(&f, &mut comm))
        else {
            continue;
        };
        let comm = &comm[..n];
        let comm = comm.strip_suffix(b"\n").unwrap_or(comm);
        if !name_matches(wanted, comm, || argv0(pid)) {
            continue;
        }
        let Ok(stat) = sys::read_text(format!("/proc/{pid}/stat").as_bytes()) else {
            continue;
        };
        match parse_stat(&stat) {
            Some(s) if s.state != 'Z' && s.state != 'X' => found.push(Process {
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

/// A `/proc` entry's name as a positive pid; `None` for `self`, `sys` and the like.
fn parse_pid(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pid = name.iter().try_fold(0i32, |n, &d| {
        n.checked_mul(10)?.checked_add(i32::from(d - b'0'))
    })?;
    (pid > 0).then_some(pid)
}

/// The start time of `pid`, to confirm a pidfd names the process we scanned.
pub fn start_time(pid: i32) -> Result<u64, sys::Error> {
    let text = sys::read_text(format!("/proc/{pid}/stat").as_bytes())?;
    parse_stat(&text)
        .map(|s| s.start_time)
        .ok_or(sys::Error::Invalid("unparsable /proc/PID/stat"))
}

fn argv0(pid: i32) -> Option<Vec<u8>> {
    let mut buf = sys::read_file(format!("/proc/{pid}/cmdline").as_bytes()).ok()?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(end);
    Some(buf)
}

/// Whether any process other than ourselves is visible: without `shareProcessNamespace` (or
/// docker's `--pid=container:`) we are alone in our PID namespace and can signal nobody.
pub fn others_visible() -> bool {
    let own = sys::getpid().to_string();
    sys::read_dir(b"/proc").is_ok_and(|mut rd| {
        rd.any(|e| e.name.iter().all(u8::is_ascii_digit) && e.name != own.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn stat_comm_may_hold_parentheses_and_spaces() {
        let line = "42 (my (weird) app) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.comm, "my (weird) app");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 7);
        assert_eq!(s.start_time, 123456);
        assert!(parse_stat("42 (x) S").is_none());
    }

    #[test]
    fn our_own_stat_parses() {
        let pid = std::process::id() as i32;
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let s = parse_stat(&text).expect("own stat");
        assert_eq!(s.ppid as u32, std::os::unix::process::parent_id());
        assert_eq!(start_time(pid).unwrap(), s.start_time);
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
        assert!(name_matches("nginx", b"nginx", never));
        assert!(!name_matches("nginx", b"nginx-exporter", never));
        assert!(!name_matches("ngin", b"nginx", never));
        assert!(!name_matches("nginx", b"ngin", never));
    }

    #[test]
    fn long_names_match_argv0_basename() {
        let name = "my-very-long-process-name27"; // 27 chars
        assert_eq!(name.len(), 27);
        let comm = &name.as_bytes()[..15];
        assert!(name_matches(name, comm, || Some(
            b"/opt/bin/my-very-long-process-name27".to_vec()
        )));
        assert!(name_matches(name, comm, || Some(name.as_bytes().to_vec())));
        // Same 15-char prefix, different program.
        assert!(!name_matches(name, comm, || Some(
            b"/opt/bin/my-very-long-process-other".to_vec()
        )));
        // The wanted name is a prefix of the real one.
        assert!(!name_matches("my-very-long-process", comm, || Some(
            b"my-very-long-process-name27".to_vec()
        )));
        // Unreadable cmdline (kernel thread, exited): no match for a long name.
        assert!(!name_matches(name, comm, || None));
    }

    #[test]
    fn a_fifteen_char_name_is_not_a_prefix_of_a_longer_program() {
        let wanted = "exactly-15-char";
        assert_eq!(wanted.len(), 15);
        assert!(name_matches(wanted, wanted.as_bytes(), || Some(
            b"/usr/bin/exactly-15-char".to_vec()
        )));
        assert!(name_matches(wanted, wanted.as_bytes(), || None));
        assert!(!name_matches(wanted, wanted.as_bytes(), || Some(
            b"/usr/bin/exactly-15-char-and-more".to_vec()
        )));
    }

    fn p(pid: i32, ppid: i32) -> Process {
        Process {
            pid,
            ppid,
            start_time: 0,
        }
    }

    #[test]
    fn roots_are_matches_without_a_matching_parent() {
        // nginx master 10 (child of pause 1) with workers 11, 12; a second master 20.
        let all = vec![p(10, 1), p(11, 10), p(12, 10), p(20, 5)];
        assert_eq!(pick_roots(all.clone()), vec![p(10, 1), p(20, 5)]);
        // A worker whose master is not a match (re-parented) is a root.
        assert_eq!(pick_roots(vec![p(11, 1)]), vec![p(11, 1)]);
        assert_eq!(pick_roots(vec![]), vec![]);
    }

    #[test]
    fn scan_finds_a_real_child_by_name_and_never_ourselves() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = scan("sleep").unwrap();
        let pid = child.id() as i32;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|p| p.pid == pid), "{found:?}");
        let me = fs::read_to_string("/proc/self/comm").unwrap();
        let me = me.trim_end();
        assert!(scan(me)
            .unwrap()
            .iter()
            .all(|p| p.pid != std::process::id() as i32));
        assert!(others_visible());
    }
}
