//! Istio's golden metrics, with our `mesh_` prefix, plus proxy-level gauges.
//!
//! Everything lives in a `prometheus_client` [`Registry`] the caller owns (no global
//! registry): [`Metrics::new`] registers one collector, and [`SharedRegistry`] renders the
//! registry for `/metrics` (port 15020) and the admin server's `/stats/prometheus`.
//!
//! # Exposed metrics
//!
//! Per request, labelled with [`RequestLabels`] (Istio's standard label names):
//!
//! | name | type | notes |
//! |---|---|---|
//! | `mesh_requests_total` | counter | |
//! | `mesh_request_duration_milliseconds` | histogram | [`DURATION_BUCKETS_MS`] (Istio's) |
//! | `mesh_request_bytes` | histogram | [`BYTES_BUCKETS`]; request body size |
//! | `mesh_response_bytes` | histogram | [`BYTES_BUCKETS`]; response body size |
//! | `mesh_request_messages_total` | counter | gRPC only (`request_protocol="grpc"`) |
//! | `mesh_response_messages_total` | counter | gRPC only |
//!
//! Per TCP connection, labelled with [`TcpLabels`]: `mesh_tcp_connections_opened_total`,
//! `mesh_tcp_connections_closed_total`, `mesh_tcp_sent_bytes_total`,
//! `mesh_tcp_received_bytes_total` (counters).
//!
//! Proxy-level: `mesh_proxy_ready` (gauge, 1 when the readiness probe passes),
//! `mesh_proxy_open_connections{direction="inbound"|"outbound"}` (gauge),
//! `mesh_proxy_config_info{version}` (gauge, always 1, present once a config is applied),
//! `mesh_proxy_config_updates_total{result="ack"|"nack"}` (counter: `ack` counts configs
//! applied, from the file or the control plane; `nack` counts control-plane updates rejected
//! and is present only with a control plane),
//! `mesh_proxy_config_last_update_timestamp_seconds` (gauge, when the current config was
//! applied: a rejected update does not move it, so `time() - it` is the config's age),
//! `mesh_proxy_control_plane_connected` (gauge, 1 while the discovery stream is up; present
//! only with a control plane, see [`crate::discovery`]),
//! `mesh_gateway_listeners_unavailable` (gauge, gateway mode only: TLS listeners of the
//! config not served because none of their credentials loaded, see
//! [`crate::gateway::tls`]),
//! `mesh_access_log_dropped_total` (records dropped because the log writer fell behind) and
//! `mesh_telemetry_overflow_total{family="request"|"tcp"}` (records that went into an
//! overflow series, see below).
//!
//! # Bounded cardinality
//!
//! Each family set (request, TCP) keeps at most `max_series` distinct label sets (default
//! [`DEFAULT_MAX_SERIES`]). A record with a new label set beyond the cap is counted in an
//! *overflow series* instead: `reporter` keeps its value and every other label is
//! `"overflow"`, and `mesh_telemetry_overflow_total` counts it. Memory is therefore bounded
//! no matter what peers send (about 0.7 KiB per request label set plus its label strings),
//! and so is a scrape: one request label set renders as ~42 sample lines carrying 17 labels,
//! about 30 KiB, so the default cap keeps the exposition under ~60 MiB even under abuse,
//! while a sidecar's normal traffic (peers × response codes × flags) stays far below it. A
//! rising overflow counter tells the operator to look for a label that should not vary.
//! Series are never evicted: a proxy's peers and response codes are a small, stable set.
//!
//! # Cost on the request path
//!
//! [`Metrics::record_request`] hashes the label set once (SipHash over the ~17 label values)
//! under a shared read lock and then does only atomic adds: all six request families share
//! one series entry per label set, and the histograms are lock-free (unlike
//! `prometheus_client`'s `Family` + `Histogram`, which would hash six times and take six
//! mutexes). The write lock is taken only the first time a label set is seen, and never once
//! the cap is reached. A scrape clones the map's entries (reference-count bumps) under the
//! read lock and encodes without holding it.

mod export;
mod histogram;
mod series;

