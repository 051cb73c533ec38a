//! The app as the reloader's child (`config-reloader [FLAGS] -- APP [ARGS...]`, issue 15): the
//! real binary runs real programs (sigrecord, Debian's sh, sleep and tini) and each test
//! checks what an operator would: the exit code, what the app received and re-read, which
//! process was signalled, the one line a bad command gets.
//!
//! The PID 1 duties (reaping orphans) are in `tests/entrypoint_pid1.rs`.

mod entry;
mod support;

use std::fs;
use std::process::Command;
use std::time::Instant;

use entry::{await_ready, child_pid, exit_code, fds, sigrecord, start, status};
use support::{kv, QUIET, T};
use testkit::apps::debian;
use testkit::kubelet::Volume;
use testkit::recorder::{contents, received_in};
use testkit::reloader::{field, path_str, refused_after, run_to_exit};
use testkit::{kill, unique_name, wait_until, TempDir};

/// A config dir with `app.conf` = `v1`, written as the kubelet writes a ConfigMap volume.
fn volume(tmp: &TempDir) -> Volume {
    let dir = tmp.join("config");
    fs::create_dir(&dir).unwrap();
    Volume::create(&dir, &kv(&[("app.conf", "v1")])).unwrap()
}

#[test]
fn an_app_that_exits_3_makes_the_reloader_exit_3() {
    let tmp = TempDir::new("entry-exit3").unwrap();
    let app = ["sh".to_string(), "-c".into(), "exit 3".into()];
    let mut rel = start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
    let pid = child_pid(&rel);
    assert_eq!(exit_code(&mut rel), 3, "{}", rel.log());
    let exited = rel.lines("info app exited");
    assert_eq!(exited.len(), 1, "{}", rel.log());
    assert_eq!(field(&exited[0], "pid"), Some(pid.to_string()));
    assert_eq!(field(&exited[0], "exit_code").as_deref(), Some("3"));
}

#[test]
fn an_app_killed_by_a_signal_makes_the_reloader_exit_128_plus_its_number() {
    let tmp = TempDir::new("entry-killed").unwrap();
    let app = ["sh".to_string(), "-c".into(), "kill -KILL $$".into()];
    let mut rel = start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
    assert_eq!(exit_code(&mut rel), 128 + libc::SIGKILL, "{}", rel.log());
    assert_eq!(rel.lines("info app exited pid=").len(), 1, "{}", rel.log());
}

/// Regression: std hands a child our signal mask, which blocks nearly everything, so an app
/// that never sets its own (sleep, a shell script, most interpreters) was deaf to the SIGTERM
/// we forward and `docker stop` waited for its SIGKILL. The app must start as under a shell: no
/// signal blocked, only what our own parent ignored ignored (not SIGPIPE, which std ignores in
/// us), none of our fds. Then TERM and INT, which it does not handle, end it, and the reloader
/// exits 128+N.
#[test]
fn an_app_that_leaves_its_signal_mask_alone_is_not_deaf_to_sigterm() {
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let tmp = TempDir::new("entry-clean").unwrap();
        let sleep = debian("/usr/bin/sleep", "coreutils");
        let app = [path_str(&sleep).to_string(), "1000".into()];
        let mut rel = start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
        let pid = child_pid(&rel);
        assert_eq!(
            entry::comm(pid).as_deref(),
            Some("sleep"),
            "spawned, then ready"
        );
        assert_eq!(status(pid, "SigBlk").as_deref(), Some("0000000000000000"));
        // Ignored is inherited through exec: what the reloader ignores but SIGPIPE came from
        // its parent (glibc's posix_spawn sets its internal signals 32 and 33 to SIG_IGN).
        let ignored = |pid| u64::from_str_radix(&status(pid, "SigIgn").unwrap(), 16).unwrap();
        let pipe = 1u64 << (libc::SIGPIPE - 1);
        assert_eq!(
            ignored(pid),
            ignored(rel.pid()) & !pipe,
            "SigIgn of the app"
        );
        // Only what the reloader got from its parent: stdio (and here cargo's pipes), never its
        // inotify fd or its signalfd.
        let (app_fds, ours) = (fds(pid), fds(rel.pid()));
        assert!(
            ours.iter().any(|(_, to)| to.contains("inotify")),
            "{ours:?}"
        );
        assert!(
            app_fds
                .iter()
                .all(|fd| ours.contains(fd) && !fd.1.starts_with("anon_inode:")),
            "the app holds an fd of ours: {app_fds:?}"
        );

        rel.signal(sig);
        assert_eq!(exit_code(&mut rel), code, "{}", rel.log());
        let forwarded = rel.lines("info forwarding signal to the app");
        assert_eq!(forwarded.len(), 1, "{}", rel.log());
        assert_eq!(field(&forwarded[0], "pid"), Some(pid.to_string()));
    }
}

