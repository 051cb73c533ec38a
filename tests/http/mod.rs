//! A local HTTP server for the webhook tests, over `std::net` with one thread per connection,
//! and a minimal client (`get`) to query real apps.
//!
//! The server records each request (method, path, headers, CLOCK_MONOTONIC receive time, the
//! same clock as `testkit::monotonic_ns` and sigrecord's stamps) and answers what the test
//! scripted: a status, nothing at all (the connection stays open: a hung app), or a status held
//! back until the test releases it (a slow app). A connection closed before a whole request
//! arrived (a bare TCP connect) is counted apart, so a test can prove that no request came.

#![allow(dead_code)] // Each test crate that includes this module uses part of it.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// What the server does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `HTTP/1.1 CODE` with no body, then close.
    Status(u16),
    /// Never answers; the connection stays open until the client closes it.
    Hang,
    /// Answers `CODE` only after [`Server::release`].
    Held(u16),
    /// `HTTP/1.1 CODE OK\n\n`, lines ended by a bare LF, and keeps the connection open until
    /// the client closes it (as some embedded servers do).
    BareLf(u16),
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// (name lower-cased, value).
    pub headers: Vec<(String, String)>,
    /// CLOCK_MONOTONIC ns when its head was complete.
    pub t_ns: u64,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Connections that ended before a whole request head arrived.
    bare_connects: usize,
    /// Hanging connections whose client has closed them.
    hangs_closed: usize,
    script: VecDeque<Answer>,
    released: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    /// Answer once the script is used up.
    default: Answer,
}

/// A listening server; stops accepting when dropped (hanging connections are then closed).
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    /// Listens on a free port of 127.0.0.1; answers `script` in order, then `default`.
    pub fn start(script: &[Answer], default: Answer) -> Server {
        Self::start_on(0, script, default).expect("listen on 127.0.0.1")
    }

    /// [`Server::start`] on a given port (0: any free one).
    pub fn start_on(port: u16, script: &[Answer], default: Answer) -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script: script.iter().copied().collect(),
                ..State::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            default,
        });
        let s = Arc::clone(&shared);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let s = Arc::clone(&s);
                    thread::spawn(move || serve(&s, conn));
                }
            }
        });
        Ok(Server { addr, shared })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Connections closed without sending a request.
    pub fn bare_connects(&self) -> usize {
        self.lock().bare_connects
    }

    /// Hanging requests whose client has closed the connection.
    pub fn hangs_closed(&self) -> usize {
        self.lock().hangs_closed
    }

    /// Lets one [`Answer::Held`] request answer.
    pub fn release(&self) {
        self.lock().released += 1;
        self.shared.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Wakes the accept loop so that it sees `stop` and drops the listener.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(s: &Shared, mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(head) = read_head(&mut conn) else {
        s.state.lock().unwrap().bare_connects += 1;
        return;
    };
    let t_ns = testkit::monotonic_ns();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let request = Request {
        method: first.next().unwrap_or_default().to_string(),
        path: first.next().unwrap_or_default().to_string(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
        t_ns,
    };
    let answer = {
        let mut st = s.state.lock().unwrap();
        st.requests.push(request);
        st.script.pop_front().unwrap_or(s.default)
    };
    s.changed.notify_all();
    let code = match answer {
        Answer::Status(code) => code,
        Answer::BareLf(code) => {
            let _ = conn.write_all(format!("HTTP/1.1 {code} OK\n\n").as_bytes());
            let _ = conn.set_read_timeout(None);
            let mut buf = [0u8; 64];
            while !s.stop.load(Ordering::SeqCst) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            return;
        }
        Answer::Hang => {
            // Read until the client gives up (EOF or error), never writing a byte.
            let _ = conn.set_read_timeout(None);
            let mut buf = [0u8; 64];
            while !s.stop.load(Ordering::SeqCst) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            s.state.lock().unwrap().hangs_closed += 1;
            return;
        }
        Answer::Held(code) => {
            let mut st = s.state.lock().unwrap();
            while st.released == 0 && !s.stop.load(Ordering::SeqCst) {
                st = s.changed.wait(st).unwrap();
            }
            st.released = st.released.saturating_sub(1);
            code
        }
    };
    let _ = conn.write_all(
        format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let _ = conn.shutdown(Shutdown::Write);
}

/// The request head up to the blank line; `None` if the peer closed before it ended.
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(String::from_utf8_lossy(&got[..end]).into_owned())
}

/// A port of 127.0.0.1 that nothing listens on (it was free a moment ago).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// `METHOD path` on 127.0.0.1:`port` as HTTP/1.0: (status, body); `None` if nothing answers.
pub fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((code, body))
}

/// Python's own `http.server` (Debian's python3) answering every POST with 200 after `delay`
/// seconds, as a synchronous reload endpoint does (Prometheus's `/-/reload` reads and applies
/// the whole configuration before it answers). Killed and reaped on drop.
pub struct SlowPython {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl SlowPython {
    /// Starts it; each POST it receives is one line in `log` (written when it arrives).
    pub fn start(delay: f64, log: &std::path::Path) -> SlowPython {
        use std::io::BufRead;
        let script = r#"
import http.server, sys, time
delay, log = float(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_port, flush=True)
s.serve_forever()
"#;
        let python = testkit::apps::debian("/usr/bin/python3", "python3");
        let mut child = std::process::Command::new(python)
            .args(["-c", script, &delay.to_string()])
            .arg(log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn python3 http.server");
        let mut line = String::new();
        let out = child.stdout.take().expect("python3 stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("python3 prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("port: {line:?}"));
        SlowPython {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// POSTs received so far.
    pub fn posts(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for SlowPython {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
