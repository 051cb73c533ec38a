//! Polling where inotify is blind (issue 14), on a real FUSE filesystem. Debian's bindfs
//! mirrors a scratch directory A onto B; the reloader watches B, the app reads B, and the test
//! writes through A, as the kubelet writes a volume from outside the gVisor, Kata (virtiofs,
//! 9p) or NFS mount the pod sees: no inotify event ever reaches B.
//!
//! Needs /dev/fuse and the Debian packages bindfs and fuse3 (`make deps-apt`); without them
//! each test fails with one line naming what is missing.

mod poll_common;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use poll_common::{polling_line, View, AUTO, BLIND_REASON, DEBOUNCE, GRACE};
use support::{bin, kv, spawn_app, start, start_dirs, tracee, under_strace, QUIET, T};
use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::contents;
use testkit::reloader::{path_str, run_to_exit, Reloader};
use testkit::{unique_name, wait_until};

/// A forced interval short enough for tests that prove an absence on the FUSE view.
const FAST: Duration = Duration::from_millis(500);
/// bindfs (libfuse 2) lets the kernel cache attributes for 1 s: a plain file's new size and
/// mtime may show through B only that much later. A kubelet volume is polled by readlink,
/// which FUSE never caches.
const ATTR_CACHE: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn auto_polls_a_fuse_view_and_reloads_once_where_polling_off_stays_blind() {
    let v = View::new("poll-fuse");
    let vol = Volume::create(v.a(), &kv(&[("app.conf", "v1")])).unwrap();
    let (polled_name, blind_name) = (unique_name("fuseauto"), unique_name("fuseoff"));
    let polled = spawn_app(&polled_name, &v.b().join("app.conf"));
    let blind = spawn_app(&blind_name, &v.b().join("app.conf"));
    let auto = start(v.b(), &polled_name, &[]);
    let off = start(v.b(), &blind_name, &[("RELOAD_POLL_INTERVAL", "0")]);

    assert_eq!(
        auto.lines("info polling "),
        [polling_line(v.b(), "fuse")],
        "auto detects the FUSE view:\n{}",
        auto.log()
    );
    assert_eq!(off.lines("info polling "), Vec::<String>::new());
    let env = [
        ("CONFIG_DIR", path_str(v.b())),
        ("PROCESS_NAME", polled_name.as_str()),
    ];
    let (status, out, _) = run_to_exit(bin(), &env, &["--check"]);
    let want = format!("poll {} fs=fuse every 5s: {BLIND_REASON}", v.b().display());
    assert!(out.lines().any(|l| l == want), "{status}: {out}");

    // Through A: B sees nothing happen; only a poll can find it.
    let commit = vol
        .update_with(&kv(&[("app.conf", "v2")]), &UpdateOptions::default())
        .unwrap()
        .expect("changed");
    let within = AUTO + DEBOUNCE + GRACE;
    let got = polled.wait_received(1, within);
    let latency = Duration::from_nanos(got[0].t_ns.saturating_sub(commit.commit_ns));
    eprintln!(
        "FUSE, auto: commit → SIGHUP {} ms (interval 5 s + debounce 100 ms)",
        ms(latency)
    );
    assert_eq!(contents(&polled.expect_exactly(1, T, QUIET)), ["v2"]);
    assert_eq!(auto.lines("info reloaded").len(), 1, "{}", auto.log());
    // The same change, the same time: with polling off nothing ever sees it. So a broken poll
    // would have failed the wait above.
    assert_eq!(contents(&blind.received()), Vec::<String>::new());

    // Control: the reloader with polling off is alive; an update written through B itself
    // raises inotify events on B, and both reload once.
    assert!(Volume::open(v.b())
        .update(&kv(&[("app.conf", "v3")]))
        .unwrap());
    assert_eq!(contents(&blind.expect_exactly(1, T, QUIET)), ["v3"]);
    assert_eq!(contents(&polled.expect_exactly(2, T, QUIET)), ["v2", "v3"]);
    assert!(off.lines("warn").is_empty(), "{}", off.log());
}

