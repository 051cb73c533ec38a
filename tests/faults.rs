//! Faults the reloader must survive (issue 5), each provoked for real: directories deleted and
//! recreated under a live inotify watch, a kernel event queue that really overflows, watch and
//! instance limits really reached, signals the kernel really refuses, files that really vanish
//! or cannot be read. The target is `sigrecord`, which records each signal and the content it
//! re-read; every test asserts what an operator would check: how many reloads the app got, what
//! it saw, and the one log line that explains a fault.
//!
//! Some faults need a non-root sidecar (permissions, EPERM): it runs as [`SIDECAR_UID`], a UID
//! nobody else on the machine uses. Limits are lowered without touching the rest of the
//! machine where the kernel allows it (per-user-namespace `user.max_inotify_*`); the one
//! global knob that has no per-namespace twin, `fs.inotify.max_queued_events`, is lowered only
//! for the instant the reloader creates its inotify instance, under [`LIMITS`].

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{bin, env, kv, spawn_app, write, QUIET, T};
use testkit::kubelet::Volume;
use testkit::recorder::{contents, sigrecord_bin, Options, Program, Recorder};
use testkit::reloader::{code, command, path_str, Reloader};
use testkit::tree::reachable_copy;
use testkit::{unique_name, wait_until, TempDir};

/// The sidecar's UID in the tests that need a non-root sidecar; no other process uses it, so
/// its per-UID inotify counts start at zero.
const SIDECAR_UID: u32 = 4242;
/// The app's UID when it must differ from the sidecar's (EPERM): `nobody`.
const OTHER_UID: u32 = 65534;
/// The global sysctl read once per inotify instance, at `inotify_init`.
const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

/// Held for writing while a global inotify sysctl is lowered, and for reading by every other
/// test while its reloader starts, so no other reloader of this binary is created in the window.
static LIMITS: RwLock<()> = RwLock::new(());

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A temp dir that other UIDs may enter and read (TempDir makes it 0700).
fn shared_dir(prefix: &str) -> TempDir {
    let d = TempDir::new(prefix).expect("temp dir");
    chmod(d.path(), 0o755);
    d
}

/// [`spawn_app`]'s app, run as `uid` by `setpriv` (no supplementary groups), from a copy
/// that UID can reach (the checkout may sit under a 0700 directory).
fn spawn_app_as(uid: u32, name: &str, read: &Path) -> Recorder {
    let id = |flag: &str| format!("--{flag}={uid}").into();
    Recorder::spawn(Options {
        name: Some(name.into()),
        read: Some(read.into()),
        program: Some(Program {
            path: reachable_copy(&sigrecord_bin()),
            args: Vec::new(),
        }),
        wrapper: vec![
            "setpriv".into(),
            id("reuid"),
            id("regid"),
            "--clear-groups".into(),
            "--".into(),
        ],
        ..Options::default()
    })
}

/// Starts a prepared reloader command and waits until it is ready, outside any window in which
/// a global inotify limit is lowered.
fn start_command(cmd: Command) -> Reloader {
    let _not_while_lowered = LIMITS.read().unwrap_or_else(PoisonError::into_inner);
    Reloader::start_command(cmd)
}

/// [`support::start`], through [`start_command`].
fn start(dir: &Path, name: &str, extra: &[(&str, &str)]) -> Reloader {
    start_command(command(bin(), &env(dir, name, extra), &[]))
}

/// The reloader as [`SIDECAR_UID`]; std drops supplementary groups when root sets a UID. It
/// runs a copy that UID can reach: `target/` under a 0700 parent gave "Permission denied".
fn start_as(uid: u32, dir: &Path, name: &str, extra: &[(&str, &str)]) -> Reloader {
    let mut cmd = command(&reachable_copy(bin()), &env(dir, name, extra), &[]);
    cmd.uid(uid).gid(uid);
    start_command(cmd)
}

