//! Routing: which backend cluster serves a request or connection.
//!
//! A [`RouteTable`] holds the routes for one (host, port): HTTP routes evaluated in order
//! (first match wins) and TCP routes for opaque traffic. HTTP actions forward to weighted
//! [`ClusterKey`]s (with timeout, retries, faults, mirroring, rewrites and header
//! mutations), redirect, or answer directly.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::model::{
    Percent, StringMatch, duration,
    validate::{self, FieldError, Reason, ResultExt as _},
};

/// The routes for one host (and its aliases) on one port.
///
/// Its resource name is [`RouteTable::name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTable {
    /// The resource name, conventionally `<hostname>:<port>`.
    pub name: String,
    /// The host names requests may carry for this table (lower-case, no port): the service's
    /// FQDN and its short forms; `*.example.com` and `*` wildcards for gateways.
    pub hostnames: Vec<String>,
    /// The port the table applies to.
    pub port: u16,
    /// HTTP routes, first match wins. A request matching none gets a 404.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// TCP routes for opaque traffic, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
}

/// One HTTP route: conditions and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// A name for telemetry and debugging (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The route applies if any match matches; an empty list matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatch>,
    /// What to do with a matching request.
    pub action: HttpAction,
}

/// Conditions on a request; all set conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// A name for telemetry (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The request path (without the query string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// The method, e.g. `{exact: GET}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The authority (`Host`), without port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// The scheme, `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// Headers that must be present (and match, when a value matcher is given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Headers that must not be present (or not match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_headers: Vec<HeaderMatch>,
    /// Query parameters that must be present and match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<QueryParamMatch>,
    /// Labels the client workload (this proxy's own workload) must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// The namespace the client workload must be in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// A condition on one header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// The header name, lower-case.
    pub name: String,
    /// How its value must match; `None` means the header only has to be present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<StringMatch>,
}

/// A condition on one query parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParamMatch {
    /// The parameter name (case-sensitive).
    pub name: String,
    /// How its value must match; `None` means it only has to be present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<StringMatch>,
}

/// What a route does with a request. Serialized as `{forward: {...}}`, `{redirect: {...}}`
/// or `{directResponse: {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    clippy::large_enum_variant,
    reason = "actions live inside an immutable route table and are never moved on the request path"
)]
pub enum HttpAction {
    /// Send it to a backend.
    Forward(Forward),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    DirectResponse(DirectResponse),
}

/// Forward a request to one of several weighted backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Forward {
    /// Where requests go, split by weight (at least one; weights must not all be zero).
    pub backends: Vec<WeightedBackend>,
    /// Overall request timeout, across retries; `None` means no timeout.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// How failed requests are retried; `None` means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Faults to inject (testing resilience).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Clusters that also receive a copy of requests (responses are discarded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// Path and authority rewrites before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Changes to request headers.
    #[serde(default, skip_serializing_if = "HeaderMutations::is_empty")]
    pub request_headers: HeaderMutations,
    /// Changes to response headers.
    #[serde(default, skip_serializing_if = "HeaderMutations::is_empty")]
    pub response_headers: HeaderMutations,
}

/// A backend cluster and its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedBackend {
    /// The cluster.
    pub cluster: ClusterKey,
    /// Relative weight; a backend gets `weight / sum(weights)` of requests.
    pub weight: u32,
}

/// Names a [`crate::model::Cluster`]: a service port, optionally narrowed to a subset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterKey {
    /// The service's host name.
    pub hostname: String,
    /// The service port.
    pub port: u16,
    /// The subset (from a DestinationRule), e.g. `v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

/// Retries of failed requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try (so at most `attempts + 1` tries).
    pub attempts: u32,
    /// Timeout of each try; `None` means only the route timeout applies.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    /// The failures that are retried.
    pub retry_on: RetryOn,
    /// Delay between tries.
    #[serde(default)]
    pub backoff: Backoff,
    /// Limits retries to a share of traffic, so retries cannot amplify an outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
}

