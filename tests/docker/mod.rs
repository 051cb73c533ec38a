//! Docker plumbing for the end-to-end tests: the images (built `FROM scratch` from files on this
//! machine, since no registry can be reached), containers that remove themselves, and small
//! probes of what runs inside them.
//!
//! Every image and container carries the label [`LABEL`] with this run's id as value, so
//! `make clean` finds anything a killed run left behind. Images are built once per test binary
//! (the tests run in parallel threads) and removed when the binary exits, pass or fail.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::TempDir;

/// Label key on every image and container the tests create (value: the run id).
pub const LABEL: &str = "io.github.config-reloader-sidecar.e2e";

/// The musl target the images' static binaries are built for.
const MUSL: &str = "x86_64-unknown-linux-musl";

/// How the images are tagged; all are removed at exit.
pub struct Images {
    /// `Dockerfile.scratch` built from the release binary: the product as users get it.
    pub sidecar: String,
    /// busybox-static plus `/sigrecord`: an app that records the signals it receives.
    pub app: String,
    /// Debian's nginx with the libraries `ldd` lists, serving `/config/value.conf`.
    pub nginx: String,
}

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

/// Builds the images on first use (once per test binary) and returns their tags.
///
/// A failed build fails every test with the same message instead of being retried by each.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    let built = IMAGES.get_or_init(|| {
        std::panic::catch_unwind(build_images).map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match built {
        Ok(images) => images,
        Err(why) => panic!("the e2e images could not be built: {why}"),
    }
}

fn build_images() -> Images {
    let out = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success(),
        "the e2e tests need a running docker engine; `docker version` said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // Registered before building so a half-built set is removed too.
    // SAFETY: `remove_everything` is an `extern "C" fn()` that never unwinds (it only spawns
    // `docker` and ignores every error); atexit only stores the pointer.
    let rc = unsafe { libc::atexit(remove_everything) };
    assert_eq!(rc, 0, "atexit failed");
    let tag = |what: &str| format!("config-reloader-e2e-{what}:{}", run_id());
    let images = Images {
        sidecar: tag("sidecar"),
        app: tag("app"),
        nginx: tag("nginx"),
    };
    std::thread::scope(|s| {
        let builds = [
            s.spawn(|| build_sidecar(&images.sidecar)),
            s.spawn(|| build_app(&images.app)),
            s.spawn(|| build_nginx(&images.nginx)),
        ];
        for build in builds {
            if let Err(payload) = build.join() {
                std::panic::resume_unwind(payload);
            }
        }
    });
    images
}

