//! Targets at the edges of what the reloader can judge (issue 9, items 1 and 4): a thread whose
//! state it may not read, and PID 1 of a PID namespace with the reloader inside it.
//!
//! While a thread waits in sigwait, `SigBlk` hides the waited signals and only
//! `/proc/PID/task/TID/wchan` (`do_sigtimedwait`) tells the wait from a default action; a
//! sidecar without ptrace rights over the app reads `0` there, and must refuse, naming
//! RELOAD_FORCE. A PID 1 loses a signal only when its disposition is the default and it
//! neither blocks nor waits for it: the kernel delivers a blocked or waited signal to PID 1 too.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::{bin, env, inside, os, QUIET, T};
use testkit::apps::{self, await_waiting};
use testkit::recorder::{contents, Mode, Options, Recorder};
use testkit::reloader::{
    check_target, command, expect_sent, field, path_str, refused_after, Reloader,
};
use testkit::{unique_name, TempDir};

// ---- A thread whose state cannot be read ----

/// The sidecar's UID in the unreadable-state test; no other process uses it.
const SIDECAR_UID: &str = "4247";
/// The app's UID there: `nobody`.
const APP_UID: &str = "65534";

/// `args` run as [`SIDECAR_UID`] holding CAP_KILL only: a sidecar that may signal another
/// UID but has no ptrace rights over it, so `/proc/PID/task/TID/wchan` reads `0` for it.
fn as_sidecar(env: &[(&str, &str)], args: &[&str]) -> Command {
    let id = |flag: &str| format!("--{flag}={SIDECAR_UID}");
    let mut argv = vec![id("reuid"), id("regid")];
    argv.extend(
        [
            "--clear-groups",
            "--inh-caps=+kill",
            "--ambient-caps=+kill",
            "--",
        ]
        .map(String::from),
    );
    argv.extend(args.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    command(Path::new("setpriv"), env, &argv)
}

#[test]
fn a_thread_whose_state_cannot_be_read_is_refused_naming_reload_force_and_not_signalled() {
    let dir = TempDir::new("unreadable-state").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("foreignwait");
    let mut opts = apps::sigwaiter(&name, Some(&dir.join("app.conf")), "--sigwait-main");
    let (reuid, regid) = (format!("--reuid={APP_UID}"), format!("--regid={APP_UID}"));
    opts.wrapper = os(&["setpriv", &reuid, &regid, "--clear-groups", "--"]);
    let app = Recorder::spawn(opts);
    await_waiting(app.pid(), T);

    // The set-up: SigBlk shows no SIGHUP (the waiting thread's mask is hidden) and the one
    // thing that would tell a wait from a default action is unreadable for this sidecar.
    let wchan = format!("/proc/{0}/task/{0}/wchan", app.pid());
    let out = as_sidecar(&[], &["cat", &wchan]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0",
        "{wchan} as the sidecar"
    );

    let bin = path_str(bin());
    let env = env(dir.path(), &name, &[]);
    let (exit, line) = check_target(as_sidecar(&env, &[bin]), app.pid());
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some("unknown"),
        "{line}"
    );
    assert_eq!(field(&line, "verdict").as_deref(), Some("refuse"), "{line}");
    assert!(
        field(&line, "reason")
            .unwrap_or_default()
            .contains("RELOAD_FORCE"),
        "{line}"
    );
    assert_eq!(exit, 1, "{line}");

    let rel = Reloader::start_command(as_sidecar(&env, &[bin]));
    let change = || fs::write(dir.join("app.conf"), "v2").unwrap();
    let refused = refused_after(&rel, app.pid(), T, change, || false).expect("refused");
    let reason = field(&refused, "reason").unwrap_or_default();
    assert!(
        reason.contains("RELOAD_FORCE") && reason.contains("read"),
        "{refused}"
    );
    std::thread::sleep(QUIET); // an absence: no signal may follow the refusal
    assert!(app.received().is_empty(), "{}", rel.log());
    drop(rel);

    // What the reason offers works: CAP_KILL was enough to signal it; only its state was unknown.
    let forced = env
        .iter()
        .copied()
        .chain([("RELOAD_FORCE", "true")])
        .collect::<Vec<_>>();
    let _rel = Reloader::start_command(as_sidecar(&forced, &[bin]));
    fs::write(dir.join("app.conf"), "v3").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v3"]);
}

// ---- PID 1 of a PID namespace, with the reloader inside it ----

