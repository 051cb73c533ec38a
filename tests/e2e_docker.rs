//! End-to-end: the real image in real docker, next to real apps, as in a pod.
//!
//! Containers share a PID namespace the way `shareProcessNamespace: true` makes a pod's
//! containers do (`--pid=container:<other>`), and see the config directory read-only through a
//! bind mount. The test changes the directory on the host side exactly as the kubelet does
//! (`testkit::kubelet::Volume`), so the sidecar sees the same inotify events as in Kubernetes.
//!
//! Needs docker, the release musl binaries and Debian's busybox-static and nginx: `make test`
//! provides all of them. Nothing is skipped: without docker these tests fail and say why.

mod docker;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use docker::pod::{log_lines, Pod};
use docker::{
    children_of, http_get, image, uid_of, wait_docker, Container, Image, DEADLINE, QUIET,
};
use testkit::fuse::Bindfs;
use testkit::recorder::{unescape, Received};
use testkit::wait_until;

/// The images these tests use, built in parallel on first use.
const IMAGES: &[Image] = &[Image::Sidecar, Image::App, Image::Nginx];

/// The nobody UID the image runs as.
const NOBODY: &str = "65534:65534";

/// Starts the app: `/sigrecord` as `user`, recording to `/out/<name>.log` and re-reading
/// `/config/app.conf` on each signal; waits for its ready line. `pid` joins another container's
/// PID namespace.
fn start_recorder(pod: &Pod, name: &str, user: &str, pid: Option<&Container>) -> Container {
    let (config, out) = (pod.config_mount(), pod.out_mount());
    let log = format!("/out/{name}.log");
    let pid_ns = pid.map(|c| format!("container:{}", c.name));
    let mut args = vec!["--user", user, "-v", &config, "-v", &out];
    if let Some(ns) = &pid_ns {
        args.extend(["--pid", ns]);
    }
    let app_image = &image(Image::App).tag;
    args.extend([app_image.as_str(), "/sigrecord", "--out", &log]);
    args.extend(["--read", "/config/app.conf"]);
    let app = Container::run(name, &args);
    wait_until(DEADLINE, "the app's ready line", || {
        fs::read_to_string(pod.out(&format!("{name}.log")))
            .ok()
            .filter(|t| t.contains("ready pid="))
    });
    app
}

/// Starts the sidecar image in `target`'s PID namespace, watching `/config` for `process`.
fn start_sidecar(pod: &Pod, target: &Container, process: &str) -> Container {
    pod.start_sidecar(target, &[("PROCESS_NAME", process)])
}

/// The `sig` lines in a sigrecord `--out` file (empty if it does not exist yet).
fn received(path: &Path) -> Vec<Received> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("sig ")?;
            let field = |key: &str| {
                rest.split(' ')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            };
            let content = field("content")?;
            Some(Received {
                pid: field("pid")?.parse().ok()?,
                signo: field("signo")?.parse().ok()?,
                t_ns: field("t_ns")?.parse().ok()?,
                content: match content.strip_prefix("ERR:") {
                    Some(errno) => Err(errno.parse().ok()?),
                    None => Ok(unescape(content)?),
                },
            })
        })
        .collect()
}

