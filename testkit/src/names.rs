//! Process names that are unique per test run.
//!
//! The reloader finds its target by scanning the whole `/proc` of the machine, so two test
//! runs (or two developers) on one host must never use the same process name.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Longest name `/proc/PID/comm` holds (TASK_COMM_LEN - 1).
const COMM_MAX: usize = 15;

/// `base` cut to fit, then `-` and a suffix unique to this run and this call, 15 bytes at
/// most so `/proc/PID/comm` holds all of it: `unique_name("kubeapp")` → `kubeapp-k3x9a2`.
pub fn unique_name(base: &str) -> String {
    static RUN: OnceLock<u32> = OnceLock::new();
    static N: AtomicU32 = AtomicU32::new(0);
    let run = *RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(2_654_435_761) ^ nanos
    });
    let n = N.fetch_add(1, Ordering::Relaxed);
    let suffix = base36(run.wrapping_add(n.wrapping_mul(7919)) % 36u32.pow(6), 6);
    let keep = COMM_MAX - 1 - suffix.len();
    let mut cut = base.len().min(keep);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{suffix}", &base[..cut])
}

fn base36(mut n: u32, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_comm_and_differ() {
        let a = unique_name("a-very-long-base-name");
        let b = unique_name("a-very-long-base-name");
        assert!(a.len() <= COMM_MAX && b.len() <= COMM_MAX, "{a} {b}");
        assert_ne!(a, b);
        assert!(unique_name("app").starts_with("app-"));
    }
}
