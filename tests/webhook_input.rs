//! Reload over HTTP (issue 13): what the user configures and what reaches the app and the logs.
//! The method, path and credentials arrive as configured; credentials never appear in a log
//! line, a `--check` report or a rejection; bad settings exit 2 with one line before anything
//! is signalled or requested; `--check` only connects.

mod http;
mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};

use http::{closed_port, Answer, Server};
use support::{bin, T};
use testkit::kubelet::Volume;
use testkit::recorder::{Options, Recorder};
use testkit::reloader::{code, command, path_str, Reloader};
use testkit::{unique_name, wait_until, TempDir};

/// The user and the password of the URLs below; neither may show anywhere.
const USER: &str = "opsadmin";
const SECRET: &str = "s3cr";
/// `opsadmin:s3cr@t/pw`, percent-encoded where a URL needs it.
const USERINFO: &str = "opsadmin:s3cr%40t%2Fpw";
/// base64("opsadmin:s3cr@t/pw"): the decoded password goes into Basic auth.
const BASIC: &str = "Basic b3BzYWRtaW46czNjckB0L3B3";

fn leaks(text: &str) -> Option<&str> {
    text.lines()
        .find(|l| l.contains(USER) || l.contains(SECRET) || l.contains(&BASIC[6..]))
}

/// Runs a configuration that must be rejected: (exit code, stderr). Bounded: one accepted by
/// mistake would serve for ever.
fn rejected(mut cmd: Command) -> (i32, String) {
    let mut r = Reloader::spawn_command(&mut cmd);
    let status = r.wait_exit(T);
    (code(status), r.log())
}

#[test]
fn credentials_become_basic_auth_and_no_log_line_shows_them() {
    for format in ["text", "json"] {
        let dir = TempDir::new("hook-creds").unwrap();
        let vol = Volume::create(dir.path(), &[("app.conf", b"v1")]).unwrap();
        // A failure first, so the warning lines are checked too.
        let server = Server::start(&[Answer::Status(500)], Answer::Status(200));
        let url = format!("http://{USERINFO}@127.0.0.1:{}/-/reload", server.port());
        let env = [
            ("CONFIG_DIR", path_str(dir.path())),
            ("RELOAD_WEBHOOK_URL", &url),
            ("VERBOSE", "true"),
            ("LOG_FORMAT", format),
        ];
        let rel = Reloader::start(bin(), &env, &[]);
        vol.update(&[("app.conf", b"v2")]).unwrap();
        wait_until(T, "the retried request to succeed", || {
            rel.log()
                .contains("reloaded over HTTP after retries")
                .then_some(())
        });
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2, "{}", rel.log());
        for r in &reqs {
            assert_eq!(r.header("authorization"), Some(BASIC), "{format}");
        }
        let log = rel.log();
        assert_eq!(
            leaks(&log),
            None,
            "{format}: a log line shows the credentials"
        );
        let masked = format!("http://***@127.0.0.1:{}/-/reload", server.port());
        assert!(log.contains(&masked), "{format}: {log}");

        let out = command(bin(), &env, &["--check"]).output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{report}");
        assert_eq!(leaks(&report), None, "--check shows the credentials");
        assert!(report.contains(&masked), "{report}");
    }
}

/// Was: a percent-encoded password byte that is not UTF-8 (`%E9`, Latin-1 é) was decoded
/// lossily and sent as U+FFFD (`b3BzOmNhZu+/vQ==`): the app saw another password.
#[test]
fn a_percent_encoded_non_utf8_password_byte_is_sent_as_that_byte() {
    let dir = TempDir::new("hook-latin1").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"v1")]).unwrap();
    let server = Server::start(&[], Answer::Status(200));
    let url = format!("http://ops:caf%E9@127.0.0.1:{}/-/reload", server.port());
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", url.as_str()),
    ];
    let rel = Reloader::start(bin(), &env, &[]);
    vol.update(&[("app.conf", b"v2")]).unwrap();
    let reqs = wait_until(T, "one request", || {
        let r = server.requests();
        (!r.is_empty()).then_some(r)
    });
    // base64 of the bytes `ops:caf` 0xE9.
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Basic b3BzOmNhZuk="),
        "{}",
        rel.log()
    );
}

