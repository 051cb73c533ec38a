//! One regression test per watcher bug of issue 9 (items 3a, 3b, 7 and 9), each named for the
//! bug and each failing on the binary that had it: the real binary, real inotify, and
//! `sigrecord` as the app, which records each signal and the content it re-read then.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use support::{env, field_num, kv, spawn_app, start, under_nofile_limit, write, QUIET, T};
use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::contents;
use testkit::reloader::Reloader;
use testkit::{unique_name, TempDir};

// ---- Item 3a: a directory replaced at the same path ----
// The old directory's IN_IGNORED arrives after the new one's IN_MOVED_TO/IN_CREATE, and the
// watcher forgot the tree by path: the watch just added for the new directory went with it.

/// Was: `mv -T plain/a plain/b` over an empty `b` reloaded, then edits in `b` got nothing.
#[test]
fn directory_renamed_over_an_empty_directory_stays_watched() {
    let dir = TempDir::new("rename-over").unwrap();
    fs::create_dir_all(dir.join("a")).unwrap();
    fs::create_dir_all(dir.join("b")).unwrap();
    write(&dir.join("a/f"), "1");
    let name = unique_name("renover");
    let app = spawn_app(&name, &dir.join("b/f"));
    let _rel = start(dir.path(), &name, &[]);

    fs::rename(dir.join("a"), dir.join("b")).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["1"]);
    write(&dir.join("b/f"), "2");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["1", "2"]);
}

/// Was: a directory moved in from outside the tree over an empty one reloaded, then edits
/// inside it got nothing.
#[test]
fn directory_moved_in_from_outside_over_an_empty_one_stays_watched() {
    let tmp = TempDir::new("move-in").unwrap();
    let (outside, dir) = (tmp.join("outside"), tmp.join("plain"));
    fs::create_dir_all(outside.join("s")).unwrap();
    fs::create_dir_all(dir.join("s")).unwrap();
    write(&outside.join("s/f"), "1");
    let name = unique_name("moveover");
    let app = spawn_app(&name, &dir.join("s/f"));
    let _rel = start(&dir, &name, &[]);

    fs::rename(outside.join("s"), dir.join("s")).unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["1"]);
    write(&dir.join("s/f"), "2");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["1", "2"]);
}

/// Was: `exec 9<s; rm -rf s && mkdir s && echo 2 > s/f; exec 9<&-` reloaded, then edits inside
/// the new `s` got nothing: the old `s` is only destroyed (IN_IGNORED) when the fd closes.
#[test]
fn directory_deleted_and_recreated_while_held_open_stays_watched() {
    let dir = TempDir::new("held-open").unwrap();
    fs::create_dir(dir.join("s")).unwrap();
    write(&dir.join("s/f"), "1");
    let name = unique_name("heldopen");
    let app = spawn_app(&name, &dir.join("s/f"));
    let _rel = start(dir.path(), &name, &[]);

    let held = File::open(dir.join("s")).unwrap();
    fs::remove_dir_all(dir.join("s")).unwrap();
    fs::create_dir(dir.join("s")).unwrap();
    write(&dir.join("s/f"), "2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["2"]);
    // Closing it changes nothing the app reads; the quiet window also lets the reloader take
    // the old directory's IN_IGNORED before the next edit.
    drop(held);
    app.expect_exactly(1, T, QUIET);
    write(&dir.join("s/f"), "3");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["2", "3"]);
}

// ---- Item 3b: changes that raise only IN_MODIFY ----

/// Was: `truncate(2)` by path (`os.truncate`, `truncate -s 0` in other tools) raises only
/// IN_MODIFY, which was not asked for: no reload until some unrelated event.
#[test]
fn truncate_by_path_alone_is_one_reload() {
    let dir = TempDir::new("truncate").unwrap();
    let file = dir.join("app.conf");
    write(&file, "v1 with some bytes");
    let name = unique_name("truncapp");
    let app = spawn_app(&name, &file);
    let _rel = start(dir.path(), &name, &[]);

    let c_path = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
    // SAFETY: c_path is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::truncate(c_path.as_ptr(), 0) };
    assert_eq!(rc, 0, "truncate: {}", std::io::Error::last_os_error());
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), [""]);
}

