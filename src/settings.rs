//! The settings table: every env var and flag with its metavariable, default and help line,
//! in the order `--help` and the README show them, and `--help` rendered from it. Plain
//! data; `config` parses by it and never keeps a second list. A setting is named by its
//! [`Setting`] variant, never by its flag string, so a misspelt name does not compile; each
//! default is written once, as the help's text, and `config` parses that same text when the
//! setting is absent.

/// One setting, the key of its row in [`SETTINGS`] (`SETTINGS[s as usize]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    ConfigDir,
    ProcessName,
    PidFile,
    Signal,
    Debounce,
    MaxDelay,
    MinInterval,
    Targets,
    WebhookUrl,
    WebhookMethod,
    WebhookTimeout,
    PollInterval,
    ListenAddress,
    Force,
    TrustHandler,
    RetryFor,
    ValidateCommand,
    ValidateTimeout,
    Confirm,
    ConfirmTimeout,
    Verbose,
    LogFormat,
    Check,
    Help,
    Version,
}

impl Setting {
    /// Its row of [`SETTINGS`].
    pub fn row(self) -> &'static Row {
        &SETTINGS[self as usize]
    }
}

/// One row: its setting, env var (if any), flag, a metavariable for values, default and help.
pub struct Row {
    /// Which setting this row describes.
    pub setting: Setting,
    /// Environment variable, e.g. `CONFIG_DIR`; `None` for flag-only actions like `--help`.
    pub env: Option<&'static str>,
    /// Long flag including dashes, e.g. `--config-dir`.
    pub flag: &'static str,
    /// Placeholder shown in help; `None` for switches that take no value.
    pub value: Option<&'static str>,
    /// Default shown in help, and the text parsed when the setting is absent; `None` when
    /// mandatory or not applicable.
    pub default: Option<&'static str>,
    /// One-line description.
    pub help: &'static str,
}

const fn row(
    setting: Setting,
    env: Option<&'static str>,
    flag: &'static str,
    value: Option<&'static str>,
    default: Option<&'static str>,
    help: &'static str,
) -> Row {
    Row {
        setting,
        env,
        flag,
        value,
        default,
        help,
    }
}

use Setting as S;

/// Every setting the program understands, in the order `--help` and the README show them.
pub const SETTINGS: &[Row] = &[
    row(S::ConfigDir, Some("CONFIG_DIR"), "--config-dir", Some("DIR[,DIR...]"), None, "directories to watch recursively (mandatory)"),
    row(S::ProcessName, Some("PROCESS_NAME"), "--process-name", Some("NAME"), None, "exact process name to signal: /proc/PID/comm, or for names over 15 bytes argv[0]'s basename (a #! script: the script's) (mandatory unless RELOAD_WEBHOOK_URL or -- APP is given)"),
    row(S::PidFile, Some("RELOAD_PID_FILE"), "--pid-file", Some("FILE"), None, "signal the process whose pid this file holds, read afresh at every reload (e.g. nginx's pid file on a shared emptyDir); refused when the file is older than that process (a recycled pid); with PROCESS_NAME, both must agree"),
    row(S::Signal, Some("RELOAD_SIGNAL"), "--signal", Some("SIGNAL"), Some("SIGHUP"), "signal to send: SIGHUP, HUP, hup, 1, SIGUSR1, SIGRTMIN+2, ..."),
    row(S::Debounce, Some("RELOAD_DEBOUNCE"), "--debounce", Some("DURATION"), Some("100ms"), "quiet time after the last change in a plain directory before signalling (a kubelet update goes at its commit): 0, 250ms, 2s"),
    row(S::MaxDelay, Some("RELOAD_MAX_DELAY"), "--max-delay", Some("DURATION"), Some("2s"), "longest wait during a never-ending stream of changes"),
    row(S::MinInterval, Some("RELOAD_MIN_INTERVAL"), "--min-interval", Some("DURATION"), Some("1s"), "at most one reload per interval: what changes within it after a reload is reloaded once at its end, with the latest content; an update after a quiet interval goes at once; 0: off"),
    row(S::Targets, Some("RELOAD_TARGETS"), "--targets", Some("roots|all"), Some("roots"), "roots: matches whose parent does not match (nginx master, not workers); all: every match"),
    row(S::WebhookUrl, Some("RELOAD_WEBHOOK_URL"), "--webhook-url", Some("URL"), None, "also, or instead, reload over HTTP: http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:9090/-/reload; user:password@ becomes Basic auth"),
    row(S::WebhookMethod, Some("RELOAD_WEBHOOK_METHOD"), "--webhook-method", Some("METHOD"), Some("POST"), "method of the reload request: POST, PUT, GET, PATCH or DELETE"),
    row(S::WebhookTimeout, Some("RELOAD_WEBHOOK_TIMEOUT"), "--webhook-timeout", Some("DURATION"), Some("10s"), "how long one reload request may take; one wholly sent that gets no answer is not resent for that change"),
    row(S::PollInterval, Some("RELOAD_POLL_INTERVAL"), "--poll-interval", Some("auto|DURATION|0"), Some("auto"), "auto: every 5s poll the directories on FUSE, 9p, NFS, CIFS or Ceph, whose outside changes raise no inotify event; a duration: poll every directory; 0: never"),
    row(S::ListenAddress, Some("RELOAD_LISTEN_ADDRESS"), "--listen-address", Some("[HOST]:PORT"), None, "serve /metrics (Prometheus) and /healthz here, e.g. :9533, 127.0.0.1:9533, [::]:9533; an IP or nothing, no names (default: no port is opened)"),
    row(S::Force, Some("RELOAD_FORCE"), "--force", None, Some("false"), "signal whatever the verdict: no handler, only a mask, a runtime's catch-all handler, the signal ignored (it may die)"),
    row(S::TrustHandler, Some("RELOAD_TRUST_HANDLER"), "--trust-handler", None, Some("false"), "take the catch-all handler of a Go, JVM or Ruby runtime as the app's: set it when the app really reloads on the signal (signal.Notify, sun.misc.Signal.handle, Signal.trap)"),
    row(S::RetryFor, Some("RELOAD_RETRY_FOR"), "--retry-for", Some("DURATION"), Some("60s"), "how long a refused signal is retried, with backoff, for an app that may yet take it (still starting, between two sigwaits, blocking for a moment); 0: never"),
    row(S::ValidateCommand, Some("RELOAD_VALIDATE_COMMAND"), "--validate-command", Some("COMMAND"), None, "run before each reload, e.g. \"nginx -t -q\": words split at spaces, quotes group, the first looked up in PATH; any exit but 0 (or running past the timeout) cancels that reload"),
    row(S::ValidateTimeout, Some("RELOAD_VALIDATE_TIMEOUT"), "--validate-timeout", Some("DURATION"), Some("30s"), "how long the validation command may run before its process group is killed and the reload is failed"),
    row(S::Confirm, Some("RELOAD_CONFIRM"), "--confirm", Some("alive|workers|off"), Some("alive"), "after a signal, alive: the target is still the same process 1s later; workers: it started new child processes (nginx, haproxy -W, apache2, php-fpm, gunicorn); off: no check"),
    row(S::ConfirmTimeout, Some("RELOAD_CONFIRM_TIMEOUT"), "--confirm-timeout", Some("DURATION"), Some("10s"), "how long workers waits for new child processes before it reports the reload failed"),
    row(S::Verbose, Some("VERBOSE"), "--verbose", None, Some("false"), "log every event considered (true/1)"),
    row(S::LogFormat, Some("LOG_FORMAT"), "--log-format", Some("text|json"), Some("text"), "one line per event on stderr, as key=value text or JSON"),
    row(S::Check, None, "--check", None, None, "validate, print what would be watched and how each matching process would take the signal, exit 0 (ok) or 1"),
    row(S::Help, None, "--help", None, None, "print this help"),
    row(S::Version, None, "--version", None, None, "print the version"),
];

