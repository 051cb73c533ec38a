//! What a test leaves behind: process trees it must end, the mark every process of a test run
//! carries, and copies of binaries that another UID can run.
//!
//! `make test` sets [`RUN_MARK`] to an id of its own; every process a test starts inherits it
//! (the commands that clear their environment put it back, see [`run_mark`]), and the run
//! ends with `scripts/leftovers.sh`, which fails listing every process still carrying it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that marks every process of one `make test` run.
pub const RUN_MARK: &str = "CONFIG_RELOADER_TEST_RUN";

/// `(RUN_MARK, id)` when this run is marked: for `Command::envs` after `env_clear`.
pub fn run_mark() -> Option<(&'static str, OsString)> {
    std::env::var_os(RUN_MARK).map(|id| (RUN_MARK, id))
}

/// (pid, parent, state) of every process, from `/proc/PID/stat`.
fn processes() -> Vec<(i32, i32, u8)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
            let close = stat.iter().rposition(|&b| b == b')')?;
            let rest = String::from_utf8_lossy(&stat[close + 1..]).into_owned();
            let mut f = rest.split_whitespace();
            let state = f.next()?.bytes().next()?;
            let ppid = f.next()?.parse().ok()?;
            Some((pid, ppid, state))
        })
        .collect()
}

/// Every live (not zombie) descendant of `root`, parents before children.
pub fn descendants(root: i32) -> Vec<i32> {
    let all = processes();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, _, state) in all.iter().filter(|(_, ppid, _)| *ppid == p) {
            if state != b'Z' && state != b'X' {
                out.push(pid);
            }
            frontier.push(pid);
        }
    }
    out
}

/// SIGKILLs every descendant of `root` (not `root`), collected while their parents still
/// hold them: once a parent dies its orphans move to init and out of reach. Call it with
/// `root` stopped (SIGSTOP), so it can neither start nor reap anyone meanwhile.
pub fn kill_descendants(root: i32) {
    for _ in 0..50 {
        let tree = descendants(root);
        if tree.is_empty() {
            return;
        }
        for pid in tree {
            let _ = crate::kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A copy of `bin` that any UID can run: `make test` may run from a checkout under a 0700
/// directory (a home), which a test's other UID cannot enter. One copy per build, in
/// `/tmp/config-reloader-tests/` (0755, ours), named by size and mtime, so test binaries
/// share it and a rebuild gets a new one.
pub fn reachable_copy(bin: &Path) -> PathBuf {
    copy_for_everyone(bin)
        .unwrap_or_else(|e| panic!("copy {} where another UID can run it: {e}", bin.display()))
}

fn copy_for_everyone(bin: &Path) -> io::Result<PathBuf> {
    let dir = Path::new("/tmp/config-reloader-tests");
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Someone else's directory (or a link to one) could hand us their binary.
    let meta = fs::symlink_metadata(dir)?;
    // Our effective UID is the owner of our /proc entry (no unsafe geteuid needed).
    let me = fs::metadata("/proc/self")?.uid();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} exists but is not a directory of ours that only we can write",
            dir.display()
        )));
    }
    let m = fs::metadata(bin)?;
    let name = bin
        .file_name()
        .map_or_else(|| "bin".into(), |n| n.to_owned());
    let mut stamped = name.clone();
    stamped.push(format!(
        "-{}-{}",
        m.size(),
        m.mtime_nsec() + m.mtime() * 1_000_000_000
    ));
    let copy = dir.join(&stamped);
    if !copy.is_file() {
        // Unique per call: tests of one binary copy at the same time, from one pid.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = stamped;
        tmp.push(format!(".tmp{}.{n}", std::process::id()));
        let tmp = dir.join(tmp);
        fs::copy(bin, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &copy)?;
    }
    Ok(copy)
}
