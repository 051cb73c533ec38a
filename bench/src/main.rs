//! `make bench`: config-reloader against the shell loop
//! `inotifywait -m -r … DIR | while read -r _; do pkill -HUP -x NAME; done`, in one run on
//! this machine, side by side with ratios. `--smoke` is the same with small counts,
//! a few seconds, to keep the bench from rotting.
//!
//! The figures are reported, never asserted: machines are shared and noisy, so the budgets are
//! printed as met/missed next to ours and nothing fails on them.
//!
//! Clean-up does not depend on the code under test behaving: the bench is a child subreaper,
//! so every process any contestant leaves behind is reparented to it, and at the end (normal,
//! panic, SIGINT/SIGTERM or the watchdog) it kills every descendant and removes its one
//! temporary directory, which all scratch files live under (`TMPDIR` points there).

mod builds;
mod metrics;
mod nshelper;
mod polling;
mod pollprobe;
mod procfs;
mod report;
mod run;
mod scenarios;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use builds::Builds;
use report::{median, percentile, Row, Val};
use run::{Paths, Tool};
use scenarios::Updates;

/// Counts and periods of one run.
struct Plan {
    smoke: bool,
    updates: usize,
    quiet: Duration,
    storm: usize,
    idle: Duration,
    startup_runs: usize,
    scan: Vec<usize>,
    scan_reps: usize,
    scale: Vec<usize>,
    scale_runs: usize,
    watchdog: Duration,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            smoke: false,
            updates: 50,
            quiet: Duration::from_millis(100),
            storm: 200,
            idle: Duration::from_secs(30),
            startup_runs: 20,
            scan: vec![100, 1_000, 10_000],
            scan_reps: 10,
            scale: vec![10, 1_000, 10_000],
            scale_runs: 3,
            watchdog: Duration::from_secs(600),
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            updates: 5,
            quiet: Duration::from_millis(100),
            storm: 20,
            idle: Duration::from_secs(2),
            startup_runs: 3,
            scan: vec![100],
            scan_reps: 2,
            scale: vec![10, 1_000],
            scale_runs: 1,
            watchdog: Duration::from_secs(120),
        }
    }
}

const USAGE: &str = "usage: bench [--smoke] [--reloader PATH] [--sigrecord PATH] [--out DIR]
             [--before PATH [--before-rev REV]] [--tiny PATH] [--image REF]
  --smoke          small counts, a few seconds (make bench-smoke)
  --reloader PATH  config-reloader to measure (default: the release musl build)
  --sigrecord PATH the signal-recording target (default: the release musl build)
  --before PATH    also measure this build (the last no_std commit) in a \"before\" column
  --before-rev REV the commit --before was built from, for the column's header
  --tiny PATH      also measure this build (make tiny) in a \"tiny\" column
  --image REF      our image, for its size (default config-reloader-sidecar:latest)
  --out DIR        where latest.md and latest.json go (default: bench/results, or
                   target/bench-smoke with --smoke)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(nshelper::ARG) {
        std::process::exit(nshelper::main(&args[1..]));
    }
    std::process::exit(match parse(&args) {
        Ok((plan, paths, builds, out)) => match std::env::var(PIDNS_ENV).as_deref() {
            Ok("inner") => supervise(&plan, &paths, &builds, &out),
            _ => outer(&args, &plan, &paths, &builds, &out),
        },
        Err(e) => {
            eprintln!("bench: {e}\n{USAGE}");
            2
        }
    });
}

/// Set to `inner` in the copy of the bench that runs as init of its own PID namespace.
const PIDNS_ENV: &str = "BENCH_PIDNS";

