//! Distributed tracing end to end: a client proxy and a server proxy in front of a backend
//! that records the trace headers it receives, exporting to a test OTLP collector (the
//! generated `opentelemetry.proto.collector.trace.v1.TraceService` server, served by tonic's
//! server codegen over hyper HTTP/2), all on loopback.
//!
//! "Nothing was exported" is asserted after the proxies stop: a stopping proxy flushes its
//! queue, so a span it recorded would have reached the collector by then.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_api::model::*;
use mesh_proxy::telemetry::trace::Collector;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::otlp::TestCollector;
use support::*;
use tokio::net::TcpListener;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

// === a backend that records trace headers ===

const TRACE_HEADERS: &[&str] = &[
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];

type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

/// A task aborted when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn recording_backend(addr: SocketAddr) -> (Seen, Task) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let mut kept = http::HeaderMap::new();
                for name in TRACE_HEADERS {
                    if let Some(v) = req.headers().get(*name) {
                        kept.insert(*name, v.clone());
                    }
                }
                record.lock().unwrap().push(kept);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (seen, Task(task))
}

// === the mesh ===

/// productpage (client proxy, `127.<net>.0.1`) → reviews-v1 (server proxy and backend,
/// `127.<net>.0.2`), both proxies exporting to `collector` when given.
struct Mesh {
    client: TestProxy,
    server: TestProxy,
    seen: Seen,
    _backend: Task,
}

async fn mesh(net: u8, collector: Option<Collector>, sampling: f64) -> Mesh {
    let server_w = workload("reviews-v1", ip(net, 2), "reviews", "v1", true);
    let client_w = workload("productpage-v1", ip(net, 1), "productpage", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![server_w.clone()])];
    let (seen, backend) = recording_backend(SocketAddr::new(ip(net, 2), 8080)).await;
    let tracing = |args: &mut mesh_proxy::app::Args| {
        args.trace_collector = collector.clone();
        args.trace_sampling = sampling;
    };
    let s = spec(
        server_w.clone(),
        services.clone(),
        eps.clone(),
        Vec::new(),
        Vec::new(),
    );
    let server = proxy_with(server_w.address, &s, &[], tracing).await;
    let c = spec(client_w.clone(), services, eps, Vec::new(), Vec::new());
    let client = proxy_with(client_w.address, &c, &[(HOST, 9080)], tracing).await;
    Mesh {
        client,
        server,
        seen,
        _backend: backend,
    }
}

impl Mesh {
    async fn get(&self, headers: &[(&str, &str)]) -> http::HeaderMap {
        let before = self.seen.lock().unwrap().len();
        let (status, body, _) = get(&http1_client(), self.client.upstream(), "/r/1", headers).await;
        assert_eq!(status, 200, "{body}");
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), before + 1, "the backend saw the request");
        seen[before].clone()
    }

    /// Stops both proxies (each flushes its spans to the collector on the way out).
    async fn stop(self) {
        self.client.stop().await;
        self.server.stop().await;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("{name} missing in {h:?}"))
        .to_str()
        .unwrap()
}

// === tests ===

/// The acceptance test: one request with a sampled `traceparent` through two sidecars
/// yields exactly a CLIENT span (client proxy) and a SERVER span (server proxy) in the
/// request's trace, chained app span → client span → server span → backend. Sampling is
/// 0 % on both proxies: the incoming `sampled` flag alone decides (parent-based).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_spans_join_the_incoming_trace() {
    let collector = TestCollector::start(SocketAddr::new(ip(51, 9), 0)).await;
    let m = mesh(51, Some(collector.url()), 0.0).await;
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let backend_saw = m
        .get(&[("traceparent", &incoming), ("tracestate", "vendor=opaque")])
        .await;

    let spans = collector.wait_for(2).await;
    m.stop().await;
    let spans_after_stop = collector.spans();
    assert_eq!(
        spans_after_stop.len(),
        2,
        "exactly two spans: {spans_after_stop:#?}"
    );
    let find = |kind: SpanKind| {
        let found: Vec<_> = spans
            .iter()
            .filter(|r| r.span.kind == kind as i32)
            .collect();
        assert_eq!(found.len(), 1, "one {kind:?} span: {spans:#?}");
        found[0].clone()
    };
    let client = find(SpanKind::Client);
    let server = find(SpanKind::Server);

    assert_eq!(client.service, "productpage.default");
    assert_eq!(server.service, "reviews.default");
    assert_eq!(hex(&client.span.trace_id), TRACE);
    assert_eq!(hex(&server.span.trace_id), TRACE);
    assert_eq!(hex(&client.span.parent_span_id), PARENT);
    assert_eq!(server.span.parent_span_id, client.span.span_id);
    assert_ne!(server.span.span_id, client.span.span_id);

    // The backend's parent is the server span; tracestate passed through.
    assert_eq!(
        header(&backend_saw, "traceparent"),
        format!("00-{TRACE}-{}-01", hex(&server.span.span_id))
    );
    assert_eq!(header(&backend_saw, "tracestate"), "vendor=opaque");

    // The span shape.
    assert_eq!(client.span.name, format!("{HOST}:9080/*"));
    assert_eq!(server.span.name, "reviews:9080/*");
    for r in [&client, &server] {
        let s = &r.span;
        assert_eq!(
            attr(s, "http.method"),
            Some(&Value::StringValue("GET".into()))
        );
        assert_eq!(attr(s, "http.status_code"), Some(&Value::IntValue(200)));
        assert_eq!(
            attr(s, "http.url"),
            Some(&Value::StringValue("http://reviews:9080/r/1".into()))
        );
        assert_eq!(
            attr(s, "component"),
            Some(&Value::StringValue("proxy".into()))
        );
        assert_eq!(
            attr(s, "response_flags"),
            Some(&Value::StringValue("-".into()))
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        assert_eq!(s.status.as_ref().map(|st| st.code), Some(0), "unset: {s:?}");
    }
    assert_eq!(
        attr(&client.span, "upstream_cluster"),
        Some(&Value::StringValue(format!("outbound|9080||{HOST}")))
    );
    // The connection's peer (the client proxy dials from the default source address).
    for r in [&client, &server] {
        let Some(Value::StringValue(peer)) = attr(&r.span, "peer.address") else {
            panic!("no peer.address: {:?}", r.span);
        };
        assert!(
            peer.parse::<std::net::IpAddr>().unwrap().is_loopback(),
            "{peer}"
        );
    }
    // The server span started after the client span and ended before it.
    assert!(server.span.start_time_unix_nano >= client.span.start_time_unix_nano);
    assert!(server.span.end_time_unix_nano <= client.span.end_time_unix_nano);
}

