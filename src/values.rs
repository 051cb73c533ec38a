//! One parser per kind of setting value. Each takes where the value came from (`CONFIG_DIR`
//! or `--config-dir`) and returns either the value or the one line the user sees: the source,
//! the bad value quoted, and what is accepted.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::mounts;
use crate::signal::Signal;
use crate::url::Url;

/// A configuration error: one line for the user, exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Err(ConfigError(msg))`.
pub fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// The value as text; settings other than paths and names must be UTF-8.
pub fn text<'a>(source: &str, value: &'a OsStr) -> Result<&'a str, ConfigError> {
    value.to_str().ok_or_else(|| {
        ConfigError(format!(
            "{source}={} is not valid UTF-8; use a UTF-8 value",
            quote(value)
        ))
    })
}

/// Quotes a value the way `OsStr`'s `Debug` does: text escaped as in a Rust string, each byte
/// that is not UTF-8 as `\xNN`.
pub fn quote(value: &OsStr) -> String {
    let mut out = String::from("\"");
    for chunk in value.as_bytes().utf8_chunks() {
        let quoted = format!("{:?}", chunk.valid());
        out.push_str(&quoted[1..quoted.len() - 1]);
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.push('"');
    out
}

/// A boolean, the way shell users and YAML authors write it.
pub fn boolean(source: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => err(format!(
            "{source}={value:?} is not a boolean; use true or false (or 1/0)"
        )),
    }
}

/// A comma-separated list of existing directories, trimmed and deduplicated; paths are bytes.
pub fn dirs(source: &str, value: &OsStr) -> Result<Vec<PathBuf>, ConfigError> {
    let shown = quote(value);
    let all_mounts = mounts::all();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for item in value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
    {
        if item.is_empty() {
            continue;
        }
        let path = PathBuf::from(OsString::from_vec(item.to_vec()));
        let item = quote(path.as_os_str());
        match path.metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return err(format!("{source}={shown}: {item} is not a directory; give directories, not files (watching a file misses atomic replacements)")),
            Err(e) => return err(format!("{source}={shown}: {item} cannot be used: {}; give existing directories separated by commas", io_reason(&e))),
        }
        if let Some(fs) = mounts::fstype_of(&path, &all_mounts).filter(|f| mounts::is_kernel(f)) {
            return err(format!("{source}={shown}: {item} is on {fs}, a kernel interface, not configuration; give the directories your app reads its configuration from"));
        }
        // `Path`'s own equality ignores `a//b` and trailing-slash differences.
        if !dirs.contains(&path) {
            dirs.push(path);
        }
    }
    if dirs.is_empty() {
        return err(format!("{source}={shown} names no directory; give one or more directories separated by commas, e.g. /etc/app,/etc/app-secrets"));
    }
    Ok(dirs)
}

