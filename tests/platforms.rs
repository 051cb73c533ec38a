//! Every binary `make` builds (issue 23), each on its own platform: natively for amd64, under
//! qemu-user for the other five (Debian's qemu-user-static, called directly). Each one prints
//! its version, starts up to `info watching`, and reloads a real host process (`sigrecord`,
//! native) for one kubelet update. The whole reload and fault suites run under qemu for arm64,
//! s390x and ppc64le in `make test-qemu`; this is the check that every shipped binary works.

use std::time::Duration;

use testkit::kubelet::Volume;
use testkit::platforms::{Platform, PLATFORMS};
use testkit::recorder::{contents, Options, Recorder};
use testkit::reloader::{command, path_str, Reloader};
use testkit::{unique_name, TempDir};

/// Start-up under qemu takes a few seconds on a loaded 2-core machine.
const T: Duration = Duration::from_secs(30);

fn platform(arch: &str) -> Platform {
    *PLATFORMS
        .iter()
        .find(|p| p.arch == arch)
        .unwrap_or_else(|| panic!("no platform {arch}"))
}

fn version_start_and_one_reload(arch: &str) {
    let p = platform(arch);
    let bin = p.binary();
    let (prog, args) = p.runner(&bin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut version_args = args.clone();
    version_args.push("--version");
    let out = command(&prog, &[], &version_args)
        .output()
        .unwrap_or_else(|e| panic!("{arch}: run {}: {e}", prog.display()));
    assert!(out.status.success(), "{arch}: --version: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        concat!("config-reloader ", env!("CARGO_PKG_VERSION")),
        "{arch}"
    );

    let dir = TempDir::new("platform").expect("temp dir");
    let vol = Volume::create(dir.path(), &[("app.conf", b"v1".as_slice())]).expect("volume");
    let name = unique_name("platapp");
    let app = Recorder::spawn(Options {
        name: Some(name.clone()),
        read: Some(dir.join("app.conf")),
        ..Options::default()
    });
    let env = [
        ("CONFIG_DIR", path_str(dir.path())),
        ("PROCESS_NAME", name.as_str()),
    ];
    let rel = Reloader::start_command(command(&prog, &env, &args));
    assert!(vol
        .update(&[("app.conf", b"v2".as_slice())])
        .expect("update"));
    assert_eq!(
        contents(&app.wait_received(1, T)),
        ["v2"],
        "{arch}: {}",
        rel.log()
    );
    rel.wait_lines("info reloaded", 1, T);
}

#[test]
fn amd64_binary_prints_its_version_starts_and_reloads_once() {
    version_start_and_one_reload("amd64");
}

#[test]
fn arm64_binary_prints_its_version_starts_and_reloads_once_under_qemu() {
    version_start_and_one_reload("arm64");
}

#[test]
fn armv7_binary_prints_its_version_starts_and_reloads_once_under_qemu() {
    version_start_and_one_reload("arm");
}

#[test]
fn ppc64le_binary_with_64k_pages_prints_its_version_starts_and_reloads_once_under_qemu() {
    version_start_and_one_reload("ppc64le");
}

#[test]
fn s390x_big_endian_binary_prints_its_version_starts_and_reloads_once_under_qemu() {
    version_start_and_one_reload("s390x");
}

#[test]
fn riscv64_binary_prints_its_version_starts_and_reloads_once_under_qemu() {
    version_start_and_one_reload("riscv64");
}
