//! Random sequences of file operations (issue 9, item 3a), checked after each one against an
//! oracle of what the app reads: one reload if that changed since the last reload, none if not.
//!
//! One reloader watches a plain directory and a kubelet volume. Each step is one operation
//! (see `fsops`): writes, truncate(2), a write not closed, renames of files and of directories
//! over existing ones, directories moved in from outside or out, deletes and recreates while
//! held open, kubelet updates (the testkit writer, with its pauses, fsGroup pass and
//! same-content swaps), chmod, touch, a vim save, a real `sed -i`, empty directories, dangling
//! links and scratch files. Then the test waits for the reload the oracle calls for and a quiet
//! window (4 x the 150 ms debounce) that proves no other one comes.
//!
//! Defaults: 2 cases of 40 steps, about 30 s. Longer runs and replays:
//!
//! ```text
//! RANDOM_OPS_CASES=20 RANDOM_OPS_STEPS=200 cargo test --test random_ops -- --nocapture
//! RANDOM_OPS_SEED=1234 RANDOM_OPS_CASES=1 cargo test --test random_ops   # replay case 1234
//! ```

mod fsops;
mod support;

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use fsops::{walk, Snapshot, World};
use support::{kv, spawn_app, start_dirs, T};
use testkit::kubelet::Volume;
use testkit::recorder::Recorder;
use testkit::{unique_name, TempDir};

/// The reloader's debounce in these tests; a little over the default so that one operation's
/// few syscalls never straddle a settle on a loaded machine.
const DEBOUNCE: &str = "150ms";
/// Four debounces: long enough to prove that no reload follows.
const QUIET: Duration = Duration::from_millis(600);

/// A positive number from the environment, or `default`.
fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number; use e.g. {name}={default}")),
    }
}

#[test]
fn random_file_operations_give_one_reload_per_change_and_none_otherwise() {
    let cases = knob("RANDOM_OPS_CASES", 2);
    let steps = knob("RANDOM_OPS_STEPS", 40) as usize;
    let first = std::env::var("RANDOM_OPS_SEED").map_or_else(
        |_| u64::from(std::process::id()) << 32 | u64::from(testkit::monotonic_ns() as u32),
        |_| knob("RANDOM_OPS_SEED", 0),
    );
    eprintln!("random_ops: seeds {first}.. ({cases} cases of {steps} steps)");
    // Two cases at a time, each with its own directories, app and reloader.
    let seeds: Vec<u64> = (0..cases).map(|i| first.wrapping_add(i)).collect();
    for pair in seeds.chunks(2) {
        let runs: Vec<_> = pair
            .iter()
            .map(|&seed| std::thread::spawn(move || run_case(seed, steps)))
            .collect();
        // Join both before failing, so the other case's reloader and app are dropped (killed).
        let results: Vec<_> = runs.into_iter().map(|run| run.join()).collect();
        for result in results {
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// What the app reads from both directories now.
fn snapshot(plain: &Path, vol: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    walk(plain, "plain", &mut out);
    walk(vol, "vol", &mut out);
    out
}

/// The entries that differ between two snapshots, for failure messages.
fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {:?} -> {:?}", before.get(k), after.get(k)))
        .collect()
}

/// What `sigrecord --read path` would record now.
fn read_as_app(path: &Path) -> Result<Vec<u8>, i32> {
    fs::read(path).map_err(|e| e.raw_os_error().unwrap_or(0))
}

fn run_case(seed: u64, steps: usize) {
    let tmp = TempDir::new("random-ops").unwrap();
    let (plain, vol, outside) = (tmp.join("plain"), tmp.join("vol"), tmp.join("outside"));
    for d in [&plain, &plain.join("s"), &plain.join("t"), &vol, &outside] {
        fs::create_dir(d).unwrap();
    }
    fs::write(plain.join("a"), "1").unwrap();
    fs::write(plain.join("s/b"), "2").unwrap();
    let files = kv(&[("app.conf", "1"), ("sub/x.conf", "2")]);
    let volume = Volume::create(&vol, &files).unwrap();

    let name = unique_name("randops");
    let app = spawn_app(&name, &plain.join("a"));
    let extra = [("RELOAD_DEBOUNCE", DEBOUNCE), ("VERBOSE", "true")];
    let rel = start_dirs(&[&plain, &vol], &name, &extra);

    let mut world = World::new(seed, plain.clone(), outside, volume);
    let mut signalled = snapshot(&plain, &vol);
    let mut reloads = 0;
    let mut history = Vec::new();
    for step in 0..steps {
        history.push(format!("{step:3}: {}", world.step()));
        let now = snapshot(&plain, &vol);
        let changes = diff(&signalled, &now);
        if !changes.is_empty() {
            reloads += 1;
            signalled = now;
        }
        let fail = |what: String| -> ! {
            let log = rel.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{what}\nreplay: RANDOM_OPS_SEED={seed} RANDOM_OPS_CASES=1 RANDOM_OPS_STEPS={steps}\n\
                 steps:\n{}\nchanged by the last step: {changes:#?}\nreloader log (last 40):\n{}",
                history.join("\n"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        };
        check(&app, reloads, &plain.join("a"))
            .unwrap_or_else(|e| fail(format!("seed {seed}, step {step}: {e}")));
    }
    assert!(rel.is_running(), "{}", rel.log());
    eprintln!("random_ops: seed {seed}: {steps} steps, {reloads} reloads, all as the oracle said");
}

/// Waits for reload number `want` (if not there yet), then a quiet window, and checks that
/// exactly `want` arrived and that the last one read what the app reads now.
fn check(app: &Recorder, want: usize, read: &Path) -> Result<(), String> {
    let deadline = Instant::now() + T;
    while app.received().len() < want && Instant::now() < deadline {
        sleep(Duration::from_millis(5));
    }
    sleep(QUIET);
    let got = app.received();
    if got.len() != want {
        return Err(format!(
            "the oracle says {want} reload(s) so far, the app got {}",
            got.len()
        ));
    }
    match got.last() {
        Some(last) if last.content != read_as_app(read) => Err(format!(
            "the last reload read {:?}, the file now reads {:?}",
            last.content,
            read_as_app(read)
        )),
        _ => Ok(()),
    }
}
