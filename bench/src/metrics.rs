//! Figure 9: what `RELOAD_LISTEN_ADDRESS` costs. Ours with the listener off and
//! on, side by side: idle VmRSS (read as figure 3 reads it), CPU per update (a series of
//! kubelet updates as in figure 1, schedstat CPU over the series ÷ updates), and the CPU of
//! one scrape (`GET /metrics` over loopback, schedstat CPU over many ÷ their number). The
//! binary is the same either way; its size is in the row with the other builds.
//!
//! The baseline has no metrics; these rows show ours only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::TempDir;

use crate::pollprobe as probe;
use crate::report::{Row, Val};
use crate::run::{Paths, Running, Tool};
use crate::scenarios;

/// What the listener gets: the kernel picks the port, the ready line says which.
const ON: (&str, &str) = ("RELOAD_LISTEN_ADDRESS", "127.0.0.1:0");
/// After the ready line, as figure 3 waits.
const AFTER_START: Duration = Duration::from_millis(200);

/// Rows and notes of figure 9.
pub type Figure = (Vec<Row>, Vec<String>);

fn row(metric: &str, unit: &'static str, ours: Val) -> Row {
    Row {
        fig: 9,
        metric: metric.into(),
        unit,
        ours,
        baseline: Val::text("no metrics"),
        ..Row::default()
    }
}

/// The port in `listen=127.0.0.1:PORT` of the ready line.
fn port(r: &Running) -> Result<u16, String> {
    let text = r.stderr_text();
    let at = text
        .find(" listen=")
        .ok_or("no listen= in the ready line")?
        + 8;
    let addr = text[at..].split_whitespace().next().unwrap_or_default();
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("bad listen address {addr:?}"))
}

fn scrape(port: u16) -> Result<usize, String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut out = Vec::new();
    c.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    match out.starts_with(b"HTTP/1.1 200") {
        true => Ok(out.len()),
        false => Err("the scrape was not answered 200".into()),
    }
}

/// Runs figure 9 with `updates` updates per series and `scrapes` scrapes.
pub fn figure(paths: &Paths, updates: usize, scrapes: usize) -> Result<Figure, String> {
    let mut fig: Figure = (Vec::new(), Vec::new());
    let size = std::fs::metadata(&paths.reloader).map_or(0, |m| m.len());
    fig.0.push(row(
        "binary size (the listener is chosen at run time: one binary)",
        "KiB",
        Val::num(size as f64 / 1024.0),
    ));
    let tmp = TempDir::new("bench-metrics").map_err(|e| e.to_string())?;
    let mut rss = Vec::new();
    for (what, env) in [("off", vec![]), ("on", vec![ON])] {
        let vol = probe::volume(&tmp.join(format!("idle-{what}")))?;
        let stderr = tmp.join(format!("idle-{what}.stderr"));
        let mut r = Running::start(Tool::Ours, paths, &[vol.root()], &env, &stderr)?;
        r.wait_ready(Duration::from_secs(20))?;
        std::thread::sleep(AFTER_START);
        let u = r.usage();
        rss.push(u.rss_kib);
        fig.0.push(row(
            &format!("idle VmRSS, listener {what}"),
            "KiB",
            Val::num(u.rss_kib as f64),
        ));
        if what == "on" {
            let p = port(&r)?;
            let before = r.usage();
            let mut bytes = 0;
            for _ in 0..scrapes {
                bytes = scrape(p)?;
            }
            let cpu = r.usage().cpu_ns.saturating_sub(before.cpu_ns);
            let per_us = cpu as f64 / scrapes.max(1) as f64 / 1e3;
            fig.0
                .push(row("CPU per scrape of /metrics", "µs", Val::num(per_us)));
            fig.1.push(format!(
                "Fig. 9: {scrapes} scrapes of {bytes} bytes each over loopback, schedstat {:.3} ms in all.",
                cpu as f64 / 1e6
            ));
        }
        r.stop();
    }
    for (what, env) in [("off", vec![]), ("on", vec![ON])] {
        let u = scenarios::updates(paths, Tool::Ours, &env, updates, Duration::from_millis(100))?;
        let n = u.signals.len().max(1);
        let per_us = u.cpu_ns as f64 / n as f64 / 1e3;
        fig.0.push(row(
            &format!("CPU per update, listener {what}"),
            "µs",
            Val::num(per_us),
        ));
    }
    fig.1.push(format!(
        "Fig. 9: the listener adds {} KiB of idle VmRSS (budget +32 KiB); CPU per update is a series of {updates} kubelet updates each way.",
        rss[1] as i64 - rss[0] as i64
    ));
    Ok(fig)
}
