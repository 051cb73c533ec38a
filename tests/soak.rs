//! Soak: many kubelet-exact updates in a row against one reloader, looking for leaks.
//!
//! Each update is awaited: the app (`sigrecord`) must get signal number k, having read the
//! content of update k, before update k+1 is written. Along the way the reloader's open fds
//! (`/proc/PID/fd`) and resident memory (`VmRSS`) are sampled; after the first
//! [`checkpoint`] updates (the first thousand of a full run) they must stay flat to the end,
//! and the peak (`VmHWM`) must stay within [`budget_kib`].
//!
//! Length: `SOAK_UPDATES` (`make soak` sets 10,000 and uses the release build); otherwise
//! [`DEFAULT_UPDATES`], which takes a few seconds, so `cargo test` and CI run it every time.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::kubelet::Volume;
use testkit::recorder::{unescape, Options, Recorder};
use testkit::reloader::{path_str, Reloader};
use testkit::{unique_name, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_config-reloader");
/// Updates when `SOAK_UPDATES` is not set: at least 1,000, as issue 5 asks of CI.
const DEFAULT_UPDATES: usize = 2_000;
/// Deadline for one update's signal.
const T: Duration = Duration::from_secs(10);
/// Growth of VmRSS allowed between the checkpoint and the end: allocator noise (a page or
/// two of the heap touched for the first time late), far below one leaked byte per update
/// over 10,000 updates of ~1 KiB of log line, path and buffer each.
const RSS_SLACK_KIB: u64 = 64;

fn updates() -> usize {
    match std::env::var("SOAK_UPDATES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SOAK_UPDATES={v:?} is not a number")),
        Err(_) => DEFAULT_UPDATES,
    }
}

/// Where the flat part starts: after the first thousand updates of a long run, after the
/// first tenth of a short one.
fn checkpoint(n: usize) -> usize {
    (n / 10).clamp(1, 1000)
}

/// The binary under test: `SOAK_BIN` (`make soak` passes the static musl release binary users
/// get in the image), else the one cargo built for this test.
fn bin() -> PathBuf {
    std::env::var_os("SOAK_BIN").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

/// The most the reloader may ever have resident (VmHWM), about 1.5x what was measured over
/// 10,000 updates: the static musl binary ~560 KiB; cargo's glibc builds map ~2.1 MiB
/// (release) and ~2.5 MiB (debug), mostly shared libc pages.
fn budget_kib() -> u64 {
    if std::env::var_os("SOAK_BIN").is_some() {
        1024
    } else if cfg!(debug_assertions) {
        4 * 1024
    } else {
        3 * 1024
    }
}

/// Reads the recorder's `--out` file incrementally (it grows to ~1 MB over a full run, so
/// re-reading it whole per update would make the soak quadratic).
struct Tail {
    file: File,
    partial: String,
    contents: Vec<Vec<u8>>,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            file: File::open(path).expect("open recorder output"),
            partial: String::new(),
            contents: Vec::new(),
        }
    }

    /// Reads what was appended; returns the number of signals recorded so far.
    fn poll(&mut self) -> usize {
        let mut buf = String::new();
        self.file
            .read_to_string(&mut buf)
            .expect("read recorder output");
        self.partial.push_str(&buf);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if let Some(rest) = line.trim_end().strip_prefix("sig ") {
                let content = rest
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix("content="))
                    .and_then(unescape)
                    .unwrap_or_else(|| panic!("unparsable line {line:?}"));
                self.contents.push(content);
            }
        }
        self.contents.len()
    }
}

/// (open fds, VmRSS KiB, VmHWM KiB) of `pid`.
fn sample(pid: i32) -> (usize, u64, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list reloader fds")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in status"))
    };
    (fds, kib("VmRSS:"), kib("VmHWM:"))
}

