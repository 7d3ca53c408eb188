//! Kubernetes-mode authentication: a pod's projected ServiceAccount token (audience
//! `mesh-control`), checked with a TokenReview (`authentication.k8s.io/v1`).
//!
//! A token is accepted when the review says `authenticated`, lists our audience in
//! `status.audiences`, and names a service account (`system:serviceaccount:<ns>:<sa>`).
//! Positive answers are cached for a minute, keyed by the token's SHA-256, so a proxy's
//! `Certify` and `WatchTrustBundle` calls cost one review.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use mesh_api::spiffe::SpiffeId;

use super::AuthError;

/// The audience projected tokens must be issued for.
pub const AUDIENCE: &str = "mesh-control";

/// How long a positive review is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

const CACHE_MAX: usize = 10_000;

/// Checks tokens with TokenReviews.
pub struct TokenReviewer {
    client: kube::Client,
    trust_domain: String,
    cache: Mutex<HashMap<[u8; 32], (SpiffeId, Instant)>>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// A reviewer asking the API server `client` talks to.
    pub fn new(client: kube::Client, trust_domain: impl Into<String>) -> Self {
        Self {
            client,
            trust_domain: trust_domain.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The identity of the service account `token` belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<SpiffeId, AuthError> {
        let key = crate::ca::sha256(token.as_bytes());
        if let Some((id, at)) = self.cache.lock().expect("cache poisoned").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(id.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![AUDIENCE.to_owned()]),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 403 => AuthError::Unavailable(format!(
                    "mesh-control may not create TokenReviews ({}); its ClusterRole needs create on tokenreviews.authentication.k8s.io (apply deploy/ RBAC)",
                    s.message
                )),
                _ => AuthError::Unavailable(format!("the TokenReview failed: {e}")),
            })?;
        let id = self.identity(&answer)?;
        let mut cache = self.cache.lock().expect("cache poisoned");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        if cache.len() < CACHE_MAX {
            cache.insert(key, (id.clone(), Instant::now()));
        }
        Ok(id)
    }

    /// The identity a review's answer grants.
    fn identity(&self, review: &TokenReview) -> Result<SpiffeId, AuthError> {
        let status = review.status.as_ref().ok_or_else(|| {
            AuthError::Unavailable("the TokenReview came back without a status".into())
        })?;
        if status.authenticated != Some(true) {
            let why = status
                .error
                .as_deref()
                .filter(|e| !e.is_empty())
                .unwrap_or("the token is invalid or expired");
            return Err(AuthError::Invalid(format!(
                "the Kubernetes API server did not authenticate the token: {why}"
            )));
        }
        let audiences = status.audiences.as_deref().unwrap_or_default();
        if !audiences.iter().any(|a| a == AUDIENCE) {
            return Err(AuthError::Invalid(format!(
                "the token is not meant for mesh-control (audiences {audiences:?}); mount a projected ServiceAccount token with audience {AUDIENCE:?}"
            )));
        }
        let username = status
            .user
            .as_ref()
            .and_then(|u| u.username.as_deref())
            .unwrap_or_default();
        let (ns, sa) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "the token belongs to {username:?}, not a service account; only pods' ServiceAccount tokens are accepted"
                ))
            })?;
        SpiffeId::new(&self.trust_domain, ns, sa).map_err(|e| {
            AuthError::Invalid(format!(
                "service account {ns}/{sa} cannot be a mesh identity: {e}"
            ))
        })
    }
}