use std::{
    fmt,
    sync::{
        Arc, LazyLock, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    },
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

pub use self::export::{Format, SharedRegistry};
use self::{
    histogram::Histogram,
    series::{SeriesKey, SeriesMap},
};

/// Istio's request-duration buckets, in milliseconds.
pub const DURATION_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's request/response size buckets, in bytes.
pub const BYTES_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

/// The default cap on distinct label sets per family set (see "Bounded cardinality"): a
/// sidecar sees tens to hundreds; beyond this, something (a client-chosen authority, a
/// scanner) is inventing label values.
pub const DEFAULT_MAX_SERIES: usize = 2_000;

/// The label value for anything the proxy does not know (Istio's convention).
pub fn unknown() -> Arc<str> {
    static UNKNOWN: LazyLock<Arc<str>> = LazyLock::new(|| "unknown".into());
    UNKNOWN.clone()
}

// === labels ===

/// Which proxy reports a metric: the client's (`source`) or the server's (`destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client-side proxy (outbound traffic).
    Source,
    /// The server-side proxy (inbound traffic).
    Destination,
}

impl Reporter {
    /// `"source"` or `"destination"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Source => 0,
            Self::Destination => 1,
        }
    }
}

/// The application protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    /// HTTP/1.1 or HTTP/2 that is not gRPC.
    Http,
    /// gRPC (`content-type: application/grpc*`).
    Grpc,
}

impl RequestProtocol {
    /// `"http"` or `"grpc"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// Whether the connection between the proxies was mutual TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityPolicy {
    /// Mutual TLS with a verified peer identity.
    MutualTls,
    /// Plaintext.
    None,
    /// Not known (e.g. the request failed before a connection was chosen).
    #[default]
    Unknown,
}

impl SecurityPolicy {
    /// `"mutual_tls"`, `"none"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutualTls => "mutual_tls",
            Self::None => "none",
            Self::Unknown => "unknown",
        }
    }
}

/// Why the proxy (rather than the upstream) shaped a response: Envoy's short response flags,
/// shown in metrics (`response_flags`) and access logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseFlag {
    /// `-`: nothing to report.
    #[default]
    None,
    /// `NR`: no route matched (or the destination is not a known service).
    NoRouteFound,
    /// `NC`: the route's cluster does not exist.
    NoClusterFound,
    /// `UH`: no healthy endpoint in the upstream cluster.
    NoHealthyUpstream,
    /// `UF`: connecting to the upstream failed.
    UpstreamConnectionFailure,
    /// `URX`: retries (or connect attempts) exhausted.
    UpstreamRetryLimitExceeded,
    /// `UT`: the upstream request timed out.
    UpstreamRequestTimeout,
    /// `UO`: a circuit breaker / connection-pool limit refused the request.
    UpstreamOverflow,
    /// `UC`: the upstream connection terminated.
    UpstreamConnectionTermination,
    /// `UPE`: the upstream sent a malformed response.
    UpstreamProtocolError,
    /// `DC`: the downstream (client) connection terminated.
    DownstreamConnectionTermination,
    /// `DPE`: the downstream request was malformed.
    DownstreamProtocolError,
    /// `SI`: the stream idle timeout expired.
    StreamIdleTimeout,
    /// `FI`: an injected fault aborted the request.
    FaultInjected,
    /// `DI`: an injected fault delayed the request.
    DelayInjected,
    /// `RL`: rate limited.
    RateLimited,
}

impl ResponseFlag {
    /// Every flag, in declaration order.
    pub const ALL: [Self; 16] = [
        Self::None,
        Self::NoRouteFound,
        Self::NoClusterFound,
        Self::NoHealthyUpstream,
        Self::UpstreamConnectionFailure,
        Self::UpstreamRetryLimitExceeded,
        Self::UpstreamRequestTimeout,
        Self::UpstreamOverflow,
        Self::UpstreamConnectionTermination,
        Self::UpstreamProtocolError,
        Self::DownstreamConnectionTermination,
        Self::DownstreamProtocolError,
        Self::StreamIdleTimeout,
        Self::FaultInjected,
        Self::DelayInjected,
        Self::RateLimited,
    ];

