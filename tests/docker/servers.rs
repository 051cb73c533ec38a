//! Images of real servers from Debian packages, each run the way its usual image runs it: in
//! the foreground as PID 1 (or under an init), as a non-root user (65534, the sidecar image's
//! user), its reloadable configuration read from the volume mounted at `/config`.
//!
//! What lives in the image is what a ConfigMap would not hold (binaries, a data directory, the
//! part of the configuration that names `/config`); the tests write the rest.

use std::fs;
use std::path::{Path, PathBuf};

use testkit::TempDir;

use super::images::{build, busybox, nginx_rootfs, tag, Rootfs, NGINX_CONF};
use super::Image;

/// Every server runs as nobody, like the sidecar image: the same UID may signal it.
const USER: &str = "USER 65534:65534";

/// nginx in the foreground, serving what `/config/value.conf` says.
pub(super) fn nginx(tag: &str) -> Option<(String, String)> {
    let mut rootfs = nginx_rootfs();
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/sbin/nginx"]"#);
    rootfs.build(tag)
}

/// `pgbouncer /config/pgbouncer.ini`: the whole ini is in the volume. pgbouncer refuses to run
/// as root.
pub(super) fn pgbouncer(tag: &str) -> Option<(String, String)> {
    let mut rootfs = Rootfs::new();
    rootfs.packaged(Path::new("/usr/sbin/pgbouncer"), "pgbouncer");
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/sbin/pgbouncer", "/config/pgbouncer.ini"]"#);
    rootfs.build(tag)
}

/// `haproxy -W -db -f /config/haproxy.cfg`: master-worker mode in the foreground, as the
/// official image's entrypoint runs it. On SIGUSR2 the master re-executes itself (same PID) and
/// starts a new worker.
pub(super) fn haproxy(tag: &str) -> Option<(String, String)> {
    let mut rootfs = Rootfs::new();
    rootfs.packaged(Path::new("/usr/sbin/haproxy"), "haproxy");
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/config/haproxy.cfg"]"#);
    rootfs.build(tag)
}

/// The server's own settings; the reloadable one is in a file of the volume.
const POSTGRESQL_CONF: &str = "listen_addresses = '*'
unix_socket_directories = '/tmp'
hba_file = '/etc/postgresql/pg_hba.conf'
shared_buffers = 16MB
max_connections = 20
jit = off
include '/config/work_mem.conf'
";

/// postgres with a data directory made by `initdb` at build time, as 65534 (postgres refuses
/// root). initdb runs `postgres` through `/bin/sh`, hence busybox. Anyone may connect: the
/// container lives for one test.
pub(super) fn postgres(tag: &str) -> Option<(String, String)> {
    let bin = postgres_bindir();
    let lib = bin.with_file_name("lib");
    let version = lib
        .parent()
        .and_then(Path::file_name)
        .expect("major version");
    let mut rootfs = Rootfs::new();
    rootfs.packaged(&bin.join("postgres"), "postgresql");
    rootfs.elf(&bin.join("initdb"));
    // initdb loads plpgsql and the snowball dictionaries into template1.
    for module in ["plpgsql.so", "dict_snowball.so"] {
        rootfs.elf(&lib.join(module));
    }
    rootfs.tree(&Path::new("/usr/share/postgresql").join(version));
    rootfs.copy(&busybox(), "/bin/busybox");
    rootfs.link("busybox", "/bin/sh");
    rootfs.dir("/var/lib/postgresql", 0o1777);
    rootfs.write("/etc/postgresql/postgresql.conf", POSTGRESQL_CONF);
    rootfs.write("/etc/postgresql/pg_hba.conf", "host all all all trust\n");
    let initdb = bin.join("initdb");
    let postgres = bin.join("postgres");
    rootfs.step(USER);
    rootfs.step(&format!(
        r#"RUN ["{}", "-D", "/var/lib/postgresql/data", "-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8", "--no-sync"]"#,
        initdb.display()
    ));
    rootfs.step(&format!(
        r#"CMD ["{}", "-D", "/var/lib/postgresql/data", "-c", "config_file=/etc/postgresql/postgresql.conf"]"#,
        postgres.display()
    ));
    rootfs.build(tag)
}

