//! Real servers on loopback for the validation and confirmation tests: nginx (Debian's
//! nginx-light) and haproxy in master-worker mode, each in a temp prefix on a free port, with
//! the one value they serve in their own config file, and a guard that leaves no process.

#![allow(dead_code)] // each test binary uses its own part

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::apps::{debian, link_as};
use testkit::{kill, unique_name, wait_until, TempDir};

/// A server's files: `conf/` (the watched directory) holds its config; `stage/` is where a
/// new version is written before it is renamed in, as an editor or a deploy would.
pub struct Server {
    pub tmp: TempDir,
    pub conf: PathBuf,
    pub port: u16,
    /// The program, through a link of a name unique to this run (the `/proc` scan sees the host).
    pub exe: PathBuf,
    pub name: String,
    config: fn(&Server, &str, bool) -> String,
    file: &'static str,
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("its address").port()
}

impl Server {
    pub fn nginx() -> Server {
        Server::new(
            "nginx",
            debian("/usr/sbin/nginx", "nginx-light"),
            nginx_conf,
            "nginx.conf",
        )
    }

    pub fn haproxy() -> Server {
        Server::new(
            "haproxy",
            debian("/usr/sbin/haproxy", "haproxy"),
            haproxy_cfg,
            "haproxy.cfg",
        )
    }

    fn new(
        base: &str,
        program: PathBuf,
        config: fn(&Server, &str, bool) -> String,
        file: &'static str,
    ) -> Server {
        let tmp = TempDir::new(base).expect("temp dir");
        let conf = tmp.join("conf");
        for d in ["conf", "stage", "logs"] {
            fs::create_dir(tmp.join(d)).expect("mkdir");
        }
        let name = unique_name(base);
        let exe = link_as(tmp.path(), &name, &program);
        let s = Server {
            tmp,
            conf,
            port: free_port(),
            exe,
            name,
            config,
            file,
        };
        s.write("v1", true);
        s
    }

    /// Its config file.
    pub fn path(&self) -> PathBuf {
        self.conf.join(self.file)
    }

    /// A prefix or log path under the temp dir.
    pub fn logs(&self) -> String {
        self.tmp.join("logs").display().to_string()
    }

    /// Writes the config serving `body`; `valid: false` drops a `;` (nginx) or mangles a
    /// keyword (haproxy), as a typo would. Renamed in, in one step.
    pub fn write(&self, body: &str, valid: bool) {
        let staged = self.tmp.join("stage").join(self.file);
        fs::write(&staged, (self.config)(self, body, valid)).expect("write config");
        fs::rename(&staged, self.path()).expect("rename config in");
    }

    /// The command line that runs it in the foreground.
    pub fn argv(&self) -> Vec<String> {
        let exe = self.exe.display().to_string();
        let path = self.path().display().to_string();
        match self.file {
            "nginx.conf" => vec![
                exe,
                "-e".into(),
                format!("{}/error.log", self.logs()),
                "-p".into(),
                self.logs(),
                "-c".into(),
                path,
            ],
            _ => vec![exe, "-W".into(), "-db".into(), "-f".into(), path],
        }
    }

    /// The command that checks its config, as `RELOAD_VALIDATE_COMMAND` takes it.
    pub fn check(&self) -> String {
        let path = self.path().display().to_string();
        match self.file {
            "nginx.conf" => format!(
                "{} -t -q -e {}/error.log -p {} -c '{path}'",
                self.exe.display(),
                self.logs(),
                self.logs()
            ),
            _ => format!("{} -c -f '{path}'", self.exe.display()),
        }
    }

    /// Starts it ourselves (the sidecar form); it is ended by the guard.
    pub fn spawn(&self) -> Child {
        let argv = self.argv();
        let c = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.tmp.join("logs/stderr")).expect("stderr file"))
            .spawn()
            .expect("start the server");
        self.await_body("v1");
        c
    }

    /// What it serves at `/`, once it answers.
    pub fn get(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        Some(got.split_once("\r\n\r\n")?.1.trim().to_string())
    }

    /// Waits until it serves `body`.
    pub fn await_body(&self, body: &str) {
        wait_until(
            Duration::from_secs(10),
            &format!("{} to serve {body:?}", self.name),
            || (self.get().as_deref() == Some(body)).then_some(()),
        );
    }
}

fn nginx_conf(s: &Server, body: &str, valid: bool) -> String {
    let logs = s.logs();
    let end = if valid { ";" } else { "" };
    format!(
        "daemon off;\nworker_processes 1;\npid {logs}/nginx.pid;\nerror_log {logs}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {logs}/body;\n  proxy_temp_path {logs}/proxy;\n  \
         fastcgi_temp_path {logs}/fcgi;\n  uwsgi_temp_path {logs}/uwsgi;\n  scgi_temp_path {logs}/scgi;\n  \
         server {{\n    listen 127.0.0.1:{};\n    location / {{ return 200 \"{body}\\n\"{end} }}\n  }}\n}}\n",
        s.port
    )
}

fn haproxy_cfg(s: &Server, body: &str, valid: bool) -> String {
    let keyword = if valid { "http-request" } else { "http-reqest" };
    format!(
        "global\n  pidfile {}/haproxy.pid\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend web\n  bind 127.0.0.1:{}\n  {keyword} return status 200 content-type text/plain string \"{body}\"\n",
        s.logs(),
        s.port
    )
}

/// Every process whose parent is `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut kids: Vec<i32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|c| {
            let stat = fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(pid)
        })
        .collect();
    kids.sort_unstable();
    kids
}

/// The pids whose `/proc/PID/comm` is `name`.
pub fn named(name: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|p: &i32| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

/// Kills every process named `name` on drop: a failing test leaves no server behind.
pub struct Guard(pub String);

impl Drop for Guard {
    fn drop(&mut self) {
        for p in named(&self.0) {
            let _ = kill(p, libc::SIGKILL);
        }
    }
}

/// python3, named `name`, that exits 0 in its SIGHUP handler.
pub fn dies_on_hup(tmp: &TempDir, name: &str) -> Vec<String> {
    let py = link_as(tmp.path(), name, &debian("/usr/bin/python3", "python3"));
    let script = "import signal, sys, time\n\
                  signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))\n\
                  open(sys.argv[1], 'w').close()\n\
                  time.sleep(1000)\n";
    let ready = tmp.join("ready").display().to_string();
    vec![py.display().to_string(), "-c".into(), script.into(), ready]
}

/// The app of [`dies_on_hup`], started beside the reloader (the sidecar form) and ready.
pub fn spawn_dies_on_hup(tmp: &TempDir, name: &str) -> Child {
    let argv = dies_on_hup(tmp, name);
    let app = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    await_ready(tmp);
    app
}

/// Waits until the app of [`dies_on_hup`] has its handler in place.
pub fn await_ready(tmp: &TempDir) {
    wait_until(Duration::from_secs(10), "the app's handler", || {
        tmp.join("ready").exists().then_some(())
    });
}
