//! Test certificates: one CA per test process and workload certificates in the
//! file-mounted layout `mesh-proxy run --identity-dir` reads (what `mesh-control ca issue`
//! writes for real deployments).

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::OnceLock;

use mesh_api::spiffe::SpiffeId;
use mesh_api::tls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
}

impl TestCa {
    /// A new self-signed root.
    pub fn new(name: &str) -> Self {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name
            .push(DnType::OrganizationName, "cluster.local");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generate a CA key");
        let cert = p.self_signed(&key).expect("self-sign the test root");
        Self {
            root_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Writes a certificate for `id` (and its key and this CA's root) into `dir`.
    pub fn issue_into(&self, id: &SpiffeId, dir: &Path) {
        std::fs::create_dir_all(dir).expect("create the identity dir");
        let (cert, key) = self.issue(id);
        std::fs::write(dir.join(tls::FILE_CERT_CHAIN), cert.pem()).unwrap();
        std::fs::write(dir.join(tls::FILE_KEY), key.serialize_pem()).unwrap();
        std::fs::write(dir.join(tls::FILE_ROOT_CERT), &self.root_pem).unwrap();
    }

    /// A TLS server config presenting a certificate for `id`, requiring clients of this
    /// CA (what mesh-control's port 15012 does for discovery).
    pub fn server_config(&self, id: &SpiffeId) -> std::sync::Arc<rustls::ServerConfig> {
        let (cert, key) = self.issue(id);
        let certs = tls::CertStore::new();
        certs.store(
            tls::certified_key(
                vec![cert.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap(),
        );
        let bundle =
            tls::TrustBundle::new(tls::certs_from_pem(self.root_pem.as_bytes()).unwrap()).unwrap();
        let verifier = tls::ClientVerifier::new(
            std::sync::Arc::new(tls::TrustStore::new(bundle)),
            id.trust_domain(),
            true,
        );
        std::sync::Arc::new(tls::server_config(
            std::sync::Arc::new(certs),
            std::sync::Arc::new(verifier),
            &[tls::ALPN_H2],
        ))
    }

    fn issue(&self, id: &SpiffeId) -> (rcgen::Certificate, KeyPair) {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(
            id.as_str().try_into().expect("a SPIFFE id is IA5"),
        )];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("generate a workload key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert, key)
    }
}

/// The CA every proxy of this test process trusts.
pub fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("mesh test root"))
}
