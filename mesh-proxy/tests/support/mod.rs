//! Test harness for in-process proxy tests: backends, proxies and config builders, all on
//! loopback addresses (each test picks its own `127.<net>.0.0/16` so tests run in parallel).

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod control_plane;
pub mod otlp;
pub mod pki;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_api::model::*;
use mesh_api::spiffe::SpiffeId;
use mesh_proxy::app::{App, Args, Bound};
use tokio::net::TcpListener;

/// An address on a test's own loopback network.
pub fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::from([127, net, 0, host])
}

/// What a backend does with each request.
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Answer 503 for this share of requests (0.0-1.0), deterministically spread.
    pub fail_ratio: f64,
    /// Sleep this long before answering.
    pub delay: Duration,
}

/// A running HTTP backend (HTTP/1.1 and HTTP/2) that answers with its name.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn backend(addr: SocketAddr, name: &'static str, behavior: Behavior) -> Backend {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            let behavior = behavior.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let behavior = behavior.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let leaked = req
                            .headers()
                            .keys()
                            .any(|k| k.as_str().starts_with("x-mesh-"));
                        let peer_header = if leaked { "leaked" } else { "clean" };
                        let _ = req.into_body().collect().await;
                        if !behavior.delay.is_zero() {
                            tokio::time::sleep(behavior.delay).await;
                        }
                        // Deterministic failure spread: request n fails when the running
                        // count of failures is below n * ratio.
                        let fail = behavior.fail_ratio > 0.0
                            && ((n + 1) as f64 * behavior.fail_ratio).floor()
                                > (n as f64 * behavior.fail_ratio).floor();
                        let mut res = Response::new(Full::new(Bytes::from(format!(
                            "{name} {path} {peer_header}"
                        ))));
                        if fail {
                            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        res.headers_mut().insert("x-backend", name.parse().unwrap());
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        requests,
        task,
    }
}

