//! Reload over HTTP (issue 13), end to end: the real binary, a kubelet-exact volume, and a
//! local HTTP server (`http::Server`) that records every request and answers as scripted: a
//! status, nothing (a hung app), or a status held back (a slow app). Each test asserts what an
//! operator of the app would see: how many reload requests arrived, when, and in which order
//! with the signal.

mod http;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::thread::sleep;
use std::time::{Duration, Instant};

use http::{closed_port, Answer, Server};
use support::{bin, spawn_app, QUIET, T};
use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::contents;
use testkit::reloader::{field, path_str, Reloader};
use testkit::{unique_name, wait_until, wait_until_every, TempDir};

/// The volume's payload: `app.conf` holding `v`.
fn conf(v: &str) -> [(&str, &[u8]); 1] {
    [("app.conf", v.as_bytes())]
}

fn volume(dir: &TempDir, v: &str) -> Volume {
    Volume::create(dir.path(), &conf(v)).unwrap()
}

/// One kubelet update to `v`; the CLOCK_MONOTONIC ns of its commit (the rename onto ..data).
fn update(vol: &Volume, v: &str) -> u64 {
    let commit = vol.update_with(&conf(v), &UpdateOptions::default());
    commit.unwrap().expect("the content changed").commit_ns
}

/// The reloader on `dir` with a reload URL and `extra` settings (no PROCESS_NAME unless given).
fn start(dir: &TempDir, url: &str, extra: &[(&str, &str)]) -> Reloader {
    let mut env = vec![
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", url),
    ];
    env.extend_from_slice(extra);
    Reloader::start(bin(), &env, &[])
}

/// Waits for `n` requests at `server` and returns them.
fn await_requests(server: &Server, n: usize, rel: &Reloader) -> Vec<http::Request> {
    let what = format!("{n} request(s) at the test server");
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(T, &what, || {
            let r = server.requests();
            (r.len() >= n).then_some(r)
        })
    }));
    got.unwrap_or_else(|_| panic!("no {what}; log:\n{}", rel.log()))
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[test]
fn kubelet_update_is_exactly_one_request_and_chmod_or_same_content_none() {
    let dir = TempDir::new("hook-one").unwrap();
    let vol = volume(&dir, "v1");
    let server = Server::start(&[], Answer::Status(200));
    let rel = start(&dir, &server.url("/-/reload"), &[]);
    let ready = &rel.lines("info watching")[0];
    let shown = server.url("/-/reload");
    assert_eq!(field(ready, "webhook").as_deref(), Some(shown.as_str()));

    let commit = update(&vol, "v2");
    let req = &await_requests(&server, 1, &rel)[0];
    println!(
        "request received {:.1} ms after the kubelet commit",
        ms(req.t_ns - commit)
    );
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/-/reload")
    );
    let host = format!("127.0.0.1:{}", server.port());
    assert_eq!(req.header("host"), Some(host.as_str()));
    assert_eq!(req.header("content-length"), Some("0"));
    assert_eq!(req.header("connection"), Some("close"));
    assert_eq!(req.header("authorization"), None);
    let line = &rel.wait_lines("info reloaded over HTTP", 1, T)[0];
    assert_eq!(
        field(line, "url").as_deref(),
        Some(shown.as_str()),
        "{line}"
    );
    assert_eq!(field(line, "status").as_deref(), Some("200"), "{line}");
    assert_eq!(field(line, "attempts").as_deref(), Some("1"), "{line}");

    // A chmod of the file the app reads, then a resync that swaps ..data to equal bytes.
    let file = vol.data_dir().unwrap().join("app.conf");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let resync = UpdateOptions {
        swap_on_equal: true,
        ..UpdateOptions::default()
    };
    let swapped = vol.update_with(&conf("v2"), &resync).unwrap();
    assert!(swapped.is_some(), "..data was swapped to equal content");
    sleep(QUIET);
    assert_eq!(server.requests().len(), 1, "{}", rel.log());

    update(&vol, "v3");
    await_requests(&server, 2, &rel);
    sleep(QUIET);
    assert_eq!(server.requests().len(), 2, "{}", rel.log());
    assert_eq!(
        rel.lines("info reloaded over HTTP").len(),
        2,
        "{}",
        rel.log()
    );
    assert!(rel.lines("warn").is_empty(), "{}", rel.log());
}

