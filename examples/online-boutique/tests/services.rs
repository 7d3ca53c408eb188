//! Every service over real gRPC on 127.0.0.1 (port 0), called through tonic's generated
//! clients on the crate's own [`Channel`]: the catalog, currency, cart (in memory, and in a
//! real `redis-server` when one is installed), payment, shipping, recommendation, ad,
//! checkout end to end across all of them, health checking, and `traceparent` propagation.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use http::Uri;
use online_boutique::{
    ad, cart, checkout,
    client::Channel,
    currency, email, payment,
    productcatalog::{self, Catalog},
    proto::{
        health::v1::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        },
        hipstershop::{
            AdRequest, AddItemRequest, Address, CartItem, CreditCardInfo,
            CurrencyConversionRequest, Empty, EmptyCartRequest, GetCartRequest, GetProductRequest,
            GetQuoteRequest, ListProductsResponse, ListRecommendationsRequest, Money,
            PlaceOrderRequest, Product, SearchProductsRequest, SearchProductsResponse,
            ShipOrderRequest,
            ad_service_client::AdServiceClient,
            cart_service_client::CartServiceClient,
            checkout_service_client::CheckoutServiceClient,
            currency_service_client::CurrencyServiceClient,
            payment_service_client::PaymentServiceClient,
            product_catalog_service_client::ProductCatalogServiceClient,
            product_catalog_service_server::{ProductCatalogService, ProductCatalogServiceServer},
            recommendation_service_client::RecommendationServiceClient,
            shipping_service_client::ShippingServiceClient,
        },
    },
    recommendation,
    server::{Router, Server},
    shipping,
    trace::TraceContext,
};
use tonic::Code;

/// Serves `router` on a free loopback port; the server stops with the test's runtime.
async fn start(router: Router) -> Uri {
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), router)
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run());
    format!("http://{addr}").parse().unwrap()
}

fn usd(units: i64, nanos: i32) -> Money {
    Money {
        currency_code: "USD".into(),
        units,
        nanos,
    }
}

fn card(number: &str, year: i32) -> CreditCardInfo {
    CreditCardInfo {
        credit_card_number: number.into(),
        credit_card_cvv: 672,
        credit_card_expiration_year: year,
        credit_card_expiration_month: 1,
    }
}

fn address() -> Address {
    Address {
        street_address: "1600 Amphitheatre Parkway".into(),
        city: "Mountain View".into(),
        state: "CA".into(),
        country: "United States".into(),
        zip_code: 94043,
    }
}

