//! Confirmation after a reload (`RELOAD_CONFIRM`): whether each signalled target took it.
//!
//! `alive`: [`ALIVE_AFTER`] after the signal the target is still the same process (pid and
//! start time). `workers`: a pre-fork server (nginx, apache2, haproxy `-W`, php-fpm, gunicorn)
//! starts new children on a good reload and keeps the old ones on a rejected config, so a
//! child that was not there just before the send must appear within `RELOAD_CONFIRM_TIMEOUT`.
//! The children are read from `/proc/PID/task/*/children` (a scan of `/proc` where the kernel
//! lacks that file), before the send and then with backoff while a check is pending.
//!
//! A timer source: no deadline, so no wake-up, while nothing is pending; a newer reload that
//! signalled someone replaces what is pending (its checks then speak for the older reload
//! too, see `outcome`), so nothing here ever holds the next change. Never sends or decides a
//! reload: each [`Confirmation`] is logged here, and once the last pending check concluded
//! the reload's `confirm` step is handed to the loop.

use std::fs;
use std::time::{Duration, Instant};

use crate::log::{self, Logger};
use crate::outcome::Step;
use crate::sys::{self, Pid};
use crate::target::{self, Process};

/// How long after the signal `alive` looks: an app that exits in its handler (after its
/// atexit hooks, a JVM's shutdown hooks, a flush) is gone well within a second, and a second
/// is still far below any scrape interval, so the outcome is known before anyone asks.
pub const ALIVE_AFTER: Duration = Duration::from_secs(1);
/// The first pause between two looks at the workers, and the longest.
const FIRST: Duration = Duration::from_millis(50);
const LONGEST: Duration = Duration::from_secs(1);

/// `RELOAD_CONFIRM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The same process, a short while after.
    Alive,
    /// New child processes within the timeout.
    Workers,
    /// Nothing is checked.
    Off,
}

/// What a check saw, per target: the lead plugs this into the reload's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// Still the same process (`alive`).
    Alive,
    /// New workers appeared (`workers`).
    NewWorkers,
    /// Gone, and no process of its name took its place.
    Died,
    /// Gone, and another process of its name runs now: restarted, not reloaded.
    Replaced { by: Pid },
    /// Still running the children it had before the signal (`workers`).
    KeptWorkers,
}

impl Confirmation {
    /// What the target `name` did, for the reload's outcome and the error line; `None` when
    /// it took the reload.
    pub fn failure(self, name: &str) -> Option<String> {
        match self {
            Confirmation::Alive | Confirmation::NewWorkers => None,
            Confirmation::Died => Some(format!("{name} died after the reload signal")),
            Confirmation::Replaced { .. } => Some(format!(
                "{name} was replaced after the reload signal (restarted, not reloaded)"
            )),
            Confirmation::KeptWorkers => Some(format!(
                "{name} kept its workers: the config was probably rejected"
            )),
        }
    }
}

/// A child of a target: pid and start time.
pub type Worker = (i32, u64);

/// A target signalled, with its children just before the send (`workers` only).
#[derive(Clone, Debug)]
pub struct Watched {
    pub process: Process,
    pub before: Vec<Worker>,
}

/// What to record of `p` before sending it the signal.
pub fn before(mode: Mode, p: &Process) -> Watched {
    let before = match mode {
        Mode::Workers => children(p.pid),
        _ => Vec::new(),
    };
    Watched {
        process: *p,
        before,
    }
}

struct Pending {
    watched: Watched,
    since: Instant,
    next: Instant,
    pause: Duration,
}

/// The checks pending for the last reload.
pub struct Confirm {
    mode: Mode,
    timeout: Duration,
    /// PROCESS_NAME, to tell a restart from a death.
    name: Option<Vec<u8>>,
    shown: String,
    pending: Vec<Pending>,
    /// What the checks of the reload being confirmed found wrong so far.
    failed: Vec<String>,
}

