//! The results as a Markdown table and as JSON (hand-written: no serde for one flat file).

use std::fmt::Write as _;

/// One figure for each extra build that was measured.
#[derive(Clone, Debug, Default)]
pub struct Each<T> {
    /// The build before the std port.
    pub before: Option<T>,
    /// The `make tiny` build.
    pub tiny: Option<T>,
}

/// One figure: a number when there is one (for the ratio and the JSON), and how to show it.
#[derive(Clone, Debug, Default)]
pub struct Val {
    /// The figure, in the row's unit.
    pub num: Option<f64>,
    /// What the table shows.
    pub text: String,
}

impl Val {
    /// A number shown with a precision suited to its size.
    pub fn num(x: f64) -> Val {
        Val {
            num: Some(x),
            text: fmt_num(x),
        }
    }

    /// A number with its own display text.
    pub fn with(x: f64, text: impl Into<String>) -> Val {
        Val {
            num: Some(x),
            text: text.into(),
        }
    }

    /// Text only (no ratio).
    pub fn text(text: impl Into<String>) -> Val {
        Val {
            num: None,
            text: text.into(),
        }
    }

    /// Nothing measured.
    pub fn none() -> Val {
        Val::text("n/a")
    }
}

/// One line of the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Figure number (1-9).
    pub fig: u8,
    /// What is measured.
    pub metric: String,
    /// Unit of the numbers.
    pub unit: &'static str,
    /// Ours.
    pub ours: Val,
    /// The budget, as text.
    pub budget: Option<String>,
    /// Whether ours meets it.
    pub met: Option<bool>,
    /// The baseline.
    pub baseline: Val,
    /// Whether baseline ÷ ours means anything for this row.
    pub ratio: bool,
    /// The same measure for the other builds of ours (before the std port, tiny), if taken.
    pub builds: Each<Val>,
}

impl Row {
    /// baseline ÷ ours, when both are numbers and the row wants it.
    pub fn ratio_value(&self) -> Option<f64> {
        let (o, b) = (self.ours.num?, self.baseline.num?);
        (self.ratio && o > 0.0).then_some(b / o)
    }

    fn ratio_text(&self) -> String {
        match (self.ratio, self.ours.num, self.baseline.num) {
            (true, Some(o), Some(b)) if o > 0.0 => format!("{}×", fmt_num(b / o)),
            (true, Some(o), Some(b)) if o == 0.0 && b > 0.0 => "∞ (ours 0)".into(),
            (true, Some(_), Some(_)) => "– (both 0)".into(),
            _ => String::new(),
        }
    }
}

/// Run-wide facts printed above the table.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// UTC date and time of the run.
    pub date: String,
    /// `full` or `smoke`.
    pub mode: String,
    /// The command that produced it.
    pub command: String,
    /// Kernel, CPU, cores.
    pub host: String,
    /// Git commit of the workspace.
    pub commit: String,
    /// Versions of the baseline's tools.
    pub baseline_versions: String,
    /// Wall time of the whole run (s).
    pub wall_s: f64,
    /// Header of the "before" column, when that build was measured.
    pub before: Option<String>,
    /// Whether the `make tiny` build was measured.
    pub tiny: bool,
}

