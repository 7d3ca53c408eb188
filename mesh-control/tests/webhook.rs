//! The admission webhook against AdmissionReviews shaped as the apiserver sends them
//! (`tests/fixtures/admission`), and over real TLS.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use mesh_api::inject::{self, Context, Outcome};
use mesh_control::webhook;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

mod support;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The webhook's answer to `body`, as JSON.
fn answer(body: &[u8], ctx: &Context) -> Value {
    let out = webhook::review(body, ctx).expect("a review is answered");
    serde_json::from_slice(&out).expect("the answer is JSON")
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// What applying the answer's patch to the review's object gives.
fn patched(review: &Value, answer: &Value) -> Value {
    let response = &answer["response"];
    assert_eq!(response["patchType"], "JSONPatch", "{answer}");
    let bytes = base64_decode(response["patch"].as_str().expect("a base64 patch"));
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSONPatch");
    for op in &patch.0 {
        assert!(
            matches!(
                op,
                json_patch::PatchOperation::Add(_) | json_patch::PatchOperation::Replace(_)
            ),
            "the patch only adds and replaces: {op:?}"
        );
    }
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch.0).expect("the patch applies to the object");
    object
}

fn ctx() -> Context {
    Context::default()
}

/// What `inject_pod` makes of the review's object, in the request's namespace.
fn expected(review: &Value, ctx: &Context) -> (Pod, Vec<String>) {
    let pod: Pod = serde_json::from_value(review["request"]["object"].clone()).unwrap();
    let ctx = Context {
        namespace: review["request"]["namespace"].as_str().unwrap().to_owned(),
        ..ctx.clone()
    };
    match inject::inject_pod(&pod, &ctx).expect("injectable") {
        Outcome::Injected { pod, warnings } => (*pod, warnings),
        Outcome::Skipped(s) => panic!("skipped: {s}"),
    }
}

/// Checks an injected answer; returns the patched object.
fn check_injected(name: &str, ctx: &Context) -> Value {
    let body = fixture(name);
    let review: Value = serde_json::from_slice(&body).unwrap();
    let answer = answer(&body, ctx);
    let response = &answer["response"];
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(response["uid"], review["request"]["uid"]);
    assert_eq!(response["allowed"], true, "{answer}");

    let object = patched(&review, &answer);
    let pod: Pod = serde_json::from_value(object.clone()).expect("the patched object is a Pod");
    let (want, warnings) = expected(&review, ctx);
    assert_eq!(pod, want, "{name}: the patched pod is the injected pod");
    let got_warnings: Vec<String> = response
        .get("warnings")
        .map(|w| serde_json::from_value(w.clone()).unwrap())
        .unwrap_or_default();
    assert_eq!(got_warnings, warnings);
    // The review object had no namespace; the patch adds none.
    assert!(object["metadata"].get("namespace").is_none());
    object
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name} in {pod}"))
}

#[test]
fn a_deployment_pod_is_injected_and_keeps_fields_k8s_openapi_does_not_know() {
    let object = check_injected("deployment-pod.json", &ctx());
    assert_eq!(
        object["spec"]["someFutureField"],
        serde_json::json!({"mode": "Strict", "items": [1, 2]})
    );
    assert_eq!(object["metadata"]["someFutureMetadata"], "kept");
    assert_eq!(
        container(&object, "containers", "server")["futureContainerField"],
        serde_json::json!({"enabled": true})
    );
    // Native sidecars (the default): init containers mesh-init, mesh-proxy.
    let inits: Vec<&str> = names(&object, "initContainers");
    assert_eq!(inits, ["mesh-init", "mesh-proxy"]);
    assert_eq!(
        object["metadata"]["ownerReferences"][0]["kind"],
        "ReplicaSet"
    );
    assert_eq!(object["metadata"]["generateName"], "frontend-7d9c8b6f5d-");
}

#[test]
fn a_deployment_pod_is_injected_with_classic_sidecars_too() {
    let classic = Context {
        native_sidecars: false,
        ..ctx()
    };
    let object = check_injected("deployment-pod.json", &classic);
    let names: Vec<&str> = names(&object, "containers");
    assert_eq!(names, ["mesh-proxy", "server"]);
    assert_eq!(
        container(&object, "containers", "server")["futureContainerField"],
        serde_json::json!({"enabled": true})
    );
}

