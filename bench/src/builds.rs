//! Other builds of our binary, measured next to the current one: "before" is the
//! last `no_std` commit, built by `make bench` from a temporary git worktree; "tiny" is
//! `make tiny` (nightly, `build-std`, immediate-abort panics). Each goes through the same
//! scenario function as ours, right after ours, so the columns share the machine's state.

use std::path::PathBuf;

use crate::report::{Each, Val};
use crate::run::Paths;

/// The extra builds given on the command line; either may be absent.
#[derive(Clone, Debug, Default)]
pub struct Builds {
    /// `--before PATH`: the last `no_std` commit's release binary.
    pub before: Option<PathBuf>,
    /// `--before-rev REV`: which commit that is, for the column's header.
    pub before_rev: Option<String>,
    /// `--tiny PATH`: `make tiny`'s binary.
    pub tiny: Option<PathBuf>,
    /// `--image REF`: our image, for its size; [`IMAGE`] if not given.
    pub image: Option<String>,
}

/// The image `make image` tags.
pub const IMAGE: &str = "config-reloader-sidecar:latest";
/// The image `make tiny` tags.
pub const TINY_IMAGE: &str = "config-reloader-sidecar:tiny";

impl Builds {
    /// What the extra columns are, for the progress line and the notes; `None` without any.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(p) = &self.before {
            parts.push(format!("{} = {}", self.before_label(), p.display()));
        }
        if let Some(p) = &self.tiny {
            parts.push(format!("tiny = {}", p.display()));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// `paths` with the reloader swapped for each extra build (sigrecord stays the same).
    fn paths(&self, paths: &Paths) -> Each<Paths> {
        let with = |p: &Option<PathBuf>| {
            p.as_ref().map(|r| Paths {
                reloader: r.clone(),
                sigrecord: paths.sigrecord.clone(),
            })
        };
        Each {
            before: with(&self.before),
            tiny: with(&self.tiny),
        }
    }

    /// Runs `f` (a scenario for ours) once for each extra build.
    pub fn run<T>(
        &self,
        paths: &Paths,
        mut f: impl FnMut(&Paths) -> Result<T, String>,
    ) -> Result<Each<T>, String> {
        let p = self.paths(paths);
        Ok(Each {
            before: p.before.as_ref().map(&mut f).transpose()?,
            tiny: p.tiny.as_ref().map(&mut f).transpose()?,
        })
    }

    /// The header of the "before" column.
    pub fn before_label(&self) -> String {
        match &self.before_rev {
            Some(rev) => format!("before ({rev})"),
            None => "before".into(),
        }
    }
}

impl<T> Each<T> {
    /// The figures to show, one per build measured.
    pub fn val(&self, f: impl Fn(&T) -> Val) -> Each<Val> {
        Each {
            before: self.before.as_ref().map(&f),
            tiny: self.tiny.as_ref().map(&f),
        }
    }
}
