//! `meshctl check`: the API side from the scripted apiserver; the pod side (webhook over
//! TLS on 15017, debug API on 15014) from real servers on 127.0.0.1 reached through a
//! [`Dial`] that connects there instead of port-forwarding. Real time: these use sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use mesh_api::status::{CaStatus, CertInfo, RotationPhase, RotationStatus, SyncState};
use meshctl::check;
use meshctl::cluster::tunnel::{Dial, Tunnel};
use meshctl::control::kubernetes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Reply, fixture, fixture_json};
use crate::fixtures::{NOW, mk_proxy};
use crate::objects;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/mesh-system/deployments?labelSelector=app.kubernetes.io%2Fpart-of%3Dmesh";
const ROOT_CM: &str = "/api/v1/namespaces/mesh-system/configmaps/mesh-root-cert";
const PODS: &str = "/api/v1/namespaces/mesh-system/pods?labelSelector=app%3Dmesh-control";
const INJECTOR: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mesh-sidecar-injector";
const VALIDATOR: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/mesh-validator";

// === a test CA and the pod's servers ===

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn test_ca(name: &str) -> TestCa {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// The webhook's serving certificate for `mesh-control.mesh-system.svc`, signed by `ca`.
fn serving_cert(ca: &TestCa) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let p = CertificateParams::new(vec!["mesh-control.mesh-system.svc".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

/// Serves `handler(path)` over HTTP/1.1 on 127.0.0.1, TLS when `tls` is given.
async fn serve(
    tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    handler: fn(&str) -> (u16, String),
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|(chain, key)| {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (status, body) = handler(req.uri().path());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(StatusCode::from_u16(status).unwrap())
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    addr
}

fn webhook(path: &str) -> (u16, String) {
    match path {
        "/healthz" => (200, "ok".to_owned()),
        _ => (404, "not found".to_owned()),
    }
}

fn cert_info(subject: &str, not_after: i64) -> CertInfo {
    CertInfo {
        subject: subject.to_owned(),
        issuer: subject.to_owned(),
        serial: format!("01:{}", subject.len()),
        not_before: (NOW / 1000) as i64 - 86_400,
        not_after,
        spiffe_id: None,
        is_ca: true,
    }
}

fn debug_api(path: &str) -> (u16, String) {
    match path {
        "/debug/ca" => {
            let root = cert_info("CN=mesh root", (NOW / 1000) as i64 + 3650 * 86_400);
            let ca = CaStatus {
                now_unix_ms: NOW,
                trust_domain: "cluster.local".to_owned(),
                source: "kubernetes:mesh-system/mesh-ca".to_owned(),
                plug_in: false,
                signing: root.clone(),
                intermediates: vec![],
                trust_bundle: vec![root],
                rotation: RotationStatus {
                    phase: RotationPhase::Stable,
                    next: None,
                    switch_at_unix_ms: None,
                    retiring: vec![],
                },
                workload_cert_ttl_seconds: 86_400,
                problems: vec![],
            };
            (200, serde_json::to_string(&ca).unwrap())
        }
        "/debug/proxies" => {
            let mut list = crate::fixtures::mk_status_list();
            list.proxies = vec![
                mk_proxy(
                    "productpage-v1-6b7f",
                    "default",
                    "10.0.0.5",
                    SyncState::Synced,
                ),
                mk_proxy("reviews-v1-7f9c", "default", "10.0.0.6", SyncState::Synced),
            ];
            (200, serde_json::to_string(&list).unwrap())
        }
        _ => (404, "not found".to_owned()),
    }
}

/// Connects to local servers by port, recording what was dialed.
struct Local {
    ports: HashMap<u16, SocketAddr>,
    dialed: Mutex<Vec<String>>,
}

impl Dial for Local {
    async fn dial(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<Tunnel, kubernetes::Error> {
        self.dialed
            .lock()
            .unwrap()
            .push(format!("{namespace}/{pod}:{port}"));
        let addr = self.ports[&port];
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            kubernetes::Error::PortForward {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                port,
                reason: e.to_string(),
            }
        })?;
        Ok(Tunnel::direct(stream))
    }
}

async fn pod_servers(webhook_ca: &TestCa) -> Local {
    Local {
        ports: HashMap::from([
            (15017, serve(Some(serving_cert(webhook_ca)), webhook).await),
            (15014, serve(None, debug_api).await),
        ]),
        dialed: Mutex::default(),
    }
}

// === the API side ===

fn base64(pem: &str) -> Value {
    serde_json::to_value(ByteString(pem.as_bytes().to_vec())).unwrap()
}

fn webhook_config(name: &str, bundle: Option<&str>) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture(name).replace("\"${CA_BUNDLE}\"", "null")).unwrap();
    match bundle {
        Some(pem) => v["webhooks"][0]["clientConfig"]["caBundle"] = base64(pem),
        None => {
            v["webhooks"][0]["clientConfig"]
                .as_object_mut()
                .unwrap()
                .remove("caBundle");
        }
    }
    v.to_string()
}

fn root_configmap(pem: &str) -> String {
    let mut v = fixture_json("configmap-mesh-root-cert.json");
    v["data"]["root-cert.pem"] = json!(pem);
    v.to_string()
}

fn deployments(name: &str) -> String {
    let mut d = fixture_json(name);
    d.as_object_mut().unwrap().remove("kind");
    d.as_object_mut().unwrap().remove("apiVersion");
    json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": "1700"}, "items": [d]}).to_string()
}

fn plan(api: &mut ApiServer, root: &str, injector: Option<&str>, validator: Option<&str>) {
    api.once(
        Method::GET,
        DEPLOYMENTS,
        Reply::ok(deployments("deployment-mesh-control-available.json")),
    );
    api.once(Method::GET, ROOT_CM, Reply::ok(root_configmap(root)));
    api.once(
        Method::GET,
        INJECTOR,
        Reply::ok(webhook_config(
            "mutatingwebhookconfiguration-mesh.json",
            injector,
        )),
    );
    api.once(
        Method::GET,
        VALIDATOR,
        Reply::ok(webhook_config(
            "validatingwebhookconfiguration-mesh.json",
            validator,
        )),
    );
    api.once(
        Method::GET,
        PODS,
        Reply::fixture("pods-mesh-control-ready.json"),
    );
}

fn webhooks() -> Vec<kube::api::DynamicObject> {
    vec![objects::injector(), objects::validator()]
}

#[tokio::test]
async fn a_healthy_mesh_passes_every_check() {
    let ca = test_ca("mesh root");
    let local = pod_servers(&ca).await;
    let mut api = ApiServer::new();
    plan(&mut api, &ca.pem, Some(&ca.pem), Some(&ca.pem));
    let cluster = api.start();
    let mut out = Vec::new();
    let report = crate::bounded(check::check(
        &cluster,
        &local,
        webhooks(),
        "mesh-system",
        &mut out,
    ))
    .await
    .unwrap();
    api.finish();
    let out = String::from_utf8(out).unwrap();
    assert!(report.passed(), "{out}");
    assert_eq!(
        out,
        "✔ deployment mesh-system/mesh-control is available (1/1)\n\
         ✔ MutatingWebhookConfiguration mesh-sidecar-injector: caBundle holds mesh-control's root (1 webhook)\n\
         ✔ ValidatingWebhookConfiguration mesh-validator: caBundle holds mesh-control's root (1 webhook)\n\
         ✔ webhook https://mesh-control.mesh-system.svc:15017/healthz (pod mesh-system/mesh-control-6f9c8d7b54-q8w7n) answers 200 over TLS verified with the caBundle\n\
         ✔ CA healthy: signing with CN=mesh root (expires in 3650 days), 1 root trusted, rotation stable\n\
         ✔ proxies: 2 connected, all SYNCED\n\
         \n\
         the mesh in namespace mesh-system is healthy\n"
    );
    assert_eq!(
        *local.dialed.lock().unwrap(),
        [
            "mesh-system/mesh-control-6f9c8d7b54-q8w7n:15017",
            "mesh-system/mesh-control-6f9c8d7b54-q8w7n:15014",
            "mesh-system/mesh-control-6f9c8d7b54-q8w7n:15014",
        ]
    );
}

#[tokio::test]
async fn a_stale_or_missing_ca_bundle_fails() {
    let ca = test_ca("mesh root");
    let old = test_ca("old mesh root");
    let local = pod_servers(&ca).await;
    let mut api = ApiServer::new();
    plan(&mut api, &ca.pem, Some(&old.pem), None);
    let cluster = api.start();
    let mut out = Vec::new();
    let report = crate::bounded(check::check(
        &cluster,
        &local,
        webhooks(),
        "mesh-system",
        &mut out,
    ))
    .await
    .unwrap();
    api.finish();
    assert_eq!(
        report.failures,
        [
            "webhook inject.sidecar.mesh.dev of MutatingWebhookConfiguration mesh-sidecar-injector: its caBundle does not hold mesh-control's current root (ConfigMap mesh-system/mesh-root-cert): the API server cannot verify the webhook; mesh-control updates it when it runs: see `kubectl -n mesh-system logs deploy/mesh-control`",
            "webhook validate.config.mesh.dev of ValidatingWebhookConfiguration mesh-validator: it has no caBundle; mesh-control sets it when it runs: see `kubectl -n mesh-system logs deploy/mesh-control`",
        ]
    );
    // No usable bundle: the webhook is not probed; the CA and proxies still are.
    let dialed = local.dialed.lock().unwrap().clone();
    assert!(dialed.iter().all(|d| d.ends_with(":15014")), "{dialed:?}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("\n2 check(s) failed in namespace mesh-system\n"),
        "{out}"
    );
}

#[tokio::test]
async fn a_webhook_certificate_from_another_ca_fails_the_tls_check() {
    let ca = test_ca("mesh root");
    let other = test_ca("someone else");
    let local = pod_servers(&other).await;
    let mut api = ApiServer::new();
    plan(&mut api, &ca.pem, Some(&ca.pem), Some(&ca.pem));
    let cluster = api.start();
    let report = crate::bounded(check::check(
        &cluster,
        &local,
        webhooks(),
        "mesh-system",
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    api.finish();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert!(
        failure.starts_with("webhook https://mesh-control.mesh-system.svc:15017/healthz (pod mesh-system/mesh-control-6f9c8d7b54-q8w7n) cannot be reached: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{failure}"
    );
}

#[tokio::test]
async fn an_image_pull_failure_says_how_to_get_the_images_there() {
    let ca = test_ca("mesh root");
    let local = pod_servers(&ca).await;
    let mut api = ApiServer::new();
    api.once(
        Method::GET,
        DEPLOYMENTS,
        Reply::ok(deployments("deployment-mesh-control-progressing.json")),
    );
    api.always(
        Method::GET,
        PODS,
        Reply::fixture("pods-mesh-control-imagepullbackoff.json"),
    );
    api.once(Method::GET, ROOT_CM, Reply::ok(root_configmap(&ca.pem)));
    api.once(
        Method::GET,
        INJECTOR,
        Reply::ok(webhook_config(
            "mutatingwebhookconfiguration-mesh.json",
            Some(&ca.pem),
        )),
    );
    api.once(
        Method::GET,
        VALIDATOR,
        Reply::ok(webhook_config(
            "validatingwebhookconfiguration-mesh.json",
            Some(&ca.pem),
        )),
    );
    let cluster = api.start();
    let report = crate::bounded(check::check(
        &cluster,
        &local,
        webhooks(),
        "mesh-system",
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    api.finish();
    assert_eq!(
        report.failures,
        [
            "deployment mesh-system/mesh-control is not available: 0/1 available; Available=False (MinimumReplicasUnavailable): Deployment does not have minimum availability.\n  \
             pod mesh-control-6f9c8d7b54-q8w7n: container discovery is waiting: ImagePullBackOff (Back-off pulling image \"ghcr.io/mesh/mesh-control:0.1.0\"): the image ghcr.io/mesh/mesh-control:0.1.0 cannot be pulled: load it into the cluster (`kind load docker-image ghcr.io/mesh/mesh-control:0.1.0`, `minikube image load ghcr.io/mesh/mesh-control:0.1.0`) or install from a registry that has it: `meshctl install --set hub=REGISTRY`\n  \
             see `kubectl -n mesh-system describe pods -l app=mesh-control`",
            "cannot reach mesh-control: no ready mesh-control pod in namespace mesh-system (mesh-control-6f9c8d7b54-q8w7n (Pending)); see `kubectl -n mesh-system describe pods -l app=mesh-control`",
        ]
    );
    assert!(local.dialed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn says_to_install_when_the_mesh_is_not_there() {
    let mut api = ApiServer::new();
    api.once(
        Method::GET,
        DEPLOYMENTS,
        Reply::ok(json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": "5"}, "items": []}).to_string()),
    );
    let cluster = api.start();
    let local = Local {
        ports: HashMap::new(),
        dialed: Mutex::default(),
    };
    let report = crate::bounded(check::check(
        &cluster,
        &local,
        webhooks(),
        "mesh-system",
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    assert_eq!(api.finish().len(), 1, "nothing else is checked");
    assert_eq!(
        report.failures,
        [
            "the mesh is not installed in namespace mesh-system (no Deployment mesh-control labelled app.kubernetes.io/part-of=mesh): run `meshctl install`, or pass the namespace it is in with -n"
        ]
    );
}

#[tokio::test]
async fn a_forbidden_list_names_the_missing_permission() {
    let mut api = ApiServer::new();
    api.once(
        Method::GET,
        DEPLOYMENTS,
        Reply::status(
            403,
            fixture("forbidden-patch-deployments.json")
                .replace("cannot patch resource", "cannot list resource"),
        ),
    );
    let cluster = api.start();
    let local = Local {
        ports: HashMap::new(),
        dialed: Mutex::default(),
    };
    let report = crate::bounded(check::check(
        &cluster,
        &local,
        webhooks(),
        "mesh-system",
        &mut Vec::new(),
    ))
    .await
    .unwrap();
    api.finish();
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].starts_with(
            "permission denied: list deployments.apps in namespace mesh-system is not allowed ("
        ),
        "{}",
        report.failures[0]
    );
    assert!(
        report.failures[0].ends_with(
            "ask for a role that grants list on deployments.apps in namespace mesh-system"
        )
    );
}
