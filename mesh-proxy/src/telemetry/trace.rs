//! Distributed tracing: one span per HTTP request on each side of the proxy, joined to the
//! caller's trace and exported over OTLP/gRPC.
//!
//! # Shape
//!
//! - The client side ([`crate::outbound::forward`]) records a `CLIENT` span, the server
//!   side ([`crate::inbound`], mesh port and plaintext capture port) a `SERVER` span. Each is
//!   the child of the context the request arrived with ([`context`]: W3C `traceparent`, B3),
//!   or starts a new trace. The request leaves with `traceparent` (and the B3 headers it came
//!   with) rewritten so that the proxy's span is the receiver's parent: app → client span →
//!   server span → app.
//! - Sampling is parent-based with a percentage for new traces ([`sampler`]). Unsampled
//!   requests still get ids and carry the decision (`-00`) downstream, so the next proxy
//!   does not decide again, but nothing is recorded for them.
//! - Span name: `<service host>:<port>/*` on the client side once a cluster is chosen
//!   (`reviews.default.svc.cluster.local:9080/*`, as Istio names it), else `<authority>/*`
//!   (server side, and client requests answered before routing). Low cardinality by design:
//!   the path is an attribute.
//! - Attributes (Envoy's names): `http.method`, `http.url`, `http.protocol`,
//!   `http.status_code`, `grpc.status_code` (gRPC), `response_flags`, `upstream_cluster`,
//!   `upstream_address`, `peer.address`, `request_size`, `response_size`, `node_id`
//!   (`<workload>.<namespace>`) and `component: proxy`. Status is `ERROR` for a 5xx, a
//!   non-OK gRPC status or no response at all.
//! - Resource: `service.name` = `<canonical service>.<namespace>` (Istio's convention),
//!   `service.namespace`, `service.version` (canonical revision), `k8s.pod.name`.
//!
//! Only the OTLP protobuf types come from `opentelemetry-proto`: spans here are plain
//! structs on the [`Meter`](crate::meter::Meter), with no SDK context, global provider or
//! span processor in the request path.
//!
//! # Cost
//!
//! With no collector ([`Tracer::disabled`]) [`Tracer::start`] is one branch: no ids, no
//! header parsing, headers pass through untouched. Enabled, a request costs a header parse
//! and a random span id; only a sampled request allocates its span's details, and at the end
//! its [`Meter`](crate::meter::Meter) hands a compact record to a bounded channel (dropped
//! and counted in `mesh_trace_spans_dropped_total` when full, like the access log). The
//! exporter task (`trace::export`) builds the OTLP messages off the request path and sends
//! batches of up to 512 spans at least every second, with a timeout and bounded retries.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Uri};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::state::PeerMeta;
use crate::telemetry::metrics::ResponseFlag;

pub mod context;
mod export;
pub mod sampler;

pub use self::context::{SpanId, TraceId};
pub use self::sampler::Sampler;

/// Errors of tracing config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sampling percentage is not a number from 0 to 100.
    #[error(
        "invalid trace sampling {0:?}: expected a percentage from 0 to 100, e.g. 1 or 0.5 \
         (check --trace-sampling / MESH_TRACE_SAMPLING)"
    )]
    InvalidSampling(String),
    /// The collector address is not a plaintext `http://host[:port]` URL.
    #[error(
        "invalid trace collector {url:?}: {reason} (expected e.g. \
         http://otel-collector.observability:4317; check --trace-collector / MESH_TRACE_COLLECTOR)"
    )]
    InvalidCollector {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

// === impl Collector ===

/// The OTLP/gRPC collector spans are exported to: plaintext HTTP/2 (`http://host[:port]`,
/// port 4317 when left out). TLS to the collector is not supported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    origin: Uri,
}

impl Collector {
    /// The collector's origin, `http://host:port`.
    pub fn origin(&self) -> &Uri {
        &self.origin
    }
}