/// What tini and catatonit forward: each reaches the app, one at a time and in order; TERM
/// then ends it, and the reloader exits with its code (0: sigrecord exits cleanly on TERM).
#[test]
fn every_signal_a_runtime_sends_is_forwarded_to_the_app_and_term_ends_both() {
    let tmp = TempDir::new("entry-forward").unwrap();
    let name = unique_name("fwd");
    let sent = [
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGHUP,
        libc::SIGWINCH,
        libc::SIGCONT,
        libc::SIGINT,
        libc::SIGTERM,
    ];
    let catch = "QUIT,USR1,USR2,HUP,WINCH,CONT,INT,TERM";
    let (app, out) = sigrecord(tmp.path(), &name, &["--catch", catch]);
    let mut rel = start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
    let pid = child_pid(&rel);
    assert_eq!(await_ready(&out), pid, "the ready line's child= is the app");
    for (i, &sig) in sent.iter().enumerate() {
        rel.signal(sig);
        wait_until(T, &format!("signal {sig} to reach the app"), || {
            (received_in(&out).len() > i).then_some(())
        });
    }
    let got: Vec<i32> = received_in(&out).iter().map(|r| r.signo).collect();
    assert_eq!(got, sent, "what the app recorded");
    assert_eq!(exit_code(&mut rel), 0, "{}", rel.log());
    assert_eq!(
        rel.lines("info forwarding signal to the app").len(),
        sent.len(),
        "{}",
        rel.log()
    );
    assert_eq!(
        rel.lines("info reloaded").len(),
        0,
        "a forwarded HUP is no reload"
    );
}

#[test]
fn a_kubelet_update_reloads_the_app_which_reads_the_new_content() {
    let tmp = TempDir::new("entry-reload").unwrap();
    let vol = volume(&tmp);
    let conf = vol.root().join("app.conf");
    let name = unique_name("kubeapp");
    let (app, out) = sigrecord(tmp.path(), &name, &["--read", path_str(&conf)]);
    let rel = start(&[("CONFIG_DIR", path_str(vol.root()))], &app);
    let pid = child_pid(&rel);
    await_ready(&out);

    for (n, value) in [(1, "v2"), (2, "v3")] {
        let commit = vol
            .update_with(&kv(&[("app.conf", value)]), &Default::default())
            .unwrap()
            .expect("changed");
        wait_until(T, "the reload", || {
            (received_in(&out).len() >= n).then_some(())
        });
        std::thread::sleep(QUIET);
        let got = received_in(&out);
        assert_eq!(got.len(), n, "one signal per update: {:?}", contents(&got));
        assert_eq!(contents(&got)[n - 1], value);
        assert_eq!(got[n - 1].signo, libc::SIGHUP);
        let ms = (got[n - 1].t_ns - commit.commit_ns) as f64 / 1e6;
        eprintln!("entrypoint reload latency: {ms:.1} ms from the commit to the app's handler");
    }
    let reloaded = rel.lines("info reloaded");
    assert_eq!(reloaded.len(), 2, "{}", rel.log());
    assert_eq!(field(&reloaded[0], "pid"), Some(pid.to_string()));
    assert_eq!(field(&reloaded[0], "name").as_deref(), Some("(child)"));
}

