//! The kubelet writer produces exactly the layout of docs/kubelet-volumes.md.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use testkit::kubelet::{UpdateOptions, Volume};
use testkit::TempDir;

fn link(path: &Path) -> String {
    fs::read_link(path)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()))
        .to_string_lossy()
        .into_owned()
}

/// Names directly under `root`, sorted.
fn entries(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts `..YYYY_MM_DD_HH_MM_SS.<1-10 digits>`.
fn assert_data_dir_name(name: &str) {
    let rest = name.strip_prefix("..").expect("starts with ..");
    let (stamp, digits) = rest.split_once('.').expect("has .digits");
    let parts: Vec<&str> = stamp.split('_').collect();
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    assert_eq!(lens, [4, 2, 2, 2, 2, 2], "bad timestamp in {name}");
    assert!(
        parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
        "{name}"
    );
    assert!((1..=10).contains(&digits.len()), "{name}");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{name}");
}

#[test]
fn first_population_links_data_and_every_key_relatively() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let vol = Volume::create(root, &[("app.conf", b"v1"), ("sub/x.conf", b"x1")]).unwrap();

    let target = link(&root.join("..data"));
    assert!(
        !target.contains('/'),
        "..data target {target} must be a bare name"
    );
    assert_data_dir_name(&target);
    assert_eq!(vol.data_dir().unwrap(), root.join(&target));
    assert_eq!(link(&root.join("app.conf")), "..data/app.conf");
    assert_eq!(link(&root.join("sub")), "..data/sub");
    assert_eq!(
        entries(root),
        [target.as_str(), "..data", "app.conf", "sub"]
    );

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root.join(&target)), 0o755);
    assert_eq!(mode(&root.join(&target).join("app.conf")), 0o644);
    assert_eq!(fs::read(root.join("app.conf")).unwrap(), b"v1");
    assert_eq!(fs::read(root.join("sub/x.conf")).unwrap(), b"x1");
}

#[test]
fn update_swaps_data_and_removes_the_old_dir() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let vol = Volume::create(root, &[("app.conf", b"v1")]).unwrap();
    let old = vol.data_dir().unwrap();
    let old_inode = fs::metadata(root.join("app.conf")).unwrap();

    assert!(vol.update(&[("app.conf", b"v2")]).unwrap());

    let new = vol.data_dir().unwrap();
    assert_ne!(new, old);
    assert!(!old.exists(), "old data dir {} left behind", old.display());
    assert_eq!(link(&root.join("app.conf")), "..data/app.conf");
    assert_eq!(fs::read(root.join("app.conf")).unwrap(), b"v2");
    let new_inode = fs::metadata(root.join("app.conf")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        new_inode.ino(),
        old_inode.ino(),
        "every update makes a new inode"
    );
    assert!(!root.join("..data_tmp").exists());
    assert_eq!(entries(root).len(), 3);
}

#[test]
fn update_with_equal_bytes_writes_nothing_unless_asked_to_swap() {
    let tmp = TempDir::new("kubelet").unwrap();
    let vol = Volume::create(tmp.path(), &[("a", b"1"), ("sub/b", b"2")]).unwrap();
    let before = vol.data_dir().unwrap();

    assert!(!vol.update(&[("sub/b", b"2"), ("a", b"1")]).unwrap());
    assert_eq!(vol.data_dir().unwrap(), before);

    let opts = UpdateOptions {
        swap_on_equal: true,
        ..UpdateOptions::default()
    };
    let commit = vol
        .update_with(&[("a", b"1"), ("sub/b", b"2")], &opts)
        .unwrap();
    let commit = commit.expect("swap_on_equal writes");
    assert_eq!(commit.old_dir.as_deref(), Some(before.as_path()));
    assert_eq!(vol.data_dir().unwrap(), commit.new_dir);
    assert!(commit.commit_ns <= testkit::monotonic_ns());
}

#[test]
fn added_keys_get_links_and_removed_keys_lose_them() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let vol = Volume::create(root, &[("a", b"1"), ("gone", b"x")]).unwrap();

    assert!(vol.update(&[("a", b"1"), ("new/k", b"2")]).unwrap());

    assert_eq!(link(&root.join("new")), "..data/new");
    assert_eq!(fs::read(root.join("new/k")).unwrap(), b"2");
    assert!(
        fs::symlink_metadata(root.join("gone")).is_err(),
        "link of removed key kept"
    );
    let target = link(&root.join("..data"));
    assert_eq!(entries(root), [target.as_str(), "..data", "a", "new"]);
}

