//! The core promise, end to end: the real binary, real directories, real inotify, and a real
//! target process (`sigrecord`) that records every signal it receives and re-reads the config
//! when it does. Each test asserts what an operator would check: how many reloads the app got
//! and which content it saw.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use support::{bin, env, inside, kv, spawn_app, start, start_dirs, QUIET, T};
use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::{contents, Mode, Options, Recorder};
use testkit::reloader::{code, path_str, run_to_exit, Reloader};
use testkit::{unique_name, wait_until, TempDir};

#[test]
fn kubelet_update_sends_exactly_one_sighup_and_the_app_sees_the_new_content() {
    let name = unique_name("kubeapp");
    let dir = TempDir::new("kubelet-one").unwrap();
    let vol = Volume::create(dir.path(), &kv(&[("app.conf", "v1"), ("other.conf", "o1")])).unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(dir.path(), &name, &[]);

    assert!(vol
        .update(&kv(&[("app.conf", "v2"), ("other.conf", "o1")]))
        .unwrap());
    let got = app.expect_exactly(1, T, QUIET);
    assert_eq!(contents(&got), ["v2"]);
    assert_eq!(got[0].signo, libc::SIGHUP);

    assert!(vol
        .update(&kv(&[("app.conf", "v3"), ("other.conf", "o2")]))
        .unwrap());
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["v2", "v3"]);
    assert_eq!(rel.lines("info reloaded").len(), 2, "{}", rel.log());
}

#[test]
fn first_population_of_an_empty_volume_is_one_reload() {
    let name = unique_name("firstpop");
    let dir = TempDir::new("kubelet-first").unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let _rel = start(dir.path(), &name, &[]);
    Volume::create(
        dir.path(),
        &kv(&[("app.conf", "hello"), ("b", "1"), ("c", "2")]),
    )
    .unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["hello"]);
}

#[test]
fn key_added_and_key_removed_are_one_reload_each() {
    let name = unique_name("keysapp");
    let dir = TempDir::new("kubelet-keys").unwrap();
    let vol = Volume::create(dir.path(), &kv(&[("app.conf", "a")])).unwrap();
    let app = spawn_app(&name, &dir.join("new.conf"));
    let _rel = start(dir.path(), &name, &[]);

    vol.update(&kv(&[("app.conf", "a"), ("new.conf", "added")]))
        .unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["added"]);
    assert!(dir.join("new.conf").exists());

    vol.update(&kv(&[("app.conf", "a")])).unwrap();
    let got = app.expect_exactly(2, T, QUIET);
    assert_eq!(
        got[1].content,
        Err(libc::ENOENT),
        "the removed key is gone when the app reloads"
    );
}

#[test]
fn slow_legacy_and_fsgroup_writers_still_give_one_fresh_reload() {
    let name = unique_name("slowapp");
    let dir = TempDir::new("kubelet-slow").unwrap();
    let files = |v: &'static str| kv(&[("a.conf", v), ("b.conf", v), ("sub/c.conf", v)]);
    let vol = Volume::create(dir.path(), &files("1")).unwrap();
    let app = spawn_app(&name, &dir.join("sub/c.conf"));
    let _rel = start(dir.path(), &name, &[]);

    // Pauses between keys longer than the debounce: the commit is what counts.
    let slow = UpdateOptions {
        pause_between_keys: Some(Duration::from_millis(250)),
        ..UpdateOptions::default()
    };
    vol.update_with(&files("2"), &slow)
        .unwrap()
        .expect("changed");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["2"]);

    let legacy = UpdateOptions {
        legacy_order: true,
        fsgroup: Some(0),
        ..UpdateOptions::default()
    };
    vol.update_with(&files("3"), &legacy)
        .unwrap()
        .expect("changed");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["2", "3"]);
}

