//! `hipstershop.PaymentService` (upstream: Node.js, port 50051): validates the card as
//! upstream does (a valid number by the Luhn check, VISA or MasterCard only, not expired)
//! and returns a transaction id; no money moves. Refusals are `INVALID_ARGUMENT` with
//! upstream's messages.

use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};

use crate::{
    money,
    proto::hipstershop::{
        ChargeRequest, ChargeResponse, CreditCardInfo,
        payment_service_server::{PaymentService, PaymentServiceServer},
    },
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 50051;

/// Why a card is refused. The messages are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a card number.
    #[error("Credit card info is invalid")]
    InvalidCard,
    /// A valid number of a brand we do not take.
    #[error("Sorry, we cannot process {0} credit cards. Only VISA or MasterCard is accepted.")]
    Unaccepted(CardType),
    /// Expired.
    #[error("Your credit card (ending {last4}) expired on {month}/{year}")]
    Expired {
        /// The last four digits.
        last4: String,
        /// The expiration month.
        month: i32,
        /// The expiration year.
        year: i32,
    },
}

/// Card brands, by number prefix and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardType {
    /// VISA.
    Visa,
    /// MasterCard.
    MasterCard,
    /// American Express.
    AmericanExpress,
    /// Discover.
    Discover,
    /// Anything else.
    Unknown,
}

impl std::fmt::Display for CardType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The names upstream's card-validator library reports.
        f.write_str(match self {
            Self::Visa => "visa",
            Self::MasterCard => "mastercard",
            Self::AmericanExpress => "american-express",
            Self::Discover => "discover",
            Self::Unknown => "unknown",
        })
    }
}

/// The brand of a card number (digits only).
pub fn card_type(digits: &str) -> CardType {
    let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
    let len = digits.len();
    if digits.starts_with('4') && matches!(len, 13 | 16 | 19) {
        CardType::Visa
    } else if len == 16
        && (prefix(2).is_some_and(|p| (51..=55).contains(&p))
            || prefix(4).is_some_and(|p| (2221..=2720).contains(&p)))
    {
        CardType::MasterCard
    } else if len == 15 && matches!(prefix(2), Some(34 | 37)) {
        CardType::AmericanExpress
    } else if len >= 16 && (digits.starts_with("6011") || digits.starts_with("65")) {
        CardType::Discover
    } else {
        CardType::Unknown
    }
}

/// The Luhn checksum of a digit string.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Checks `card` at `(year, month)` (`month` 1–12) as upstream does.
pub fn validate(card: &CreditCardInfo, (year, month): (i32, i32)) -> Result<CardType, Error> {
    let digits: String = card
        .credit_card_number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    if !luhn_valid(&digits) {
        return Err(Error::InvalidCard);
    }
    let kind = card_type(&digits);
    if !matches!(kind, CardType::Visa | CardType::MasterCard) {
        return Err(Error::Unaccepted(kind));
    }
    let (exp_year, exp_month) = (
        card.credit_card_expiration_year,
        card.credit_card_expiration_month,
    );
    if i64::from(year) * 12 + i64::from(month) > i64::from(exp_year) * 12 + i64::from(exp_month) {
        return Err(Error::Expired {
            last4: digits[digits.len() - 4..].to_string(),
            month: exp_month,
            year: exp_year,
        });
    }
    Ok(kind)
}

/// The current UTC year and month (1–12).
pub fn current_year_month() -> (i32, i32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    civil_from_days(days)
}

/// The (year, month) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, i32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(i32::MAX),
        i32::try_from(month).expect("1..=12"),
    )
}

/// The payment service.
#[derive(Debug, Clone, Default)]
pub struct Payment;

/// The generated server for the payment service.
pub fn router() -> crate::server::Router {
    crate::server::Router::new().add_service(PaymentServiceServer::new(Payment))
}

#[tonic::async_trait]
impl PaymentService for Payment {
    async fn charge(
        &self,
        request: Request<ChargeRequest>,
    ) -> Result<Response<ChargeResponse>, Status> {
        let req = request.into_inner();
        let card = req
            .credit_card
            .ok_or_else(|| Status::invalid_argument("missing the credit card"))?;
        let amount = req
            .amount
            .ok_or_else(|| Status::invalid_argument("missing the amount"))?;
        let kind = validate(&card, current_year_month()).map_err(|e| {
            tracing::info!(error = %e, "card refused");
            Status::invalid_argument(e.to_string())
        })?;
        let digits = card.credit_card_number.trim();
        let last4 = digits.get(digits.len().saturating_sub(4)..).unwrap_or("");
        tracing::info!(
            "Transaction processed: {kind} ending {last4} Amount: {}",
            money::display(&amount)
        );
        Ok(Response::new(ChargeResponse {
            transaction_id: crate::id::uuid_v4(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, year: i32, month: i32) -> CreditCardInfo {
        CreditCardInfo {
            credit_card_number: number.into(),
            credit_card_cvv: 672,
            credit_card_expiration_year: year,
            credit_card_expiration_month: month,
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4432801561520454"));
        assert!(luhn_valid("5555555555554444"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4432801561520455"));
        assert!(!luhn_valid("4432x01561520454"));
        assert!(!luhn_valid("0"));
    }

    #[test]
    fn brands() {
        assert_eq!(card_type("4432801561520454"), CardType::Visa);
        assert_eq!(card_type("5555555555554444"), CardType::MasterCard);
        assert_eq!(card_type("2221000000000009"), CardType::MasterCard);
        assert_eq!(card_type("378282246310005"), CardType::AmericanExpress);
        assert_eq!(card_type("6011111111111117"), CardType::Discover);
    }

    #[test]
    fn validation_follows_upstream() {
        let now = (2026, 11);
        // The card the upstream frontend pre-fills.
        assert_eq!(
            validate(&card("4432-8015-6152-0454", 2030, 1), now),
            Ok(CardType::Visa)
        );
        assert_eq!(
            validate(&card("4432801561520454", 2026, 11), now),
            Ok(CardType::Visa)
        );
        assert_eq!(
            validate(&card("4432801561520455", 2030, 1), now),
            Err(Error::InvalidCard)
        );
        let amex = validate(&card("378282246310005", 2030, 1), now).unwrap_err();
        assert_eq!(
            amex.to_string(),
            "Sorry, we cannot process american-express credit cards. Only VISA or MasterCard \
             is accepted."
        );
        let expired = validate(&card("5555555555554444", 2026, 10), now).unwrap_err();
        assert_eq!(
            expired.to_string(),
            "Your credit card (ending 4444) expired on 10/2026"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1));
        assert_eq!(civil_from_days(59), (1970, 3));
        // 2024-02-29 is day 19782.
        assert_eq!(civil_from_days(19_782), (2024, 2));
        assert_eq!(civil_from_days(19_783), (2024, 3));
        assert!(current_year_month().0 >= 2025);
    }
}
