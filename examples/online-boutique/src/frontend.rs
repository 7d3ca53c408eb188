//! The web frontend (upstream: Go, port 8080): the shop's HTML pages over HTTP/1.1, on top
//! of the gRPC services, with upstream's routes, cookies, form fields and
//! `*_SERVICE_ADDR` variables, so it can stand in for upstream's frontend and drive either
//! implementation of the backends.
//!
//! Each request belongs to a session (cookie `shop_session-id`, a fresh UUID when absent)
//! and a currency (cookie `shop_currency`, USD by default). Its `traceparent` (or a new
//! trace) becomes the current [`trace`] span, so every gRPC call made for it through the
//! crate's [`Channel`] continues the browser's or the ingress's trace. A failed backend call
//! becomes an error page naming the call, its gRPC status code and message (never a
//! panic). Pages are written with `format!` by the private `page` module, which passes
//! everything not written there through [`escape`]; [`form`] decodes the POSTed forms.
//!
//! Routes: `GET /`, `GET /product/{id}`, `GET /cart`, `POST /cart`, `POST /cart/empty`,
//! `POST /cart/checkout`, `POST /setCurrency`, `GET /logout`, `GET /_healthz`,
//! `GET /robots.txt` and `GET /static/styles.css`. Upstream's product images, its
//! assistant and its shopping-bot pages are not served.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tonic::{Code, Status};

use crate::{
    client::{self, Channel},
    money, payment,
    proto::hipstershop::{
        AdRequest, AddItemRequest, Address, CartItem, CreditCardInfo, CurrencyConversionRequest,
        Empty, EmptyCartRequest, GetCartRequest, GetProductRequest, GetQuoteRequest,
        ListRecommendationsRequest, Money, PlaceOrderRequest, Product,
        ad_service_client::AdServiceClient, cart_service_client::CartServiceClient,
        checkout_service_client::CheckoutServiceClient,
        currency_service_client::CurrencyServiceClient,
        product_catalog_service_client::ProductCatalogServiceClient,
        recommendation_service_client::RecommendationServiceClient,
        shipping_service_client::ShippingServiceClient,
    },
    server,
    trace::{self, TraceContext},
};

pub mod form;
mod page;

pub use self::{form::Form, page::escape};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 8080;

/// The cookie naming the session (the cart's user id), as upstream.
pub const SESSION_COOKIE: &str = "shop_session-id";

/// The cookie holding the session's currency code, as upstream.
pub const CURRENCY_COOKIE: &str = "shop_currency";

/// The currency of sessions that have not chosen one.
pub const DEFAULT_CURRENCY: &str = "USD";

/// The currencies the selector offers (those of them the currency service supports), as
/// upstream's whitelist.
pub const CURRENCIES: [&str; 6] = ["USD", "EUR", "CAD", "JPY", "GBP", "TRY"];

/// How long the cookies live: 48 hours, as upstream.
const COOKIE_MAX_AGE_SECS: u32 = 48 * 60 * 60;

/// The largest form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// How many recommended products a page shows, as upstream.
const MAX_RECOMMENDATIONS: usize = 4;

/// The stylesheet, served at `/static/styles.css`.
const STYLES: &str = include_str!("frontend/styles.css");

/// The response body type.
pub type Body = Full<Bytes>;

/// Where the services the frontend calls are.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PRODUCT_CATALOG_SERVICE_ADDR`.
    pub product_catalog: Uri,
    /// `CURRENCY_SERVICE_ADDR`.
    pub currency: Uri,
    /// `CART_SERVICE_ADDR`.
    pub cart: Uri,
    /// `RECOMMENDATION_SERVICE_ADDR`.
    pub recommendation: Uri,
    /// `SHIPPING_SERVICE_ADDR`.
    pub shipping: Uri,
    /// `CHECKOUT_SERVICE_ADDR`.
    pub checkout: Uri,
    /// `AD_SERVICE_ADDR`.
    pub ad: Uri,
}