#[test]
fn chmod_touch_fsgroup_pass_and_same_content_swap_send_nothing() {
    let name = unique_name("noopapp");
    let dir = TempDir::new("noop").unwrap();
    let vol = Volume::create(dir.path(), &kv(&[("app.conf", "same")])).unwrap();
    let plain = TempDir::new("noop-plain").unwrap();
    fs::write(plain.join("p.conf"), "p").unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start_dirs(&[dir.path(), plain.path()], &name, &[("VERBOSE", "true")]);

    let unchanged = |n: usize| rel.wait_lines("debug content unchanged", n, T);
    // The kubelet swaps even on equal content (1.30+ relinks, old fsGroup passes chmod).
    let swap = UpdateOptions {
        swap_on_equal: true,
        fsgroup: Some(0),
        ..UpdateOptions::default()
    };
    vol.update_with(&kv(&[("app.conf", "same")]), &swap)
        .unwrap()
        .expect("swapped");
    unchanged(1);
    fs::set_permissions(plain.join("p.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(plain.join("p.conf"), "p").unwrap(); // same bytes rewritten
    unchanged(2);
    Command::new("touch")
        .arg(plain.join("p.conf"))
        .status()
        .unwrap();
    sleep(QUIET); // touch raises only IN_ATTRIB, which we never ask for: nothing to await
    assert!(
        app.received().is_empty(),
        "no-op changes signalled: {:?}",
        contents(&app.received())
    );

    vol.update(&kv(&[("app.conf", "different")])).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["different"]);
}

#[test]
fn in_place_truncate_and_write_is_one_reload() {
    let name = unique_name("inplace");
    let dir = TempDir::new("inplace").unwrap();
    fs::write(dir.join("app.conf"), "old").unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let _rel = start(dir.path(), &name, &[]);
    // Like `echo new > app.conf` or `kubectl cp`: truncate, then write in two pieces.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("app.conf"))
        .unwrap();
    f.write_all(b"ne").unwrap();
    f.write_all(b"w").unwrap();
    drop(f);
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["new"]);
}

#[test]
fn sed_in_place_is_one_reload() {
    let name = unique_name("sedapp");
    let dir = TempDir::new("sed").unwrap();
    fs::write(dir.join("app.conf"), "listen 80\n").unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let _rel = start(dir.path(), &name, &[]);
    let ok = Command::new("sed")
        .args(["-i", "s/80/8080/"])
        .arg(dir.join("app.conf"))
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        contents(&app.expect_exactly(1, T, QUIET)),
        ["listen 8080\n"]
    );
}

#[test]
fn vim_style_save_is_one_reload() {
    let name = unique_name("vimapp");
    let dir = TempDir::new("vim").unwrap();
    let f = dir.join("app.conf");
    fs::write(&f, "old").unwrap();
    let app = spawn_app(&name, &f);
    let _rel = start(dir.path(), &name, &[]);
    // What vim does on :w with backupcopy=no: swap file churn, the 4913 probe, rename to a
    // backup, write a new file, delete the backup.
    fs::write(dir.join(".app.conf.swp"), "swap").unwrap();
    fs::write(dir.join("4913"), "").unwrap();
    fs::remove_file(dir.join("4913")).unwrap();
    fs::rename(&f, dir.join("app.conf~")).unwrap();
    fs::write(&f, "new").unwrap();
    fs::remove_file(dir.join("app.conf~")).unwrap();
    fs::write(dir.join(".app.conf.swp"), "swap2").unwrap();
    fs::remove_file(dir.join(".app.conf.swp")).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["new"]);
}

#[test]
fn storm_of_200_updates_gives_a_handful_of_signals_and_the_last_sees_the_final_content() {
    let name = unique_name("stormapp");
    let dir = TempDir::new("storm").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"0".as_slice())]).unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let _rel = start(dir.path(), &name, &[]);
    for i in 1..=200 {
        let v = i.to_string();
        vol.update(&[("app.conf", v.as_bytes())]).unwrap();
    }
    let got = wait_until(T, "a signal that saw the final content", || {
        let got = app.received();
        (contents(&got).last().map(String::as_str) == Some("200")).then_some(got)
    });
    sleep(QUIET);
    let after = app.received();
    assert_eq!(
        after.len(),
        got.len(),
        "a signal came after the final content was seen"
    );
    assert!(
        (1..=5).contains(&got.len()),
        "{} signals for a storm of 200 updates",
        got.len()
    );
}

#[test]
fn restarted_target_is_found_again_by_name() {
    let name = unique_name("restartme");
    let dir = TempDir::new("restart").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    let first = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(dir.path(), &name, &[]);
    fs::write(dir.join("app.conf"), "2").unwrap();
    first.expect_exactly(1, T, QUIET);
    drop(first);

    let second = spawn_app(&name, &dir.join("app.conf"));
    fs::write(dir.join("app.conf"), "3").unwrap();
    assert_eq!(contents(&second.expect_exactly(1, T, QUIET)), ["3"]);
    let pids: Vec<String> = rel
        .lines("info reloaded")
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    assert_eq!(pids.len(), 2);
    assert_ne!(pids[0], pids[1], "the second reload went to the new pid");
}