    /// The Envoy short form: `"-"`, `"NR"`, `"UH"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "-",
            Self::NoRouteFound => "NR",
            Self::NoClusterFound => "NC",
            Self::NoHealthyUpstream => "UH",
            Self::UpstreamConnectionFailure => "UF",
            Self::UpstreamRetryLimitExceeded => "URX",
            Self::UpstreamRequestTimeout => "UT",
            Self::UpstreamOverflow => "UO",
            Self::UpstreamConnectionTermination => "UC",
            Self::UpstreamProtocolError => "UPE",
            Self::DownstreamConnectionTermination => "DC",
            Self::DownstreamProtocolError => "DPE",
            Self::StreamIdleTimeout => "SI",
            Self::FaultInjected => "FI",
            Self::DelayInjected => "DI",
            Self::RateLimited => "RL",
        }
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! label_value_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}

label_value_as_str!(Reporter, RequestProtocol, SecurityPolicy, ResponseFlag);

/// The labels of one request, Istio's standard set. Cheap to clone (`Arc<str>` values; the
/// proxy builds the peer parts once per config snapshot or connection).
///
/// `response_code` is `0` when there was no response; `grpc_response_status` renders as
/// `""` when `None` (not gRPC, or no status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which proxy reports.
    pub reporter: Reporter,
    /// The client workload's name.
    pub source_workload: Arc<str>,
    /// The client workload's namespace.
    pub source_workload_namespace: Arc<str>,
    /// The client's identity (SPIFFE id), `unknown` without mTLS.
    pub source_principal: Arc<str>,
    /// The client's canonical service.
    pub source_app: Arc<str>,
    /// The client's canonical revision.
    pub source_version: Arc<str>,
    /// The server workload's name.
    pub destination_workload: Arc<str>,
    /// The server workload's namespace.
    pub destination_workload_namespace: Arc<str>,
    /// The destination service's host name (FQDN).
    pub destination_service: Arc<str>,
    /// The destination service's short name.
    pub destination_service_name: Arc<str>,
    /// The server's canonical service.
    pub destination_app: Arc<str>,
    /// The server's canonical revision.
    pub destination_version: Arc<str>,
    /// HTTP or gRPC.
    pub request_protocol: RequestProtocol,
    /// The HTTP status, `0` when there was no response.
    pub response_code: u16,
    /// The gRPC status code, for gRPC responses that carry one.
    pub grpc_response_status: Option<u32>,
    /// Why the proxy shaped the response, if it did.
    pub response_flags: ResponseFlag,
    /// mTLS or plaintext between the proxies.
    pub connection_security_policy: SecurityPolicy,
}

impl RequestLabels {
    /// Labels with every peer and service value `unknown`, HTTP, no response yet
    /// (`response_code` 0), no flags, security unknown; fill in what is known.
    pub fn new(reporter: Reporter) -> Self {
        let u = unknown();
        Self {
            reporter,
            source_workload: u.clone(),
            source_workload_namespace: u.clone(),
            source_principal: u.clone(),
            source_app: u.clone(),
            source_version: u.clone(),
            destination_workload: u.clone(),
            destination_workload_namespace: u.clone(),
            destination_service: u.clone(),
            destination_service_name: u.clone(),
            destination_app: u.clone(),
            destination_version: u,
            request_protocol: RequestProtocol::Http,
            response_code: 0,
            grpc_response_status: None,
            response_flags: ResponseFlag::None,
            connection_security_policy: SecurityPolicy::Unknown,
        }
    }

    /// The TCP labels of the same peers.
    pub fn to_tcp(&self) -> TcpLabels {
        TcpLabels {
            reporter: self.reporter,
            source_workload: self.source_workload.clone(),
            source_workload_namespace: self.source_workload_namespace.clone(),
            source_principal: self.source_principal.clone(),
            source_app: self.source_app.clone(),
            source_version: self.source_version.clone(),
            destination_workload: self.destination_workload.clone(),
            destination_workload_namespace: self.destination_workload_namespace.clone(),
            destination_service: self.destination_service.clone(),
            destination_service_name: self.destination_service_name.clone(),
            destination_app: self.destination_app.clone(),
            destination_version: self.destination_version.clone(),
            connection_security_policy: self.connection_security_policy,
            response_flags: self.response_flags,
        }
    }
}

