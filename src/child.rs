//! The app as our child (`config-reloader -- APP [ARGS...]`): for images without a shell, and
//! for pods and compose projects that do not share a PID namespace. We are then usually PID 1
//! of the container, so we do what tini and catatonit do: forward every signal a runtime or an
//! operator sends, reap every zombie (orphans are re-parented to PID 1, or to us as a
//! subreaper), and exit with the app's exit code, or 128+N when signal N ended it.
//!
//! The app gets a process group of its own and, when we are in the foreground of a terminal
//! (`docker run -it`, a shell), the terminal's foreground, as under tini: a Ctrl-C reaches it
//! once, from the terminal, instead of once from the terminal and once from us.
//!
//! std resets SIGPIPE (which it ignores in us) in the child but keeps our signal mask, which
//! blocks nearly everything: `spawn` clears it, so the app starts as under a shell.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sys::{self, Exit, Pid};

/// Whether a signal that came to us goes on to the app: all that can come (the synchronous
/// faults are never blocked, SIGKILL and SIGSTOP never delivered to a handler), as tini does,
/// but SIGCHLD (about our children) and SIGTTIN/SIGTTOU (about our own use of a terminal).
pub fn forwards(sig: i32) -> bool {
    !matches!(sig, libc::SIGCHLD | libc::SIGTTIN | libc::SIGTTOU)
}

/// A running app.
#[derive(Clone, Copy, Debug)]
pub struct Child {
    /// Its pid.
    pub pid: Pid,
}

/// Why the app could not be started: the exit code a shell would give, and the line to print.
#[derive(Debug)]
pub struct SpawnError {
    /// 127: not found; 126: found but not executable.
    pub code: u8,
    /// One line naming the command.
    pub line: String,
}

/// Starts `command` (its first word looked up in PATH, as a shell does).
pub fn spawn(command: &[OsString]) -> Result<Child, SpawnError> {
    let shown = command[0].to_string_lossy().into_owned();
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).process_group(0);
    // Before the mask is cleared: it blocks SIGTTOU, which tcsetpgrp from the app's new
    // (background) group would otherwise raise. Only from the foreground: a background job
    // must not take the terminal from the shell.
    if in_foreground() {
        sys::foreground_on_exec(&mut cmd);
    }
    sys::unblock_signals_on_exec(&mut cmd);
    let started = cmd.spawn();
    let fail = |e: io::Error| {
        if e.kind() != io::ErrorKind::NotFound {
            let line = format!("-- {shown:?}: cannot be executed: {e}");
            return SpawnError { code: 126, line };
        }
        // ENOENT also when the file exists but what the kernel must load first does not.
        let why = match located(&command[0]).and_then(|f| missing_interpreter(&f)) {
            Some(why) => why,
            None => "not found (give a path, or a name in PATH)".to_string(),
        };
        SpawnError {
            code: 127,
            line: format!("-- {shown:?}: {why}: {e}"),
        }
    };
    let child = started.map_err(fail)?;
    // A pid std just got from the kernel: positive and not ours.
    let raw = i32::try_from(child.id()).unwrap_or(0);
    let pid = Pid::new(raw).ok_or_else(|| SpawnError {
        code: 126,
        line: format!("-- {shown:?}: started with an unusable pid {raw}"),
    })?;
    // Reaped by `reap`, never through std's handle.
    drop(child);
    Ok(Child { pid })
}

impl Child {
    /// Passes `sig` on to the app; ESRCH once it is gone, which the caller ignores.
    pub fn forward(&self, sig: i32) -> io::Result<()> {
        sys::kill(self.pid, sig)
    }
}

/// The children one SIGCHLD let us reap, told apart: the app, and every other one (the
/// validation command, or an orphan re-parented to us) by pid for the caller to match.
#[derive(Debug, Default)]
pub struct Reaped {
    /// The app's exit, if it exited.
    pub app: Option<Exit>,
    /// Every other child reaped.
    pub others: Vec<(i32, Exit)>,
    /// waitpid failed (after reaping what came before).
    pub error: Option<io::Error>,
}

/// Reaps every exited child, since the SIGCHLDs of children that die together merge into one;
/// `app` is the app we run, if any.
pub fn reap_all(app: Option<Pid>) -> Reaped {
    let mut r = Reaped::default();
    loop {
        match sys::reap_any() {
            Ok(Some((pid, exit))) if app.is_some_and(|a| a.get() == pid) => r.app = Some(exit),
            Ok(Some(other)) => r.others.push(other),
            Ok(None) => return r,
            Err(e) => {
                r.error = Some(e);
                return r;
            }
        }
    }
}