#[test]
fn absent_target_is_logged_and_reached_once_it_appears() {
    let name = unique_name("latecomer");
    let dir = TempDir::new("absent").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    let rel = start(dir.path(), &name, &[]);
    // Awaited, not read once: the start-up scan may log after `info watching` (it does in the
    // std port), and under qemu that line comes late enough to lose a one-shot read.
    rel.wait_lines(&format!("warn no process named {name}"), 1, T);
    fs::write(dir.join("app.conf"), "2").unwrap();
    rel.wait_lines(&format!("warn no process named {name}"), 2, T);
    assert!(rel.is_running());

    let app = spawn_app(&name, &dir.join("app.conf"));
    fs::write(dir.join("app.conf"), "3").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["3"]);
}

#[test]
fn a_27_character_name_matches_and_its_15_char_prefix_does_not() {
    let dir = TempDir::new("longname").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    // Unique to this run within the first 15 chars, which are all /proc/PID/comm holds.
    let run = unique_name("n");
    let long = format!("my-{run}-process-name-27");
    assert_eq!(long.len(), 27);
    let app = spawn_app(&long, &dir.join("app.conf"));
    // Another program sharing the first 15 chars must not be signalled.
    let cousin = spawn_app(&format!("my-{run}-process-other"), &dir.join("app.conf"));
    let rel = start(dir.path(), &long, &[]);
    fs::write(dir.join("app.conf"), "2").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["2"]);
    assert!(cousin.received().is_empty());
    drop(rel);

    // The 15-char comm itself is not the name: no match, so nothing is signalled.
    let rel = start(dir.path(), &long[..15], &[]);
    fs::write(dir.join("app.conf"), "3").unwrap();
    rel.wait_lines(&format!("warn no process named {}", &long[..15]), 2, T);
    assert_eq!(app.received().len(), 1, "a prefix of the name matched");
}

#[test]
fn parent_and_children_with_the_same_name_roots_by_default_all_on_request() {
    let name = unique_name("masterapp");
    let dir = TempDir::new("workers").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    let master = Recorder::spawn(Options {
        name: Some(name.clone()),
        read: Some(dir.join("app.conf")),
        children: 2,
        ..Options::default()
    });
    let roots = start(dir.path(), &name, &[]);
    fs::write(dir.join("app.conf"), "2").unwrap();
    let got = master.expect_exactly(1, T, QUIET);
    assert_eq!(
        got[0].pid,
        master.reported_pids()[0],
        "only the master (root) was signalled"
    );
    drop(roots);

    let _all = start(dir.path(), &name, &[("RELOAD_TARGETS", "all")]);
    fs::write(dir.join("app.conf"), "3").unwrap();
    let got = master.expect_exactly(4, T, QUIET);
    let mut pids: Vec<i32> = got[1..].iter().map(|r| r.pid).collect();
    pids.sort();
    let mut want = master.reported_pids().to_vec();
    want.sort();
    assert_eq!(pids, want, "every match was signalled once");
}

#[test]
fn two_directories_are_both_watched() {
    let name = unique_name("twodirs");
    let a = TempDir::new("two-a").unwrap();
    let b = TempDir::new("two-b").unwrap();
    fs::write(a.join("a.conf"), "a1").unwrap();
    fs::write(b.join("b.conf"), "b1").unwrap();
    let app = spawn_app(&name, &b.join("b.conf"));
    let _rel = start_dirs(&[a.path(), b.path()], &name, &[]);
    fs::write(b.join("b.conf"), "b2").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["b2"]);
    fs::write(a.join("a.conf"), "a2").unwrap();
    app.expect_exactly(2, T, QUIET);
}

#[test]
fn subdirectories_created_later_are_watched() {
    let name = unique_name("subapp");
    let dir = TempDir::new("subdirs").unwrap();
    let app = spawn_app(&name, &dir.join("conf.d/deep/x.conf"));
    let _rel = start(dir.path(), &name, &[]);
    fs::create_dir_all(dir.join("conf.d/deep")).unwrap();
    fs::write(dir.join("conf.d/deep/x.conf"), "x1").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["x1"]);
    fs::write(dir.join("conf.d/deep/x.conf"), "x2").unwrap();
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["x1", "x2"]);
}

