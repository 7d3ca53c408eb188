//! `hipstershop.ProductCatalogService` (upstream: Go, port 3550): the nine products of
//! upstream's `products.json` (embedded), listed, fetched by id and searched by name or
//! description. `EXTRA_LATENCY` (a Go duration such as `5.5s` or `300ms`) delays every
//! answer, as upstream's, to demonstrate latency in the mesh's telemetry.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tonic::{Request, Response, Status};

use crate::proto::hipstershop::{
    Empty, GetProductRequest, ListProductsResponse, Money, Product, SearchProductsRequest,
    SearchProductsResponse,
    product_catalog_service_server::{ProductCatalogService, ProductCatalogServiceServer},
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 3550;

/// The embedded catalog, in upstream's `products.json` format.
const PRODUCTS_JSON: &str = include_str!("productcatalog/products.json");

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `EXTRA_LATENCY` is not a duration.
    #[error("EXTRA_LATENCY={0:?} is not a duration: expected e.g. 300ms, 5.5s or 1m30s")]
    InvalidLatency(String),
}

/// The catalog's configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Added to every call (`EXTRA_LATENCY`).
    pub extra_latency: Duration,
}

/// The catalog service.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Arc<[Product]>,
    extra_latency: Duration,
}

#[derive(Deserialize)]
struct ProductsFile {
    products: Vec<JsonProduct>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProduct {
    id: String,
    name: String,
    description: String,
    picture: String,
    price_usd: JsonMoney,
    categories: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonMoney {
    currency_code: String,
    #[serde(default)]
    units: i64,
    #[serde(default)]
    nanos: i32,
}

// === impl Config ===

impl Config {
    /// Reads `EXTRA_LATENCY`.
    pub fn from_env() -> Result<Self, Error> {
        let extra_latency = match std::env::var("EXTRA_LATENCY") {
            Ok(v) if !v.trim().is_empty() => {
                parse_go_duration(v.trim()).ok_or(Error::InvalidLatency(v))?
            }
            _ => Duration::ZERO,
        };
        Ok(Self { extra_latency })
    }
}

/// The embedded products.
pub fn products() -> Vec<Product> {
    let file: ProductsFile =
        serde_json::from_str(PRODUCTS_JSON).expect("the embedded products.json is valid");
    file.products
        .into_iter()
        .map(|p| Product {
            id: p.id,
            name: p.name,
            description: p.description,
            picture: p.picture,
            price_usd: Some(Money {
                currency_code: p.price_usd.currency_code,
                units: p.price_usd.units,
                nanos: p.price_usd.nanos,
            }),
            categories: p.categories,
        })
        .collect()
}

/// The generated server for the catalog.
pub fn router(config: &Config) -> crate::server::Router {
    crate::server::Router::new().add_service(ProductCatalogServiceServer::new(Catalog::new(config)))
}

// === impl Catalog ===

impl Catalog {
    /// The catalog of the embedded products.
    pub fn new(config: &Config) -> Self {
        Self {
            products: products().into(),
            extra_latency: config.extra_latency,
        }
    }

    async fn delay(&self) {
        if !self.extra_latency.is_zero() {
            tokio::time::sleep(self.extra_latency).await;
        }
    }
}

#[tonic::async_trait]
impl ProductCatalogService for Catalog {
    async fn list_products(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        self.delay().await;
        Ok(Response::new(ListProductsResponse {
            products: self.products.to_vec(),
        }))
    }

    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<Product>, Status> {
        self.delay().await;
        let id = request.into_inner().id;
        self.products
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no product with ID {id}")))
    }

    async fn search_products(
        &self,
        request: Request<SearchProductsRequest>,
    ) -> Result<Response<SearchProductsResponse>, Status> {
        self.delay().await;
        let query = request.into_inner().query.to_lowercase();
        let results = self
            .products
            .iter()
            .filter(|p| {
                p.name.to_lowercase().contains(&query)
                    || p.description.to_lowercase().contains(&query)
            })
            .cloned()
            .collect();
        Ok(Response::new(SearchProductsResponse { results }))
    }
}

/// Parses a Go `time.ParseDuration` string: a sequence of decimal numbers with units `ns`,
/// `us` (`µs`), `ms`, `s`, `m`, `h`, like `1h2m0.5s`; `0` alone is allowed. Negative
/// durations are rejected.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_nine_upstream_products() {
        let ids: Vec<String> = products().into_iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            [
                "OLJCESPC7Z",
                "66VCHSJNUP",
                "1YMWWN1N4O",
                "L9ECAV7KIM",
                "2ZYFJ3GM2N",
                "0PUK6V6EV0",
                "LS4PSXUNUM",
                "9SIQT8TOJO",
                "6E92ZMYYFZ"
            ]
        );
        assert!(products().iter().all(|p| {
            p.price_usd
                .as_ref()
                .is_some_and(|m| m.currency_code == "USD")
                && !p.categories.is_empty()
                && p.picture.starts_with("/static/img/products/")
        }));
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("5.5s"), Some(Duration::from_millis(5500)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("2us"), Some(Duration::from_micros(2)));
        for bad in ["", "5", "5x", "-1s", "s", "1.2.3s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