/// For apps whose main process forks: PROCESS_NAME picks within the app's tree, so a process of
/// the same name elsewhere (another pod's, on a host PID namespace) is never signalled. The app
/// is Debian's tini, whose child carries the name.
#[test]
fn process_name_picks_a_process_in_the_apps_tree_and_never_one_outside_it() {
    let tmp = TempDir::new("entry-tree").unwrap();
    let vol = volume(&tmp);
    let conf = path_str(&vol.root().join("app.conf")).to_string();
    let name = unique_name("treeapp");
    // Started first, so a scan of /proc meets it before the one inside the tree.
    let outside_dir = TempDir::new("entry-tree-outside").unwrap();
    let outside = testkit::recorder::Recorder::spawn(testkit::recorder::Options {
        name: Some(name.clone()),
        read: Some(conf.clone().into()),
        out: Some(outside_dir.join("out")),
        ..Default::default()
    });
    let (inner, out) = sigrecord(tmp.path(), &name, &["--read", &conf]);
    let tini = debian("/usr/bin/tini", "tini");
    let mut app = vec![path_str(&tini).to_string(), "-s".into(), "--".into()];
    app.extend(inner);
    let env = [
        ("CONFIG_DIR", path_str(vol.root())),
        ("PROCESS_NAME", name.as_str()),
    ];
    let rel = start(&env, &app);
    let inside = await_ready(&out);
    assert_ne!(inside, child_pid(&rel), "the named process is tini's child");

    assert!(vol.update(&kv(&[("app.conf", "v2")])).unwrap());
    wait_until(T, "the reload inside the tree", || {
        (!received_in(&out).is_empty()).then_some(())
    });
    std::thread::sleep(QUIET);
    assert_eq!(contents(&received_in(&out)), ["v2"]);
    assert!(
        outside.received().is_empty(),
        "the same-named process outside the app's tree was signalled"
    );
    let reloaded = rel.lines("info reloaded");
    assert_eq!(reloaded.len(), 1, "{}", rel.log());
    assert_eq!(field(&reloaded[0], "pid"), Some(inside.to_string()));
}

/// The app may take a while to install its handler; until then SIGHUP would kill it. Here sh
/// waits on a FIFO before it execs sigrecord: a change meanwhile is refused (and the app lives),
/// and not retried once sh has exec'd the app, which read the new content when it started; a
/// change after that is sent, once.
#[test]
fn an_app_that_installs_its_handler_late_is_not_signalled_before_it_has() {
    let tmp = TempDir::new("entry-late").unwrap();
    let vol = volume(&tmp);
    let conf = vol.root().join("app.conf");
    let fifo = tmp.join("go");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    let name = unique_name("lateapp");
    let (recorder, out) = sigrecord(tmp.path(), &name, &["--read", path_str(&conf)]);
    let mut app = vec![
        "sh".to_string(),
        "-c".into(),
        r#"read go < "$0" && exec "$@""#.into(),
        path_str(&fifo).into(),
    ];
    app.extend(recorder);
    let rel = start(&[("CONFIG_DIR", path_str(vol.root()))], &app);
    let pid = child_pid(&rel);

    let change = || assert!(vol.update(&kv(&[("app.conf", "v2")])).unwrap());
    let refused = refused_after(&rel, pid, T, change, || false).expect("a refusal");
    assert_eq!(field(&refused, "handling").as_deref(), Some("default"));
    assert!(rel.is_running() && entry::comm(pid).as_deref() == Some("sh"));

    fs::write(&fifo, "go\n").unwrap();
    assert_eq!(await_ready(&out), pid, "sh exec'd the app in place");
    assert!(vol.update(&kv(&[("app.conf", "v3")])).unwrap());
    wait_until(T, "the reload", || {
        (!received_in(&out).is_empty()).then_some(())
    });
    std::thread::sleep(QUIET);
    assert_eq!(contents(&received_in(&out)), ["v3"]);
}

