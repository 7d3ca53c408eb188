//! Request and connection accounting: what each request did, recorded once when it ends.
//!
//! A [`Meter`] follows one HTTP request through the proxy, collecting the golden-metric
//! labels as they become known (the route, the cluster, the chosen endpoint, the peer), and
//! records the request when its response ends — when the last body frame (or the trailers,
//! which carry gRPC's status) is sent, or when the client goes away (`DC`). Response bodies
//! are wrapped in [`Metered`] for that; bytes and gRPC messages are counted as they pass.
//! [`TcpMeter`] does the same for an opaque connection.
//!
//! With tracing on ([`crate::telemetry::trace`]), a `Meter` also carries the request's span:
//! started with the meter from the request's trace headers, written into the request that
//! leaves the proxy by [`Meter::propagate`], and ended (queued for export) when the request
//! is recorded.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use http_body::Frame;
use hyper::body::Incoming;

use crate::http::{self as mhttp, Body, ProxyError};
use crate::proxy::Proxy;
use crate::state::{ClusterRt, EndpointMeta, PeerMeta, Snapshot};
use crate::telemetry::access_log::{AccessLog, AccessRecord};
use crate::telemetry::metrics::{
    Metrics, Reporter, RequestLabels, RequestProtocol, ResponseFlag, SecurityPolicy, TcpLabels,
};
use crate::telemetry::trace;

/// Which side of the proxy a request or connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// From the local application to a service: the proxy reports as `source`.
    Outbound,
    /// From a peer to the local application: the proxy reports as `destination`.
    Inbound,
}

/// Counts gRPC length-prefixed messages in a byte stream.
#[derive(Debug, Default, Clone)]
pub struct GrpcFrames {
    header: [u8; 5],
    header_len: usize,
    remaining: u64,
    /// Messages seen so far.
    pub count: u64,
}

impl GrpcFrames {
    /// Feeds the next chunk of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                self.count += 1;
                self.remaining = u64::from(u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]));
                self.header_len = 0;
            }
        }
    }
}

/// Bytes and messages of a request body, shared between the body and its meter.
#[derive(Debug, Default)]
pub struct RequestCount {
    bytes: AtomicU64,
    messages: AtomicU64,
}

/// A request body that counts what passes through it.
#[derive(Debug)]
pub struct CountedBody {
    inner: Incoming,
    count: Arc<RequestCount>,
    grpc: Option<GrpcFrames>,
}

impl CountedBody {
    /// Wraps `inner`, counting into `count` (and gRPC messages when `grpc`).
    pub fn new(inner: Incoming, count: Arc<RequestCount>, grpc: bool) -> Self {
        Self {
            inner,
            count,
            grpc: grpc.then(GrpcFrames::default),
        }
    }

    pub(crate) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.count.bytes.fetch_add(data.len() as u64, Relaxed);
            if let Some(g) = &mut this.grpc {
                let before = g.count;
                g.feed(data);
                this.count.messages.fetch_add(g.count - before, Relaxed);
            }
        }
        polled
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    pub(crate) fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// What the access log needs beyond the metric labels.
#[derive(Debug, Default)]
struct Details {
    start_time: Option<SystemTime>,
    method: String,
    path: String,
    protocol: &'static str,
    authority: String,
    request_id: String,
    user_agent: String,
    upstream_host: String,
    upstream_cluster: String,
    route_name: String,
}

/// Follows one HTTP request; see the module docs.
#[derive(Debug)]
pub struct Meter {
    metrics: Metrics,
    access_log: AccessLog,
    labels: RequestLabels,
    start: Instant,
    request_bytes: u64,
    request_count: Option<Arc<RequestCount>>,
    retries: u32,
    details: Option<Box<Details>>,
    span: Option<trace::Span>,
}

impl Meter {
    /// Starts metering `req`, arriving on `side` of the proxy.
    pub fn start<B>(
        proxy: &Proxy,
        snap: &Snapshot,
        side: Side,
        req: &Request<B>,
        grpc: bool,
    ) -> Self {
        let mut labels = RequestLabels::new(match side {
            Side::Outbound => Reporter::Source,
            Side::Inbound => Reporter::Destination,
        });
        labels.request_protocol = if grpc {
            RequestProtocol::Grpc
        } else {
            RequestProtocol::Http
        };
        labels.set_local(side, &snap.local);
        if side == Side::Inbound {
            labels.set_service_host(inbound_service(req));
        }
        let kind = match side {
            Side::Outbound => trace::Kind::Client,
            Side::Inbound => trace::Kind::Server,
        };
        let span = proxy.tracer.start(kind, req, &snap.local);
        let details = proxy.access_log.is_enabled().then(|| {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            Box::new(Details {
                start_time: Some(SystemTime::now()),
                method: req.method().to_string(),
                path: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
                protocol: crate::telemetry::access_log::version_str(req.version()),
                authority: mhttp::authority(req).unwrap_or_default().to_string(),
                request_id: header("x-request-id"),
                user_agent: header("user-agent"),
                ..Details::default()
            })
        });
        Self {
            metrics: proxy.metrics.clone(),
            access_log: proxy.access_log.clone(),
            labels,
            start: Instant::now(),
            request_bytes: 0,
            request_count: None,
            retries: 0,
            details,
            span,
        }
    }

