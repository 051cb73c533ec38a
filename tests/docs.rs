//! The README is the user's manual: its settings table must match `--help`, its "Tested with"
//! table must list exactly the servers `tests/e2e_servers.rs` runs, and the Kubernetes and
//! compose examples it shows must be the files in `examples/`, valid YAML, with the settings a
//! working deployment needs.

mod support;

use std::path::Path;
use std::process::Command;

use support::bin;
use yaml_rust2::{Yaml, YamlLoader};

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn help() -> String {
    let out = Command::new(bin())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// (flag, env) pairs from `--help` lines like `  --signal SIGNAL [env RELOAD_SIGNAL]`.
fn help_settings() -> Vec<(String, Option<String>)> {
    help()
        .lines()
        .filter_map(|l| l.strip_prefix("  --"))
        .map(|l| {
            let flag = format!("--{}", l.split_whitespace().next().unwrap());
            let env = l
                .split_once("[env ")
                .map(|(_, rest)| rest.trim_end_matches(']').to_string());
            (flag, env)
        })
        .collect()
}

/// (env, flag) pairs from the README's settings table rows: | `ENV` | `--flag` | ...
fn readme_settings() -> Vec<(String, String)> {
    read("README.md")
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| |") || l.starts_with("|  |"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let flag = cells.get(2)?.trim_matches('`');
            flag.starts_with("--").then(|| {
                (
                    cells[1].trim_matches('`').to_string(),
                    flag.split_whitespace().next().unwrap().to_string(),
                )
            })
        })
        .collect()
}

/// (flag, default) from `--help`: the `(default X)` that ends the line after each flag's.
fn help_defaults() -> Vec<(String, Option<String>)> {
    let text = help();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let flag = format!(
                "--{}",
                w[0].strip_prefix("  --")?.split_whitespace().next()?
            );
            let default = w[1]
                .rsplit_once("(default ")
                .map(|(_, d)| d.trim_end_matches(')').to_string());
            Some((flag, default))
        })
        .collect()
}

/// (flag, default cell) of the README's settings table, backticks dropped.
fn readme_defaults() -> Vec<(String, String)> {
    read("README.md")
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| |"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let flag = cells.get(2)?.trim_matches('`');
            flag.starts_with("--").then(|| {
                let flag = flag.split_whitespace().next().unwrap_or(flag).to_string();
                (
                    flag,
                    cells.get(3).unwrap_or(&"").trim_matches('`').to_string(),
                )
            })
        })
        .collect()
}

/// The README's default column says what `--help` says, which a unit test of config.rs
/// (`help_lists_every_setting_and_its_defaults_are_the_parsers`) ties to what the parser
/// uses: a default changed in one place fails one of the two.
#[test]
fn readme_settings_defaults_match_help() {
    let readme = readme_defaults();
    for (flag, default) in help_defaults() {
        let Some((_, cell)) = readme.iter().find(|(f, _)| *f == flag) else {
            panic!("README table lacks {flag}");
        };
        match default {
            Some(d) => assert_eq!(cell, &d, "README's default of {flag}"),
            None => assert!(
                cell.is_empty() || cell.starts_with("mandatory"),
                "README gives {flag} the default {cell:?}, --help none"
            ),
        }
    }
}

#[test]
fn readme_settings_table_matches_help_exactly() {
    let help = help_settings();
    let readme = readme_settings();
    assert!(help.len() >= 10, "help lists too few settings: {help:?}");
    for (flag, env) in &help {
        let row = readme
            .iter()
            .find(|(_, f)| f == flag)
            .unwrap_or_else(|| panic!("README table lacks {flag}"));
        assert_eq!(
            env.as_deref().unwrap_or(""),
            row.0,
            "README pairs {flag} with the wrong env var"
        );
    }
    for (env, flag) in &readme {
        assert!(
            help.iter().any(|(f, _)| f == flag),
            "README documents {flag} ({env}), which --help does not know"
        );
    }
}

fn load(rel: &str) -> Yaml {
    let text = read(rel);
    let mut docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document expected");
    let readme = read("README.md");
    // The README shows the file verbatim (minus its leading comment lines).
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        readme.contains(&body),
        "README's copy of {rel} is out of date"
    );
    docs.remove(0)
}

fn known_env(name: &str) -> bool {
    help_settings()
        .iter()
        .any(|(_, e)| e.as_deref() == Some(name))
}

/// The container named `config-reloader` among `list` (containers or initContainers).
fn find_sidecar(list: &Yaml) -> Option<&Yaml> {
    list.as_vec()?
        .iter()
        .find(|c| c["name"].as_str() == Some("config-reloader"))
}