/// Was: a writer that keeps the file open (a log-style writer, an editor that has not closed
/// yet) raises IN_MODIFY and no IN_CLOSE_WRITE: never noticed. The close later changes
/// nothing and sends nothing.
#[test]
fn write_without_close_is_one_reload() {
    let dir = TempDir::new("no-close").unwrap();
    let file = dir.join("app.conf");
    write(&file, "v1");
    let name = unique_name("nocloseapp");
    let app = spawn_app(&name, &file);
    let _rel = start(dir.path(), &name, &[]);

    let mut open = OpenOptions::new().write(true).open(&file).unwrap();
    open.write_all(b"v2").unwrap();
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
    drop(open);
    app.expect_exactly(1, T, QUIET);
}

// ---- Item 7: deep trees ----

/// Levels below the root in [`tree_1201_dirs_deep_is_watched_fully_with_256_fds`].
const DEPTH: usize = 1201;

/// A chain of DEPTH directories `d/d/…/d` with `x.conf` at the bottom, removed bottom-up by
/// path: `remove_dir_all` holds an fd per level, and the test process may have only 1,024.
struct DeepTree {
    tmp: TempDir,
}

impl DeepTree {
    fn new() -> DeepTree {
        let tmp = TempDir::new("deep").unwrap();
        fs::create_dir_all(tmp.join("d/".repeat(DEPTH))).unwrap();
        DeepTree { tmp }
    }

    fn bottom(&self) -> PathBuf {
        self.tmp.join("d/".repeat(DEPTH)).join("x.conf")
    }
}

impl Drop for DeepTree {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.bottom());
        for level in (1..=DEPTH).rev() {
            let _ = fs::remove_dir(self.tmp.join("d/".repeat(level)));
        }
    }
}

/// Was: the recursion kept one fd open per level and swallowed EMFILE: a tree 1,201 deep got
/// `watches=1018` and no warning, and the fingerprint stopped at depth 32. With 256 fds the
/// reloader must still watch every directory and reload for an edit at the bottom.
#[test]
fn tree_1201_dirs_deep_is_watched_fully_with_256_fds() {
    let tree = DeepTree::new();
    let bottom = tree.bottom();
    write(&bottom, "1");
    let name = unique_name("deepapp");
    let app = spawn_app(&name, &bottom);
    let env = env(tree.tmp.path(), &name, &[]);
    let rel = Reloader::start_command(under_nofile_limit(256, &env));

    let ready = &rel.lines("info watching")[0];
    assert_eq!(
        field_num(ready, "watches"),
        Some(DEPTH + 1),
        "{}",
        rel.log()
    );
    write(&bottom, "2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["2"]);
}

// ---- Item 9: a reload before the update is complete for the app ----

/// Was: with RELOAD_DEBOUNCE=0 the signal went out at the `..data` rename, before the writer
/// linked an added key or unlinked a removed one: an app that opened the new key got ENOENT
/// (2 of 4 updates with the real kubelet, 4 of 4 with each link call delayed by 50 ms).
#[test]
fn kubelet_update_is_signalled_only_once_the_visible_links_match_data() {
    let dir = TempDir::new("kubelet-links").unwrap();
    let vol = Volume::create(dir.path(), &kv(&[("app.conf", "a")])).unwrap();
    let name = unique_name("linksapp");
    let app = spawn_app(&name, &dir.join("new.conf"));
    let _rel = start(dir.path(), &name, &[("RELOAD_DEBOUNCE", "0")]);
    let slow_links = UpdateOptions {
        pause_after_commit: Some(Duration::from_millis(50)),
        ..UpdateOptions::default()
    };
    let update = |files: &[(&str, &str)]| {
        vol.update_with(&kv(files), &slow_links)
            .unwrap()
            .expect("changed")
    };

    // A key added (one link after the commit).
    let added = update(&[("app.conf", "a"), ("new.conf", "added")]);
    let got = app.expect_exactly(1, T, QUIET);
    assert_eq!(contents(&got), ["added"], "the app must never see ENOENT");
    assert!(
        got[0].t_ns >= added.last_link_ns,
        "signalled before the link"
    );

    // The key removed again (one unlink after the commit).
    let removed = update(&[("app.conf", "a")]);
    let got = app.expect_exactly(2, T, QUIET);
    assert_eq!(got[1].content, Err(libc::ENOENT));
    assert!(
        got[1].t_ns >= removed.last_link_ns,
        "signalled before the unlink"
    );

    // Added with a second key and a changed one: two links after the commit.
    let both = update(&[("app.conf", "b"), ("new.conf", "again"), ("z.conf", "z")]);
    let got = app.expect_exactly(3, T, QUIET);
    assert_eq!(contents(&got)[2], "again");
    assert!(
        got[2].t_ns >= both.last_link_ns,
        "signalled before the links"
    );
}
