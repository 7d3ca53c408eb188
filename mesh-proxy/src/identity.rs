//! The proxy's workload identity: its certificate and key, the trust bundle, and the TLS
//! configs built on them.
//!
//! One [`Identity`] per process holds:
//!
//! - the SPIFFE id the proxy must present (`spiffe://<td>/ns/<ns>/sa/<sa>`), from its config
//!   or its node flags;
//! - the current certificate and key ([`CertStore`]) and the trust bundle ([`TrustStore`]),
//!   both swapped without locks: a renewal or a root rotation takes effect on the next
//!   handshake, and live connections stay up;
//! - the server config of the mesh inbound port (15008): TLS 1.3, a client certificate
//!   required and checked against the bundle;
//! - client configs per peer ([`Identity::client_for`]): the peer must present exactly the
//!   identity the control plane announced for that endpoint.
//!
//! Certificates come from one of two sources:
//!
//! - **the control plane's CA** ([`ca`]; with `--control-plane`): the key is generated in
//!   memory and never leaves the process; a CSR is signed over `mesh.identity.v1.Certify`,
//!   authenticated by the workload token (`--token-file`: a projected ServiceAccount token in
//!   Kubernetes, the per-workload token mesh-control writes in local mode) or, on renewal,
//!   by the current certificate. Renewal at half the lifetime, with backoff when the CA is
//!   unreachable; the current certificate keeps serving meanwhile. The bundle follows the
//!   CA's `WatchTrustBundle` stream. Until the first certificate the proxy is not ready and
//!   every mTLS handshake fails: it never falls back to plaintext.
//! - **files** (`--identity-dir`, Istio's file-mounted layout `cert-chain.pem`, `key.pem`,
//!   `root-cert.pem`, as `mesh-control ca issue` writes them), re-read when they change.
//!
//! Either way a certificate whose identity is not the proxy's own is refused.