/// A failure a [`RetryPolicy`] may retry (Envoy's `retry_on` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum RetryCondition {
    /// Any 5xx response, or no response (connect failure, reset, timeout of a try).
    #[serde(rename = "5xx")]
    Status5xx = 1 << 0,
    /// 502, 503 or 504.
    #[serde(rename = "gateway-error")]
    GatewayError = 1 << 1,
    /// The connection to the backend could not be established.
    #[serde(rename = "connect-failure")]
    ConnectFailure = 1 << 2,
    /// The backend reset the connection or stream before responding.
    #[serde(rename = "reset")]
    Reset = 1 << 3,
    /// 409 Conflict.
    #[serde(rename = "retriable-4xx")]
    Retriable4xx = 1 << 4,
    /// The backend refused the HTTP/2 stream (REFUSED_STREAM): always safe to retry.
    #[serde(rename = "refused-stream")]
    RefusedStream = 1 << 5,
    /// gRPC status CANCELLED.
    #[serde(rename = "cancelled")]
    Cancelled = 1 << 6,
    /// gRPC status DEADLINE_EXCEEDED.
    #[serde(rename = "deadline-exceeded")]
    DeadlineExceeded = 1 << 7,
    /// gRPC status RESOURCE_EXHAUSTED.
    #[serde(rename = "resource-exhausted")]
    ResourceExhausted = 1 << 8,
    /// gRPC status UNAVAILABLE.
    #[serde(rename = "unavailable")]
    Unavailable = 1 << 9,
    /// gRPC status INTERNAL.
    #[serde(rename = "internal")]
    Internal = 1 << 10,
}

/// A set of [`RetryCondition`]s, as a bit set (a test per failure is one AND).
/// Serialized as a list of condition names.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<RetryCondition>", into = "Vec<RetryCondition>")]
pub struct RetryOn(u16);

/// Exponential backoff between retries, with full jitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// The first delay's upper bound; it doubles per retry.
    #[serde(with = "duration")]
    pub base_interval: Duration,
    /// The cap on the delay.
    #[serde(with = "duration")]
    pub max_interval: Duration,
}

/// Caps retries at a share of requests (Linkerd's retry budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries may add at most this percentage on top of original requests.
    pub percent: Percent,
    /// Retries always allowed per second regardless of the ratio (for low traffic).
    pub min_retries_per_second: u32,
    /// The window over which requests are counted.
    #[serde(with = "duration")]
    pub ttl: Duration,
}

/// Faults injected into matching requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Delay some requests before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Fail some requests without forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// Delay a percentage of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// How long.
    #[serde(with = "duration")]
    pub fixed: Duration,
    /// Which share of requests (default 100).
    #[serde(default)]
    pub percentage: Percent,
}

/// Fail a percentage of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// The failure returned.
    pub error: AbortError,
    /// Which share of requests (default 100).
    #[serde(default)]
    pub percentage: Percent,
}

/// The failure a [`FaultAbort`] returns. Serialized as `{httpStatus: 503}` or
/// `{grpcStatus: 14}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AbortError {
    /// An HTTP status, 200..=599.
    HttpStatus(u16),
    /// A gRPC status code, 1..=16 (HTTP 200 with `grpc-status`).
    GrpcStatus(u8),
}

/// Send a copy of a percentage of requests to another cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    /// Where copies go.
    pub cluster: ClusterKey,
    /// Which share of requests is copied (default 100).
    #[serde(default)]
    pub percentage: Percent,
}

/// Rewrites applied before forwarding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewrite {
    /// Replaces the part of the path matched by the route's `uri` prefix match, or the
    /// whole path when the match was exact or regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_prefix: Option<String>,
    /// Replaces the authority (`Host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// Changes to a set of headers, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMutations {
    /// Replace (or create) these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Answer with a redirect; parts not set are kept from the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    /// New scheme, `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New authority (host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// New port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 301, 302, 303, 307 or 308 (default 301).
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    301
}