#[test]
fn a_job_pod_is_injected_and_classic_mode_warns_about_completion() {
    check_injected("job-pod.json", &ctx());
    let classic = Context {
        native_sidecars: false,
        ..ctx()
    };
    let body = fixture("job-pod.json");
    let answer = answer(&body, &classic);
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("quitquitquit"), "{warnings}");
    check_injected("job-pod.json", &classic);
}

#[test]
fn probes_are_rewritten_through_the_proxy() {
    let object = check_injected("probes-pod.json", &ctx());
    let args = &container(&object, "initContainers", "mesh-init")["args"];
    assert_eq!(
        args,
        &serde_json::json!(["init"]),
        "no port excluded from capture"
    );
    // The liveness probe's named port "health" is 8086; readiness is tcpSocket 8087; the
    // startup probe names a host, so it is left as it is.
    let server = container(&object, "containers", "server");
    for (probe, path) in [
        ("livenessProbe", "/app-health/server/livez"),
        ("readinessProbe", "/app-health/server/readyz"),
    ] {
        assert_eq!(
            server[probe]["httpGet"],
            serde_json::json!({"path": path, "port": 15021, "scheme": "HTTP"}),
            "{probe}"
        );
        assert_eq!(server[probe]["periodSeconds"], 10, "{probe}");
        assert!(server[probe].get("tcpSocket").is_none(), "{probe}");
    }
    assert_eq!(server["startupProbe"]["httpGet"]["port"], 9999);
    assert_eq!(server["startupProbe"]["httpGet"]["host"], "10.0.0.9");
    let env = container(&object, "initContainers", "mesh-proxy")["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "MESH_APP_PROBES")
        .unwrap_or_else(|| panic!("no MESH_APP_PROBES in the proxy's env"))["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&env).unwrap(),
        serde_json::json!({
            "/app-health/server/livez": {
                "httpGet": {"path": "/live", "port": 8086, "scheme": "HTTP"},
                "timeoutSeconds": 1,
            },
            "/app-health/server/readyz": {"tcpSocket": {"port": 8087}, "timeoutSeconds": 1},
        })
    );
}

#[test]
fn an_opted_out_pod_is_allowed_without_patch_or_warning() {
    let answer = answer(&fixture("opted-out-pod.json"), &ctx());
    let response = &answer["response"];
    assert_eq!(response["uid"], "e1d2c3b4-a5f6-4789-8abc-def012345678");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{answer}");
    assert!(response.get("warnings").is_none(), "{answer}");
}

#[test]
fn an_already_injected_pod_is_allowed_without_patch() {
    // By an older injector: the warning says how to upgrade.
    let answer = answer(&fixture("already-injected-pod.json"), &ctx());
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{answer}");
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(warning.contains("already injected"), "{warning}");
    assert!(warning.contains("0.0.1"), "{warning}");

    // By this injector (the webhook's own output sent again): idempotent and silent.
    let body = fixture("deployment-pod.json");
    let mut review: Value = serde_json::from_slice(&body).unwrap();
    let first = webhook::review(&body, &ctx()).unwrap();
    review["request"]["object"] = patched(&review, &serde_json::from_slice(&first).unwrap());
    let again = self::answer(&serde_json::to_vec(&review).unwrap(), &ctx());
    assert_eq!(again["response"]["allowed"], true);
    assert!(again["response"].get("patch").is_none(), "{again}");
    assert!(again["response"].get("warnings").is_none(), "{again}");
}

#[test]
fn an_invalid_annotation_is_a_clear_denial() {
    let answer = answer(&fixture("invalid-annotation-pod.json"), &ctx());
    let response = &answer["response"];
    assert_eq!(response["uid"], "f0e1d2c3-b4a5-4697-8877-665544332211");
    assert_eq!(response["allowed"], false);
    assert!(response.get("patch").is_none(), "{answer}");
    assert_eq!(response["status"]["code"], 400);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("traffic.sidecar.mesh.dev/excludeOutboundPorts"),
        "{message}"
    );
    assert!(message.contains("\"5432,http\""), "{message}");
}

