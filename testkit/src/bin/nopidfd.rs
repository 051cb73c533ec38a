//! `nopidfd`: runs a program under a seccomp filter that refuses `pidfd_open(2)` with a chosen
//! errno, the way a container runtime's seccomp profile can (Docker's default profile before
//! pidfd_open was allowed answered EPERM; a kernel before 5.3 answers ENOSYS).
//!
//! `nopidfd --errno EPERM|ENOSYS -- PROGRAM [ARGS...]` sets `PR_SET_NO_NEW_PRIVS` (needed to
//! load a filter without CAP_SYS_ADMIN, and harmless with it), installs a classic-BPF filter
//! with `PR_SET_SECCOMP`, then execs PROGRAM, which inherits the filter for life. The filter:
//! a system call made through another ABI than this binary's (checked with `seccomp_data.arch`)
//! kills the process, since its numbers mean other calls; `pidfd_open` returns the errno;
//! everything else is allowed. On x86_64 an x32 call (number with bit 30 set) does not match
//! 434 and is allowed: the programs we test never use that ABI.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: nopidfd --errno EPERM|ENOSYS -- PROGRAM [ARGS...]";

/// `AUDIT_ARCH_*` of this build (linux/audit.h: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (errno, program) = match parse(&argv) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("nopidfd: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = install(errno) {
        eprintln!("nopidfd: {e}");
        return ExitCode::FAILURE;
    }
    let err = Command::new(&program[0]).args(&program[1..]).exec();
    eprintln!("nopidfd: exec {:?}: {err}", program[0]);
    ExitCode::from(127)
}

fn parse(argv: &[OsString]) -> Result<(u32, &[OsString]), String> {
    let [flag, value, dashes, program @ ..] = argv else {
        return Err("too few arguments".into());
    };
    if flag != "--errno" || dashes != "--" || program.is_empty() {
        return Err(format!("unexpected arguments {argv:?}"));
    }
    let errno = match value.to_str() {
        Some("EPERM") => libc::EPERM,
        Some("ENOSYS") => libc::ENOSYS,
        _ => return Err(format!("--errno {value:?}: use EPERM or ENOSYS")),
    };
    Ok((errno as u32, program))
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump_eq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn install(errno: u32) -> std::io::Result<()> {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // Offsets into struct seccomp_data { int nr; __u32 arch; ... }.
    let (nr_at, arch_at) = (0, 4);
    let mut filter = [
        stmt(load, arch_at),
        jump_eq(AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(load, nr_at),
        jump_eq(libc::SYS_pidfd_open as u32, 0, 1),
        stmt(
            ret,
            libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA),
        ),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: prog points at `filter`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
