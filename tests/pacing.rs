//! When and how often the reloader signals, and to whom by pid file (issue 22): a kubelet
//! update at its commit with no debounce, RELOAD_MIN_INTERVAL coalescing what follows a reload,
//! and RELOAD_PID_FILE with sigrecord and with Debian's nginx and its own pid file.

mod http;
mod poll_common;
mod support;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use poll_common::{await_idle, switches};
use support::{bin, kv, spawn_app, start, QUIET, T};
use testkit::apps::{self, debian};
use testkit::kubelet::Volume;
use testkit::recorder::{contents, Options, Recorder};
use testkit::reloader::{command, field, path_str, Reloader};
use testkit::{unique_name, wait_until, TempDir};

/// A debounce far longer than any commit → signal: a signal within [`FAST`] did not wait for it.
const LONG_DEBOUNCE: &str = "3s";
const FAST: Duration = Duration::from_millis(1500);

/// Regression (issue 22 §1): a kubelet update waited the whole debounce after its commit
/// (101 ms by default), though the `..data` swap already says it is complete; an added key,
/// linked after the commit, too. A plain directory still waits for its debounce.
#[test]
fn a_kubelet_update_is_signalled_at_its_commit_without_waiting_for_the_debounce() {
    let name = unique_name("atcommit");
    let dir = TempDir::new("at-commit").unwrap();
    let vol = Volume::create(dir.path(), &kv(&[("app.conf", "v1")])).unwrap();
    let plain = TempDir::new("at-commit-plain").unwrap();
    fs::write(plain.join("p.conf"), "p1").unwrap();
    let app = spawn_app(&name, &dir.join("new.conf"));
    let rel = support::start_dirs(
        &[dir.path(), plain.path()],
        &name,
        &[
            ("RELOAD_DEBOUNCE", LONG_DEBOUNCE),
            ("RELOAD_MIN_INTERVAL", "0"),
        ],
    );
    // A key added: the commit, then its link, and only then is the update complete.
    vol.update(&kv(&[("app.conf", "v2"), ("new.conf", "added")]))
        .unwrap();
    wait_until(FAST, "the signal well before the 3 s debounce", || {
        (!app.received().is_empty()).then_some(())
    });
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["added"]);

    fs::write(plain.join("p.conf"), "p2").unwrap();
    // Proves an absence: half the debounce, in which a plain change must not be signalled.
    sleep(FAST);
    assert_eq!(
        app.received().len(),
        1,
        "a plain change skipped its debounce"
    );
    app.expect_exactly(2, T, QUIET);
    assert_eq!(rel.lines("info reloaded").len(), 2, "{}", rel.log());
}

/// Regression (issue 22 §2): every settled change was signalled, however soon after the last;
/// a flapping source reloaded the app without pause. Within RELOAD_MIN_INTERVAL after a
/// reload, changes are coalesced into one reload at its end, with the latest content.
#[test]
fn changes_within_the_min_interval_are_one_reload_at_its_end_with_the_latest_content() {
    let name = unique_name("paced");
    let dir = TempDir::new("paced").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"0".as_slice())]).unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(dir.path(), &name, &[("RELOAD_MIN_INTERVAL", "2s")]);
    vol.update(&[("app.conf", b"1".as_slice())]).unwrap();
    let first = app.wait_received(1, T);
    assert_eq!(contents(&first), ["1"], "a lone update goes at once");
    for i in 2..=30 {
        vol.update(&[("app.conf", i.to_string().as_bytes())])
            .unwrap();
    }
    let got = app.wait_received(2, T);
    assert_eq!(contents(&got), ["1", "30"], "{}", rel.log());
    let gap = Duration::from_nanos(got[1].t_ns - got[0].t_ns);
    assert!(
        gap >= Duration::from_millis(1900),
        "second reload after {gap:?}"
    );
    app.expect_exactly(2, T, QUIET);
    let line = rel.wait_lines("info coalesced changes into one reload", 1, T);
    let changes: u32 = field(&line[0], "changes").unwrap().parse().unwrap();
    assert!((1..=29).contains(&changes), "{}", line[0]);
    assert_eq!(field(&line[0], "min_interval").as_deref(), Some("2s"));
}

