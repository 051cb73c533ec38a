//! `sed -i`'s temp files: which were created and not yet renamed away, by (watch, name), and
//! how long they hold the settle. `sed -i` writes the whole new file as `sedXXXXXX` next to its
//! target, then renames it over the target: a walk between the two sees the old content and a
//! stray file. The watcher hands it each event on a sed-shaped name; the settle asks
//! [`SedTemps::hold`]. It never watches, never reads the filesystem, and never decides a
//! reload (`reload::next_step` does, with the hold as one of its inputs).

use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use inotify::EventMask;

use crate::names;

/// The sed-shaped files created and not yet renamed away.
#[derive(Debug, Default)]
pub struct SedTemps {
    /// (watch, name, created).
    files: Vec<(i32, OsString, Instant)>,
}

impl SedTemps {
    /// Notes an event on `name` in the directory of watch `id`: a sed-shaped file created
    /// waits, one renamed away or deleted no longer does. Directories are never sed's.
    pub fn note(&mut self, id: i32, mask: EventMask, name: &OsStr, now: Instant) {
        if mask.contains(EventMask::ISDIR) || !names::looks_like_sed_temp(name) {
            return;
        }
        if mask.contains(EventMask::CREATE) {
            self.files.push((id, name.to_os_string(), now));
        } else if mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
            self.files.retain(|(i, n, _)| !(*i == id && n == name));
        }
    }

    /// How long the files created lately hold the settle: until the latest one is renamed
    /// away or `max_delay` after it appeared, whichever comes first; `None` if none.
    pub fn hold(&mut self, now: Instant, max_delay: Duration) -> Option<Instant> {
        self.files.retain(|(_, _, t)| *t + max_delay > now);
        self.files.iter().map(|(_, _, t)| *t + max_delay).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(10);

    fn n(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn a_created_temp_file_holds_until_renamed_away_or_max_delay() {
        let t0 = Instant::now();
        let mut s = SedTemps::default();
        s.note(1, EventMask::CREATE, n("sedAb12Z9"), t0);
        assert_eq!(s.hold(t0, MAX), Some(t0 + MAX));
        // Renamed in another directory: not this one.
        s.note(2, EventMask::MOVED_FROM, n("sedAb12Z9"), t0);
        assert_eq!(s.hold(t0, MAX), Some(t0 + MAX));
        s.note(1, EventMask::MOVED_FROM, n("sedAb12Z9"), t0);
        assert_eq!(s.hold(t0, MAX), None);
        // Never renamed: it stops holding at max_delay exactly.
        s.note(1, EventMask::CREATE, n("sedXy34Q0"), t0);
        assert_eq!(s.hold(t0 + MAX, MAX), None);
    }

    #[test]
    fn the_latest_of_several_holds_and_other_names_and_directories_never_do() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(3);
        let mut s = SedTemps::default();
        s.note(1, EventMask::CREATE, n("sedAb12Z9"), t0);
        s.note(1, EventMask::CREATE, n("sedXy34Q0"), t1);
        assert_eq!(s.hold(t1, MAX), Some(t1 + MAX));
        s.note(1, EventMask::DELETE, n("sedXy34Q0"), t1);
        assert_eq!(s.hold(t1, MAX), Some(t0 + MAX));
        let mut s = SedTemps::default();
        s.note(1, EventMask::CREATE, n("sed.conf"), t0);
        s.note(1, EventMask::CREATE | EventMask::ISDIR, n("sedAb12Z9"), t0);
        assert_eq!(s.hold(t0, MAX), None);
    }
}
