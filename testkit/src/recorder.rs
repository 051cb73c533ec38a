//! Spawning `sigrecord`, the application stand-in, and reading back what it received.
//!
//! `sigrecord` appends `ready pid=P`, `sig pid=P signo=N t_ns=T content=C` and `exit pid=P`
//! lines to its `--out` file; [`Recorder`] parses them. Pids in those lines are as the recorder
//! sees itself (inside a PID namespace when wrapped in `unshare --pid`); [`Recorder::pid`] and
//! [`Recorder::pids`] are the same processes as seen from the test.

use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{wait_until, TempDir};

/// How long [`Recorder::spawn`] waits for the ready lines.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the `sigrecord` binary built with the workspace: `$SIGRECORD_BIN` if set, else
/// `target/<profile>/sigrecord` next to the running test executable
/// (`target/<profile>/deps/NAME-hash`).
pub fn sigrecord_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGRECORD_BIN") {
        return PathBuf::from(path);
    }
    crate::reloader::workspace_bin("sigrecord")
}

/// Which dispositions `sigrecord` sets up; the signal lists are comma lists like
/// `HUP,USR1,RTMIN+2` or numbers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// `--catch SIGS`: sigaction handlers (SA_RESTART).
    Catch(String),
    /// `--block SIGS`: blocked and read from a signalfd.
    Block(String),
    /// `--ignore SIGS`: SIG_IGN, never recorded.
    Ignore(String),
    /// `--default`: nothing caught; SIGHUP kills it.
    Default,
    /// No sigrecord flag: these flags, for a [`Program`] other than sigrecord (e.g.
    /// `sigwaiter --sigwait-main`).
    Custom(Vec<OsString>),
}

/// A recorder other than sigrecord that writes the same `ready`/`sig`/`exit` lines and takes
/// `--out FILE` and `--read FILE`: e.g. `sigwaiter`, or python3 running a script.
#[derive(Clone, Debug)]
pub struct Program {
    /// What the name symlink points at.
    pub path: PathBuf,
    /// Arguments before `--out` (e.g. the script python3 runs).
    pub args: Vec<OsString>,
}

impl Default for Mode {
    fn default() -> Mode {
        Mode::Catch("HUP".into())
    }
}

/// How to start a [`Recorder`]; `Options::default()` catches SIGHUP, reads nothing.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Process name: exec through a symlink of this name, so `/proc/PID/comm` is its first 15
    /// bytes. Default `sigrecord`.
    pub name: Option<String>,
    /// `--read PATH`: the config file re-read on each signal.
    pub read: Option<PathBuf>,
    /// Dispositions.
    pub mode: Mode,
    /// `--children N`: forked workers with the same name that record too.
    pub children: u32,
    /// Command to run sigrecord under, e.g. `["setpriv", "--reuid=65534", "--"]` or
    /// `["unshare", "--pid", "--fork", "--mount-proc"]`; the sigrecord command line is appended.
    pub wrapper: Vec<OsString>,
    /// More sigrecord flags, appended after the ones above (e.g. `["--ignore", "USR1"]`).
    pub extra_args: Vec<OsString>,
    /// `--out FILE`; default a file in the recorder's own temp dir.
    pub out: Option<PathBuf>,
    /// The program behind the name; default sigrecord.
    pub program: Option<Program>,
}

/// One `sig` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The pid the receiving process reported (its own PID namespace's view).
    pub pid: i32,
    /// Signal number.
    pub signo: i32,
    /// CLOCK_MONOTONIC ns at receipt (comparable with [`crate::monotonic_ns`]).
    pub t_ns: u64,
    /// What `--read` returned then: `Ok(bytes)`, `Err(errno)` if unreadable, or `Ok(b"-")`
    /// when no `--read` was given.
    pub content: Result<Vec<u8>, i32>,
}

/// What each signal's re-read returned, as text (`errno N` when unreadable): for assertions
/// and failure messages that show what the app saw.
pub fn contents(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| match &r.content {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(e) => format!("errno {e}"),
        })
        .collect()
}

/// The `sig` lines of the `--out` file `out`, for a recorder this crate did not start (the app
/// `config-reloader -- APP` starts, say); empty while the file does not exist.
pub fn received_in(out: &Path) -> Vec<Received> {
    fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_sig)
        .collect()
}

/// A running `sigrecord` (and its children); killed with SIGKILL and reaped on drop.
#[derive(Debug)]
pub struct Recorder {
    child: Child,
    dir: TempDir,
    out: PathBuf,
    exe: PathBuf,
    reported: Vec<i32>,
    pids: Vec<i32>,
}

