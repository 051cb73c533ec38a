//! Reload over HTTP with a real app (issue 13): Debian's `prometheus` run with
//! `--web.enable-lifecycle`, its `prometheus.yml` in a kubelet volume, and the sidecar with
//! `RELOAD_WEBHOOK_URL=http://127.0.0.1:PORT/-/reload` and no `PROCESS_NAME`.
//!
//! The pod has no `shareProcessNamespace`: the sidecar runs in a PID namespace of its own
//! (`unshare --pid --fork --mount-proc`) and shares only the network namespace with
//! Prometheus, a plain host process on a free port with its own storage directory. That is a
//! pod's shape exactly (one loopback, separate process trees) without building an image; the
//! test shows the sidecar cannot see Prometheus, which would fail a signal-based sidecar.
//!
//! Judged by what Prometheus does: the new scrape job is in `/api/v1/status/config`, its PID
//! is unchanged, it logged one more completed config load and the sidecar one `info reloaded
//! over HTTP` line; a same-content update and a chmod reach Prometheus not at all.

mod http;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use support::bin;
use testkit::apps::debian;
use testkit::kubelet::{UpdateOptions, Volume};
use testkit::reloader::{command, field, path_str, Reloader};
use testkit::{monotonic_ns, wait_until_every, TempDir};

/// Prometheus opens its TSDB and web server in a second or two; generous for a loaded machine.
const START: Duration = Duration::from_secs(60);
const T: Duration = Duration::from_secs(15);
/// How long "nothing else happens" is watched for: several times the 100 ms debounce plus a
/// reload, which takes Prometheus tens of ms. Only proves an absence.
const QUIET: Duration = Duration::from_millis(800);

/// prometheus.yml with one scrape job per name, all scraping Prometheus itself.
fn config(port: u16, jobs: &[&str]) -> String {
    let mut c = String::from("global:\n  scrape_interval: 1m\nscrape_configs:\n");
    for job in jobs {
        c.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ));
    }
    c
}

/// Prometheus as a plain host process; killed and reaped on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    _storage: TempDir,
}

impl Prometheus {
    /// Listening on 127.0.0.1:`port` (free a moment ago), reading `config_file`.
    fn start(config_file: &Path, port: u16) -> Prometheus {
        let exe = debian("/usr/bin/prometheus", "prometheus");
        let storage = TempDir::new("prom-data").unwrap();
        let log = storage.join("prometheus.log");
        let child = Command::new(exe)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                storage.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            port,
            log,
            _storage: storage,
        };
        let ready = wait_until_every(
            Duration::from_millis(50),
            START,
            "prometheus /-/ready",
            || http::request(port, "GET", "/-/ready").filter(|(code, _)| *code == 200),
        );
        assert_eq!(ready.0, 200, "{}", p.log());
        p
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Config loads it completed (start-up counts as one).
    fn loads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("Completed loading of configuration file"))
            .count()
    }

    /// The YAML of the configuration in force, as the API reports it.
    fn config_in_force(&self) -> String {
        let (code, body) = http::request(self.port, "GET", "/api/v1/status/config")
            .expect("prometheus answers /api/v1/status/config");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Field 22 of /proc/PID/stat: the start time, which a restart under the same pid changes.
    fn start_time(&self) -> String {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split(' ').collect();
        fields[20].to_string()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `unshare` putting the reloader in a PID namespace of its own, with its own /proc.
fn own_pid_namespace(env: &[(&str, &str)], args: &[&str]) -> Command {
    let unshare = debian("/usr/bin/unshare", "util-linux");
    let mut all = vec![
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        path_str(bin()),
    ];
    all.extend_from_slice(args);
    command(&unshare, env, &all)
}

#[test]
fn prometheus_reloads_its_scrape_config_over_http_without_a_shared_pid_namespace() {
    let dir = TempDir::new("prom-config").unwrap();
    let port = http::closed_port();
    let v1 = config(port, &["webhook-v1"]);
    let vol = Volume::create(dir.path(), &[("prometheus.yml", v1.as_bytes())]).unwrap();
    let mut prom = Prometheus::start(&dir.join("prometheus.yml"), port);
    let reload = format!("http://127.0.0.1:{port}/-/reload");
    let in_force = prom.config_in_force();
    assert!(in_force.contains("job_name: webhook-v1"), "{in_force}");
    assert!(!in_force.contains("webhook-v2"), "{in_force}");
    let pid = prom.child.id();
    let started = prom.start_time();
    let loads = prom.loads();

    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("RELOAD_WEBHOOK_URL", reload.as_str()),
    ];
    // In its own PID namespace the sidecar sees no prometheus: signalling could not work.
    let check_env = [env[0], env[1], ("PROCESS_NAME", "prometheus")];
    let out = own_pid_namespace(&check_env, &["--check"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("problem: no process named prometheus is visible"),
        "{report}"
    );
    assert!(
        report.contains("accepts connections (TCP connect only"),
        "{report}"
    );

    let rel = Reloader::start_command(own_pid_namespace(&env, &[]));
    let ready = &rel.lines("info watching")[0];
    assert_eq!(field(ready, "webhook").as_deref(), Some(reload.as_str()));
    assert_eq!(field(ready, "process").as_deref(), Some(""), "{ready}");

    let v2 = config(port, &["webhook-v1", "webhook-v2"]);
    let commit = vol.update_with(
        &[("prometheus.yml", v2.as_bytes())],
        &UpdateOptions::default(),
    );
    let commit_ns = commit.unwrap().expect("changed").commit_ns;
    wait_until_every(Duration::from_millis(2), T, "webhook-v2 in force", || {
        prom.config_in_force()
            .contains("job_name: webhook-v2")
            .then_some(())
    });
    let visible_ms = (monotonic_ns() - commit_ns) as f64 / 1e6;
    let line = &rel.wait_lines("info reloaded over HTTP", 1, T)[0];
    println!(
        "prometheus: new scrape config visible {visible_ms:.0} ms after the commit; request took_ms={}",
        field(line, "took_ms").unwrap_or_default()
    );
    assert_eq!(field(line, "status").as_deref(), Some("200"), "{line}");
    assert_eq!(field(line, "attempts").as_deref(), Some("1"), "{line}");
    assert_eq!(prom.loads(), loads + 1, "{}", prom.log());
    assert!(
        prom.child.try_wait().unwrap().is_none(),
        "prometheus exited"
    );
    assert_eq!((prom.child.id(), prom.start_time()), (pid, started.clone()));

    // A chmod, then a resync that swaps ..data to the same bytes: nothing reaches Prometheus.
    let file = vol.data_dir().unwrap().join("prometheus.yml");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let resync = UpdateOptions {
        swap_on_equal: true,
        ..UpdateOptions::default()
    };
    let swapped = vol.update_with(&[("prometheus.yml", v2.as_bytes())], &resync);
    assert!(swapped.unwrap().is_some());
    sleep(QUIET);
    assert_eq!(
        rel.lines("info reloaded over HTTP").len(),
        1,
        "{}",
        rel.log()
    );
    assert_eq!(prom.loads(), loads + 1, "{}", prom.log());
    assert!(rel.lines("warn").is_empty(), "{}", rel.log());
    assert_eq!((prom.child.id(), prom.start_time()), (pid, started));
}