/// Checks every Kubernetes example's sidecar passes: known variables only, `CONFIG_DIR` is one
/// of its whole-volume mounts, and no probe (a failing sidecar probe takes the pod out of its
/// Service). Returns `PROCESS_NAME`.
fn check_sidecar(rel: &str, sidecar: &Yaml) -> String {
    let env = checked_sidecar_env(rel, sidecar);
    let process = env.iter().find(|(n, _)| n == "PROCESS_NAME");
    process.expect("PROCESS_NAME").1.clone()
}

/// [`check_sidecar`]'s checks; returns every (variable, value) the sidecar sets.
fn checked_sidecar_env(rel: &str, sidecar: &Yaml) -> Vec<(String, String)> {
    let env = sidecar["env"].as_vec().expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["value"].as_str())
    };
    for e in env {
        let name = e["name"].as_str().expect("env name");
        assert!(known_env(name), "{rel} sets unknown variable {name}");
    }
    let mounts = sidecar["volumeMounts"].as_vec().expect("mounts");
    for m in mounts {
        assert!(
            m["subPath"].is_badvalue(),
            "{rel}: subPath mounts are never updated by the kubelet"
        );
    }
    let dir = value("CONFIG_DIR").expect("CONFIG_DIR");
    assert!(
        mounts.iter().any(|m| m["mountPath"].as_str() == Some(dir)),
        "{rel}: CONFIG_DIR {dir} is not one of the sidecar's mounts"
    );
    for probe in ["readinessProbe", "startupProbe"] {
        assert!(
            sidecar[probe].is_badvalue(),
            "{rel}: the sidecar has a {probe}; a sidecar must not take the app out of service"
        );
    }
    // A liveness probe only on /healthz, and only where the metrics port is opened.
    let live = &sidecar["livenessProbe"];
    if !live.is_badvalue() {
        assert_eq!(live["httpGet"]["path"].as_str(), Some("/healthz"), "{rel}");
        assert!(
            value("RELOAD_LISTEN_ADDRESS").is_some(),
            "{rel}: a probe on a port never opened"
        );
    }
    // The port is opened only where metrics are wanted, and then it is declared.
    if let Some(addr) = value("RELOAD_LISTEN_ADDRESS") {
        let port: i64 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let ports = sidecar["ports"]
            .as_vec()
            .expect("the metrics port is declared");
        assert!(
            ports
                .iter()
                .any(|p| p["containerPort"].as_i64() == Some(port)),
            "{rel}"
        );
    }
    env.iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_string();
            (name, e["value"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn kubernetes_example_shares_the_pid_namespace_and_shows_check_as_a_diagnostic_not_a_probe() {
    let pod = load("examples/pod.yaml");
    assert_eq!(pod["kind"].as_str(), Some("Pod"));
    let spec = &pod["spec"];
    assert_eq!(spec["shareProcessNamespace"].as_bool(), Some(true));
    let sidecar = find_sidecar(&spec["containers"]).expect("sidecar container");
    assert_eq!(check_sidecar("examples/pod.yaml", sidecar), "nginx");
    assert!(
        read("README.md")
            .contains("kubectl exec POD -c config-reloader -- /config-reloader --check"),
        "the README shows --check as a diagnostic"
    );
}

#[test]
fn native_sidecar_example_is_a_restartable_init_container() {
    let rel = "examples/pod-native-sidecar.yaml";
    let pod = load(rel);
    let spec = &pod["spec"];
    assert_eq!(spec["shareProcessNamespace"].as_bool(), Some(true));
    let sidecar = find_sidecar(&spec["initContainers"]).expect("sidecar init container");
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"));
    assert!(find_sidecar(&spec["containers"]).is_none());
    let process = check_sidecar(rel, sidecar);
    assert!(
        spec["containers"]
            .as_vec()
            .expect("containers")
            .iter()
            .any(|c| c["name"].as_str() == Some(process.as_str())),
        "{rel}: no app container named {process}"
    );
}

#[test]
fn pgbouncer_example_runs_both_containers_as_one_non_root_uid() {
    let rel = "examples/pgbouncer.yaml";
    let pod = load(rel);
    let spec = &pod["spec"];
    assert_eq!(spec["shareProcessNamespace"].as_bool(), Some(true));
    let context = &spec["securityContext"];
    assert_eq!(context["runAsNonRoot"].as_bool(), Some(true));
    assert!(context["runAsUser"].as_i64().is_some_and(|uid| uid > 0));
    let containers = spec["containers"].as_vec().expect("containers");
    assert!(
        containers
            .iter()
            .all(|c| c["securityContext"]["runAsUser"].is_badvalue()),
        "{rel}: one UID for both containers, set on the pod"
    );
    let sidecar = find_sidecar(&spec["containers"]).expect("sidecar container");
    assert_eq!(check_sidecar(rel, sidecar), "pgbouncer");
}

#[test]
fn prometheus_example_reloads_over_loopback_http_without_a_shared_pid_namespace() {
    let rel = "examples/prometheus.yaml";
    let pod = load(rel);
    let spec = &pod["spec"];
    assert!(
        spec["shareProcessNamespace"].is_badvalue(),
        "{rel}: a reload over HTTP needs no shared PID namespace"
    );
    let sidecar = find_sidecar(&spec["containers"]).expect("sidecar container");
    let env = checked_sidecar_env(rel, sidecar);
    let value = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(value("PROCESS_NAME"), None, "{rel}: nothing to signal");
    let url = value("RELOAD_WEBHOOK_URL").expect("RELOAD_WEBHOOK_URL");
    let port = url
        .strip_prefix("http://127.0.0.1:")
        .or_else(|| url.strip_prefix("http://localhost:"))
        .unwrap_or_else(|| panic!("{rel}: {url} is not on the pod's loopback"))
        .split('/')
        .next()
        .unwrap();
    let app = spec["containers"]
        .as_vec()
        .expect("containers")
        .iter()
        .find(|c| c["name"].as_str() == Some("prometheus"))
        .expect("a prometheus container");
    let args: Vec<&str> = app["args"]
        .as_vec()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        args.contains(&"--web.enable-lifecycle"),
        "{rel}: /-/reload needs it: {args:?}"
    );
    let ports: Vec<String> = app["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .map(|p| p.to_string())
        .collect();
    assert!(
        ports.iter().any(|p| p == port),
        "{rel}: {url} is not the app's port {ports:?}"
    );
    // The binary accepts the example's settings (exit 2 would be a rejection).
    let dir = testkit::TempDir::new("docs-prometheus").expect("temp dir");
    let out = Command::new(bin())
        .env_clear()
        .envs(testkit::tree::run_mark())
        .env("CONFIG_DIR", dir.path())
        .env("RELOAD_WEBHOOK_URL", url)
        .arg("--check")
        .output()
        .expect("run --check");
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (app, PROCESS_NAME, RELOAD_SIGNAL) of every case in `tests/e2e_servers.rs`, from its
/// `Server { app: "..", process: "..", signal: "..", .. }` literals.
fn e2e_cases() -> Vec<(String, String, String)> {
    let source = read("tests/e2e_servers.rs");
    let field = |line: &str, key: &str| {
        let rest = line.trim().strip_prefix(key)?.strip_prefix(": \"")?;
        Some(rest.split('"').next()?.to_string())
    };
    let mut cases = Vec::new();
    let mut app = None;
    let mut process = None;
    for line in source.lines() {
        if let Some(v) = field(line, "app") {
            app = Some(v);
        } else if let Some(v) = field(line, "process") {
            process = Some(v);
        } else if let Some(signal) = field(line, "signal") {
            let (a, p) = (app.take(), process.take());
            cases.push((a.expect("app before signal"), p.expect("process"), signal));
        }
    }
    cases
}

/// (app, PROCESS_NAME, RELOAD_SIGNAL) of the README's "Tested with" rows; the two names are
/// the first `code` span of their cells.
fn readme_tested_with() -> Vec<(String, String, String)> {
    let readme = read("README.md");
    let section = readme
        .split_once("\n## Tested with\n")
        .expect("a \"Tested with\" section")
        .1;
    let code = |cell: &str| cell.split('`').nth(1).unwrap_or_default().to_string();
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_string(), code(cells[3]), code(cells[4]))
        })
        .collect()
}

