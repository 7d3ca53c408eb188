//! The admin (15000), metrics (15020) and health (15021) servers, in-process on 127.0.0.1
//! port 0, exercised over real HTTP/1.1 (and HTTP/2 prior knowledge) connections.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_api::{
    model::{
        AppProtocol, ProxyConfig, ProxyConfigSpec, Resource, Service, ServiceKind, ServiceName,
        ServicePort,
    },
    spiffe::SpiffeId,
};
use mesh_proxy::{
    admin::{self, AdminState, Readiness},
    telemetry::{
        self,
        metrics::{Metrics, Reporter, RequestLabels, SecurityPolicy},
    },
};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

type Current = Arc<Mutex<Option<(Arc<ProxyConfig>, Instant)>>>;

/// The three servers, with handles on everything they show.
struct Harness {
    admin: SocketAddr,
    metrics_addr: SocketAddr,
    health: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    config: Current,
    quit: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Keeps the subscriber whose filter `/logging` changes alive.
    _subscriber: Box<dyn tracing::Subscriber + Send + Sync>,
}

impl Harness {
    async fn start() -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let readiness = Readiness::with_gauge(admin::WAITING_FOR_CONFIG, metrics.ready_gauge());
        let (subscriber, log) = telemetry::subscriber("info", false).unwrap();
        let config: Current = Arc::new(Mutex::new(None));
        let (quit_tx, quit) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);

        let view = config.clone();
        let state = AdminState::new(
            Arc::new(move || view.lock().unwrap().clone()),
            readiness.clone(),
            registry,
            Arc::new(|| serde_json::json!({ "clusters": [{ "name": "reviews", "endpoints": 2 }] })),
            Some(log),
            quit_tx,
        );
        let bind = || TcpListener::bind("127.0.0.1:0");
        let (admin_l, metrics_l, health_l) = (
            bind().await.unwrap(),
            bind().await.unwrap(),
            bind().await.unwrap(),
        );
        let addrs = (
            admin_l.local_addr().unwrap(),
            metrics_l.local_addr().unwrap(),
            health_l.local_addr().unwrap(),
        );
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let tasks = vec![
            tokio::spawn(admin::serve_admin(admin_l, state.clone(), stopped())),
            tokio::spawn(admin::serve_metrics(metrics_l, state.clone(), stopped())),
            tokio::spawn(admin::serve_health(health_l, state, stopped())),
        ];
        Self {
            admin: addrs.0,
            metrics_addr: addrs.1,
            health: addrs.2,
            metrics,
            readiness,
            config,
            quit,
            stop,
            tasks,
            _subscriber: Box::new(subscriber),
        }
    }

    fn set_config(&self, spec: ProxyConfigSpec) {
        let config = ProxyConfig::new(spec).expect("valid test config");
        *self.config.lock().unwrap() = Some((Arc::new(config), Instant::now()));
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection.
async fn call(addr: SocketAddr, method: Method, path: &str, accept: Option<&str>) -> Reply {
    tokio::time::timeout(WAIT, async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost");
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let res = sender
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path}: no answer within {WAIT:?}"))
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, Method::GET, path, None).await
}

async fn post(addr: SocketAddr, path: &str) -> Reply {
    call(addr, Method::POST, path, None).await
}

fn test_spec() -> ProxyConfigSpec {
    let identity: SpiffeId = "spiffe://cluster.local/ns/default/sa/test".parse().unwrap();
    let mut spec = ProxyConfigSpec::new(identity);
    spec.version = "v7-test".into();
    spec.push(Resource::Service(Service {
        name: ServiceName::new("default", "reviews"),
        hostname: "reviews.default.svc.cluster.local".into(),
        vips: vec!["10.96.0.10".parse().unwrap()],
        ports: vec![ServicePort {
            port: 9080,
            target_port: 9080,
            name: "http".into(),
            protocol: AppProtocol::Http,
        }],
        kind: ServiceKind::ClusterIp,
    }));
    spec
}

