//! `RELOAD_LISTEN_ADDRESS`: `/metrics` and `/healthz` over HTTP/1.1, served from the main
//! loop's `ppoll` with non-blocking sockets and no thread.
//!
//! A source of the loop: it owns its fds ([`Listener::interest`]), its one deadline
//! ([`Listener::deadline`]) and what it does when they are ready ([`Listener::ready`]). Every
//! connection must bring a whole `GET` or `HEAD` head within [`DEADLINE`] and at most
//! [`MAX_HEAD`] bytes, gets one answer and is closed. At most [`MAX_CONNS`] are open; one
//! more closes the oldest that has not sent its request, so stalled clients can never lock a
//! scraper out. With no client there is no deadline: the loop sleeps. Never renders a body
//! itself (the loop passes the metrics text) and never reads a request body.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::log::Logger;
use crate::sys::{Interest, Ready};

/// A request head larger than this is refused (431): a scrape's is a few hundred bytes.
pub const MAX_HEAD: usize = 4096;
/// From accept to the last byte of the answer.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// Open connections at most; Prometheus needs one per scrape.
pub const MAX_CONNS: usize = 16;
/// How long accepting pauses after an accept error (EMFILE): the listener stays readable,
/// and retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

/// `:PORT`, `IPv4:PORT` or `[IPv6]:PORT`; an empty host is every IPv4 address. No names: a
/// lookup could block the loop and `localhost` may have two addresses.
pub fn parse_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        return Some(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            port.parse().ok()?,
        )));
    }
    s.parse().ok()
}

/// What a request asks for, once its head is complete (or can never be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// The head is not complete yet.
    More,
    /// `/metrics`; `head`: a HEAD request, no body.
    Metrics {
        head: bool,
    },
    /// `/healthz`.
    Health {
        head: bool,
    },
    NotFound,
    /// Not GET or HEAD.
    NotAllowed,
    /// Not an HTTP/1 request line.
    Bad,
    /// Over [`MAX_HEAD`] without an end.
    TooLarge,
}

/// Reads a request head from the bytes received so far. Looks at no more than
/// [`MAX_HEAD`] bytes and allocates nothing.
pub fn parse(buf: &[u8]) -> Asked {
    let buf = &buf[..buf.len().min(MAX_HEAD + 1)];
    let end = buf.windows(2).any(|w| w == b"\n\n") || buf.windows(4).any(|w| w == b"\r\n\r\n");
    if !end {
        return if buf.len() > MAX_HEAD {
            Asked::TooLarge
        } else {
            Asked::More
        };
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with(b"HTTP/1.") || !target.starts_with(b"/") {
        return Asked::Bad;
    }
    let head = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Asked::NotAllowed,
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match path {
        b"/metrics" => Asked::Metrics { head },
        b"/healthz" => Asked::Health { head },
        _ => Asked::NotFound,
    }
}

/// The whole answer to `asked`; `metrics` renders the body when it is wanted.
pub fn answer(asked: Asked, metrics: &mut dyn FnMut() -> String) -> Vec<u8> {
    let (status, kind, body, head) = match asked {
        Asked::Metrics { head } => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(),
            head,
        ),
        Asked::Health { head } => ("200 OK", "text/plain; charset=utf-8", "ok\n".into(), head),
        Asked::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /healthz\n".into(),
            false,
        ),
        Asked::NotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
            false,
        ),
        Asked::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n".into(),
            false,
        ),
        Asked::Bad | Asked::More => (
            "400 Bad Request",
            "text/plain",
            "bad request\n".into(),
            false,
        ),
    };
    let allow = if asked == Asked::NotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// One client connection.
struct Conn {
    sock: TcpStream,
    opened: Instant,
    /// The head so far, at most [`MAX_HEAD`] + 1 bytes.
    got: Vec<u8>,
    /// The answer and how much of it is written, once the head is complete.
    out: Option<(Vec<u8>, usize)>,
}

/// The listening socket and its connections.
pub struct Listener {
    sock: TcpListener,
    conns: Vec<Conn>,
    /// Accepting is paused until then after an accept error.
    paused: Option<Instant>,
}