/// The reloader in a new user namespace (mapped to root, so it keeps our UID outside) after
/// running `setup` there: the per-namespace `user.max_inotify_*` limits can be lowered without
/// touching the limits of anything else on the machine, and the kernel enforces them for real.
fn in_user_namespace(setup: &str, env: &[(&str, &str)]) -> Command {
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    command(
        Path::new("unshare"),
        env,
        &[
            "--user",
            "--map-root-user",
            "--",
            "sh",
            "-c",
            &script,
            path_str(bin()),
        ],
    )
}

/// One-letter state from `/proc/PID/stat` (after the last `)`: comm may hold one).
fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn has_inotify_fd(pid: i32) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify")))
    })
}

/// Sets a global sysctl and puts the old value back when dropped, panic or not. A run killed
/// while it is set cannot: `make test` first runs `make restore-sysctl`, which puts the
/// kernel default back if `max_queued_events` reads 16.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        fs::write(path, value).unwrap_or_else(|e| panic!("write {value} to {path}: {e}"));
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = fs::write(self.path, &self.old) {
            eprintln!(
                "could not restore {} to {}: {e}",
                self.path,
                self.old.trim()
            );
        }
    }
}

// ---- Directories that go away and come back ----

#[test]
fn deleted_and_recreated_config_dir_is_rearmed_and_reloads_once_for_the_new_content() {
    let name = unique_name("rearmapp");
    let tmp = TempDir::new("recreate-root").unwrap();
    let root = tmp.join("vol");
    fs::create_dir(&root).unwrap();
    Volume::create(&root, &kv(&[("app.conf", "v1")])).unwrap();
    let app = spawn_app(&name, &root.join("app.conf"));
    let rel = start(&root, &name, &[]);

    fs::remove_dir_all(&root).unwrap();
    rel.wait_lines("warn watched directory is gone", 1, T);
    // After the settle the reloader finds nothing to read and says so instead of signalling.
    rel.wait_lines("warn watched directory is missing", 1, T);
    assert!(
        app.received().is_empty(),
        "a missing directory was signalled"
    );

    fs::create_dir(&root).unwrap();
    let vol = Volume::create(&root, &kv(&[("app.conf", "v2")])).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);

    // The new directory is watched: the next kubelet update is one more reload.
    vol.update(&kv(&[("app.conf", "v3")])).unwrap();
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["v2", "v3"]);
    assert!(rel.is_running());
}

#[test]
fn relative_config_dir_deleted_and_recreated_is_rearmed() {
    let name = unique_name("relapp");
    let tmp = TempDir::new("recreate-relative").unwrap();
    fs::create_dir(tmp.join("cfg")).unwrap();
    write(&tmp.join("cfg/app.conf"), "v1");
    let app = spawn_app(&name, &tmp.join("cfg/app.conf"));
    let mut cmd = command(bin(), &env(Path::new("cfg"), &name, &[]), &[]);
    cmd.current_dir(tmp.path());
    let rel = start_command(cmd);

    fs::remove_dir_all(tmp.join("cfg")).unwrap();
    rel.wait_lines("warn watched directory is missing", 1, T);
    fs::create_dir(tmp.join("cfg")).unwrap();
    write(&tmp.join("cfg/app.conf"), "v2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
}

#[test]
fn subdirectory_deleted_and_recreated_within_the_debounce_is_one_reload_and_watched_again() {
    let name = unique_name("resubapp");
    let dir = TempDir::new("recreate-sub").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    write(&dir.join("sub/x.conf"), "old");
    let app = spawn_app(&name, &dir.join("sub/x.conf"));
    let _rel = start(dir.path(), &name, &[("RELOAD_DEBOUNCE", "300ms")]);

    fs::remove_dir_all(dir.join("sub")).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    write(&dir.join("sub/x.conf"), "new");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["new"]);

    write(&dir.join("sub/x.conf"), "newer");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["new", "newer"]);
}

