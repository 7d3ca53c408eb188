//! The certificate authority: signs workload certificates for authenticated identities and
//! keeps the trust bundle, through root rotations.
//!
//! - Material (`material`): a self-signed root (ECDSA P-256, 10 years, `O=<trust
//!   domain>`, `CN=mesh root CA`) generated on first start, or a plug-in intermediate in
//!   Istio's `cacerts` layout, checked at start (key matches, is a CA, chains to the root).
//! - Storage ([`store`]): a directory in local mode (`--ca-dir`, default
//!   `<state-dir>/ca`), Secrets in Kubernetes ([`kube`]). Both hold the same file names
//!   ([`names`]).
//! - Signing ([`Ca::sign_csr`]): the CSR gives only its P-256 public key; the certificate
//!   carries exactly the authenticated identity as URI SAN, `serverAuth`+`clientAuth`,
//!   `digitalSignature`, `CA:FALSE`, a random serial, `not_before` five minutes back (clock
//!   skew), and lives `--workload-cert-ttl` (24 h) or the shorter lifetime asked for (at
//!   least 10 s), never past the CA's own expiry.
//! - Trust bundle ([`Bundle`]): every root currently trusted. It is published through a
//!   `watch` channel (the identity service streams it to proxies, the local-mode writer
//!   keeps `<state-dir>/trust-bundle.pem`, the Kubernetes publisher keeps ConfigMap
//!   `mesh-root-cert` in every namespace) and kept in a [`TrustStore`] that mesh-control's
//!   own TLS server verifies clients with.
//! - Rotation (`rotation`): [`Ca::run`] re-reads the storage every second and moves a
//!   rotation along: a new root joins the bundle at once, signs after
//!   `--root-rotation-grace`, and the old root leaves once every certificate it signed has
//!   expired.

pub mod kube;
mod material;
mod rotation;
mod sign;
pub mod store;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use mesh_api::spiffe::SpiffeId;
use mesh_api::status::{CaStatus, CertInfo, RetiringRoot, RotationPhase, RotationStatus};
use mesh_api::tls::{TrustBundle, TrustStore};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;

use self::material::Signer;
pub(crate) use self::material::{hex, sha256};
use self::rotation::{Authority, Memory, Step, unix_ms};
pub use self::store::{Files, LocalStore, Storage};

/// The file names of the CA storage (files in a directory, keys in a Secret).
pub mod names {
    /// The self-signed root (or, in a plug-in CA, the root(s) it chains to).
    pub const ROOT_CERT: &str = "root-cert.pem";
    /// The self-signed root's key.
    pub const ROOT_KEY: &str = "root-key.pem";
    /// A staged next root (`mesh-control ca rotate`).
    pub const NEXT_ROOT_CERT: &str = "next-root-cert.pem";
    /// The staged next root's key.
    pub const NEXT_ROOT_KEY: &str = "next-root-key.pem";
    /// Roots that stopped signing and are still trusted (informational; the state is in
    /// [`ROTATION`]).
    pub const PREVIOUS_ROOT_CERT: &str = "previous-root-cert.pem";
    /// Rotation state (public data only).
    pub const ROTATION: &str = "rotation.json";
    /// Plug-in CA: the intermediate that signs.
    pub const CA_CERT: &str = "ca-cert.pem";
    /// Plug-in CA: its key.
    pub const CA_KEY: &str = "ca-key.pem";
    /// Plug-in CA: `ca-cert.pem` and any intermediates up to the root.
    pub const CERT_CHAIN: &str = "cert-chain.pem";

    /// Every name.
    pub const ALL: [&str; 9] = [
        ROOT_CERT,
        ROOT_KEY,
        NEXT_ROOT_CERT,
        NEXT_ROOT_KEY,
        PREVIOUS_ROOT_CERT,
        ROTATION,
        CA_CERT,
        CA_KEY,
        CERT_CHAIN,
    ];
}

/// The shortest lifetime a caller may ask for.
pub const MIN_LIFETIME: Duration = Duration::from_secs(10);