impl Listener {
    /// Binds `addr`; the error is a line for the log.
    pub fn bind(addr: SocketAddr) -> Result<Listener, String> {
        let sock = TcpListener::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| format!("cannot listen on {addr} (RELOAD_LISTEN_ADDRESS): {e}; another container of the pod may use this port"))?;
        Ok(Listener {
            sock,
            conns: Vec::new(),
            paused: None,
        })
    }

    /// The address it listens on (the port is real when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sock.local_addr().ok()
    }

    /// The fds to wait on: the listener (unless paused), then each connection in order.
    pub fn interest(&self) -> Vec<Interest<'_>> {
        let listener = self
            .paused
            .is_none()
            .then(|| Interest::read(self.sock.as_fd()));
        listener
            .into_iter()
            .chain(self.conns.iter().map(|c| match c.out {
                Some(_) => Interest::write(c.sock.as_fd()),
                None => Interest::read(c.sock.as_fd()),
            }))
            .collect()
    }

    /// The earliest connection deadline or end of a pause; `None` with no client.
    pub fn deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .map(|c| c.opened + DEADLINE)
            .chain(self.paused)
            .min()
    }

    /// Moves every connection on: `ready` matches [`Listener::interest`] entry by entry (fewer
    /// entries read as "not ready"); a deadline may have passed.
    pub fn ready(
        &mut self,
        ready: &[Ready],
        now: Instant,
        metrics: &mut dyn FnMut() -> String,
        log: &Logger,
    ) {
        let mut ready = ready.iter().copied();
        let accept = match self.paused {
            None => ready.next().unwrap_or_default().read,
            Some(until) => {
                if now >= until {
                    self.paused = None;
                }
                false
            }
        };
        let conns = std::mem::take(&mut self.conns);
        for mut c in conns {
            let r = ready.next().unwrap_or_default();
            if now >= c.opened + DEADLINE {
                log.debug(
                    "closing a client that took too long",
                    &[("peer", peer(&c.sock).into())],
                );
                continue;
            }
            if (r.read || r.write) && !serve(&mut c, metrics) {
                continue;
            }
            self.conns.push(c);
        }
        if accept {
            self.accept(now, log);
        }
    }

    fn accept(&mut self, now: Instant, log: &Logger) {
        loop {
            match self.sock.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= MAX_CONNS {
                        // The oldest still sending its head goes first: a scrape sends its
                        // request at once, a stalled client never does.
                        let i = self.conns.iter().position(|c| c.out.is_none()).unwrap_or(0);
                        self.conns.remove(i);
                    }
                    self.conns.push(Conn {
                        sock,
                        opened: now,
                        got: Vec::new(),
                        out: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    log.warn(
                        "accepting a metrics connection failed; pausing",
                        &[
                            ("error", e.to_string().into()),
                            ("retry_ms", ACCEPT_PAUSE.into()),
                            (
                                "hint",
                                "raise the open-file limit (RLIMIT_NOFILE) if this is EMFILE"
                                    .into(),
                            ),
                        ],
                    );
                    self.paused = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }
}

fn peer(sock: &TcpStream) -> String {
    sock.peer_addr().map(|a| a.to_string()).unwrap_or_default()
}

/// Adds `chunk` to the head so far, never past [`MAX_HEAD`] + 1 bytes; true once it is full.
pub fn keep(got: &mut Vec<u8>, chunk: &[u8]) -> bool {
    let room = (MAX_HEAD + 1).saturating_sub(got.len());
    got.extend_from_slice(&chunk[..chunk.len().min(room)]);
    got.len() > MAX_HEAD
}

/// Reads what arrived, answers a complete head, writes what fits; false once it is done with
/// (answered, closed by the client, or failed).
fn serve(c: &mut Conn, metrics: &mut dyn FnMut() -> String) -> bool {
    if c.out.is_none() {
        let mut buf = [0u8; 1024];
        loop {
            let room = (MAX_HEAD + 1)
                .saturating_sub(c.got.len())
                .clamp(1, buf.len());
            match c.sock.read(&mut buf[..room]) {
                Ok(0) => return false,
                Ok(n) => {
                    if keep(&mut c.got, &buf[..n]) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        match parse(&c.got) {
            Asked::More => return true,
            asked => {
                c.out = Some((answer(asked, metrics), 0));
                c.got = Vec::new();
            }
        }
    }
    let Some((out, written)) = &mut c.out else {
        return true;
    };
    while *written < out.len() {
        match c.sock.write(&out[*written..]) {
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let _ = c.sock.shutdown(std::net::Shutdown::Write);
    false
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
