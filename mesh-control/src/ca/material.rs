//! CA material: generating a self-signed root, loading and checking a root or a plug-in
//! intermediate with its key, and the [`Signer`] the CA signs with.
//!
//! Everything here works on bytes already read (from a directory or a Secret); a
//! [`Locate`] names where each file came from, so every error says which file is wrong
//! and what to do about it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Error, Files, names};

/// How long a generated root is valid.
pub(crate) const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back `not_before` is set, for peers whose clocks lag.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// The common name of generated roots.
pub(crate) const ROOT_CN: &str = "mesh root CA";

/// Names the location of a file of the CA storage in messages
/// (`/var/lib/mesh-control/ca/root-key.pem`, `Secret mesh-system/cacerts key ca-key.pem`).
pub(crate) type Locate<'a> = &'a dyn Fn(&str) -> String;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `n` bytes from the system CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| Error::Crypto("the system RNG failed".into()))?;
    Ok(out)
}

/// A random, positive, 16-byte serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = random_bytes::<16>()?;
    // Positive (top bit clear) and minimal (no leading zero byte) in DER.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// A freshly generated self-signed root: `(cert PEM, key PEM)`.
pub(crate) fn generate_root(
    trust_domain: &str,
    now: SystemTime,
) -> Result<(String, String), Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::Crypto(format!("cannot generate a root key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, ROOT_CN);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    params.not_before = to_offset(now - CLOCK_SKEW);
    params.not_after = to_offset(now + ROOT_LIFETIME);
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Crypto(format!("cannot sign the root: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Which kind of CA material signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Our own root (`root-cert.pem` + `root-key.pem`).
    SelfSigned,
    /// A plug-in intermediate (`ca-cert.pem` + `ca-key.pem`, Istio's `cacerts`).
    PlugIn,
}

/// A CA certificate with its key: what signs workload certificates.
pub(crate) struct Signer {
    pub(crate) kind: Kind,
    issuer: Issuer<'static, KeyPair>,
    /// The issuing certificate.
    pub(crate) cert: CertificateDer<'static>,
    /// Sent after each leaf: the issuer first, up to (not including) a root.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The roots this signer chains to.
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// The earliest expiry in the signing chain: no leaf may outlive it.
    pub(crate) not_after: SystemTime,
    /// A digest of the material (cert, key, chain, roots), to notice changes.
    pub(crate) fingerprint: [u8; 32],
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kind", &self.kind)
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("fingerprint", &hex(&self.fingerprint[..8]))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The rcgen issuer.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

fn invalid(location: String, problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Invalid {
        location,
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn parse_certs(
    pem: &[u8],
    location: &str,
    fix: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = mesh_api::tls::certs_from_pem(pem)
        .map_err(|e| invalid(location.to_owned(), e.to_string(), fix))?;
    for c in &certs {
        X509Certificate::from_der(c.as_ref()).map_err(|e| {
            invalid(
                location.to_owned(),
                format!("not a valid X.509 certificate: {e}"),
                fix,
            )
        })?;
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], location: &str, fix: &str) -> Result<KeyPair, Error> {
    let text =
        std::str::from_utf8(pem).map_err(|_| invalid(location.to_owned(), "not PEM text", fix))?;
    // The error never includes key material.
    KeyPair::from_pem(text).map_err(|e| {
        invalid(
            location.to_owned(),
            format!("not a usable private key (PKCS#8, SEC1 or PKCS#1 PEM): {e}"),
            fix,
        )
    })
}

fn x509<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
    // Every certificate reaching here was parsed once by `parse_certs`.
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c)
        .expect("parsed before")
}

fn not_after(der: &CertificateDer<'_>) -> SystemTime {
    let t = x509(der).validity().not_after.timestamp();
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0))
}

/// Whether `key` is the private key of `cert`.
fn key_matches(cert: &CertificateDer<'_>, key: &KeyPair) -> bool {
    use rcgen::PublicKeyData as _;
    x509(cert).public_key().subject_public_key.data.as_ref() == key.der_bytes()
}

/// Whether `child` was signed by `parent`'s key and names it as issuer.
fn signed_by(child: &CertificateDer<'_>, parent: &CertificateDer<'_>) -> bool {
    let (c, p) = (x509(child), x509(parent));
    c.issuer().as_raw() == p.subject().as_raw() && c.verify_signature(Some(p.public_key())).is_ok()
}

fn check_ca_cert(
    cert: &CertificateDer<'_>,
    location: &str,
    fix: &str,
    now: SystemTime,
) -> Result<(), Error> {
    let c = x509(cert);
    if !c.is_ca() {
        return Err(invalid(
            location.to_owned(),
            "not a CA certificate (basicConstraints CA:TRUE is missing)",
            fix,
        ));
    }
    if let Ok(Some(ku)) = c.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(invalid(
            location.to_owned(),
            "its key usage does not allow signing certificates (keyCertSign)",
            fix,
        ));
    }
    let expiry = not_after(cert);
    if expiry <= now {
        return Err(invalid(
            location.to_owned(),
            format!("expired at {}", c.validity().not_after),
            fix,
        ));
    }
    Ok(())
}

/// Signs a throwaway leaf and checks it names and verifies against the issuer: rcgen
/// re-encodes the issuer's subject, and a subject it cannot reproduce byte for byte
/// (multi-valued or repeated attributes) would break every chain.
fn self_test(
    issuer: &Issuer<'static, KeyPair>,
    cert: &CertificateDer<'_>,
    location: &str,
) -> Result<(), Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::Crypto(format!("cannot generate a test key: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let leaf = params.signed_by(&key, issuer).map_err(|e| {
        invalid(
            location.to_owned(),
            format!("cannot sign with this CA: {e}"),
            "use a CA certificate with a plain subject (one attribute per RDN) and an ECDSA or RSA key",
        )
    })?;
    if !signed_by(leaf.der(), cert) {
        return Err(invalid(
            location.to_owned(),
            "certificates signed with it do not verify against it (its subject has repeated or multi-valued attributes that cannot be reproduced)",
            "reissue the CA certificate with a plain subject, e.g. O=<org>, CN=<name>",
        ));
    }
    Ok(())
}

