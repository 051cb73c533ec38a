//! Never kill, never miss, round two (issue 18, items 1, 1b and 6; issue 22 §3): what counts
//! as evidence that a target takes the signal, with real programs.
//!
//! - A mask alone is a moment, not a promise: dash and CPython's `subprocess` block every
//!   signal around each fork, and must survive a stream of changes.
//! - A refusal that waiting may lift is retried: an app that installs its handler late gets
//!   exactly one signal, once it can take it.
//! - A running thread is `default`, not `unknown`; a process ignoring the signal is refused.
//! - A runtime's catch-all handler (Go, a JVM) is not the app's: refused, alive, unless
//!   RELOAD_TRUST_HANDLER says the app handles it.
//! - A process whose main thread called `pthread_exit` is alive, and judged by its threads.

mod http;
mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::{bin, env, start, QUIET, T};
use testkit::apps::{self, debian};
use testkit::recorder::{contents, Recorder};
use testkit::reloader::{check_target, command, expect_sent, field, refused_after, Reloader};
use testkit::runtimes;
use testkit::{unique_name, wait_until, TempDir};

/// `--check` for `name`'s process `pid`: its handling, verdict and reason, and the exit code.
fn check(dir: &Path, name: &str, pid: i32, extra: &[(&str, &str)]) -> (i32, String) {
    check_target(command(bin(), &env(dir, name, extra), &[]), pid)
}

/// A change to `dir/app.conf` is refused for the process `pid` with `handling`, and it stays
/// alive (`alive`) with nothing sent; returns the refusal line.
fn refused_alive(
    dir: &Path,
    name: &str,
    pid: i32,
    alive: impl Fn() -> bool,
    handling: &str,
) -> String {
    let rel = start(dir, name, &[]);
    let change = || fs::write(dir.join("app.conf"), "v2").unwrap();
    let line = refused_after(&rel, pid, T, change, || !alive());
    if line.is_some() {
        // Only an absence can show that no signal followed the refusal.
        std::thread::sleep(QUIET);
    }
    assert!(alive(), "the app was killed; log:\n{}", rel.log());
    let line = line.expect("a refusal");
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some(handling),
        "{line}"
    );
    assert!(rel.lines("info reloaded").is_empty(), "{}", rel.log());
    line
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(!s.rsplit_once(')')?.1.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// A process the test started, killed and reaped however the test ends.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn conf_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag).unwrap();
    fs::write(dir.join("app.conf"), "v1").unwrap();
    dir
}

#[test]
fn dash_entrypoint_forking_in_a_loop_is_not_killed_with_129_by_a_stream_of_changes() {
    let dir = conf_dir("dash-fork");
    let entry = dir.join("entry.sh");
    fs::write(
        &entry,
        "#!/bin/sh\ni=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done\nexec sleep 30\n",
    )
    .unwrap();
    fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = dir.join("cfg");
    fs::create_dir(&cfg).unwrap();
    fs::write(cfg.join("app.conf"), "v0").unwrap();
    let env = [
        ("CONFIG_DIR", cfg.to_str().unwrap()),
        ("RELOAD_DEBOUNCE", "0"),
    ];
    // Stopped with SIGTERM however the test ends, so the app it forwards it to ends too.
    struct Stop(Reloader);
    impl Drop for Stop {
        fn drop(&mut self) {
            if self.0.is_running() {
                self.0.terminate();
            }
        }
    }
    let stop = Stop(Reloader::start(
        bin(),
        &env,
        &["--", entry.to_str().unwrap()],
    ));
    let rel = &stop.0;
    // The workload: one change every 100 ms for 6 s, as in the issue.
    for i in 0..60 {
        std::thread::sleep(Duration::from_millis(100));
        fs::write(cfg.join("app.conf"), format!("v{i}")).unwrap();
        assert!(rel.is_running(), "the app died:\n{}", rel.log());
    }
    std::thread::sleep(QUIET);
    let log = rel.log();
    assert!(rel.is_running() && !log.contains("app exited"), "{log}");
    assert!(!log.contains("info reloaded"), "{log}");
    assert!(log.contains("warn refusing to send SIGHUP"), "{log}");
}

#[test]
fn python_without_a_sighup_handler_running_subprocess_in_a_loop_survives_changes() {
    let dir = conf_dir("py-subprocess");
    let name = unique_name("pysubproc");
    let app = Recorder::spawn(apps::python(&name, None, "--subprocess-loop"));
    let rel = start(dir.path(), &name, &[]);
    for i in 0..30 {
        fs::write(dir.join("app.conf"), format!("v{i}")).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert!(app.is_alive(), "the app was killed:\n{}", rel.log());
    }
    std::thread::sleep(QUIET);
    assert!(app.is_alive(), "the app was killed:\n{}", rel.log());
    assert!(rel.lines("info reloaded").is_empty(), "{}", rel.log());
}