#[test]
fn sigusr1_and_realtime_signals_are_sent_as_configured() {
    let name = unique_name("usr1app");
    let dir = TempDir::new("usr1").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    let app = Recorder::spawn(Options {
        name: Some(name.clone()),
        read: Some(dir.join("app.conf")),
        mode: Mode::Catch("USR1,RTMIN+2".into()),
        ..Options::default()
    });
    let rel = start(dir.path(), &name, &[("RELOAD_SIGNAL", "SIGUSR1")]);
    fs::write(dir.join("app.conf"), "2").unwrap();
    assert_eq!(app.expect_exactly(1, T, QUIET)[0].signo, libc::SIGUSR1);
    drop(rel);
    let _rel = Reloader::start(
        bin(),
        &env(dir.path(), &name, &[]),
        &["--signal", "rtmin+2"],
    );
    fs::write(dir.join("app.conf"), "3").unwrap();
    assert_eq!(app.expect_exactly(2, T, QUIET)[1].signo, 36);
}

#[test]
fn a_target_that_does_not_handle_sighup_is_not_killed() {
    let fragile_name = unique_name("fragile");
    let blocker_name = unique_name("blocker");
    let dir = TempDir::new("nohandler").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    let mut app = Recorder::spawn(Options {
        name: Some(fragile_name.clone()),
        mode: Mode::Default,
        ..Options::default()
    });
    let rel = start(dir.path(), &fragile_name, &[]);
    // Warned at start already, then refused at the change.
    fs::write(dir.join("app.conf"), "2").unwrap();
    let refused = rel.wait_lines("warn refusing to send SIGHUP", 2, T);
    assert!(
        refused[1].contains(&format!("pid={}", app.pid())),
        "{refused:?}"
    );
    assert!(app.is_alive(), "the app was killed");
    drop(rel);

    // A signalfd app blocks SIGHUP instead of catching it: that counts as handled.
    let blocker = Recorder::spawn(Options {
        name: Some(blocker_name.clone()),
        read: Some(dir.join("app.conf")),
        mode: Mode::Block("HUP".into()),
        ..Options::default()
    });
    let _rel = start(dir.path(), &blocker_name, &[]);
    fs::write(dir.join("app.conf"), "3").unwrap();
    assert_eq!(contents(&blocker.expect_exactly(1, T, QUIET)), ["3"]);

    // RELOAD_FORCE sends anyway, and the default action does what it does.
    let _forced = start(dir.path(), &fragile_name, &[("RELOAD_FORCE", "true")]);
    fs::write(dir.join("app.conf"), "4").unwrap();
    assert_eq!(app.killed_by(T), Some(libc::SIGHUP));
}

#[test]
fn bad_input_exits_2_with_one_line_and_signals_nothing() {
    let name = unique_name("badinput");
    let dir = TempDir::new("badinput").unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let d = path_str(dir.path());
    // (environment, flags, what the error line must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("PROCESS_NAME", &name)], vec![], "CONFIG_DIR"),
        (vec![("CONFIG_DIR", d)], vec![], "PROCESS_NAME"),
        (
            vec![("CONFIG_DIR", d), ("PROCESS_NAME", "")],
            vec![],
            "PROCESS_NAME",
        ),
        (
            vec![("CONFIG_DIR", "/nonexistent/dir"), ("PROCESS_NAME", &name)],
            vec![],
            "/nonexistent/dir",
        ),
        (
            vec![("CONFIG_DIR", "/etc/hostname"), ("PROCESS_NAME", &name)],
            vec![],
            "not a directory",
        ),
        (
            vec![
                ("CONFIG_DIR", d),
                ("PROCESS_NAME", &name),
                ("RELOAD_SIGNAL", "SIGFOO"),
            ],
            vec![],
            "RELOAD_SIGNAL=\"SIGFOO\"",
        ),
        (
            vec![
                ("CONFIG_DIR", d),
                ("PROCESS_NAME", &name),
                ("RELOAD_DEBOUNCE", "fast"),
            ],
            vec![],
            "RELOAD_DEBOUNCE=\"fast\"",
        ),
        (
            vec![("CONFIG_DIR", d), ("PROCESS_NAME", &name)],
            vec!["--max-delay", "10"],
            "--max-delay=\"10\"",
        ),
        (
            vec![("CONFIG_DIR", d), ("PROCESS_NAME", &name)],
            vec!["--targets=kids"],
            "--targets=\"kids\"",
        ),
        (
            vec![("CONFIG_DIR", d), ("PROCESS_NAME", &name)],
            vec!["--frobnicate"],
            "--frobnicate",
        ),
        (
            vec![
                ("CONFIG_DIR", d),
                ("PROCESS_NAME", &name),
                ("VERBOSE", "loud"),
            ],
            vec![],
            "VERBOSE=\"loud\"",
        ),
        (
            vec![
                ("CONFIG_DIR", d),
                ("PROCESS_NAME", &name),
                ("LOG_FORMAT", "xml"),
            ],
            vec![],
            "LOG_FORMAT=\"xml\"",
        ),
    ];
    for (env, args, names) in cases {
        let (status, stdout, stderr) = run_to_exit(bin(), &env, &args);
        assert_eq!(code(status), 2, "{env:?} {args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{env:?} {args:?}: not one line: {stderr}"
        );
        assert!(
            stderr.contains(names),
            "{env:?} {args:?}: {stderr:?} does not name {names:?}"
        );
        assert!(stdout.is_empty());
    }
    sleep(QUIET);
    assert!(app.received().is_empty(), "bad input signalled the app");
}