/// The app exits while a reload waits for its debounce: the reloader exits at once with the
/// app's code and signals nothing (the pid is reaped, and could be anyone's next). A plain
/// directory: a kubelet update does not wait for the debounce.
#[test]
fn an_app_that_exits_during_a_pending_reload_is_never_signalled() {
    let tmp = TempDir::new("entry-gone").unwrap();
    let plain = tmp.join("plain");
    fs::create_dir(&plain).unwrap();
    fs::write(plain.join("app.conf"), "v1").unwrap();
    let (app, out) = sigrecord(tmp.path(), &unique_name("goneapp"), &[]);
    let env = [
        ("CONFIG_DIR", path_str(&plain)),
        ("RELOAD_DEBOUNCE", "2s"),
        ("VERBOSE", "true"),
    ];
    let mut rel = start(&env, &app);
    let pid = await_ready(&out);
    fs::write(plain.join("app.conf"), "v2").unwrap();
    rel.wait_lines("debug possible change", 1, T);

    let killed = Instant::now();
    kill(pid, libc::SIGKILL).unwrap();
    assert_eq!(exit_code(&mut rel), 137, "{}", rel.log());
    let took = killed.elapsed();
    assert!(
        took.as_millis() < 2000,
        "exited after {took:?}, past the debounce"
    );
    let log = rel.log();
    assert!(
        !log.contains("info reloaded") && !log.contains("refusing") && !log.contains("failed"),
        "{log}"
    );
}

/// SIGTERM usually means the pod is stopping: the pending reload is dropped, not sent to an app
/// that is shutting down. This app ignores SIGTERM, so a reload sent after it would show.
#[test]
fn sigterm_during_a_pending_reload_is_forwarded_and_the_reload_dropped() {
    let tmp = TempDir::new("entry-term").unwrap();
    // A plain directory: a kubelet update would not wait for the debounce.
    let plain = tmp.join("plain");
    fs::create_dir(&plain).unwrap();
    let conf = plain.join("app.conf");
    fs::write(&conf, "v1").unwrap();
    let flags = ["--read", path_str(&conf), "--ignore", "TERM"];
    let (app, out) = sigrecord(tmp.path(), &unique_name("termapp"), &flags);
    let debounce = 1000;
    let env = [
        ("CONFIG_DIR", path_str(&plain)),
        ("RELOAD_DEBOUNCE", "1s"),
        ("VERBOSE", "true"),
    ];
    let mut rel = start(&env, &app);
    let pid = await_ready(&out);
    fs::write(&conf, "v2").unwrap();
    rel.wait_lines("debug possible change", 1, T);

    rel.signal(libc::SIGTERM);
    let forwarded = rel.wait_lines("info forwarding signal to the app", 1, T);
    assert_eq!(field(&forwarded[0], "signal").as_deref(), Some("SIGTERM"));
    assert_eq!(field(&forwarded[0], "pid"), Some(pid.to_string()));
    assert_eq!(
        field(&forwarded[0], "pending_reload").as_deref(),
        Some("dropped")
    );
    // An absence: the debounce would have fired within this, plus the fingerprint.
    std::thread::sleep(std::time::Duration::from_millis(debounce) + QUIET);
    assert!(received_in(&out).is_empty(), "{:?}", received_in(&out));
    assert!(rel.lines("info reloaded").is_empty(), "{}", rel.log());
    assert!(rel.is_running(), "the app ignores TERM, so both live on");

    rel.signal(libc::SIGINT);
    assert_eq!(exit_code(&mut rel), 130, "{}", rel.log());
}

/// Like a shell: 127 when the command is not found, 126 when it cannot be executed; `--` alone
/// is bad input (2). Each with one line naming the command, and nothing started.
#[test]
fn bad_commands_exit_like_a_shell_with_one_line() {
    let tmp = TempDir::new("entry-bad").unwrap();
    let plain = tmp.join("not-executable");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    let dir = path_str(tmp.path());
    let cases: [(&[&str], i32, &str); 4] = [
        (&["--"], 2, "-- is not followed by a command"),
        (
            &["--", "/nonexistent/app"],
            127,
            "\"/nonexistent/app\": not found",
        ),
        (
            &["--", "no-such-app-anywhere"],
            127,
            "\"no-such-app-anywhere\": not found",
        ),
        (&["--", path_str(&plain)], 126, "cannot be executed"),
    ];
    for (args, code, says) in cases {
        let (status, stdout, stderr) = run_to_exit(support::bin(), &[("CONFIG_DIR", dir)], args);
        assert_eq!(testkit::reloader::code(status), code, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line:\n{stderr}");
        assert!(stderr.starts_with("config-reloader: "), "{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
}
