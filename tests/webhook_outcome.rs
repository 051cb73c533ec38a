//! Reload over HTTP: which failed requests are sent again. One the app cannot have seen (no
//! connection) or refused (a status other than 2xx) is retried; one wholly sent that got no
//! answer may have been applied, and is never resent for the same change. Real servers:
//! Debian's python3 `http.server` for a slow endpoint, the test server (`http::Server`) for the
//! others.

mod http;
mod support;

use std::thread::sleep;
use std::time::Duration;

use http::{Answer, Server, SlowPython};
use support::{bin, QUIET, T};
use testkit::kubelet::Volume;
use testkit::reloader::{field, path_str, Reloader};
use testkit::{wait_until, TempDir};

fn update(vol: &Volume, v: &str) {
    assert!(vol.update(&[("app.conf", v.as_bytes())]).unwrap());
}

fn start(dir: &TempDir, url: &str, timeout: &str) -> Reloader {
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", url),
        ("RELOAD_WEBHOOK_TIMEOUT", timeout),
    ];
    Reloader::start(bin(), &env, &[])
}

/// Regression: with RELOAD_WEBHOOK_TIMEOUT=1s and an endpoint that takes 1.5 s, every timeout
/// was followed by another POST (5 POSTs in 12 s for one change, and on): the app reloaded
/// again and again. Now one POST per change, and a line saying the outcome is unknown.
#[test]
fn a_slow_reload_endpoint_gets_one_post_per_change_not_one_per_timeout() {
    let dir = TempDir::new("hook-slowpy").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"v1".as_slice())]).unwrap();
    let server = SlowPython::start(1.5, &dir.join("posts"));
    let rel = start(&dir, &server.url("/-/reload"), "1s");

    update(&vol, "v2");
    let unknown = &rel.wait_lines("warn reload request outcome unknown", 1, T)[0];
    assert_eq!(
        field(unknown, "error").as_deref(),
        Some("no answer within 1000 ms"),
        "{unknown}"
    );
    assert!(unknown.contains("RELOAD_WEBHOOK_TIMEOUT"), "{unknown}");
    // A resend would come 0.5 s after the timeout, the next 1 s after the second timeout: 3 s
    // without one covers both.
    sleep(Duration::from_secs(3));
    assert_eq!(server.posts(), 1, "{}", rel.log());
    assert!(
        rel.lines("warn reload request failed").is_empty(),
        "{}",
        rel.log()
    );

    // The next change is a new request of its own.
    update(&vol, "v3");
    rel.wait_lines("warn reload request outcome unknown", 2, T);
    sleep(QUIET);
    assert_eq!(server.posts(), 2, "{}", rel.log());
}

/// Regression: `HTTP/1.1 200 OK\n\n` (bare LF line ends) from a server that keeps the
/// connection open was read until the timeout and counted as a failure, then sent again.
#[test]
fn a_bare_lf_status_line_is_a_success() {
    let dir = TempDir::new("hook-barelf").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"v1".as_slice())]).unwrap();
    let server = Server::start(&[], Answer::BareLf(200));
    let rel = start(&dir, &server.url("/-/reload"), "1s");

    update(&vol, "v2");
    let done = &rel.wait_lines("info reloaded over HTTP", 1, T)[0];
    assert_eq!(field(done, "status").as_deref(), Some("200"), "{done}");
    assert_eq!(field(done, "attempts").as_deref(), Some("1"), "{done}");
    // Past the 1 s timeout and the first retry pause: nothing more.
    sleep(Duration::from_millis(1500) + QUIET);
    assert_eq!(server.requests().len(), 1, "{}", rel.log());
    assert!(rel.lines("warn").is_empty(), "{}", rel.log());
}

/// A status other than 2xx is the app's own refusal: sent again, even when it came slowly.
#[test]
fn a_non_2xx_status_is_still_retried() {
    let dir = TempDir::new("hook-503").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"v1".as_slice())]).unwrap();
    let server = Server::start(&[Answer::Status(503)], Answer::Status(200));
    let rel = start(&dir, &server.url("/-/reload"), "1s");

    update(&vol, "v2");
    let done = &rel.wait_lines("info reloaded over HTTP after retries", 1, T)[0];
    assert_eq!(field(done, "attempts").as_deref(), Some("2"), "{done}");
    wait_until(T, "two requests", || {
        (server.requests().len() == 2).then_some(())
    });
    assert!(rel.lines("warn reload request outcome unknown").is_empty());
}
