//! After a settle: walk the trees (arming watches and fingerprinting in one pass), decide
//! whether what the app reads changed, and if so signal every target that can take it.
//!
//! This is where the loop's decisions meet the syscalls; each decision is a plain function in
//! the module below it (`fingerprint`, `target`, `signal`).

use std::path::PathBuf;
use std::time::Instant;

use crate::config::{Config, Targets};
use crate::confirm;
use crate::fingerprint::{self, Cut, Fingerprint, Report};
use crate::limits;
use crate::log::Logger;
use crate::mounts;
use crate::retry::{self, Outcome};
use crate::settle::Settle;
use crate::sys::Pid;
use crate::target::{self, Process};
use crate::verdict::{self, Verdict};
use crate::watch::{Unwatched, Watcher};

/// What a settle leads to when the content changed.
pub enum Next {
    /// Signalled.
    Signalled(Signalled),
    /// A validation command must pass before this content is applied ([`Reloads::apply`]).
    Validate(Fingerprint),
}

/// A change that was signalled.
pub struct Signalled {
    /// The targets refused for now that waiting may lift.
    pub refused: Vec<Process>,
    /// The targets signalled, for the confirmation.
    pub sent: Vec<confirm::Watched>,
    /// When the settle fired.
    pub at: Instant,
}

/// What the loop remembers between reloads.
pub struct Reloads {
    /// The content at the last signal (start-up counts).
    last: Option<Fingerprint>,
    /// Cuts already logged: each distinct one is logged once.
    cuts: Vec<Cut>,
    /// What could not be watched, as last logged.
    unwatched: Unwatched,
    /// Kernel interfaces mounted below a configured directory, never walked.
    skip: Vec<PathBuf>,
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
            skip: mounts::kernel_points(mounts),
        };
        let report = r.walk(cfg, watcher, log);
        r.last = report.outcome.ok();
        r
    }

    /// Walks every tree: watches each directory it lists, drops the watches it no longer
    /// finds, logs what it could not watch or follow.
    fn walk(&mut self, cfg: &Config, watcher: &mut Watcher, log: &Logger) -> Report {
        watcher.begin_walk();
        let report = fingerprint::take(&cfg.dirs, &self.skip, &mut |dir, ino| {
            watcher.ensure(dir, ino)
        });
        if report.outcome.is_ok() {
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
        report
    }

    /// A settle that opened at `first` is due: hold it while an update is still being written,
    /// else fingerprint and, if the content changed, signal the targets (`child`: the app we
    /// run, if any). `Some` when the content changed: the caller hands the refusals to its
    /// `Retry`, then sends the reload request; with a validation command, it validates first.
    pub fn settled(
        &mut self,
        cfg: &Config,
        first: Instant,
        child: Option<Pid>,
        watcher: &mut Watcher,
        settle: &mut Settle,
        log: &Logger,
    ) -> Option<Next> {
        let now = Instant::now();
        if let Some(until) = watcher.sed_hold(now, cfg.max_delay) {
            log.debug("a sed temp file is not renamed yet; waiting", &[]);
            settle.hold(first, until);
            return None;
        }
        let report = self.walk(cfg, watcher, log);
        let fp = match report.outcome {
            Err(dir) => {
                log.warn(
                    "watched directory is missing; not signalling until it is back",
                    &[("dir", dir.as_path().into())],
                );
                return None;
            }
            Ok(fp) if Some(fp) == self.last => {
                log.debug("content unchanged; not signalling", &[]);
                return None;
            }
            Ok(fp) => fp,
        };
        if let Some(vol) = report.incomplete {
            let until = first + cfg.max_delay;
            if now < until {
                log.debug(
                    "kubelet update not complete: visible links do not match ..data yet; waiting",
                    &[("dir", vol.as_path().into())],
                );
                settle.hold(first, until);
                return None;
            }
            log.warn("kubelet volume links still do not match ..data after RELOAD_MAX_DELAY; signalling anyway", &[("dir", vol.as_path().into())]);
        }
        if cfg.validate.is_some() {
            return Some(Next::Validate(fp));
        }
        Some(Next::Signalled(self.apply(cfg, fp, child, log, now)))
    }

    /// Applies content `fp` (validated, or without a validation command): signals the targets.
    pub fn apply(
        &mut self,
        cfg: &Config,
        fp: Fingerprint,
        child: Option<Pid>,
        log: &Logger,
        at: Instant,
    ) -> Signalled {
        self.last = Some(fp);
        let (refused, sent) = signal_all(cfg, child, log, at);
        Signalled { refused, sent, at }
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

/// The processes to signal now (scanned fresh: apps restart, pids are never cached), each
/// with how it would take the signal: those named PROCESS_NAME (within the tree of `child`,
/// the app we run, if any), else `child` itself. Logs when there is none.
pub fn targets(cfg: &Config, child: Option<Pid>, log: &Logger) -> Vec<(Process, Verdict)> {
    let found = match (&cfg.process_name, child) {
        (Some(name), _) => match target::scan(name) {
            Ok(found) => found
                .into_iter()
                .filter(|p| child.is_none_or(|c| target::descends_from(p, c)))
                .collect(),
            Err(e) => {
                log.error("cannot list /proc", &[("error", e.to_string().into())]);
                return Vec::new();
            }
        },
        (None, Some(c)) => target::process(c).into_iter().collect(),
        // Only a reload URL: nobody to signal.
        (None, None) => return Vec::new(),
    };
    let chosen = match cfg.targets {
        Targets::Roots => target::pick_roots(found),
        Targets::All => found,
    };
    if chosen.is_empty() {
        log.warn(&format!("no process named {}", cfg.name()), &[("hint", "it gets the next change after it starts; check PROCESS_NAME and that the pod shares its PID namespace".into())]);
    }
    // A process that exits while we look is skipped.
    chosen
        .into_iter()
        .filter_map(|p| {
            Some((
                p,
                verdict::judge(p.pid, cfg.signal, cfg.trust_handler).ok()?,
            ))
        })
        .collect()
}

/// Signals every target that can take the signal; `started` is when the settle fired. Returns
/// the refused targets that waiting may lift, and those signalled (with what the confirmation
/// must know of them from just before the send).
fn signal_all(
    cfg: &Config,
    child: Option<Pid>,
    log: &Logger,
    started: Instant,
) -> (Vec<Process>, Vec<confirm::Watched>) {
    let mut refused = Vec::new();
    let mut sent = Vec::new();
    for (p, verdict) in targets(cfg, child, log) {
        let before = confirm::before(cfg.confirm, &p);
        let outcome = retry::deliver(cfg, log, &p, &verdict, started, 1);
        if outcome == Outcome::Sent {
            sent.push(before);
        }
        if outcome == Outcome::Refused {
            let again = verdict.handling.retried() && !cfg.retry_for.is_zero();
            retry::refuse(cfg, log, &p, &verdict, again);
            if again {
                refused.push(p);
            }
        }
    }
    (refused, sent)
}

/// The directories of a walk that `--check` reports: every real directory of each tree.
pub fn count_dirs(dirs: &[PathBuf], mounts: &[mounts::Mount]) -> Vec<usize> {
    let skip = mounts::kernel_points(mounts);
    dirs.iter()
        .map(|d| {
            let mut n = 0;
            fingerprint::take(std::slice::from_ref(d), &skip, &mut |_, _| n += 1);
            n
        })
        .collect()
}