    /// Writes the request's trace context (this proxy's span as the parent) into the
    /// headers of the request leaving the proxy. A no-op when tracing is off.
    pub fn propagate(&self, headers: &mut http::HeaderMap) {
        if let Some(span) = &self.span {
            span.inject(headers);
        }
    }

    /// The address the request came from (for the span's `peer.address`).
    pub fn set_peer_address(&mut self, addr: std::net::SocketAddr) {
        if let Some(span) = &mut self.span {
            span.set_peer_address(addr);
        }
    }

    /// Names the route that matched.
    pub fn set_route(&mut self, name: &str) {
        if let Some(d) = &mut self.details {
            d.route_name = name.to_string();
        }
    }

    /// The destination cluster (service) was chosen.
    pub fn set_cluster(&mut self, cluster: &ClusterRt) {
        self.labels.set_service(cluster);
        if let Some(d) = &mut self.details {
            d.upstream_cluster = cluster.cluster.key.to_string();
        }
        if let Some(span) = &mut self.span {
            span.set_cluster(
                &cluster.service,
                cluster.cluster.key.port,
                &cluster.cluster.key,
            );
        }
    }

    /// An endpoint was chosen (on a retry, the last one counts).
    pub fn set_upstream(&mut self, ep: &EndpointMeta, addr: std::net::SocketAddr) {
        self.labels.set_destination(&ep.peer);
        if let Some(d) = &mut self.details {
            d.upstream_host = addr.to_string();
        }
        if let Some(span) = &mut self.span {
            span.set_upstream(addr);
        }
    }

    /// The calling peer, on the inbound side, and how it connected.
    pub fn set_peer(&mut self, peer: PeerMeta, security: &str) {
        self.labels.set_source(peer, security);
    }

    /// A fault delay was applied.
    pub fn set_fault_delay(&mut self) {
        self.labels.response_flags = ResponseFlag::DelayInjected;
    }

    /// Retries ran out (or the budget refused one).
    pub fn set_retries_exhausted(&mut self) {
        self.labels.response_flags = ResponseFlag::UpstreamRetryLimitExceeded;
    }

    /// One more retry.
    pub fn count_retry(&mut self) {
        self.retries += 1;
    }

    /// The request body's size, when it was buffered.
    pub fn set_request_bytes(&mut self, n: u64) {
        self.request_bytes = n;
    }

    /// Counts a streaming request body as it is sent.
    pub fn count_request(&mut self, body: Incoming, grpc: bool) -> Body {
        let count = Arc::new(RequestCount::default());
        self.request_count = Some(count.clone());
        Body::Counted(Box::new(CountedBody::new(body, count, grpc)))
    }

    /// Wraps an upstream response; the request is recorded when its body ends.
    pub fn respond(mut self, res: Response<Incoming>) -> Response<Body> {
        self.labels.response_code = res.status().as_u16();
        self.labels.grpc_response_status = mhttp::grpc_status(res.headers());
        let grpc = self.labels.request_protocol == RequestProtocol::Grpc;
        res.map(|inner| {
            if http_body::Body::is_end_stream(&inner) {
                self.finish(0, 0);
                return Body::Incoming(inner);
            }
            Body::Metered(Box::new(Metered {
                inner,
                meter: Some(self),
                bytes: 0,
                grpc: grpc.then(GrpcFrames::default),
            }))
        })
    }

    /// A response the proxy made itself (redirect, direct response): recorded now.
    pub fn respond_local(mut self, res: Response<Body>) -> Response<Body> {
        self.labels.response_code = res.status().as_u16();
        let bytes = http_body::Body::size_hint(res.body()).exact().unwrap_or(0);
        self.finish(bytes, 0);
        res
    }

    /// The proxy's answer to a failed request: recorded now, with its response flag.
    pub fn respond_error(mut self, err: &ProxyError, grpc: bool) -> Response<Body> {
        let flag = err.flag();
        if flag != ResponseFlag::None || self.labels.response_flags == ResponseFlag::None {
            self.labels.response_flags = flag;
        }
        let res = mhttp::error_response(err, grpc);
        self.labels.response_code = res.status().as_u16();
        self.labels.grpc_response_status = mhttp::grpc_status(res.headers());
        self.finish(0, 0);
        res
    }

