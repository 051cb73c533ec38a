//! What a reload's outcome is, in one place: plain data, decided without a kernel.
//!
//! A reload is one real change handed to the app. It is made of steps, each of which the
//! configuration may leave out: `validate` (a command run before), `signal` (each
//! chosen target took the signal: sent, not refused, no send error), `request` (the reload
//! URL answered 2xx) and `confirm` (the app was seen to apply it). The reload
//! succeeded when every step it has succeeded; while one is still pending (a request on its
//! way) it has no outcome yet. A change that finds nobody to reload (no process, every target
//! refused) failed: the app runs an old config, and it stays failed until a later reload
//! succeeds. A request that was fully sent and timed out ("outcome unknown") failed too: a
//! reload nobody can confirm is not a success, and the cure (a longer
//! RELOAD_WEBHOOK_TIMEOUT) is the operator's. Each retry of the request is a reload attempt
//! of its own, with the steps before it carried over, as prometheus-config-reloader counts.
//!
//! Validation comes first: a reload whose validation failed or timed out is a failed reload
//! with the validator's reason, and has no other step (nothing was sent). A validation cut
//! short by a newer change, or passed while a newer change was already settling, is no
//! reload at all: its content is never applied, and the newer change is validated in turn.
//! Confirmation comes last, for a reload that signalled someone: pending until its checks
//! conclude, so the outcome line and the metrics wait for it (the next change never does). A
//! newer reload that signalled someone replaces the pending checks, and what its checks find
//! is the older reload's confirmation too: both signals went to the same app, and what it
//! runs now is what a check can see. Finishing the older one as failed ("superseded")
//! instead would count a failure for every pair of changes closer together than the check
//! (1 s for `alive`, up to RELOAD_CONFIRM_TIMEOUT for `workers`) on an app that took both.
//! At most 8 reloads wait so (`metrics`): past that, the oldest is finished on the steps it
//! has, unconfirmed, so a stream of reloads faster than the check holds bounded memory.
//! Since outcomes can then come out of order, the gauges of `metrics` follow the newest
//! reload to finish, by when it started. A stop drops what is still pending, unfinished, as
//! it drops the request in flight.
//!
//! Never sends, never logs by itself: `main` logs [`Reload::line`] and feeds `metrics`.

use std::time::{Duration, Instant};

use crate::log::Logger;

/// How one step went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not configured: counts for nothing.
    Unused,
    /// Started, not finished.
    Pending,
    /// Done, and it worked.
    Ok,
    /// Done, and it did not: why, for the log line.
    Failed(String),
}

/// What the send of one change did to its targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signalled {
    /// Targets signalled without error.
    pub sent: usize,
    /// Targets not signalled, by the handling that refused them (`default`, `unknown`, ...).
    pub refused: Vec<&'static str>,
    /// Sends that failed, by errno name (`EPERM`, `ESRCH`).
    pub errors: Vec<String>,
}

impl Signalled {
    /// The signal step this amounts to: a success only when every chosen target took it.
    pub fn step(&self) -> Step {
        let mut why = Vec::new();
        if self.sent + self.refused.len() + self.errors.len() == 0 {
            why.push("no process to signal".to_string());
        }
        if !self.refused.is_empty() {
            why.push(format!("{} refused", self.refused.len()));
        }
        if !self.errors.is_empty() {
            why.push(format!("send failed: {}", self.errors.join(",")));
        }
        match why.is_empty() {
            true => Step::Ok,
            false => Step::Failed(why.join("; ")),
        }
    }
}

/// How the webhook's attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The app answered with this status.
    Status(u16),
    /// No answer: refused, reset, unreachable, or the attempt never got its request out.
    Error,
    /// Sent in full, no answer in time: it may have been applied. Counted as a failure.
    Unknown,
}

impl Delivery {
    /// The request step this amounts to.
    pub fn step(self) -> Step {
        match self {
            Delivery::Status(c) if (200..300).contains(&c) => Step::Ok,
            Delivery::Status(c) => Step::Failed(format!("request answered {c}")),
            Delivery::Error => Step::Failed("request failed".to_string()),
            Delivery::Unknown => Step::Failed("request outcome unknown (timed out)".to_string()),
        }
    }