#[test]
fn status_500_twice_is_retried_with_backoff_then_succeeds() {
    let dir = TempDir::new("hook-500").unwrap();
    let vol = volume(&dir, "v1");
    let server = Server::start(
        &[Answer::Status(500), Answer::Status(500)],
        Answer::Status(200),
    );
    let rel = start(&dir, &server.url("/-/reload"), &[]);

    let commit = update(&vol, "v2");
    let reqs = await_requests(&server, 3, &rel);
    let done = &rel.wait_lines("info reloaded over HTTP after retries", 1, T)[0];
    assert_eq!(field(done, "attempts").as_deref(), Some("3"), "{done}");
    assert_eq!(field(done, "status").as_deref(), Some("200"), "{done}");
    let warns = rel.lines("warn reload request failed; retrying");
    assert_eq!(warns.len(), 2, "{}", rel.log());
    for (i, (w, pause)) in warns.iter().zip(["500", "1000"]).enumerate() {
        assert_eq!(field(w, "error").as_deref(), Some("status 500"), "{w}");
        let attempt = (i + 1).to_string();
        assert_eq!(
            field(w, "attempt").as_deref(),
            Some(attempt.as_str()),
            "{w}"
        );
        assert_eq!(field(w, "retry_ms").as_deref(), Some(pause), "{w}");
    }
    let t: Vec<f64> = reqs.iter().map(|r| ms(r.t_ns - commit)).collect();
    println!(
        "retry timeline after the commit: {:.0} ms (500), {:.0} ms (500), {:.0} ms (200)",
        t[0], t[1], t[2]
    );
    // Each request comes after the previous one failed plus its pause: at least the backoff.
    // The upper bound leaves a loaded machine 500 ms, yet catches a doubled or missing step.
    let (gap1, gap2) = (t[1] - t[0], t[2] - t[1]);
    assert!((500.0..1000.0).contains(&gap1), "first pause {gap1:.0} ms");
    assert!(
        (1000.0..1500.0).contains(&gap2),
        "second pause {gap2:.0} ms"
    );
    sleep(QUIET);
    assert_eq!(server.requests().len(), 3, "{}", rel.log());
}

#[test]
fn connection_refused_until_the_app_listens_is_retried_then_one_request_succeeds() {
    let dir = TempDir::new("hook-refused").unwrap();
    let vol = volume(&dir, "v1");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/-/reload");
    let rel = start(&dir, &url, &[]);

    update(&vol, "v2");
    let warn = &rel.wait_lines("warn reload request failed; retrying", 1, T)[0];
    let error = field(warn, "error").unwrap_or_default();
    assert!(error.contains("Connection refused"), "{warn}");
    assert!(
        !warn.contains("***"),
        "no credentials, nothing masked: {warn}"
    );

    // The app starts listening on its port.
    let server = Server::start_on(port, &[], Answer::Status(200)).expect("listen on the port");
    await_requests(&server, 1, &rel);
    let done = &rel.wait_lines("info reloaded over HTTP after retries", 1, T)[0];
    let attempts: u32 = field(done, "attempts").unwrap().parse().unwrap();
    assert!(attempts >= 2, "{done}");
    sleep(QUIET);
    assert_eq!(server.requests().len(), 1, "{}", rel.log());
    let failed = rel.lines("warn reload request failed; retrying").len();
    assert_eq!(failed as u32, attempts - 1, "{}", rel.log());
}

