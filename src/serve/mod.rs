//! Serving: the set-up, then the one loop that runs until a stop signal (or, with `-- APP`,
//! until the app exits). Set-up may fail (exit 1); the loop may not: faults are logged and
//! survived.
//!
//! The loop reads like tini's: ask every source (`sources`) what it waits for, wait once in
//! `ppoll`, then act on what each reports, in one `match` ([`Daemon::on`]). Nothing runs while
//! nothing changes: with no change pending and no poll or request timer, the wait has no
//! timeout at all.
//!
//! Stopping is one act ([`Daemon::stop`]): it ends the settle, cancels the reload request in
//! flight or waiting for its retry and the signals still waiting for a refused target, and
//! forwards the signal to the app (or, without one,
//! exits). From then on nothing is signalled, requested or retried; further signals are still
//! forwarded, and the loop runs until the app exits.
//!
//! With `-- APP` and not PID 1 (under `docker run --init`, a pod's pause container, a shell),
//! we register as a child subreaper (`PR_SET_CHILD_SUBREAPER`, as catatonit does) rather than
//! only warn (as tini does): the app's orphans are then re-parented to us and reaped, wherever
//! we run, and `-- APP` means the same thing in every set-up.

mod sources;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::child::{self, Child};
use crate::config::{Config, Targets};
use crate::confirm::Confirm;
use crate::log::{self, Logger};
use crate::mounts;
use crate::poll::{self, Poll, Poller};
use crate::reload::{self, Next, Reloads, Signalled};
use crate::retry::{self, Retry};
use crate::settle::Settle;
use crate::signal::Signal;
use crate::sys;
use crate::target;
use crate::validate::{Validated, Validator};
use crate::watch::{Change, Watcher};
use crate::webhook::Webhook;
use sources::{Event, Signals, Sources};

/// Sets up, then runs the loop; the exit code.
pub fn serve(cfg: &Config) -> ExitCode {
    let log = Logger::new(cfg.log_format, cfg.verbose);
    // Blocked before anything else, so a SIGTERM during start-up waits in the signalfd.
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            let error = e.to_string().into();
            log.error("cannot set up signal handling", &[("error", error)]);
            return ExitCode::from(1);
        }
    };
    let mut watcher = match Watcher::new(&cfg.dirs, &log) {
        Ok(w) => w,
        Err(e) => {
            log.error(&e, &[]);
            return ExitCode::from(1);
        }
    };
    let mounts = mounts::all();
    // The poll's first stamps come before the baseline: a change landing between the two is
    // then in the baseline or found by the first poll. Taken after, it was in the stamps only,
    // and on a blind filesystem nothing else would ever report it.
    let poll = poller(cfg, &mounts, &log);
    // The baseline is taken before the app starts, so the app never misses a change; the
    // watches are armed in the same walk. The warnings come after: nothing waits for them.
    let reloads = Reloads::start(cfg, &mut watcher, &mounts, &log);
    if cfg.command.is_empty() && cfg.process_name.is_some() && !target::others_visible() {
        log.warn("no other process is visible in /proc", &[("hint", "in Kubernetes set shareProcessNamespace: true on the pod; with docker use --pid=container:APP (compose: pid: \"service:APP\"), or run the app as config-reloader -- APP".into())]);
    }
    mounts::warn_pinned(&cfg.dirs, &mounts, &log);
    let child = match cfg.command.is_empty() {
        true => None,
        false => {
            if std::process::id() != 1 {
                if let Err(e) = sys::become_subreaper() {
                    let error = e.to_string().into();
                    log.warn("cannot become a child subreaper; orphans of the app go to PID 1, which must reap them", &[("error", error)]);
                }
            }
            match child::spawn(&cfg.command) {
                Ok(c) => Some(c),
                Err(e) => return crate::fatal(e.code, &e.line),
            }
        }
    };
    let request = cfg
        .webhook
        .as_ref()
        .map(|w| Webhook::new(w.url.clone(), w.method, w.timeout));
    let d = Daemon {
        cfg,
        log,
        sources: Sources {
            signals,
            inotify: watcher,
            poll,
            request,
            settle: Settle::new(cfg.debounce, cfg.max_delay),
            retry: Retry::default(),
            validate: cfg.validate.clone().map(Validator::new),
            confirm: Confirm::new(
                cfg.confirm,
                cfg.confirm_timeout,
                cfg.process_name.clone(),
                cfg.name(),
            ),
        },
        reloads,
        child,
        stopping: false,
    };
    d.announce();
    d.run()
}