#[test]
fn subdirectory_deleted_then_recreated_later_reloads_for_each_and_is_watched_again() {
    let name = unique_name("slowsubapp");
    let dir = TempDir::new("recreate-sub-slow").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    write(&dir.join("sub/x.conf"), "old");
    let app = spawn_app(&name, &dir.join("sub/x.conf"));
    let _rel = start(dir.path(), &name, &[]);

    // Deleting a subdirectory changes what the app reads: one reload, and the file is gone.
    fs::remove_dir_all(dir.join("sub")).unwrap();
    let got = app.expect_exactly(1, T, QUIET);
    assert_eq!(got[0].content, Err(libc::ENOENT));

    fs::create_dir(dir.join("sub")).unwrap();
    write(&dir.join("sub/x.conf"), "back");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET))[1], "back");
    write(&dir.join("sub/x.conf"), "again");
    assert_eq!(contents(&app.expect_exactly(3, T, QUIET))[2], "again");
}

#[test]
fn config_dir_moved_away_and_replaced_follows_the_name_not_the_old_inode() {
    let name = unique_name("moveapp");
    let tmp = TempDir::new("move-root").unwrap();
    let (root, staged, old) = (tmp.join("cfg"), tmp.join("staged"), tmp.join("cfg.old"));
    fs::create_dir(&root).unwrap();
    write(&root.join("app.conf"), "v1");
    fs::create_dir(&staged).unwrap();
    write(&staged.join("app.conf"), "v2");
    let app = spawn_app(&name, &root.join("app.conf"));
    let rel = start(&root, &name, &[]);

    // IN_MOVE_SELF: the watch would follow the inode to cfg.old; the reloader must not.
    fs::rename(&root, &old).unwrap();
    fs::rename(&staged, &root).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);

    write(&root.join("app.conf"), "v3");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET))[1], "v3");
    // The moved-away directory is no longer the configuration.
    write(&old.join("app.conf"), "stale");
    app.expect_exactly(2, T, QUIET);
    assert!(rel.is_running());
}

#[test]
fn subdirectory_created_and_filled_in_one_burst_is_watched_all_the_way_down() {
    let name = unique_name("burstapp");
    let dir = TempDir::new("burst").unwrap();
    write(&dir.join("app.conf"), "x");
    let app = spawn_app(&name, &dir.join("new/deep/last.conf"));
    let _rel = start(dir.path(), &name, &[]);

    // The whole tree exists before the reloader can have read the first IN_CREATE: it must
    // add the watch, then scan what is already inside.
    fs::create_dir_all(dir.join("new/deep")).unwrap();
    for i in 0..100 {
        write(&dir.join(format!("new/deep/f{i:03}.conf")), i.to_string());
    }
    write(&dir.join("new/deep/last.conf"), "burst");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["burst"]);

    // The directories made during the burst are watched: a later write deep inside reloads.
    write(&dir.join("new/deep/last.conf"), "later");
    assert_eq!(
        contents(&app.expect_exactly(2, T, QUIET)),
        ["burst", "later"]
    );
}

/// Was (in the first std walk): a new subdirectory was watched only at the next settle, so
/// writes inside it did not keep the settle open and a slow writer filling it got a reload
/// halfway through. Each gap here is well inside the debounce, so exactly one reload is right.
#[test]
fn writes_into_a_new_subdirectory_keep_the_settle_open_until_the_burst_ends() {
    let name = unique_name("slowfill");
    let dir = TempDir::new("slowfill").unwrap();
    write(&dir.join("app.conf"), "x");
    let app = spawn_app(&name, &dir.join("new/last.conf"));
    let _rel = start(dir.path(), &name, &[("RELOAD_DEBOUNCE", "500ms")]);
    fs::create_dir(dir.join("new")).unwrap();
    // The writer's own pace, each pause a third of the debounce: not a wait for a condition.
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(170));
        write(&dir.join(format!("new/f{i}.conf")), i.to_string());
    }
    write(&dir.join("new/last.conf"), "done");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["done"]);
}

// ---- Symlinked configuration directories ----