/// `opts` run as PID 1 of a new PID namespace.
fn as_pid_1(mut opts: Options) -> Recorder {
    opts.wrapper = os(&["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]);
    let app = Recorder::spawn(opts);
    assert_eq!(app.reported_pids(), [1], "PID 1 of the new namespace");
    app
}

#[test]
fn pid_1_with_default_sighup_that_neither_blocks_nor_waits_is_refused_as_dropped() {
    let dir = TempDir::new("pid1-default").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = unique_name("pid1dfl");
    let app = as_pid_1(Options {
        name: Some(name.clone()),
        mode: Mode::Default,
        ..Options::default()
    });
    let (exit, line) = check_target(inside(app.pid(), dir.path(), &name, &[]), 1);
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some("default"),
        "{line}"
    );
    assert_eq!(field(&line, "verdict").as_deref(), Some("refuse"), "{line}");
    assert_eq!(exit, 1, "{line}");

    let rel = Reloader::start_command(inside(app.pid(), dir.path(), &name, &[]));
    let change = || fs::write(dir.join("app.conf"), "v2").unwrap();
    let refused = refused_after(&rel, 1, T, change, || false).expect("refused");
    assert!(
        field(&refused, "reason")
            .unwrap_or_default()
            .contains("drop"),
        "{refused}"
    );
    assert!(app.is_alive());
}

#[test]
fn pid_1_that_sigwaits_or_blocks_sighup_is_signalled_not_refused_as_dropped() {
    for how in ["sigwait", "signalfd"] {
        let dir = TempDir::new("pid1-waits").unwrap();
        fs::write(dir.join("app.conf"), "v1").unwrap();
        let name = unique_name(&format!("pid1{how}"));
        let conf = dir.join("app.conf");
        let app = as_pid_1(match how {
            "sigwait" => apps::sigwaiter(&name, Some(&conf), "--sigwait-main"),
            _ => Options {
                name: Some(name.clone()),
                read: Some(conf.clone()),
                mode: Mode::Block("HUP".into()),
                ..Options::default()
            },
        });
        if how == "sigwait" {
            await_waiting(app.pid(), T);
        }
        let rel = Reloader::start_command(inside(app.pid(), dir.path(), &name, &[]));
        fs::write(&conf, "v2").unwrap();
        let got = expect_sent(&app, &rel, 1, T, QUIET);
        assert_eq!(contents(&got), ["v2"], "{how}");
        assert!(rel.log().contains("info reloaded pid=1 "), "{}", rel.log());
        drop(rel);

        if how == "sigwait" {
            await_waiting(app.pid(), T);
        }
        let (exit, line) = check_target(inside(app.pid(), dir.path(), &name, &[]), 1);
        assert_eq!(field(&line, "verdict").as_deref(), Some("send"), "{line}");
        assert_eq!(exit, 0, "{line}");
    }
}

// ---- A script started by its #! line ----

/// Was: a `#!` script's process has the interpreter as argv[0] (`/usr/bin/python3`), so a
/// PROCESS_NAME over 15 bytes, the script's name, matched nothing: `no process named`, and
/// only its 15-byte cut reached it. Now the script's own name (after the interpreter and its
/// one `#!` option) is the process's name.
#[test]
fn a_shebang_script_with_a_name_over_15_bytes_is_found_by_that_name() {
    let dir = TempDir::new("shebang").unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    let name = format!("{}-long-script", unique_name("shebang"));
    assert!(name.len() > 15);
    let script = dir.join(&name);
    let python = apps::debian("/usr/bin/python3", "python3");
    // Outside the watched directory: the script's writes are no change of configuration.
    let out = TempDir::new("shebang-out").unwrap();
    let got = out.join("got");
    fs::write(
        &script,
        format!(
            "#!{} -u\nimport signal, sys\n\
             signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], 'a').write('hup\\n'))\n\
             open(sys.argv[1], 'a').write('ready\\n')\n\
             while True: signal.pause()\n",
            python.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let app = Killed(Command::new(&script).arg(&got).spawn().unwrap());
    let lines = || fs::read_to_string(&got).unwrap_or_default();
    testkit::wait_until(T, "the script to install its handler", || {
        lines().contains("ready").then_some(())
    });
    let cmdline = fs::read(format!("/proc/{}/cmdline", app.0.id())).unwrap();
    assert!(
        cmdline.starts_with(python.as_os_str().as_encoded_bytes()),
        "argv[0] is the interpreter"
    );

    let rel = Reloader::start(bin(), &env(dir.path(), &name, &[]), &[]);
    fs::write(dir.join("app.conf"), "v2").unwrap();
    testkit::wait_until(T, "the script to get SIGHUP", || {
        lines().contains("hup").then_some(())
    });
    std::thread::sleep(QUIET);
    assert_eq!(lines().matches("hup").count(), 1, "{}", rel.log());
    let sent = rel.lines("info reloaded");
    assert_eq!(
        field(&sent[0], "pid"),
        Some(app.0.id().to_string()),
        "{}",
        rel.log()
    );
}
