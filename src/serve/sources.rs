//! What the loop waits on. Each source owns its fd (`interest`), its timer (`deadline`) and
//! what its readiness means (`ready`): the loop asks every source, waits once in `ppoll`, then
//! hands each source its own readiness and acts on the [`Event`] it reports.
//!
//! A new source (a metrics listener, a validation child, a retry timer) is one type that
//! implements [`Source`], a field of [`Sources`] and its line in [`Sources::each`]; if it
//! reports something new, an [`Event`] variant and its arm in the loop's one `match`.
//!
//! Never decides anything about reloads: that is the loop's `on` and `reload`'s.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::confirm::Confirm;
use crate::listen::Listener;
use crate::log::Logger;
use crate::mounts::MountWatch;
use crate::outcome::{Delivery, Step};
use crate::poll::Poller;
use crate::retry::Retry;
use crate::settle::{Due, Settle};
use crate::signal::{self, Signal};
use crate::sys::{self, Interest, Ready};
use crate::validate::{Validated, Validator};
use crate::watch::{Change, Watcher};
use crate::webhook::Webhook;

/// What a ready source tells the loop.
#[derive(Debug)]
pub enum Event {
    /// These signals arrived, in order.
    Signals(Vec<Signal>),
    /// inotify: the content may have changed.
    Changed(Change),
    /// A poll found a directory inotify cannot see changed.
    Polled,
    /// A settle is due.
    Settled(Due),
    /// Targets refused at the last change are due to be judged again.
    RetryDue,
    /// A mount appeared, vanished or changed at or below a configured directory.
    Mounted,
    /// The reload request's attempt ended so.
    RequestEnded(Delivery),
    /// Metrics clients are ready (or one's deadline passed): their readiness, per fd.
    Clients(Vec<Ready>),
    /// A validation ended (its exit came through the SIGCHLD arm, or its timeout passed).
    Validated(Box<Validated>),
    /// The checks after the last signal all concluded: the reload's confirmation step.
    Confirmed(Step),
}

/// One thing the loop waits on.
pub trait Source {
    /// The fd to wait on now, if any.
    fn interest(&self) -> Option<Interest<'_>> {
        None
    }
    /// Every fd to wait on now, for a source with several (the metrics listener and its
    /// clients); by default the one of [`Source::interest`].
    fn interests(&self) -> Vec<Interest<'_>> {
        self.interest().into_iter().collect()
    }
    /// When to be asked again even if no fd is ready; `None`: never (no wake-up).
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// After every wait, with the readiness of its own fds, entry by entry as
    /// [`Source::interests`] gave them (empty if it had none): what happened, if anything.
    fn ready(&mut self, ready: &[Ready], now: Instant, log: &Logger) -> Option<Event>;
}

/// Every source of the loop.
pub struct Sources {
    pub signals: Signals,
    pub inotify: Watcher,
    pub poll: Poller,
    pub request: Option<Webhook>,
    pub settle: Settle,
    pub retry: Retry,
    pub mounts: MountWatch,
    pub listener: Option<Listener>,
    pub validate: Option<Validator>,
    pub confirm: Confirm,
}

impl Sources {
    /// The sources in the order they are asked after a wait: signals first, so a stop is acted
    /// on before anything it cancels moves on; the settle last, so that an event of the same
    /// wake-up restarts its quiet time before it is taken.
    fn each(&mut self) -> Vec<&mut dyn Source> {
        vec![
            &mut self.signals,
            &mut self.inotify,
            &mut self.mounts,
            &mut self.poll,
            &mut self.request,
            &mut self.settle,
            &mut self.retry,
            &mut self.listener,
            &mut self.validate,
            &mut self.confirm,
        ]
    }

    /// Waits once for the earliest deadline or fd of any source; then [`Sources::next_event`]
    /// hands each its readiness. A failing `ppoll` is retried with a backoff, never in a spin.
    pub fn wait(&mut self, log: &Logger) -> Woken {
        let mut failures = 0u32;
        loop {
            let sources = self.each();
            let deadline = sources.iter().filter_map(|s| s.deadline()).min();
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let asked: Vec<Vec<Interest<'_>>> = sources.iter().map(|s| s.interests()).collect();
            let fds: Vec<Interest<'_>> = asked.iter().flatten().copied().collect();
            match sys::ppoll(&fds, timeout) {
                Ok(got) => {
                    let mut got = got.into_iter();
                    let ready = asked
                        .iter()
                        .map(|a| got.by_ref().take(a.len()).collect())
                        .collect();
                    return Woken { ready, next: 0 };
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause =
                        Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1));
                    log.error(
                        "poll failed; retrying",
                        &[("error", e.to_string().into()), ("retry_ms", pause.into())],
                    );
                    std::thread::sleep(pause);
                }
            }
        }
    }

    /// Hands each source in turn its readiness from `woken`, and returns the next thing one
    /// reports; `None` once every source was asked.
    pub fn next_event(&mut self, woken: &mut Woken, log: &Logger) -> Option<Event> {
        while let Some(ready) = woken.ready.get(woken.next) {
            let source = self.each().swap_remove(woken.next);
            woken.next += 1;
            if let Some(event) = source.ready(ready, Instant::now(), log) {
                return Some(event);
            }
        }
        None
    }
}

/// The readiness of every source after one wait, handed out by [`Sources::next_event`].
pub struct Woken {
    /// Per source, in [`Sources::each`]'s order, one entry per fd it asked for.
    ready: Vec<Vec<Ready>>,
    next: usize,
}

/// The signalfd: every signal but the synchronous faults waits here instead of running its
/// default action.
pub struct Signals {
    fd: File,
}