    fn finish(&mut self, response_bytes: u64, response_messages: u64) {
        let duration = self.start.elapsed();
        let (request_bytes, request_messages) = match &self.request_count {
            Some(c) => (c.bytes.load(Relaxed), c.messages.load(Relaxed)),
            None => (
                self.request_bytes,
                u64::from(
                    self.request_bytes > 0 && self.labels.request_protocol == RequestProtocol::Grpc,
                ),
            ),
        };
        self.metrics.record_request(
            &self.labels,
            duration,
            request_bytes,
            response_bytes,
            request_messages,
            response_messages,
        );
        let trace_id = match (&self.details, &self.span) {
            (Some(_), Some(span)) => span.trace_id().to_string(),
            _ => String::new(),
        };
        if let Some(span) = self.span.take() {
            span.finish(&trace::Outcome {
                duration,
                status_code: self.labels.response_code,
                grpc_status: self.labels.grpc_response_status,
                response_flags: self.labels.response_flags,
                request_bytes,
                response_bytes,
            });
        }
        if let Some(d) = self.details.take() {
            self.access_log.log(&AccessRecord {
                start_time: d.start_time.unwrap_or_else(SystemTime::now),
                duration,
                reporter: self.labels.reporter,
                method: d.method,
                path: d.path,
                protocol: d.protocol.to_string(),
                authority: d.authority,
                response_code: self.labels.response_code,
                grpc_status: self.labels.grpc_response_status,
                response_flags: self.labels.response_flags,
                bytes_received: request_bytes,
                bytes_sent: response_bytes,
                upstream_host: d.upstream_host,
                upstream_cluster: d.upstream_cluster,
                route_name: d.route_name,
                request_id: d.request_id,
                user_agent: d.user_agent,
                source_principal: self.labels.source_principal.to_string(),
                destination_principal: String::new(),
                trace_id,
            });
        }
    }
}

fn non_empty(s: Arc<str>) -> Arc<str> {
    if s.is_empty() {
        crate::telemetry::metrics::unknown()
    } else {
        s
    }
}

/// A response body on its way to the client, recording its request when it ends.
#[derive(Debug)]
pub struct Metered {
    inner: Incoming,
    meter: Option<Meter>,
    bytes: u64,
    grpc: Option<GrpcFrames>,
}

impl Metered {
    pub(crate) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    if let Some(g) = &mut this.grpc {
                        g.feed(data);
                    }
                } else if let Some(trailers) = frame.trailers_ref()
                    && let Some(meter) = &mut this.meter
                    && let Some(code) = mhttp::grpc_status(trailers)
                {
                    meter.labels.grpc_response_status = Some(code);
                }
                if http_body::Body::is_end_stream(&this.inner) {
                    this.done(None);
                }
            }
            Poll::Ready(None) => this.done(None),
            Poll::Ready(Some(Err(_))) => {
                this.done(Some(ResponseFlag::UpstreamConnectionTermination));
            }
            Poll::Pending => {}
        }
        polled
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    pub(crate) fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }

    fn done(&mut self, flag: Option<ResponseFlag>) {
        if let Some(mut meter) = self.meter.take() {
            if let Some(flag) = flag {
                meter.labels.response_flags = flag;
            }
            let messages = self.grpc.as_ref().map_or(0, |g| g.count);
            meter.finish(self.bytes, messages);
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        // The client went away before the body ended.
        self.done(Some(ResponseFlag::DownstreamConnectionTermination));
    }
}

/// Filling in the peer parts of a label set; the same for request and TCP labels.
trait PeerLabels {
    /// The proxy's own workload, as source (outbound) or destination (inbound).
    fn set_local(&mut self, side: Side, local: &PeerMeta);
    /// The destination service.
    fn set_service(&mut self, cluster: &ClusterRt);
    /// The destination service by host name (inbound: as the client proxy named it).
    fn set_service_host(&mut self, host: &str);
    /// The chosen endpoint's workload.
    fn set_destination(&mut self, peer: &PeerMeta);
    /// The calling workload and how it connected (inbound).
    fn set_source(&mut self, peer: PeerMeta, security: &str);
}