#[tokio::test]
async fn config_dump_shows_the_current_config_with_version_and_age() {
    let h = Harness::start().await;
    let r = get(h.admin, "/config_dump").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let dump: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(dump["config"].is_null(), "{dump}");
    assert!(dump["version"].is_null(), "{dump}");

    h.set_config(test_spec());
    let r = get(h.admin, "/config_dump").await;
    assert_eq!(r.status, StatusCode::OK);
    let dump: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(dump["version"], "v7-test");
    assert_eq!(dump["config"]["version"], "v7-test");
    assert_eq!(
        dump["config"]["identity"],
        "spiffe://cluster.local/ns/default/sa/test"
    );
    assert_eq!(
        dump["config"]["services"][0]["hostname"],
        "reviews.default.svc.cluster.local"
    );
    let age = dump["age_seconds"]
        .as_f64()
        .expect("age_seconds is a number");
    assert!((0.0..60.0).contains(&age), "{age}");
    let received = dump["received_at"].as_str().expect("received_at");
    assert!(
        received.ends_with('Z') && received.len() == 24,
        "{received}"
    );
    // The dump is the spec: it parses back into a valid config.
    let spec: ProxyConfigSpec = serde_json::from_value(dump["config"].clone()).unwrap();
    assert_eq!(spec, test_spec());
}

