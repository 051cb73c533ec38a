//! The size budget of the binary and of its image, per platform: one number for every test
//! and the bench.

/// 832 KiB: 640 KiB for the std + `inotify` + `libc` port (the Go original is 1.5 MB), 64 KiB
/// for the metrics listener, and 128 KiB for what reading a target and its outcome took since
/// (a runtime's catch-all handler told from the app's, pid files, the validation command and
/// the confirmation). `opt-level = "z"` saves only 4 %; `make tiny` is the build for size.
pub const SIZE_BUDGET_KIB: u64 = 832;
