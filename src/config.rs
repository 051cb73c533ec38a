//! Configuration: environment variables and command-line flags become one checked [`Config`].
//!
//! One table, [`SETTINGS`] (in `settings`), is the single source of truth: it drives parsing,
//! `--help` and the README check. Every setting is an env var (drop-in compatible with the original Go sidecar's
//! `CONFIG_DIR`, `PROCESS_NAME`, `RELOAD_SIGNAL`, `VERBOSE`) and a flag; flags win. Any bad
//! input becomes one [`ConfigError`] line naming the variable or flag, the bad value and what is
//! accepted; `main` prints it and exits 2 before anything is watched or signalled.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use crate::confirm;
use crate::log::LogFormat;
use crate::poll::Poll;
pub use crate::settings::{help, SETTINGS};
use crate::signal::Signal;
use crate::url::Url;
use crate::validate::{self, Validate};
use crate::values::{self, err, ConfigError};

/// Which of the matching processes receive the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Matches whose parent is not itself a match: the nginx master, not its workers.
    Roots,
    /// Every matching process.
    All,
}

/// A reload request.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// Where.
    pub url: Url,
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// How long one attempt may take.
    pub timeout: Duration,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directories to watch, deduplicated, in the order given.
    pub dirs: Vec<PathBuf>,
    /// Exact process name to match, as bytes; `None`: the child (`-- APP`) or nobody.
    pub process_name: Option<Vec<u8>>,
    /// Signal sent on reload.
    pub signal: Signal,
    /// Quiet time before signalling.
    pub debounce: Duration,
    /// Upper bound on the wait during a stream of changes.
    pub max_delay: Duration,
    /// Shortest time between two reloads (zero: no pacing).
    pub min_interval: Duration,
    /// The file holding the target's pid, read at every reload.
    pub pid_file: Option<PathBuf>,
    /// Roots only, or every match.
    pub targets: Targets,
    /// Send even when the target would take the signal's default action.
    pub force: bool,
    /// Take a runtime's catch-all handler (Go, JVM, Ruby) as the app's.
    pub trust_handler: bool,
    /// How long a refusal that may pass is retried.
    pub retry_for: Duration,
    /// Log every event considered.
    pub verbose: bool,
    /// Text or JSON log lines.
    pub log_format: LogFormat,
    /// The reload request, if any.
    pub webhook: Option<Webhook>,
    /// When to poll.
    pub poll: Poll,
    /// `-- APP [ARGS...]`: run the app as our child (empty: a sidecar).
    pub command: Vec<OsString>,
    /// Where `/metrics` and `/healthz` are served; `None`: no port is opened.
    pub listen: Option<std::net::SocketAddr>,
    /// The command run before each reload, if any.
    pub validate: Option<Validate>,
    /// What is checked after a signal.
    pub confirm: confirm::Mode,
    /// How long `workers` waits.
    pub confirm_timeout: Duration,
}

impl Config {
    /// The process name for log lines (bytes that are not UTF-8 shown as U+FFFD).
    pub fn name(&self) -> String {
        match &self.process_name {
            Some(n) => String::from_utf8_lossy(n).into_owned(),
            None if self.pid_file.is_some() => "(pid file)".to_string(),
            None if !self.command.is_empty() => "(child)".to_string(),
            None => String::new(),
        }
    }

    /// Whether a reload signals anyone: a process name, a pid file or the app we run.
    pub fn signals(&self) -> bool {
        self.process_name.is_some() || self.pid_file.is_some() || !self.command.is_empty()
    }
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

/// A raw value and where it came from (`CONFIG_DIR` or `--config-dir`), for error messages.
struct Raw {
    source: String,
    value: OsString,
}

/// The raw values of every setting, flags over env.
struct Raws(Vec<Option<Raw>>);

impl Raws {
    fn get(&self, flag: &str) -> Option<&Raw> {
        let i = SETTINGS.iter().position(|s| s.flag == flag)?;
        self.0[i].as_ref()
    }

    fn text(&self, flag: &str) -> Result<Option<(&str, &str)>, ConfigError> {
        self.get(flag)
            .map(|r| Ok((r.source.as_str(), values::text(&r.source, &r.value)?)))
            .transpose()
    }