#[test]
fn readme_tested_with_table_lists_exactly_the_apps_with_e2e_cases() {
    let mut cases = e2e_cases();
    let mut rows = readme_tested_with();
    assert!(cases.len() >= 7, "too few e2e cases found: {cases:?}");
    cases.sort();
    rows.sort();
    assert_eq!(
        rows, cases,
        "README \"Tested with\" rows (app, PROCESS_NAME, RELOAD_SIGNAL) vs tests/e2e_servers.rs"
    );
}

#[test]
fn compose_example_shares_the_app_pid_namespace() {
    let compose = load("examples/docker-compose.yml");
    let sidecar = &compose["services"]["config-reloader"];
    assert_eq!(sidecar["pid"].as_str(), Some("service:app"));
    let env = sidecar["environment"].as_hash().expect("environment map");
    for k in env.keys() {
        let name = k.as_str().expect("env name");
        assert!(known_env(name), "the example sets unknown variable {name}");
    }
    assert!(!compose["services"]["app"].is_badvalue());
}

/// Every file under `src/`, concatenated: what the binary can print.
fn source_text() -> String {
    let mut out = String::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).expect("read source"));
            }
        }
    }
    out
}

#[test]
fn every_log_line_in_the_troubleshooting_table_is_one_the_binary_prints() {
    let readme = read("README.md");
    let section = readme
        .split("## Troubleshooting by log line")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Troubleshooting section");
    let source = source_text();
    let mut checked = 0;
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let line = row[3..].split('`').next().unwrap_or_default();
        // `level message key=… …`: the message is the words before the first field.
        let words: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .take_while(|w| !w.contains('=') && !w.contains('…') && !w.starts_with('('))
            .collect();
        assert!(!words.is_empty(), "no message in row {row:?}");
        // A one-word message is looked for as a string literal; a longer one may end in a value
        // the binary formats in (`no process named X`).
        let found = if words.len() == 1 {
            source.contains(&format!("{:?}", words[0]))
        } else {
            (2..=words.len())
                .rev()
                .any(|n| source.contains(&words[..n].join(" ")))
        };
        assert!(
            found,
            "the README documents {line:?}, which src/ never prints"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} rows checked");
}