/// Answer with a fixed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectResponse {
    /// The status, 200..=599.
    pub status: u16,
    /// The body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One TCP route: conditions and weighted backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// A name for telemetry and debugging (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The route applies if any match matches; an empty list matches every connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TcpMatch>,
    /// Where connections go, split by weight.
    pub backends: Vec<WeightedBackend>,
}

/// Conditions on a connection; all set conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpMatch {
    /// Labels the client workload must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// For TLS traffic: SNI names (`*.example.com` wildcards allowed), any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
}

// === impl RouteTable ===

impl RouteTable {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::non_empty(&self.name).at("name")?;
        validate::non_zero(self.port.into()).at("port")?;
        if self.hostnames.is_empty() {
            return Err(FieldError::field("hostnames", Reason::Empty));
        }
        for (i, h) in self.hostnames.iter().enumerate() {
            validate::hostname(h, true).at_index("hostnames", i)?;
        }
        for (i, r) in self.http.iter().enumerate() {
            r.check().at_index("http", i)?;
        }
        for (i, r) in self.tcp.iter().enumerate() {
            r.check().at_index("tcp", i)?;
        }
        Ok(())
    }
}

// === impl HttpRoute ===

impl HttpRoute {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        for (i, m) in self.matches.iter().enumerate() {
            m.check().at_index("matches", i)?;
        }
        match &self.action {
            HttpAction::Forward(f) => f.check().at("forward"),
            HttpAction::Redirect(r) => r.check().at("redirect"),
            HttpAction::DirectResponse(d) => d.check().at("directResponse"),
        }
        .at("action")
    }
}

impl HttpMatch {
    fn check(&self) -> Result<(), FieldError> {
        for (i, h) in self.headers.iter().enumerate() {
            validate::header_name(&h.name)
                .at("name")
                .at_index("headers", i)?;
        }
        for (i, h) in self.without_headers.iter().enumerate() {
            validate::header_name(&h.name)
                .at("name")
                .at_index("withoutHeaders", i)?;
        }
        for (i, q) in self.query_params.iter().enumerate() {
            validate::non_empty(&q.name)
                .at("name")
                .at_index("queryParams", i)?;
        }
        if let Some(ns) = &self.source_namespace {
            validate::non_empty(ns).at("sourceNamespace")?;
        }
        Ok(())
    }
}

impl Forward {
    fn check(&self) -> Result<(), FieldError> {
        check_backends("backends", &self.backends)?;
        if let Some(r) = &self.retry {
            r.check().at("retry")?;
        }
        if let Some(f) = &self.fault {
            f.check().at("fault")?;
        }
        for (i, m) in self.mirrors.iter().enumerate() {
            m.cluster.check().at("cluster").at_index("mirrors", i)?;
        }
        if let Some(rw) = &self.rewrite {
            if let Some(p) = &rw.uri_prefix
                && !p.starts_with('/')
            {
                return Err(FieldError::field(
                    "uriPrefix",
                    Reason::Other(format!("path {p:?} must start with '/'")),
                )
                .at("rewrite"));
            }
            if let Some(a) = &rw.authority {
                validate::non_empty(a).at("authority").at("rewrite")?;
            }
        }
        self.request_headers.check().at("requestHeaders")?;
        self.response_headers.check().at("responseHeaders")
    }
}

fn check_backends(field: &'static str, backends: &[WeightedBackend]) -> Result<(), FieldError> {
    if backends.is_empty() {
        return Err(FieldError::field(field, Reason::Empty));
    }
    let mut total: u64 = 0;
    for (i, b) in backends.iter().enumerate() {
        b.cluster.check().at("cluster").at_index(field, i)?;
        total += u64::from(b.weight);
        if total > u64::from(u32::MAX) {
            return Err(FieldError::field(
                "weight",
                Reason::OutOfRange {
                    value: b.weight.to_string(),
                    expected: "a weight whose sum with the others fits in 32 bits",
                },
            )
            .at_index(field, i));
        }
    }
    if total == 0 {
        return Err(FieldError::field(
            field,
            Reason::Other("weights must not all be zero".to_owned()),
        ));
    }
    Ok(())
}

