//! The app as our child (`config-reloader -- APP [ARGS...]`): for images without a shell, and
//! for pods and compose projects that do not share a PID namespace. We are then usually PID 1
//! of the container, so we do what tini and catatonit do: forward the signals a container
//! runtime sends, reap every zombie (orphans are re-parented to PID 1), and exit with the
//! app's exit code, or 128+N when signal N ended it.
//!
//! std resets SIGPIPE (which it ignores in us) in the child but keeps our signal mask, which
//! blocks nearly everything: `spawn` clears it, so the app starts as under a shell.

use std::ffi::OsString;
use std::io;
use std::process::Command;

use crate::sys::{self, Exit, Pid};

/// Signals a runtime or an operator sends to PID 1 and the app should get.
pub const FORWARDED: [i32; 8] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGHUP,
    libc::SIGWINCH,
    libc::SIGCONT,
];

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
    cmd.args(&command[1..]);
    sys::unblock_signals_on_exec(&mut cmd);
    let started = cmd.spawn();
    let fail = |e: io::Error| {
        let code = if e.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        let why = if code == 127 {
            "not found (give a path, or a name in PATH)"
        } else {
            "cannot be executed"
        };
        SpawnError {
            code,
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

    /// Reaps every exited child (the app and any orphan); the app's exit, if it exited.
    pub fn reap(&self) -> io::Result<Option<Exit>> {
        let mut app = None;
        while let Some((pid, exit)) = sys::reap_any()? {
            if pid == self.pid.get() {
                app = Some(exit);
            }
        }
        Ok(app)
    }
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
}
