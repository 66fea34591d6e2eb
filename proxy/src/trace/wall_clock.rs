//! Wall-clock times for log lines and spans. Durations are measured on tokio's clock;
//! only the start of a request is read from the system clock, once.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 for a clock set before 1970).
pub(crate) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 in UTC with microseconds (`2026-11-03T10:15:30.123456Z`), the form log
/// collectors parse without configuration.
pub(crate) fn rfc3339_micros(unix_nanos: u64) -> String {
    let seconds = unix_nanos / 1_000_000_000;
    let micros = (unix_nanos % 1_000_000_000) / 1_000;
    let (year, month, day) = civil_date(seconds / 86_400);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01: years are counted in
/// 400-year eras of 146,097 days from 0000-03-01, so that the leap day ends a year.
fn civil_date(days_since_epoch: u64) -> (u64, u64, u64) {
    // 719,468 days from 0000-03-01 to 1970-01-01.
    let days = days_since_epoch + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day of a century divisible by 400) 12:34:56.789012.
        assert_eq!(
            rfc3339_micros(951_827_696_789_012_345),
            "2000-02-29T12:34:56.789012Z"
        );
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01.
        assert_eq!(
            rfc3339_micros(4_107_542_400_000_000_000),
            "2100-03-01T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339_micros(1_767_225_599_999_999_999),
            "2025-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn reads_the_system_clock_since_the_epoch() {
        let now = unix_nanos(SystemTime::now());
        assert!(now > 1_700_000_000_000_000_000);
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
    }
}