/// A pid file's path. It may not exist yet (the app writes it when it starts); a directory
/// there is a mistake.
pub fn pid_file(source: &str, value: &OsStr) -> Result<PathBuf, ConfigError> {
    let shown = quote(value);
    let trimmed = value.as_bytes().trim_ascii();
    if trimmed.is_empty() {
        return err(format!("{source}={shown} names no file; give the path of the file the app writes its pid to, e.g. /run/nginx/nginx.pid"));
    }
    let path = PathBuf::from(OsString::from_vec(trimmed.to_vec()));
    if path.is_dir() {
        return err(format!(
            "{source}={shown} is a directory; give the pid file inside it, e.g. {}/nginx.pid",
            path.display()
        ));
    }
    Ok(path)
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "it does not exist".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// A process name, as bytes (a name need not be UTF-8): non-empty, no slash (a name, not a path).
pub fn process_name(source: &str, value: &OsStr) -> Result<Vec<u8>, ConfigError> {
    let name = value.as_bytes().trim_ascii();
    if name.is_empty() {
        return err(format!(
            "{source} is empty; set it to the exact name of the process to signal, e.g. nginx"
        ));
    }
    if name.contains(&b'/') {
        return err(format!("{source}={} contains '/'; give the process name (the program's file name, e.g. nginx), not a path", quote(value)));
    }
    Ok(name.to_vec())
}

/// A signal name or number; SIGKILL and SIGSTOP are refused because they cannot be caught.
pub fn signal(source: &str, value: &str) -> Result<Signal, ConfigError> {
    let Some(sig) = Signal::parse(value.trim()) else {
        return err(format!("{source}={value:?} is not a signal; use a name like SIGHUP, HUP or hup, SIGUSR1, SIGRTMIN+2, or a number 1-64"));
    };
    if sig == Signal::KILL || sig == Signal::STOP {
        return err(format!("{source}={value:?} cannot be caught by any process, so it would stop or kill the app instead of reloading it; use SIGHUP, SIGUSR1 or another catchable signal"));
    }
    Ok(sig)
}

/// `0`, `250ms`, `2s`, `1.5s`, `1m`, `1h` as a duration of at most one hour. Exact to the
/// nanosecond (`Duration`'s own resolution); a finer remainder rounds up, so a value that is
/// not zero never becomes zero (which some settings read as "off").
pub fn duration(source: &str, value: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!("{source}={value:?} is not a duration; use 0 or a number with a unit, e.g. 250ms, 2s, 1.5s, 1m"))
    };
    let v = value.trim();
    if v == "0" {
        return Ok(Duration::ZERO);
    }
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = v.split_at(split);
    let scale_ns: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(bad());
    }
    // Integers, not f64 (its parser and printer would add some 40 KB to the binary): the value
    // is whole + digits / 10^len, exact. Fraction digits past the 18th (below 10^-18 of the
    // unit, far below the nanosecond kept) only tell whether the rest is zero, so the sum
    // fits in a u128.
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    let (fraction, finer) = fraction.split_at(fraction.len().min(18));
    let finer = finer.bytes().any(|b| b != b'0');
    let too_long = || {
        ConfigError(format!(
            "{source}={value:?} is too long; use at most 1h (60m)"
        ))
    };
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let digits: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let denom = 10u128.pow(fraction.len() as u32);
    // Exact, in units of 1/denom ns: compared before rounding.
    let limit = 3_600_000_000_000u128 * denom;
    let total = whole
        .checked_mul(scale_ns)
        .and_then(|w| w.checked_mul(denom))
        .and_then(|w| w.checked_add(digits * scale_ns))
        .filter(|t| *t <= limit)
        .ok_or_else(too_long)?;
    // Up, never down: 0.1 ns is 1 ns, not 0.
    let ns = total.div_ceil(denom) + u128::from(finer && total % denom == 0);
    if ns > 3_600_000_000_000 {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// The shortest `RELOAD_POLL_INTERVAL` accepted. A poll is a walk of the polled trees' metadata:
/// `make bench` measures 0.1 ms (a kubelet volume) to 0.5 ms (64 files) of CPU per poll, so
/// at 10 ms polling costs at most a few percent of a core, and the bench measures at this rate.
/// Below it the cost grows without bound, up to a busy loop at 1 µs; no filesystem publishes
/// outside changes faster than that anyway (NFS caches attributes for 3 s or more).
pub const MIN_POLL: Duration = Duration::from_millis(10);

/// A poll interval: not below [`MIN_POLL`] (0, "never", is for the caller to take first).
pub fn poll_interval(source: &str, value: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d < MIN_POLL {
        return err(format!(
            "{source}={value:?} is shorter than {} ms, the shortest poll interval accepted (polling that often is a busy loop); use 0 (never), auto, or a duration of at least {}ms, e.g. 5s",
            MIN_POLL.as_millis(),
            MIN_POLL.as_millis()
        ));
    }
    Ok(d)
}

/// A duration that must not be zero.
pub fn positive(source: &str, value: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return err(format!(
            "{source}={value:?} must be longer than 0; use e.g. 10s"
        ));
    }
    Ok(d)
}