impl SeriesKey for RequestLabels {
    const NAMES: &'static [&'static str] = &[
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "destination_workload",
        "destination_workload_namespace",
        "destination_service",
        "destination_service_name",
        "destination_app",
        "destination_version",
        "request_protocol",
        "response_code",
        "grpc_response_status",
        "response_flags",
        "connection_security_policy",
    ];

    fn reporter(&self) -> Reporter {
        self.reporter
    }
}

/// The labels of one TCP connection (Istio's TCP label set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    /// Which proxy reports.
    pub reporter: Reporter,
    /// The client workload's name.
    pub source_workload: Arc<str>,
    /// The client workload's namespace.
    pub source_workload_namespace: Arc<str>,
    /// The client's identity (SPIFFE id), `unknown` without mTLS.
    pub source_principal: Arc<str>,
    /// The client's canonical service.
    pub source_app: Arc<str>,
    /// The client's canonical revision.
    pub source_version: Arc<str>,
    /// The server workload's name.
    pub destination_workload: Arc<str>,
    /// The server workload's namespace.
    pub destination_workload_namespace: Arc<str>,
    /// The destination service's host name (FQDN).
    pub destination_service: Arc<str>,
    /// The destination service's short name.
    pub destination_service_name: Arc<str>,
    /// The server's canonical service.
    pub destination_app: Arc<str>,
    /// The server's canonical revision.
    pub destination_version: Arc<str>,
    /// mTLS or plaintext between the proxies.
    pub connection_security_policy: SecurityPolicy,
    /// Why the proxy ended or refused the connection, if it did.
    pub response_flags: ResponseFlag,
}

impl TcpLabels {
    /// Labels with every peer and service value `unknown`, no flags, security unknown.
    pub fn new(reporter: Reporter) -> Self {
        RequestLabels::new(reporter).to_tcp()
    }
}

impl SeriesKey for TcpLabels {
    const NAMES: &'static [&'static str] = &[
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "destination_workload",
        "destination_workload_namespace",
        "destination_service",
        "destination_service_name",
        "destination_app",
        "destination_version",
        "connection_security_policy",
        "response_flags",
    ];

    fn reporter(&self) -> Reporter {
        self.reporter
    }
}

/// Which way a connection goes through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Accepted for the local workload (inbound capture or the mesh port).
    Inbound,
    /// Opened by the local workload (outbound capture or an explicit listener).
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

// === series values ===

/// All request metrics of one label set.
#[derive(Debug)]
struct RequestSeries {
    requests: AtomicU64,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
    request_messages: AtomicU64,
    response_messages: AtomicU64,
}

impl Default for RequestSeries {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            // The sum is kept in microseconds and exposed in milliseconds.
            duration: Histogram::new(DURATION_BUCKETS_MS, 1000.0),
            request_bytes: Histogram::new(BYTES_BUCKETS, 1.0),
            response_bytes: Histogram::new(BYTES_BUCKETS, 1.0),
            request_messages: AtomicU64::new(0),
            response_messages: AtomicU64::new(0),
        }
    }
}

/// All TCP metrics of one label set.
#[derive(Debug, Default)]
struct TcpSeries {
    opened: AtomicU64,
    closed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

// === impl Metrics ===

/// The proxy's metrics. Cheap to clone (one `Arc`); every clone records into the same
/// series.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: SeriesMap<RequestLabels, RequestSeries>,
    tcp: SeriesMap<TcpLabels, TcpSeries>,
    ready: Gauge,
    open_connections: [Gauge; 2],
    config_version: Mutex<Option<Arc<str>>>,
    config_updates: Counter,
    config_rejections: Counter,
    config_updated_at: Gauge<f64, AtomicU64>,
    /// Whether config comes from a control plane: only then are the NACK series and
    /// `mesh_proxy_control_plane_connected` exposed.
    control_plane: AtomicBool,
    control_plane_connected: Gauge,
    access_log_dropped: Counter,
    inbound_tls_failures: Counter,
    cert_expiry: Gauge,
    cert_renewals: [Counter; 2],
    /// Gateway mode: TLS listeners without a loadable credential; `gateway` says whether
    /// the gauge is exposed.
    gateway_unavailable: Gauge,
    gateway: AtomicBool,
}

