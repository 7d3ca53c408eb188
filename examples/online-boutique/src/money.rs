//! Exact arithmetic on `hipstershop.Money` (`units` + `nanos` of a currency), as upstream's
//! `money` package in checkout: validation of the sign rules, sums in one currency and
//! multiplication by a quantity, all through an exact count of nanos (no floating point).

use crate::proto::hipstershop::Money;

/// Nanos in one unit.
pub const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Errors of money arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `nanos` is out of range or its sign disagrees with `units`.
    #[error(
        "invalid amount {units} units {nanos} nanos: nanos must be within ±999999999 and \
         have the sign of units"
    )]
    Invalid {
        /// The units given.
        units: i64,
        /// The nanos given.
        nanos: i32,
    },
    /// Two amounts in different currencies were combined.
    #[error("cannot add {0} and {1} amounts: the currencies differ")]
    CurrencyMismatch(String, String),
    /// The result does not fit in `Money`.
    #[error("the amount is too large")]
    Overflow,
}

/// The amount of `m` in nanos, after checking its sign rules.
pub fn to_nanos(m: &Money) -> Result<i128, Error> {
    let invalid = Error::Invalid {
        units: m.units,
        nanos: m.nanos,
    };
    if !(-999_999_999..=999_999_999).contains(&m.nanos)
        || (m.units > 0 && m.nanos < 0)
        || (m.units < 0 && m.nanos > 0)
    {
        return Err(invalid);
    }
    Ok(i128::from(m.units) * NANOS_PER_UNIT + i128::from(m.nanos))
}

/// `total` nanos of `currency_code` as `Money` (units and nanos with the same sign).
pub fn from_nanos(currency_code: &str, total: i128) -> Result<Money, Error> {
    let units = i64::try_from(total / NANOS_PER_UNIT).map_err(|_| Error::Overflow)?;
    let nanos = i32::try_from(total % NANOS_PER_UNIT).expect("|remainder| < 10^9");
    Ok(Money {
        currency_code: currency_code.to_string(),
        units,
        nanos,
    })
}

/// `a + b`, which must be in the same currency.
pub fn sum(a: &Money, b: &Money) -> Result<Money, Error> {
    if a.currency_code != b.currency_code {
        return Err(Error::CurrencyMismatch(
            a.currency_code.clone(),
            b.currency_code.clone(),
        ));
    }
    let total = to_nanos(a)?
        .checked_add(to_nanos(b)?)
        .ok_or(Error::Overflow)?;
    from_nanos(&a.currency_code, total)
}

/// `m × n`.
pub fn multiply(m: &Money, n: u32) -> Result<Money, Error> {
    let total = to_nanos(m)?
        .checked_mul(i128::from(n))
        .ok_or(Error::Overflow)?;
    from_nanos(&m.currency_code, total)
}

/// Zero of `currency_code`.
pub fn zero(currency_code: &str) -> Money {
    Money {
        currency_code: currency_code.to_string(),
        units: 0,
        nanos: 0,
    }
}

/// `m` for people: `USD 19.99` (two decimals, rounded half away from zero).
pub fn display(m: &Money) -> String {
    let total = i128::from(m.units) * NANOS_PER_UNIT + i128::from(m.nanos);
    let cents = (total.abs() + 5_000_000) / 10_000_000;
    let sign = if total < 0 { "-" } else { "" };
    format!(
        "{} {sign}{}.{:02}",
        m.currency_code,
        cents / 100,
        cents % 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(units: i64, nanos: i32) -> Money {
        Money {
            currency_code: "USD".into(),
            units,
            nanos,
        }
    }

    #[test]
    fn sums_carry_nanos_into_units() {
        assert_eq!(
            sum(&usd(19, 990_000_000), &usd(8, 990_000_000)).unwrap(),
            usd(28, 980_000_000)
        );
        assert_eq!(
            sum(&usd(1, 0), &usd(-1, -500_000_000)).unwrap(),
            usd(0, -500_000_000)
        );
        assert_eq!(
            sum(&usd(-2, 0), &usd(1, 250_000_000)).unwrap(),
            usd(0, -750_000_000)
        );
    }

    #[test]
    fn multiplies_by_quantities() {
        assert_eq!(
            multiply(&usd(18, 990_000_000), 3).unwrap(),
            usd(56, 970_000_000)
        );
        assert_eq!(multiply(&usd(5, 0), 0).unwrap(), usd(0, 0));
        assert_eq!(multiply(&usd(i64::MAX, 0), 2).unwrap_err(), Error::Overflow);
    }

    #[test]
    fn rejects_invalid_amounts_and_mixed_currencies() {
        assert!(matches!(to_nanos(&usd(1, -1)), Err(Error::Invalid { .. })));
        assert!(matches!(to_nanos(&usd(-1, 1)), Err(Error::Invalid { .. })));
        assert!(matches!(
            to_nanos(&usd(0, 1_000_000_000)),
            Err(Error::Invalid { .. })
        ));
        let eur = Money {
            currency_code: "EUR".into(),
            units: 1,
            nanos: 0,
        };
        assert_eq!(
            sum(&usd(1, 0), &eur).unwrap_err(),
            Error::CurrencyMismatch("USD".into(), "EUR".into())
        );
    }

    #[test]
    fn displays_two_decimals() {
        assert_eq!(display(&usd(19, 990_000_000)), "USD 19.99");
        assert_eq!(display(&usd(0, 5_000_000)), "USD 0.01");
        assert_eq!(display(&usd(-1, -750_000_000)), "USD -1.75");
    }
}
