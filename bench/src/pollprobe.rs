//! The probes of figure 8 (`polling.rs`): scratch volumes, reloaders started and asleep, CPU
//! over a window of forced polls, the cost of a bare timer wake-up, and a sampler that counts
//! wake-ups as bursts of context switches.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testkit::kubelet::Volume;

use crate::procfs;
use crate::run::{Paths, Running, Tool};
use crate::scenarios::content;

/// How long a reloader may take to become ready.
const READY: Duration = Duration::from_secs(20);
/// The forced interval the CPU per poll is measured at.
pub const FAST: &str = "10ms";
/// How often the sampler looks at the context switches: far below 5 s, far above a poll.
pub const SAMPLE: Duration = Duration::from_millis(50);

/// Why FUSE cannot be measured here, if it cannot.
pub fn missing() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    for (path, package) in [
        ("/usr/bin/bindfs", "bindfs"),
        ("/usr/bin/fusermount", "fuse3"),
    ] {
        if !Path::new(path).is_file() {
            return Some(format!("{path} is missing (Debian package {package})"));
        }
    }
    None
}

/// A one-key kubelet volume at generation 0 in the new directory `root`.
pub fn volume(root: &Path) -> Result<Volume, String> {
    fs::create_dir(root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
    Volume::create(root, &[("app.conf", &content(0))])
        .map_err(|e| format!("populate {}: {e}", root.display()))
}

/// 4 directories of 16 files of 16 KiB: 1 MiB.
pub fn fill_plain(root: &Path) -> Result<(), String> {
    let block: Vec<u8> = content(0).into_iter().cycle().take(16 * 1024).collect();
    for d in 0..4 {
        let dir = root.join(format!("conf{d}.d"));
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        for f in 0..16 {
            let p = dir.join(format!("{f:02}.conf"));
            fs::write(&p, &block).map_err(|e| format!("write {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// Ours on `dir` with `env`, ready and asleep in ppoll.
pub fn start(
    paths: &Paths,
    dir: &Path,
    env: &[(&str, &str)],
    stderr: &Path,
) -> Result<Running, String> {
    let mut r = Running::start(Tool::Ours, paths, &[dir], env, stderr)?;
    r.wait_ready(READY)?;
    let pid = r.pid();
    let deadline = Instant::now() + READY;
    // The ready line comes before the /proc scan for targets: wait for the loop's ppoll.
    while !fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("poll")) {
        if Instant::now() >= deadline {
            return Err(format!("pid {pid} never slept in ppoll"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(r)
}

/// CPU of `window` of polls at [`FAST`], and of no polling, on the same directory.
pub struct PollCpu {
    pub polls: u64,
    pub cpu_ns: u64,
    pub ticks: u64,
    pub idle_ns: u64,
}

pub fn cpu_per_poll(
    paths: &Paths,
    dir: &Path,
    window: Duration,
    tmp: &Path,
) -> Result<PollCpu, String> {
    let polling = start(
        paths,
        dir,
        &[("RELOAD_POLL_INTERVAL", FAST)],
        &tmp.join("cpu.err"),
    )?;
    let off = start(
        paths,
        dir,
        &[("RELOAD_POLL_INTERVAL", "0")],
        &tmp.join("off.err"),
    )?;
    let (p0, o0, v0) = (polling.usage(), off.usage(), voluntary(polling.pid()));
    std::thread::sleep(window);
    let (p1, o1, v1) = (polling.usage(), off.usage(), voluntary(polling.pid()));
    polling.stop();
    off.stop();
    Ok(PollCpu {
        polls: v1.saturating_sub(v0),
        cpu_ns: p1.cpu_ns.saturating_sub(p0.cpu_ns),
        ticks: p1.cpu_ticks.saturating_sub(p0.cpu_ticks),
        idle_ns: o1.cpu_ns.saturating_sub(o0.cpu_ns),
    })
}

/// `voluntary_ctxt_switches` of `pid`: times it went to sleep by itself (preemptions on a busy
/// machine are the involuntary ones).
fn voluntary(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// CPU of one bare timer wake-up on this machine, in ns: this thread sleeping `n` times in a
/// 10 ms ppoll on no fd (`/proc/thread-self/schedstat`). Every poll pays it before doing
/// anything; on a VM it is most of a poll's cost.
pub fn bare_wakeup_ns(n: u32) -> u64 {
    let cpu = || {
        fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 10_000_000,
    };
    let before = cpu();
    for _ in 0..n {
        // SAFETY: no fds (a null array of length 0), a live timespec, the current mask.
        unsafe { libc::ppoll(std::ptr::null_mut(), 0, &ts, std::ptr::null()) };
    }
    cpu().saturating_sub(before) / u64::from(n.max(1))
}

/// Counts, per pid, the samples in which its context switches grew (wake-ups) and by how
/// much in all, until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, u64)>>,
}

impl Sampler {
    pub fn start(pids: Vec<i32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let read = |p: i32| procfs::usage(p).map_or(0, |u| u.ctx_switches);
            let first: Vec<u64> = pids.iter().map(|&p| read(p)).collect();
            let mut last = first.clone();
            let mut bursts = vec![0; pids.len()];
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE);
                for (i, &p) in pids.iter().enumerate() {
                    let now = read(p);
                    if now > last[i] {
                        bursts[i] += 1;
                        last[i] = now;
                    }
                }
            }
            bursts
                .into_iter()
                .zip(last.iter().zip(&first).map(|(l, f)| l - f))
                .collect()
        });
        Sampler { stop, thread }
    }

    pub fn stop(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The filesystem of `dir` by its statfs magic, for the row names.
pub fn fs_name(dir: &Path) -> String {
    match testkit::fuse::fs_type(dir) {
        Ok(0xEF53) => "ext4".into(),
        Ok(0x0102_1994) => "tmpfs".into(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683E) => "btrfs".into(),
        Ok(m) => format!("f_type {m:#x}"),
        Err(e) => format!("unknown fs ({e})"),
    }
}
