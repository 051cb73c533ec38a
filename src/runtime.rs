//! Which language runtime a process runs on, when that runtime catches signals on the app's
//! behalf: its handler in `SigCgt` is then no evidence that the app reloads.
//!
//! The Go runtime installs a handler for every signal at start-up and exits on SIGHUP, SIGINT
//! and SIGTERM unless the program called `signal.Notify` for them; a JVM catches SIGHUP,
//! SIGINT and SIGTERM to run its shutdown hooks and exit; Ruby catches SIGHUP, SIGINT, SIGQUIT,
//! SIGTERM, SIGALRM, SIGUSR1 and SIGUSR2 and raises `SignalException`, which ends the program
//! unless it traps them. Each is recognised from what a sidecar of the app's UID may read:
//! Go by its executable (`/proc/PID/exe`: the `Go` build-id ELF note or a `.go.buildinfo`
//! section), a JVM by `libjvm.so` and Ruby by `libruby` in `/proc/PID/maps`. Without ptrace
//! read access both are unreadable and nothing is recognised. Only reads; never decides.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::sys::Pid;

/// A runtime whose catch-all handler is not the app's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// A Go executable.
    Go,
    /// HotSpot or any JVM built on `libjvm.so` (OpenJDK, Temurin, Corretto…).
    Jvm,
    /// The CRuby interpreter (`libruby`).
    Ruby,
}

impl Runtime {
    /// Its name, for log lines and `--check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Go => "go",
            Runtime::Jvm => "jvm",
            Runtime::Ruby => "ruby",
        }
    }

    /// What its handler does with a signal the program did not ask for, in a phrase.
    pub fn what(self) -> &'static str {
        match self {
            Runtime::Go => "the Go runtime catches every signal and exits on SIGHUP, SIGINT and SIGTERM unless the program called signal.Notify for them",
            Runtime::Jvm => "the JVM catches SIGHUP, SIGINT and SIGTERM to run its shutdown hooks and exit, unless the app registered its own handler (sun.misc.Signal.handle)",
            Runtime::Ruby => "the Ruby interpreter catches SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGUSR1 and SIGUSR2 and raises SignalException, which ends the program unless it traps them (Signal.trap)",
        }
    }
}

/// The runtime `pid` runs on, if it is one of those; `None` when it is none of them or its
/// executable and maps cannot be read.
pub fn of(pid: Pid) -> Option<Runtime> {
    let pid = pid.get();
    if File::open(format!("/proc/{pid}/exe")).is_ok_and(|mut f| is_go(&mut f).unwrap_or(false)) {
        return Some(Runtime::Go);
    }
    let maps = File::open(format!("/proc/{pid}/maps")).ok()?;
    from_maps(maps)
}

/// Scans a maps file for the runtime's shared library, a page at a time: a JVM's maps run to
/// hundreds of kilobytes, and its libraries are mapped early.
fn from_maps(mut maps: impl Read) -> Option<Runtime> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut keep = 0;
    loop {
        let n = maps.read(&mut buf[keep..]).ok()?;
        if n == 0 {
            return None;
        }
        let text = &buf[..keep + n];
        for line in text.split(|&b| b == b'\n') {
            let file = line.rsplit(|&b| b == b'/').next().unwrap_or(line);
            if file == b"libjvm.so" {
                return Some(Runtime::Jvm);
            }
            if file.starts_with(b"libruby") && file.windows(3).any(|w| w == b".so") {
                return Some(Runtime::Ruby);
            }
        }
        // Keep the unfinished last line for the next read.
        let last = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        keep = text.len() - last;
        buf.copy_within(last..last + keep, 0);
        if keep == buf.len() {
            keep = 0;
        }
    }
}

/// The ELF header fields we use, in the file's own class and byte order.
struct Elf {
    wide: bool,
    big: bool,
}

impl Elf {
    fn int(&self, b: &[u8], at: usize, len: usize) -> Option<u64> {
        let b = b.get(at..at + len)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if self.big { b[i] } else { b[len - 1 - i] };
            v = v << 8 | u64::from(byte);
        }
        Some(v)
    }

    /// A field that is 4 bytes in ELF32 and 8 in ELF64, at its offset in each.
    fn word(&self, b: &[u8], at32: usize, at64: usize) -> Option<u64> {
        match self.wide {
            true => self.int(b, at64, 8),
            false => self.int(b, at32, 4),
        }
    }
}

