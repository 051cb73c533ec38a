//! After a settle: decide whether to hold, wait or reload, walk the trees (arming watches and
//! fingerprinting in one pass) when the decision needs it, and hand new content to `send`.
//!
//! The decision is one plain function, [`next_step`], over plain data (the time, the settle's
//! first change, a sed temp file's deadline, what the walk found, the last content applied):
//! it reads no clock and no filesystem and is unit-tested branch by branch. [`Reloads::settled`]
//! is its one caller and holds every effect: the walk, the logging, `Settle::hold`, the apply.
//! The send itself (whom to signal, the signal to each) is `send`'s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::confirm::{self, Watched};
use crate::fingerprint::{self, Cut, Fingerprint, Hooks, Listed, Report, Sink};
use crate::limits;
use crate::log::Logger;
use crate::mounts;
use crate::outcome::{Reload, Step};
use crate::send;
use crate::settle::{Due, Settle};
use crate::stop;
use crate::sys::Pid;
use crate::target::Process;
use crate::watch::{Unwatched, Watcher};

/// What a due settle came to.
pub enum Settled {
    /// Held (an update still being written) or a watched directory is missing.
    Waiting,
    /// The content is what was last applied: nothing sent.
    Unchanged,
    /// New content that the validation command must pass before [`Reloads::apply`] sends it:
    /// the reload, with its validation pending.
    Validate(Reload),
    /// New content: signalled if a signal is configured; the request (if any) is next.
    Changed(Applied),
}

/// New content handed to the targets.
pub struct Applied {
    pub reload: Reload,
    /// The targets refused for now that waiting may lift: the caller's `Retry` takes them.
    pub retry: Vec<Process>,
    /// The targets signalled, with what the confirmation must know of them from just before
    /// the send: the caller's `Confirm` takes them.
    pub sent: Vec<Watched>,
}

/// What a due settle knows when it decides: plain data, no clock, no filesystem.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The time of the decision.
    pub now: Instant,
    /// When the settle's window opened: a held update is given RELOAD_MAX_DELAY from it.
    pub first: Instant,
    /// RELOAD_MAX_DELAY.
    pub max_delay: Duration,
    /// Until when a sed temp file not renamed yet holds the reload, if one waits.
    pub sed_until: Option<Instant>,
    /// What the walk found; absent until it ran (no walk while a sed temp file waits).
    pub walked: Option<Walked<'a>>,
    /// The fingerprint of the content last applied (start-up counts).
    pub last: Option<u64>,
}

/// What a walk found that the decision reads.
#[derive(Clone, Copy, Debug)]
pub struct Walked<'a> {
    /// The fingerprint, or the configured directory that is missing.
    pub outcome: Result<u64, &'a Path>,
    /// A kubelet volume whose visible links do not match `..data` yet.
    pub incomplete: Option<&'a Path>,
}

/// What to do with a due settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// An update is still being written: hold the settle until then.
    Hold(Instant),
    /// Nothing held it: walk, then decide again with what the walk found.
    Walk,
    /// A watched directory is missing: the app would read nothing, so nothing is sent.
    Missing(&'a Path),
    /// The content is what was last applied.
    Unchanged,
    /// New content: reload it; `late` when a kubelet update was still incomplete at
    /// RELOAD_MAX_DELAY and is reloaded anyway.
    Reload { fingerprint: u64, late: bool },
}

/// The decision of a due settle. A sed temp file waiting holds it before any walk; then a
/// missing directory beats everything the walk saw, unchanged content beats an incomplete
/// kubelet update (nothing to reload either way), and an incomplete update holds until
/// RELOAD_MAX_DELAY after the window opened (at it exactly, the reload goes, late).
pub fn next_step<'a>(facts: &Facts<'a>) -> Next<'a> {
    if let Some(until) = facts.sed_until.filter(|until| facts.now < *until) {
        return Next::Hold(until);
    }
    let Some(walked) = facts.walked else {
        return Next::Walk;
    };
    let fingerprint = match walked.outcome {
        Err(dir) => return Next::Missing(dir),
        Ok(fp) if Some(fp) == facts.last => return Next::Unchanged,
        Ok(fp) => fp,
    };
    let late = match walked.incomplete {
        None => false,
        Some(_) => {
            let until = facts.first + facts.max_delay;
            if facts.now < until {
                return Next::Hold(until);
            }
            true
        }
    };
    Next::Reload { fingerprint, late }
}

