//! Configuration: environment variables and command-line flags become one validated [`Config`].
//!
//! One table, [`SETTINGS`], is the single source of truth: it drives parsing, `--help` and the
//! README check. Every setting is an env var (drop-in compatible with the original Go sidecar's
//! `CONFIG_DIR`, `PROCESS_NAME`, `RELOAD_SIGNAL`, `VERBOSE`) and a flag; flags win.
//! Any bad input becomes one [`ConfigError`] line naming the variable or flag, the bad value and
//! what is accepted; `main` prints it and exits with code 2 before anything is watched or signalled.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::signal::Signal;
use crate::sys;

/// One setting: its env var (if any), its flag, a metavariable for values, default and help.
pub struct Setting {
    /// Environment variable, e.g. `CONFIG_DIR`; `None` for flag-only actions like `--help`.
    pub env: Option<&'static str>,
    /// Long flag including dashes, e.g. `--config-dir`.
    pub flag: &'static str,
    /// Placeholder shown in help; `None` for switches that take no value.
    pub value: Option<&'static str>,
    /// Default shown in help; `None` when mandatory or not applicable.
    pub default: Option<&'static str>,
    /// One-line description.
    pub help: &'static str,
}

/// Every setting the program understands, in the order `--help` and the README show them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        env: Some("CONFIG_DIR"),
        flag: "--config-dir",
        value: Some("DIR[,DIR...]"),
        default: None,
        help: "directories to watch recursively (mandatory)",
    },
    Setting {
        env: Some("PROCESS_NAME"),
        flag: "--process-name",
        value: Some("NAME"),
        default: None,
        help: "exact process name to signal: /proc/PID/comm, or argv[0]'s basename for names over 15 chars (mandatory)",
    },
    Setting {
        env: Some("RELOAD_SIGNAL"),
        flag: "--signal",
        value: Some("SIGNAL"),
        default: Some("SIGHUP"),
        help: "signal to send: SIGHUP, HUP, hup, 1, SIGUSR1, SIGRTMIN+2, ...",
    },
    Setting {
        env: Some("RELOAD_DEBOUNCE"),
        flag: "--debounce",
        value: Some("DURATION"),
        default: Some("100ms"),
        help: "quiet time after the last change before signalling: 0, 250ms, 2s",
    },
    Setting {
        env: Some("RELOAD_MAX_DELAY"),
        flag: "--max-delay",
        value: Some("DURATION"),
        default: Some("2s"),
        help: "longest wait during a never-ending stream of changes",
    },
    Setting {
        env: Some("RELOAD_TARGETS"),
        flag: "--targets",
        value: Some("roots|all"),
        default: Some("roots"),
        help: "roots: matches whose parent does not match (nginx master, not workers); all: every match",
    },
    Setting {
        env: Some("RELOAD_FORCE"),
        flag: "--force",
        value: None,
        default: Some("false"),
        help: "send even to a process that neither catches, blocks nor ignores the signal (it may die)",
    },
    Setting {
        env: Some("VERBOSE"),
        flag: "--verbose",
        value: None,
        default: Some("false"),
        help: "log every event considered (true/1)",
    },
    Setting {
        env: Some("LOG_FORMAT"),
        flag: "--log-format",
        value: Some("text|json"),
        default: Some("text"),
        help: "one line per event on stderr, as key=value text or JSON",
    },
    Setting {
        env: None,
        flag: "--check",
        value: None,
        default: None,
        help: "validate, print what would be watched and which processes match now, exit 0 (ok) or 1",
    },
    Setting {
        env: None,
        flag: "--help",
        value: None,
        default: None,
        help: "print this help",
    },
    Setting {
        env: None,
        flag: "--version",
        value: None,
        default: None,
        help: "print the version",
    },
];

