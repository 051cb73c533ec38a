//! After a settle: walk the trees (arming watches and fingerprinting in one pass), decide
//! whether what the app reads changed, and if so signal every target that can take it.
//!
//! This is where the loop's decisions meet the syscalls; each decision is a plain function in
//! the module below it (`fingerprint`, `target`, `signal`).

use std::path::PathBuf;
use std::time::Instant;

use crate::config::{Config, Targets};
use crate::fingerprint::{self, Cut, Fingerprint, Report};
use crate::limits;
use crate::log::Logger;
use crate::mounts;
use crate::settle::Settle;
use crate::signal::{self, Signal};
use crate::sys::Pid;
use crate::target::{self, Process};
use crate::verdict::{self, Handling, Verdict};
use crate::watch::{Unwatched, Watcher};

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
    /// run, if any). True when the content changed: the caller sends the reload request next.
    pub fn settled(
        &mut self,
        cfg: &Config,
        first: Instant,
        child: Option<Pid>,
        watcher: &mut Watcher,
        settle: &mut Settle,
        log: &Logger,
    ) -> bool {
        let now = Instant::now();
        if let Some(until) = watcher.sed_hold(now, cfg.max_delay) {
            log.debug("a sed temp file is not renamed yet; waiting", &[]);
            settle.hold(first, until);
            return false;
        }
        let report = self.walk(cfg, watcher, log);
        let fp = match report.outcome {
            Err(dir) => {
                log.warn(
                    "watched directory is missing; not signalling until it is back",
                    &[("dir", dir.as_path().into())],
                );
                return false;
            }
            Ok(fp) if Some(fp) == self.last => {
                log.debug("content unchanged; not signalling", &[]);
                return false;
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
                return false;
            }
            log.warn("kubelet volume links still do not match ..data after RELOAD_MAX_DELAY; signalling anyway", &[("dir", vol.as_path().into())]);
        }
        self.last = Some(fp);
        signal_all(cfg, child, log, now);
        true
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
    // A process that exits while we look is skipped.
    chosen
        .into_iter()
        .filter_map(|p| Some((p, verdict::judge(p.pid, cfg.signal).ok()?)))
        .collect()
}

/// Signals every target that can take the signal; `started` is when the settle fired.
fn signal_all(cfg: &Config, child: Option<Pid>, log: &Logger, started: Instant) {
    let sig = cfg.signal;
    for (p, verdict) in targets(cfg, child, log) {
        if !verdict.sends(cfg.force) {
            refuse(cfg, log, &p, &verdict);
            continue;
        }
        if !verdict.sends(false) {
            log.warn(
                "sending anyway because RELOAD_FORCE is set; the default action may kill it",
                &[
                    ("pid", p.pid.get().into()),
                    ("signal", sig.name().into()),
                    ("reason", verdict.reason().into()),
                ],
            );
        }
        match target::pin(&p).and_then(|to| signal::send(&to, sig)) {
            Ok(()) => log.info(
                "reloaded",
                &[
                    ("pid", p.pid.get().into()),
                    ("name", cfg.name().into()),
                    ("signal", sig.name().into()),
                    ("took_ms", started.elapsed().into()),
                ],
            ),
            Err(e) => send_failed(cfg, log, &p, sig, &e),
        }
    }
}

fn send_failed(cfg: &Config, log: &Logger, p: &Process, sig: Signal, e: &std::io::Error) {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => {
            "run the sidecar with the app's UID (securityContext.runAsUser) or give it CAP_KILL"
        }
        Some(libc::ESRCH) => {
            "the process exited after the scan; its successor gets the next change"
        }
        Some(libc::EMFILE | libc::ENFILE) => limits::emfile_hint(e),
        _ => "see the detail",
    };
    log.error(
        "signal failed",
        &[
            ("pid", p.pid.get().into()),
            ("name", cfg.name().into()),
            ("signal", sig.name().into()),
            ("error", signal::errno_name(e).into()),
            ("detail", e.to_string().into()),
            ("hint", hint.into()),
        ],
    );
}

/// Logs why `p` is not signalled.
pub fn refuse(cfg: &Config, log: &Logger, p: &Process, verdict: &Verdict) {
    let hint = match verdict.handling {
        Handling::Unknown => "run the sidecar with the app's UID so it may read the thread's state, or set RELOAD_FORCE=true if the app waits for the signal",
        _ => "make the app handle the signal, choose another RELOAD_SIGNAL, or set RELOAD_FORCE=true",
    };
    log.warn(
        &format!("refusing to send {}", cfg.signal.name()),
        &[
            ("pid", p.pid.get().into()),
            ("name", cfg.name().into()),
            ("signal", cfg.signal.name().into()),
            ("handling", verdict.handling.as_str().into()),
            ("reason", verdict.reason().into()),
            ("hint", hint.into()),
        ],
    );
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