#[test]
fn sigterm_and_sigint_exit_0() {
    let nobody = unique_name("nobody-here");
    let dir = TempDir::new("term").unwrap();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut rel = start(dir.path(), &nobody, &[]);
        rel.signal(sig);
        assert_eq!(code(rel.wait_exit(T)), 0, "{}", rel.log());
        assert!(
            rel.log()
                .lines()
                .last()
                .unwrap()
                .starts_with("info exiting"),
            "{}",
            rel.log()
        );
    }
}

#[test]
fn check_reports_targets_and_exits_0_or_1() {
    let name = unique_name("checkapp");
    let dir = TempDir::new("check").unwrap();
    Volume::create(dir.path(), &kv(&[("app.conf", "x")])).unwrap();
    let env = env(dir.path(), &name, &[]);
    let (status, stdout, _) = run_to_exit(bin(), &env, &["--check"]);
    assert_eq!(code(status), 1, "{stdout}");
    assert!(
        stdout.contains(&format!("no process named {name}")),
        "{stdout}"
    );

    let app = spawn_app(&name, &dir.join("app.conf"));
    let (status, stdout, _) = run_to_exit(bin(), &env, &["--check"]);
    assert_eq!(code(status), 0, "{stdout}");
    assert!(stdout.contains("kubelet volume"), "{stdout}");
    assert!(
        stdout.contains(&format!("target pid={}", app.pid())),
        "{stdout}"
    );
    assert!(app.received().is_empty(), "--check must not signal");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let name = unique_name("jsonapp");
    let dir = TempDir::new("json").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(dir.path(), &name, &[("LOG_FORMAT", "json")]);
    fs::write(dir.join("app.conf"), "2").unwrap();
    app.wait_received(1, T);
    let line = wait_until(T, "a JSON reloaded line", || {
        rel.log()
            .lines()
            .find(|l| l.contains("\"msg\":\"reloaded\""))
            .map(str::to_string)
    });
    assert!(
        line.starts_with("{\"level\":\"info\",\"msg\":\"reloaded\",\"pid\":"),
        "{line}"
    );
    assert!(line.ends_with('}'));
    assert!(
        rel.log()
            .lines()
            .all(|l| l.starts_with('{') && l.ends_with('}')),
        "{}",
        rel.log()
    );
}

/// Runs `cmd` inside the PID and mount namespaces of `pid1` (a process started by
/// `unshare --pid --fork --mount-proc`), so it sees that namespace's /proc.
fn in_namespace_of(pid1: i32) -> Vec<std::ffi::OsString> {
    ["nsenter", "-t", &pid1.to_string(), "-p", "-m", "--"]
        .iter()
        .map(Into::into)
        .collect()
}