/// The poll timer `cfg.poll` asks for; one `info polling` line per polled directory.
fn poller(cfg: &Config, mounts: &[mounts::Mount], log: &Logger) -> Poller {
    let plan = poll::plan(cfg.poll, &cfg.dirs, mounts);
    log_polling(&plan, &plan.dirs, log);
    Poller::new(plan.every, plan.dirs, Instant::now())
}

/// One `info polling` line per directory of `dirs` (all or part of `plan`'s).
fn log_polling(plan: &poll::Plan, dirs: &[(PathBuf, &'static str)], log: &Logger) {
    for (dir, fs) in dirs {
        log.info(
            "polling",
            &[
                ("dir", dir.as_path().into()),
                ("fs", (*fs).into()),
                ("interval", log::seconds(plan.every).into()),
                ("reason", plan.reason.into()),
            ],
        );
    }
}

/// The loop's state: its sources, what it remembers between reloads, the app.
struct Daemon<'a> {
    cfg: &'a Config,
    log: Logger,
    sources: Sources,
    reloads: Reloads,
    child: Option<Child>,
    /// A stop signal came: no reload from here on.
    stopping: bool,
}

impl Daemon<'_> {
    /// The `info watching` line, then a warning for each target that would be refused.
    fn announce(&self) {
        let cfg = self.cfg;
        let dirs: Vec<String> = cfg.dirs.iter().map(|d| d.display().to_string()).collect();
        let targets = match cfg.targets {
            Targets::Roots => "roots",
            Targets::All => "all",
        };
        let mut fields = vec![
            ("dirs", dirs.join(",").into()),
            ("watches", self.sources.inotify.count().into()),
            ("process", cfg.name().into()),
            ("signal", cfg.signal.name().into()),
            ("targets", targets.into()),
            ("debounce_ms", cfg.debounce.into()),
            ("max_delay_ms", cfg.max_delay.into()),
        ];
        if let Some(w) = &self.sources.request {
            fields.push(("webhook", w.shown().into()));
        }
        if let Some(v) = &cfg.validate {
            fields.push(("validate", v.argv[0].as_str().into()));
        }
        match cfg.confirm {
            crate::confirm::Mode::Alive => {}
            crate::confirm::Mode::Workers => fields.push(("confirm", "workers".into())),
            crate::confirm::Mode::Off => fields.push(("confirm", "off".into())),
        }
        if let Some(c) = &self.child {
            fields.push(("child", c.pid.get().into()));
        }
        fields.push(("version", env!("CARGO_PKG_VERSION").into()));
        self.log.info("watching", &fields);
        if cfg.command.is_empty() {
            for (p, verdict) in reload::targets(cfg, None, &self.log) {
                if !verdict.sends(cfg.force) {
                    retry::refuse(cfg, &self.log, &p, &verdict, false);
                }
            }
        }
    }

    /// Asks every source, waits once, acts on what each reports, in order; until a stop
    /// without an app, or the app's exit.
    fn run(mut self) -> ExitCode {
        loop {
            let mut woken = self.sources.wait(&self.log);
            while let Some(event) = self.sources.next_event(&mut woken, &self.log) {
                if let Some(code) = self.on(event) {
                    return code;
                }
            }
        }
    }

    /// Acts on what a source reported; `Some(exit code)` when we are done.
    fn on(&mut self, event: Event) -> Option<ExitCode> {
        let now = Instant::now();
        match event {
            Event::Signals(sigs) => sigs.into_iter().find_map(|s| self.on_signal(s)),
            // The app is shutting down: a reload now would only race its exit.
            _ if self.stopping => None,
            Event::Changed(change) => {
                self.sources.settle.note(now);
                let shown = change.as_str().into();
                self.log.debug("possible change", &[("change", shown)]);
                if matches!(change, Change::Rearmed | Change::DirGone)
                    && self.cfg.poll == Poll::Auto
                {
                    // Only a newly polled directory is logged: a deleted subdirectory re-arms
                    // too, and must neither repeat the lines nor restart the timer.
                    let plan = poll::plan(Poll::Auto, &self.cfg.dirs, &mounts::all());
                    let added = self.sources.poll.replan(plan.dirs.clone(), now);
                    log_polling(&plan, &added, &self.log);
                }
                None
            }
            Event::Polled => {
                self.sources.settle.note(now);
                let shown = "polled".into();
                self.log.debug("possible change", &[("change", shown)]);
                None
            }
            Event::Settled(first) => {
                let s = &mut self.sources;
                // Whatever it was checking may be stale now; the walk below decides afresh.
                if let Some(v) = &mut s.validate {
                    if v.cancel() {
                        self.log
                            .debug("a newer settle cancels the validation in flight", &[]);
                    }
                }
                let child = self.child.map(|c| c.pid);
                let next = self.reloads.settled(
                    self.cfg,
                    first,
                    child,
                    &mut s.inotify,
                    &mut s.settle,
                    &self.log,
                );
                match next {
                    Some(Next::Signalled(done)) => self.signalled(done),
                    Some(Next::Validate(fp)) => {
                        let v = s.validate.as_mut()?;
                        if let Some(failed) = v.start(fp, first, &self.log) {
                            self.validated(failed);
                        }
                    }
                    None => {}
                }
                None
            }
            Event::RetryDue => {
                self.sources.retry.due(self.cfg, now, &self.log);
                None
            }
            Event::Validated(v) => {
                self.validated(v);
                None
            }
            // Each failure is logged by `confirm`; the reload's outcome takes them from here.
            Event::Confirmed(seen) => {
                if seen.iter().all(|c| c.failure().is_none()) {
                    self.log.debug("reload applied", &[]);
                }
                None
            }
        }
    }

    /// A change was signalled: the refusals to retry, the reload request, the confirmation.
    fn signalled(&mut self, done: Signalled) {
        let s = &mut self.sources;
        s.confirm.watch(done.sent, done.at, &self.log);
        s.retry.replace(done.refused, done.at, self.cfg);
        if let Some(w) = &mut s.request {
            w.request(Instant::now(), &self.log);
        }
    }

    /// A validation ended: passed, the content it checked is applied, unless a newer change
    /// is already settling (its own validation decides); else nothing is sent (its error line
    /// is logged). The reload's outcome takes `v.validation` from here.
    fn validated(&mut self, v: Validated) {
        if self.stopping {
            return;
        }
        if let Some(why) = v.validation.failure() {
            self.log.debug("not reloading", &[("reason", why.into())]);
            return;
        }
        if self.sources.settle.deadline().is_some() {
            self.log.debug(
                "validation passed, but a newer change is settling; it is validated in turn",
                &[],
            );
            return;
        }
        let child = self.child.map(|c| c.pid);
        let done = self
            .reloads
            .apply(self.cfg, v.fp, child, &self.log, v.settled);
        self.signalled(done);
    }

    /// One signal; `Some(exit code)` when we are done.
    fn on_signal(&mut self, sig: Signal) -> Option<ExitCode> {
        match (sig.0, self.child) {
            (libc::SIGTERM | libc::SIGINT, _) => self.stop(sig),
            (libc::SIGCHLD, app) => self.reap(app),
            (s, Some(app)) if child::forwards(s) => {
                self.log.info(
                    "forwarding signal to the app",
                    &[
                        ("signal", sig.name().into()),
                        ("pid", app.pid.get().into()),
                        ("pending_reload", "kept".into()),
                    ],
                );
                let _ = app.forward(s);
                None
            }
            _ => {
                let shown = sig.name().into();
                self.log.debug("ignoring signal", &[("signal", shown)]);
                None
            }
        }
    }

    /// SIGTERM or SIGINT: the settle ends, the reload request in flight is cancelled, and the
    /// signal goes to the app; without one, we are done. A pending reload is dropped: a stop
    /// usually means the whole pod is stopping, and a reload racing the app's own shutdown
    /// helps nobody.
    fn stop(&mut self, sig: Signal) -> Option<ExitCode> {
        self.stopping = true;
        let pending = self.sources.settle.cancel();
        let in_flight = self.sources.request.as_mut().is_some_and(Webhook::cancel);
        let retrying = self.sources.retry.cancel();
        let validating = self
            .sources
            .validate
            .as_mut()
            .is_some_and(Validator::cancel);
        self.sources.confirm.cancel();
        let pending = if pending || in_flight || retrying || validating {
            "dropped"
        } else {
            "none"
        };
        let Some(app) = self.child else {
            self.log.info(
                "exiting",
                &[
                    ("signal", sig.name().into()),
                    ("pending_reload", pending.into()),
                ],
            );
            return Some(ExitCode::SUCCESS);
        };
        self.log.info(
            "forwarding signal to the app",
            &[
                ("signal", sig.name().into()),
                ("pid", app.pid.get().into()),
                ("pending_reload", pending.into()),
            ],
        );
        let _ = app.forward(sig.0);
        None
    }

    /// SIGCHLD: reaps every exited child, telling the app, the validation command and orphans
    /// apart (without an app: PID 1 of a container, or the validation command's parent); the
    /// app's exit code once it exited.
    fn reap(&mut self, app: Option<Child>) -> Option<ExitCode> {
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
        self.sources.confirm.died(app.pid, &self.log);
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
