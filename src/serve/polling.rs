//! The poll timer's plan: which directories are polled, and how often, at start-up and again
//! whenever a mount or a re-armed watch may have changed where inotify is blind. Logs one
//! `info polling` line per directory newly polled; never polls by itself (that is `poll`).

use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;
use crate::log::{self, Logger};
use crate::mounts;
use crate::poll::{self, Poll, Poller};

use super::Daemon;

/// The poll timer `cfg.poll` asks for; one `info polling` line per polled directory.
pub(super) fn poller(cfg: &Config, mounts: &[mounts::Mount], log: &Logger) -> Poller {
    let plan = poll::plan(cfg.poll, &cfg.dirs, mounts);
    log_polling(&plan, &plan.dirs, log);
    Poller::new(
        plan.every,
        plan.dirs,
        mounts::kernel_devs(mounts),
        Instant::now(),
    )
}

/// One `info polling` line per directory of `dirs` (all or part of `plan`'s).
fn log_polling(plan: &poll::Plan, dirs: &[(PathBuf, &'static str)], log: &Logger) {
    for (dir, fs) in dirs {
        log.info(
            "polling",
            &[
                ("dir", dir.as_path().into()),
                ("fs", (*fs).into()),
                ("interval", log::seconds(plan.every).into()),
                ("reason", plan.reason.into()),
            ],
        );
    }
}

impl Daemon<'_> {
    /// With `auto` polling, re-detects which directories need it (a FUSE mounted since, a
    /// directory re-armed onto another filesystem).
    pub(super) fn replan_polling(&mut self, now: Instant) {
        if self.cfg.poll == Poll::Auto {
            // Only a newly polled directory is logged: a deleted subdirectory re-arms too, and
            // must neither repeat the lines nor restart the timer.
            let mounts = self.sources.mounts.mounts();
            let plan = poll::plan(Poll::Auto, &self.cfg.dirs, mounts);
            let kernel = mounts::kernel_devs(mounts);
            let added = self.sources.poll.replan(plan.dirs.clone(), kernel, now);
            log_polling(&plan, &added, &self.log);
        }
    }
}
