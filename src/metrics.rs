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
use crate::outcome::{Deliveries, Delivery, Outcome, Reload, Step};
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
    /// When the newest reload to set `last_ok`, and the newest to set `applied`, started: an
    /// older one whose confirmation came late counts, but changes neither.
    newest: Option<Instant>,
    newest_applied: Option<Instant>,
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
            newest: None,
            newest_applied: None,
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
        let newer = |than: Option<Instant>| than.is_none_or(|t| r.started >= t);
        if newer(self.newest) {
            self.newest = Some(r.started);
            self.last_ok = *outcome == Outcome::Succeeded;
        }
        match outcome {
            Outcome::Succeeded => {
                self.last_success = unix(at);
                if newer(self.newest_applied) {
                    self.newest_applied = Some(r.started);
                    self.applied = Some(r.fingerprint & ((1 << 52) - 1));
                }
            }
            Outcome::Failed(_) => self.failed += 1,
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

/// At most this many reloads wait for one confirmation (the newest and those it superseded).
const MAX_CONFIRMING: usize = 8;

/// The metrics and the reloads whose outcome is still to come: what the loop hands each
/// reload to.
pub struct Tally {
    pub metrics: Metrics,
    deliveries: Deliveries,
    /// Reloads whose every step but the confirmation has ended: finished when it comes.
    confirming: Vec<Reload>,
}

impl Tally {
    pub fn new(metrics: Metrics) -> Tally {
        Tally {
            metrics,
            deliveries: Deliveries::default(),
            confirming: Vec::new(),
        }
    }

    /// New content is being validated: the change is seen now; its reload is finished by
    /// [`Tally::rejected`] or [`Tally::changed`].
    pub fn validating(&mut self) {
        self.metrics.changed(SystemTime::now());
    }

    /// The validation rejected the content of `r`: nothing was sent, it failed.
    pub fn rejected(&mut self, r: Reload, log: &Logger) {
        self.finish(r, log);
    }

    /// New content was handed to the app: finished now, or once the request and the
    /// confirmation (if any) end.
    pub fn changed(&mut self, r: Reload, webhook: Option<&mut Webhook>, log: &Logger) {
        // A validated change was seen when its validation began.
        if r.validate == Step::Unused {
            self.metrics.changed(SystemTime::now());
        }
        self.metrics.signalled(&r);
        let Some(w) = webhook else {
            return self.finish(r, log);
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
            self.finish(r, log);
        }
    }

    /// The pending confirmation concluded as `step`: the confirm step of every reload still
    /// waiting for one (see `outcome` for why a superseded one takes it too).
    pub fn confirmed(&mut self, step: Step, log: &Logger) {
        self.deliveries.confirmed(&step);
        for mut r in std::mem::take(&mut self.confirming) {
            r.confirm = step.clone();
            self.finish(r, log);
        }
    }

    /// The retries of a change's refused targets ended: a reload attempt of their own.
    pub fn retried(&mut self, r: Reload, log: &Logger) {
        self.metrics.signalled(&r);
        self.finish(r, log);
    }

    /// Logs and counts `r` once every step has ended; one waiting only for its confirmation
    /// is kept until it comes (one waiting for its request is with `deliveries`).
    fn finish(&mut self, r: Reload, log: &Logger) {
        let now = Instant::now();
        match r.report(now, log) {
            Some(o) => self
                .metrics
                .finished(&r, &o, r.took(now), SystemTime::now()),
            None if r.confirm == Step::Pending => {
                // A stream of reloads each faster than the check (RELOAD_MIN_INTERVAL=0, or
                // `workers` with a long timeout) must not pile up: past the bound the oldest
                // is finished on the steps it has, its check superseded by newer ones.
                if self.confirming.len() >= MAX_CONFIRMING {
                    let mut oldest = self.confirming.remove(0);
                    oldest.confirm = Step::Unused;
                    self.finish(oldest, log);
                }
                self.confirming.push(r);
            }
            None => {}
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
