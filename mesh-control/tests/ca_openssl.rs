//! Certificates the CA issues, checked by an independent implementation: the `openssl`
//! command line verifies the chains and shows the certificates' fields. Covers the
//! self-signed root and a plug-in intermediate made by openssl itself (RSA, in Istio's
//! `cacerts` layout), `mesh-control ca issue` end to end, and a CSR asking for other names.
//!
//! `openssl` must be installed (`cargo xtask ci` installs it); these tests fail, saying
//! so, when it is not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mesh_api::spiffe::SpiffeId;
use mesh_control::ca::{Ca, LocalStore, Settings, Storage};

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `openssl` ({e}): install it (Debian: `apt-get install openssl`; `cargo xtask ci` does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn must(args: &[&str], dir: &Path) -> String {
    let (ok, text) = openssl(args, dir);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

fn mesh_control(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-control"))
        .args(args)
        .env("MESH_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mesh-control {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Splits `cert-chain.pem` into `leaf.pem` and `intermediates.pem` (possibly empty).
fn split_chain(dir: &Path) -> (PathBuf, PathBuf) {
    let chain = std::fs::read(dir.join("cert-chain.pem")).unwrap();
    let certs = mesh_api::tls::certs_from_pem(&chain).unwrap();
    let leaf = dir.join("leaf.pem");
    let rest = dir.join("intermediates.pem");
    std::fs::write(&leaf, mesh_api::tls::certs_to_pem(&certs[..1])).unwrap();
    std::fs::write(&rest, mesh_api::tls::certs_to_pem(&certs[1..])).unwrap();
    (leaf, rest)
}

fn verify(dir: &Path, leaf: &Path, intermediates: &Path) -> String {
    let mut args = vec![
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        "root-cert.pem",
    ];
    let has_intermediates = std::fs::metadata(intermediates).unwrap().len() > 0;
    let inter = intermediates.to_str().unwrap();
    if has_intermediates {
        args.extend(["-untrusted", inter]);
    }
    args.push(leaf.to_str().unwrap());
    let out = must(&args, dir);
    // And as a server certificate.
    args[2] = "sslserver";
    must(&args, dir);
    out
}

/// `openssl x509 -text` of `leaf`, checked for the mesh shape: exactly one URI SAN (the
/// identity) and nothing else, a P-256 key, CA:FALSE, both key purposes.
fn check_leaf_text(dir: &Path, leaf: &Path, identity: &str) -> String {
    let text = must(
        &["x509", "-text", "-noout", "-in", leaf.to_str().unwrap()],
        dir,
    );
    assert_eq!(
        text.matches("URI:").count(),
        1,
        "exactly one URI SAN:\n{text}"
    );
    assert!(text.contains(&format!("URI:{identity}")), "{text}");
    assert!(!text.contains("DNS:") && !text.contains("email:"), "{text}");
    assert!(
        text.contains("ASN1 OID: prime256v1") && text.contains("NIST CURVE: P-256"),
        "ECDSA P-256:\n{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("Digital Signature"), "{text}");
    text
}

/// The certificate at `leaf` expires after `more_than` and within `less_than` from now.
fn check_lifetime(dir: &Path, leaf: &Path, more_than: Duration, less_than: Duration) {
    let leaf = leaf.to_str().unwrap();
    let (ok, text) = openssl(
        &[
            "x509",
            "-noout",
            "-in",
            leaf,
            "-checkend",
            &more_than.as_secs().to_string(),
        ],
        dir,
    );
    assert!(ok, "expires too soon: {text}");
    let (ok, text) = openssl(
        &[
            "x509",
            "-noout",
            "-in",
            leaf,
            "-checkend",
            &less_than.as_secs().to_string(),
        ],
        dir,
    );
    assert!(!ok, "lives too long: {text}");
}

#[test]
fn ca_issue_with_the_self_signed_root_verifies_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = tmp.path().join("out");
    let said = mesh_control(&[
        "ca",
        "issue",
        "--identity",
        REVIEWS,
        "--out-dir",
        out.to_str().unwrap(),
        "--lifetime",
        "2h",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(said.contains(REVIEWS), "{said}");
    assert!(
        state.join("ca/root-key.pem").exists(),
        "the root was created"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(out.join("key.pem")), 0o600);
    assert_eq!(mode(out.join("cert-chain.pem")), 0o644);

    let (leaf, rest) = split_chain(&out);
    let verified = verify(&out, &leaf, &rest);
    assert!(verified.contains(": OK"), "{verified}");
    check_leaf_text(&out, &leaf, REVIEWS);
    check_lifetime(
        &out,
        &leaf,
        Duration::from_secs(7100),
        Duration::from_secs(7300),
    );
    // The key in key.pem is the certificate's.
    let from_key = must(&["pkey", "-in", "key.pem", "-pubout"], &out);
    let from_cert = must(&["x509", "-in", "leaf.pem", "-noout", "-pubkey"], &out);
    assert_eq!(from_key, from_cert);

    // The root, as openssl sees it.
    let root = must(&["x509", "-text", "-noout", "-in", "root-cert.pem"], &out);
    assert!(root.contains("CA:TRUE, pathlen:0"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(
        root.contains("O = cluster.local, CN = mesh root CA"),
        "{root}"
    );

    // A second issuance reuses the root.
    let out2 = tmp.path().join("out2");
    mesh_control(&[
        "ca",
        "issue",
        "--identity",
        "spiffe://cluster.local/ns/shop/sa/cart",
        "--out-dir",
        out2.to_str().unwrap(),
        "--dns",
        "cart.shop.svc",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(out.join("root-cert.pem")).unwrap(),
        std::fs::read(out2.join("root-cert.pem")).unwrap()
    );
    let (leaf2, _) = split_chain(&out2);
    let text = must(
        &["x509", "-text", "-noout", "-in", leaf2.to_str().unwrap()],
        &out2,
    );
    assert!(text.contains("DNS:cart.shop.svc"), "--dns is added: {text}");
}

#[tokio::test]
async fn a_csr_asking_for_other_names_yields_only_the_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    must(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "csr-key.pem",
            "-subj",
            "/CN=admin",
            "-addext",
            "subjectAltName=DNS:evil.example,URI:spiffe://cluster.local/ns/kube-system/sa/admin,email:root@example.com",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-outform",
            "DER",
            "-out",
            "request.der",
        ],
        dir,
    );
    let ca = Ca::open(
        Storage::Local(LocalStore::open(dir.join("ca")).unwrap()),
        Settings {
            trust_domain: "cluster.local".into(),
            workload_cert_ttl: Duration::from_secs(24 * 3600),
            root_rotation_grace: Duration::from_secs(30),
        },
        true,
    )
    .await
    .unwrap();
    let csr = std::fs::read(dir.join("request.der")).unwrap();
    let who: SpiffeId = REVIEWS.parse().unwrap();
    let issued = ca
        .sign_csr(&who, &csr, Some(Duration::from_secs(3600)))
        .unwrap();
    std::fs::write(
        dir.join("cert-chain.pem"),
        mesh_api::tls::certs_to_pem(&issued.chain),
    )
    .unwrap();
    std::fs::write(
        dir.join("root-cert.pem"),
        mesh_api::tls::certs_to_pem(&issued.trust_anchors),
    )
    .unwrap();
    let (leaf, rest) = split_chain(dir);
    verify(dir, &leaf, &rest);
    let text = check_leaf_text(dir, &leaf, REVIEWS);
    assert!(
        !text.contains("admin"),
        "nothing of the CSR's subject or names: {text}"
    );
    check_lifetime(
        dir,
        &leaf,
        Duration::from_secs(3500),
        Duration::from_secs(3700),
    );
}

#[test]
fn a_plug_in_ca_made_by_openssl_signs_chains_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let cacerts = tmp.path().join("cacerts");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&cacerts).unwrap();
    // An organization's root (EC) and an RSA intermediate for the mesh, as Istio's docs
    // make them.
    must(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root-key.pem",
            "-out",
            "root-cert.pem",
            "-subj",
            "/C=US/O=Example Corp/CN=Example Root CA",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &work,
    );
    must(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.csr",
            "-subj",
            "/C=US/O=Example Corp/OU=Mesh/CN=Mesh Intermediate CA",
        ],
        &work,
    );
    std::fs::write(
        work.join("ext.cnf"),
        "[v3_ca]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    must(
        &[
            "x509",
            "-req",
            "-in",
            "ca.csr",
            "-CA",
            "root-cert.pem",
            "-CAkey",
            "root-key.pem",
            "-CAcreateserial",
            "-out",
            "ca-cert.pem",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3_ca",
        ],
        &work,
    );
    for f in ["ca-cert.pem", "ca-key.pem", "root-cert.pem"] {
        std::fs::copy(work.join(f), cacerts.join(f)).unwrap();
    }
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(work.join("ca-cert.pem")).unwrap(),
        std::fs::read_to_string(work.join("root-cert.pem")).unwrap()
    );
    std::fs::write(cacerts.join("cert-chain.pem"), chain).unwrap();

    let out = tmp.path().join("out");
    mesh_control(&[
        "ca",
        "issue",
        "--identity",
        REVIEWS,
        "--out-dir",
        out.to_str().unwrap(),
        "--lifetime",
        "1h",
        "--ca-dir",
        cacerts.to_str().unwrap(),
    ]);
    assert!(
        !cacerts.join("root-key.pem").exists(),
        "no root of ours next to a plug-in CA"
    );
    let (leaf, rest) = split_chain(&out);
    let intermediates = std::fs::read_to_string(&rest).unwrap();
    assert_eq!(
        intermediates.matches("BEGIN CERTIFICATE").count(),
        1,
        "the intermediate is sent, the root is not"
    );
    let verified = verify(&out, &leaf, &rest);
    assert!(verified.contains(": OK"), "{verified}");
    check_leaf_text(&out, &leaf, REVIEWS);
    let text = must(
        &["x509", "-text", "-noout", "-in", leaf.to_str().unwrap()],
        &out,
    );
    assert!(
        text.contains("Issuer: C = US, O = Example Corp, OU = Mesh, CN = Mesh Intermediate CA"),
        "{text}"
    );
    assert!(
        text.contains("sha256WithRSAEncryption"),
        "signed by the RSA intermediate: {text}"
    );
    check_lifetime(
        &out,
        &leaf,
        Duration::from_secs(3500),
        Duration::from_secs(3700),
    );
}
