//! config-reloader: watches configuration directories and reloads an app once per real change,
//! by a signal, an HTTP request, or both.
//!
//! `main` only parses (`config`) and dispatches: `serve` runs the daemon, `check` reports.
//! `serve` sets up, then runs the one loop over its sources (the signalfd, the inotify fd, the
//! poll timer, the reload request, the settle) and acts on what each reports.
//!
//! Data flows through the modules in this order: `serve` (the loop), `config` (env + flags →
//! `Config`, with `settings`, the table, and `values`), `check` (`--check`), `reload` (what a settle leads to),
//! `validate` (the command run before a reload), `confirm` (whether the target took it),
//! `names` (which names are content), `watch` (inotify events → "may have changed", with `events` for
//! what one event means and `rearm` for configured paths that vanish or are re-pointed),
//! `poll` (the same question where inotify is blind), `mounts`, `settle` (debounce, commit,
//! interval), `fingerprint` (walk → "did change"), `pidfile` and `target` (the pid file, the
//! `/proc` scan → whom), `verdict` (how each
//! would take the signal, with `runtime` for runtimes whose handler is not the app's), `retry`
//! (sending to each target, and again to those that could not take it yet), `signal` (send),
//! `webhook` and `url` (the reload request), `child` (the app as our child). `outcome` says how each reload went, `metrics` counts it and `listen` serves `/metrics`;
//! `stop` tells a long walk that a stop signal waits, `limits` explains sysctls, `log` writes the lines, `sys` wraps the
//! few raw syscalls.
//!
//! One thread, one blocking `ppoll`: nothing runs while nothing changes.

mod check;
mod child;
mod config;
mod confirm;
mod fingerprint;
mod limits;
mod listen;
mod log;
mod metrics;
mod mounts;
mod names;
mod outcome;
mod pidfile;
mod poll;
mod reload;
mod retry;
mod runtime;
mod send;
mod serve;
mod settings;
mod settle;
mod signal;
mod stop;
mod sys;
mod target;
mod url;
mod validate;
mod values;
mod verdict;
mod watch;
mod webhook;

use std::io::Write;
use std::process::ExitCode;

use config::Action;

fn main() -> ExitCode {
    let action = match config::parse(std::env::args_os().skip(1), config::process_env) {
        Ok(a) => a,
        Err(e) => return log::fatal(2, &e.to_string()),
    };
    match action {
        Action::Help => print(&config::help()),
        Action::Version => print(&format!("config-reloader {}\n", env!("CARGO_PKG_VERSION"))),
        Action::Check(cfg) => check::run(&cfg),
        Action::Run(cfg) => serve::serve(&cfg),
    }
}

fn print(text: &str) -> ExitCode {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}
