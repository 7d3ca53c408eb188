//! The frontend over real HTTP/1.1 on 127.0.0.1 (port 0), in front of every backend
//! service over real gRPC, driven by a small cookie-keeping browser: the pages, the cart
//! and checkout, currencies, error pages, escaping and `traceparent` propagation; then the
//! load generator against the same frontend.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use online_boutique::{
    ad, cart, checkout,
    client::Channel,
    currency, email,
    frontend::{self, Frontend, escape, form},
    loadgen::{self, Route, WaitRange},
    money, payment,
    productcatalog::{self, Catalog},
    proto::hipstershop::{
        CurrencyConversionRequest, Empty, GetProductRequest, ListProductsResponse, Product,
        SearchProductsRequest, SearchProductsResponse,
        currency_service_client::CurrencyServiceClient,
        product_catalog_service_client::ProductCatalogServiceClient,
        product_catalog_service_server::{ProductCatalogService, ProductCatalogServiceServer},
    },
    recommendation,
    server::{Router, Server},
    shipping,
    trace::TraceContext,
};

/// Bounds every exchange with the frontend.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on a free loopback port; the server stops with the test's runtime.
async fn start(router: Router) -> Uri {
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), router)
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run());
    format!("http://{addr}").parse().unwrap()
}

/// An address nothing listens on: bound, then released.
fn dead() -> Uri {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!("http://{addr}").parse().unwrap()
}

/// Every backend in process, with the catalog given (so a test can watch its calls).
async fn backends(catalog: Router) -> frontend::Config {
    let catalog = start(catalog).await;
    let currency = start(currency::router()).await;
    let cart = start(cart::router(cart::Store::memory())).await;
    let shipping = start(shipping::router()).await;
    let checkout_config = checkout::Config {
        product_catalog: catalog.clone(),
        shipping: shipping.clone(),
        payment: start(payment::router()).await,
        email: start(email::router()).await,
        currency: currency.clone(),
        cart: cart.clone(),
    };
    let recommendation = recommendation::Config {
        product_catalog: catalog.clone(),
    };
    frontend::Config {
        product_catalog: catalog,
        currency,
        cart,
        recommendation: start(recommendation::router(&recommendation, Channel::new())).await,
        shipping,
        checkout: start(checkout::router(&checkout_config, &Channel::new())).await,
        ad: start(ad::router()).await,
    }
}

async fn default_backends() -> frontend::Config {
    backends(productcatalog::router(&productcatalog::Config::default())).await
}

/// Serves a frontend for `config`; returns its address.
async fn start_frontend(config: &frontend::Config) -> SocketAddr {
    let frontend = Frontend::new(config, &Channel::new());
    let server = frontend::Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), frontend)
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run());
    addr
}

/// A response as the browser saw it.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The text between `start` and the next `end`.
    fn between(&self, start: &str, end: &str) -> &str {
        let from = self.body.find(start).unwrap_or_else(|| {
            panic!("{start:?} not in the page:\n{}", self.body);
        }) + start.len();
        let len = self.body[from..].find(end).expect("the end marker");
        &self.body[from..from + len]
    }
}

/// An HTTP/1.1 client with a cookie jar; it does not follow redirects.
struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    origin: String,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(HttpConnector::new()),
            origin: format!("http://{addr}"),
            cookies: BTreeMap::new(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form::encode(fields.iter().copied());
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.origin));
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, cookies.join("; "));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        let req = req
            .body(body.map_or_else(Full::default, |b| Full::new(Bytes::from(b))))
            .unwrap();
        let response = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .expect("the frontend answers in time")
            .unwrap();
        let (parts, body) = response.into_parts();
        for value in parts.headers.get_all(header::SET_COOKIE) {
            let (name, value) = value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .split_once('=')
                .unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
        let body = body.collect().await.unwrap().to_bytes();
        Page {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }
}

async fn products(config: &frontend::Config) -> Vec<Product> {
    ProductCatalogServiceClient::with_origin(Channel::new(), config.product_catalog.clone())
        .list_products(Empty {})
        .await
        .unwrap()
        .into_inner()
        .products
}