#[test]
fn dry_run_gets_the_same_answer() {
    let body = fixture("deployment-pod.json");
    let mut review: Value = serde_json::from_slice(&body).unwrap();
    review["request"]["dryRun"] = Value::Bool(true);
    let dry = answer(&serde_json::to_vec(&review).unwrap(), &ctx());
    assert_eq!(dry, answer(&body, &ctx()));
}

#[test]
fn the_request_namespace_decides_the_identity() {
    // A namespace that cannot be part of a SPIFFE id: the pod is denied, which shows the
    // request's namespace is used when the object has none.
    let body = fixture("deployment-pod.json");
    let mut review: Value = serde_json::from_slice(&body).unwrap();
    review["request"]["namespace"] = Value::String("Bad Namespace".to_owned());
    let answer = answer(&serde_json::to_vec(&review).unwrap(), &ctx());
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("Bad Namespace"), "{message}");
}

// === validation ===

/// The validation webhook's answer to `body`, as JSON.
fn validated(body: &[u8]) -> Value {
    let options = mesh_api::config::validate::Options::default();
    let out = webhook::review_config(body, &options).expect("a review is answered");
    serde_json::from_slice(&out).expect("the answer is JSON")
}

#[test]
fn invalid_config_is_denied_with_every_problem_named() {
    let answer = validated(&fixture("virtualservice-bad-weights.json"));
    let response = &answer["response"];
    assert_eq!(response["uid"], "3f1c2b9e-84d7-4e0a-9b6c-5d2e1f0a7c48");
    assert_eq!(response["allowed"], false, "{answer}");
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(response["status"]["reason"], "Invalid");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("VirtualService bookinfo/reviews is invalid:"),
        "{message}"
    );
    assert!(message.contains("MSH0101 spec.http[0].route"), "{message}");
    assert!(message.contains("95"), "{message}");
    assert!(message.contains("(fix: "), "{message}");
    // The subsets' DestinationRule may be applied next: a warning, not a denial.
    assert!(!message.contains("MSH0103"), "{message}");
    let warnings = response["warnings"].to_string();
    assert!(warnings.contains("MSH0103"), "{warnings}");
}

#[test]
fn valid_config_is_allowed_with_warnings_for_what_needs_the_rest_of_the_mesh() {
    let answer = validated(&fixture("virtualservice-canary.json"));
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{answer}");
    assert!(response.get("patch").is_none(), "{answer}");
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|w| w.starts_with("MSH0103 spec.http[0].route[")),
        "{warnings:?}"
    );
}

#[test]
fn an_update_is_checked_like_a_create() {
    // A principal written with `spiffe://` and an unknown condition key: both named.
    let answer = validated(&fixture("authorizationpolicy-update.json"));
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "{answer}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("AuthorizationPolicy bookinfo/ratings-viewer is invalid:"),
        "{message}"
    );
    assert!(message.contains("MSH0201"), "{message}");
    assert!(message.contains("MSH0202"), "{message}");
    assert!(message.contains("source.nonsense"), "{message}");
    // The valid header condition is not reported.
    assert!(!message.contains("x-user"), "{message}");
}

