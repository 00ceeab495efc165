//! RFC 3339 timestamps in the one form the ledger uses: `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds).
//!
//! A single fixed form keeps the canonical encoding trivial (the time is hashed as its text) and lets the
//! verifier refuse any other spelling of the same instant. Whole seconds are enough: the order of entries
//! is given by their sequence numbers, not by their times.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SSZ`, or says why it cannot (a clock before 1970 or after 9999).
pub(crate) fn format_utc(t: SystemTime) -> Result<String, String> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is set before 1970".to_string())?
        .as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        return Err("the system clock is set after the year 9999".into());
    }
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Checks that `s` is exactly in the form [`format_utc`] writes and names a real date and time.
pub(crate) fn check_utc(s: &str) -> Result<(), String> {
    let bad = || format!("'{s}' is not a time of the form YYYY-MM-DDTHH:MM:SSZ");
    let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2, b'T', h1, h2, b':', n1, n2, b':', s1, s2, b'Z'] =
        *s.as_bytes()
    else {
        return Err(bad());
    };
    let num = |digits: &[u8]| -> Option<u64> {
        digits.iter().try_fold(0u64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        num(&[y1, y2, y3, y4]),
        num(&[m1, m2]),
        num(&[d1, d2]),
        num(&[h1, h2]),
        num(&[n1, n2]),
        num(&[s1, s2]),
    ) else {
        return Err(bad());
    };
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 59 {
        return Err(bad());
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    Ok(())
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
///
/// This is Howard Hinnant's `civil_from_days`, restricted to non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        format_utc(UNIX_EPOCH + Duration::from_secs(secs)).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
        assert!(format_utc(UNIX_EPOCH + Duration::from_secs(253_402_300_800)).is_err());
    }

    #[test]
    fn every_formatted_day_checks() {
        // Walk 130 years a day at a time (plus an odd second offset): formatter and checker agree.
        for day in 0..(130 * 366) {
            let s = at(day * 86_400 + 3_723);
            assert!(check_utc(&s).is_ok(), "{s}");
        }
    }

    #[test]
    fn other_spellings_are_refused() {
        for s in [
            "",
            "2024-02-29T23:59:59",
            "2024-02-29T23:59:59+00:00",
            "2024-02-29t23:59:59Z",
            "2024-02-29T23:59:59.000Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:60Z",
            "1969-12-31T23:59:59Z",
            "2024-01-0aT00:00:00Z",
            "２024-01-01T00:00:00Z",
        ] {
            assert!(check_utc(s).is_err(), "{s}");
        }
        assert!(check_utc("2000-02-29T00:00:00Z").is_ok());
    }
}