    /// The `status` label of the request counter: the code, `error` or `unknown`.
    pub fn label(self) -> String {
        match self {
            Delivery::Status(c) => c.to_string(),
            Delivery::Error => "error".to_string(),
            Delivery::Unknown => "unknown".to_string(),
        }
    }
}

/// One reload attempt: the change it delivers and how each step went.
#[derive(Clone, Debug)]
pub struct Reload {
    /// When the change's settle fired: the duration counts from here.
    pub started: Instant,
    /// The fingerprint of the content it applies.
    pub fingerprint: u64,
    pub validate: Step,
    pub signal: Step,
    /// What the send did, for the metrics (empty without a signal step).
    pub signalled: Signalled,
    pub request: Step,
    pub confirm: Step,
}

/// A reload's outcome, once every step has finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The failed steps' reasons, joined.
    Failed(String),
}

impl Reload {
    /// A reload of `fingerprint` whose steps are all unused so far.
    pub fn new(started: Instant, fingerprint: u64) -> Reload {
        Reload {
            started,
            fingerprint,
            validate: Step::Unused,
            signal: Step::Unused,
            signalled: Signalled::default(),
            request: Step::Unused,
            confirm: Step::Unused,
        }
    }

    /// Records the send (`None`: no signal is configured, a reload URL only).
    pub fn signalled(mut self, s: Option<Signalled>) -> Reload {
        if let Some(s) = s {
            self.signal = s.step();
            self.signalled = s;
        }
        self
    }

    fn steps(&self) -> [&Step; 4] {
        [&self.validate, &self.signal, &self.request, &self.confirm]
    }