#[test]
fn deletes_and_status_updates_are_not_checked() {
    for name in ["virtualservice-delete.json", "virtualservice-status.json"] {
        let answer = validated(&fixture(name));
        assert_eq!(answer["response"]["allowed"], true, "{name}: {answer}");
        assert!(
            answer["response"].get("warnings").is_none(),
            "{name}: {answer}"
        );
    }
    // Pods are not config: the validator lets them through (and the injector them).
    let answer = validated(&fixture("deployment-pod.json"));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

// === over TLS ===

struct Server {
    addr: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> Server {
    let provider = mesh_api::tls::provider();
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(issued.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(webhook::serve(
        listener,
        Arc::new(server),
        Arc::new(webhook::Settings {
            inject: ctx(),
            ..webhook::Settings::default()
        }),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        client: Arc::new(client),
        stop: Some(stop),
    }
}

async fn tls(
    server: &Server,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = (*server.client).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

fn post(body: Vec<u8>) -> http::Request<Full<Bytes>> {
    post_to("/inject", body)
}

fn post_to(path: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("https://localhost{path}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn serves_reviews_over_tls_with_http1_and_http2() {
    let server = start().await;
    let body = fixture("deployment-pod.json");
    let want = answer(&body, &ctx());

    let io = TokioIo::new(tls(&server, b"http/1.1").await);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(post(body.clone())).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    let got: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(got, want);

    let health = http::Request::get("https://localhost/healthz")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(health).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);

    let io = TokioIo::new(tls(&server, b"h2").await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(post(body)).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let got: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(got, want);

    let garbage = send
        .send_request(post(b"{\"kind\":".to_vec()))
        .await
        .unwrap();
    assert_eq!(garbage.status(), http::StatusCode::BAD_REQUEST);

    // Validation on the same server and connection.
    let body = fixture("virtualservice-bad-weights.json");
    let resp = send
        .send_request(post_to("/validate", body.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let got: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(got, validated(&body));
    assert_eq!(got["response"]["allowed"], false);
}

#[tokio::test]
async fn a_body_over_4_mib_is_413() {
    let server = start().await;
    let io = TokioIo::new(tls(&server, b"h2").await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(post(vec![b' '; 5 * 1024 * 1024]))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

/// The names in the pod's list `field` (containers, initContainers, volumes).
fn names<'a>(object: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    object["spec"][field]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

// === in mesh-control ===

/// mesh-control with `--webhook-addr` serves both webhooks with its CA-issued certificate,
/// valid for the service name the apiserver dials and verified with the trust bundle (the
/// `caBundle` it writes into the configurations); the `--proxy-*` flags shape injection.
#[tokio::test]
async fn mesh_control_serves_the_webhooks_with_a_certificate_the_apiserver_accepts() {
    let config = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let cp = support::ControlPlane::start(
        config.path(),
        state.path(),
        &[
            "--webhook-addr",
            "127.0.0.1:0",
            "--proxy-image",
            "registry.local:5000/mesh/mesh-proxy:dev",
            "--proxy-access-log",
            "--proxy-trace-sampling",
            "100",
        ],
    )
    .await;
    let addr = cp.bound.webhook.expect("the webhook listens");

    let mut roots = rustls::RootCertStore::empty();
    for root in &cp.ca.bundle().roots {
        roots.add(root.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(
            ServerName::try_from("mesh-control.mesh-system.svc").unwrap(),
            tcp,
        )
        .await
        .expect("the serving certificate is valid for mesh-control.mesh-system.svc");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    let body = fixture("deployment-pod.json");
    let review: Value = serde_json::from_slice(&body).unwrap();
    let resp = send.send_request(post(body)).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let answer: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let pod = patched(&review, &answer);
    let proxy = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == inject::PROXY_CONTAINER)
        .expect("the proxy is injected");
    assert_eq!(proxy["image"], "registry.local:5000/mesh/mesh-proxy:dev");
    let env = proxy["env"].to_string();
    assert!(env.contains("MESH_ACCESS_LOG"), "{env}");
    assert!(env.contains("MESH_TRACE_SAMPLING"), "{env}");
    assert!(env.contains("mesh-control.mesh-system.svc:15012"), "{env}");

    let body = fixture("virtualservice-bad-weights.json");
    let resp = send.send_request(post_to("/validate", body)).await.unwrap();
    let answer: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    cp.stop().await;
}

#[tokio::test]
async fn bad_proxy_flags_stop_mesh_control_at_start() {
    use clap::Parser as _;
    let config = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let argv = [
        "mesh-control",
        "--config-dir",
        config.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
        "--discovery-addr",
        "127.0.0.1:0",
        "--debug-addr",
        "127.0.0.1:0",
        "--webhook-addr",
        "127.0.0.1:0",
        "--proxy-memory-limit",
        "lots",
    ];
    let cli = mesh_control::cli::Cli::try_parse_from(argv).unwrap();
    let err = mesh_control::app::App::build(cli.server).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("--proxy-memory-limit"), "{message}");
    assert!(message.contains("\"lots\""), "{message}");
    assert!(message.contains("64Mi"), "{message}");

    let argv = [
        "mesh-control",
        "--config-dir",
        config.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
        "--injector-config",
        "mesh-sidecar-injector",
    ];
    let cli = mesh_control::cli::Cli::try_parse_from(argv).unwrap();
    let err = mesh_control::app::App::build(cli.server).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("--injector-config"), "{message}");
    assert!(message.contains("--kubernetes"), "{message}");
}
