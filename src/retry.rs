//! Sending to one target, and retrying the targets that could not take the signal yet.
//!
//! A refusal that waiting may lift (`Handling::retried`: a mask held for a moment, an app still
//! starting without its handler, a sigwait loop caught between two waits) is not dropped. The
//! processes refused at a change, each pinned by pid and start time, are judged again with
//! backoff (50 ms, doubling to 5 s) for `RELOAD_RETRY_FOR`, and sent the signal once one can
//! take it; then the rest is given up with one line each. Only those processes, and only
//! while they run the program they ran then: one that started after the change, or has
//! exec'd another program since (a wrapper script that execs the app), read the new content
//! already. A newer change replaces whatever is
//! pending. [`Retry`] owns its deadline and what it does when due; it never scans `/proc` for
//! names and never fingerprints. The change's own reload attempt counted the refusals as a
//! failure; once nothing is pending, the retries are a reload attempt of their own (signal
//! step only), as each retry of the reload request is.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::log::{self, Logger};
use crate::outcome::{Reload, Signalled};
use crate::signal::{self, Signal};
use crate::target::{self, Process};
use crate::verdict::{self, Handling, Verdict};

/// The first pause before a retry, and the longest.
const FIRST: Duration = Duration::from_millis(50);
const LONGEST: Duration = Duration::from_secs(5);

/// What became of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Signalled.
    Sent,
    /// The send failed (logged): its errno's name, `other` for an error without one.
    Failed(String),
    /// Its verdict refuses the signal (not logged: the caller knows whether it retries).
    Refused,
}