    /// `None` while a step is pending; a reload with no step at all failed (nothing was
    /// reloaded).
    pub fn outcome(&self) -> Option<Outcome> {
        let steps = self.steps();
        if steps.contains(&&Step::Pending) {
            return None;
        }
        let failed: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Failed(why) => Some(why.as_str()),
                _ => None,
            })
            .collect();
        if steps.iter().all(|s| **s == Step::Unused) {
            return Some(Outcome::Failed("nothing to reload".to_string()));
        }
        Some(match failed.is_empty() {
            true => Outcome::Succeeded,
            false => Outcome::Failed(failed.join("; ")),
        })
    }

    /// Logs the outcome as one line, if there is one yet, and returns it.
    pub fn report(&self, now: Instant, log: &Logger) -> Option<Outcome> {
        let outcome = self.outcome()?;
        let fp = format!("{:016x}", self.fingerprint);
        let took = self.took(now);
        match &outcome {
            Outcome::Succeeded => log.info(
                "reload succeeded",
                &[("fingerprint", fp.into()), ("took_ms", took.into())],
            ),
            Outcome::Failed(why) => log.warn(
                "reload failed",
                &[("reason", why.as_str().into()), ("fingerprint", fp.into()), ("took_ms", took.into()), ("hint", "the app runs its previous config; see the lines above, the next change tries again".into())],
            ),
        }
        Some(outcome)
    }

    /// How long it took until `now`.
    pub fn took(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// Which reload the request delivers: the one in flight, and the newer one coalesced after
/// it (the webhook sends one more request after the one on its way).
#[derive(Default)]
pub struct Deliveries {
    delivering: Option<Reload>,
    coalesced: Option<Reload>,
}

impl Deliveries {
    /// A new change handed to the request; `in_flight`: a request is on its way, so it still
    /// delivers the older change (one waiting for its retry is replaced by this one).
    pub fn handed(&mut self, mut r: Reload, in_flight: bool) {
        r.request = Step::Pending;
        match in_flight {
            true => self.coalesced = Some(r),
            false => self.delivering = Some(r),
        }
    }

    /// The pending confirmation concluded so: it is the confirm step of every reload here
    /// still waiting for one (the newest, and those it superseded).
    pub fn confirmed(&mut self, step: &Step) {
        for r in [&mut self.delivering, &mut self.coalesced]
            .into_iter()
            .flatten()
        {
            if r.confirm == Step::Pending {
                r.confirm = step.clone();
            }
        }
    }

    /// An attempt ended: the reload it delivered, with its request step filled in.
    pub fn ended(&mut self, d: Delivery) -> Option<Reload> {
        let done = self.delivering.clone().map(|mut r| {
            r.request = d.step();
            r
        });
        if let Some(next) = self.coalesced.take() {
            self.delivering = Some(next);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reload() -> Reload {
        Reload::new(Instant::now(), 7)
    }

    fn sent(n: usize) -> Signalled {
        Signalled {
            sent: n,
            ..Signalled::default()
        }
    }

    #[test]
    fn every_target_signalled_is_a_success() {
        let r = reload().signalled(Some(sent(2)));
        assert_eq!(r.outcome(), Some(Outcome::Succeeded));
    }

    #[test]
    fn nobody_to_signal_is_a_failure() {
        let r = reload().signalled(Some(Signalled::default()));
        assert_eq!(
            r.outcome(),
            Some(Outcome::Failed("no process to signal".into()))
        );
    }

    #[test]
    fn one_refusal_or_send_error_fails_the_reload() {
        let refused = Signalled {
            sent: 1,
            refused: vec!["default"],
            errors: vec![],
        };
        assert_eq!(
            reload().signalled(Some(refused)).outcome(),
            Some(Outcome::Failed("1 refused".into()))
        );
        let errs = Signalled {
            sent: 0,
            refused: vec![],
            errors: vec!["EPERM".into()],
        };
        assert_eq!(
            reload().signalled(Some(errs)).outcome(),
            Some(Outcome::Failed("send failed: EPERM".into()))
        );
    }

    #[test]
    fn a_pending_request_has_no_outcome_until_it_ends() {
        let mut r = reload().signalled(Some(sent(1)));
        r.request = Step::Pending;
        assert_eq!(r.outcome(), None);
        r.request = Delivery::Status(204).step();
        assert_eq!(r.outcome(), Some(Outcome::Succeeded));
        r.request = Delivery::Status(503).step();
        assert_eq!(
            r.outcome(),
            Some(Outcome::Failed("request answered 503".into()))
        );
    }

    #[test]
    fn an_unknown_request_outcome_counts_as_failed() {
        let mut r = reload();
        r.request = Delivery::Unknown.step();
        assert!(matches!(r.outcome(), Some(Outcome::Failed(_))));
        assert_eq!(Delivery::Unknown.label(), "unknown");
    }

    #[test]
    fn validation_and_confirmation_plug_in_as_steps() {
        let mut r = reload();
        r.validate = Step::Failed("validator exited 1".into());
        assert_eq!(
            r.outcome(),
            Some(Outcome::Failed("validator exited 1".into()))
        );
        let mut r = reload().signalled(Some(sent(1)));
        r.confirm = Step::Pending;
        assert_eq!(r.outcome(), None);
        r.confirm = Step::Failed("nginx kept its workers".into());
        assert!(matches!(r.outcome(), Some(Outcome::Failed(_))));
    }

    #[test]
    fn a_coalesced_change_waits_for_the_attempt_in_flight() {
        let mut d = Deliveries::default();
        d.handed(Reload::new(Instant::now(), 1), false);
        d.handed(Reload::new(Instant::now(), 2), true);
        let first = d.ended(Delivery::Status(200)).unwrap();
        assert_eq!(
            (first.fingerprint, first.outcome()),
            (1, Some(Outcome::Succeeded))
        );
        // A retry of the newer one after a failure is an attempt of its own.
        assert_eq!(d.ended(Delivery::Error).unwrap().fingerprint, 2);
        let retry = d.ended(Delivery::Status(200)).unwrap();
        assert_eq!(
            (retry.fingerprint, retry.outcome()),
            (2, Some(Outcome::Succeeded))
        );
    }

    #[test]
    fn a_confirmation_fills_every_delivery_waiting_for_one() {
        let mut d = Deliveries::default();
        let mut first = Reload::new(Instant::now(), 1).signalled(Some(sent(1)));
        first.confirm = Step::Pending;
        let mut second = first.clone();
        second.fingerprint = 2;
        d.handed(first, false);
        d.handed(second, true);
        let early = d.ended(Delivery::Status(200)).unwrap();
        assert_eq!(early.outcome(), None, "its confirmation is still pending");
        d.confirmed(&Step::Failed("app kept its workers".into()));
        let late = d.ended(Delivery::Status(200)).unwrap();
        assert_eq!(
            (late.fingerprint, late.outcome()),
            (2, Some(Outcome::Failed("app kept its workers".into())))
        );
    }

    #[test]
    fn a_reload_with_no_step_failed() {
        assert!(matches!(reload().outcome(), Some(Outcome::Failed(_))));
    }
}