/// The frontend: gRPC clients of the seven services it calls, and the request handler.
#[derive(Debug, Clone)]
pub struct Frontend {
    catalog: ProductCatalogServiceClient<Channel>,
    currency: CurrencyServiceClient<Channel>,
    cart: CartServiceClient<Channel>,
    recommendation: RecommendationServiceClient<Channel>,
    shipping: ShippingServiceClient<Channel>,
    checkout: CheckoutServiceClient<Channel>,
    ad: AdServiceClient<Channel>,
}

/// A bound HTTP/1.1 server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    frontend: Arc<Frontend>,
}

/// The session a request belongs to.
#[derive(Debug, Clone)]
struct Session {
    /// The session id: the cart's user id.
    id: String,
    /// The currency code prices are shown in (as the cookie says: not validated).
    currency: String,
    /// Whether the id was made up for this request (and must be set as a cookie).
    is_new: bool,
    /// The request's trace, shown on pages.
    trace_id: u128,
}

/// Why a request could not be served; each becomes an error page.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// A gRPC call failed.
    #[error(
        "{what}: {call} failed: code = {code:?} desc = {message}",
        code = .status.code(),
        message = .status.message()
    )]
    Backend {
        /// What the frontend was doing.
        what: &'static str,
        /// The method called, `Service/Method`.
        call: &'static str,
        /// The call's status.
        status: Status,
    },
    /// No such page or product.
    #[error("{0}")]
    NotFound(String),
    /// A form field is missing or invalid.
    #[error("{0}")]
    Invalid(String),
    /// The route exists, the method does not.
    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The methods the route accepts.
        allow: &'static str,
    },
    /// The form body is too large.
    #[error("the request body is larger than {MAX_FORM_BYTES} bytes")]
    TooLarge,
    /// The request body could not be read.
    #[error("could not read the request body: {0}")]
    Body(String),
    /// A backend answered something the frontend cannot use.
    #[error("{0}")]
    Internal(String),
}

// === impl Config ===

impl Config {
    /// Reads the seven `*_SERVICE_ADDR` variables; the error names the first one missing
    /// or invalid.
    pub fn from_env() -> Result<Self, client::Error> {
        Ok(Self {
            product_catalog: client::origin_from_env("PRODUCT_CATALOG_SERVICE_ADDR")?,
            currency: client::origin_from_env("CURRENCY_SERVICE_ADDR")?,
            cart: client::origin_from_env("CART_SERVICE_ADDR")?,
            recommendation: client::origin_from_env("RECOMMENDATION_SERVICE_ADDR")?,
            shipping: client::origin_from_env("SHIPPING_SERVICE_ADDR")?,
            checkout: client::origin_from_env("CHECKOUT_SERVICE_ADDR")?,
            ad: client::origin_from_env("AD_SERVICE_ADDR")?,
        })
    }
}

// === impl Server ===

impl Server {
    /// Binds `addr` (port 0 picks a free port) to serve `frontend`.
    pub async fn bind(addr: SocketAddr, frontend: Frontend) -> Result<Self, server::Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| server::Error::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| server::Error::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            frontend: Arc::new(frontend),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves connections until the task is dropped or aborted.
    pub async fn run(self) {
        tracing::info!(addr = %self.local_addr, "serving HTTP");
        let builder = hyper::server::conn::http1::Builder::new();
        loop {
            let (socket, peer) = crate::server::accept(&self.listener).await;
            let frontend = self.frontend.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let frontend = frontend.clone();
                    async move { Ok::<_, Infallible>(frontend.handle(req).await) }
                });
                if let Err(e) = builder.serve_connection(TokioIo::new(socket), svc).await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    }
}

// === impl Frontend ===