/// What the loop remembers between reloads.
pub struct Reloads {
    /// The content at the last signal (start-up counts).
    last: Option<Fingerprint>,
    /// Cuts already logged: each distinct one is logged once.
    cuts: Vec<Cut>,
    /// What could not be watched, as last logged.
    unwatched: Unwatched,
    /// `st_dev` of the kernel interfaces mounted, never walked.
    kernel: Vec<u64>,
    /// Files already logged as seen by metadata only (each is logged once).
    told: Vec<PathBuf>,
    /// The first walk was stopped by a stop signal.
    stopped: bool,
}

impl Reloads {
    /// The first walk: arms every watch and takes the baseline in one pass.
    pub fn start(
        cfg: &Config,
        watcher: &mut Watcher,
        mounts: &[mounts::Mount],
        log: &Logger,
    ) -> Reloads {
        let mut r = Reloads {
            last: None,
            cuts: Vec::new(),
            unwatched: Unwatched::default(),
            kernel: mounts::kernel_devs(mounts),
            told: Vec::new(),
            stopped: false,
        };
        let report = r.walk(cfg, watcher, log);
        r.stopped = report.interrupted;
        r.last = report.outcome.ok().filter(|_| !report.interrupted);
        r
    }

    /// Whether a stop signal ended the first walk: the caller exits without watching.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The mounts changed: kernel interfaces mounted since are not walked either.
    pub fn set_mounts(&mut self, mounts: &[mounts::Mount]) {
        self.kernel = mounts::kernel_devs(mounts);
    }

    /// The fingerprint of the content at the last signal, or at start-up.
    pub fn last(&self) -> Option<u64> {
        self.last.map(|f| f.0)
    }

    /// Walks every tree: watches each directory it lists, drops the watches it no longer
    /// finds, logs what it could not watch or follow.
    fn walk(&mut self, cfg: &Config, watcher: &mut Watcher, log: &Logger) -> Report {
        watcher.begin_walk();
        watcher.set_kernel(&self.kernel);
        let report = fingerprint::take(
            &cfg.dirs,
            Hooks {
                sink: Sink::Bytes,
                kernel: &self.kernel,
                on_dir: &mut |dir, id| watcher.ensure(dir, id),
                stop: &mut stop::pending,
            },
        );
        if report.interrupted {
            return report;
        }
        if report.outcome.is_ok() {
            watcher.watch_link_targets(&report.link_targets, log);
            let unwatched = watcher.sweep();
            if unwatched != self.unwatched {
                report_unwatched(&unwatched, watcher.count(), log);
                self.unwatched = unwatched;
            }
        }
        for cut in &report.cuts {
            if !self.cuts.contains(cut) {
                log.warn(
                    "fingerprint cut short",
                    &[
                        ("dir", cut.at.as_path().into()),
                        ("reason", cut.reason.as_str().into()),
                    ],
                );
                self.cuts.push(cut.clone());
            }
        }
        let unreadable =
            "its content cannot be read; its changes are seen by name, size, mtime and inode only";
        let hint = "give the sidecar read access: the pod's fsGroup with a defaultMode (or mode) that lets the group read (0440), or run the sidecar with the owner's UID (runAsUser)";
        self.tell(&report.unreadable, log, |log, path| {
            log.warn(unreadable, &[("file", path.into()), ("hint", hint.into())])
        });
        self.tell(&report.large, log, |log, path| {
            log.info(
                "file larger than the read limit; its changes are seen by name, size, mtime and inode only",
                &[
                    ("file", path.into()),
                    ("limit_bytes", fingerprint::MAX_READ.into()),
                ],
            )
        });
        report
    }

    /// Logs each listed file not logged before; a count line for those beyond the list.
    fn tell(&mut self, listed: &Listed, log: &Logger, line: impl Fn(&Logger, &std::path::Path)) {
        for path in &listed.paths {
            if !self.told.contains(path) && self.told.len() < 1024 {
                line(log, path);
                self.told.push(path.clone());
            }
        }
        if listed.count > listed.paths.len() {
            log.debug(
                "more files are seen by metadata only",
                &[("count", (listed.count - listed.paths.len()).into())],
            );
        }
    }

