//! The CA client: certificates from mesh-control over `mesh.identity.v1`.
//!
//! Two loops share one [`Identity`]:
//!
//! - **renewal**: generate an ECDSA P-256 key in memory, send a CSR to `Certify` with the
//!   workload token (re-read from `--token-file` each time: projected tokens rotate), install
//!   the chain, sleep until `refresh_at` (half the lifetime, minus up to 10 % jitter so a
//!   fleet started together does not renew together). A failure retries with full-jitter
//!   backoff from 1 s to 30 s; the current certificate keeps serving until it expires. An
//!   expired certificate makes the proxy not ready until a renewal succeeds.
//! - **trust bundle**: `WatchTrustBundle`, applied as it streams (a root rotation's new root
//!   arrives here before the CA signs with it), reconnecting with backoff.
//!
//! Both connect like the discovery client ([`crate::discovery::connection`]): TLS 1.3 to
//! the control plane, whose identity must be the configured control-plane identity, with
//! the current certificate (when there is one) as client certificate.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_api::proto::identity::v1::{self as pb, identity_client::IdentityClient};
use mesh_api::tls::TrustBundle;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Identity;
use crate::admin::Readiness;
use crate::discovery::backoff::Backoff;
use crate::discovery::connection::Connection;
use crate::discovery::{self, ControlPlaneAddr};

/// Asks the control plane's CA for certificates and follows its trust bundle.
#[derive(Debug)]
pub struct CaClient {
    addr: ControlPlaneAddr,
    settings: discovery::Settings,
    tls: Arc<rustls::ClientConfig>,
    identity: Arc<Identity>,
    token_file: Option<PathBuf>,
    lifetime: Option<Duration>,
    proxy_id: String,
    readiness: Readiness,
    /// The readiness reason while there is no certificate yet.
    waiting: String,
    /// The reason that follows once the first certificate is in.
    next: Cow<'static, str>,
}

/// The readiness reason before the first certificate.
pub fn waiting_reason(addr: &ControlPlaneAddr) -> String {
    format!("waiting for a certificate from {addr}")
}

/// Why a certificate request failed.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Connect(discovery::Error),
    #[error("cannot read the token {path}: {reason} (check --token-file / MESH_TOKEN_FILE)")]
    Token { path: String, reason: String },
    #[error("the CA refused: {0}")]
    Refused(String),
    #[error("the CA answered with an unusable certificate: {0}")]
    Invalid(String),
    #[error("cannot make a key or CSR: {0}")]
    Key(String),
}

