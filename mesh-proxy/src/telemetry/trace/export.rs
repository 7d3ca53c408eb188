//! The exporter task: batches finished spans and sends them to the collector as OTLP/gRPC
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` calls.
//!
//! A batch goes out when it holds [`Settings::max_batch`] spans or [`Settings::interval`]
//! after its first span, whichever comes first, and on a flush request. Each call has a
//! timeout (also sent as `grpc-timeout`); transient failures (`UNAVAILABLE`,
//! `DEADLINE_EXCEEDED`, transport errors, …) are retried with jittered exponential backoff
//! up to [`Settings::attempts`] tries, after which the batch is dropped and counted. While a
//! batch is being sent, new spans wait in the bounded queue; when it is full they are
//! dropped by the request path ([`super::Span::finish`]).
//!
//! The call runs over the proxy's usual hyper HTTP/2 client (h2c) through
//! `tonic::client::Grpc`, so no second HTTP stack is built. The OTLP messages are built here,
//! off the request path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use http::uri::PathAndQuery;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, SpanFlags, Status,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Collector, Kind, Metrics, SpanRecord};
use crate::state::PeerMeta;
use crate::telemetry::metrics::ResponseFlag;

/// The gRPC method spans are sent to.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How the exporter batches and retries.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Spans waiting for export, at most.
    pub(super) capacity: usize,
    /// Spans per export call, at most.
    pub(super) max_batch: usize,
    /// How long a span waits for its batch to fill, at most.
    pub(super) interval: Duration,
    /// Timeout of one export call (and of connecting).
    pub(super) timeout: Duration,
    /// Tries per batch, the first included.
    pub(super) attempts: u32,
    /// Backoff before the first retry; doubles per retry, with jitter.
    pub(super) backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            capacity: 4096,
            max_batch: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

type Flush = oneshot::Sender<()>;

/// Spawns the exporter; returns the span queue and the flush-request channel. The task ends
/// (after exporting what is queued) when both senders are dropped.
pub(super) fn spawn(
    collector: &Collector,
    metrics: Metrics,
    settings: Settings,
) -> (mpsc::Sender<SpanRecord>, mpsc::Sender<Flush>) {
    let (tx, rx) = mpsc::channel(settings.capacity.max(1));
    let (flush_tx, flush_rx) = mpsc::channel(8);
    tokio::spawn(Exporter::new(collector, metrics, settings).run(rx, flush_rx));
    (tx, flush_tx)
}

struct Exporter {
    client: Client<HttpConnector, tonic::body::Body>,
    origin: Uri,
    collector: String,
    metrics: Metrics,
    settings: Settings,
    failing: bool,
}

impl Exporter {
    fn new(collector: &Collector, metrics: Metrics, settings: Settings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self {
            client,
            origin: collector.origin().clone(),
            collector: collector.to_string(),
            metrics,
            settings,
            failing: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<SpanRecord>, mut flush: mpsc::Receiver<Flush>) {
        let max = self.settings.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        let mut deadline: Option<Instant> = None;
        loop {
            let due = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // Below `max` here: a full batch is exported at once.
            let room = max - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => {
                    if n == 0 {
                        // Every tracer handle is gone: export the rest and stop.
                        self.export(&mut batch).await;
                        return;
                    }
                    if batch.len() >= max {
                        self.export(&mut batch).await;
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(Instant::now() + self.settings.interval);
                    }
                }
                () = due => {
                    self.export(&mut batch).await;
                    deadline = None;
                }
                Some(done) = flush.recv() => {
                    while let Ok(span) = rx.try_recv() {
                        batch.push(span);
                        if batch.len() >= max {
                            self.export(&mut batch).await;
                        }
                    }
                    self.export(&mut batch).await;
                    deadline = None;
                    let _ = done.send(());
                }
            }
        }
    }

    /// Sends `batch` (emptying it), retrying transient failures.
    async fn export(&mut self, batch: &mut Vec<SpanRecord>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let request = to_request(batch);
        batch.clear();
        let mut attempt = 1;
        loop {
            let result = tokio::time::timeout(self.settings.timeout, self.send(request.clone()))
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("export timed out")));
            match result {
                Ok(res) => {
                    let rejected = res
                        .partial_success
                        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
                        .min(n);
                    self.metrics.exported.inc_by(n - rejected);
                    self.metrics.dropped.inc_by(rejected);
                    if self.failing {
                        tracing::info!(collector = %self.collector, "trace export recovered");
                    }
                    self.failing = false;
                    return;
                }
                Err(status) if attempt < self.settings.attempts && retryable(status.code()) => {
                    let exp = self
                        .settings
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(10));
                    let jitter = exp.mul_f64(0.5 + fastrand::f64() / 2.0);
                    tracing::debug!(
                        collector = %self.collector,
                        error = %describe(&status),
                        attempt,
                        "trace export failed; retrying"
                    );
                    tokio::time::sleep(jitter).await;
                    attempt += 1;
                }
                Err(status) => {
                    self.metrics.dropped.inc_by(n);
                    if !self.failing {
                        tracing::warn!(
                            collector = %self.collector,
                            code = ?status.code(),
                            error = %describe(&status),
                            "trace export failed; dropping spans until the collector answers \
                             (is it reachable? check --trace-collector)"
                        );
                    }
                    self.failing = true;
                    return;
                }
            }
        }
    }

    async fn send(
        &self,
        message: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, tonic::Status> {
        let mut grpc = tonic::client::Grpc::with_origin(self.client.clone(), self.origin.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.settings.timeout);
        let codec = tonic_prost::ProstCodec::default();
        let res = grpc
            .unary(request, PathAndQuery::from_static(EXPORT_PATH), codec)
            .await?;
        Ok(res.into_inner())
    }
}

/// A status's message and its error sources (`client error (Connect): tcp connect error:
/// Connection refused`), repeated parts once.
fn describe(status: &tonic::Status) -> String {
    let mut out = status.message().to_string();
    let mut last = out.clone();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let part = e.to_string();
        if part != last && !part.is_empty() {
            out.push_str(": ");
            out.push_str(&part);
            last = part;
        }
        source = e.source();
    }
    out
}