    /// A settle is `due`: hold it while an update is still being written, else fingerprint
    /// and, if the content changed, signal the targets (`child`: the app we run, if any).
    /// On new content the caller hands the refusals to its `Retry`, then sends the reload
    /// request; with a validation command, it validates first and applies once it passed.
    pub fn settled(
        &mut self,
        cfg: &Config,
        due: &Due,
        child: Option<Pid>,
        watcher: &mut Watcher,
        settle: &mut Settle,
        log: &Logger,
    ) -> Settled {
        let now = Instant::now();
        let mut facts = Facts {
            now,
            first: due.first,
            max_delay: cfg.max_delay,
            sed_until: watcher.sed_hold(now, cfg.max_delay),
            walked: None,
            last: self.last.map(|f| f.0),
        };
        if let Next::Hold(until) = next_step(&facts) {
            log.debug("a sed temp file is not renamed yet; waiting", &[]);
            settle.hold(due.first, until);
            return Settled::Waiting;
        }
        let report = self.walk(cfg, watcher, log);
        if report.interrupted {
            // A stop signal is pending: the loop reads it next.
            return Settled::Waiting;
        }
        facts.walked = Some(Walked {
            outcome: report
                .outcome
                .as_ref()
                .map(|fp| fp.0)
                .map_err(|d| d.as_path()),
            incomplete: report.incomplete.as_deref(),
        });
        let vol = report.incomplete.as_deref();
        let fp = match (next_step(&facts), vol) {
            (Next::Missing(dir), _) => {
                log.warn(
                    "watched directory is missing; not signalling until it is back",
                    &[("dir", dir.into())],
                );
                return Settled::Waiting;
            }
            (Next::Unchanged, _) => {
                log.debug("content unchanged; not signalling", &[]);
                return Settled::Unchanged;
            }
            (Next::Hold(until), Some(vol)) => {
                log.debug(
                    "kubelet update not complete: visible links do not match ..data yet; waiting",
                    &[("dir", vol.into())],
                );
                settle.hold(due.first, until);
                return Settled::Waiting;
            }
            (Next::Reload { fingerprint, late }, vol) => {
                if let (true, Some(vol)) = (late, vol) {
                    log.warn("kubelet volume links still do not match ..data after RELOAD_MAX_DELAY; signalling anyway", &[("dir", vol.into())]);
                }
                fingerprint
            }
            // After the walk only an incomplete volume holds, and no second walk is asked.
            (Next::Hold(_) | Next::Walk, _) => return Settled::Waiting,
        };
        let reload = Reload::new(now, fp);
        if cfg.validate.is_some() {
            let mut reload = reload;
            reload.validate = Step::Pending;
            return Settled::Validate(reload);
        }
        Settled::Changed(self.apply(cfg, reload, child, due, log))
    }

    /// Applies the content of `reload` (validated, or without a validation command): signals
    /// the targets, and marks the confirmation pending for those that took the signal.
    pub fn apply(
        &mut self,
        cfg: &Config,
        reload: Reload,
        child: Option<Pid>,
        due: &Due,
        log: &Logger,
    ) -> Applied {
        self.last = Some(Fingerprint(reload.fingerprint));
        let (signalled, retry, sent) = match cfg.signals() {
            true => {
                let (done, retry, sent) =
                    send::signal_all(cfg, child, log, reload.started, due.latest);
                (Some(done), retry, sent)
            }
            false => (None, Vec::new(), Vec::new()),
        };
        let mut reload = reload.signalled(signalled);
        if cfg.confirm != confirm::Mode::Off && !sent.is_empty() {
            reload.confirm = Step::Pending;
        }
        Applied {
            reload,
            retry,
            sent,
        }
    }
}

fn report_unwatched(u: &Unwatched, watched: usize, log: &Logger) {
    if u.limit > 0 {
        let (name, now) = limits::inotify("watches");
        let needed = watched + u.limit;
        log.error(
            "inotify watch limit reached; some directories are not watched",
            &[
                ("sysctl", name.as_str().into()),
                ("limit", now.into()),
                ("watched", watched.into()),
                ("unwatched", u.limit.into()),
                ("hint", format!("raise {name} to at least {needed} plus what other processes of this UID use on the node").into()),
            ],
        );
    }
    if u.other > 0 {
        let reason = u.reason.clone().unwrap_or_default();
        log.warn(
            "some directories are not watched",
            &[("count", u.other.into()), ("reason", reason.into())],
        );
    }
}

/// The directories of a walk that `--check` reports: every real directory of each tree.
pub fn count_dirs(dirs: &[PathBuf], mounts: &[mounts::Mount]) -> Vec<usize> {
    let kernel = mounts::kernel_devs(mounts);
    dirs.iter()
        .map(|d| {
            let mut n = 0;
            // Directories only: no file is read, no symlink followed.
            let hooks = Hooks {
                sink: Sink::Nothing,
                kernel: &kernel,
                on_dir: &mut |_, _| n += 1,
                stop: &mut stop::pending,
            };
            fingerprint::take(std::slice::from_ref(d), hooks);
            n
        })
        .collect()
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
