//! Calendar time in UTC without a date crate: the kubelet names its data dirs after it and the
//! bench stamps its report with it.

/// A UTC date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    /// e.g. 2026
    pub year: i64,
    /// 1-12
    pub month: i64,
    /// 1-31
    pub day: i64,
    /// 0-23
    pub hour: u64,
    /// 0-59
    pub minute: u64,
    /// 0-59
    pub second: u64,
}

/// The UTC calendar time of `secs` seconds since the Unix epoch (Hinnant's civil_from_days).
pub fn utc(secs: u64) -> Utc {
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Utc {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
    }
}