/// `/usr/lib/postgresql/<major>/bin` of the newest server installed (the `postgresql` package
/// depends on one).
fn postgres_bindir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<u32> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|m: &u32| root.join(m.to_string()).join("bin/postgres").exists())
        .collect();
    majors.sort_unstable();
    let major = majors.last().unwrap_or_else(|| {
        panic!(
            "no {}/*/bin/postgres: Debian package postgresql is not installed (`make deps` installs it)",
            root.display()
        )
    });
    root.join(major.to_string()).join("bin")
}

/// The server-wide part; what is served is in `/config/site.conf`.
const APACHE2_CONF: &str = "ServerRoot /etc/apache2
ServerName localhost
Listen 8080
PidFile /tmp/apache2.pid
DefaultRuntimeDir /tmp
ErrorLog /dev/stderr
LogLevel notice
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule headers_module /usr/lib/apache2/modules/mod_headers.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
<Directory />
    Require all granted
</Directory>
DirectoryIndex index.html
Include /config/site.conf
";

/// `apache2 -DFOREGROUND`. Its document roots `/srv/blue` and `/srv/green` are in the image:
/// which one is served is configuration, so it changes only when apache re-reads it (a file
/// edited under the document root would be served at once, reload or not).
pub(super) fn apache2(tag: &str) -> Option<(String, String)> {
    let mut rootfs = Rootfs::new();
    rootfs.packaged(Path::new("/usr/sbin/apache2"), "apache2-bin");
    for module in ["mpm_event", "authz_core", "headers", "dir"] {
        rootfs.elf(Path::new(&format!(
            "/usr/lib/apache2/modules/mod_{module}.so"
        )));
    }
    rootfs.write("/etc/apache2/apache2.conf", APACHE2_CONF);
    for colour in ["blue", "green"] {
        rootfs.write(&format!("/srv/{colour}/index.html"), &format!("{colour}\n"));
    }
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/sbin/apache2", "-DFOREGROUND", "-f", "/etc/apache2/apache2.conf"]"#);
    rootfs.build(tag)
}

/// tini as PID 1 (`ENTRYPOINT ["tini", "--"]`), forwarding signals to nginx, its child.
pub(super) fn tini(tag: &str) -> Option<(String, String)> {
    let mut rootfs = nginx_rootfs();
    // The dynamic build: its comm is `tini` (tini-static's would be `tini-static`).
    rootfs.packaged(Path::new("/usr/bin/tini"), "tini");
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/bin/tini", "--", "/usr/sbin/nginx"]"#);
    rootfs.build(tag)
}

/// dumb-init as PID 1, forwarding signals to nginx, its child (to its whole process group, as
/// dumb-init does by default).
pub(super) fn dumb_init(tag: &str) -> Option<(String, String)> {
    let mut rootfs = nginx_rootfs();
    rootfs.packaged(Path::new("/usr/bin/dumb-init"), "dumb-init");
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/bin/dumb-init", "/usr/sbin/nginx"]"#);
    rootfs.build(tag)
}

/// nginx as a distroless image ships it: nginx and its libraries, no shell, no package
/// manager; `daemon off` on the command line, as the official image's CMD gives it.
pub(super) fn distroless(tag: &str) -> Option<(String, String)> {
    let mut rootfs = nginx_rootfs();
    rootfs.write(
        "/etc/nginx/nginx.conf",
        &NGINX_CONF.replace("daemon off;\n", ""),
    );
    rootfs.step(USER);
    rootfs.step(r#"CMD ["/usr/sbin/nginx", "-g", "daemon off;"]"#);
    rootfs.build(tag)
}

/// The README's "Embedding the binary": the app's image plus one `COPY --from` of the sidecar
/// image's binary. Nothing else changes: the app's CMD and USER stay.
pub(super) fn embedded(own: &str) -> Option<(String, String)> {
    let ctx = TempDir::new("crs-e2e-ctx").expect("temp dir");
    let dockerfile = format!(
        "FROM {}\nCOPY --from={} /config-reloader /usr/local/bin/config-reloader\n",
        tag(Image::Distroless),
        tag(Image::Sidecar)
    );
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    build(own, ctx.path(), None, &[]);
    None
}
