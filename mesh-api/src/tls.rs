//! Mutual TLS with SPIFFE identities: the certificate checks shared by mesh-proxy (port 15008,
//! and as a client of the control plane) and mesh-control (port 15012).
//!
//! - [`spiffe_id`] reads a certificate's identity: exactly one URI SAN, parsed by the strict
//!   [`SpiffeId`] parser, so `spiffe://td/ns/a/sa/b\0.evil` or a second URI never pass.
//! - [`TrustStore`] holds the current [`TrustBundle`] (the CA roots; several during a root
//!   rotation) and swaps it without locks, so every connection made after a bundle update
//!   uses the new roots while live connections stay up.
//! - [`ServerVerifier`] (a client checking a server) and [`ClientVerifier`] (a server checking
//!   clients) verify the chain to the bundle with webpki and then the SPIFFE identity: the
//!   client compares it with the identity the control plane announced for the endpoint
//!   ([`Expected`]); DNS names are never consulted.
//! - [`CertStore`] holds the proxy's own certificate and key and serves it to rustls as both
//!   server and client certificate, so a renewal takes effect on the next handshake.
//! - [`server_config`] and [`client_config`] build TLS 1.3-only rustls configs on the
//!   aws-lc-rs provider.
//!
//! The file layout [`FILE_CERT_CHAIN`], [`FILE_KEY`], [`FILE_ROOT_CERT`] is Istio's for
//! file-mounted certificates, written by `mesh-control ca issue` and read by
//! `mesh-proxy run --identity-dir`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::spiffe::SpiffeId;
use crate::status::CertInfo;

pub use rustls;

/// The certificate chain file (leaf first, then intermediates), PEM.
pub const FILE_CERT_CHAIN: &str = "cert-chain.pem";
/// The private key file (PKCS#8), PEM.
pub const FILE_KEY: &str = "key.pem";
/// The trust bundle file (root certificates), PEM.
pub const FILE_ROOT_CERT: &str = "root-cert.pem";

/// ALPN for HTTP/2 between proxies and to the control plane.
pub const ALPN_H2: &[u8] = b"h2";

/// Why a certificate, key or bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The DER does not parse as an X.509 certificate.
    #[error("not a valid X.509 certificate: {0}")]
    Parse(String),
    /// The certificate has no URI SAN.
    #[error("certificate has no URI SAN: a mesh certificate carries exactly one spiffe:// URI")]
    NoUriSan,
    /// The certificate has several URI SANs.
    #[error(
        "certificate has {0} URI SANs: a mesh certificate carries exactly one, so its identity is unambiguous"
    )]
    ManyUriSans(usize),
    /// The URI SAN is not a mesh SPIFFE id.
    #[error("certificate URI SAN {uri:?} is not a mesh identity: {reason}")]
    NotSpiffe {
        /// The URI as found (escaped for display).
        uri: String,
        /// Why it was refused.
        reason: crate::spiffe::Error,
    },
    /// A SAN entry could not be decoded.
    #[error("certificate has an undecodable subject alternative name")]
    BadSan,
    /// A PEM file held no certificate.
    #[error("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// A PEM file held no private key.
    #[error("no PEM private key found (expected -----BEGIN PRIVATE KEY-----)")]
    NoKey,
    /// PEM could not be decoded.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A root could not be used as a trust anchor.
    #[error("certificate cannot be a trust anchor: {0}")]
    Anchor(String),
    /// The private key does not fit the certificate, or cannot be used.
    #[error("private key unusable with the certificate: {0}")]
    Key(String),
}

/// The aws-lc-rs provider with TLS 1.3 cipher suites only.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut p = rustls::crypto::aws_lc_rs::default_provider();
            p.cipher_suites
                .retain(|s| s.version() == &rustls::version::TLS13);
            Arc::new(p)
        })
        .clone()
}

/// Installs aws-lc-rs as rustls' process-wide default provider, for rustls users that do
/// not take one (kube's client to the API server, which may need TLS 1.2). Mesh
/// connections always use [`provider`] (TLS 1.3 only). Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

// === identities in certificates ===