impl Signals {
    /// Blocks the signals and opens their signalfd: first thing at start-up, so that a SIGTERM
    /// during it waits here.
    pub fn new() -> io::Result<Signals> {
        sys::block_signals(signal::blocked())?;
        let fd = sys::signalfd(signal::blocked())?;
        Ok(Signals { fd: File::from(fd) })
    }
}

impl Source for Signals {
    fn interest(&self) -> Option<Interest<'_>> {
        Some(Interest::read(self.fd.as_fd()))
    }

    fn ready(&mut self, ready: &[Ready], _: Instant, log: &Logger) -> Option<Event> {
        if !one(ready).read {
            return None;
        }
        // One `struct signalfd_siginfo` is 128 bytes: `ssi_signo` is its first u32, `ssi_pid`
        // (the sender) its fourth.
        let mut info = [0u8; 128];
        let mut got = Vec::new();
        let own = std::process::id();
        while let Ok(128) = (&self.fd).read(&mut info) {
            let word =
                |i: usize| u32::from_ne_bytes([info[i], info[i + 1], info[i + 2], info[i + 3]]);
            let sig = Signal(word(0) as i32);
            if word(12) == own {
                // Raised by a syscall of ours (SIGPIPE, SIGXFSZ of a write to our own stderr):
                // about us, never for the app.
                log.debug("ignoring our own signal", &[("signal", sig.name().into())]);
                continue;
            }
            got.push(sig);
        }
        (!got.is_empty()).then_some(Event::Signals(got))
    }
}

impl Source for Watcher {
    fn interest(&self) -> Option<Interest<'_>> {
        Some(Interest::read(self.fd()))
    }

    fn ready(&mut self, ready: &[Ready], now: Instant, log: &Logger) -> Option<Event> {
        one(ready)
            .read
            .then(|| self.read(now, log))
            .flatten()
            .map(Event::Changed)
    }
}

impl Source for MountWatch {
    fn interest(&self) -> Option<Interest<'_>> {
        MountWatch::interest(self)
    }

    fn ready(&mut self, ready: &[Ready], _: Instant, _: &Logger) -> Option<Event> {
        (one(ready).read && MountWatch::ready(self)).then_some(Event::Mounted)
    }
}

impl Source for Poller {
    fn deadline(&self) -> Option<Instant> {
        Poller::deadline(self)
    }

    fn ready(&mut self, _: &[Ready], now: Instant, _: &Logger) -> Option<Event> {
        self.tick(now).then_some(Event::Polled)
    }
}

impl Source for Webhook {
    fn interest(&self) -> Option<Interest<'_>> {
        Webhook::interest(self)
    }

    fn deadline(&self) -> Option<Instant> {
        Webhook::deadline(self)
    }

    fn ready(&mut self, ready: &[Ready], now: Instant, log: &Logger) -> Option<Event> {
        self.advance(one(ready), now, log);
        self.take_ended().map(Event::RequestEnded)
    }
}

impl Source for Settle {
    fn deadline(&self) -> Option<Instant> {
        Settle::deadline(self)
    }

    fn ready(&mut self, _: &[Ready], now: Instant, _: &Logger) -> Option<Event> {
        self.take_due(now).map(Event::Settled)
    }
}

impl Source for Retry {
    fn deadline(&self) -> Option<Instant> {
        Retry::deadline(self)
    }

    fn ready(&mut self, _: &[Ready], now: Instant, _: &Logger) -> Option<Event> {
        Retry::deadline(self)
            .is_some_and(|at| at <= now)
            .then_some(Event::RetryDue)
    }
}

/// The metrics listener: its sockets are moved on by the loop, which has the metrics to
/// answer with ([`Listener::ready`]); this only says when.
impl Source for Listener {
    fn interests(&self) -> Vec<Interest<'_>> {
        Listener::interest(self)
    }

    fn deadline(&self) -> Option<Instant> {
        Listener::deadline(self)
    }

    fn ready(&mut self, ready: &[Ready], now: Instant, _: &Logger) -> Option<Event> {
        let due = Listener::deadline(self).is_some_and(|at| at <= now);
        let any = ready.iter().any(|r| r.read || r.write);
        (any || due).then(|| Event::Clients(ready.to_vec()))
    }
}

impl Source for Validator {
    fn interest(&self) -> Option<Interest<'_>> {
        Validator::interest(self)
    }

    fn deadline(&self) -> Option<Instant> {
        Validator::deadline(self)
    }

    fn ready(&mut self, ready: &[Ready], now: Instant, log: &Logger) -> Option<Event> {
        self.advance(one(ready), now, log)
            .map(|v| Event::Validated(Box::new(v)))
    }
}

impl Source for Confirm {
    fn deadline(&self) -> Option<Instant> {
        Confirm::deadline(self)
    }

    fn ready(&mut self, _: &[Ready], now: Instant, log: &Logger) -> Option<Event> {
        self.due(now, log).map(Event::Confirmed)
    }
}

/// The readiness of a source's one fd (nothing, if it asked for none).
fn one(ready: &[Ready]) -> Ready {
    ready.first().copied().unwrap_or_default()
}

/// A source that is configured or not (the reload URL, the validation command).
impl<S: Source> Source for Option<S> {
    fn interests(&self) -> Vec<Interest<'_>> {
        self.as_ref().map(S::interests).unwrap_or_default()
    }

    fn deadline(&self) -> Option<Instant> {
        self.as_ref()?.deadline()
    }

    fn ready(&mut self, ready: &[Ready], now: Instant, log: &Logger) -> Option<Event> {
        self.as_mut()?.ready(ready, now, log)
    }
}
