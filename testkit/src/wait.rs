//! Waiting for conditions with a deadline.

use std::time::{Duration, Instant};

/// How often [`wait_until`] re-checks its condition.
const POLL: Duration = Duration::from_millis(5);

/// Polls `f` every 5 ms until it returns `Some`, and returns that value; panics naming `what`
/// if `timeout` passes first. The condition is always checked once more at the deadline.
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until_every(POLL, timeout, what, f)
}

/// [`wait_until`] with another polling interval, for conditions that are costly to check
/// (each look at a container spawns the docker CLI).
pub fn wait_until_every<T>(
    every: Duration,
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            if let Some(v) = f() {
                return v;
            }
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}
