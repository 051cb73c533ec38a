//! sigrecord, driven through Recorder with real processes and real signals.

use std::fs;
use std::time::Duration;

use testkit::kubelet::Volume;
use testkit::recorder::{Mode, Options, Recorder};
use testkit::TempDir;

const T: Duration = Duration::from_secs(5);

/// Long enough for a delivered signal to be recorded (they take well under a millisecond), used
/// only to show that nothing is recorded.
const QUIET: Duration = Duration::from_millis(200);

#[test]
fn sighup_is_recorded_with_the_content_read_through_the_kubelet_links() {
    let tmp = TempDir::new("conf").unwrap();
    let vol = Volume::create(tmp.path(), &[("app.conf", b"v1 %\n")]).unwrap();
    let rec = Recorder::spawn(Options {
        read: Some(tmp.join("app.conf")),
        ..Options::default()
    });

    rec.signal(libc::SIGHUP).unwrap();
    let got = rec.wait_received(1, T);
    assert_eq!(got[0].signo, libc::SIGHUP);
    assert_eq!(got[0].pid, rec.pid());
    assert_eq!(got[0].content, Ok(b"v1 %\n".to_vec()));

    let before = testkit::monotonic_ns();
    vol.update(&[("app.conf", b"v2")]).unwrap();
    rec.signal(libc::SIGHUP).unwrap();
    let got = rec.wait_received(2, T);
    assert_eq!(got[1].content, Ok(b"v2".to_vec()));
    assert!(got[1].t_ns > before);
    assert!(rec.is_alive());
}

#[test]
fn unreadable_content_is_recorded_as_errno() {
    let tmp = TempDir::new("conf").unwrap();
    let rec = Recorder::spawn(Options {
        read: Some(tmp.join("missing")),
        ..Options::default()
    });
    rec.signal(libc::SIGHUP).unwrap();
    assert_eq!(rec.wait_received(1, T)[0].content, Err(libc::ENOENT));
}

#[test]
fn process_name_is_the_requested_one() {
    let rec = Recorder::spawn(Options {
        name: Some("a-very-long-app-name".into()),
        ..Options::default()
    });
    let comm = fs::read_to_string(format!("/proc/{}/comm", rec.pid())).unwrap();
    assert_eq!(comm.trim_end(), "a-very-long-app");
}

#[test]
fn blocked_signals_are_read_from_a_signalfd_and_recorded() {
    let rec = Recorder::spawn(Options {
        mode: Mode::Block("HUP,USR1".into()),
        ..Options::default()
    });
    let status = fs::read_to_string(format!("/proc/{}/status", rec.pid())).unwrap();
    let mask = |key: &str| {
        let v = status.lines().find_map(|l| l.strip_prefix(key)).unwrap();
        u64::from_str_radix(v.trim(), 16).unwrap()
    };
    assert_ne!(mask("SigBlk:") & 1, 0, "SIGHUP must be blocked");
    assert_eq!(mask("SigCgt:") & 1, 0, "SIGHUP must not be caught");

    rec.signal(libc::SIGUSR1).unwrap();
    rec.wait_received(1, T);
    rec.signal(libc::SIGHUP).unwrap();
    let got = rec.wait_received(2, T);
    let signos: Vec<i32> = got.iter().map(|r| r.signo).collect();
    assert_eq!(signos, [libc::SIGUSR1, libc::SIGHUP]);
}

#[test]
fn default_mode_dies_on_sighup() {
    let mut rec = Recorder::spawn(Options {
        mode: Mode::Default,
        ..Options::default()
    });
    rec.signal(libc::SIGHUP).unwrap();
    assert_eq!(rec.killed_by(T), Some(libc::SIGHUP));
    assert!(rec.received().is_empty());
}

#[test]
fn ignore_mode_survives_sighup_and_records_nothing() {
    let rec = Recorder::spawn(Options {
        mode: Mode::Ignore("HUP".into()),
        ..Options::default()
    });
    rec.signal(libc::SIGHUP).unwrap();
    std::thread::sleep(QUIET);
    assert!(rec.is_alive());
    assert!(rec.received().is_empty());
}

#[test]
fn children_record_their_own_signals_with_their_own_pid() {
    let mut rec = Recorder::spawn(Options {
        name: Some("worker".into()),
        children: 2,
        ..Options::default()
    });
    let pids = rec.pids().to_vec();
    assert_eq!(pids.len(), 3);
    for &pid in &pids {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim_end(), "worker");
        testkit::kill(pid, libc::SIGHUP).unwrap();
    }
    let got = rec.wait_received(3, T);
    let mut from: Vec<i32> = got.iter().map(|r| r.pid).collect();
    from.sort();
    let mut want = pids.clone();
    want.sort();
    assert_eq!(from, want);

    // SIGTERM ends the parent cleanly after it has ended and reaped its children.
    rec.signal(libc::SIGTERM).unwrap();
    let status = rec.wait_exit(T).expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
    for pid in &pids[1..] {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(gone, "child {pid} was not reaped");
    }
    let exits = rec
        .lines()
        .iter()
        .filter(|l| l.starts_with("exit "))
        .count();
    assert_eq!(exits, 3);
}

#[test]
fn realtime_signals_are_caught_by_name() {
    let rec = Recorder::spawn(Options {
        mode: Mode::Catch("HUP,RTMIN+2".into()),
        ..Options::default()
    });
    let rt = libc::SIGRTMIN() + 2;
    rec.signal(rt).unwrap();
    assert_eq!(rec.wait_received(1, T)[0].signo, rt);
}

#[test]
fn bad_flags_exit_with_code_2() {
    let out = std::process::Command::new(testkit::recorder::sigrecord_bin())
        .args(["--out", "/dev/null", "--catch", "FOO"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"FOO\" is not a signal"));
}

#[test]
fn a_wrapper_can_run_it_as_another_uid() {
    let rec = Recorder::spawn(Options {
        wrapper: vec!["setpriv".into(), "--reuid=65534".into(), "--".into()],
        ..Options::default()
    });
    let status = fs::read_to_string(format!("/proc/{}/status", rec.pid())).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().next(), Some("65534"));
    rec.signal(libc::SIGHUP).unwrap();
    rec.wait_received(1, T);
}

#[test]
fn in_a_pid_namespace_pids_are_mapped_to_the_test_view() {
    let rec = Recorder::spawn(Options {
        wrapper: ["unshare", "--pid", "--fork", "--mount-proc"]
            .map(Into::into)
            .to_vec(),
        children: 1,
        ..Options::default()
    });
    assert_eq!(rec.reported_pids()[0], 1);
    assert_ne!(rec.pid(), 1);
    rec.signal(libc::SIGHUP).unwrap();
    let got = rec.wait_received(1, T);
    assert_eq!(got[0].pid, 1);
}