#[tokio::test]
async fn catalog_lists_gets_and_searches() {
    let uri = start(productcatalog::router(&productcatalog::Config::default())).await;
    let mut client = ProductCatalogServiceClient::with_origin(Channel::new(), uri);

    let products = client
        .list_products(Empty {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products.len(), 9);

    let mug = client
        .get_product(GetProductRequest {
            id: "6E92ZMYYFZ".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mug.name, "Mug");
    assert_eq!(mug.price_usd, Some(usd(8, 990_000_000)));
    assert_eq!(mug.categories, ["kitchen"]);

    let missing = client
        .get_product(GetProductRequest { id: "NOPE".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "no product with ID NOPE");

    let kitchen = client
        .search_products(SearchProductsRequest {
            query: "KITCHEN".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let ids: Vec<&str> = kitchen.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["LS4PSXUNUM", "9SIQT8TOJO"]);
}

#[tokio::test]
async fn currency_converts_round_trips_within_a_nano() {
    let uri = start(currency::router()).await;
    let mut client = CurrencyServiceClient::with_origin(Channel::new(), uri);

    let codes = client
        .get_supported_currencies(Empty {})
        .await
        .unwrap()
        .into_inner()
        .currency_codes;
    for code in ["EUR", "USD", "JPY", "GBP", "CAD", "TRY"] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }

    let mut convert = async |from: Money, to: &str| {
        client
            .convert(CurrencyConversionRequest {
                from: Some(from),
                to_code: to.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let eur = convert(usd(100, 0), "EUR").await.unwrap();
    assert_eq!((eur.currency_code.as_str(), eur.units), ("EUR", 88));
    let back = convert(eur, "USD").await.unwrap();
    let nanos = i128::from(back.units) * 1_000_000_000 + i128::from(back.nanos);
    assert!((nanos - 100_000_000_000).abs() <= 1, "{back:?}");
    assert_eq!(back.currency_code, "USD");

    let jpy = convert(usd(19, 990_000_000), "JPY").await.unwrap();
    let via_jpy = convert(jpy, "USD").await.unwrap();
    assert_eq!((via_jpy.units, via_jpy.nanos / 10_000_000), (19, 99));

    let bad = convert(usd(1, 0), "XXX").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("XXX"), "{bad:?}");
}

/// Adds, reads and empties carts through the service over `store`.
async fn exercise_cart(store: cart::Store) {
    let uri = start(cart::router(store)).await;
    let mut client = CartServiceClient::with_origin(Channel::new(), uri);
    let user = format!("user-{}", fastrand::u32(..));
    let add = |id: &str, quantity| AddItemRequest {
        user_id: user.clone(),
        item: Some(CartItem {
            product_id: id.into(),
            quantity,
        }),
    };
    let get = || GetCartRequest {
        user_id: user.clone(),
    };

    assert!(
        client
            .get_cart(get())
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty()
    );
    client.add_item(add("OLJCESPC7Z", 1)).await.unwrap();
    client.add_item(add("66VCHSJNUP", 2)).await.unwrap();
    client.add_item(add("OLJCESPC7Z", 3)).await.unwrap();
    let cart = client.get_cart(get()).await.unwrap().into_inner();
    assert_eq!(cart.user_id, user);
    let items: Vec<(&str, i32)> = cart
        .items
        .iter()
        .map(|i| (i.product_id.as_str(), i.quantity))
        .collect();
    assert_eq!(items, [("OLJCESPC7Z", 4), ("66VCHSJNUP", 2)]);

    let bad = client.add_item(add("OLJCESPC7Z", 0)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    client
        .empty_cart(EmptyCartRequest {
            user_id: user.clone(),
        })
        .await
        .unwrap();
    assert!(
        client
            .get_cart(get())
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn cart_in_memory() {
    exercise_cart(cart::Store::memory()).await;
}

/// A `redis-server` on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server` (no persistence), or says why not.
async fn redis_server() -> Option<RedisServer> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let required = std::env::var("MESH_E2E").is_ok_and(|v| v == "require");
        assert!(!required, "redis-server not found and MESH_E2E=require");
        println!("SKIPPED: redis-server not found");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting redis-server");
    let server = RedisServer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let client = cart::redis::Client::new(server.addr.to_string());
    for _ in 0..100 {
        if client.ping().await.is_ok() {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "redis-server on {} did not answer PING within 5 s",
        server.addr
    );
}

#[tokio::test]
async fn cart_in_redis() {
    let Some(redis) = redis_server().await else {
        return;
    };
    exercise_cart(cart::Store::redis(redis.addr.to_string())).await;

    // The layout is upstream's: a hash per user whose `cart` field is an encoded Cart.
    let store = cart::Store::redis(redis.addr.to_string());
    store.add("alice", "L9ECAV7KIM", 2).await.unwrap();
    let client = cart::redis::Client::new(redis.addr.to_string());
    let raw = client.hget("alice", "cart").await.unwrap().expect("stored");
    let decoded =
        <online_boutique::proto::hipstershop::Cart as prost::Message>::decode(raw.as_slice())
            .unwrap();
    assert_eq!(decoded.user_id, "alice");
    assert_eq!(decoded.items[0].product_id, "L9ECAV7KIM");
    assert_eq!(decoded.items[0].quantity, 2);
}

#[tokio::test]
async fn cart_reports_an_unreachable_redis() {
    // A port nothing listens on: bound, then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let uri = start(cart::router(cart::Store::redis(addr.to_string()))).await;
    let mut client = CartServiceClient::with_origin(Channel::new(), uri);
    let err = client
        .get_cart(GetCartRequest {
            user_id: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("REDIS_ADDR"), "{err:?}");
}

#[tokio::test]
async fn payment_validates_cards() {
    let uri = start(payment::router()).await;
    let mut client = PaymentServiceClient::with_origin(Channel::new(), uri);
    let next_year = payment::current_year_month().0 + 1;
    let mut charge = async |number: &str, year| {
        client
            .charge(online_boutique::proto::hipstershop::ChargeRequest {
                amount: Some(usd(42, 0)),
                credit_card: Some(card(number, year)),
            })
            .await
    };

    let ok = charge("4432-8015-6152-0454", next_year).await.unwrap();
    assert_eq!(ok.into_inner().transaction_id.len(), 36);
    charge("5555555555554444", next_year).await.unwrap();

    let refused = [
        (
            "4432801561520455",
            next_year,
            "Credit card info is invalid".to_string(),
        ),
        (
            "378282246310005",
            next_year,
            "Sorry, we cannot process american-express credit cards. Only VISA or MasterCard \
             is accepted."
                .to_string(),
        ),
        (
            "4432801561520454",
            2020,
            "Your credit card (ending 0454) expired on 1/2020".to_string(),
        ),
    ];
    for (number, year, message) in refused {
        let err = charge(number, year).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{number}");
        assert_eq!(err.message(), message);
    }
}

#[tokio::test]
async fn shipping_quotes_and_ships() {
    let uri = start(shipping::router()).await;
    let mut client = ShippingServiceClient::with_origin(Channel::new(), uri);
    let items = vec![CartItem {
        product_id: "OLJCESPC7Z".into(),
        quantity: 3,
    }];
    let quote = client
        .get_quote(GetQuoteRequest {
            address: Some(address()),
            items: items.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(quote.cost_usd, Some(usd(8, 990_000_000)));
    let shipped = client
        .ship_order(ShipOrderRequest {
            address: Some(address()),
            items,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shipped.tracking_id.split('-').count(), 3, "{shipped:?}");
}

#[tokio::test]
async fn recommendations_leave_out_the_given_products() {
    let catalog = start(productcatalog::router(&productcatalog::Config::default())).await;
    let config = recommendation::Config {
        product_catalog: catalog,
    };
    let uri = start(recommendation::router(&config, Channel::new())).await;
    let mut client = RecommendationServiceClient::with_origin(Channel::new(), uri);
    let exclude = [
        "OLJCESPC7Z",
        "66VCHSJNUP",
        "1YMWWN1N4O",
        "L9ECAV7KIM",
        "2ZYFJ3GM2N",
    ];
    let ids = client
        .list_recommendations(ListRecommendationsRequest {
            user_id: "u".into(),
            product_ids: exclude.iter().map(|s| (*s).to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .product_ids;
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["0PUK6V6EV0", "6E92ZMYYFZ", "9SIQT8TOJO", "LS4PSXUNUM"]
    );

    let five = client
        .list_recommendations(ListRecommendationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .product_ids;
    assert_eq!(five.len(), recommendation::MAX_RESPONSES);
}

#[tokio::test]
async fn ads_by_context() {
    let uri = start(ad::router()).await;
    let mut client = AdServiceClient::with_origin(Channel::new(), uri);
    let ads = client
        .get_ads(AdRequest {
            context_keys: vec!["footwear".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .ads;
    assert_eq!(ads.len(), 1);
    assert_eq!(ads[0].redirect_url, "/product/L9ECAV7KIM");
}

#[tokio::test]
async fn checkout_places_an_order_across_all_services() {
    let cart_uri = start(cart::router(cart::Store::memory())).await;
    let config = checkout::Config {
        product_catalog: start(productcatalog::router(&productcatalog::Config::default())).await,
        shipping: start(shipping::router()).await,
        payment: start(payment::router()).await,
        email: start(email::router()).await,
        currency: start(currency::router()).await,
        cart: cart_uri.clone(),
    };
    let channel = Channel::new();
    let uri = start(checkout::router(&config, &channel)).await;
    let mut cart = CartServiceClient::with_origin(channel.clone(), cart_uri);
    for (id, quantity) in [("OLJCESPC7Z", 2), ("6E92ZMYYFZ", 1)] {
        cart.add_item(AddItemRequest {
            user_id: "buyer".into(),
            item: Some(CartItem {
                product_id: id.into(),
                quantity,
            }),
        })
        .await
        .unwrap();
    }

    let mut client = CheckoutServiceClient::with_origin(channel.clone(), uri);
    let next_year = payment::current_year_month().0 + 1;
    let place = |number: &str| PlaceOrderRequest {
        user_id: "buyer".into(),
        user_currency: "EUR".into(),
        address: Some(address()),
        email: "someone@example.com".into(),
        credit_card: Some(card(number, next_year)),
    };
    let order = client
        .place_order(place("4432801561520454"))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.order_id.len(), 36);
    assert_eq!(order.shipping_tracking_id.split('-').count(), 3);
    assert_eq!(order.shipping_address, Some(address()));
    // 8.99 USD / 1.1305 = 7.952233524... EUR.
    assert_eq!(
        order.shipping_cost,
        Some(Money {
            currency_code: "EUR".into(),
            units: 7,
            nanos: 952_233_525,
        })
    );
    let items: Vec<(&str, i32, &str, i64)> = order
        .items
        .iter()
        .map(|i| {
            let item = i.item.as_ref().unwrap();
            let cost = i.cost.as_ref().unwrap();
            (
                item.product_id.as_str(),
                item.quantity,
                cost.currency_code.as_str(),
                cost.units,
            )
        })
        .collect();
    // 19.99 USD = 17.68 EUR; 8.99 USD = 7.95 EUR.
    assert_eq!(
        items,
        [("OLJCESPC7Z", 2, "EUR", 17), ("6E92ZMYYFZ", 1, "EUR", 7)]
    );

    // The cart was emptied.
    let left = cart
        .get_cart(GetCartRequest {
            user_id: "buyer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(left.items.is_empty(), "{left:?}");

    // A refused card fails the order with payment's reason, and the cart is kept.
    cart.add_item(AddItemRequest {
        user_id: "buyer".into(),
        item: Some(CartItem {
            product_id: "9SIQT8TOJO".into(),
            quantity: 1,
        }),
    })
    .await
    .unwrap();
    let err = client
        .place_order(place("378282246310005"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(
        err.message()
            .starts_with("failed to charge card: Sorry, we cannot process american-express"),
        "{err:?}"
    );
    let kept = cart
        .get_cart(GetCartRequest {
            user_id: "buyer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.items.len(), 1);
}

#[tokio::test]
async fn checkout_reports_an_unreachable_service() {
    // Nothing listens on these ports.
    let dead: Uri = {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        format!("http://{addr}").parse().unwrap()
    };
    let config = checkout::Config {
        product_catalog: dead.clone(),
        shipping: dead.clone(),
        payment: dead.clone(),
        email: dead.clone(),
        currency: dead.clone(),
        cart: dead,
    };
    let uri = start(checkout::router(&config, &Channel::new())).await;
    let mut client = CheckoutServiceClient::with_origin(Channel::new(), uri);
    let err = client
        .place_order(PlaceOrderRequest {
            user_id: "u".into(),
            user_currency: "USD".into(),
            address: Some(address()),
            email: "a@b.c".into(),
            credit_card: Some(card("4432801561520454", 2100)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(
        err.message()
            .starts_with("failed to get user cart during checkout"),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_server_answers_health_checks() {
    let uri = start(currency::router()).await;
    let mut health = HealthClient::with_origin(Channel::new(), uri.clone());
    for service in ["", "hipstershop.CurrencyService", "grpc.health.v1.Health"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, i32::from(ServingStatus::Serving), "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "hipstershop.CartService".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("Watch answers at once")
        .unwrap()
        .unwrap();
    assert_eq!(first.status, i32::from(ServingStatus::Serving));

    // A service the server does not route is UNIMPLEMENTED.
    let mut cart = CartServiceClient::with_origin(Channel::new(), uri);
    let err = cart.get_cart(GetCartRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

/// A catalog that records the `traceparent` of each call.
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
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.seen.lock().unwrap().push(traceparent);
        self.inner.list_products(request).await
    }

    async fn get_product(
        &self,
        request: tonic::Request<GetProductRequest>,
    ) -> Result<tonic::Response<Product>, tonic::Status> {
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
async fn traceparent_is_propagated_with_a_child_span() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let catalog = RecordingCatalog {
        inner: Catalog::new(&productcatalog::Config::default()),
        seen: seen.clone(),
    };
    let catalog_uri =
        start(Router::new().add_service(ProductCatalogServiceServer::new(catalog))).await;
    let config = recommendation::Config {
        product_catalog: catalog_uri,
    };
    let uri = start(recommendation::router(&config, Channel::new())).await;

    // A traceparent as a sidecar or the upstream frontend sends it.
    let incoming = TraceContext::new_root();
    let mut request = tonic::Request::new(ListRecommendationsRequest::default());
    request
        .metadata_mut()
        .insert("traceparent", incoming.to_string().parse().unwrap());
    let mut client = RecommendationServiceClient::with_origin(Channel::new(), uri);
    client.list_recommendations(request).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let forwarded = TraceContext::parse(&seen[0]).expect("a valid traceparent");
    assert_eq!(forwarded.trace_id(), incoming.trace_id());
    assert_ne!(forwarded.span_id(), incoming.span_id());
    assert_eq!(forwarded.flags(), incoming.flags());
}
