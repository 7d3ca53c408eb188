//! `hipstershop.RecommendationService` (upstream: Python, port 8080): up to five random
//! products from the catalog (`PRODUCT_CATALOG_SERVICE_ADDR`), leaving out the products
//! the request names.

use http::Uri;
use tonic::{Request, Response, Status};

use crate::{
    client::{self, Channel},
    proto::hipstershop::{
        Empty, ListRecommendationsRequest, ListRecommendationsResponse,
        product_catalog_service_client::ProductCatalogServiceClient,
        recommendation_service_server::{RecommendationService, RecommendationServiceServer},
    },
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 8080;

/// The most products recommended at once, as upstream.
pub const MAX_RESPONSES: usize = 5;

/// Where the catalog is.
#[derive(Debug, Clone)]
pub struct Config {
    /// The product catalog (`PRODUCT_CATALOG_SERVICE_ADDR`).
    pub product_catalog: Uri,
}

/// The recommendation service.
#[derive(Debug, Clone)]
pub struct Recommendations {
    catalog: ProductCatalogServiceClient<Channel>,
}

// === impl Config ===

impl Config {
    /// Reads `PRODUCT_CATALOG_SERVICE_ADDR`.
    pub fn from_env() -> Result<Self, client::Error> {
        Ok(Self {
            product_catalog: client::origin_from_env("PRODUCT_CATALOG_SERVICE_ADDR")?,
        })
    }
}

/// The generated server for the recommendation service.
pub fn router(config: &Config, channel: Channel) -> crate::server::Router {
    let catalog = ProductCatalogServiceClient::with_origin(channel, config.product_catalog.clone());
    crate::server::Router::new().add_service(RecommendationServiceServer::new(Recommendations {
        catalog,
    }))
}

#[tonic::async_trait]
impl RecommendationService for Recommendations {
    async fn list_recommendations(
        &self,
        request: Request<ListRecommendationsRequest>,
    ) -> Result<Response<ListRecommendationsResponse>, Status> {
        let exclude = request.into_inner().product_ids;
        let products = self
            .catalog
            .clone()
            .list_products(Empty {})
            .await
            .map_err(|s| Status::unavailable(format!("listing products failed: {}", s.message())))?
            .into_inner()
            .products;
        let candidates = products
            .into_iter()
            .map(|p| p.id)
            .filter(|id| !exclude.contains(id));
        let product_ids = fastrand::choose_multiple(candidates, MAX_RESPONSES);
        tracing::info!(recommended = ?product_ids, "recommendations");
        Ok(Response::new(ListRecommendationsResponse { product_ids }))
    }
}
