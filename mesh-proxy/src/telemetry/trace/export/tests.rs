use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use super::*;
use crate::telemetry::trace::context::{Carriers, Outgoing};
use crate::telemetry::trace::{Details, SpanId, TraceId};

fn record(workload: &str, kind: Kind, status_code: u16, parent: bool) -> SpanRecord {
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SpanRecord {
        out: Outgoing {
            trace_id: TraceId::from_bytes([7; 16]),
            span_id: SpanId::from_bytes([8; 8]),
            parent_span_id: parent.then(|| SpanId::from_bytes([9; 8])),
            flags: 1,
            keep_tracestate: true,
            carriers: Carriers::default(),
        },
        end: start + Duration::from_millis(5),
        outcome: super::super::Outcome {
            duration: Duration::from_millis(5),
            status_code,
            grpc_status: None,
            response_flags: ResponseFlag::None,
            request_bytes: 3,
            response_bytes: 10,
        },
        details: Box::new(Details {
            kind,
            start,
            local: PeerMeta::from_header(&format!("default/{workload}/{workload}-app/v1")),
            method: http::Method::GET,
            authority: "reviews:9080".into(),
            path: "/r?x=1".into(),
            protocol: "HTTP/1.1",
            trace_state: "vendor=x".into(),
            name: (kind == Kind::Client)
                .then(|| "reviews.default.svc.cluster.local:9080/*".to_string()),
            upstream_cluster: String::new(),
            upstream_address: None,
            peer_address: Some("10.0.0.1:4444".parse().unwrap()),
        }),
    }
}

fn attr<'a>(span: &'a OtlpSpan, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

#[test]
fn spans_become_otlp_grouped_by_workload() {
    let batch = [
        record("a", Kind::Client, 200, true),
        record("b", Kind::Server, 503, false),
        record("a", Kind::Server, 0, true),
    ];
    let req = to_request(&batch);
    assert_eq!(req.resource_spans.len(), 2);
    let a = &req.resource_spans[0];
    let resource = a.resource.as_ref().unwrap();
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref());
    assert_eq!(service, Some(&Value::StringValue("a-app.default".into())));
    let spans = &a.scope_spans[0].spans;
    assert_eq!(spans.len(), 2);
    let client = &spans[0];
    assert_eq!(client.trace_id, vec![7; 16]);
    assert_eq!(client.span_id, vec![8; 8]);
    assert_eq!(client.parent_span_id, vec![9; 8]);
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(client.name, "reviews.default.svc.cluster.local:9080/*");
    assert_eq!(client.trace_state, "vendor=x");
    assert_eq!(client.flags, 0x301, "sampled, parent known to be remote");
    assert_eq!(
        client.end_time_unix_nano - client.start_time_unix_nano,
        5_000_000
    );
    assert_eq!(
        client.status.as_ref().unwrap().code,
        StatusCode::Unset as i32
    );
    assert_eq!(
        attr(client, "http.method"),
        Some(&Value::StringValue("GET".into()))
    );
    assert_eq!(
        attr(client, "http.url"),
        Some(&Value::StringValue("http://reviews:9080/r?x=1".into()))
    );
    assert_eq!(
        attr(client, "http.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(
        attr(client, "peer.address"),
        Some(&Value::StringValue("10.0.0.1".into()))
    );
    assert_eq!(
        attr(client, "component"),
        Some(&Value::StringValue("proxy".into()))
    );
    assert_eq!(attr(client, "grpc.status_code"), None);
    // No response at all is an error too; a server span without a route name is named
    // by its authority.
    let no_response = &spans[1];
    assert_eq!(
        no_response.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    assert_eq!(no_response.name, "reviews:9080/*");
    let b = &req.resource_spans[1].scope_spans[0].spans[0];
    assert_eq!(b.kind, SpanKind::Server as i32);
    assert!(b.parent_span_id.is_empty());
    assert_eq!(b.flags, 0x101);
    let status = b.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (StatusCode::Error as i32, "HTTP 503")
    );
}

/// A collector that answers UNAVAILABLE to its first `fail` calls.
#[derive(Clone)]
struct Flaky {
    fail: u32,
    calls: Arc<AtomicU32>,
    spans: Arc<Mutex<usize>>,
}

#[tonic::async_trait]
impl TraceService for Flaky {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(tonic::Status::unavailable("warming up"));
        }
        let n: usize = req
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        *self.spans.lock().unwrap() += n;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn serve(svc: Flaky) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(TraceServiceServer::new(svc.clone()));
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

fn settings(attempts: u32) -> Settings {
    Settings {
        attempts,
        backoff: Duration::from_millis(1),
        ..Settings::default()
    }
}

#[tokio::test]
async fn transient_failures_are_retried_then_dropped() {
    for (fail, attempts, exported, dropped) in [(2, 3, 4, 0), (3, 3, 0, 4)] {
        let flaky = Flaky {
            fail,
            calls: Arc::default(),
            spans: Arc::default(),
        };
        let addr = serve(flaky.clone()).await;
        let collector: Collector = format!("http://{addr}").parse().unwrap();
        let metrics = Metrics::default();
        let (tx, flush) = spawn(&collector, metrics.clone(), settings(attempts));
        for _ in 0..4 {
            tx.try_send(record("a", Kind::Client, 200, true)).unwrap();
        }
        let (done, rx) = oneshot::channel();
        flush.send(done).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("flushed within 10s")
            .unwrap();
        assert_eq!(flaky.calls.load(Ordering::SeqCst), attempts);
        assert_eq!(*flaky.spans.lock().unwrap(), exported);
        assert_eq!(metrics.exported(), exported as u64);
        assert_eq!(metrics.dropped(), dropped);
    }
}

#[tokio::test]
async fn an_unreachable_collector_costs_bounded_tries() {
    // Bind and drop: nothing listens on the port any more, connects are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let collector: Collector = format!("http://{addr}").parse().unwrap();
    let metrics = Metrics::default();
    let (tx, flush) = spawn(&collector, metrics.clone(), settings(2));
    tx.try_send(record("a", Kind::Client, 200, true)).unwrap();
    let (done, rx) = oneshot::channel();
    flush.send(done).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("gave up within 10s")
        .unwrap();
    assert_eq!((metrics.exported(), metrics.dropped()), (0, 1));
    // The warning says why, down to the socket error.
    let exporter = Exporter::new(&collector, Metrics::default(), settings(1));
    let err = exporter.send(Default::default()).await.unwrap_err();
    let why = describe(&err);
    assert!(why.contains("Connection refused"), "{why}");
}

#[tokio::test]
async fn batches_go_out_on_size_and_on_time() {
    let flaky = Flaky {
        fail: 0,
        calls: Arc::default(),
        spans: Arc::default(),
    };
    let addr = serve(flaky.clone()).await;
    let collector: Collector = format!("http://{addr}").parse().unwrap();
    let metrics = Metrics::default();
    let s = Settings {
        max_batch: 2,
        interval: Duration::from_millis(50),
        ..settings(1)
    };
    let (tx, _flush) = spawn(&collector, metrics.clone(), s);
    for _ in 0..5 {
        tx.try_send(record("a", Kind::Client, 200, true)).unwrap();
    }
    // Two full batches at once, the fifth span after the interval: three calls.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.exported() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "exported {}",
            metrics.exported()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
}
