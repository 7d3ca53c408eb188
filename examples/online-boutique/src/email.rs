//! `hipstershop.EmailService` (upstream: Python, port 8080, in its default dummy mode):
//! accepts order confirmations, renders a short plain-text confirmation and logs it
//! instead of sending mail.

use tonic::{Request, Response, Status};

use crate::{
    money,
    proto::hipstershop::{
        Empty, OrderResult, SendOrderConfirmationRequest,
        email_service_server::{EmailService, EmailServiceServer},
    },
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 8080;

/// The email service.
#[derive(Debug, Clone, Default)]
pub struct Email;

/// The generated server for the email service.
pub fn router() -> crate::server::Router {
    crate::server::Router::new().add_service(EmailServiceServer::new(Email))
}

/// The confirmation text for `order`.
pub fn render_confirmation(order: &OrderResult) -> String {
    let mut text = format!("Your order is complete!\nOrder ID: #{}\n", order.order_id);
    if let Some(a) = &order.shipping_address {
        text.push_str(&format!(
            "Shipping to: {}, {}, {} {} {}\n",
            a.street_address, a.city, a.state, a.zip_code, a.country
        ));
    }
    text.push_str(&format!("Tracking ID: {}\n", order.shipping_tracking_id));
    for item in &order.items {
        let (id, quantity) = item
            .item
            .as_ref()
            .map_or(("?", 0), |i| (i.product_id.as_str(), i.quantity));
        let cost = item.cost.as_ref().map(money::display).unwrap_or_default();
        text.push_str(&format!("  {quantity} × {id}: {cost} each\n"));
    }
    if let Some(cost) = &order.shipping_cost {
        text.push_str(&format!("Shipping: {}\n", money::display(cost)));
    }
    text
}

#[tonic::async_trait]
impl EmailService for Email {
    async fn send_order_confirmation(
        &self,
        request: Request<SendOrderConfirmationRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let order = req
            .order
            .ok_or_else(|| Status::invalid_argument("missing the order"))?;
        tracing::info!(
            email = %req.email,
            "A request to send order confirmation email to {} has been received.",
            req.email
        );
        tracing::debug!(confirmation = %render_confirmation(&order), "confirmation (not sent)");
        Ok(Response::new(Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::hipstershop::{Address, CartItem, Money, OrderItem};

    #[test]
    fn renders_the_order() {
        let order = OrderResult {
            order_id: "abc".into(),
            shipping_tracking_id: "ET-1-2".into(),
            shipping_cost: Some(crate::shipping::quote()),
            shipping_address: Some(Address {
                street_address: "1600 Amphitheatre Parkway".into(),
                city: "Mountain View".into(),
                state: "CA".into(),
                country: "United States".into(),
                zip_code: 94043,
            }),
            items: vec![OrderItem {
                item: Some(CartItem {
                    product_id: "OLJCESPC7Z".into(),
                    quantity: 2,
                }),
                cost: Some(Money {
                    currency_code: "USD".into(),
                    units: 19,
                    nanos: 990_000_000,
                }),
            }],
        };
        let text = render_confirmation(&order);
        assert!(text.contains("Order ID: #abc"), "{text}");
        assert!(text.contains("Mountain View, CA 94043"), "{text}");
        assert!(text.contains("2 × OLJCESPC7Z: USD 19.99 each"), "{text}");
        assert!(text.contains("Shipping: USD 8.99"), "{text}");
    }
}
