//! Tests of the SPIFFE checks with certificates made by rcgen and handshakes in memory.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConnection, ServerConnection};

use super::*;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        cert: cert.der().clone(),
        issuer: Issuer::new(p, key),
    }
}

fn leaf_with(
    ca: &Ca,
    sans: Vec<SanType>,
    edit: impl FnOnce(&mut CertificateParams),
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    edit(&mut p);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn leaf(ca: &Ca, id: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    leaf_with(ca, vec![uri(id)], |_| {})
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

const A: &str = "spiffe://cluster.local/ns/default/sa/a";
const B: &str = "spiffe://cluster.local/ns/default/sa/b";

fn store(ca: &Ca) -> Arc<TrustStore> {
    Arc::new(TrustStore::new(
        TrustBundle::new(vec![ca.cert.clone()]).unwrap(),
    ))
}

fn cert_store(
    (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Arc<CertStore> {
    let s = CertStore::new();
    s.store(certified_key(chain, key).unwrap());
    Arc::new(s)
}

/// Configs for a client presenting `client` that expects the server to be [`B`], and a
/// server presenting `server`, both trusting `trust`.
fn expecting_b(
    trust: &Arc<TrustStore>,
    client: Option<Arc<CertStore>>,
    server: Arc<CertStore>,
    mandatory: bool,
) -> (ClientConfig, ServerConfig) {
    (
        client_config(
            client,
            Arc::new(ServerVerifier::new(trust.clone(), Expected::Exactly(id(B)))),
            &[ALPN_H2],
        ),
        server_config(
            server,
            Arc::new(ClientVerifier::new(
                trust.clone(),
                "cluster.local",
                mandatory,
            )),
            &[ALPN_H2],
        ),
    )
}

/// Runs a handshake in memory; returns the server's view of the client identity or the
/// first error (client side first).
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
) -> Result<Option<SpiffeId>, rustls::Error> {
    let mut c = ClientConnection::new(Arc::new(client), ServerName::try_from("x.y").unwrap())?;
    let mut s = ServerConnection::new(Arc::new(server))?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        // The server's complaint, if any, is the error to report.
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(peer_identity(s.peer_certificates()));
        }
    }
    panic!("handshake did not finish");
}

fn configs(
    ca: &Ca,
    client_id: Option<&str>,
    server_id: &str,
    expected: Expected,
    mandatory: bool,
) -> (ClientConfig, ServerConfig) {
    let trust = store(ca);
    let client = client_config(
        client_id.map(|c| cert_store(leaf(ca, c))),
        Arc::new(ServerVerifier::new(trust.clone(), expected)),
        &[ALPN_H2],
    );
    let server = server_config(
        cert_store(leaf(ca, server_id)),
        Arc::new(ClientVerifier::new(trust, "cluster.local", mandatory)),
        &[ALPN_H2],
    );
    (client, server)
}

#[test]
fn mutual_tls_learns_the_client_identity() {
    let ca = ca("root");
    let (c, s) = configs(&ca, Some(A), B, Expected::Exactly(id(B)), true);
    assert_eq!(handshake(c, s).unwrap(), Some(id(A)));
}

#[test]
fn client_refuses_a_server_with_another_identity() {
    let ca = ca("root");
    let (c, s) = configs(&ca, Some(A), A, Expected::Exactly(id(B)), true);
    let err = handshake(c, s).unwrap_err().to_string();
    assert!(
        err.contains("peer presented identity spiffe://cluster.local/ns/default/sa/a, expected spiffe://cluster.local/ns/default/sa/b"),
        "{err}"
    );
}

#[test]
fn server_requires_a_client_certificate_when_mandatory() {
    let ca = ca("root");
    let (c, s) = configs(&ca, None, B, Expected::Exactly(id(B)), true);
    assert!(handshake(c, s).is_err());
    let (c, s) = configs(&ca, None, B, Expected::Exactly(id(B)), false);
    assert_eq!(handshake(c, s).unwrap(), None);
}

#[test]
fn certificates_of_another_ca_are_refused_both_ways() {
    let ours = ca("ours");
    let theirs = ca("theirs");
    let trust = store(&ours);
    // A client with a certificate from another CA.
    let (client, server) = expecting_b(
        &trust,
        Some(cert_store(leaf(&theirs, A))),
        cert_store(leaf(&ours, B)),
        true,
    );
    let err = handshake(client, server).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
    // A server with a certificate from another CA.
    let (client, server) = expecting_b(
        &trust,
        Some(cert_store(leaf(&ours, A))),
        cert_store(leaf(&theirs, B)),
        true,
    );
    assert!(handshake(client, server).is_err());
}

#[test]
fn a_new_root_in_the_store_is_used_by_the_next_handshake() {
    let old = ca("old");
    let new = ca("new");
    let trust = store(&old);
    let mk = |trust: &Arc<TrustStore>| {
        (
            client_config(
                Some(cert_store(leaf(&old, A))),
                Arc::new(ServerVerifier::new(trust.clone(), Expected::Exactly(id(B)))),
                &[],
            ),
            server_config(
                cert_store(leaf(&new, B)),
                Arc::new(ClientVerifier::new(trust.clone(), "cluster.local", true)),
                &[],
            ),
        )
    };
    let (c, s) = mk(&trust);
    assert!(handshake(c, s).is_err(), "new root not trusted yet");
    trust.store(TrustBundle::new(vec![old.cert.clone(), new.cert.clone()]).unwrap());
    let (c, s) = mk(&trust);
    assert_eq!(handshake(c, s).unwrap(), Some(id(A)));
}

#[test]
fn other_trust_domains_are_refused() {
    let ca = ca("root");
    let (c, s) = configs(
        &ca,
        Some("spiffe://evil.local/ns/default/sa/a"),
        B,
        Expected::Exactly(id(B)),
        true,
    );
    let err = handshake(c, s).unwrap_err().to_string();
    assert!(err.contains("trust domain"), "{err}");
}

#[test]
fn expired_certificates_are_refused() {
    let ca = ca("root");
    let trust = store(&ca);
    let expired = leaf_with(&ca, vec![uri(A)], |p| {
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
        p.not_after = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    });
    let (client, server) = expecting_b(
        &trust,
        Some(cert_store(expired)),
        cert_store(leaf(&ca, B)),
        true,
    );
    let err = handshake(client, server).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Expired)
        ),
        "{err:?}"
    );
}

