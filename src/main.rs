//! config-reloader: watches configuration directories and reloads an app once per real change,
//! by a signal, an HTTP request, or both.
//!
//! Data flows through the modules in this order: `config` (env + flags → `Config`, with
//! `values`), `names` (which names are content), `watch` (inotify events → "may have changed",
//! with `events` for what one event means and `rearm` for configured paths that vanish or are
//! re-pointed), `poll` (the same question where inotify is blind), `settle` (debounce),
//! `fingerprint` (walk → "did change"), `target` (scan `/proc` → whom), `verdict` (how each
//! would take the signal), `signal` (send), `webhook` (the reload request), `child` (the app
//! as our child). `reload` wires a settle to them, `check` reports, `mounts` and `limits`
//! explain set-ups, `log` writes the lines, `sys` wraps the few raw syscalls.
//!
//! One thread, one blocking `ppoll` on the signalfd, the inotify fd and, while a reload request
//! is on its way, its socket: nothing runs while nothing changes.

mod check;
mod child;
mod config;
mod fingerprint;
mod limits;
mod log;
mod mounts;
mod names;
mod poll;
mod reload;
mod settle;
mod signal;
mod sys;
mod target;
mod url;
mod values;
mod verdict;
mod watch;
mod webhook;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use child::Child;
use config::{Action, Config, Targets};
use log::Logger;
use poll::{Poll, Poller};
use reload::Reloads;
use settle::Settle;
use signal::Signal;
use sys::Interest;
use watch::Change;
use watch::Watcher;
use webhook::Webhook;

fn main() -> ExitCode {
    let action = match config::parse(std::env::args_os().skip(1), config::process_env) {
        Ok(a) => a,
        Err(e) => return fatal(2, &e.to_string()),
    };
    match action {
        Action::Help => print(&config::help()),
        Action::Version => print(&format!("config-reloader {}\n", env!("CARGO_PKG_VERSION"))),
        Action::Check(cfg) => check::run(&cfg),
        Action::Run(cfg) => serve(&cfg),
    }
}

fn print(text: &str) -> ExitCode {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// One line on stderr, before anything was watched or signalled.
fn fatal(code: u8, line: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "config-reloader: {line}");
    ExitCode::from(code)
}

/// Everything the loop waits on.
struct Daemon<'a> {
    cfg: &'a Config,
    log: Logger,
    sigfd: File,
    watcher: Watcher,
    settle: Settle,
    reloads: Reloads,
    poller: Poller,
    webhook: Option<Webhook>,
    child: Option<Child>,
    /// A stop signal was forwarded to the app: no more reloads.
    stopping: bool,
}