/// unshare's pid, for the outer bench's SIGINT/SIGTERM handler; 0 before it exists.
static UNSHARE_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_unshare(_sig: libc::c_int) {
    let pid = UNSHARE_PID.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is the one positive pid we spawned.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Creates the scratch directory and runs the bench as init of a fresh PID namespace, like a
/// pod with `shareProcessNamespace`: only the bench, the contestant and its target are in
/// `/proc`, so per-reload figures are not inflated by this machine's other processes (the
/// `/proc` scan cost is measured on its own, fig. 5). When init exits the kernel kills
/// whatever is left in the namespace; the scratch directory is removed here afterwards.
/// Without the privilege for `unshare --pid` it runs in place, and the table says so.
fn outer(args: &[String], plan: &Plan, paths: &Paths, builds: &Builds, out: &Path) -> i32 {
    let scratch =
        std::env::temp_dir().join(format!("config-reloader-bench.{}", std::process::id()));
    if let Err(e) = fs::create_dir(&scratch) {
        eprintln!("bench: mkdir {}: {e}", scratch.display());
        return 1;
    }
    // Still one thread: setting the environment is sound; every child inherits it.
    std::env::set_var("TMPDIR", &scratch);
    let ns = &["--pid", "--fork", "--mount-proc", "--kill-child", "--"];
    let probe = Command::new("unshare")
        .args(ns)
        .arg("true")
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let code = if probe {
        run_in_namespace(ns, args)
    } else {
        eprintln!("bench: cannot unshare a PID namespace (needs root); measuring in the host's");
        std::env::set_var(PIDNS_ENV, "host");
        supervise(plan, paths, builds, out)
    };
    let _ = fs::remove_dir_all(&scratch);
    code
}

/// Runs `unshare … bench ARGS` with `BENCH_PIDNS=inner` and returns its exit code. SIGINT or
/// SIGTERM here SIGKILLs unshare, whose `--kill-child` ends the namespace and all in it.
fn run_in_namespace(ns: &[&str], args: &[String]) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench: current_exe: {e}");
            return 1;
        }
    };
    let mut child = match Command::new("unshare")
        .args(ns)
        .arg(exe)
        .args(args)
        .env(PIDNS_ENV, "inner")
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: spawn unshare: {e}");
            return 1;
        }
    };
    UNSHARE_PID.store(child.id() as i32, Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction whose handler only calls kill(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = kill_unshare as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    match child.wait() {
        Ok(st) if st.success() => 0,
        Ok(st) => st.code().unwrap_or(130),
        Err(e) => {
            eprintln!("bench: wait for unshare: {e}");
            1
        }
    }
}

fn parse(args: &[String]) -> Result<(Plan, Paths, Builds, PathBuf), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let release = root.join("target/x86_64-unknown-linux-musl/release");
    let mut plan = Plan::full();
    let mut paths = Paths {
        reloader: release.join("config-reloader"),
        sigrecord: release.join("sigrecord"),
    };
    let mut builds = Builds::default();
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--smoke" => plan = Plan::smoke(),
            "--reloader" => paths.reloader = value()?.into(),
            "--sigrecord" => paths.sigrecord = value()?.into(),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--before" => builds.before = Some(value()?.into()),
            "--before-rev" => builds.before_rev = Some(value()?),
            "--tiny" => builds.tiny = Some(value()?.into()),
            "--image" => builds.image = Some(value()?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    let extra = [("--before", &builds.before), ("--tiny", &builds.tiny)];
    let extra = extra.iter().filter_map(|(w, p)| Some((*w, p.as_ref()?)));
    for (what, p) in [
        ("--reloader", &paths.reloader),
        ("--sigrecord", &paths.sigrecord),
    ]
    .into_iter()
    .chain(extra)
    {
        if !p.is_file() {
            return Err(format!(
                "{what} {} does not exist; build it with `make build-test-bins` (make bench does)",
                p.display()
            ));
        }
    }
    let out = out.unwrap_or_else(|| {
        if plan.smoke {
            root.join("target/bench-smoke")
        } else {
            root.join("bench/results")
        }
    });
    Ok((plan, paths, builds, out))
}

/// Write end of the pipe SIGINT/SIGTERM are forwarded into; -1 before set-up.
static STOP_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop(sig: libc::c_int) {
    let b = sig as u8;
    // SAFETY: write is async-signal-safe; the buffer is one byte on the stack.
    unsafe { libc::write(STOP_WR.load(Ordering::Relaxed), (&b as *const u8).cast(), 1) };
}

/// Runs the bench with the safety net around it; returns the exit code.
fn supervise(plan: &Plan, paths: &Paths, builds: &Builds, out: &Path) -> i32 {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "bench: PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
        return 1;
    }
    // TMPDIR is the scratch directory `outer` made; everything temporary goes below it.
    let scratch = std::env::temp_dir();
    // Still one thread: setting the environment is sound. Everything below inherits it.
    std::env::set_var("SIGRECORD_BIN", &paths.sigrecord);
    if let Err(e) = start_watchdog(plan.watchdog, scratch.clone()) {
        eprintln!("bench: {e}");
        return 1;
    }

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bench(plan, paths, builds, out)
    }));
    let leftovers = sweep();
    let _ = fs::remove_dir_all(&scratch);
    if leftovers > 0 {
        eprintln!("bench: killed {leftovers} leftover process(es)");
    }
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("bench: {e}");
            1
        }
        Err(_) => {
            eprintln!("bench: aborted by a panic (see above)");
            1
        }
    }
}

