//! Settling: when a possible change is due to be looked at, and how often a reload may follow.
//!
//! Three rules. A plain change waits for the writers, as in watchexec: every event restarts a
//! quiet timer (`debounce`), and a cap (`max_delay`) fires during an endless stream of changes;
//! after the cap fires, later events open a new window, so the last change always gets a full
//! settle and the app ends up with the final content. A kubelet change is due at once
//! ([`Settle::note_at_once`]): the `..data` swap already says the update is written, so a
//! debounce would only add latency; a plain change in the same window still gets its quiet
//! time. And no reload comes sooner than `min_interval` after the last one
//! ([`Settle::reloaded`]): what changes meanwhile is taken, once, at the interval's end, and the
//! [`Due`] says so ([`Pacing`] counts it). A window may also be *held*: due only at a given
//! instant or at the next event, whichever comes first (a kubelet update whose links are not
//! all in place yet, a sed temp file not yet renamed). Nothing is due while nothing is
//! pending: no timer, no wake-up. Pure: the caller passes `now`.

use std::time::{Duration, Instant};

/// What the interval held back, since start: a plain struct for the metrics to read
/// (`Settle::pacing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pacing {
    /// Reloads that waited for the end of `RELOAD_MIN_INTERVAL`.
    pub deferred: u64,
    /// Possible changes (inotify reads, polls) those reloads took at once, each of which
    /// would otherwise have been looked at, and maybe reloaded, on its own.
    pub coalesced: u64,
}

/// A settle that is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// When the window opened; for a window the interval held, when the interval ended.
    pub first: Instant,
    /// The last possible change noted in it: a process started after it read the content.
    pub latest: Instant,
    /// Possible changes noted in it.
    pub changes: u32,
    /// Held by the interval: without it, this would have been due sooner.
    pub paced: bool,
}

/// The windows, the interval, and what the interval held back.
#[derive(Debug)]
pub struct Settle {
    debounce: Duration,
    max_delay: Duration,
    min_interval: Duration,
    window: Option<Window>,
    /// The window taken last, whose counts a hold carries on.
    taken: Option<Window>,
    /// The last reload: the next is due no sooner than `min_interval` after it.
    last_reload: Option<Instant>,
    /// Since start.
    pub pacing: Pacing,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    /// The first event of the window: the cap counts from here.
    first: Instant,
    /// The last plain event; `None` when none came (only kubelet events, or held since).
    last: Option<Instant>,
    /// The first kubelet event: due at once, unless a plain event waits for its quiet time.
    at_once: Option<Instant>,
    /// While held: due at this instant at the latest.
    until: Option<Instant>,
    /// The last possible change noted.
    latest: Instant,
    /// Possible changes noted.
    changes: u32,
    /// The interval held it at some point.
    paced: bool,
}

impl Settle {
    /// A settle with no pending change; `min_interval` zero: no pacing.
    pub fn new(debounce: Duration, max_delay: Duration, min_interval: Duration) -> Settle {
        Settle {
            debounce,
            max_delay,
            min_interval,
            window: None,
            taken: None,
            last_reload: None,
            pacing: Pacing::default(),
        }
    }

    fn open(&mut self, now: Instant) -> &mut Window {
        let w = self.window.get_or_insert(Window {
            first: now,
            last: None,
            at_once: None,
            until: None,
            latest: now,
            changes: 0,
            paced: false,
        });
        w.changes = w.changes.saturating_add(1);
        w.latest = w.latest.max(now);
        w
    }

    /// Records a possible change at `now` that waits for its quiet time.
    pub fn note(&mut self, now: Instant) {
        self.open(now).last = Some(now);
    }

    /// Records a possible change at `now` that is due at once: a kubelet commit, or a visible
    /// link of a kubelet volume (added or removed by the update after its commit).
    pub fn note_at_once(&mut self, now: Instant) {
        let w = self.open(now);
        w.at_once = w.at_once.or(Some(now));
    }

