//! The kernel limits our error lines name, read from `/proc/sys` for the hint.

use std::fs;

/// `/proc/sys/REL` trimmed, or `unknown` if unreadable.
pub fn read(rel: &str) -> String {
    fs::read_to_string(format!("/proc/sys/{rel}"))
        .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string())
}

/// The per-UID inotify limit on `what` (`watches` or `instances`) that is in force, as (sysctl
/// name, value). Each user namespace has its own `user.max_inotify_*`, checked together with
/// the host's `fs.inotify.max_user_*` (user_namespaces(7)); in the initial namespace both are
/// the same number, inside a user namespace the lower one is what bites.
pub fn inotify(what: &str) -> (String, String) {
    let num = |rel: String| read(&rel).parse::<u64>().ok();
    let host = num(format!("fs/inotify/max_user_{what}"));
    let userns = num(format!("user/max_inotify_{what}"));
    match (host, userns) {
        (Some(h), Some(u)) if u < h => (format!("user.max_inotify_{what}"), u.to_string()),
        (None, Some(u)) => (format!("user.max_inotify_{what}"), u.to_string()),
        (h, _) => (
            format!("fs.inotify.max_user_{what}"),
            h.map_or_else(|| "unknown".to_string(), |h| h.to_string()),
        ),
    }
}
