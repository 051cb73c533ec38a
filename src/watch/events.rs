//! What one inotify event on a content directory means. Pure, so it is tested without a kernel.

use std::ffi::OsStr;

use inotify::EventMask;

use crate::names;

/// Why an event may mean new content: it opens (or keeps open) the settle, re-plans polling
/// where a directory came or went, and names the event in the debug line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `..data` was replaced: a kubelet atomic update was committed.
    KubeletCommit,
    /// A visible link of a kubelet volume appeared or went: the update's links after its
    /// commit (a volume is a directory holding `..data`).
    KubeletLinked,
    /// A file was written and closed.
    Written,
    /// A file was written or truncated (it may still be open).
    Modified,
    /// An entry appeared.
    Created,
    /// An entry disappeared.
    Removed,
    /// An entry was renamed in or out.
    Renamed,
    /// A subdirectory appeared: the watcher arms it and every directory below it at once.
    DirAdded,
    /// A configured directory went away.
    DirGone,
    /// A configured directory came back, or a symlink on its path was re-pointed.
    Rearmed,
    /// The target of a symlinked file changed in its directory outside the trees.
    LinkTarget,
    /// A filesystem was mounted or unmounted at or below a configured directory.
    Mounted,
    /// The kernel's event queue overflowed: anything may have changed.
    Overflow,
}

impl Change {
    /// Name used in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::KubeletCommit => "kubelet-update",
            Change::KubeletLinked => "kubelet-link",
            Change::Written => "written",
            Change::Modified => "modified",
            Change::Created => "created",
            Change::Removed => "removed",
            Change::Renamed => "renamed",
            Change::DirAdded => "dir-added",
            Change::DirGone => "dir-gone",
            Change::Rearmed => "rearmed",
            Change::LinkTarget => "link-target",
            Change::Mounted => "mounted",
            Change::Overflow => "queue-overflow",
        }
    }
}

impl Change {
    /// Written by the kubelet's atomic writer, whose update is complete once the volume's
    /// links match `..data`: due at once, no debounce.
    pub fn at_once(self) -> bool {
        matches!(self, Change::KubeletCommit | Change::KubeletLinked)
    }

    /// Of two reasons seen in one read, the one to report: a plain change wins, since it
    /// still has to settle.
    pub fn or(this: Option<Change>, other: Option<Change>) -> Option<Change> {
        match (this, other) {
            (Some(a), Some(b)) if a.at_once() && !b.at_once() => Some(b),
            (a, b) => a.or(b),
        }
    }

    /// Created, removed or renamed in: what the kubelet does to a volume's visible links.
    pub fn may_be_link(self) -> bool {
        matches!(self, Change::Created | Change::Removed | Change::Renamed)
    }
}

/// Whether an event about `name` in a content directory may mean new content, and why.
///
/// Of the kubelet's internals only the commit counts (`..data` renamed over or, on a first
/// population, created); editor scratch files count for nothing. Everything else may: a
/// sed temp file too (`watch` holds the settle until it is renamed away).
pub fn classify(mask: EventMask, name: &OsStr) -> Option<Change> {
    let is_dir = mask.contains(EventMask::ISDIR);
    if names::is_internal(name) {
        let commit = name == "..data" && mask.intersects(EventMask::MOVED_TO | EventMask::CREATE);
        return commit.then_some(Change::KubeletCommit);
    }
    if names::skip(name, is_dir) {
        return None;
    }
    Some(
        if is_dir && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            Change::DirAdded
        } else if mask.contains(EventMask::CLOSE_WRITE) {
            Change::Written
        } else if mask.contains(EventMask::MODIFY) {
            Change::Modified
        } else if mask.contains(EventMask::CREATE) {
            Change::Created
        } else if mask.contains(EventMask::DELETE) {
            Change::Removed
        } else {
            Change::Renamed
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(mask: EventMask, name: &str) -> Option<Change> {
        classify(mask, OsStr::new(name))
    }

    #[test]
    fn the_kubelet_commit_is_the_only_internal_event_that_counts() {
        assert_eq!(
            c(EventMask::MOVED_TO, "..data"),
            Some(Change::KubeletCommit)
        );
        assert_eq!(c(EventMask::CREATE, "..data"), Some(Change::KubeletCommit));
        let ts = "..2026_11_25_10_00_00.1234567890";
        assert_eq!(c(EventMask::CREATE | EventMask::ISDIR, ts), None);
        assert_eq!(c(EventMask::DELETE | EventMask::ISDIR, ts), None);
        assert_eq!(c(EventMask::CREATE, "..data_tmp"), None);
        assert_eq!(c(EventMask::MOVED_FROM, "..data_tmp"), None);
        assert_eq!(
            c(EventMask::CREATE, ".env"),
            Some(Change::Created),
            "a key may start with one dot"
        );
    }

    #[test]
    fn scratch_files_count_for_nothing_but_scratch_named_dirs_and_sed_files_do() {
        for n in ["4913", "app.conf~", ".app.conf.swp", ".app.conf.swx"] {
            assert_eq!(c(EventMask::CLOSE_WRITE, n), None, "{n}");
            assert_eq!(
                c(EventMask::CREATE | EventMask::ISDIR, n),
                Some(Change::DirAdded),
                "{n}/"
            );
        }
        assert_eq!(
            c(EventMask::CLOSE_WRITE, "sedAb12Z9"),
            Some(Change::Written)
        );
        assert_eq!(c(EventMask::MOVED_TO, "app.conf"), Some(Change::Renamed));
    }

    #[test]
    fn of_two_reasons_in_one_read_a_plain_one_wins_since_it_must_settle() {
        let (k, w) = (Some(Change::KubeletCommit), Some(Change::Written));
        assert_eq!(Change::or(k, w), w);
        assert_eq!(Change::or(w, k), w);
        assert_eq!(Change::or(k, Some(Change::KubeletLinked)), k);
        assert_eq!(Change::or(None, k), k);
        assert!(Change::KubeletLinked.at_once() && !Change::Created.at_once());
    }

    #[test]
    fn plain_events_map_to_changes() {
        assert_eq!(
            c(EventMask::MOVED_TO | EventMask::ISDIR, "conf.d"),
            Some(Change::DirAdded)
        );
        assert_eq!(
            c(EventMask::MODIFY, "a"),
            Some(Change::Modified),
            "truncate(2) raises only this"
        );
        assert_eq!(c(EventMask::DELETE, "a"), Some(Change::Removed));
        assert_eq!(c(EventMask::CREATE, "a"), Some(Change::Created));
    }
}