impl Metrics {
    /// Registers the proxy's metrics in `registry`, with the default cardinality cap.
    pub fn new(registry: &mut Registry) -> Self {
        Self::with_max_series(registry, DEFAULT_MAX_SERIES)
    }

    /// Registers the proxy's metrics in `registry`, keeping at most `max_series` distinct
    /// label sets for requests and as many for TCP (at least 1).
    pub fn with_max_series(registry: &mut Registry, max_series: usize) -> Self {
        let inner = Arc::new(Inner {
            requests: SeriesMap::new(max_series),
            tcp: SeriesMap::new(max_series),
            ready: Gauge::default(),
            open_connections: Default::default(),
            config_version: Mutex::new(None),
            config_updates: Counter::default(),
            config_rejections: Counter::default(),
            config_updated_at: Gauge::default(),
            control_plane: AtomicBool::new(false),
            control_plane_connected: Gauge::default(),
            access_log_dropped: Counter::default(),
            inbound_tls_failures: Counter::default(),
            cert_expiry: Gauge::default(),
            cert_renewals: Default::default(),
            gateway_unavailable: Gauge::default(),
            gateway: AtomicBool::new(false),
        });
        registry.register_collector(Box::new(MetricsCollector(inner.clone())));
        Self { inner }
    }

    /// Records one finished request: counted, its duration and body sizes observed, and for
    /// gRPC its message counts added.
    pub fn record_request(
        &self,
        labels: &RequestLabels,
        duration: Duration,
        request_bytes: u64,
        response_bytes: u64,
        request_messages: u64,
        response_messages: u64,
    ) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.inner.requests.with(labels, |s| {
            s.requests.fetch_add(1, Relaxed);
            s.duration.observe(micros as f64 / 1000.0, micros);
            s.request_bytes.observe(request_bytes as f64, request_bytes);
            s.response_bytes
                .observe(response_bytes as f64, response_bytes);
            if request_messages > 0 {
                s.request_messages.fetch_add(request_messages, Relaxed);
            }
            if response_messages > 0 {
                s.response_messages.fetch_add(response_messages, Relaxed);
            }
        });
    }

    /// Records a TCP connection opened.
    pub fn tcp_opened(&self, labels: &TcpLabels) {
        self.inner.tcp.with(labels, |s| {
            s.opened.fetch_add(1, Relaxed);
        });
    }

    /// Adds bytes moved on a connection that is still open (long-lived connections report
    /// progress this way; [`Metrics::tcp_closed`] adds the rest). `sent` and `received` as
    /// for [`Metrics::tcp_closed`].
    pub fn tcp_bytes(&self, labels: &TcpLabels, sent: u64, received: u64) {
        self.inner.tcp.with(labels, |s| {
            s.sent.fetch_add(sent, Relaxed);
            s.received.fetch_add(received, Relaxed);
        });
    }

    /// Records a TCP connection closed, with the bytes it moved not yet reported through
    /// [`Metrics::tcp_bytes`]. As in Istio, `sent` counts bytes sent to the connection's
    /// initiator (the response direction) and `received` bytes received from it (the request
    /// direction).
    pub fn tcp_closed(&self, labels: &TcpLabels, sent: u64, received: u64) {
        self.inner.tcp.with(labels, |s| {
            s.closed.fetch_add(1, Relaxed);
            s.sent.fetch_add(sent, Relaxed);
            s.received.fetch_add(received, Relaxed);
        });
    }

    /// Sets `mesh_proxy_ready` (the readiness probe's state).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    /// The `mesh_proxy_ready` gauge, to share with a readiness handle.
    pub fn ready_gauge(&self) -> Gauge {
        self.inner.ready.clone()
    }

    /// Counts an open connection in `mesh_proxy_open_connections` until the guard drops.
    pub fn track_connection(&self, direction: Direction) -> ConnectionGuard {
        let gauge = self.inner.open_connections[direction as usize].clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Records that config `version` was applied now.
    pub fn config_applied(&self, version: &str) {
        *self
            .inner
            .config_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(version.into());
        self.inner.config_updates.inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.inner.config_updated_at.set(now.as_secs_f64());
    }

    /// Records that a control-plane update was rejected (NACKed); the last good config stays,
    /// and so does its timestamp.
    pub fn config_rejected(&self) {
        self.inner.config_rejections.inc();
    }

    /// Sets `mesh_proxy_control_plane_connected`. The first call also makes the control-plane
    /// series (it and `mesh_proxy_config_updates_total{result="nack"}`) appear.
    pub fn set_control_plane_connected(&self, connected: bool) {
        self.inner.control_plane_connected.set(i64::from(connected));
        self.inner.control_plane.store(true, Relaxed);
    }

    /// Sets `mesh_gateway_listeners_unavailable` (and exposes it from now on): the TLS
    /// listeners of a gateway's config that are not served for want of a credential.
    pub fn set_gateway_listeners_unavailable(&self, n: i64) {
        self.inner.gateway_unavailable.set(n);
        self.inner.gateway.store(true, Relaxed);
    }

    /// Counts a mesh connection refused at the TLS handshake (no or a foreign certificate,
    /// a timeout).
    pub fn inbound_tls_failed(&self) {
        self.inner.inbound_tls_failures.inc();
    }

    /// Records a certificate renewal: its result and, on success, the new expiry (Unix
    /// seconds).
    pub fn certificate_renewed(&self, ok: bool, not_after: i64) {
        self.inner.cert_renewals[usize::from(!ok)].inc();
        if ok {
            self.inner.cert_expiry.set(not_after);
        }
    }

    /// The `mesh_access_log_dropped_total` counter, for [`super::access_log::AccessLog`].
    pub fn access_log_dropped(&self) -> Counter {
        self.inner.access_log_dropped.clone()
    }

    /// How many distinct request label sets are held (overflow series excluded).
    pub fn request_series(&self) -> usize {
        self.inner.requests.len()
    }

    /// How many distinct TCP label sets are held (overflow series excluded).
    pub fn tcp_series(&self) -> usize {
        self.inner.tcp.len()
    }
}

