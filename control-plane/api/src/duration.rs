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

/// Formats a duration the way [`parse_duration`] reads it (millisecond precision).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        // A count of milliseconds past u64::MAX (585 million years) is more than the
        // parser reads: seconds, then the rest.
        ms if ms > u128::from(u64::MAX) => format!("{}s{}ms", ms / 1_000, ms % 1_000),
        ms => format!("{ms}ms"),
    }
}

/// A duration written as a string in YAML and JSON (`"250ms"`, `"2s"`), parsed when read,
/// so that a bad value fails at its line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"2s\" or \"1m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            // `request: 5` in YAML is a number: refused with the same message as "5".
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(DurationError(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(DurationError(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(DurationError(v.to_string())))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// In a CRD, a duration is a string of the shape [`parse_duration`] reads: the API server
/// refuses `250` or `2 s` at `kubectl apply`, as `outrigger check` does.
#[cfg(feature = "crd")]
impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h))+$",
            "description": "A duration: integers with units ms, s, m, h (250ms, 2s, 1m, 1h30m)."
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every value the control plane may hold is written so that the proxy reads
        /// it back the same (the watch stream carries policies' durations as text).
        #[test]
        fn format_then_parse_is_the_same_value(secs in any::<u64>(), ms in 0u64..1000) {
            let duration = Duration::from_secs(secs) + Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            let small = Duration::from_millis(secs % 100_000_000);
            prop_assert_eq!(parse_duration(&format_duration(small)), Ok(small));
        }

        /// What a user wrote, once read, reads the same after being written out.
        #[test]
        fn parse_format_parse_agrees(text in "([0-9]{1,21}(ms|s|m|h)){1,3}") {
            if let Ok(duration) = parse_duration(&text) {
                prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            }
        }
    }

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
    fn formats_what_it_parses() {
        for text in ["0s", "250ms", "2s", "1m", "90s", "1h", "1500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        let json = serde_json::to_string(&HumanDuration(Duration::from_millis(250))).unwrap();
        assert_eq!(json, "\"250ms\"");
        assert_eq!(
            serde_json::from_str::<HumanDuration>(&json).unwrap().get(),
            Duration::from_millis(250)
        );
        assert!(serde_json::from_str::<HumanDuration>("25").is_err());
        assert!(serde_json::from_str::<HumanDuration>("\"-1s\"").is_err());
    }

    /// Found by the property test above: past u64::MAX milliseconds, the value was
    /// written as a count of milliseconds, which the parser refuses.
    #[test]
    fn the_longest_durations_are_written_readably() {
        let longest = Duration::from_secs(u64::MAX) + Duration::from_millis(999);
        assert_eq!(format_duration(longest), "18446744073709551615s999ms");
        assert_eq!(parse_duration(&format_duration(longest)), Ok(longest));
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
