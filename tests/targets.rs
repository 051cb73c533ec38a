//! How the reloader judges a target before it signals it (issue 9, items 1 and 2), with
//! the programs people run and small precise ones.
//!
//! The rule: SIGHUP is safe when `SigCgt` has it (process-wide), or when EVERY thread in
//! `/proc/PID/task` blocks it (`SigBlk`) or sleeps waiting for it (`wchan` reads
//! `do_sigtimedwait`: while a thread waits, the kernel moves the waited signals out of its
//! `SigBlk`), with one waiting or a signalfd reading it. A thread whose state cannot be read
//! means refuse, naming RELOAD_FORCE. (`tests/evidence.rs` has the cases of issue 18: a mask
//! alone, SIG_IGN, runtimes' catch-all handlers, the retry.) Each test
//! asserts what an operator sees: what the app received and re-read, whether it survived, and
//! the `--check` verdict (`target ... handling=H verdict=send|refuse reason="..."`, exit 0/1).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{bin, env, os, start, QUIET, T};
use testkit::apps::{self, await_waiting, debian, innermost_pid, link_as, ppid};
use testkit::kubelet::Volume;
use testkit::recorder::{contents, Mode, Options, Recorder};
use testkit::reloader::{check_target, code, command, expect_sent, field, refused_after};
use testkit::{unique_name, TempDir};

/// Asserts `--check` against `name` says `verdict` for `pid`, with a handling among `handling`,
/// and exits 0 for send, 1 for refuse.
fn assert_check(dir: &Path, name: &str, pid: i32, handling: &[&str], verdict: &str) {
    let (exit, line) = check_target(command(bin(), &env(dir, name, &[]), &[]), pid);
    let got = field(&line, "handling").unwrap_or_default();
    assert!(
        handling.contains(&got.as_str()),
        "handling not {handling:?}: {line}"
    );
    assert_eq!(field(&line, "verdict").as_deref(), Some(verdict), "{line}");
    assert_eq!(exit, if verdict == "send" { 0 } else { 1 }, "{line}");
}

/// A reloader watching `dir` for `app`: a plain edit of `dir/app.conf` reaches it once and
/// it re-reads the new content.
fn assert_reloads(dir: &Path, name: &str, app: &Recorder) {
    let rel = start(dir, name, &[]);
    fs::write(dir.join("app.conf"), "v2").unwrap();
    let got = expect_sent(app, &rel, 1, T, QUIET);
    assert_eq!(contents(&got), ["v2"], "{}", rel.log());
    assert_eq!(got[0].signo, libc::SIGHUP);
}

#[test]
fn sigwait_in_the_main_thread_is_signalled_not_refused() {
    let dir = TempDir::new("sigwait-main").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("sigwaitmain");
    let conf = dir.join("app.conf");
    let app = Recorder::spawn(apps::sigwaiter(&name, Some(&conf), "--sigwait-main"));
    await_waiting(app.pid(), T);
    assert_reloads(dir.path(), &name, &app);
    await_waiting(app.pid(), T);
    assert_check(dir.path(), &name, app.pid(), &["waited"], "send");
}

#[test]
fn a_dedicated_sigwait_thread_while_every_other_thread_blocks_is_signalled() {
    let dir = TempDir::new("sigwait-thread").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("sigwaitthr");
    let conf = dir.join("app.conf");
    let app = Recorder::spawn(apps::sigwaiter(&name, Some(&conf), "--sigwait-thread"));
    assert_eq!(
        apps::wchans(app.pid()).len(),
        5,
        "main, 3 workers, the waiter"
    );
    await_waiting(app.pid(), T);
    assert_reloads(dir.path(), &name, &app);
    await_waiting(app.pid(), T);
    assert_check(dir.path(), &name, app.pid(), &["waited"], "send");
}

#[test]
fn python_signal_sigwait_is_signalled_and_rereads_a_kubelet_update() {
    let dir = TempDir::new("py-sigwait").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"k1".as_slice())]).unwrap();
    let name = unique_name("pysigwait");
    let app = Recorder::spawn(apps::python(
        &name,
        Some(&dir.join("app.conf")),
        "--sigwait-main",
    ));
    await_waiting(app.pid(), T);
    let rel = start(dir.path(), &name, &[]);
    assert!(vol.update(&[("app.conf", b"k2".as_slice())]).unwrap());
    let got = expect_sent(&app, &rel, 1, T, QUIET);
    assert_eq!(contents(&got), ["k2"], "{}", rel.log());
    await_waiting(app.pid(), T);
    assert_check(dir.path(), &name, app.pid(), &["waited"], "send");
}

/// A process with one thread that would take SIGHUP's default action: refused, and alive.
fn assert_refused_and_alive(mut app: Recorder, name: &str, dir: &Path) {
    let rel = start(dir, name, &[]);
    let change = || fs::write(dir.join("app.conf"), "v2").unwrap();
    let refused = refused_after(&rel, app.pid(), T, change, || !app.is_alive());
    // The refusal is logged where the signal would have been sent; a quiet window then shows
    // that no signal followed it.
    if refused.is_some() {
        std::thread::sleep(QUIET);
    }
    if !app.is_alive() {
        let status = app.wait_exit(T).map(code);
        panic!("the app was killed (exit {status:?}); log:\n{}", rel.log());
    }
    assert!(rel.lines("info reloaded").is_empty(), "{}", rel.log());
    assert_check(dir, name, app.pid(), &["default"], "refuse");
}