impl Recorder {
    /// Starts sigrecord and waits until it and its children have written their ready lines.
    pub fn spawn(opts: Options) -> Recorder {
        let dir = TempDir::new("sigrecord").expect("temp dir for sigrecord");
        // Another UID (setpriv --reuid) must be able to exec the link and append to the file.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).expect("chmod temp dir");
        let name = opts.name.clone().unwrap_or_else(|| "sigrecord".into());
        let exe = dir.join(&name);
        let target = opts
            .program
            .as_ref()
            .map_or_else(sigrecord_bin, |p| p.path.clone());
        std::os::unix::fs::symlink(target, &exe)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", exe.display()));
        let out = opts.out.clone().unwrap_or_else(|| dir.join("out"));
        fs::write(&out, b"").unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
        fs::set_permissions(&out, Permissions::from_mode(0o666)).expect("chmod out file");

        let mut argv: Vec<OsString> = opts.wrapper.clone();
        argv.push(exe.clone().into());
        argv.extend(opts.program.iter().flat_map(|p| p.args.iter().cloned()));
        argv.extend(["--out".into(), out.clone().into()]);
        if let Some(read) = &opts.read {
            argv.extend(["--read".into(), read.clone().into()]);
        }
        match &opts.mode {
            Mode::Catch(s) => argv.extend(["--catch".into(), s.into()]),
            Mode::Block(s) => argv.extend(["--block".into(), s.into()]),
            Mode::Ignore(s) => argv.extend(["--ignore".into(), s.into()]),
            Mode::Default => argv.push("--default".into()),
            Mode::Custom(flags) => argv.extend(flags.iter().cloned()),
        }
        if opts.children > 0 {
            argv.extend(["--children".into(), opts.children.to_string().into()]);
        }
        argv.extend(opts.extra_args.iter().cloned());

        let stderr = fs::File::create(dir.join("stderr")).expect("create stderr file");
        // Its own process group, so drop can kill the wrapper, sigrecord and its children.
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let mut rec = Recorder {
            child,
            dir,
            out,
            exe,
            reported: Vec::new(),
            pids: Vec::new(),
        };
        let want = 1 + opts.children as usize;
        let what = format!("{want} ready line(s) from {argv:?}");
        rec.reported = wait_until(READY_TIMEOUT, &what, || {
            let ready = rec.ready_pids();
            if ready.len() >= want {
                return Some(ready);
            }
            if let Ok(Some(status)) = rec.child.try_wait() {
                panic!(
                    "{argv:?} exited ({status}) before it was ready: {}",
                    rec.stderr()
                );
            }
            None
        });
        let root = rec.child.id() as i32;
        let reported = rec.reported.clone();
        rec.pids = reported
            .iter()
            .map(|&p| {
                let what = format!("host pid of sigrecord pid {p}");
                wait_until(READY_TIMEOUT, &what, || host_pid(root, p))
            })
            .collect();
        rec
    }

    /// Pid of the main sigrecord process, as seen from the test.
    pub fn pid(&self) -> i32 {
        self.pids[0]
    }

    /// Pids of the main process then each child, as seen from the test.
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    /// Pids from the ready lines (the recorders' own view; differs inside a PID namespace).
    pub fn reported_pids(&self) -> &[i32] {
        &self.reported
    }

    /// Path of the symlink that was exec'd (its basename is the process name).
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The `--out` file.
    pub fn out_path(&self) -> &Path {
        &self.out
    }