/// B3 in, B3 out: the single `b3` header joins the trace and is rewritten hop by hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_context_is_joined_and_rewritten() {
    let collector = TestCollector::start(SocketAddr::new(ip(52, 9), 0)).await;
    let m = mesh(52, Some(collector.url()), 0.0).await;
    let backend_saw = m.get(&[("b3", &format!("{TRACE}-{PARENT}-1"))]).await;
    let spans = collector.wait_for(2).await;
    m.stop().await;
    let client = spans
        .iter()
        .find(|r| r.span.kind == SpanKind::Client as i32)
        .unwrap();
    let server = spans
        .iter()
        .find(|r| r.span.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(hex(&client.span.parent_span_id), PARENT);
    assert_eq!(hex(&server.span.trace_id), TRACE);
    assert_eq!(
        header(&backend_saw, "b3"),
        format!(
            "{TRACE}-{}-1-{}",
            hex(&server.span.span_id),
            hex(&client.span.span_id)
        )
    );
    // W3C is added beside it, same context.
    assert_eq!(
        header(&backend_saw, "traceparent"),
        format!("00-{TRACE}-{}-01", hex(&server.span.span_id))
    );
}

/// 0 % sampling and no incoming context: nothing is recorded, and the decision travels
/// (`-00`) so the server proxy does not record either. A sampled request through the same
/// proxies afterwards is exported: the pipeline works, only the sampler said no.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_export_nothing() {
    let collector = TestCollector::start(SocketAddr::new(ip(53, 9), 0)).await;
    let m = mesh(53, Some(collector.url()), 0.0).await;
    let mut unsampled = Vec::new();
    for _ in 0..20 {
        let saw = m.get(&[]).await;
        let tp = header(&saw, "traceparent").to_string();
        assert!(tp.ends_with("-00"), "{tp}");
        unsampled.push(tp[3..35].to_string());
    }
    // Also an explicit "not sampled" parent.
    let saw = m
        .get(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))])
        .await;
    assert!(header(&saw, "traceparent").starts_with(&format!("00-{TRACE}-")));
    let sampled = "0af7651916cd43dd8448eb211c80319c";
    m.get(&[("traceparent", &format!("00-{sampled}-{PARENT}-01"))])
        .await;
    m.stop().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "only the sampled request: {spans:#?}");
    assert!(spans.iter().all(|r| hex(&r.span.trace_id) == sampled));
}

/// No collector: no ids, no trace headers added or changed (even at 100 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_headers_pass_through() {
    let m = mesh(54, None, 100.0).await;
    let saw = m.get(&[]).await;
    assert!(saw.is_empty(), "no trace headers injected: {saw:?}");
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let saw = m
        .get(&[
            ("traceparent", &incoming),
            ("tracestate", "vendor=opaque"),
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
        ])
        .await;
    assert_eq!(header(&saw, "traceparent"), incoming);
    assert_eq!(header(&saw, "tracestate"), "vendor=opaque");
    assert_eq!(header(&saw, "x-b3-spanid"), PARENT);
    assert!(!saw.contains_key("x-b3-sampled"));
    m.stop().await;
}