macro_rules! peer_labels {
    ($($t:ty),*) => {$(
        impl PeerLabels for $t {
            fn set_local(&mut self, side: Side, local: &PeerMeta) {
                match side {
                    Side::Outbound => {
                        self.source_workload = local.workload.clone();
                        self.source_workload_namespace = local.namespace.clone();
                        self.source_principal = local.principal.clone();
                        self.source_app = local.app.clone();
                        self.source_version = local.version.clone();
                    }
                    Side::Inbound => self.set_destination(local),
                }
            }

            fn set_service(&mut self, cluster: &ClusterRt) {
                self.destination_service = cluster.service.clone();
                self.destination_service_name = cluster.service_name.clone();
            }

            fn set_service_host(&mut self, host: &str) {
                if host.is_empty() {
                    return;
                }
                self.destination_service = host.into();
                self.destination_service_name = host.split('.').next().unwrap_or(host).into();
            }

            fn set_destination(&mut self, peer: &PeerMeta) {
                self.destination_workload = peer.workload.clone();
                self.destination_workload_namespace = peer.namespace.clone();
                self.destination_app = peer.app.clone();
                self.destination_version = peer.version.clone();
            }

            fn set_source(&mut self, peer: PeerMeta, security: &str) {
                self.source_workload = non_empty(peer.workload);
                self.source_workload_namespace = non_empty(peer.namespace);
                self.source_app = non_empty(peer.app);
                self.source_version = non_empty(peer.version);
                self.source_principal = non_empty(peer.principal);
                self.connection_security_policy = match security {
                    "mutual_tls" => SecurityPolicy::MutualTls,
                    "none" => SecurityPolicy::None,
                    _ => SecurityPolicy::Unknown,
                };
            }
        }
    )*};
}

peer_labels!(RequestLabels, TcpLabels);

/// Follows one opaque TCP connection.
#[derive(Debug)]
pub struct TcpMeter {
    metrics: Metrics,
    labels: TcpLabels,
    opened: bool,
    closed: bool,
}

impl TcpMeter {
    /// Starts metering a connection on `side`.
    pub fn start(proxy: &Proxy, snap: &Snapshot, side: Side) -> Self {
        let mut labels = TcpLabels::new(match side {
            Side::Outbound => Reporter::Source,
            Side::Inbound => Reporter::Destination,
        });
        labels.set_local(side, &snap.local);
        Self {
            metrics: proxy.metrics.clone(),
            labels,
            opened: false,
            closed: false,
        }
    }

    /// The destination cluster.
    pub fn set_cluster(&mut self, cluster: &ClusterRt) {
        self.labels.set_service(cluster);
    }

    /// The chosen endpoint.
    pub fn set_upstream(&mut self, ep: &EndpointMeta, _addr: std::net::SocketAddr) {
        self.labels.set_destination(&ep.peer);
    }

    /// The calling peer (inbound).
    pub fn set_peer(&mut self, peer: PeerMeta, security: &str) {
        self.labels.set_source(peer, security);
    }

    /// The destination service as the client proxy named it (inbound tunnels).
    pub fn set_service_host(&mut self, host: &str) {
        self.labels.set_service_host(host);
    }

    /// The connection to the upstream is up.
    pub fn opened(&mut self) {
        self.opened = true;
        self.metrics.tcp_opened(&self.labels);
    }

    /// The connection could not be made.
    pub fn fail(&mut self, flag: ResponseFlag) {
        self.labels.response_flags = flag;
        self.metrics.tcp_opened(&self.labels);
        self.metrics.tcp_closed(&self.labels, 0, 0);
        self.closed = true;
    }

    /// The connection ended after moving `sent` bytes to the upstream and `received` back.
    pub fn closed(&mut self, sent: u64, received: u64) {
        if !self.closed {
            self.closed = true;
            self.metrics.tcp_closed(&self.labels, sent, received);
        }
    }
}

impl Drop for TcpMeter {
    fn drop(&mut self) {
        if self.opened && !self.closed {
            self.metrics.tcp_closed(&self.labels, 0, 0);
        }
    }
}

/// The destination service of a request arriving inbound: the service the client proxy
/// routed to (`x-mesh-service`) when a mesh peer sent it, else the host of the authority
/// the client used.
fn inbound_service<B>(req: &Request<B>) -> &str {
    if let Some(service) = req
        .headers()
        .get(mhttp::SERVICE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return service;
    }
    let authority = mhttp::authority(req).unwrap_or_default();
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_frames_count_across_chunks() {
        let mut f = GrpcFrames::default();
        // Two messages: 3 bytes and 0 bytes, split awkwardly.
        let stream = [0u8, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0];
        for chunk in stream.chunks(2) {
            f.feed(chunk);
        }
        assert_eq!(f.count, 2);
        let mut g = GrpcFrames::default();
        g.feed(&stream);
        assert_eq!(g.count, 2);
    }
}
