//! One line per event on stderr: `level message key=value ...`, or the same as a JSON object.
//!
//! Each line is rendered whole, then written at once to unbuffered stderr, so lines never
//! interleave and a line is visible in `kubectl logs` at once. Never logs file contents
//! (Secrets are config too): paths, names and numbers only.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `level message key=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

/// Severity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Only with VERBOSE: every event considered.
    Debug,
    /// Start-up, reloads, exit.
    Info,
    /// Something the operator should look at; we carry on.
    Warn,
    /// Something failed; we carry on.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A field value: strings are quoted when needed, numbers never.
pub enum Value<'a> {
    /// Text.
    Str(&'a str),
    /// Owned text.
    String(String),
    /// An integer.
    Int(i64),
    /// A duration, printed in milliseconds with up to 3 decimals (`0.412`, `2`, `2000`).
    Ms(Duration),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(s)
    }
}
impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}
impl From<i32> for Value<'_> {
    fn from(n: i32) -> Self {
        Value::Int(n.into())
    }
}
impl From<u64> for Value<'_> {
    fn from(n: u64) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl<'a> From<&'a Path> for Value<'a> {
    fn from(p: &'a Path) -> Self {
        Value::String(p.display().to_string())
    }
}
impl From<usize> for Value<'_> {
    fn from(n: usize) -> Self {
        Value::Int(n as i64)
    }
}
impl From<Duration> for Value<'_> {
    fn from(d: Duration) -> Self {
        Value::Ms(d)
    }
}

/// Writes log lines in the configured format.
pub struct Logger {
    format: LogFormat,
    verbose: bool,
}

impl Logger {
    /// A logger; `verbose` enables [`Level::Debug`].
    pub fn new(format: LogFormat, verbose: bool) -> Logger {
        Logger { format, verbose }
    }

    /// Whether debug lines are written (callers skip building costly fields otherwise).
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// Writes one line; a failed write to stderr is ignored, there is nowhere else to report it.
    pub fn log(&self, level: Level, msg: &str, fields: &[(&str, Value<'_>)]) {
        if level == Level::Debug && !self.verbose {
            return;
        }
        let line = format_line(self.format, level, msg, fields);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// [`Level::Debug`] shorthand.
    pub fn debug(&self, msg: &str, fields: &[(&str, Value<'_>)]) {
        self.log(Level::Debug, msg, fields)
    }
    /// [`Level::Info`] shorthand.
    pub fn info(&self, msg: &str, fields: &[(&str, Value<'_>)]) {
        self.log(Level::Info, msg, fields)
    }
    /// [`Level::Warn`] shorthand.
    pub fn warn(&self, msg: &str, fields: &[(&str, Value<'_>)]) {
        self.log(Level::Warn, msg, fields)
    }
    /// [`Level::Error`] shorthand.
    pub fn error(&self, msg: &str, fields: &[(&str, Value<'_>)]) {
        self.log(Level::Error, msg, fields)
    }
}

/// Renders one line, newline included.
pub fn format_line(
    format: LogFormat,
    level: Level,
    msg: &str,
    fields: &[(&str, Value<'_>)],
) -> String {
    let mut out = String::with_capacity(128);
    match format {
        LogFormat::Text => {
            out.push_str(level.as_str());
            out.push(' ');
            out.push_str(msg);
            for (k, v) in fields {
                let _ = write!(out, " {k}=");
                match v {
                    Value::Str(s) => text_value(&mut out, s),
                    Value::String(s) => text_value(&mut out, s),
                    Value::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Value::Ms(d) => ms(&mut out, *d),
                }
            }
        }
        LogFormat::Json => {
            out.push_str("{\"level\":\"");
            out.push_str(level.as_str());
            out.push_str("\",\"msg\":");
            json_string(&mut out, msg);
            for (k, v) in fields {
                out.push(',');
                json_string(&mut out, k);
                out.push(':');
                match v {
                    Value::Str(s) => json_string(&mut out, s),
                    Value::String(s) => json_string(&mut out, s),
                    Value::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Value::Ms(d) => ms(&mut out, *d),
                }
            }
            out.push('}');
        }
    }
    out.push('\n');
    out
}

/// Milliseconds rounded to the microsecond, trailing zeros trimmed: `0.412`, `1.25`, `2`.
fn ms(out: &mut String, d: Duration) {
    let micros = (d.as_nanos() + 500) / 1000;
    let _ = write!(out, "{}", micros / 1000);
    let mut frac = micros % 1000;
    if frac != 0 {
        let mut digits = 3;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        let _ = write!(out, ".{frac:0digits$}");
    }
}

/// One line on stderr, before anything was watched or signalled (bad input, an app that
/// cannot be started): `config-reloader: LINE`, and the exit code.
pub fn fatal(code: u8, line: &str) -> std::process::ExitCode {
    let _ = writeln!(std::io::stderr(), "config-reloader: {line}");
    std::process::ExitCode::from(code)
}

/// A duration as seconds for humans: `5s`, `2.5s`, `0.25s` (millisecond precision).
pub fn seconds(d: Duration) -> String {
    let mut out = String::new();
    ms(&mut out, Duration::from_micros(d.as_millis() as u64));
    out.push('s');
    out
}

/// Quotes a text value only when it would otherwise be ambiguous.
fn text_value(out: &mut String, s: &str) {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control());
    if plain {
        out.push_str(s);
    } else {
        json_string(out, s);
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_quote_only_when_needed() {
        let line = format_line(
            LogFormat::Text,
            Level::Info,
            "reloaded",
            &[
                ("pid", 42.into()),
                ("name", "nginx".into()),
                ("hint", "run as \"app\" uid".into()),
                ("took_ms", Duration::from_micros(400).into()),
            ],
        );
        assert_eq!(
            line,
            "info reloaded pid=42 name=nginx hint=\"run as \\\"app\\\" uid\" took_ms=0.4\n"
        );
    }

    #[test]
    fn json_lines_are_objects_with_typed_values() {
        let line = format_line(
            LogFormat::Json,
            Level::Warn,
            "no process named x",
            &[
                ("pid", 7.into()),
                ("dir", "/a\tb".into()),
                ("ms", Duration::from_micros(1250).into()),
            ],
        );
        assert_eq!(line, "{\"level\":\"warn\",\"msg\":\"no process named x\",\"pid\":7,\"dir\":\"/a\\tb\",\"ms\":1.25}\n");
    }

    fn ms_text(d: Duration) -> String {
        let mut s = String::new();
        ms(&mut s, d);
        s
    }

    #[test]
    fn milliseconds_are_short() {
        assert_eq!(ms_text(Duration::from_millis(2)), "2");
        assert_eq!(ms_text(Duration::from_nanos(123_400)), "0.123");
        assert_eq!(ms_text(Duration::from_nanos(123_500)), "0.124");
        assert_eq!(ms_text(Duration::from_micros(1050)), "1.05");
        assert_eq!(ms_text(Duration::from_micros(2_000_001)), "2000.001");
        assert_eq!(ms_text(Duration::ZERO), "0");
    }
}
