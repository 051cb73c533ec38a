//! The measurements, one function each. Each sets up its own volume and target,
//! runs one contestant, and returns plain numbers; `report` turns them into the table.
//!
//! Timing is by CLOCK_MONOTONIC on both sides: the kubelet writer stamps the commit (the
//! rename onto `..data`), sigrecord stamps the signal in its handler. The bench's own polling
//! only decides when to move on, never what is measured.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::{Options, Received, Recorder};
use testkit::TempDir;

use crate::procfs::Usage;
use crate::run::{self, Paths, Running, Tool, APP};

/// How long a contestant may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an update may go without a fresh signal before it counts as missed.
const FRESH_TIMEOUT: Duration = Duration::from_secs(3);
/// Give up a series after this many missed updates (keeps a broken build's run bounded).
const MAX_MISSED: usize = 3;

/// The config file's content at generation `i`: about 1 KiB, like a small nginx.conf.
pub fn content(i: usize) -> Vec<u8> {
    let mut s = format!("# generation {i}\nworker_processes {};\n", i % 8 + 1);
    while s.len() < 1024 {
        s.push_str("location /static { root /srv/www; expires 1h; }\n");
    }
    s.into_bytes()
}

/// A one-key kubelet volume at generation 0, a sigrecord target reading it, and a scratch dir.
struct Setup {
    dir: TempDir,
    volume: Volume,
    rec: Recorder,
}

