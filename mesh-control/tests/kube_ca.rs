//! The CA's Kubernetes side against a mocked API server (`tower-test`), with replies in
//! the shapes a real apiserver sends: TokenReviews (authenticated, not authenticated,
//! another audience, a user that is not a service account), the CA Secrets (created on
//! first start, a lost creation race answered `409 AlreadyExists`, loaded when present, a
//! plug-in `cacerts` Secret winning), and the trust bundle ConfigMap applied server-side
//! in every namespace.
//!
//! The mock keeps Secrets in memory (with `resourceVersion`s) and records every request;
//! a request it does not expect fails the test naming it. Every wait is bounded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use kube::client::Body;
use mesh_control::ca::kube::{Applied, KubeStore};
use mesh_control::ca::{Bundle, Ca, Settings, Storage};
use mesh_control::identity::{AuthError, TokenReviewer};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(10);
const NS: &str = "mesh-system";

/// One request the mock saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    content_type: String,
    body: Value,
}

/// The mocked API server's state.
#[derive(Default)]
struct Api {
    secrets: BTreeMap<String, Value>,
    version: u64,
    /// Answers to TokenReview creations, in order.
    reviews: VecDeque<Value>,
    /// When set: on the next creation of `mesh-ca`, another replica's Secret is stored
    /// first and the creation fails with 409.
    race: Option<Value>,
    /// The namespace list.
    namespaces: Vec<Value>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Api>>;

fn status(code: u16, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap(),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code
        }),
    )
}

fn not_found(name: &str) -> (StatusCode, Value) {
    status(404, "NotFound", &format!("secrets \"{name}\" not found"))
}

impl Api {
    fn store(&mut self, mut secret: Value) -> Value {
        self.version += 1;
        let name = secret["metadata"]["name"].as_str().unwrap().to_owned();
        secret["metadata"]["resourceVersion"] = json!(self.version.to_string());
        secret["metadata"]["namespace"] = json!(NS);
        secret["metadata"]["uid"] = json!(format!("uid-{name}"));
        secret["kind"] = json!("Secret");
        secret["apiVersion"] = json!("v1");
        self.secrets.insert(name, secret.clone());
        secret
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let secrets = format!("/api/v1/namespaces/{NS}/secrets");
        match (method.clone(), path) {
            (Method::GET, p) if p.starts_with(&format!("{secrets}/")) => {
                let name = &p[secrets.len() + 1..];
                match self.secrets.get(name) {
                    Some(s) => (StatusCode::OK, s.clone()),
                    None => not_found(name),
                }
            }
            (Method::POST, p) if p == secrets => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                if let Some(other) = self.race.take() {
                    self.store(other);
                }
                if self.secrets.contains_key(&name) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("secrets \"{name}\" already exists"),
                    );
                }
                (StatusCode::CREATED, self.store(body))
            }
            (Method::PUT, p) if p.starts_with(&format!("{secrets}/")) => {
                let name = &p[secrets.len() + 1..];
                let current = self
                    .secrets
                    .get(name)
                    .map(|s| s["metadata"]["resourceVersion"].clone());
                if current != Some(body["metadata"]["resourceVersion"].clone()) {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                    );
                }
                (StatusCode::OK, self.store(body))
            }
            (Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews") => {
                let mut answer = self
                    .reviews
                    .pop_front()
                    .expect("no TokenReview answer planned");
                answer["spec"] = body["spec"].clone();
                (StatusCode::CREATED, answer)
            }
            (Method::GET, "/api/v1/namespaces") if !query.contains("watch=true") => (
                StatusCode::OK,
                json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "4711"}, "items": self.namespaces}),
            ),
            (Method::PATCH, p)
                if p.starts_with("/api/v1/namespaces/")
                    && p.ends_with("/configmaps/mesh-root-cert") =>
            {
                (StatusCode::OK, body)
            }
            _ => panic!("unexpected request: {method} {path}?{query}"),
        }
    }
}