/// Keeps a connection counted in `mesh_proxy_open_connections` while alive.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

// === impl Collector ===

/// Encodes [`Inner`] at scrape time.
#[derive(Debug)]
struct MetricsCollector(Arc<Inner>);

/// A one-label set (`direction`, `family`, `version`).
type OneLabel = [(&'static str, Arc<str>); 1];

impl Collector for MetricsCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let inner = &*self.0;

        let requests = inner.requests.snapshot();
        requests.encode_counter(
            &mut enc,
            "mesh_requests",
            "Requests handled by the proxy.",
            |s| s.requests.load(Relaxed),
            |_| true,
        )?;
        requests.encode_histogram(
            &mut enc,
            "mesh_request_duration_milliseconds",
            "Request durations, from the first request byte to the last response byte, in milliseconds.",
            |s| &s.duration,
        )?;
        requests.encode_histogram(
            &mut enc,
            "mesh_request_bytes",
            "Request body sizes, in bytes.",
            |s| &s.request_bytes,
        )?;
        requests.encode_histogram(
            &mut enc,
            "mesh_response_bytes",
            "Response body sizes, in bytes.",
            |s| &s.response_bytes,
        )?;
        let grpc = |l: &RequestLabels| l.request_protocol == RequestProtocol::Grpc;
        requests.encode_counter(
            &mut enc,
            "mesh_request_messages",
            "gRPC messages sent by clients.",
            |s| s.request_messages.load(Relaxed),
            grpc,
        )?;
        requests.encode_counter(
            &mut enc,
            "mesh_response_messages",
            "gRPC messages sent by servers.",
            |s| s.response_messages.load(Relaxed),
            grpc,
        )?;
        drop(requests);

        let tcp = inner.tcp.snapshot();
        let all = |_: &TcpLabels| true;
        tcp.encode_counter(
            &mut enc,
            "mesh_tcp_connections_opened",
            "TCP connections opened.",
            |s| s.opened.load(Relaxed),
            all,
        )?;
        tcp.encode_counter(
            &mut enc,
            "mesh_tcp_connections_closed",
            "TCP connections closed.",
            |s| s.closed.load(Relaxed),
            all,
        )?;
        tcp.encode_counter(
            &mut enc,
            "mesh_tcp_sent_bytes",
            "Bytes the reporting proxy sent to the connection's initiator.",
            |s| s.sent.load(Relaxed),
            all,
        )?;
        tcp.encode_counter(
            &mut enc,
            "mesh_tcp_received_bytes",
            "Bytes the reporting proxy received from the connection's initiator.",
            |s| s.received.load(Relaxed),
            all,
        )?;
        drop(tcp);

        // Proxy-level.
        inner.ready.encode(enc.encode_descriptor(
            "mesh_proxy_ready",
            "Whether the proxy is ready to serve (1) or not (0).",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut m = enc.encode_descriptor(
                "mesh_proxy_open_connections",
                "Connections currently open through the proxy.",
                None,
                MetricType::Gauge,
            )?;
            for d in [Direction::Inbound, Direction::Outbound] {
                let labels: OneLabel = [("direction", d.as_str().into())];
                inner.open_connections[d as usize].encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "mesh_proxy_config_info",
                "The config version the proxy runs on (always 1).",
                None,
                MetricType::Gauge,
            )?;
            let version = inner
                .config_version
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(version) = version {
                let labels: OneLabel = [("version", version)];
                ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let control_plane = inner.control_plane.load(Relaxed);
        {
            let mut m = enc.encode_descriptor(
                "mesh_proxy_config_updates",
                "Config updates: applied (result=ack) or rejected by validation (result=nack).",
                None,
                MetricType::Counter,
            )?;
            let labels: OneLabel = [("result", "ack".into())];
            inner.config_updates.encode(m.encode_family(&labels)?)?;
            if control_plane {
                let labels: OneLabel = [("result", "nack".into())];
                inner.config_rejections.encode(m.encode_family(&labels)?)?;
            }
        }
        inner.config_updated_at.encode(enc.encode_descriptor(
            "mesh_proxy_config_last_update_timestamp_seconds",
            "When the current config was applied, in seconds since the Unix epoch (0 before the first).",
            None,
            MetricType::Gauge,
        )?)?;
        if control_plane {
            inner.control_plane_connected.encode(enc.encode_descriptor(
                "mesh_proxy_control_plane_connected",
                "Whether the discovery stream to the control plane is up (1) or not (0).",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if inner.gateway.load(Relaxed) {
            inner.gateway_unavailable.encode(enc.encode_descriptor(
                "mesh_gateway_listeners_unavailable",
                "Gateway TLS listeners not served because none of their credentials loaded (see the gateway's log for which and why).",
                None,
                MetricType::Gauge,
            )?)?;
        }
        inner.inbound_tls_failures.encode(enc.encode_descriptor(
            "mesh_proxy_inbound_tls_handshake_failures",
            "Mesh connections refused at the mTLS handshake (no certificate, a foreign CA, a wrong trust domain, a timeout).",
            None,
            MetricType::Counter,
        )?)?;
        inner.cert_expiry.encode(enc.encode_descriptor(
            "mesh_proxy_certificate_expiry_timestamp_seconds",
            "When the workload certificate expires, in seconds since the Unix epoch (0 without one).",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut m = enc.encode_descriptor(
                "mesh_proxy_certificate_renewals",
                "Workload certificate requests: issued (result=success) or failed (result=failure).",
                None,
                MetricType::Counter,
            )?;
            for (i, result) in ["success", "failure"].into_iter().enumerate() {
                let labels: OneLabel = [("result", result.into())];
                inner.cert_renewals[i].encode(m.encode_family(&labels)?)?;
            }
        }
        inner.access_log_dropped.encode(enc.encode_descriptor(
            "mesh_access_log_dropped",
            "Access log records dropped because the writer fell behind.",
            None,
            MetricType::Counter,
        )?)?;
        {
            let mut m = enc.encode_descriptor(
                "mesh_telemetry_overflow",
                "Records counted in an overflow series because their family reached its label-set cap.",
                None,
                MetricType::Counter,
            )?;
            for (family, n) in [
                ("request", inner.requests.overflowed()),
                ("tcp", inner.tcp.overflowed()),
            ] {
                let labels: OneLabel = [("family", family.into())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