/// Waits until `path` holds at least `n` signals, returns them all.
fn wait_received(path: &Path, n: usize) -> Vec<Received> {
    wait_until(
        DEADLINE,
        &format!("{n} signal(s) in {}", path.display()),
        || {
            let got = received(path);
            (got.len() >= n).then_some(got)
        },
    )
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[test]
fn kubelet_update_in_a_pod_like_pair_reloads_the_app_exactly_once_per_update() {
    let pod = Pod::new(&[("app.conf", b"v1")]);
    let app = start_recorder(&pod, "app", NOBODY, None);
    let sidecar = start_sidecar(&pod, &app, "sigrecord");
    assert_eq!(
        uid_of(sidecar.host_pid()),
        65534,
        "the image runs as nobody"
    );

    let log = pod.out("app.log");
    for (n, value) in [(1, "v2"), (2, "v3")] {
        let commit_ns = pod.update(&[("app.conf", value.as_bytes())]);
        let got = wait_received(&log, n);
        let last = &got[n - 1];
        assert_eq!(last.signo, libc::SIGHUP);
        assert_eq!(
            last.content.as_deref(),
            Ok(value.as_bytes()),
            "the app saw the new content when signalled"
        );
        eprintln!(
            "update {n}: SIGHUP {:.1} ms after the commit",
            ms(last.t_ns.saturating_sub(commit_ns))
        );
    }
    std::thread::sleep(QUIET);
    assert_eq!(received(&log).len(), 2, "exactly one SIGHUP per update");
    assert_eq!(log_lines(&sidecar, "info reloaded ").len(), 2);

    // The `--check` diagnostic the README shows (`kubectl exec`) works inside the image.
    let check = docker::docker(&["exec", &sidecar.name, "/config-reloader", "--check"]);
    assert!(
        check.status.success(),
        "--check in the running sidecar failed: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(sidecar.is_running());
}

#[test]
fn nginx_reloads_the_new_value_with_the_same_master_and_ignores_a_chmod_only_change() {
    let pod = Pod::new(&[("value.conf", b"return 200 \"blue\\n\";\n")]);
    let (config, user) = (pod.config_mount(), NOBODY);
    let nginx = Container::run(
        "nginx",
        &[
            "--user",
            user,
            "-v",
            &config,
            &image(Image::Nginx).tag,
            "/usr/sbin/nginx",
        ],
    );
    let ip = nginx.ip();
    wait_until(DEADLINE, "nginx to serve blue", || {
        (http_get(&ip, 8080)? == "blue\n").then_some(())
    });
    let sidecar = start_sidecar(&pod, &nginx, "nginx");
    let master = nginx.host_pid();
    let workers = children_of(master);
    assert_eq!(workers.len(), 1, "one worker generation: {workers:?}");

    let green: &[(&str, &[u8])] = &[("value.conf", b"return 200 \"green\\n\";\n")];
    let started = Instant::now();
    pod.update(green);
    wait_until(DEADLINE, "nginx to serve green", || {
        (http_get(&ip, 8080)? == "green\n").then_some(())
    });
    eprintln!(
        "nginx served the new value {:.0} ms after the update started",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(nginx.host_pid(), master, "the master was not restarted");
    assert!(nginx.is_running());
    // The old worker exits gracefully; one new one takes its place.
    let new_workers = wait_until(DEADLINE, "the old nginx worker to exit", || {
        let now = children_of(master);
        (now.len() == 1 && now != workers).then_some(now)
    });

    pod.chmod_everything();
    pod.resync(green);
    std::thread::sleep(QUIET);
    assert_eq!(
        children_of(master),
        new_workers,
        "no new worker generation without a content change"
    );
    assert_eq!(http_get(&ip, 8080).as_deref(), Some("green\n"));
    assert_eq!(log_lines(&sidecar, "info reloaded ").len(), 1);
}

/// As under gVisor or Kata: the pod sees its ConfigMap through a filesystem whose outside
/// changes raise no inotify event. Here a bindfs (FUSE) view of the volume on the host is
/// bind-mounted into both containers and the kubelet writes the volume itself; the sidecar
/// detects FUSE at start and finds the update by polling every 5 s.
#[test]
fn sidecar_seeing_the_volume_through_fuse_polls_and_reloads_the_app_once() {
    let mut pod = Pod::new(&[("app.conf", b"v1")]);
    let view = pod.scratch_dir("fuse-view");
    let fuse = Bindfs::mount(pod.volume.root(), &view);
    pod.view_through(fuse.view());
    let app = start_recorder(&pod, "fuseapp", NOBODY, None);
    let sidecar = start_sidecar(&pod, &app, "sigrecord");
    assert_eq!(
        log_lines(&sidecar, "info polling "),
        ["info polling dir=/config fs=fuse interval=5s reason=\"changes made outside this mount raise no inotify event\""],
        "the sidecar sees /config as FUSE (dockerd must share this mount namespace)"
    );

    let log = pod.out("fuseapp.log");
    for (n, value) in [(1, "v2"), (2, "v3")] {
        let commit_ns = pod.update(&[("app.conf", value.as_bytes())]);
        let got = wait_received(&log, n);
        let last = &got[n - 1];
        assert_eq!(last.content.as_deref(), Ok(value.as_bytes()));
        let after = Duration::from_nanos(last.t_ns.saturating_sub(commit_ns));
        eprintln!(
            "FUSE update {n}: SIGHUP {} ms after the commit",
            after.as_millis()
        );
        // One 5 s interval, the 100 ms debounce, and slack for a loaded machine.
        assert!(after <= Duration::from_millis(6100), "{after:?}");
    }
    std::thread::sleep(QUIET);
    assert_eq!(received(&log).len(), 2, "exactly one SIGHUP per update");
    assert_eq!(log_lines(&sidecar, "info reloaded ").len(), 2);
    let check = docker::docker(&["exec", &sidecar.name, "/config-reloader", "--check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("poll /config fs=fuse every 5s: "), "{out}");
}

#[test]
fn app_running_as_root_gets_an_eperm_line_and_the_sidecar_keeps_running() {
    let pod = Pod::new(&[("app.conf", b"v1")]);
    let app = start_recorder(&pod, "rootapp", "0:0", None);
    let sidecar = start_sidecar(&pod, &app, "sigrecord");

    for n in 1..=2 {
        pod.update(&[("app.conf", format!("v{}", n + 1).as_bytes())]);
        let lines = wait_docker(DEADLINE, &format!("{n} EPERM line(s)"), || {
            let lines: Vec<String> = sidecar
                .logs()
                .lines()
                .filter(|l| l.contains("EPERM") && !l.contains("reload failed"))
                .map(str::to_string)
                .collect();
            (lines.len() >= n).then_some(lines)
        });
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("error ") && l.contains("hint=")),
            "EPERM lines are errors with a hint: {lines:?}"
        );
        assert!(sidecar.is_running(), "the sidecar survives EPERM");
    }
    assert!(received(&pod.out("rootapp.log")).is_empty());
}

#[test]
fn pause_like_pid_1_is_never_signalled() {
    let pod = Pod::new(&[("app.conf", b"v1")]);
    // PID 1 of the shared namespace, as `pause` is in a pod: a shell that records any SIGHUP.
    // It runs as the sidecar's UID so a stray signal would be delivered, not refused.
    let out = pod.out_mount();
    let pause = Container::run(
        "pause",
        &[
            "--user",
            NOBODY,
            "-v",
            &out,
            &image(Image::App).tag,
            "/bin/sh",
            "-c",
            "trap 'echo HUP >> /out/pause.log' HUP; trap 'exit 0' TERM; echo ready > /out/pause.ready; \
             while :; do sleep 3600 & wait $!; kill $! 2>/dev/null; done",
        ],
    );
    wait_until(DEADLINE, "the pause shell", || {
        pod.out("pause.ready").exists().then_some(())
    });
    let _app = start_recorder(&pod, "app", NOBODY, Some(&pause));
    let sidecar = start_sidecar(&pod, &pause, "sigrecord");
    let ready = fs::read_to_string(pod.out("app.log")).expect("app log");
    assert!(
        !ready.lines().any(|l| l == "ready pid=1"),
        "the app is not PID 1: {ready}"
    );

    pod.update(&[("app.conf", b"v2")]);
    let got = wait_received(&pod.out("app.log"), 1);
    assert_eq!(got[0].content.as_deref(), Ok(&b"v2"[..]));
    std::thread::sleep(QUIET);
    assert!(
        !pod.out("pause.log").exists(),
        "PID 1 was signalled; sidecar said:\n{}",
        sidecar.logs()
    );
    assert_eq!(received(&pod.out("app.log")).len(), 1);

    // Control: PID 1 does record a SIGHUP when one is sent, so the absence above means something.
    docker::docker_ok(&["kill", "-s", "HUP", &pause.name]);
    wait_until(DEADLINE, "the pause shell to record a SIGHUP", || {
        pod.out("pause.log").exists().then_some(())
    });
}

#[test]
fn missing_process_name_exits_2_with_one_line_in_docker_logs() {
    let pod = Pod::new(&[("app.conf", b"v1")]);
    let config = pod.config_mount();
    let sidecar = Container::run(
        "badconfig",
        &[
            "-v",
            &config,
            "-e",
            "CONFIG_DIR=/config",
            &image(Image::Sidecar).tag,
        ],
    );
    wait_docker(DEADLINE, "the sidecar to exit", || {
        (!sidecar.is_running()).then_some(())
    });
    assert_eq!(sidecar.inspect("{{.State.ExitCode}}"), "2");
    let logs = sidecar.logs();
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {logs:?}");
    assert!(
        lines[0].contains("PROCESS_NAME"),
        "names the variable: {logs:?}"
    );
}

#[test]
fn release_binary_is_static_and_the_image_fits_in_its_budget() {
    let bin = docker::musl_binary("config-reloader");
    assert!(
        docker::is_static(&bin),
        "ldd finds libraries in {}",
        bin.display()
    );
    let size: u64 = docker::docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Size}}",
        &image(Image::Sidecar).tag,
    ])
    .parse()
    .expect("image size");
    eprintln!(
        "binary {} bytes, image {size} bytes",
        fs::metadata(&bin).expect("stat").len()
    );
    let budget = testkit::SIZE_BUDGET_KIB;
    assert!(
        size <= budget * 1024,
        "image is {size} bytes, over {budget} KiB"
    );
}