#[test]
fn sigterm_during_a_hanging_request_exits_within_100_ms() {
    let dir = TempDir::new("hook-hang").unwrap();
    let vol = volume(&dir, "v1");
    let server = Server::start(&[], Answer::Hang);
    let mut rel = start(&dir, &server.url("/-/reload"), &[]);

    update(&vol, "v2");
    // The whole request reached the server: the reloader now waits for an answer that never
    // comes (the default timeout is 10 s).
    await_requests(&server, 1, &rel);
    let signalled = Instant::now();
    rel.signal(libc::SIGTERM);
    // Checked every millisecond (wait_exit's 5 ms would blur the measurement).
    wait_until_every(Duration::from_millis(1), T, "the reloader to exit", || {
        (!rel.is_running()).then_some(())
    });
    let took = signalled.elapsed();
    let status = rel.wait_exit(T);
    println!("SIGTERM during a hanging request: exited after {took:?}");
    assert!(status.success(), "{status:?}\n{}", rel.log());
    assert!(took < Duration::from_millis(100), "{took:?}\n{}", rel.log());
    assert_eq!(rel.lines("info exiting").len(), 1, "{}", rel.log());
    wait_until(T, "the hanging connection to be closed", || {
        (server.hangs_closed() == 1).then_some(())
    });
}

#[test]
fn changes_during_a_slow_request_coalesce_into_one_more_request() {
    let dir = TempDir::new("hook-slow").unwrap();
    let vol = volume(&dir, "v1");
    let name = unique_name("hookslow");
    let app = spawn_app(&name, &dir.join("app.conf"));
    let server = Server::start(&[Answer::Held(200)], Answer::Status(200));
    let rel = start(&dir, &server.url("/-/reload"), &[("PROCESS_NAME", &name)]);

    update(&vol, "v2");
    await_requests(&server, 1, &rel);
    // (The app has re-read v2 before the next update replaces it.)
    app.wait_received(1, T);
    // Two more changes, each decided (the app got its signal) while the first request waits.
    for (n, v) in [(2, "v3"), (3, "v4")] {
        update(&vol, v);
        app.wait_received(n, T);
    }
    assert_eq!(contents(&app.received()), ["v2", "v3", "v4"]);
    assert_eq!(server.requests().len(), 1, "{}", rel.log());

    server.release();
    await_requests(&server, 2, &rel);
    rel.wait_lines("info reloaded over HTTP", 2, T);
    sleep(QUIET);
    assert_eq!(server.requests().len(), 2, "{}", rel.log());
    assert_eq!(
        rel.lines("info reloaded over HTTP").len(),
        2,
        "{}",
        rel.log()
    );
}

/// With both a process name and a URL the signal is sent first, then the request. What is
/// promised is the order of the sends: when each arrives depends on which of two processes the
/// kernel runs first (a 2-core CI machine once delivered the request 0.02 ms before the signal),
/// so the sends are read from the reloader's own syscalls, traced by strace.
#[test]
fn with_a_process_name_too_the_signal_is_sent_before_the_request() {
    let dir = TempDir::new("hook-order").unwrap();
    let vol = volume(&dir, "v1");
    let name = unique_name("hookorder");
    let app = spawn_app(&name, &dir.join("app.conf"));
    let server = Server::start(&[], Answer::Status(200));
    let out = TempDir::new("hook-order-trace").unwrap();
    let trace = out.join("strace");
    let url = server.url("/-/reload");
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", url.as_str()),
        ("PROCESS_NAME", name.as_str()),
    ];
    let strace = testkit::apps::debian("/usr/bin/strace", "strace");
    let filter = "trace=pidfd_send_signal,kill,connect";
    let args = [
        "-f",
        "-qq",
        "-o",
        path_str(&trace),
        "-e",
        filter,
        path_str(bin()),
    ];
    let rel = Reloader::start_command(testkit::reloader::command(&strace, &env, &args));
    let _tracee = support::tracee(&rel);

    for (n, v) in [(1, "v2"), (2, "v3")] {
        update(&vol, v);
        let req = &await_requests(&server, n, &rel)[n - 1];
        let sig = &app.wait_received(n, T)[n - 1];
        assert_eq!(contents(std::slice::from_ref(sig)), [v]);
        println!(
            "update {n}: request received {:+.3} ms after the signal",
            (req.t_ns as f64 - sig.t_ns as f64) / 1e6
        );
    }
    rel.wait_lines("info reloaded over HTTP", 2, T);
    let traced = fs::read_to_string(&trace).expect("strace output");
    let sends: Vec<&str> = traced
        .lines()
        .filter(|l| !l.contains("resumed>"))
        .filter_map(|l| match () {
            _ if l.contains("pidfd_send_signal(") || l.contains(" kill(") => Some("signal"),
            _ if l.contains("connect(") => Some("request"),
            _ => None,
        })
        .collect();
    assert_eq!(
        sends,
        ["signal", "request", "signal", "request"],
        "{}",
        rel.log()
    );
    let log = rel.log();
    let order: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("info reloaded"))
        .map(|l| match l.starts_with("info reloaded over HTTP") {
            true => "http",
            false => "signal",
        })
        .collect();
    assert_eq!(order, ["signal", "http", "signal", "http"], "{log}");
}