/// The SPIFFE identity of `cert`: its only URI SAN, which must be a canonical mesh id.
///
/// DNS and IP SANs are allowed beside it (mesh-control's serving certificate has its
/// Service name) and ignored.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Result<SpiffeId, CertError> {
    let (_, x509) =
        X509Certificate::from_der(cert.as_ref()).map_err(|e| CertError::Parse(e.to_string()))?;
    spiffe_id_of(&x509)
}

fn spiffe_id_of(x509: &X509Certificate<'_>) -> Result<SpiffeId, CertError> {
    let mut uris = Vec::new();
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::URI(u) => uris.push(*u),
                        GeneralName::Invalid(..) => return Err(CertError::BadSan),
                        _ => {}
                    }
                }
            }
            ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
                if ext.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME =>
            {
                return Err(CertError::BadSan);
            }
            _ => {}
        }
    }
    match uris.as_slice() {
        [] => Err(CertError::NoUriSan),
        [uri] => uri
            .parse::<SpiffeId>()
            .map_err(|reason| CertError::NotSpiffe {
                uri: uri.escape_debug().to_string(),
                reason,
            }),
        many => Err(CertError::ManyUriSans(many.len())),
    }
}

/// Reads the fields of `cert` shown to operators.
pub fn cert_info(cert: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    let (_, x509) =
        X509Certificate::from_der(cert.as_ref()).map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(CertInfo {
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        serial: x509.raw_serial_as_string(),
        not_before: x509.validity().not_before.timestamp(),
        not_after: x509.validity().not_after.timestamp(),
        spiffe_id: spiffe_id_of(&x509).ok().map(|id| id.as_str().to_owned()),
        is_ca: x509.is_ca(),
    })
}

// === PEM ===

/// Certificates from PEM text (every `CERTIFICATE` block, in order).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(certs)
}

/// A private key from PEM text.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::NoKey,
        e => CertError::Pem(e.to_string()),
    })
}

/// PEM text of `certs`.
pub fn certs_to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    let mut out = String::new();
    for c in certs {
        pem_block(&mut out, "CERTIFICATE", c.as_ref());
    }
    out
}

/// Appends one PEM block with `label` to `out`.
pub fn pem_block(out: &mut String, label: &str, der: &[u8]) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "-----BEGIN {label}-----");
    let b64 = base64(der);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
}

/// Standard base64 with padding (RFC 4648 §4): PEM bodies, and Kubernetes `[]byte`
/// fields such as an AdmissionResponse's patch.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A workload's credentials read from a directory in the file-mounted layout.
#[derive(Debug)]
pub struct FileIdentity {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The roots to verify peers with.
    pub bundle: TrustBundle,
}

impl FileIdentity {
    /// Reads [`FILE_CERT_CHAIN`], [`FILE_KEY`] and [`FILE_ROOT_CERT`] from `dir`.
    pub fn read(dir: &Path) -> Result<Self, FileIdentityError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| FileIdentityError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        };
        let bad = |name: &str, e: CertError| FileIdentityError::Invalid {
            path: dir.join(name).display().to_string(),
            reason: e,
        };
        let chain = certs_from_pem(&read(FILE_CERT_CHAIN)?).map_err(|e| bad(FILE_CERT_CHAIN, e))?;
        let key = key_from_pem(&read(FILE_KEY)?).map_err(|e| bad(FILE_KEY, e))?;
        let roots = certs_from_pem(&read(FILE_ROOT_CERT)?).map_err(|e| bad(FILE_ROOT_CERT, e))?;
        let bundle = TrustBundle::new(roots).map_err(|e| bad(FILE_ROOT_CERT, e))?;
        Ok(Self { chain, key, bundle })
    }
}

/// Why a file-mounted identity could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileIdentityError {
    /// A file could not be read.
    #[error(
        "cannot read {path}: {reason} (create the files with `mesh-control ca issue --out-dir DIR`)"
    )]
    Read {
        /// The file.
        path: String,
        /// The cause.
        reason: String,
    },
    /// A file's contents are unusable.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The cause.
        reason: CertError,
    },
}

// === trust bundle ===

/// Root certificates that workload certificates must chain to.
#[derive(Clone)]
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
}

impl TrustBundle {
    /// A bundle of `roots` (DER). Each must be usable as a trust anchor.
    pub fn new(roots: Vec<CertificateDer<'static>>) -> Result<Self, CertError> {
        let anchors = roots
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| CertError::Anchor(format!("{e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            certs: roots,
            anchors,
        })
    }

