//! The identity service (`mesh.identity.v1.Identity`, port 15012 beside discovery):
//! `Certify` signs a proxy's CSR for its authenticated identity, `WatchTrustBundle` streams
//! the roots to verify peers with.
//!
//! A caller authenticates with one of:
//!
//! - a valid client certificate on the TLS connection (a renewal): its identity, verified
//!   by the server's [`ClientVerifier`](mesh_api::tls::ClientVerifier) against the trust
//!   bundle;
//! - `authorization: Bearer <token>` metadata: in local mode a workload token from
//!   `<state-dir>/tokens/<namespace>/<service-account>` ([`tokens`]); in Kubernetes the
//!   pod's projected ServiceAccount token, checked with a TokenReview ([`review`]).
//!
//! A certificate, when presented, decides; a token is only looked at without one. The
//! requested identity must be the authenticated one (`PERMISSION_DENIED` names both);
//! missing or bad credentials are `UNAUTHENTICATED` with the fix; a bad CSR is
//! `INVALID_ARGUMENT` naming the problem. What was issued to whom is kept per proxy for
//! `GET /debug/secrets` ([`secrets`]).

pub mod review;
pub mod secrets;
pub mod tokens;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use mesh_api::proto::identity::v1 as pb;
use mesh_api::spiffe::SpiffeId;
use mesh_api::status::ProxySecret;
use pb::identity_server::{Identity, IdentityServer};
use tonic::{Request, Response, Status};

pub use self::review::TokenReviewer;
pub use self::secrets::Secrets;
pub use self::tokens::LocalTokens;
use crate::ca::{Ca, SignError, cert_info};
use crate::grpc::Peer;
use crate::metrics::{DenyReason, Metrics};

/// Why a caller was not authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No certificate and no token.
    #[error("no credentials")]
    Missing,
    /// The token is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The token could not be checked (the API server is unreachable, RBAC...).
    #[error("{0}")]
    Unavailable(String),
}

/// How bearer tokens are checked.
#[derive(Debug, Clone)]
pub enum Tokens {
    /// Local mode: the token files of a state directory.
    Local(Arc<LocalTokens>),
    /// Kubernetes: TokenReviews.
    Kube(Arc<TokenReviewer>),
}

impl Tokens {
    async fn authenticate(&self, token: &str) -> Result<SpiffeId, AuthError> {
        match self {
            Self::Local(t) => t.authenticate(token).await.ok_or_else(|| {
                AuthError::Invalid(
                    "the token matches no workload token of this control plane (is it the file mesh-control created under <state-dir>/tokens/<namespace>/<service-account>?)".into(),
                )
            }),
            Self::Kube(r) => r.authenticate(token).await,
        }
    }

    /// How a proxy gets a token, for error messages.
    fn hint(&self) -> &'static str {
        match self {
            Self::Local(_) => {
                "start the proxy with --token-file <state-dir>/tokens/<namespace>/<service-account> (create it with `mesh-control token --state-dir <state-dir> <namespace>/<service-account>`)"
            }
            Self::Kube(_) => {
                "mount a projected ServiceAccount token with audience \"mesh-control\" and start the proxy with --token-file pointing at it"
            }
        }
    }
}

/// How a caller was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Certificate,
    Token,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::Token => "token",
        }
    }
}

/// The `Identity` service.
#[derive(Debug, Clone)]
pub struct IdentityService {
    ca: Ca,
    tokens: Tokens,
    secrets: Secrets,
    metrics: Arc<Metrics>,
}

impl IdentityService {
    /// A service signing with `ca`, checking tokens with `tokens`, recording in `secrets`.
    pub fn new(ca: Ca, tokens: Tokens, secrets: Secrets, metrics: Arc<Metrics>) -> Self {
        Self {
            ca,
            tokens,
            secrets,
            metrics,
        }
    }

    /// The tonic server of this service.
    pub fn server(self) -> IdentityServer<Self> {
        IdentityServer::new(self)
            .max_decoding_message_size(64 * 1024)
            .max_encoding_message_size(1024 * 1024)
    }

    fn deny(&self, reason: DenyReason, status: Status) -> Status {
        self.metrics.certificate_denied(reason);
        status
    }

    /// The caller's identity, from its certificate or its bearer token.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<(SpiffeId, Via), Status> {
        let peer = request.extensions().get::<Peer>();
        if let Some(id) = peer.and_then(|p| p.identity.clone()) {
            return Ok((id, Via::Certificate));
        }
        let addr = peer.map_or_else(|| "unknown".to_owned(), |p| p.addr.to_string());
        let token = match request.metadata().get("authorization") {
            None => None,
            Some(v) => {
                let v = v.to_str().map_err(|_| {
                    self.deny(
                        DenyReason::Unauthenticated,
                        Status::unauthenticated(
                            "the authorization metadata is not ASCII; send `Bearer <token>`",
                        ),
                    )
                })?;
                let token = v
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        self.deny(
                            DenyReason::Unauthenticated,
                            Status::unauthenticated(
                                "the authorization metadata must be `Bearer <token>`",
                            ),
                        )
                    })?;
                Some(token.to_owned())
            }
        };
        let Some(token) = token else {
            tracing::debug!(peer = %addr, "identity request without credentials");
            return Err(self.deny(
                DenyReason::Unauthenticated,
                Status::unauthenticated(format!(
                    "no credentials: send `authorization: Bearer <token>` or renew over mutual TLS with a valid mesh certificate; {}",
                    self.tokens.hint()
                )),
            ));
        };
        match self.tokens.authenticate(&token).await {
            Ok(id) => Ok((id, Via::Token)),
            Err(AuthError::Unavailable(why)) => {
                tracing::warn!(peer = %addr, "cannot check a token: {why}");
                Err(self.deny(
                    DenyReason::Unavailable,
                    Status::unavailable(format!("cannot check the token now: {why}")),
                ))
            }
            Err(e) => {
                tracing::info!(peer = %addr, "identity request with an invalid token: {e}");
                Err(self.deny(
                    DenyReason::Unauthenticated,
                    Status::unauthenticated(format!("{e}; {}", self.tokens.hint())),
                ))
            }
        }
    }
}

