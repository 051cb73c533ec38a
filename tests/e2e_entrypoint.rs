//! End-to-end for issue 15: the binary embedded in a distroless app image, both ways the
//! README's "Embedding the binary" shows.
//!
//! The app image is Debian's nginx and its libraries, nothing else (no shell, no package
//! manager), run as 65534; the embedded image is it plus one `COPY --from` of the sidecar
//! image's binary (`docker::servers::embedded`). Each test is judged by what nginx does: the
//! body it serves, its master's PID, its own log, its exit code.
//!
//! 1. The same image twice, as with `shareProcessNamespace: true`: once as the app, once with
//!    `--entrypoint /usr/local/bin/config-reloader` in the app's PID namespace.
//! 2. As the entrypoint, `config-reloader -- nginx -g 'daemon off;'`, no PID sharing: the
//!    reloader is PID 1 of the container, nginx its child; `docker stop` goes through it.

mod docker;

use std::time::{Duration, Instant};

use docker::pod::{log_lines, Pod, READY};
use docker::{
    children_of, docker, docker_ok, http_get, image, run_id, wait_docker, Container, Image,
    DEADLINE, LABEL,
};
use testkit::apps::innermost_pid;
use testkit::reloader::field;

/// The images these tests use, built on first use: the first two in parallel, then the third
/// FROM them.
const IMAGES: &[Image] = &[Image::Sidecar, Image::Distroless, Image::Embedded];

/// Where the README's `COPY --from` puts the binary.
const EMBEDDED: &str = "/usr/local/bin/config-reloader";

/// What nginx serves: `return 200 "COLOUR\n";`, the volume's `value.conf`.
fn value(colour: &str) -> String {
    format!("return 200 \"{colour}\\n\";\n")
}

/// A pod whose volume makes nginx serve blue.
fn blue_pod() -> Pod {
    Pod::new(&[("value.conf", value("blue").as_bytes())])
}

/// Waits until nginx at `ip` serves `colour`.
fn await_body(ip: &str, colour: &str) {
    wait_docker(DEADLINE, &format!("nginx to serve {colour}"), || {
        (http_get(ip, 8080)?.trim_end() == colour).then_some(())
    });
}

/// One kubelet update from blue to green; waits for nginx to serve green and returns how long
/// that took.
fn blue_to_green(pod: &Pod, ip: &str) -> Duration {
    let started = Instant::now();
    pod.update(&[("value.conf", value("green").as_bytes())]);
    await_body(ip, "green");
    started.elapsed()
}

/// The comm of host pid `pid`.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

#[test]
fn the_same_distroless_image_run_twice_reloads_nginx_from_its_second_container() {
    let tag = &image(Image::Embedded).tag;
    // Distroless: nothing to run but what the image was built with.
    let label = format!("{LABEL}={}", run_id());
    let shell = [
        "run",
        "--rm",
        "--label",
        &label,
        "--entrypoint",
        "/bin/sh",
        tag,
    ];
    let out = docker(&[&shell[..], &["-c", "true"]].concat());
    assert!(!out.status.success(), "the app image has a shell");

    let pod = blue_pod();
    let config = pod.config_mount();
    let app = Container::run("app", &["-v", &config, tag]);
    let ip = app.ip();
    await_body(&ip, "blue");
    let master = app.host_pid();
    assert_eq!(comm(master), "nginx");

    let pid_ns = format!("container:{}", app.name);
    let reloader = Container::run(
        "reloader",
        &[
            "--pid",
            &pid_ns,
            "-v",
            &config,
            "-e",
            "CONFIG_DIR=/config",
            "-e",
            "PROCESS_NAME=nginx",
            "--entrypoint",
            EMBEDDED,
            tag,
        ],
    );
    wait_docker(DEADLINE, "the reloader's ready line", || {
        assert!(reloader.is_running(), "the reloader exited");
        reloader.logs().contains(READY).then_some(())
    });

    let took = blue_to_green(&pod, &ip);
    eprintln!(
        "embedded, second container: green served {:.0} ms after the update started",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(app.host_pid(), master, "reloaded, not restarted");
    assert_eq!(app.logs().matches(", reconfiguring").count(), 1);
    let reloaded = log_lines(&reloader, "info reloaded ");
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(field(&reloaded[0], "name").as_deref(), Some("nginx"));
}

#[test]
fn as_the_entrypoint_it_reloads_nginx_its_child_and_docker_stop_ends_both_at_once() {
    let tag = &image(Image::Embedded).tag;
    let pod = blue_pod();
    let config = pod.config_mount();
    let args = [
        "-v",
        &config,
        "-e",
        "CONFIG_DIR=/config",
        "--entrypoint",
        EMBEDDED,
        tag,
        "--",
        "nginx",
        "-g",
        "daemon off;",
    ];
    let c = Container::run("entrypoint", &args);
    let ip = c.ip();
    await_body(&ip, "blue");

    // The reloader is PID 1; nginx's master is its one child, and the ready line names it.
    let pid1 = c.host_pid();
    assert_eq!(comm(pid1), "config-reloader");
    assert_eq!(innermost_pid(pid1), Some(1), "PID 1 of the container");
    let kids = children_of(pid1);
    assert_eq!(kids.len(), 1, "one child: {kids:?}");
    let master = kids[0];
    assert_eq!(comm(master), "nginx");
    let ready = log_lines(&c, READY);
    assert_eq!(
        field(&ready[0], "child"),
        innermost_pid(master).map(|p| p.to_string()),
        "{ready:?}"
    );

    let took = blue_to_green(&pod, &ip);
    eprintln!(
        "embedded, entrypoint: green served {:.0} ms after the update started",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(children_of(pid1), [master], "reloaded, not restarted");
    assert_eq!(c.logs().matches(", reconfiguring").count(), 1);
    assert_eq!(log_lines(&c, "info reloaded ").len(), 1, "{}", c.logs());

    // docker stop sends SIGTERM to PID 1, which forwards it; nginx's fast shutdown exits 0.
    let asked = Instant::now();
    docker_ok(&["stop", "--time", "10", &c.name]);
    let stopped = asked.elapsed();
    eprintln!(
        "embedded, entrypoint: docker stop returned after {:.0} ms",
        stopped.as_secs_f64() * 1e3
    );
    assert!(
        stopped < Duration::from_secs(1),
        "docker stop took {stopped:?}: SIGTERM did not end nginx (10 s would mean SIGKILL)"
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
    let forwarded = log_lines(&c, "info forwarding signal to the app ");
    assert_eq!(forwarded.len(), 1, "{}", c.logs());
    assert_eq!(field(&forwarded[0], "signal").as_deref(), Some("SIGTERM"));
    let exited = log_lines(&c, "info app exited ");
    assert_eq!(exited.len(), 1, "{}", c.logs());
    assert_eq!(field(&exited[0], "exit_code").as_deref(), Some("0"));
}
