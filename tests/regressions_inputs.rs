//! Regression tests for bad input and tight set-ups (issue 18, items 9 and 10): a poll interval
//! that would busy-loop or silently mean "off", an open-file limit too low to work with, and a
//! reload URL whose password reached an error line. Each is named for the bug and fails on the
//! binary that had it.

mod support;

use std::fs;
use std::process::{Command, Stdio};

use support::{bin, under_nofile_limit, T};
use testkit::reloader::{code, command, path_str};
use testkit::{wait_until, TempDir};

/// Runs `cmd` to its exit, at most [`T`]: the bugs here were a reloader that started and ran
/// on (killed then, and the test fails). Returns (exit code, stderr).
fn exit_of(mut cmd: Command) -> (i32, String) {
    let dir = TempDir::new("inputs").unwrap();
    let log = dir.join("stderr");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn");
    // Killed and reaped however the wait ends, a timeout's panic included.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(child);
    let status = wait_until(T, "the reloader to exit", || match child.0.try_wait() {
        Ok(Some(s)) => Some(Ok(s)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    });
    let err = fs::read_to_string(&log).unwrap_or_default();
    match status {
        Ok(s) => (code(s), err),
        Err(e) => panic!("wait for the reloader: {e}"),
    }
}

/// The stderr and exit code of the reloader on a fresh directory, run under `prlimit`.
fn under_limit(limit: u32) -> (i32, String) {
    let dir = TempDir::new("nofile").unwrap();
    let env = [("CONFIG_DIR", path_str(dir.path())), ("PROCESS_NAME", "x")];
    let out = under_nofile_limit(limit, &env)
        .stdin(Stdio::null())
        .output()
        .expect("run prlimit");
    (
        code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Was: `ulimit -n 4` failed with "too many instances for this user (EMFILE); raise
/// fs.inotify.max_user_instances": the descriptor limit, not the inotify one, was the cause.
#[test]
fn nofile_limit_of_4_is_named_as_rlimit_nofile_not_the_inotify_instance_limit() {
    let (status, err) = under_limit(4);
    assert_eq!(status, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("RLIMIT_NOFILE") && err.contains("ulimit -n"),
        "{err}"
    );
    assert!(!err.contains("max_user_instances"), "{err}");
}

/// Was: `ulimit -n 5` started "fine": `warn no other process is visible in /proc` (it had no
/// descriptor left to list /proc with), then `cannot list /proc` at every change. Under 7, the
/// scan skipped the processes it could not open: a false `no process named`.
#[test]
fn nofile_limit_of_5_is_refused_at_start_not_a_false_no_other_process_is_visible() {
    for limit in [5, 7] {
        let (status, err) = under_limit(limit);
        assert_eq!(status, 1, "ulimit -n {limit}: {err}");
        assert!(err.contains("RLIMIT_NOFILE"), "ulimit -n {limit}: {err}");
        assert!(!err.contains("visible"), "ulimit -n {limit}: {err}");
    }
}

/// Was: `RELOAD_POLL_INTERVAL=0.001ms` polled every microsecond (a busy loop), and
/// `0.0000001s` rounded to 0 µs, which means "never poll", without a word.
#[test]
fn poll_interval_below_10ms_is_refused_neither_a_busy_loop_nor_silently_off() {
    let dir = TempDir::new("poll-floor").unwrap();
    for value in ["0.001ms", "0.0000001s", "9ms", "0.0099s"] {
        let env = [
            ("CONFIG_DIR", path_str(dir.path())),
            ("PROCESS_NAME", "x"),
            ("RELOAD_POLL_INTERVAL", value),
        ];
        let (status, err) = exit_of(command(bin(), &env, &[]));
        assert_eq!(status, 2, "{value}: {err}");
        assert_eq!(err.lines().count(), 1, "{value}: {err}");
        for part in ["RELOAD_POLL_INTERVAL", value, "10ms"] {
            assert!(err.contains(part), "{value}: {part:?} missing in {err}");
        }
    }
    // The floor itself is accepted (checked by --check, which exits at once).
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", "http://127.0.0.1:9/"),
        ("RELOAD_POLL_INTERVAL", "10ms"),
    ];
    let (status, err) = exit_of(command(bin(), &env, &["--check"]));
    assert_ne!(status, 2, "{err}");
}