#[test]
fn the_method_and_path_are_sent_as_configured_by_env_or_flag() {
    let dir = TempDir::new("hook-method").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"v1")]).unwrap();
    let server = Server::start(&[], Answer::Status(204));
    let url = server.url("/api/v2/reload?from=sidecar");
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", url.as_str()),
        ("RELOAD_WEBHOOK_METHOD", "put"),
    ];
    let by_env = Reloader::start(bin(), &env, &[]);
    vol.update(&[("app.conf", b"v2")]).unwrap();
    wait_until(T, "one request", || {
        (server.requests().len() == 1).then_some(())
    });
    drop(by_env);

    let flags = ["--webhook-url", &url, "--webhook-method=DELETE"];
    let by_flag = Reloader::start(bin(), &env[..1], &flags);
    vol.update(&[("app.conf", b"v3")]).unwrap();
    let reqs = wait_until(T, "two requests", || {
        let r = server.requests();
        (r.len() == 2).then_some(r)
    });
    let sent: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    let path = "/api/v2/reload?from=sidecar";
    assert_eq!(sent, [("PUT", path), ("DELETE", path)]);
    let line = &by_flag.wait_lines("info reloaded over HTTP", 1, T)[0];
    assert!(line.contains(" status=204 "), "{line}");
}

#[test]
fn bad_webhook_settings_exit_2_with_one_line_and_reach_nobody() {
    let dir = TempDir::new("hook-bad").unwrap();
    std::fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("hookbad");
    let app = Recorder::spawn(Options {
        name: Some(name.clone()),
        ..Options::default()
    });
    let server = Server::start(&[], Answer::Status(200));
    let port = server.port();
    let good = server.url("/-/reload");
    let url = |s: &str| s.replace("PORT", &port.to_string());
    let cases = [
        (
            "RELOAD_WEBHOOK_URL",
            url("https://127.0.0.1:PORT/-/reload"),
            "loopback",
        ),
        (
            "RELOAD_WEBHOOK_URL",
            url("http://prometheus:PORT/-/reload"),
            "not an IP address or localhost",
        ),
        (
            "RELOAD_WEBHOOK_URL",
            url("http://:PORT/-/reload"),
            "not an IP address or localhost",
        ),
        (
            "RELOAD_WEBHOOK_URL",
            "http://127.0.0.1:99999/-/reload".into(),
            "bad port",
        ),
        (
            "RELOAD_WEBHOOK_URL",
            "http://127.0.0.1:x/-/reload".into(),
            "bad port",
        ),
        (
            "RELOAD_WEBHOOK_URL",
            url("127.0.0.1:PORT/-/reload"),
            "not an http:// URL",
        ),
        (
            "RELOAD_WEBHOOK_METHOD",
            "FETCH".into(),
            "use POST, PUT, GET, PATCH or DELETE",
        ),
        ("RELOAD_WEBHOOK_TIMEOUT", "0".into(), "longer than 0"),
        ("RELOAD_WEBHOOK_TIMEOUT", "soon".into(), "not a duration"),
    ];
    let accepted = "http://HOST[:PORT]/PATH";
    for (var, value, says) in &cases {
        let mut env = vec![
            ("CONFIG_DIR", path_str(dir.path())),
            ("PROCESS_NAME", name.as_str()),
            ("RELOAD_WEBHOOK_URL", good.as_str()),
        ];
        env.retain(|(k, _)| k != var);
        env.push((var, value));
        let (code, err) = rejected(command(bin(), &env, &[]));
        assert_eq!(code, 2, "{var}={value}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{var}={value}: {err}");
        assert!(
            lines[0].starts_with(&format!("config-reloader: {var}=")),
            "{err}"
        );
        assert!(lines[0].contains(says), "{var}={value}: {err}");
        if *var == "RELOAD_WEBHOOK_URL" && !says.contains("loopback") {
            assert!(lines[0].contains(accepted), "{err}");
        }
    }
    let flag = format!("--webhook-url=https://127.0.0.1:{port}/");
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("PROCESS_NAME", &name),
    ];
    let (code, err) = rejected(command(bin(), &env, &[&flag]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("config-reloader: --webhook-url=\"https://"),
        "{err}"
    );

    assert!(app.received().is_empty(), "{:?}", app.received());
    assert!(server.requests().is_empty());
    assert_eq!(
        server.bare_connects(),
        0,
        "a rejected configuration connected"
    );
}