#[test]
fn config_dir_that_is_a_symlink_sees_changes_in_its_target() {
    let name = unique_name("linkapp");
    let tmp = TempDir::new("symlink-dir").unwrap();
    fs::create_dir(tmp.join("real")).unwrap();
    write(&tmp.join("real/app.conf"), "v1");
    symlink("real", tmp.join("link")).unwrap();
    let app = spawn_app(&name, &tmp.join("link/app.conf"));
    let _rel = start(&tmp.join("link"), &name, &[]);

    write(&tmp.join("real/app.conf"), "v2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
}

#[test]
fn config_dir_under_a_symlinked_parent_sees_changes() {
    let name = unique_name("lparentapp");
    let tmp = TempDir::new("symlink-parent").unwrap();
    fs::create_dir_all(tmp.join("real/conf.d/sub")).unwrap();
    write(&tmp.join("real/conf.d/sub/app.conf"), "v1");
    symlink("real", tmp.join("etc")).unwrap();
    let app = spawn_app(&name, &tmp.join("etc/conf.d/sub/app.conf"));
    let _rel = start(&tmp.join("etc/conf.d"), &name, &[]);

    write(&tmp.join("real/conf.d/sub/app.conf"), "v2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
}

#[test]
fn repointing_the_config_dir_symlink_reloads_the_new_target_and_watches_it() {
    let name = unique_name("repointapp");
    let tmp = TempDir::new("symlink-repoint").unwrap();
    for (d, v) in [("v1", "one"), ("v2", "two")] {
        fs::create_dir(tmp.join(d)).unwrap();
        write(&tmp.join(d).join("app.conf"), v);
    }
    symlink("v1", tmp.join("current")).unwrap();
    let app = spawn_app(&name, &tmp.join("current/app.conf"));
    let _rel = start(&tmp.join("current"), &name, &[]);

    // `ln -sfn v2 current` done atomically, as deploy scripts do: a new link renamed over it.
    symlink("v2", tmp.join("current.tmp")).unwrap();
    fs::rename(tmp.join("current.tmp"), tmp.join("current")).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["two"]);

    write(&tmp.join("v2/app.conf"), "two-edited");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET))[1], "two-edited");
    // The old target is no longer what the app reads.
    write(&tmp.join("v1/app.conf"), "one-edited");
    app.expect_exactly(2, T, QUIET);
}

// ---- Kernel limits ----

#[test]
fn queue_overflow_rescans_and_reloads_once_with_the_final_content() {
    let name = unique_name("overflowapp");
    let dir = TempDir::new("overflow").unwrap();
    write(&dir.join("app.conf"), "v0");
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = {
        let _alone = LIMITS.write().unwrap_or_else(PoisonError::into_inner);
        let _small_queue = Sysctl::set(MAX_QUEUED, "16");
        let mut cmd = command(bin(), &env(dir.path(), &name, &[]), &[]);
        let rel = Reloader::spawn_command(&mut cmd);
        // The queue size is copied at inotify_init: restore the sysctl as soon as it is done.
        wait_until(T, "the reloader's inotify instance", || {
            has_inotify_fd(rel.pid()).then_some(())
        });
        rel
    };
    rel.wait_lines("info watching", 1, T);

    // A reloader that is not scheduled for a while (a starved CPU quota) while 400 events
    // arrive: the kernel keeps 16 and queues IN_Q_OVERFLOW.
    rel.signal(libc::SIGSTOP);
    wait_until(T, "the reloader to stop", || {
        (state(rel.pid()) == Some('T')).then_some(())
    });
    for i in 0..200 {
        write(&dir.join(format!("f{i:03}.conf")), i.to_string());
    }
    write(&dir.join("app.conf"), "final");
    rel.signal(libc::SIGCONT);

    let line = &rel.wait_lines("warn inotify queue overflowed", 1, T)[0];
    assert!(
        line.contains("sysctl=fs.inotify.max_queued_events limit="),
        "{line}"
    );
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["final"]);

    // Every watch was rebuilt: the next change is seen.
    write(&dir.join("app.conf"), "after");
    assert_eq!(
        contents(&app.expect_exactly(2, T, QUIET)),
        ["final", "after"]
    );
}

