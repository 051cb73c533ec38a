//! `--check`: validate and report, for humans and `kubectl exec`. Exit 0 when every directory
//! is there, the reload URL (if any) accepts connections, and at least one process would take
//! the signal (when one is to be signalled); 1 otherwise. Nothing is signalled or requested.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::log::{self, Logger};
use crate::{mounts, pidfile, poll, reload, send, webhook};

/// Prints the report on stdout and returns the exit code.
pub fn run(cfg: &Config) -> ExitCode {
    let mut out = String::new();
    let mut ok = true;
    let mounts = mounts::all();
    for (dir, n) in cfg.dirs.iter().zip(reload::count_dirs(&cfg.dirs, &mounts)) {
        let kubelet = dir.join("..data").symlink_metadata().is_ok();
        let kind = if kubelet { ", kubelet volume" } else { "" };
        out.push_str(&format!(
            "watch {} ({n} directories{kind})\n",
            dir.display()
        ));
        ok &= dir.is_dir();
    }
    for m in mounts::pinned(&cfg.dirs, &mounts) {
        let (point, kind) = (m.point.display(), m.kind);
        out.push_str(&format!(
            "warning: {point} is a {kind} mount; it will never change\n"
        ));
    }
    let plan = poll::plan(cfg.poll, &cfg.dirs, &mounts);
    for (dir, fs) in &plan.dirs {
        let (dir, every, why) = (dir.display(), log::seconds(plan.every), plan.reason);
        out.push_str(&format!("poll {dir} fs={fs} every {every}: {why}\n"));
    }
    if let Some(w) = &cfg.webhook {
        // A request, even a GET, could reload the app: a TCP connect only.
        match webhook::answers(&w.url, Duration::from_secs(2)) {
            Ok(addr) => out.push_str(&format!(
                "webhook {} {}: {addr} accepts connections (TCP connect only; no request sent)\n",
                w.method,
                w.url.shown()
            )),
            Err(e) => {
                out.push_str(&format!(
                    "problem: webhook {} does not answer: {e}\n",
                    w.url.shown()
                ));
                ok = false;
            }
        }
    }
    if !cfg.command.is_empty() {
        let cmd: Vec<String> = cfg
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        out.push_str(&format!(
            "app (not started by --check): {}\n",
            cmd.join(" ")
        ));
    }
    if let Some(v) = &cfg.validate {
        // Never run: a validator reads the config, but may do more than read it.
        out.push_str(&format!(
            "validate (not run by --check): {} ({}, timeout {})\n",
            v.argv.join(" "),
            v.program.display(),
            log::seconds(v.timeout)
        ));
    }
    // Only a sidecar that signals PROCESS_NAME needs a visible process now: a webhook alone
    // signals nobody, and an app run with `--` starts with us.
    let needs_target =
        cfg.command.is_empty() && (cfg.process_name.is_some() || cfg.pid_file.is_some());
    if let Some(path) = &cfg.pid_file {
        // Read as a reload would read it; the reason it names nobody is the problem line.
        let line = match pidfile::target(path, cfg.process_name.as_deref()) {
            Ok(p) => format!(
                "pid file {}: pid={} (written after it started)\n",
                path.display(),
                p.pid.get()
            ),
            Err(e) => {
                let pid = e.pid.map(|p| format!(" pid={p}")).unwrap_or_default();
                format!(
                    "problem: pid file {}:{pid} {} ({})\n",
                    path.display(),
                    e.line,
                    e.hint
                )
            }
        };
        out.push_str(&line);
    }
    let log = Logger::new(cfg.log_format, false);
    let found = if needs_target {
        send::targets(cfg, None, &log)
    } else {
        Vec::new()
    };
    if found.is_empty() && needs_target && cfg.pid_file.is_none() {
        out.push_str(&format!(
            "problem: no process named {} is visible\n",
            cfg.name()
        ));
        ok = false;
    }
    let mut any = !needs_target;
    for (p, verdict) in &found {
        let sends = verdict.sends(cfg.force);
        any |= sends;
        // What a change would do next: a refusal that waiting may lift is retried.
        let retry = match verdict.handling.retried() && !sends && !cfg.retry_for.is_zero() {
            true => format!(" retry_for={}", log::seconds(cfg.retry_for)),
            false => String::new(),
        };
        out.push_str(&format!(
            "target pid={} name={} signal={} handling={} verdict={}{retry} reason={:?}\n",
            p.pid.get(),
            cfg.name(),
            cfg.signal.name(),
            verdict.handling.as_str(),
            if sends { "send" } else { "refuse" },
            verdict.reason(),
        ));
    }
    ok &= any;
    out.push_str(if ok { "ok\n" } else { "not ok\n" });
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    ExitCode::from(if ok { 0 } else { 1 })
}