/// The interval's timer is the settle's deadline: once the coalesced reload is done (its
/// confirmation included), nothing is pending and the reloader sleeps in ppoll with no
/// timeout, however soon the next interval would end.
#[test]
fn after_a_coalesced_reload_the_reloader_never_wakes_up() {
    let name = unique_name("pacedidle");
    let dir = TempDir::new("paced-idle").unwrap();
    let vol = Volume::create(dir.path(), &[("app.conf", b"0".as_slice())]).unwrap();
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(dir.path(), &name, &[("RELOAD_MIN_INTERVAL", "1s")]);
    vol.update(&[("app.conf", b"1".as_slice())]).unwrap();
    app.wait_received(1, T);
    vol.update(&[("app.conf", b"2".as_slice())]).unwrap();
    assert_eq!(contents(&app.wait_received(2, T)), ["1", "2"]);
    rel.wait_lines("info coalesced changes into one reload", 1, T);
    // Done once RELOAD_CONFIRM=alive has looked, 1 s after the signal: its one timer.
    rel.wait_lines("info reload succeeded", 2, T);
    await_idle(rel.pid());
    let before = switches(rel.pid());
    // Proves an absence: two intervals, in which a timer left armed would fire.
    sleep(Duration::from_secs(2));
    assert_eq!(switches(rel.pid()) - before, 0, "{}", rel.log());
}

/// Regression (issue 22 §3): a process started after the change, still without its handler
/// when the change settled, was refused for now and retried, and got the signal once its
/// handler was in place, though it had read the new content when it started.
#[test]
fn a_process_started_after_the_change_is_not_retried_once_its_handler_is_in() {
    let dir = TempDir::new("after-change").unwrap();
    let conf = dir.join("app.conf");
    fs::write(&conf, "v1").unwrap();
    let name = unique_name("latestart");
    let rel = start(
        dir.path(),
        &name,
        &[
            ("RELOAD_DEBOUNCE", "1s"),
            ("RELOAD_MIN_INTERVAL", "0"),
            ("VERBOSE", "true"),
        ],
    );
    fs::write(&conf, "v2").unwrap();
    rel.wait_lines("debug possible change", 1, T);
    // Start times count in 10 ms ticks, and the reloader gives 20 ms of doubt to the process:
    // start it clearly after the change, within the debounce. Its handler comes 2 s later.
    sleep(Duration::from_millis(100));
    let mut opts = apps::python(&name, Some(&conf), "--late-handler");
    opts.extra_args = vec!["2".into()];
    let app = Recorder::spawn(opts);
    let refused = rel
        .wait_lines("warn refusing to send SIGHUP", 1, T)
        .remove(0);
    assert_eq!(field(&refused, "pid"), Some(app.pid().to_string()));
    assert_eq!(field(&refused, "retry_for"), None, "{refused}");
    // Proves an absence: past its handler and several retries' backoff.
    sleep(Duration::from_secs(2) + QUIET);
    assert!(app.is_alive());
    assert!(app.received().is_empty(), "{}", rel.log());
}

/// A recorder named `name`, and a pid file naming it (fresh: written after it started).
fn app_with_pid_file(name: &str, dir: &Path, pid_file: &Path) -> Recorder {
    let app = Recorder::spawn(Options {
        name: Some(name.into()),
        read: Some(dir.join("app.conf")),
        ..Options::default()
    });
    fs::write(pid_file, format!("{}\n", app.pid())).unwrap();
    app
}

fn pid_file_reloader(dir: &Path, pid_file: &Path, extra: &[(&str, &str)]) -> Reloader {
    let mut env = vec![
        ("CONFIG_DIR", path_str(dir)),
        ("RELOAD_PID_FILE", path_str(pid_file)),
    ];
    env.extend_from_slice(extra);
    Reloader::start(bin(), &env, &[])
}

/// Regression (issue 22 §4): a pid file older than the process it names (the pid was
/// recycled after the app that wrote it died) was believed. Missing, empty and garbled files
/// are warnings; the next good file is used, read afresh.
#[test]
fn a_stale_missing_empty_or_garbled_pid_file_signals_nobody_and_a_fresh_one_is_used() {
    let name = unique_name("pidfile");
    let dir = TempDir::new("pidfile").unwrap();
    let run = TempDir::new("pidfile-run").unwrap();
    let pid_file = run.join("app.pid");
    fs::write(dir.join("app.conf"), "1").unwrap();
    let app = app_with_pid_file(&name, dir.path(), &pid_file);
    let rel = pid_file_reloader(dir.path(), &pid_file, &[]);

    // Older than the process: what a pid recycled since the file was written looks like.
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&pid_file)
        .and_then(|f| f.set_modified(old))
        .unwrap();
    let mut n = 0;
    let mut change = |v: &str, expect: &str| {
        fs::write(dir.join("app.conf"), v).unwrap();
        n += 1;
        // Each change ends in its outcome line; the pid file's warning comes before it.
        rel.wait_lines("warn reload failed", n, T);
        let lines = rel.lines("warn ");
        let line = lines
            .iter()
            .rfind(|l| !l.starts_with("warn reload failed"))
            .unwrap()
            .clone();
        assert!(line.contains(expect), "{line}");
        assert_eq!(
            field(&line, "pid_file").as_deref(),
            Some(path_str(&pid_file))
        );
        line
    };
    let stale = change("2", "older than the process it names");
    assert_eq!(field(&stale, "pid"), Some(app.pid().to_string()));
    fs::write(&pid_file, "").unwrap();
    change("3", "pid file is empty");
    fs::write(&pid_file, "nginx: [emerg]\n").unwrap();
    change("4", "pid file holds no pid");
    fs::remove_file(&pid_file).unwrap();
    change("5", "pid file is missing");
    assert!(app.received().is_empty(), "{}", rel.log());
    assert!(rel.is_running());

    fs::write(&pid_file, format!("{}\n", app.pid())).unwrap();
    fs::write(dir.join("app.conf"), "6").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["6"]);
}