/// Starts the mock; returns a client on it and its state.
fn mock(api: Api) -> (kube::Client, Shared) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let shared: Shared = Arc::new(Mutex::new(api));
    let state = shared.clone();
    tokio::spawn(async move {
        let mut quiet = Vec::new();
        while let Some((req, respond)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let content_type = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let uri = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            };
            state.lock().unwrap().seen.push(Seen {
                method: method.clone(),
                uri,
                content_type,
                body: body.clone(),
            });
            if method == Method::GET && path == "/api/v1/namespaces" && query.contains("watch=true")
            {
                quiet.push(respond); // a quiet watch
                continue;
            }
            let (code, reply) = state.lock().unwrap().handle(&method, &path, &query, body);
            respond.send_response(
                Response::builder()
                    .status(code)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(service, "default"), shared)
}

fn settings() -> Settings {
    Settings {
        trust_domain: "cluster.local".into(),
        workload_cert_ttl: Duration::from_secs(3600),
        root_rotation_grace: Duration::from_secs(30),
    }
}

fn b64(s: &str) -> String {
    // The apiserver sends Secret data base64-encoded; k8s-openapi decodes it.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data = s.as_bytes();
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
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

fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(b64(v))))
        .collect();
    json!({
        "metadata": {"name": name, "creationTimestamp": "2026-01-02T03:04:05Z"},
        "type": "Opaque",
        "data": data,
    })
}

/// A root made by another replica: (cert PEM, key PEM).
fn other_root() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "cluster.local");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mesh root CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn open(client: kube::Client) -> Result<Ca, mesh_control::ca::Error> {
    tokio::time::timeout(
        TIMEOUT,
        Ca::open(Storage::Kube(KubeStore::new(client, NS)), settings(), true),
    )
    .await
    .expect("in time")
}

fn pem_of(ca: &Ca) -> String {
    ca.bundle().pem()
}

// === CA Secrets ===

#[tokio::test]
async fn the_first_replica_creates_the_ca_secret() {
    let (client, api) = mock(Api::default());
    let ca = open(client.clone()).await.unwrap();
    let api = api.lock().unwrap();
    let created = api
        .seen
        .iter()
        .find(|s| s.method == Method::POST)
        .expect("a creation");
    assert!(
        created
            .uri
            .starts_with(&format!("/api/v1/namespaces/{NS}/secrets")),
        "{created:?}"
    );
    assert_eq!(created.body["metadata"]["name"], "mesh-ca");
    assert_eq!(
        created.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "mesh-control"
    );
    let data = created.body["data"].as_object().unwrap();
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    assert_eq!(keys, ["root-cert.pem", "root-key.pem"]);
    let stored = &api.secrets["mesh-ca"];
    assert_eq!(stored["data"]["root-cert.pem"], data["root-cert.pem"]);
    assert!(!ca.status().plug_in);
    assert_eq!(ca.status().source, "kubernetes:mesh-system/mesh-ca");
}

#[tokio::test]
async fn a_replica_losing_the_creation_race_loads_the_winners_root() {
    let (cert, key) = other_root();
    let (client, api) = mock(Api {
        race: Some(secret(
            "mesh-ca",
            &[("root-cert.pem", &cert), ("root-key.pem", &key)],
        )),
        ..Api::default()
    });
    let ca = open(client).await.unwrap();
    assert_eq!(
        pem_of(&ca),
        mesh_api::tls::certs_to_pem(&mesh_api::tls::certs_from_pem(cert.as_bytes()).unwrap())
    );
    let api = api.lock().unwrap();
    assert_eq!(
        api.seen.iter().filter(|s| s.method == Method::POST).count(),
        1,
        "one creation attempt, answered 409"
    );
    assert!(
        api.seen.iter().all(|s| s.method != Method::PUT),
        "nothing overwritten"
    );
}

#[tokio::test]
async fn an_existing_ca_secret_is_loaded() {
    let (cert, key) = other_root();
    let mut state = Api::default();
    state.store(secret(
        "mesh-ca",
        &[("root-cert.pem", &cert), ("root-key.pem", &key)],
    ));
    let (client, api) = mock(state);
    let ca = open(client).await.unwrap();
    assert!(pem_of(&ca).contains(cert.lines().nth(1).unwrap()));
    assert!(
        api.lock()
            .unwrap()
            .seen
            .iter()
            .all(|s| s.method == Method::GET)
    );
}