#[tokio::test]
async fn readiness_flips_from_503_to_200() {
    let h = Harness::start().await;
    let r = get(h.health, "/healthz/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body, "waiting for config\n");
    assert_eq!(
        get(h.admin, "/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    h.readiness.set_not_ready(admin::WAITING_FOR_CERTIFICATE);
    assert_eq!(
        get(h.health, "/healthz/ready").await.body,
        "waiting for certificate\n"
    );

    h.readiness.set_ready();
    let r = get(h.health, "/healthz/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ready\n");
    assert_eq!(get(h.admin, "/ready").await.status, StatusCode::OK);
    // The gauge follows.
    let m = get(h.metrics_addr, "/metrics").await;
    assert!(m.body.contains("\nmesh_proxy_ready 1\n"), "{}", m.body);

    h.readiness.set_not_ready(admin::DRAINING);
    let r = get(h.health, "/healthz/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body, "draining\n");
}

#[tokio::test]
async fn metrics_show_a_recorded_request_with_the_golden_labels() {
    let h = Harness::start().await;
    let labels = RequestLabels {
        source_workload: "productpage-v1".into(),
        source_workload_namespace: "default".into(),
        source_app: "productpage".into(),
        destination_service: "reviews.default.svc.cluster.local".into(),
        destination_service_name: "reviews".into(),
        response_code: 200,
        connection_security_policy: SecurityPolicy::MutualTls,
        ..RequestLabels::new(Reporter::Source)
    };
    h.metrics
        .record_request(&labels, Duration::from_millis(12), 100, 2000, 0, 0);

    // Prometheus text format by default.
    let r = get(h.metrics_addr, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        r.body.contains("# TYPE mesh_requests_total counter\n"),
        "{}",
        r.body
    );
    let line = r
        .body
        .lines()
        .find(|l| l.starts_with("mesh_requests_total{"))
        .unwrap_or_else(|| panic!("no mesh_requests_total sample:\n{}", r.body));
    for label in [
        "reporter=\"source\"",
        "source_workload=\"productpage-v1\"",
        "source_workload_namespace=\"default\"",
        "source_principal=\"unknown\"",
        "source_app=\"productpage\"",
        "source_version=\"unknown\"",
        "destination_workload=\"unknown\"",
        "destination_workload_namespace=\"unknown\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "destination_app=\"unknown\"",
        "destination_version=\"unknown\"",
        "request_protocol=\"http\"",
        "response_code=\"200\"",
        "grpc_response_status=\"\"",
        "response_flags=\"-\"",
        "connection_security_policy=\"mutual_tls\"",
    ] {
        assert!(line.contains(label), "{label} missing in {line}");
    }
    assert!(line.ends_with("} 1"), "{line}");
    assert!(
        r.body
            .contains("mesh_request_duration_milliseconds_bucket{")
    );
    assert!(!r.body.contains("# EOF"));

    // OpenMetrics when Prometheus asks for it.
    let prometheus_accept =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = call(
        h.metrics_addr,
        Method::GET,
        "/metrics",
        Some(prometheus_accept),
    )
    .await;
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(r.body.contains("# TYPE mesh_requests counter\n"));
    assert!(r.body.contains(line), "same sample in both formats");
    assert!(r.body.ends_with("# EOF\n"));

    // The admin server's /stats/prometheus shows the same.
    let r = get(h.admin, "/stats/prometheus").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(line));
}

#[tokio::test]
async fn logging_filter_changes_at_run_time() {
    let h = Harness::start().await;
    let r = get(h.admin, "/logging").await;
    assert_eq!(r.status, StatusCode::OK);
    let filter = |r: &Reply| -> String {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v["filter"].as_str().unwrap().to_owned()
    };
    assert_eq!(filter(&r), "info");

    let r = post(h.admin, "/logging?level=debug").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(filter(&r), "debug");
    assert_eq!(filter(&get(h.admin, "/logging").await), "debug");

    let r = post(h.admin, "/logging?filter=mesh_proxy%3Dtrace%2Cwarn").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let now = filter(&get(h.admin, "/logging").await);
    assert!(
        now.contains("mesh_proxy=trace") && now.contains("warn"),
        "{now}"
    );

    // Rejected changes leave the filter alone.
    for (q, needle) in [
        ("/logging?level=loud", "unknown level"),
        ("/logging?filter=mesh_proxy%3Dloud", "invalid log filter"),
        ("/logging?level=%zz", "bad percent-encoding"),
        ("/logging?verbose=1", "unknown query parameter"),
        ("/logging", "nothing to change"),
    ] {
        let r = post(h.admin, q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        assert!(r.body.contains(needle), "{q}: {}", r.body);
    }
    assert_eq!(filter(&get(h.admin, "/logging").await), now);

    // Changing needs POST.
    let r = get(h.admin, "/logging?level=debug").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers[header::ALLOW], "POST");
    assert_eq!(filter(&get(h.admin, "/logging").await), now);
}

#[tokio::test]
async fn quitquitquit_fires_the_shutdown_signal() {
    let mut h = Harness::start().await;
    h.readiness.set_ready();
    let r = get(h.admin, "/quitquitquit").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!*h.quit.borrow());

    let r = post(h.admin, "/quitquitquit").await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::timeout(WAIT, h.quit.wait_for(|q| *q))
        .await
        .expect("shutdown signalled in time")
        .unwrap();
    // Draining shows in the readiness probe right away.
    let r = get(h.health, "/healthz/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body, "draining\n");
}

#[tokio::test]
async fn index_clusters_and_error_answers() {
    let h = Harness::start().await;
    let r = get(h.admin, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    for path in [
        "/config_dump",
        "/clusters",
        "/logging",
        "/quitquitquit",
        "/ready",
        "/stats/prometheus",
    ] {
        assert!(
            r.body.contains(path),
            "{path} missing from the index:\n{}",
            r.body
        );
    }

    let r = get(h.admin, "/clusters").await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["clusters"][0]["name"], "reviews");

    let r = get(h.admin, "/stats").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body.contains("/config_dump") && r.body.contains("/quitquitquit"),
        "{}",
        r.body
    );
    let r = get(h.metrics_addr, "/stats/prometheus").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("/metrics"), "{}", r.body);
    assert_eq!(
        get(h.health, "/healthz/live").await.status,
        StatusCode::NOT_FOUND
    );

    let r = call(h.admin, Method::DELETE, "/config_dump", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers[header::ALLOW], "GET, HEAD");
    assert_eq!(
        post(h.metrics_addr, "/metrics").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        post(h.health, "/healthz/ready").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // HEAD works where GET does.
    let r = call(h.health, Method::HEAD, "/healthz/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let h = Harness::start().await;
    h.readiness.set_ready();
    let stream = tokio::net::TcpStream::connect(h.health).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{}/healthz/ready", h.health))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn servers_stop_on_shutdown() {
    let h = Harness::start().await;
    assert_eq!(
        get(h.health, "/healthz/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.stop.send_replace(true);
    for task in h.tasks {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("server stops in time")
            .unwrap();
    }
    for addr in [h.admin, h.metrics_addr, h.health] {
        let refused = tokio::net::TcpStream::connect(addr).await;
        assert!(refused.is_err(), "{addr} still accepts connections");
    }
}
