//! `/metrics` and `/healthz` (issue 20): which counters each kind of reload moves, what
//! stalled, oversized and idle clients can do to the loop (nothing), and that the default
//! sidecar opens no port; a rejected validation and a failed confirmation (issue 21) read
//! as failed reloads. Scraped over real TCP with the shared HTTP client; wake-ups are
//! context switches, as in `tests/polling_idle.rs`.

mod http;
mod poll_common;
mod servers;
mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use poll_common::{await_idle, switches};
use support::{bin, env, spawn_app, start, QUIET, T};
use testkit::recorder::{Mode, Options, Recorder};
use testkit::reloader::{field, run_to_exit, Reloader};
use testkit::{unique_name, wait_until, TempDir};

/// Lets the kernel pick the port; the `info watching` line says which.
const ANY_PORT: (&str, &str) = ("RELOAD_LISTEN_ADDRESS", "127.0.0.1:0");

/// The port a reloader started with [`ANY_PORT`] listens on.
fn port(rel: &Reloader) -> u16 {
    let line = &rel.lines("info watching")[0];
    let addr = field(line, "listen").unwrap_or_else(|| panic!("no listen= in {line}"));
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The text of one scrape.
fn scrape(port: u16) -> String {
    let (code, body) = http::request(port, "GET", "/metrics").expect("/metrics answers");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `series` (name with its labels, as rendered).
fn value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')
            .map(str::to_string)
    })
}

/// Waits until `series` reads `want`, then returns the whole scrape.
fn await_value(port: u16, series: &str, want: &str) -> String {
    wait_until(T, &format!("{series} == {want}"), || {
        let t = scrape(port);
        (value(&t, series).as_deref() == Some(want)).then_some(t)
    })
}

/// The counters a reload may move, in one tuple: total, failed, last successful, unchanged.
fn counters(t: &str) -> [String; 4] {
    [
        "reloader_reloads_total",
        "reloader_reloads_failed_total",
        "reloader_last_reload_successful",
        "config_reloader_unchanged_total",
    ]
    .map(|s| value(t, s).unwrap_or_default())
}

#[test]
fn a_good_reload_an_unchanged_one_and_a_refused_one_each_move_their_counters() {
    let name = unique_name("metrics-app");
    let dir = TempDir::new("metrics").unwrap();
    let file = dir.join("app.conf");
    fs::write(&file, "v1").unwrap();
    let app = spawn_app(&name, &file);
    let rel = start(dir.path(), &name, &[ANY_PORT]);
    let p = port(&rel);
    let t0 = scrape(p);
    assert_eq!(
        counters(&t0),
        ["0", "0", "1", "0"].map(String::from),
        "{t0}"
    );
    assert_eq!(
        value(&t0, "reloader_info{method=\"signal\"}").as_deref(),
        Some("1")
    );
    let fp0 = value(&t0, "config_reloader_applied_fingerprint").expect("fingerprint");

    fs::write(&file, "v2").unwrap();
    app.wait_received(1, T);
    let t1 = await_value(p, "reloader_reloads_total", "1");
    assert_eq!(
        counters(&t1),
        ["1", "0", "1", "0"].map(String::from),
        "{t1}"
    );
    assert_ne!(
        value(&t1, "config_reloader_applied_fingerprint").unwrap(),
        fp0
    );
    assert!(value(&t1, "config_reloader_last_change_timestamp_seconds").is_some());
    assert_eq!(rel.lines("info reload succeeded").len(), 1, "{}", rel.log());

    // The same bytes again: a settle, nothing sent, only `unchanged` moves.
    fs::write(&file, "v2").unwrap();
    let t2 = await_value(p, "config_reloader_unchanged_total", "1");
    assert_eq!(
        counters(&t2),
        ["1", "0", "1", "1"].map(String::from),
        "{t2}"
    );
    assert_eq!(app.expect_exactly(1, T, QUIET).len(), 1);

    // A second target that would die of SIGHUP: refused, so the reload failed.
    let fragile = Recorder::spawn(Options {
        name: Some(name.clone()),
        mode: Mode::Default,
        ..Options::default()
    });
    fs::write(&file, "v3").unwrap();
    let t3 = await_value(p, "reloader_reloads_total", "2");
    assert_eq!(
        counters(&t3),
        ["2", "1", "0", "1"].map(String::from),
        "{t3}"
    );
    let refused = "config_reloader_refusals_total{handling=\"default\"}";
    assert_eq!(value(&t3, refused).as_deref(), Some("1"), "{t3}");
    assert_eq!(
        value(&t3, "config_reloader_applied_fingerprint"),
        value(&t1, "config_reloader_applied_fingerprint"),
        "a failed reload changed the applied fingerprint"
    );
    let line = &rel.wait_lines("warn reload failed", 1, T)[0];
    assert_eq!(
        field(line, "reason").as_deref(),
        Some("1 refused"),
        "{line}"
    );
    assert!(fragile.is_alive());
}

