//! `hipstershop.ShippingService` (upstream: Go, port 50051): a flat 8.99 USD quote for any
//! address and cart (upstream's `CreateQuoteFromCount(0)`), and a made-up tracking id in
//! upstream's shape (`ET-34675-173898815`) for shipped orders.

use tonic::{Request, Response, Status};

use crate::proto::hipstershop::{
    GetQuoteRequest, GetQuoteResponse, Money, ShipOrderRequest, ShipOrderResponse,
    shipping_service_server::{ShippingService, ShippingServiceServer},
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 50051;

/// The quote for any order.
pub fn quote() -> Money {
    Money {
        currency_code: "USD".into(),
        units: 8,
        nanos: 990_000_000,
    }
}

/// The shipping service.
#[derive(Debug, Clone, Default)]
pub struct Shipping;

/// The generated server for the shipping service.
pub fn router() -> crate::server::Router {
    crate::server::Router::new().add_service(ShippingServiceServer::new(Shipping))
}

/// A tracking id as upstream makes them: two letters, then digits derived from the
/// address' length and random digits.
pub fn tracking_id(salt: &str) -> String {
    let letter = || char::from(fastrand::u8(b'A'..=b'Z'));
    let digits = |n: usize| {
        (0..n)
            .map(|_| char::from(fastrand::u8(b'0'..=b'9')))
            .collect::<String>()
    };
    format!(
        "{}{}-{}{}-{}{}",
        letter(),
        letter(),
        salt.len(),
        digits(3),
        salt.len() / 2,
        digits(7)
    )
}

#[tonic::async_trait]
impl ShippingService for Shipping {
    async fn get_quote(
        &self,
        request: Request<GetQuoteRequest>,
    ) -> Result<Response<GetQuoteResponse>, Status> {
        let items: i32 = request.get_ref().items.iter().map(|i| i.quantity).sum();
        tracing::info!(items, "shipping quote");
        Ok(Response::new(GetQuoteResponse {
            cost_usd: Some(quote()),
        }))
    }

    async fn ship_order(
        &self,
        request: Request<ShipOrderRequest>,
    ) -> Result<Response<ShipOrderResponse>, Status> {
        let req = request.into_inner();
        let address = req
            .address
            .ok_or_else(|| Status::invalid_argument("missing the shipping address"))?;
        let base = format!(
            "{}, {}, {}",
            address.street_address, address.city, address.state
        );
        let tracking_id = tracking_id(&base);
        tracing::info!(%tracking_id, "order shipped");
        Ok(Response::new(ShipOrderResponse { tracking_id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_ids_have_upstreams_shape() {
        // A 10-byte salt: "<2 letters>-10<3 digits>-5<7 digits>".
        let id = tracking_id("abcdefghij");
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert!(parts[0].len() == 2 && parts[0].bytes().all(|b| b.is_ascii_uppercase()));
        assert!(parts[1].starts_with("10") && parts[1].len() == 5, "{id}");
        assert!(parts[2].starts_with('5') && parts[2].len() == 8, "{id}");
        assert!(
            parts[1..]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        );
    }
}