/// A reload URL: `http://[user:password@]HOST[:PORT][/PATH]`, HOST an IP address or localhost.
pub fn url(source: &str, value: &OsStr) -> Result<Url, ConfigError> {
    // The userinfo is a secret: never echo it back, not even in a value that is not UTF-8.
    let Some(v) = value.to_str() else {
        return err(format!(
            "{source}={} is not valid UTF-8; use a UTF-8 value",
            quote_redacted(value)
        ));
    };
    Url::parse(v.trim()).map_err(|why| {
        ConfigError(format!(
            "{source}={} {why}",
            quote_redacted(OsStr::new(v.trim()))
        ))
    })
}

/// [`quote`] with a URL's userinfo masked (see [`Url::redact`]).
pub fn quote_redacted(value: &OsStr) -> String {
    let q = quote(value);
    format!("\"{}\"", Url::redact(&q[1..q.len() - 1]))
}

/// An HTTP method for the reload request.
pub fn method(source: &str, value: &str) -> Result<&'static str, ConfigError> {
    const METHODS: [&str; 5] = ["POST", "PUT", "GET", "PATCH", "DELETE"];
    let upper = value.trim().to_ascii_uppercase();
    match METHODS.iter().find(|m| **m == upper) {
        Some(m) => Ok(m),
        None => err(format!(
            "{source}={value:?} is not accepted; use POST, PUT, GET, PATCH or DELETE"
        )),
    }
}