    /// A bundle with no roots: nothing verifies against it.
    pub fn empty() -> Self {
        Self {
            certs: Vec::new(),
            anchors: Vec::new(),
        }
    }

    /// The roots, DER.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// Whether the bundle has no roots.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The roots as PEM text.
    pub fn to_pem(&self) -> String {
        certs_to_pem(&self.certs)
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.certs.len())
            .finish()
    }
}

impl PartialEq for TrustBundle {
    fn eq(&self, other: &Self) -> bool {
        self.certs == other.certs
    }
}

/// The current trust bundle, swapped atomically; shared by every verifier of a process.
#[derive(Debug)]
pub struct TrustStore(ArcSwap<TrustBundle>);

impl TrustStore {
    /// A store holding `bundle`.
    pub fn new(bundle: TrustBundle) -> Self {
        Self(ArcSwap::from_pointee(bundle))
    }

    /// The current bundle.
    pub fn load(&self) -> Arc<TrustBundle> {
        self.0.load_full()
    }

    /// Replaces the bundle; handshakes from now on use it.
    pub fn store(&self, bundle: TrustBundle) {
        self.0.store(Arc::new(bundle));
    }
}

// === verification ===

/// Which identities a server may present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this one (a peer proxy: the endpoint's workload identity).
    Exactly(SpiffeId),
    /// Any identity in this trust domain.
    TrustDomain(Arc<str>),
}

impl Expected {
    fn check(&self, got: &SpiffeId) -> Result<(), rustls::Error> {
        let ok = match self {
            Expected::Exactly(want) => want == got,
            Expected::TrustDomain(td) => got.trust_domain() == &**td,
        };
        if ok {
            Ok(())
        } else {
            Err(other_cert_error(IdentityMismatch {
                expected: self.clone(),
                got: got.clone(),
            }))
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Exactly(id) => write!(f, "{id}"),
            Expected::TrustDomain(td) => write!(f, "an identity in trust domain {td:?}"),
        }
    }
}

/// The peer's certificate names another identity than expected.
#[derive(Debug, thiserror::Error)]
#[error("peer presented identity {got}, expected {expected}")]
pub struct IdentityMismatch {
    /// What was expected.
    pub expected: Expected,
    /// What the certificate says.
    pub got: SpiffeId,
}

/// Wraps `e` for rustls, which prints wrapped errors with `Debug`: the wrapper's `Debug` is
/// the error's message, so logs read "invalid peer certificate: <why>".
fn other_cert_error(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Shown(e),
    ))))
}

#[derive(thiserror::Error)]
#[error(transparent)]
struct Shown<E: std::error::Error + 'static>(E);

impl<E: std::error::Error> fmt::Debug for Shown<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn webpki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let ce = match e {
        E::BadDer | E::BadDerTime => CertificateError::BadEncoding,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::CertRevoked => CertificateError::Revoked,
        other => {
            return other_cert_error(ChainError(format!("{other:?}")));
        }
    };
    rustls::Error::InvalidCertificate(ce)
}

/// A chain-validation failure without a rustls equivalent.
#[derive(Debug, thiserror::Error)]
#[error("certificate chain rejected: {0}")]
struct ChainError(String);

fn verify_chain(
    store: &TrustStore,
    algs: &WebPkiSupportedAlgorithms,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    server: bool,
) -> Result<SpiffeId, rustls::Error> {
    let bundle = store.load();
    if bundle.anchors.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
    }
    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(webpki_error)?;
    let usage = if server {
        webpki::KeyUsage::server_auth()
    } else {
        webpki::KeyUsage::client_auth()
    };
    cert.verify_for_usage(
        algs.all,
        &bundle.anchors,
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map_err(webpki_error)?;
    spiffe_id(end_entity).map_err(other_cert_error)
}

/// The signature checks both verifiers share (they hold `algs`): TLS 1.3 signatures with
/// the provider's algorithms; TLS 1.2 is refused (mesh connections are TLS 1.3 only).
macro_rules! tls13_only_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls13RequiredForQuic,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