/// Shows `x` with 3 significant-ish digits.
pub fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        return "n/a".into();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 || (x.fract() == 0.0 && a < 1e15) {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The Markdown document: header, table, notes.
pub fn markdown(meta: &Meta, rows: &[Row], notes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# config-reloader vs `inotifywait | pkill`: `make bench`\n"
    );
    let _ = writeln!(
        s,
        "{} UTC · `{}` ({} mode, {:.0} s) · commit {} · {}\n",
        meta.date, meta.command, meta.mode, meta.wall_s, meta.commit, meta.host
    );
    let _ = writeln!(
        s,
        "Baseline: `{}` ({}). Ours: the release musl build, default settings unless stated.\n",
        crate::run::BASELINE_SCRIPT
            .replace("\"$1\"", "DIR")
            .replace("\"$2\"", "NAME"),
        meta.baseline_versions
    );
    // Extra builds get a column only when measured: before ours, tiny after it.
    let (before, tiny) = (meta.before.as_deref(), meta.tiny);
    let _ = writeln!(
        s,
        "| # | measure | unit | {}{}{}| budget | met | baseline | baseline ÷ ours |",
        before.map_or(String::new(), |b| format!("{b} | ")),
        if before.is_some() {
            "after (ours) "
        } else {
            "ours "
        },
        if tiny { "| tiny " } else { "" },
    );
    let _ = writeln!(
        s,
        "|---|---|---|{}---:|{}---|---|---:|---:|",
        if before.is_some() { "---:|" } else { "" },
        if tiny { "---:|" } else { "" },
    );
    let cell = |v: &Option<Val>| v.as_ref().map_or("", |v| v.text.as_str()).to_string();
    for r in rows {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        let mut ours = String::new();
        if before.is_some() {
            let _ = write!(ours, "{} | ", cell(&r.builds.before));
        }
        ours.push_str(&r.ours.text);
        if tiny {
            let _ = write!(ours, " | {}", cell(&r.builds.tiny));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fig,
            r.metric,
            r.unit,
            ours,
            r.budget.as_deref().unwrap_or(""),
            met,
            r.baseline.text,
            r.ratio_text()
        );
    }
    if !notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// The same as JSON: `{"meta": {...}, "rows": [...], "notes": [...], "raw": {...}}`.
pub fn json(meta: &Meta, rows: &[Row], notes: &[String], raw: &[(String, Vec<f64>)]) -> String {
    let mut s = String::from("{\n  \"meta\": {");
    let fields = [
        ("date", &meta.date),
        ("mode", &meta.mode),
        ("command", &meta.command),
        ("host", &meta.host),
        ("commit", &meta.commit),
        ("baseline_versions", &meta.baseline_versions),
    ];
    for (k, v) in fields {
        let _ = write!(s, "{}: {}, ", q(k), q(v));
    }
    let _ = write!(
        s,
        "\"before\": {}, \"tiny\": {}, ",
        meta.before.as_deref().map_or("null".into(), q),
        meta.tiny
    );
    let _ = write!(s, "\"wall_s\": {}}},\n  \"rows\": [\n", num(meta.wall_s));
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"fig\": {}, \"metric\": {}, \"unit\": {}, \"ours\": {}, \"ours_text\": {}, \
             \"budget\": {}, \"met\": {}, \"baseline\": {}, \"baseline_text\": {}, \"ratio\": {}, \
             \"before\": {}, \"tiny\": {}}}",
            r.fig,
            q(&r.metric),
            q(r.unit),
            r.ours.num.map_or("null".into(), num),
            q(&r.ours.text),
            r.budget.as_deref().map_or("null".into(), q),
            r.met.map_or("null".into(), |m| m.to_string()),
            r.baseline.num.map_or("null".into(), num),
            q(&r.baseline.text),
            r.ratio_value().map_or("null".into(), num),
            opt(&r.builds.before),
            opt(&r.builds.tiny),
        );
        s.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ],\n  \"notes\": [");
    let notes: Vec<String> = notes.iter().map(|n| q(n)).collect();
    s.push_str(&notes.join(", "));
    s.push_str("],\n  \"raw\": {");
    let raw: Vec<String> = raw
        .iter()
        .map(|(k, v)| {
            let vals: Vec<String> = v.iter().map(|&x| num(x)).collect();
            format!("\n    {}: [{}]", q(k), vals.join(", "))
        })
        .collect();
    s.push_str(&raw.join(","));
    s.push_str("\n  }\n}\n");
    s
}

/// An extra build's figure: its number, `null` when not measured or not a number.
fn opt(v: &Option<Val>) -> String {
    v.as_ref().and_then(|v| v.num).map_or("null".into(), num)
}

fn num(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.into()
        }
    } else {
        "null".into()
    }
}

fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Median of `v` (nearest rank); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Nearest-rank percentile of `v`; NaN when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// UTC `YYYY-MM-DD HH:MM` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let t = testkit::utc(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median(&v), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(q("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(f64::NAN), "null");
    }

    #[test]
    fn extra_build_columns_appear_only_when_measured() {
        let row = Row {
            fig: 7,
            metric: "binary".into(),
            unit: "KiB",
            ours: Val::num(617.0),
            baseline: Val::num(5928.0),
            ratio: true,
            builds: Each {
                before: Some(Val::num(154.0)),
                tiny: None,
            },
            ..Row::default()
        };
        let table = |meta: &Meta| {
            let md = markdown(meta, std::slice::from_ref(&row), &[]);
            let lines: Vec<String> = md
                .lines()
                .filter(|l| l.starts_with('|'))
                .map(String::from)
                .collect();
            lines
        };
        let plain = table(&Meta::default());
        assert!(
            plain[0].starts_with("| # | measure | unit | ours | budget"),
            "{}",
            plain[0]
        );
        assert_eq!(plain[2], "| 7 | binary | KiB | 617 |  |  | 5928 | 9.61× |");
        let both = table(&Meta {
            before: Some("before (e9aced9)".into()),
            tiny: true,
            ..Meta::default()
        });
        assert!(
            both[0].starts_with(
                "| # | measure | unit | before (e9aced9) | after (ours) | tiny | budget"
            ),
            "{}",
            both[0]
        );
        // Every line has as many cells as the header; tiny was not measured for this row.
        let cells = |l: &str| l.matches('|').count();
        assert!(
            both.iter().all(|l| cells(l) == cells(&both[0])),
            "{both:#?}"
        );
        assert_eq!(
            both[2],
            "| 7 | binary | KiB | 154 | 617 |  |  |  | 5928 | 9.61× |"
        );
        let js = json(&Meta::default(), std::slice::from_ref(&row), &[], &[]);
        assert!(js.contains("\"before\": 154, \"tiny\": null"), "{js}");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
    }
}
