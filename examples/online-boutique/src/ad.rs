//! `hipstershop.AdService` (upstream: Java, port 9555): the ads of the categories in the
//! request's context keys, or two random ads when none match, from upstream's fixed set.

use tonic::{Request, Response, Status};

use crate::proto::hipstershop::{
    Ad, AdRequest, AdResponse,
    ad_service_server::{AdService, AdServiceServer},
};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 9555;

/// How many random ads are served when no category matches, as upstream.
pub const MAX_RANDOM_ADS: usize = 2;

/// Upstream's ads: (category, redirect URL, text).
const ADS: &[(&str, &str, &str)] = &[
    (
        "clothing",
        "/product/66VCHSJNUP",
        "Tank top for sale. 20% off.",
    ),
    (
        "accessories",
        "/product/1YMWWN1N4O",
        "Watch for sale. Buy one, get second kit for free",
    ),
    (
        "footwear",
        "/product/L9ECAV7KIM",
        "Loafers for sale. Buy one, get second one for free",
    ),
    (
        "hair",
        "/product/2ZYFJ3GM2N",
        "Hairdryer for sale. 50% off.",
    ),
    (
        "decor",
        "/product/0PUK6V6EV0",
        "Candle holder for sale. 30% off.",
    ),
    (
        "kitchen",
        "/product/9SIQT8TOJO",
        "Bamboo glass jar for sale. 10% off.",
    ),
    (
        "kitchen",
        "/product/6E92ZMYYFZ",
        "Mug for sale. Buy two, get third one for free",
    ),
];

/// The ad service.
#[derive(Debug, Clone, Default)]
pub struct Ads;

/// The generated server for the ad service.
pub fn router() -> crate::server::Router {
    crate::server::Router::new().add_service(AdServiceServer::new(Ads))
}

fn ad(&(_, redirect_url, text): &(&str, &str, &str)) -> Ad {
    Ad {
        redirect_url: redirect_url.to_string(),
        text: text.to_string(),
    }
}

/// The ads for `context_keys`: every ad of each listed category, else random ones.
pub fn ads_for(context_keys: &[String]) -> Vec<Ad> {
    let matched: Vec<Ad> = context_keys
        .iter()
        .flat_map(|key| ADS.iter().filter(move |(cat, _, _)| cat == key))
        .map(ad)
        .collect();
    if !matched.is_empty() {
        return matched;
    }
    fastrand::choose_multiple(ADS.iter(), MAX_RANDOM_ADS)
        .into_iter()
        .map(ad)
        .collect()
}

#[tonic::async_trait]
impl AdService for Ads {
    async fn get_ads(&self, request: Request<AdRequest>) -> Result<Response<AdResponse>, Status> {
        let keys = request.into_inner().context_keys;
        tracing::info!(context_keys = ?keys, "ad request");
        Ok(Response::new(AdResponse {
            ads: ads_for(&keys),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ads_by_category_or_random() {
        let kitchen = ads_for(&["kitchen".to_string()]);
        assert_eq!(kitchen.len(), 2);
        assert!(
            kitchen
                .iter()
                .all(|a| a.redirect_url.starts_with("/product/"))
        );
        assert_eq!(kitchen[1].redirect_url, "/product/6E92ZMYYFZ");

        let random = ads_for(&["nothing-matches".to_string()]);
        assert_eq!(random.len(), MAX_RANDOM_ADS);
        assert_ne!(random[0], random[1]);
        assert_eq!(ads_for(&[]).len(), MAX_RANDOM_ADS);
    }
}
