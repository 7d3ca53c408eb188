//! `hipstershop.CurrencyService` (upstream: Node.js, port 7000): the supported currencies
//! and conversions between them through upstream's table of EUR rates
//! (`currency_conversion.json`, embedded). Conversions are exact decimal arithmetic on
//! nanos, rounded once to the nearest nano.

use std::{collections::BTreeMap, sync::Arc};

use tonic::{Request, Response, Status};

use crate::{
    money,
    proto::hipstershop::{
        CurrencyConversionRequest, Empty, GetSupportedCurrenciesResponse, Money,
        currency_service_server::{CurrencyService, CurrencyServiceServer},
    },
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 7000;

/// Upstream's conversion table: units of each currency per euro.
const RATES_JSON: &str = include_str!("currency/currency_conversion.json");

/// Conversion errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The currency is not in the table.
    #[error("unsupported currency: {0:?}")]
    Unsupported(String),
    /// The amount is invalid or the result does not fit.
    #[error(transparent)]
    Money(#[from] money::Error),
}

/// A rate, exactly: `numerator / 10^scale` units per euro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rate {
    numerator: i128,
    scale: u32,
}

/// The conversion table.
#[derive(Debug, Clone)]
pub struct Rates {
    rates: Arc<BTreeMap<String, Rate>>,
}

/// The currency service.
#[derive(Debug, Clone)]
pub struct Currency {
    rates: Rates,
}

/// The generated server for the currency service.
pub fn router() -> crate::server::Router {
    crate::server::Router::new().add_service(CurrencyServiceServer::new(Currency {
        rates: Rates::embedded(),
    }))
}

// === impl Rates ===

impl Rates {
    /// Upstream's table.
    pub fn embedded() -> Self {
        let table: BTreeMap<String, String> =
            serde_json::from_str(RATES_JSON).expect("the embedded conversion table is valid");
        let rates = table
            .into_iter()
            .map(|(code, rate)| {
                let rate = parse_rate(&rate).expect("the embedded rates are decimals");
                (code, rate)
            })
            .collect();
        Self {
            rates: Arc::new(rates),
        }
    }

    /// The supported currency codes, sorted.
    pub fn codes(&self) -> Vec<String> {
        self.rates.keys().cloned().collect()
    }

    fn rate(&self, code: &str) -> Result<Rate, Error> {
        self.rates
            .get(code)
            .copied()
            .ok_or_else(|| Error::Unsupported(code.to_string()))
    }

    /// Converts `from` into `to_code`, rounding to the nearest nano (halves away from zero).
    pub fn convert(&self, from: &Money, to_code: &str) -> Result<Money, Error> {
        let src = self.rate(&from.currency_code)?;
        let dst = self.rate(to_code)?;
        let amount = money::to_nanos(from)?;
        // amount / (src.n / 10^src.s) * (dst.n / 10^dst.s)
        //   = amount * dst.n * 10^src.s / (src.n * 10^dst.s)
        let overflow = || Error::Money(money::Error::Overflow);
        let numerator = amount
            .checked_mul(dst.numerator)
            .and_then(|v| v.checked_mul(10i128.pow(src.scale)))
            .ok_or_else(overflow)?;
        let denominator = src
            .numerator
            .checked_mul(10i128.pow(dst.scale))
            .ok_or_else(overflow)?;
        let rounded = div_round(numerator, denominator);
        Ok(money::from_nanos(to_code, rounded)?)
    }
}

/// `n / d` rounded to the nearest integer, halves away from zero (`d > 0`).
fn div_round(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

/// Parses a positive decimal such as `1.1305`.
fn parse_rate(s: &str) -> Option<Rate> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let numerator: i128 = format!("{int}{frac}").parse().ok()?;
    let scale = u32::try_from(frac.len()).ok()?;
    (numerator > 0).then_some(Rate { numerator, scale })
}

// === impl Currency ===

#[tonic::async_trait]
impl CurrencyService for Currency {
    async fn get_supported_currencies(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<GetSupportedCurrenciesResponse>, Status> {
        Ok(Response::new(GetSupportedCurrenciesResponse {
            currency_codes: self.rates.codes(),
        }))
    }

    async fn convert(
        &self,
        request: Request<CurrencyConversionRequest>,
    ) -> Result<Response<Money>, Status> {
        let req = request.into_inner();
        let from = req
            .from
            .ok_or_else(|| Status::invalid_argument("missing the amount to convert (from)"))?;
        let converted = self
            .rates
            .convert(&from, &req.to_code)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::debug!(
            from = %money::display(&from),
            to = %money::display(&converted),
            "conversion"
        );
        Ok(Response::new(converted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(code: &str, units: i64, nanos: i32) -> Money {
        Money {
            currency_code: code.into(),
            units,
            nanos,
        }
    }

    #[test]
    fn converts_through_euros() {
        let rates = Rates::embedded();
        assert_eq!(rates.codes().len(), 33);
        // 100 / 1.1305 = 88.4564352056...
        assert_eq!(
            rates.convert(&money("USD", 100, 0), "EUR").unwrap(),
            money("EUR", 88, 456_435_206)
        );
        // 1 EUR = 126.40 JPY.
        assert_eq!(
            rates.convert(&money("EUR", 1, 0), "JPY").unwrap(),
            money("JPY", 126, 400_000_000)
        );
        // Negative amounts keep their sign in both fields.
        assert_eq!(
            rates
                .convert(&money("EUR", -1, -500_000_000), "USD")
                .unwrap(),
            money("USD", -1, -695_750_000)
        );
        assert_eq!(
            rates.convert(&money("USD", 5, 0), "USD").unwrap(),
            money("USD", 5, 0)
        );
    }

    #[test]
    fn rejects_unknown_currencies_and_invalid_amounts() {
        let rates = Rates::embedded();
        assert!(matches!(
            rates.convert(&money("XXX", 1, 0), "USD"),
            Err(Error::Unsupported(c)) if c == "XXX"
        ));
        assert!(matches!(
            rates.convert(&money("USD", 1, 0), ""),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            rates.convert(&money("USD", 1, -1), "EUR"),
            Err(Error::Money(money::Error::Invalid { .. }))
        ));
    }

    #[test]
    fn parses_rates_exactly() {
        assert_eq!(
            parse_rate("1.1305"),
            Some(Rate {
                numerator: 11305,
                scale: 4
            })
        );
        assert_eq!(
            parse_rate("126"),
            Some(Rate {
                numerator: 126,
                scale: 0
            })
        );
        for bad in ["", ".5", "1,5", "-1.0", "0.0"] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
    }
}