/// Loads a self-signed root pair (`root-cert.pem` + `root-key.pem`, or the `next-` pair).
pub(crate) fn load_root(
    files: &Files,
    cert_name: &str,
    key_name: &str,
    locate: Locate<'_>,
    now: SystemTime,
) -> Result<Arc<Signer>, Error> {
    let fix = format!(
        "restore {cert_name} and {key_name} from a backup; or, to start over with a new root (every workload certificate must then be reissued), remove both files and restart mesh-control"
    );
    let cert_pem = files
        .get(cert_name)
        .ok_or_else(|| invalid(locate(cert_name), "missing", &fix))?;
    let key_pem = files
        .get(key_name)
        .ok_or_else(|| invalid(locate(key_name), "missing", &fix))?;
    let certs = parse_certs(cert_pem, &locate(cert_name), &fix)?;
    let [cert] = <[_; 1]>::try_from(certs).map_err(|certs| {
        invalid(
            locate(cert_name),
            format!("holds {} certificates, expected one root", certs.len()),
            &fix,
        )
    })?;
    let key = parse_key(key_pem, &locate(key_name), &fix)?;
    if !key_matches(&cert, &key) {
        return Err(invalid(
            locate(key_name),
            format!("is not the private key of {}", locate(cert_name)),
            &fix,
        ));
    }
    check_ca_cert(&cert, &locate(cert_name), &fix, now)?;
    if !signed_by(&cert, &cert) {
        return Err(invalid(locate(cert_name), "not a self-signed root", &fix));
    }
    let issuer = Issuer::from_ca_cert_der(&cert, key)
        .map_err(|e| invalid(locate(cert_name), format!("unusable as issuer: {e}"), &fix))?;
    self_test(&issuer, &cert, &locate(cert_name))?;
    let mut fp = Vec::with_capacity(cert_pem.len() + key_pem.len());
    fp.extend_from_slice(cert_pem);
    fp.extend_from_slice(key_pem);
    Ok(Arc::new(Signer {
        kind: Kind::SelfSigned,
        issuer,
        not_after: not_after(&cert),
        cert: cert.clone(),
        chain: Vec::new(),
        roots: vec![cert],
        fingerprint: sha256(&fp),
    }))
}

