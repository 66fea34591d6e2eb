//! Durations as people write them in YAML and flags: `250ms`, `2s`, `1m`, `1h`, `1h30m`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(pub String);

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid duration {:?} (expected a number and a unit: ms, s, m, h; e.g. 250ms, 2s, 1m)",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses one or more `<integer><unit>` parts; units `ms`, `s`, `m`, `h`. A bare number
/// is refused: `25` could mean seconds or milliseconds, and guessing hides mistakes.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(input.to_string());
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(err)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(err)?),
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part).ok_or_else(err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_ambiguous_or_malformed() {
        for bad in [
            "",
            "25",
            "-1s",
            "1.5s",
            "s",
            "2 s",
            "3d",
            "1sm",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_duration("25")
                .unwrap_err()
                .to_string()
                .contains("\"25\"")
        );
    }
}