// === impl ClusterKey ===

impl ClusterKey {
    /// The key of service `hostname`'s port `port`, all endpoints.
    pub fn new(hostname: impl Into<String>, port: u16) -> Self {
        Self {
            hostname: hostname.into(),
            port,
            subset: None,
        }
    }

    /// The same service port narrowed to `subset`.
    #[must_use]
    pub fn with_subset(self, subset: impl Into<String>) -> Self {
        Self {
            subset: Some(subset.into()),
            ..self
        }
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::hostname(&self.hostname, false).at("hostname")?;
        validate::non_zero(self.port.into()).at("port")?;
        if let Some(s) = &self.subset {
            validate::non_empty(s).at("subset")?;
        }
        Ok(())
    }
}

impl fmt::Display for ClusterKey {
    /// Envoy's and Istio's cluster naming, `outbound|<port>|<subset>|<hostname>`, so names
    /// look familiar in config dumps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "outbound|{}|{}|{}",
            self.port,
            self.subset.as_deref().unwrap_or(""),
            self.hostname
        )
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    fn check(&self) -> Result<(), FieldError> {
        if self.per_try_timeout.is_some_and(|t| t.is_zero()) {
            return Err(FieldError::field("perTryTimeout", Reason::Zero));
        }
        if self.backoff.base_interval > self.backoff.max_interval {
            return Err(FieldError::field(
                "baseInterval",
                Reason::Other("must not exceed maxInterval".to_owned()),
            )
            .at("backoff"));
        }
        if let Some(b) = &self.budget
            && b.ttl.is_zero()
        {
            return Err(FieldError::field("ttl", Reason::Zero).at("budget"));
        }
        Ok(())
    }
}

impl Default for Backoff {
    /// 25 ms base, 250 ms cap (Envoy's defaults).
    fn default() -> Self {
        Self {
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
        }
    }
}

// === impl RetryOn ===

impl RetryOn {
    /// No conditions.
    pub const NONE: Self = Self(0);

    /// Istio's default conditions: connect-failure, refused-stream, unavailable, cancelled
    /// (failures where the request most likely never reached the application).
    pub const DEFAULT: Self = Self(
        RetryCondition::ConnectFailure as u16
            | RetryCondition::RefusedStream as u16
            | RetryCondition::Unavailable as u16
            | RetryCondition::Cancelled as u16,
    );

    const ALL: [RetryCondition; 11] = [
        RetryCondition::Status5xx,
        RetryCondition::GatewayError,
        RetryCondition::ConnectFailure,
        RetryCondition::Reset,
        RetryCondition::Retriable4xx,
        RetryCondition::RefusedStream,
        RetryCondition::Cancelled,
        RetryCondition::DeadlineExceeded,
        RetryCondition::ResourceExhausted,
        RetryCondition::Unavailable,
        RetryCondition::Internal,
    ];

    /// Whether `c` is in the set.
    pub fn contains(self, c: RetryCondition) -> bool {
        self.0 & c as u16 != 0
    }

