//! The gRPC server on port 15012: TLS 1.3 (ALPN `h2`), discovery and identity on one
//! port, routed by gRPC path.
//!
//! - A client certificate is optional at the TLS layer, so a proxy without one can call
//!   `Certify` with its token; a certificate that is presented must chain to the trust
//!   bundle and carry an identity of the trust domain, or the handshake fails. The verified
//!   identity travels with every request as a [`Peer`] extension: the discovery stream
//!   requires it, the identity service accepts it for renewals.
//! - mesh-control's own certificate ([`serving_identity`]) is issued by its CA at start
//!   with a key that never leaves memory, and renewed at half its life — and at once when
//!   the CA starts signing with new material — through a
//!   [`CertStore`], so renewal needs no restart.
//! - Each connection's handshake runs in its own task under a 10 s timeout, and at most
//!   [`MAX_HANDSHAKES`] at once, so slow or silent clients cannot pin resources; failures
//!   are logged at debug with the peer address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_api::spiffe::SpiffeId;
use mesh_api::tls::{ALPN_H2, CertStore, ClientVerifier, TrustStore};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::ca::Ca;
use crate::discovery::DiscoveryService;
use crate::identity::IdentityService;

/// The TLS handshake must complete within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; the accept loop waits beyond.
pub const MAX_HANDSHAKES: usize = 1024;

/// The service account of mesh-control's own identity.
pub const SERVICE_ACCOUNT: &str = "mesh-control";

/// Who is on the other end of a request: set by the accept loop on every request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The identity of the verified client certificate, if one was presented.
    pub identity: Option<SpiffeId>,
}

/// mesh-control's identity and DNS names.
#[derive(Debug, Clone)]
pub struct ServingIdentity {
    /// `spiffe://<td>/ns/<root-namespace>/sa/mesh-control`.
    pub id: SpiffeId,
    /// `mesh-control`, `mesh-control.<ns>`, `mesh-control.<ns>.svc`,
    /// `mesh-control.<ns>.svc.<cluster-domain>`, `localhost`.
    pub dns: Vec<String>,
}

/// mesh-control's serving identity in `root_namespace`.
pub fn serving_identity(
    trust_domain: &str,
    root_namespace: &str,
    cluster_domain: &str,
) -> Result<ServingIdentity, mesh_api::spiffe::Error> {
    Ok(ServingIdentity {
        id: SpiffeId::new(trust_domain, root_namespace, SERVICE_ACCOUNT)?,
        dns: vec![
            SERVICE_ACCOUNT.to_owned(),
            format!("{SERVICE_ACCOUNT}.{root_namespace}"),
            format!("{SERVICE_ACCOUNT}.{root_namespace}.svc"),
            format!("{SERVICE_ACCOUNT}.{root_namespace}.svc.{cluster_domain}"),
            "localhost".to_owned(),
        ],
    })
}

/// Issues mesh-control's certificate into `certs`; returns when to renew it.
pub fn renew_serving_cert(
    ca: &Ca,
    who: &ServingIdentity,
    certs: &CertStore,
) -> anyhow::Result<SystemTime> {
    let issued = ca.issue(&who.id, &who.dns, ca.settings().workload_cert_ttl)?;
    let key = mesh_api::tls::certified_key(issued.issued.chain.clone(), issued.key)?;
    certs.store(key);
    tracing::debug!(identity = %who.id, "serving certificate issued");
    Ok(issued.issued.refresh_at)
}

/// Keeps mesh-control's certificate fresh until `stop` resolves: renews it at half its
/// life, and when the CA's signing material changes.
pub async fn keep_serving_cert(
    ca: Ca,
    who: ServingIdentity,
    certs: Arc<CertStore>,
    mut refresh_at: SystemTime,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut signer = ca.signer_changes();
    tokio::pin!(stop);
    loop {
        let wait = refresh_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
            changed = signer.changed() => if changed.is_err() { return },
        }
        match renew_serving_cert(&ca, &who, &certs) {
            Ok(next) => refresh_at = next,
            Err(e) => {
                tracing::error!(
                    "cannot renew mesh-control's serving certificate: {e:#}; retrying in 10s"
                );
                refresh_at = SystemTime::now() + Duration::from_secs(10);
            }
        }
    }
}

/// The TLS config of port 15012: presents `certs`, verifies optional client certificates
/// against `trust`.
pub fn tls_config(
    certs: Arc<CertStore>,
    trust: Arc<TrustStore>,
    trust_domain: &str,
) -> Arc<rustls::ServerConfig> {
    let verifier = Arc::new(ClientVerifier::new(trust, trust_domain, false));
    Arc::new(mesh_api::tls::server_config(certs, verifier, &[ALPN_H2]))
}

/// Serves discovery and identity over TLS on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    discovery: DiscoveryService,
    identity: IdentityService,
    stop: impl std::future::Future<Output = ()>,
) {
    let discovery = discovery.server();
    let identity = identity.server();
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        // Notice proxies that vanished without closing (a killed pod, a cut network).
        .keep_alive_interval(Some(Duration::from_secs(15)))
        .keep_alive_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(16);
    tokio::pin!(stop);
    loop {
        let next = async {
            let permit = handshakes.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        let (permit, (socket, addr)) = tokio::select! {
            () = &mut stop => return,
            (permit, accepted) = next => match (permit, accepted) {
                (Err(_), _) => return,
                (Ok(p), Ok(a)) => (p, a),
                (Ok(_), Err(e)) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let discovery = discovery.clone();
        let identity = identity.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                    return;
                }
            };
            drop(permit);
            let peer = Peer {
                addr,
                identity: mesh_api::tls::peer_identity(tls.get_ref().1.peer_certificates()),
            };
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    let identity_call = req.uri().path().starts_with("/mesh.identity.v1.Identity/");
                    let mut discovery = discovery.clone();
                    let mut identity = identity.clone();
                    async move {
                        use tonic::codegen::Service as _;
                        if identity_call {
                            identity.call(req).await
                        } else {
                            discovery.call(req).await
                        }
                    }
                });
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(peer = %addr, error = %e, "gRPC connection ended");
            }
        });
    }
}
