//! Which names in a watched directory are content. The watcher and the fingerprint both ask
//! here, so an entry is either seen by both or by neither.
//!
//! - Kubelet internals (`..data`, `..data_tmp`, `..<timestamp>`) are machinery: the content is
//!   what `..data` points to. Keys may start with one dot, so only `..` marks an internal.
//! - Editor scratch FILES are never read by the app: vim's `4913` probe, `file~` backups and
//!   `.file.swp`/`.swo`/`.swx` swap files. A DIRECTORY with such a name (`conf.d~`) is content:
//!   the app may well read inside it.
//! - sed's temp file (`sedXXXXXX`) is not filtered by its name, which a real config file may
//!   have (`sedscript`); the watcher waits for it to be renamed away instead.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// A kubelet internal: a name starting with `..`.
pub fn is_internal(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b"..")
}

/// An editor's scratch file name: `4913`, `*~`, `.*.sw?`.
pub fn is_scratch(name: &OsStr) -> bool {
    let b = name.as_bytes();
    if b == b"4913" || b.ends_with(b"~") {
        return true;
    }
    b.len() >= 5 && b[0] == b'.' && b[b.len() - 4..b.len() - 1] == *b".sw"
}

/// Whether an entry is left out of the content: internals always, scratch names unless the
/// entry is a real directory (`is_dir` comes from the listing's d_type or `IN_ISDIR`, so a
/// symlink never counts as a directory here, in the watcher or in the fingerprint).
pub fn skip(name: &OsStr, is_dir: bool) -> bool {
    is_internal(name) || (!is_dir && is_scratch(name))
}

/// Shaped like the temp file `sed -i` writes next to its target (mkostemp's `sedXXXXXX`):
/// only a hint that the file may vanish in a moment, never a reason to ignore it.
pub fn looks_like_sed_temp(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.len() == 9 && b.starts_with(b"sed") && b[3..].iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn scratch_files_are_skipped_but_directories_with_those_names_are_content() {
        for s in [
            "4913",
            "app.conf~",
            ".app.conf.swp",
            ".app.conf.swx",
            ".x.swo",
        ] {
            assert!(skip(n(s), false), "{s}");
            assert!(!skip(n(s), true), "{s} as a directory");
        }
        for s in [
            "app.conf",
            "sed.conf",
            "sedscript",
            "sedAb12Z9",
            "4914",
            "swp",
            ".swp",
        ] {
            assert!(!skip(n(s), false), "{s}");
        }
    }

    #[test]
    fn internals_are_skipped_whatever_their_kind_and_single_dot_keys_are_content() {
        for s in ["..data", "..data_tmp", "..2026_11_25_10_00_00.1234567890"] {
            assert!(skip(n(s), false) && skip(n(s), true), "{s}");
        }
        assert!(!skip(n(".env"), false));
    }

    #[test]
    fn sed_temp_shape() {
        assert!(looks_like_sed_temp(n("sedAb12Z9")));
        assert!(looks_like_sed_temp(n("sedscript")));
        assert!(!looks_like_sed_temp(n("sed.conf")));
        assert!(!looks_like_sed_temp(n("sedAb12Z")));
    }
}
