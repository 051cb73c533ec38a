//! One regression test per fingerprint bug of issue 9 (items 3, 4, 5 and 8), each named for
//! the bug and each failing on the binary that had it: the real binary, real directories and
//! real programs (`sed`), and `sigrecord` as the app, which records each signal and the content
//! it re-read then. The watcher's bugs (items 3a, 3b, 7 and 9) are in `regressions_watch.rs`.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use support::{spawn_app, start, write, QUIET, T};
use testkit::recorder::contents;
use testkit::reloader::Reloader;
use testkit::{unique_name, TempDir};

const CUT_SHORT: &str = "warn fingerprint cut short";

/// Waits for the `warn fingerprint cut short` line(s), checks that each names the directory and
/// a bounded cause, at most one line per cause (loop, depth, entries: never one per path cut),
/// and returns how many there are.
fn cut_short_lines(rel: &Reloader) -> usize {
    let lines = rel.wait_lines(CUT_SHORT, 1, T);
    assert!(
        lines.len() <= 3,
        "one line per cause, not per path:\n{}",
        lines.join("\n")
    );
    for line in &lines {
        assert!(line.contains(" dir="), "{line}");
        assert!(
            ["loop", "depth", "entries"]
                .iter()
                .any(|cause| line.contains(cause)),
            "the reason names no cause: {line}"
        );
    }
    lines.len()
}

/// `sed -i EXPR FILE` with the real GNU sed: it writes `sedXXXXXX` and renames it over FILE.
fn sed_i(expr: &str, file: &Path) {
    let status = Command::new("sed")
        .args(["-i", expr])
        .arg(file)
        .status()
        .unwrap_or_else(|e| panic!("run sed (Debian package sed): {e}"));
    assert!(
        status.success(),
        "sed -i {expr} {}: {status}",
        file.display()
    );
}

// ---- Item 3: symlink loops and huge trees behind a symlink ----

/// Was: the fingerprint followed `..data -> .` without counting depth, each frame holding a
/// 4 KiB buffer, and the reloader died with SIGSEGV (exit 139) at start-up, logging nothing.
#[test]
fn data_link_to_dot_is_cut_short_with_one_warning_and_never_crashes() {
    let dir = TempDir::new("data-dot").unwrap();
    write(&dir.join("app.conf"), "v1");
    symlink(".", dir.join("..data")).unwrap();
    let name = unique_name("datadot");
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(dir.path(), &name, &[]);
    assert_eq!(cut_short_lines(&rel), 1, "{}", rel.log());

    write(&dir.join("app.conf"), "v2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
    assert!(rel.is_running(), "{}", rel.log());
    assert_eq!(
        rel.lines(CUT_SHORT).len(),
        1,
        "logged once per cause, not on every change:\n{}",
        rel.log()
    );
}

/// Was: a loop deeper in a plain tree (`a/loop -> ..`, a link to itself) was cut off without a
/// word in the log. The loop must be bounded, reported once, and the tree still reloads.
#[test]
fn symlink_loops_inside_a_plain_tree_are_reported_once_and_edits_still_reload() {
    let dir = TempDir::new("loops").unwrap();
    fs::create_dir(dir.join("a")).unwrap();
    write(&dir.join("a/f"), "1");
    write(&dir.join("app.conf"), "x");
    symlink("..", dir.join("a/loop")).unwrap();
    symlink("x", dir.join("x")).unwrap();
    let name = unique_name("loopapp");
    let app = spawn_app(&name, &dir.join("a/f"));
    let rel = start(dir.path(), &name, &[]);
    let warned = cut_short_lines(&rel);

    write(&dir.join("a/f"), "2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["2"]);
    // The same file reached through the loop.
    write(&dir.join("a/loop/a/f"), "3");
    assert_eq!(contents(&app.expect_exactly(2, T, QUIET)), ["2", "3"]);
    assert!(rel.is_running(), "{}", rel.log());
    assert_eq!(rel.lines(CUT_SHORT).len(), warned, "{}", rel.log());
}

/// Was: nothing bounded what a followed symlink adds. A link to a tree whose 10 levels each
/// hold 10 links to the next level is 10^10 paths over 11 directories: the reloader spun in
/// its start-up fingerprint forever and never became ready.
#[test]
fn symlink_to_a_huge_tree_is_cut_short_and_edits_beside_it_still_reload() {
    let tmp = TempDir::new("huge").unwrap();
    const LEVELS: usize = 10;
    for level in 0..=LEVELS {
        let l = tmp.join(format!("huge/l{level}"));
        fs::create_dir_all(&l).unwrap();
        write(&l.join("f"), level.to_string());
        if level < LEVELS {
            for i in 0..10 {
                symlink(format!("../l{}", level + 1), l.join(format!("s{i}"))).unwrap();
            }
        }
    }
    let dir = tmp.join("conf");
    fs::create_dir(&dir).unwrap();
    write(&dir.join("app.conf"), "v1");
    symlink(tmp.join("huge/l0"), dir.join("zz-huge")).unwrap();
    let name = unique_name("hugeapp");
    let app = spawn_app(&name, &dir.join("app.conf"));
    let rel = start(&dir, &name, &[]);
    let warned = cut_short_lines(&rel);

    write(&dir.join("app.conf"), "v2");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["v2"]);
    assert!(rel.is_running(), "{}", rel.log());
    assert_eq!(rel.lines(CUT_SHORT).len(), warned, "{}", rel.log());
}

// ---- Item 4: a config file named like sed's temp file ----

/// Was: any 9-character alphanumeric name starting with `sed` was taken for sed's temp file and
/// ignored, so a config file `sedscript` written in place was never noticed. It is content
/// unless it behaves like sed's temp file (renamed away), so it is noticed within
/// RELOAD_MAX_DELAY (2 s by default); a real `sed -i` stays one reload, with no debounce too.
#[test]
fn config_file_named_sedscript_is_noticed_and_sed_i_is_still_one_reload() {
    let dir = TempDir::new("sedscript").unwrap();
    write(&dir.join("app.conf"), "v1");
    let name = unique_name("sedapp");
    let app = spawn_app(&name, &dir.join("sedscript"));
    let rel = start(dir.path(), &name, &[]);

    write(&dir.join("sedscript"), "s/a/b/");
    assert_eq!(contents(&app.expect_exactly(1, T, QUIET)), ["s/a/b/"]);

    sed_i("s/v1/v2/", &dir.join("app.conf"));
    app.expect_exactly(2, T, QUIET);
    drop(rel);

    let _rel = start(dir.path(), &name, &[("RELOAD_DEBOUNCE", "0")]);
    sed_i("s/v2/v3/", &dir.join("app.conf"));
    app.expect_exactly(3, T, QUIET);
    assert_eq!(fs::read(dir.join("app.conf")).unwrap(), b"v3");
}

// ---- Item 5: directories with scratch-looking names ----

/// Was: these directories were watched, but the fingerprint dropped scratch-looking names for
/// directories too, so edits inside them logged "content unchanged; not signalling". Editor
/// scratch names are ignored for files only.
#[test]
fn edits_inside_directories_named_like_scratch_files_reload_once() {
    for sub in ["conf.d~", "4913", "sedAb12Z9"] {
        let dir = TempDir::new("scratch-dir").unwrap();
        fs::create_dir(dir.join(sub)).unwrap();
        let file = dir.join(sub).join("x.conf");
        write(&file, "1");
        let name = unique_name("scratchdir");
        let app = spawn_app(&name, &file);
        let _rel = start(dir.path(), &name, &[]);

        write(&file, "2");
        let got = app.expect_exactly(1, T, QUIET);
        assert_eq!(contents(&got), ["2"], "edit inside {sub}/");
    }
}

// ---- Item 8: fingerprint framing ----

/// The old unframed stream for one directory: per entry (sorted), name, NUL, then for a file
/// 0x04, its bytes, 0xff. Nothing says where bytes end, so layouts can collide.
fn old_unframed_stream(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(bytes);
        out.push(0xff);
    }
    out
}

