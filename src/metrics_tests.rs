//! Unit tests of `metrics`.

use super::*;
use crate::outcome::Signalled;
use std::time::Instant;

fn sample(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')
            .map(str::to_string)
    })
}

fn finish(m: &mut Metrics, r: &Reload) {
    m.signalled(r);
    let o = r.outcome().unwrap();
    m.finished(
        r,
        &o,
        Duration::from_millis(3),
        UNIX_EPOCH + Duration::from_secs(100),
    );
}

#[test]
fn starts_successful_so_an_idle_sidecar_never_alerts() {
    let t = Metrics::at(
        true,
        false,
        Some(u64::MAX),
        UNIX_EPOCH + Duration::from_secs(5),
    )
    .render(Watching::default());
    assert_eq!(
        sample(&t, "reloader_last_reload_successful").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "reloader_last_reload_success_timestamp_seconds").as_deref(),
        Some("5")
    );
    assert_eq!(sample(&t, "reloader_reloads_total").as_deref(), Some("0"));
    assert_eq!(
        sample(&t, "reloader_info{method=\"signal\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "config_reloader_applied_fingerprint").as_deref(),
        Some("4503599627370495")
    );
}

#[test]
fn a_good_reload_moves_the_total_and_the_success_only() {
    let mut m = Metrics::at(true, true, None, UNIX_EPOCH);
    let mut r = Reload::new(Instant::now(), 0x1234).signalled(Some(Signalled {
        sent: 1,
        ..Signalled::default()
    }));
    r.request = Delivery::Status(200).step();
    m.delivered(Delivery::Status(200));
    finish(&mut m, &r);
    let t = m.render(Watching::default());
    assert_eq!(sample(&t, "reloader_reloads_total").as_deref(), Some("1"));
    assert_eq!(
        sample(&t, "reloader_reloads_failed_total").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&t, "reloader_last_reload_successful").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "reloader_last_reload_success_timestamp_seconds").as_deref(),
        Some("100")
    );
    assert_eq!(
        sample(&t, "config_reloader_webhook_requests_total{status=\"200\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "config_reloader_applied_fingerprint").as_deref(),
        Some("4660")
    );
    assert_eq!(
        sample(&t, "reloader_info{method=\"both\"}").as_deref(),
        Some("1")
    );
    assert!(!t.contains("refusals_total{"), "{t}");
}

#[test]
fn a_refused_reload_moves_failed_and_refusals_and_keeps_the_fingerprint() {
    let mut m = Metrics::at(true, false, Some(9), UNIX_EPOCH);
    let s = Signalled {
        sent: 0,
        refused: vec!["default"],
        errors: vec!["EPERM".into()],
    };
    finish(&mut m, &Reload::new(Instant::now(), 10).signalled(Some(s)));
    let t = m.render(Watching::default());
    assert_eq!(sample(&t, "reloader_reloads_total").as_deref(), Some("1"));
    assert_eq!(
        sample(&t, "reloader_reloads_failed_total").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "reloader_last_reload_successful").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&t, "reloader_last_reload_success_timestamp_seconds").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&t, "config_reloader_refusals_total{handling=\"default\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "config_reloader_signal_errors_total{errno=\"EPERM\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "config_reloader_applied_fingerprint").as_deref(),
        Some("9")
    );
}

#[test]
fn unchanged_moves_only_its_counter() {
    let mut m = Metrics::at(true, false, None, UNIX_EPOCH);
    let before = m.render(Watching::default());
    m.unchanged();
    let after = m.render(Watching::default());
    assert_eq!(
        sample(&after, "config_reloader_unchanged_total").as_deref(),
        Some("1")
    );
    let differ: Vec<_> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(differ.len(), 1, "{differ:?}");
}

#[test]
fn every_family_has_help_and_type_and_only_closed_label_values() {
    let t = Metrics::at(false, true, None, UNIX_EPOCH).render(Watching::default());
    assert!(t.ends_with('\n'));
    for l in t.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(t.contains(&format!("# TYPE {name} ")), "{l}");
    }
    assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
}

#[test]
fn an_older_reload_confirmed_late_counts_but_never_hides_a_newer_failure() {
    let mut m = Metrics::at(true, false, None, UNIX_EPOCH);
    let ok = Signalled {
        sent: 1,
        ..Signalled::default()
    };
    let older = Reload::new(Instant::now(), 1).signalled(Some(ok));
    let mut newer = Reload::new(older.started + Duration::from_millis(1), 2);
    newer.validate = Step::Failed("validation failed (exit 1)".into());
    finish(&mut m, &newer);
    finish(&mut m, &older);
    let t = m.render(Watching::default());
    assert_eq!(sample(&t, "reloader_reloads_total").as_deref(), Some("2"));
    assert_eq!(
        sample(&t, "reloader_reloads_failed_total").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&t, "reloader_last_reload_successful").as_deref(),
        Some("0"),
        "the newer reload failed"
    );
    assert_eq!(
        sample(&t, "config_reloader_applied_fingerprint").as_deref(),
        Some("1"),
        "the older one was applied"
    );
}

#[test]
fn a_reload_waiting_for_its_confirmation_is_counted_once_it_comes() {
    let log = Logger::new(crate::log::LogFormat::Text, false);
    let mut t = Tally::new(Metrics::at(true, false, None, UNIX_EPOCH));
    let mut r = Reload::new(Instant::now(), 1).signalled(Some(Signalled {
        sent: 1,
        ..Signalled::default()
    }));
    r.confirm = Step::Pending;
    t.changed(r.clone(), None, &log);
    let total = |t: &Tally| {
        sample(
            &t.metrics.render(Watching::default()),
            "reloader_reloads_total",
        )
    };
    assert_eq!(
        total(&t).as_deref(),
        Some("0"),
        "no outcome while it is pending"
    );
    // A newer one replaces the check; its answer is the older one's too.
    r.fingerprint = 2;
    t.changed(r, None, &log);
    t.confirmed(Step::Ok, &log);
    assert_eq!(total(&t).as_deref(), Some("2"));
    t.confirmed(Step::Failed("late".into()), &log);
    assert_eq!(total(&t).as_deref(), Some("2"), "nothing is left waiting");
}

#[test]
fn a_stream_of_reloads_faster_than_their_check_waits_in_bounded_memory() {
    let log = Logger::new(crate::log::LogFormat::Text, false);
    let mut t = Tally::new(Metrics::at(true, false, None, UNIX_EPOCH));
    let mut r = Reload::new(Instant::now(), 1).signalled(Some(Signalled {
        sent: 1,
        ..Signalled::default()
    }));
    r.confirm = Step::Pending;
    for fp in 0..1000 {
        r.fingerprint = fp;
        t.changed(r.clone(), None, &log);
        assert!(
            t.confirming.len() <= MAX_CONFIRMING,
            "{} waiting",
            t.confirming.len()
        );
    }
    let total = |t: &Tally, series: &str| sample(&t.metrics.render(Watching::default()), series);
    // The superseded ones beyond the bound are finished, unconfirmed, on their other steps.
    let waiting = MAX_CONFIRMING as u64;
    assert_eq!(
        total(&t, "reloader_reloads_total"),
        Some((1000 - waiting).to_string())
    );
    t.confirmed(Step::Ok, &log);
    assert_eq!(total(&t, "reloader_reloads_total").as_deref(), Some("1000"));
    assert_eq!(
        total(&t, "reloader_reloads_failed_total").as_deref(),
        Some("0")
    );
}
