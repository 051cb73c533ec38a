//! Test support for config-reloader.
//!
//! - [`apps`]: other targets: `sigwaiter` (sigwait apps), Python scripts, Debian's tini and
//!   dumb-init under a name of the test's choosing.
//! - [`SIZE_BUDGET_KIB`]: what the binary and its image may weigh.
//! - [`fuse`]: a bindfs (FUSE) view of a directory, whose outside writes inotify cannot see.
//! - [`kubelet`]: a writer that updates a directory exactly like the kubelet's atomic writer
//!   (same syscalls, same order), see `docs/kubelet-volumes.md`.
//! - [`platforms`]: the six platforms `make` builds, how each binary runs here (qemu-user).
//! - [`recorder`]: spawns the `sigrecord` binary, the stand-in for the application, and reads
//!   back the signals it received and the content it saw.
//! - [`reloader`]: runs the real `config-reloader` binary and reads its log lines.
//! - [`wait_until`]: wait for a condition with a deadline instead of sleeping.
//! - [`TempDir`]: a unique directory removed on drop.
//! - [`tree`]: process trees a test must end, the mark of a test run's processes, copies of
//!   binaries another UID can run.
//! - [`unique_name`]: a process name no other test run on this host uses.

pub mod apps;
mod budget;
pub mod fuse;
pub mod kubelet;
mod names;
pub mod platforms;
pub mod recorder;
pub mod reloader;
pub mod runtimes;
mod sys;
mod tempdir;
mod time;
pub mod tree;
mod wait;

pub use budget::SIZE_BUDGET_KIB;
pub use names::unique_name;
pub use sys::{kill, monotonic_ns};
pub use tempdir::TempDir;
pub use time::{utc, Utc};
pub use wait::{wait_until, wait_until_every};
