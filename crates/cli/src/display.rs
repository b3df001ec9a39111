//! Human-readable numbers and times for `inspect`, `ls` and `demo`.

/// `1536` → `1.5 KiB`; exact below 1 KiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Nanoseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`; `-` for zero (never set).
pub fn unix_ns(ns: u64) -> String {
    if ns == 0 {
        return "-".to_string();
    }
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Milliseconds with one decimal below 10 ms, e.g. `3.2 ms`, `48 ms`, `1.25 s`.
pub fn duration(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(unix_ns(0), "-");
        assert_eq!(unix_ns(1_000_000_000), "1970-01-01 00:00:01 UTC");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(unix_ns(951_827_696_000_000_000), "2000-02-29 12:34:56 UTC");
        assert_eq!(
            unix_ns(1_764_082_321_000_000_000),
            "2025-11-25 14:52:01 UTC"
        );
    }

    #[test]
    fn formats_durations() {
        assert_eq!(duration(Duration::from_micros(3_240)), "3.2 ms");
        assert_eq!(duration(Duration::from_millis(48)), "48 ms");
        assert_eq!(duration(Duration::from_millis(1_250)), "1.25 s");
    }
}
