//! [`Percent`]: a validated percentage, `0.0..=100.0`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A percentage in `0.0..=100.0` (never NaN), as Istio writes fault and mirror fractions.
///
/// Serializes as a plain number. The proxy samples with [`Percent::sample`].
#[derive(Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Percent(f64);

/// A number outside `0..=100` (or NaN) was given as a percentage.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("percentage must be between 0 and 100, got {0}")]
pub struct PercentError(pub f64);

// === impl Percent ===

impl Percent {
    /// 0 %.
    pub const ZERO: Self = Self(0.0);
    /// 100 %.
    pub const HUNDRED: Self = Self(100.0);

    /// Validates `value` as a percentage.
    pub fn new(value: f64) -> Result<Self, PercentError> {
        if (0.0..=100.0).contains(&value) {
            // Normalize -0.0 so that equality and formatting are unsurprising.
            Ok(Self(value + 0.0))
        } else {
            Err(PercentError(value))
        }
    }

    /// The value, `0.0..=100.0`.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether a uniformly random `r` in `0.0..1.0` falls inside this percentage: `true` with
    /// probability `self / 100`. Always `false` for 0 % and always `true` for 100 %.
    pub fn sample(self, r: f64) -> bool {
        r * 100.0 < self.0
    }
}

impl Default for Percent {
    /// 100 %: an unqualified fault or mirror applies to every request.
    fn default() -> Self {
        Self::HUNDRED
    }
}

impl TryFrom<f64> for Percent {
    type Error = PercentError;

    fn try_from(v: f64) -> Result<Self, PercentError> {
        Self::new(v)
    }
}

impl From<Percent> for f64 {
    fn from(p: Percent) -> f64 {
        p.0
    }
}

impl fmt::Debug for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_range() {
        assert_eq!(Percent::new(0.0).unwrap().get(), 0.0);
        assert_eq!(Percent::new(100.0).unwrap().get(), 100.0);
        assert_eq!(Percent::new(12.5).unwrap().get(), 12.5);
        assert!(Percent::new(-0.1).is_err());
        assert!(Percent::new(100.01).is_err());
        assert!(Percent::new(f64::NAN).is_err());
        assert!(Percent::new(f64::INFINITY).is_err());
        assert_eq!(
            Percent::new(101.0).unwrap_err().to_string(),
            "percentage must be between 0 and 100, got 101"
        );
    }

    #[test]
    fn samples() {
        assert!(!Percent::ZERO.sample(0.0));
        assert!(Percent::HUNDRED.sample(0.999_999));
        let ten = Percent::new(10.0).unwrap();
        assert!(ten.sample(0.05));
        assert!(!ten.sample(0.1));
    }

    #[test]
    fn serde_validates() {
        assert_eq!(
            serde_json::to_string(&Percent::new(5.0).unwrap()).unwrap(),
            "5.0"
        );
        assert_eq!(
            serde_json::from_str::<Percent>("42").unwrap(),
            Percent::new(42.0).unwrap()
        );
        assert!(serde_json::from_str::<Percent>("142").is_err());
    }
}
