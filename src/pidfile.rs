//! `RELOAD_PID_FILE`: whom the pid file names, read afresh at every reload, and whether to
//! believe it. Owns reading and judging the file, and the line saying why it names nobody;
//! never signals and never scans `/proc` for names (`reload` judges and signals what this
//! returns, as it does a scan's matches).
//!
//! A pid file outlives its process: after a crash it still names a pid that the kernel may
//! give to anyone. The file is believed only if it was written after the process it names
//! started (a process writes its own pid once it runs, or a supervisor once it forked): one
//! older than that process is stale. Missing, empty or garbled files are problems to log,
//! never faults: the app may be starting, stopping, or writing the file right now.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::log::Logger;
use crate::sys::Pid;
use crate::target::{self, Process};

/// How much earlier than the process's start its file's mtime may look and still be its own:
/// the start time is cut to a tick, `/proc/uptime` to 10 ms, and file timestamps come from the
/// coarse clock (a jiffy, up to 10 ms behind).
const SLACK: Duration = Duration::from_millis(100);

/// Why the pid file names nobody to signal now: one log line and its fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    /// The message.
    pub line: String,
    /// The pid it names, if it names one.
    pub pid: Option<i32>,
    /// What to do about it.
    pub hint: &'static str,
}

fn problem(line: &str, pid: Option<i32>, hint: &'static str) -> Problem {
    Problem {
        line: line.to_string(),
        pid,
        hint,
    }
}

/// The pid in a pid file's text: one positive decimal number, blanks around it allowed.
pub fn parse(text: &[u8]) -> Option<Pid> {
    let t = std::str::from_utf8(text.trim_ascii()).ok()?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok().and_then(Pid::new)
}

/// Whether a file written at `mtime` can be the pid file of a process that started at
/// `started` (both wall-clock): not if it is older.
pub fn fresh(mtime: SystemTime, started: SystemTime) -> bool {
    mtime + SLACK >= started
}

/// The target a reload reads from the file at `path` now (with `name`, PROCESS_NAME; within
/// the tree of `child`, the app we run, if any), or nobody, with the line saying why.
pub fn resolve(path: &Path, name: Option<&[u8]>, child: Option<Pid>, log: &Logger) -> Vec<Process> {
    match target(path, name) {
        Ok(p) if child.is_none_or(|c| target::descends_from(&p, c)) => vec![p],
        Ok(p) => {
            log.warn(
                "refusing to signal: the pid file names a process outside the app's tree",
                &[
                    ("pid_file", path.into()),
                    ("pid", p.pid.get().into()),
                    (
                        "hint",
                        "with -- APP the pid file must name the app or one of its descendants"
                            .into(),
                    ),
                ],
            );
            Vec::new()
        }
        Err(problem) => {
            let mut fields = vec![("pid_file", path.into())];
            if let Some(pid) = problem.pid {
                fields.push(("pid", pid.into()));
            }
            fields.push(("hint", problem.hint.into()));
            log.warn(&problem.line, &fields);
            Vec::new()
        }
    }
}

/// The process the file at `path` names, if the file is to be believed and, with `name`
/// (PROCESS_NAME), the process is so named.
pub fn target(path: &Path, name: Option<&[u8]>) -> Result<Process, Problem> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(problem(
            "pid file is missing; not signalling",
            None,
            "the app writes it once it runs; check RELOAD_PID_FILE and that both containers mount its volume",
        )),
        Err(e) => {
            return Err(Problem {
                line: format!("cannot read the pid file: {e}; not signalling"),
                pid: None,
                hint: "run the sidecar with a UID that may read it",
            })
        }
    };
    if text.trim_ascii().is_empty() {
        return Err(problem(
            "pid file is empty; not signalling",
            None,
            "the app may be starting or stopping; it gets the next change",
        ));
    }
    let Some(pid) = parse(&text) else {
        let shown = String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned();
        return Err(Problem {
            line: format!("pid file holds no pid ({shown:?}); not signalling"),
            pid: None,
            hint: "it must hold one decimal pid, as nginx's, haproxy's or postgres's first line",
        });
    };
    let Some(p) = target::process(pid) else {
        return Err(problem(
            "pid file names a process that is not running; not signalling",
            Some(pid.get()),
            "a stale file of an app that exited; it gets the next change once it writes a new one",
        ));
    };
    let started = started_at(p.start_time);
    let mtime = fs::metadata(path).and_then(|m| m.modified());
    if let (Ok(mtime), Some(started)) = (mtime, started) {
        if !fresh(mtime, started) {
            return Err(problem(
                "refusing to signal: the pid file is older than the process it names (the pid was recycled)",
                Some(pid.get()),
                "the app that wrote it is gone; it gets the next change once it writes a new one",
            ));
        }
    }
    if let Some(wanted) = name {
        if !target::is_named(pid, wanted) {
            let comm = target::comm(pid).unwrap_or_default();
            return Err(Problem {
                line: format!(
                    "refusing to signal: the pid file names {:?}, not PROCESS_NAME",
                    String::from_utf8_lossy(&comm)
                ),
                pid: Some(pid.get()),
                hint: "both RELOAD_PID_FILE and PROCESS_NAME must name the app; fix either, or drop PROCESS_NAME",
            });
        }
    }
    Ok(p)
}

/// The wall-clock instant a process started, from its start time in ticks since boot and the
/// time since boot now (`/proc/uptime`, in the same boot clock).
fn started_at(ticks: u64) -> Option<SystemTime> {
    let boot = SystemTime::now().checked_sub(target::since_boot()?)?;
    let since_boot = Duration::from_millis(ticks.saturating_mul(1000) / target::USER_HZ);
    boot.checked_add(since_boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_holds_one_positive_decimal_pid() {
        assert_eq!(parse(b"1234\n").map(Pid::get), Some(1234));
        assert_eq!(parse(b"  77  ").map(Pid::get), Some(77));
        for bad in [
            &b""[..],
            b"\n",
            b"0",
            b"-5",
            b"12 34",
            b"abc",
            b"99999999999",
            b"1234\n5678\n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_file_older_than_its_process_is_stale() {
        let t = SystemTime::now();
        assert!(
            fresh(t + Duration::from_millis(5), t),
            "written after the start"
        );
        assert!(
            fresh(t - Duration::from_millis(20), t),
            "within the clocks' grain"
        );
        assert!(
            !fresh(t - Duration::from_secs(5), t),
            "the pid was recycled"
        );
    }

    #[test]
    fn our_parents_start_is_in_the_past() {
        // Pid refuses our own pid; cargo, our parent, started before us.
        let parent = Pid::new(std::os::unix::process::parent_id() as i32).expect("a parent");
        let me = target::process(parent).expect("our parent runs");
        let started = started_at(me.start_time).expect("a start time");
        let age = (SystemTime::now() + SLACK)
            .duration_since(started)
            .expect("in the past");
        assert!(age < Duration::from_secs(30 * 24 * 3600), "{age:?}");
    }
}