/// Why the CA could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the CA storage is wrong.
    #[error("{location}: {problem}; {fix}")]
    Invalid {
        /// The file (path, or Secret and key).
        location: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A file operation failed.
    #[error(transparent)]
    Files(#[from] crate::files::Error),
    /// The Kubernetes API refused or failed.
    #[error("{0}")]
    Kube(String),
    /// The storage changed while a change was being made; re-read.
    #[error("the CA storage changed while it was being updated")]
    Conflict,
    /// Key generation or signing failed.
    #[error("{0}")]
    Crypto(String),
}

/// Why a certificate was not issued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignError {
    /// The CSR is unusable (the caller's fault).
    #[error("{0}")]
    Csr(String),
    /// The CA cannot sign now (its fault).
    #[error("{0}")]
    Unavailable(String),
}

impl From<Error> for SignError {
    fn from(e: Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// The CA's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The trust domain of identities (and the `O` of generated roots).
    pub trust_domain: String,
    /// The lifetime of workload certificates (and the longest one issued).
    pub workload_cert_ttl: Duration,
    /// How long a new root is trusted before it signs.
    pub root_rotation_grace: Duration,
}

/// The roots currently trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The roots, DER: the signing root first.
    pub roots: Vec<CertificateDer<'static>>,
    /// Moves on every change.
    pub version: u64,
}

impl Bundle {
    /// The roots as PEM.
    pub fn pem(&self) -> String {
        mesh_api::tls::certs_to_pem(&self.roots)
    }
}

/// A signed certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf first, then the intermediates to send with it.
    pub chain: Vec<CertificateDer<'static>>,
    /// The trust bundle at issuance.
    pub trust_anchors: Vec<CertificateDer<'static>>,
    /// When it was signed.
    pub issued_at: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
    /// When to renew it: half its lifetime.
    pub refresh_at: SystemTime,
}

/// A certificate with its freshly generated key ([`Ca::issue`]).
#[derive(Debug)]
pub struct IssuedKey {
    /// The certificate.
    pub issued: Issued,
    /// Its private key, PKCS#8 DER.
    pub key: PrivateKeyDer<'static>,
    /// Its private key, PEM.
    pub key_pem: String,
}

/// What the CA serves with now.
#[derive(Debug)]
struct Current {
    authority: Authority,
    bundle: Arc<Bundle>,
    problems: Vec<String>,
}

struct Inner {
    settings: Settings,
    storage: Storage,
    /// Serializes decisions; holds what the CA keeps in memory between them.
    memory: tokio::sync::Mutex<Memory>,
    current: RwLock<Arc<Current>>,
    bundle_tx: watch::Sender<Arc<Bundle>>,
    signer_tx: watch::Sender<u64>,
    trust: Arc<TrustStore>,
    logged_problems: Mutex<Vec<String>>,
}

/// The certificate authority. A cheap, shared handle.
#[derive(Clone)]
pub struct Ca {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("settings", &self.inner.settings)
            .field("storage", &self.inner.storage)
            .finish_non_exhaustive()
    }
}

/// Decisions per tick before giving up (each applies one step of a rotation).
const MAX_STEPS: usize = 12;

// === impl Ca ===

