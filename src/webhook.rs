//! Reload over HTTP: one request to the app's reload URL per real change (Prometheus and
//! Alertmanager `POST /-/reload`, Fluent Bit `POST /api/v2/reload`), for apps that reload that
//! way and pods that must not share their PID namespace.
//!
//! HTTP/1.1 over a plain socket, `Connection: close`, `Content-Length: 0`; only the status line
//! and headers are read, at most 8 KiB. Nothing here blocks: the connect, the write and the
//! read are driven by the main loop's `ppoll`, and each attempt has a deadline. A failed
//! attempt is retried with backoff until one succeeds; a change decided while a request is on
//! its way is coalesced into one more request after it. Credentials never reach a log line.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::log::Logger;
use crate::sys::{self, Interest, Ready};

/// At most this much of the response is read: the status line and headers are enough.
const MAX_RESPONSE: usize = 8 * 1024;
/// First pause after a failure, doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A checked reload URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `host[:port]` as written, for the `Host` header and logs.
    pub authority: String,
    /// Path and query, `/` at least.
    pub path: String,
    /// The `Authorization: Basic` value, from `user:password@`.
    pub basic: Option<String>,
    /// The host's addresses: an IP address, or both loopbacks for `localhost`.
    pub addrs: Vec<SocketAddr>,
}

impl Url {
    /// Parses; the error says what is accepted (the caller adds the source and the value).
    pub fn parse(s: &str) -> Result<Url, String> {
        let accepted = "use http://HOST[:PORT]/PATH with an IP address or localhost as HOST, e.g. http://127.0.0.1:9090/-/reload";
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err("uses https, which is not supported: a sidecar calls its own pod over loopback (http://127.0.0.1:PORT/PATH), where TLS protects nothing".into());
        }
        if !lower.starts_with("http://") {
            return Err(format!("is not an http:// URL; {accepted}"));
        }
        let rest = &s["http://".len()..];
        let rest = rest.split('#').next().unwrap_or(rest);
        let (authority, path) = rest
            .find(['/', '?'])
            .map_or((rest, "/"), |i| rest.split_at(i));
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "has a space or control character in its path; {accepted}"
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) =
            split_port(hostport).ok_or_else(|| format!("has a bad port; {accepted}"))?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // No DNS: a lookup can block for seconds, and the loop must never stall. A sidecar
        // reaches its app over the pod's loopback anyway.
        let addrs = if bare.eq_ignore_ascii_case("localhost") {
            vec![
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
            ]
        } else {
            let ip: IpAddr = bare.parse().map_err(|_| {
                format!("has a host that is not an IP address or localhost (there is no DNS lookup: it could stall the loop, and a sidecar reaches its app over the pod's loopback); {accepted}")
            })?;
            vec![SocketAddr::new(ip, port)]
        };
        Ok(Url {
            authority: hostport.to_string(),
            path,
            basic: userinfo.map(|u| base64(percent_decode(u).as_bytes())),
            addrs,
        })
    }

    /// The URL as it may be logged: `http://***@host:port/path`.
    pub fn shown(&self) -> String {
        let auth = if self.basic.is_some() { "***@" } else { "" };
        format!("http://{auth}{}{}", self.authority, self.path)
    }

    /// A raw URL string with any userinfo replaced by `***`, for error messages. A rejected
    /// URL may lack its `scheme://` or hold an unencoded `/`, `?` or `#` in its password, so
    /// when the authority has no `@`, everything up to the last `@` is hidden: too much rather
    /// than a password.
    pub fn redact(s: &str) -> String {
        let start = s.find("://").map_or(0, |i| i + 3);
        let after = &s[start..];
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let at = after[..authority_end]
            .rfind('@')
            .or_else(|| after.rfind('@'));
        match at {
            Some(at) => format!("{}***{}", &s[..start], &after[at..]),
            None => s.to_string(),
        }
    }
}

/// `host:port` → (host, port); port 80 when absent; `None` for a bad port.
fn split_port(hostport: &str) -> Option<(&str, u16)> {
    let (host, port) = match hostport.rfind(':') {
        // A bracketed IPv6 literal holds colons of its own.
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], Some(&hostport[i + 1..])),
        _ => (hostport, None),
    };
    match port {
        None => Some((host, 80)),
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).map(|p| (host, p)),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let c = if i <= chunk.len() {
                ABC[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            };
            out.push(char::from(c));
        }
    }
    out
}

/// Where the current attempt is.
enum Stage {
    Idle,
    /// Connecting, then writing the request (`written` bytes so far).
    Sending {
        sock: TcpStream,
        written: usize,
    },
    /// Reading the status line and headers.
    Reading {
        sock: TcpStream,
        got: Vec<u8>,
    },
    /// Waiting to retry.
    Backoff,
}