    fn switch(&self, flag: &str) -> Result<bool, ConfigError> {
        self.text(flag)?
            .map_or(Ok(false), |(source, v)| values::boolean(source, v))
    }
}

/// Parses the command line (without argv[0]) and the environment into an [`Action`].
///
/// `env` is a lookup function so tests can pass a map instead of the process environment.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Action, ConfigError> {
    let mut raw: Vec<Option<Raw>> = SETTINGS.iter().map(|_| None).collect();
    for (i, s) in SETTINGS.iter().enumerate() {
        let Some(name) = s.env else { continue };
        let Some(value) = env(name) else { continue };
        // An empty optional variable means "unset", as compose files and Helm charts often
        // render `VAR: ""`; an empty mandatory one is reported when checked below.
        if value.as_encoded_bytes().trim_ascii().is_empty() && s.default.is_some() {
            continue;
        }
        raw[i] = Some(Raw {
            source: name.to_string(),
            value,
        });
    }

    let mut args = args.into_iter();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--" {
            command.extend(args.by_ref());
            if command.is_empty() {
                return err("-- is not followed by a command; give the app to run, e.g. -- nginx -g 'daemon off;'".to_string());
            }
            break;
        }
        let Some(arg) = arg.to_str().map(str::to_string) else {
            return err(format!(
                "command line={} is not valid UTF-8; use a UTF-8 value",
                shown_arg(&arg)
            ));
        };
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        let flag = match flag {
            "-h" => "--help",
            "-V" => "--version",
            f => f,
        };
        let Some(i) = SETTINGS.iter().position(|s| s.flag == flag) else {
            let what = if arg.starts_with('-') {
                "unknown flag"
            } else {
                "unexpected argument"
            };
            return err(format!(
                "{what} {}; run with --help to see the accepted flags",
                shown_arg(OsStr::new(&arg))
            ));
        };
        let s = &SETTINGS[i];
        let value = match (s.value, inline) {
            (_, Some(v)) => OsString::from(v),
            (None, None) => OsString::from("true"),
            (Some(meta), None) => match args.next() {
                Some(v) => v,
                None => return err(format!("{} needs a value: {} {meta}", s.flag, s.flag)),
            },
        };
        raw[i] = Some(Raw {
            source: s.flag.to_string(),
            value,
        });
    }
    let raw = Raws(raw);

    if raw.switch("--help")? {
        return Ok(Action::Help);
    }
    if raw.switch("--version")? {
        return Ok(Action::Version);
    }
    let config = checked(&raw, command)?;
    Ok(if raw.switch("--check")? {
        Action::Check(config)
    } else {
        Action::Run(config)
    })
}

/// An argument quoted for a rejection, any URL userinfo in it masked: `--webhook-url=...`,
/// a misspelling of it, or a stray URL may carry a password.
fn shown_arg(arg: &OsStr) -> String {
    match values::quote(arg).split_once('=') {
        Some((flag, v)) if flag.starts_with("\"--") => format!("{flag}={}", Url::redact(v)),
        _ => values::quote_redacted(arg),
    }
}