/// chmod, touch, a same-content rewrite of a plain file and a same-content `..data` swap, all
/// through A: each poll that notices one hands it to the fingerprint, which finds the bytes
/// unchanged. Then a real change gives exactly one reload, so the silence meant something.
#[test]
fn chmod_touch_and_same_content_rewrites_through_the_underlying_dir_send_nothing() {
    let v = View::new("poll-noop");
    let (vol_a, plain_a) = (v.a().join("vol"), v.a().join("plain"));
    fs::create_dir(&vol_a).unwrap();
    fs::create_dir(&plain_a).unwrap();
    let payload = kv(&[("app.conf", "same")]);
    let vol = Volume::create(&vol_a, &payload).unwrap();
    fs::write(plain_a.join("p.conf"), "p1").unwrap();
    let name = unique_name("fusenoop");
    let app = spawn_app(&name, &v.b().join("plain/p.conf"));
    let (vol_b, plain_b) = (v.b().join("vol"), v.b().join("plain"));
    let rel = start_dirs(
        &[&vol_b, &plain_b],
        &name,
        &[("RELOAD_POLL_INTERVAL", "500ms"), ("VERBOSE", "1")],
    );
    let polled = || rel.lines("debug possible change change=polled").len();

    for entry in [
        vol.data_dir().unwrap().join("app.conf"),
        plain_a.join("p.conf"),
    ] {
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o600)).unwrap();
        fs::File::options()
            .append(true)
            .open(&entry)
            .and_then(|f| f.set_modified(SystemTime::now() + Duration::from_secs(60)))
            .unwrap();
    }
    fs::write(plain_a.join("p.conf"), "p1").unwrap();
    let swap = UpdateOptions {
        swap_on_equal: true,
        ..UpdateOptions::default()
    };
    vol.update_with(&payload, &swap).unwrap().expect("swapped");
    // The plain file's new mtime shows through B once the attribute cache expires; the swap
    // at once. Both are found by a poll.
    wait_until(T, "the poll to notice the no-op changes", || {
        (polled() >= 1).then_some(())
    });
    // Two more intervals, the debounce and the attribute cache: any reload would be in.
    std::thread::sleep(2 * FAST + DEBOUNCE + ATTR_CACHE);
    assert_eq!(contents(&app.received()), Vec::<String>::new());
    assert!(rel.lines("info reloaded").is_empty(), "{}", rel.log());
    assert!(
        !rel.lines("debug content unchanged").is_empty(),
        "the poll's findings went through the fingerprint:\n{}",
        rel.log()
    );

    fs::write(plain_a.join("p.conf"), "p2").unwrap();
    let within = FAST + ATTR_CACHE + DEBOUNCE + GRACE;
    app.wait_received(1, within);
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["p2"]);
}

/// A ConfigMap volume on a blind filesystem mounted below a plain config directory (e.g.
/// `/etc/app` on the node's disk with `/etc/app/conf.d` on virtiofs): `auto` finds the mount
/// point in mountinfo and polls it alone.
#[test]
fn a_fuse_mount_below_the_watched_dir_is_polled_under_auto() {
    let tmp = testkit::TempDir::new("poll-below").unwrap();
    let (config, source) = (tmp.join("config"), tmp.join("source"));
    for d in [&config, &config.join("sub"), &source] {
        fs::create_dir(d).unwrap();
    }
    fs::write(config.join("top.conf"), "top").unwrap();
    let vol = Volume::create(&source, &kv(&[("app.conf", "v1")])).unwrap();
    let fuse = testkit::fuse::Bindfs::mount(&source, &config.join("sub"));
    let name = unique_name("fusebelow");
    let app = spawn_app(&name, &config.join("sub/app.conf"));
    let rel = start(&config, &name, &[]);

    let sub = config.join("sub");
    assert_eq!(
        rel.lines("info polling "),
        [polling_line(&sub, "fuse")],
        "only the mount point is polled, not the config dir on {}",
        fs_name(&config)
    );
    let env = [("CONFIG_DIR", path_str(&config)), ("PROCESS_NAME", &name)];
    let (_, out, _) = run_to_exit(bin(), &env, &["--check"]);
    let want = format!("poll {} fs=fuse every 5s: {BLIND_REASON}", sub.display());
    assert!(out.lines().any(|l| l == want), "{out}");

    let commit = vol
        .update_with(&kv(&[("app.conf", "v2")]), &UpdateOptions::default())
        .unwrap()
        .expect("changed");
    let got = app.wait_received(1, AUTO + DEBOUNCE + GRACE);
    eprintln!(
        "FUSE below the config dir, auto: commit → SIGHUP {} ms",
        (got[0].t_ns.saturating_sub(commit.commit_ns)) / 1_000_000
    );
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
    drop(rel);
    drop(app);
    drop(fuse);
}