/// The reload requests of one URL.
pub struct Webhook {
    url: Url,
    method: &'static str,
    timeout: Duration,
    stage: Stage,
    /// When the current attempt started (its deadline counts from here) or, in backoff, when
    /// the next one starts.
    at: Instant,
    /// Attempts for the change being delivered.
    attempts: u32,
    /// When the first attempt for it started.
    first: Instant,
    /// A change came while a request was on its way: one more request after it.
    again: bool,
    /// Which of the URL's addresses to connect to: the next one only after a connect failed,
    /// so that retries after an HTTP error go to the address that answered.
    addr: usize,
}

impl Webhook {
    /// Idle requests to `url`.
    pub fn new(url: Url, method: &'static str, timeout: Duration) -> Webhook {
        let now = Instant::now();
        Webhook {
            url,
            method,
            timeout,
            stage: Stage::Idle,
            at: now,
            attempts: 0,
            first: now,
            again: false,
            addr: 0,
        }
    }

    /// The URL as it may be logged.
    pub fn shown(&self) -> String {
        self.url.shown()
    }

    /// A real change: request a reload now, or right after the request on its way.
    pub fn request(&mut self, now: Instant, log: &Logger) {
        match self.stage {
            Stage::Sending { .. } | Stage::Reading { .. } => self.again = true,
            // A newer change replaces the one waiting for its retry: start afresh at once.
            Stage::Idle | Stage::Backoff => {
                self.attempts = 0;
                self.first = now;
                self.attempt(now, log);
            }
        }
    }

    /// The socket to wait on, if a request is on its way.
    pub fn interest(&self) -> Option<Interest<'_>> {
        match &self.stage {
            Stage::Sending { sock, .. } => Some(Interest {
                fd: sock.as_fd(),
                write: true,
            }),
            Stage::Reading { sock, .. } => Some(Interest {
                fd: sock.as_fd(),
                write: false,
            }),
            _ => None,
        }
    }

    /// When the attempt times out or the next one starts.
    pub fn deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::Idle => None,
            Stage::Backoff => Some(self.at),
            _ => Some(self.at + self.timeout),
        }
    }

    /// Moves the request on: the socket is `ready`, or a deadline may have passed.
    pub fn advance(&mut self, ready: Ready, now: Instant, log: &Logger) {
        match std::mem::replace(&mut self.stage, Stage::Idle) {
            Stage::Idle => {}
            Stage::Backoff if now >= self.at => self.attempt(now, log),
            Stage::Backoff => self.stage = Stage::Backoff,
            stage if now >= self.at + self.timeout => {
                let why = format!("no answer within {} ms", self.timeout.as_millis());
                if matches!(stage, Stage::Sending { .. }) {
                    self.unreachable(&why, now, log);
                } else {
                    self.failed(&why, now, log);
                }
            }
            Stage::Sending { sock, written } if ready.write => self.send(sock, written, now, log),
            Stage::Reading { sock, got } if ready.read => self.read(sock, got, now, log),
            other => self.stage = other,
        }
    }

    fn attempt(&mut self, now: Instant, log: &Logger) {
        self.attempts += 1;
        self.at = now;
        match sys::connect_nonblocking(self.url.addrs[self.addr]) {
            Ok(sock) => self.stage = Stage::Sending { sock, written: 0 },
            Err(e) => self.unreachable(&e.to_string(), now, log),
        }
    }

    fn send(&mut self, mut sock: TcpStream, mut written: usize, now: Instant, log: &Logger) {
        // Writable after a non-blocking connect means it finished; SO_ERROR says how.
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return self.unreachable(&e.to_string(), now, log);
        }
        let request = self.request_bytes();
        while written < request.len() {
            match sock.write(&request[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stage = Stage::Sending { sock, written };
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(&e.to_string(), now, log),
            }
        }
        self.stage = Stage::Reading {
            sock,
            got: Vec::new(),
        };
    }

    fn request_bytes(&self) -> Vec<u8> {
        let auth = self
            .url
            .basic
            .as_ref()
            .map(|b| format!("Authorization: Basic {b}\r\n"))
            .unwrap_or_default();
        format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: config-reloader/{}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.method,
            self.url.path,
            self.url.authority,
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes()
    }

    fn read(&mut self, mut sock: TcpStream, mut got: Vec<u8>, now: Instant, log: &Logger) {
        let mut buf = [0u8; 1024];
        let eof = loop {
            match sock.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() >= MAX_RESPONSE || got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(&e.to_string(), now, log),
            }
        };
        if !eof {
            self.stage = Stage::Reading { sock, got };
            return;
        }
        match status(&got) {
            Some(code) if (200..300).contains(&code) => self.succeeded(code, now, log),
            Some(code) => self.failed(&format!("status {code}"), now, log),
            None => self.failed("no HTTP status line in the answer", now, log),
        }
    }

    fn succeeded(&mut self, code: u16, now: Instant, log: &Logger) {
        let url = self.url.shown();
        let took = now.saturating_duration_since(self.first);
        let fields = [
            ("url", url.as_str().into()),
            ("status", i64::from(code).into()),
            ("attempts", (self.attempts as usize).into()),
            ("took_ms", took.into()),
        ];
        log.info(
            if self.attempts > 1 {
                "reloaded over HTTP after retries"
            } else {
                "reloaded over HTTP"
            },
            &fields,
        );
        self.stage = Stage::Idle;
        self.next(now, log);
    }

    /// The connect failed: the next attempt tries the URL's next address (`localhost` has
    /// two; an app may listen on only one of them).
    fn unreachable(&mut self, why: &str, now: Instant, log: &Logger) {
        self.addr = (self.addr + 1) % self.url.addrs.len();
        self.failed(why, now, log);
    }

    fn failed(&mut self, why: &str, now: Instant, log: &Logger) {
        if self.again {
            // A newer change is waiting anyway: its request covers this one.
            log.warn(
                "reload request failed; sending the newer one",
                &[("url", self.url.shown().into()), ("error", why.into())],
            );
            self.stage = Stage::Idle;
            return self.next(now, log);
        }
        let pause = FIRST_BACKOFF
            .saturating_mul(1 << (self.attempts.saturating_sub(1)).min(5))
            .min(MAX_BACKOFF);
        log.warn(
            "reload request failed; retrying",
            &[
                ("url", self.url.shown().into()),
                ("error", why.into()),
                ("attempt", (self.attempts as usize).into()),
                ("retry_ms", pause.into()),
            ],
        );
        self.stage = Stage::Backoff;
        self.at = now + pause;
    }

    /// After an attempt ended: the coalesced newer change, if any.
    fn next(&mut self, now: Instant, log: &Logger) {
        if std::mem::take(&mut self.again) {
            self.attempts = 0;
            self.first = now;
            self.attempt(now, log);
        }
    }
}