/// Reads at most `cap` bytes at `offset`: a header count or size is the file's word, and a
/// corrupt one must not make us allocate gigabytes.
fn read_at(f: &File, offset: u64, len: u64, cap: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len.min(cap) as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Whether the ELF file `f` was built by the Go toolchain: a `Go` note of type 4
/// (NT_GO_BUILDID) in a PT_NOTE segment, or a `.go.buildinfo` section (Go ≥ 1.13).
fn is_go(f: &mut File) -> io::Result<bool> {
    let mut ident = [0u8; 64];
    let n = f.read(&mut ident)?;
    if n < 52 || &ident[..4] != b"\x7fELF" {
        return Ok(false);
    }
    let elf = Elf {
        wide: ident[4] == 2,
        big: ident[5] == 2,
    };
    let h = &ident[..n];
    let field = |at32, at64| elf.word(h, at32, at64).ok_or(io::ErrorKind::InvalidData);
    let half = |at32, at64| {
        let at = if elf.wide { at64 } else { at32 };
        elf.int(h, at, 2).ok_or(io::ErrorKind::InvalidData)
    };
    let (phoff, phentsize, phnum) = (field(28, 32)?, half(42, 54)?, half(44, 56)?);
    let phdrs = read_at(f, phoff, phentsize * phnum, 64 * 1024)?;
    for ph in phdrs.chunks_exact(phentsize.max(1) as usize) {
        if elf.int(ph, 0, 4) != Some(4) {
            continue;
        }
        let (Some(off), Some(size)) = (elf.word(ph, 4, 8), elf.word(ph, 16, 32)) else {
            continue;
        };
        if has_go_note(&elf, &read_at(f, off, size, 64 * 1024)?) {
            return Ok(true);
        }
    }
    let (shoff, shentsize, shnum, shstrndx) =
        (field(32, 40)?, half(46, 58)?, half(48, 60)?, half(50, 62)?);
    if shoff == 0 || shentsize == 0 || shstrndx >= shnum {
        return Ok(false);
    }
    let shdrs = read_at(f, shoff, shentsize * shnum, 256 * 1024)?;
    let sh = |i: u64| shdrs.get((i * shentsize) as usize..((i + 1) * shentsize) as usize);
    let Some(strtab) = sh(shstrndx) else {
        return Ok(false);
    };
    let (Some(stroff), Some(strsize)) = (elf.word(strtab, 16, 24), elf.word(strtab, 20, 32)) else {
        return Ok(false);
    };
    let names = read_at(f, stroff, strsize, 64 * 1024)?;
    Ok((0..shnum).filter_map(sh).any(|s| {
        let at = elf.int(s, 0, 4).unwrap_or(u64::MAX) as usize;
        names
            .get(at..)
            .is_some_and(|n| n.starts_with(b".go.buildinfo\0"))
    }))
}

/// Whether a PT_NOTE segment holds the Go build-id note: name `Go\0`, type 4.
fn has_go_note(elf: &Elf, notes: &[u8]) -> bool {
    let mut at = 0;
    let align = |n: u64| (n + 3) & !3;
    while let (Some(namesz), Some(descsz), Some(kind)) = (
        elf.int(notes, at, 4),
        elf.int(notes, at + 4, 4),
        elf.int(notes, at + 8, 4),
    ) {
        let name = notes.get(at + 12..at + 12 + namesz as usize);
        if kind == 4 && name == Some(b"Go\0".as_slice()) {
            return true;
        }
        at += 12 + (align(namesz) + align(descsz)) as usize;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_name_the_jvm_and_ruby_by_their_library_and_nothing_else() {
        let jvm =
            b"7f00-7f01 r-xp 0 08:01 1 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n";
        assert_eq!(from_maps(&jvm[..]), Some(Runtime::Jvm));
        let ruby = b"55-56 r--p 0 0 0 /usr/bin/ruby3.1\n7f-80 r-xp 0 0 0 /usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1\n";
        assert_eq!(from_maps(&ruby[..]), Some(Runtime::Ruby));
        let plain = b"55-56 r--p 0 0 0 /usr/sbin/nginx\n7f-80 r-xp 0 0 0 /usr/lib/libjvm.so.bak\n";
        assert_eq!(from_maps(&plain[..]), None);
        // A line cut across two reads is still found.
        let mut long = vec![b'x'; 16 * 1024 - 10];
        long.push(b'\n');
        long.extend_from_slice(b"1-2 r-xp 0 0 0 /opt/jdk/lib/server/libjvm.so\n");
        assert_eq!(from_maps(&long[..]), Some(Runtime::Jvm));
    }

    #[test]
    fn our_own_rust_executable_is_not_go() {
        let mut me = File::open("/proc/self/exe").unwrap();
        assert!(!is_go(&mut me).unwrap());
    }
}