/// Was: the fingerprint did not frame names and lengths, so `a`="" + `b`="c" and a single `a`
/// holding `\xff b \0 \x04 c` hashed the same, and going from one to the other sent nothing.
#[test]
fn layouts_that_collided_without_length_framing_are_told_apart() {
    let collided: &[u8] = b"\xffb\x00\x04c";
    assert_eq!(
        old_unframed_stream(&[("a", b""), ("b", b"c")]),
        old_unframed_stream(&[("a", collided)]),
        "the two layouts must feed the old hash the same bytes"
    );
    let dir = TempDir::new("framing").unwrap();
    write(&dir.join("a"), "");
    write(&dir.join("b"), "c");
    let name = unique_name("frameapp");
    let app = spawn_app(&name, &dir.join("a"));
    // Both syscalls below fall into one 1 s window: one change, one fingerprint.
    let _rel = start(dir.path(), &name, &[("RELOAD_DEBOUNCE", "1s")]);

    fs::remove_file(dir.join("b")).unwrap();
    write(&dir.join("a"), collided);
    let got = app.expect_exactly(1, T, QUIET);
    assert_eq!(got[0].content.as_deref(), Ok(collided));
}

// ---- Kernel interfaces as configuration ----

/// Was: `--check` with CONFIG_DIR=/proc/self never ended (it read files there that block or
/// never end), and neither did a walk of a tree with `/proc` mounted below it (CONFIG_DIR=/).
/// A directory on a kernel interface is refused as bad input; one mounted below a configured
/// directory counts by its name only, and is neither read nor watched.
#[test]
fn kernel_interfaces_are_refused_as_config_dirs_and_never_walked() {
    let name = unique_name("kernelfs");
    for dir in ["/proc/self", "/sys/fs"] {
        let env = [("CONFIG_DIR", dir), ("PROCESS_NAME", name.as_str())];
        let out = testkit::reloader::command(support::bin(), &env, &["--check"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{dir}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{dir}: {stderr}");
        assert!(stderr.contains("kernel interface"), "{dir}: {stderr}");
    }

    // /proc mounted below a configured directory, in a private mount namespace.
    let dir = TempDir::new("kernelfs").unwrap();
    write(&dir.join("app.conf"), "v1");
    fs::create_dir_all(dir.join("sub/proc")).unwrap();
    let script = format!(
        "mount -t proc proc {}/sub/proc && exec {} --check",
        dir.path().display(),
        support::bin().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .envs(testkit::tree::run_mark())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CONFIG_DIR", dir.path())
        .env("PROCESS_NAME", &name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The configured directory and sub/; nothing of the thousands of directories in /proc.
    assert!(
        stdout.contains(&format!("watch {} (2 directories)", dir.path().display())),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
