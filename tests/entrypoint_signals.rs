//! The app as our child (`-- APP`), what signals do: every signal an operator or a runtime
//! sends reaches the app once, a stop is one act after which nothing is sent or retried, and a
//! terminal's Ctrl-C (a real pty, from python3's `pty` module) reaches the app once. Also the
//! line a script with a missing `#!` interpreter gets.

mod entry;
mod http;
mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use entry::{await_ready, child_pid, exit_code, sigrecord, start};
use http::closed_port;
use support::{bin, kv, QUIET, T};
use testkit::apps::debian;
use testkit::kubelet::Volume;
use testkit::recorder::received_in;
use testkit::reloader::{command, field, path_str, run_to_exit};
use testkit::{kill, unique_name, wait_until, TempDir};

/// Processes a test started that must not outlive it, even when it fails: SIGKILLed on drop.
struct Leftovers(Vec<i32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = kill(p, libc::SIGKILL);
        }
    }
}

/// Regression: SIGALRM, SIGPWR and the real-time signals were dropped, not forwarded (only a
/// list of eight was); tini forwards everything but SIGCHLD.
#[test]
fn alrm_pwr_and_realtime_signals_reach_the_app() {
    let tmp = TempDir::new("entry-fwd-all").unwrap();
    // SIGRTMIN+3 as the app (glibc) numbers it: 34 + 3.
    let sent = [libc::SIGALRM, libc::SIGPWR, 37];
    let (app, out) = sigrecord(tmp.path(), &unique_name("fwdall"), &["--catch", "14,30,37"]);
    let mut rel = start(&[("CONFIG_DIR", path_str(tmp.path()))], &app);
    let app_pid = await_ready(&out);
    let _app = Leftovers(vec![app_pid]);
    assert_eq!(app_pid, child_pid(&rel));
    for (i, &sig) in sent.iter().enumerate() {
        rel.signal(sig);
        wait_until(T, &format!("signal {sig} to reach the app"), || {
            (received_in(&out).len() > i).then_some(())
        });
    }
    let got: Vec<i32> = received_in(&out).iter().map(|r| r.signo).collect();
    assert_eq!(got, sent, "{}", rel.log());
    let lines = rel.lines("info forwarding signal to the app");
    let names: Vec<String> = lines.iter().filter_map(|l| field(l, "signal")).collect();
    assert_eq!(names, ["SIGALRM", "SIGPWR", "SIGRTMIN+3"]);
    rel.signal(libc::SIGTERM);
    assert_eq!(exit_code(&mut rel), 0, "{}", rel.log());
}

/// Regression: with a reload URL on a closed port and an app that ignores SIGTERM, the log
/// showed the forwarded SIGTERM with `pending_reload=dropped`, then `reload request failed;
/// retrying attempt=3, 4`: the request went on after the stop. Stopping is one act now.
#[test]
fn nothing_is_retried_or_sent_after_a_stop_was_forwarded() {
    let tmp = TempDir::new("entry-stop").unwrap();
    let dir = tmp.join("config");
    fs::create_dir(&dir).unwrap();
    let vol = Volume::create(&dir, &kv(&[("app.conf", "v1")])).unwrap();
    let flags = ["--ignore", "TERM"];
    let (app, out) = sigrecord(tmp.path(), &unique_name("stopapp"), &flags);
    let url = format!("http://127.0.0.1:{}/-/reload", closed_port());
    let env = [("CONFIG_DIR", path_str(&dir)), ("RELOAD_WEBHOOK_URL", &url)];
    let mut rel = start(&env, &app);
    let _app = Leftovers(vec![await_ready(&out)]);

    assert!(vol.update(&kv(&[("app.conf", "v2")])).unwrap());
    rel.wait_lines("warn reload request failed; retrying", 1, T);
    rel.signal(libc::SIGTERM);
    let fwd = &rel.wait_lines("info forwarding signal to the app", 1, T)[0];
    assert_eq!(field(fwd, "pending_reload").as_deref(), Some("dropped"));
    // The retries would have come 0.5 s, then 1 s apart.
    std::thread::sleep(Duration::from_millis(1500) + QUIET);
    let log = rel.log();
    let after: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.starts_with("info forwarding signal"))
        .skip(1)
        .collect();
    assert!(after.is_empty(), "after the stop:\n{log}");
    assert!(rel.is_running(), "the app ignores TERM, so both live on");
    rel.signal(libc::SIGINT);
    assert_eq!(exit_code(&mut rel), 130, "{log}");
}

/// Drives a program in a new pty session (python3's `pty.fork`): prints the program's pid,
/// writes ^C to the terminal for each `ctrl-c` line on stdin, copies what the terminal shows to
/// the file argv[1], and prints the program's exit code when it ends.
const PTY_DRIVER: &str = r#"
import os, pty, sys, threading
log = open(sys.argv[1], "ab", buffering=0)
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
print(pid, flush=True)
def copy():
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        log.write(data)
threading.Thread(target=copy, daemon=True).start()
for line in sys.stdin:
    if line.strip() == "ctrl-c":
        os.write(fd, b"\x03")
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
"#;