    /// When the window is due by its own rules, ignoring the interval.
    fn unpaced(&self) -> Option<Instant> {
        let w = self.window?;
        let quiet = w
            .last
            .map(|l| (l + self.debounce).min(w.first + self.max_delay));
        match (quiet.or(w.at_once), w.until) {
            (Some(q), Some(u)) => Some(q.min(u)),
            (q, u) => q.or(u),
        }
    }

    /// The end of the interval after the last reload, if one is still running then.
    fn interval_end(&self) -> Option<Instant> {
        self.last_reload
            .filter(|_| !self.min_interval.is_zero())
            .map(|r| r + self.min_interval)
    }

    /// When the pending change is due; `None` when nothing is pending (poll sleeps for ever).
    pub fn deadline(&self) -> Option<Instant> {
        let due = self.unpaced()?;
        Some(self.interval_end().map_or(due, |end| due.max(end)))
    }

    /// Drops the pending change, if any (we are stopping); whether there was one.
    pub fn cancel(&mut self) -> bool {
        self.taken = None;
        self.window.take().is_some()
    }

    /// Once the pending change is due, closes the window and says what it held.
    pub fn take_due(&mut self, now: Instant) -> Option<Due> {
        let due = self.deadline().filter(|d| *d <= now)?;
        let paced = self.unpaced().is_some_and(|u| u < due);
        let mut w = self.window.take()?;
        w.paced |= paced;
        if paced {
            // The interval ended: a kubelet hold counts its limit from here, not from a
            // first event the interval kept waiting.
            w.first = due;
        }
        self.taken = Some(w);
        Some(Due {
            first: w.first,
            latest: w.latest,
            changes: w.changes,
            paced: w.paced,
        })
    }

    /// Re-opens the window taken last (opened at `first`), due at `until` or at the next
    /// event's own deadline, whichever comes first; it keeps its counts.
    pub fn hold(&mut self, first: Instant, until: Instant) {
        let (changes, paced) = self.taken.map_or((0, false), |w| (w.changes, w.paced));
        let latest = self.taken.map_or(first, |w| w.latest);
        self.window = Some(Window {
            first,
            last: None,
            at_once: None,
            until: Some(until),
            latest,
            changes,
            paced,
        });
    }

