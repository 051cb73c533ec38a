//! Validate first, confirm after (issue 21), around an app that records its signals: a
//! validation command that hangs is killed with everything it started at its timeout and the
//! next change validates again; a stop during validation ends it and exits at once; an app
//! that exits in its reload handler is reported by `RELOAD_CONFIRM=alive`, as a sidecar and
//! as our child.

mod poll_common;
mod servers;
mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use servers::{await_ready, dies_on_hup, named, Guard};
use support::{bin, spawn_app, start, write, QUIET, T};
use testkit::apps::{debian, link_as};
use testkit::reloader::{command, path_str, Reloader};
use testkit::{unique_name, wait_until, TempDir};

/// A validator that hangs, with a child, while `conf` says `hang`, and passes otherwise; its
/// processes are named `sleeper`.
fn hanging_validator(tmp: &TempDir, conf: &Path, sleeper: &str) -> String {
    let sleep = link_as(tmp.path(), sleeper, &debian("/usr/bin/sleep", "coreutils"));
    let s = sleep.display();
    format!(
        "sh -c 'if grep -q hang {}; then {s} 1000 & {s} 1000; fi'",
        conf.display()
    )
}

#[test]
fn a_hanging_validator_is_killed_at_its_timeout_with_its_children_and_the_next_change_validates_again(
) {
    let tmp = TempDir::new("validate-hang").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let name = unique_name("hangapp");
    let sleeper = unique_name("hangchk");
    let _guard = Guard(sleeper.clone());
    let app = spawn_app(&name, &conf);
    let check = hanging_validator(&tmp, &conf, &sleeper);
    let extra = [
        ("RELOAD_VALIDATE_COMMAND", check.as_str()),
        ("RELOAD_VALIDATE_TIMEOUT", "700ms"),
    ];
    let rel = start(&dir, &name, &extra);

    write(&conf, "hang");
    wait_until(T, "the validator and its child to run", || {
        (named(&sleeper).len() == 2).then_some(())
    });
    let started = Instant::now();
    let line = rel.wait_lines("error validation timed out", 1, T);
    assert!(line[0].contains("timeout=0.7s"), "{}", line[0]);
    wait_until(T, "no process of the validator left", || {
        named(&sleeper).is_empty().then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(QUIET);
    assert!(app.received().is_empty(), "{}", rel.log());

    write(&conf, "v2");
    let got = app.wait_received(1, T);
    assert_eq!(testkit::recorder::contents(&got), ["v2"], "{}", rel.log());
    assert_eq!(rel.lines("error").len(), 1, "{}", rel.log());
}

#[test]
fn sigterm_during_validation_kills_it_and_exits_at_once_sending_nothing() {
    let tmp = TempDir::new("validate-stop").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let name = unique_name("stopapp");
    let sleeper = unique_name("stopchk");
    let _guard = Guard(sleeper.clone());
    let app = spawn_app(&name, &conf);
    let check = hanging_validator(&tmp, &conf, &sleeper);
    let extra = [
        ("RELOAD_VALIDATE_COMMAND", check.as_str()),
        ("VERBOSE", "1"),
    ];
    let mut rel = start(&dir, &name, &extra);

    write(&conf, "hang");
    rel.wait_lines("debug validating", 1, T);
    wait_until(T, "the validator to run", || {
        (named(&sleeper).len() == 2).then_some(())
    });
    let stopped = Instant::now();
    rel.signal(libc::SIGTERM);
    let status = rel.wait_exit(T);
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    assert!(status.success(), "{status:?}\n{}", rel.log());
    let exiting = rel.lines("info exiting");
    assert!(
        exiting[0].contains("pending_reload=dropped"),
        "{}",
        exiting[0]
    );
    wait_until(T, "no process of the validator left", || {
        named(&sleeper).is_empty().then_some(())
    });
    assert!(app.received().is_empty());
}

#[test]
fn an_app_that_exits_in_its_reload_handler_is_reported_by_alive_as_a_sidecar() {
    let tmp = TempDir::new("confirm-dies").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    write(&dir.join("app.conf"), "v1");
    let name = unique_name("diesapp");
    let _guard = Guard(name.clone());
    let argv = dies_on_hup(&tmp, &name);
    let mut app = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    await_ready(&tmp);
    let rel = start(&dir, &name, &[]);
    write(&dir.join("app.conf"), "v2");
    rel.wait_lines("info reloaded", 1, T);
    let died = rel.wait_lines("error ", 1, T);
    assert!(
        died[0].contains(&format!("{name} died after the reload signal")),
        "{}",
        died[0]
    );
    assert!(
        died[0].contains(&format!("pid={}", app.id())),
        "{}",
        died[0]
    );
    let _ = app.wait();
}

#[test]
fn an_app_that_exits_in_its_reload_handler_is_reported_by_alive_as_our_child() {
    let tmp = TempDir::new("confirm-child").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    write(&dir.join("app.conf"), "v1");
    let name = unique_name("diechld");
    let _guard = Guard(name.clone());
    let mut args = vec!["--"];
    let argv = dies_on_hup(&tmp, &name);
    args.extend(argv.iter().map(String::as_str));
    let env = [("CONFIG_DIR", path_str(&dir))];
    let mut rel = Reloader::start_command(command(bin(), &env, &args));
    await_ready(&tmp);
    write(&dir.join("app.conf"), "v2");
    let status = rel.wait_exit(T);
    assert_eq!(status.code(), Some(0), "{}", rel.log());
    let log = rel.log();
    let died = log.find("died after the reload signal").expect(&log);
    let exited = log.find("info app exited").expect(&log);
    assert!(died < exited, "{log}");
}

#[test]
fn a_validation_command_that_is_not_found_is_a_one_line_error_at_start_up() {
    let tmp = TempDir::new("validate-missing").unwrap();
    let env = [
        ("CONFIG_DIR", path_str(tmp.path())),
        ("PROCESS_NAME", "x"),
        ("RELOAD_VALIDATE_COMMAND", "no-such-check -t"),
    ];
    let out = command(bin(), &env, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("RELOAD_VALIDATE_COMMAND") && err.contains("no-such-check"),
        "{err}"
    );
}

/// A confirmation still pending never holds the next change, a newer reload replaces it (one
/// line, for the latest), and once it concluded the loop sleeps with no timer at all.
#[test]
fn a_pending_confirmation_never_delays_the_next_change_and_wakes_nothing_once_concluded() {
    let tmp = TempDir::new("confirm-pending").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let name = unique_name("pendapp");
    // sigrecord forks no workers: `workers` waits its whole timeout, then reports them kept.
    let app = spawn_app(&name, &conf);
    let extra = [
        ("RELOAD_CONFIRM", "workers"),
        ("RELOAD_CONFIRM_TIMEOUT", "2s"),
    ];
    let rel = start(&dir, &name, &extra);
    write(&conf, "v2");
    app.wait_received(1, T);
    let written = testkit::monotonic_ns();
    write(&conf, "v3");
    let got = app.wait_received(2, T);
    let after_ms = (got[1].t_ns - written) / 1_000_000;
    assert!(after_ms < 1000, "the second change took {after_ms} ms");
    assert_eq!(testkit::recorder::contents(&got), ["v2", "v3"]);

    rel.wait_lines("error reload failed:", 1, T);
    std::thread::sleep(QUIET);
    let kept = rel.lines("error reload failed:");
    assert_eq!(kept.len(), 1, "{}", rel.log());
    assert!(kept[0].contains("kept its workers"), "{}", kept[0]);

    poll_common::await_idle(rel.pid());
    let before = poll_common::switches(rel.pid());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        poll_common::switches(rel.pid()),
        before,
        "woke up with nothing pending"
    );
}

/// The validator's stdin is `/dev/null` and its output a socket we read, never the app's (or
/// our) terminal or pipes; its environment is ours, which with `-- APP` is the app's. A
/// failure's line carries its exit status and what it printed.
#[test]
fn the_validator_gets_the_environment_but_not_the_stdin_or_stdout_of_the_app() {
    let tmp = TempDir::new("validate-fds").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let name = unique_name("fdsapp");
    let app = spawn_app(&name, &conf);
    let check = "sh -c 'readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; echo \"mark=$MARK\"; exit 3'";
    let extra = [("RELOAD_VALIDATE_COMMAND", check), ("MARK", "from-env")];
    let rel = start(&dir, &name, &extra);
    write(&conf, "v2");
    let line = rel.wait_lines("error validation failed", 1, T);
    let output = testkit::reloader::field(&line[0], "output").expect(&line[0]);
    let shown: Vec<&str> = output.split(" | ").collect();
    assert_eq!(shown[0], "/dev/null", "{}", line[0]);
    assert!(shown[1].starts_with("socket:["), "{}", line[0]);
    assert_eq!(shown[1], shown[2], "one socket for stdout and stderr");
    assert_eq!(shown[3], "mark=from-env");
    assert!(line[0].contains("status=\"exit 3\""), "{}", line[0]);
    std::thread::sleep(QUIET);
    assert!(app.received().is_empty());
}

/// A validator that prints megabytes is read as it writes (it never blocks on a full socket
/// and times out), and its line keeps only the first lines of it.
#[test]
fn a_chatty_validator_is_read_as_it_writes_and_its_line_stays_short() {
    let tmp = TempDir::new("validate-chatty").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let name = unique_name("chatapp");
    let app = spawn_app(&name, &conf);
    let check = "sh -c 'yes \"an error line of the validator\" | head -c 4000000; exit 1'";
    let extra = [
        ("RELOAD_VALIDATE_COMMAND", check),
        ("RELOAD_VALIDATE_TIMEOUT", "20s"),
    ];
    let rel = start(&dir, &name, &extra);
    write(&conf, "v2");
    let line = rel.wait_lines("error validation failed", 1, T);
    assert!(line[0].len() < 1024, "{} bytes: {}", line[0].len(), line[0]);
    assert!(
        line[0].contains("an error line of the validator | an error"),
        "{}",
        line[0]
    );
    assert!(rel.lines("error validation timed out").is_empty());
    std::thread::sleep(QUIET);
    assert!(app.received().is_empty());
}

/// A validator that writes without end (`yes`) still times out and a stop is still acted on:
/// each wake-up reads a bounded amount of its output, then the loop goes on.
#[test]
fn a_validator_that_floods_its_output_still_times_out_and_stops() {
    let tmp = TempDir::new("validate-flood").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let name = unique_name("floodapp");
    let flood = unique_name("flood");
    let _guard = Guard(flood.clone());
    let yes = link_as(tmp.path(), &flood, &debian("/usr/bin/yes", "coreutils"));
    let app = spawn_app(&name, &conf);
    let check = format!("{} flood", yes.display());
    let extra = [
        ("RELOAD_VALIDATE_COMMAND", check.as_str()),
        ("RELOAD_VALIDATE_TIMEOUT", "500ms"),
    ];
    let mut rel = start(&dir, &name, &extra);
    write(&conf, "v2");
    rel.wait_lines("error validation timed out", 1, T);
    write(&conf, "v3");
    wait_until(T, "the second validation", || {
        (named(&flood).len() == 1).then_some(())
    });
    let stopped = Instant::now();
    rel.signal(libc::SIGTERM);
    assert!(rel.wait_exit(T).success(), "{}", rel.log());
    assert!(stopped.elapsed() < Duration::from_secs(2));
    wait_until(T, "no validator left", || {
        named(&flood).is_empty().then_some(())
    });
    assert!(app.received().is_empty());
}

/// Kills and reaps a child on drop, before the guards of what it may restart.
struct Supervisor(std::process::Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An app that a supervisor restarts after it exits on the signal runs under a new pid:
/// restarted, not reloaded, and `alive` says so, naming the new pid.
#[test]
fn an_app_restarted_by_its_supervisor_after_the_signal_is_reported_as_replaced() {
    let tmp = TempDir::new("confirm-replaced").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    write(&dir.join("app.conf"), "v1");
    let name = unique_name("restart");
    let _guard = Guard(name.clone());
    let argv = dies_on_hup(&tmp, &name);
    let supervisor = Command::new("sh")
        .args(["-c", "while true; do \"$@\"; done", "sh"])
        .args(&argv)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _supervisor = Supervisor(supervisor);
    await_ready(&tmp);
    let first = wait_until(T, "the app", || named(&name).first().copied());
    let rel = start(&dir, &name, &[]);
    write(&dir.join("app.conf"), "v2");
    let line = rel.wait_lines("error reload failed:", 1, T);
    assert!(
        line[0].contains("was replaced after the reload signal"),
        "{}",
        line[0]
    );
    assert!(line[0].contains(&format!("pid={first}")), "{}", line[0]);
    let new = testkit::reloader::field(&line[0], "new_pid").expect(&line[0]);
    assert_ne!(new, first.to_string());
}

/// Regression: with `-- APP`, an app that exits while a validation runs ended the reloader
/// and left the validator, in a group of its own, running on its own.
#[test]
fn an_app_that_exits_during_validation_leaves_no_validator_behind() {
    let tmp = TempDir::new("validate-app-exits").unwrap();
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let (app, sleeper) = (unique_name("exitapp"), unique_name("exitchk"));
    let _guards = (Guard(app.clone()), Guard(sleeper.clone()));
    let sleep = link_as(tmp.path(), &app, &debian("/usr/bin/sleep", "coreutils"));
    let check = hanging_validator(&tmp, &conf, &sleeper);
    let env = [
        ("CONFIG_DIR", path_str(&dir)),
        ("RELOAD_VALIDATE_COMMAND", check.as_str()),
    ];
    let mut rel = Reloader::start_command(command(bin(), &env, &["--", path_str(&sleep), "1000"]));
    write(&conf, "hang");
    wait_until(T, "the validator and its child to run", || {
        (named(&sleeper).len() == 2).then_some(())
    });
    let pid = wait_until(T, "the app", || named(&app).first().copied());
    testkit::kill(pid, libc::SIGKILL).unwrap();
    assert_eq!(rel.wait_exit(T).code(), Some(128 + libc::SIGKILL));
    wait_until(T, "no process of the validator left", || {
        named(&sleeper).is_empty().then_some(())
    });
}
