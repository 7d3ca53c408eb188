//! The webhook configurations' `caBundle` upkeep against a mocked API server
//! (`tower-test`), with replies in the shapes a real apiserver sends: the configuration
//! `meshctl install` applied (no `caBundle`) is patched with the trust bundle, a current
//! one is left alone, a root rotation patches it again, a 403 is retried, and a
//! configuration that appears later (install order) is patched when it does.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::client::Body;
use mesh_control::ca::Bundle;
use mesh_control::webhook::ca_bundle;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

const TIMEOUT: Duration = Duration::from_secs(30);
const NAME: &str = "mesh-sidecar-injector";
const COLLECTION: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";

fn bundle(version: u64, der: &[u8]) -> Arc<Bundle> {
    Arc::new(Bundle {
        roots: vec![CertificateDer::from(der.to_vec())],
        version,
    })
}

fn b64(bundle: &Bundle) -> String {
    mesh_api::tls::base64(bundle.pem().as_bytes())
}

/// The configuration as `meshctl install` leaves it, with `ca_bundle` when given.
fn config(resource_version: &str, ca_bundle: Option<&str>) -> Value {
    let mut client_config = json!({
        "service": {"namespace": "mesh-system", "name": "mesh-control", "path": "/inject", "port": 15017}
    });
    if let Some(b) = ca_bundle {
        client_config["caBundle"] = json!(b);
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": NAME,
            "uid": "5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
            "resourceVersion": resource_version,
            "generation": 1,
            "creationTimestamp": "2026-11-24T10:00:00Z",
            "labels": {"app.kubernetes.io/part-of": "mesh", "app.kubernetes.io/managed-by": "meshctl"}
        },
        "webhooks": [{
            "name": "sidecar-injector.mesh.dev",
            "clientConfig": client_config,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}],
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "namespaceSelector": {"matchLabels": {"mesh-injection": "enabled"}},
            "objectSelector": {},
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
            "reinvocationPolicy": "Never"
        }]
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfigurationList",
        "metadata": {"resourceVersion": "100"},
        "items": items
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    })
}

/// A request the mock received: method, path and query, content type, body.
#[derive(Debug)]
struct Seen {
    method: Method,
    uri: String,
    content_type: String,
    body: Value,
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Respond = tower_test::mock::SendResponse<Response<Body>>;

/// Waits for the next request, answering nothing yet.
async fn next(handle: &mut Handle) -> (Seen, Respond) {
    let (req, send) = tokio::time::timeout(TIMEOUT, handle.next_request())
        .await
        .expect("a request within the timeout")
        .expect("the client is alive");
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let seen = Seen {
        method: parts.method,
        uri: parts.uri.to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        },
    };
    (seen, send)
}

fn reply(send: Respond, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// A watch answered with one event line (the body then ends, and the watcher re-watches).
fn reply_watch(send: Respond, events: &[Value]) {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    send.send_response(
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
    );
}

/// Answers the initial list with `items` and returns the next request (the watch or a
/// patch).
async fn expect_list(handle: &mut Handle, items: Vec<Value>) {
    let (seen, send) = next(handle).await;
    assert_eq!(seen.method, Method::GET, "{seen:?}");
    assert!(seen.uri.starts_with(COLLECTION), "{seen:?}");
    assert!(
        seen.uri
            .contains("fieldSelector=metadata.name%3Dmesh-sidecar-injector"),
        "only the one configuration is watched: {seen:?}"
    );
    assert!(!seen.uri.contains("watch=true"), "{seen:?}");
    reply(send, 200, &list(items));
}

/// Expects the caBundle patch and checks it sets `want`.
async fn expect_patch(handle: &mut Handle, want: &str) -> Respond {
    let (seen, send) = next(handle).await;
    assert_eq!(seen.method, Method::PATCH, "{seen:?}");
    assert!(
        seen.uri.starts_with(&format!("{COLLECTION}/{NAME}")),
        "{seen:?}"
    );
    assert_eq!(seen.content_type, "application/json-patch+json");
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/webhooks/0/name", "value": "sidecar-injector.mesh.dev"},
            {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": want},
        ])
    );
    send
}

/// Expects a watch request and keeps it open (returns its responder).
async fn expect_watch(handle: &mut Handle) -> Respond {
    let (seen, send) = next(handle).await;
    assert_eq!(seen.method, Method::GET, "{seen:?}");
    assert!(seen.uri.contains("watch=true"), "{seen:?}");
    send
}

