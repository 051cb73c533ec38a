//! Property tests of the configuration parsers, through the real binary: whatever the
//! environment and the command line hold, config-reloader never panics, and every rejection is
//! exactly one line on stderr naming what was wrong, with exit code 2, before anything is
//! watched or signalled.
//!
//! Each case runs `config-reloader --check` (validate, report, exit), so the binary never
//! settles into its loop; a case that still runs after [`RUN_LIMIT`] (a random command line
//! that swallowed `--check` as a value) is killed and only checked for not having crashed.
//! Case counts are modest: every case is a process.

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};
use support::bin;
use testkit::recorder::{Options, Recorder};
use testkit::{unique_name, TempDir};

/// Validation takes milliseconds; past this the binary is serving and is stopped.
const RUN_LIMIT: Duration = Duration::from_secs(2);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        // Shrunk failures are printed; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A configuration directory and an app, for the cases of one property. Every case is
/// configured with the app's name (unique to this run): a live recorder of that name proves
/// that no case ever signals.
struct Fixture {
    dir: TempDir,
    name: String,
    app: Recorder,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new("props").expect("temp dir");
        std::fs::write(dir.join("app.conf"), "x").expect("write app.conf");
        let name = unique_name("propapp");
        let app = Recorder::spawn(Options {
            name: Some(name.clone()),
            ..Options::default()
        });
        Fixture { dir, name, app }
    }

    fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("CONFIG_DIR", self.dir.path().as_os_str().to_owned()),
            ("PROCESS_NAME", self.name.clone().into()),
        ]
    }

    /// Runs `config()` cases of `strategy` through `case`, then checks that none signalled.
    fn check_all<S: Strategy>(
        &self,
        strategy: S,
        case: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        let result = TestRunner::new(config()).run(&strategy, case);
        if let Err(e) = result {
            panic!("{e}");
        }
        assert!(
            self.app.received().is_empty(),
            "a configuration check signalled the app: {:?}",
            self.app.received()
        );
    }
}

/// How one run ended.
struct Outcome {
    /// Exit code; `None` if killed by a signal (ours after [`RUN_LIMIT`], or a crash).
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

/// Runs the binary with exactly `env` (nothing inherited) and `args`.
fn run(env: &[(&str, OsString)], args: &[OsString]) -> Outcome {
    let err = TempDir::new("props-err").expect("temp dir");
    let err_path = err.join("stderr");
    let out_path = err.join("stdout");
    let file = std::fs::File::create(&err_path).expect("stderr file");
    let out_file = std::fs::File::create(&out_path).expect("stdout file");
    let mut child = Command::new(bin())
        .env_clear()
        .envs(testkit::tree::run_mark())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(file)
        .spawn()
        .expect("spawn config-reloader");
    let deadline = Instant::now() + RUN_LIMIT;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait().expect("wait"), true);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        timed_out,
    }
}

/// The properties every run must have; `names` are the variables or flags the input set, one
/// of which a rejection must name.
fn check(out: &Outcome, names: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(
        out.timed_out || out.signal.is_none(),
        "killed by signal {:?}: {}",
        out.signal,
        out.stderr
    );
    if out.timed_out {
        return Ok(());
    }
    let code = out.code.unwrap_or(-1);
    prop_assert!(
        matches!(code, 0..=2),
        "exit code {code} (101 is a panic): {}",
        out.stderr
    );
    if code == 2 {
        let lines: Vec<&str> = out.stderr.lines().collect();
        prop_assert_eq!(lines.len(), 1, "a rejection is one line: {:?}", out.stderr);
        prop_assert!(lines[0].starts_with("config-reloader: "), "{:?}", lines[0]);
        prop_assert!(
            names.is_empty() || names.iter().any(|n| lines[0].contains(n)),
            "the error names none of {names:?}: {}",
            lines[0]
        );
    }
    Ok(())
}

/// Any bytes but NUL (which no environment variable can hold), often not UTF-8.
fn raw_value() -> impl Strategy<Value = OsString> {
    vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 0..24).prop_map(OsString::from_vec)
}

/// Text that looks like what people type: digits, units, signal names, signs, spaces.
fn plausible_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ ]?[+-]?[0-9]{0,8}(\\.[0-9]{0,4})?(ms|s|m|h|us|ns|d|S|MS)?[ ]?",
        "[ ]?(SIG|sig|Sig)?(HUP|INT|USR1|USR2|KILL|STOP|TERM|RTMIN|RTMAX|POLL|IOT|FOO)([+-][0-9]{1,3})?[ ]?",
        "(roots|all|text|json|true|false|yes|no|on|off|1|0|ROOTS|Json)?[ a-z]{0,3}",
        "[^\\x00]{0,12}",
    ]
}

