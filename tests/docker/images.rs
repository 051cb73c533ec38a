//! The images, built `FROM scratch` from files on this machine (no registry can be reached):
//! the product image from `Dockerfile.scratch`, and each app from its Debian package's files
//! plus every library `ldd` lists for them.
//!
//! Each test binary names the images it uses in `crate::IMAGES`; the first [`image`] call
//! builds them all in parallel threads, once per binary, and they are removed when the binary
//! exits, pass or fail. A failed build (a missing package, say) fails only the tests that use
//! that image, each with the same one-line reason.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use testkit::TempDir;

use super::{docker, docker_ok, musl_binary, run_id, servers, LABEL};

/// Every image a test can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// `Dockerfile.scratch` built from the release binary: the product as users get it.
    Sidecar,
    /// busybox-static plus `/sigrecord`: an app that records the signals it receives.
    App,
    /// Debian's nginx as 65534, serving what `/config/value.conf` says.
    Nginx,
    /// Debian's pgbouncer as 65534, configured by `/config/pgbouncer.ini`.
    Pgbouncer,
    /// Debian's haproxy as 65534 in master-worker mode, configured by `/config/haproxy.cfg`.
    Haproxy,
    /// Debian's postgres as 65534 (initdb at build time), including `/config/work_mem.conf`.
    Postgres,
    /// Debian's apache2 as 65534, including `/config/site.conf`.
    Apache2,
    /// Debian's tini as PID 1, running the nginx of [`Image::Nginx`] as 65534.
    Tini,
    /// Debian's dumb-init as PID 1, running the nginx of [`Image::Nginx`] as 65534.
    DumbInit,
    /// A distroless-like nginx: nginx and its libraries, no shell, as 65534, run by
    /// `CMD ["/usr/sbin/nginx", "-g", "daemon off;"]`.
    Distroless,
    /// [`Image::Distroless`] plus the binary, copied out of [`Image::Sidecar`] with
    /// `COPY --from` as the README shows; built once both are.
    Embedded,
}

/// One built image.
pub struct Built {
    /// The tag to `docker run`.
    pub tag: String,
    /// The Debian package the app's main binary came from and its version, read at build
    /// time (`dpkg-query`); `None` for our own images.
    pub package: Option<(String, String)>,
}

/// The image `which`, built on first use together with the rest of `crate::IMAGES`.
///
/// Panics with the build's one-line reason if it could not be built.
pub fn image(which: Image) -> &'static Built {
    static BUILT: OnceLock<Vec<(Image, Result<Built, String>)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| build_all(crate::IMAGES));
    match built.iter().find(|(i, _)| *i == which) {
        Some((_, Ok(b))) => b,
        Some((_, Err(why))) => panic!("the {which:?} image could not be built: {why}"),
        None => panic!("{which:?} is not in this test binary's IMAGES"),
    }
}

