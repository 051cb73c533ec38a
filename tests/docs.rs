//! The README is the user's manual: its settings table must match `--help`, and the
//! Kubernetes and compose examples it shows must be the files in `examples/`, valid YAML,
//! with the settings a working deployment needs.

use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_config-reloader");

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn help() -> String {
    let out = Command::new(testkit::reloader::binary(BIN))
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

#[test]
fn kubernetes_example_shares_the_pid_namespace_and_probes_with_check() {
    let pod = load("examples/pod.yaml");
    assert_eq!(pod["kind"].as_str(), Some("Pod"));
    let spec = &pod["spec"];
    assert_eq!(spec["shareProcessNamespace"].as_bool(), Some(true));
    let containers = spec["containers"].as_vec().expect("containers");
    let sidecar = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("config-reloader"))
        .expect("sidecar container");
    let probe: Vec<&str> = sidecar["readinessProbe"]["exec"]["command"]
        .as_vec()
        .expect("exec probe")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(probe, ["/config-reloader", "--check"]);
    for e in sidecar["env"].as_vec().expect("env") {
        let name = e["name"].as_str().expect("env name");
        assert!(known_env(name), "the example sets unknown variable {name}");
    }
    for m in sidecar["volumeMounts"].as_vec().expect("mounts") {
        assert!(
            m["subPath"].is_badvalue(),
            "subPath mounts are never updated by the kubelet"
        );
    }
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