    /// Adds `c`.
    pub fn insert(&mut self, c: RetryCondition) {
        self.0 |= c as u16;
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The conditions in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = RetryCondition> {
        Self::ALL.into_iter().filter(move |c| self.contains(*c))
    }

    /// Whether an HTTP response status should be retried.
    pub fn retries_status(self, status: u16) -> bool {
        (self.contains(RetryCondition::Status5xx) && (500..=599).contains(&status))
            || (self.contains(RetryCondition::GatewayError) && matches!(status, 502..=504))
            || (self.contains(RetryCondition::Retriable4xx) && status == 409)
    }

    /// Whether a gRPC status code (from `grpc-status`) should be retried.
    pub fn retries_grpc(self, code: u32) -> bool {
        let c = match code {
            1 => RetryCondition::Cancelled,
            4 => RetryCondition::DeadlineExceeded,
            8 => RetryCondition::ResourceExhausted,
            13 => RetryCondition::Internal,
            14 => RetryCondition::Unavailable,
            _ => return false,
        };
        self.contains(c)
    }
}

impl FromIterator<RetryCondition> for RetryOn {
    fn from_iter<I: IntoIterator<Item = RetryCondition>>(iter: I) -> Self {
        let mut s = Self::NONE;
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl From<Vec<RetryCondition>> for RetryOn {
    fn from(v: Vec<RetryCondition>) -> Self {
        v.into_iter().collect()
    }
}

impl From<RetryOn> for Vec<RetryCondition> {
    fn from(s: RetryOn) -> Self {
        s.iter().collect()
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

// === impl Fault ===

impl Fault {
    fn check(&self) -> Result<(), FieldError> {
        if self.delay.is_none() && self.abort.is_none() {
            return Err(FieldError::new(Reason::Other(
                "a fault needs a delay or an abort".to_owned(),
            )));
        }
        if let Some(a) = &self.abort {
            a.error.check().at("abort")?;
        }
        Ok(())
    }
}

impl AbortError {
    fn check(self) -> Result<(), FieldError> {
        match self {
            Self::HttpStatus(s) if !(200..=599).contains(&s) => Err(FieldError::field(
                "httpStatus",
                Reason::OutOfRange {
                    value: s.to_string(),
                    expected: "200..=599",
                },
            )),
            Self::GrpcStatus(s) if !(1..=16).contains(&s) => Err(FieldError::field(
                "grpcStatus",
                Reason::OutOfRange {
                    value: s.to_string(),
                    expected: "1..=16",
                },
            )),
            _ => Ok(()),
        }
    }
}

// === impl HeaderMutations ===

impl HeaderMutations {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    fn check(&self) -> Result<(), FieldError> {
        for (k, v) in &self.set {
            check_mutated_header(k, v).at_key("set", k)?;
        }
        for (k, v) in &self.add {
            check_mutated_header(k, v).at_key("add", k)?;
        }
        for (i, k) in self.remove.iter().enumerate() {
            check_mutated_header(k, "").at_index("remove", i)?;
        }
        Ok(())
    }
}

fn check_mutated_header(name: &str, value: &str) -> Result<(), FieldError> {
    validate::header_name(name)?;
    if name.starts_with(':') || name == "host" {
        return Err(FieldError::new(Reason::Other(format!(
            "header {name:?} cannot be changed here; use rewrite.authority"
        ))));
    }
    validate::header_value(value)
}

// === impl Redirect ===

impl Redirect {
    fn check(&self) -> Result<(), FieldError> {
        if !matches!(self.status, 301 | 302 | 303 | 307 | 308) {
            return Err(FieldError::field(
                "status",
                Reason::OutOfRange {
                    value: self.status.to_string(),
                    expected: "one of 301, 302, 303, 307, 308",
                },
            ));
        }
        if let Some(s) = &self.scheme
            && s != "http"
            && s != "https"
        {
            return Err(FieldError::field(
                "scheme",
                Reason::Other(format!("scheme {s:?} must be http or https")),
            ));
        }
        if let Some(p) = self.port {
            validate::non_zero(p.into()).at("port")?;
        }
        if let Some(p) = &self.path
            && !p.starts_with('/')
        {
            return Err(FieldError::field(
                "path",
                Reason::Other(format!("path {p:?} must start with '/'")),
            ));
        }
        Ok(())
    }
}

impl DirectResponse {
    fn check(&self) -> Result<(), FieldError> {
        if !(200..=599).contains(&self.status) {
            return Err(FieldError::field(
                "status",
                Reason::OutOfRange {
                    value: self.status.to_string(),
                    expected: "200..=599",
                },
            ));
        }
        Ok(())
    }
}

// === impl TcpRoute ===

impl TcpRoute {
    fn check(&self) -> Result<(), FieldError> {
        for (i, m) in self.matches.iter().enumerate() {
            for (j, h) in m.sni_hosts.iter().enumerate() {
                validate::hostname(h, true)
                    .at_index("sniHosts", j)
                    .at_index("matches", i)?;
            }
        }
        check_backends("backends", &self.backends)
    }
}