#[test]
fn legacy_order_and_options_give_the_same_final_layout() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let opts = UpdateOptions {
        legacy_order: true,
        pause_between_keys: Some(Duration::from_millis(1)),
        fsgroup: Some(4242),
        swap_on_equal: false,
        pause_after_commit: None,
        default_mode: None,
    };
    let (vol, _) = Volume::create_with(root, &[("a", b"1")], &opts).unwrap();
    vol.update_with(&[("a", b"2"), ("b", b"3")], &opts)
        .unwrap()
        .unwrap();

    assert_eq!(fs::read(root.join("a")).unwrap(), b"2");
    assert_eq!(fs::read(root.join("b")).unwrap(), b"3");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(root.join("a")).unwrap().gid(), 4242);
    assert_eq!(entries(root).len(), 4);
}

#[test]
fn many_updates_per_second_get_unique_dirs() {
    let tmp = TempDir::new("kubelet").unwrap();
    let vol = Volume::create(tmp.path(), &[("a", b"0")]).unwrap();
    for i in 1..200u32 {
        assert!(vol.update(&[("a", i.to_string().as_bytes())]).unwrap());
    }
    assert_eq!(fs::read(tmp.join("a")).unwrap(), b"199");
    assert_eq!(entries(tmp.path()).len(), 3);
}

#[test]
fn update_after_the_dir_was_recreated_populates_it_again() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.join("vol");
    fs::create_dir(&root).unwrap();
    let vol = Volume::create(&root, &[("a", b"1")]).unwrap();
    fs::remove_dir_all(&root).unwrap();
    fs::create_dir(&root).unwrap();

    assert!(vol.update(&[("a", b"2")]).unwrap());
    assert_eq!(fs::read(root.join("a")).unwrap(), b"2");
}

#[test]
fn fsgroup_pass_visits_contents_before_their_dirs_the_old_dir_too_and_the_root_last() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let vol = Volume::create(root, &[("a", b"1"), ("sub/deep/x", b"2")]).unwrap();
    let old = vol.data_dir().unwrap();
    let opts = UpdateOptions {
        fsgroup: Some(4242),
        ..UpdateOptions::default()
    };
    let commit = vol
        .update_with(&[("a", b"2"), ("sub/deep/x", b"3")], &opts)
        .unwrap()
        .expect("changed");
    let order = &commit.ownership_order;

    assert_eq!(order.last().map(|p| p.as_path()), Some(root), "{order:#?}");
    for dir in [&old, &commit.new_dir] {
        for rel in ["", "a", "sub", "sub/deep", "sub/deep/x"] {
            let p = if rel.is_empty() {
                dir.clone()
            } else {
                dir.join(rel)
            };
            assert!(
                order.contains(&p),
                "{} not visited: {order:#?}",
                p.display()
            );
        }
    }
    assert!(order.contains(&root.join("..data")), "{order:#?}");
    // Every path comes after everything below it.
    for (i, p) in order.iter().enumerate() {
        if let Some(j) = order.iter().position(|q| q != p && q.starts_with(p)) {
            assert!(
                j < i,
                "{} visited before {}",
                p.display(),
                order[j].display()
            );
        }
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(root).unwrap().gid(), 4242);
    assert_eq!(fs::metadata(root.join("sub/deep/x")).unwrap().gid(), 4242);
}

#[test]
fn no_op_update_recreates_a_deleted_visible_link_and_writes_nothing_else() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let vol = Volume::create(root, &[("a", b"1"), ("sub/x", b"2")]).unwrap();
    let data = vol.data_dir().unwrap();
    fs::remove_file(root.join("a")).unwrap();
    fs::remove_file(root.join("sub")).unwrap();

    assert!(!vol.update(&[("a", b"1"), ("sub/x", b"2")]).unwrap());

    assert_eq!(vol.data_dir().unwrap(), data, "no swap for equal bytes");
    assert_eq!(link(&root.join("a")), "..data/a");
    assert_eq!(link(&root.join("sub")), "..data/sub");
    assert_eq!(fs::read(root.join("sub/x")).unwrap(), b"2");
}

#[test]
fn pause_after_commit_delays_each_link_added_or_removed_after_the_swap() {
    let tmp = TempDir::new("kubelet").unwrap();
    let root = tmp.path();
    let vol = Volume::create(root, &[("a", b"1"), ("gone", b"x")]).unwrap();
    let pause = Duration::from_millis(50);
    let opts = UpdateOptions {
        pause_after_commit: Some(pause),
        ..UpdateOptions::default()
    };
    // One name added (step 7) and one removed (step 8): two pauses after the commit.
    let commit = vol
        .update_with(&[("a", b"1"), ("new", b"2")], &opts)
        .unwrap()
        .expect("changed");

    let after = Duration::from_nanos(commit.last_link_ns - commit.commit_ns);
    assert!(
        after >= 2 * pause,
        "last link step {after:?} after the commit"
    );
    assert!(commit.last_link_ns <= testkit::monotonic_ns());
    assert_eq!(link(&root.join("new")), "..data/new");
    assert!(fs::symlink_metadata(root.join("gone")).is_err());
    assert!(!commit.old_dir.unwrap().exists());
}
