//! Reload over HTTP: one request to the app's reload URL per real change (Prometheus and
//! Alertmanager `POST /-/reload`, Fluent Bit `POST /api/v2/reload`), for apps that reload that
//! way and pods that must not share their PID namespace.
//!
//! HTTP/1.1 over a plain socket, `Connection: close`, `Content-Length: 0`; only the status line
//! and headers are read, at most 8 KiB. Nothing here blocks: the connect, the write and the
//! read are driven by the main loop's `ppoll`, and each attempt has a deadline. An attempt the
//! app cannot have acted on (no connection, a request not wholly sent) or that it refused (a
//! status other than 2xx) is retried with backoff until one succeeds. One wholly sent that got
//! no status (timed out, reset, closed) may well have been applied, as Prometheus's synchronous
//! `/-/reload` is after the timeout: it is logged as outcome unknown and not sent again for the
//! same change. A change decided while a request is on its way is coalesced into one more
//! request after it. Credentials never reach a log line.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::log::Logger;
use crate::outcome::Delivery;
use crate::sys::{self, Interest, Ready};
use crate::url::Url;

/// At most this much of the response is read: only its status line is needed.
const MAX_RESPONSE: usize = 8 * 1024;
/// First pause after a failure, doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

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
    /// How the last attempt ended, until the loop takes it.
    ended: Option<Delivery>,
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
            ended: None,
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

    /// We are stopping: the request on its way is abandoned (its socket closed), and neither it
    /// nor a coalesced newer one is sent or retried; whether there was one.
    pub fn cancel(&mut self) -> bool {
        let again = std::mem::take(&mut self.again);
        let busy = !matches!(std::mem::replace(&mut self.stage, Stage::Idle), Stage::Idle);
        busy || again
    }

    /// How the attempt that ended since the last call ended, if one did.
    pub fn take_ended(&mut self) -> Option<Delivery> {
        self.ended.take()
    }

    /// The socket to wait on, if a request is on its way.
    pub fn interest(&self) -> Option<Interest<'_>> {
        match &self.stage {
            Stage::Sending { sock, .. } => Some(Interest::write(sock.as_fd())),
            Stage::Reading { sock, .. } => Some(Interest::read(sock.as_fd())),
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
                    self.unknown(&why, now, log);
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
                    // The status line is all we need, however its line ends (a bare LF too).
                    if got.len() >= MAX_RESPONSE || got.contains(&b'\n') {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.unknown(&e.to_string(), now, log),
            }
        };
        if !eof {
            self.stage = Stage::Reading { sock, got };
            return;
        }
        self.ended = status(&got).map(Delivery::Status);
        match status(&got) {
            Some(code) if (200..300).contains(&code) => self.succeeded(code, now, log),
            Some(code) => self.failed(&format!("status {code}"), now, log),
            None if got.is_empty() => self.unknown("closed without an answer", now, log),
            None => self.unknown("no HTTP status line in the answer", now, log),
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

    /// The whole request was sent but no status came back: the app may have applied it, so it
    /// is not sent again for this change (a slow reload endpoint would be reloaded over and
    /// over). A newer change still gets its own request.
    fn unknown(&mut self, why: &str, now: Instant, log: &Logger) {
        self.ended = Some(Delivery::Unknown);
        log.warn(
            "reload request outcome unknown; not resending it for this change",
            &[
                ("url", self.url.shown().into()),
                ("error", why.into()),
                ("attempt", (self.attempts as usize).into()),
                ("hint", "the app may have reloaded; if it takes longer than RELOAD_WEBHOOK_TIMEOUT to answer, raise it".into()),
            ],
        );
        self.stage = Stage::Idle;
        self.next(now, log);
    }

    fn failed(&mut self, why: &str, now: Instant, log: &Logger) {
        self.ended.get_or_insert(Delivery::Error);
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
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0 503 Busy\r\n"), Some(503));
        assert_eq!(status(b"HTTP/1.1 200 OK\n\n"), Some(200));
        assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
    }
}
