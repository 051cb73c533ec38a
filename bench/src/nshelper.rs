//! The `/proc` scan measurement, run as init of its own PID namespace
//! (`unshare --pid --fork --mount-proc --kill-child bench __scan-helper N REPS RELOADER`).
//!
//! It forks N sleepers, starts a sigrecord target and our binary, makes REPS kubelet updates
//! and collects `took_ms` from our `reloaded` lines; then times REPS `config-reloader --check`
//! runs and REPS `pkill -HUP -x NAME` runs (the baseline's per-event work). Figures go to
//! stdout as `key=value` lines. When it exits the kernel kills everything left in the
//! namespace, so the sleepers can never outlive the bench.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::{Options, Recorder};
use testkit::TempDir;

use crate::run::{Paths, Running, Tool, APP};
use crate::scenarios::content;

/// The first argument that selects this mode.
pub const ARG: &str = "__scan-helper";

/// Entry point; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("scan helper: {e}");
            1
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    // Only ever as init of a fresh namespace: that is what guarantees the sleepers die with us.
    if std::process::id() != 1 {
        return Err("must run as PID 1 of a new PID namespace (under unshare --pid --fork)".into());
    }
    let [sleepers, reps, reloader] = args else {
        return Err(format!("usage: bench {ARG} SLEEPERS REPS RELOADER"));
    };
    let sleepers: usize = sleepers.parse().map_err(|_| "SLEEPERS is not a number")?;
    let reps: usize = reps.parse().map_err(|_| "REPS is not a number")?;
    let paths = Paths {
        reloader: reloader.into(),
        sigrecord: testkit::recorder::sigrecord_bin(),
    };

    let dir = TempDir::new("bench-ns").map_err(|e| e.to_string())?;
    let root = dir.join("vol");
    fs::create_dir(&root).map_err(|e| e.to_string())?;
    let volume = Volume::create(&root, &[("app.conf", &content(0))]).map_err(|e| e.to_string())?;
    let rec = Recorder::spawn(Options {
        name: Some(APP.into()),
        read: Some(root.join("app.conf")),
        ..Options::default()
    });

    for i in 0..sleepers {
        // SAFETY: this process has one thread; the child only calls pause() forever.
        match unsafe { libc::fork() } {
            -1 => {
                return Err(format!(
                    "fork sleeper {i}: {}",
                    std::io::Error::last_os_error()
                ))
            }
            0 => loop {
                // SAFETY: pause has no arguments; it returns only on a caught signal.
                unsafe { libc::pause() };
            },
            _ => {}
        }
    }
    let visible = fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    println!("visible={visible}");

    let mut ours = Running::start(Tool::Ours, &paths, &[&root], &[], &dir.join("stderr"))?;
    ours.wait_ready(Duration::from_secs(30))?;
    for k in 1..=reps {
        volume
            .update_with(&[("app.conf", &content(k))], &UpdateOptions::default())
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while ours.reloads_logged().len() < k {
            if Instant::now() >= deadline {
                return Err(format!("no reload {k} within 10 s: {}", ours.stderr_text()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for t in ours.reloads_logged() {
        println!("took_ms={t}");
    }
    ours.stop();

    for _ in 0..reps {
        let t0 = Instant::now();
        let st = Command::new(&paths.reloader)
            .arg("--check")
            .env("CONFIG_DIR", &root)
            .env("PROCESS_NAME", APP)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("config-reloader --check: {e}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if !st.success() {
            return Err(format!("config-reloader --check failed: {st}"));
        }
        println!("check_ms={ms}");
    }
    for _ in 0..reps {
        let t0 = Instant::now();
        let st = Command::new("pkill")
            .args(["-HUP", "-x", APP])
            .status()
            .map_err(|e| format!("pkill: {e}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if !st.success() {
            return Err(format!("pkill -HUP -x {APP} found nothing: {st}"));
        }
        println!("pkill_ms={ms}");
    }
    drop(rec);
    Ok(())
}