impl FromStr for Collector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidCollector {
            url: s.to_string(),
            reason,
        };
        let uri: Uri = s.trim().parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "TLS to the collector is not supported yet; use http:// to a local collector",
                ));
            }
            Some(_) => return Err(bad("the scheme must be http://")),
            None => return Err(bad("the URL needs a scheme, http://")),
        }
        let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
        if authority.host().is_empty() {
            return Err(bad("the URL has no host"));
        }
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("OTLP/gRPC takes no path; give only http://host:port"));
        }
        let port = authority.port_u16().unwrap_or(4317);
        let origin = Uri::builder()
            .scheme("http")
            .authority(format!("{}:{port}", authority.host()))
            .path_and_query("/")
            .build()
            .map_err(|_| bad("not a URL"))?;
        Ok(Self { origin })
    }
}

impl fmt::Display for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.origin.authority().map_or("", |a| a.as_str());
        write!(f, "http://{a}")
    }
}

/// Parses a `--trace-collector` value (for clap).
pub fn parse_collector(s: &str) -> Result<Collector, Error> {
    s.parse()
}

// === impl Metrics ===

/// The tracer's counters: `mesh_trace_spans_exported_total` and
/// `mesh_trace_spans_dropped_total` (queue full, or the collector refused or was unreachable
/// after retries).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    exported: Counter,
    dropped: Counter,
}

impl Metrics {
    /// Registers the counters in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "mesh_trace_spans_exported",
            "Spans the collector accepted",
            m.exported.clone(),
        );
        registry.register(
            "mesh_trace_spans_dropped",
            "Spans dropped: the export queue was full or the collector failed after retries",
            m.dropped.clone(),
        );
        m
    }

    /// Spans exported so far.
    pub fn exported(&self) -> u64 {
        self.exported.get()
    }

    /// Spans dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

// === impl Tracer ===

/// Which side of the proxy a span is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Outbound: the proxy calls a service for the local application.
    Client,
    /// Inbound: the proxy serves a request for the local application.
    Server,
}

/// Starts spans and exports them. Cheap to clone; a disabled tracer is a `None` inside.
#[derive(Debug, Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    sampler: Sampler,
    tx: mpsc::Sender<SpanRecord>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    metrics: Metrics,
}

impl Tracer {
    /// A tracer that traces nothing and leaves headers alone.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A tracer exporting to `collector`. Spawns the exporter on the current Tokio runtime;
    /// it ends when every clone of the tracer is dropped (after exporting what is queued).
    pub fn spawn(collector: &Collector, sampler: Sampler, metrics: Metrics) -> Self {
        Self::spawn_with(collector, sampler, metrics, export::Settings::default())
    }

    fn spawn_with(
        collector: &Collector,
        sampler: Sampler,
        metrics: Metrics,
        settings: export::Settings,
    ) -> Self {
        let (tx, flush) = export::spawn(collector, metrics.clone(), settings);
        Self {
            inner: Some(Arc::new(Inner {
                sampler,
                tx,
                flush,
                metrics,
            })),
        }
    }

    /// Whether spans are recorded and headers rewritten.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the span of `req` on the `kind` side of the proxy of workload `local`. `None`
    /// when tracing is disabled.
    pub fn start<B>(&self, kind: Kind, req: &Request<B>, local: &PeerMeta) -> Option<Span> {
        let inner = self.inner.as_ref()?;
        let ex = context::extract(req.headers());
        let (trace_id, parent, decision, flags) = match ex.parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.sampled, p.flags),
            None => (TraceId::random(), None, ex.sampled, 0),
        };
        let sampled = inner.sampler.sample(decision, trace_id);
        let flags = (flags & !context::FLAG_SAMPLED) | u8::from(sampled);
        let data = sampled.then(|| {
            let authority = crate::http::authority(req).unwrap_or_default();
            let trace_state = if ex.w3c {
                req.headers()
                    .get(context::TRACESTATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            } else {
                String::new()
            };
            Sampled {
                tracer: inner.clone(),
                details: Box::new(Details {
                    kind,
                    start: SystemTime::now(),
                    local: local.clone(),
                    method: req.method().clone(),
                    authority: authority.to_ascii_lowercase(),
                    path: req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string(),
                    protocol: crate::telemetry::access_log::version_str(req.version()),
                    trace_state,
                    name: None,
                    upstream_cluster: String::new(),
                    upstream_address: None,
                    peer_address: None,
                }),
            }
        });
        Some(Span {
            out: context::Outgoing {
                trace_id,
                span_id: SpanId::random(),
                parent_span_id: parent,
                flags,
                keep_tracestate: ex.w3c,
                carriers: ex.carriers,
            },
            data,
        })
    }

    /// Exports what is queued now; waits at most `timeout`. `false` when it did not finish
    /// in time (or tracing is disabled).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        let done = async { inner.flush.send(tx).await.is_ok() && rx.await.is_ok() };
        tokio::time::timeout(timeout, done).await.unwrap_or(false)
    }

    /// The tracer's counters, when enabled.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.as_ref().map(|i| &i.metrics)
    }
}