/// The statfs family name of `dir`, for messages.
fn fs_name(dir: &Path) -> String {
    format!("f_type {:#x}", testkit::fuse::fs_type(dir).unwrap_or(0))
}

/// Regression: the poll's first stamps were taken after the baseline fingerprint, so a change
/// landing between the two was in the stamps but not in the baseline: no poll ever saw it
/// differ, and on a blind filesystem nothing else could. strace holds the baseline's open of
/// the file for 2 s (the fd is open on the old inode, so the baseline reads v1) while the file
/// is replaced through A: the reloader must still reload v2. (musl opens with `open`, glibc
/// with `openat`: both are held.)
#[test]
fn an_update_while_the_baseline_is_taken_is_polled_not_lost() {
    let v = View::new("poll-race");
    fs::write(v.a().join("app.conf"), "v1").unwrap();
    let name = unique_name("pollrace");
    let app = spawn_app(&name, &v.b().join("app.conf"));
    let watched = v.b().join("app.conf");
    let hold = format!("-P{}", path_str(&watched));
    let filters = [
        "-e",
        "trace=open,openat",
        &hold,
        "-e",
        "inject=open,openat:delay_exit=2000000:when=1",
    ];
    let env = [
        ("CONFIG_DIR", path_str(v.b())),
        ("PROCESS_NAME", &name),
        ("RELOAD_POLL_INTERVAL", "500ms"),
    ];
    let rel = Reloader::spawn_command(&mut under_strace(&filters, &env));
    let tracee = tracee(&rel);
    wait_until(T, "the baseline to hold app.conf open", || {
        assert!(
            rel.is_running(),
            "strace or the reloader exited: {}",
            rel.log()
        );
        let fds = fs::read_dir(format!("/proc/{}/fd", tracee.0)).ok()?;
        fds.flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|p| p == watched))
            .then_some(())
    });
    // As `sed -i` or `kubectl cp` of a new file would: a new inode renamed over the old.
    fs::write(v.a().join("app.conf.new"), "v2").unwrap();
    fs::rename(v.a().join("app.conf.new"), v.a().join("app.conf")).unwrap();
    rel.wait_lines("info watching", 1, T);

    app.wait_received(1, FAST + ATTR_CACHE + DEBOUNCE + GRACE);
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
}

/// Regression: every re-detection (each deleted subdirectory raises one) logged the `info
/// polling` lines again and restarted the 5 s timer. Now only a newly polled directory is
/// logged, and the schedule is kept.
#[test]
fn removing_a_subdirectory_does_not_repeat_the_polling_line() {
    let v = View::new("poll-relog");
    fs::write(v.a().join("app.conf"), "v1").unwrap();
    fs::create_dir(v.a().join("scratch")).unwrap();
    let name = unique_name("pollrelog");
    let app = spawn_app(&name, &v.b().join("app.conf"));
    let rel = start(v.b(), &name, &[]);
    assert_eq!(rel.lines("info polling "), [polling_line(v.b(), "fuse")]);

    // Through B: inotify sees it, the subdirectory's watch is dropped, and the empty
    // directory's disappearance is a content change, so the app reloads once.
    fs::remove_dir(v.b().join("scratch")).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v1"]);
    assert_eq!(
        rel.lines("info polling "),
        [polling_line(v.b(), "fuse")],
        "{}",
        rel.log()
    );
}
