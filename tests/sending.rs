//! Finding the target by name and sending to it, when names, the sidecar's own signals or the
//! kernel's answers are not the usual ones (issue 9, items 6 and 8). Each fault is provoked for
//! real: a name whose `comm` is not UTF-8, stray signals sent to the running sidecar, a seccomp
//! filter that refuses `pidfd_open`, and a target reaped while the sidecar holds its pidfd.

mod support;

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;

use support::{bin, env, spawn_app, tracee, under_strace, QUIET, T};
use testkit::apps::debian;
use testkit::recorder::{contents, Recorder};
use testkit::reloader::workspace_bin;
use testkit::reloader::{code, command, expect_sent, field, path_str, Reloader};
use testkit::{unique_name, wait_until, TempDir};

/// A dir holding `app.conf` = "v1", and an app named `name` that catches SIGHUP and re-reads it.
fn app_and_dir(name: &str) -> (TempDir, Recorder) {
    let dir = TempDir::new("sending").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let app = spawn_app(name, &dir.join("app.conf"));
    (dir, app)
}

#[test]
fn a_name_whose_15_byte_comm_cuts_a_utf8_character_in_two_is_signalled() {
    let prefix = unique_name("utf8cut");
    assert_eq!(prefix.len(), 14);
    // 16 bytes: the kernel keeps 15 in comm, the 14 ASCII ones and the first byte of 'é'.
    let name = format!("{prefix}é");
    let (dir, app) = app_and_dir(&name);
    let comm = fs::read(format!("/proc/{}/comm", app.pid())).unwrap();
    let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
    assert_eq!(comm.len(), 15, "{comm:?}");
    assert!(std::str::from_utf8(comm).is_err(), "comm is not UTF-8");

    // Environment variables are bytes; so is the name the user gives.
    let mut cmd = command(bin(), &[("CONFIG_DIR", path_str(dir.path()))], &[]);
    cmd.env(
        "PROCESS_NAME",
        OsString::from_vec(name.clone().into_bytes()),
    );
    let rel = Reloader::start_command(cmd);
    fs::write(dir.join("app.conf"), "v2").unwrap();
    let got = expect_sent(&app, &rel, 1, T, QUIET);
    assert_eq!(contents(&got), ["v2"], "{}", rel.log());
}

#[test]
fn stray_sighup_sigusr1_sigusr2_sigpipe_and_sigalrm_sent_to_the_reloader_are_ignored() {
    let name = unique_name("strays");
    let (dir, app) = app_and_dir(&name);
    let mut rel = Reloader::start(bin(), &env(dir.path(), &name, &[]), &[]);
    // Twice: a disposition that resets after the first delivery would show in the second round.
    for round in 1..=2 {
        for sig in [
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGPIPE,
            libc::SIGALRM,
        ] {
            rel.signal(sig);
        }
        let v = format!("v{}", round + 1);
        fs::write(dir.join("app.conf"), &v).unwrap();
        let what = format!("reload {round} after stray signals");
        let survived = wait_until(T, &what, || {
            if !rel.is_running() {
                return Some(false);
            }
            (app.received().len() >= round).then_some(true)
        });
        if !survived {
            let status = code(rel.wait_exit(T));
            panic!("the reloader died (exit {status}); log:\n{}", rel.log());
        }
        let got = app.expect_exactly(round, T, QUIET);
        assert_eq!(contents(&got).last(), Some(&v));
    }
    assert!(rel.is_running(), "{}", rel.log());
}

#[test]
fn pidfd_open_refused_by_seccomp_falls_back_to_kill_and_the_app_reloads() {
    let nopidfd = workspace_bin("nopidfd");
    let python3 = debian("/usr/bin/python3", "python3");
    for errno in ["EPERM", "ENOSYS"] {
        // The wrapper really refuses pidfd_open, with this errno.
        let probe = "import errno, os\ntry:\n os.pidfd_open(os.getpid())\nexcept OSError as e:\n print(errno.errorcode[e.errno])";
        let out = Command::new(&nopidfd)
            .args(["--errno", errno, "--"])
            .arg(&python3)
            .args(["-c", probe])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            errno,
            "{out:?}"
        );

        let name = unique_name("nopidfd");
        let (dir, app) = app_and_dir(&name);
        let args = ["--errno", errno, "--", path_str(bin())];
        let rel = Reloader::start_command(command(&nopidfd, &env(dir.path(), &name, &[]), &args));
        fs::write(dir.join("app.conf"), "v2").unwrap();
        let got = expect_sent(&app, &rel, 1, T, QUIET);
        assert_eq!(contents(&got), ["v2"], "{errno}");
        let reloaded = format!("info reloaded pid={} ", app.pid());
        assert!(rel.log().contains(&reloaded), "{errno}: {}", rel.log());
    }
}

/// How many pidfds `pid` holds open.
fn pidfds(pid: i32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == "anon_inode:[pidfd]")
        .count()
}

#[test]
fn a_target_reaped_after_pidfd_open_is_logged_as_esrch_not_other() {
    let name = unique_name("esrchafter");
    let (dir, mut app) = app_and_dir(&name);
    // strace holds every pidfd_open of the reloader for 1.5 s after the call returned: the
    // pidfd exists, and the target is killed and reaped in that window, before the send.
    let filters = [
        "-e",
        "trace=pidfd_open",
        "-e",
        "inject=pidfd_open:delay_exit=1500000",
    ];
    let rel = Reloader::start_command(under_strace(&filters, &env(dir.path(), &name, &[])));
    let tracee = tracee(&rel);
    let before = pidfds(tracee.0);

    fs::write(dir.join("app.conf"), "v2").unwrap();
    wait_until(T, "the reloader to hold a pidfd for the app", || {
        (pidfds(tracee.0) > before).then_some(())
    });
    app.signal(libc::SIGKILL).unwrap();
    app.wait_exit(T).expect("the app exits and is reaped");

    let line = &rel.wait_lines("error signal failed", 1, T)[0];
    assert_eq!(field(line, "error").as_deref(), Some("ESRCH"), "{line}");
    assert!(line.contains(&format!("pid={} ", app.pid())), "{line}");
    assert!(
        app.received().is_empty(),
        "the delay was too short: the app got the signal"
    );
}