// Each row sits at its setting's index, so [`Setting::row`] cannot pick another's, and no
// setting lacks a row: checked when compiling.
const _: () = {
    assert!(SETTINGS.len() == S::Version as usize + 1);
    let mut i = 0;
    while i < SETTINGS.len() {
        assert!(SETTINGS[i].setting as usize == i);
        i += 1;
    }
};

/// `--help`, rendered from [`SETTINGS`].
pub fn help() -> String {
    let mut out = format!(
        "config-reloader {}\n\
         Watches configuration directories and signals a process once per real change.\n\n\
         Usage: config-reloader [FLAGS]                    a sidecar: signals PROCESS_NAME, calls RELOAD_WEBHOOK_URL\n\
         \x20      config-reloader [FLAGS] -- APP [ARGS...]   the app's entrypoint: runs APP as its child and reloads it\n\
         Every setting is also an environment variable; flags win.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    for s in SETTINGS {
        let flag = s
            .value
            .map_or_else(|| s.flag.to_string(), |v| format!("{} {v}", s.flag));
        let env = s.env.map(|e| format!(" [env {e}]")).unwrap_or_default();
        let default = s
            .default
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        out.push_str(&format!("  {flag}{env}\n      {}{default}\n", s.help));
    }
    out.push_str("\nExit codes: 0 ok or stopped by SIGTERM/SIGINT, 1 --check found a problem or set-up failed, 2 bad configuration;\nwith -- APP: the app's exit code, or 128+N when signal N ended it; 127 APP not found, 126 APP not executable.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant's flag is its name in kebab case and its env var that name in upper snake
    /// case, `RELOAD_`-prefixed except the Go sidecar's own four: a row keyed by the wrong
    /// variant, or an env var or flag spelt unlike its neighbours, fails here. (tests/docs.rs
    /// holds the README's table to `--help`; config_tests holds `--help`'s defaults to the
    /// parser.)
    #[test]
    fn every_rows_flag_and_env_var_spell_its_variant() {
        let mut flags = Vec::new();
        let mut envs = Vec::new();
        for s in SETTINGS {
            let mut kebab = String::from("--");
            for c in format!("{:?}", s.setting).chars() {
                if c.is_ascii_uppercase() && kebab.len() > 2 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            assert_eq!(s.flag, kebab, "{:?}", s.setting);
            let snake = kebab[2..].replace('-', "_").to_ascii_uppercase();
            if let Some(env) = s.env {
                let go = ["CONFIG_DIR", "PROCESS_NAME", "VERBOSE", "LOG_FORMAT"];
                let want = match go.contains(&snake.as_str()) {
                    true => snake.clone(),
                    false => format!("RELOAD_{snake}"),
                };
                assert_eq!(env, want, "{}", s.flag);
                envs.push(env);
            }
            flags.push(s.flag);
        }
        flags.sort_unstable();
        flags.dedup();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(flags.len(), SETTINGS.len());
        assert_eq!(
            envs.len(),
            SETTINGS.iter().filter(|s| s.env.is_some()).count()
        );
    }
}
