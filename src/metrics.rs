//! The counters and gauges `/metrics` serves, as plain data, and their Prometheus text
//! rendering (`text/plain; version=0.0.4`).
//!
//! First prometheus-config-reloader's names with its meanings, so that prometheus-operator's
//! `ConfigReloaderSidecarErrors` alert works unchanged; then what only we can say, under
//! `config_reloader_`. Every label value comes from a closed set (a handling, an errno name,
//! an HTTP status) and nothing from the user's input, the environment or a file's content is
//! ever rendered: a metric cannot leak a secret. [`Metrics`] never reads a clock or a file: the loop
//! hands it what happened and when; [`Tally`] is the glue that does.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::log::Logger;
use crate::outcome::{Deliveries, Delivery, Outcome, Reload};
use crate::webhook::Webhook;

/// The prefix of the metrics only we export.
const OURS: &str = "config_reloader";

/// Everything `/metrics` reports.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `signal`, `http` or `both`.
    method: &'static str,
    reloads: u64,
    failed: u64,
    /// 1 at start: the app read its config when it started, and an idle sidecar that never
    /// reloaded must not fire the alert.
    last_ok: bool,
    last_success: f64,
    refusals: Vec<(&'static str, u64)>,
    send_errors: Vec<(String, u64)>,
    requests: Vec<(String, u64)>,
    unchanged: u64,
    last_change: Option<f64>,
    last_duration: Option<f64>,
    /// The low 52 bits of the fingerprint last applied: exact in a float64 sample.
    applied: Option<u64>,
}

/// What the watcher reports, read when a scrape renders.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watching {
    /// Content directories watched.
    pub watches: usize,
    /// inotify events read.
    pub events: u64,
    /// inotify read errors and queue overflows.
    pub errors: u64,
}

/// Seconds since the epoch, as Prometheus timestamps are.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

fn bump<K: PartialEq>(v: &mut Vec<(K, u64)>, key: K) {
    match v.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => v.push((key, 1)),
    }
}

impl Metrics {
    /// Fresh at start-up; `baseline`: the fingerprint the app started with.
    pub fn new(signal: bool, http: bool, baseline: Option<u64>) -> Metrics {
        Metrics::at(signal, http, baseline, SystemTime::now())
    }

    fn at(signal: bool, http: bool, baseline: Option<u64>, now: SystemTime) -> Metrics {
        Metrics {
            method: match (signal, http) {
                (true, true) => "both",
                (false, true) => "http",
                _ => "signal",
            },
            reloads: 0,
            failed: 0,
            last_ok: true,
            last_success: unix(now),
            refusals: Vec::new(),
            send_errors: Vec::new(),
            requests: Vec::new(),
            unchanged: 0,
            last_change: None,
            last_duration: None,
            applied: baseline.map(|f| f & ((1 << 52) - 1)),
        }
    }

    /// A settle found the content unchanged: nothing was sent.
    pub fn unchanged(&mut self) {
        self.unchanged += 1;
    }

    /// A settle found new content at `at`.
    pub fn changed(&mut self, at: SystemTime) {
        self.last_change = Some(unix(at));
    }

    /// The send of one change: refusals and send errors, counted once per change (not again
    /// for each retry of the request that carries them over).
    pub fn signalled(&mut self, r: &Reload) {
        for reason in &r.signalled.refused {
            bump(&mut self.refusals, *reason);
        }
        for errno in &r.signalled.errors {
            bump(&mut self.send_errors, errno.clone());
        }
    }

    /// One attempt of the reload request ended.
    pub fn delivered(&mut self, d: Delivery) {
        bump(&mut self.requests, d.label());
    }