/// The driver and the pids it runs; everything killed and reaped on drop.
struct Pty {
    driver: Child,
    pids: Leftovers,
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The process group and the terminal's foreground group of `pid` (`/proc/PID/stat` fields 5
/// and 8).
fn groups(pid: i32) -> (i32, i32) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<i32> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f[1], f[4])
}

/// Regression: the app shared our process group, so one Ctrl-C under `docker run -it` (the
/// terminal signals its whole foreground group) reached it twice: from the terminal, and
/// forwarded by us. Now the app has its own group and the terminal's foreground, as under tini.
#[test]
fn one_ctrl_c_in_a_terminal_reaches_the_app_once() {
    let tmp = TempDir::new("entry-pty").unwrap();
    let (app, out) = sigrecord(tmp.path(), &unique_name("ptyapp"), &["--catch", "INT"]);
    // Outside the watched directory: every log line lands in it.
    let screen = tmp.join("screen");
    let config = tmp.join("config");
    fs::create_dir(&config).unwrap();
    let mut args = vec!["-c", PTY_DRIVER, path_str(&screen), path_str(bin()), "--"];
    args.extend(app.iter().map(String::as_str));
    let python = debian("/usr/bin/python3", "python3");
    let env = [("CONFIG_DIR", path_str(&config))];
    let mut driver = command(&python, &env, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the python3 pty driver");
    // Read by a thread, so that every read has a deadline.
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(driver.stdout.take().unwrap());
    std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .try_for_each(|l| tx.send(l))
    });
    let mut stdin = driver.stdin.take().unwrap();
    let mut pty = Pty {
        driver,
        pids: Leftovers(Vec::new()),
    };
    let rel: i32 = lines.recv_timeout(T).unwrap().trim().parse().unwrap();
    pty.pids.0.push(rel);
    let app_pid = await_ready(&out);
    pty.pids.0.push(app_pid);
    wait_until(T, "the reloader to log `info watching`", || {
        let text = fs::read_to_string(&screen).unwrap_or_default();
        text.contains("info watching").then_some(())
    });
    writeln!(stdin, "ctrl-c").unwrap();
    wait_until(T, "SIGINT to reach the app", || {
        (!received_in(&out).is_empty()).then_some(())
    });
    std::thread::sleep(QUIET);
    let got: Vec<i32> = received_in(&out).iter().map(|r| r.signo).collect();
    let screen_text = fs::read_to_string(&screen).unwrap_or_default();
    assert_eq!(got, [libc::SIGINT], "{screen_text}");
    let (app_group, foreground) = groups(app_pid);
    assert_eq!(app_group, app_pid, "the app leads a group of its own");
    assert_eq!(foreground, app_pid, "and it is the terminal's foreground");
    assert_ne!(groups(rel).0, app_group);

    kill(rel, libc::SIGTERM).unwrap();
    drop(stdin);
    let code = lines
        .recv_timeout(T)
        .expect("the exit code of the reloader");
    assert_eq!(code.trim(), "0", "{}", fs::read_to_string(&screen).unwrap());
}

/// Regression: a script whose `#!` interpreter is missing was reported as "not found" although
/// the file is there. The line now names the missing interpreter (exit 127, as a shell).
#[test]
fn a_script_whose_interpreter_is_missing_names_the_interpreter() {
    let tmp = TempDir::new("entry-shebang").unwrap();
    let script = tmp.join("entry.sh");
    fs::write(&script, "#!/nonexistent/bash -e\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let env = [("CONFIG_DIR", path_str(tmp.path()))];
    let (status, _, stderr) = run_to_exit(bin(), &env, &["--", path_str(&script)]);
    assert_eq!(testkit::reloader::code(status), 127, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("its #! interpreter \"/nonexistent/bash\" is missing"),
        "{stderr}"
    );
    assert!(!stderr.contains("not found"), "{stderr}");
}

/// The same for a program whose dynamic loader is missing (a glibc program in a musl image):
/// the line names the loader. Here a copy of Debian's `true` with its loader path altered.
#[test]
fn a_program_whose_dynamic_loader_is_missing_names_the_loader() {
    let tmp = TempDir::new("entry-loader").unwrap();
    let mut elf = fs::read("/usr/bin/true").unwrap();
    let loaders = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"];
    let (at, loader) = loaders
        .iter()
        .find_map(|l| Some((elf.windows(l.len()).position(|w| w == l.as_bytes())?, *l)))
        .expect("/usr/bin/true names a known loader");
    let missing = format!("{}X", &loader[..loader.len() - 1]);
    elf[at..at + loader.len()].copy_from_slice(missing.as_bytes());
    let program = tmp.join("app");
    fs::write(&program, elf).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    let env = [("CONFIG_DIR", path_str(tmp.path()))];
    let (status, _, stderr) = run_to_exit(bin(), &env, &["--", path_str(&program)]);
    assert_eq!(testkit::reloader::code(status), 127, "{stderr}");
    let says = format!("its ELF interpreter (dynamic loader) {missing:?} is missing");
    assert!(stderr.contains(&says), "{stderr}");
}
