//! `hipstershop.CheckoutService` (upstream: Go, port 5050): `PlaceOrder` as upstream —
//! read the user's cart, price each item in the user's currency (catalog + currency), quote
//! and convert shipping, charge the total to the card, ship, empty the cart, then send the
//! confirmation email (whose failure is only logged). The six services it calls come from
//! the `*_SERVICE_ADDR` variables upstream uses.

use http::Uri;
use tonic::{Request, Response, Status};

use crate::{
    client::{self, Channel},
    money,
    proto::hipstershop::{
        Address, CartItem, ChargeRequest, CreditCardInfo, CurrencyConversionRequest,
        EmptyCartRequest, GetCartRequest, GetProductRequest, GetQuoteRequest, Money, OrderItem,
        OrderResult, PlaceOrderRequest, PlaceOrderResponse, SendOrderConfirmationRequest,
        ShipOrderRequest,
        cart_service_client::CartServiceClient,
        checkout_service_server::{CheckoutService, CheckoutServiceServer},
        currency_service_client::CurrencyServiceClient,
        email_service_client::EmailServiceClient,
        payment_service_client::PaymentServiceClient,
        product_catalog_service_client::ProductCatalogServiceClient,
        shipping_service_client::ShippingServiceClient,
    },
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 5050;

/// Where the services checkout calls are.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PRODUCT_CATALOG_SERVICE_ADDR`.
    pub product_catalog: Uri,
    /// `SHIPPING_SERVICE_ADDR`.
    pub shipping: Uri,
    /// `PAYMENT_SERVICE_ADDR`.
    pub payment: Uri,
    /// `EMAIL_SERVICE_ADDR`.
    pub email: Uri,
    /// `CURRENCY_SERVICE_ADDR`.
    pub currency: Uri,
    /// `CART_SERVICE_ADDR`.
    pub cart: Uri,
}

/// The checkout service.
#[derive(Debug, Clone)]
pub struct Checkout {
    catalog: ProductCatalogServiceClient<Channel>,
    shipping: ShippingServiceClient<Channel>,
    payment: PaymentServiceClient<Channel>,
    email: EmailServiceClient<Channel>,
    currency: CurrencyServiceClient<Channel>,
    cart: CartServiceClient<Channel>,
}

// === impl Config ===

impl Config {
    /// Reads the six `*_SERVICE_ADDR` variables; the error names the first one missing
    /// or invalid.
    pub fn from_env() -> Result<Self, client::Error> {
        Ok(Self {
            product_catalog: client::origin_from_env("PRODUCT_CATALOG_SERVICE_ADDR")?,
            shipping: client::origin_from_env("SHIPPING_SERVICE_ADDR")?,
            payment: client::origin_from_env("PAYMENT_SERVICE_ADDR")?,
            email: client::origin_from_env("EMAIL_SERVICE_ADDR")?,
            currency: client::origin_from_env("CURRENCY_SERVICE_ADDR")?,
            cart: client::origin_from_env("CART_SERVICE_ADDR")?,
        })
    }
}

/// The generated server for the checkout service.
pub fn router(config: &Config, channel: &Channel) -> crate::server::Router {
    let c = channel;
    let checkout = Checkout {
        catalog: ProductCatalogServiceClient::with_origin(
            c.clone(),
            config.product_catalog.clone(),
        ),
        shipping: ShippingServiceClient::with_origin(c.clone(), config.shipping.clone()),
        payment: PaymentServiceClient::with_origin(c.clone(), config.payment.clone()),
        email: EmailServiceClient::with_origin(c.clone(), config.email.clone()),
        currency: CurrencyServiceClient::with_origin(c.clone(), config.currency.clone()),
        cart: CartServiceClient::with_origin(c.clone(), config.cart.clone()),
    };
    crate::server::Router::new().add_service(CheckoutServiceServer::new(checkout))
}

/// An upstream failure as checkout reports it: `INTERNAL`, saying which step failed.
fn internal(step: &str, status: &Status) -> Status {
    Status::internal(format!("{step}: {}", status.message()))
}

fn money_error(e: &money::Error) -> Status {
    Status::internal(format!("failed to compute the order total: {e}"))
}

// === impl Checkout ===

impl Checkout {
    async fn cart_items(&self, user_id: &str) -> Result<Vec<CartItem>, Status> {
        let req = GetCartRequest {
            user_id: user_id.to_string(),
        };
        let cart = self
            .cart
            .clone()
            .get_cart(req)
            .await
            .map_err(|s| internal("failed to get user cart during checkout", &s))?;
        Ok(cart.into_inner().items)
    }

    async fn convert(&self, from: Money, to_code: &str) -> Result<Money, Status> {
        let req = CurrencyConversionRequest {
            from: Some(from),
            to_code: to_code.to_string(),
        };
        let converted = self
            .currency
            .clone()
            .convert(req)
            .await
            .map_err(|s| internal("failed to convert currency", &s))?;
        Ok(converted.into_inner())
    }