/// One of a fixed set of words, case-insensitive.
pub fn choice<T: Copy>(source: &str, value: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
    let v = value.trim().to_ascii_lowercase();
    if let Some((_, t)) = choices.iter().find(|(name, _)| *name == v) {
        return Ok(*t);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    err(format!(
        "{source}={value:?} is not accepted; use {}",
        names.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, us) in [
            ("0", 0),
            ("250ms", 250_000),
            ("2s", 2_000_000),
            ("1.5s", 1_500_000),
            ("1m", 60_000_000),
            ("0ms", 0),
            ("60m", 3_600_000_000),
            ("0.0005s", 500),
        ] {
            assert_eq!(duration("X", s), Ok(Duration::from_micros(us)), "{s}");
        }
        for (s, ns) in [
            ("0.0000001s", 100),
            ("0.0000000001s", 1),
            ("0.0000000000000000000001s", 1),
            ("0.001ms", 1_000),
            ("59.99999999999999999999m", 3_600_000_000_000),
        ] {
            assert_eq!(duration("X", s), Ok(Duration::from_nanos(ns)), "{s}");
        }
        assert!(duration("X", "60.0000000000000000000001m").is_err());
        for s in [
            "100", "1d", "-1s", "ms", "1.s", ".5s", "1..2s", "2 s", "abc", "99999m", "2h", "1e3s",
        ] {
            let e = duration("X", s).unwrap_err().0;
            assert!(e.starts_with(&format!("X={s:?}")), "{s}: {e}");
        }
    }

    #[test]
    fn non_utf8_values_are_quoted_byte_by_byte() {
        let v = OsStr::from_bytes(b"a\xffb");
        assert_eq!(quote(v), "\"a\\xFFb\"");
        assert!(text("RELOAD_SIGNAL", v)
            .unwrap_err()
            .0
            .contains("not valid UTF-8"));
        assert_eq!(
            process_name("PROCESS_NAME", OsStr::from_bytes(b" n\xc3 ")),
            Ok(b"n\xc3".to_vec())
        );
    }

    /// Was: `0.0000001s` (and any value under half a microsecond) became 0, which
    /// `RELOAD_POLL_INTERVAL` reads as "never poll".
    #[test]
    fn a_non_zero_duration_is_never_rounded_to_zero() {
        assert_eq!(duration("X", "0.0000001s"), Ok(Duration::from_nanos(100)));
        assert_eq!(duration("X", "0.0004ms"), Ok(Duration::from_nanos(400)));
        assert_eq!(
            duration("X", "0.000000000000000000000000001h"),
            Ok(Duration::from_nanos(1))
        );
    }

    #[test]
    fn poll_intervals_below_the_floor_are_refused_with_what_is_accepted() {
        let d = duration("P", "0.001ms").unwrap();
        let e = poll_interval("P", "0.001ms", d).unwrap_err().0;
        assert!(e.starts_with("P=\"0.001ms\"") && e.contains("10ms"), "{e}");
        assert_eq!(poll_interval("P", "10ms", MIN_POLL), Ok(MIN_POLL));
    }

    /// The exact value in ns, rounded up, from decimal arithmetic of its own (no 18-digit cut).
    fn oracle(whole: u64, fraction: &str, unit_ns: u128) -> Option<u128> {
        let k = fraction.len() as u32;
        let digits: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().ok()?
        };
        let scaled = (u128::from(whole) * 10u128.pow(k) + digits) * unit_ns;
        (scaled <= 3_600_000_000_000 * 10u128.pow(k)).then(|| scaled.div_ceil(10u128.pow(k)))
    }

    proptest::proptest! {
        // Shrunk failures are printed; no regression files are written into the tree.
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Any `WHOLE[.FRACTION]UNIT` parses to its exact value rounded up to the nanosecond
        /// (so never to zero unless it is zero), or is refused as too long exactly when it
        /// exceeds one hour.
        #[test]
        fn durations_are_exact_to_the_nanosecond_and_round_up(
            whole in proptest::prop_oneof![0u64..3, 0u64..4000],
            fraction in "[0-9]{0,22}",
            unit in proptest::sample::select(vec![("ms", 1_000_000u128), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)]),
            dot in proptest::bool::ANY,
        ) {
            let fraction = if dot && !fraction.is_empty() { fraction } else { String::new() };
            let text = match fraction.is_empty() {
                true => format!("{whole}{}", unit.0),
                false => format!("{whole}.{fraction}{}", unit.0),
            };
            let got = duration("X", &text);
            match oracle(whole, &fraction, unit.1) {
                Some(ns) => {
                    proptest::prop_assert_eq!(&got, &Ok(Duration::from_nanos(ns as u64)), "{}", text);
                    let nonzero = whole > 0 || fraction.bytes().any(|b| b != b'0');
                    proptest::prop_assert_eq!(nonzero, ns > 0, "{}", text);
                }
                None => {
                    let e = got.unwrap_err().0;
                    proptest::prop_assert!(e.contains("too long"), "{}: {}", text, e);
                }
            }
        }

        /// Whatever the value, a poll interval below the floor is refused and one at or above
        /// it is kept as parsed.
        #[test]
        fn no_poll_interval_below_the_floor_is_accepted(ns in 1u64..100_000_000) {
            let text = format!("0.{ns:09}s");
            let d = duration("X", &text).unwrap();
            proptest::prop_assert_eq!(d, Duration::from_nanos(ns));
            proptest::prop_assert_eq!(poll_interval("X", &text, d).is_ok(), d >= MIN_POLL);
        }

        /// For any URL with userinfo, whole or missing its `@host`, with a mistyped scheme,
        /// host, port or path: the error line never holds the password (each starts with a
        /// marker, so none is a port number).
        #[test]
        fn no_bad_url_error_line_shows_its_password(
            scheme in proptest::sample::select(vec!["http://", "HTTP://", "https://", "http//", "http:/", "", "ftp://"]),
            pw in "Zq9x[A-Za-z0-9._~!$&'()*+,;=%:/?#@\\[\\]-]{0,12}",
            at in proptest::bool::ANY,
            host in proptest::sample::select(vec!["127.0.0.1", "localhost", "[::1]", "", "prometheus", "[::1"]),
            port in proptest::sample::select(vec!["", ":80", ":0", ":65536", ":x", ":"]),
            path in proptest::sample::select(vec!["", "/", "/-/reload", "/a b", "/x@y", "?q=1", "#f"]),
        ) {
            let sep = if at { "@" } else { "" };
            let value = format!("{scheme}ops:{pw}{sep}{host}{port}{path}");
            if let Err(e) = url("RELOAD_WEBHOOK_URL", OsStr::new(&value)) {
                proptest::prop_assert!(!e.0.contains("Zq9x"), "{}", e.0);
            }
        }
    }
}
