//! What the kernel reports about a process: `/proc/PID/{status,stat,schedstat,fdinfo}`.
//!
//! Every reader tolerates a process that exits while it looks (`ENOENT`/`ESRCH`): the
//! baseline's `pkill` children come and go between `readdir` and `open`.

use std::fs;
use std::io;

/// Resource figures of one process, or of several summed (see [`Usage::add`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS) in KiB.
    pub hwm_kib: u64,
    /// `utime + stime` from `stat`, in clock ticks.
    pub cpu_ticks: u64,
    /// `cutime + cstime` from `stat`: CPU of children already reaped, in clock ticks.
    pub child_ticks: u64,
    /// Time on CPU from `schedstat`, in ns (precise, unlike the ticks).
    pub cpu_ns: u64,
    /// `voluntary_ctxt_switches + nonvoluntary_ctxt_switches`: every wake-up counts.
    pub ctx_switches: u64,
}

impl Usage {
    /// Field-wise sum, for a pipeline of several processes.
    pub fn add(self, o: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib + o.rss_kib,
            hwm_kib: self.hwm_kib + o.hwm_kib,
            cpu_ticks: self.cpu_ticks + o.cpu_ticks,
            child_ticks: self.child_ticks + o.child_ticks,
            cpu_ns: self.cpu_ns + o.cpu_ns,
            ctx_switches: self.ctx_switches + o.ctx_switches,
        }
    }

    /// CPU time in ns including reaped children: `schedstat` for the process itself (ns
    /// precision) plus `cutime + cstime` (which the kernel accumulates in ns and reports in
    /// ticks, so a sum over many short `pkill` runs keeps 10 ms resolution, not 10 ms each).
    pub fn cpu_with_children_ns(&self) -> u64 {
        self.cpu_ns + self.child_ticks * 1_000_000_000 / clk_tck()
    }
}

/// Clock ticks per second for `stat`'s time fields (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory arguments.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The figures of one process.
pub fn usage(pid: i32) -> io::Result<Usage> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // comm is in parentheses and may hold spaces or ')': count fields after the last ')'.
    // After it: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| f.get(n - 3).copied().unwrap_or(0);
    let schedstat = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    Ok(Usage {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        cpu_ticks: field(14) + field(15),
        child_ticks: field(16) + field(17),
        cpu_ns: schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        ctx_switches: kib("voluntary_ctxt_switches:") + kib("nonvoluntary_ctxt_switches:"),
    })
}

/// `/proc/PID/comm` without the newline; `None` once the process is gone.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Direct children of every thread of `pid` (`/proc/PID/task/*/children`).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let text = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out
}

/// `pid` and all its descendants, parents first.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let kids = children(all[i]);
        all.extend(kids);
        i += 1;
    }
    all
}

/// Every process whose parent chain leads to `ancestor` (excluded), from a full `/proc` scan:
/// unlike [`tree`] this also finds processes of a PID namespace whose init just died.
pub fn all_descendants(ancestor: i32) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![ancestor];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out.remove(0);
    out
}

/// Number of inotify watches `pid` holds: `inotify wd:` lines over all its fds' fdinfo.
/// With `stop_at_one`, returns as soon as one is seen (the start-up poll).
pub fn inotify_watches(pid: i32, stop_at_one: bool) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    let mut n = 0;
    for fd in fds.flatten() {
        let Ok(text) = fs::read_to_string(fd.path()) else {
            continue;
        };
        n += text
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
        if stop_at_one && n > 0 {
            return n;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_usage_is_read() {
        let u = usage(std::process::id() as i32).unwrap();
        assert!(u.rss_kib > 0 && u.hwm_kib >= u.rss_kib);
        assert!(u.cpu_ns > 0);
    }

    #[test]
    fn a_child_is_found_in_our_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(tree(std::process::id() as i32).contains(&pid));
        assert!(all_descendants(std::process::id() as i32).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