/// Samples once the reloader has logged reload `k`: by then it has closed the pidfd and the
/// `/proc` files of that reload, so a transient fd is not mistaken for a leak.
fn idle_sample(rel: &Reloader, k: usize) -> (usize, u64, u64) {
    rel.wait_lines("info reloaded", k, T);
    sample(rel.pid())
}

#[test]
fn thousands_of_kubelet_updates_each_reload_once_with_flat_fds_and_memory() {
    let n = updates();
    assert!(n >= 10, "SOAK_UPDATES={n} is too short to say anything");
    let dir = TempDir::new("soak").unwrap();
    let vol = Volume::create(
        dir.path(),
        &[("app.conf", b"v0"), ("other.conf", b"constant")],
    )
    .unwrap();
    // Unique per run: the exact count of `reloaded` lines below must not include a soak app
    // of another test run on the same machine.
    let name = unique_name("soak");
    let app = Recorder::spawn(Options {
        name: Some(name.clone()),
        read: Some(dir.join("app.conf")),
        ..Options::default()
    });
    let bin = bin();
    let rel = Reloader::start(
        &bin,
        &[
            ("CONFIG_DIR", path_str(dir.path())),
            ("PROCESS_NAME", &name),
            ("RELOAD_DEBOUNCE", "5ms"),
            // Each update is written the moment the last one was signalled: pacing would make
            // every one wait for the interval, and the soak is about leaks.
            ("RELOAD_MIN_INTERVAL", "0"),
        ],
        &[],
    );
    let mut tail = Tail::new(app.out_path());
    let first = checkpoint(n);
    let mut at_first = None;
    let mut max_fds_after_first = 0;
    let started = Instant::now();

    for k in 1..=n {
        let content = format!("v{k}");
        let written = vol
            .update(&[
                ("app.conf", content.as_bytes()),
                ("other.conf", b"constant"),
            ])
            .unwrap();
        assert!(written, "update {k} changed nothing");
        let deadline = Instant::now() + T;
        // Polled every 200 µs rather than with wait_until's 5 ms: the soak's length is
        // dominated by this wait.
        while tail.poll() < k {
            assert!(
                Instant::now() < deadline,
                "update {k}: no signal within {T:?}; reloader log:\n{}",
                rel.log()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(
            tail.contents.len(),
            k,
            "more than one signal for update {k}"
        );
        assert_eq!(
            tail.contents[k - 1],
            content.as_bytes(),
            "update {k}: the app read stale content"
        );
        if k == first {
            at_first = Some(idle_sample(&rel, k));
        }
        if k > first && k % 100 == 0 {
            max_fds_after_first = max_fds_after_first.max(idle_sample(&rel, k).0);
        }
    }
    let took = started.elapsed();
    let (fds_first, rss_first, _) = at_first.expect("checkpoint sampled");
    let (fds_last, rss_last, hwm) = idle_sample(&rel, n);
    // Any late extra signal would have arrived within a few debounces.
    std::thread::sleep(Duration::from_millis(100));
    let signals = tail.poll();

    println!(
        "soak: {n} updates in {:.1} s ({:.2} ms each, {} build); signals per update {:.3}; \
         open fds {fds_first} after {first} -> {fds_last} at the end (max {}); \
         VmRSS {rss_first} KiB -> {rss_last} KiB; VmHWM {hwm} KiB (budget {} KiB); {}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        signals as f64 / n as f64,
        max_fds_after_first.max(fds_last),
        budget_kib(),
        bin.display(),
    );
    assert_eq!(signals, n, "signals per update must be exactly 1");
    assert_eq!(fds_last, fds_first, "open fds grew");
    assert!(max_fds_after_first <= fds_first, "open fds grew midway");
    assert!(
        rss_last <= rss_first + RSS_SLACK_KIB,
        "VmRSS grew from {rss_first} to {rss_last} KiB"
    );
    assert!(
        hwm <= budget_kib(),
        "VmHWM {hwm} KiB over the {} KiB budget",
        budget_kib()
    );
    assert!(rel.is_running());
    assert_eq!(rel.lines("info reloaded").len(), n);
}