/// A digest of the plug-in files, to notice when they change.
pub(crate) fn plug_in_fingerprint(files: &Files) -> [u8; 32] {
    let mut all = Vec::new();
    for name in [
        names::CA_CERT,
        names::CA_KEY,
        names::CERT_CHAIN,
        names::ROOT_CERT,
    ] {
        all.extend_from_slice(name.as_bytes());
        all.push(0);
        if let Some(data) = files.get(name) {
            all.extend_from_slice(data);
        }
        all.push(0);
    }
    sha256(&all)
}

/// Loads and checks a plug-in CA (Istio's `cacerts`): `ca-cert.pem` with `ca-key.pem`,
/// `cert-chain.pem` (the intermediates from `ca-cert.pem` up to, optionally including,
/// the root; `ca-cert.pem` alone when absent) and `root-cert.pem` (the roots).
pub(crate) fn load_plug_in(
    files: &Files,
    locate: Locate<'_>,
    now: SystemTime,
) -> Result<Arc<Signer>, Error> {
    let fix = "provide the plug-in CA files as Istio's `cacerts` layout: ca-cert.pem (the intermediate CA certificate), ca-key.pem (its key), root-cert.pem (the root), cert-chain.pem (ca-cert.pem followed by any further intermediates)";
    let get = |name: &str| {
        files
            .get(name)
            .ok_or_else(|| invalid(locate(name), "missing (a plug-in CA needs it)", fix))
    };
    let ca_certs = parse_certs(get(names::CA_CERT)?, &locate(names::CA_CERT), fix)?;
    let cert = ca_certs[0].clone();
    let key = parse_key(get(names::CA_KEY)?, &locate(names::CA_KEY), fix)?;
    if !key_matches(&cert, &key) {
        return Err(invalid(
            locate(names::CA_KEY),
            format!("is not the private key of {}", locate(names::CA_CERT)),
            "put the key of ca-cert.pem in ca-key.pem (both from the same issuance)",
        ));
    }
    check_ca_cert(&cert, &locate(names::CA_CERT), fix, now)?;
    let roots = parse_certs(get(names::ROOT_CERT)?, &locate(names::ROOT_CERT), fix)?;
    for root in &roots {
        check_ca_cert(root, &locate(names::ROOT_CERT), fix, now)?;
    }
    let listed = match files.get(names::CERT_CHAIN) {
        Some(pem) => parse_certs(pem, &locate(names::CERT_CHAIN), fix)?,
        None => vec![cert.clone()],
    };
    // What is sent after leaves: the chain without roots, starting at ca-cert.pem.
    let mut chain: Vec<CertificateDer<'static>> =
        listed.into_iter().filter(|c| !roots.contains(c)).collect();
    if chain.first() != Some(&cert) {
        chain.retain(|c| c != &cert);
        chain.insert(0, cert.clone());
    }
    // Walk from ca-cert.pem to a root: each link signed by the next.
    let mut current = cert.clone();
    let mut expiry = not_after(&cert);
    let mut reached_root = false;
    for _ in 0..8 {
        if roots.iter().any(|r| signed_by(&current, r)) {
            reached_root = true;
            break;
        }
        let Some(parent) = chain
            .iter()
            .find(|c| *c != &current && signed_by(&current, c))
        else {
            break;
        };
        check_ca_cert(parent, &locate(names::CERT_CHAIN), fix, now)?;
        expiry = expiry.min(not_after(parent));
        current = parent.clone();
    }
    if !reached_root {
        return Err(invalid(
            locate(names::CA_CERT),
            format!(
                "does not chain to {} (through {})",
                locate(names::ROOT_CERT),
                locate(names::CERT_CHAIN)
            ),
            "root-cert.pem must hold the root that issued ca-cert.pem, and cert-chain.pem every intermediate between them",
        ));
    }
    if let Some(root) = roots.iter().find(|r| signed_by(&current, r)) {
        expiry = expiry.min(not_after(root));
    }
    let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| {
        invalid(
            locate(names::CA_CERT),
            format!("unusable as issuer: {e}"),
            fix,
        )
    })?;
    self_test(&issuer, &cert, &locate(names::CA_CERT))?;
    Ok(Arc::new(Signer {
        kind: Kind::PlugIn,
        issuer,
        cert,
        chain,
        roots,
        not_after: expiry,
        fingerprint: plug_in_fingerprint(files),
    }))
}