/// With PROCESS_NAME too, the pid file's process must bear that name; `--check` shows what
/// the file names.
#[test]
fn pid_file_and_process_name_must_agree_and_check_shows_the_file() {
    let name = unique_name("pidname");
    let dir = TempDir::new("pidname").unwrap();
    let run = TempDir::new("pidname-run").unwrap();
    let pid_file = run.join("app.pid");
    fs::write(dir.join("app.conf"), "1").unwrap();
    let app = app_with_pid_file(&name, dir.path(), &pid_file);

    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_PID_FILE", path_str(&pid_file)),
        ("PROCESS_NAME", name.as_str()),
    ];
    let out = command(bin(), &env, &["--check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "pid file {}: pid={}",
            pid_file.display(),
            app.pid()
        )),
        "{text}"
    );
    assert!(out.status.success(), "{text}");

    let other = unique_name("notit");
    let rel = pid_file_reloader(dir.path(), &pid_file, &[("PROCESS_NAME", other.as_str())]);
    fs::write(dir.join("app.conf"), "2").unwrap();
    let line = rel.wait_lines("warn refusing to signal", 1, T).remove(0);
    assert!(line.contains("not PROCESS_NAME"), "{line}");
    assert!(app.received().is_empty());
}

/// Debian's nginx on a loopback port, its prefix, configuration and pid file in `root`, in the
/// foreground; serves `include`d `value.conf` from `conf`.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(root: &Path, conf: &Path, pid_file: &Path) -> Nginx {
        let nginx = debian("/usr/sbin/nginx", "nginx-light");
        let port = http::closed_port();
        fs::create_dir_all(root.join("logs")).unwrap();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {};\nerror_log {}/logs/error.log;\n\
             events {{ worker_connections 16; }}\n\
             http {{ access_log off; client_body_temp_path {r}/logs; proxy_temp_path {r}/logs;\n\
             fastcgi_temp_path {r}/logs; uwsgi_temp_path {r}/logs; scgi_temp_path {r}/logs;\n\
             server {{ listen 127.0.0.1:{port}; location / {{ include {}/value.conf; }} }} }}\n",
            pid_file.display(),
            root.display(),
            conf.display(),
            r = root.display(),
        );
        fs::write(root.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Nginx { child, port }
    }

    fn serves(&self) -> Option<String> {
        http::request(self.port, "GET", "/").map(|(_, body)| body)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: nginx's graceful stop, which removes its pid file and ends its workers.
        let _ = testkit::kill(self.child.id() as i32, libc::SIGQUIT);
        if wait_until_exit(&mut self.child).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_until_exit(child: &mut Child) -> Option<std::process::ExitStatus> {
    for _ in 0..500 {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        sleep(Duration::from_millis(10));
    }
    None
}

fn value(colour: &str) -> String {
    format!("return 200 \"{colour}\\n\";\n")
}

/// Issue 22 §4 with a real app: nginx writes its own pid file (`pid` directive), the
/// reloader signals the pid it holds, and nginx serves the new value after the change.
#[test]
fn nginx_is_reloaded_through_its_own_pid_file() {
    let root = TempDir::new("nginx-pid").unwrap();
    let conf = TempDir::new("nginx-pid-conf").unwrap();
    let run = TempDir::new("nginx-pid-run").unwrap();
    let pid_file = run.join("nginx.pid");
    fs::write(conf.join("value.conf"), value("blue")).unwrap();
    let nginx = Nginx::start(root.path(), conf.path(), &pid_file);
    wait_until(T, "nginx to serve blue", || {
        (nginx.serves().as_deref() == Some("blue\n")).then_some(())
    });
    assert!(pid_file.exists(), "nginx wrote no pid file");
    let rel = pid_file_reloader(conf.path(), &pid_file, &[("PROCESS_NAME", "nginx")]);

    fs::write(conf.join("value.conf"), value("green")).unwrap();
    wait_until(T, "nginx to serve green", || {
        (nginx.serves().as_deref() == Some("green\n")).then_some(())
    });
    let sent = rel.wait_lines("info reloaded", 1, T);
    assert_eq!(
        field(&sent[0], "pid"),
        Some(nginx.child.id().to_string()),
        "{}",
        rel.log()
    );
}
