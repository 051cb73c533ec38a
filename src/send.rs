//! The send of a settled reload: which processes to signal now (scanned fresh, each judged
//! by `verdict`) and the signal to each through `retry::deliver`, counting what was sent,
//! refused and failed. It never decides whether the content changed (`reload`) nor retries
//! a refusal later (`retry`).

use std::time::Instant;

use crate::config::{Config, Targets};
use crate::confirm::{self, Watched};
use crate::log::Logger;
use crate::outcome::Signalled;
use crate::pidfile;
use crate::retry::{self, Outcome};
use crate::sys::Pid;
use crate::target::{self, Process};
use crate::verdict::{self, Verdict};

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
pub fn signal_all(
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