#[test]
fn in_a_pod_like_pid_namespace_the_pause_pid_1_is_never_signalled() {
    let pause_name = unique_name("pause");
    let podapp = unique_name("podapp");
    let dir = TempDir::new("podns").unwrap();
    fs::write(dir.join("app.conf"), "1").unwrap();
    // PID 1 stands in for `pause`: it records any signal it gets, so one sent to it would show.
    let pause = Recorder::spawn(Options {
        name: Some(pause_name.clone()),
        wrapper: ["unshare", "--pid", "--fork", "--mount-proc"]
            .iter()
            .map(Into::into)
            .collect(),
        ..Options::default()
    });
    assert_eq!(
        pause.reported_pids(),
        [1],
        "pause is PID 1 of the new namespace"
    );
    let app = Recorder::spawn(Options {
        name: Some(podapp.clone()),
        read: Some(dir.join("app.conf")),
        wrapper: in_namespace_of(pause.pid()),
        ..Options::default()
    });
    assert_ne!(app.reported_pids()[0], 1);

    let rel = Reloader::start_command(inside(pause.pid(), dir.path(), &podapp, &[]));
    assert!(
        !rel.log().contains("no other process is visible"),
        "{}",
        rel.log()
    );
    fs::write(dir.join("app.conf"), "2").unwrap();
    let got = app.expect_exactly(1, T, QUIET);
    assert_eq!(contents(&got), ["2"]);
    assert!(pause.received().is_empty(), "PID 1 (pause) was signalled");
    assert!(
        rel.log()
            .contains(&format!("info reloaded pid={} ", app.reported_pids()[0])),
        "{}",
        rel.log()
    );

    // With PROCESS_NAME=pause, PID 1 matches by name and is signalled (docker --pid=container:app).
    let _rel = Reloader::start_command(inside(pause.pid(), dir.path(), &pause_name, &[]));
    fs::write(dir.join("app.conf"), "3").unwrap();
    assert_eq!(pause.expect_exactly(1, T, QUIET)[0].pid, 1);
}

#[test]
fn subpath_and_single_file_mounts_are_warned_about_at_start() {
    let nobody = unique_name("nobody-here");
    // A subPath mount binds the resolved `..<timestamp>/key` file; reproduce one in a private
    // mount namespace, plus a single-file bind mount, and start the reloader in there.
    let vol_dir = TempDir::new("subpath-vol").unwrap();
    Volume::create(vol_dir.path(), &kv(&[("app.conf", "v1")])).unwrap();
    let resolved = Volume::open(vol_dir.path())
        .data_dir()
        .unwrap()
        .join("app.conf");
    let plain = TempDir::new("subpath-plain").unwrap();
    fs::write(plain.join("other.conf"), "o").unwrap();
    let conf = TempDir::new("subpath-conf").unwrap();
    fs::write(conf.join("app.conf"), "").unwrap();
    fs::write(conf.join("other.conf"), "").unwrap();
    let script = format!(
        "mount --bind {} {}/app.conf && mount --bind {}/other.conf {}/other.conf && exec {}",
        resolved.display(),
        conf.path().display(),
        plain.path().display(),
        conf.path().display(),
        bin().display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    cmd.env_clear()
        .envs(testkit::tree::run_mark())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CONFIG_DIR", conf.path())
        .env("PROCESS_NAME", &nobody);
    let rel = Reloader::start_command(cmd);
    let warnings = rel.lines("warn configuration mount will never change");
    assert_eq!(warnings.len(), 2, "{}", rel.log());
    assert!(
        warnings.iter().any(|w| w.contains("kind=subPath")
            && w.contains(&format!("{}/app.conf", conf.path().display()))),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("kind=file") && w.contains("other.conf")),
        "{warnings:?}"
    );
}

#[test]
fn alone_in_its_pid_namespace_it_warns_that_nobody_can_be_signalled() {
    let name = unique_name("anything");
    // A pod without shareProcessNamespace: the sidecar is PID 1 and the only process in /proc.
    let dir = TempDir::new("alone").unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        path_str(bin()),
    ]);
    cmd.env_clear()
        .envs(testkit::tree::run_mark())
        .env("CONFIG_DIR", dir.path())
        .env("PROCESS_NAME", &name);
    let rel = Reloader::start_command(cmd);
    let warning = rel.lines("warn no other process is visible in /proc");
    assert_eq!(warning.len(), 1, "{}", rel.log());
    assert!(warning[0].contains("shareProcessNamespace"), "{warning:?}");
}
