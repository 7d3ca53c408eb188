//! The identity service over real TLS, in process: `mesh-control` in local mode on port 0,
//! the generated tonic client over tokio-rustls. Covers authentication (workload tokens,
//! client certificates, certificates of another CA), the identity rule, the debug
//! documents and metrics, and a root rotation seen through `WatchTrustBundle`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mesh_api::proto::identity::v1 as pb;
use mesh_api::status::{CaStatus, ProxySecretList, RotationPhase};
use rustls_pki_types::CertificateDer;
use support::{ControlPlane, Credentials, DEADLINE, H2, csr, signed_by, write};

const WORKLOAD: &str = "
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata:
  name: reviews-1
  namespace: default
spec:
  address: 10.0.0.1
  labels:
    app: reviews
  serviceAccount: reviews
";

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const RATINGS: &str = "spiffe://cluster.local/ns/default/sa/ratings";

fn client(h2: H2) -> pb::identity_client::IdentityClient<H2> {
    pb::identity_client::IdentityClient::with_origin(h2, "https://mesh-control".parse().unwrap())
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

fn certify_request(identity: &str, csr: Vec<u8>) -> pb::CertifyRequest {
    pb::CertifyRequest {
        identity: identity.into(),
        csr,
        requested_lifetime: None,
        proxy_id: "reviews-1.default".into(),
    }
}

/// Certifies `identity` over `client`, returning the credentials or the status.
async fn certify(
    client: &mut pb::identity_client::IdentityClient<H2>,
    identity: &str,
    token: Option<&str>,
) -> Result<(Credentials, pb::CertifyResponse), tonic::Status> {
    let (der, key) = csr(vec![]);
    let resp = tokio::time::timeout(
        DEADLINE,
        client.certify(with_token(certify_request(identity, der), token)),
    )
    .await
    .expect("an answer in time")?
    .into_inner();
    let mut chain = vec![CertificateDer::from(resp.leaf_certificate.clone())];
    chain.extend(
        resp.intermediate_certificates
            .iter()
            .map(|c| CertificateDer::from(c.clone())),
    );
    Ok((Credentials { chain, key }, resp))
}

fn identity_of(cert: &CertificateDer<'_>) -> String {
    mesh_api::tls::spiffe_id(cert).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certify_authenticates_and_issues_only_the_callers_identity() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(dir.path(), "w.yaml", WORKLOAD);
    let cp = ControlPlane::start(dir.path(), state.path(), &[]).await;
    let trust_bundle = std::fs::read(state.path().join("trust-bundle.pem")).unwrap();
    assert_eq!(
        mesh_api::tls::certs_from_pem(&trust_bundle).unwrap(),
        cp.ca.bundle().roots,
        "proxies bootstrap from <state-dir>/trust-bundle.pem"
    );
    // The registry's workload got a token.
    let token = cp.token("default", "reviews").await;

    let mut anon = client(cp.connect(None).await.unwrap());

    // A token for reviews asking for reviews: a certificate for exactly that identity.
    let (creds, resp) = certify(&mut anon, REVIEWS, Some(&token)).await.unwrap();
    assert_eq!(identity_of(&creds.chain[0]), REVIEWS);
    assert!(resp.intermediate_certificates.is_empty());
    assert_eq!(
        resp.trust_anchors,
        cp.ca
            .bundle()
            .roots
            .iter()
            .map(|c| c.to_vec())
            .collect::<Vec<_>>()
    );
    let not_after = resp.not_after.unwrap().seconds;
    let refresh_at = resp.refresh_at.unwrap().seconds;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((not_after - now - 24 * 3600).abs() <= 5, "24h by default");
    assert!(
        (refresh_at - now - 12 * 3600).abs() <= 5,
        "renew at half life"
    );

    // The same token asking for ratings: denied, naming both.
    let status = certify(&mut anon, RATINGS, Some(&token)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        format!("the CSR asks for {RATINGS} but the caller is {REVIEWS}")
    );

    // No token: unauthenticated, with the fix.
    let status = certify(&mut anon, REVIEWS, None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("--token-file"), "{status:?}");
    // A wrong token.
    let status = certify(&mut anon, REVIEWS, Some("0123")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    // A bad CSR: invalid argument naming the problem.
    let status = anon
        .certify(with_token(
            certify_request(REVIEWS, b"not a csr".to_vec()),
            Some(&token),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("PKCS#10"), "{status:?}");

    // A token made on demand (`mesh-control token`) works without a restart.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-control"))
        .args(["token", "--state-dir"])
        .arg(state.path())
        .arg("default/ratings")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let path = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        path.trim(),
        state
            .path()
            .join("tokens/default/ratings")
            .display()
            .to_string()
    );
    let ratings_token = std::fs::read_to_string(path.trim()).unwrap();
    let (ratings, _) = certify(&mut anon, RATINGS, Some(ratings_token.trim()))
        .await
        .unwrap();
    assert_eq!(identity_of(&ratings.chain[0]), RATINGS);

    // Renewal: the certificate alone authenticates, no token.
    let mut renewing = client(cp.connect(Some(&creds)).await.unwrap());
    let (renewed, _) = certify(&mut renewing, REVIEWS, None).await.unwrap();
    assert_eq!(identity_of(&renewed.chain[0]), REVIEWS);
    // ... and only for its own identity, whatever token comes along.
    let status = certify(&mut renewing, RATINGS, Some(ratings_token.trim()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A certificate from another CA is refused at the handshake.
    let other_state = tempfile::tempdir().unwrap();
    let other = mesh_control::ca::Ca::open(
        mesh_control::ca::Storage::Local(
            mesh_control::ca::LocalStore::open(other_state.path()).unwrap(),
        ),
        cp.ca.settings().clone(),
        true,
    )
    .await
    .unwrap();
    let foreign = other
        .issue(&REVIEWS.parse().unwrap(), &[], Duration::from_secs(3600))
        .unwrap();
    let foreign = Credentials {
        chain: foreign.issued.chain,
        key: foreign.key,
    };
    // TLS 1.3: the client finishes its side, then reads the server's alert.
    let mut tls = support::tls_stream(cp.bound.discovery, &cp.ca.bundle().roots, Some(&foreign))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut tls, &mut buf))
        .await
        .expect("an answer in time");
    let err = read.expect_err("a certificate from another CA must be refused");
    assert!(err.to_string().contains("alert"), "a TLS alert: {err}");

    // The debug API shows what was issued, per proxy.
    let secrets: ProxySecretList =
        serde_json::from_str(&cp.debug("/debug/secrets?proxy=reviews-1.default").await).unwrap();
    assert_eq!(secrets.secrets.len(), 1, "{secrets:#?}");
    let s = &secrets.secrets[0];
    assert_eq!(s.proxy, "reviews-1.default");
    assert_eq!(
        s.authenticated_by, "certificate",
        "the latest was the renewal"
    );
    assert_eq!(s.chain[0].spiffe_id.as_deref(), Some(REVIEWS));
    assert_eq!(s.trust_bundle.len(), 1);
    let by_pod: ProxySecretList =
        serde_json::from_str(&cp.debug("/debug/secrets?proxy=reviews-1").await).unwrap();
    assert_eq!(by_pod.secrets.len(), 1);
    let missing = cp.debug("/debug/secrets?proxy=nope").await;
    assert!(missing.contains("no certificate was issued"), "{missing}");
    let ca: CaStatus = serde_json::from_str(&cp.debug("/debug/ca").await).unwrap();
    assert_eq!(ca.rotation.phase, RotationPhase::Stable);
    assert_eq!(ca.trust_bundle.len(), 1);
    assert!(!ca.plug_in);
    let metrics = cp.debug("/metrics").await;
    for line in [
        "mesh_control_certificates_issued_total 3",
        "mesh_control_certificate_requests_denied_total{reason=\"permission_denied\"} 2",
        "mesh_control_certificate_requests_denied_total{reason=\"unauthenticated\"} 2",
        "mesh_control_certificate_requests_denied_total{reason=\"invalid_csr\"} 1",
        "mesh_control_trust_bundle_roots 1",
        "mesh_control_ca_root_expiry_timestamp_seconds ",
    ] {
        assert!(metrics.contains(line), "{line:?} in\n{metrics}");
    }
    cp.stop().await;
}

/// What the test saw, in the order it saw it.
#[derive(Debug)]
enum Seen {
    Bundle(u64, Vec<CertificateDer<'static>>),
    Leaf(u64, CertificateDer<'static>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_the_trust_bundle_stream_before_any_certificate_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(dir.path(), "w.yaml", WORKLOAD);
    let cp = ControlPlane::start(
        dir.path(),
        state.path(),
        &[
            "--root-rotation-grace",
            "2s",
            "--workload-cert-ttl",
            "3s",
            "--ca-poll-interval",
            "100ms",
        ],
    )
    .await;
    let token = cp.token("default", "reviews").await;
    let old = cp.ca.bundle().roots[0].clone();
    let mut c = client(cp.connect(None).await.unwrap());
    let mut stream = c
        .watch_trust_bundle(with_token(
            pb::WatchTrustBundleRequest {
                proxy_id: "reviews-1.default".into(),
            },
            Some(&token),
        ))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.trust_anchors,
        vec![old.to_vec()],
        "the current bundle at once"
    );

    // Everything observed gets a sequence number from one counter.
    let seq = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
    let watcher = {
        let (seq, seen) = (seq.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok(Some(b)) = stream.message().await {
                let roots: Vec<CertificateDer<'static>> = b
                    .trust_anchors
                    .into_iter()
                    .map(CertificateDer::from)
                    .collect();
                let n = seq.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(Seen::Bundle(n, roots));
            }
        })
    };

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-control"))
        .args(["ca", "rotate", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let staged = mesh_api::tls::certs_from_pem(
        &std::fs::read(state.path().join("ca/next-root-cert.pem")).unwrap(),
    )
    .unwrap()[0]
        .clone();

    // Certify until a certificate signed by the new root comes back.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (creds, _) = certify(&mut c, REVIEWS, Some(&token)).await.unwrap();
        let leaf = creds.chain[0].clone();
        let n = seq.fetch_add(1, Ordering::SeqCst);
        let by_new = signed_by(&leaf, &staged);
        assert!(
            by_new || signed_by(&leaf, &old),
            "signed by one of the two roots"
        );
        seen.lock().unwrap().push(Seen::Leaf(n, leaf));
        if by_new {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new root never signed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let seen = seen.lock().unwrap();
        let announced = seen
            .iter()
            .find_map(|s| match s {
                Seen::Bundle(n, roots) if roots.contains(&staged) => Some(*n),
                _ => None,
            })
            .expect("the new root reached the stream");
        let first_signed = seen
            .iter()
            .find_map(|s| match s {
                Seen::Leaf(n, leaf) if signed_by(leaf, &staged) => Some(*n),
                _ => None,
            })
            .unwrap();
        assert!(
            announced < first_signed,
            "the new root was streamed (#{announced}) before a certificate it signed was issued (#{first_signed}): {seen:#?}"
        );
        let Seen::Bundle(_, roots) = seen
            .iter()
            .find(|s| matches!(s, Seen::Bundle(n, _) if *n == announced))
            .unwrap()
        else {
            unreachable!()
        };
        assert!(
            roots.contains(&old),
            "the old root stays while it may have signed live certificates"
        );
    }

    // Once every certificate of the old root has expired (TTL 3s), it leaves the bundle.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let last = seen.lock().unwrap().iter().rev().find_map(|s| match s {
            Seen::Bundle(_, roots) => Some(roots.clone()),
            Seen::Leaf(..) => None,
        });
        if last.as_deref() == Some(std::slice::from_ref(&staged)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old root never left: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let file = std::fs::read(state.path().join("trust-bundle.pem")).unwrap();
        if mesh_api::tls::certs_from_pem(&file).unwrap() == [staged.clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trust-bundle.pem does not follow the bundle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!state.path().join("ca/previous-root-cert.pem").exists());
    watcher.abort();
    cp.stop().await;
}