/// The README's `COPY --from=config-reloader-sidecar:latest SRC DEST` line: SRC must be where
/// `Dockerfile.scratch` puts the binary, and the e2e image (`tests/docker/servers.rs`) copies
/// it the same way. Returns DEST, the path the embedded examples run.
fn embedded_binary() -> String {
    let scratch = read("Dockerfile.scratch");
    let shipped = scratch
        .lines()
        .find(|l| l.starts_with("COPY "))
        .and_then(|l| l.split_whitespace().last())
        .expect("Dockerfile.scratch copies the binary");
    let readme = read("README.md");
    let copy = readme
        .lines()
        .find(|l| l.starts_with("COPY --from=config-reloader-sidecar:latest "))
        .expect("the README shows the COPY --from line");
    let words: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{copy}");
    assert_eq!(
        words[2], shipped,
        "the README copies a path the image does not have"
    );
    assert!(
        read("tests/docker/servers.rs").contains(&format!("{} {}", words[2], words[3])),
        "the e2e image copies the binary elsewhere than the README: {copy}"
    );
    words[3].to_string()
}

fn strings(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn embedded_example_runs_the_apps_image_twice_sharing_its_pid_namespace() {
    let bin = embedded_binary();
    let rel = "examples/pod-embedded.yaml";
    let pod = load(rel);
    let spec = &pod["spec"];
    assert_eq!(spec["shareProcessNamespace"].as_bool(), Some(true));
    let containers = spec["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 2, "{rel}: the app and the reloader");
    assert_eq!(
        containers[0]["image"], containers[1]["image"],
        "{rel}: one image"
    );
    let reloader = find_sidecar(&spec["containers"]).expect("reloader container");
    assert_eq!(strings(&reloader["command"]), [bin.as_str()]);
    let process = check_sidecar(rel, reloader);
    assert!(
        containers
            .iter()
            .any(|c| c["name"].as_str() == Some(process.as_str())),
        "{rel}: no app container named {process}"
    );
}

#[test]
fn entrypoint_example_runs_the_app_after_dashdash_without_sharing_a_pid_namespace() {
    let bin = embedded_binary();
    let readme = read("README.md");
    assert!(
        readme.contains(&format!(r#"ENTRYPOINT ["{bin}", "--"]"#)),
        "the README shows the ENTRYPOINT form"
    );
    let rel = "examples/pod-entrypoint.yaml";
    let pod = load(rel);
    let spec = &pod["spec"];
    assert!(
        spec["shareProcessNamespace"].is_badvalue(),
        "{rel}: not needed"
    );
    let containers = spec["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1, "{rel}: one container");
    let app = &containers[0];
    assert_eq!(strings(&app["command"]), [bin.as_str(), "--"]);
    assert!(
        !strings(&app["args"]).is_empty(),
        "{rel}: the app's command"
    );
    let env = app["env"].as_vec().expect("env");
    for e in env {
        let name = e["name"].as_str().expect("env name");
        assert!(known_env(name), "{rel} sets unknown variable {name}");
    }
    let dir = env
        .iter()
        .find(|e| e["name"].as_str() == Some("CONFIG_DIR"))
        .and_then(|e| e["value"].as_str())
        .expect("CONFIG_DIR");
    let mounts = app["volumeMounts"].as_vec().expect("mounts");
    assert!(
        mounts.iter().any(|m| m["mountPath"].as_str() == Some(dir)),
        "{rel}: CONFIG_DIR {dir} is not mounted"
    );
}
