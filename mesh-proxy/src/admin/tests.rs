use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use prometheus_client::registry::Registry;

use super::{routes::logging_filter, *};
use crate::telemetry::metrics::Metrics;

#[test]
fn readiness_reports_reasons_and_mirrors_the_gauge() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let gauge = metrics.ready_gauge();
    gauge.set(7);
    let r = Readiness::with_gauge(WAITING_FOR_CONFIG, gauge.clone());
    assert_eq!(gauge.get(), 0);
    assert_eq!(r.status(), Err(WAITING_FOR_CONFIG.to_owned()));
    r.set_not_ready(WAITING_FOR_CERTIFICATE);
    assert_eq!(r.status(), Err("waiting for certificate".to_owned()));
    r.set_ready();
    assert!(r.is_ready());
    assert_eq!(gauge.get(), 1);
    let clone = r.clone();
    clone.set_not_ready(String::from(DRAINING));
    assert_eq!(r.status(), Err("draining".to_owned()));
    assert_eq!(gauge.get(), 0);
    r.set_not_ready(format!("waiting for {}", "certificate"));
    assert!(format!("{r:?}").contains("waiting for certificate"));
}

#[test]
fn logging_query_validation() {
    assert_eq!(logging_filter("level=debug"), Ok("debug".into()));
    assert_eq!(logging_filter("level=WARN"), Ok("warn".into()));
    assert_eq!(
        logging_filter("filter=mesh_proxy%3Dtrace,info"),
        Ok("mesh_proxy=trace,info".into())
    );
    for (q, needle) in [
        ("", "nothing to change"),
        ("level=loud", "unknown level \"loud\""),
        ("level=debug&filter=info", "exactly one"),
        ("level=debug&level=info", "exactly one"),
        ("verbose=1", "unknown query parameter \"verbose\""),
        ("filter=", "empty filter"),
        ("level=%zz", "bad percent-encoding"),
    ] {
        let err = logging_filter(q).unwrap_err();
        assert!(err.contains(needle), "{q}: {err}");
    }
}

fn state() -> (AdminState, watch::Receiver<bool>) {
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = AdminState::new(
        Arc::new(|| None),
        Readiness::new(WAITING_FOR_CONFIG),
        SharedRegistry::new(Registry::default()),
        Arc::new(|| serde_json::json!({"clusters": []})),
        None,
        shutdown,
    );
    (state, shutdown_rx)
}

async fn call(state: &AdminState, method: &str, uri: &str) -> (StatusCode, String) {
    let (parts, ()) = Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .unwrap()
        .into_parts();
    let r = routes::admin(state.clone(), parts).await;
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn admin_routes_without_a_network() {
    let (state, shutdown) = state();
    let (s, body) = call(&state, "GET", "/").await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/config_dump",
        "/clusters",
        "/logging",
        "/quitquitquit",
        "/ready",
    ] {
        assert!(body.contains(path), "{body}");
    }
    let (s, body) = call(&state, "GET", "/config_dump").await;
    assert_eq!(s, StatusCode::OK);
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        dump["config"].is_null() && dump["version"].is_null(),
        "{dump}"
    );
    assert_eq!(call(&state, "HEAD", "/clusters").await.0, StatusCode::OK);
    assert_eq!(
        call(&state, "GET", "/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // No log handle: reading or changing the filter is not available.
    assert_eq!(
        call(&state, "GET", "/logging").await.0,
        StatusCode::NOT_IMPLEMENTED
    );
    let (s, body) = call(&state, "GET", "/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("/config_dump"), "{body}");
    assert_eq!(
        call(&state, "DELETE", "/config_dump").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&state, "GET", "/quitquitquit").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(!*shutdown.borrow());
    assert_eq!(
        call(&state, "POST", "/quitquitquit").await.0,
        StatusCode::OK
    );
    assert!(*shutdown.borrow());
    assert_eq!(state.readiness().status(), Err(DRAINING.to_owned()));
}

#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let (parts, ()) = Request::builder()
        .method("POST")
        .uri("/ready")
        .body(())
        .unwrap()
        .into_parts();
    let (state, _shutdown) = state();
    let r = routes::admin(state, parts).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
}
