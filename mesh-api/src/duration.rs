//! The duration syntax used throughout the config: a sequence of decimal numbers, each with
//! a unit, as Istio (and Go's `time.ParseDuration`) accept — `200ms`, `1.5s`, `1m30s`, `2h`.
//!
//! Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. Negative values, missing units and
//! overflowing values are errors.

use std::fmt::Write as _;
use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The string was empty.
    #[error("empty duration: write a number with a unit, like 200ms, 1.5s or 1m")]
    Empty,
    /// A leading `-` sign.
    #[error("negative duration {0:?}: durations must be zero or positive")]
    Negative(String),
    /// A number without a unit.
    #[error("duration {0:?} has no unit: add one of ns, us, ms, s, m, h (e.g. {0}s)")]
    MissingUnit(String),
    /// An unknown unit.
    #[error("duration {input:?} has unknown unit {unit:?}: use one of ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// Something that is not a number where a number was expected.
    #[error("invalid duration {0:?}: write a number with a unit, like 200ms, 1.5s or 1m30s")]
    Invalid(String),
    /// Too large to represent.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a duration such as `1.5s` or `1m30s`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(mesh_api::duration::parse("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(mesh_api::duration::parse("250ms").unwrap(), Duration::from_millis(250));
/// assert!(mesh_api::duration::parse("5 seconds").is_err());
/// ```
pub fn parse(input: &str) -> Result<Duration, ParseError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    if s.starts_with('-') {
        return Err(ParseError::Negative(input.to_string()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let invalid = || ParseError::Invalid(input.to_string());
    if s.contains(char::is_whitespace) {
        return Err(invalid());
    }
    let overflow = || ParseError::Overflow(input.to_string());

    let mut rest = s;
    let mut total: u128 = 0; // nanoseconds
    while !rest.is_empty() {
        // The number: digits, optionally a fraction.
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(ParseError::MissingUnit(input.to_string())),
            other => {
                return Err(ParseError::UnknownUnit {
                    input: input.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.len() > 20 {
            return Err(overflow());
        }
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
        // Fractions beyond nanosecond precision are truncated, as in Go.
        let mut scale = nanos_per_unit;
        for digit in frac_part.bytes().take(30) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| overflow())?;
    // The remainder is below 10^9 and fits a u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration in the same syntax, choosing the largest exact unit: `1.5s`, `250ms`,
/// `90s` becomes `1m30s`.
pub fn format(d: Duration) -> String {
    let mut out = String::new();
    let total_nanos = d.as_nanos();
    if total_nanos == 0 {
        return "0s".to_string();
    }
    if !total_nanos.is_multiple_of(1_000_000_000) {
        // Sub-second precision: one unit that represents it exactly.
        if total_nanos.is_multiple_of(1_000_000) {
            let _ = write!(out, "{}ms", total_nanos / 1_000_000);
        } else if total_nanos.is_multiple_of(1_000) {
            let _ = write!(out, "{}us", total_nanos / 1_000);
        } else {
            let _ = write!(out, "{total_nanos}ns");
        }
        return out;
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 {
        let _ = write!(out, "{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_examples() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("1h1m1s").unwrap(), Duration::from_secs(3661));
        assert_eq!(parse("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse("100µs").unwrap(), Duration::from_micros(100));
        assert_eq!(parse("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert!(matches!(parse("-1s"), Err(ParseError::Negative(_))));
        assert!(matches!(parse("10"), Err(ParseError::MissingUnit(_))));
        assert!(matches!(parse("1x"), Err(ParseError::UnknownUnit { .. })));
        assert!(matches!(parse("5 seconds"), Err(ParseError::Invalid(_))));
        assert!(matches!(parse("5sec"), Err(ParseError::UnknownUnit { .. })));
        assert!(matches!(parse("1..2s"), Err(ParseError::Invalid(_))));
        assert!(matches!(parse("s"), Err(ParseError::Invalid(_))));
        assert!(matches!(
            parse("99999999999999999999999h"),
            Err(ParseError::Overflow(_))
        ));
        let msg = parse("10").unwrap_err().to_string();
        assert!(msg.contains("10s"), "{msg}");
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h1m1s", "250ms", "1m30s", "7ns", "100us", "0s", "2h"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