#[tokio::test]
async fn home_lists_every_product_in_the_session_currency() {
    let config = default_backends().await;
    let mut browser = Browser::new(start_frontend(&config).await);
    let products = products(&config).await;
    assert_eq!(products.len(), 9);

    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(browser.cookies.contains_key(frontend::SESSION_COOKIE));
    for p in &products {
        let price = money::display(p.price_usd.as_ref().unwrap());
        assert!(home.body.contains(&escape(&p.name)), "{} missing", p.name);
        assert!(home.body.contains(&price), "{price} missing");
    }
    assert!(home.body.contains("Salt &amp; Pepper Shakers"));
    assert!(home.body.contains(r#"<option value="EUR">EUR</option>"#));

    // Switching to EUR goes back to the page it was made on, and reprices everything.
    let set = browser
        .send(
            Method::POST,
            "/setCurrency",
            Some("currency_code=EUR".into()),
            &[("referer", "http://shop.example/product/OLJCESPC7Z")],
        )
        .await;
    assert_eq!(set.status, StatusCode::FOUND);
    assert_eq!(set.location(), "/product/OLJCESPC7Z");
    assert_eq!(browser.cookies[frontend::CURRENCY_COOKIE], "EUR");

    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let mut currency = CurrencyServiceClient::with_origin(Channel::new(), config.currency.clone());
    for p in &products {
        let eur = currency
            .convert(CurrencyConversionRequest {
                from: p.price_usd.clone(),
                to_code: "EUR".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let price = money::display(&eur);
        assert!(home.body.contains(&price), "{price} missing");
        let usd = money::display(p.price_usd.as_ref().unwrap());
        assert!(!home.body.contains(&usd), "{usd} still shown");
    }
    assert!(home.body.contains(r#"<option value="EUR" selected>"#));

    // An invalid code is refused; no referer goes home.
    let bad = browser
        .post("/setCurrency", &[("currency_code", "euro")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let usd = browser
        .post("/setCurrency", &[("currency_code", "USD")])
        .await;
    assert_eq!(usd.location(), "/");

    // Logging out forgets the session and the currency.
    let out = browser.get("/logout").await;
    assert_eq!((out.status, out.location()), (StatusCode::FOUND, "/"));
    assert!(browser.cookies.is_empty(), "{:?}", browser.cookies);
}

#[tokio::test]
async fn product_pages_show_details_and_recommendations() {
    let config = default_backends().await;
    let mut browser = Browser::new(start_frontend(&config).await);

    let page = browser.get("/product/OLJCESPC7Z").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<h1>Sunglasses</h1>"));
    assert!(page.body.contains("USD 19.99"));
    assert!(
        page.body
            .contains(r#"name="product_id" value="OLJCESPC7Z""#)
    );
    let recommended = page.between("You May Also Like</h2>", "</section>");
    let links = recommended.matches(r#"href="/product/"#).count();
    assert!((1..=4).contains(&links), "{recommended}");
    assert!(!recommended.contains("OLJCESPC7Z"), "{recommended}");

    let missing = browser.get("/product/NOPE").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.body.contains("no product with ID NOPE"),
        "{}",
        missing.body
    );
    let nowhere = browser.get("/nowhere").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cart_and_checkout() {
    let config = default_backends().await;
    let mut browser = Browser::new(start_frontend(&config).await);

    let empty = browser.get("/cart").await;
    assert!(
        empty.body.contains("Your shopping cart is empty!"),
        "{}",
        empty.body
    );

    let added = browser
        .post("/cart", &[("product_id", "OLJCESPC7Z"), ("quantity", "2")])
        .await;
    assert_eq!(
        (added.status, added.location()),
        (StatusCode::FOUND, "/cart")
    );
    let cart = browser.get("/cart").await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.body);
    assert!(cart.body.contains(r#"<span class="cart-size">2</span>"#));
    assert!(
        cart.body
            .contains(r#"<a href="/product/OLJCESPC7Z">Sunglasses</a>"#)
    );
    assert_eq!(cart.between(r#"<td class="quantity">"#, "<"), "2");
    assert_eq!(cart.between(r#"<td class="price">"#, "<"), "USD 39.98");
    let shipping = cart.between(r#"<tr class="shipping">"#, "</tr>");
    assert!(shipping.contains("USD 8.99"), "{shipping}");
    let total = cart.between(r#"<tr class="total">"#, "</tr>");
    assert!(total.contains("USD 48.97"), "{total}");
    // Upstream's defaults are prefilled, the card expiring next January.
    let next_year = (payment::current_year_month().0 + 1).to_string();
    assert!(cart.body.contains(r#"value="4432-8015-6152-0454""#));
    assert!(
        cart.body
            .contains(&format!(r#"<option value="{next_year}" selected>"#))
    );

    // Bad input is refused before anything is called.
    let bad = browser
        .post("/cart", &[("product_id", "OLJCESPC7Z"), ("quantity", "0")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = browser
        .post("/cart", &[("product_id", "NOPE"), ("quantity", "1")])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let mut fields = vec![
        ("email", "someone@example.com"),
        ("street_address", "1600 Amphitheatre Parkway"),
        ("zip_code", "94043"),
        ("city", "Mountain View"),
        ("state", "CA"),
        ("country", "United States"),
        ("credit_card_number", "4432-8015-6152-0454"),
        ("credit_card_expiration_month", "1"),
        ("credit_card_expiration_year", next_year.as_str()),
        ("credit_card_cvv", "672"),
    ];
    let missing = browser.post("/cart/checkout", &fields[1..]).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.body.contains("the form field email is required"));

    let order = browser.post("/cart/checkout", &fields).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.body);
    assert!(order.body.contains("Your order is complete!"));
    let order_id = order.between(r#"<dd class="order-id">"#, "</dd>");
    assert_eq!(order_id.len(), 36, "{order_id}");
    let tracking_id = order.between(r#"<dd class="tracking-id">"#, "</dd>");
    assert_eq!(tracking_id.split('-').count(), 3, "{tracking_id}");
    assert_eq!(
        order.between(r#"<dd class="total-paid">"#, "</dd>"),
        "USD 48.97"
    );
    assert!(order.body.contains(r#"<span class="cart-size">0</span>"#));

    let after = browser.get("/cart").await;
    assert!(
        after.body.contains("Your shopping cart is empty!"),
        "{}",
        after.body
    );

    // A refused card is a 500 naming checkout, with payment's reason.
    browser
        .post("/cart", &[("product_id", "6E92ZMYYFZ"), ("quantity", "1")])
        .await;
    fields[6] = ("credit_card_number", "378282246310005");
    let refused = browser.post("/cart/checkout", &fields).await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        refused
            .body
            .contains("could not complete the order: CheckoutService/PlaceOrder failed"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("american-express"),
        "{}",
        refused.body
    );

    // Emptying the cart goes home.
    let emptied = browser.post("/cart/empty", &[]).await;
    assert_eq!(
        (emptied.status, emptied.location()),
        (StatusCode::FOUND, "/")
    );
    assert!(
        browser
            .get("/cart")
            .await
            .body
            .contains("Your shopping cart is empty!")
    );
}

#[tokio::test]
async fn a_backend_down_is_a_500_naming_the_call() {
    let config = frontend::Config {
        cart: dead(),
        ..default_backends().await
    };
    let mut browser = Browser::new(start_frontend(&config).await);
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        home.body
            .contains("could not retrieve the cart: CartService/GetCart failed: code = "),
        "{}",
        home.body
    );
    assert!(home.body.contains("HTTP Status: 500"), "{}", home.body);

    // Health does not depend on the backends.
    let health = browser.get("/_healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );
}

#[tokio::test]
async fn health_static_files_and_methods() {
    let config = default_backends().await;
    let mut browser = Browser::new(start_frontend(&config).await);
    let health = browser.get("/_healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );
    let css = browser.get("/static/styles.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(css.body.contains("body {"));
    let wrong = browser.send(Method::DELETE, "/cart", None, &[]).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers[header::ALLOW], "GET, HEAD, POST");
    let get_checkout = browser.get("/cart/checkout").await;
    assert_eq!(get_checkout.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_hostile_currency_cookie_is_escaped() {
    let config = default_backends().await;
    let mut browser = Browser::new(start_frontend(&config).await);
    let hostile = r#"x"><script>alert(1)</script>"#;
    browser
        .cookies
        .insert(frontend::CURRENCY_COOKIE.into(), hostile.into());

    // The empty cart converts nothing: the page shows the currency, escaped.
    let cart = browser.get("/cart").await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.body);
    assert!(!cart.body.contains("<script>"), "{}", cart.body);
    assert!(cart.body.contains(&escape(hostile)), "{}", cart.body);
    assert!(
        cart.body
            .contains("x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;")
    );

    // The home page fails to convert to it: the error message quotes it, escaped.
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        home.body
            .contains("could not convert currency: CurrencyService/Convert failed"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("<script>"), "{}", home.body);
    assert!(home.body.contains("&lt;script&gt;"), "{}", home.body);
}

/// A catalog that records the `traceparent` of each `GetProduct` call.
#[derive(Clone)]
struct RecordingCatalog {
    inner: Catalog,
    seen: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl ProductCatalogService for RecordingCatalog {
    async fn list_products(
        &self,
        request: tonic::Request<Empty>,
    ) -> Result<tonic::Response<ListProductsResponse>, tonic::Status> {
        self.inner.list_products(request).await
    }

    async fn get_product(
        &self,
        request: tonic::Request<GetProductRequest>,
    ) -> Result<tonic::Response<Product>, tonic::Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.seen.lock().unwrap().push(traceparent);
        self.inner.get_product(request).await
    }

    async fn search_products(
        &self,
        request: tonic::Request<SearchProductsRequest>,
    ) -> Result<tonic::Response<SearchProductsResponse>, tonic::Status> {
        self.inner.search_products(request).await
    }
}

#[tokio::test]
async fn the_incoming_trace_reaches_every_backend_call() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let catalog = RecordingCatalog {
        inner: Catalog::new(&productcatalog::Config::default()),
        seen: seen.clone(),
    };
    let config =
        backends(Router::new().add_service(ProductCatalogServiceServer::new(catalog))).await;
    let mut browser = Browser::new(start_frontend(&config).await);

    let incoming = TraceContext::new_root();
    let page = browser
        .send(
            Method::GET,
            "/product/OLJCESPC7Z",
            None,
            &[("traceparent", &incoming.to_string())],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("trace-id: {:032x}", incoming.trace_id()))
    );

    // The frontend's own GetProduct, and the recommended products' (from the
    // recommendation service, which continues the same trace).
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    for traceparent in &seen {
        let ctx = TraceContext::parse(traceparent).expect("a valid traceparent");
        assert_eq!(ctx.trace_id(), incoming.trace_id(), "{traceparent}");
        assert_ne!(ctx.span_id(), incoming.span_id());
    }
}

#[tokio::test]
async fn loadgen_exercises_every_route_without_failures() {
    let config = default_backends().await;
    let addr = start_frontend(&config).await;
    let run = loadgen::Config {
        frontend: format!("http://{addr}").parse().unwrap(),
        users: 3,
        rate: 1000.0,
        requests: Some(60),
        duration: None,
        wait: WaitRange::ZERO,
        report_every: None,
    };
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        loadgen::run(&run, std::future::pending()),
    )
    .await
    .expect("60 requests within 2 minutes");
    println!("{report}");
    assert_eq!(report.failures(), 0, "{report}");
    // A task is only started when its requests fit the budget: at most two are left.
    assert!((58..=60).contains(&report.requests()), "{report}");
    for route in Route::ALL {
        let counts = report.by_route.get(&route).copied().unwrap_or_default();
        assert!(
            counts.requests > 0,
            "{} not exercised: {report}",
            route.name()
        );
    }
}
