//! Unit tests of the /proc scan: names, stat lines, roots.

use super::*;
use std::time::Duration;

#[test]
fn stat_comm_may_hold_parentheses_spaces_and_any_byte() {
    let line = b"42 (my (weird) app) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
    let s = parse_stat(line).expect("parses");
    assert_eq!(s.comm, b"my (weird) app");
    assert_eq!((s.state, s.ppid, s.start_time), (b'S', 7, 123456));
    assert!(parse_stat(b"42 (x) S").is_none());
    // A comm cut in the middle of a UTF-8 character is still parsed.
    let mut cut = b"9 (abcdefghijklmn\xc3) S 1 ".to_vec();
    cut.extend_from_slice(&b"0 ".repeat(17));
    cut.extend_from_slice(b"77 0");
    let s = parse_stat(&cut).expect("parses non-UTF-8 comm");
    assert_eq!(s.comm, b"abcdefghijklmn\xc3");
    assert_eq!(s.start_time, 77);
}

#[test]
fn only_positive_decimal_names_are_pids() {
    assert_eq!(parse_pid(b"1"), Some(1));
    assert_eq!(parse_pid(b"2147483647"), Some(i32::MAX));
    for name in [
        &b"0"[..],
        b"",
        b"self",
        b"12a",
        b"-3",
        b"2147483648",
        b"99999999999",
    ] {
        assert_eq!(parse_pid(name), None, "{name:?}");
    }
}

fn never() -> Option<Vec<u8>> {
    panic!("argv[0] must not be read for short names")
}

#[test]
fn short_names_match_comm_exactly_never_a_prefix() {
    assert!(name_matches(b"nginx", b"nginx", never));
    assert!(!name_matches(b"nginx", b"nginx-exporter", never));
    assert!(!name_matches(b"ngin", b"nginx", never));
    assert!(!name_matches(b"nginx", b"ngin", never));
}

#[test]
fn long_names_match_argv0_basename() {
    let name = b"my-very-long-process-name27";
    let comm = &name[..15];
    assert!(name_matches(name, comm, || Some(
        b"/opt/bin/my-very-long-process-name27".to_vec()
    )));
    assert!(!name_matches(name, comm, || Some(
        b"/opt/bin/my-very-long-process-other".to_vec()
    )));
    assert!(!name_matches(b"my-very-long-process", comm, || Some(
        name.to_vec()
    )));
    assert!(!name_matches(name, comm, || None));
    // A multi-byte character split by the 15-byte cut.
    let wide = "abcdefghijklmné.conf".as_bytes();
    assert!(name_matches(wide, &wide[..15], || Some(wide.to_vec())));
}

/// Was: a `#!` script has its interpreter as argv[0], so a script name over 15 bytes
/// never matched (only its 15-byte cut did, even when the script's name was longer).
#[test]
fn a_long_script_name_matches_the_script_started_by_its_shebang_line() {
    fn argv<'a>(a: &'a [&'a [u8]]) -> impl FnOnce() -> Option<Vec<u8>> + 'a {
        move || Some(a.join(&0u8))
    }
    let name = b"reload-me-please-script";
    let comm = &name[..15];
    let sh: &[&[u8]] = &[b"/bin/sh", b"/opt/reload-me-please-script", b"--flag"];
    assert!(name_matches(name, comm, argv(sh)));
    let py: &[&[u8]] = &[b"/usr/bin/python3", b"-u", b"./reload-me-please-script"];
    assert!(name_matches(name, comm, argv(py)));
    // The cut no longer matches a script whose name is seen to be longer.
    assert!(!name_matches(comm, comm, argv(sh)));
    // Another script, or an argument that merely names it, is not it.
    let other: &[&[u8]] = &[b"/bin/sh", b"/opt/reload-me-please-other"];
    assert!(!name_matches(name, comm, argv(other)));
    let arg: &[&[u8]] = &[b"/opt/reload-me-please-other", b"reload-me-please-script"];
    assert!(!name_matches(name, comm, argv(arg)));
    let relative: &[&[u8]] = &[b"sh", b"reload-me-please-script"];
    assert!(!name_matches(name, comm, argv(relative)));
}

#[test]
fn a_fifteen_byte_name_is_not_a_prefix_of_a_longer_program() {
    let wanted = b"exactly-15-char";
    assert!(name_matches(wanted, wanted, || Some(
        b"/usr/bin/exactly-15-char".to_vec()
    )));
    assert!(name_matches(wanted, wanted, || None));
    assert!(!name_matches(wanted, wanted, || Some(
        b"/usr/bin/exactly-15-char-and-more".to_vec()
    )));
}

fn p(pid: i32, ppid: i32) -> Process {
    Process {
        pid: Pid::new(pid).unwrap(),
        ppid,
        start_time: 0,
    }
}

#[test]
fn roots_are_matches_without_a_matching_parent() {
    let all = vec![p(10, 1), p(11, 10), p(12, 10), p(20, 5)];
    assert_eq!(pick_roots(all), vec![p(10, 1), p(20, 5)]);
    assert_eq!(pick_roots(vec![p(11, 1)]), vec![p(11, 1)]);
}

#[test]
fn scan_finds_a_real_child_by_name_and_never_ourselves() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // spawn returns once the child's exec released our memory, a moment before the kernel
    // renames it (comm): scan until it is seen under its new name.
    let found = testkit::wait_until(Duration::from_secs(5), "sleep to be found", || {
        let found = scan(b"sleep").unwrap();
        found.iter().any(|p| p.pid.get() == pid).then_some(found)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(found.iter().any(|p| p.pid.get() == pid), "{found:?}");
    let me = fs::read("/proc/self/comm").unwrap();
    let own = std::process::id() as i32;
    assert!(scan(me.trim_ascii_end())
        .unwrap()
        .iter()
        .all(|p| p.pid.get() != own));
    assert!(others_visible().expect("/proc lists"));
}