fn build_all(set: &[Image]) -> Vec<(Image, Result<Built, String>)> {
    let out = docker(&["version", "--format", "{{.Server.Version}}"]);
    if !out.status.success() {
        let why = format!(
            "the e2e tests need a running docker engine; `docker version` said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return set.iter().map(|&i| (i, Err(why.clone()))).collect();
    }
    // Registered before building so a half-built set is removed too.
    // SAFETY: `remove_everything` is an `extern "C" fn()` that never unwinds (it only spawns
    // `docker` and ignores every error); atexit only stores the pointer.
    let rc = unsafe { libc::atexit(remove_everything) };
    assert_eq!(rc, 0, "atexit failed");
    let started = std::time::Instant::now();
    // An image built FROM others waits for them.
    let (derived, bases): (Vec<Image>, Vec<Image>) =
        set.iter().partition(|&&i| i == Image::Embedded);
    let mut built = build_parallel(&bases);
    built.extend(build_parallel(&derived));
    eprintln!(
        "e2e images built in {:.1} s: {set:?}",
        started.elapsed().as_secs_f64()
    );
    built
}

fn build_parallel(set: &[Image]) -> Vec<(Image, Result<Built, String>)> {
    std::thread::scope(|s| {
        let builds: Vec<_> = set
            .iter()
            .map(|&which| (which, s.spawn(move || build_one(which))))
            .collect();
        builds
            .into_iter()
            .map(|(which, handle)| {
                let result = handle.join().map_err(|payload| {
                    payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                });
                (which, result)
            })
            .collect()
    })
}

/// The tag `which` is built under in this run.
pub(super) fn tag(which: Image) -> String {
    let name = format!("{which:?}").to_lowercase();
    format!("config-reloader-e2e-{name}:{}", run_id())
}

fn build_one(which: Image) -> Built {
    let tag = tag(which);
    let package = match which {
        Image::Sidecar => build_sidecar(&tag),
        Image::App => build_app(&tag),
        Image::Nginx => servers::nginx(&tag),
        Image::Pgbouncer => servers::pgbouncer(&tag),
        Image::Haproxy => servers::haproxy(&tag),
        Image::Postgres => servers::postgres(&tag),
        Image::Apache2 => servers::apache2(&tag),
        Image::Tini => servers::tini(&tag),
        Image::DumbInit => servers::dumb_init(&tag),
        Image::Distroless => servers::distroless(&tag),
        Image::Embedded => servers::embedded(&tag),
    };
    Built { tag, package }
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

/// `docker build` of `context` with our label; `dockerfile` defaults to `context/Dockerfile`.
pub(super) fn build(tag: &str, context: &Path, dockerfile: Option<&Path>, build_args: &[String]) {
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
fn build_sidecar(tag: &str) -> Option<(String, String)> {
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
    None
}

/// A root filesystem being assembled in a temp dir, then built `FROM scratch`.
pub(super) struct Rootfs {
    ctx: TempDir,
    /// Dockerfile lines after `COPY rootfs/ /` (`USER`, `RUN [...]`, `CMD [...]`).
    steps: Vec<String>,
    /// The package whose version the image reports (see [`Built::package`]).
    package: Option<(String, String)>,
}

impl Rootfs {
    pub(super) fn new() -> Rootfs {
        let rootfs = Rootfs {
            ctx: TempDir::new("crs-e2e-ctx").expect("temp dir"),
            steps: Vec::new(),
            package: None,
        };
        rootfs.dir("/tmp", 0o1777);
        rootfs.write(
            "/etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
        );
        rootfs.write("/etc/group", "root:x:0:\nnogroup:x:65534:\n");
        rootfs
    }

    /// `path` inside the image, as a path in the build context.
    pub(super) fn at(&self, path: &str) -> PathBuf {
        self.ctx.join("rootfs").join(path.trim_start_matches('/'))
    }

    /// A directory with exactly `mode` (COPY keeps modes).
    pub(super) fn dir(&self, path: &str, mode: u32) {
        let p = self.at(path);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Copies the host file `from` (symlinks followed) to `path` in the image, mode kept.
    pub(super) fn copy(&self, from: &Path, path: &str) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::copy(from, &p).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }

    /// Copies the ELF file `bin` to the same path in the image, with every library `ldd`
    /// lists for it (paths kept, loader included).
    pub(super) fn elf(&self, bin: &Path) {
        self.copy(bin, &bin.to_string_lossy());
        for lib in shared_libraries(bin) {
            self.copy(&lib, &lib.to_string_lossy());
        }
    }

    /// Copies the directory tree `from` to the same path in the image.
    pub(super) fn tree(&self, from: &Path) {
        for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
            let path = entry.expect("readdir").path();
            if path.is_dir() {
                self.tree(&path);
            } else {
                self.copy(&path, &path.to_string_lossy());
            }
        }
    }

    pub(super) fn write(&self, path: &str, text: &str) {
        let p = self.at(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    pub(super) fn link(&self, target: &str, path: &str) {
        symlink(target, self.at(path)).expect("symlink");
    }

    /// One more Dockerfile line.
    pub(super) fn step(&mut self, line: &str) {
        self.steps.push(line.to_string());
    }

    /// Copies the host file `bin` (and its libraries) after checking that a Debian package
    /// installed it; the image reports the package of the last binary added this way. Panics
    /// with one line naming `package` (the one `make deps` installs) if `bin` is missing.
    pub(super) fn packaged(&mut self, bin: &Path, package: &str) {
        assert!(
            bin.exists(),
            "{} is missing: Debian package {package} is not installed (`make deps` installs it)",
            bin.display()
        );
        self.elf(bin);
        self.package = Some(owner(bin));
    }

    /// Builds the image; returns the package it reports.
    pub(super) fn build(self, tag: &str) -> Option<(String, String)> {
        let mut dockerfile = String::from("FROM scratch\nCOPY rootfs/ /\n");
        for step in &self.steps {
            dockerfile.push_str(step);
            dockerfile.push('\n');
        }
        fs::write(self.ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
        build(tag, self.ctx.path(), None, &[]);
        self.package
    }
}

/// The Debian package that installed `path`, and its version.
fn owner(path: &Path) -> (String, String) {
    let query = |args: &[&str]| {
        let out = Command::new("dpkg-query")
            .args(args)
            .output()
            .expect("cannot run dpkg-query");
        assert!(
            out.status.success(),
            "dpkg-query {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // `nginx-light: /usr/sbin/nginx`; the binary may be reached through a symlink.
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let found = query(&["-S", &real.to_string_lossy()]);
    let package = found.split(':').next().unwrap_or_default().to_string();
    let version = query(&["-W", "-f", "${Version}", &package]);
    (package, version)
}

/// Debian's busybox-static (one static binary, `sh` links to it) and the static `sigrecord`.
fn build_app(tag: &str) -> Option<(String, String)> {
    let sigrecord = musl_binary("sigrecord");
    let rootfs = Rootfs::new();
    rootfs.copy(&busybox(), "/bin/busybox");
    for applet in ["sh", "sleep", "kill", "cat"] {
        rootfs.link("busybox", &format!("/bin/{applet}"));
    }
    rootfs.copy(&sigrecord, "/sigrecord");
    rootfs.build(tag)
}

/// `/bin/busybox` from Debian's busybox-static, checked to be static.
pub(super) fn busybox() -> PathBuf {
    let bin = PathBuf::from("/bin/busybox");
    assert!(
        super::is_static(&bin),
        "{} is not a static binary; `make deps` installs busybox-static",
        bin.display()
    );
    bin
}

/// nginx as non-root (it is run as 65534): every writable path it wants is under 1777 dirs, the
/// served value is `include`d from the config volume mounted at `/config`.
pub(super) const NGINX_CONF: &str = r#"daemon off;
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

/// Debian's nginx with its libraries and [`NGINX_CONF`].
pub(super) fn nginx_rootfs() -> Rootfs {
    let mut rootfs = Rootfs::new();
    rootfs.packaged(Path::new("/usr/sbin/nginx"), "nginx-light");
    rootfs.copy(Path::new("/etc/nginx/mime.types"), "/etc/nginx/mime.types");
    rootfs.write("/etc/nginx/nginx.conf", NGINX_CONF);
    for dir in ["/var/lib/nginx", "/var/log/nginx", "/run"] {
        rootfs.dir(dir, 0o1777);
    }
    rootfs
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