pub mod ca;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mesh_api::spiffe::SpiffeId;
use mesh_api::status::CertInfo;
use mesh_api::tls::{
    self, CertStore, ClientVerifier, Expected, FileIdentity, ServerVerifier, TrustBundle,
    TrustStore,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use crate::telemetry::metrics::Metrics;

/// How the proxy gets its certificate (`mesh-proxy run`). Part of [`crate::app::Args`].
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[group(id = "identity")]
pub struct Args {
    /// Read the workload certificate from this directory (`cert-chain.pem`, `key.pem`,
    /// `root-cert.pem`; make them with `mesh-control ca issue`) instead of asking the
    /// control plane's CA. Re-read when the files change.
    #[arg(long, env = "MESH_IDENTITY_DIR", value_name = "DIR")]
    pub identity_dir: Option<PathBuf>,
    /// The token proving this workload's identity to the CA: in Kubernetes a projected
    /// ServiceAccount token with audience `mesh-control`; in local mode the file
    /// `mesh-control token <ns>/<sa>` prints.
    #[arg(long, env = "MESH_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The trust bundle (PEM roots) to verify the control plane with before the first
    /// certificate arrives: `<state-dir>/trust-bundle.pem` in local mode, the mounted
    /// `mesh-root-cert` ConfigMap in Kubernetes.
    #[arg(long, env = "MESH_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// The control plane's SPIFFE identity
    /// (default `spiffe://<trust-domain>/ns/mesh-system/sa/mesh-control`).
    #[arg(long, env = "MESH_CONTROL_PLANE_IDENTITY", value_name = "SPIFFE_ID")]
    pub control_plane_identity: Option<SpiffeId>,
    /// The certificate lifetime to ask the CA for (the CA may issue a shorter one).
    #[arg(long, env = "MESH_CERT_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    pub cert_lifetime: Option<Duration>,
}

impl Args {
    /// The identity mesh-control must present: `--control-plane-identity`, or by default
    /// `spiffe://<the proxy's trust domain>/ns/mesh-system/sa/mesh-control`.
    pub fn control_plane(&self, proxy: &SpiffeId) -> Result<SpiffeId, mesh_api::spiffe::Error> {
        match &self.control_plane_identity {
            Some(id) => Ok(id.clone()),
            None => SpiffeId::new(proxy.trust_domain(), "mesh-system", "mesh-control"),
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_api::duration::parse(s).map_err(|e| e.to_string())
}

/// Why an identity could not be set up or a certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The identity files are unreadable or invalid.
    #[error(transparent)]
    Files(#[from] tls::FileIdentityError),
    /// A certificate or key is unusable.
    #[error("{what}: {source}")]
    Cert {
        /// Which certificate.
        what: String,
        /// Why.
        source: tls::CertError,
    },
    /// The certificate names another identity than the proxy's.
    #[error(
        "{what} is for {got}, but this proxy is {want}: issue a certificate for {want} \
         (`mesh-control ca issue --identity {want}`)"
    )]
    WrongIdentity {
        /// Which certificate.
        what: String,
        /// The identity in the certificate.
        got: SpiffeId,
        /// The proxy's identity.
        want: SpiffeId,
    },
}

/// What the admin server shows about the identity.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The proxy's identity.
    pub identity: String,
    /// Where certificates come from: `control-plane <addr>` or `files <dir>`.
    pub source: String,
    /// The current chain, leaf first; empty before the first certificate.
    pub chain: Vec<CertInfo>,
    /// The trust bundle's roots.
    pub trust_bundle: Vec<CertInfo>,
    /// When the next renewal is due, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_at: Option<String>,
    /// The last renewal failure, if the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The proxy's identity, certificate, bundle and TLS configs. Shared by every connection.
#[derive(Debug)]
pub struct Identity {
    id: SpiffeId,
    certs: Arc<CertStore>,
    trust: Arc<TrustStore>,
    server: Arc<rustls::ServerConfig>,
    not_after: std::sync::atomic::AtomicI64,
    status: ArcSwap<Status>,
    /// Becomes true with the first certificate.
    loaded: tokio::sync::watch::Sender<bool>,
    metrics: Metrics,
}

impl Identity {
    /// An identity for `id` without a certificate yet, trusting `bundle`; `source` says
    /// where certificates will come from.
    pub fn new(id: SpiffeId, bundle: TrustBundle, source: String, metrics: Metrics) -> Arc<Self> {
        let certs = Arc::new(CertStore::new());
        let trust = Arc::new(TrustStore::new(bundle));
        let verifier = Arc::new(ClientVerifier::new(trust.clone(), id.trust_domain(), true));
        let server = Arc::new(tls::server_config(certs.clone(), verifier, &[tls::ALPN_H2]));
        let this = Arc::new(Self {
            status: ArcSwap::from_pointee(Status {
                identity: id.as_str().to_owned(),
                source,
                ..Status::default()
            }),
            id,
            certs,
            trust,
            server,
            not_after: std::sync::atomic::AtomicI64::new(0),
            loaded: tokio::sync::watch::Sender::new(false),
            metrics,
        });
        this.update_bundle_status();
        this
    }

    /// Reads the identity from the file-mounted layout in `dir`.
    pub fn from_dir(id: SpiffeId, dir: &Path, metrics: Metrics) -> Result<Arc<Self>, Error> {
        let files = FileIdentity::read(dir)?;
        let this = Self::new(
            id,
            files.bundle.clone(),
            format!("files {}", dir.display()),
            metrics,
        );
        this.set_certificate(files.chain, files.key, "the certificate in --identity-dir")?;
        Ok(this)
    }

    /// The proxy's SPIFFE id.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Whether a certificate is loaded.
    pub fn has_certificate(&self) -> bool {
        self.certs.load().is_some()
    }

    /// Resolves once a certificate is loaded.
    pub async fn wait_for_certificate(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|loaded| *loaded).await;
    }

    /// When the current certificate expires (Unix seconds; 0 without one).
    pub fn not_after(&self) -> i64 {
        self.not_after.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The server config of the mesh inbound port.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }

    /// A client config for connections to a peer that must present `peer`, presenting
    /// this proxy's certificate.
    pub fn client_for(&self, peer: Expected) -> Arc<rustls::ClientConfig> {
        let verifier = Arc::new(ServerVerifier::new(self.trust.clone(), peer));
        Arc::new(tls::client_config(
            Some(self.certs.clone()),
            verifier,
            &[tls::ALPN_H2],
        ))
    }

    /// The current trust bundle.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.trust.load()
    }

    /// What the admin server shows.
    pub fn status(&self) -> Arc<Status> {
        self.status.load_full()
    }

    /// Installs a new certificate after checking that it is the proxy's own and matches
    /// the key. `what` names it in errors.
    pub fn set_certificate(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        what: &str,
    ) -> Result<(), Error> {
        let cert_err = |source| Error::Cert {
            what: what.to_owned(),
            source,
        };
        let leaf = chain
            .first()
            .ok_or(cert_err(tls::CertError::NoCertificate))?;
        let got = tls::spiffe_id(leaf).map_err(cert_err)?;
        if got != self.id {
            return Err(Error::WrongIdentity {
                what: what.to_owned(),
                got,
                want: self.id.clone(),
            });
        }
        let infos = chain
            .iter()
            .map(tls::cert_info)
            .collect::<Result<Vec<_>, _>>()
            .map_err(cert_err)?;
        let key = tls::certified_key(chain, key).map_err(cert_err)?;
        self.certs.store(key);
        self.loaded.send_replace(true);
        self.not_after
            .store(infos[0].not_after, std::sync::atomic::Ordering::Relaxed);
        self.metrics.certificate_renewed(true, infos[0].not_after);
        self.edit_status(|s| {
            s.chain = infos;
            s.last_error = None;
        });
        Ok(())
    }

    /// Replaces the trust bundle; the next handshakes use it.
    pub fn set_bundle(&self, bundle: TrustBundle) {
        if *self.trust.load() == bundle {
            return;
        }
        self.trust.store(bundle);
        self.update_bundle_status();
    }

    fn update_bundle_status(&self) {
        let roots = self
            .trust
            .load()
            .certs()
            .iter()
            .filter_map(|c| tls::cert_info(c).ok())
            .collect();
        self.edit_status(|s| s.trust_bundle = roots);
    }

    /// Records renewal progress for the admin server.
    pub(crate) fn set_renewal(&self, refresh_at: Option<SystemTime>, error: Option<String>) {
        if error.is_some() {
            self.metrics.certificate_renewed(false, 0);
        }
        self.edit_status(|s| {
            if let Some(at) = refresh_at {
                s.refresh_at = Some(crate::telemetry::Rfc3339(at).to_string());
            }
            s.last_error = error;
        });
    }

    fn edit_status(&self, edit: impl FnOnce(&mut Status)) {
        let mut s = Status::clone(&self.status.load());
        edit(&mut s);
        self.status.store(Arc::new(s));
    }
}