#[tokio::test]
async fn a_broken_ca_secret_names_the_secret_and_key() {
    let (cert, _) = other_root();
    let (_, wrong_key) = other_root();
    let mut state = Api::default();
    state.store(secret(
        "mesh-ca",
        &[("root-cert.pem", &cert), ("root-key.pem", &wrong_key)],
    ));
    let (client, _) = mock(state);
    let err = open(client).await.unwrap_err().to_string();
    assert!(
        err.contains("Secret mesh-system/mesh-ca key root-key.pem: is not the private key of Secret mesh-system/mesh-ca key root-cert.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn the_plug_in_cacerts_secret_wins() {
    // An intermediate under an organization root, as `kubectl create secret generic
    // cacerts --from-file=...` stores it.
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut rp = rcgen::CertificateParams::default();
    rp.distinguished_name = rcgen::DistinguishedName::new();
    rp.distinguished_name
        .push(rcgen::DnType::CommonName, "Org Root");
    rp.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rp.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let root = rp.self_signed(&root_key).unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ip = rcgen::CertificateParams::default();
    ip.distinguished_name = rcgen::DistinguishedName::new();
    ip.distinguished_name
        .push(rcgen::DnType::CommonName, "Mesh Intermediate");
    ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ip.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let inter = ip
        .signed_by(&ca_key, &rcgen::Issuer::new(rp, &root_key))
        .unwrap();
    let mut state = Api::default();
    let (our_cert, our_key) = other_root();
    state.store(secret(
        "mesh-ca",
        &[("root-cert.pem", &our_cert), ("root-key.pem", &our_key)],
    ));
    state.store(secret(
        "cacerts",
        &[
            ("ca-cert.pem", &inter.pem()),
            ("ca-key.pem", &ca_key.serialize_pem()),
            ("root-cert.pem", &root.pem()),
            ("cert-chain.pem", &format!("{}{}", inter.pem(), root.pem())),
        ],
    ));
    let (client, _) = mock(state);
    let ca = open(client).await.unwrap();
    let status = ca.status();
    assert!(status.plug_in);
    assert_eq!(status.source, "kubernetes:mesh-system/cacerts");
    assert_eq!(ca.bundle().roots, vec![root.der().clone()]);
    let issued = ca
        .issue(
            &"spiffe://cluster.local/ns/default/sa/a".parse().unwrap(),
            &[],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(issued.issued.chain.len(), 2);
    assert_eq!(issued.issued.chain[1], *inter.der());
}

// === TokenReview ===

fn review(status: Value) -> Value {
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": status,
    })
}

fn sa_user(ns: &str, sa: &str) -> Value {
    json!({
        "username": format!("system:serviceaccount:{ns}:{sa}"),
        "uid": "2f1d4c3a-6a53-4d7e-9f50-2b2a3b1c9d11",
        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/credential-id": ["JTI=5b1c0f8e-1d2f-4c6a-8d3e-7a9b0c1d2e3f"],
            "authentication.kubernetes.io/node-name": ["kind-worker"],
            "authentication.kubernetes.io/pod-name": ["reviews-v1-7d9f8b6c5d-x2k4p"],
            "authentication.kubernetes.io/pod-uid": ["0c7e1a2b-3c4d-5e6f-7a8b-9c0d1e2f3a4b"]
        }
    })
}