/// A request wholly sent that gets no answer may have been applied: it is not sent again for
/// the same change (the abandoned connection is closed), and the line says so.
#[test]
fn a_request_without_answer_times_out_and_is_not_resent() {
    let dir = TempDir::new("hook-timeout").unwrap();
    let vol = volume(&dir, "v1");
    let server = Server::start(&[Answer::Hang], Answer::Status(200));
    let rel = start(
        &dir,
        &server.url("/-/reload"),
        &[("RELOAD_WEBHOOK_TIMEOUT", "300ms")],
    );

    update(&vol, "v2");
    await_requests(&server, 1, &rel);
    let warn = &rel.wait_lines("warn reload request outcome unknown", 1, T)[0];
    assert_eq!(
        field(warn, "error").as_deref(),
        Some("no answer within 300 ms"),
        "{warn}"
    );
    wait_until(T, "the abandoned connection to be closed", || {
        (server.hangs_closed() == 1).then_some(())
    });
    // A retry would have come after the first 500 ms pause.
    sleep(Duration::from_millis(500) + QUIET);
    assert_eq!(server.requests().len(), 1, "{}", rel.log());
    assert!(
        rel.lines("warn reload request failed").is_empty(),
        "{}",
        rel.log()
    );
}

#[test]
fn a_newer_change_replaces_the_one_waiting_for_its_retry() {
    let dir = TempDir::new("hook-newer").unwrap();
    let vol = volume(&dir, "v1");
    let server = Server::start(&[], Answer::Status(503));
    let rel = start(&dir, &server.url("/-/reload"), &[]);

    update(&vol, "v2");
    rel.wait_lines("warn reload request failed; retrying", 2, T);
    update(&vol, "v3");
    let warns = rel.wait_lines("warn reload request failed; retrying", 3, T);
    let attempts: Vec<String> = warns.iter().filter_map(|w| field(w, "attempt")).collect();
    assert_eq!(attempts[..3], ["1", "2", "1"], "{}", rel.log());
    assert_eq!(field(&warns[2], "retry_ms").as_deref(), Some("500"));
}

#[test]
fn localhost_reaches_an_app_on_127_0_0_1_and_retries_go_to_it_too() {
    let dir = TempDir::new("hook-localhost").unwrap();
    let vol = volume(&dir, "v1");
    let server = Server::start(&[Answer::Status(500)], Answer::Status(200));
    let url = format!("http://localhost:{}/-/reload", server.port());
    let rel = start(&dir, &url, &[]);

    update(&vol, "v2");
    let reqs = await_requests(&server, 2, &rel);
    let host = format!("localhost:{}", server.port());
    assert_eq!(reqs[0].header("host"), Some(host.as_str()));
    let done = &rel.wait_lines("info reloaded over HTTP after retries", 1, T)[0];
    assert_eq!(
        field(done, "attempts").as_deref(),
        Some("2"),
        "{}",
        rel.log()
    );
}