/// The status code of `HTTP/1.x NNN ...`.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// For `--check`: whether something accepts a TCP connection at the URL (a request, even a
/// GET, could reload the app).
pub fn answers(url: &Url, timeout: Duration) -> Result<SocketAddr, String> {
    let mut last = String::new();
    for addr in &url.addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => return Ok(*addr),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_resolved_and_shown_without_credentials() {
        let u = Url::parse("http://admin:s3cr%3At@127.0.0.1:9090/-/reload?x=1").unwrap();
        assert_eq!(u.authority, "127.0.0.1:9090");
        assert_eq!(u.path, "/-/reload?x=1");
        assert_eq!(u.basic.as_deref(), Some(base64(b"admin:s3cr:t").as_str()));
        assert_eq!(u.addrs, vec!["127.0.0.1:9090".parse().unwrap()]);
        assert_eq!(u.shown(), "http://***@127.0.0.1:9090/-/reload?x=1");
        assert_eq!(
            Url::parse("http://[::1]/").unwrap().addrs,
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(Url::parse("HTTP://localhost").unwrap().path, "/");
        assert_eq!(Url::redact("http://u:p@h/x@y"), "http://***@h/x@y");
        assert_eq!(Url::redact("u:p@h:1/x"), "***@h:1/x");
        assert_eq!(Url::redact("http://u:p/q?r#s@h/x"), "http://***@h/x");
        assert_eq!(Url::redact("http://h/x"), "http://h/x");
    }

    #[test]
    fn bad_urls_say_what_is_accepted() {
        assert!(Url::parse("https://127.0.0.1/")
            .unwrap_err()
            .contains("loopback"));
        for bad in [
            "ftp://x/",
            "127.0.0.1:80",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://a b/",
            "http://h/a b",
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert!(e.contains("http://HOST[:PORT]/PATH"), "{bad}: {e}");
        }
        for dns in ["http://prometheus:9090/-/reload", "http://example.com/"] {
            let e = Url::parse(dns).unwrap_err();
            assert!(e.contains("not an IP address or localhost"), "{dns}: {e}");
        }
    }

    #[test]
    fn base64_and_status_lines() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0 503 Busy\r\n"), Some(503));
        assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
    }
}