#[tokio::test]
async fn token_reviews_decide_who_the_caller_is() {
    let (client, api) = mock(Api {
        reviews: VecDeque::from([
            review(
                json!({"authenticated": true, "user": sa_user("default", "reviews"), "audiences": ["mesh-control"]}),
            ),
            review(
                json!({"user": {}, "error": "[invalid bearer token, service account token has expired]"}),
            ),
            review(
                json!({"authenticated": true, "user": sa_user("default", "reviews"), "audiences": ["https://kubernetes.default.svc.cluster.local", "k3s"]}),
            ),
            review(
                json!({"authenticated": true, "user": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]}, "audiences": ["mesh-control"]}),
            ),
        ]),
        ..Api::default()
    });
    let reviewer = TokenReviewer::new(client, "cluster.local");

    let id = reviewer.authenticate("token-a").await.unwrap();
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    {
        let api = api.lock().unwrap();
        let sent = &api.seen[0];
        assert!(
            sent.uri
                .starts_with("/apis/authentication.k8s.io/v1/tokenreviews")
        );
        assert_eq!(sent.body["spec"]["token"], "token-a");
        assert_eq!(sent.body["spec"]["audiences"], json!(["mesh-control"]));
        assert_eq!(sent.body["apiVersion"], "authentication.k8s.io/v1");
    }
    // Cached: no second review (the mock would have no answer for it in order).
    let again = reviewer.authenticate("token-a").await.unwrap();
    assert_eq!(again, id);
    assert_eq!(api.lock().unwrap().seen.len(), 1);

    let err = |e: AuthError| match e {
        AuthError::Invalid(m) => m,
        other => panic!("not invalid: {other:?}"),
    };
    let m = err(reviewer.authenticate("expired").await.unwrap_err());
    assert!(
        m.contains("did not authenticate") && m.contains("has expired"),
        "{m}"
    );
    let m = err(reviewer.authenticate("other-audience").await.unwrap_err());
    assert!(m.contains("not meant for mesh-control"), "{m}");
    let m = err(reviewer.authenticate("admin").await.unwrap_err());
    assert!(
        m.contains("\"kubernetes-admin\"") && m.contains("not a service account"),
        "{m}"
    );
    assert_eq!(api.lock().unwrap().seen.len(), 4, "failures are not cached");
}

// === the bundle ConfigMaps ===

fn namespace(name: &str, phase: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "100", "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": phase}
    })
}

fn bundle(version: u64, pem_source: &[String]) -> Arc<Bundle> {
    let roots = pem_source
        .iter()
        .flat_map(|p| mesh_api::tls::certs_from_pem(p.as_bytes()).unwrap())
        .collect();
    Arc::new(Bundle { roots, version })
}

async fn wait_applied(applied: &Applied, want: &[(&str, u64)]) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let now: BTreeMap<String, u64> = applied
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let want: BTreeMap<String, u64> = want.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "applied {now:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_bundle_configmap_is_applied_in_every_active_namespace() {
    let (client, api) = mock(Api {
        namespaces: vec![
            namespace("default", "Active"),
            namespace("shop", "Active"),
            namespace("old", "Terminating"),
        ],
        ..Api::default()
    });
    let (r1, _) = other_root();
    let (r2, _) = other_root();
    let (tx, rx) = tokio::sync::watch::channel(bundle(1, std::slice::from_ref(&r1)));
    let applied = Applied::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mesh_control::ca::kube::publish_bundle(
        client,
        rx,
        applied.clone(),
        Duration::from_secs(3600),
        async {
            let _ = stop_rx.await;
        },
    ));
    wait_applied(&applied, &[("default", 1), ("shop", 1)]).await;
    {
        let api = api.lock().unwrap();
        let patch = api
            .seen
            .iter()
            .find(|s| s.method == Method::PATCH && s.uri.contains("/namespaces/shop/"))
            .expect("a PATCH in shop");
        assert!(
            patch
                .uri
                .starts_with("/api/v1/namespaces/shop/configmaps/mesh-root-cert?")
                && patch.uri.contains("fieldManager=mesh-control")
                && patch.uri.contains("force=true"),
            "server-side apply, forced, as mesh-control: {}",
            patch.uri
        );
        assert_eq!(patch.content_type, "application/apply-patch+yaml");
        assert_eq!(patch.body["apiVersion"], "v1");
        assert_eq!(patch.body["kind"], "ConfigMap");
        assert_eq!(patch.body["metadata"]["name"], "mesh-root-cert");
        assert_eq!(patch.body["metadata"]["namespace"], "shop");
        let pem = patch.body["data"]["root-cert.pem"].as_str().unwrap();
        assert_eq!(
            mesh_api::tls::certs_from_pem(pem.as_bytes()).unwrap().len(),
            1
        );
        assert!(
            !api.seen.iter().any(|s| s.uri.contains("/namespaces/old/")),
            "a terminating namespace is skipped"
        );
    }
    // A rotation: both roots, everywhere.
    tx.send_replace(bundle(2, &[r1, r2]));
    wait_applied(&applied, &[("default", 2), ("shop", 2)]).await;
    {
        let api = api.lock().unwrap();
        let last = api
            .seen
            .iter()
            .rev()
            .find(|s| s.method == Method::PATCH && s.uri.contains("/namespaces/default/"))
            .unwrap();
        let pem = last.body["data"]["root-cert.pem"].as_str().unwrap();
        assert_eq!(
            mesh_api::tls::certs_from_pem(pem.as_bytes()).unwrap().len(),
            2
        );
    }
    let _ = stop_tx.send(());
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
}

