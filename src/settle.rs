//! Settling: wait until the writers are done before looking at the content.
//!
//! Two windows, as in watchexec: every event restarts a quiet timer (`debounce`), and a cap
//! (`max_delay`) fires during an endless stream of changes. After the cap fires, later events
//! open a new window, so the last change always gets a full settle and the app ends up with
//! the final content. A window may also be *held*: due only at a given instant or at the next
//! event, whichever comes first (a kubelet update whose links are not all in place yet, a sed
//! temp file not yet renamed). Pure: the caller passes `now`.

use std::time::{Duration, Instant};

/// The debounce window and the cap on it.
#[derive(Debug)]
pub struct Settle {
    debounce: Duration,
    max_delay: Duration,
    window: Option<Window>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    /// The first event of the window: the cap counts from here.
    first: Instant,
    /// The last event; `None` while held and no event came since.
    last: Option<Instant>,
    /// While held: due at this instant at the latest.
    until: Option<Instant>,
}

impl Settle {
    /// A settle with no pending change.
    pub fn new(debounce: Duration, max_delay: Duration) -> Settle {
        Settle {
            debounce,
            max_delay,
            window: None,
        }
    }

    /// Records a possible change at `now`.
    pub fn note(&mut self, now: Instant) {
        let w = self.window.get_or_insert(Window {
            first: now,
            last: None,
            until: None,
        });
        w.last = Some(now);
    }

    /// When the pending change is due; `None` when nothing is pending (poll sleeps for ever).
    pub fn deadline(&self) -> Option<Instant> {
        let w = self.window?;
        let quiet = w
            .last
            .map(|l| (l + self.debounce).min(w.first + self.max_delay));
        match (quiet, w.until) {
            (Some(q), Some(u)) => Some(q.min(u)),
            (q, u) => q.or(u),
        }
    }

    /// Drops the pending change, if any (we are stopping); whether there was one.
    pub fn cancel(&mut self) -> bool {
        self.window.take().is_some()
    }

    /// Once the pending change is due, closes the window and returns when it opened.
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        let due = self.deadline().is_some_and(|d| d <= now);
        due.then(|| self.window.take().map(|w| w.first)).flatten()
    }

    /// Re-opens the window that opened at `first`, due at `until` or `debounce` after the
    /// next event, whichever comes first.
    pub fn hold(&mut self, first: Instant, until: Instant) {
        self.window = Some(Window {
            first,
            last: None,
            until: Some(until),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_event_restarts_the_quiet_time() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(2000));
        assert_eq!(s.deadline(), None);
        s.note(t0);
        assert_eq!(s.deadline(), Some(t0 + ms(100)));
        s.note(t0 + ms(50));
        assert_eq!(s.take_due(t0 + ms(120)), None);
        assert_eq!(s.take_due(t0 + ms(150)), Some(t0));
        assert_eq!(s.deadline(), None, "window closes once taken");
    }

    #[test]
    fn max_delay_caps_an_endless_stream_and_the_last_event_still_settles() {
        let t0 = Instant::now();
        let mut s = Settle::new(ms(100), ms(300));
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
        let mut s = Settle::new(Duration::ZERO, Duration::ZERO);
        s.note(t0);
        assert_eq!(s.take_due(t0), Some(t0));
    }

    #[test]
    fn a_held_window_waits_for_the_next_event_or_its_limit() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::ZERO, ms(2000));
        s.hold(t0, t0 + ms(2000));
        assert_eq!(
            s.deadline(),
            Some(t0 + ms(2000)),
            "no busy loop with debounce 0"
        );
        s.note(t0 + ms(50));
        assert_eq!(
            s.take_due(t0 + ms(50)),
            Some(t0),
            "the next event ends the hold"
        );
        s.hold(t0, t0 + ms(2000));
        assert_eq!(s.take_due(t0 + ms(1999)), None);
        assert_eq!(s.take_due(t0 + ms(2000)), Some(t0));
    }
}