/// Comma lists mixing the fixture directory, a missing path, a file and blanks. (Not `/` or
/// other big trees: `--check` counts every directory below each one.)
fn dir_lists(good: &Path) -> impl Strategy<Value = OsString> {
    let items = vec![
        good.display().to_string(),
        "/nonexistent".to_string(),
        "/etc/hostname".to_string(),
        String::new(),
        " ".to_string(),
    ];
    vec(select(items), 0..4).prop_map(|v| OsString::from(v.join(",")))
}

/// A port of 127.0.0.1 that nothing listens on (it was free a moment ago): connecting to it is
/// refused at once, so `--check` never waits.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The password marker of [`url_like`]: no output may hold it.
const SECRET: &str = "Zq9xSECRET";

/// Reload URLs as people mistype them: schemes, userinfo holding [`SECRET`] (also with the `/`,
/// `?`, `#` or `@` a password may hold unencoded), hosts, ports and paths, right and wrong.
/// Every host that parses is a loopback, so `--check`'s connect never waits.
fn url_like(port: u16) -> impl Strategy<Value = String> {
    let schemes = [
        "http://", "HTTP://", "https://", "http//", "http:/", "", "ftp://",
    ];
    // Any password (each starting with the marker, so none is a port number), with its `@`,
    // without it (`http://ops:secret` lost its `@host`: once shown in "has a bad port"), or
    // as a bare user.
    let password = "Zq9x[A-Za-z0-9._~!$&'()*+,;=%:/?#@-]{0,10}";
    let users = prop_oneof![
        Just(String::new()),
        password.prop_map(|p| format!("ops:{p}@")),
        password.prop_map(|p| format!("ops:{p}")),
        password.prop_map(|p| format!("{p}@")),
        Just("ops:Zq9x%E9SECRET@".to_string()),
    ];
    let hosts = [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "",
        "prometheus",
        "127.0.0.1.5",
        "[::1",
    ];
    let ports = [
        String::new(),
        format!(":{port}"),
        ":0".into(),
        ":65536".into(),
        ":x".into(),
        ":".into(),
    ];
    let paths = [
        "",
        "/",
        "/-/reload",
        "/a b",
        "/x@y",
        "?q=1",
        "#f",
        "/\u{7f}",
    ];
    (
        select(schemes.to_vec()),
        users,
        select(hosts.to_vec()),
        select(ports.to_vec()),
        select(paths.to_vec()),
    )
        .prop_map(|(s, u, h, p, path)| format!("{s}{u}{h}{p}{path}"))
}

const VARS: &[&str] = &[
    "RELOAD_SIGNAL",
    "RELOAD_DEBOUNCE",
    "RELOAD_MAX_DELAY",
    "RELOAD_TARGETS",
    "RELOAD_FORCE",
    "VERBOSE",
    "LOG_FORMAT",
    "RELOAD_WEBHOOK_URL",
    "RELOAD_WEBHOOK_METHOD",
    "RELOAD_WEBHOOK_TIMEOUT",
    "RELOAD_POLL_INTERVAL",
];

const FLAGS: &[&str] = &[
    "--config-dir",
    "--process-name",
    "--signal",
    "--debounce",
    "--max-delay",
    "--targets",
    "--force",
    "--verbose",
    "--log-format",
    "--webhook-url",
    "--webhook-method",
    "--webhook-timeout",
    "--poll-interval",
    "--check",
    "--help",
    "--version",
    "-h",
    "-V",
];

#[test]
fn any_value_of_any_setting_is_accepted_or_one_line_naming_it() {
    let f = Fixture::new();
    let value = prop_oneof![raw_value(), plausible_value().prop_map(OsString::from)];
    // The method and timeout come with a URL (one nothing listens on), as they are used.
    let url = OsString::from(format!("http://127.0.0.1:{}/-/reload", closed_port()));
    f.check_all((select(VARS), value), |(var, value)| {
        let mut env = f.env();
        if var.starts_with("RELOAD_WEBHOOK_") && var != "RELOAD_WEBHOOK_URL" {
            env.push(("RELOAD_WEBHOOK_URL", url.clone()));
        }
        env.push((var, value));
        check(&run(&env, &["--check".into()]), &[var])
    });
}