impl Ca {
    /// Opens the CA on `storage`: loads its material, or — when there is none and
    /// `create_root` is set — generates a root (on a race with another process, loads
    /// the winner's). Resumes a rotation in progress.
    pub async fn open(
        storage: Storage,
        settings: Settings,
        create_root: bool,
    ) -> Result<Self, Error> {
        let now = SystemTime::now();
        let mut memory = Memory::default();
        let mut attempts = 0;
        let (files, authority, problems) = loop {
            attempts += 1;
            let files = storage.read().await?;
            if files.is_unset() {
                if !create_root || attempts > MAX_STEPS {
                    return Err(Error::Invalid {
                        location: storage.locate(names::ROOT_CERT),
                        problem: "no CA material (neither a root nor a plug-in CA)".into(),
                        fix: "start mesh-control once to create a root, or provide Istio's cacerts files".into(),
                    });
                }
                let (cert, key) = material::generate_root(&settings.trust_domain, now)?;
                match storage.create_root(&cert, &key).await {
                    Ok(()) => {
                        tracing::info!(at = %storage.locate(names::ROOT_CERT), "created a new self-signed root CA");
                    }
                    Err(Error::Conflict) => {
                        tracing::info!("another process created the root first; loading it");
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            match Self::decide_step(&storage, &files, &memory, &settings, now)? {
                Step::Apply {
                    ops,
                    memory: m,
                    reason,
                } => {
                    if attempts > MAX_STEPS {
                        return Err(Error::Crypto(format!(
                            "the CA state does not settle ({reason})"
                        )));
                    }
                    if !ops.is_empty() {
                        match storage.apply(&files, &ops).await {
                            Ok(()) => tracing::info!(?ops, "{reason}"),
                            Err(Error::Conflict) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    memory = m;
                }
                Step::Settled {
                    authority,
                    memory: m,
                    problems,
                } => {
                    memory = m;
                    break (files, authority, problems);
                }
            }
        };
        let plug_in = rotation::is_plug_in(&files);
        let bundle = Arc::new(Bundle {
            roots: authority.bundle(),
            version: 1,
        });
        let trust = Arc::new(TrustStore::new(
            TrustBundle::new(bundle.roots.clone()).map_err(|e| Error::Invalid {
                location: storage.locate(names::ROOT_CERT),
                problem: e.to_string(),
                fix: "provide a valid root certificate".into(),
            })?,
        ));
        tracing::info!(
            source = %storage.describe(plug_in),
            roots = bundle.roots.len(),
            plug_in,
            "certificate authority ready"
        );
        for p in &problems {
            tracing::error!("{p}");
        }
        let ca = Self {
            inner: Arc::new(Inner {
                settings,
                storage,
                memory: tokio::sync::Mutex::new(memory),
                current: RwLock::new(Arc::new(Current {
                    authority,
                    bundle: bundle.clone(),
                    problems: problems.clone(),
                })),
                bundle_tx: watch::channel(bundle).0,
                signer_tx: watch::channel(0).0,
                trust,
                logged_problems: Mutex::new(problems),
            }),
        };
        Ok(ca)
    }

    fn decide_step(
        storage: &Storage,
        files: &Files,
        memory: &Memory,
        settings: &Settings,
        now: SystemTime,
    ) -> Result<Step, Error> {
        let locate = |name: &str| storage.locate(name);
        rotation::decide(files, memory, settings, now, &locate)
    }

    /// Re-reads the storage and moves a rotation along as of `now`. Errors leave the CA
    /// serving with what it has.
    pub async fn tick(&self, now: SystemTime) -> Result<(), Error> {
        let mut memory = self.inner.memory.lock().await;
        let storage = &self.inner.storage;
        for _ in 0..MAX_STEPS {
            let files = storage.read().await?;
            match Self::decide_step(storage, &files, &memory, &self.inner.settings, now)? {
                Step::Apply {
                    ops,
                    memory: m,
                    reason,
                } => {
                    if !ops.is_empty() {
                        match storage.apply(&files, &ops).await {
                            Ok(()) => tracing::info!(?ops, "{reason}"),
                            Err(Error::Conflict) => {
                                tracing::debug!("the CA storage changed meanwhile; re-reading");
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    *memory = m;
                }
                Step::Settled {
                    authority,
                    memory: m,
                    problems,
                } => {
                    *memory = m;
                    self.install(authority, problems);
                    return Ok(());
                }
            }
        }
        Err(Error::Crypto(
            "the CA state does not settle; see the messages above".into(),
        ))
    }

    /// Serves `authority` from now on; publishes the bundle if it changed.
    fn install(&self, authority: Authority, problems: Vec<String>) {
        {
            let mut logged = self
                .inner
                .logged_problems
                .lock()
                .expect("problems poisoned");
            for p in &problems {
                if !logged.contains(p) {
                    tracing::error!("{p}");
                }
            }
            *logged = problems.clone();
        }
        let previous = self.current();
        let roots = authority.bundle();
        let signer_changed = !Arc::ptr_eq(&previous.authority.signer, &authority.signer);
        let bundle = if roots == previous.bundle.roots {
            previous.bundle.clone()
        } else {
            Arc::new(Bundle {
                roots,
                version: previous.bundle.version + 1,
            })
        };
        let bundle_changed = !Arc::ptr_eq(&bundle, &previous.bundle);
        if bundle_changed {
            match TrustBundle::new(bundle.roots.clone()) {
                Ok(b) => self.inner.trust.store(b),
                Err(e) => tracing::error!("the new trust bundle is unusable: {e}"),
            }
        }
        *self.inner.current.write().expect("CA state poisoned") = Arc::new(Current {
            authority,
            bundle: bundle.clone(),
            problems,
        });
        if bundle_changed {
            tracing::info!(
                roots = bundle.roots.len(),
                version = bundle.version,
                "trust bundle changed"
            );
            self.inner.bundle_tx.send_replace(bundle);
        }
        if signer_changed {
            tracing::info!("the CA signs with new material from now on");
            self.inner.signer_tx.send_modify(|g| *g += 1);
        }
    }

    fn current(&self) -> Arc<Current> {
        self.inner
            .current
            .read()
            .expect("CA state poisoned")
            .clone()
    }

    /// Runs [`tick`](Self::tick) every `interval` until `stop` resolves.
    pub async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticker.tick() => {}
            }
            match self.tick(SystemTime::now()).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!("CA: {e}; it keeps signing with what it has and retries");
                }
                Err(e) => tracing::debug!("CA: {e}"),
            }
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The current trust bundle.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.current().bundle.clone()
    }

    /// The trust bundle and its changes.
    pub fn watch_bundle(&self) -> watch::Receiver<Arc<Bundle>> {
        self.inner.bundle_tx.subscribe()
    }

    /// A counter that moves whenever the signing material changes (renew what it signed).
    pub fn signer_changes(&self) -> watch::Receiver<u64> {
        self.inner.signer_tx.subscribe()
    }

    /// The trust store kept equal to the bundle (for TLS verifiers).
    pub fn trust_store(&self) -> Arc<TrustStore> {
        self.inner.trust.clone()
    }

    /// The lifetime a request for `requested` gets: the workload TTL, or the shorter
    /// lifetime asked for (at least [`MIN_LIFETIME`]).
    pub fn lifetime_for(&self, requested: Option<Duration>) -> Duration {
        let ttl = self.inner.settings.workload_cert_ttl;
        requested
            .filter(|r| !r.is_zero())
            .map_or(ttl, |r| r.max(MIN_LIFETIME).min(ttl))
    }

    /// Signs a certificate for `identity` over the CSR's key; the lifetime follows
    /// [`lifetime_for`](Self::lifetime_for).
    pub fn sign_csr(
        &self,
        identity: &SpiffeId,
        csr_der: &[u8],
        requested: Option<Duration>,
    ) -> Result<Issued, SignError> {
        let key = sign::csr_public_key(csr_der)?;
        self.sign_key(
            identity,
            &[],
            &key,
            self.lifetime_for(requested),
            SystemTime::now(),
        )
    }

    /// Generates a P-256 key and signs a certificate for it, with `dns` names beside the
    /// identity, living `lifetime` (capped by the CA's own expiry only).
    pub fn issue(
        &self,
        identity: &SpiffeId,
        dns: &[String],
        lifetime: Duration,
    ) -> Result<IssuedKey, SignError> {
        let key = generate_key()?;
        let issued = self.sign_key(identity, dns, &key, lifetime, SystemTime::now())?;
        Ok(with_key(issued, &key))
    }

    fn sign_key(
        &self,
        identity: &SpiffeId,
        dns: &[String],
        key: &impl PublicKeyData,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Issued, SignError> {
        let current = self.current();
        sign_with(
            &current.authority.signer,
            &current.bundle.roots,
            identity,
            dns,
            key,
            lifetime,
            now,
        )
    }

    /// The CA's status document (`GET /debug/ca`).
    pub fn status(&self) -> CaStatus {
        let current = self.current();
        let a = &current.authority;
        let info = |c: &CertificateDer<'_>| cert_info(c);
        let phase = if a.pending.is_some() {
            RotationPhase::Announced
        } else if !a.retiring.is_empty() {
            RotationPhase::Draining
        } else {
            RotationPhase::Stable
        };
        let plug_in = a.signer.kind == material::Kind::PlugIn;
        CaStatus {
            now_unix_ms: unix_ms(SystemTime::now()),
            trust_domain: self.inner.settings.trust_domain.clone(),
            source: self.inner.storage.describe(plug_in),
            plug_in,
            signing: info(&a.signer.cert),
            intermediates: a.signer.chain.iter().map(info).collect(),
            trust_bundle: current.bundle.roots.iter().map(info).collect(),
            rotation: RotationStatus {
                phase,
                next: a.pending.as_ref().map(|(p, _)| info(&p.cert)),
                switch_at_unix_ms: a.pending.as_ref().map(|(_, t)| unix_ms(*t)),
                retiring: a
                    .retiring
                    .iter()
                    .map(|(r, t)| RetiringRoot {
                        root: info(r),
                        drop_after_unix_ms: unix_ms(*t),
                    })
                    .collect(),
            },
            workload_cert_ttl_seconds: self.inner.settings.workload_cert_ttl.as_secs(),
            problems: current.problems.clone(),
        }
    }

    /// The expiry of the signing certificate (the root, or the plug-in intermediate), for
    /// the metrics.
    pub fn signing_expiry(&self) -> SystemTime {
        self.current().authority.signer.not_after
    }
}

/// Signs a leaf for `key` with `signer`; `bundle` is sent along as trust anchors.
fn sign_with(
    signer: &Signer,
    bundle: &[CertificateDer<'static>],
    identity: &SpiffeId,
    dns: &[String],
    key: &impl PublicKeyData,
    lifetime: Duration,
    now: SystemTime,
) -> Result<Issued, SignError> {
    let not_after = (now + lifetime).min(signer.not_after);
    if not_after <= now + Duration::from_secs(1) {
        return Err(SignError::Unavailable(
            "the CA certificate has expired or is about to; rotate the root (`mesh-control ca rotate`) or replace the plug-in CA".into(),
        ));
    }
    let params = sign::leaf_params(identity, dns, now, not_after)?;
    let leaf = params
        .signed_by(key, signer.issuer())
        .map_err(|e| SignError::Unavailable(format!("signing failed: {e}")))?;
    let mut chain = Vec::with_capacity(1 + signer.chain.len());
    chain.push(leaf.der().clone());
    chain.extend(signer.chain.iter().cloned());
    let lifetime = not_after.duration_since(now).unwrap_or_default();
    Ok(Issued {
        chain,
        trust_anchors: bundle.to_vec(),
        issued_at: now,
        not_after,
        refresh_at: now + lifetime / 2,
    })
}

fn generate_key() -> Result<KeyPair, SignError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| SignError::Unavailable(format!("cannot generate a key: {e}")))
}

fn with_key(issued: Issued, key: &KeyPair) -> IssuedKey {
    IssuedKey {
        issued,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        key_pem: key.serialize_pem(),
    }
}

/// Issues a certificate with a fresh key straight from the CA files of `store`, without a
/// running CA and without moving a rotation along (`mesh-control ca issue`). Creates a
/// root for `identity`'s trust domain when the store holds no CA yet.
pub fn issue_offline(
    store: &LocalStore,
    identity: &SpiffeId,
    dns: &[String],
    lifetime: Duration,
) -> Result<IssuedKey, Error> {
    let now = SystemTime::now();
    let mut files = store.read()?;
    if files.is_unset() {
        let (cert, key) = material::generate_root(identity.trust_domain(), now)?;
        match store.create_root(&cert, &key) {
            Ok(()) => {
                tracing::info!(at = %store.locate(names::ROOT_CERT), "created a new self-signed root CA");
            }
            Err(Error::Conflict) => {}
            Err(e) => return Err(e),
        }
        files = store.read()?;
    }
    let locate = |n: &str| store.locate(n);
    let (signer, bundle) = rotation::offline(&files, now, &locate)?;
    let key = generate_key().map_err(|e| Error::Crypto(e.to_string()))?;
    let issued = sign_with(&signer, &bundle, identity, dns, &key, lifetime, now)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(with_key(issued, &key))
}

/// [`mesh_api::tls::cert_info`], with a placeholder for an unparsable certificate.
pub fn cert_info(cert: &CertificateDer<'_>) -> CertInfo {
    mesh_api::tls::cert_info(cert).unwrap_or_else(|e| CertInfo {
        subject: format!("<unparsable: {e}>"),
        issuer: String::new(),
        serial: String::new(),
        not_before: 0,
        not_after: 0,
        spiffe_id: None,
        is_ca: false,
    })
}

/// Stages a new root for rotation in `storage` (`mesh-control ca rotate`): writes
/// `next-root-cert.pem` and `next-root-key.pem` (files, or keys of Secret `mesh-ca`).
/// Refuses with a plug-in CA, without a root, and while a staged root waits.
pub async fn stage_next_root(
    storage: &Storage,
    trust_domain_fallback: &str,
) -> Result<CertInfo, Error> {
    let files = storage.read().await?;
    let locate = |n: &str| storage.locate(n);
    if rotation::is_plug_in(&files) {
        return Err(Error::Invalid {
            location: storage.locate(names::CA_CERT),
            problem: "this is a plug-in CA".into(),
            fix: "rotate it by replacing the cacerts files (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem); mesh-control adds the new root to the trust bundle before signing with it".into(),
        });
    }
    if files.is_unset() {
        return Err(Error::Invalid {
            location: storage.locate(names::ROOT_CERT),
            problem: "no root to rotate yet".into(),
            fix: "start mesh-control (or run `mesh-control ca issue`) once to create the root"
                .into(),
        });
    }
    if files.has(names::NEXT_ROOT_CERT) || files.has(names::NEXT_ROOT_KEY) {
        return Err(Error::Invalid {
            location: storage.locate(names::NEXT_ROOT_CERT),
            problem: "a rotation is already under way (a next root is staged)".into(),
            fix: "wait until mesh-control has promoted it (see GET /debug/ca), or remove both next-root-*.pem to abandon it".into(),
        });
    }
    let current = material::load_root(
        &files,
        names::ROOT_CERT,
        names::ROOT_KEY,
        &locate,
        SystemTime::now(),
    )?;
    let trust_domain =
        organization(&current.cert).unwrap_or_else(|| trust_domain_fallback.to_owned());
    let (cert, key) = material::generate_root(&trust_domain, SystemTime::now())?;
    storage
        .apply(
            &files,
            &[
                store::Op::Write {
                    name: names::NEXT_ROOT_KEY,
                    data: key.into_bytes(),
                },
                store::Op::Write {
                    name: names::NEXT_ROOT_CERT,
                    data: cert.clone().into_bytes(),
                },
            ],
        )
        .await
        .map_err(|e| match e {
            Error::Conflict => Error::Invalid {
                location: storage.locate(names::NEXT_ROOT_CERT),
                problem: "the CA changed while the next root was being staged".into(),
                fix: "run `mesh-control ca rotate` again".into(),
            },
            e => e,
        })?;
    let der =
        mesh_api::tls::certs_from_pem(cert.as_bytes()).map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(cert_info(&der[0]))
}

/// The first `O` of a certificate's subject.
fn organization(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::FromDer as _;
    let (_, c) = x509_parser::prelude::X509Certificate::from_der(cert.as_ref()).ok()?;
    c.subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .map(str::to_owned)
}