    /// The change taken as `due` was reloaded at `at`: the interval starts again, and what it
    /// held back is counted.
    pub fn reloaded(&mut self, due: &Due, at: Instant) {
        self.last_reload = Some(at);
        self.taken = None;
        if due.paced {
            self.pacing.deferred += 1;
            self.pacing.coalesced += u64::from(due.changes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn first(d: Option<Due>) -> Option<Instant> {
        d.map(|d| d.first)
    }

    #[test]
    fn each_event_restarts_the_quiet_time() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(2000), Duration::ZERO);
        assert_eq!(s.deadline(), None);
        s.note(t0);
        assert_eq!(s.deadline(), Some(t0 + ms(100)));
        s.note(t0 + ms(50));
        assert_eq!(s.take_due(t0 + ms(120)), None);
        assert_eq!(first(s.take_due(t0 + ms(150))), Some(t0));
        assert_eq!(s.deadline(), None, "window closes once taken");
    }

    #[test]
    fn max_delay_caps_an_endless_stream_and_the_last_event_still_settles() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(300), Duration::ZERO);
        let mut fired = Vec::new();
        for i in 0..50u64 {
            let now = t0 + ms(i * 20);
            if s.take_due(now).is_some() {
                fired.push(i * 20);
            }
            s.note(now);
        }
        assert_eq!(fired, vec![300, 600, 900]);
        assert_eq!(
            s.deadline(),
            Some(t0 + ms(49 * 20 + 100)),
            "the last event gets a full quiet time"
        );
    }

    #[test]
    fn zero_debounce_is_due_at_once() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        s.note(t0);
        assert_eq!(first(s.take_due(t0)), Some(t0));
    }

    #[test]
    fn a_held_window_waits_for_the_next_event_or_its_limit() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::ZERO, ms(2000), Duration::ZERO);
        s.hold(t0, t0 + ms(2000));
        assert_eq!(
            s.deadline(),
            Some(t0 + ms(2000)),
            "no busy loop with debounce 0"
        );
        s.note(t0 + ms(50));
        assert_eq!(
            first(s.take_due(t0 + ms(50))),
            Some(t0),
            "the next event ends the hold"
        );
        s.hold(t0, t0 + ms(2000));
        assert_eq!(s.take_due(t0 + ms(1999)), None);
        assert_eq!(first(s.take_due(t0 + ms(2000))), Some(t0));
    }

    #[test]
    fn a_kubelet_commit_is_due_at_once_but_a_plain_change_beside_it_still_settles() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(2000), Duration::ZERO);
        s.note_at_once(t0);
        assert_eq!(s.deadline(), Some(t0), "no debounce after a commit");
        s.note(t0 + ms(1));
        assert_eq!(s.deadline(), Some(t0 + ms(101)), "the plain write settles");
        assert!(s.take_due(t0 + ms(101)).is_some());
        // A held kubelet update: its next link is due at once, a plain event is not.
        s.hold(t0, t0 + ms(2000));
        s.note_at_once(t0 + ms(300));
        assert_eq!(s.deadline(), Some(t0 + ms(300)));
        s.take_due(t0 + ms(300));
        s.hold(t0, t0 + ms(2000));
        s.note(t0 + ms(400));
        assert_eq!(s.deadline(), Some(t0 + ms(500)));
    }

    #[test]
    fn the_interval_holds_what_follows_a_reload_and_takes_it_once_at_its_end() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(2000), ms(1000));
        s.note_at_once(t0);
        let d = s.take_due(t0).expect("a lone update is not delayed");
        assert!(!d.paced);
        s.reloaded(&d, t0);
        assert_eq!(s.deadline(), None, "idle: no timer");
        for i in 1..=200u64 {
            s.note_at_once(t0 + Duration::from_micros(i * 500));
            assert_eq!(s.take_due(t0 + Duration::from_micros(i * 500)), None);
        }
        assert_eq!(s.deadline(), Some(t0 + ms(1000)));
        let d = s
            .take_due(t0 + ms(1000))
            .expect("due at the interval's end");
        assert_eq!((d.first, d.changes, d.paced), (t0 + ms(1000), 200, true));
        s.reloaded(&d, t0 + ms(1000));
        assert_eq!(
            s.pacing,
            Pacing {
                deferred: 1,
                coalesced: 200
            }
        );
        // Long after the interval: at once again.
        s.note_at_once(t0 + ms(5000));
        assert!(s.take_due(t0 + ms(5000)).is_some_and(|d| !d.paced));
    }

    #[test]
    fn a_hold_keeps_the_counts_of_the_window_it_reopens() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(2000), ms(1000));
        s.reloaded(
            &Due {
                first: t0,
                latest: t0,
                changes: 1,
                paced: false,
            },
            t0,
        );
        s.note_at_once(t0 + ms(10));
        s.note_at_once(t0 + ms(20));
        let d = s.take_due(t0 + ms(1000)).expect("due");
        s.hold(d.first, d.first + ms(2000));
        s.note_at_once(t0 + ms(1001));
        let d = s.take_due(t0 + ms(1001)).expect("the link ends the hold");
        assert_eq!((d.changes, d.paced, d.latest), (3, true, t0 + ms(1001)));
    }

    #[test]
    fn zero_interval_never_paces() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::ZERO, ms(2000), Duration::ZERO);
        for i in 0..10 {
            s.note_at_once(t0 + ms(i));
            let d = s.take_due(t0 + ms(i)).expect("at once");
            s.reloaded(&d, t0 + ms(i));
        }
        assert_eq!(s.pacing, Pacing::default());
    }
}