    /// A reload attempt has its outcome; `took`: since its settle fired.
    pub fn finished(&mut self, r: &Reload, outcome: &Outcome, took: Duration, at: SystemTime) {
        self.reloads += 1;
        self.last_duration = Some(took.as_secs_f64());
        match outcome {
            Outcome::Succeeded => {
                self.last_ok = true;
                self.last_success = unix(at);
                self.applied = Some(r.fingerprint & ((1 << 52) - 1));
            }
            Outcome::Failed(_) => {
                self.failed += 1;
                self.last_ok = false;
            }
        }
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self, w: Watching) -> String {
        let mut out = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |v: String| vec![(String::new(), v)];
        let labelled = |label: &str, v: &[(String, u64)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, n)| (format!("{{{label}=\"{}\"}}", escape(k)), n.to_string()))
                .collect()
        };
        let float = |v: f64| format!("{v}");
        one(
            "reloader_reloads_total",
            "counter",
            "Total number of reload attempts.",
            &plain(self.reloads.to_string()),
        );
        one(
            "reloader_reloads_failed_total",
            "counter",
            "Total number of reload attempts that failed.",
            &plain(self.failed.to_string()),
        );
        one(
            "reloader_last_reload_successful",
            "gauge",
            "Whether the last reload attempt was successful (1 before the first).",
            &plain(u8::from(self.last_ok).to_string()),
        );
        one(
            "reloader_last_reload_success_timestamp_seconds",
            "gauge",
            "Timestamp of the last successful reload (start-up before the first).",
            &plain(float(self.last_success)),
        );
        one(
            "reloader_watches",
            "gauge",
            "Number of directories watched.",
            &plain(w.watches.to_string()),
        );
        one(
            "reloader_watch_events_total",
            "counter",
            "Total number of inotify events received.",
            &plain(w.events.to_string()),
        );
        one(
            "reloader_watch_errors_total",
            "counter",
            "Total number of inotify read errors and queue overflows.",
            &plain(w.errors.to_string()),
        );
        one(
            "reloader_info",
            "gauge",
            "How the app is reloaded.",
            &[(format!("{{method=\"{}\"}}", self.method), "1".into())],
        );
        let refusals: Vec<(String, u64)> = self
            .refusals
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        one(
            &format!("{OURS}_refusals_total"),
            "counter",
            "Targets not signalled, by how they would take the signal.",
            &labelled("handling", &refusals),
        );
        one(
            &format!("{OURS}_signal_errors_total"),
            "counter",
            "Signal sends that failed, by errno.",
            &labelled("errno", &self.send_errors),
        );
        one(&format!("{OURS}_webhook_requests_total"), "counter", "Reload requests that ended, by HTTP status (error: no answer; unknown: sent, timed out).", &labelled("status", &self.requests));
        one(
            &format!("{OURS}_unchanged_total"),
            "counter",
            "Settled changes skipped because the content was unchanged.",
            &plain(self.unchanged.to_string()),
        );
        let opt = |v: Option<f64>| v.map(float).map(plain).unwrap_or_default();
        one(
            &format!("{OURS}_last_change_timestamp_seconds"),
            "gauge",
            "Timestamp of the last change of content seen.",
            &opt(self.last_change),
        );
        one(
            &format!("{OURS}_last_reload_duration_seconds"),
            "gauge",
            "Seconds from the settle to the outcome of the last reload attempt.",
            &opt(self.last_duration),
        );
        one(
            &format!("{OURS}_build_info"),
            "gauge",
            "The version of the sidecar.",
            &[(
                format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
                "1".into(),
            )],
        );
        one(&format!("{OURS}_applied_fingerprint"), "gauge", "Low 52 bits of the fingerprint of the content last applied: equal across replicas running the same config.", &opt(self.applied.map(|f| f as f64)));
        out
    }
}

/// The metrics and the reloads whose outcome is still to come: what the loop hands each
/// reload to.
pub struct Tally {
    pub metrics: Metrics,
    deliveries: Deliveries,
}

impl Tally {
    pub fn new(metrics: Metrics) -> Tally {
        Tally {
            metrics,
            deliveries: Deliveries::default(),
        }
    }

    /// New content was handed to the app: finished now, or once the request (if any) ends.
    pub fn changed(&mut self, r: Reload, webhook: Option<&mut Webhook>, log: &Logger) {
        self.metrics.changed(SystemTime::now());
        self.metrics.signalled(&r);
        let Some(w) = webhook else {
            return self.finish(&r, log);
        };
        self.deliveries.handed(r, w.interest().is_some());
        w.request(Instant::now(), log);
        // A connect refused at once ends the attempt inside `request`.
        if let Some(d) = w.take_ended() {
            self.ended(d, log);
        }
    }

    /// The reload request's attempt ended so: the reload it delivered may be finished.
    pub fn ended(&mut self, d: Delivery, log: &Logger) {
        self.metrics.delivered(d);
        if let Some(r) = self.deliveries.ended(d) {
            self.finish(&r, log);
        }
    }

    /// The retries of a change's refused targets ended: a reload attempt of their own.
    pub fn retried(&mut self, r: &Reload, log: &Logger) {
        self.metrics.signalled(r);
        self.finish(r, log);
    }

    fn finish(&mut self, r: &Reload, log: &Logger) {
        let now = Instant::now();
        if let Some(o) = r.report(now, log) {
            self.metrics.finished(r, &o, r.took(now), SystemTime::now());
        }
    }
}

/// A label value as the text format wants it (our values never need it; belt and braces).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
