//! Figure 8: what polling costs, and what it buys where inotify is blind.
//!
//! - CPU per poll: ours with `RELOAD_POLL_INTERVAL=10ms` on a kubelet volume and on a 1 MiB
//!   plain directory, on the scratch directory's disk. Its schedstat CPU over a window, minus
//!   that of a second reloader with polling off on the same directory over the same window,
//!   divided by its wake-ups: on a local filesystem nothing in a poll blocks, so each poll is
//!   exactly one voluntary context switch.
//! - Wake-ups per minute with `auto`: a kubelet volume on the disk (no timer at all) and one
//!   seen through a bindfs (FUSE) view (a poll every 5 s). A sampler reads both reloaders'
//!   context switches every 50 ms: a poll is one burst of switches (the timer, then a wait per
//!   FUSE request), so bursts count polls and the switches are shown too.
//! - A kubelet update written under the FUSE view: commit → fresh signal with `auto`. Its
//!   reloader watches another volume of the same mount, so it never wakes the one counted.
//!
//! The baseline has no polling; these rows show ours only.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::fuse::Bindfs;
use testkit::kubelet::{UpdateOptions, Volume};
use testkit::recorder::{Options, Recorder};
use testkit::TempDir;

use crate::pollprobe::{self as probe, Sampler, FAST, SAMPLE};
use crate::report::{median, Row, Val};
use crate::run::{Paths, Running, APP};
use crate::scenarios::content;

/// `auto`'s interval on a blind filesystem.
const AUTO: Duration = Duration::from_secs(5);

/// Rows, notes and raw series of figure 8.
pub type Figure = (Vec<Row>, Vec<String>, Vec<(String, Vec<f64>)>);