fn checked(raw: &Raws, command: Vec<OsString>) -> Result<Config, ConfigError> {
    let dirs =
        match raw.get("--config-dir") {
            None => return err(missing(
                "CONFIG_DIR",
                "--config-dir",
                "a comma-separated list of directories to watch, e.g. CONFIG_DIR=/etc/nginx/conf.d",
            )),
            Some(r) => values::dirs(&r.source, &r.value)?,
        };
    // Checked even without a URL: a typo in a setting that goes unused would hide the mistake.
    let method = raw
        .text("--webhook-method")?
        .map_or(Ok("POST"), |(s, v)| values::method(s, v))?;
    let timeout = match raw.text("--webhook-timeout")? {
        None => Duration::from_secs(10),
        Some((s, v)) => values::positive(s, v, values::duration(s, v)?)?,
    };
    let webhook = match raw.get("--webhook-url") {
        None => None,
        Some(r) => Some(Webhook {
            url: values::url(&r.source, &r.value)?,
            method,
            timeout,
        }),
    };
    let pid_file = match raw.get("--pid-file") {
        None => None,
        Some(r) => Some(values::pid_file(&r.source, &r.value)?),
    };
    let process_name = match raw.get("--process-name") {
        None if webhook.is_none() && command.is_empty() && pid_file.is_none() => {
            return err(missing(
                "PROCESS_NAME",
                "--process-name",
                "the exact name of the process to signal, e.g. PROCESS_NAME=nginx (or set RELOAD_PID_FILE or RELOAD_WEBHOOK_URL, or run the app as config-reloader -- APP)",
            ))
        }
        None => None,
        Some(r) => Some(values::process_name(&r.source, &r.value)?),
    };
    let poll = match raw.text("--poll-interval")? {
        None => Poll::Auto,
        Some((_, v)) if v.trim().eq_ignore_ascii_case("auto") => Poll::Auto,
        Some((s, v)) => match values::duration(s, v)? {
            Duration::ZERO => Poll::Off,
            d => Poll::Every(values::poll_interval(s, v, d)?),
        },
    };
    let signal = raw
        .text("--signal")?
        .map_or(Ok(Signal::HUP), |(s, v)| values::signal(s, v))?;
    let debounce = raw
        .text("--debounce")?
        .map_or(Ok(Duration::from_millis(100)), |(s, v)| {
            values::duration(s, v)
        })?;
    let max_delay = match raw.text("--max-delay")? {
        // The default cap grows with the debounce instead of contradicting it.
        None => Duration::from_secs(2).max(debounce),
        Some((source, v)) => {
            let d = values::duration(source, v)?;
            if d < debounce {
                return err(format!("{source}={v:?} is shorter than the debounce ({} ms); use a value of at least the debounce", debounce.as_millis()));
            }
            d
        }
    };
    let min_interval = raw
        .text("--min-interval")?
        .map_or(Ok(Duration::from_secs(1)), |(s, v)| values::duration(s, v))?;
    let retry_for = raw
        .text("--retry-for")?
        .map_or(Ok(Duration::from_secs(60)), |(s, v)| values::duration(s, v))?;
    let targets = raw
        .text("--targets")?
        .map_or(Ok(Targets::Roots), |(s, v)| {
            values::choice(s, v, &[("roots", Targets::Roots), ("all", Targets::All)])
        })?;
    let log_format = raw
        .text("--log-format")?
        .map_or(Ok(LogFormat::Text), |(s, v)| {
            values::choice(
                s,
                v,
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )
        })?;
    let listen = match raw.text("--listen-address")? {
        None => None,
        Some((s, v)) => match crate::listen::parse_address(v) {
            Some(a) => Some(a),
            None => return err(format!("{s}={v:?} is not an address to listen on; use :PORT, IPv4:PORT or [IPv6]:PORT, e.g. :9533 (no host names)")),
        },
    };
    let validate_timeout = match raw.text("--validate-timeout")? {
        None => Duration::from_secs(30),
        Some((s, v)) => values::positive(s, v, values::duration(s, v)?)?,
    };
    let validate = raw
        .text("--validate-command")?
        .map(|(s, v)| validate::parse(s, v, validate_timeout))
        .transpose()?;
    let confirm = raw
        .text("--confirm")?
        .map_or(Ok(confirm::Mode::Alive), |(s, v)| {
            use confirm::Mode::*;
            values::choice(
                s,
                v,
                &[("alive", Alive), ("workers", Workers), ("off", Off)],
            )
        })?;
    let confirm_timeout = match raw.text("--confirm-timeout")? {
        None => Duration::from_secs(10),
        Some((s, v)) => values::positive(s, v, values::duration(s, v)?)?,
    };
    Ok(Config {
        dirs,
        listen,
        process_name,
        signal,
        debounce,
        max_delay,
        min_interval,
        pid_file,
        targets,
        force: raw.switch("--force")?,
        trust_handler: raw.switch("--trust-handler")?,
        retry_for,
        verbose: raw.switch("--verbose")?,
        log_format,
        webhook,
        poll,
        command,
        validate,
        confirm,
        confirm_timeout,
    })
}

fn missing(env: &str, flag: &str, what: &str) -> String {
    format!("{env} is not set (nor {flag}); set it to {what}")
}

/// The process environment, as `parse` takes it.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(OsStr::new(name))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
