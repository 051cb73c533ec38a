//! config-reloader: watches configuration directories and signals a process once per real
//! change.
//!
//! Data flows through the modules in this order: `config` (env + flags → `Config`), `watch`
//! (inotify events → "may have changed"), `settle` (debounce, then fingerprint → "did
//! change"), `target` (scan `/proc` → whom), `signal` (dispositions, send). `log` writes the
//! lines, `sys` wraps the raw syscalls. One thread, one blocking `ppoll` on two fds:
//! nothing runs while nothing changes.
//!
//! The binary links `core` and `alloc` but not `std`: std's backtrace symbolizer alone (about
//! 220 KB, linked even with `panic = "abort"`) would not fit the 400 KiB image budget of
//! issue 4. musl's C runtime calls `sys::main`, which calls [`run`]; `sys` also supplies the
//! allocator (malloc), the panic handler and what else std did for us. Unit tests are built
//! with std and the libtest harness as usual.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

mod config;
mod log;
mod settle;
mod signal;
mod sys;
mod target;
mod watch;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use config::{Action, Config, Targets};
use log::Logger;
use settle::{Fingerprint, Fingerprinter, Settle};
use signal::{Handling, Signal};
use sys::Instant;

// Without std nothing asks for the C library: link musl's (or, on the host, glibc's) libc,
// which also brings the C runtime that calls `sys::main`.
#[link(name = "c")]
extern "C" {}

/// The program, called by `sys::main` (the C entry point) with the arguments after argv[0]:
/// parse the settings, then help, version, `--check` or serve. Returns the exit code.
#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<Vec<u8>>) -> i32 {
    let action = match config::parse(args, sys::getenv) {
        Ok(a) => a,
        Err(e) => {
            let _ = sys::write_all(2, format!("config-reloader: {e}\n").as_bytes());
            return 2;
        }
    };
    match action {
        Action::Help => {
            sys::print(&config::help());
            0
        }
        Action::Version => {
            sys::print(&format!("config-reloader {}\n", env!("CARGO_PKG_VERSION")));
            0
        }
        Action::Check(cfg) => check(&cfg),
        Action::Run(cfg) => serve(&cfg),
    }
}