impl Confirm {
    pub fn new(mode: Mode, timeout: Duration, name: Option<Vec<u8>>, shown: String) -> Confirm {
        Confirm {
            mode,
            timeout,
            name,
            shown,
            pending: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The targets of a reload sent at `at`; replaces what is pending. A reload that
    /// signalled nobody has nothing to confirm and leaves the older checks running.
    pub fn watch(&mut self, sent: Vec<Watched>, at: Instant, log: &Logger) {
        let first = match self.mode {
            _ if sent.is_empty() => return,
            Mode::Off => return,
            Mode::Alive => ALIVE_AFTER,
            Mode::Workers => FIRST,
        };
        if !self.pending.is_empty() {
            log.debug("a newer reload replaces the pending confirmation", &[]);
        }
        self.failed.clear();
        self.pending = sent
            .into_iter()
            .map(|watched| Pending {
                watched,
                since: at,
                next: at + first,
                pause: first,
            })
            .collect();
    }

    /// Drops what is pending (a stop); true if something was.
    pub fn cancel(&mut self) -> bool {
        self.failed.clear();
        !std::mem::take(&mut self.pending).is_empty()
    }

    /// The target `pid` is known dead (the app we run exited): its check concludes so; the
    /// confirm step if that was the last one pending.
    pub fn died(&mut self, pid: Pid, log: &Logger) -> Option<Step> {
        let i = self
            .pending
            .iter()
            .position(|p| p.watched.process.pid == pid)?;
        let p = self.pending.swap_remove(i);
        self.concluded(&p, Confirmation::Died, log);
        self.step()
    }

    /// Logs what check `p` concluded and keeps a failure for the step.
    fn concluded(&mut self, p: &Pending, c: Confirmation, log: &Logger) {
        self.report(p, c, log);
        self.failed.extend(c.failure(&self.shown));
    }

    /// Once nothing is pending: the confirm step of the reload whose checks these were.
    fn step(&mut self) -> Option<Step> {
        if !self.pending.is_empty() {
            return None;
        }
        let failed = std::mem::take(&mut self.failed);
        Some(match failed.is_empty() {
            true => Step::Ok,
            false => Step::Failed(failed.join("; ")),
        })
    }

    /// When the next look is due; `None` while nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.next).min()
    }

    /// Looks at every target that is due, logging what each concluded; the confirm step once
    /// the last one has.
    pub fn due(&mut self, now: Instant, log: &Logger) -> Option<Step> {
        let mut done = false;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.next > now {
                i += 1;
                continue;
            }
            match self.look(i, now) {
                Some(c) => {
                    let p = self.pending.swap_remove(i);
                    self.concluded(&p, c, log);
                    done = true;
                }
                None => {
                    let p = &mut self.pending[i];
                    p.pause = (p.pause * 2).min(LONGEST);
                    p.next = (now + p.pause).min(p.since + self.timeout).max(now);
                    i += 1;
                }
            }
        }
        if done {
            self.step()
        } else {
            None
        }
    }

    /// What pending check `i` concludes now; `None`: look again later.
    fn look(&self, i: usize, now: Instant) -> Option<Confirmation> {
        let p = &self.pending[i];
        let t = p.watched.process;
        let same = target::process(t.pid).is_some_and(|n| n.start_time == t.start_time);
        if !same {
            let by = self.name.as_ref().and_then(|n| {
                let found = target::scan(n).ok()?;
                found.into_iter().map(|p| p.pid).find(|&p| p != t.pid)
            });
            return Some(by.map_or(Confirmation::Died, |by| Confirmation::Replaced { by }));
        }
        match self.mode {
            Mode::Workers => {
                let now_children = children(t.pid);
                if now_children.iter().any(|c| !p.watched.before.contains(c)) {
                    Some(Confirmation::NewWorkers)
                } else if now >= p.since + self.timeout {
                    Some(Confirmation::KeptWorkers)
                } else {
                    None
                }
            }
            _ => Some(Confirmation::Alive),
        }
    }