fn unix_s(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

type BundleStream = Pin<Box<dyn Stream<Item = Result<pb::TrustBundle, Status>> + Send>>;

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<pb::CertifyRequest>,
    ) -> Result<Response<pb::CertifyResponse>, Status> {
        let (caller, via) = self.authenticate(&request).await?;
        let req = request.into_inner();
        let trust_domain = &self.ca.settings().trust_domain;
        if req.identity.is_empty() {
            return Err(self.deny(
                DenyReason::InvalidRequest,
                Status::invalid_argument(format!(
                    "identity is empty: ask for the caller's own identity, {caller}"
                )),
            ));
        }
        let asked: SpiffeId = req.identity.parse().map_err(|e| {
            self.deny(
                DenyReason::InvalidRequest,
                Status::invalid_argument(format!(
                    "identity {:?} is not a mesh SPIFFE id: {e}",
                    req.identity
                )),
            )
        })?;
        if asked.trust_domain() != trust_domain {
            return Err(self.deny(
                DenyReason::PermissionDenied,
                Status::permission_denied(format!(
                    "the CSR asks for {asked}, outside this CA's trust domain {trust_domain:?}; the caller is {caller}"
                )),
            ));
        }
        if asked != caller {
            tracing::warn!(%asked, %caller, proxy = %req.proxy_id, "certificate request for another identity denied");
            return Err(self.deny(
                DenyReason::PermissionDenied,
                Status::permission_denied(format!(
                    "the CSR asks for {asked} but the caller is {caller}"
                )),
            ));
        }
        let requested = match req.requested_lifetime {
            None => None,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(self.deny(
                    DenyReason::InvalidRequest,
                    Status::invalid_argument("requested_lifetime is negative"),
                ));
            }
            Some(d) => Some(
                Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                    + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0)),
            ),
        };
        let issued = self
            .ca
            .sign_csr(&caller, &req.csr, requested)
            .map_err(|e| match e {
                SignError::Csr(why) => self.deny(
                    DenyReason::InvalidCsr,
                    Status::invalid_argument(format!("bad CSR: {why}")),
                ),
                SignError::Unavailable(why) => {
                    tracing::error!("cannot sign: {why}");
                    self.deny(DenyReason::Unavailable, Status::unavailable(why))
                }
            })?;
        self.metrics.certificate_issued();
        let leaf = cert_info(&issued.chain[0]);
        tracing::info!(
            identity = %caller,
            proxy = %req.proxy_id,
            via = via.as_str(),
            serial = %leaf.serial,
            not_after = leaf.not_after,
            "certificate issued"
        );
        let proxy = if req.proxy_id.is_empty() {
            caller.to_string()
        } else {
            req.proxy_id.clone()
        };
        self.secrets.record(
            ProxySecret {
                proxy,
                identity: caller.to_string(),
                issued_unix_ms: crate::discovery::clients::unix_ms(),
                authenticated_by: via.as_str().to_owned(),
                chain: issued.chain.iter().map(cert_info).collect(),
                trust_bundle: issued.trust_anchors.iter().map(cert_info).collect(),
            },
            unix_s(SystemTime::now()),
        );
        let mut chain = issued.chain.into_iter().map(|c| c.to_vec());
        Ok(Response::new(pb::CertifyResponse {
            leaf_certificate: chain.next().unwrap_or_default(),
            intermediate_certificates: chain.collect(),
            trust_anchors: issued.trust_anchors.iter().map(|c| c.to_vec()).collect(),
            not_after: Some(timestamp(issued.not_after)),
            refresh_at: Some(timestamp(issued.refresh_at)),
        }))
    }

    type WatchTrustBundleStream = BundleStream;

    async fn watch_trust_bundle(
        &self,
        request: Request<pb::WatchTrustBundleRequest>,
    ) -> Result<Response<Self::WatchTrustBundleStream>, Status> {
        let (caller, via) = self.authenticate(&request).await?;
        let proxy = request.into_inner().proxy_id;
        tracing::debug!(identity = %caller, %proxy, via = via.as_str(), "trust bundle watch opened");
        let rx = self.ca.watch_bundle();
        // The current bundle at once, then every change; ends when the CA goes away.
        let out = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let bundle = rx.borrow_and_update().clone();
            let msg = pb::TrustBundle {
                trust_anchors: bundle.roots.iter().map(|c| c.to_vec()).collect(),
            };
            Some((Ok(msg), (rx, false)))
        });
        Ok(Response::new(Box::pin(out)))
    }
}