/// A thread that ends the run on SIGINT/SIGTERM or after `limit`: kills every descendant,
/// removes `scratch` and exits (130 on a signal, 124 on the watchdog).
fn start_watchdog(limit: Duration, scratch: PathBuf) -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    STOP_WR.store(fds[1], Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only writes one byte to a pipe;
        // exec resets it to the default in every child.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
            }
        }
    }
    let rd = fds[0];
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let code = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                eprintln!("\nbench: watchdog: still running after {limit:?}; stopping");
                break 124;
            }
            let mut pfd = libc::pollfd {
                fd: rd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } > 0 {
                eprintln!("\nbench: interrupted; cleaning up");
                break 130;
            }
        };
        let n = sweep();
        let _ = fs::remove_dir_all(&scratch);
        eprintln!(
            "bench: killed {n} process(es), removed {}",
            scratch.display()
        );
        std::process::exit(code);
    });
    Ok(())
}

/// Kills every descendant (subreaper: orphans included) with SIGKILL and reaps; returns how
/// many were found, naming them on stderr (none should be left: each is a clean-up bug).
fn sweep() -> usize {
    let me = std::process::id() as i32;
    let mut killed = 0;
    reap();
    for _ in 0..20 {
        let pids = procfs::all_descendants(me);
        if pids.is_empty() {
            break;
        }
        killed += pids.len();
        let names: Vec<String> = pids
            .iter()
            .map(|&p| format!("{p}:{}", procfs::comm(p).unwrap_or_default()))
            .collect();
        eprintln!("bench: left over: {}", names.join(" "));
        for pid in pids {
            let _ = testkit::kill(pid, libc::SIGKILL);
        }
        reap();
        std::thread::sleep(Duration::from_millis(20));
    }
    reap();
    killed
}