impl Frontend {
    /// A frontend calling the services in `config` through `channel`.
    pub fn new(config: &Config, channel: &Channel) -> Self {
        let c = channel;
        Self {
            catalog: ProductCatalogServiceClient::with_origin(
                c.clone(),
                config.product_catalog.clone(),
            ),
            currency: CurrencyServiceClient::with_origin(c.clone(), config.currency.clone()),
            cart: CartServiceClient::with_origin(c.clone(), config.cart.clone()),
            recommendation: RecommendationServiceClient::with_origin(
                c.clone(),
                config.recommendation.clone(),
            ),
            shipping: ShippingServiceClient::with_origin(c.clone(), config.shipping.clone()),
            checkout: CheckoutServiceClient::with_origin(c.clone(), config.checkout.clone()),
            ad: AdServiceClient::with_origin(c.clone(), config.ad.clone()),
        }
    }

    /// Handles one request inside its trace span. Never fails: a failure becomes an error
    /// page with its status.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let span = TraceContext::incoming(req.headers());
        let session = Session::new(req.headers(), span.trace_id());
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let mut response = match trace::scope(span, self.route(req, &session)).await {
            Ok(response) => response,
            Err(failure) => {
                let status = failure.status();
                let message = failure.to_string();
                if status.is_server_error() {
                    tracing::warn!(%method, %path, %status, error = %message, "request failed");
                }
                let mut response = html(status, page::error(status, &message, span.trace_id()));
                if let Failure::MethodNotAllowed { allow, .. } = failure {
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                }
                response
            }
        };
        let sets_session = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|v| v.as_bytes().starts_with(SESSION_COOKIE.as_bytes()));
        if session.is_new && !sets_session {
            set_cookie(
                &mut response,
                SESSION_COOKIE,
                &session.id,
                COOKIE_MAX_AGE_SECS,
            );
        }
        tracing::debug!(
            %method,
            %path,
            status = %response.status(),
            elapsed = ?started.elapsed(),
            session = %session.id,
            traceparent = %span,
            "request"
        );
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        session: &Session,
    ) -> Result<Response<Body>, Failure> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let get = |allow| match method {
            Method::GET | Method::HEAD => Ok(()),
            _ => Err(Failure::MethodNotAllowed {
                method: method.clone(),
                allow,
            }),
        };
        let post = || match method {
            Method::POST => Ok(()),
            _ => Err(Failure::MethodNotAllowed {
                method: method.clone(),
                allow: "POST",
            }),
        };
        match path.as_str() {
            "/" => {
                get("GET, HEAD")?;
                self.home(session).await
            }
            "/_healthz" => {
                get("GET, HEAD")?;
                Ok(text("text/plain; charset=utf-8", "ok"))
            }
            "/robots.txt" => {
                get("GET, HEAD")?;
                Ok(text(
                    "text/plain; charset=utf-8",
                    "User-agent: *\nDisallow: /\n",
                ))
            }
            "/static/styles.css" => {
                get("GET, HEAD")?;
                Ok(text("text/css; charset=utf-8", STYLES))
            }
            "/cart" if method == Method::POST => {
                let form = read_form(req).await?;
                self.add_to_cart(session, &form).await
            }
            "/cart" => {
                get("GET, HEAD, POST")?;
                self.view_cart(session).await
            }
            "/cart/empty" => {
                post()?;
                self.empty_cart(session).await
            }
            "/cart/checkout" => {
                post()?;
                let form = read_form(req).await?;
                self.place_order(session, &form).await
            }
            "/setCurrency" => {
                post()?;
                let referer = req.headers().get(header::REFERER).cloned();
                let form = read_form(req).await?;
                set_currency(&form, referer.as_ref())
            }
            "/logout" => {
                get("GET, HEAD")?;
                let mut response = redirect("/");
                set_cookie(&mut response, SESSION_COOKIE, "", 0);
                set_cookie(&mut response, CURRENCY_COOKIE, "", 0);
                Ok(response)
            }
            _ => match path.strip_prefix("/product/") {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    get("GET, HEAD")?;
                    self.product_page(session, id).await
                }
                _ => Err(Failure::NotFound(format!("no page at {path}"))),
            },
        }
    }

    // --- pages ---

    async fn home(&self, session: &Session) -> Result<Response<Body>, Failure> {
        let (currencies, cart, products, ad) = tokio::try_join!(
            self.currencies(),
            self.cart_items(&session.id),
            self.products(),
            async { Ok(self.ad(Vec::new()).await) },
        )?;
        let mut priced = Vec::with_capacity(products.len());
        for product in products {
            let cost = self
                .convert(price_usd(&product)?, &session.currency)
                .await?;
            priced.push((product, cost));
        }
        let chrome = session.chrome(&currencies, &cart);
        Ok(html(
            StatusCode::OK,
            page::home(&chrome, &priced, ad.as_ref()),
        ))
    }

    async fn product_page(&self, session: &Session, id: &str) -> Result<Response<Body>, Failure> {
        let product = self.product(id).await?;
        let (currencies, cart, recommendations, ad) = tokio::try_join!(
            self.currencies(),
            self.cart_items(&session.id),
            self.recommendations(&session.id, vec![product.id.clone()]),
            async { Ok(self.ad(product.categories.clone()).await) },
        )?;
        let cost = self
            .convert(price_usd(&product)?, &session.currency)
            .await?;
        let chrome = session.chrome(&currencies, &cart);
        Ok(html(
            StatusCode::OK,
            page::product(&chrome, &product, &cost, &recommendations, ad.as_ref()),
        ))
    }

    async fn view_cart(&self, session: &Session) -> Result<Response<Body>, Failure> {
        let (currencies, cart) = tokio::try_join!(self.currencies(), self.cart_items(&session.id))?;
        let ids = cart.iter().map(|i| i.product_id.clone()).collect();
        let recommendations = self.recommendations(&session.id, ids).await?;
        let summary = if cart.is_empty() {
            None
        } else {
            Some(self.price_cart(&cart, &session.currency).await?)
        };
        let chrome = session.chrome(&currencies, &cart);
        let (year, _) = payment::current_year_month();
        Ok(html(
            StatusCode::OK,
            page::cart(&chrome, summary.as_ref(), &recommendations, year),
        ))
    }

    async fn add_to_cart(&self, session: &Session, form: &Form) -> Result<Response<Body>, Failure> {
        let id = required(form, "product_id")?;
        let quantity = required(form, "quantity")?;
        let quantity = quantity
            .parse::<i32>()
            .ok()
            .filter(|q| (1..=10).contains(q))
            .ok_or_else(|| {
                Failure::Invalid(format!(
                    "quantity {quantity:?} is not a number from 1 to 10"
                ))
            })?;
        let product = self.product(id).await?;
        let req = AddItemRequest {
            user_id: session.id.clone(),
            item: Some(CartItem {
                product_id: product.id,
                quantity,
            }),
        };
        self.cart.clone().add_item(req).await.map_err(backend(
            "could not add the product to the cart",
            "CartService/AddItem",
        ))?;
        Ok(redirect("/cart"))
    }

    async fn empty_cart(&self, session: &Session) -> Result<Response<Body>, Failure> {
        let req = EmptyCartRequest {
            user_id: session.id.clone(),
        };
        self.cart
            .clone()
            .empty_cart(req)
            .await
            .map_err(backend("could not empty the cart", "CartService/EmptyCart"))?;
        Ok(redirect("/"))
    }

    async fn place_order(&self, session: &Session, form: &Form) -> Result<Response<Body>, Failure> {
        let number = |name: &str| {
            let value = required(form, name)?;
            value
                .trim()
                .parse::<i32>()
                .map_err(|_| Failure::Invalid(format!("{name} {value:?} is not a number")))
        };
        let month = number("credit_card_expiration_month")?;
        if !(1..=12).contains(&month) {
            return Err(Failure::Invalid(format!(
                "credit_card_expiration_month {month} is not a month from 1 to 12"
            )));
        }
        let email = required(form, "email")?;
        if !email.contains('@') {
            return Err(Failure::Invalid(format!(
                "email {email:?} is not an e-mail address"
            )));
        }
        let req = PlaceOrderRequest {
            user_id: session.id.clone(),
            user_currency: session.currency.clone(),
            address: Some(Address {
                street_address: required(form, "street_address")?.to_string(),
                city: required(form, "city")?.to_string(),
                state: required(form, "state")?.to_string(),
                country: required(form, "country")?.to_string(),
                zip_code: number("zip_code")?,
            }),
            email: email.to_string(),
            credit_card: Some(CreditCardInfo {
                credit_card_number: required(form, "credit_card_number")?.to_string(),
                credit_card_cvv: number("credit_card_cvv")?,
                credit_card_expiration_year: number("credit_card_expiration_year")?,
                credit_card_expiration_month: month,
            }),
        };
        let order = self
            .checkout
            .clone()
            .place_order(req)
            .await
            .map_err(backend(
                "could not complete the order",
                "CheckoutService/PlaceOrder",
            ))?
            .into_inner()
            .order
            .ok_or_else(|| Failure::Internal("the checkout service returned no order".into()))?;
        tracing::info!(order_id = %order.order_id, session = %session.id, "order placed");

        let mut total = order
            .shipping_cost
            .clone()
            .unwrap_or_else(|| money::zero(&session.currency));
        for item in &order.items {
            let quantity = item.item.as_ref().map_or(0, |i| i.quantity);
            let cost = item
                .cost
                .as_ref()
                .ok_or_else(|| Failure::Internal("the order has an item without a cost".into()))?;
            total = money::sum(&total, &multiply(cost, quantity)?).map_err(money_failure)?;
        }
        let (currencies, cart, recommendations) = tokio::try_join!(
            self.currencies(),
            self.cart_items(&session.id),
            self.recommendations(&session.id, Vec::new()),
        )?;
        let chrome = session.chrome(&currencies, &cart);
        Ok(html(
            StatusCode::OK,
            page::order(&chrome, &order, &total, &recommendations),
        ))
    }

    // --- backend calls ---

    /// The whitelisted currencies the currency service supports.
    async fn currencies(&self) -> Result<Vec<String>, Failure> {
        let supported = self
            .currency
            .clone()
            .get_supported_currencies(Empty {})
            .await
            .map_err(backend(
                "could not retrieve currencies",
                "CurrencyService/GetSupportedCurrencies",
            ))?
            .into_inner()
            .currency_codes;
        Ok(supported
            .into_iter()
            .filter(|c| CURRENCIES.contains(&c.as_str()))
            .collect())
    }

    async fn products(&self) -> Result<Vec<Product>, Failure> {
        let products = self
            .catalog
            .clone()
            .list_products(Empty {})
            .await
            .map_err(backend(
                "could not retrieve products",
                "ProductCatalogService/ListProducts",
            ))?;
        Ok(products.into_inner().products)
    }

    /// The product `id`; an unknown id is [`Failure::NotFound`].
    async fn product(&self, id: &str) -> Result<Product, Failure> {
        let req = GetProductRequest { id: id.to_string() };
        match self.catalog.clone().get_product(req).await {
            Ok(product) => Ok(product.into_inner()),
            Err(status) if status.code() == Code::NotFound => {
                Err(Failure::NotFound(status.message().to_string()))
            }
            Err(status) => Err(backend(
                "could not retrieve product",
                "ProductCatalogService/GetProduct",
            )(status)),
        }
    }

    async fn cart_items(&self, user_id: &str) -> Result<Vec<CartItem>, Failure> {
        let req = GetCartRequest {
            user_id: user_id.to_string(),
        };
        let cart = self.cart.clone().get_cart(req).await.map_err(backend(
            "could not retrieve the cart",
            "CartService/GetCart",
        ))?;
        Ok(cart.into_inner().items)
    }

    async fn convert(&self, from: Money, to_code: &str) -> Result<Money, Failure> {
        let req = CurrencyConversionRequest {
            from: Some(from),
            to_code: to_code.to_string(),
        };
        let converted = self.currency.clone().convert(req).await.map_err(backend(
            "could not convert currency",
            "CurrencyService/Convert",
        ))?;
        Ok(converted.into_inner())
    }

    /// Up to [`MAX_RECOMMENDATIONS`] products recommended besides `product_ids`.
    async fn recommendations(
        &self,
        user_id: &str,
        product_ids: Vec<String>,
    ) -> Result<Vec<Product>, Failure> {
        let req = ListRecommendationsRequest {
            user_id: user_id.to_string(),
            product_ids,
        };
        let ids = self
            .recommendation
            .clone()
            .list_recommendations(req)
            .await
            .map_err(backend(
                "could not retrieve recommendations",
                "RecommendationService/ListRecommendations",
            ))?
            .into_inner()
            .product_ids;
        let mut products = Vec::with_capacity(MAX_RECOMMENDATIONS);
        for id in ids.iter().take(MAX_RECOMMENDATIONS) {
            products.push(self.product(id).await.map_err(|f| match f {
                Failure::NotFound(m) => Failure::Internal(format!("recommended {m}")),
                other => other,
            })?);
        }
        Ok(products)
    }

    /// One ad for `context_keys`; as upstream, a failure only costs the ad.
    async fn ad(&self, context_keys: Vec<String>) -> Option<crate::proto::hipstershop::Ad> {
        match self.ad.clone().get_ads(AdRequest { context_keys }).await {
            Ok(ads) => {
                let mut ads = ads.into_inner().ads;
                (!ads.is_empty()).then(|| ads.swap_remove(fastrand::usize(..ads.len())))
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), error = %status.message(), "failed to get ads");
                None
            }
        }
    }

    /// The lines, shipping and total of a non-empty cart in `currency`.
    async fn price_cart(
        &self,
        cart: &[CartItem],
        currency: &str,
    ) -> Result<page::CartSummary, Failure> {
        let req = GetQuoteRequest {
            address: None,
            items: cart.to_vec(),
        };
        let quote = self
            .shipping
            .clone()
            .get_quote(req)
            .await
            .map_err(backend(
                "could not get a shipping quote",
                "ShippingService/GetQuote",
            ))?
            .into_inner()
            .cost_usd
            .ok_or_else(|| Failure::Internal("the shipping quote has no cost".into()))?;
        let shipping = self.convert(quote, currency).await?;
        let mut total = shipping.clone();
        let mut lines = Vec::with_capacity(cart.len());
        for item in cart {
            let product = self.product(&item.product_id).await?;
            let unit = self.convert(price_usd(&product)?, currency).await?;
            let price = multiply(&unit, item.quantity)?;
            total = money::sum(&total, &price).map_err(money_failure)?;
            lines.push(page::CartLine {
                product,
                quantity: item.quantity,
                price,
            });
        }
        Ok(page::CartSummary {
            lines,
            shipping,
            total,
        })
    }
}