/// Runs figure 8. The wake-up window opens first and the CPU measures and the FUSE updates
/// run inside it: their reloaders are not the ones the sampler counts.
pub fn figure(paths: &Paths, smoke: bool) -> Result<Figure, String> {
    let (cpu_window, wake_window) = if smoke {
        (
            Duration::from_millis(500),
            AUTO + Duration::from_millis(500),
        )
    } else {
        (Duration::from_secs(5), Duration::from_secs(60))
    };
    let tmp = TempDir::new("bench-poll").map_err(|e| e.to_string())?;
    let disk_fs = probe::fs_name(tmp.path());
    let mut fig: Figure = (Vec::new(), Vec::new(), Vec::new());

    let disk_vol = probe::volume(&tmp.join("idle-disk"))?;
    let (source, view) = (tmp.join("fuse-source"), tmp.join("fuse-view"));
    for d in [&source, &view] {
        fs::create_dir(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    probe::volume(&source.join("idle"))?;
    let lat_vol = probe::volume(&source.join("latency"))?;
    // A mount that fails (bindfs says why on stderr) leaves the FUSE rows unmeasured, not
    // the whole bench.
    let mut missing = probe::missing();
    let fuse = match missing {
        Some(_) => None,
        None => std::panic::catch_unwind(|| Bindfs::mount(&source, &view)).ok(),
    };
    if fuse.is_none() && missing.is_none() {
        missing = Some("bindfs did not mount (see above)".into());
    }
    let rec = Recorder::spawn(Options {
        name: Some(APP.into()),
        read: Some(view.join("latency/app.conf")),
        ..Options::default()
    });
    let on = |dir: &Path, err: &str| probe::start(paths, dir, &[], &tmp.join(err));
    let idle_disk = on(disk_vol.root(), "idle-disk.err")?;
    let (idle_fuse, latency) = match &fuse {
        Some(_) => (
            Some(on(&view.join("idle"), "idle-fuse.err")?),
            Some(on(&view.join("latency"), "latency.err")?),
        ),
        None => (None, None),
    };
    let opened = Instant::now();
    let mut counted = vec![idle_disk.pid()];
    counted.extend(idle_fuse.as_ref().map(Running::pid));
    let sampler = Sampler::start(counted);

    cpu_rows(paths, &tmp, &disk_fs, cpu_window, smoke, &mut fig)?;
    let lat = match &latency {
        Some(r) => Some(latency_series(&lat_vol, &rec, r, opened, wake_window)?),
        None => None,
    };
    std::thread::sleep(wake_window.saturating_sub(opened.elapsed()));
    let counts = sampler.stop();
    let window_s = opened.elapsed().as_secs_f64();
    wake_rows(
        &counts,
        window_s,
        &disk_fs,
        missing.as_deref(),
        lat,
        &mut fig,
    );
    for r in [Some(idle_disk), idle_fuse, latency].into_iter().flatten() {
        r.stop();
    }
    drop(rec);
    drop(fuse);
    Ok(fig)
}

/// CPU per poll on a kubelet volume and on a 1 MiB plain directory.
fn cpu_rows(
    paths: &Paths,
    tmp: &TempDir,
    disk_fs: &str,
    window: Duration,
    smoke: bool,
    (rows, notes, _): &mut Figure,
) -> Result<(), String> {
    let plain = tmp.join("plain");
    probe::fill_plain(&plain)?;
    let kube = probe::volume(&tmp.join("cpu-vol"))?;
    let bare_us = probe::bare_wakeup_ns(if smoke { 50 } else { 500 }) as f64 / 1e3;
    let plain_what = "1 MiB plain directory (64 files in 4 dirs: names, sizes, mtimes, inodes)";
    for (what, dir) in [
        ("kubelet volume (one readlink of ..data)", kube.root()),
        (plain_what, &plain),
    ] {
        let c = probe::cpu_per_poll(paths, dir, window, tmp.path())?;
        let per_us = c.cpu_ns.saturating_sub(c.idle_ns) as f64 / 1e3 / c.polls.max(1) as f64;
        let text = format!(
            "{per_us:.1} ({} polls; a bare wake-up: {bare_us:.1})",
            c.polls
        );
        rows.push(Row {
            fig: 8,
            metric: format!("CPU per poll, {what}, on {disk_fs}"),
            unit: "µs",
            ours: Val::with(per_us, text),
            baseline: Val::text("no polling"),
            ..Row::default()
        });
        notes.push(format!(
            "Fig. 8, CPU per poll of the {what}: RELOAD_POLL_INTERVAL={FAST} for {window:?}: {} wake-ups (the \
             interval allows {}), schedstat {:.3} ms, utime+stime {} ticks; the same directory with polling off: \
             {:.3} ms, subtracted. A bare 10 ms ppoll wake-up of the bench's own thread costs {bare_us:.1} µs here.",
            c.polls,
            window.as_millis() / 10,
            c.cpu_ns as f64 / 1e6,
            c.ticks,
            c.idle_ns as f64 / 1e6
        ));
    }
    Ok(())
}

/// Commit → fresh signal for kubelet updates under the FUSE view, each at another point of
/// the 5 s cycle, until the window would close; then the misses (at most one: it stops).
fn latency_series(
    vol: &Volume,
    rec: &Recorder,
    reloader: &Running,
    opened: Instant,
    window: Duration,
) -> Result<(Vec<f64>, Vec<String>), String> {
    let (mut ms, mut missed) = (Vec::new(), Vec::new());
    for i in 1.. {
        let want = content(i);
        let commit = vol
            .update_with(&[("app.conf", &want)], &UpdateOptions::default())
            .map_err(|e| format!("kubelet update under FUSE: {e}"))?
            .ok_or("kubelet update under FUSE wrote nothing")?
            .commit_ns;
        let deadline = Instant::now() + AUTO * 3;
        let fresh = loop {
            let got = rec.received().into_iter().rev();
            if let Some(r) = got
                .clone()
                .find(|r| r.content.as_ref().is_ok_and(|c| *c == want))
            {
                break Some(r);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let Some(got) = fresh else {
            missed.push(format!(
                "update {i} under FUSE got no fresh signal within {:?}; its reloader said: {}",
                AUTO * 3,
                reloader.stderr_text()
            ));
            break;
        };
        ms.push(got.t_ns.saturating_sub(commit) as f64 / 1e6);
        // The next commit lands at another point of the cycle: +0.0, 1.3, 2.6, 3.9 s...
        let offset = Duration::from_millis((i as u64 * 1300) % 5000);
        if opened.elapsed() + offset + AUTO + Duration::from_millis(200) > window {
            break;
        }
        std::thread::sleep(offset);
    }
    Ok((ms, missed))
}

/// Wake-ups per minute with `auto` on the disk and through FUSE, and the FUSE latency.
fn wake_rows(
    counts: &[(u64, u64)],
    window_s: f64,
    disk_fs: &str,
    missing: Option<&str>,
    lat: Option<(Vec<f64>, Vec<String>)>,
    (rows, notes, raw): &mut Figure,
) {
    let per_min = |bursts: u64| bursts as f64 * 60.0 / window_s;
    let wake_text = |b: u64, s: u64| format!("{:.1} ({s} switches)", per_min(b));
    let (disk_bursts, disk_switches) = counts[0];
    rows.push(Row {
        fig: 8,
        metric: format!("wake-ups per minute, auto, kubelet volume on {disk_fs}"),
        unit: "/min",
        ours: Val::with(per_min(disk_bursts), wake_text(disk_bursts, disk_switches)),
        budget: Some("0".into()),
        met: Some(disk_switches == 0),
        baseline: Val::text("no polling"),
        ..Row::default()
    });
    let unmeasured = |metric: &str| Row {
        fig: 8,
        metric: metric.into(),
        ours: Val::text(format!("not measured: {}", missing.unwrap_or("?"))),
        baseline: Val::text("no polling"),
        ..Row::default()
    };
    let wake_metric = "wake-ups per minute, auto, kubelet volume through FUSE (bindfs)";
    let lat_metric = "kubelet update under FUSE, auto: commit → fresh signal, median (max)";
    let (Some(&(bursts, switches)), Some((lat_ms, missed))) = (counts.get(1), lat) else {
        rows.push(unmeasured(wake_metric));
        rows.push(unmeasured(lat_metric));
        return;
    };
    let pm = per_min(bursts);
    rows.push(Row {
        unit: "/min",
        ours: Val::with(pm, wake_text(bursts, switches)),
        budget: Some("12 (one poll per 5 s)".into()),
        // One poll more or less, for where the window's edges fall in the 5 s cycle.
        met: Some((pm - 12.0).abs() <= 60.0 / window_s + 1e-9),
        ..unmeasured(wake_metric)
    });
    let (med, max) = (median(&lat_ms), lat_ms.iter().copied().fold(0.0, f64::max));
    let text = match missed.len() {
        0 => format!("{med:.0} ({max:.0})"),
        n => format!("{med:.0} ({max:.0}), {n} missed"),
    };
    rows.push(Row {
        unit: "ms",
        ours: Val::with(med, text),
        budget: Some("≤ 5100 ms (interval + debounce)".into()),
        met: Some(max <= 5100.0 && missed.is_empty()),
        baseline: Val::text("not run"),
        ..unmeasured(lat_metric)
    });
    let per_poll = match bursts {
        0 => "?".to_string(),
        b => format!("{:.1}", switches as f64 / b as f64),
    };
    notes.push(format!(
        "Fig. 8, wake-ups: both reloaders left alone for {window_s:.1} s, sampled every {} ms; a wake-up is a \
         sample with new context switches (one poll through FUSE is {per_poll} switches: the timer, then a wait \
         per FUSE request). Latency: {} kubelet update(s) written to the directory under the bindfs mount, each \
         at another point of the 5 s cycle. The baseline is not run on FUSE: inotify gives it no event there.",
        SAMPLE.as_millis(),
        lat_ms.len()
    ));
    notes.extend(missed.into_iter().map(|m| format!("Fig. 8: {m}")));
    raw.push(("fuse_latency_ms.ours".into(), lat_ms));
}
