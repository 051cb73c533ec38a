//! `--check`: validate and report, for humans and `kubectl exec`. Exit 0 when every directory
//! is there and at least one target would take the signal; 1 otherwise.

use std::io::Write;
use std::process::ExitCode;

use crate::config::Config;
use crate::log::Logger;
use crate::{mounts, reload};

/// Prints the report on stdout and returns the exit code.
pub fn run(cfg: &Config) -> ExitCode {
    let mut out = String::new();
    let mut ok = true;
    for (dir, n) in cfg.dirs.iter().zip(reload::count_dirs(&cfg.dirs)) {
        let kubelet = dir.join("..data").symlink_metadata().is_ok();
        let kind = if kubelet { ", kubelet volume" } else { "" };
        out.push_str(&format!(
            "watch {} ({n} directories{kind})\n",
            dir.display()
        ));
        ok &= dir.is_dir();
    }
    for m in mounts::pinned(&cfg.dirs, &mounts::all()) {
        out.push_str(&format!(
            "warning: {} is a {} mount; it will never change\n",
            m.point.display(),
            m.kind
        ));
    }
    let log = Logger::new(cfg.log_format, false);
    let found = reload::targets(cfg, &log);
    if found.is_empty() {
        out.push_str(&format!(
            "problem: no process named {} is visible\n",
            cfg.name()
        ));
        ok = false;
    }
    let mut any = false;
    for (p, verdict) in &found {
        let sends = verdict.sends(cfg.force);
        any |= sends;
        out.push_str(&format!(
            "target pid={} name={} signal={} handling={} verdict={} reason={:?}\n",
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