    fn report(&self, p: &Pending, c: Confirmation, log: &Logger) {
        let pid = p.watched.process.pid.get();
        let name = self.shown.as_str();
        let fields = |extra: Vec<(&'static str, log::Value<'static>)>| {
            let mut f = vec![("pid", pid.into()), ("name", name.into())];
            f.extend(extra);
            f
        };
        match c {
            Confirmation::Alive | Confirmation::NewWorkers => {
                let took = p.since.elapsed().into();
                log.debug("reload confirmed", &fields(vec![("took_ms", took)]));
            }
            Confirmation::Died => log.error(
                &format!("reload failed: {name} died after the reload signal"),
                &fields(vec![("hint", "the app exits on this signal or on the new config; see its log, or check RELOAD_SIGNAL".into())]),
            ),
            Confirmation::Replaced { by } => log.error(
                &format!("reload failed: {name} was replaced after the reload signal (restarted, not reloaded)"),
                &fields(vec![
                    ("new_pid", by.get().into()),
                    ("hint", "the app restarted (a crash on the new config, or a supervisor); see its log".into()),
                ]),
            ),
            Confirmation::KeptWorkers => log.error(
                &format!("reload failed: {name} kept its workers: the config was probably rejected; see its error log"),
                &fields(vec![("timeout", log::seconds(self.timeout).into())]),
            ),
        }
    }
}

/// The children of `pid` (every thread's), with their start times.
pub fn children(pid: Pid) -> Vec<Worker> {
    let mut pids = Vec::new();
    let tasks = fs::read_dir(format!("/proc/{}/task", pid.get()));
    let mut listed = false;
    for t in tasks.into_iter().flatten().flatten() {
        let path = t.path().join("children");
        if let Ok(text) = sys::read_small(&path.to_string_lossy()) {
            listed = true;
            let text = String::from_utf8_lossy(&text);
            pids.extend(
                text.split_whitespace()
                    .filter_map(|w| w.parse::<i32>().ok()),
            );
        }
    }
    if !listed {
        // A kernel without CONFIG_PROC_CHILDREN: every process whose parent is `pid`.
        pids = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&c| stat(c).is_some_and(|(ppid, _)| ppid == pid.get()))
            .collect();
    }
    let mut out: Vec<Worker> = pids
        .into_iter()
        .filter_map(|c| Some((c, stat(c)?.1)))
        .collect();
    out.sort_unstable();
    out
}

fn stat(pid: i32) -> Option<(i32, u64)> {
    let text = sys::read_small(&format!("/proc/{pid}/stat")).ok()?;
    let s = target::parse_stat(&text)?;
    Some((s.ppid, s.start_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alive_and_new_workers_count_as_applied() {
        assert_eq!(Confirmation::Alive.failure("app"), None);
        assert_eq!(Confirmation::NewWorkers.failure("app"), None);
        assert!(Confirmation::Died.failure("app").is_some());
        assert_eq!(
            Confirmation::KeptWorkers.failure("nginx").as_deref(),
            Some("nginx kept its workers: the config was probably rejected")
        );
    }

    fn watched(pid: i32) -> Watched {
        let pid = Pid::new(pid).unwrap();
        Watched {
            process: Process {
                pid,
                ppid: 1,
                start_time: 1,
            },
            before: Vec::new(),
        }
    }

    #[test]
    fn the_step_comes_once_the_last_check_concluded_and_a_reload_of_nobody_replaces_nothing() {
        let log = Logger::new(crate::log::LogFormat::Text, false);
        let mut c = Confirm::new(Mode::Alive, Duration::from_secs(1), None, "app".into());
        let at = Instant::now();
        c.watch(vec![watched(1 << 22), watched((1 << 22) + 1)], at, &log);
        assert_eq!(c.deadline(), Some(at + ALIVE_AFTER));
        // Signalled nobody: the checks of the reload before go on.
        c.watch(Vec::new(), at, &log);
        assert_eq!(c.died(Pid::new(1 << 22).unwrap(), &log), None);
        let step = c.died(Pid::new((1 << 22) + 1).unwrap(), &log);
        assert_eq!(
            step,
            Some(Step::Failed(
                "app died after the reload signal; app died after the reload signal".into()
            ))
        );
        assert_eq!(c.deadline(), None, "nothing pending: no wake-up");
        let mut off = Confirm::new(Mode::Off, Duration::from_secs(1), None, "app".into());
        off.watch(vec![watched(1 << 22)], at, &log);
        assert_eq!(off.deadline(), None);
    }
}
