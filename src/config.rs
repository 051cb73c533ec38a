//! Configuration: environment variables and command-line flags become one checked [`Config`].
//!
//! One table, [`SETTINGS`] (in `settings`), is the single source of truth: it drives parsing,
//! the defaults, `--help` and the README check; a setting is looked up by its [`Setting`].
//! Every setting is an env var (drop-in compatible with the original Go sidecar's
//! `CONFIG_DIR`, `PROCESS_NAME`, `RELOAD_SIGNAL`, `VERBOSE`) and a flag; flags win. Any bad
//! input becomes one [`ConfigError`] line naming the variable or flag, the bad value and what is
//! accepted; `main` prints it and exits 2 before anything is watched or signalled.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use crate::confirm;
use crate::log::LogFormat;
use crate::poll::Poll;
pub use crate::settings::{help, Setting, SETTINGS};
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

/// The raw values of every setting, flags over env, at the setting's index.
struct Raws(Vec<Option<Raw>>);

impl Raws {
    /// The value given, by flag or env.
    fn get(&self, s: Setting) -> Option<&Raw> {
        self.0[s as usize].as_ref()
    }

    /// The value given, as text.
    fn text(&self, s: Setting) -> Result<Option<(&str, &str)>, ConfigError> {
        self.get(s)
            .map(|r| Ok((r.source.as_str(), values::text(&r.source, &r.value)?)))
            .transpose()
    }

    /// The value given, or else the row's default text (the one `--help` shows) under its flag:
    /// the one place a default is read. A row without a default asked for one is a bug that
    /// the unit tests meet at once (every setting is parsed in every test).
    fn value(&self, s: Setting) -> Result<(&str, &str), ConfigError> {
        match self.text(s)? {
            Some(given) => Ok(given),
            None => default(s)
                .ok_or_else(|| ConfigError(format!("{} has no default; set it", s.row().flag))),
        }
    }

    fn switch(&self, s: Setting) -> Result<bool, ConfigError> {
        self.text(s)?
            .or_else(|| default(s))
            .map_or(Ok(false), |(source, v)| values::boolean(source, v))
    }
}

/// The row's default text, as `(flag, text)`.
fn default(s: Setting) -> Option<(&'static str, &'static str)> {
    let row = s.row();
    row.default.map(|d| (row.flag, d))
}

