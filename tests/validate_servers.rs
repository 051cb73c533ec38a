//! Validate first, confirm after, with the real servers (issue 21): nginx and haproxy from
//! Debian on loopback, each run by the reloader (`-- APP`, with the server's own config check
//! as `RELOAD_VALIDATE_COMMAND`) or beside it (the sidecar form, `RELOAD_CONFIRM=workers`, no
//! validation). A broken config is never signalled when a validator is set, and reads as a
//! failed reload when only the workers can tell.

mod servers;
mod support;

use std::time::Duration;

use servers::{children, Guard, Server};
use support::{bin, QUIET, T};
use testkit::reloader::{command, path_str, Reloader};

/// `config-reloader --validate-command CHECK -- SERVER`, watching the server's config dir.
fn run_validated(s: &Server, signal: &str) -> Reloader {
    let check = s.check();
    let mut args = vec!["--validate-command", check.as_str(), "--"];
    let argv = s.argv();
    args.extend(argv.iter().map(String::as_str));
    let env = [("CONFIG_DIR", path_str(&s.conf)), ("RELOAD_SIGNAL", signal)];
    let rel = Reloader::start_command(command(bin(), &env, &args));
    s.await_body("v1");
    rel
}

/// The one child of the reloader: the server's master.
fn master(rel: &Reloader) -> i32 {
    let kids = children(rel.pid());
    assert_eq!(kids.len(), 1, "one app: {kids:?}\n{}", rel.log());
    kids[0]
}

/// A good edit is served; a broken one is never signalled (the same workers, the old body),
/// the log quotes the server's own error; the fix is served.
fn broken_config_is_never_signalled(s: &Server, signal: &str, quoted: &str) {
    let _guard = Guard(s.name.clone());
    let mut rel = run_validated(s, signal);
    s.write("v2", true);
    s.await_body("v2");
    rel.wait_lines("info reloaded", 1, T);
    let workers = testkit::wait_until(T, "the old workers to go", || {
        let kids = children(master(&rel));
        (kids.len() == 1).then_some(kids)
    });

    s.write("v3", false);
    let failed = rel.wait_lines("error validation failed", 1, T);
    assert!(failed[0].contains(quoted), "{}", failed[0]);
    assert!(failed[0].contains("status=\"exit 1\""), "{}", failed[0]);
    std::thread::sleep(QUIET);
    assert_eq!(rel.lines("info reloaded").len(), 1, "{}", rel.log());
    assert_eq!(children(master(&rel)), workers, "the same workers");
    assert_eq!(s.get().as_deref(), Some("v2"));

    s.write("v4", true);
    s.await_body("v4");
    assert_eq!(rel.lines("info reloaded").len(), 2, "{}", rel.log());
    assert_eq!(rel.lines("error").len(), 1, "{}", rel.log());
    // nginx exits 0 on SIGTERM, haproxy 143: either way the reloader passes it on and ends.
    let code = testkit::reloader::code(rel.terminate());
    assert!(
        code == 0 || code == 128 + libc::SIGTERM,
        "{code}\n{}",
        rel.log()
    );
}

#[test]
fn nginx_with_its_own_check_is_never_signalled_a_missing_semicolon() {
    let s = Server::nginx();
    broken_config_is_never_signalled(&s, "SIGHUP", "[emerg]");
}

#[test]
fn haproxy_with_its_own_check_is_never_signalled_a_typo() {
    let s = Server::haproxy();
    broken_config_is_never_signalled(&s, "SIGUSR2", "http-reqest");
}

/// The sidecar form, no validation, `RELOAD_CONFIRM=workers`: the server rejects the broken
/// config and keeps its workers, which reads as a failed reload; the fix reads as a success.
fn kept_workers_read_as_a_failed_reload(s: &Server, signal: &str) {
    let _guard = Guard(s.name.clone());
    let mut server = s.spawn();
    let env = [
        ("CONFIG_DIR", path_str(&s.conf)),
        ("PROCESS_NAME", s.name.as_str()),
        ("RELOAD_SIGNAL", signal),
        ("RELOAD_CONFIRM", "workers"),
        ("RELOAD_CONFIRM_TIMEOUT", "3s"),
        ("VERBOSE", "1"),
    ];
    let rel = Reloader::start(bin(), &env, &[]);
    s.write("v2", false);
    let kept = rel.wait_lines("error ", 1, Duration::from_secs(15));
    assert!(
        kept[0].contains("kept its workers: the config was probably rejected"),
        "{}",
        kept[0]
    );
    assert!(
        kept[0].contains(&format!("pid={}", server.id())),
        "{}",
        kept[0]
    );
    assert_eq!(s.get().as_deref(), Some("v1"));

    s.write("v3", true);
    s.await_body("v3");
    rel.wait_lines("debug reload confirmed", 1, T);
    assert_eq!(rel.lines("error ").len(), 1, "{}", rel.log());
    drop(rel);
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn nginx_that_rejects_a_config_and_keeps_its_workers_is_a_failed_reload() {
    kept_workers_read_as_a_failed_reload(&Server::nginx(), "SIGHUP");
}

#[test]
fn haproxy_that_rejects_a_config_and_keeps_its_worker_is_a_failed_reload() {
    kept_workers_read_as_a_failed_reload(&Server::haproxy(), "SIGUSR2");
}