#[test]
fn watch_limit_names_the_sysctl_and_the_number_needed_and_watched_dirs_still_reload() {
    let name = unique_name("limitapp");
    let dir = TempDir::new("watch-limit").unwrap();
    write(&dir.join("app.conf"), "v1");
    for sub in ["a", "b", "c", "d", "e"] {
        fs::create_dir(dir.join(sub)).unwrap();
        write(&dir.join(sub).join("x.conf"), sub);
    }
    let app = spawn_app(&name, &dir.join("app.conf"));
    // 6 directories, room for 3 watches.
    let rel = start_command(in_user_namespace(
        "echo 3 > /proc/sys/user/max_inotify_watches",
        &env(dir.path(), &name, &[]),
    ));

    let line = &rel.lines("error inotify watch limit reached")[..];
    assert_eq!(line.len(), 1, "{}", rel.log());
    for part in [
        "sysctl=user.max_inotify_watches",
        "limit=3",
        "watched=3",
        "unwatched=3",
        "to at least 6",
    ] {
        assert!(line[0].contains(part), "{part:?} missing in: {}", line[0]);
    }

    write(&dir.join("app.conf"), "v2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
    assert!(rel.is_running());
}

#[test]
fn too_many_inotify_instances_is_one_clear_error_line_and_exit_1() {
    let dir = TempDir::new("instance-limit").unwrap();
    let out = in_user_namespace(
        "echo 0 > /proc/sys/user/max_inotify_instances",
        &env(dir.path(), "noinstance", &[]),
    )
    .stdin(Stdio::null())
    .output()
    .expect("run unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    for part in [
        "error cannot create an inotify instance",
        "EMFILE",
        "raise user.max_inotify_instances (now 0)",
    ] {
        assert!(lines[0].contains(part), "{part:?} missing in: {stderr}");
    }
}

// ---- Signals the kernel refuses ----

#[test]
fn eperm_from_another_uid_is_logged_with_a_hint_survived_and_the_next_change_retried() {
    let name = unique_name("permapp");
    let dir = shared_dir("eperm");
    write(&dir.join("app.conf"), "v1");
    let foreign = spawn_app_as(OTHER_UID, &name, &dir.join("app.conf"));
    let rel = start_as(SIDECAR_UID, dir.path(), &name, &[]);

    write(&dir.join("app.conf"), "v2");
    let line = &rel.wait_lines("error signal failed", 1, T)[0];
    for part in [
        &format!("pid={}", foreign.pid()),
        "error=EPERM",
        "hint=\"run the sidecar with the app's UID",
    ] {
        assert!(line.contains(part), "{part:?} missing in: {line}");
    }
    assert!(rel.is_running());

    // The app restarted with the sidecar's UID gets the next change; the foreign one still
    // fails, and is logged again rather than given up on.
    let own = spawn_app_as(SIDECAR_UID, &name, &dir.join("app.conf"));
    write(&dir.join("app.conf"), "v3");
    assert_eq!(contents(&own.expect_exactly(1, T, QUIET)), ["v3"]);
    rel.wait_lines("error signal failed", 2, T);
    assert!(foreign.received().is_empty());
}

/// The reloader's stderr through a one-page pipe that the test can stop draining: the
/// reloader then blocks in its next log write, at a point the test chooses.
struct PipedReloader {
    child: Child,
    rd: File,
    wr: File,
    text: String,
}

impl PipedReloader {
    fn start(env: &[(&str, &str)]) -> PipedReloader {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
        // SAFETY: pipe2 just returned these two descriptors and nothing else owns them.
        let (rd, wr) = unsafe {
            (
                File::from(OwnedFd::from_raw_fd(fds[0])),
                File::from(OwnedFd::from_raw_fd(fds[1])),
            )
        };
        // SAFETY: plain fcntl calls on descriptors we own.
        unsafe {
            assert!(libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) >= 4096);
            assert_eq!(
                libc::fcntl(rd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK),
                0
            );
        }
        let child = command(bin(), env, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(wr.try_clone().expect("dup pipe"))
            .spawn()
            .expect("spawn config-reloader");
        let mut r = PipedReloader {
            child,
            rd,
            wr,
            text: String::new(),
        };
        r.wait_for("info watching");
        r
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.rd.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read reloader stderr: {e}"),
            }
        }
    }

    /// Drains until a line starting with `prefix` has arrived, and returns it.
    fn wait_for(&mut self, prefix: &str) -> String {
        wait_until(T, &format!("a log line starting with {prefix:?}"), || {
            self.drain();
            self.text
                .lines()
                .find(|l| l.starts_with(prefix))
                .map(str::to_string)
        })
    }

    /// Fills the (drained) pipe to the last byte, so the reloader's next write blocks. Uses
    /// its own non-blocking open of the pipe: O_NONBLOCK on a dup would reach the reloader too.
    fn block_next_log_write(&mut self) {
        self.drain();
        let mut filler = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{}", self.wr.as_raw_fd()))
            .expect("reopen pipe");
        // Newlines read back as empty lines. One byte at a time: a write that does not fit
        // whole fails with EAGAIN, so only single bytes fill the last gap.
        loop {
            match filler.write(b"\n") {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("fill pipe: {e}"),
            }
        }
    }
}