/// At exit: remove this run's containers (normally gone already) and images.
extern "C" fn remove_everything() {
    let filter = format!("label={LABEL}={}", run_id());
    for (list, remove) in [
        (["ps", "-aq", "--filter"], &["rm", "-f", "-v"][..]),
        (["images", "-q", "--filter"], &["rmi", "-f"][..]),
    ] {
        let Ok(out) = Command::new("docker").args(list).arg(&filter).output() else {
            return;
        };
        let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(remove)
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `<target>/x86_64-unknown-linux-musl/release/NAME`, checked to be newer than every source
/// file cargo's dep-info (`NAME.d`) lists for it.
///
/// `cargo test` cannot build it: a nested cargo would wait forever on the build directory lock
/// the outer one holds. `make test` builds it first.
pub fn musl_binary(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join(MUSL).join("release").join(name);
    let hint = "build it first: `make build-test-bins` (`make test` does)";
    let built = fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; {hint}", bin.display()));
    // `path/to/bin: src/main.rs src/config.rs ...`
    let dep_info = fs::read_to_string(bin.with_extension("d")).unwrap_or_default();
    let sources = dep_info.split_once(": ").map_or("", |(_, deps)| deps);
    for source in sources.split_whitespace() {
        if let Ok(changed) = fs::metadata(source).and_then(|m| m.modified()) {
            assert!(
                built >= changed,
                "{} is older than {source}; {hint}",
                bin.display()
            );
        }
    }
    bin
}

/// `docker build` of `context` with our label; `dockerfile` defaults to `context/Dockerfile`.
fn build(tag: &str, context: &Path, dockerfile: Option<&Path>, build_args: &[String]) {
    let label = format!("{LABEL}={}", run_id());
    let mut args = vec!["build", "--quiet", "--label", &label, "-t", tag];
    let file;
    if let Some(f) = dockerfile {
        file = f.to_string_lossy().into_owned();
        args.extend(["-f", &file]);
    }
    for a in build_args {
        args.extend(["--build-arg", a]);
    }
    let ctx = context.to_string_lossy();
    args.push(&ctx);
    docker_ok(&args);
}

/// The product image, from the real `Dockerfile.scratch`, in a context holding only the binary
/// where `make` stages it (`target/dist/ARCH/`), with TARGETARCH passed as `make image` does.
fn build_sidecar(tag: &str) {
    let bin = musl_binary("config-reloader");
    let ctx = TempDir::new("crs-e2e-ctx").expect("temp dir");
    let dest = ctx.join("target/dist/amd64/config-reloader");
    fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    fs::copy(&bin, &dest).expect("copy binary");
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile.scratch");
    let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
    build(
        tag,
        ctx.path(),
        Some(&dockerfile),
        &[version, "TARGETARCH=amd64".into()],
    );
}

/// A root filesystem being assembled in a temp dir, then built `FROM scratch`.
struct Rootfs {
    ctx: TempDir,
}

impl Rootfs {
    fn new() -> Rootfs {
        let rootfs = Rootfs {
            ctx: TempDir::new("crs-e2e-ctx").expect("temp dir"),
        };
        fs::write(
            rootfs.ctx.join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\n",
        )
        .expect("write Dockerfile");
        rootfs.dir("/tmp", 0o1777);
        rootfs
    }

    /// `path` inside the image, as a path in the build context.
    fn at(&self, path: &str) -> PathBuf {
        self.ctx.join("rootfs").join(path.trim_start_matches('/'))
    }

    /// A directory with exactly `mode` (COPY keeps modes).
    fn dir(&self, path: &str, mode: u32) {
        let p = self.at(path);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Copies the host file `from` (symlinks followed) to `path` in the image, mode kept.
    fn copy(&self, from: &Path, path: &str) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::copy(from, &p).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    fn link(&self, target: &str, path: &str) {
        symlink(target, self.at(path)).expect("symlink");
    }

    fn build(self, tag: &str) {
        build(tag, self.ctx.path(), None, &[]);
    }
}

/// Debian's busybox-static (one static binary, `sh` links to it) and the static `sigrecord`.
fn build_app(tag: &str) {
    let sigrecord = musl_binary("sigrecord");
    let rootfs = Rootfs::new();
    rootfs.copy(&busybox(), "/bin/busybox");
    for applet in ["sh", "sleep", "kill", "cat"] {
        rootfs.link("busybox", &format!("/bin/{applet}"));
    }
    rootfs.copy(&sigrecord, "/sigrecord");
    rootfs.build(tag);
}

/// `/bin/busybox` from Debian's busybox-static, checked to be static.
fn busybox() -> PathBuf {
    let bin = PathBuf::from("/bin/busybox");
    assert!(
        is_static(&bin),
        "{} is not a static binary; `make deps` installs busybox-static",
        bin.display()
    );
    bin
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

/// nginx as non-root (it is run as 65534): every writable path it wants is under 1777 dirs, the
/// served value is `include`d from the config volume mounted at `/config`.
const NGINX_CONF: &str = r#"daemon off;
master_process on;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    default_type text/plain;
    access_log off;
    server {
        listen 8080;
        location / { include /config/value.conf; }
    }
}
"#;

/// Debian's nginx with every library `ldd` lists (paths kept, loader included).
fn build_nginx(tag: &str) {
    let nginx = Path::new("/usr/sbin/nginx");
    assert!(
        nginx.exists(),
        "/usr/sbin/nginx is missing; `make deps` installs nginx-light"
    );
    let rootfs = Rootfs::new();
    rootfs.copy(nginx, "/usr/sbin/nginx");
    for lib in shared_libraries(nginx) {
        rootfs.copy(&lib, &lib.to_string_lossy());
    }
    rootfs.copy(Path::new("/etc/nginx/mime.types"), "/etc/nginx/mime.types");
    rootfs.write("/etc/nginx/nginx.conf", NGINX_CONF);
    rootfs.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
    );
    rootfs.write("/etc/group", "root:x:0:\nnogroup:x:65534:\n");
    for dir in ["/var/lib/nginx", "/var/log/nginx", "/run"] {
        rootfs.dir(dir, 0o1777);
    }
    rootfs.build(tag);
}

/// Absolute paths `ldd` resolves for `bin`, including the dynamic loader.
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .expect("cannot run ldd");
    assert!(out.status.success(), "ldd {} failed", bin.display());
    // Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`,
    // `/lib64/ld-linux-x86-64.so.2 (0x...)` or `linux-vdso.so.1 (0x...)` (in the kernel).
    let libs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    assert!(
        libs.iter()
            .any(|l| l.to_string_lossy().contains("ld-linux")),
        "ldd {} listed no dynamic loader: {libs:?}",
        bin.display()
    );
    libs
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
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
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