#[test]
fn a_thread_with_sighup_unblocked_and_no_handler_is_refused_and_survives() {
    let dir = TempDir::new("unblocked-thread").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("onethread");
    let app = Recorder::spawn(apps::sigwaiter(&name, None, "--one-thread-unblocked"));
    assert_refused_and_alive(app, &name, dir.path());
}

#[test]
fn python_thread_started_before_pthread_sigmask_is_refused_not_killed_with_129() {
    let dir = TempDir::new("py-victim").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("pyvictim");
    let app = Recorder::spawn(apps::python(&name, None, "--victim"));
    assert_refused_and_alive(app, &name, dir.path());
}

#[test]
fn signalfd_and_handler_apps_are_signalled_and_check_names_how() {
    for (mode, handling) in [
        (Mode::Block("HUP".into()), "blocked"),
        (Mode::default(), "caught"),
    ] {
        let dir = TempDir::new("sfd-handler").unwrap();
        fs::write(dir.join("app.conf"), "v1").unwrap();
        let name = unique_name(handling);
        let app = Recorder::spawn(Options {
            name: Some(name.clone()),
            read: Some(dir.join("app.conf")),
            mode,
            ..Options::default()
        });
        assert_reloads(dir.path(), &name, &app);
        assert_check(dir.path(), &name, app.pid(), &[handling], "send");
    }
}

/// How a Debian init runs its child: as an ordinary process, or as PID 1 of a new PID namespace
/// (the reloader stays outside and sees it as a normal pid whose NSpid ends in 1).
#[derive(Clone, Copy, PartialEq)]
enum Where {
    Ordinary,
    Pid1,
}

/// `init` (tini or dumb-init, run through a link named `init_name` with `flags`) runs a
/// sigrecord that catches SIGHUP and re-reads `read`; returns the recorder (the child).
fn under_init(init: &Path, init_name: &str, flags: &[&str], w: Where, read: &Path) -> Recorder {
    let links = TempDir::new("init-link").unwrap();
    let link = link_as(links.path(), init_name, init);
    let mut wrapper = match w {
        Where::Ordinary => Vec::new(),
        Where::Pid1 => os(&["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]),
    };
    wrapper.push(link.into());
    wrapper.extend(os(flags));
    let app = Recorder::spawn(Options {
        name: Some(unique_name("initchild")),
        read: Some(read.into()),
        wrapper,
        ..Options::default()
    });
    // The link may go: the running init keeps its name.
    drop(links);
    app
}

/// A plain edit and then a kubelet update, each through `init` to its child, which re-reads
/// the new content; `--check` says send with one of `handling`.
fn assert_forwards(init: &Path, flags: &[&str], w: Where, handling: &[&str]) {
    let base = init.file_name().unwrap().to_str().unwrap();
    for kubelet in [false, true] {
        let dir = TempDir::new("init").unwrap();
        let vol =
            kubelet.then(|| Volume::create(dir.path(), &[("app.conf", b"v1".as_slice())]).unwrap());
        if !kubelet {
            fs::write(dir.join("app.conf"), "v1").unwrap();
        }
        let name = unique_name(base);
        let app = under_init(init, &name, flags, w, &dir.join("app.conf"));
        let init_pid = ppid(app.pid()).expect("the init's pid");
        let ns_pid = innermost_pid(init_pid);
        assert_eq!(
            ns_pid == Some(1),
            w == Where::Pid1,
            "NSpid of {name}: {ns_pid:?}"
        );

        let rel = start(dir.path(), &name, &[]);
        match &vol {
            Some(vol) => assert!(vol.update(&[("app.conf", b"v2".as_slice())]).unwrap()),
            None => fs::write(dir.join("app.conf"), "v2").unwrap(),
        }
        let got = expect_sent(&app, &rel, 1, T, QUIET);
        assert_eq!(contents(&got), ["v2"], "{}", rel.log());
        let reloaded = format!("info reloaded pid={init_pid} ");
        assert!(rel.log().contains(&reloaded), "{}", rel.log());
        assert_check(dir.path(), &name, init_pid, handling, "send");
    }
}

fn tini() -> PathBuf {
    debian("/usr/bin/tini", "tini")
}

fn dumb_init() -> PathBuf {
    debian("/usr/bin/dumb-init", "dumb-init")
}

// tini blocks every signal and loops on sigtimedwait with a 1 s timeout (reaping between two
// waits), so it reads as waited; in the instant between two waits it reads as masked (a mask
// and no signalfd), which is refused and retried 50 ms later. dumb-init blocks every signal,
// installs a no-op handler for each (SigCgt) and loops on sigwait: caught.

#[test]
fn tini_forwards_the_reload_to_its_child_as_an_ordinary_process() {
    assert_forwards(&tini(), &["-s", "--"], Where::Ordinary, &["waited"]);
}

#[test]
fn tini_as_pid_1_of_a_pid_namespace_forwards_the_reload_to_its_child() {
    assert_forwards(&tini(), &["--"], Where::Pid1, &["waited"]);
}

#[test]
fn dumb_init_forwards_the_reload_to_its_child_as_an_ordinary_process() {
    assert_forwards(&dumb_init(), &["--"], Where::Ordinary, &["caught"]);
}

#[test]
fn dumb_init_as_pid_1_of_a_pid_namespace_forwards_the_reload_to_its_child() {
    assert_forwards(&dumb_init(), &["--"], Where::Pid1, &["caught"]);
}