impl CaClient {
    /// A client for the CA at `addr`. `next` is the readiness reason after the first
    /// certificate (the discovery client's "waiting for config").
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: ControlPlaneAddr,
        identity: Arc<Identity>,
        control_plane: mesh_api::spiffe::SpiffeId,
        token_file: Option<PathBuf>,
        lifetime: Option<Duration>,
        proxy_id: String,
        readiness: Readiness,
        next: Cow<'static, str>,
    ) -> Self {
        let tls = identity.client_for(mesh_api::tls::Expected::Exactly(control_plane));
        Self {
            waiting: waiting_reason(&addr),
            addr,
            settings: discovery::Settings::default(),
            tls,
            identity,
            token_file,
            lifetime,
            proxy_id,
            readiness,
            next,
        }
    }

    /// The TLS config for connections to the control plane (the discovery client uses it
    /// too).
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// Renews certificates and follows the trust bundle until `stop`.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let this = Arc::new(self);
        tokio::pin!(stop);
        let bundle = {
            let this = this.clone();
            async move {
                this.identity.wait_for_certificate().await;
                this.watch_bundle().await;
            }
        };
        tokio::select! {
            () = &mut stop => {}
            () = this.renew_forever() => {}
            () = bundle => {}
        }
    }

    async fn renew_forever(&self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut expired_reason: Option<String> = None;
        loop {
            match self.certify().await {
                Ok(refresh_at) => {
                    backoff.reset();
                    self.identity.set_renewal(Some(refresh_at), None);
                    if self.readiness.advance(&self.waiting, self.next.clone()) {
                        tracing::info!(identity = %self.identity.id(), "certificate received");
                    } else {
                        tracing::debug!(identity = %self.identity.id(), "certificate renewed");
                    }
                    if let Some(reason) = expired_reason.take() {
                        self.readiness.set_ready_from(&reason);
                    }
                    let now = SystemTime::now();
                    let wait = refresh_at.duration_since(now).unwrap_or_default();
                    // Up to 10 % earlier, so proxies started together spread out.
                    let wait = wait.mul_f64(1.0 - 0.1 * fastrand::f64());
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let msg = format!("certificate request to {} failed: {e}", self.addr);
                    self.identity.set_renewal(None, Some(msg.clone()));
                    let now = unix_now();
                    let not_after = self.identity.not_after();
                    if self.identity.has_certificate() && not_after <= now {
                        let reason = format!(
                            "the workload certificate expired and cannot be renewed: {msg}"
                        );
                        if expired_reason.is_none() && self.readiness.is_ready() {
                            self.readiness.set_not_ready(reason.clone());
                            expired_reason = Some(reason);
                        }
                    }
                    if self.identity.has_certificate() {
                        tracing::warn!(
                            error = %e,
                            expires_in_s = not_after - now,
                            retry_in_ms = delay.as_millis() as u64,
                            "certificate renewal failed; the current certificate keeps serving"
                        );
                    } else {
                        tracing::warn!(
                            error = %e,
                            retry_in_ms = delay.as_millis() as u64,
                            "no workload certificate yet: not ready, and no mTLS until one arrives"
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn token(&self) -> Result<Option<String>, Error> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path).map_err(|e| Error::Token {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::Token {
                path: path.display().to_string(),
                reason: "the file is empty".into(),
            });
        }
        Ok(Some(token.to_owned()))
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, Error> {
        let mut req = tonic::Request::new(message);
        if let Some(token) = self.token()? {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Error::Token {
                    path: self
                        .token_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    reason: "the token has characters a header cannot carry".into(),
                })?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }

    async fn client(&self) -> Result<IdentityClient<Connection>, Error> {
        let conn = Connection::connect(&self.addr, &self.settings, &self.tls)
            .await
            .map_err(Error::Connect)?;
        Ok(IdentityClient::with_origin(conn, self.addr.origin()))
    }

    /// One certificate request; returns when to renew.
    async fn certify(&self) -> Result<SystemTime, Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Key(e.to_string()))?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .map_err(|e| Error::Key(e.to_string()))?;
        let request = self.request(pb::CertifyRequest {
            identity: self.identity.id().as_str().to_owned(),
            csr: csr.der().to_vec(),
            requested_lifetime: self
                .lifetime
                .and_then(|d| prost_types::Duration::try_from(d).ok()),
            proxy_id: self.proxy_id.clone(),
        })?;
        let response = self
            .client()
            .await?
            .certify(request)
            .await
            .map_err(|s| Error::Refused(status_text(&s)))?
            .into_inner();
        if !response.trust_anchors.is_empty() {
            let roots = response
                .trust_anchors
                .into_iter()
                .map(CertificateDer::from)
                .collect();
            let bundle = TrustBundle::new(roots).map_err(|e| Error::Invalid(e.to_string()))?;
            self.identity.set_bundle(bundle);
        }
        let mut chain = vec![CertificateDer::from(response.leaf_certificate)];
        chain.extend(
            response
                .intermediate_certificates
                .into_iter()
                .map(CertificateDer::from),
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        self.identity
            .set_certificate(chain, key, "the certificate from the CA")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let refresh_at = response
            .refresh_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(|| {
                // Half of what is left, if the CA did not say.
                let left = (self.identity.not_after() - unix_now()).max(0) as u64;
                SystemTime::now() + Duration::from_secs(left / 2)
            });
        Ok(refresh_at)
    }

    async fn watch_bundle(&self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let error = self.bundle_stream().await;
            let delay = backoff.next_delay();
            tracing::debug!(error = %error, retry_in_ms = delay.as_millis() as u64, "trust bundle stream ended");
            tokio::time::sleep(delay).await;
        }
    }

    async fn bundle_stream(&self) -> Error {
        let mut client = match self.client().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let request = match self.request(pb::WatchTrustBundleRequest {
            proxy_id: self.proxy_id.clone(),
        }) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut stream = match client.watch_trust_bundle(request).await {
            Ok(s) => s.into_inner(),
            Err(s) => return Error::Refused(status_text(&s)),
        };
        loop {
            match stream.message().await {
                Ok(Some(update)) => {
                    let roots = update
                        .trust_anchors
                        .into_iter()
                        .map(CertificateDer::from)
                        .collect();
                    match TrustBundle::new(roots) {
                        Ok(b) if !b.is_empty() => {
                            if *self.identity.bundle() != b {
                                tracing::info!(roots = b.certs().len(), "trust bundle updated");
                            }
                            self.identity.set_bundle(b);
                        }
                        Ok(_) => tracing::warn!("the CA sent an empty trust bundle; ignored"),
                        Err(e) => tracing::warn!(error = %e, "unusable trust bundle; ignored"),
                    }
                }
                Ok(None) => return Error::Refused("the CA closed the trust bundle stream".into()),
                Err(s) => return Error::Refused(status_text(&s)),
            }
        }
    }
}

fn status_text(s: &tonic::Status) -> String {
    let msg = s.message();
    if msg.is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{msg} ({:?})", s.code())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