// === impl Session ===

impl Session {
    fn new(headers: &http::HeaderMap, trace_id: u128) -> Self {
        let existing = form::cookie(headers, SESSION_COOKIE).filter(|id| !id.is_empty());
        let is_new = existing.is_none();
        let id = existing.unwrap_or_else(crate::id::uuid_v4);
        let currency = form::cookie(headers, CURRENCY_COOKIE)
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_string());
        Self {
            id,
            currency,
            is_new,
            trace_id,
        }
    }

    fn chrome<'a>(&'a self, currencies: &'a [String], cart: &[CartItem]) -> page::Chrome<'a> {
        page::Chrome {
            currencies,
            currency: &self.currency,
            cart_size: cart.iter().map(|i| i64::from(i.quantity)).sum(),
            session_id: &self.id,
            trace_id: self.trace_id,
        }
    }
}

// === impl Failure ===

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Self::Backend { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Maps a failed call's status to [`Failure::Backend`].
fn backend(what: &'static str, call: &'static str) -> impl FnOnce(Status) -> Failure {
    move |status| Failure::Backend { what, call, status }
}

fn money_failure(e: money::Error) -> Failure {
    Failure::Internal(format!("could not compute a price: {e}"))
}

fn price_usd(product: &Product) -> Result<Money, Failure> {
    product
        .price_usd
        .clone()
        .ok_or_else(|| Failure::Internal(format!("product #{} has no price", product.id)))
}

fn multiply(unit: &Money, quantity: i32) -> Result<Money, Failure> {
    let quantity = u32::try_from(quantity)
        .map_err(|_| Failure::Internal(format!("negative quantity {quantity}")))?;
    money::multiply(unit, quantity).map_err(money_failure)
}

/// The non-empty value of the form field `name`.
fn required<'f>(form: &'f Form, name: &str) -> Result<&'f str, Failure> {
    form.get(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Failure::Invalid(format!("the form field {name} is required")))
}