/// A running proxy; dropping it shuts it down.
pub struct TestProxy {
    pub bound: Bound,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestProxy {
    /// The first explicit upstream listener.
    pub fn upstream(&self) -> SocketAddr {
        self.bound.upstreams[0]
    }

    /// Stops the proxy and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a proxy for workload address `addr` (its inbound mesh port is `addr:15008`, its
/// application is on `addr`), with explicit upstream listeners.
pub async fn proxy(addr: IpAddr, spec: &ProxyConfigSpec, upstreams: &[(&str, u16)]) -> TestProxy {
    proxy_with(addr, spec, upstreams, |_| {}).await
}

/// [`proxy`], with `configure` adjusting the arguments (e.g. tracing) before it starts.
pub async fn proxy_with(
    addr: IpAddr,
    spec: &ProxyConfigSpec,
    upstreams: &[(&str, u16)],
    configure: impl FnOnce(&mut Args),
) -> TestProxy {
    let (mut args, dir) = proxy_args(addr, spec, upstreams);
    configure(&mut args);
    let app = App::build(args, None).await.expect("proxy builds");
    start(app, dir)
}

/// The arguments of a proxy at `addr` running on `spec` (a static file in the returned
/// directory, with a certificate from the test CA).
fn proxy_args(
    addr: IpAddr,
    spec: &ProxyConfigSpec,
    upstreams: &[(&str, u16)],
) -> (Args, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.json");
    std::fs::write(&path, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    let identity_dir = dir.path().join("identity");
    pki::ca().issue_into(&spec.identity, &identity_dir);
    let any = |port: u16| SocketAddr::new(addr, port);
    let args = Args {
        config: Some(path),
        discovery: Default::default(),
        identity: mesh_proxy::identity::Args {
            identity_dir: Some(identity_dir),
            ..Default::default()
        },
        outbound_capture: any(0),
        inbound_capture: any(0),
        no_capture: true,
        inbound: any(15008),
        upstreams: upstreams
            .iter()
            .map(|(host, port)| (any(0), host.to_string(), *port))
            .collect(),
        admin: any(0),
        metrics: any(0),
        health: any(0),
        app_probes: None,
        app_host: addr,
        mesh_port: 15008,
        access_log: false,
        drain_timeout: Duration::from_secs(2),
        max_header_bytes: 64 * 1024,
        max_concurrent_streams: 1000,
        header_read_timeout: Duration::from_secs(10),
        threads: 1,
        trace_collector: None,
        trace_sampling: 1.0,
    };
    (args, dir)
}

/// Starts a gateway-mode proxy (`mesh-proxy gateway`) at `addr` with `spec`, serving each of
/// `server_ports` on an `--listen` listener at `addr:0` (see `bound.gateway`).
pub async fn gateway_proxy(
    addr: IpAddr,
    spec: &ProxyConfigSpec,
    server_ports: &[u16],
) -> TestProxy {
    gateway_proxy_with_credentials(addr, spec, server_ports, None).await
}

/// [`gateway_proxy`] with `--credentials-dir credentials_dir` (TLS listeners).
pub async fn gateway_proxy_with_credentials(
    addr: IpAddr,
    spec: &ProxyConfigSpec,
    server_ports: &[u16],
    credentials_dir: Option<&std::path::Path>,
) -> TestProxy {
    let (run, dir) = proxy_args(addr, spec, &[]);
    let args = mesh_proxy::gateway::Args {
        run,
        listen_host: addr,
        listen: server_ports
            .iter()
            .map(|p| (*p, SocketAddr::new(addr, 0)))
            .collect(),
        credentials_dir: credentials_dir.map(std::path::Path::to_owned),
    };
    let app = App::build_gateway(args, None)
        .await
        .expect("gateway builds");
    assert_eq!(
        app.bound().inbound,
        None,
        "a gateway has no mesh inbound port"
    );
    start(app, dir)
}

fn start(app: App, dir: tempfile::TempDir) -> TestProxy {
    let bound = app.bound().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestProxy {
        bound,
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

pub fn identity(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "default", sa).unwrap()
}

pub fn workload(name: &str, addr: IpAddr, app: &str, version: &str, in_mesh: bool) -> Workload {
    Workload {
        uid: format!("uid-{name}"),
        name: name.into(),
        namespace: "default".into(),
        address: addr,
        identity: identity(app),
        labels: [
            ("app".to_owned(), app.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]
        .into(),
        canonical_service: app.into(),
        canonical_revision: version.into(),
        locality: Locality::default(),
        health: Health::Healthy,
        in_mesh,
    }
}

pub const HOST: &str = "reviews.default.svc.cluster.local";

pub fn service(port: u16, target_port: u16, protocol: AppProtocol) -> Service {
    Service {
        name: ServiceName::new("default", "reviews"),
        hostname: HOST.into(),
        vips: vec!["10.96.0.10".parse().unwrap()],
        ports: vec![ServicePort {
            port,
            target_port,
            name: "http".into(),
            protocol,
        }],
        kind: ServiceKind::ClusterIp,
    }
}

pub fn endpoints(workloads: Vec<Workload>) -> EndpointSet {
    EndpointSet {
        hostname: HOST.into(),
        endpoints: workloads
            .into_iter()
            .map(|workload| Endpoint {
                workload,
                ports: BTreeMap::new(),
                weight: NonZeroU32::MIN,
            })
            .collect(),
    }
}

pub fn subset_cluster(port: u16, subset: &str) -> Cluster {
    let mut c = mesh_proxy::state::default_cluster(ClusterKey::new(HOST, port).with_subset(subset));
    c.subset_labels = [("version".to_owned(), subset.to_owned())].into();
    c
}

pub fn forward(backends: Vec<(ClusterKey, u32)>) -> Forward {
    Forward {
        backends: backends
            .into_iter()
            .map(|(cluster, weight)| WeightedBackend { cluster, weight })
            .collect(),
        timeout: None,
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        rewrite: None,
        request_headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
    }
}

pub fn route_table(port: u16, routes: Vec<HttpRoute>) -> RouteTable {
    RouteTable {
        name: format!("reviews:{port}"),
        hostnames: vec![HOST.into(), "reviews".into()],
        port,
        http: routes,
        tcp: Vec::new(),
    }
}

pub fn catch_all(name: &str, action: HttpAction) -> HttpRoute {
    HttpRoute {
        name: name.into(),
        matches: Vec::new(),
        action,
    }
}

/// A client proxy's config (workload `client`) and the servers' configs (each its own
/// workload), sharing services, endpoints, routes and clusters.
pub fn spec(
    me: Workload,
    services: Vec<Service>,
    eps: Vec<EndpointSet>,
    routes: Vec<RouteTable>,
    clusters: Vec<Cluster>,
) -> ProxyConfigSpec {
    let mut spec = ProxyConfigSpec::new(me.identity.clone());
    spec.version = "test-1".into();
    spec.workload = Some(me);
    spec.services = services;
    spec.endpoints = eps;
    spec.routes = routes;
    spec.clusters = clusters;
    spec.inbound = InboundPolicy::default();
    spec
}

/// An HTTP/1.1 client with keep-alive.
pub fn http1_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 (prior knowledge) client.
pub fn http2_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// GET `path` through `addr` with `Host: reviews:9080`; returns status, body, headers.
pub async fn get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, http::HeaderMap) {
    let mut req = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", "reviews:9080");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(req.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("request within 10s")
    .expect("request succeeds at the HTTP level");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}
