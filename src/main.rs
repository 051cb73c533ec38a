//! config-reloader: watches configuration directories and signals a process once per real
//! change.
//!
//! Data flows through the modules in this order: `config` (env + flags → `Config`, with
//! `values`), `names` (which names are content), `watch` (inotify events → "may have changed",
//! with `events` for what one event means and `rearm` for configured paths that vanish or are
//! re-pointed), `settle` (debounce), `fingerprint` (walk → "did change"), `target` (scan
//! `/proc` → whom), `verdict` (how each would take the signal), `signal` (send). `reload`
//! wires a settle to them, `check` reports, `mounts` and `limits` explain set-ups, `log`
//! writes the lines, `sys` wraps the few raw syscalls.
//!
//! One thread, one blocking `ppoll` on the signalfd and the inotify fd: nothing runs while
//! nothing changes.

#![deny(clippy::undocumented_unsafe_blocks)]

mod check;
mod config;
mod events;
mod fingerprint;
mod limits;
mod log;
mod mounts;
mod names;
mod rearm;
mod reload;
mod settle;
mod signal;
mod sys;
mod target;
mod values;
mod verdict;
mod watch;

use std::fs::File;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use config::{Action, Config, Targets};
use log::Logger;
use reload::Reloads;
use settle::Settle;
use signal::Signal;
use sys::{Interest, SigSet};

fn main() -> ExitCode {
    let action = match config::parse(std::env::args_os().skip(1), config::process_env) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "config-reloader: {e}");
            return ExitCode::from(2);
        }
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

/// Every signal but the ones a fault raises synchronously (and SIGKILL/SIGSTOP, which cannot
/// be blocked): blocked, they wait in the signalfd instead of running a default action, so a
/// stray SIGHUP or SIGPIPE in a shared PID namespace cannot end us (as catatonit does).
fn blocked_set() -> SigSet {
    let faults = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGABRT,
    ];
    let all: Vec<i32> = (1..=64).filter(|s| !faults.contains(s)).collect();
    SigSet::of(&all)
}

/// Sets up, then runs the loop until SIGTERM or SIGINT. Set-up may fail (exit 1); the loop
/// may not: from the first event on, faults are logged and survived.
fn serve(cfg: &Config) -> ExitCode {
    let log = Logger::new(cfg.log_format, cfg.verbose);
    // Blocked before anything else, so a SIGTERM during start-up waits in the signalfd.
    let sigfd = match sys::block_signals(blocked_set()).and_then(|()| sys::signalfd(blocked_set()))
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
    let mut watcher = match watch::Watcher::new(&cfg.dirs, &log) {
        Ok(w) => w,
        Err(e) => {
            log.error(&e, &[]);
            return ExitCode::from(1);
        }
    };
    if !target::others_visible() {
        log.warn("no other process is visible in /proc", &[("hint", "in Kubernetes set shareProcessNamespace: true on the pod; with docker use --pid=container:APP (compose: pid: \"service:APP\")".into())]);
    }
    mounts::warn_pinned(&cfg.dirs, &log);
    let mut reloads = Reloads::start(cfg, &mut watcher, &log);
    log_ready(cfg, watcher.count(), &log);
    for (p, verdict) in reload::targets(cfg, &log) {
        if !verdict.sends(cfg.force) {
            reload::refuse(cfg, &log, &p, &verdict);
        }
    }

    let mut settle = Settle::new(cfg.debounce, cfg.max_delay);
    let mut failures = 0u32;
    loop {
        let timeout = settle
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let fds = [
            Interest {
                fd: std::os::fd::AsFd::as_fd(&sigfd),
                write: false,
            },
            Interest {
                fd: watcher.fd(),
                write: false,
            },
        ];
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
                log.error(
                    "poll failed; retrying",
                    &[("error", e.to_string().into()), ("retry_ms", pause.into())],
                );
                std::thread::sleep(pause);
                continue;
            }
        };
        if ready[0].read {
            if let Some(sig) = stop_signal(&sigfd, &log) {
                // A pending reload is dropped: SIGTERM usually means the whole pod is
                // stopping, and a reload racing the app's own shutdown helps nobody.
                let pending = if settle.pending() { "dropped" } else { "none" };
                log.info(
                    "exiting",
                    &[
                        ("signal", sig.name().into()),
                        ("pending_reload", pending.into()),
                    ],
                );
                return ExitCode::SUCCESS;
            }
        }
        if ready[1].read {
            let now = Instant::now();
            if let Some(change) = watcher.read(now, &log) {
                settle.note(now);
                log.debug("possible change", &[("change", change.as_str().into())]);
            }
        }
        if let Some(first) = settle.take_due(Instant::now()) {
            reloads.settled(cfg, first, &mut watcher, &mut settle, &log);
        }
    }
}

/// Reads every pending signal; the first SIGTERM or SIGINT among them, if any. The others
/// were only blocked so they could not hurt us: they are dropped.
fn stop_signal(sigfd: &File, log: &Logger) -> Option<Signal> {
    // One `struct signalfd_siginfo` is 128 bytes; `ssi_signo` is its first u32.
    let mut info = [0u8; 128];
    let mut stop = None;
    while let Ok(128) = (&*sigfd).read(&mut info) {
        let sig = Signal(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32);
        if sig.0 == libc::SIGTERM || sig.0 == libc::SIGINT {
            stop = stop.or(Some(sig));
        } else {
            log.debug("ignoring signal", &[("signal", sig.name().into())]);
        }
    }
    stop
}

fn log_ready(cfg: &Config, watches: usize, log: &Logger) {
    let dirs: Vec<String> = cfg.dirs.iter().map(|d| d.display().to_string()).collect();
    let targets = match cfg.targets {
        Targets::Roots => "roots",
        Targets::All => "all",
    };
    log.info(
        "watching",
        &[
            ("dirs", dirs.join(",").into()),
            ("watches", watches.into()),
            ("process", cfg.name().into()),
            ("signal", cfg.signal.name().into()),
            ("targets", targets.into()),
            ("debounce_ms", cfg.debounce.into()),
            ("max_delay_ms", cfg.max_delay.into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ],
    );
}