/// Sets up, then runs the loop until SIGTERM or SIGINT (or, with `-- APP`, until the app
/// exits). Set-up may fail (exit 1); the loop may not: faults are logged and survived.
fn serve(cfg: &Config) -> ExitCode {
    let log = Logger::new(cfg.log_format, cfg.verbose);
    // Before anything is opened: short of descriptors, every walk and scan would fail later,
    // each looking like something else (an unreadable file, no process of that name).
    if let Some(line) = limits::fd_shortage() {
        log.error(&line, &[]);
        return ExitCode::from(1);
    }
    // Blocked before anything else, so a SIGTERM during start-up waits in the signalfd.
    let sigfd = match sys::block_signals(signal::blocked())
        .and_then(|()| sys::signalfd(signal::blocked()))
    {
        Ok(fd) => File::from(fd),
        Err(e) => {
            log.error(
                "cannot set up signal handling",
                &[("error", e.to_string().into())],
            );
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
    // Read once: the poll plan, the walk and the warnings all look at the same mounts.
    let mounts = mounts::all();
    // The poll's first stamps come before the baseline: a change landing between the two is
    // then in the baseline or found by the first poll. Taken after, it was in the stamps only,
    // and on a blind filesystem nothing else would ever report it.
    let poller = poller(cfg, &mounts, &log);
    // The baseline is taken before the app starts, so the app never misses a change; the
    // watches are armed in the same walk. The warnings come after: nothing waits for them.
    let reloads = Reloads::start(cfg, &mut watcher, &mounts, &log);
    if cfg.command.is_empty() && cfg.process_name.is_some() {
        match target::others_visible() {
            Ok(true) => {}
            Ok(false) => log.warn("no other process is visible in /proc", &[("hint", "in Kubernetes set shareProcessNamespace: true on the pod; with docker use --pid=container:APP (compose: pid: \"service:APP\"), or run the app as config-reloader -- APP".into())]),
            Err(e) => log.warn("cannot list /proc to see whether other processes are visible", &[("error", e.to_string().into()), ("hint", target::list_hint(&e).into())]),
        }
    }
    mounts::warn_pinned(&cfg.dirs, &mounts, &log);
    let child = match cfg.command.is_empty() {
        true => None,
        false => match child::spawn(&cfg.command) {
            Ok(c) => Some(c),
            Err(e) => return fatal(e.code, &e.line),
        },
    };
    let webhook = cfg
        .webhook
        .as_ref()
        .map(|w| Webhook::new(w.url.clone(), w.method, w.timeout));
    let mut d = Daemon {
        cfg,
        poller,
        settle: Settle::new(cfg.debounce, cfg.max_delay),
        log,
        sigfd,
        watcher,
        reloads,
        webhook,
        child,
        stopping: false,
    };
    d.ready();
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

impl Daemon<'_> {
    fn ready(&self) {
        let cfg = self.cfg;
        let dirs: Vec<String> = cfg.dirs.iter().map(|d| d.display().to_string()).collect();
        let targets = match cfg.targets {
            Targets::Roots => "roots",
            Targets::All => "all",
        };
        let mut fields = vec![
            ("dirs", dirs.join(",").into()),
            ("watches", self.watcher.count().into()),
            ("process", cfg.name().into()),
            ("signal", cfg.signal.name().into()),
            ("targets", targets.into()),
            ("debounce_ms", cfg.debounce.into()),
            ("max_delay_ms", cfg.max_delay.into()),
        ];
        if let Some(w) = &self.webhook {
            fields.push(("webhook", w.shown().into()));
        }
        if let Some(c) = &self.child {
            fields.push(("child", c.pid.get().into()));
        }
        fields.push(("version", env!("CARGO_PKG_VERSION").into()));
        self.log.info("watching", &fields);
        if cfg.command.is_empty() {
            for (p, verdict) in reload::targets(cfg, None, &self.log) {
                if !verdict.sends(cfg.force) {
                    reload::refuse(cfg, &self.log, &p, &verdict);
                }
            }
        }
    }

    fn run(&mut self) -> ExitCode {
        let mut failures = 0u32;
        loop {
            let now = Instant::now();
            let deadline = [
                self.settle.deadline(),
                self.poller.deadline(),
                self.webhook.as_ref().and_then(Webhook::deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            let mut fds = vec![
                Interest {
                    fd: self.sigfd.as_fd(),
                    write: false,
                },
                Interest {
                    fd: self.watcher.fd(),
                    write: false,
                },
            ];
            fds.extend(self.webhook.as_ref().and_then(Webhook::interest));
            let ready = match sys::ppoll(&fds, timeout) {
                Ok(r) => {
                    failures = 0;
                    r
                }
                Err(e) => {
                    // Never spin on a poll that keeps failing: back off up to a second.
                    failures = failures.saturating_add(1);
                    let pause =
                        Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1));
                    self.log.error(
                        "poll failed; retrying",
                        &[("error", e.to_string().into()), ("retry_ms", pause.into())],
                    );
                    std::thread::sleep(pause);
                    continue;
                }
            };
            drop(fds);
            if ready[0].read {
                if let Some(code) = self.signals() {
                    return code;
                }
            }
            let now = Instant::now();
            if ready[1].read {
                if let Some(change) = self.watcher.read(now, &self.log) {
                    self.settle.note(now);
                    self.log
                        .debug("possible change", &[("change", change.as_str().into())]);
                    if matches!(change, Change::Rearmed | Change::DirGone)
                        && self.cfg.poll == Poll::Auto
                    {
                        // Only a newly polled directory is logged: a deleted subdirectory
                        // re-arms too, and must neither repeat the lines nor restart the timer.
                        let plan = poll::plan(Poll::Auto, &self.cfg.dirs, &mounts::all());
                        let added = self.poller.replan(plan.dirs.clone(), now);
                        log_polling(&plan, &added, &self.log);
                    }
                }
            }
            if self.poller.tick(now) {
                self.settle.note(now);
                self.log
                    .debug("possible change", &[("change", "polled".into())]);
            }
            if let Some(w) = &mut self.webhook {
                w.advance(ready.get(2).copied().unwrap_or_default(), now, &self.log);
            }
            if let Some(first) = self
                .settle
                .take_due(Instant::now())
                .filter(|_| !self.stopping)
            {
                let child = self.child.as_ref().map(|c| c.pid);
                if self.reloads.settled(
                    self.cfg,
                    first,
                    child,
                    &mut self.watcher,
                    &mut self.settle,
                    &self.log,
                ) {
                    if let Some(w) = &mut self.webhook {
                        w.request(Instant::now(), &self.log);
                    }
                }
            }
        }
    }

    /// Handles every pending signal; `Some(exit code)` when we are done.
    fn signals(&mut self) -> Option<ExitCode> {
        // One `struct signalfd_siginfo` is 128 bytes; `ssi_signo` is its first u32.
        let mut info = [0u8; 128];
        while let Ok(128) = (&self.sigfd).read(&mut info) {
            let sig = Signal(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32);
            if let Some(code) = self.on_signal(sig) {
                return Some(code);
            }
        }
        None
    }

    fn on_signal(&mut self, sig: Signal) -> Option<ExitCode> {
        let stop = sig.0 == libc::SIGTERM || sig.0 == libc::SIGINT;
        // A pending reload is dropped: SIGTERM usually means the whole pod is stopping, and a
        // reload racing the app's own shutdown helps nobody.
        let busy = self.webhook.as_ref().is_some_and(Webhook::busy);
        let pending = if self.settle.pending() || busy {
            "dropped"
        } else {
            "none"
        };
        let Some(child) = &self.child else {
            if stop {
                self.log.info(
                    "exiting",
                    &[
                        ("signal", sig.name().into()),
                        ("pending_reload", pending.into()),
                    ],
                );
                return Some(ExitCode::SUCCESS);
            }
            if sig.0 == libc::SIGCHLD {
                // PID 1 of a container whose orphans come to us: reap them, every one, since
                // the SIGCHLDs of children that die together merge into one.
                while let Ok(Some(_)) = sys::reap_any() {}
            }
            self.log
                .debug("ignoring signal", &[("signal", sig.name().into())]);
            return None;
        };
        if sig.0 == libc::SIGCHLD {
            return match child.reap() {
                Ok(Some(exit)) => {
                    let code = child::code(exit);
                    self.log.info(
                        "app exited",
                        &[
                            ("pid", child.pid.get().into()),
                            ("exit_code", i64::from(code).into()),
                        ],
                    );
                    Some(ExitCode::from(code))
                }
                Ok(None) => None,
                Err(e) => {
                    self.log
                        .error("reaping failed", &[("error", e.to_string().into())]);
                    None
                }
            };
        }
        if child::FORWARDED.contains(&sig.0) {
            if stop {
                // The app is shutting down: a reload now would only race its exit, so none is
                // sent from here on, the pending one included.
                self.stopping = true;
                self.settle = Settle::new(self.cfg.debounce, self.cfg.max_delay);
            }
            self.log.info(
                "forwarding signal to the app",
                &[
                    ("signal", sig.name().into()),
                    ("pid", child.pid.get().into()),
                    ("pending_reload", if stop { pending } else { "kept" }.into()),
                ],
            );
            let _ = child.forward(sig.0);
        } else {
            self.log
                .debug("ignoring signal", &[("signal", sig.name().into())]);
        }
        None
    }
}