#[test]
fn a_reload_request_that_fails_counts_as_failed_and_by_status() {
    let dir = TempDir::new("metrics-hook").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let server = http::Server::start(&[http::Answer::Status(503)], http::Answer::Status(200));
    let url = server.url("/-/reload");
    let env = [
        ("CONFIG_DIR", testkit::reloader::path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", url.as_str()),
        ANY_PORT,
    ];
    let rel = Reloader::start(bin(), &env, &[]);
    let p = port(&rel);
    assert!(scrape(p).contains("reloader_info{method=\"http\"} 1"));
    fs::write(dir.join("app.conf"), "v2").unwrap();
    // The 503, then its retry's 200: two attempts, one failed, and the last one good.
    let t = await_value(p, "reloader_reloads_total", "2");
    assert_eq!(counters(&t), ["2", "1", "1", "0"].map(String::from), "{t}");
    let by = |s: &str| {
        value(
            &t,
            &format!("config_reloader_webhook_requests_total{{status=\"{s}\"}}"),
        )
    };
    assert_eq!(
        (by("503").as_deref(), by("200").as_deref()),
        (Some("1"), Some("1")),
        "{t}"
    );
    assert!(
        !t.contains(&url) && !t.contains("127.0.0.1:"),
        "the URL leaked: {t}"
    );
}

#[test]
fn stalled_clients_do_not_lock_out_a_scrape_or_delay_a_reload() {
    let name = unique_name("metrics-stall");
    let dir = TempDir::new("metrics-stall").unwrap();
    let file = dir.join("app.conf");
    fs::write(&file, "v1").unwrap();
    let app = spawn_app(&name, &file);
    let rel = start(dir.path(), &name, &[ANY_PORT]);
    let p = port(&rel);
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    let body = scrape(p);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "the scrape took {took:?}");
    assert!(body.contains("reloader_reloads_total 0"), "{body}");
    let t = Instant::now();
    fs::write(&file, "v2").unwrap();
    app.wait_received(1, T);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the reload took {took:?} behind stalled clients"
    );
    drop(stalled);

    // 200 KiB of header: cut off after a few KiB with 431, and the sidecar lives on.
    let mut big = TcpStream::connect(("127.0.0.1", p)).unwrap();
    big.set_read_timeout(Some(T)).unwrap();
    let mut sent = 0;
    let junk = [b'a'; 1024];
    let _ = big.write_all(b"GET /metrics HTTP/1.1\r\nX: ");
    while sent < 200 * 1024 {
        match big.write(&junk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(rel.is_running());
    // The reload's outcome comes once RELOAD_CONFIRM=alive has looked, 1 s after the signal.
    await_value(p, "reloader_reloads_total", "1");
    let (code, _) = http::request(p, "GET", "/healthz").unwrap();
    assert_eq!(code, 200);
}

#[test]
fn idle_with_the_listener_on_never_wakes_up() {
    let dir = TempDir::new("metrics-idle").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let rel = start(dir.path(), &unique_name("metrics-idle"), &[ANY_PORT]);
    await_idle(rel.pid());
    // One scrape first: a served connection is closed at once, leaving neither a socket nor
    // a deadline behind (a connection kept after its answer would spin until its deadline).
    scrape(port(&rel));
    wait_until(
        Duration::from_secs(1),
        "the served connection closed, the loop asleep",
        || {
            let wchan =
                fs::read_to_string(format!("/proc/{}/wchan", rel.pid())).unwrap_or_default();
            (sockets(rel.pid()) == 1 && wchan.contains("poll")).then_some(())
        },
    );
    let before = switches(rel.pid());
    std::thread::sleep(Duration::from_secs(30));
    let woke = switches(rel.pid()) - before;
    assert_eq!(woke, 0, "woke {woke} times in 30 s with no client");
}

/// Sockets among the open fds of `pid`.
fn sockets(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn the_default_sidecar_opens_no_port_and_a_bad_address_exits_2() {
    let dir = TempDir::new("metrics-off").unwrap();
    let name = unique_name("metrics-off");
    let rel = start(dir.path(), &name, &[]);
    assert_eq!(sockets(rel.pid()), 0);
    assert!(field(&rel.lines("info watching")[0], "listen").is_none());
    for bad in ["localhost:9533", "9533", "[::1]", "http://:9533"] {
        let e = env(dir.path(), &name, &[("RELOAD_LISTEN_ADDRESS", bad)]);
        let (status, _, err) = run_to_exit(bin(), &e, &[]);
        assert_eq!(status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("RELOAD_LISTEN_ADDRESS") && err.contains(":9533"),
            "{err}"
        );
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let e = env(
        dir.path(),
        &name,
        &[("RELOAD_LISTEN_ADDRESS", taken.as_str())],
    );
    let (status, _, err) = run_to_exit(bin(), &e, &[]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
}

/// Issue 21 in the metrics: a validation that rejects the content is a failed reload (nothing
/// sent), with the validator's reason; the fix that passes is a success again.
#[test]
fn a_failed_validation_counts_as_a_failed_reload_and_the_fix_as_a_success() {
    let name = unique_name("metrics-val");
    let dir = TempDir::new("metrics-validate").unwrap();
    let file = dir.join("app.conf");
    fs::write(&file, "v1").unwrap();
    let app = spawn_app(&name, &file);
    let check = format!("sh -c '! grep -q broken {}'", file.display());
    let extra = [ANY_PORT, ("RELOAD_VALIDATE_COMMAND", check.as_str())];
    let rel = start(dir.path(), &name, &extra);
    let p = port(&rel);

    fs::write(&file, "broken").unwrap();
    let t1 = await_value(p, "reloader_reloads_failed_total", "1");
    assert_eq!(
        counters(&t1),
        ["1", "1", "0", "0"].map(String::from),
        "{t1}"
    );
    let line = &rel.wait_lines("warn reload failed", 1, T)[0];
    assert_eq!(
        field(line, "reason").as_deref(),
        Some("validation failed (exit 1)"),
        "{line}"
    );
    assert!(app.expect_exactly(0, T, QUIET).is_empty());

    fs::write(&file, "v3").unwrap();
    let got = app.wait_received(1, T);
    assert_eq!(testkit::recorder::contents(&got), ["v3"]);
    let t2 = await_value(p, "reloader_reloads_total", "2");
    assert_eq!(
        counters(&t2),
        ["2", "1", "1", "0"].map(String::from),
        "{t2}"
    );
}

/// Issue 21 in the metrics: an app that dies in its SIGHUP handler (the sidecar form, so
/// only `RELOAD_CONFIRM=alive` can tell) is a failed reload, though the signal went out.
#[test]
fn an_app_that_dies_on_the_signal_reads_as_a_failed_reload_in_the_metrics() {
    let tmp = TempDir::new("metrics-dies").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("metrics-die");
    let _guard = servers::Guard(name.clone());
    let mut app = servers::spawn_dies_on_hup(&tmp, &name);
    let rel = start(&dir, &name, &[ANY_PORT]);
    let p = port(&rel);

    fs::write(dir.join("app.conf"), "v2").unwrap();
    rel.wait_lines("info reloaded", 1, T);
    let t = await_value(p, "reloader_reloads_failed_total", "1");
    assert_eq!(counters(&t), ["1", "1", "0", "0"].map(String::from), "{t}");
    let line = &rel.wait_lines("warn reload failed", 1, T)[0];
    let reason = field(line, "reason").unwrap_or_default();
    assert!(reason.contains("died after the reload signal"), "{line}");
    let _ = app.wait();
}

/// Regression: the confirmation counted its 1 s from the settle, so after a validation that
/// took longer it looked at once after the send, before the app could die, and read alive.
#[test]
fn an_app_that_dies_on_the_signal_after_a_slow_validation_reads_as_failed() {
    let tmp = TempDir::new("metrics-slow-val").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("metrics-slow");
    let _guard = servers::Guard(name.clone());
    let mut app = servers::spawn_dies_on_hup(&tmp, &name);
    let extra = [ANY_PORT, ("RELOAD_VALIDATE_COMMAND", "sleep 1.5")];
    let rel = start(&dir, &name, &extra);
    let p = port(&rel);

    fs::write(dir.join("app.conf"), "v2").unwrap();
    rel.wait_lines("info reloaded", 1, T);
    let t = await_value(p, "reloader_reloads_total", "1");
    assert_eq!(counters(&t), ["1", "1", "0", "0"].map(String::from), "{t}");
    let line = &rel.wait_lines("warn reload failed", 1, T)[0];
    let reason = field(line, "reason").unwrap_or_default();
    assert!(reason.contains("died after the reload signal"), "{line}");
    let _ = app.wait();
}