    /// Each item with its unit price in `currency`.
    async fn price_items(
        &self,
        items: &[CartItem],
        currency: &str,
    ) -> Result<Vec<OrderItem>, Status> {
        let mut priced = Vec::with_capacity(items.len());
        for item in items {
            let req = GetProductRequest {
                id: item.product_id.clone(),
            };
            let product = self
                .catalog
                .clone()
                .get_product(req)
                .await
                .map_err(|s| internal(&format!("failed to get product #{}", item.product_id), &s))?
                .into_inner();
            let price = product.price_usd.ok_or_else(|| {
                Status::internal(format!("product #{} has no price", item.product_id))
            })?;
            let cost = self.convert(price, currency).await?;
            priced.push(OrderItem {
                item: Some(item.clone()),
                cost: Some(cost),
            });
        }
        Ok(priced)
    }

    async fn shipping_quote(
        &self,
        address: &Address,
        items: &[CartItem],
        currency: &str,
    ) -> Result<Money, Status> {
        let req = GetQuoteRequest {
            address: Some(address.clone()),
            items: items.to_vec(),
        };
        let quote = self
            .shipping
            .clone()
            .get_quote(req)
            .await
            .map_err(|s| internal("failed to get shipping quote", &s))?
            .into_inner()
            .cost_usd
            .ok_or_else(|| Status::internal("the shipping quote has no cost"))?;
        self.convert(quote, currency).await
    }

    async fn charge(&self, amount: Money, card: CreditCardInfo) -> Result<String, Status> {
        let req = ChargeRequest {
            amount: Some(amount),
            credit_card: Some(card),
        };
        let charged = self
            .payment
            .clone()
            .charge(req)
            .await
            .map_err(|s| internal("failed to charge card", &s))?;
        Ok(charged.into_inner().transaction_id)
    }

    async fn ship(&self, address: Address, items: Vec<CartItem>) -> Result<String, Status> {
        let req = ShipOrderRequest {
            address: Some(address),
            items,
        };
        let shipped = self
            .shipping
            .clone()
            .ship_order(req)
            .await
            .map_err(|s| Status::unavailable(format!("shipment failed: {}", s.message())))?;
        Ok(shipped.into_inner().tracking_id)
    }
}

#[tonic::async_trait]
impl CheckoutService for Checkout {
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        let req = request.into_inner();
        tracing::info!(
            user_id = %req.user_id,
            user_currency = %req.user_currency,
            "[PlaceOrder]"
        );
        let address = req
            .address
            .ok_or_else(|| Status::invalid_argument("missing the shipping address"))?;
        let card = req
            .credit_card
            .ok_or_else(|| Status::invalid_argument("missing the credit card"))?;
        let currency = req.user_currency.as_str();
        let order_id = crate::id::uuid_v4();

        let cart_items = self.cart_items(&req.user_id).await?;
        let items = self.price_items(&cart_items, currency).await?;
        let shipping_cost = self.shipping_quote(&address, &cart_items, currency).await?;

        let mut total =
            money::sum(&money::zero(currency), &shipping_cost).map_err(|e| money_error(&e))?;
        for item in &items {
            let quantity = item.item.as_ref().map_or(0, |i| i.quantity);
            let quantity = u32::try_from(quantity)
                .map_err(|_| Status::internal("negative quantity in cart"))?;
            let cost = item.cost.as_ref().expect("priced above");
            let line = money::multiply(cost, quantity).map_err(|e| money_error(&e))?;
            total = money::sum(&total, &line).map_err(|e| money_error(&e))?;
        }

        let transaction_id = self.charge(total.clone(), card).await?;
        tracing::info!(%transaction_id, total = %money::display(&total), "payment went through");
        let shipping_tracking_id = self.ship(address.clone(), cart_items).await?;

        // Upstream logs but ignores a failure to empty the cart.
        let empty = EmptyCartRequest {
            user_id: req.user_id.clone(),
        };
        if let Err(s) = self.cart.clone().empty_cart(empty).await {
            tracing::warn!(user_id = %req.user_id, error = %s.message(), "failed to empty the cart");
        }

        let order = OrderResult {
            order_id,
            shipping_tracking_id,
            shipping_cost: Some(shipping_cost),
            shipping_address: Some(address),
            items,
        };
        let confirmation = SendOrderConfirmationRequest {
            email: req.email.clone(),
            order: Some(order.clone()),
        };
        match self
            .email
            .clone()
            .send_order_confirmation(confirmation)
            .await
        {
            Ok(_) => tracing::info!(email = %req.email, "order confirmation email sent"),
            Err(s) => tracing::warn!(
                email = %req.email,
                error = %s.message(),
                "failed to send order confirmation"
            ),
        }
        Ok(Response::new(PlaceOrderResponse { order: Some(order) }))
    }
}