impl Setup {
    fn new() -> Result<Setup, String> {
        let dir = TempDir::new("bench").map_err(|e| e.to_string())?;
        let root = dir.join("vol");
        fs::create_dir(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
        let volume = Volume::create(&root, &[("app.conf", &content(0))])
            .map_err(|e| format!("populate {}: {e}", root.display()))?;
        let rec = Recorder::spawn(Options {
            name: Some(APP.into()),
            read: Some(root.join("app.conf")),
            ..Options::default()
        });
        Ok(Setup { dir, volume, rec })
    }

    fn start(&self, paths: &Paths, tool: Tool, env: &[(&str, &str)]) -> Result<Running, String> {
        let mut r = Running::start(
            tool,
            paths,
            &[self.volume.root()],
            env,
            &self.dir.join("stderr"),
        )?;
        r.wait_ready(READY_TIMEOUT)?;
        Ok(r)
    }

    /// One kubelet update to generation `i`; returns the commit's CLOCK_MONOTONIC ns.
    fn update(&self, i: usize) -> Result<u64, String> {
        self.volume
            .update_with(&[("app.conf", &content(i))], &UpdateOptions::default())
            .map_err(|e| format!("kubelet update {i}: {e}"))?
            .map(|c| c.commit_ns)
            .ok_or_else(|| format!("kubelet update {i} wrote nothing"))
    }
}

fn is(r: &Received, bytes: &[u8]) -> bool {
    r.content.as_ref().is_ok_and(|c| c == bytes)
}

/// Series of single updates (figure 1 and the CPU of figure 5).
#[derive(Clone, Debug, Default)]
pub struct Updates {
    /// Signals the target received for each update.
    pub signals: Vec<usize>,
    /// Signals after which the target read something other than the new content.
    pub stale: usize,
    /// Updates whose last signal saw the new content.
    pub last_fresh: usize,
    /// Updates that got no fresh signal within [`FRESH_TIMEOUT`].
    pub missed: usize,
    /// Commit → first signal that saw the new content, per update that got one (ns; 0 if the
    /// signal came just before the commit but the read after it).
    pub latency_ns: Vec<u64>,
    /// CPU of the contestant over the whole series, children included (ns).
    pub cpu_ns: u64,
    /// `reloaded` lines ours logged (signals sent); `None` for the baseline.
    pub sent: Option<usize>,
}

/// `n` kubelet updates, each followed by a wait for a fresh signal and `quiet` without one.
pub fn updates(
    paths: &Paths,
    tool: Tool,
    env: &[(&str, &str)],
    n: usize,
    quiet: Duration,
) -> Result<Updates, String> {
    let s = Setup::new()?;
    let running = s.start(paths, tool, env)?;
    // A signal here would be a spurious reload at start; it is counted as stale on update 1.
    let mut seen = 0;
    let mut out = Updates::default();
    let before = running.usage();
    for i in 1..=n {
        let want = content(i);
        let commit = s.update(i)?;
        let deadline = Instant::now() + FRESH_TIMEOUT;
        let window = loop {
            let got = s.rec.received();
            let window: Vec<Received> = got[seen.min(got.len())..].to_vec();
            let now = testkit::monotonic_ns();
            let last = window.last().map_or(commit, |r| r.t_ns.max(commit));
            let fresh = window.iter().any(|r| is(r, &want));
            let quiet_now = now.saturating_sub(last) >= quiet.as_nanos() as u64;
            if (fresh && quiet_now) || Instant::now() >= deadline {
                break window;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        seen += window.len();
        out.signals.push(window.len());
        out.stale += window.iter().filter(|r| !is(r, &want)).count();
        if window.last().is_some_and(|r| is(r, &want)) {
            out.last_fresh += 1;
        }
        match window.iter().find(|r| is(r, &want)) {
            Some(r) => out.latency_ns.push(r.t_ns.saturating_sub(commit)),
            None => {
                out.missed += 1;
                if out.missed >= MAX_MISSED {
                    break;
                }
            }
        }
    }
    out.cpu_ns = running
        .usage()
        .cpu_with_children_ns()
        .saturating_sub(before.cpu_with_children_ns());
    if tool == Tool::Ours {
        out.sent = Some(running.reloads_logged().len());
    }
    running.stop();
    Ok(out)
}

/// A storm of updates back to back (figure 2).
#[derive(Clone, Debug, Default)]
pub struct Storm {
    /// How long writing them took (ms).
    pub write_ms: f64,
    /// Signals the target received.
    pub signals: usize,
    /// Signals whose read saw something other than the final content.
    pub not_final: usize,
    /// Last signal minus last commit (ms); negative if nothing came after the last commit.
    pub last_after_ms: f64,
    /// Whether the last signal saw the final content.
    pub last_fresh: bool,
    /// `reloaded` lines ours logged; `None` for the baseline.
    pub sent: Option<usize>,
}

/// `n` updates with no pause, then a wait for the final content and 500 ms of quiet.
pub fn storm(paths: &Paths, tool: Tool, env: &[(&str, &str)], n: usize) -> Result<Storm, String> {
    let s = Setup::new()?;
    let running = s.start(paths, tool, env)?;
    let t0 = Instant::now();
    let mut last_commit = 0;
    for i in 1..=n {
        last_commit = s.update(i)?;
    }
    let write_ms = t0.elapsed().as_secs_f64() * 1e3;
    let want = content(n);
    // The baseline may still be working through its backlog of pkills; ours may be in its
    // max-delay window. Done when the final content was seen and nothing came for 500 ms, or
    // after 3 s of silence without it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = s.rec.received();
        let now = testkit::monotonic_ns();
        let last = got.last().map_or(last_commit, |r| r.t_ns.max(last_commit));
        let quiet = Duration::from_nanos(now.saturating_sub(last));
        let fresh = got.iter().any(|r| is(r, &want));
        if (fresh && quiet >= Duration::from_millis(500))
            || quiet >= Duration::from_secs(3)
            || Instant::now() >= deadline
        {
            break got;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = Storm {
        write_ms,
        signals: got.len(),
        not_final: got.iter().filter(|r| !is(r, &want)).count(),
        last_after_ms: got
            .last()
            .map_or(f64::NAN, |r| (r.t_ns as f64 - last_commit as f64) / 1e6),
        last_fresh: got.last().is_some_and(|r| is(r, &want)),
        sent: (tool == Tool::Ours).then(|| running.reloads_logged().len()),
    };
    running.stop();
    Ok(out)
}

/// Footprint at rest (figure 3).
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    /// Figures right after start (RSS, HWM summed over the contestant's processes).
    pub at_start: Usage,
    /// CPU ticks (utime+stime) spent during the idle period.
    pub cpu_ticks: u64,
    /// CPU ns (schedstat) spent during the idle period.
    pub cpu_ns: u64,
    /// Context switches (voluntary + involuntary) during the idle period: wake-ups.
    pub ctx_switches: u64,
    /// Processes the contestant consists of.
    pub procs: usize,
}

/// Both contestants started side by side on their own volumes, then left alone for `secs`.
pub fn idle(paths: &Paths, period: Duration) -> Result<(Idle, Idle), String> {
    let ours_setup = Setup::new()?;
    let base_dir = TempDir::new("bench").map_err(|e| e.to_string())?;
    let base_root = base_dir.join("vol");
    fs::create_dir(&base_root).map_err(|e| e.to_string())?;
    Volume::create(&base_root, &[("app.conf", &content(0))]).map_err(|e| e.to_string())?;
    let ours = ours_setup.start(paths, Tool::Ours, &[])?;
    let mut base = Running::start(
        Tool::Baseline,
        paths,
        &[&base_root],
        &[],
        &base_dir.join("stderr"),
    )?;
    base.wait_ready(READY_TIMEOUT)?;
    // Let start-up finish (ours logs "watching" last; the baseline's pipe may still be forking).
    std::thread::sleep(AFTER_START);
    let (o0, b0) = (ours.usage(), base.usage());
    std::thread::sleep(period);
    let (o1, b1) = (ours.usage(), base.usage());
    let delta = |a: Usage, b: Usage, procs: usize| Idle {
        at_start: a,
        cpu_ticks: b.cpu_ticks.saturating_sub(a.cpu_ticks),
        cpu_ns: b.cpu_ns.saturating_sub(a.cpu_ns),
        ctx_switches: b.ctx_switches.saturating_sub(a.ctx_switches),
        procs,
    };
    let out = (
        delta(o0, o1, ours.procs().len()),
        delta(b0, b1, base.procs().len()),
    );
    ours.stop();
    base.stop();
    Ok(out)
}

/// How long after the ready line figure 3 reads memory.
const AFTER_START: Duration = Duration::from_millis(200);

/// Ours alone on a one-key volume, its figures read as [`idle`] reads them: for the other
/// builds' VmRSS and VmHWM, which need no idle period.
pub fn at_rest(paths: &Paths) -> Result<Usage, String> {
    let s = Setup::new()?;
    let running = s.start(paths, Tool::Ours, &[])?;
    std::thread::sleep(AFTER_START);
    let usage = running.usage();
    running.stop();
    Ok(usage)
}

/// Start-up times over several runs (figure 4), in ns from `execve`.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    /// exec → first `inotify wd:` line in fdinfo.
    pub first_watch_ns: Vec<u64>,
    /// exec → the ready line on stderr.
    pub ready_ns: Vec<u64>,
}

/// `runs` cold starts on a one-key volume with the target present.
pub fn startup(paths: &Paths, tool: Tool, runs: usize) -> Result<Startup, String> {
    let s = Setup::new()?;
    let mut out = Startup::default();
    for _ in 0..runs {
        let mut r = Running::start(tool, paths, &[s.volume.root()], &[], &s.dir.join("stderr"))?;
        let first = run::wait_first_watch(&mut r, READY_TIMEOUT)?;
        let ready = r.wait_ready(READY_TIMEOUT)?;
        out.first_watch_ns.push(first.saturating_sub(r.exec_ns()));
        out.ready_ns.push(ready.saturating_sub(r.exec_ns()));
        r.stop();
    }
    Ok(out)
}

/// Watch scaling (figure 6).
#[derive(Clone, Debug, Default)]
pub struct Scale {
    /// exec → ready line, per run (ns).
    pub ready_ns: Vec<u64>,
    /// Largest VmHWM at ready over the runs, summed over processes (KiB).
    pub hwm_kib: u64,
    /// Inotify watches held at ready (checks that both watch the whole tree).
    pub watches: usize,
}

/// Builds a tree of exactly `dirs` directories (root included, 100 per group) plus one file.
fn make_tree(root: &Path, dirs: usize) -> Result<(), String> {
    fs::create_dir(root).map_err(|e| e.to_string())?;
    for i in 0..dirs.saturating_sub(1) {
        let g = root.join(format!("g{:03}", i / 100));
        let p = if i % 100 == 0 {
            g
        } else {
            g.join(format!("d{i:05}"))
        };
        fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
    }
    fs::write(root.join("app.conf"), content(0)).map_err(|e| e.to_string())
}

/// `runs` starts of `tool` on a tree of `dirs` directories.
pub fn scale(paths: &Paths, tool: Tool, dirs: usize, runs: usize) -> Result<Scale, String> {
    let tmp = TempDir::new("bench-tree").map_err(|e| e.to_string())?;
    let root = tmp.join("tree");
    make_tree(&root, dirs)?;
    let mut out = Scale::default();
    for _ in 0..runs {
        let mut r = Running::start(tool, paths, &[&root], &[], &tmp.join("stderr"))?;
        let ready = r.wait_ready(Duration::from_secs(60))?;
        out.ready_ns.push(ready.saturating_sub(r.exec_ns()));
        out.hwm_kib = out.hwm_kib.max(r.usage().hwm_kib);
        out.watches = r.watches();
        r.stop();
    }
    Ok(out)
}

/// Cost of one reload with many processes present (figure 5), from the namespace helper.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Processes visible in that namespace's /proc when measured.
    pub visible: usize,
    /// Ours: `took_ms` of each `reloaded` line (fingerprint + /proc scan + kill).
    pub took_ms: Vec<f64>,
    /// Ours: wall time of a `config-reloader --check` run (exec + scan), ms.
    pub check_ms: Vec<f64>,
    /// Baseline: wall time of one `pkill -HUP -x NAME` run (exec + scan + kill), ms.
    pub pkill_ms: Vec<f64>,
}

/// Runs `bench scan-helper` as init of a fresh PID namespace with `sleepers` extra processes.
pub fn scan(paths: &Paths, sleepers: usize, reps: usize) -> Result<Scan, String> {
    let tmp = TempDir::new("bench-scan").map_err(|e| e.to_string())?;
    let out_path = tmp.join("out");
    let err_path = tmp.join("err");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"])
        .arg(exe)
        .arg(crate::nshelper::ARG)
        .arg(sleepers.to_string())
        .arg(reps.to_string())
        .arg(&paths.reloader)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out_path).map_err(|e| e.to_string())?)
        .stderr(fs::File::create(&err_path).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("spawn unshare: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("scan helper timed out after 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The namespace's processes were reparented to us (init or subreaper) when its init died.
    crate::reap();
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "scan helper with {sleepers} sleepers failed ({status}): {}",
            fs::read_to_string(&err_path).unwrap_or_default().trim()
        ));
    }
    let mut out = Scan::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "visible" => out.visible = v.parse().unwrap_or(0),
            "took_ms" => out.took_ms.extend(v.parse::<f64>().ok()),
            "check_ms" => out.check_ms.extend(v.parse::<f64>().ok()),
            "pkill_ms" => out.pkill_ms.extend(v.parse::<f64>().ok()),
            _ => {}
        }
    }
    if out.took_ms.is_empty() || out.pkill_ms.is_empty() {
        return Err(format!("scan helper printed no figures: {text}"));
    }
    Ok(out)
}

