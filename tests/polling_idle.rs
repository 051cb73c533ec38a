//! What polling costs and where it stays off (issue 14): `auto` never wakes the reloader on a
//! local filesystem (tmpfs, ext4), wakes it every 5 s on FUSE, and a forced interval on a
//! local filesystem, where inotify sees every change as well, still gives exactly one reload
//! per update.
//!
//! Wake-ups are the context switches in `/proc/PID/status`: a process asleep in ppoll with no
//! timer makes none.

mod poll_common;
mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use poll_common::{await_idle, polling_line, switches, View, AUTO, DEBOUNCE};
use support::{bin, kv, spawn_app, start, start_dirs, QUIET, T};
use testkit::fuse::{fs_type, FUSE_MAGIC};
use testkit::kubelet::Volume;
use testkit::recorder::contents;
use testkit::reloader::{path_str, run_to_exit};
use testkit::{unique_name, TempDir};

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A directory on the disk the workspace is built on (ext4 here): cargo's per-target tmp dir.
fn on_disk(prefix: &str) -> TempDir {
    TempDir::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), prefix).expect("temp dir")
}

#[test]
fn auto_never_wakes_up_on_tmpfs_or_disk_and_wakes_every_5s_on_fuse() {
    let shm = TempDir::new_in(Path::new("/dev/shm"), "poll-idle").expect("dir on /dev/shm");
    assert_eq!(
        fs_type(shm.path()).ok(),
        Some(TMPFS_MAGIC),
        "/dev/shm is not tmpfs"
    );
    let disk = on_disk("poll-idle");
    let disk_fs = fs_type(disk.path()).unwrap();
    assert_ne!(disk_fs, FUSE_MAGIC, "{} is on FUSE", disk.path().display());
    let v = View::new("poll-idle");
    for root in [shm.path(), disk.path(), v.a()] {
        Volume::create(root, &kv(&[("app.conf", "v1")])).unwrap();
    }
    // Nothing is signalled in this test: the name only has to be unique.
    let name = unique_name("idle");
    let tmpfs = start(shm.path(), &name, &[]);
    let ext4 = start(disk.path(), &name, &[]);
    let fuse = start(v.b(), &name, &[]);
    for r in [&tmpfs, &ext4, &fuse] {
        await_idle(r.pid());
    }
    let before: Vec<u64> = [&tmpfs, &ext4, &fuse]
        .iter()
        .map(|r| switches(r.pid()))
        .collect();
    // The absence is proved over more than one `auto` interval: a 5 s timer set at start
    // fires in this window, as the FUSE reloader's shows.
    std::thread::sleep(AUTO + Duration::from_secs(1));
    let woke: Vec<u64> = [&tmpfs, &ext4, &fuse]
        .iter()
        .zip(&before)
        .map(|(r, b)| switches(r.pid()) - b)
        .collect();
    eprintln!(
        "wake-ups in 6 s, auto: tmpfs {}, disk (f_type {disk_fs:#x}) {}, FUSE {}",
        woke[0], woke[1], woke[2]
    );
    assert_eq!(woke[..2], [0, 0], "tmpfs and disk reloaders woke up");
    assert!(woke[2] >= 1, "the FUSE reloader never polled");
    assert_eq!(tmpfs.lines("info polling"), Vec::<String>::new());
    assert_eq!(ext4.lines("info polling"), Vec::<String>::new());
    assert_eq!(fuse.lines("info polling"), [polling_line(v.b(), "fuse")]);
    for dir in [shm.path(), disk.path()] {
        let env = [("CONFIG_DIR", path_str(dir)), ("PROCESS_NAME", &name)];
        let (_, out, _) = run_to_exit(bin(), &env, &["--check"]);
        assert!(
            !out.contains("poll "),
            "--check polls {}: {out}",
            dir.display()
        );
    }
}

/// inotify sees every change here and so does the poll: both feed the same settle and
/// fingerprint, so each update is one reload, never two.
#[test]
fn a_forced_interval_on_a_local_fs_still_reloads_exactly_once_per_update() {
    let disk = on_disk("poll-forced");
    let (vol_dir, plain) = (disk.join("vol"), disk.join("plain"));
    fs::create_dir(&vol_dir).unwrap();
    fs::create_dir(&plain).unwrap();
    let vol = Volume::create(&vol_dir, &kv(&[("app.conf", "v1")])).unwrap();
    fs::write(plain.join("p.conf"), "p1").unwrap();
    let name = unique_name("forced");
    let app = spawn_app(&name, &vol_dir.join("app.conf"));
    let interval = Duration::from_millis(300);
    let rel = start_dirs(
        &[&vol_dir, &plain],
        &name,
        &[("RELOAD_POLL_INTERVAL", "300ms"), ("VERBOSE", "1")],
    );
    let reason = "reason=\"RELOAD_POLL_INTERVAL asks for it\"";
    let want: Vec<String> = [&vol_dir, &plain]
        .iter()
        .map(|d| {
            format!(
                "info polling dir={} fs=any interval=0.3s {reason}",
                d.display()
            )
        })
        .collect();
    assert_eq!(rel.lines("info polling "), want);

    // Each update is seen by inotify at once and by the next poll: the silence after it spans
    // two intervals and the debounce, so a second reload from the poll would be in.
    let quiet = 2 * interval + DEBOUNCE + QUIET;
    let mut seen = Vec::new();
    for (n, value) in ["v2", "v3", "v4"].iter().enumerate() {
        assert!(vol.update(&kv(&[("app.conf", value)])).unwrap());
        seen = contents(&app.expect_exactly(n + 1, T, quiet));
    }
    assert_eq!(seen, ["v2", "v3", "v4"]);
    fs::write(plain.join("p.conf"), "p2").unwrap();
    assert_eq!(app.expect_exactly(4, T, quiet).len(), 4);

    let polled = rel.lines("debug possible change change=polled").len();
    assert!(
        polled >= 4,
        "the poll saw {polled} of the 4 updates: the test proved nothing\n{}",
        rel.log()
    );
    assert_eq!(rel.lines("info reloaded").len(), 4, "{}", rel.log());
}

#[test]
fn bad_poll_intervals_exit_2_with_one_line() {
    let dir = TempDir::new("poll-bad").unwrap();
    for (env, value) in [
        ("RELOAD_POLL_INTERVAL", "often"),
        ("RELOAD_POLL_INTERVAL", "5"),
        ("RELOAD_POLL_INTERVAL", "2h"),
    ] {
        let vars = [
            ("CONFIG_DIR", path_str(dir.path())),
            ("PROCESS_NAME", "nobody"),
            (env, value),
        ];
        let (status, _, err) = run_to_exit(bin(), &vars, &[]);
        assert_eq!(status.code(), Some(2), "{value}: {err}");
        assert_eq!(err.lines().count(), 1, "{value}: {err}");
        assert!(
            err.contains("RELOAD_POLL_INTERVAL") && err.contains(value),
            "{err}"
        );
    }
    let vars = [("CONFIG_DIR", path_str(dir.path())), ("PROCESS_NAME", "x")];
    let (status, _, err) = run_to_exit(bin(), &vars, &["--poll-interval", "-1s"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--poll-interval"), "{err}");
}
