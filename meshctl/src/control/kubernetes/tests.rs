//! Pod selection and error mapping against a `tower-test` mock API server replaying real
//! apiserver JSON (`testdata/`). One scenario per test: the requests expected, in order,
//! and the answers. The websocket of a working port-forward is not mocked.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use tower_test::mock;

use super::*;

const PODS: &str = include_str!("testdata/pods.json");
const PODS_EMPTY: &str = include_str!("testdata/pods-empty.json");
const FORBIDDEN: &str = include_str!("testdata/forbidden.json");
const UNAUTHORIZED: &str = include_str!("testdata/unauthorized.json");

/// One expected request (method, path, a piece of the query) and its answer.
struct Step {
    method: Method,
    path: String,
    query_contains: &'static str,
    status: StatusCode,
    body: String,
}

fn list_pods(status: StatusCode, body: impl Into<String>) -> Step {
    Step {
        method: Method::GET,
        path: "/api/v1/namespaces/mesh-system/pods".to_owned(),
        query_contains: "labelSelector=app%3Dmesh-control",
        status,
        body: body.into(),
    }
}

/// A client whose API server answers `steps` in order and fails the test on any other
/// request. Returns the client and the server task (join it to see its assertions).
fn scenario(steps: Vec<Step>) -> (kube::Client, tokio::task::JoinHandle<()>) {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        for step in steps {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), step.method);
            assert_eq!(req.uri().path(), step.path);
            let query = req.uri().query().unwrap_or_default();
            assert!(
                query.contains(step.query_contains),
                "query {query:?} lacks {:?}",
                step.query_contains
            );
            send.send_response(
                Response::builder()
                    .status(step.status)
                    .header("content-type", "application/json")
                    .body(Body::from(step.body.into_bytes()))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(svc, "default"), server)
}

/// Runs `f` with a bound, so a missing answer fails instead of hanging.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("the scenario finished in time")
}

#[tokio::test]
async fn picks_the_ready_pod_by_name() {
    let (client, server) = scenario(vec![list_pods(StatusCode::OK, PODS)]);
    let pod = bounded(find_pod(&client, "mesh-system")).await.unwrap();
    // Of three pods, one is not Ready yet and one is terminating (though still Ready).
    assert_eq!(pod, "mesh-control-6f9c8d7b54-q8w7n");
    server.await.unwrap();
}

#[tokio::test]
async fn says_to_install_when_there_is_no_pod() {
    let (client, server) = scenario(vec![list_pods(StatusCode::OK, PODS_EMPTY)]);
    let err = bounded(find_pod(&client, "mesh-system")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no ready mesh-control pod in namespace mesh-system: run `meshctl install`"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn names_the_pods_that_are_not_ready() {
    let mut pods: serde_json::Value = serde_json::from_str(PODS).unwrap();
    pods["items"].as_array_mut().unwrap().remove(1);
    let (client, server) = scenario(vec![list_pods(StatusCode::OK, pods.to_string())]);
    let err = bounded(find_pod(&client, "mesh-system")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no ready mesh-control pod in namespace mesh-system (mesh-control-5d8b7c6a43-a1b2c (terminating), mesh-control-6f9c8d7b54-x2k4p (Running, not Ready)); see `kubectl -n mesh-system describe pods -l app=mesh-control`"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn names_the_missing_permission_to_list_pods() {
    let (client, server) = scenario(vec![list_pods(StatusCode::FORBIDDEN, FORBIDDEN)]);
    let err = bounded(find_pod(&client, "mesh-system")).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden { verb: "list", .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "permission denied: list pods in namespace mesh-system is not allowed (pods is forbidden: User \"system:serviceaccount:ci:deployer\" cannot list resource \"pods\" in API group \"\" in the namespace \"mesh-system\"); ask for a role that grants list on pods in mesh-system"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn says_when_credentials_are_rejected() {
    let (client, server) = scenario(vec![list_pods(StatusCode::UNAUTHORIZED, UNAUTHORIZED)]);
    let err = bounded(find_pod(&client, "mesh-system")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Kubernetes API server rejected the credentials (Unauthorized); log in again or pick another --context"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn reports_other_api_errors_with_their_status() {
    let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcdserver: request timed out","reason":"InternalError","code":500}"#;
    // kube retries nothing on a plain client; one answer is enough.
    let (client, server) = scenario(vec![list_pods(StatusCode::INTERNAL_SERVER_ERROR, status)]);
    let err = bounded(find_pod(&client, "mesh-system")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Kubernetes API server refused to list pods in namespace mesh-system: 500 InternalError: etcdserver: request timed out"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn names_the_missing_permission_to_port_forward() {
    let pod = "mesh-control-6f9c8d7b54-q8w7n";
    let (client, server) = scenario(vec![Step {
        method: Method::GET,
        path: format!("/api/v1/namespaces/mesh-system/pods/{pod}/portforward"),
        query_contains: "ports=15014",
        status: StatusCode::FORBIDDEN,
        body: FORBIDDEN.replace(
            "list resource \\\"pods\\\"",
            "get resource \\\"pods/portforward\\\"",
        ),
    }]);
    let Err(err) = bounded(port_forward(&client, "mesh-system", pod, 15014)).await else {
        panic!("the port-forward was refused");
    };
    assert_eq!(
        err.to_string(),
        "permission denied: port-forward to pods/portforward in namespace mesh-system is not allowed (the upgrade to a websocket was answered 403 Forbidden); ask for a role that grants get and create on pods/portforward in mesh-system"
    );
    server.await.unwrap();
}

#[test]
fn reads_readiness_from_phase_conditions_and_deletion() {
    let list: k8s_openapi::List<Pod> = serde_json::from_str(PODS).unwrap();
    let why: Vec<Option<String>> = list.items.iter().map(why_not_ready).collect();
    assert_eq!(
        why,
        [
            Some("Running, not Ready".to_owned()),
            None,
            Some("terminating".to_owned())
        ]
    );
    let mut pending = list.items[1].clone();
    pending.status.as_mut().unwrap().phase = Some("Pending".to_owned());
    assert_eq!(why_not_ready(&pending).as_deref(), Some("Pending"));
    assert_eq!(why_not_ready(&Pod::default()).as_deref(), Some("Unknown"));
}