#[test]
fn any_config_dir_and_process_name_are_accepted_or_one_line_naming_them() {
    let f = Fixture::new();
    let dirs = prop_oneof![raw_value(), dir_lists(f.dir.path())];
    let name = prop_oneof![raw_value(), "[a-z/ ]{0,20}".prop_map(OsString::from)];
    f.check_all((dirs, name), |(dirs, name)| {
        let env = vec![("CONFIG_DIR", dirs), ("PROCESS_NAME", name)];
        check(
            &run(&env, &["--check".into()]),
            &["CONFIG_DIR", "PROCESS_NAME"],
        )
    });
}

#[test]
fn any_command_line_never_panics_and_rejects_in_one_line() {
    let f = Fixture::new();
    let arg = prop_oneof![
        select(FLAGS).prop_map(OsString::from),
        (select(FLAGS), plausible_value()).prop_map(|(f, v)| OsString::from(format!("{f}={v}"))),
        plausible_value().prop_map(OsString::from),
        raw_value(),
    ];
    f.check_all(vec(arg, 0..6), |mut args| {
        args.push("--check".into());
        // Unknown arguments are named by their own text, not by a setting: no name to expect.
        check(&run(&f.env(), &args), &[])
    });
}

#[test]
fn well_formed_durations_up_to_an_hour_are_accepted() {
    let f = Fixture::new();
    f.check_all(
        (0u64..=3_600_000, select(&["ms", "s", "m", "h"][..])),
        |(ms, unit)| {
            let per = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                _ => 3_600_000,
            };
            let value = if ms % per == 0 {
                format!("{}{unit}", ms / per)
            } else {
                format!("{}.{:03}{unit}", ms / per, (ms % per) * 1000 / per)
            };
            let mut env = f.env();
            env.push(("RELOAD_DEBOUNCE", "0".into()));
            env.push(("RELOAD_MAX_DELAY", value.clone().into()));
            let out = run(&env, &["--check".into()]);
            check(&out, &[])?;
            prop_assert_ne!(out.code, Some(2), "{} rejected: {}", value, out.stderr);
            Ok(())
        },
    );
}

#[test]
fn every_catchable_signal_is_accepted_by_number_and_by_name() {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let f = Fixture::new();
    f.check_all((1i32..=64, 0usize..4), |(n, spelling)| {
        let name = match n {
            1..=31 => NAMES[n as usize - 1].to_string(),
            34 => "RTMIN".into(),
            64 => "RTMAX".into(),
            35..=63 => format!("RTMIN+{}", n - 34),
            // 32 and 33 have no name: glibc keeps them for its threads.
            _ => n.to_string(),
        };
        let value = match spelling {
            _ if n == 32 || n == 33 => format!(" {n} "),
            0 => n.to_string(),
            1 => format!("SIG{name}"),
            2 => name.to_ascii_lowercase(),
            _ => format!(" {name} "),
        };
        let mut env = f.env();
        env.push(("RELOAD_SIGNAL", value.clone().into()));
        let out = run(&env, &["--check".into()]);
        check(&out, &["RELOAD_SIGNAL"])?;
        let uncatchable = n == libc::SIGKILL || n == libc::SIGSTOP;
        prop_assert_eq!(
            out.code == Some(2),
            uncatchable,
            "{}: {}",
            value,
            out.stderr
        );
        Ok(())
    });
}

#[test]
fn any_webhook_url_is_accepted_or_one_line_and_its_password_never_shows() {
    let f = Fixture::new();
    let port = closed_port();
    let as_flag = any::<bool>();
    f.check_all((url_like(port), as_flag), |(url, as_flag)| {
        let mut env = f.env();
        let mut args: Vec<OsString> = Vec::new();
        if as_flag {
            args.push(format!("--webhook-url={url}").into());
        } else {
            env.push(("RELOAD_WEBHOOK_URL", url.clone().into()));
        }
        args.push("--check".into());
        let out = run(&env, &args);
        check(&out, &["RELOAD_WEBHOOK_URL", "--webhook-url"])?;
        for (what, text) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
            prop_assert!(
                !text.contains(SECRET) && !text.contains("Zq9x"),
                "{url}: {what} shows the password: {text}"
            );
        }
        Ok(())
    });
}
