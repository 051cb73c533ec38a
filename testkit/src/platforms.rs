//! The six platforms `make` builds: for each, its Rust target, its Docker/OCI
//! platform, how its binary is run here (natively, or under which qemu-user and options) and
//! the ELF header its binary must carry. One table, so that the image test, the footprint test
//! and the smoke test of every binary agree with the Makefile's PLATFORM_TARGETS.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::reloader::release_binary;

/// One shipped platform.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    /// The Rust target `make` builds it for.
    pub triple: &'static str,
    /// OCI `architecture` (and `target/dist/` directory).
    pub arch: &'static str,
    /// OCI `variant`, where the index names one.
    pub variant: Option<&'static str>,
    /// qemu-user and its options, for a foreign binary; `None` runs it natively.
    pub qemu: Option<&'static [&'static str]>,
    /// ELF e_machine (elf.h).
    pub machine: u16,
    /// ELFCLASS64 (else 32).
    pub class64: bool,
    /// ELFDATA2MSB.
    pub big_endian: bool,
}

/// In the image index's order: `make image-multiarch`'s PLATFORMS. ppc64le runs with the
/// 64 KiB pages its distribution kernels use (`-p`: what getpagesize() and mmap see), as the
/// Makefile's test-qemu runs it.
pub const PLATFORMS: [Platform; 6] = [
    Platform {
        triple: "x86_64-unknown-linux-musl",
        arch: "amd64",
        variant: None,
        qemu: None,
        machine: 62, // EM_X86_64
        class64: true,
        big_endian: false,
    },
    Platform {
        triple: "aarch64-unknown-linux-musl",
        arch: "arm64",
        variant: None,
        qemu: Some(&["qemu-aarch64-static"]),
        machine: 183, // EM_AARCH64
        class64: true,
        big_endian: false,
    },
    Platform {
        triple: "armv7-unknown-linux-musleabihf",
        arch: "arm",
        variant: Some("v7"),
        qemu: Some(&["qemu-arm-static"]),
        machine: 40, // EM_ARM
        class64: false,
        big_endian: false,
    },
    Platform {
        triple: "powerpc64le-unknown-linux-musl",
        arch: "ppc64le",
        variant: None,
        qemu: Some(&["qemu-ppc64le-static", "-p", "65536"]),
        machine: 21, // EM_PPC64
        class64: true,
        big_endian: false,
    },
    Platform {
        triple: "s390x-unknown-linux-musl",
        arch: "s390x",
        variant: None,
        qemu: Some(&["qemu-s390x-static"]),
        machine: 22, // EM_S390
        class64: true,
        big_endian: true,
    },
    Platform {
        triple: "riscv64gc-unknown-linux-musl",
        arch: "riscv64",
        variant: None,
        qemu: Some(&["qemu-riscv64-static"]),
        machine: 243, // EM_RISCV
        class64: true,
        big_endian: false,
    },
];

impl Platform {
    /// `target/TRIPLE/release/config-reloader`, checked fresh (see [`release_binary`]).
    pub fn binary(&self) -> PathBuf {
        release_binary(self.triple)
    }

    /// What runs `bin` built for this platform: `bin` itself, or qemu with its options
    /// followed by `bin`. Panics naming the Debian package when qemu is missing.
    pub fn runner(&self, bin: &Path) -> (PathBuf, Vec<String>) {
        let bin = bin.to_string_lossy().into_owned();
        match self.qemu {
            None => (PathBuf::from(bin), Vec::new()),
            Some([qemu, opts @ ..]) => {
                Command::new(qemu)
                    .arg("--version")
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("cannot run {qemu} ({e}): `make deps` installs qemu-user-static")
                    });
                let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
                args.push(bin);
                (PathBuf::from(qemu), args)
            }
            Some([]) => panic!("{}: an empty qemu command", self.triple),
        }
    }
}
