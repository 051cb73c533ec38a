//! PID 1 duties (issue 15): in a container the reloader is PID 1 of its PID namespace, so every
//! orphan of the namespace becomes its child and must be reaped when it dies, or zombies pile
//! up until the pid table is full. Each test runs the real binary as PID 1 of a new namespace
//! (`unshare --pid --fork --mount-proc`), makes orphans, kills them, and awaits an empty list of
//! zombies in `/proc`.
//!
//! The orphans are killed while the reloader is stopped (SIGSTOP), so their SIGCHLDs merge into
//! one pending signal, as they do whenever several children die between two reads of the
//! signalfd: a reloader that reaps one child per SIGCHLD would keep the others as zombies.

mod entry;
mod support;

use std::process::Command;

use entry::{children, reloader_pid, sigrecord, start_as_pid_1, Proc};
use support::T;
use testkit::reloader::{command, path_str, Reloader};
use testkit::{kill, unique_name, wait_until, TempDir};

/// How many orphans each test makes.
const ORPHANS: usize = 5;

/// `sh` lines that leave [`ORPHANS`] `sleep`s behind: each `( … & )` subshell starts one and
/// exits, so the kernel re-parents the sleep to PID 1 of the namespace.
fn orphan_script() -> String {
    "(sleep 1000 &); ".repeat(ORPHANS)
}

/// The `sleep` children of `pid1`, once all [`ORPHANS`] are there and alive.
fn await_orphans(pid1: i32) -> Vec<Proc> {
    wait_until(T, "the orphans to be re-parented to the reloader", || {
        let sleeps: Vec<Proc> = children(pid1)
            .into_iter()
            .filter(|k| k.comm == "sleep" && k.state != 'Z')
            .collect();
        (sleeps.len() == ORPHANS).then_some(sleeps)
    })
}

/// Stops `pid1`, kills every orphan, waits until they are all zombies (their SIGCHLDs now wait
/// in one pending signal), lets `pid1` run, then awaits that none of its children is a zombie.
fn kill_orphans_and_await_reaping(pid1: i32, orphans: &[Proc]) {
    kill(pid1, libc::SIGSTOP).unwrap();
    for o in orphans {
        kill(o.pid, libc::SIGKILL).unwrap();
    }
    wait_until(T, "the killed orphans to be zombies", || {
        let zombies = children(pid1).iter().filter(|k| k.state == 'Z').count();
        (zombies == ORPHANS).then_some(())
    });
    kill(pid1, libc::SIGCONT).unwrap();
    let what = format!("PID 1 ({pid1}) to reap every zombie");
    wait_until(T, &what, || {
        let left: Vec<Proc> = children(pid1)
            .into_iter()
            .filter(|k| orphans.iter().any(|o| o.pid == k.pid))
            .collect();
        left.is_empty().then_some(())
    });
}

#[test]
fn as_pid_1_the_orphans_an_app_abandons_are_reaped_when_they_die() {
    let tmp = TempDir::new("pid1-orphans").unwrap();
    let name = unique_name("orphans");
    let (recorder, out) = sigrecord(tmp.path(), &name, &[]);
    let mut app = vec![
        "sh".to_string(),
        "-c".into(),
        format!(r#"{}exec "$@""#, orphan_script()),
        "sh".into(),
    ];
    app.extend(recorder);
    let rel = start_as_pid_1(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
    let pid1 = reloader_pid(&rel);
    assert_eq!(
        entry::status(pid1, "NSpid").and_then(|n| n.split_whitespace().last().map(String::from)),
        Some("1".into()),
        "the reloader is PID 1 of its namespace"
    );
    entry::await_ready(&out);
    let orphans = await_orphans(pid1);

    kill_orphans_and_await_reaping(pid1, &orphans);
    let left = children(pid1);
    assert_eq!(left.len(), 1, "only the app is left: {left:?}");
    assert_eq!(left[0].comm, name);
    assert!(rel.is_running(), "{}", rel.log());
    assert!(rel.lines("info app exited").is_empty(), "{}", rel.log());
}

/// Not PID 1 (`docker run --init`, a pod's pause container, a shell): the reloader is a child
/// subreaper, so the orphans of its app come to it and are reaped, as they are when it is PID 1.
#[test]
fn not_pid_1_the_orphans_an_app_abandons_come_to_the_reloader_and_are_reaped() {
    let tmp = TempDir::new("subreaper").unwrap();
    let (recorder, out) = sigrecord(tmp.path(), &unique_name("subreap"), &[]);
    let mut app = vec![
        "sh".to_string(),
        "-c".into(),
        format!(r#"{}exec "$@""#, orphan_script()),
        "sh".into(),
    ];
    app.extend(recorder);
    let mut rel = entry::start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
    entry::await_ready(&out);
    let orphans = await_orphans(rel.pid());
    kill_orphans_and_await_reaping(rel.pid(), &orphans);
    assert_eq!(children(rel.pid()).len(), 1, "only the app is left");
    assert!(rel.is_running(), "{}", rel.log());
    // Forwarded: the app exits cleanly, and so does the reloader; nothing is left behind.
    rel.signal(libc::SIGTERM);
    assert_eq!(entry::exit_code(&mut rel), 0, "{}", rel.log());
}

/// The sidecar image without `--` is PID 1 of its container too when the pod does not share
/// its PID namespace; whatever a `kubectl exec` into it leaves behind comes to it.
#[test]
fn as_pid_1_without_an_app_orphans_that_come_to_it_are_reaped() {
    let tmp = TempDir::new("pid1-sidecar").unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(support::bin())
        .env_clear()
        .envs(testkit::tree::run_mark())
        .env("CONFIG_DIR", tmp.path())
        .env("PROCESS_NAME", unique_name("nobody"));
    let rel = Reloader::start_command(cmd);
    let pid1 = reloader_pid(&rel);

    // What `kubectl exec` does: a process that joins the namespace from outside.
    let pid = pid1.to_string();
    let script = orphan_script();
    let args = ["-t", &pid, "-p", "-m", "--", "sh", "-c", &script];
    let joined = command("nsenter".as_ref(), &[], &args).status().unwrap();
    assert!(joined.success(), "nsenter sh");
    let orphans = await_orphans(pid1);

    kill_orphans_and_await_reaping(pid1, &orphans);
    assert!(children(pid1).is_empty(), "{:?}", children(pid1));
    assert!(rel.is_running(), "{}", rel.log());
}