/// Whether an export failure may succeed when tried again (OTLP's retryable codes, plus
/// `UNKNOWN`, which is how transport errors surface).
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss
            | Code::ResourceExhausted
            | Code::Unknown
    )
}

// === OTLP messages ===

/// One request for `batch`: a `ResourceSpans` per local workload (normally one).
fn to_request(batch: &[SpanRecord]) -> ExportTraceServiceRequest {
    let mut groups: Vec<(&PeerMeta, Vec<OtlpSpan>)> = Vec::new();
    for record in batch {
        let local = &record.details.local;
        let span = to_span(record);
        match groups.iter_mut().find(|(l, _)| same_workload(l, local)) {
            Some((_, spans)) => spans.push(span),
            None => groups.push((local, vec![span])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(local, spans)| ResourceSpans {
                resource: Some(resource(local)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "mesh-proxy".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn same_workload(a: &PeerMeta, b: &PeerMeta) -> bool {
    a.workload == b.workload
        && a.namespace == b.namespace
        && a.app == b.app
        && a.version == b.version
}

fn resource(local: &PeerMeta) -> Resource {
    let app = if local.app.is_empty() {
        &local.workload
    } else {
        &local.app
    };
    let mut attributes = vec![
        string("service.name", format!("{app}.{}", local.namespace)),
        string("service.namespace", &*local.namespace),
    ];
    if !local.version.is_empty() {
        attributes.push(string("service.version", &*local.version));
    }
    if !local.workload.is_empty() {
        attributes.push(string("k8s.pod.name", &*local.workload));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn to_span(r: &SpanRecord) -> OtlpSpan {
    let d = &r.details;
    let o = &r.outcome;
    let mut attributes = Vec::with_capacity(16);
    attributes.push(string("http.method", d.method.as_str()));
    attributes.push(string(
        "http.url",
        format!("http://{}{}", d.authority, d.path),
    ));
    attributes.push(string("http.protocol", d.protocol));
    attributes.push(int("http.status_code", i64::from(o.status_code)));
    if let Some(code) = o.grpc_status {
        attributes.push(int("grpc.status_code", i64::from(code)));
    }
    attributes.push(string("response_flags", o.response_flags.as_str()));
    if !d.upstream_cluster.is_empty() {
        attributes.push(string("upstream_cluster", &*d.upstream_cluster));
    }
    if let Some(a) = d.upstream_address {
        attributes.push(string("upstream_address", a.to_string()));
    }
    if let Some(a) = d.peer_address {
        attributes.push(string("peer.address", a.ip().to_string()));
    }
    attributes.push(int("request_size", saturating_i64(o.request_bytes)));
    attributes.push(int("response_size", saturating_i64(o.response_bytes)));
    attributes.push(string(
        "node_id",
        format!("{}.{}", d.local.workload, d.local.namespace),
    ));
    attributes.push(string("component", "proxy"));

    let grpc_error = o.grpc_status.is_some_and(|c| c != 0);
    let error = o.status_code == 0 || o.status_code >= 500 || grpc_error;
    let status = if error {
        let message = if o.response_flags != ResponseFlag::None {
            o.response_flags.as_str().to_string()
        } else if let Some(code) = o.grpc_status.filter(|_| grpc_error) {
            format!("gRPC status {code}")
        } else {
            format!("HTTP {}", o.status_code)
        };
        Status {
            message,
            code: StatusCode::Error as i32,
        }
    } else {
        Status::default()
    };
    let remote = if r.out.parent_span_id.is_some() {
        SpanFlags::ContextIsRemoteMask as u32
    } else {
        0
    };
    let name = match &d.name {
        Some(n) => n.clone(),
        None if d.authority.is_empty() => "unknown/*".to_string(),
        None => format!("{}/*", d.authority),
    };
    OtlpSpan {
        trace_id: r.out.trace_id.to_bytes().to_vec(),
        span_id: r.out.span_id.to_bytes().to_vec(),
        trace_state: d.trace_state.clone(),
        parent_span_id: r
            .out
            .parent_span_id
            .map(|p| p.to_bytes().to_vec())
            .unwrap_or_default(),
        flags: u32::from(r.out.flags) | SpanFlags::ContextHasIsRemoteMask as u32 | remote,
        name,
        kind: match d.kind {
            Kind::Client => SpanKind::Client as i32,
            Kind::Server => SpanKind::Server as i32,
        },
        start_time_unix_nano: unix_nanos(d.start),
        end_time_unix_nano: unix_nanos(r.end),
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