/// `POST /setCurrency`: sets the currency cookie and goes back where the user was.
fn set_currency(form: &Form, referer: Option<&HeaderValue>) -> Result<Response<Body>, Failure> {
    let code = required(form, "currency_code")?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Failure::Invalid(format!(
            "currency_code {code:?} is not a currency code (three capital letters)"
        )));
    }
    // Only the path of the referer: never a redirect to another site.
    let back = referer
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Uri>().ok())
        .and_then(|uri| uri.path_and_query().map(|pq| pq.as_str().to_string()))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".to_string());
    let mut response = redirect(&back);
    set_cookie(&mut response, CURRENCY_COOKIE, code, COOKIE_MAX_AGE_SECS);
    Ok(response)
}

/// Reads a form body of at most [`MAX_FORM_BYTES`].
async fn read_form(req: Request<Incoming>) -> Result<Form, Failure> {
    let body = Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Failure::TooLarge
            } else {
                Failure::Body(e.to_string())
            }
        })?
        .to_bytes();
    Ok(Form::decode(&body))
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn text(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::FOUND;
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// Appends a `Set-Cookie` for `name=value` (a `max_age` of 0 deletes the cookie).
fn set_cookie(response: &mut Response<Body>, name: &str, value: &str, max_age: u32) {
    let cookie = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        Err(_) => tracing::warn!(
            name,
            "not setting a cookie whose value is not a header value"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(referer: Option<&str>) -> String {
        let form = Form::decode(b"currency_code=EUR");
        let referer = referer.map(|r| HeaderValue::from_str(r).unwrap());
        let response = set_currency(&form, referer.as_ref()).unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("shop_currency=EUR; Path=/;"), "{cookie}");
        response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn set_currency_returns_to_the_referers_path_only() {
        assert_eq!(location(None), "/");
        assert_eq!(
            location(Some("http://shop/product/X?a=1")),
            "/product/X?a=1"
        );
        assert_eq!(location(Some("/cart")), "/cart");
        assert_eq!(location(Some("https://evil.example")), "/");
        assert_eq!(location(Some("//evil.example/x")), "/");
        assert_eq!(location(Some("not a uri")), "/");
    }

    #[test]
    fn set_currency_refuses_what_is_not_a_code() {
        for body in [
            &b""[..],
            b"currency_code=",
            b"currency_code=eur",
            b"currency_code=EURO",
        ] {
            let err = set_currency(&Form::decode(body), None).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        }
    }

    #[test]
    fn sessions_come_from_cookies_or_are_made_up() {
        let mut headers = http::HeaderMap::new();
        let new = Session::new(&headers, 7);
        assert!(new.is_new);
        assert_eq!(new.id.len(), 36);
        assert_eq!(new.currency, DEFAULT_CURRENCY);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("shop_session-id=abc; shop_currency=JPY"),
        );
        let known = Session::new(&headers, 7);
        assert!(!known.is_new);
        assert_eq!((known.id.as_str(), known.currency.as_str()), ("abc", "JPY"));
    }

    #[test]
    fn backend_failures_name_the_call_and_status() {
        let failure = backend("could not retrieve the cart", "CartService/GetCart")(
            Status::unavailable("connection refused"),
        );
        assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            failure.to_string(),
            "could not retrieve the cart: CartService/GetCart failed: code = Unavailable \
             desc = connection refused"
        );
    }
}