/// Sets up, then runs the loop until SIGTERM or SIGINT. Set-up may fail (exit 1); the loop may not.
fn serve(cfg: &Config) -> i32 {
    let log = Logger::new(cfg.log_format, cfg.verbose);
    // Blocked before anything else so a SIGTERM during start-up waits in the signalfd instead
    // of killing us with its default action.
    let stop = sys::SigSet::of(&[libc::SIGTERM, libc::SIGINT]);
    let sigfd = match sys::block_signals(&stop).and_then(|()| sys::signalfd(&stop)) {
        Ok(fd) => fd,
        Err(e) => {
            log.error(
                "cannot set up signal handling",
                &[("error", e.to_string().into())],
            );
            return 1;
        }
    };
    let mut watcher = match watch::Watcher::new(&cfg.dirs, &log) {
        Ok(w) => w,
        Err(e) => {
            log.error(&e, &[]);
            return 1;
        }
    };
    startup_warnings(cfg, &log);
    let mut fingerprinter = Fingerprinter::default();
    let mut last = fingerprinter.fingerprint(&cfg.dirs).ok();
    let dirs: Vec<String> = cfg.dirs.iter().map(|d| sys::display(d)).collect();
    log.info(
        "watching",
        &[
            ("dirs", dirs.join(",").into()),
            ("watches", watcher.count().into()),
            ("process", cfg.process_name.as_str().into()),
            ("signal", cfg.signal.name().into()),
            (
                "targets",
                if cfg.targets == Targets::All {
                    "all"
                } else {
                    "roots"
                }
                .into(),
            ),
            ("debounce_ms", cfg.debounce.into()),
            ("max_delay_ms", cfg.max_delay.into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ],
    );

    // ---- From here on nothing may end the loop but SIGTERM/SIGINT: faults are logged. ----
    let mut settle = Settle::new(cfg.debounce, cfg.max_delay);
    loop {
        let timeout = settle
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let ready = match sys::poll2([watcher.fd(), sigfd.raw()], timeout) {
            Ok(r) => r,
            Err(e) => {
                log.error("poll failed; retrying", &[("error", e.to_string().into())]);
                continue;
            }
        };
        if ready.readable[1] {
            if let Ok(Some(sig)) = sys::read_signalfd(&sigfd) {
                // A pending reload is dropped: SIGTERM usually means the whole pod is stopping,
                // and a reload racing the app's own shutdown helps nobody.
                let pending = if settle.deadline().is_some() {
                    "dropped"
                } else {
                    "none"
                };
                log.info(
                    "exiting",
                    &[
                        ("signal", Signal(sig).name().into()),
                        ("pending_reload", pending.into()),
                    ],
                );
                return 0;
            }
        }
        if ready.readable[0] {
            if let Some(change) = watcher.read(&log) {
                settle.note(Instant::now());
                log.debug("possible change", &[("change", change.as_str().into())]);
            }
        }
        if settle.take_due(Instant::now()) {
            reload_if_changed(cfg, &log, &mut fingerprinter, &mut last);
        }
    }
}

/// After the settle: fingerprint, and signal only if the content differs from the last signal.
fn reload_if_changed(
    cfg: &Config,
    log: &Logger,
    fingerprinter: &mut Fingerprinter,
    last: &mut Option<Fingerprint>,
) {
    let started = Instant::now();
    match fingerprinter.fingerprint(&cfg.dirs) {
        Err(dir) => {
            log.warn(
                "watched directory is missing; not signalling until it is back",
                &[("dir", sys::display(&dir).into())],
            );
        }
        Ok(f) if Some(f) == *last => log.debug("content unchanged; not signalling", &[]),
        Ok(f) => {
            *last = Some(f);
            signal_targets(cfg, log, started);
        }
    }
}

/// Scans `/proc` now (targets restart; pids are never cached) and signals each target that
/// can take the signal.
fn signal_targets(cfg: &Config, log: &Logger, started: Instant) {
    let sig = cfg.signal;
    for (pid, handling) in targets(cfg, log) {
        if handling == Handling::Default {
            if !cfg.force {
                refuse(cfg, log, pid);
                continue;
            }
            log.warn(
                "sending anyway because RELOAD_FORCE is set; the default action may kill it",
                &[("pid", pid.0.into()), ("signal", sig.name().into())],
            );
        }
        match signal::send(pid.0, pid.1, sig) {
            Ok(()) => log.info(
                "reloaded",
                &[
                    ("pid", pid.0.into()),
                    ("name", cfg.process_name.as_str().into()),
                    ("signal", sig.name().into()),
                    ("took_ms", started.elapsed().into()),
                ],
            ),
            Err(e) => {
                let (name, hint) = match e.raw_os_error() {
                    Some(libc::EPERM) => ("EPERM", "run the sidecar with the app's UID (securityContext.runAsUser) or give it CAP_KILL"),
                    Some(libc::ESRCH) => ("ESRCH", "the process exited after the scan; its successor gets the next change"),
                    _ => ("other", "see the error text"),
                };
                log.error(
                    "signal failed",
                    &[
                        ("pid", pid.0.into()),
                        ("name", cfg.process_name.as_str().into()),
                        ("signal", sig.name().into()),
                        ("error", name.into()),
                        ("detail", e.to_string().into()),
                        ("hint", hint.into()),
                    ],
                );
            }
        }
    }
}

/// The processes to signal now, as (pid, start time) with how each handles the signal.
/// Logs when there is none; a process that exits while we look is skipped.
fn targets(cfg: &Config, log: &Logger) -> Vec<((i32, u64), Handling)> {
    let found = match target::scan(&cfg.process_name) {
        Ok(found) => found,
        Err(e) => {
            log.error("cannot list /proc", &[("error", e.to_string().into())]);
            return Vec::new();
        }
    };
    let chosen = match cfg.targets {
        Targets::Roots => target::pick_roots(found),
        Targets::All => found,
    };
    if chosen.is_empty() {
        log.warn(&format!("no process named {}", cfg.process_name), &[("hint", "it gets the next change after it starts; check PROCESS_NAME and that the pod shares its PID namespace".into())]);
    }
    chosen
        .into_iter()
        .filter_map(|p| match signal::dispositions(p.pid) {
            Ok(d) => Some(((p.pid, p.start_time), d.handling(cfg.signal))),
            Err(_) => None,
        })
        .collect()
}

fn refuse(cfg: &Config, log: &Logger, pid: (i32, u64)) {
    let why = if pid.0 == 1 {
        "it is PID 1 of its namespace and has no handler, so the kernel would drop the signal and nothing would reload"
    } else {
        "it neither catches, blocks nor ignores it, so the default action would terminate the app"
    };
    log.warn(
        &format!("refusing to send {}", cfg.signal.name()),
        &[
            ("pid", pid.0.into()),
            ("name", cfg.process_name.as_str().into()),
            ("signal", cfg.signal.name().into()),
            ("reason", why.into()),
            ("hint", "make the app handle the signal, choose another RELOAD_SIGNAL, or set RELOAD_FORCE=true".into()),
        ],
    );
}

/// Warnings about set-ups that cannot work, logged once at start; the sidecar carries on.
fn startup_warnings(cfg: &Config, log: &Logger) {
    if !target::others_visible() {
        log.warn("no other process is visible in /proc", &[("hint", "in Kubernetes set shareProcessNamespace: true on the pod; with docker use --pid=container:APP (compose: pid: \"service:APP\")".into())]);
    }
    watch::warn_pinned(&cfg.dirs, log);
    for (pid, handling) in targets(cfg, log) {
        if handling == Handling::Default && !cfg.force {
            refuse(cfg, log, pid);
        }
    }
}

/// `--check`: validate and report, for humans and exec probes. Exit 0 when every directory is
/// there and at least one target would take the signal; 1 otherwise.
fn check(cfg: &Config) -> i32 {
    let mut ok = true;
    for dir in &cfg.dirs {
        let kubelet = sys::lstat(&sys::join(dir, b"..data")).is_ok();
        sys::print(&format!(
            "watch {} ({} directories{})\n",
            sys::display(dir),
            count_dirs(dir),
            if kubelet { ", kubelet volume" } else { "" }
        ));
    }
    for m in watch::pinned_mounts(&cfg.dirs) {
        sys::print(&format!(
            "warning: {} is a {} mount; it will never change\n",
            sys::display(&m.mount_point),
            m.kind
        ));
    }
    let log = Logger::new(cfg.log_format, false);
    let found = targets(cfg, &log);
    if found.is_empty() {
        sys::print(&format!(
            "problem: no process named {} is visible\n",
            cfg.process_name
        ));
        ok = false;
    }
    for ((pid, _), handling) in found {
        let takes = cfg.force || handling != Handling::Default;
        sys::print(&format!(
            "target pid={pid} name={} signal={} handling={handling:?}{}\n",
            cfg.process_name,
            cfg.signal.name(),
            if takes { "" } else { " (would be refused)" }
        ));
        ok &= takes;
    }
    sys::print(if ok { "ok\n" } else { "not ok\n" });
    if ok {
        0
    } else {
        1
    }
}

fn count_dirs(dir: &[u8]) -> usize {
    1 + sys::read_dir(dir).map_or(0, |rd| {
        rd.filter(|e| !watch::is_internal(&e.name) && e.is_dir)
            .map(|e| count_dirs(&sys::join(dir, &e.name)))
            .sum()
    })
}
