//! `next_step` on plain data: each branch, its boundaries, and which wins when two hold.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

const MAX: Duration = Duration::from_secs(10);

/// A settle whose window opened at `t0`, decided `after` it, nothing held, nothing walked.
fn facts<'a>(t0: Instant, after: Duration) -> Facts<'a> {
    Facts {
        now: t0 + after,
        first: t0,
        max_delay: MAX,
        sed_until: None,
        walked: None,
        last: Some(1),
    }
}

fn walked<'a>(
    outcome: Result<u64, &'a Path>,
    incomplete: Option<&'static str>,
) -> Option<Walked<'a>> {
    Some(Walked {
        outcome,
        incomplete: incomplete.map(Path::new),
    })
}

#[test]
fn nothing_walked_and_nothing_held_asks_for_the_walk() {
    let t0 = Instant::now();
    assert_eq!(next_step(&facts(t0, Duration::ZERO)), Next::Walk);
}

#[test]
fn a_sed_temp_file_holds_before_any_walk_until_its_deadline() {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(3);
    let f = Facts {
        sed_until: Some(until),
        ..facts(t0, Duration::from_secs(1))
    };
    assert_eq!(next_step(&f), Next::Hold(until));
    // Even with a walk at hand: sed's rename is the change, the walk would see it half done.
    let f = Facts {
        walked: walked(Ok(2), None),
        ..f
    };
    assert_eq!(next_step(&f), Next::Hold(until));
    // At its deadline exactly it no longer holds.
    let f = Facts {
        now: until,
        walked: None,
        ..f
    };
    assert_eq!(next_step(&f), Next::Walk);
}

#[test]
fn a_missing_directory_beats_unchanged_and_incomplete() {
    let t0 = Instant::now();
    let dir = Path::new("/config");
    let f = Facts {
        walked: walked(Err(dir), Some("/config/vol")),
        last: None,
        ..facts(t0, Duration::ZERO)
    };
    assert_eq!(next_step(&f), Next::Missing(dir));
}

#[test]
fn content_as_last_applied_is_unchanged_even_while_a_volume_is_incomplete() {
    let t0 = Instant::now();
    let f = Facts {
        walked: walked(Ok(1), None),
        ..facts(t0, Duration::ZERO)
    };
    assert_eq!(next_step(&f), Next::Unchanged);
    let f = Facts {
        walked: walked(Ok(1), Some("/config/vol")),
        ..f
    };
    assert_eq!(next_step(&f), Next::Unchanged);
}

#[test]
fn new_content_reloads_and_no_baseline_counts_as_new() {
    let t0 = Instant::now();
    let f = Facts {
        walked: walked(Ok(2), None),
        ..facts(t0, Duration::ZERO)
    };
    let reload = Next::Reload {
        fingerprint: 2,
        late: false,
    };
    assert_eq!(next_step(&f), reload);
    let f = Facts { last: None, ..f };
    assert_eq!(next_step(&f), reload);
}

#[test]
fn an_incomplete_volume_holds_until_max_delay_then_reloads_late() {
    let t0 = Instant::now();
    let held = Facts {
        walked: walked(Ok(2), Some("/config/vol")),
        ..facts(t0, MAX - Duration::from_millis(1))
    };
    assert_eq!(next_step(&held), Next::Hold(t0 + MAX));
    let late = Next::Reload {
        fingerprint: 2,
        late: true,
    };
    let at = Facts {
        now: t0 + MAX,
        ..held
    };
    assert_eq!(next_step(&at), late);
    let after = Facts {
        now: t0 + MAX + Duration::from_secs(1),
        ..held
    };
    assert_eq!(next_step(&after), late);
}

#[test]
fn a_sed_hold_and_an_incomplete_volume_together_hold_for_sed_first() {
    let t0 = Instant::now();
    let sed = t0 + Duration::from_secs(2);
    let f = Facts {
        sed_until: Some(sed),
        walked: walked(Ok(2), Some("/config/vol")),
        ..facts(t0, Duration::from_secs(1))
    };
    assert_eq!(next_step(&f), Next::Hold(sed));
    // Once sed's file is renamed (or its deadline passed), the volume holds to max_delay.
    let f = Facts { now: sed, ..f };
    assert_eq!(next_step(&f), Next::Hold(t0 + MAX));
    // A sed deadline past max_delay still holds: sed's own bound is max_delay from its file.
    let late_sed = t0 + MAX + Duration::from_secs(1);
    let f = Facts {
        now: t0 + MAX,
        sed_until: Some(late_sed),
        ..f
    };
    assert_eq!(next_step(&f), Next::Hold(late_sed));
}