impl Drop for PipedReloader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn target_gone_between_scan_and_signal_is_esrch_logged_and_its_successor_gets_the_next_change() {
    let name = unique_name("esrchapp");
    let dir = TempDir::new("esrch").unwrap();
    let conf = dir.join("app.conf");
    write(&conf, "v1");
    let mut apps = [spawn_app(&name, &conf), spawn_app(&name, &conf)];
    let mut rel = PipedReloader::start(&env(dir.path(), &name, &[]));

    // The reloader scans both apps, signals the first, and then blocks logging "reloaded":
    // the second app exits right there, between the scan and its signal.
    rel.block_next_log_write();
    write(&conf, "v2");
    let first = wait_until(T, "the first app to be signalled", || {
        apps.iter().position(|a| !a.received().is_empty())
    });
    let gone = 1 - first;
    let gone_pid = apps[gone].pid();
    apps[gone].signal(libc::SIGKILL).unwrap();
    apps[gone].wait_exit(T).expect("the second app exits");
    assert!(apps[gone].received().is_empty());

    let line = rel.wait_for("error signal failed");
    for part in [
        &format!("pid={gone_pid}"),
        "error=ESRCH",
        "hint=\"the process exited after the scan",
    ] {
        assert!(line.contains(part), "{part:?} missing in: {line}");
    }

    let successor = spawn_app(&name, &conf);
    write(&conf, "v3");
    assert_eq!(contents(&successor.expect_exactly(1, T, QUIET)), ["v3"]);
    assert_eq!(contents(&apps[first].received()), ["v2", "v3"]);
    rel.drain();
    assert_eq!(rel.text.matches("info reloaded").count(), 3, "{}", rel.text);
    assert_eq!(state(rel.child.id() as i32), Some('S'), "reloader survived");
}

// ---- Content that cannot be read ----

#[test]
fn unreadable_file_is_treated_as_a_change_and_an_unreadable_dir_is_logged_never_a_crash() {
    let name = unique_name("unreadapp");
    let dir = shared_dir("unreadable");
    write(&dir.join("app.conf"), "a");
    write(&dir.join("secret.conf"), "s");
    fs::create_dir(dir.join("locked")).unwrap();
    chmod(&dir.join("locked"), 0o000);
    let app = spawn_app_as(SIDECAR_UID, &name, &dir.join("app.conf"));
    let rel = start_as(SIDECAR_UID, dir.path(), &name, &[]);
    // One summary line with the count and the reason, naming the directory.
    let line = &rel.lines("warn some directories are not watched")[..];
    assert!(
        line.len() == 1
            && line[0].contains("count=1")
            && line[0].contains("locked")
            && line[0].contains("ermission denied"),
        "{}",
        rel.log()
    );

    // The only difference the sidecar can see is that secret.conf became unreadable (chmod
    // itself sends no event we ask for; the same-bytes rewrite of app.conf wakes it).
    chmod(&dir.join("secret.conf"), 0o000);
    write(&dir.join("app.conf"), "a");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["a"]);

    chmod(&dir.join("secret.conf"), 0o644);
    write(&dir.join("app.conf"), "b");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET))[1], "b");
    assert!(rel.is_running());
}