/// Re-reads the identity files when their modification times change, until `stop`.
pub async fn watch_dir(
    identity: Arc<Identity>,
    dir: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    let stamp = |dir: &Path| {
        [tls::FILE_CERT_CHAIN, tls::FILE_KEY, tls::FILE_ROOT_CERT].map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
    };
    let mut last = stamp(&dir);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = stamp(&dir);
        if now == last {
            continue;
        }
        last = now;
        let reloaded = FileIdentity::read(&dir).map_err(Error::from).and_then(|f| {
            identity.set_bundle(f.bundle);
            identity.set_certificate(f.chain, f.key, "the certificate in --identity-dir")
        });
        match reloaded {
            Ok(()) => tracing::info!(dir = %dir.display(), "identity files reloaded"),
            Err(e) => tracing::warn!(
                error = %e,
                "identity files changed but are unusable; keeping the current certificate"
            ),
        }
    }
}

/// Reads a PEM trust bundle file.
pub fn read_bundle(path: &Path) -> anyhow::Result<TrustBundle> {
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the trust bundle {}: {e} (local mode: <state-dir>/trust-bundle.pem \
             of mesh-control; Kubernetes: the mesh-root-cert ConfigMap)",
            path.display()
        )
    })?;
    let certs = tls::certs_from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("trust bundle {}: {e}", path.display()))?;
    TrustBundle::new(certs).map_err(|e| anyhow::anyhow!("trust bundle {}: {e}", path.display()))
}
