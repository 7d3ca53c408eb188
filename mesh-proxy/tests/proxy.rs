//! In-process integration tests of the request path: a client-side proxy with an explicit
//! upstream listener, server-side proxies in front of real HTTP backends, all on loopback
//! addresses (each test owns one `127.N.0.0/16`), talking the mesh protocol (HTTP/2 to
//! port 15008) between them.

mod support;

use std::time::Duration;

use mesh_api::model::*;
use support::*;

/// Two server workloads (v1, v2) with their proxies and backends, and a client proxy whose
/// config sends `routes` for reviews:9080.
struct Mesh {
    client: TestProxy,
    _servers: Vec<TestProxy>,
    backends: Vec<Backend>,
}

async fn mesh(
    net: u8,
    behaviors: [Behavior; 2],
    routes: Vec<RouteTable>,
    protocol: AppProtocol,
) -> Mesh {
    let v1 = workload("reviews-v1", ip(net, 2), "reviews", "v1", true);
    let v2 = workload("reviews-v2", ip(net, 3), "reviews", "v2", true);
    let me = workload("productpage", ip(net, 1), "productpage", "v1", true);
    let services = vec![service(9080, 8080, protocol)];
    let eps = vec![endpoints(vec![v1.clone(), v2.clone()])];
    let clusters = vec![subset_cluster(9080, "v1"), subset_cluster(9080, "v2")];
    let [b1, b2] = behaviors;
    let backends = vec![
        backend(std::net::SocketAddr::new(ip(net, 2), 8080), "v1", b1).await,
        backend(std::net::SocketAddr::new(ip(net, 3), 8080), "v2", b2).await,
    ];
    let mut servers = Vec::new();
    for w in [v1, v2] {
        let s = spec(
            w.clone(),
            services.clone(),
            eps.clone(),
            Vec::new(),
            clusters.clone(),
        );
        servers.push(proxy(w.address, &s, &[]).await);
    }
    let c = spec(me.clone(), services, eps, routes, clusters);
    let client = proxy(me.address, &c, &[(HOST, 9080)]).await;
    Mesh {
        client,
        _servers: servers,
        backends,
    }
}

fn split(v1: u32, v2: u32) -> Vec<RouteTable> {
    let fwd = forward(vec![
        (ClusterKey::new(HOST, 9080).with_subset("v1"), v1),
        (ClusterKey::new(HOST, 9080).with_subset("v2"), v2),
    ]);
    vec![route_table(
        9080,
        vec![catch_all("split", HttpAction::Forward(fwd))],
    )]
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let (status, body, _) = get(&http1_client(), addr, "/metrics", &[]).await;
    assert_eq!(status, 200);
    body
}