/// Whether we are in the foreground process group of our controlling terminal (fields 5 and
/// 8 of `/proc/self/stat`, `pgrp` and `tpgid`; no terminal: `tpgid` is -1).
fn in_foreground() -> bool {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    matches!((f.get(2), f.get(5)), (Some(pgrp), Some(tpgid)) if pgrp == tpgid)
}

/// The file exec ran for `name`: itself if it holds a `/`, else the first match in PATH.
fn located(name: &OsString) -> Option<PathBuf> {
    let path = Path::new(name);
    if name.as_encoded_bytes().contains(&b'/') {
        return path.is_file().then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|d| d.join(path))
        .find(|p| p.is_file())
}

/// Why exec found no `file` although it exists: its `#!` interpreter, or the program
/// interpreter (dynamic loader) of a 64-bit ELF, is missing. `None` if neither explains it.
fn missing_interpreter(file: &Path) -> Option<String> {
    let mut head = Vec::new();
    fs::File::open(file)
        .ok()?
        .take(4096)
        .read_to_end(&mut head)
        .ok()?;
    let (what, interp) = match head.strip_prefix(b"#!") {
        Some(line) => {
            let line = line.split(|&b| b == b'\n').next()?;
            let line = String::from_utf8_lossy(line);
            (
                "its #! interpreter",
                line.split_whitespace().next()?.to_string(),
            )
        }
        None => (
            "its ELF interpreter (dynamic loader)",
            elf_interpreter(&head)?,
        ),
    };
    (!Path::new(&interp).exists()).then(|| format!("{what} {interp:?} is missing"))
}

/// PT_INTERP of a little-endian 64-bit ELF whose program headers and interpreter path lie in
/// `head` (they do in every executable a linker writes: they follow the ELF header).
fn elf_interpreter(head: &[u8]) -> Option<String> {
    if !head.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let n = |at: usize, len: usize| -> Option<usize> {
        let b = head.get(at..at + len)?;
        Some(b.iter().rev().fold(0usize, |v, &x| v << 8 | usize::from(x)))
    };
    let (phoff, phentsize, phnum) = (n(32, 8)?, n(54, 2)?, n(56, 2)?);
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        // PT_INTERP is 3; its path is NUL-terminated.
        (n(ph, 4)? == 3).then_some(())?;
        let (off, size) = (n(ph + 8, 8)?, n(ph + 32, 8)?);
        let raw = head.get(off..off + size)?;
        let path = raw.split(|&b| b == 0).next()?;
        Some(String::from_utf8_lossy(path).into_owned())
    })
}

/// The exit code that reports `exit` as a shell does.
pub fn code(exit: Exit) -> u8 {
    match exit {
        Exit::Code(c) => u8::try_from(c).unwrap_or(1),
        Exit::Signal(s) => u8::try_from(128 + s).unwrap_or(255),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(code(Exit::Code(3)), 3);
        assert_eq!(code(Exit::Signal(libc::SIGTERM)), 143);
        assert_eq!(code(Exit::Signal(libc::SIGKILL)), 137);
    }

    #[test]
    fn a_missing_command_is_127_and_a_directory_126() {
        let e = spawn(&["/nonexistent/app".into()]).unwrap_err();
        assert_eq!(e.code, 127, "{}", e.line);
        assert!(e.line.contains("/nonexistent/app"));
        assert_eq!(spawn(&["/".into()]).unwrap_err().code, 126);
    }

    #[test]
    fn the_elf_interpreter_of_a_dynamic_program_is_its_loader() {
        let head = fs::read("/usr/bin/sleep").unwrap();
        let loader = elf_interpreter(&head[..4096]).expect("sleep is dynamically linked");
        assert!(loader.starts_with("/lib"), "{loader}");
        assert!(Path::new(&loader).exists(), "{loader}");
        assert_eq!(missing_interpreter(Path::new("/usr/bin/sleep")), None);
    }

    #[test]
    fn only_signals_about_ourselves_stay_with_us() {
        for s in [libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU] {
            assert!(!forwards(s), "{s}");
        }
        for s in [
            libc::SIGALRM,
            libc::SIGPWR,
            libc::SIGTSTP,
            libc::SIGPIPE,
            37,
            64,
        ] {
            assert!(forwards(s), "{s}");
        }
    }
}
