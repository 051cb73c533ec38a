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

mod polling;
mod sources;
mod steps;

use std::process::ExitCode;
use std::time::Instant;

use crate::child::{self, Child};
use crate::config::{Config, Targets};
use crate::confirm::{self, Confirm};
use crate::limits;
use crate::listen::Listener;
use crate::log::Logger;
use crate::metrics::{Metrics, Tally, Watching};
use crate::mounts;
use crate::reload::Reloads;
use crate::retry::{self, Retry};
use crate::send;
use crate::settle::Settle;
use crate::signal::Signal;
use crate::sys;
use crate::target;
use crate::validate::Validator;
use crate::watch::{Change, Watcher};
use crate::webhook::Webhook;
use sources::{Event, Signals, Sources};

/// Sets up, then runs the loop; the exit code.
pub fn serve(cfg: &Config) -> ExitCode {
    let log = Logger::new(cfg.log_format, cfg.verbose);
    // Before anything is opened: short of descriptors, every walk and scan would fail later,
    // each looking like something else (an unreadable file, no process of that name).
    if let Some(line) = limits::fd_shortage() {
        log.error(&line, &[]);
        return ExitCode::from(1);
    }
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
    // Read here, then again only when the kernel flags a change of the table.
    let mount_watch = mounts::MountWatch::new(&cfg.dirs);
    let mounts = mount_watch.mounts();
    // The poll's first stamps come before the baseline: a change landing between the two is
    // then in the baseline or found by the first poll. Taken after, it was in the stamps only,
    // and on a blind filesystem nothing else would ever report it.
    let poll = polling::poller(cfg, mounts, &log);
    // The baseline is taken before the app starts, so the app never misses a change; the
    // watches are armed in the same walk. The warnings come after: nothing waits for them.
    let reloads = Reloads::start(cfg, &mut watcher, mounts, &log);
    if cfg.command.is_empty() && cfg.process_name.is_some() {
        match target::others_visible() {
            Ok(true) => {}
            Ok(false) => log.warn("no other process is visible in /proc", &[("hint", "in Kubernetes set shareProcessNamespace: true on the pod; with docker use --pid=container:APP (compose: pid: \"service:APP\"), or run the app as config-reloader -- APP".into())]),
            Err(e) => log.warn("cannot list /proc to see whether other processes are visible", &[("error", e.to_string().into()), ("hint", target::list_hint(&e).into())]),
        }
    }
    mounts::warn_pinned(&cfg.dirs, mounts, &log);
    let listener = match cfg.listen.map(Listener::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            log.error(&e, &[]);
            return ExitCode::from(1);
        }
    };
    let metrics = Metrics::new(cfg.signals(), cfg.webhook.is_some(), reloads.last());
    // A stop signal ended the first walk: nothing is started; the loop reads the signal first.
    let child = match cfg.command.is_empty() || reloads.stopped() {
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
                Err(e) => return crate::log::fatal(e.code, &e.line),
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
            settle: Settle::new(cfg.debounce, cfg.max_delay, cfg.min_interval),
            retry: Retry::default(),
            mounts: mount_watch,
            listener,
            validate: cfg.validate.clone().map(Validator::new),
            confirm: Confirm::new(
                cfg.confirm,
                cfg.confirm_timeout,
                cfg.process_name.clone(),
                cfg.name(),
            ),
        },
        tally: Tally::new(metrics),
        reloads,
        child,
        stopping: false,
    };
    if !d.reloads.stopped() {
        d.announce();
    }
    d.run()
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
    /// Each reload's outcome, logged and counted for `/metrics`.
    tally: Tally,
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
            ("min_interval_ms", cfg.min_interval.into()),
        ];
        if let Some(f) = &cfg.pid_file {
            fields.push(("pid_file", f.as_path().into()));
        }
        if let Some(w) = &self.sources.request {
            fields.push(("webhook", w.shown().into()));
        }
        if let Some(v) = &cfg.validate {
            fields.push(("validate", v.argv[0].as_str().into()));
        }
        match cfg.confirm {
            confirm::Mode::Alive => {}
            confirm::Mode::Workers => fields.push(("confirm", "workers".into())),
            confirm::Mode::Off => fields.push(("confirm", "off".into())),
        }
        if let Some(c) = &self.child {
            fields.push(("child", c.pid.get().into()));
        }
        if let Some(a) = self
            .sources
            .listener
            .as_ref()
            .and_then(Listener::local_addr)
        {
            fields.push(("listen", a.to_string().into()));
        }
        fields.push(("version", env!("CARGO_PKG_VERSION").into()));
        self.log.info("watching", &fields);
        if cfg.command.is_empty() {
            for (p, verdict) in send::targets(cfg, None, &self.log) {
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
            // Scrapes are answered until the app has exited.
            Event::Clients(ready) => {
                let s = &mut self.sources;
                let (w, m) = (&s.inotify, &self.tally.metrics);
                let seen = || Watching {
                    watches: w.count(),
                    events: w.events,
                    errors: w.errors,
                };
                if let Some(l) = &mut s.listener {
                    l.ready(&ready, now, &mut || m.render(seen()), &self.log);
                }
                None
            }
            // The app is shutting down: a reload now would only race its exit.
            _ if self.stopping => None,
            Event::Changed(change) => {
                match change.at_once() {
                    true => self.sources.settle.note_at_once(now),
                    false => self.sources.settle.note(now),
                }
                let shown = change.as_str().into();
                self.log.debug("possible change", &[("change", shown)]);
                if matches!(change, Change::Rearmed | Change::DirGone) {
                    self.replan_polling(now);
                }
                None
            }
            Event::Mounted => {
                // The next walk moves the watches onto a filesystem mounted there, or back.
                self.sources.settle.note(now);
                self.reloads.set_mounts(self.sources.mounts.mounts());
                self.replan_polling(now);
                let shown = Change::Mounted.as_str().into();
                self.log.debug("possible change", &[("change", shown)]);
                None
            }
            Event::Polled => {
                self.sources.settle.note(now);
                let shown = "polled".into();
                self.log.debug("possible change", &[("change", shown)]);
                None
            }
            Event::Settled(due) => {
                self.settled(due);
                None
            }
            Event::RetryDue => {
                if let Some(r) = self.sources.retry.due(self.cfg, now, &self.log) {
                    self.tally.retried(r, &self.log);
                }
                None
            }
            Event::RequestEnded(d) => {
                self.tally.ended(d, &self.log);
                None
            }
            Event::Validated(v) => {
                self.validated(*v);
                None
            }
            Event::Confirmed(step) => {
                self.tally.confirmed(step, &self.log);
                None
            }
        }
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
        // The reload it was confirming stays unfinished, as one whose request was cancelled.
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
}
