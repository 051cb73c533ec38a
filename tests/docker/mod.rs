//! Docker plumbing for the end-to-end tests: the images ([`images`], [`servers`]), containers
//! that remove themselves, a pod-like pair of app and sidecar ([`pod`]), and small probes of
//! what runs inside them.
//!
//! Every image and container carries the label [`LABEL`] with this run's id as value, so
//! `make clean` finds anything a killed run left behind.
//!
//! Several test binaries include this module and each uses a part of it.
#![allow(dead_code)]

mod images;
pub mod pod;
mod servers;

pub use images::{image, Image};

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::TempDir;

/// Label key on every image and container the tests create (value: the run id).
pub const LABEL: &str = "io.github.config-reloader-sidecar.e2e";

/// Generous for a loaded CI machine; conditions usually hold within a few hundred ms.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// How long "nothing else happens" is watched for: several times the default 100 ms debounce
/// plus the fingerprint, so a second signal or a reload would have shown by then. Only used to
/// prove an absence, which no condition can be waited for.
pub const QUIET: Duration = Duration::from_millis(700);

/// The musl target the images' static binaries are built for.
pub(crate) const MUSL: &str = "x86_64-unknown-linux-musl";

/// A unique id for this test binary's run: names and label values derive from it.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}-{:x}", std::process::id(), nanos % (1 << 32))
    })
}

/// Runs `docker ARGS`; panics with a clear message if docker itself cannot be run.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `docker` ({e}): the e2e tests need the docker CLI and a running engine"
            )
        })
}

/// Runs `docker ARGS`, panics with its stderr unless it succeeds, returns trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `<target>/x86_64-unknown-linux-musl/release/NAME`, checked to be up to date
/// (`testkit::reloader::release_build`); `make build-test-bins` builds it.
pub fn musl_binary(name: &str) -> PathBuf {
    testkit::reloader::release_build(MUSL, name, "make build-test-bins")
}

/// True if `ldd` says the ELF file needs no dynamic libraries.
pub fn is_static(bin: &Path) -> bool {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .expect("cannot run ldd");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    text.contains("statically linked") || text.contains("not a dynamic executable")
}

/// A container removed (with its anonymous volumes) on drop; if the test is failing, its logs
/// are printed first so the failure explains itself.
pub struct Container {
    /// The unique container name.
    pub name: String,
}

impl Container {
    /// `docker run -d --name <unique> --label ... ARGS` (ARGS: options, image, command).
    pub fn run(role: &str, args: &[&str]) -> Container {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // The guard exists before `docker run`, so a container created but not started is
        // removed as well.
        let c = Container {
            name: format!("crs-e2e-{}-{n}-{role}", run_id()),
        };
        let label = format!("{LABEL}={}", run_id());
        let mut all = vec!["run", "-d", "--name", &c.name, "--label", &label];
        all.extend_from_slice(args);
        docker_ok(&all);
        c
    }

    /// stdout and stderr the container wrote so far.
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `docker inspect -f FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.name])
    }

    /// The pid of the container's first process, as seen from this (the host's) namespace.
    pub fn host_pid(&self) -> i32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|_| panic!("{}: bad pid {pid:?}", self.name))
    }

    /// Whether the container is still running.
    pub fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// The container's address on the default bridge.
    pub fn ip(&self) -> String {
        self.inspect("{{.NetworkSettings.IPAddress}}")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- logs of {} ---\n{}--- end ---", self.name, self.logs());
        }
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// [`testkit::wait_until`] checking every 50 ms: each check of a container spawns the docker
/// CLI, which is not free on a small CI machine.
pub fn wait_docker<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    testkit::wait_until_every(Duration::from_millis(50), timeout, what, f)
}

/// `GET /` over HTTP/1.1 with `Connection: close`; the body, or `None` while nothing answers.
pub fn http_get(host: &str, port: u16) -> Option<String> {
    http_response(host, port).map(|(_, body)| body)
}

/// `GET /` over HTTP/1.1 with `Connection: close`: the response head and body of a 200, or
/// `None` while nothing answers 200.
pub fn http_response(host: &str, port: u16) -> Option<(String, String)> {
    let addr = format!("{host}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| (head.to_string(), body.to_string()))
}

/// The value of header `name` (any case) in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Live (non-zombie) children of `pid`, from the host's `/proc/*/stat`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return kids;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Processes vanish between readdir and read: skip them.
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // comm is in parentheses and may hold `)` or spaces: fields start after the last `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) && state != Some("Z") {
            kids.push(child);
        }
    }
    kids.sort_unstable();
    kids
}

/// The real UID of host pid `pid`, from `/proc/PID/status`.
pub fn uid_of(pid: i32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid line")
}

/// A directory `name` under `parent` with `mode`, for bind mounts containers must read or write.
pub fn dir_with_mode(parent: &TempDir, name: &str, mode: u32) -> PathBuf {
    let p = parent.join(name);
    fs::create_dir(&p).expect("mkdir");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    p
}
