//! The steps of one reload as the loop drives them: a due settle, the validation command (if
//! any) and what its end means, the send, and the confirmation's targets; the SIGCHLD arm
//! that tells the app, the validator and orphans apart.
//!
//! Each step's meaning is `outcome`'s; this only hands the [`Reload`] along: to the
//! `Validator` while it runs, to `Tally` once sent (which finishes it when its request and
//! confirmation end), with the pacing (`Settle::reloaded`), the retry of refusals and the
//! confirmation started for every reload that was sent, validated or not.

use std::process::ExitCode;
use std::time::Instant;

use crate::child::{self, Child};
use crate::log;
use crate::outcome::Reload;
use crate::reload::{Applied, Settled};
use crate::settle::Due;
use crate::validate::Validated;

use super::Daemon;

impl Daemon<'_> {
    /// A settle is due: walk, then validate or send.
    pub(super) fn settled(&mut self, due: Due) {
        let s = &mut self.sources;
        // Whatever it was checking may be stale now; the walk below decides afresh.
        if s.validate.as_mut().is_some_and(|v| v.cancel()) {
            self.log
                .debug("a newer settle cancels the validation in flight", &[]);
        }
        let child = self.child.map(|c| c.pid);
        let settled = self.reloads.settled(
            self.cfg,
            &due,
            child,
            &mut s.inotify,
            &mut s.settle,
            &self.log,
        );
        match settled {
            Settled::Waiting => {}
            Settled::Unchanged => self.tally.metrics.unchanged(),
            Settled::Validate(reload) => self.validate(reload, due),
            Settled::Changed(applied) => self.sent(&due, applied),
        }
    }

    /// Starts the validation of `reload`; one that cannot even start fails it at once.
    fn validate(&mut self, reload: Reload, due: Due) {
        self.tally.validating();
        let Some(v) = self.sources.validate.as_mut() else {
            return;
        };
        if let Some(failed) = v.start(reload, due, &self.log) {
            self.validated(failed);
        }
    }

    /// A validation ended. Failed: nothing is sent, the reload failed. Passed: its content is
    /// sent, unless a newer change is already settling (the signal would make the app read
    /// content nobody validated; that change is validated in turn).
    pub(super) fn validated(&mut self, v: Validated) {
        if self.stopping {
            return;
        }
        if let Some(why) = v.validation.failure() {
            self.log.debug("not reloading", &[("reason", why.into())]);
            return self.tally.rejected(v.reload, &self.log);
        }
        if self.sources.settle.deadline().is_some() {
            self.log.debug(
                "validation passed, but a newer change is settling; it is validated in turn",
                &[],
            );
            return;
        }
        let child = self.child.map(|c| c.pid);
        let applied = self
            .reloads
            .apply(self.cfg, v.reload, child, &v.due, &self.log);
        self.sent(&v.due, applied);
    }

    /// New content was sent: the pacing starts again, the refusals go to the retry, the
    /// targets signalled to the confirmation, and the reload to the tally (with the request).
    fn sent(&mut self, due: &Due, applied: Applied) {
        let s = &mut self.sources;
        let Applied {
            reload,
            retry,
            sent,
        } = applied;
        s.settle.reloaded(due, reload.started);
        if due.paced {
            self.log.info(
                "coalesced changes into one reload",
                &[
                    ("changes", u64::from(due.changes).into()),
                    ("min_interval", log::seconds(self.cfg.min_interval).into()),
                ],
            );
        }
        s.retry
            .replace(retry, reload.started, reload.fingerprint, self.cfg);
        // From the send, not the settle: a validation may have taken seconds in between.
        s.confirm.watch(sent, Instant::now(), &self.log);
        self.tally.changed(reload, s.request.as_mut(), &self.log);
    }

    /// SIGCHLD: reaps every exited child, telling the app, the validation command and orphans
    /// apart (without an app: PID 1 of a container, or the validation command's parent); the
    /// app's exit code once it exited.
    pub(super) fn reap(&mut self, app: Option<Child>) -> Option<ExitCode> {
        let reaped = child::reap_all(app.map(|a| a.pid));
        if let Some(e) = reaped.error {
            let error = e.to_string().into();
            self.log.error("reaping failed", &[("error", error)]);
        }
        for (pid, exit) in reaped.others {
            let v = self.sources.validate.as_mut();
            match v.and_then(|v| v.exited(pid, exit, &self.log)) {
                Some(done) => self.validated(done),
                None => self.log.debug("reaped an orphan", &[("pid", pid.into())]),
            }
        }
        let (app, exit) = (app?, reaped.app?);
        // An app that exits on the reload signal: the confirmation says so before we go.
        if let Some(step) = self.sources.confirm.died(app.pid, &self.log) {
            self.tally.confirmed(step, &self.log);
        }
        // A validation still running would outlive us in a group of its own.
        if self.sources.validate.as_mut().is_some_and(|v| v.cancel()) {
            self.log
                .debug("the app exited: the validation in flight is killed", &[]);
        }
        let code = child::code(exit);
        self.log.info(
            "app exited",
            &[
                ("pid", app.pid.get().into()),
                ("exit_code", i64::from(code).into()),
            ],
        );
        Some(ExitCode::from(code))
    }
}