// === impl Span ===

/// One request's span: its ids (always, for propagation) and, when sampled, what is
/// recorded. Ends with [`Span::finish`]; a span dropped unfinished records nothing.
#[derive(Debug)]
pub struct Span {
    out: context::Outgoing,
    data: Option<Sampled>,
}

/// The recorded part of a sampled span.
#[derive(Debug)]
struct Sampled {
    tracer: Arc<Inner>,
    details: Box<Details>,
}

/// What a sampled span records besides its ids and outcome.
#[derive(Debug)]
struct Details {
    kind: Kind,
    start: SystemTime,
    local: PeerMeta,
    method: Method,
    authority: String,
    path: String,
    protocol: &'static str,
    trace_state: String,
    name: Option<String>,
    upstream_cluster: String,
    upstream_address: Option<SocketAddr>,
    peer_address: Option<SocketAddr>,
}

/// How a request ended, for its span.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// From the first request byte to the end of the response.
    pub duration: Duration,
    /// The response status; 0 when there was no response.
    pub status_code: u16,
    /// The gRPC status, when the response carried one.
    pub grpc_status: Option<u32>,
    /// Why the proxy shaped the response, if it did.
    pub response_flags: ResponseFlag,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

impl Span {
    /// The trace.
    pub fn trace_id(&self) -> TraceId {
        self.out.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.out.span_id
    }

    /// The caller's span, when the request joined a trace.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.out.parent_span_id
    }

    /// Whether the span is recorded.
    pub fn is_sampled(&self) -> bool {
        self.data.is_some()
    }

    /// Rewrites the trace headers of the request leaving the proxy so that this span is the
    /// receiver's parent.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        context::inject(headers, &self.out);
    }

    /// The client side chose `cluster` of the service port `service:port`; formatted only
    /// when the span is sampled.
    pub fn set_cluster(&mut self, service: &str, port: u16, cluster: &impl fmt::Display) {
        if let Some(d) = &mut self.data {
            d.details.name = Some(format!("{service}:{port}/*"));
            d.details.upstream_cluster = cluster.to_string();
        }
    }

    /// The request went to `addr` (on a retry, the last one counts).
    pub fn set_upstream(&mut self, addr: SocketAddr) {
        if let Some(d) = &mut self.data {
            d.details.upstream_address = Some(addr);
        }
    }

    /// The address the request came from.
    pub fn set_peer_address(&mut self, addr: SocketAddr) {
        if let Some(d) = &mut self.data {
            d.details.peer_address = Some(addr);
        }
    }

    /// Ends the span; a sampled span is queued for export (or dropped and counted when the
    /// queue is full). Never blocks.
    pub fn finish(self, outcome: &Outcome) {
        let Some(data) = self.data else {
            return;
        };
        let Sampled { tracer, details } = data;
        let record = SpanRecord {
            out: self.out,
            end: details.start + outcome.duration,
            outcome: *outcome,
            details,
        };
        if tracer.tx.try_send(record).is_err() {
            tracer.metrics.dropped.inc();
        }
    }
}

/// A finished span on its way to the exporter.
#[derive(Debug)]
struct SpanRecord {
    out: context::Outgoing,
    end: SystemTime,
    outcome: Outcome,
    details: Box<Details>,
}

#[cfg(test)]
mod tests;