#[test]
fn an_app_that_installs_its_handler_after_the_settle_gets_exactly_one_signal_on_retry() {
    let dir = conf_dir("late-handler");
    let name = unique_name("latehup");
    let conf = dir.join("app.conf");
    let mut opts = apps::python(&name, Some(&conf), "--late-handler");
    opts.extra_args = vec!["2".into()];
    let app = Recorder::spawn(opts);
    let rel = start(dir.path(), &name, &[]);
    // The start-up look already finds no handler; the change's own refusal comes after it.
    rel.wait_lines("warn refusing to send SIGHUP", 1, T);
    let change = || fs::write(&conf, "v2").unwrap();
    let refused = refused_after(&rel, app.pid(), T, change, || !app.is_alive());
    let refused = refused.expect("a refusal while the app has no handler yet");
    assert_eq!(
        field(&refused, "handling").as_deref(),
        Some("default"),
        "{refused}"
    );
    assert_eq!(
        field(&refused, "retry_for").as_deref(),
        Some("60s"),
        "{refused}"
    );
    let got = app.expect_exactly(1, T, QUIET);
    assert_eq!(contents(&got), ["v2"], "{}", rel.log());
    let sent = rel.lines("info reloaded");
    assert_eq!(sent.len(), 1, "{}", rel.log());
    assert!(field(&sent[0], "attempt").is_some(), "{}", sent[0]);
}

#[test]
fn a_running_thread_with_the_default_action_is_default_not_a_ptrace_problem() {
    let dir = conf_dir("running");
    let name = unique_name("spinner");
    let links = TempDir::new("spin-link").unwrap();
    let sh = apps::link_as(links.path(), &name, Path::new("/bin/sh"));
    let spin = Guard(
        std::process::Command::new(&sh)
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap(),
    );
    let pid = spin.0.id() as i32;
    let (exit, line) = check(dir.path(), &name, pid, &[]);
    drop(spin);
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some("default"),
        "{line}"
    );
    assert!(!line.contains("ptrace"), "{line}");
    assert_eq!(exit, 1, "{line}");
}

#[test]
fn an_app_under_nohup_is_refused_as_not_reloading_not_reported_reloaded() {
    let dir = conf_dir("nohup");
    let name = unique_name("nohupapp");
    let links = TempDir::new("nohup-link").unwrap();
    let sleep = apps::link_as(links.path(), &name, Path::new("/bin/sleep"));
    let app = Guard(
        std::process::Command::new("nohup")
            .arg(&sleep)
            .arg("60")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = app.0.id() as i32;
    wait_until(T, "nohup to exec the app", || {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim_end() == name).then_some(())
    });
    let line = refused_alive(dir.path(), &name, pid, || alive(pid), "ignored");
    let (exit, check_line) = check(dir.path(), &name, pid, &[]);
    drop(app);
    assert!(line.contains("would not reload"), "{line}");
    assert_eq!(
        field(&check_line, "verdict").as_deref(),
        Some("refuse"),
        "{check_line}"
    );
    assert_eq!(exit, 1, "{check_line}");
}

#[test]
fn a_go_program_without_signal_notify_survives_a_change_refused_as_go() {
    let dir = conf_dir("go-plain");
    let name = unique_name("goplain");
    let app = Recorder::spawn(runtimes::go_app(&name, None, false));
    let line = refused_alive(dir.path(), &name, app.pid(), || app.is_alive(), "runtime");
    assert!(
        line.contains("Go runtime") && line.contains("RELOAD_TRUST_HANDLER"),
        "{line}"
    );
    let (exit, line) = check(dir.path(), &name, app.pid(), &[]);
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some("runtime"),
        "{line}"
    );
    assert_eq!(exit, 1, "{line}");
}

#[test]
fn a_go_program_that_notifies_sighup_reloads_with_trust_handler() {
    let dir = conf_dir("go-notify");
    let name = unique_name("gonotify");
    let conf = dir.join("app.conf");
    let app = Recorder::spawn(runtimes::go_app(&name, Some(&conf), true));
    let trust = [("RELOAD_TRUST_HANDLER", "true")];
    let rel = start(dir.path(), &name, &trust);
    fs::write(&conf, "v2").unwrap();
    let got = expect_sent(&app, &rel, 1, T, QUIET);
    assert_eq!(contents(&got), ["v2"], "{}", rel.log());
    let (exit, line) = check(dir.path(), &name, app.pid(), &trust);
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some("caught"),
        "{line}"
    );
    assert_eq!(exit, 0, "{line}");
    // RELOAD_FORCE still sends without the opt-in.
    drop(rel);
    let forced = start(dir.path(), &name, &[("RELOAD_FORCE", "true")]);
    fs::write(&conf, "v3").unwrap();
    let got = app.expect_exactly(2, T, QUIET);
    assert_eq!(contents(&got), ["v2", "v3"], "{}", forced.log());
}