    /// A scratch directory that lives as long as the recorder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sigrecord (or the wrapper) wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Every `sig` line recorded so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lines().iter().filter_map(|l| parse_sig(l)).collect()
    }

    /// Waits until at least `n` signals were recorded and returns them all.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let what = format!("{n} signal(s) recorded in {}", self.out.display());
        wait_until(timeout, &what, || {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
    }

    /// Waits up to `timeout` for signal number `n`, then watches for `quiet` to prove that no
    /// further signal follows, and returns every signal received. The pause is the one place a
    /// sleep is right: an absence cannot be awaited.
    pub fn expect_exactly(&self, n: usize, timeout: Duration, quiet: Duration) -> Vec<Received> {
        self.wait_received(n, timeout);
        std::thread::sleep(quiet);
        let got = self.received();
        assert_eq!(
            got.len(),
            n,
            "expected exactly {n} signal(s), got {:?}",
            contents(&got)
        );
        got
    }

    /// Whether the main sigrecord process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        is_alive(self.pid())
    }

    /// Sends `sig` to the main process.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        crate::kill(self.pid(), sig)
    }

    /// Waits for the spawned process (the wrapper, if any) to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The signal that killed the spawned process, once it has exited.
    pub fn killed_by(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_exit(timeout).and_then(|s| s.signal())
    }

    /// Raw lines of the `--out` file.
    pub fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn ready_pids(&self) -> Vec<i32> {
        self.lines()
            .iter()
            .filter_map(|l| field(l.strip_prefix("ready ")?, "pid")?.parse().ok())
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Recorders in another process group first (a child of tini or dumb-init, which give
        // it its own group; a PID namespace's orphans), while their parent can still reap them.
        let own = self.child.id() as i32;
        for &pid in self.pids.iter().filter(|&&p| p != own) {
            if is_alive(pid) {
                let _ = crate::kill(pid, libc::SIGKILL);
            }
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = crate::sys::kill_group(own, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Parses `sig pid=P signo=N t_ns=T content=C`.
fn parse_sig(line: &str) -> Option<Received> {
    let rest = line.strip_prefix("sig ")?;
    let content = field(rest, "content")?;
    let content = match content.strip_prefix("ERR:") {
        Some(errno) => Err(errno.parse().ok()?),
        None => Ok(unescape(content)?),
    };
    Some(Received {
        pid: field(rest, "pid")?.parse().ok()?,
        signo: field(rest, "signo")?.parse().ok()?,
        t_ns: field(rest, "t_ns")?.parse().ok()?,
        content,
    })
}

fn field<'a>(rest: &'a str, key: &str) -> Option<&'a str> {
    rest.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The `sig pid=P signo=N t_ns=T content=C` line (newline included) that sigrecord and
/// sigwaiter append for signal `signo` taken at `t_ns`, [`parse_sig`]'s format: C is what
/// `read` held then, [`escape`]d; `-` without `read`, `ERR:<errno>` if it could not be read.
pub fn sig_line(signo: i32, t_ns: u64, read: Option<&Path>) -> String {
    let content = match read {
        None => "-".to_string(),
        Some(path) => match fs::read(path) {
            Ok(bytes) => escape(&bytes),
            Err(e) => format!("ERR:{}", e.raw_os_error().unwrap_or(0)),
        },
    };
    let pid = std::process::id();
    format!("sig pid={pid} signo={signo} t_ns={t_ns} content={content}\n")
}

/// Percent-escapes `%`, space, and every byte outside printable ASCII: how every recorder
/// writes the content it read.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'%' || !(0x21..=0x7e).contains(&b) {
            s.push_str(&format!("%{b:02X}"));
        } else {
            s.push(b as char);
        }
    }
    s
}

/// Reverses sigrecord's escaping (`%XX` for `%`, space and non-printable bytes).
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// True if `/proc/PID` exists and its state is not `Z` (zombie) or `X` (dead).
fn is_alive(pid: i32) -> bool {
    match proc_stat(pid) {
        Some((state, _)) => state != 'Z' && state != 'X',
        None => false,
    }
}

/// State and ppid from `/proc/PID/stat`, parsed after the last `)` (comm may hold one).
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    // Bytes: comm may be any bytes, e.g. a UTF-8 character cut in two at 15 bytes.
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The test-side pid of the process that calls itself `ns_pid` and descends from `root`
/// (the spawned wrapper or sigrecord itself): the last `NSpid` field is the innermost view.
fn host_pid(root: i32, ns_pid: i32) -> Option<i32> {
    let mut tree = vec![root];
    let mut i = 0;
    let all: Vec<(i32, i32)> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?.1)))
        .collect();
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree.into_iter().find(|&pid| {
        let status = fs::read(format!("/proc/{pid}/status")).unwrap_or_default();
        let status = String::from_utf8_lossy(&status);
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last()?.parse::<i32>().ok());
        nspid == Some(ns_pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_lines_are_parsed_and_content_unescaped() {
        let r = parse_sig("sig pid=7 signo=1 t_ns=42 content=a%20b%0A%25").unwrap();
        assert_eq!((r.pid, r.signo, r.t_ns), (7, 1, 42));
        assert_eq!(r.content, Ok(b"a b\n%".to_vec()));
        let r = parse_sig("sig pid=7 signo=1 t_ns=42 content=ERR:2").unwrap();
        assert_eq!(r.content, Err(2));
        assert!(parse_sig("ready pid=7").is_none());
    }

    #[test]
    fn sig_line_is_what_parse_sig_reads() {
        let dir = TempDir::new("sig-line").unwrap();
        let conf = dir.join("app.conf");
        fs::write(&conf, b"a b\n%\xff").unwrap();
        let line = sig_line(1, 42, Some(&conf));
        assert!(line.ends_with('\n'), "{line:?}");
        let r = parse_sig(line.trim_end()).unwrap();
        assert_eq!((r.pid, r.signo, r.t_ns), (std::process::id() as i32, 1, 42));
        assert_eq!(r.content, Ok(b"a b\n%\xff".to_vec()));
        let gone = parse_sig(sig_line(1, 42, Some(&dir.join("gone"))).trim_end()).unwrap();
        assert_eq!(gone.content, Err(libc::ENOENT));
    }
}
