//! The CA against a temporary directory: root creation and loading, plug-in validation,
//! signing, and rotation driven by [`Ca::tick`] at chosen times (no sleeps).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_api::spiffe::SpiffeId;
use mesh_api::status::RotationPhase;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SanType,
};
use rustls::server::danger::ClientCertVerifier as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::*;

const TD: &str = "cluster.local";

fn settings(ttl: Duration, grace: Duration) -> Settings {
    Settings {
        trust_domain: TD.into(),
        workload_cert_ttl: ttl,
        root_rotation_grace: grace,
    }
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa).unwrap()
}

async fn open(dir: &Path, s: Settings) -> Result<Ca, Error> {
    Ca::open(Storage::Local(LocalStore::open(dir).unwrap()), s, true).await
}

fn csr(alg: &'static rcgen::SignatureAlgorithm, sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "please make me admin");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 99999, 1],
        vec![0x05, 0x00],
    )];
    params.serialize_request(&key).unwrap().der().to_vec()
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
    X509Certificate::from_der(der.as_ref()).unwrap().1
}

fn signed_by(leaf: &CertificateDer<'_>, issuer: &CertificateDer<'_>) -> bool {
    parse(leaf)
        .verify_signature(Some(parse(issuer).public_key()))
        .is_ok()
}

