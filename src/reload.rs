//! After a settle: walk the trees (arming watches and fingerprinting in one pass), decide
//! whether what the app reads changed, and if so signal every target that can take it.
//!
//! This is where the loop's decisions meet the syscalls: the walk (`fingerprint`), the scan
//! (`target`, `pidfile`), the verdict and the send (`retry`). The hold/missing/unchanged
//! decision is still written inline in [`Reloads::settled`], interleaved with its logging.

use std::path::PathBuf;
use std::time::Instant;

use crate::config::{Config, Targets};
use crate::confirm::{self, Watched};
use crate::fingerprint::{self, Cut, Fingerprint, Hooks, Listed, Report, Sink};
use crate::limits;
use crate::log::Logger;
use crate::mounts;
use crate::outcome::{Reload, Signalled, Step};
use crate::pidfile;
use crate::retry::{self, Outcome};
use crate::settle::{Due, Settle};
use crate::stop;
use crate::sys::Pid;
use crate::target::{self, Process};
use crate::verdict::{self, Verdict};
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
        if let Some(until) = watcher.sed_hold(now, cfg.max_delay) {
            log.debug("a sed temp file is not renamed yet; waiting", &[]);
            settle.hold(due.first, until);
            return Settled::Waiting;
        }
        let report = self.walk(cfg, watcher, log);
        if report.interrupted {
            // A stop signal is pending: the loop reads it next.
            return Settled::Waiting;
        }
        let fp = match report.outcome {
            Err(dir) => {
                log.warn(
                    "watched directory is missing; not signalling until it is back",
                    &[("dir", dir.as_path().into())],
                );
                return Settled::Waiting;
            }
            Ok(fp) if Some(fp) == self.last => {
                log.debug("content unchanged; not signalling", &[]);
                return Settled::Unchanged;
            }
            Ok(fp) => fp,
        };
        if let Some(vol) = report.incomplete {
            let until = due.first + cfg.max_delay;
            if now < until {
                log.debug(
                    "kubelet update not complete: visible links do not match ..data yet; waiting",
                    &[("dir", vol.as_path().into())],
                );
                settle.hold(due.first, until);
                return Settled::Waiting;
            }
            log.warn("kubelet volume links still do not match ..data after RELOAD_MAX_DELAY; signalling anyway", &[("dir", vol.as_path().into())]);
        }
        let reload = Reload::new(now, fp.0);
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
                let (done, retry, sent) = signal_all(cfg, child, log, reload.started, due.latest);
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

/// The processes to signal now (scanned fresh: apps restart, pids are never cached), each
/// with how it would take the signal: the one RELOAD_PID_FILE names, else those named
/// PROCESS_NAME (within the tree of `child`, the app we run, if any), else `child` itself.
/// Logs when there is none.
pub fn targets(cfg: &Config, child: Option<Pid>, log: &Logger) -> Vec<(Process, Verdict)> {
    if let Some(path) = &cfg.pid_file {
        let named = pidfile::resolve(path, cfg.process_name.as_deref(), child, log);
        return judged(cfg, named);
    }
    let found = match (&cfg.process_name, child) {
        (Some(name), _) => match target::scan(name) {
            Ok(found) => found
                .into_iter()
                .filter(|p| child.is_none_or(|c| target::descends_from(p, c)))
                .collect(),
            Err(e) => {
                log.error(
                    "cannot list /proc",
                    &[
                        ("error", e.to_string().into()),
                        ("hint", target::list_hint(&e).into()),
                    ],
                );
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
    judged(cfg, chosen)
}

/// Each process with how it would take the signal; one that exits while we look is skipped.
fn judged(cfg: &Config, chosen: Vec<Process>) -> Vec<(Process, Verdict)> {
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
/// what the send did, the refused targets that waiting may lift (those running at the `latest`
/// change: one that started after it read the new content needs no signal once its handler is
/// in place), and those signalled (with what the confirmation must know of them from just
/// before the send).
fn signal_all(
    cfg: &Config,
    child: Option<Pid>,
    log: &Logger,
    started: Instant,
    latest: Instant,
) -> (Signalled, Vec<Process>, Vec<Watched>) {
    let mut done = Signalled::default();
    let mut again = Vec::new();
    let mut sent = Vec::new();
    for (p, verdict) in targets(cfg, child, log) {
        let before = confirm::before(cfg.confirm, &p);
        match retry::deliver(cfg, log, &p, &verdict, started, 1) {
            Outcome::Sent => {
                done.sent += 1;
                sent.push(before);
            }
            Outcome::Failed(errno) => done.errors.push(errno),
            Outcome::Refused => {
                let retried = verdict.handling.retried()
                    && !cfg.retry_for.is_zero()
                    && target::started_by(&p, latest);
                retry::refuse(cfg, log, &p, &verdict, retried);
                done.refused.push(verdict.handling.as_str());
                if retried {
                    again.push(p);
                }
            }
        }
    }
    (done, again, sent)
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