/// Checks a server's certificate: chain to the [`TrustStore`], then its SPIFFE identity
/// against [`Expected`]. The TLS server name is not consulted.
#[derive(Debug)]
pub struct ServerVerifier {
    store: Arc<TrustStore>,
    expected: Expected,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    /// A verifier accepting servers that chain to `store` and present `expected`.
    pub fn new(store: Arc<TrustStore>, expected: Expected) -> Self {
        Self {
            store,
            expected,
            algs: provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = verify_chain(
            &self.store,
            &self.algs,
            end_entity,
            intermediates,
            now,
            true,
        )?;
        self.expected.check(&id)?;
        Ok(ServerCertVerified::assertion())
    }

    tls13_only_signatures!();
}

/// Checks clients' certificates: chain to the [`TrustStore`] and a SPIFFE identity in the
/// trust domain. Who the client is becomes known after the handshake ([`peer_identity`]).
#[derive(Debug)]
pub struct ClientVerifier {
    store: Arc<TrustStore>,
    trust_domain: Arc<str>,
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    /// A verifier for clients of `trust_domain`; when `mandatory` is false, clients without
    /// a certificate are let through (the application layer then authenticates them).
    pub fn new(store: Arc<TrustStore>, trust_domain: &str, mandatory: bool) -> Self {
        Self {
            store,
            trust_domain: trust_domain.into(),
            mandatory,
            algs: provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = verify_chain(
            &self.store,
            &self.algs,
            end_entity,
            intermediates,
            now,
            false,
        )?;
        Expected::TrustDomain(self.trust_domain.clone()).check(&id)?;
        Ok(ClientCertVerified::assertion())
    }

    tls13_only_signatures!();
}

/// The verified identity of a connection's peer, from its leaf certificate (after a
/// handshake whose verifier accepted it). `None` when the peer sent no certificate.
pub fn peer_identity(peer_certs: Option<&[CertificateDer<'static>]>) -> Option<SpiffeId> {
    spiffe_id(peer_certs?.first()?).ok()
}

// === own certificate ===

/// The process's current certificate and key, served to rustls for both directions.
/// Empty until the first certificate: handshakes then fail (closed).
#[derive(Debug, Default)]
pub struct CertStore(ArcSwapOption<CertifiedKey>);

impl CertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the certificate; the next handshake presents it.
    pub fn store(&self, key: CertifiedKey) {
        self.0.store(Some(Arc::new(key)));
    }

    /// The current certificate.
    pub fn load(&self) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.load()
    }
}

impl rustls::client::ResolvesClientCert for CertStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.load()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A certificate chain and key as rustls uses them; checks that they belong together.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, CertError> {
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| CertError::Key(e.to_string()))
}

// === configs ===

/// A TLS 1.3 server config presenting `certs` and checking clients with `verifier`.
pub fn server_config(
    certs: Arc<CertStore>,
    verifier: Arc<ClientVerifier>,
    alpn: &[&[u8]],
) -> ServerConfig {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the aws-lc-rs provider supports TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No session resumption: a resumed session would carry the certificate of the
    // original handshake (possibly none, or one since renewed), not the client's current
    // one. Mesh connections are long-lived and pooled, so full handshakes are rare.
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg
}

/// A TLS 1.3 client config checking the server with `verifier` and, when `certs` is set,
/// presenting it as the client certificate.
pub fn client_config(
    certs: Option<Arc<CertStore>>,
    verifier: Arc<ServerVerifier>,
    alpn: &[&[u8]],
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the aws-lc-rs provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match certs {
        Some(c) => builder.with_client_cert_resolver(c),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every handshake is a full one that presents the current certificate (see
    // `server_config`).
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg
}

/// The TLS server name sent in client hellos between mesh peers. Verification ignores it
/// (identities are SPIFFE ids, not DNS names); it only has to be a valid name.
pub fn server_name(id: &SpiffeId) -> ServerName<'static> {
    // `<sa>.<ns>.<td>` is readable in packet captures and always a valid DNS name for the
    // names Kubernetes allows; fall back to a fixed name otherwise.
    let name = format!(
        "{}.{}.{}",
        id.service_account(),
        id.namespace(),
        id.trust_domain()
    );
    ServerName::try_from(name)
        .unwrap_or_else(|_| ServerName::try_from("mesh.local").expect("valid"))
}

#[cfg(test)]
mod tests;
