//! End-to-end with the servers people run: the README's "Tested with" table.
//!
//! Each server comes from its Debian package, in its own container built `FROM scratch`
//! (`docker::servers`), runs as a non-root user, and reads part of its configuration from a
//! volume at `/config` that the test changes exactly as the kubelet does. The sidecar is the
//! product image in the server's PID namespace, as with `shareProcessNamespace: true`. Each
//! case is judged by what the server does, not by a signal count:
//!
//! 1. the new value is in force (a served body and header, a `SHOW` result, the admin console);
//! 2. the server's main PID is unchanged: it was reloaded, not restarted;
//! 3. the server logged exactly one reload, and the sidecar exactly one `info reloaded` line;
//! 4. a chmod-only change and a same-content update changed nothing.
//!
//! A missing package fails its case with one line naming the package; `make deps` installs
//! them all. Each case prints the package and version it ran (`tested with: ...`).

mod docker;

use std::process::{Command, Stdio};
use std::time::Instant;

use docker::pod::{log_lines, Pod};
use docker::{
    children_of, header, http_response, image, uid_of, wait_docker, Container, Image, DEADLINE,
    QUIET,
};

/// The images these tests use, built in parallel on first use.
const IMAGES: &[Image] = &[
    Image::Sidecar,
    Image::Nginx,
    Image::Pgbouncer,
    Image::Haproxy,
    Image::Postgres,
    Image::Apache2,
    Image::Tini,
    Image::DumbInit,
];