fn start(
    first: Arc<Bundle>,
) -> (
    Handle,
    watch::Sender<Arc<Bundle>>,
    mpsc::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (tx, rx) = watch::channel(first);
    let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
    let task = tokio::spawn(ca_bundle::keep_current::<MutatingWebhookConfiguration>(
        client,
        NAME.to_owned(),
        rx,
        async move {
            let _ = stop_rx.recv().await;
        },
    ));
    (handle, tx, stop_tx, task)
}

async fn stop(stop: mpsc::Sender<()>, task: tokio::task::JoinHandle<()>) {
    stop.send(()).await.unwrap();
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("stops")
        .unwrap();
}

#[tokio::test]
async fn the_installed_configuration_gets_the_bundle_and_a_rotation_updates_it() {
    let first = bundle(1, b"root-one");
    let (mut handle, bundles, stopper, task) = start(first.clone());

    expect_list(&mut handle, vec![config("7", None)]).await;
    let send = expect_patch(&mut handle, &b64(&first)).await;
    reply(send, 200, &config("8", Some(&b64(&first))));

    // The watch reports the patched object: current, nothing more to do.
    let watch = expect_watch(&mut handle).await;
    drop(watch); // held open would also do; a dropped responder is a failed watch

    // A rotation: the bundle now has two roots; the configuration follows.
    let rotated = Arc::new(Bundle {
        roots: vec![
            CertificateDer::from(b"root-two".to_vec()),
            CertificateDer::from(b"root-one".to_vec()),
        ],
        version: 2,
    });
    bundles.send(rotated.clone()).unwrap();
    // Requests may interleave with the watcher's retry; skip watch and list requests.
    loop {
        let (seen, send) = next(&mut handle).await;
        if seen.method == Method::PATCH {
            assert_eq!(
                seen.body[1]["value"],
                json!(b64(&rotated)),
                "the patch carries both roots"
            );
            reply(send, 200, &config("9", Some(&b64(&rotated))));
            break;
        }
        if seen.uri.contains("watch=true") {
            reply_watch(send, &[]);
        } else {
            reply(send, 200, &list(vec![config("8", Some(&b64(&first)))]));
        }
    }
    stop(stopper, task).await;
}

#[tokio::test]
async fn a_current_configuration_is_left_alone_and_a_late_one_is_patched_when_it_appears() {
    let first = bundle(1, b"root-one");
    let (mut handle, _bundles, stopper, task) = start(first.clone());

    // Not installed yet (mesh-control starts before `meshctl install` applies the webhooks).
    expect_list(&mut handle, vec![]).await;
    let watch = expect_watch(&mut handle).await;
    // It appears: an ADDED event on the watch.
    reply_watch(
        watch,
        &[json!({"type": "ADDED", "object": config("11", None)})],
    );
    let send = expect_patch(&mut handle, &b64(&first)).await;
    reply(send, 200, &config("12", Some(&b64(&first))));
    stop(stopper, task).await;

    // Already current: no patch, only the watch.
    let (mut handle, _bundles, stopper, task) = start(first.clone());
    expect_list(&mut handle, vec![config("12", Some(&b64(&first)))]).await;
    let _watch = expect_watch(&mut handle).await;
    stop(stopper, task).await;
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_patch_is_retried() {
    let first = bundle(1, b"root-one");
    let (mut handle, _bundles, stopper, task) = start(first.clone());
    expect_list(&mut handle, vec![config("7", None)]).await;
    let send = expect_patch(&mut handle, &b64(&first)).await;
    reply(
        send,
        403,
        &status(
            403,
            "Forbidden",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io \"mesh-sidecar-injector\" is forbidden: User \"system:serviceaccount:mesh-system:mesh-control\" cannot patch resource \"mutatingwebhookconfigurations\" in API group \"admissionregistration.k8s.io\" at the cluster scope",
        ),
    );
    // The watch opens; after RETRY the patch is sent again.
    let mut watch = None;
    loop {
        let (seen, send) = next(&mut handle).await;
        if seen.method == Method::PATCH {
            reply(send, 200, &config("8", Some(&b64(&first))));
            break;
        }
        assert!(seen.uri.contains("watch=true"), "{seen:?}");
        watch = Some(send);
    }
    drop(watch);
    stop(stopper, task).await;
}