#[test]
fn files_and_dirs_vanishing_while_fingerprinting_never_crash_the_reloader() {
    let name = unique_name("vanishapp");
    let dir = TempDir::new("vanish").unwrap();
    write(&dir.join("app.conf"), "start");
    let app = spawn_app(&name, &dir.join("app.conf"));
    // No debounce: a fingerprint runs after every batch of events, racing the churn below.
    let mut rel = start(
        dir.path(),
        &name,
        &[("RELOAD_DEBOUNCE", "0"), ("RELOAD_MAX_DELAY", "0")],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, root) = (stop.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let big = "x".repeat(64 * 1024);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (f, d) = (root.join(format!("f{i}")), root.join(format!("d{i}")));
                fs::write(&f, &big).unwrap();
                fs::create_dir(&d).unwrap();
                fs::write(d.join("x"), &big).unwrap();
                fs::remove_file(&f).unwrap();
                fs::remove_dir_all(&d).unwrap();
                i += 1;
            }
            i
        })
    };
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(
            rel.is_running(),
            "reloader died during churn:\n{}",
            rel.log()
        );
        sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churn.join().expect("churn thread");
    assert!(rounds > 100, "only {rounds} churn rounds");

    write(&dir.join("app.conf"), "end");
    wait_until(T, "the app to reload the final content", || {
        (contents(&app.received()).last().map(String::as_str) == Some("end")).then_some(())
    });
    assert!(rel.is_running(), "{}", rel.log());
    assert_no_panic(&rel.log());
    assert_eq!(code(rel.terminate()), 0, "{}", rel.log());
}

/// A panic prints `panicked at` (std's hook) or `internal error` (the no_std binary's handler).
fn assert_no_panic(log: &str) {
    for needle in ["panicked at", "internal error"] {
        assert!(!log.contains(needle), "the log holds {needle:?}:\n{log}");
    }
}

// ---- Stopping ----

fn stop_during_pending_debounce(sig: i32, sig_name: &str, app_name: &str) {
    let dir = TempDir::new("stop-pending").unwrap();
    write(&dir.join("app.conf"), "v1");
    let app = spawn_app(app_name, &dir.join("app.conf"));
    let mut rel = start(
        dir.path(),
        app_name,
        &[
            ("RELOAD_DEBOUNCE", "10s"),
            ("RELOAD_MAX_DELAY", "10s"),
            ("VERBOSE", "true"),
        ],
    );
    write(&dir.join("app.conf"), "v2");
    rel.wait_lines("debug possible change", 1, T);

    let sent = Instant::now();
    rel.signal(sig);
    let status = rel.wait_exit(T);
    let took = sent.elapsed();
    assert_eq!(code(status), 0, "{}", rel.log());
    assert!(took < Duration::from_secs(1), "took {took:?} to exit");
    let line = &rel.lines("info exiting")[..];
    assert_eq!(line.len(), 1, "{}", rel.log());
    assert!(
        line[0].contains(&format!("signal={sig_name} pending_reload=dropped")),
        "{}",
        line[0]
    );
    // The reloader is gone, so no late signal can arrive: no pause needed.
    assert!(app.received().is_empty());
}

#[test]
fn sigterm_during_a_pending_debounce_exits_0_promptly_and_drops_the_reload() {
    stop_during_pending_debounce(libc::SIGTERM, "SIGTERM", &unique_name("termapp"));
}

#[test]
fn sigint_during_a_pending_debounce_exits_0_promptly_and_drops_the_reload() {
    stop_during_pending_debounce(libc::SIGINT, "SIGINT", &unique_name("intapp"));
}