#[test]
fn a_java_app_whose_main_only_sleeps_survives_a_change_refused_as_jvm() {
    debian("/usr/bin/java", "openjdk-17-jre-headless");
    let dir = conf_dir("java-sleep");
    let name = unique_name("javasleep");
    let app = Recorder::spawn(runtimes::java_sleep(&name));
    let line = refused_alive(dir.path(), &name, app.pid(), || app.is_alive(), "runtime");
    assert!(line.contains("JVM"), "{line}");
}

#[test]
fn an_app_whose_main_thread_called_pthread_exit_is_alive_and_reloaded() {
    // glibc's pthread_exit leaves the zombie leader with every signal blocked; the bare exit
    // system call leaves SIGHUP unblocked there, which a zombie cannot take either.
    for raw in [false, true] {
        let dir = conf_dir("leader-exit");
        let name = unique_name("leaderexit");
        let conf = dir.join("app.conf");
        let app = Recorder::spawn(runtimes::leader_exit(&name, &conf, raw));
        let stat = format!("/proc/{}/stat", app.pid());
        wait_until(T, "the leader thread to be a zombie", || {
            let s = fs::read_to_string(&stat).ok()?;
            s.rsplit_once(')')?
                .1
                .trim_start()
                .starts_with('Z')
                .then_some(())
        });
        let rel = start(dir.path(), &name, &[]);
        fs::write(&conf, "v2").unwrap();
        let got = expect_sent(&app, &rel, 1, T, QUIET);
        assert_eq!(contents(&got), ["v2"], "raw exit {raw}: {}", rel.log());
        let (exit, line) = check(dir.path(), &name, app.pid(), &[]);
        assert_eq!(
            field(&line, "handling").as_deref(),
            Some("waited"),
            "{line}"
        );
        assert_eq!(exit, 0, "{line}");
    }
}

#[test]
fn a_ruby_script_that_only_sleeps_survives_a_change_refused_as_ruby() {
    let dir = conf_dir("ruby-sleep");
    let name = unique_name("rubysleep");
    let app = Recorder::spawn(runtimes::ruby_sleep(&name));
    let line = refused_alive(dir.path(), &name, app.pid(), || app.is_alive(), "runtime");
    assert!(line.contains("Ruby"), "{line}");
}

/// Debian's prometheus (Go; it asks for SIGHUP with signal.Notify and reloads on it), named
/// `name`, reading `config`, on 127.0.0.1:`port`; killed and reaped on drop.
struct Prometheus {
    child: std::process::Child,
    _storage: TempDir,
}

impl Prometheus {
    fn start(name: &str, config: &Path, port: u16) -> Prometheus {
        let storage = TempDir::new("prom-sighup").unwrap();
        let exe = apps::link_as(
            storage.path(),
            name,
            &debian("/usr/bin/prometheus", "prometheus"),
        );
        let child = std::process::Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                storage.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(storage.join("log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            _storage: storage,
        };
        testkit::wait_until_every(
            Duration::from_millis(50),
            Duration::from_secs(60),
            "prometheus /-/ready",
            || http::request(port, "GET", "/-/ready").filter(|(code, _)| *code == 200),
        );
        p
    }

    fn config_in_force(&self, port: u16) -> String {
        http::request(port, "GET", "/api/v1/status/config").map_or_else(String::new, |(_, b)| b)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_on_sighup_is_refused_as_go_alive_and_reloads_with_trust_handler() {
    let dir = TempDir::new("prom-sighup-conf").unwrap();
    let port = http::closed_port();
    let job = |j: &str| {
        format!("scrape_configs:\n  - job_name: {j}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    };
    let file = dir.join("prometheus.yml");
    fs::write(&file, job("sighup-v1")).unwrap();
    let name = unique_name("prometheus");
    let prom = Prometheus::start(&name, &file, port);
    let pid = prom.child.id() as i32;
    // Without the opt-in: refused, and still serving v1.
    let rel = start(dir.path(), &name, &[]);
    let change = || fs::write(&file, job("sighup-v2")).unwrap();
    let line = refused_after(&rel, pid, T, change, || !alive(pid)).expect("a refusal");
    assert_eq!(
        field(&line, "handling").as_deref(),
        Some("runtime"),
        "{line}"
    );
    std::thread::sleep(QUIET);
    assert!(alive(pid), "prometheus was killed:\n{}", rel.log());
    assert!(prom.config_in_force(port).contains("sighup-v1"));
    drop(rel);
    // With it: one SIGHUP, the new job in force, the same process.
    let rel = start(dir.path(), &name, &[("RELOAD_TRUST_HANDLER", "true")]);
    fs::write(&file, job("sighup-v3")).unwrap();
    wait_until(T, "sighup-v3 in force", || {
        prom.config_in_force(port)
            .contains("job_name: sighup-v3")
            .then_some(())
    });
    assert_eq!(rel.lines("info reloaded").len(), 1, "{}", rel.log());
    assert!(alive(pid), "{}", rel.log());
}
