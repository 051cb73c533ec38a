//! Unit tests of the fingerprint walk, on real directories in a temp dir.

use super::*;
use std::os::unix::fs::symlink;
use std::time::Duration;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("fp-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn at(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A walk of `dirs` with `kernel` as the kernel interfaces' devices; the directories watched.
fn walk(dirs: &[PathBuf], kernel: &[u64]) -> (Report, Vec<PathBuf>) {
    let mut seen = Vec::new();
    let r = take(
        dirs,
        Hooks {
            sink: Sink::Bytes,
            kernel,
            on_dir: &mut |p, _| seen.push(p.to_path_buf()),
            stop: &mut || false,
        },
    );
    (r, seen)
}

fn report(d: &Dir) -> (Report, Vec<PathBuf>) {
    walk(std::slice::from_ref(&d.0), &[])
}

fn fp(d: &Dir) -> Fingerprint {
    report(d).0.outcome.expect("present")
}

#[test]
fn bytes_and_names_count_modes_and_scratch_files_do_not() {
    let d = Dir::new("plain");
    fs::write(d.at("a.conf"), "one").unwrap();
    let a = fp(&d);
    fs::write(d.at("a.conf"), "one").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    fs::set_permissions(d.at("a.conf"), mode).unwrap();
    fs::write(d.at(".a.conf.swp"), "vim").unwrap();
    fs::write(d.at("a.conf~"), "backup").unwrap();
    fs::write(d.at("4913"), "").unwrap();
    assert_eq!(fp(&d), a, "same bytes and scratch files are no change");
    fs::write(d.at("a.conf"), "two").unwrap();
    let b = fp(&d);
    assert_ne!(b, a);
    fs::rename(d.at("a.conf"), d.at("b.conf")).unwrap();
    assert_ne!(fp(&d), b, "a rename is a change");
}

#[test]
fn empty_dirs_dangling_links_and_scratch_named_dirs_are_content() {
    let d = Dir::new("kinds");
    let a = fp(&d);
    fs::create_dir(d.at("empty")).unwrap();
    let b = fp(&d);
    assert_ne!(a, b, "an empty directory counts");
    symlink("nowhere", d.at("dangling")).unwrap();
    let c = fp(&d);
    assert_ne!(b, c, "a dangling symlink counts");
    fs::create_dir(d.at("conf.d~")).unwrap();
    let e = fp(&d);
    assert_ne!(c, e);
    fs::write(d.at("conf.d~/x.conf"), "1").unwrap();
    assert_ne!(fp(&d), e, "an edit inside a scratch-named directory counts");
}

#[test]
fn fields_are_framed_so_different_layouts_differ() {
    // Unframed, `a`="" + `b`="c" and `a`="\xffb\0\x04c" fed the same bytes to the hash.
    let d = Dir::new("frame");
    fs::write(d.at("a"), "").unwrap();
    fs::write(d.at("b"), "c").unwrap();
    let two = fp(&d);
    fs::remove_file(d.at("b")).unwrap();
    fs::write(d.at("a"), b"\xffb\0\x04c").unwrap();
    assert_ne!(fp(&d), two);
    // A file and a directory of the same name are different content.
    let d2 = Dir::new("frame2");
    fs::write(d2.at("x"), "").unwrap();
    let file = fp(&d2);
    fs::remove_file(d2.at("x")).unwrap();
    fs::create_dir(d2.at("x")).unwrap();
    assert_ne!(fp(&d2), file);
}

#[test]
fn kubelet_volume_is_read_through_data_and_old_dirs_do_not_count() {
    let d = Dir::new("kubelet");
    fs::create_dir(d.at("..2026_01_01_00_00_00.1")).unwrap();
    fs::write(d.at("..2026_01_01_00_00_00.1/app.conf"), "v1").unwrap();
    symlink("..2026_01_01_00_00_00.1", d.at("..data")).unwrap();
    symlink("..data/app.conf", d.at("app.conf")).unwrap();
    let (r, watched) = report(&d);
    assert!(r.incomplete.is_none());
    assert_eq!(
        watched,
        vec![d.0.clone()],
        "only the volume root is watched"
    );
    let v1 = r.outcome.unwrap();
    fs::create_dir(d.at("..2026_01_01_00_00_01.2")).unwrap();
    fs::write(d.at("..2026_01_01_00_00_01.2/app.conf"), "v2").unwrap();
    fs::write(d.at("..2026_01_01_00_00_01.2/new.conf"), "n").unwrap();
    assert_eq!(fp(&d), v1, "a data dir not yet committed changes nothing");
    symlink("..2026_01_01_00_00_01.2", d.at("..data_tmp")).unwrap();
    fs::rename(d.at("..data_tmp"), d.at("..data")).unwrap();
    let (r, _) = report(&d);
    assert_eq!(
        r.incomplete.as_deref(),
        Some(d.0.as_path()),
        "new.conf is not linked yet"
    );
    let v2 = r.outcome.unwrap();
    assert_ne!(v2, v1);
    symlink("..data/new.conf", d.at("new.conf")).unwrap();
    let (r, _) = report(&d);
    assert!(r.incomplete.is_none(), "every key is linked now");
    fs::remove_dir_all(d.at("..2026_01_01_00_00_00.1")).unwrap();
    assert_eq!(
        r.outcome.unwrap(),
        fp(&d),
        "removing the old dir is no change"
    );
}

#[test]
fn data_pointing_at_its_own_volume_is_cut_as_a_loop_not_a_crash() {
    let d = Dir::new("dataloop");
    fs::write(d.at("f"), "x").unwrap();
    symlink(".", d.at("..data")).unwrap();
    let (r, _) = report(&d);
    assert!(r.outcome.is_ok());
    assert_eq!(r.cuts.len(), 1, "{:?}", r.cuts);
    assert_eq!(r.cuts[0].reason, CutReason::Loop);
    let before = r.outcome.unwrap();
    assert_eq!(before, fp(&d), "and hashes the same every time");
    fs::write(d.at("f"), "y").unwrap();
    assert_ne!(fp(&d), before, "read as a plain directory: its files count");
}

#[test]
fn a_huge_symlinked_tree_is_cut_once_per_reason_quickly() {
    // l0..l10, each holding a file and ten links to the next: 10^10 paths through links.
    let d = Dir::new("huge");
    for level in 0..=10 {
        let l = d.at(&format!("huge/l{level}"));
        fs::create_dir_all(&l).unwrap();
        fs::write(l.join("f"), level.to_string()).unwrap();
        for i in 0..10 {
            if level < 10 {
                symlink(format!("../l{}", level + 1), l.join(format!("s{i}"))).unwrap();
            }
        }
    }
    fs::create_dir(d.at("conf")).unwrap();
    symlink(d.at("huge/l0"), d.at("conf/zz")).unwrap();
    let (r, _) = walk(&[d.at("conf")], &[]);
    assert!(r.outcome.is_ok());
    assert!(r.cuts.len() <= 3, "one cut per reason: {:?}", r.cuts.len());
    assert!(
        r.cuts.iter().any(|c| c.reason == CutReason::Entries),
        "{:?}",
        r.cuts
    );
}

#[test]
fn symlink_loops_are_cut_and_real_deep_trees_are_walked_whole() {
    let d = Dir::new("loops");
    fs::create_dir_all(d.at("a/b")).unwrap();
    symlink("../..", d.at("a/b/up")).unwrap();
    symlink("self", d.at("self")).unwrap();
    let (r, watched) = report(&d);
    assert!(r.outcome.is_ok());
    assert!(
        r.cuts
            .iter()
            .any(|c| c.reason == CutReason::Loop && c.at.ends_with("a/b/up")),
        "{:?}",
        r.cuts
    );
    assert_eq!(
        watched.len(),
        3,
        "root, a, a/b; never through a symlink: {watched:?}"
    );

    let deep = Dir::new("deep");
    let mut p = deep.0.clone();
    for _ in 0..1201 {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("bottom.conf"), "1").unwrap();
    let (r, watched) = report(&deep);
    assert_eq!(watched.len(), 1202);
    let before = r.outcome.unwrap();
    fs::write(p.join("bottom.conf"), "2").unwrap();
    assert_ne!(fp(&deep), before);
}

#[test]
fn nested_symlinked_dirs_stop_at_the_depth_cap() {
    let d = Dir::new("depth");
    // l0 -> t0, t0/l1 -> t1, ...: every hop is a new directory, never a loop.
    for i in 0..12 {
        fs::create_dir(d.at(&format!("t{i}"))).unwrap();
    }
    symlink("t0", d.at("l0")).unwrap();
    for i in 0..11 {
        symlink(
            d.at(&format!("t{}", i + 1)),
            d.at(&format!("t{i}/l{}", i + 1)),
        )
        .unwrap();
    }
    let (r, _) = report(&d);
    assert!(
        r.cuts.iter().any(|c| c.reason == CutReason::Depth),
        "{:?}",
        r.cuts
    );
}

#[test]
fn a_missing_directory_is_reported() {
    let d = Dir::new("missing");
    let gone = d.at("nope");
    let (r, _) = walk(&[d.0.clone(), gone.clone()], &[]);
    assert_eq!(r.outcome, Err(gone));
}

#[test]
fn kernel_interfaces_count_by_name_only_however_they_are_reached() {
    let d = Dir::new("kernel");
    fs::write(d.at("app.conf"), "1").unwrap();
    symlink("/proc", d.at("p")).unwrap();
    symlink("/proc/self/pagemap", d.at("pm")).unwrap();
    let proc_dev = fs::metadata("/proc/self").unwrap().dev();
    let (r, seen) = walk(std::slice::from_ref(&d.0), &[proc_dev]);
    assert_eq!(seen, vec![d.0.clone()], "neither read nor watched");
    assert_eq!(r.cuts.len(), 1, "one cut for the reason: {:?}", r.cuts);
    assert_eq!(r.cuts[0].reason, CutReason::Kernel);
    // /proc changes all the time; what the app reads here does not.
    assert_eq!(
        walk(std::slice::from_ref(&d.0), &[proc_dev]).0.outcome,
        r.outcome
    );
    // A configured directory on one is cut too (CONFIG_DIR=/proc is refused before this).
    let (r, seen) = walk(&[PathBuf::from("/proc/self")], &[proc_dev]);
    assert!(seen.is_empty() && r.cuts[0].reason == CutReason::Kernel);
}

#[test]
fn a_walk_asked_to_stop_ends_interrupted() {
    let d = Dir::new("stop");
    for i in 0..2000 {
        fs::create_dir(d.at(&format!("d{i}"))).unwrap();
    }
    let mut asked = 0;
    let start = std::time::Instant::now();
    let r = take(
        std::slice::from_ref(&d.0),
        Hooks {
            sink: Sink::Bytes,
            kernel: &[],
            on_dir: &mut |_, _| std::thread::sleep(Duration::from_millis(1)),
            stop: &mut || {
                asked += 1;
                true
            },
        },
    );
    assert!(r.interrupted);
    assert_eq!(asked, 1, "asked once, then it stopped");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn listing_order_does_not_matter_and_files_above_the_limit_count_by_metadata() {
    let a = Dir::new("order");
    let create = |names: [&str; 3]| {
        for n in names {
            fs::write(a.at(n), n).unwrap();
        }
    };
    create(["x", "y", "z"]);
    let first = fp(&a);
    for n in ["x", "y", "z"] {
        fs::remove_file(a.at(n)).unwrap();
    }
    // tmpfs lists in reverse order of creation: the listing differs, the content does not.
    create(["z", "y", "x"]);
    assert_eq!(fp(&a), first);

    let big = fs::File::create(a.at("big")).unwrap();
    big.set_len(MAX_READ + 1).unwrap();
    let (r, _) = report(&a);
    assert_eq!(r.large.paths, vec![a.at("big")]);
    let before = r.outcome.unwrap();
    use std::os::unix::fs::FileExt;
    big.write_at(b"x", 10).unwrap();
    let set = |s, ns| {
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::new(s, ns);
        big.set_modified(t).unwrap();
    };
    set(1_000_000, 1);
    let after = fp(&a);
    assert_ne!(after, before, "its mtime changed");
    set(1_000_000, 1);
    assert_eq!(
        fp(&a),
        after,
        "a write that keeps size and mtime is not seen"
    );
}
