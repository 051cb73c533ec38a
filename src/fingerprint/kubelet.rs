//! A kubelet volume inside a walk: hashed through `..data`, re-read when the kubelet swaps it
//! meanwhile, and complete only when its visible links match `..data`'s names (the kubelet
//! links added keys and unlinks removed ones after the commit). When a key cannot be read, the
//! name of the data directory `..data` points to counts too: the kubelet swaps it only when
//! the payload differs, so an update is seen even when no key's bytes can be.

use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{
    bytes, cut_value, error_value, tagged, CutReason, Mode, Names, Sink, Walker, KUBELET,
    KUBELET_RETRIES, SPECIAL, UNSTABLE,
};

impl Walker<'_> {
    /// A kubelet volume: the tree `..data` points to, re-read when the kubelet swaps `..data`
    /// during the read, as one value. `visible` are the names of the volume's own entries (the
    /// `key -> ..data/key` links). `None`, with the loop cut and logged, when `..data` leads
    /// back to the volume or above it (`..data -> .`): no kubelet wrote that, so the caller
    /// reads the directory as a plain one.
    pub(super) fn kubelet(
        &mut self,
        dir: &Path,
        visible: Names,
        mode: Mode,
        ancestors: &[(u64, u64)],
        id: (u64, u64),
    ) -> Option<u64> {
        let data = dir.join("..data");
        let inner_mode = Mode {
            real: false,
            data: true,
            links: mode.links.saturating_add(1),
        };
        let mut path = ancestors.to_vec();
        path.push(id);
        let mut h = DefaultHasher::new();
        h.write_u8(KUBELET);
        for attempt in 0..KUBELET_RETRIES {
            let Ok(before) = fs::read_link(&data) else {
                continue;
            };
            if self.hooks.sink == Sink::Metadata {
                bytes(&mut h, before.as_os_str().as_encoded_bytes());
                return Some(h.finish());
            }
            let target = dir.join(&before);
            let meta = match fs::metadata(&target) {
                Ok(m) if m.is_dir() && !self.is_kernel(m.dev()) => m,
                Ok(m) if m.is_dir() => {
                    self.cut(data, CutReason::Kernel);
                    h.write_u64(cut_value(CutReason::Kernel));
                    return Some(h.finish());
                }
                Ok(_) => {
                    h.write_u64(tagged(SPECIAL));
                    return Some(h.finish());
                }
                Err(e) => {
                    h.write_u64(error_value(&e));
                    return Some(h.finish());
                }
            };
            let target_id = (meta.dev(), meta.ino());
            if let Some(reason) = self.cut_reason(target_id, inner_mode, &path) {
                self.cut(data, reason);
                if reason == CutReason::Loop && attempt == 0 {
                    return None;
                }
                h.write_u64(cut_value(reason));
                return Some(h.finish());
            }
            let unreadable = self.unreadable.count;
            // Through `..data`, so a key is named the same in every version (a file logged as
            // unreadable is logged once, not at every update); a swap meanwhile is caught below.
            let (inner, data_names) = self.tree(&data, target_id, inner_mode, &path);
            if fs::read_link(&data).ok().as_ref() == Some(&before) {
                h.write_u64(inner);
                if self.unreadable.count > unreadable {
                    bytes(&mut h, before.as_os_str().as_encoded_bytes());
                }
                if visible != data_names && self.incomplete.is_none() {
                    self.incomplete = Some(dir.to_path_buf());
                }
                return Some(h.finish());
            }
        }
        h.write_u8(UNSTABLE);
        Some(h.finish())
    }
}