/// Parses the command line (without argv[0]) and the environment into an [`Action`].
///
/// `env` is a lookup function so tests can pass a map instead of the process environment.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Action, ConfigError> {
    let mut raw: Vec<Option<Raw>> = SETTINGS.iter().map(|_| None).collect();
    for s in SETTINGS {
        let Some(name) = s.env else { continue };
        let Some(value) = env(name) else { continue };
        // An empty optional variable means "unset", as compose files and Helm charts often
        // render `VAR: ""`; an empty mandatory one is reported when checked below.
        if value.as_encoded_bytes().trim_ascii().is_empty() && s.default.is_some() {
            continue;
        }
        raw[s.setting as usize] = Some(Raw {
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
        let Some(s) = SETTINGS.iter().find(|s| s.flag == flag) else {
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
        let value = match (s.value, inline) {
            (_, Some(v)) => OsString::from(v),
            (None, None) => OsString::from("true"),
            (Some(meta), None) => match args.next() {
                Some(v) => v,
                None => return err(format!("{} needs a value: {} {meta}", s.flag, s.flag)),
            },
        };
        raw[s.setting as usize] = Some(Raw {
            source: s.flag.to_string(),
            value,
        });
    }
    let raw = Raws(raw);

    if raw.switch(Setting::Help)? {
        return Ok(Action::Help);
    }
    if raw.switch(Setting::Version)? {
        return Ok(Action::Version);
    }
    let config = checked(&raw, command)?;
    Ok(if raw.switch(Setting::Check)? {
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
        match raw.get(Setting::ConfigDir) {
            None => return err(missing(
                Setting::ConfigDir,
                "a comma-separated list of directories to watch, e.g. CONFIG_DIR=/etc/nginx/conf.d",
            )),
            Some(r) => values::dirs(&r.source, &r.value)?,
        };
    // Checked even without a URL: a typo in a setting that goes unused would hide the mistake.
    let (s, v) = raw.value(Setting::WebhookMethod)?;
    let method = values::method(s, v)?;
    let (s, v) = raw.value(Setting::WebhookTimeout)?;
    let timeout = values::positive(s, v, values::duration(s, v)?)?;
    let webhook = match raw.get(Setting::WebhookUrl) {
        None => None,
        Some(r) => Some(Webhook {
            url: values::url(&r.source, &r.value)?,
            method,
            timeout,
        }),
    };
    let pid_file = match raw.get(Setting::PidFile) {
        None => None,
        Some(r) => Some(values::pid_file(&r.source, &r.value)?),
    };
    let process_name = match raw.get(Setting::ProcessName) {
        None if webhook.is_none() && command.is_empty() && pid_file.is_none() => {
            return err(missing(
                Setting::ProcessName,
                "the exact name of the process to signal, e.g. PROCESS_NAME=nginx (or set RELOAD_PID_FILE or RELOAD_WEBHOOK_URL, or run the app as config-reloader -- APP)",
            ))
        }
        None => None,
        Some(r) => Some(values::process_name(&r.source, &r.value)?),
    };
    let poll = match raw.value(Setting::PollInterval)? {
        (_, v) if v.trim().eq_ignore_ascii_case("auto") => Poll::Auto,
        (s, v) => match values::duration(s, v)? {
            Duration::ZERO => Poll::Off,
            d => Poll::Every(values::poll_interval(s, v, d)?),
        },
    };
    let (s, v) = raw.value(Setting::Signal)?;
    let signal = values::signal(s, v)?;
    let (s, v) = raw.value(Setting::Debounce)?;
    let debounce = values::duration(s, v)?;
    let max_delay = match raw.text(Setting::MaxDelay)? {
        // The default cap grows with the debounce instead of contradicting it.
        None => {
            let (s, v) = raw.value(Setting::MaxDelay)?;
            values::duration(s, v)?.max(debounce)
        }
        Some((source, v)) => {
            let d = values::duration(source, v)?;
            if d < debounce {
                return err(format!("{source}={v:?} is shorter than the debounce ({} ms); use a value of at least the debounce", debounce.as_millis()));
            }
            d
        }
    };
    let (s, v) = raw.value(Setting::MinInterval)?;
    let min_interval = values::duration(s, v)?;
    let (s, v) = raw.value(Setting::RetryFor)?;
    let retry_for = values::duration(s, v)?;
    let (s, v) = raw.value(Setting::Targets)?;
    let targets = values::choice(s, v, &[("roots", Targets::Roots), ("all", Targets::All)])?;
    let (s, v) = raw.value(Setting::LogFormat)?;
    let log_format = values::choice(
        s,
        v,
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    )?;
    let listen = match raw.text(Setting::ListenAddress)? {
        None => None,
        Some((s, v)) => match crate::listen::parse_address(v) {
            Some(a) => Some(a),
            None => return err(format!("{s}={v:?} is not an address to listen on; use :PORT, IPv4:PORT or [IPv6]:PORT, e.g. :9533 (no host names)")),
        },
    };
    let (s, v) = raw.value(Setting::ValidateTimeout)?;
    let validate_timeout = values::positive(s, v, values::duration(s, v)?)?;
    let validate = raw
        .text(Setting::ValidateCommand)?
        .map(|(s, v)| validate::parse(s, v, validate_timeout))
        .transpose()?;
    let (s, v) = raw.value(Setting::Confirm)?;
    let confirm = {
        use confirm::Mode::*;
        values::choice(
            s,
            v,
            &[("alive", Alive), ("workers", Workers), ("off", Off)],
        )?
    };
    let (s, v) = raw.value(Setting::ConfirmTimeout)?;
    let confirm_timeout = values::positive(s, v, values::duration(s, v)?)?;
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
        force: raw.switch(Setting::Force)?,
        trust_handler: raw.switch(Setting::TrustHandler)?,
        retry_for,
        verbose: raw.switch(Setting::Verbose)?,
        log_format,
        webhook,
        poll,
        command,
        validate,
        confirm,
        confirm_timeout,
    })
}

/// `ENV is not set (nor --flag); set it to WHAT`, for a mandatory setting.
fn missing(s: Setting, what: &str) -> String {
    let row = s.row();
    format!(
        "{} is not set (nor {}); set it to {what}",
        row.env.unwrap_or(row.flag),
        row.flag
    )
}

/// The process environment, as `parse` takes it.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(OsStr::new(name))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