/// Which of the matching processes receive the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Matches whose parent is not itself a match: the nginx master, not its workers.
    Roots,
    /// Every matching process.
    All,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `level message key=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directories to watch, deduplicated, in the order given.
    pub dirs: Vec<Vec<u8>>,
    /// Exact process name to match.
    pub process_name: String,
    /// Signal sent on reload.
    pub signal: Signal,
    /// Quiet time before signalling.
    pub debounce: Duration,
    /// Upper bound on the wait during a stream of changes.
    pub max_delay: Duration,
    /// Roots only, or every match.
    pub targets: Targets,
    /// Send even when the target would take the signal's default action.
    pub force: bool,
    /// Log every event considered.
    pub verbose: bool,
    /// Text or JSON log lines.
    pub log_format: LogFormat,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Watch and reload until SIGTERM/SIGINT.
    Run(Config),
    /// Validate, report, exit.
    Check(Config),
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

/// A configuration error: one line for the user, exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// A raw value and where it came from (`CONFIG_DIR` or `--config-dir`), for error messages.
struct Raw {
    source: String,
    value: String,
}

/// Parses the command line (without argv[0]) and the environment into an [`Action`].
///
/// `env` is a lookup function so tests can pass a map instead of the process environment.
/// Arguments and values are bytes, as the kernel passes them; each must be UTF-8.
pub fn parse(
    args: impl IntoIterator<Item = Vec<u8>>,
    env: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<Action, ConfigError> {
    let mut raw: Vec<Option<Raw>> = SETTINGS.iter().map(|_| None).collect();
    for (i, s) in SETTINGS.iter().enumerate() {
        let Some(name) = s.env else { continue };
        let Some(v) = env(name) else { continue };
        let value = utf8(name, v)?;
        // An empty optional variable means "unset", as compose files and Helm charts often
        // render `VAR: ""`; an empty mandatory one is reported when validated below.
        if value.trim().is_empty() && s.default.is_some() {
            continue;
        }
        raw[i] = Some(Raw {
            source: name.to_string(),
            value,
        });
    }

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = utf8("command line", arg)?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let flag = match flag.as_str() {
            "-h" => "--help".to_string(),
            "-V" => "--version".to_string(),
            _ => flag,
        };
        let Some(i) = SETTINGS.iter().position(|s| s.flag == flag) else {
            let hint = if arg.starts_with('-') {
                format!("unknown flag {arg:?}")
            } else {
                format!("unexpected argument {arg:?}")
            };
            return err(format!("{hint}; run with --help to see the accepted flags"));
        };
        let s = &SETTINGS[i];
        let value = match (s.value, inline) {
            (None, Some(v)) => v,
            (None, None) => "true".to_string(),
            (Some(_), Some(v)) => v,
            (Some(meta), None) => match args.next() {
                Some(v) => utf8(s.flag, v)?,
                None => return err(format!("{} needs a value: {} {meta}", s.flag, s.flag)),
            },
        };
        raw[i] = Some(Raw {
            source: s.flag.to_string(),
            value,
        });
    }

    let get = |flag: &str| -> Option<&Raw> {
        let i = SETTINGS.iter().position(|s| s.flag == flag)?;
        raw[i].as_ref()
    };
    let switch = |flag: &str| -> Result<bool, ConfigError> {
        match get(flag) {
            None => Ok(false),
            Some(r) => parse_bool(&r.source, &r.value),
        }
    };

    if switch("--help")? {
        return Ok(Action::Help);
    }
    if switch("--version")? {
        return Ok(Action::Version);
    }

    let dirs =
        match get("--config-dir") {
            None => return err(missing(
                "CONFIG_DIR",
                "--config-dir",
                "a comma-separated list of directories to watch, e.g. CONFIG_DIR=/etc/nginx/conf.d",
            )),
            Some(r) => parse_dirs(&r.source, &r.value)?,
        };
    let process_name = match get("--process-name") {
        None => {
            return err(missing(
                "PROCESS_NAME",
                "--process-name",
                "the exact name of the process to signal, e.g. PROCESS_NAME=nginx",
            ))
        }
        Some(r) => parse_process_name(&r.source, &r.value)?,
    };
    let signal = match get("--signal") {
        None => Signal::HUP,
        Some(r) => parse_signal(&r.source, &r.value)?,
    };
    let debounce = match get("--debounce") {
        None => Duration::from_millis(100),
        Some(r) => parse_duration(&r.source, &r.value)?,
    };
    let max_delay = match get("--max-delay") {
        None => Duration::from_secs(2).max(debounce),
        Some(r) => {
            let d = parse_duration(&r.source, &r.value)?;
            if d < debounce {
                return err(format!(
                    "{}={:?} is shorter than the debounce ({} ms); use a value of at least the debounce",
                    r.source,
                    r.value,
                    debounce.as_millis()
                ));
            }
            d
        }
    };
    let targets = match get("--targets") {
        None => Targets::Roots,
        Some(r) => match r.value.trim().to_ascii_lowercase().as_str() {
            "roots" => Targets::Roots,
            "all" => Targets::All,
            _ => {
                return err(format!(
                    "{}={:?} is not accepted; use roots or all",
                    r.source, r.value
                ))
            }
        },
    };
    let log_format = match get("--log-format") {
        None => LogFormat::Text,
        Some(r) => match r.value.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return err(format!(
                    "{}={:?} is not accepted; use text or json",
                    r.source, r.value
                ))
            }
        },
    };
    let config = Config {
        dirs,
        process_name,
        signal,
        debounce,
        max_delay,
        targets,
        force: switch("--force")?,
        verbose: switch("--verbose")?,
        log_format,
    };
    Ok(if switch("--check")? {
        Action::Check(config)
    } else {
        Action::Run(config)
    })
}

fn missing(env: &str, flag: &str, what: &str) -> String {
    format!("{env} is not set (nor {flag}); set it to {what}")
}

fn utf8(source: &str, v: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(v).map_err(|e| {
        let v = lossy_debug(e.as_bytes());
        ConfigError(format!(
            "{source}={v} is not valid UTF-8; use a UTF-8 value"
        ))
    })
}

/// Quotes bytes the way `OsStr`'s `Debug` does: valid text escaped as in a Rust string, each
/// invalid byte as `\xNN`.
fn lossy_debug(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        let quoted = format!("{:?}", chunk.valid());
        out.push_str(&quoted[1..quoted.len() - 1]);
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.push('"');
    out
}

/// Parses a boolean the way shell users and YAML authors write it.
pub fn parse_bool(source: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => err(format!(
            "{source}={value:?} is not a boolean; use true or false (or 1/0)"
        )),
    }
}

/// Splits a comma-separated list of directories and checks each exists and is a directory.
pub fn parse_dirs(source: &str, value: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let path = item.as_bytes();
        match sys::stat(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return err(format!("{source}={value:?}: {item:?} is not a directory; give directories, not files (watching a file misses atomic replacements)")),
            Err(e) => return err(format!("{source}={value:?}: {item:?} cannot be used: {}; give existing directories separated by commas", io_reason(e))),
        }
        if !dirs.iter().any(|d| sys::same_path(d, path)) {
            dirs.push(path.to_vec());
        }
    }
    if dirs.is_empty() {
        return err(format!("{source}={value:?} names no directory; give one or more directories separated by commas, e.g. /etc/app,/etc/app-secrets"));
    }
    Ok(dirs)
}

fn io_reason(e: sys::Errno) -> String {
    match e.0 {
        libc::ENOENT => "it does not exist".to_string(),
        libc::EACCES | libc::EPERM => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// Checks a process name: non-empty, no slash (it is a name, not a path), no NUL.
pub fn parse_process_name(source: &str, value: &str) -> Result<String, ConfigError> {
    let name = value.trim();
    if name.is_empty() {
        return err(format!(
            "{source} is empty; set it to the exact name of the process to signal, e.g. nginx"
        ));
    }
    if name.contains('/') {
        return err(format!("{source}={value:?} contains '/'; give the process name (the program's file name, e.g. nginx), not a path"));
    }
    Ok(name.to_string())
}

/// Parses a signal name or number; SIGKILL and SIGSTOP are refused because they cannot be caught.
pub fn parse_signal(source: &str, value: &str) -> Result<Signal, ConfigError> {
    let Some(sig) = Signal::parse(value.trim()) else {
        return err(format!("{source}={value:?} is not a signal; use a name like SIGHUP, HUP or hup, SIGUSR1, SIGRTMIN+2, or a number 1-64"));
    };
    if sig == Signal::KILL || sig == Signal::STOP {
        return err(format!("{source}={value:?} cannot be caught by any process, so it would stop or kill the app instead of reloading it; use SIGHUP, SIGUSR1 or another catchable signal"));
    }
    Ok(sig)
}

/// Parses `0`, `250ms`, `2s`, `1.5s`, `1m`, `1h` into a duration of at most one hour.
pub fn parse_duration(source: &str, value: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{source}={value:?} is not a duration; use 0 or a number with a unit, e.g. 250ms, 2s, 1.5s, 1m"
        ))
    };
    let v = value.trim();
    if v == "0" {
        return Ok(Duration::ZERO);
    }
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = v.split_at(split);
    let scale_us: u128 = match unit {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(bad());
    }
    // Integers, not f64 (whose parsing and printing would add about 35 KB to the binary): the
    // value is whole + digits / 10^len, exact. Fraction digits past the 18th (below 10^-18 of
    // the unit, far below the microsecond we keep) are ignored so the sum fits in a u128.
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    let fraction = &fraction[..fraction.len().min(18)];
    let too_long = || {
        ConfigError(format!(
            "{source}={value:?} is too long; use at most 1h (60m)"
        ))
    };
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let digits: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let denom = 10u128.pow(fraction.len() as u32);
    // Exact, in units of 1/denom µs: compared before rounding, as the f64 version did.
    let limit = 3_600_000_000u128 * denom;
    let total = whole
        .checked_mul(scale_us)
        .and_then(|w| w.checked_mul(denom))
        .and_then(|w| w.checked_add(digits * scale_us))
        .filter(|t| *t <= limit)
        .ok_or_else(too_long)?;
    Ok(Duration::from_micros(((total + denom / 2) / denom) as u64))
}

/// Renders `--help` from [`SETTINGS`].
pub fn help() -> String {
    let mut out = format!(
        "config-reloader {}\n\
         Watches configuration directories and signals a process once per real change.\n\n\
         Usage: config-reloader [FLAGS]   (every setting is also an environment variable; flags win)\n\n",
        env!("CARGO_PKG_VERSION")
    );
    for s in SETTINGS {
        let flag = match s.value {
            Some(v) => format!("{} {v}", s.flag),
            None => s.flag.to_string(),
        };
        let env = s.env.map(|e| format!(" [env {e}]")).unwrap_or_default();
        let default = s
            .default
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        out.push_str(&format!("  {flag}{env}\n      {}{default}\n", s.help));
    }
    out.push_str("\nExit codes: 0 ok or stopped by SIGTERM/SIGINT, 1 --check found a problem, 2 bad configuration.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Action, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(|a| a.as_bytes().to_vec()), |k| {
            env.get(k).map(|v| v.as_bytes().to_vec())
        })
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match run(args, env) {
            Ok(Action::Run(c)) => c,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        let e = run(args, env)
            .expect_err("expected a configuration error")
            .0;
        assert!(!e.contains('\n'), "error must be one line: {e}");
        e
    }

    const BASE: &[(&str, &str)] = &[("CONFIG_DIR", "/tmp"), ("PROCESS_NAME", "nginx")];

    #[test]
    fn env_vars_of_the_go_sidecar_are_enough() {
        let c = config(
            &[],
            &[
                ("CONFIG_DIR", "/tmp"),
                ("PROCESS_NAME", "nginx"),
                ("RELOAD_SIGNAL", "SIGUSR1"),
                ("VERBOSE", "true"),
            ],
        );
        assert_eq!(c.dirs, vec![b"/tmp".to_vec()]);
        assert_eq!(c.process_name, "nginx");
        assert_eq!(c.signal, Signal(libc::SIGUSR1));
        assert!(c.verbose);
        assert_eq!(c.debounce, Duration::from_millis(100));
        assert_eq!(c.max_delay, Duration::from_secs(2));
        assert_eq!(c.targets, Targets::Roots);
        assert!(!c.force);
    }

    #[test]
    fn flags_win_over_env() {
        let c = config(
            &[
                "--process-name",
                "haproxy",
                "--signal=USR2",
                "--debounce",
                "0",
            ],
            BASE,
        );
        assert_eq!(c.process_name, "haproxy");
        assert_eq!(c.signal, Signal(libc::SIGUSR2));
        assert_eq!(c.debounce, Duration::ZERO);
    }

    #[test]
    fn comma_separated_dirs_are_trimmed_and_deduplicated() {
        let c = config(
            &[],
            &[("CONFIG_DIR", " /tmp, /, /tmp,"), ("PROCESS_NAME", "x")],
        );
        assert_eq!(c.dirs, vec![b"/tmp".to_vec(), b"/".to_vec()]);
    }

    #[test]
    fn missing_mandatory_values_name_the_variable() {
        assert!(error(&[], &[("PROCESS_NAME", "x")]).starts_with("CONFIG_DIR is not set"));
        assert!(error(&[], &[("CONFIG_DIR", "/tmp")]).starts_with("PROCESS_NAME is not set"));
        assert!(error(&[], &[("CONFIG_DIR", "/tmp"), ("PROCESS_NAME", " ")])
            .starts_with("PROCESS_NAME is empty"));
        assert!(error(&[], &[("CONFIG_DIR", ","), ("PROCESS_NAME", "x")])
            .contains("names no directory"));
        assert!(error(&["--process-name"], BASE).contains("--process-name needs a value"));
    }

    #[test]
    fn bad_directories_are_rejected() {
        let e = error(
            &[],
            &[
                ("CONFIG_DIR", "/tmp,/does/not/exist"),
                ("PROCESS_NAME", "x"),
            ],
        );
        assert!(
            e.contains("CONFIG_DIR=")
                && e.contains("/does/not/exist")
                && e.contains("does not exist"),
            "{e}"
        );
        let e = error(&["--config-dir", "/etc/hostname"], BASE);
        assert!(
            e.starts_with("--config-dir=") && e.contains("is not a directory"),
            "{e}"
        );
    }

    #[test]
    fn bad_signal_duration_targets_format_bool_are_rejected() {
        let e = error(
            &[],
            &[
                ("CONFIG_DIR", "/tmp"),
                ("PROCESS_NAME", "x"),
                ("RELOAD_SIGNAL", "SIGFOO"),
            ],
        );
        assert!(
            e.starts_with("RELOAD_SIGNAL=\"SIGFOO\" is not a signal"),
            "{e}"
        );
        assert!(error(&["--signal", "KILL"], BASE).contains("cannot be caught"));
        assert!(error(&["--signal", "0"], BASE).contains("is not a signal"));
        assert!(error(&["--signal", "65"], BASE).contains("is not a signal"));
        for d in [
            "100", "1d", "-1s", "ms", "1.s", ".5s", "1..2s", "2 s", "abc", "99999m", "2h",
        ] {
            let e = error(&["--debounce", d], BASE);
            assert!(e.starts_with(&format!("--debounce={d:?}")), "{d}: {e}");
        }
        // The default max delay grows with the debounce instead of contradicting it.
        assert_eq!(
            config(&["--debounce", "3s"], BASE).max_delay,
            Duration::from_secs(3)
        );
        assert!(error(&["--debounce", "3s", "--max-delay", "1s"], BASE)
            .contains("shorter than the debounce"));
        assert!(error(&["--targets", "children"], BASE).contains("use roots or all"));
        assert!(error(&["--log-format", "xml"], BASE).contains("use text or json"));
        assert!(error(
            &[],
            &[
                ("CONFIG_DIR", "/tmp"),
                ("PROCESS_NAME", "x"),
                ("VERBOSE", "maybe")
            ]
        )
        .starts_with("VERBOSE=\"maybe\" is not a boolean"));
        assert!(error(&["--process-name", "/usr/sbin/nginx"], BASE).contains("not a path"));
    }

    #[test]
    fn unknown_flags_and_arguments_are_rejected() {
        assert!(error(&["--colour"], BASE).starts_with("unknown flag \"--colour\""));
        assert!(error(&["nginx"], BASE).starts_with("unexpected argument \"nginx\""));
    }

    #[test]
    fn accepted_spellings() {
        for (s, n) in [
            ("SIGHUP", 1),
            ("HUP", 1),
            ("hup", 1),
            ("1", 1),
            ("sigusr1", 10),
            ("RTMIN", 34),
            ("SIGRTMIN+2", 36),
            ("SIGRTMAX-1", 63),
            ("64", 64),
        ] {
            assert_eq!(config(&["--signal", s], BASE).signal, Signal(n), "{s}");
        }
        for (s, ms) in [
            ("0", 0),
            ("250ms", 250),
            ("2s", 2000),
            ("1.5s", 1500),
            ("1m", 60_000),
            ("0ms", 0),
        ] {
            assert_eq!(
                config(&["--debounce", s, "--max-delay", "1h"], BASE).debounce,
                Duration::from_millis(ms),
                "{s}"
            );
        }
        assert_eq!(
            config(&["--max-delay", "60m"], BASE).max_delay,
            Duration::from_secs(3600)
        );
        assert!(config(&["--verbose"], BASE).verbose);
        assert!(
            !config(
                &["--verbose=false"],
                &[
                    ("CONFIG_DIR", "/tmp"),
                    ("PROCESS_NAME", "x"),
                    ("VERBOSE", "1")
                ]
            )
            .verbose
        );
        assert!(
            config(
                &[],
                &[
                    ("CONFIG_DIR", "/tmp"),
                    ("PROCESS_NAME", "x"),
                    ("RELOAD_FORCE", "yes")
                ]
            )
            .force
        );
        assert_eq!(config(&["--targets", "ALL"], BASE).targets, Targets::All);
        assert_eq!(
            config(&["--log-format=json"], BASE).log_format,
            LogFormat::Json
        );
        // An empty optional variable is treated as unset.
        assert_eq!(
            config(
                &[],
                &[
                    ("CONFIG_DIR", "/tmp"),
                    ("PROCESS_NAME", "x"),
                    ("RELOAD_SIGNAL", "")
                ]
            )
            .signal,
            Signal::HUP
        );
        assert!(matches!(run(&["--check"], BASE), Ok(Action::Check(_))));
        assert!(matches!(run(&["--help"], &[]), Ok(Action::Help)));
        assert!(matches!(run(&["-V"], &[]), Ok(Action::Version)));
    }

    #[test]
    fn help_lists_every_setting() {
        let h = help();
        for s in SETTINGS {
            assert!(h.contains(s.flag), "{}", s.flag);
            if let Some(e) = s.env {
                assert!(h.contains(e), "{e}");
            }
        }
    }
}