#[test]
fn a_ca_certificate_is_not_a_workload_certificate() {
    let ca = ca("root");
    let trust = store(&ca);
    let ca_as_leaf = leaf_with(&ca, vec![uri(A)], |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    });
    let (client, server) = expecting_b(
        &trust,
        Some(cert_store(ca_as_leaf)),
        cert_store(leaf(&ca, B)),
        true,
    );
    assert!(handshake(client, server).is_err());
}

#[test]
fn identity_comes_from_exactly_one_canonical_uri_san() {
    let ca = ca("root");
    let one = |sans: Vec<SanType>| {
        let (chain, _) = leaf_with(&ca, sans, |_| {});
        spiffe_id(&chain[0])
    };
    assert_eq!(one(vec![uri(A)]).unwrap(), id(A));
    // DNS names beside the URI are ignored.
    assert_eq!(
        one(vec![
            SanType::DnsName("mesh-control".try_into().unwrap()),
            uri(A)
        ])
        .unwrap(),
        id(A)
    );
    assert_eq!(
        one(vec![SanType::DnsName("a.default".try_into().unwrap())]),
        Err(CertError::NoUriSan)
    );
    assert_eq!(one(vec![uri(A), uri(B)]), Err(CertError::ManyUriSans(2)));
    for bad in [
        "spiffe://cluster.local/ns/default/sa/a\0.evil",
        "spiffe://cluster.local/ns/default/sa/a/../b",
        "spiffe://CLUSTER.local/ns/default/sa/a",
        "spiffe://cluster.local/ns/default/sa/a?x",
        "spiffe://cluster.local/ns/default/sa/%61",
        "https://cluster.local/ns/default/sa/a",
        "spiffe://cluster.local/ns/default/sa/*",
    ] {
        let err = one(vec![uri(bad)]).unwrap_err();
        assert!(matches!(err, CertError::NotSpiffe { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn pem_round_trip_and_cert_info() {
    let ca = ca("root");
    let (chain, key) = leaf(&ca, A);
    let pem = certs_to_pem(&chain);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(certs_from_pem(pem.as_bytes()).unwrap(), chain);
    assert_eq!(
        certs_from_pem(b"nothing here"),
        Err(CertError::NoCertificate)
    );
    let mut key_pem = String::new();
    pem_block(&mut key_pem, "PRIVATE KEY", key.secret_der());
    assert_eq!(
        key_from_pem(key_pem.as_bytes()).unwrap().secret_der(),
        key.secret_der()
    );
    assert_eq!(key_from_pem(b"").unwrap_err(), CertError::NoKey);
    let info = cert_info(&chain[0]).unwrap();
    assert_eq!(info.spiffe_id.as_deref(), Some(A));
    assert!(!info.is_ca);
    assert!(info.not_after > info.not_before);
    assert!(cert_info(&ca.cert).unwrap().is_ca);
    // A key that does not belong to the certificate.
    let (_, other_key) = leaf(&ca, B);
    assert!(matches!(
        certified_key(chain, other_key),
        Err(CertError::Key(_))
    ));
}

#[test]
fn base64_matches_known_vectors() {
    for (input, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), want);
    }
}

#[test]
fn file_identity_names_the_missing_file() {
    let dir = std::env::temp_dir().join(format!("mesh-api-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = FileIdentity::read(&dir).unwrap_err().to_string();
    assert!(err.contains("cert-chain.pem"), "{err}");
    assert!(err.contains("mesh-control ca issue"), "{err}");
    let ca = ca("root");
    let (chain, key) = leaf(&ca, A);
    std::fs::write(dir.join(FILE_CERT_CHAIN), certs_to_pem(&chain)).unwrap();
    let mut key_pem = String::new();
    pem_block(&mut key_pem, "PRIVATE KEY", key.secret_der());
    std::fs::write(dir.join(FILE_KEY), key_pem).unwrap();
    std::fs::write(dir.join(FILE_ROOT_CERT), "garbage").unwrap();
    let err = FileIdentity::read(&dir).unwrap_err().to_string();
    assert!(
        err.contains("root-cert.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
    std::fs::write(dir.join(FILE_ROOT_CERT), certs_to_pem([&ca.cert])).unwrap();
    let f = FileIdentity::read(&dir).unwrap();
    assert_eq!(f.chain, chain);
    assert_eq!(f.bundle.certs(), std::slice::from_ref(&ca.cert));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_renewed_client_certificate_is_presented_on_the_next_connection() {
    // One client config for every connection, as the proxy has: the first handshake
    // without a certificate must not let later ones resume that anonymous session.
    let ca = ca("root");
    let trust = store(&ca);
    let certs = Arc::new(CertStore::new());
    let (client, server) =
        expecting_b(&trust, Some(certs.clone()), cert_store(leaf(&ca, B)), false);
    assert_eq!(handshake(client.clone(), server.clone()).unwrap(), None);
    let (chain, key) = leaf(&ca, A);
    certs.store(certified_key(chain, key).unwrap());
    assert_eq!(handshake(client, server).unwrap(), Some(id(A)));
}