// === rotation in Secrets, two replicas ===

fn signed_by(
    cert: &rustls_pki_types::CertificateDer<'_>,
    issuer: &rustls_pki_types::CertificateDer<'_>,
) -> bool {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert.as_ref()).unwrap();
    let (_, i) = X509Certificate::from_der(issuer.as_ref()).unwrap();
    c.verify_signature(Some(i.public_key())).is_ok()
}

fn signer_root(ca: &Ca) -> rustls_pki_types::CertificateDer<'static> {
    let issued = ca
        .issue(
            &"spiffe://cluster.local/ns/default/sa/a".parse().unwrap(),
            &[],
            Duration::from_secs(60),
        )
        .unwrap();
    ca.bundle()
        .roots
        .iter()
        .find(|r| signed_by(&issued.issued.chain[0], r))
        .expect("signed by a trusted root")
        .clone()
}

#[tokio::test]
async fn two_replicas_rotate_the_root_in_the_ca_secret_together() {
    let (cert, key) = other_root();
    let mut state = Api::default();
    state.store(secret(
        "mesh-ca",
        &[("root-cert.pem", &cert), ("root-key.pem", &key)],
    ));
    let (client, api) = mock(state);
    let a = open(client.clone()).await.unwrap();
    let b = open(client.clone()).await.unwrap();
    let old = a.bundle().roots[0].clone();

    // `mesh-control ca rotate --kubernetes`.
    let next = mesh_control::ca::stage_next_root(
        &Storage::Kube(KubeStore::new(client.clone(), NS)),
        "cluster.local",
    )
    .await
    .unwrap();
    assert!(next.is_ca);
    {
        let api = api.lock().unwrap();
        let data = api.secrets["mesh-ca"]["data"].as_object().unwrap();
        assert!(data.contains_key("next-root-cert.pem") && data.contains_key("next-root-key.pem"));
    }

    // Both replicas announce it (one writes rotation.json, the other adopts it).
    let t0 = std::time::SystemTime::now();
    a.tick(t0).await.unwrap();
    b.tick(t0).await.unwrap();
    assert_eq!(a.bundle().roots.len(), 2);
    assert_eq!(b.bundle().roots, a.bundle().roots);
    let new = a.bundle().roots[1].clone();
    assert_eq!(signer_root(&a), old);
    assert_eq!(signer_root(&b), old);

    // After the grace period both switch; only one promotion is written.
    let t1 = t0 + Duration::from_secs(31);
    a.tick(t1).await.unwrap();
    b.tick(t1).await.unwrap();
    assert_eq!(signer_root(&a), new);
    assert_eq!(signer_root(&b), new);
    {
        let api = api.lock().unwrap();
        let data = api.secrets["mesh-ca"]["data"].as_object().unwrap();
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "previous-root-cert.pem",
                "root-cert.pem",
                "root-key.pem",
                "rotation.json"
            ]
        );
        assert!(
            api.seen.iter().all(|s| s.method != Method::POST),
            "the Secret is updated, never recreated"
        );
    }
    assert_eq!(a.bundle().roots.len(), 2, "the old root is retiring");

    // Once the old root's certificates have expired, it leaves both bundles.
    let t2 = t1 + Duration::from_secs(3600 + 2);
    a.tick(t2).await.unwrap();
    b.tick(t2).await.unwrap();
    assert_eq!(a.bundle().roots, vec![new.clone()]);
    assert_eq!(b.bundle().roots, vec![new]);
    let api = api.lock().unwrap();
    let data = api.secrets["mesh-ca"]["data"].as_object().unwrap();
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    assert_eq!(keys, ["root-cert.pem", "root-key.pem"]);
}
