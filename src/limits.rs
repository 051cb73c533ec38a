//! The kernel limits our error lines name, read from `/proc/sys` (and our own `RLIMIT_NOFILE`
//! from `/proc/self/limits`) for the hint. Never raises a limit.

use std::fs;
use std::io;

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

/// Descriptors the loop needs free beyond the ones it holds (stdio, the signalfd, inotify): the
/// `/proc` scan holds 3 at once (`/proc`, its listing, one `comm`), judging and signalling a
/// target 3 more (its pidfd, its `task` listing, one `status`), the reload request 1, and the
/// walk 2 (a directory's listing, one file) between them; one spare. Measured: under
/// `prlimit --nofile=7` the scan already skipped a process it could not open.
pub const FD_HEADROOM: u64 = 8;
/// The descriptors the loop holds for its whole life: the signalfd and the inotify instance.
const FD_HELD: u64 = 2;

/// Whether an EMFILE (from `inotify_init`, say, which also returns it for the per-user instance
/// limit) came from our own descriptor limit: an `open` of anything fails the same way then.
pub fn out_of_fds() -> bool {
    matches!(fs::File::open("/proc/self/limits"), Err(e) if is_emfile(&e))
}

/// Whether `e` is "too many open files", of this process (EMFILE) or of the system (ENFILE).
pub fn is_emfile(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The hint for an EMFILE/ENFILE: which limit to raise.
pub fn emfile_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::ENFILE) {
        "the system-wide limit on open files (fs.file-max) is reached"
    } else {
        "this process has no file descriptor left under RLIMIT_NOFILE; raise it (ulimit -n, docker run --ulimit nofile=N, or the container runtime's default)"
    }
}

/// Checked at start-up, before the signalfd and inotify exist: whether our soft `RLIMIT_NOFILE`
/// leaves room for them and [`FD_HEADROOM`]; the one line to log when it does not. A limit
/// that cannot be read is no reason to refuse, unless reading it failed for want of a
/// descriptor.
pub fn fd_shortage() -> Option<String> {
    let need = FD_HELD + FD_HEADROOM;
    let short = |now: &str| {
        Some(format!("too few file descriptors: RLIMIT_NOFILE (ulimit -n) is {now}; the sidecar needs {need} free at start-up (the signalfd, inotify, and {FD_HEADROOM} for the walk, the /proc scan, the send and the reload request); raise it with ulimit -n, docker run --ulimit nofile=N, or the container runtime's default"))
    };
    let limits = match fs::read_to_string("/proc/self/limits") {
        Ok(l) => l,
        Err(e) if is_emfile(&e) => {
            return short("exhausted: not even /proc/self/limits can be opened")
        }
        Err(_) => return None,
    };
    let soft = nofile_soft(&limits)?;
    // A new descriptor takes the lowest free number, and EMFILE means none is left below the
    // limit: inherited ones numbered above it (a shell's 255) take no room. The listing holds
    // one descriptor of its own while it counts.
    let below = |e: &fs::DirEntry| {
        e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|fd| fd < soft)
    };
    let open = match fs::read_dir("/proc/self/fd") {
        Ok(rd) => (rd.flatten().filter(below).count() as u64).saturating_sub(1),
        Err(e) if is_emfile(&e) => {
            return short(&format!("{soft}, and every descriptor is in use"))
        }
        Err(_) => return None,
    };
    let free = soft.saturating_sub(open);
    (free < need)
        .then(|| short(&format!("{soft} with {open} in use, {free} free")))
        .flatten()
}

/// The soft limit of the `Max open files` row of `/proc/PID/limits`; `None` if absent or
/// `unlimited`.
fn nofile_soft(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_nofile_limit_is_read_from_proc_self_limits() {
        let table = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(nofile_soft(table), Some(1024));
        assert_eq!(
            nofile_soft("Max open files unlimited unlimited files\n"),
            None
        );
        let ours = fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
        assert!(nofile_soft(&ours).is_some(), "{ours}");
    }
}