/// Reaps every exited child without blocking. Only while the caller holds no `Child` it still
/// means to wait for (it would steal that status).
pub fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid int.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// All seven figures, then the table on stdout and in `out`.
fn bench(plan: &Plan, paths: &Paths, builds: &Builds, out: &Path) -> Result<(), String> {
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut raw: Vec<(String, Vec<f64>)> = Vec::new();
    let n = plan.updates;
    // Fig. 1's series at 10 updates a second measure the commit → signal path without the
    // interval, which would hold each update after the first (fig. 2 shows what it does).
    let dd: &[(&str, &str)] = &[("RELOAD_MIN_INTERVAL", "0")];
    let d0: &[(&str, &str)] = &[("RELOAD_DEBOUNCE", "0"), ("RELOAD_MIN_INTERVAL", "0")];
    // Lone updates: each one more than the default RELOAD_MIN_INTERVAL (1 s) after the last
    // reload, as kubelet updates (one per pod sync, a minute apart) always are.
    let lone = Duration::from_millis(1200);
    if let Some(b) = builds.describe() {
        progress(&format!("also measuring, each right after ours: {b}"));
    }
    // Image sizes first: the ID `make bench` passes is the image it just built, which another
    // checkout's `make image` may untag, and then prune 30 s later, while this runs.
    let ours_image = scenarios::image_size(builds.image.as_deref().unwrap_or(builds::IMAGE));
    let tiny_image = scenarios::image_size(builds::TINY_IMAGE);

    // 1. Kubelet updates.
    progress(&format!(
        "1/7 {n} kubelet updates each: ours (defaults, lone), ours (default debounce), ours (RELOAD_DEBOUNCE=0), baseline"
    ));
    let ol = scenarios::updates(paths, Tool::Ours, &[], n, lone)?;
    let ol_x = builds.run(paths, |p| scenarios::updates(p, Tool::Ours, &[], n, lone))?;
    let od = scenarios::updates(paths, Tool::Ours, dd, n, plan.quiet)?;
    let od_x = builds.run(paths, |p| {
        scenarios::updates(p, Tool::Ours, dd, n, plan.quiet)
    })?;
    let o0 = scenarios::updates(paths, Tool::Ours, d0, n, plan.quiet)?;
    let o0_x = builds.run(paths, |p| {
        scenarios::updates(p, Tool::Ours, d0, n, plan.quiet)
    })?;
    let b = scenarios::updates(paths, Tool::Baseline, &[], n, plan.quiet)?;
    let ms = |v: &[u64]| -> Vec<f64> { v.iter().map(|&x| x as f64 / 1e6).collect() };
    let (odl, o0l, bl) = (ms(&od.latency_ns), ms(&o0.latency_ns), ms(&b.latency_ns));
    let oll = ms(&ol.latency_ns);
    let signals = |u: &Updates| {
        let mean = u.signals.iter().sum::<usize>() as f64 / u.signals.len().max(1) as f64;
        let (lo, hi) = (
            u.signals.iter().min().copied().unwrap_or(0),
            u.signals.iter().max().copied().unwrap_or(0),
        );
        let missed = if u.missed > 0 {
            format!(", {} missed", u.missed)
        } else {
            String::new()
        };
        Val::with(
            mean,
            format!("{} ({lo}–{hi}{missed})", report::fmt_num(mean)),
        )
    };
    let exactly_one = |u: &Updates| u.missed == 0 && u.signals.iter().all(|&s| s == 1);
    let fresh = |u: &Updates| {
        Val::with(
            u.last_fresh as f64 / u.signals.len().max(1) as f64,
            format!("{}/{}", u.last_fresh, u.signals.len()),
        )
    };
    for (label, o, ol, o_x, budget_lat) in [
        (
            "defaults, lone updates 1.2 s apart",
            &ol,
            &oll,
            &ol_x,
            Some(1.0),
        ),
        (
            "default debounce, RELOAD_MIN_INTERVAL=0",
            &od,
            &odl,
            &od_x,
            None,
        ),
        (
            "RELOAD_DEBOUNCE=0 RELOAD_MIN_INTERVAL=0",
            &o0,
            &o0l,
            &o0_x,
            Some(0.5),
        ),
    ] {
        rows.push(Row {
            fig: 1,
            metric: format!("signals per update, {label} (mean, min–max)"),
            unit: "signals",
            ours: signals(o),
            budget: Some("exactly 1".into()),
            met: Some(exactly_one(o)),
            baseline: signals(&b),
            ratio: true,
            builds: o_x.val(signals),
        });
        rows.push(Row {
            fig: 1,
            metric: format!("commit → fresh signal, {label}, median"),
            unit: "ms",
            ours: Val::num(median(ol)),
            budget: budget_lat.map(|x| format!("≤ {x} ms")),
            met: budget_lat.map(|x| median(ol) <= x),
            baseline: Val::num(median(&bl)),
            ratio: true,
            builds: o_x.val(|u| Val::num(median(&ms(&u.latency_ns)))),
        });
        rows.push(Row {
            fig: 1,
            metric: format!("commit → fresh signal, {label}, p99"),
            unit: "ms",
            ours: Val::num(percentile(ol, 99.0)),
            baseline: Val::num(percentile(&bl, 99.0)),
            ratio: true,
            ..Row::default()
        });
        rows.push(Row {
            fig: 1,
            metric: format!("updates whose last signal saw the new content, {label}"),
            unit: "updates",
            ours: fresh(o),
            baseline: fresh(&b),
            ..Row::default()
        });
    }
    rows.push(Row {
        fig: 1,
        metric: "signals that read old content (stale), default / debounce 0".into(),
        unit: "signals",
        ours: Val::with(od.stale as f64, format!("{} / {}", od.stale, o0.stale)),
        baseline: Val::with(b.stale as f64, b.stale.to_string()),
        ..Row::default()
    });
    notes.push(format!(
        "Fig. 1: {n} updates per series, each followed by a wait for a fresh signal and {} ms without one \
         ({} ms in the lone series, past the default RELOAD_MIN_INTERVAL). \
         Ours logged {} / {} `reloaded` lines (default debounce / debounce 0) for {} / {} signals received. \
         The baseline has no debounce: the same baseline series is shown in every part.",
        plan.quiet.as_millis(),
        lone.as_millis(),
        od.sent.unwrap_or(0),
        o0.sent.unwrap_or(0),
        od.signals.iter().sum::<usize>(),
        o0.signals.iter().sum::<usize>()
    ));
    raw.push(("latency_ms.ours.defaults_lone".into(), oll));
    raw.push(("latency_ms.ours.default".into(), odl));
    raw.push(("latency_ms.ours.debounce0".into(), o0l));
    raw.push(("latency_ms.baseline".into(), bl));
    raw.push((
        "signals.baseline".into(),
        b.signals.iter().map(|&x| x as f64).collect(),
    ));

    // 2. Storm.
    progress(&format!(
        "2/7 storm of {} updates: ours (defaults, debounce 0, interval 0), baseline",
        plan.storm
    ));
    let so = scenarios::storm(paths, Tool::Ours, &[], plan.storm)?;
    let so0 = scenarios::storm(paths, Tool::Ours, &[("RELOAD_DEBOUNCE", "0")], plan.storm)?;
    let soi = scenarios::storm(paths, Tool::Ours, dd, plan.storm)?;
    let sb = scenarios::storm(paths, Tool::Baseline, &[], plan.storm)?;
    rows.push(Row {
        fig: 2,
        metric: format!("storm of {}: signals received", plan.storm),
        unit: "signals",
        ours: Val::num(so.signals as f64),
        budget: Some("≤ 5".into()),
        met: Some(so.signals <= 5),
        baseline: Val::num(sb.signals as f64),
        ratio: true,
        ..Row::default()
    });
    rows.push(Row {
        fig: 2,
        metric: "storm: last update → last signal".into(),
        unit: "ms",
        ours: Val::num(so.last_after_ms),
        baseline: Val::num(sb.last_after_ms),
        ratio: true,
        ..Row::default()
    });
    let yes = |b: bool| if b { "yes" } else { "no" };
    rows.push(Row {
        fig: 2,
        metric: "storm: last signal saw the final content".into(),
        unit: "",
        ours: Val::text(yes(so.last_fresh)),
        budget: Some("yes".into()),
        met: Some(so.last_fresh),
        baseline: Val::text(yes(sb.last_fresh)),
        ..Row::default()
    });
    rows.push(Row {
        fig: 2,
        metric: "storm, RELOAD_DEBOUNCE=0: signals received / last fresh".into(),
        unit: "signals",
        ours: Val::with(
            so0.signals as f64,
            format!("{} / {}", so0.signals, yes(so0.last_fresh)),
        ),
        baseline: Val::with(
            sb.signals as f64,
            format!("{} / {}", sb.signals, yes(sb.last_fresh)),
        ),
        ratio: true,
        ..Row::default()
    });
    rows.push(Row {
        fig: 2,
        metric: "storm, RELOAD_MIN_INTERVAL=0: signals received / last fresh".into(),
        unit: "signals",
        ours: Val::with(
            soi.signals as f64,
            format!("{} / {}", soi.signals, yes(soi.last_fresh)),
        ),
        baseline: Val::with(
            sb.signals as f64,
            format!("{} / {}", sb.signals, yes(sb.last_fresh)),
        ),
        ratio: true,
        ..Row::default()
    });
    notes.push(format!(
        "Fig. 2: writing the {} updates took {:.0} / {:.0} / {:.0} ms (ours default / ours debounce 0 / baseline runs); \
         ours logged {} / {} `reloaded` lines; signals that read non-final content: ours {} / {}, baseline {}; \
         last update → last signal with debounce 0: {:.1} ms.",
        plan.storm, so.write_ms, so0.write_ms, sb.write_ms,
        so.sent.unwrap_or(0), so0.sent.unwrap_or(0),
        so.not_final, so0.not_final, sb.not_final, so0.last_after_ms
    ));

    // 3. Idle.
    progress(&format!("3/7 idle for {:?}, both side by side", plan.idle));
    let (io, ib) = scenarios::idle(paths, plan.idle)?;
    let rest_x = builds.run(paths, scenarios::at_rest)?;
    rows.push(Row {
        fig: 3,
        metric: "VmRSS after start".into(),
        unit: "KiB",
        ours: Val::num(io.at_start.rss_kib as f64),
        baseline: Val::num(ib.at_start.rss_kib as f64),
        ratio: true,
        builds: rest_x.val(|u| Val::num(u.rss_kib as f64)),
        ..Row::default()
    });
    rows.push(Row {
        fig: 3,
        metric: "VmHWM (peak RSS) after start".into(),
        unit: "KiB",
        ours: Val::num(io.at_start.hwm_kib as f64),
        budget: Some("≤ 512 KiB".into()),
        met: Some(io.at_start.hwm_kib <= 512),
        baseline: Val::num(ib.at_start.hwm_kib as f64),
        ratio: true,
        builds: rest_x.val(|u| Val::num(u.hwm_kib as f64)),
    });
    let secs = plan.idle.as_secs();
    let cpu = |i: &scenarios::Idle| {
        Val::with(
            i.cpu_ns as f64 / 1e6,
            format!("{} ticks, {:.3} ms", i.cpu_ticks, i.cpu_ns as f64 / 1e6),
        )
    };
    rows.push(Row {
        fig: 3,
        metric: format!("CPU over {secs} s idle (utime+stime ticks; schedstat)"),
        unit: "ms",
        ours: cpu(&io),
        budget: Some("0".into()),
        met: Some(io.cpu_ticks == 0 && io.cpu_ns == 0),
        baseline: cpu(&ib),
        ratio: true,
        ..Row::default()
    });
    rows.push(Row {
        fig: 3,
        metric: format!("context switches over {secs} s idle (wake-ups)"),
        unit: "switches",
        ours: Val::num(io.ctx_switches as f64),
        budget: Some("0".into()),
        met: Some(io.ctx_switches == 0),
        baseline: Val::num(ib.ctx_switches as f64),
        ratio: true,
        ..Row::default()
    });
    notes.push(format!(
        "Fig. 3: the baseline's figures are summed over its {} long-lived processes (sh, inotifywait, the `while` subshell); ours is {} process.",
        ib.procs, io.procs
    ));

    // 4. Start-up.
    progress(&format!("4/7 start-up, {} runs each", plan.startup_runs));
    let st_o = scenarios::startup(paths, Tool::Ours, plan.startup_runs)?;
    let st_x = builds.run(paths, |p| {
        scenarios::startup(p, Tool::Ours, plan.startup_runs)
    })?;
    let st_b = scenarios::startup(paths, Tool::Baseline, plan.startup_runs)?;
    let spread = |v: &[u64]| {
        let m = ms(v);
        Val::with(
            median(&m),
            format!(
                "{} (min {})",
                report::fmt_num(median(&m)),
                report::fmt_num(percentile(&m, 0.0))
            ),
        )
    };
    rows.push(Row {
        fig: 4,
        metric: "exec → first inotify watch (fdinfo), median".into(),
        unit: "ms",
        ours: spread(&st_o.first_watch_ns),
        budget: Some("≤ 2 ms".into()),
        met: Some(median(&ms(&st_o.first_watch_ns)) <= 2.0),
        baseline: spread(&st_b.first_watch_ns),
        ratio: true,
        builds: st_x.val(|s| spread(&s.first_watch_ns)),
    });
    rows.push(Row {
        fig: 4,
        metric: "exec → ready line (ours `watching`, baseline `Watches established.`), median"
            .into(),
        unit: "ms",
        ours: spread(&st_o.ready_ns),
        baseline: spread(&st_b.ready_ns),
        ratio: true,
        builds: st_x.val(|s| spread(&s.ready_ns)),
        ..Row::default()
    });
    raw.push((
        "startup_first_watch_ms.ours".into(),
        ms(&st_o.first_watch_ns),
    ));
    raw.push((
        "startup_first_watch_ms.baseline".into(),
        ms(&st_b.first_watch_ns),
    ));

    // 5. Cost per reload.
    progress(&format!(
        "5/7 /proc scan with {:?} extra processes",
        plan.scan
    ));
    let per = |u: &Updates| u.cpu_ns as f64 / 1e6 / u.signals.len().max(1) as f64;
    // Budget: the std port may cost at most 1.2× the no_std build's CPU and scan time.
    let within = |ours: f64, before: Option<f64>| before.map(|b| ours <= 1.2 * b);
    rows.push(Row {
        fig: 5,
        metric: "CPU per update, default debounce, RELOAD_MIN_INTERVAL=0 (baseline: incl. pkill children)".into(),
        unit: "ms",
        ours: Val::num(per(&od)),
        budget: Some("≤ 1.2× before".into()),
        met: within(per(&od), od_x.before.as_ref().map(per)),
        baseline: Val::num(per(&b)),
        ratio: true,
        builds: od_x.val(|u| Val::num(per(u))),
    });
    rows.push(Row {
        fig: 5,
        metric: "CPU per update, RELOAD_DEBOUNCE=0".into(),
        unit: "ms",
        ours: Val::num(per(&o0)),
        budget: Some("≤ 1.2× before".into()),
        met: within(per(&o0), o0_x.before.as_ref().map(per)),
        baseline: Val::num(per(&b)),
        ratio: true,
        builds: o0_x.val(|u| Val::num(per(u))),
    });
    let mut visible = Vec::new();
    let largest = plan.scan.iter().copied().max();
    for &procs in &plan.scan {
        let s = scenarios::scan(paths, procs, plan.scan_reps)?;
        // The other builds only at the largest count: each run forks that many sleepers.
        let s_x = match Some(procs) == largest {
            true => builds.run(paths, |p| scenarios::scan(p, procs, plan.scan_reps))?,
            false => report::Each::default(),
        };
        let budget = (procs == 10_000).then_some("≤ 1.2× before");
        let took = |s: &scenarios::Scan| median(&s.took_ms);
        rows.push(Row {
            fig: 5,
            metric: format!(
                "reload with {procs} extra processes: ours `took_ms` vs one `pkill` run, median"
            ),
            unit: "ms",
            ours: Val::num(took(&s)),
            budget: budget.map(Into::into),
            met: budget.and(within(took(&s), s_x.before.as_ref().map(took))),
            baseline: Val::num(median(&s.pkill_ms)),
            ratio: true,
            builds: s_x.val(|s| Val::num(took(s))),
        });
        rows.push(Row {
            fig: 5,
            metric: format!("exec + scan with {procs} extra processes: `config-reloader --check` vs `pkill`, median"),
            unit: "ms",
            ours: Val::num(median(&s.check_ms)),
            baseline: Val::num(median(&s.pkill_ms)),
            ratio: true,
            builds: s_x.val(|s| Val::num(median(&s.check_ms))),
            ..Row::default()
        });
        visible.push(format!("{procs} → {}", s.visible));
        raw.push((format!("took_ms.ours.{procs}"), s.took_ms));
        raw.push((format!("check_ms.ours.{procs}"), s.check_ms));
        raw.push((format!("pkill_ms.baseline.{procs}"), s.pkill_ms));
    }
    notes.push(format!(
        "Fig. 5: CPU per update is the contestant's CPU over the fig. 1 series ÷ updates (ours: schedstat ns; baseline: \
         schedstat of its processes + cutime/cstime of reaped pkills). Scan figures come from a PID namespace with the \
         extra sleepers (processes visible: {}); `took_ms` is from our `reloaded` line (fingerprint + /proc scan + kill), \
         {} reloads per size; the baseline runs one `pkill` per inotify event.",
        visible.join(", "),
        plan.scan_reps
    ));

    // 6. Watch scaling.
    progress(&format!(
        "6/7 watch scaling with {:?} directories",
        plan.scale
    ));
    let mut watches = Vec::new();
    for &dirs in &plan.scale {
        let o = scenarios::scale(paths, Tool::Ours, dirs, plan.scale_runs)?;
        let o_x = builds.run(paths, |p| {
            scenarios::scale(p, Tool::Ours, dirs, plan.scale_runs)
        })?;
        let bs = scenarios::scale(paths, Tool::Baseline, dirs, plan.scale_runs)?;
        let big = dirs == 10_000;
        let ready = |s: &scenarios::Scale| median(&ms(&s.ready_ns));
        rows.push(Row {
            fig: 6,
            metric: format!("{dirs} directories: exec → ready, median"),
            unit: "ms",
            ours: Val::num(ready(&o)),
            // Budget: no slower than the inotifywait baseline measured in the same run.
            budget: big.then(|| "≤ baseline".into()),
            met: big.then(|| ready(&o) <= ready(&bs)),
            baseline: Val::num(ready(&bs)),
            ratio: true,
            builds: o_x.val(|s| Val::num(ready(s))),
        });
        rows.push(Row {
            fig: 6,
            metric: format!("{dirs} directories: VmHWM at ready"),
            unit: "KiB",
            ours: Val::num(o.hwm_kib as f64),
            budget: big.then(|| "≤ 2048 KiB".into()),
            met: big.then_some(o.hwm_kib <= 2048),
            baseline: Val::num(bs.hwm_kib as f64),
            ratio: true,
            builds: o_x.val(|s| Val::num(s.hwm_kib as f64)),
        });
        watches.push(format!(
            "{dirs} dirs: ours {} / baseline {}",
            o.watches, bs.watches
        ));
    }
    notes.push(format!(
        "Fig. 6: {} start(s) per size; inotify watches held at ready: {}. Kernel memory for the watches is not in VmHWM.",
        plan.scale_runs,
        watches.join("; ")
    ));

    // 7. Sizes.
    progress("7/7 sizes");
    let z = scenarios::sizes(paths);
    let kib = |b: u64| Val::num(b as f64 / 1024.0);
    let bin_x = builds.run(paths, |p| {
        Ok(fs::metadata(&p.reloader).map_or(0, |m| m.len()))
    })?;
    let image = |i: Option<u64>| i.map_or(Val::text("not built"), kib);
    // Budget: the stable musl binary and its image.
    let budget = testkit::SIZE_BUDGET_KIB;
    rows.push(Row {
        fig: 7,
        metric: "binary on disk (baseline: sh + inotifywait + pkill + their shared libraries)"
            .into(),
        unit: "KiB",
        ours: kib(z.ours_binary),
        budget: Some(format!("≤ {budget} KiB")),
        met: Some(z.ours_binary <= budget * 1024),
        baseline: kib(z.baseline_files),
        ratio: true,
        builds: bin_x.val(|&b| kib(b)),
    });
    rows.push(Row {
        fig: 7,
        metric: "image `config-reloader-sidecar:latest` (before: its one file; tiny: `:tiny`)"
            .into(),
        unit: "KiB",
        ours: image(ours_image),
        budget: Some(format!("≤ {budget} KiB")),
        met: ours_image.map(|s| s <= budget * 1024),
        baseline: Val::none(),
        builds: report::Each {
            before: bin_x.before.map(kib),
            tiny: bin_x.tiny.map(|_| image(tiny_image)),
        },
        ..Row::default()
    });
    notes.push(format!(
        "Fig. 7: baseline files: {}.",
        z.baseline_list.join(", ")
    ));
    if let Some(b) = builds.describe() {
        notes.push(format!(
            "Other builds of ours ({b}): each goes through the same scenario right after ours. \
             Before is the last `no_std` commit, built from a temporary git worktree as it shipped \
             (static-pie musl, opt-level s, LTO); its image was FROM scratch with that one file, \
             so its image size is the binary's. Tiny is `make tiny` (nightly, build-std, \
             immediate-abort panics, opt-level z, non-PIE). Budgets and met/missed are ours \
             (after the port); `≤ 1.2× before` compares ours with the before column. Tiny's own \
             budgets (≤ 192 KiB, idle VmHWM ≤ 512 KiB) are checked by `make tiny`."
        ));
    }
    notes.push(
        "Latency: CLOCK_MONOTONIC from the rename of `..data_tmp` over `..data` (testkit's kubelet-exact writer) to \
         sigrecord's signal handler; a signal is fresh when sigrecord's re-read of `app.conf` returned the new bytes. \
         Start-up: from the child's execve (stamped in pre_exec) to the first `inotify wd:` line in /proc/PID/fdinfo, \
         polled every ~20 µs (resolution about 0.1 ms)."
            .into(),
    );

    // 8. Polling, in its own module.
    progress("8. polling: CPU per poll, wake-ups with auto on disk and FUSE, FUSE latency");
    let (poll_rows, poll_notes, poll_raw) = polling::figure(paths, plan.smoke)?;
    rows.extend(poll_rows);
    notes.extend(poll_notes);
    raw.extend(poll_raw);

    // 9. The metrics listener, in its own module.
    progress("9. metrics: idle RSS, CPU per update with the listener off and on, CPU per scrape");
    let (metric_rows, metric_notes) = metrics::figure(paths, plan.updates, plan.updates * 10)?;
    rows.extend(metric_rows);
    notes.extend(metric_notes);

    let meta = report::Meta {
        date: report::utc(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
        mode: if plan.smoke { "smoke" } else { "full" }.into(),
        command: if plan.smoke {
            "make bench-smoke"
        } else {
            "make bench"
        }
        .into(),
        host: host(),
        commit: commit(),
        baseline_versions: versions(),
        wall_s: started.elapsed().as_secs_f64(),
        before: builds.before.is_some().then(|| builds.before_label()),
        tiny: builds.tiny.is_some(),
    };
    let md = report::markdown(&meta, &rows, &notes);
    let js = report::json(&meta, &rows, &notes, &raw);
    print!("{md}");
    fs::create_dir_all(out).map_err(|e| format!("mkdir {}: {e}", out.display()))?;
    for (name, text) in [("latest.md", &md), ("latest.json", &js)] {
        let p = out.join(name);
        fs::write(&p, text).map_err(|e| format!("write {}: {e}", p.display()))?;
    }
    eprintln!(
        "bench: wrote {} and latest.json",
        out.join("latest.md").display()
    );
    Ok(())
}

/// Kernel, CPU model and count, memory, and load at the start: enough to judge the noise.
fn host() -> String {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let visible = fs::read_dir("/proc").map_or(0, |rd| {
        rd.flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count()
    });
    let pidns = match std::env::var(PIDNS_ENV).as_deref() {
        Ok("inner") => "own PID namespace",
        _ => "host PID namespace",
    };
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "Linux {} · {} × {cpu} · {} MiB RAM · load {} · {pidns} ({visible} processes visible at the end)",
        read("/proc/sys/kernel/osrelease").trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kib / 1024,
        load.join(" ")
    )
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

fn versions() -> String {
    Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package} ${Version}, ",
            "inotify-tools",
            "procps",
            "dash",
        ])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim_end_matches(", ")
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "versions unknown".into())
}