/// Sends `cfg.signal` to `p` if `verdict` allows it, logging the send or its failure;
/// `started` is when the change settled, `attempt` 1 for the first try.
pub fn deliver(
    cfg: &Config,
    log: &Logger,
    p: &Process,
    verdict: &Verdict,
    started: Instant,
    attempt: u32,
) -> Outcome {
    let sig = cfg.signal;
    if !verdict.sends(cfg.force) {
        return Outcome::Refused;
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
    match target::pin(p).and_then(|to| signal::send(&to, sig)) {
        Ok(()) => {
            let mut fields = vec![
                ("pid", p.pid.get().into()),
                ("name", cfg.name().into()),
                ("signal", sig.name().into()),
                ("took_ms", started.elapsed().into()),
            ];
            if attempt > 1 {
                fields.push(("attempt", u64::from(attempt).into()));
            }
            log.info("reloaded", &fields);
            Outcome::Sent
        }
        Err(e) => {
            send_failed(cfg, log, p, sig, &e);
            // Only an errno becomes a metrics label: the set stays closed.
            let errno = e
                .raw_os_error()
                .map_or("other".into(), |_| signal::errno_name(&e));
            Outcome::Failed(errno)
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
        Some(libc::EMFILE | libc::ENFILE) => crate::limits::emfile_hint(e),
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

/// Logs why `p` is not signalled; `retrying`: it will be judged again.
pub fn refuse(cfg: &Config, log: &Logger, p: &Process, verdict: &Verdict, retrying: bool) {
    let hint = match verdict.handling {
        Handling::Unknown => "run the sidecar with the app's UID so it may read the thread's state, or set RELOAD_FORCE=true if the app waits for the signal",
        Handling::Runtime(_) => "set RELOAD_TRUST_HANDLER=true if the app reloads on the signal, or reload it over HTTP (RELOAD_WEBHOOK_URL); RELOAD_FORCE=true sends regardless",
        Handling::Ignored => "start the app without ignoring the signal (no nohup), choose another RELOAD_SIGNAL, or reload it over HTTP (RELOAD_WEBHOOK_URL)",
        _ => "make the app handle the signal, choose another RELOAD_SIGNAL, or set RELOAD_FORCE=true",
    };
    let mut fields = vec![
        ("pid", p.pid.get().into()),
        ("name", cfg.name().into()),
        ("signal", cfg.signal.name().into()),
        ("handling", verdict.handling.as_str().into()),
        ("reason", verdict.reason().into()),
    ];
    if retrying {
        fields.push(("retry_for", log::seconds(cfg.retry_for).into()));
    }
    fields.push(("hint", hint.into()));
    log.warn(&format!("refusing to send {}", cfg.signal.name()), &fields);
}

/// The targets of the last change still waiting for the signal.
pub struct Retry {
    /// Each refused process with its comm at the change.
    pending: Vec<(Process, Option<Vec<u8>>)>,
    /// When the change settled.
    started: Instant,
    /// Give up after this.
    until: Instant,
    next: Option<Instant>,
    gap: Duration,
    attempt: u32,
    /// The fingerprint of the change, and what the retries did so far: the reload attempt
    /// they amount to once none is pending.
    fingerprint: u64,
    done: Signalled,
}

impl Default for Retry {
    fn default() -> Retry {
        let now = Instant::now();
        Retry {
            pending: Vec::new(),
            started: now,
            until: now,
            next: None,
            gap: FIRST,
            attempt: 1,
            fingerprint: 0,
            done: Signalled::default(),
        }
    }
}

impl Retry {
    /// A change of content `fingerprint` was signalled at `started`: what it refused and may
    /// yet send replaces whatever an older change left pending.
    pub fn replace(
        &mut self,
        refused: Vec<Process>,
        started: Instant,
        fingerprint: u64,
        cfg: &Config,
    ) {
        *self = Retry::default();
        if refused.is_empty() || cfg.retry_for.is_zero() {
            return;
        }
        self.pending = refused
            .into_iter()
            .map(|p| (p, target::comm(p.pid)))
            .collect();
        self.started = started;
        self.fingerprint = fingerprint;
        self.until = started + cfg.retry_for;
        self.next = Some(Instant::now() + FIRST);
    }

    /// Nothing more is sent (a stop was forwarded to the app); whether a target was waiting.
    pub fn cancel(&mut self) -> bool {
        let waiting = self.pending();
        *self = Retry::default();
        waiting
    }

    /// Whether a target still waits for the signal.
    pub fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// When [`Retry::due`] should run next.
    pub fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Judges each pending target again and signals those that can take it now; keeps the
    /// others while the time lasts, gives them up after. Once none is pending: the reload
    /// attempt the retries amount to (its signal step: every retried target took it, or not).
    pub fn due(&mut self, cfg: &Config, now: Instant, log: &Logger) -> Option<Reload> {
        if self.next.is_none_or(|at| now < at) {
            return None;
        }
        let done = &mut self.done;
        self.attempt += 1;
        let last = now >= self.until;
        let (attempt, started) = (self.attempt, self.started);
        self.pending.retain(|(p, comm)| {
            // A successor under the same pid, or another program exec'd in its place, read the
            // new content when it started.
            if target::start_time(p.pid).ok() != Some(p.start_time) || target::comm(p.pid) != *comm
            {
                log.debug(
                    "a refused target exited or exec'd since the change; not retrying it",
                    &[("pid", p.pid.get().into())],
                );
                return false;
            }
            let Ok(verdict) = verdict::judge(p.pid, cfg.signal, cfg.trust_handler) else {
                return false;
            };
            match deliver(cfg, log, p, &verdict, started, attempt) {
                Outcome::Refused if !verdict.handling.retried() => {
                    refuse(cfg, log, p, &verdict, false);
                    done.refused.push(verdict.handling.as_str());
                    false
                }
                Outcome::Refused if last => {
                    done.refused.push(verdict.handling.as_str());
                    log.warn(
                        &format!("giving up on sending {}", cfg.signal.name()),
                        &[
                            ("pid", p.pid.get().into()),
                            ("name", cfg.name().into()),
                            ("attempts", u64::from(attempt).into()),
                            ("retried_for", log::seconds(cfg.retry_for).into()),
                            ("reason", verdict.reason().into()),
                        ],
                    );
                    false
                }
                Outcome::Refused => {
                    log.debug(
                        "still refusing; will retry",
                        &[
                            ("pid", p.pid.get().into()),
                            ("handling", verdict.handling.as_str().into()),
                        ],
                    );
                    true
                }
                Outcome::Sent => {
                    done.sent += 1;
                    false
                }
                Outcome::Failed(errno) => {
                    done.errors.push(errno);
                    false
                }
            }
        });
        self.next = match self.pending.is_empty() {
            true => None,
            false => Some((now + self.gap).min(self.until)),
        };
        self.gap = (self.gap * 2).min(LONGEST);
        if self.pending.is_empty() {
            let done = std::mem::take(&mut self.done);
            // Targets that exited or exec'd since took nothing: no attempt to count.
            let attempted = done.sent + done.refused.len() + done.errors.len() > 0;
            return attempted
                .then(|| Reload::new(self.started, self.fingerprint).signalled(Some(done)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Action};
    use crate::sys::Pid;

    fn cfg(retry_for: &str) -> Config {
        let args = [
            "--config-dir",
            "/",
            "--process-name",
            "x",
            "--retry-for",
            retry_for,
        ];
        match config::parse(args.map(Into::into), |_| None) {
            Ok(Action::Run(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    fn gone() -> Process {
        // Pid 2 is kthreadd on the host; in any case not started at tick 1 with this comm.
        Process {
            pid: Pid::new(2).expect("pid 2"),
            ppid: 0,
            start_time: u64::MAX,
        }
    }

    #[test]
    fn a_retry_has_a_deadline_only_while_something_is_pending() {
        let mut r = Retry::default();
        assert_eq!(r.deadline(), None);
        let now = Instant::now();
        r.replace(vec![gone()], now, 0, &cfg("60s"));
        let due = r.deadline().expect("a first retry");
        assert!(
            due > now && due <= now + Duration::from_millis(100),
            "{due:?}"
        );
        // A process that is not the one refused (another start time) is dropped, not signalled.
        r.due(
            &cfg("60s"),
            due,
            &Logger::new(crate::log::LogFormat::Text, false),
        );
        assert_eq!((r.pending(), r.deadline()), (false, None));
        r.replace(vec![gone()], now, 0, &cfg("0"));
        assert_eq!(r.deadline(), None, "RELOAD_RETRY_FOR=0 never retries");
        r.replace(vec![gone()], now, 0, &cfg("60s"));
        r.cancel();
        assert_eq!(r.deadline(), None);
    }
}
