//! A kubelet volume inside a walk: hashed through `..data`, re-read when the kubelet swaps it
//! meanwhile, and complete only when its visible links match `..data`'s names (the kubelet
//! links added keys and unlinks removed ones after the commit).

use std::ffi::OsString;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{
    error, CutReason, Entry, Mode, Walker, CUT, KUBELET, KUBELET_RETRIES, SPECIAL, UNSTABLE,
};
use crate::names;

impl Walker<'_> {
    /// A kubelet volume: the tree `..data` points to, re-read when the kubelet swaps `..data`
    /// during the read. `visible` are the volume's own entries (the `key -> ..data/key` links).
    /// False, with the loop cut and logged, when `..data` leads back to the volume or above it
    /// (`..data -> .`): no kubelet wrote that, so the caller reads the directory as a plain one.
    pub(super) fn kubelet(
        &mut self,
        h: &mut DefaultHasher,
        dir: &Path,
        visible: &[Entry],
        mode: Mode,
        ancestors: &[(u64, u64)],
        id: (u64, u64),
    ) -> bool {
        let data = dir.join("..data");
        let inner_mode = Mode {
            real: false,
            data: true,
            links: mode.links.saturating_add(1),
        };
        let mut path = ancestors.to_vec();
        path.push(id);
        for attempt in 0..KUBELET_RETRIES {
            let Ok(before) = fs::read_link(&data) else {
                continue;
            };
            let target = dir.join(&before);
            let meta = match fs::metadata(&target) {
                Ok(m) if m.is_dir() => m,
                Ok(_) => {
                    h.write_u8(KUBELET);
                    h.write_u8(SPECIAL);
                    return true;
                }
                Err(e) => {
                    h.write_u8(KUBELET);
                    error(h, &e);
                    return true;
                }
            };
            let target_id = (meta.dev(), meta.ino());
            if let Some(reason) = self.cut_reason(target_id, inner_mode, &path) {
                self.cut(data, reason);
                if reason == CutReason::Loop && attempt == 0 {
                    return false;
                }
                h.write_u8(KUBELET);
                h.write_u8(CUT);
                h.write_u8(reason as u8);
                return true;
            }
            let mut inner = DefaultHasher::new();
            let data_names = self.tree(&mut inner, &target, target_id, inner_mode, &path);
            if fs::read_link(&data).ok().as_ref() == Some(&before) {
                h.write_u8(KUBELET);
                h.write_u64(inner.finish());
                if !links_match(visible, data_names) && self.incomplete.is_none() {
                    self.incomplete = Some(dir.to_path_buf());
                }
                return true;
            }
        }
        h.write_u8(KUBELET);
        h.write_u8(UNSTABLE);
        true
    }
}

/// Whether the volume's visible names are exactly the top-level names under `..data` (as the
/// walk listed them, both without `..` internals): the kubelet links added keys and unlinks
/// removed ones only after the commit. Scratch-shaped names are left out of both sides: a
/// visible link is never a real directory, so the listing keeps a scratch-named key
/// directory that its link lost.
fn links_match(visible: &[Entry], mut data: Vec<OsString>) -> bool {
    let mut shown: Vec<&OsString> = visible.iter().map(|e| &e.name).collect();
    data.retain(|n| !names::is_scratch(n));
    shown.retain(|n| !names::is_scratch(n));
    data.sort_unstable();
    shown.sort_unstable();
    data.len() == shown.len() && data.iter().zip(shown).all(|(a, b)| *a == *b)
}