fn share_v2(bodies: &[String]) -> f64 {
    bodies.iter().filter(|b| b.starts_with("v2 ")).count() as f64 / bodies.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_90_10_over_http1_and_http2() {
    let m = mesh(31, Default::default(), split(90, 10), AppProtocol::Http).await;
    for client in [http1_client(), http2_client()] {
        let mut bodies = Vec::new();
        for i in 0..2000 {
            let (status, body, _) =
                get(&client, m.client.upstream(), &format!("/r/{i}"), &[]).await;
            assert_eq!(status, 200, "{body}");
            // The mesh headers never reach the application.
            assert!(body.ends_with(" clean"), "{body}");
            bodies.push(body);
        }
        let share = share_v2(&bodies);
        assert!((0.07..=0.13).contains(&share), "v2 share {share}");
    }
    assert_eq!(
        m.backends
            .iter()
            .map(|b| b.requests.load(std::sync::atomic::Ordering::Relaxed))
            .sum::<u64>(),
        4000
    );

    // Golden metrics: the client proxy reports as source with the destination version…
    let client_metrics = metrics(m.client.bound.metrics).await;
    let v2_line = client_metrics
        .lines()
        .find(|l| {
            l.starts_with("mesh_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("destination_version=\"v2\"")
                && l.contains("response_code=\"200\"")
        })
        .unwrap_or_else(|| panic!("no v2 series in:\n{client_metrics}"));
    assert!(
        v2_line.contains("source_workload=\"productpage\""),
        "{v2_line}"
    );
    assert!(
        v2_line.contains("destination_service=\"reviews.default.svc.cluster.local\""),
        "{v2_line}"
    );
    // …and the server proxy as destination, naming the caller from the mesh headers.
    let server_metrics = metrics(m._servers[1].bound.metrics).await;
    assert!(
        server_metrics
            .lines()
            .any(|l| l.starts_with("mesh_requests_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("source_workload=\"productpage\"")
                && l.contains("destination_workload=\"reviews-v2\"")
                // The client dialed its upstream listener's address; the service is
                // still named as the client proxy routed it.
                && l.contains("destination_service=\"reviews.default.svc.cluster.local\"")
                && l.contains("destination_service_name=\"reviews\"")),
        "{server_metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_flaky_backend() {
    let mut fwd = forward(vec![(ClusterKey::new(HOST, 9080), 1)]);
    fwd.retry = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout: Some(Duration::from_secs(2)),
        retry_on: [RetryCondition::Status5xx].into_iter().collect(),
        backoff: Backoff {
            base_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
        },
        budget: None,
    });
    let routes = vec![route_table(
        9080,
        vec![catch_all("retry", HttpAction::Forward(fwd))],
    )];
    let flaky = Behavior {
        fail_ratio: 0.3,
        ..Behavior::default()
    };
    let m = mesh(32, [flaky.clone(), flaky], routes, AppProtocol::Http).await;
    let client = http1_client();
    let mut ok = 0;
    let n: u32 = 500;
    for i in 0..n {
        let (status, _, _) = get(&client, m.client.upstream(), &format!("/{i}"), &[]).await;
        if status == 200 {
            ok += 1;
        }
    }
    let rate = f64::from(ok) / f64::from(n);
    assert!(rate >= 0.99, "success rate {rate}");
    // Without retries about 30 % would fail: the backends saw the extra tries.
    let tries: u64 = m
        .backends
        .iter()
        .map(|b| b.requests.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(tries > u64::from(n) + 100, "backends saw {tries} tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_cuts_a_slow_backend() {
    let mut fwd = forward(vec![(ClusterKey::new(HOST, 9080), 1)]);
    fwd.timeout = Some(Duration::from_millis(200));
    let routes = vec![route_table(
        9080,
        vec![catch_all("timeout", HttpAction::Forward(fwd))],
    )];
    let slow = Behavior {
        delay: Duration::from_secs(2),
        ..Behavior::default()
    };
    let m = mesh(33, [slow.clone(), slow], routes, AppProtocol::Http).await;
    let started = std::time::Instant::now();
    let (status, body, headers) = get(&http1_client(), m.client.upstream(), "/", &[]).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    let why = headers["x-mesh-error"].to_str().unwrap();
    assert!(why.starts_with("upstream request timeout"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_fault_fails_half_the_requests() {
    let mut fwd = forward(vec![(ClusterKey::new(HOST, 9080), 1)]);
    fwd.fault = Some(Fault {
        delay: None,
        abort: Some(FaultAbort {
            error: AbortError::HttpStatus(418),
            percentage: Percent::new(50.0).unwrap(),
        }),
    });
    let routes = vec![route_table(
        9080,
        vec![catch_all("fault", HttpAction::Forward(fwd))],
    )];
    let m = mesh(34, Default::default(), routes, AppProtocol::Http).await;
    let client = http1_client();
    let n = 2000;
    let mut aborted = 0;
    for _ in 0..n {
        let (status, _, _) = get(&client, m.client.upstream(), "/", &[]).await;
        match status.as_u16() {
            418 => aborted += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    let share = f64::from(aborted) / f64::from(n);
    assert!((0.45..=0.55).contains(&share), "aborted share {share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_gets_404_with_a_reason() {
    let route = HttpRoute {
        name: "jason-only".into(),
        matches: vec![HttpMatch {
            headers: vec![HeaderMatch {
                name: "end-user".into(),
                value: Some(StringMatch::Exact("jason".into())),
            }],
            ..HttpMatch::default()
        }],
        action: HttpAction::Forward(forward(vec![(
            ClusterKey::new(HOST, 9080).with_subset("v2"),
            1,
        )])),
    };
    let m = mesh(
        35,
        Default::default(),
        vec![route_table(9080, vec![route])],
        AppProtocol::Http,
    )
    .await;
    let client = http1_client();
    let (status, body, headers) =
        get(&client, m.client.upstream(), "/x", &[("end-user", "jason")]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("v2 /x"), "{body}");
    let (status, _, headers2) = get(&client, m.client.upstream(), "/x", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(headers2["x-mesh-error"], "no route for reviews:9080/x");
    assert!(!headers.contains_key("x-mesh-error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_stops_sending_to_a_dead_endpoint() {
    let net = 36;
    let alive = workload("reviews-v1", ip(net, 2), "reviews", "v1", true);
    // A workload whose proxy is not running: every connect is refused.
    let dead = workload("reviews-v2", ip(net, 3), "reviews", "v2", true);
    let me = workload("productpage", ip(net, 1), "productpage", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![alive.clone(), dead])];
    let mut cluster = mesh_proxy::state::default_cluster(ClusterKey::new(HOST, 9080));
    cluster.load_balancer = LoadBalancer::RoundRobin;
    cluster.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 2,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(60),
        max_ejection_percent: Percent::new(50.0).unwrap(),
    });
    let _b = backend(
        std::net::SocketAddr::new(ip(net, 2), 8080),
        "v1",
        Behavior::default(),
    )
    .await;
    let s = spec(
        alive.clone(),
        services.clone(),
        eps.clone(),
        Vec::new(),
        vec![cluster.clone()],
    );
    let _server = proxy(alive.address, &s, &[]).await;
    let c = spec(me.clone(), services, eps, Vec::new(), vec![cluster]);
    let client_proxy = proxy(me.address, &c, &[(HOST, 9080)]).await;
    let client = http1_client();
    let mut failures = 0;
    for _ in 0..100 {
        let (status, _, headers) = get(&client, client_proxy.upstream(), "/", &[]).await;
        if status != 200 {
            failures += 1;
            assert_eq!(status, 503);
            assert!(
                headers["x-mesh-error"]
                    .to_str()
                    .unwrap()
                    .starts_with("upstream connect error")
            );
        }
    }
    // Round robin alternates, so the dead endpoint is tried twice before it is ejected;
    // after that every request goes to the live one.
    assert_eq!(failures, 2, "failures before ejection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_replace_the_matched_prefix_or_the_whole_path() {
    let mut prefixed = forward(vec![(ClusterKey::new(HOST, 9080).with_subset("v1"), 1)]);
    prefixed.rewrite = Some(Rewrite {
        uri_prefix: Some("/v2".into()),
        authority: None,
    });
    let mut whole = forward(vec![(ClusterKey::new(HOST, 9080).with_subset("v1"), 1)]);
    whole.rewrite = Some(Rewrite {
        uri_prefix: Some("/health".into()),
        authority: None,
    });
    let api = HttpRoute {
        name: "api".into(),
        matches: vec![HttpMatch {
            uri: Some(StringMatch::Prefix("/api".into())),
            ..HttpMatch::default()
        }],
        action: HttpAction::Forward(prefixed),
    };
    let routes = vec![route_table(
        9080,
        vec![api, catch_all("rest", HttpAction::Forward(whole))],
    )];
    let m = mesh(37, Default::default(), routes, AppProtocol::Http).await;
    let client = http1_client();
    let (_, body, _) = get(&client, m.client.upstream(), "/api/items?id=7", &[]).await;
    assert!(body.starts_with("v1 /v2/items "), "{body}");
    let (_, body, _) = get(&client, m.client.upstream(), "/anything/else", &[]).await;
    assert!(body.starts_with("v1 /health "), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_limit_fails_fast_with_overflow() {
    let net = 38;
    let server = workload("reviews-v1", ip(net, 2), "reviews", "v1", true);
    let me = workload("productpage", ip(net, 1), "productpage", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![server.clone()])];
    let mut cluster = mesh_proxy::state::default_cluster(ClusterKey::new(HOST, 9080));
    cluster.connection_pool.max_requests = std::num::NonZeroU32::new(1);
    let slow = Behavior {
        delay: Duration::from_millis(500),
        ..Behavior::default()
    };
    let _b = backend(std::net::SocketAddr::new(ip(net, 2), 8080), "v1", slow).await;
    let s = spec(
        server.clone(),
        services.clone(),
        eps.clone(),
        Vec::new(),
        vec![cluster.clone()],
    );
    let _server = proxy(server.address, &s, &[]).await;
    let c = spec(me.clone(), services, eps, Vec::new(), vec![cluster]);
    let client_proxy = proxy(me.address, &c, &[(HOST, 9080)]).await;
    let addr = client_proxy.upstream();
    let first = tokio::spawn(async move { get(&http1_client(), addr, "/slow", &[]).await });
    // While the first request holds the only slot, a second one overflows at once.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = std::time::Instant::now();
    let (status, _, headers) = get(&http1_client(), addr, "/second", &[]).await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(
        headers["x-mesh-error"]
            .to_str()
            .unwrap()
            .starts_with("upstream overflow"),
        "{headers:?}"
    );
    let (status, _, _) = first.await.unwrap();
    assert_eq!(status, 200);
    // The slot is free again.
    let (status, _, _) = get(&http1_client(), addr, "/third", &[]).await;
    assert_eq!(status, 200);
    let m = get(&http1_client(), client_proxy.bound.metrics, "/metrics", &[])
        .await
        .1;
    assert!(
        m.lines().any(|l| l.starts_with("mesh_requests_total{")
            && l.contains("response_flags=\"UO\"")
            && l.ends_with(" 1")),
        "{m}"
    );
}

/// A request body of unknown length, as gRPC clients send (no `content-length`).
struct Unsized(Option<bytes::Bytes>);

impl http_body::Body for Unsized {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_bodies_of_unknown_length_are_replayed_on_retry() {
    let mut fwd = forward(vec![(ClusterKey::new(HOST, 9080), 1)]);
    fwd.retry = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout: None,
        retry_on: [RetryCondition::Status5xx].into_iter().collect(),
        backoff: Backoff {
            base_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
        },
        budget: None,
    });
    let routes = vec![route_table(
        9080,
        vec![catch_all("retry", HttpAction::Forward(fwd))],
    )];
    let flaky = Behavior {
        fail_ratio: 0.3,
        ..Behavior::default()
    };
    let m = mesh(39, [flaky.clone(), flaky], routes, AppProtocol::Http).await;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, Unsized>(connector);
    let n: u32 = 200;
    let mut ok = 0;
    for i in 0..n {
        let req = http::Request::post(format!("http://{}/upload/{i}", m.client.upstream()))
            .header("host", "reviews:9080")
            .body(Unsized(Some(bytes::Bytes::from(vec![b'x'; 1000]))))
            .unwrap();
        assert!(req.headers().get("content-length").is_none());
        let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("in time")
            .expect("a response");
        if res.status() == 200 {
            ok += 1;
        }
    }
    assert!(
        f64::from(ok) / f64::from(n) >= 0.99,
        "{ok} of {n} succeeded"
    );
    let tries: u64 = m
        .backends
        .iter()
        .map(|b| b.requests.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(tries > u64::from(n) + 40, "backends saw {tries} tries");
}
