//! Serde helpers for the model's [`Duration`] fields, in the shared duration syntax of
//! [`crate::duration`] (`200ms`, `1.5s`, `1m30s`): `#[serde(with = "duration")]` and
//! `#[serde(with = "duration::option")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

use crate::duration::{format, parse};

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

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
        #[serde(with = "super::option", default)]
        o: Option<Duration>,
    }

    #[test]
    fn round_trips_through_json() {
        let t = T {
            d: Duration::from_millis(1500),
            o: Some(Duration::from_secs(90)),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"d":"1500ms","o":"1m30s"}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        let err = serde_json::from_str::<T>(r#"{"d":"10","o":null}"#).unwrap_err();
        assert!(err.to_string().contains("no unit"), "{err}");
    }
}
