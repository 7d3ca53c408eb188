//! The duration syntax of the static config format: `200ms`, `1.5s`, `1m30s`, `1h`.
//!
//! Used through `#[serde(with = "...")]` on [`Duration`] fields of the model. Parsing accepts
//! a sequence of `<decimal><unit>` terms with units `h`, `m`, `s`, `ms`, `us`/`µs` and `ns`
//! (Go's and Istio's syntax, without signs); formatting picks the largest unit that
//! represents the value exactly, so values round-trip bit for bit.

use std::{fmt::Write as _, time::Duration};

use serde::{Deserialize, Deserializer, Serializer};

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input was empty.
    #[error("duration is empty")]
    Empty,
    /// A term had no number, or a malformed one.
    #[error("invalid duration {0:?}: expected terms like 200ms, 1.5s, 1m30s")]
    Syntax(String),
    /// A term had an unknown or missing unit.
    #[error("invalid duration {0:?}: unit must be one of h, m, s, ms, us, ns")]
    Unit(String),
    /// The value does not fit in a [`Duration`].
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses `200ms`, `1.5s`, `1m30s`, ...
pub(crate) fn parse(input: &str) -> Result<Duration, ParseError> {
    if input.is_empty() {
        return Err(ParseError::Empty);
    }
    let syntax = || ParseError::Syntax(input.to_owned());
    let overflow = || ParseError::Overflow(input.to_owned());
    let mut rest = input;
    let mut total: u128 = 0; // nanoseconds
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        rest = tail;
        let scale: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(ParseError::Unit(input.to_owned())),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(syntax());
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(overflow)?;
        // Fraction digits beyond nanosecond precision are truncated.
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| overflow())?;
    // The remainder is < 1e9 and fits.
    let sub = u32::try_from(total % 1_000_000_000).map_err(|_| overflow())?;
    Ok(Duration::new(secs, sub))
}

/// Formats with the largest unit that is exact: `90s`, `1500ms`, `250us`, `7ns`, `0s`.
pub(crate) fn format(d: Duration) -> String {
    let mut out = String::new();
    let nanos = d.subsec_nanos();
    let secs = d.as_secs();
    // `write!` into a String cannot fail.
    let _ = if nanos == 0 {
        write!(out, "{secs}s")
    } else if nanos.is_multiple_of(1_000_000) {
        write!(out, "{}ms", d.as_millis())
    } else if nanos.is_multiple_of(1_000) {
        write!(out, "{}us", d.as_micros())
    } else {
        write!(out, "{}ns", d.as_nanos())
    };
    out
}

/// `#[serde(with = "duration")]` for `Duration`.
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `#[serde(with = "duration")]` for `Duration`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// `#[serde(with = "duration::option")]` for `Option<Duration>`.
pub(crate) mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some` as a duration string and `None` as null.
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes a duration string or null.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| super::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse("200ms"), Ok(ms(200)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse(".5s"), Ok(ms(500)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("1.0000000019s"), Ok(Duration::new(1, 1)));
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert!(matches!(parse("10"), Err(ParseError::Unit(_))));
        assert!(matches!(parse("s"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("1.2.3s"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("-1s"), Err(ParseError::Unit(_))));
        assert!(matches!(parse("1 s"), Err(ParseError::Unit(_))));
        assert!(matches!(parse("1d"), Err(ParseError::Unit(_))));
        assert!(matches!(
            parse("99999999999999999999999h"),
            Err(ParseError::Overflow(_))
        ));
    }

    #[test]
    fn formats_exactly_and_round_trips() {
        for (d, s) in [
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(250), "250us"),
            (Duration::new(1, 1), "1000000001ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format(d), s);
            assert_eq!(parse(s), Ok(d));
        }
    }
}
