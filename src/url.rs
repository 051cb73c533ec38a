//! The reload URL: `http://[user:password@]HOST[:PORT][/PATH]`, HOST an IP address or
//! `localhost`. The userinfo becomes the Basic auth value and is never shown: every way a URL
//! reaches a log line or an error message goes through [`Url::shown`] or [`Url::redact`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
            basic: userinfo.map(|u| base64(&percent_decode(u))),
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
        // A scheme is letters: a `://` after anything else may be inside a password.
        let start = s
            .find("://")
            .filter(|&i| s[..i].bytes().all(|b| b.is_ascii_alphabetic()))
            .map_or(0, |i| i + 3);
        let after = &s[start..];
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let at = after[..authority_end]
            .rfind('@')
            .or_else(|| after.rfind('@'));
        if let Some(at) = at {
            return format!("{}***{}", &s[..start], &after[at..]);
        }
        // No `@` at all: `http://user:secret` lost its `@host`. A colon that is not the
        // scheme's (followed by `/`) nor inside `[...]` is followed by a port only if that is
        // one (1-5 digits up to `/`, `?`, `#` or the end, as the grammar has it); anything
        // else may be a password, and is hidden with all that follows. The scheme may be
        // mistyped (`http//`), so the whole string is searched, not the authority alone.
        let b = s.as_bytes();
        let mut bracket = false;
        for (i, &c) in b.iter().enumerate() {
            match c {
                b'[' => bracket = true,
                b']' => bracket = false,
                b':' if !bracket && b.get(i + 1) != Some(&b'/') => {
                    let run = &s[i + 1..];
                    let port = &run[..run.find(['/', '?', '#']).unwrap_or(run.len())];
                    let is_port =
                        (1..=5).contains(&port.len()) && port.bytes().all(|d| d.is_ascii_digit());
                    if !is_port {
                        return format!("{}:***", &s[..i]);
                    }
                }
                _ => {}
            }
        }
        s.to_string()
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

/// The bytes as given: `%E9` is the byte 0xE9, not U+FFFD (a password need not be UTF-8).
fn percent_decode(s: &str) -> Vec<u8> {
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
    out
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
        assert_eq!(Url::redact("http://h:8080/x"), "http://h:8080/x");
        assert_eq!(Url::redact("http://[::1]:80/x"), "http://[::1]:80/x");
    }

    /// Was: `http://user:secret` (no `@host`) failed with "has a bad port" and the password
    /// in the quoted value.
    #[test]
    fn a_url_without_its_at_host_never_shows_the_password() {
        assert_eq!(Url::redact("http://user:secret"), "http://user:***");
        assert_eq!(Url::redact("http://user:se/cr?et"), "http://user:***");
        assert_eq!(Url::redact("user:secret"), "user:***");
        assert_eq!(Url::redact("http//ops:pw1.2"), "http//ops:***");
        assert_eq!(Url::redact("http:/u:pw"), "http:/u:***");
        assert_eq!(Url::redact("http//u:p://@h"), "***@h");
        assert_eq!(Url::redact("http://[::1]:pw"), "http://[::1]:***");
    }

    /// Was: `%E9` in a password was sent as U+FFFD (EF BF BD).
    #[test]
    fn a_percent_encoded_non_utf8_password_byte_is_sent_as_given() {
        let u = Url::parse("http://u:caf%E9@127.0.0.1/").unwrap();
        assert_eq!(u.basic.as_deref(), Some(base64(b"u:caf\xE9").as_str()));
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
    fn base64_as_in_rfc_4648() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }
}
