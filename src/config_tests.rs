//! Unit tests of the settings parser.

use super::*;
use std::collections::HashMap;

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Action, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(args.iter().map(OsString::from), |k| {
        env.get(k).map(OsString::from)
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
    assert_eq!(c.dirs, vec![PathBuf::from("/tmp")]);
    assert_eq!(c.process_name.as_deref(), Some(&b"nginx"[..]));
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
    assert_eq!(c.process_name.as_deref(), Some(&b"haproxy"[..]));
    assert_eq!(c.signal, Signal(libc::SIGUSR2));
    assert_eq!(c.debounce, Duration::ZERO);
}

#[test]
fn comma_separated_dirs_are_trimmed_and_deduplicated() {
    let c = config(
        &[],
        &[("CONFIG_DIR", " /tmp, /, /tmp,"), ("PROCESS_NAME", "x")],
    );
    assert_eq!(c.dirs, vec![PathBuf::from("/tmp"), PathBuf::from("/")]);
}

#[test]
fn missing_mandatory_values_name_the_variable() {
    assert!(error(&[], &[("PROCESS_NAME", "x")]).starts_with("CONFIG_DIR is not set"));
    assert!(error(&[], &[("CONFIG_DIR", "/tmp")]).starts_with("PROCESS_NAME is not set"));
    assert!(error(&[], &[("CONFIG_DIR", "/tmp"), ("PROCESS_NAME", " ")])
        .starts_with("PROCESS_NAME is empty"));
    assert!(
        error(&[], &[("CONFIG_DIR", ","), ("PROCESS_NAME", "x")]).contains("names no directory")
    );
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
        e.contains("CONFIG_DIR=") && e.contains("/does/not/exist") && e.contains("does not exist"),
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

/// Was: help was checked against the table it renders from, so it could not fail. Now each
/// default the help shows must be what the parser uses when the setting is absent (set to
/// that text, by env and by flag, the configuration is the same), and each flag it lists is
/// one the parser accepts.
#[test]
fn help_lists_every_setting_and_its_defaults_are_the_parsers() {
    let h = help();
    // With a URL, so the reload request's settings land in the configuration too.
    let base = [
        ("CONFIG_DIR", "/tmp"),
        ("PROCESS_NAME", "nginx"),
        ("RELOAD_WEBHOOK_URL", "http://127.0.0.1:9/"),
    ];
    let unset = format!("{:?}", config(&[], &base));
    for s in SETTINGS {
        assert!(h.contains(s.flag), "{}", s.flag);
        let (Some(env), Some(default)) = (s.env, s.default) else {
            continue;
        };
        assert!(h.contains(&format!("[env {env}]")), "{env}");
        assert!(h.contains(&format!("(default {default})")), "{env}");
        let mut by_env = base.to_vec();
        by_env.push((env, default));
        assert_eq!(
            format!("{:?}", config(&[], &by_env)),
            unset,
            "{env}={default}"
        );
        let by_flag = match s.value {
            Some(_) => config(&[s.flag, default], &base),
            None if default == "false" => config(&[], &base),
            None => config(&[s.flag], &base),
        };
        assert_eq!(format!("{by_flag:?}"), unset, "{} {default}", s.flag);
    }
}

#[test]
fn min_interval_defaults_to_one_second_and_zero_turns_it_off() {
    assert_eq!(config(&[], BASE).min_interval, Duration::from_secs(1));
    let off = config(&["--min-interval", "0"], BASE);
    assert_eq!(off.min_interval, Duration::ZERO);
    let mut env = BASE.to_vec();
    env.push(("RELOAD_MIN_INTERVAL", "5s"));
    assert_eq!(config(&[], &env).min_interval, Duration::from_secs(5));
    let e = error(&["--min-interval", "soon"], BASE);
    assert!(e.starts_with("--min-interval=\"soon\""), "{e}");
}

#[test]
fn a_pid_file_alone_names_the_target_and_may_not_exist_yet() {
    let c = config(
        &[],
        &[
            ("CONFIG_DIR", "/tmp"),
            ("RELOAD_PID_FILE", "/run/nginx/nginx.pid"),
        ],
    );
    assert_eq!(c.pid_file, Some(PathBuf::from("/run/nginx/nginx.pid")));
    assert_eq!(c.process_name, None);
    let e = error(&["--pid-file", "/tmp"], BASE);
    assert!(e.contains("is a directory"), "{e}");
    let e = error(&["--pid-file", " "], BASE);
    assert!(e.contains("names no file"), "{e}");
}