/// Verifies `chain` (leaf first) against `roots` as mesh-control's TLS server would.
fn verifies(chain: &[CertificateDer<'static>], roots: &[CertificateDer<'static>]) -> bool {
    let store = Arc::new(mesh_api::tls::TrustStore::new(
        mesh_api::tls::TrustBundle::new(roots.to_vec()).unwrap(),
    ));
    mesh_api::tls::ClientVerifier::new(store, TD, true)
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .is_ok()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// === roots ===

#[tokio::test]
async fn a_root_is_created_once_then_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state/ca");
    let ca = open(
        &dir,
        settings(Duration::from_secs(3600), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let dir = dir.as_path();
    let cert = dir.join("root-cert.pem");
    let key = dir.join("root-key.pem");
    assert_eq!(mode(&cert), 0o644);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(dir), 0o700);
    let root = ca.bundle().roots[0].clone();
    let x = parse(&root);
    assert!(x.is_ca());
    assert_eq!(x.subject().to_string(), "O=cluster.local, CN=mesh root CA");
    let bc = x.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let years = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert_eq!(years, 10);

    let again = open(
        dir,
        settings(Duration::from_secs(3600), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert_eq!(
        again.bundle().roots,
        vec![root],
        "the existing root is loaded"
    );
    let status = again.status();
    assert!(!status.plug_in);
    assert_eq!(status.rotation.phase, RotationPhase::Stable);
    assert!(status.source.starts_with("local:"), "{}", status.source);
}

#[tokio::test]
async fn a_broken_root_is_an_error_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(Duration::from_secs(3600), Duration::from_secs(2));
    open(dir.path(), s.clone()).await.unwrap();
    // Another key: mismatched.
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(dir.path().join("root-key.pem"), other.serialize_pem()).unwrap();
    let err = open(dir.path(), s.clone()).await.unwrap_err().to_string();
    assert!(err.contains("root-key.pem"), "{err}");
    assert!(err.contains("is not the private key of"), "{err}");
    assert!(err.contains("remove both files"), "the fix: {err}");
    // The key is missing: not regenerated.
    std::fs::remove_file(dir.path().join("root-key.pem")).unwrap();
    let err = open(dir.path(), s.clone()).await.unwrap_err().to_string();
    assert!(err.contains("root-key.pem: missing"), "{err}");
    assert!(!dir.path().join("root-key.pem").exists());
    // Garbage.
    std::fs::write(dir.path().join("root-key.pem"), "not a key").unwrap();
    let err = open(dir.path(), s).await.unwrap_err().to_string();
    assert!(
        err.contains("root-key.pem") && err.contains("private key"),
        "{err}"
    );
}

// === signing ===

#[tokio::test]
async fn a_csr_contributes_only_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = open(
        dir.path(),
        settings(Duration::from_secs(24 * 3600), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let csr = csr(
        &PKCS_ECDSA_P256_SHA256,
        vec![
            SanType::DnsName("evil.example".try_into().unwrap()),
            SanType::URI(
                "spiffe://cluster.local/ns/kube-system/sa/admin"
                    .try_into()
                    .unwrap(),
            ),
            SanType::Rfc822Name("root@example.com".try_into().unwrap()),
        ],
    );
    let before = SystemTime::now();
    let issued = ca
        .sign_csr(
            &id("default", "reviews"),
            &csr,
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(
        issued.chain.len(),
        1,
        "a self-signed root sends no intermediates"
    );
    assert_eq!(issued.trust_anchors, ca.bundle().roots);
    let leaf = parse(&issued.chain[0]);
    let mut names = Vec::new();
    for ext in leaf.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            names.extend(san.general_names.iter().map(|n| match n {
                GeneralName::URI(u) => format!("URI:{u}"),
                other => format!("{other:?}"),
            }));
        }
    }
    assert_eq!(names, ["URI:spiffe://cluster.local/ns/default/sa/reviews"]);
    assert!(leaf.subject().to_string().is_empty(), "{}", leaf.subject());
    assert!(!leaf.is_ca());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert!(
        leaf.extensions()
            .iter()
            .all(|e| e.oid.to_id_string() != "1.3.6.1.4.1.99999.1"),
        "requested extensions are dropped"
    );
    assert_eq!(leaf.raw_serial().len(), 16);
    assert!(leaf.raw_serial()[0] & 0x80 == 0, "positive serial");
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    let t = |s: SystemTime| s.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        nb <= t(before) - 299 && nb >= t(before) - 301,
        "5 minutes of skew"
    );
    assert!((na - t(before) - 3600).abs() <= 2, "the lifetime asked for");
    let refresh = t(issued.refresh_at);
    assert!(
        (refresh - t(before) - 1800).abs() <= 2,
        "refresh at half life"
    );
    assert!(verifies(&issued.chain, &issued.trust_anchors));
}

#[tokio::test]
async fn lifetimes_are_capped_and_floored() {
    let dir = tempfile::tempdir().unwrap();
    let ca = open(
        dir.path(),
        settings(Duration::from_secs(24 * 3600), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert_eq!(ca.lifetime_for(None), Duration::from_secs(24 * 3600));
    assert_eq!(
        ca.lifetime_for(Some(Duration::ZERO)),
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        ca.lifetime_for(Some(Duration::from_secs(7 * 24 * 3600))),
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(ca.lifetime_for(Some(Duration::from_secs(1))), MIN_LIFETIME);
    assert_eq!(
        ca.lifetime_for(Some(Duration::from_secs(600))),
        Duration::from_secs(600)
    );
}

#[tokio::test]
async fn unusable_csrs_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = open(
        dir.path(),
        settings(Duration::from_secs(3600), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let who = id("default", "reviews");
    let err = |der: &[u8]| match ca.sign_csr(&who, der, None) {
        Err(SignError::Csr(m)) => m,
        other => panic!("not a CSR error: {other:?}"),
    };
    assert!(err(&[]).contains("empty"));
    assert!(err(b"garbage").contains("PKCS#10"));
    let p384 = csr(&PKCS_ECDSA_P384_SHA384, vec![]);
    assert!(err(&p384).contains("ECDSA P-256"), "{}", err(&p384));
    let mut tampered = csr(&PKCS_ECDSA_P256_SHA256, vec![]);
    // Flip a byte of the signature at the end.
    let last = tampered.len() - 3;
    tampered[last] ^= 0x01;
    assert!(err(&tampered).contains("signature"), "{}", err(&tampered));
}

// === plug-in CA ===

struct PlugIn {
    root: CertificateDer<'static>,
    root_pem: String,
    ca_pem: String,
    ca_key_pem: String,
}

struct Root {
    key: KeyPair,
    params: CertificateParams,
    der: CertificateDer<'static>,
    pem: String,
}

fn root(name: &str) -> Root {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} root"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Root {
        key,
        params,
        der: cert.der().clone(),
        pem: cert.pem(),
    }
}

fn intermediate(root: &Root, name: &str) -> PlugIn {
    let issuer = Issuer::from_params(&root.params, &root.key);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ip = CertificateParams::default();
    ip.distinguished_name = DistinguishedName::new();
    ip.distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    ip.distinguished_name
        .push(DnType::CommonName, format!("{name} mesh intermediate"));
    ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ip.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ip.use_authority_key_identifier_extension = true;
    let ca = ip.signed_by(&ca_key, &issuer).unwrap();
    PlugIn {
        root: root.der.clone(),
        root_pem: root.pem.clone(),
        ca_pem: ca.pem(),
        ca_key_pem: ca_key.serialize_pem(),
    }
}

fn plug_in(name: &str) -> PlugIn {
    intermediate(&root(name), name)
}

fn write_plug_in(dir: &Path, p: &PlugIn) {
    std::fs::write(dir.join("ca-cert.pem"), &p.ca_pem).unwrap();
    std::fs::write(dir.join("ca-key.pem"), &p.ca_key_pem).unwrap();
    std::fs::write(dir.join("root-cert.pem"), &p.root_pem).unwrap();
    std::fs::write(
        dir.join("cert-chain.pem"),
        format!("{}{}", p.ca_pem, p.root_pem),
    )
    .unwrap();
}

#[tokio::test]
async fn a_plug_in_ca_signs_with_its_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let p = plug_in("a");
    write_plug_in(dir.path(), &p);
    let ca = open(
        dir.path(),
        settings(Duration::from_secs(3600), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert!(
        !dir.path().join("root-key.pem").exists(),
        "no root of ours is made"
    );
    assert_eq!(ca.bundle().roots, vec![p.root.clone()]);
    let issued = ca
        .sign_csr(
            &id("default", "a"),
            &csr(&PKCS_ECDSA_P256_SHA256, vec![]),
            None,
        )
        .unwrap();
    assert_eq!(
        issued.chain.len(),
        2,
        "leaf and intermediate; the root is not sent"
    );
    assert!(verifies(&issued.chain, &issued.trust_anchors));
    let status = ca.status();
    assert!(status.plug_in);
    assert_eq!(status.intermediates.len(), 1);
    assert!(status.signing.subject.contains("a mesh intermediate"));
}

#[tokio::test]
async fn plug_in_mistakes_are_explained() {
    let s = settings(Duration::from_secs(3600), Duration::from_secs(2));
    let (a, b) = (plug_in("a"), plug_in("b"));

    let dir = tempfile::tempdir().unwrap();
    write_plug_in(dir.path(), &a);
    std::fs::write(dir.path().join("ca-key.pem"), &b.ca_key_pem).unwrap();
    let err = open(dir.path(), s.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("ca-key.pem") && err.contains("is not the private key of"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    write_plug_in(dir.path(), &a);
    std::fs::write(dir.path().join("root-cert.pem"), &b.root_pem).unwrap();
    std::fs::write(dir.path().join("cert-chain.pem"), &a.ca_pem).unwrap();
    let err = open(dir.path(), s.clone()).await.unwrap_err().to_string();
    assert!(err.contains("does not chain to"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    write_plug_in(dir.path(), &a);
    // A leaf is not a CA.
    let leaf_ca = open(tempfile::tempdir().unwrap().path(), s.clone())
        .await
        .unwrap();
    let leaf = leaf_ca
        .issue(&id("default", "x"), &[], Duration::from_secs(60))
        .unwrap();
    std::fs::write(
        dir.path().join("ca-cert.pem"),
        mesh_api::tls::certs_to_pem(&leaf.issued.chain),
    )
    .unwrap();
    std::fs::write(dir.path().join("ca-key.pem"), &leaf.key_pem).unwrap();
    let err = open(dir.path(), s.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("ca-cert.pem") && err.contains("not a CA certificate"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    write_plug_in(dir.path(), &a);
    std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let err = open(dir.path(), s).await.unwrap_err().to_string();
    assert!(err.contains("ca-key.pem: missing"), "{err}");
}

// === rotation ===

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn issuer_of(ca: &Ca) -> CertificateDer<'static> {
    let issued = ca
        .sign_csr(
            &id("default", "r"),
            &csr(&PKCS_ECDSA_P256_SHA256, vec![]),
            None,
        )
        .unwrap();
    let roots = ca.bundle().roots.clone();
    roots
        .into_iter()
        .find(|r| signed_by(&issued.chain[issued.chain.len() - 1], r))
        .expect("signed by a root of the bundle")
}

#[tokio::test]
async fn a_staged_root_is_trusted_first_then_signs_then_the_old_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (ttl, grace) = (secs(600), secs(30));
    let ca = open(dir.path(), settings(ttl, grace)).await.unwrap();
    let old = ca.bundle().roots[0].clone();
    let mut bundles = ca.watch_bundle();
    let t0 = SystemTime::now();

    let next = stage_next_root(&Storage::Local(LocalStore::open(dir.path()).unwrap()), TD)
        .await
        .unwrap();
    assert!(next.is_ca);
    // Staging twice is refused.
    let err = stage_next_root(&Storage::Local(LocalStore::open(dir.path()).unwrap()), TD)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already under way"), "{err}");

    // (a) announced: both roots trusted at once, the old one still signs.
    ca.tick(t0 + secs(1)).await.unwrap();
    assert!(bundles.has_changed().unwrap());
    let bundle = bundles.borrow_and_update().clone();
    assert_eq!(bundle.roots.len(), 2);
    assert_eq!(bundle.roots[0], old);
    let new = bundle.roots[1].clone();
    assert_eq!(issuer_of(&ca), old);
    let status = ca.status();
    assert_eq!(status.rotation.phase, RotationPhase::Announced);
    assert!(status.rotation.switch_at_unix_ms.is_some());
    assert!(dir.path().join("rotation.json").exists());

    // A restart while announced keeps the announcement (and its time).
    let restarted = open(dir.path(), settings(ttl, grace)).await.unwrap();
    assert_eq!(restarted.bundle().roots.len(), 2);
    assert_eq!(
        restarted.status().rotation.switch_at_unix_ms,
        status.rotation.switch_at_unix_ms
    );
    drop(restarted);

    // Still within the grace period: nothing moves.
    ca.tick(t0 + secs(20)).await.unwrap();
    assert_eq!(issuer_of(&ca), old);

    // (b) after the grace period: the new root signs; files promoted; both trusted.
    ca.tick(t0 + secs(32)).await.unwrap();
    assert_eq!(issuer_of(&ca), new);
    assert_eq!(ca.bundle().roots.len(), 2);
    assert_eq!(ca.status().rotation.phase, RotationPhase::Draining);
    let files = |n: &str| std::fs::read(dir.path().join(n)).ok();
    assert!(files("next-root-cert.pem").is_none() && files("next-root-key.pem").is_none());
    assert_eq!(
        mesh_api::tls::certs_from_pem(&files("root-cert.pem").unwrap()).unwrap(),
        vec![new.clone()]
    );
    assert_eq!(
        mesh_api::tls::certs_from_pem(&files("previous-root-cert.pem").unwrap()).unwrap(),
        vec![old.clone()]
    );
    assert_eq!(mode(&dir.path().join("root-key.pem")), 0o600);
    // Only one key remains: the old one is gone.
    let keys = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("key.pem")
        })
        .count();
    assert_eq!(keys, 1);

    // A restart while draining keeps the old root trusted.
    let restarted = open(dir.path(), settings(ttl, grace)).await.unwrap();
    assert_eq!(restarted.bundle().roots.len(), 2);
    assert_eq!(issuer_of(&restarted), new);
    drop(restarted);

    // (c) once every certificate the old root signed has expired, it leaves.
    ca.tick(t0 + secs(32) + ttl - secs(5)).await.unwrap();
    assert_eq!(ca.bundle().roots.len(), 2);
    ca.tick(t0 + secs(33) + ttl + secs(1)).await.unwrap();
    assert_eq!(ca.bundle().roots, vec![new.clone()]);
    assert_eq!(ca.status().rotation.phase, RotationPhase::Stable);
    assert!(files("previous-root-cert.pem").is_none());
    assert!(files("rotation.json").is_none());
    assert_eq!(
        ca.trust_store().load().certs(),
        &[new][..],
        "the TLS trust store follows the bundle"
    );
}

#[tokio::test]
async fn an_interrupted_promotion_is_finished_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (ttl, grace) = (secs(600), secs(1));
    let ca = open(dir.path(), settings(ttl, grace)).await.unwrap();
    let old = ca.bundle().roots[0].clone();
    stage_next_root(&Storage::Local(LocalStore::open(dir.path()).unwrap()), TD)
        .await
        .unwrap();
    let t0 = SystemTime::now();
    ca.tick(t0).await.unwrap();
    let new = ca.bundle().roots[1].clone();
    // Simulate a crash after rotation.json was written and the key renamed, before the
    // certificate was: run the promotion's first steps by hand.
    let store = LocalStore::open(dir.path()).unwrap();
    let files = store.read().unwrap();
    let locate = |n: &str| store.locate(n);
    let mem = ca.inner.memory.lock().await.clone();
    let step =
        rotation::decide(&files, &mem, &settings(ttl, grace), t0 + secs(5), &locate).unwrap();
    let rotation::Step::Apply { ops, .. } = step else {
        panic!("expected the promotion")
    };
    assert_eq!(ops.len(), 4, "{ops:?}");
    store.apply(&files.version, &ops[..3]).unwrap();
    drop(ca);
    let ca = open(dir.path(), settings(ttl, grace)).await.unwrap();
    assert!(!dir.path().join("next-root-cert.pem").exists());
    assert_eq!(issuer_of(&ca), new);
    assert_eq!(
        ca.bundle().roots.len(),
        2,
        "the old root is retiring: {old:?}"
    );
}

#[tokio::test]
async fn a_replaced_plug_in_ca_is_announced_before_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let (ttl, grace) = (secs(600), secs(30));
    let (a, b) = (plug_in("a"), plug_in("b"));
    write_plug_in(dir.path(), &a);
    let ca = open(dir.path(), settings(ttl, grace)).await.unwrap();
    let t0 = SystemTime::now();
    write_plug_in(dir.path(), &b);
    ca.tick(t0 + secs(1)).await.unwrap();
    assert_eq!(ca.bundle().roots, vec![a.root.clone(), b.root.clone()]);
    assert_eq!(issuer_of(&ca), a.root, "the old intermediate still signs");
    assert_eq!(ca.status().rotation.phase, RotationPhase::Announced);

    ca.tick(t0 + secs(32)).await.unwrap();
    assert_eq!(issuer_of(&ca), b.root);
    assert_eq!(ca.bundle().roots, vec![b.root.clone(), a.root.clone()]);

    // A restart keeps trusting the old root until its certificates have expired.
    let restarted = open(dir.path(), settings(ttl, grace)).await.unwrap();
    assert_eq!(restarted.bundle().roots.len(), 2);

    ca.tick(t0 + secs(33) + ttl + secs(1)).await.unwrap();
    assert_eq!(ca.bundle().roots, vec![b.root.clone()]);
}

#[tokio::test]
async fn a_restart_during_an_in_place_announcement_switches_and_keeps_the_old_root() {
    let dir = tempfile::tempdir().unwrap();
    let (ttl, grace) = (secs(600), secs(30));
    let (a, b) = (plug_in("a"), plug_in("b"));
    write_plug_in(dir.path(), &a);
    let ca = open(dir.path(), settings(ttl, grace)).await.unwrap();
    write_plug_in(dir.path(), &b);
    ca.tick(SystemTime::now()).await.unwrap();
    assert_eq!(ca.status().rotation.phase, RotationPhase::Announced);
    drop(ca);
    // The old key only lived in that process: the new CA signs at once, the old root stays.
    let ca = open(dir.path(), settings(ttl, grace)).await.unwrap();
    assert_eq!(issuer_of(&ca), b.root);
    assert_eq!(ca.bundle().roots, vec![b.root.clone(), a.root.clone()]);
    assert_eq!(ca.status().rotation.phase, RotationPhase::Draining);
}

#[tokio::test]
async fn a_new_intermediate_under_a_trusted_root_signs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = root("a");
    write_plug_in(dir.path(), &intermediate(&r, "one"));
    let ca = open(dir.path(), settings(secs(600), secs(30)))
        .await
        .unwrap();
    let before = ca.bundle();
    write_plug_in(dir.path(), &intermediate(&r, "two"));
    ca.tick(SystemTime::now()).await.unwrap();
    let status = ca.status();
    assert_eq!(status.rotation.phase, RotationPhase::Stable);
    assert!(
        status.signing.subject.contains("two mesh intermediate"),
        "{status:?}"
    );
    assert_eq!(ca.bundle(), before, "the bundle did not change");
    assert!(!dir.path().join("rotation.json").exists());
}

#[tokio::test]
async fn broken_replacement_material_is_reported_and_the_ca_keeps_signing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (plug_in("a"), plug_in("b"));
    write_plug_in(dir.path(), &a);
    let ca = open(dir.path(), settings(secs(600), secs(30)))
        .await
        .unwrap();
    let before = ca.bundle();
    write_plug_in(dir.path(), &b);
    std::fs::write(dir.path().join("ca-key.pem"), &a.ca_key_pem).unwrap();
    ca.tick(SystemTime::now()).await.unwrap();
    let status = ca.status();
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.contains("is not the private key of")),
        "{:?}",
        status.problems
    );
    assert_eq!(ca.bundle(), before);
    assert_eq!(issuer_of(&ca), a.root);
}
