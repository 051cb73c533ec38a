//! Running `config-reloader [FLAGS] -- APP [ARGS...]` in tests: the app is the reloader's own
//! child, so the test starts only the reloader and finds the app through it (the `child=PID`
//! of its ready line, or `/proc` when it is PID 1 of a PID namespace).
//!
//! The app is usually `sigrecord` exec'd through a link named as the test wants, writing its
//! `ready`/`sig` lines to a file the test reads with `testkit::recorder::received_in`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{bin, T};
use testkit::recorder::sigrecord_bin;
use testkit::reloader::{command, field, path_str, Reloader};
use testkit::wait_until;

/// The command line of a sigrecord called `name` (a link in `dir`) writing to `dir/NAME.out`
/// with `flags` added, and that out file.
pub fn sigrecord(dir: &Path, name: &str, flags: &[&str]) -> (Vec<String>, PathBuf) {
    let link = dir.join(name);
    std::os::unix::fs::symlink(sigrecord_bin(), &link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    let out = dir.join(format!("{name}.out"));
    let mut argv = vec![
        path_str(&link).to_string(),
        "--out".into(),
        path_str(&out).to_string(),
    ];
    argv.extend(flags.iter().map(|f| f.to_string()));
    (argv, out)
}

/// `config-reloader -- APP...` with `env` (and only PATH besides), waited for until it logs
/// `info watching`, which it does once the app is started.
pub fn start(env: &[(&str, &str)], app: &[String]) -> Reloader {
    Reloader::start_command(reloader_command(bin(), &[], env, app))
}

/// [`start`] as PID 1 of a new PID namespace with its own `/proc` (`unshare --pid --fork
/// --mount-proc`), as in a container without `--pid` sharing. `Reloader::pid` is then
/// unshare's; [`reloader_pid`] finds the reloader.
pub fn start_as_pid_1(env: &[(&str, &str)], app: &[String]) -> Reloader {
    let unshare = [
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        path_str(bin()),
    ];
    Reloader::start_command(reloader_command(Path::new("unshare"), &unshare, env, app))
}

fn reloader_command(
    program: &Path,
    before: &[&str],
    env: &[(&str, &str)],
    app: &[String],
) -> Command {
    let mut args: Vec<&str> = before.to_vec();
    args.push("--");
    args.extend(app.iter().map(String::as_str));
    command(program, env, &args)
}

/// The host pid of the reloader: `rel` itself, or the one child of `unshare` for
/// [`start_as_pid_1`].
pub fn reloader_pid(rel: &Reloader) -> i32 {
    let own = rel.pid();
    if comm(own).as_deref() != Some("unshare") {
        return own;
    }
    let kids = children(own);
    assert_eq!(kids.len(), 1, "unshare has one child: {kids:?}");
    kids[0].pid
}

/// The app's pid from the ready line (`child=PID`), as the reloader sees it.
pub fn child_pid(rel: &Reloader) -> i32 {
    let ready = rel.wait_lines("info watching", 1, T);
    field(&ready[0], "child")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no child= in {}", ready[0]))
}

/// Waits for sigrecord's `ready pid=P` line in `out` and returns P.
pub fn await_ready(out: &Path) -> i32 {
    wait_until(T, &format!("a ready line in {}", out.display()), || {
        let text = fs::read_to_string(out).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("ready pid=")?.parse().ok())
    })
}

/// Waits for the reloader to exit; its code (128+N when signal N killed it).
pub fn exit_code(rel: &mut Reloader) -> i32 {
    testkit::reloader::code(rel.wait_exit(T))
}

/// One process, from `/proc/PID/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub state: char,
    pub comm: String,
}

/// Every child of `pid`, zombies included, from the host's `/proc`.
pub fn children(pid: i32) -> Vec<Proc> {
    let mut kids: Vec<Proc> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| {
                    let (state, ppid, comm) = stat(p)?;
                    (ppid == pid).then_some(Proc {
                        pid: p,
                        state,
                        comm,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    kids.sort_by_key(|k| k.pid);
    kids
}

/// `/proc/PID/comm` without its newline.
pub fn comm(pid: i32) -> Option<String> {
    stat(pid).map(|(_, _, c)| c)
}

/// State, ppid and comm from `/proc/PID/stat` (comm may hold `)` and spaces).
fn stat(pid: i32) -> Option<(char, i32, String)> {
    let raw = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// A `/proc/PID/status` field, e.g. `status(pid, "SigBlk")`.
pub fn status(pid: i32, key: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| Some(l.strip_prefix(key)?.strip_prefix(':')?.trim().to_string()))
}

/// What each fd of `pid` points at (`/proc/PID/fd/N`), by fd number.
pub fn fds(pid: i32) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.parse().ok()?;
                    let to = fs::read_link(e.path()).ok()?;
                    Some((n, to.to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