/// Binary and image sizes (figure 7), in bytes.
#[derive(Clone, Debug, Default)]
pub struct Sizes {
    /// Our static binary.
    pub ours_binary: u64,
    /// `sh`, `inotifywait`, `pkill` and every shared library they load (deduplicated).
    pub baseline_files: u64,
    /// Those files, for the record.
    pub baseline_list: Vec<String>,
}

/// Sizes of what each contestant needs on disk.
pub fn sizes(paths: &Paths) -> Sizes {
    let len = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
    let mut files: Vec<String> = Vec::new();
    for prog in ["/bin/sh", "inotifywait", "pkill"] {
        let path = if prog.starts_with('/') {
            prog.to_string()
        } else {
            which(prog).unwrap_or_default()
        };
        if path.is_empty() {
            continue;
        }
        let real = fs::canonicalize(&path).map_or(path.clone(), |p| p.display().to_string());
        files.push(real);
        let ldd = Command::new("ldd").arg(&path).output();
        let text = ldd.map_or(String::new(), |o| String::from_utf8_lossy(&o.stdout).into());
        for line in text.lines() {
            // "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)" or "/lib64/ld-linux… (0x…)"
            let lib = match line.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                files.push(
                    fs::canonicalize(lib).map_or(lib.to_string(), |p| p.display().to_string()),
                );
            }
        }
    }
    files.sort();
    files.dedup();
    Sizes {
        ours_binary: len(&paths.reloader),
        baseline_files: files.iter().map(|f| len(Path::new(f))).sum(),
        baseline_list: files,
    }
}

/// `docker image inspect` size of `image` (a tag or an ID) in bytes, if docker has it.
pub fn image_size(image: &str) -> Option<u64> {
    Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Size}}", image])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
}

fn which(prog: &str) -> Option<String> {
    std::env::var("PATH").ok()?.split(':').find_map(|d| {
        let p = Path::new(d).join(prog);
        p.is_file().then(|| p.display().to_string())
    })
}