/// One row of the "Tested with" table: how the server runs and how to see what it does.
struct Server {
    /// The app as the README table names it.
    app: &'static str,
    image: Image,
    /// `PROCESS_NAME` and `RELOAD_SIGNAL` as a user sets them.
    process: &'static str,
    signal: &'static str,
    /// The file of the volume that changes, and its content for a value.
    file: &'static str,
    config: fn(&str) -> String,
    /// The value before and after the update.
    values: [&'static str; 2],
    /// The value in force, as the server reports it; `None` while it does not answer.
    observe: fn(&str) -> Option<String>,
    /// What the server logs once for each reload it performs.
    reloaded: &'static str,
    /// PID 1 is an init; its child (the server) must keep its PID too.
    init: bool,
}

/// The whole ini, as a ConfigMap mounted at `/etc/pgbouncer` would hold it; `auth_type = any`
/// lets the test into the admin console.
const PGBOUNCER_INI: &str = "[databases]
postgres = host=127.0.0.1 port=5432 user=postgres
[pgbouncer]
listen_addr = *
listen_port = 6432
unix_socket_dir =
auth_type = any
default_pool_size = @SIZE@
";

#[test]
fn pgbouncer_shows_the_new_default_pool_size_in_its_admin_console_after_one_sighup() {
    check(&Server {
        app: "pgbouncer",
        image: Image::Pgbouncer,
        process: "pgbouncer",
        signal: "SIGHUP",
        file: "pgbouncer.ini",
        config: |size| PGBOUNCER_INI.replace("@SIZE@", size),
        values: ["20", "7"],
        observe: |ip| {
            let config = psql(ip, 6432, "pgbouncer", "SHOW CONFIG")?;
            let row = config
                .lines()
                .find_map(|l| l.strip_prefix("default_pool_size|"))?;
            row.split('|').next().map(str::to_string)
        },
        reloaded: "got SIGHUP, re-reading config",
        init: false,
    });
}

#[test]
fn pgbouncer_refuses_to_run_as_root_so_the_sidecar_needs_its_uid() {
    let pod = Pod::new(&[("pgbouncer.ini", b"[databases]\n[pgbouncer]\n")]);
    let config = pod.config_mount();
    let root = Container::run(
        "pgbouncer-root",
        &["--user", "0:0", "-v", &config, &image(Image::Pgbouncer).tag],
    );
    wait_docker(DEADLINE, "pgbouncer as root to exit", || {
        (!root.is_running()).then_some(())
    });
    assert_ne!(root.inspect("{{.State.ExitCode}}"), "0");
    assert!(
        root.logs().contains("should not run as root"),
        "{}",
        root.logs()
    );
}

/// The whole haproxy.cfg; the response names the colour in a header and in the body.
const HAPROXY_CFG: &str = r#"global
    maxconn 64
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind :8080
    http-request return status 200 content-type text/plain hdr X-Value @COLOUR@ string "@COLOUR@"
"#;

#[test]
fn haproxy_master_worker_serves_the_new_response_after_sigusr2_with_the_same_master() {
    check(&Server {
        app: "haproxy",
        image: Image::Haproxy,
        process: "haproxy",
        signal: "SIGUSR2",
        file: "haproxy.cfg",
        config: |colour| HAPROXY_CFG.replace("@COLOUR@", colour),
        values: ["blue", "green"],
        observe: served_header_and_body,
        reloaded: "Reloading HAProxy",
        init: false,
    });
}

#[test]
fn postgres_shows_the_new_work_mem_from_an_included_file_after_one_sighup() {
    check(&Server {
        app: "postgres",
        image: Image::Postgres,
        process: "postgres",
        signal: "SIGHUP",
        file: "work_mem.conf",
        config: |size| format!("work_mem = '{size}'\n"),
        values: ["4MB", "8MB"],
        observe: |ip| psql(ip, 5432, "postgres", "SHOW work_mem"),
        reloaded: "received SIGHUP, reloading configuration files",
        init: false,
    });
}

#[test]
fn apache2_serves_the_new_site_after_a_graceful_sigusr1_with_the_same_parent() {
    check(&Server {
        app: "apache2",
        image: Image::Apache2,
        process: "apache2",
        signal: "SIGUSR1",
        file: "site.conf",
        config: |colour| {
            format!("DocumentRoot /srv/{colour}\nHeader always set X-Value {colour}\n")
        },
        values: ["blue", "green"],
        observe: served_header_and_body,
        reloaded: "Doing graceful restart",
        init: false,
    });
}

/// nginx's `return` for a value; its master logs `..., reconfiguring` on each reload.
fn nginx_value(colour: &str) -> String {
    format!("return 200 \"{colour}\\n\";\n")
}

#[test]
fn nginx_serves_the_new_value_after_one_sighup_with_the_same_master() {
    check(&Server {
        app: "nginx",
        image: Image::Nginx,
        process: "nginx",
        signal: "SIGHUP",
        file: "value.conf",
        config: nginx_value,
        values: ["blue", "green"],
        observe: served_body,
        reloaded: ", reconfiguring",
        init: false,
    });
}

/// Fails on a reloader that refuses apps waiting in sigwait (tini's sigtimedwait loop blocks
/// every signal) unless `RELOAD_FORCE` is set.
#[test]
fn tini_as_pid_1_forwards_sighup_to_nginx_which_serves_the_new_value() {
    check(&Server {
        app: "tini",
        image: Image::Tini,
        process: "tini",
        signal: "SIGHUP",
        file: "value.conf",
        config: nginx_value,
        values: ["blue", "green"],
        observe: served_body,
        reloaded: ", reconfiguring",
        init: true,
    });
}

/// As for tini: dumb-init blocks every signal and takes them with sigwait.
#[test]
fn dumb_init_as_pid_1_forwards_sighup_to_nginx_which_serves_the_new_value() {
    check(&Server {
        app: "dumb-init",
        image: Image::DumbInit,
        process: "dumb-init",
        signal: "SIGHUP",
        file: "value.conf",
        config: nginx_value,
        values: ["blue", "green"],
        observe: served_body,
        reloaded: ", reconfiguring",
        init: true,
    });
}

/// Runs one case: the server with the first value, the sidecar beside it, one kubelet update
/// to the second value, then a chmod-only change and a same-content update.
fn check(server: &Server) {
    let built = image(server.image);
    if let Some((package, version)) = &built.package {
        eprintln!(
            "tested with: {} {version} (Debian package {package})",
            server.app
        );
    }
    let [before, after] = server.values;
    let (first, second) = ((server.config)(before), (server.config)(after));
    let pod = Pod::new(&[(server.file, first.as_bytes())]);
    let config = pod.config_mount();
    let app = Container::run(server.app, &["-v", &config, &built.tag]);
    let ip = app.ip();
    wait_value(server, &ip, before);
    assert_eq!(uid_of(app.host_pid()), 65534, "the server runs as nobody");
    let sidecar = pod.start_sidecar(
        &app,
        &[
            ("PROCESS_NAME", server.process),
            ("RELOAD_SIGNAL", server.signal),
        ],
    );
    let pids = main_pids(&app, server.init);

    let started = Instant::now();
    pod.update(&[(server.file, second.as_bytes())]);
    wait_value(server, &ip, after);
    eprintln!(
        "{}: {after} in force {:.0} ms after the update started",
        server.app,
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(
        main_pids(&app, server.init),
        pids,
        "reloaded, not restarted"
    );

    pod.chmod_everything();
    pod.resync(&[(server.file, second.as_bytes())]);
    std::thread::sleep(QUIET);
    assert_eq!((server.observe)(&ip).as_deref(), Some(after));
    assert_eq!(
        main_pids(&app, server.init),
        pids,
        "the chmod and the resync restarted nothing"
    );
    assert!(app.is_running());
    let reloads = app.logs().matches(server.reloaded).count();
    assert_eq!(reloads, 1, "the server logged {reloads} reloads");
    let lines = log_lines(&sidecar, "info reloaded ");
    assert_eq!(lines.len(), 1, "one reload for one change: {lines:?}");
    let (name, signal) = (
        format!(" name={} ", server.process),
        format!(" signal={} ", server.signal),
    );
    assert!(
        lines[0].contains(&name) && lines[0].contains(&signal),
        "{}",
        lines[0]
    );
}

/// Waits until the server reports `value`.
fn wait_value(server: &Server, ip: &str, value: &str) {
    wait_docker(
        DEADLINE,
        &format!("{} to report {value}", server.app),
        || ((server.observe)(ip)? == value).then_some(()),
    );
}

/// The container's first process (host pid) and, for an init, its one child.
fn main_pids(app: &Container, init: bool) -> Vec<i32> {
    let first = app.host_pid();
    let mut pids = vec![first];
    if init {
        let children = children_of(first);
        assert_eq!(children.len(), 1, "the init has one child: {children:?}");
        pids.extend(children);
    }
    pids
}

/// The body served on port 8080, without its trailing newline.
fn served_body(ip: &str) -> Option<String> {
    let (_, body) = http_response(ip, 8080)?;
    Some(body.trim_end().to_string())
}

/// The value served on port 8080 when its `X-Value` header and body agree; a description of
/// both when they do not (so it never equals a value).
fn served_header_and_body(ip: &str) -> Option<String> {
    let (head, body) = http_response(ip, 8080)?;
    let (value, body) = (header(&head, "x-value").unwrap_or(""), body.trim_end());
    Some(if value == body {
        value.to_string()
    } else {
        format!("header {value:?}, body {body:?}")
    })
}

/// `psql -c SQL` as `user` against the database of the same name on `ip:port`; its unaligned,
/// tuples-only output, or `None` while the server does not answer.
fn psql(ip: &str, port: u16, user: &str, sql: &str) -> Option<String> {
    let port = port.to_string();
    let out = Command::new("psql")
        .args(["-X", "-w", "-A", "-t", "-h", ip, "-p", &port, "-U", user, "-d", user])
        .args(["-c", sql])
        .env("PGCONNECT_TIMEOUT", "2")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run psql ({e}): Debian package postgresql-client is not installed (`make deps` installs it)")
        });
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