#[test]
fn check_connects_to_the_url_but_sends_no_request() {
    let dir = TempDir::new("hook-check").unwrap();
    let server = Server::start(&[], Answer::Status(200));
    let url = server.url("/-/reload");
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", &url),
    ];
    let out = command(bin(), &env, &["--check"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let port = server.port();
    let line = format!("webhook POST {url}: 127.0.0.1:{port} accepts connections (TCP connect only; no request sent)");
    assert!(report.lines().any(|l| l == line), "{report}");
    wait_until(T, "the server to see --check's connection close", || {
        (server.bare_connects() == 1).then_some(())
    });
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    let closed = format!("http://127.0.0.1:{}/-/reload", closed_port());
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", &closed),
    ];
    let out = command(bin(), &env, &["--check"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let problem = format!("problem: webhook {closed} does not answer: ");
    let line = report.lines().find(|l| l.starts_with(&problem));
    assert!(
        line.is_some_and(|l| l.contains("Connection refused")),
        "{report}"
    );
    assert_eq!(report.lines().last(), Some("not ok"), "{report}");
}

/// Regression: a rejected URL was echoed whole, password included, when it had no `scheme://`
/// (`user:pass@host`), a `/` in the password, or a byte that is not UTF-8; and so was a
/// misspelled flag carrying one.
#[test]
fn a_rejected_url_never_echoes_its_credentials() {
    let dir = TempDir::new("hook-redact").unwrap();
    let env = [("CONFIG_DIR", path_str(dir.path()))];
    let env_cases: [&[u8]; 5] = [
        b"opsadmin:s3cret@127.0.0.1:9090/-/reload",
        b"http//opsadmin:s3cret@127.0.0.1/-/reload",
        b"http://opsadmin:s3/cret@127.0.0.1:9090/-/reload",
        b"http://opsadmin:s3cr?et@127.0.0.1:9090/-/reload",
        b"http://opsadmin:s3cret\xff@127.0.0.1:9090/-/reload",
    ];
    let mut runs: Vec<(String, Command)> = Vec::new();
    for value in env_cases {
        let mut cmd = command(bin(), &env, &[]);
        cmd.env("RELOAD_WEBHOOK_URL", OsString::from_vec(value.to_vec()));
        runs.push((String::from_utf8_lossy(value).into_owned(), cmd));
    }
    let arg_cases: [&[u8]; 3] = [
        b"--webhook-url=http://opsadmin:s3cret\xff@127.0.0.1:9090/-/reload",
        b"--webhook-ur=http://opsadmin:s3cret@127.0.0.1:9090/-/reload",
        b"http://opsadmin:s3cret@127.0.0.1:9090/-/reload",
    ];
    for arg in arg_cases {
        let mut cmd = command(bin(), &env, &[]);
        cmd.arg(OsString::from_vec(arg.to_vec()));
        runs.push((String::from_utf8_lossy(arg).into_owned(), cmd));
    }
    for (what, mut cmd) in runs {
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert_eq!(
            leaks(&err),
            None,
            "{what}: the rejection shows the credentials"
        );
        assert!(err.contains("***@127.0.0.1"), "{what}: {err}");
    }
}
