//! `/metrics` read by the real clients (issue 20): Debian's `promtool check metrics` finds
//! nothing to fix, and Debian's `prometheus` scrapes the sidecar every second, its query API
//! returns `reloader_last_reload_successful` 1 after a good reload and 0 after a refused one,
//! and prometheus-operator's `ConfigReloaderSidecarErrors` expression, unchanged, fires.
//!
//! The `namespace` label that expression wants is what the operator's scrape configs attach
//! from the pod's namespace; here a static target label gives it. The alert's `for: 10m` is
//! cut to 0 so that the test does not wait ten minutes; the expression is the operator's.

mod http;
mod support;

use std::fs;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{spawn_app, start, T};
use testkit::apps::debian;
use testkit::recorder::{Mode, Options, Recorder};
use testkit::reloader::{field, Reloader};
use testkit::{unique_name, wait_until_every, TempDir};

/// prometheus-operator's ConfigReloaderSidecarErrors expression, verbatim.
const ALERT_EXPR: &str =
    r#"max_over_time(reloader_last_reload_successful{namespace=~".+"}[5m]) == 0"#;
/// Prometheus opens its TSDB and web server in a second or two; generous for a loaded machine.
const START: Duration = Duration::from_secs(60);

fn port(rel: &Reloader) -> u16 {
    let line = &rel.lines("info watching")[0];
    field(line, "listen")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Percent-encodes a query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus scraping 127.0.0.1:`target` every second, with the alert rule; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = TempDir::new("prom-metrics").unwrap();
        let rules = dir.join("rules.yml");
        fs::write(
            &rules,
            format!("groups:\n  - name: config-reloaders\n    rules:\n      - alert: ConfigReloaderSidecarErrors\n        expr: '{ALERT_EXPR}'\n        for: 0s\n"),
        )
        .unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: sidecar\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n        labels: {{namespace: test}}\n", rules.display()),
        )
        .unwrap();
        let port = http::closed_port();
        let child = Command::new(debian("/usr/bin/prometheus", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        wait_until_every(
            Duration::from_millis(50),
            START,
            "prometheus /-/ready",
            || http::request(port, "GET", "/-/ready").filter(|(c, _)| *c == 200),
        );
        p
    }

    fn get(&self, path: &str) -> String {
        let (code, body) = http::request(self.port, "GET", path).expect("prometheus answers");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Waits until the instant query `q` has a sample whose value is `want`.
    fn await_query(&self, q: &str, want: &str) -> String {
        let path = format!("/api/v1/query?query={}", encode(q));
        let needle = format!(",\"{want}\"]");
        wait_until_every(
            Duration::from_millis(200),
            T,
            &format!("{q} = {want}"),
            || {
                let body = self.get(&path);
                body.contains(&needle).then_some(body)
            },
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_sees_a_good_reload_as_1_a_refused_one_as_0_and_the_operator_alert_fires() {
    let name = unique_name("prom-scraped");
    let dir = TempDir::new("prom-scraped").unwrap();
    let file = dir.join("app.conf");
    fs::write(&file, "v1").unwrap();
    let app = spawn_app(&name, &file);
    let mut fragile = Recorder::spawn(Options {
        name: Some(name.clone()),
        mode: Mode::Default,
        ..Options::default()
    });
    let rel = start(
        dir.path(),
        &name,
        &[("RELOAD_LISTEN_ADDRESS", "127.0.0.1:0")],
    );
    // Refused before the first scrape: `max_over_time(...[5m])` is 0 only when every sample
    // in the window is, so a 1 scraped earlier would hold the alert off for five minutes,
    // as it does in production.
    fs::write(&file, "v2").unwrap();
    rel.wait_lines("warn reload failed", 1, T);
    assert!(fragile.is_alive());
    let prom = Prometheus::start(port(&rel));
    let failed = prom.await_query("reloader_last_reload_successful", "0");
    assert!(failed.contains("\"namespace\":\"test\""), "{failed}");
    prom.await_query(ALERT_EXPR, "0");
    wait_until_every(Duration::from_millis(200), T, "the alert firing", || {
        let a = prom.get("/api/v1/alerts");
        (a.contains("ConfigReloaderSidecarErrors") && a.contains("\"state\":\"firing\""))
            .then_some(())
    });

    // The fragile target gone, the next change reloads: 1, and the alert resolves.
    fragile.signal(libc::SIGKILL).unwrap();
    fragile.wait_exit(T);
    fs::write(&file, "v3").unwrap();
    app.wait_received(2, T);
    prom.await_query("reloader_reloads_failed_total", "1");
    let ok = prom.await_query("reloader_last_reload_successful", "1");
    assert!(ok.contains("\"job\":\"sidecar\""), "{ok}");
    wait_until_every(Duration::from_millis(200), T, "the alert resolved", || {
        (!prom
            .get("/api/v1/alerts")
            .contains("ConfigReloaderSidecarErrors"))
        .then_some(())
    });
}

#[test]
fn promtool_check_metrics_finds_nothing_to_fix() {
    let name = unique_name("promtool");
    let dir = TempDir::new("promtool").unwrap();
    let file = dir.join("app.conf");
    fs::write(&file, "v1").unwrap();
    let app = spawn_app(&name, &file);
    let _fragile = Recorder::spawn(Options {
        name: Some(name.clone()),
        mode: Mode::Default,
        ..Options::default()
    });
    let rel = start(
        dir.path(),
        &name,
        &[("RELOAD_LISTEN_ADDRESS", "127.0.0.1:0")],
    );
    // Every family with samples: a refused reload, an unchanged one.
    fs::write(&file, "v2").unwrap();
    rel.wait_lines("warn reload failed", 1, T);
    fs::write(&file, "v2").unwrap();
    app.wait_received(1, T);
    let text = wait_until_every(Duration::from_millis(50), T, "unchanged counted", || {
        let (_, t) = http::request(port(&rel), "GET", "/metrics")?;
        t.contains("config_reloader_unchanged_total 1").then_some(t)
    });
    let mut promtool = Command::new(debian("/usr/bin/promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}
