//! Per-request HTTP handling on the client side: route, then fault, split, balance, send,
//! retry, time out — VirtualService and DestinationRule semantics.
//!
//! 1. The route table for the request's authority and port (falling back to the service's
//!    own host name) picks a route ([`super::route`]); with no table the request goes to the
//!    service's default cluster, with a table but no matching route it gets 404 (`NR`).
//! 2. Faults: a delay and/or an abort, each for a percentage of requests.
//! 3. A weighted backend (the canary split), its cluster, and an endpoint from the cluster's
//!    load balancer.
//! 4. The request goes to the endpoint's proxy over the shared HTTP/2 connection (port
//!    15008, target port in a header), or straight to the endpoint when it has no proxy.
//! 5. Retries on the route's `retryOn` conditions, bounded by attempts, a per-try timeout, a
//!    retry budget (so retries cannot multiply load during an outage), and the route's
//!    overall timeout. A retry prefers another endpoint. Bodies of known small size are
//!    buffered; bodies of unknown size (gRPC) stream to the first try while a copy is kept
//!    ([`crate::http::replay`]), so a retry can replay them when they ended within
//!    [`MAX_REPLAY_BYTES`]; larger bodies are sent once.
//! 6. Mirrors get a copy of a percentage of requests, fire-and-forget.
//!
//! With tracing on, the request's client span ([`Meter`]) becomes the parent in the
//! `traceparent` (and B3 headers) of every try and mirror.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_api::model::{
    AbortError, ClusterKey, Forward, HeaderMutations, HttpAction, RetryCondition, RetryPolicy,
    WeightedBackend,
};

use super::Destination;
use super::route::{self, RequestView, Selected, SourceView};
use crate::balance::Outcome;
use crate::http::replay::{ReplayBuffer, TeeBody};
use crate::http::{self as mhttp, Body, ProxyError};
use crate::meter::{Meter, Side};
use crate::proxy::Proxy;
use crate::state::{ClusterRt, EndpointMeta, Snapshot};

/// Bodies up to this size are buffered so a failed try can be retried and mirrored.
pub const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// The connection a request arrived on.
#[derive(Debug)]
pub struct ConnCtx {
    /// The client's address.
    pub client: SocketAddr,
    /// Where the connection is going.
    pub dest: Destination,
}

/// What answers a request: an upstream's response, or the proxy itself (a redirect or a
/// direct response configured on the route).
#[derive(Debug)]
pub enum Reply {
    /// The upstream's response.
    Upstream(Response<Incoming>),
    /// A response the route defines.
    Local(Response<Body>),
}

/// Handles one request end to end, always producing a response.
pub async fn handle(proxy: &Arc<Proxy>, conn: &ConnCtx, req: Request<Incoming>) -> Response<Body> {
    let grpc = mhttp::is_grpc(req.headers());
    let Some(snap) = proxy.state.snapshot() else {
        let err = ProxyError::NoHealthyUpstream("this proxy (no config yet)".into());
        return mhttp::error_response(&err, grpc);
    };
    let mut meter = Meter::start(proxy, &snap, Side::Outbound, &req, grpc);
    meter.set_peer_address(conn.client);
    match route_and_forward(proxy, &snap, conn, req, &mut meter).await {
        Ok(Reply::Upstream(res)) => meter.respond(res),
        Ok(Reply::Local(res)) => meter.respond_local(res),
        Err(err) => meter.respond_error(&err, grpc),
    }
}

async fn route_and_forward(
    proxy: &Arc<Proxy>,
    snap: &Arc<Snapshot>,
    conn: &ConnCtx,
    mut req: Request<Incoming>,
    meter: &mut Meter,
) -> Result<Reply, ProxyError> {
    // Routes match the canonical path, the one the destination authorizes.
    mhttp::canonicalize(&mut req)?;
    let service = conn
        .dest
        .service
        .clone()
        .ok_or_else(|| ProxyError::UnknownDestination(format!("port {}", conn.dest.port)))?;
    let port = conn.dest.port;
    let authority = mhttp::authority(&req).unwrap_or(&service).to_string();
    let table = snap
        .config
        .route_table(&authority, port)
        .or_else(|| snap.config.route_table(&service, port));
    let Some(table) = table else {
        // No routing rules: the service's default cluster.
        let key = ClusterKey::new(service.to_string(), port);
        let fwd = default_forward(key);
        return forward(proxy, snap, req, &fwd, None, conn.dest.pinned, meter)
            .await
            .map(Reply::Upstream);
    };
    route_in_table(proxy, snap, table, req, authority, conn.dest.pinned, meter).await
}

/// Routes a request (its path already canonical) by `table`'s HTTP routes and carries out
/// the chosen action: forward (faults, split, balance, retries, timeouts, mirrors),
/// redirect or direct response. No matching route is `NR` (404). Shared by the sidecar's
/// outbound side and the gateway's listeners.
pub(crate) async fn route_in_table(
    proxy: &Arc<Proxy>,
    snap: &Arc<Snapshot>,
    table: &mesh_api::model::RouteTable,
    req: Request<Incoming>,
    authority: String,
    pinned: Option<SocketAddr>,
    meter: &mut Meter,
) -> Result<Reply, ProxyError> {
    let labels = snap.config.workload().map(|w| &w.labels);
    let empty = Default::default();
    let src = SourceView {
        labels: labels.unwrap_or(&empty),
        namespace: &snap.local.namespace,
    };
    let selected = {
        let view = RequestView {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            authority: &authority,
            scheme: req.uri().scheme_str().unwrap_or("http"),
            headers: req.headers(),
        };
        route::select(&table.http, &view, &src)
    };
    let Some(Selected { route, matched }) = selected else {
        return Err(ProxyError::NoRoute {
            authority,
            path: req.uri().path().to_string(),
        });
    };
    meter.set_route(&route.name);
    match &route.action {
        HttpAction::Forward(fwd) => {
            let prefix = matched.and_then(|m| m.uri.as_ref()).and_then(|u| match u {
                mesh_api::model::StringMatch::Prefix(p) => Some(p.as_str()),
                mesh_api::model::StringMatch::Exact(_) | mesh_api::model::StringMatch::Regex(_) => {
                    None
                }
            });
            forward(proxy, snap, req, fwd, prefix, pinned, meter)
                .await
                .map(Reply::Upstream)
        }
        HttpAction::Redirect(r) => Ok(Reply::Local(redirect(&req, r, &authority))),
        HttpAction::DirectResponse(d) => {
            let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
            let body = d.body.clone().unwrap_or_default();
            let mut res = Response::new(Body::full(body));
            *res.status_mut() = status;
            Ok(Reply::Local(res))
        }
    }
}

/// Forwarding to one cluster with no timeout, retries or faults: what a service port without
/// routing rules gets.
fn default_forward(key: ClusterKey) -> Forward {
    Forward {
        backends: vec![WeightedBackend {
            cluster: key,
            weight: 1,
        }],
        timeout: None,
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        rewrite: None,
        request_headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
    }
}

fn redirect<B>(req: &Request<B>, r: &mesh_api::model::Redirect, authority: &str) -> Response<Body> {
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let host = r
        .authority
        .as_deref()
        .unwrap_or_else(|| authority.split(':').next().unwrap_or(authority));
    let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
    let path = r
        .path
        .as_deref()
        .unwrap_or_else(|| req.uri().path_and_query().map_or("/", |p| p.as_str()));
    let location = format!("{scheme}://{host}{port}{path}");
    let mut res = Response::new(Body::Empty);
    *res.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// A request ready to send (or re-send): its head and, when replayable, its body bytes.
struct Prepared {
    /// The one endpoint (by address) the request must go to, for headless services.
    pinned: Option<SocketAddr>,
    method: Method,
    path: PathAndQuery,
    authority: Authority,
    version: Version,
    headers: HeaderMap,
    body: PreparedBody,
}

enum PreparedBody {
    /// Buffered: can be sent any number of times.
    Replayable(Option<Bytes>),
    /// Streaming: can be sent once.
    Stream(Option<Body>),
    /// Streaming to the first try while a copy is kept: later tries replay the copy when
    /// the body ended within [`MAX_REPLAY_BYTES`].
    Tee(Option<Body>, Arc<ReplayBuffer>),
}

impl Prepared {
    fn can_replay(&self) -> bool {
        match &self.body {
            PreparedBody::Replayable(_) => true,
            PreparedBody::Stream(_) => false,
            PreparedBody::Tee(_, copy) => copy.is_replayable(),
        }
    }

    /// The request for one try. `None` when the body was already consumed by a try.
    fn build(
        &mut self,
        ep: &EndpointMeta,
        local_peer: &HeaderValue,
        service: &HeaderValue,
        h2_direct: bool,
    ) -> Option<Request<Body>> {
        let body = match &mut self.body {
            PreparedBody::Replayable(b) => b.clone().map_or(Body::Empty, Body::full),
            PreparedBody::Stream(b) => b.take()?,
            PreparedBody::Tee(first, copy) => match first.take() {
                Some(b) => b,
                None => copy.replay()?,
            },
        };
        let mut headers = self.headers.clone();
        let (uri_authority, version) = match &ep.mesh {
            Some(_) => {
                headers.insert(
                    mhttp::TARGET_PORT,
                    mhttp::value_of(&ep.target_port.to_string()),
                );
                headers.insert(mhttp::PEER, local_peer.clone());
                headers.insert(mhttp::SERVICE, service.clone());
                if self.version < Version::HTTP_2 {
                    headers.insert(mhttp::ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
                }
                headers.remove(header::HOST);
                (self.authority.clone(), Version::HTTP_2)
            }
            None => {
                // Straight to the endpoint: absolute URI to its address, Host kept.
                headers.insert(
                    header::HOST,
                    HeaderValue::from_str(self.authority.as_str())
                        .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
                );
                let a: Authority = ep.target.to_string().parse().ok()?;
                (
                    a,
                    if h2_direct {
                        Version::HTTP_2
                    } else {
                        Version::HTTP_11
                    },
                )
            }
        };
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(uri_authority)
            .path_and_query(self.path.clone())
            .build()
            .ok()?;
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        Some(req)
    }
}

/// Forwards a request per `fwd`.
async fn forward(
    proxy: &Arc<Proxy>,
    snap: &Arc<Snapshot>,
    req: Request<Incoming>,
    fwd: &Forward,
    matched_prefix: Option<&str>,
    pinned: Option<SocketAddr>,
    meter: &mut Meter,
) -> Result<Response<Incoming>, ProxyError> {
    let grpc = mhttp::is_grpc(req.headers());
    // Faults first: they apply whatever the backend.
    if let Some(fault) = &fwd.fault {
        if let Some(delay) = &fault.delay
            && delay.percentage.sample(fastrand::f64())
        {
            meter.set_fault_delay();
            tokio::time::sleep(delay.fixed).await;
        }
        if let Some(abort) = &fault.abort
            && abort.percentage.sample(fastrand::f64())
        {
            let (status, grpc_code) = match abort.error {
                AbortError::HttpStatus(s) => (
                    StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    None,
                ),
                AbortError::GrpcStatus(c) => (StatusCode::OK, Some(u32::from(c))),
            };
            return Err(ProxyError::FaultAbort {
                status,
                grpc: grpc_code,
            });
        }
    }

    let backend =
        pick_backend(&fwd.backends).ok_or_else(|| ProxyError::NoCluster("(no backends)".into()))?;
    let cluster = snap
        .cluster(&backend.cluster)
        .ok_or_else(|| ProxyError::NoCluster(backend.cluster.to_string()))?
        .clone();
    meter.set_cluster(&cluster);
    let _slot = cluster
        .acquire()
        .ok_or_else(|| ProxyError::Overflow(service_port(&cluster)))?;

    let retry = fwd
        .retry
        .as_ref()
        .filter(|r| r.attempts > 0 && !r.retry_on.is_empty());
    let mut prepared = prepare(
        req,
        fwd,
        matched_prefix,
        retry.is_some() || !fwd.mirrors.is_empty(),
    )
    .await?;
    prepared.pinned = pinned;
    meter.propagate(&mut prepared.headers);
    match &mut prepared.body {
        PreparedBody::Replayable(b) => {
            meter.set_request_bytes(b.as_ref().map_or(0, |b| b.len() as u64));
        }
        PreparedBody::Stream(b) => {
            if let Some(Body::Incoming(incoming)) = b.take() {
                *b = Some(meter.count_request(incoming, grpc));
            }
        }
        PreparedBody::Tee(..) => {}
    }
    // A retry may need the streamed body again: keep a copy as it streams.
    if retry.is_some()
        && let PreparedBody::Stream(b) = &mut prepared.body
        && let Some(body) = b.take()
    {
        let copy = ReplayBuffer::new(MAX_REPLAY_BYTES as usize);
        let tee = Body::Tee(Box::new(TeeBody::new(body, copy.clone())));
        prepared.body = PreparedBody::Tee(Some(tee), copy);
    }

    // Mirrors: a copy to each mirror cluster, when the body can be copied.
    if prepared.can_replay() {
        for mirror in &fwd.mirrors {
            if !mirror.percentage.sample(fastrand::f64()) {
                continue;
            }
            if let Some(mcluster) = snap.cluster(&mirror.cluster).cloned() {
                spawn_mirror(proxy.clone(), snap.clone(), mcluster, &mut prepared);
            }
        }
    }

    let attempt_all = attempts(proxy, snap, &cluster, &mut prepared, retry, grpc, meter);
    match fwd.timeout {
        Some(timeout) if !timeout.is_zero() => tokio::time::timeout(timeout, attempt_all)
            .await
            .unwrap_or_else(|_| {
                Err(ProxyError::Timeout {
                    service: cluster.service.to_string(),
                    timeout,
                })
            }),
        _ => attempt_all.await,
    }
    .map(|mut res| {
        apply_mutations(res.headers_mut(), &fwd.response_headers);
        res
    })
}

/// Weighted random choice of a backend (weights need not sum to 100).
pub(crate) fn pick_backend(backends: &[WeightedBackend]) -> Option<&WeightedBackend> {
    match backends {
        [] => None,
        [one] => Some(one),
        many => {
            let total: u64 = many.iter().map(|b| u64::from(b.weight)).sum();
            if total == 0 {
                return many.first();
            }
            let mut r = fastrand::u64(0..total);
            many.iter().find(|b| {
                let w = u64::from(b.weight);
                if r < w {
                    true
                } else {
                    r -= w;
                    false
                }
            })
        }
    }
}

/// Applies rewrites and header mutations, and buffers the body when it is small and a
/// retry or mirror may need it again.
async fn prepare(
    req: Request<Incoming>,
    fwd: &Forward,
    matched_prefix: Option<&str>,
    want_replay: bool,
) -> Result<Prepared, ProxyError> {
    let (mut parts, body) = req.into_parts();
    mhttp::strip_hop_by_hop(&mut parts.headers);
    mhttp::strip_mesh_headers(&mut parts.headers);
    let mut authority: Authority = parts
        .uri
        .authority()
        .cloned()
        .or_else(|| parts.headers.get(header::HOST)?.to_str().ok()?.parse().ok())
        .ok_or_else(|| {
            ProxyError::BadRequest("missing or invalid authority (Host header)".into())
        })?;
    let mut path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if let Some(rw) = &fwd.rewrite {
        if let Some(new_prefix) = &rw.uri_prefix {
            let old = path.as_str();
            let (p, q) = old
                .split_once('?')
                .map_or((old, None), |(p, q)| (p, Some(q)));
            // The matched prefix is replaced; after an exact or regex match, or with no
            // `uri` condition at all, the whole path is.
            let rest = matched_prefix.and_then(|m| p.strip_prefix(m)).unwrap_or("");
            let mut new = format!("{new_prefix}{rest}");
            if new.is_empty() {
                new.push('/');
            }
            if let Some(q) = q {
                new.push('?');
                new.push_str(q);
            }
            path = new.parse().map_err(|_| {
                ProxyError::BadRequest(format!("rewritten path {new:?} is invalid"))
            })?;
        }
        if let Some(a) = &rw.authority {
            authority = a.parse().map_err(|_| {
                ProxyError::BadRequest(format!("rewritten authority {a:?} is invalid"))
            })?;
        }
    }
    apply_mutations(&mut parts.headers, &fwd.request_headers);
    let small = body.is_end_stream()
        || body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= MAX_REPLAY_BYTES);
    let body = if want_replay && small {
        let collected = http_body_util::Limited::new(body, MAX_REPLAY_BYTES as usize)
            .collect()
            .await
            .map_err(|e| ProxyError::BadRequest(format!("reading the request body failed: {e}")))?;
        let bytes = collected.to_bytes();
        PreparedBody::Replayable((!bytes.is_empty()).then_some(bytes))
    } else if body.is_end_stream() {
        PreparedBody::Replayable(None)
    } else {
        PreparedBody::Stream(Some(Body::Incoming(body)))
    };
    Ok(Prepared {
        pinned: None,
        method: parts.method,
        path,
        authority,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

fn apply_mutations(headers: &mut HeaderMap, m: &HeaderMutations) {
    for name in &m.remove {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    for (k, v) in &m.set {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    for (k, v) in &m.add {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
}

/// The tries of one request: the first, then retries while the policy allows.
async fn attempts(
    proxy: &Arc<Proxy>,
    snap: &Arc<Snapshot>,
    cluster: &Arc<ClusterRt>,
    prepared: &mut Prepared,
    retry: Option<&RetryPolicy>,
    grpc: bool,
    meter: &mut Meter,
) -> Result<Response<Incoming>, ProxyError> {
    let max_tries = 1 + retry.map_or(0, |r| r.attempts);
    let mut tried: Option<SocketAddr> = None;
    let mut try_no = 0;
    proxy.retry_budget.deposit();
    loop {
        try_no += 1;
        let result = try_once(proxy, snap, cluster, prepared, tried, retry, meter).await;
        let Some(policy) = retry else {
            return result.map(|(res, _)| res).map_err(|(e, _)| e);
        };
        let (retryable, last_addr) = match &result {
            Ok((res, addr)) => (should_retry_response(policy, res, grpc), Some(*addr)),
            Err((err, addr)) => (should_retry_error(policy, err), *addr),
        };
        if !retryable || try_no >= max_tries || !prepared.can_replay() {
            if retryable && try_no > 1 {
                meter.set_retries_exhausted();
            }
            return result.map(|(res, _)| res).map_err(|(e, _)| e);
        }
        if !proxy.retry_budget.withdraw() {
            meter.set_retries_exhausted();
            return result.map(|(res, _)| res).map_err(|(e, _)| e);
        }
        tried = last_addr;
        meter.count_retry();
        // Backoff before the retry: jittered exponential, as Envoy does.
        let base = policy.backoff.base_interval;
        let cap = policy.backoff.max_interval.max(base);
        let exp = base.saturating_mul(1 << (try_no - 1).min(10)).min(cap);
        let jitter = Duration::from_nanos(fastrand::u64(0..=exp.as_nanos() as u64));
        tokio::time::sleep(jitter).await;
    }
}

fn should_retry_response(policy: &RetryPolicy, res: &Response<Incoming>, grpc: bool) -> bool {
    let status = res.status().as_u16();
    if policy.retry_on.retries_status(status) {
        return true;
    }
    grpc && mhttp::grpc_status(res.headers()).is_some_and(|c| policy.retry_on.retries_grpc(c))
}

fn should_retry_error(policy: &RetryPolicy, err: &ProxyError) -> bool {
    let on = policy.retry_on;
    match err {
        ProxyError::ConnectFailure { .. } => {
            on.contains(RetryCondition::ConnectFailure) || on.contains(RetryCondition::Status5xx)
        }
        ProxyError::UpstreamReset { .. } => {
            on.contains(RetryCondition::Reset)
                || on.contains(RetryCondition::RefusedStream)
                || on.contains(RetryCondition::Status5xx)
        }
        ProxyError::Timeout { .. } => {
            // A per-try timeout: Envoy retries these under 5xx and gateway-error.
            on.contains(RetryCondition::Status5xx) || on.contains(RetryCondition::GatewayError)
        }
        ProxyError::NoHealthyUpstream(_) => on.contains(RetryCondition::Status5xx),
        _ => false,
    }
}

type TryResult = Result<(Response<Incoming>, SocketAddr), (ProxyError, Option<SocketAddr>)>;

/// One try: pick an endpoint, send, classify the outcome for the balancer.
async fn try_once(
    proxy: &Arc<Proxy>,
    snap: &Arc<Snapshot>,
    cluster: &Arc<ClusterRt>,
    prepared: &mut Prepared,
    exclude: Option<SocketAddr>,
    retry: Option<&RetryPolicy>,
    meter: &mut Meter,
) -> TryResult {
    let now = Instant::now();
    let pick = match (prepared.pinned, exclude) {
        // A headless service's pod: that endpoint and no other, on every try.
        (Some(pinned), _) => cluster
            .balancer
            .pick_matching(|m| m.meta.target.ip() == pinned.ip()),
        (None, Some(addr)) => cluster.balancer.pick_excluding(now, addr),
        (None, None) => cluster.balancer.pick(now),
    }
    .ok_or_else(|| (ProxyError::NoHealthyUpstream(service_port(cluster)), None))?;
    let ep = pick.member().meta.clone();
    let addr = pick.member().state.addr();
    meter.set_upstream(&ep, addr);
    let h2_direct = matches!(
        cluster.protocol,
        mesh_api::model::AppProtocol::Http2 | mesh_api::model::AppProtocol::Grpc
    );
    let Some(req) = prepared.build(&ep, &snap.local_header, &cluster.service_header, h2_direct)
    else {
        pick.finish(Outcome::LocalError, Duration::ZERO, Instant::now());
        return Err((
            ProxyError::BadRequest("request could not be rebuilt for a retry".into()),
            Some(addr),
        ));
    };
    let started = Instant::now();
    let send = async {
        match &ep.mesh {
            Some(conn) => conn.send(req).await,
            None => proxy.direct.send(req, h2_direct).await,
        }
    };
    let per_try = retry.and_then(|r| r.per_try_timeout);
    let result = match per_try {
        Some(t) => match tokio::time::timeout(t, send).await {
            Ok(r) => r,
            Err(_) => {
                pick.finish(Outcome::Timeout, started.elapsed(), Instant::now());
                return Err((
                    ProxyError::Timeout {
                        service: cluster.service.to_string(),
                        timeout: t,
                    },
                    Some(addr),
                ));
            }
        },
        None => send.await,
    };
    match result {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let grpc_code = mhttp::grpc_status(res.headers());
            let outcome = match (status, grpc_code) {
                (502..=504, _) | (_, Some(14)) => Outcome::GatewayError(status),
                (500..=599, _) => Outcome::ServerError(status),
                _ => Outcome::Success,
            };
            pick.finish(outcome, started.elapsed(), Instant::now());
            mhttp::strip_hop_by_hop(res.headers_mut());
            Ok((res, addr))
        }
        Err(e) => {
            let connect = e.is_connect();
            pick.finish(
                if connect {
                    Outcome::ConnectFailure
                } else {
                    Outcome::Reset
                },
                started.elapsed(),
                Instant::now(),
            );
            let service = service_port(cluster);
            let err = if connect {
                ProxyError::ConnectFailure {
                    service,
                    reason: "connection refused or unreachable".into(),
                }
            } else {
                tracing::debug!(error = %e, "upstream request failed");
                ProxyError::UpstreamReset {
                    service,
                    reason: "connection closed before a response".into(),
                }
            };
            Err((err, Some(addr)))
        }
    }
}

fn service_port(cluster: &ClusterRt) -> String {
    format!("{}:{}", cluster.service, cluster.cluster.key.port)
}

fn spawn_mirror(
    proxy: Arc<Proxy>,
    snap: Arc<Snapshot>,
    cluster: Arc<ClusterRt>,
    prepared: &mut Prepared,
) {
    let now = Instant::now();
    let Some(pick) = cluster.balancer.pick(now) else {
        return;
    };
    let ep = pick.member().meta.clone();
    let h2_direct = matches!(
        cluster.protocol,
        mesh_api::model::AppProtocol::Http2 | mesh_api::model::AppProtocol::Grpc
    );
    let Some(req) = prepared.build(&ep, &snap.local_header, &cluster.service_header, h2_direct)
    else {
        return;
    };
    tokio::spawn(async move {
        let started = Instant::now();
        let result = match &ep.mesh {
            Some(conn) => conn.send(req).await,
            None => proxy.direct.send(req, h2_direct).await,
        };
        let outcome = match &result {
            Ok(res) if res.status().is_server_error() => {
                Outcome::ServerError(res.status().as_u16())
            }
            Ok(_) => Outcome::Success,
            Err(e) if e.is_connect() => Outcome::ConnectFailure,
            Err(_) => Outcome::Reset,
        };
        pick.finish(outcome, started.elapsed(), Instant::now());
        // Drain the mirror's response so its stream completes; the body is discarded.
        if let Ok(res) = result {
            let _ = res.into_body().collect().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(host: &str, weight: u32) -> WeightedBackend {
        WeightedBackend {
            cluster: ClusterKey::new(host, 80),
            weight,
        }
    }

    #[test]
    fn weighted_backends_split_by_weight() {
        fastrand::seed(7);
        let backends = [backend("v1", 90), backend("v2", 10)];
        let n = 20_000;
        let v2 = (0..n)
            .filter(|_| pick_backend(&backends).unwrap().cluster.hostname == "v2")
            .count();
        let share = v2 as f64 / n as f64;
        assert!((0.08..0.12).contains(&share), "v2 share {share}");
        assert_eq!(
            pick_backend(&[backend("a", 0)]).unwrap().cluster.hostname,
            "a"
        );
        assert!(pick_backend(&[]).is_none());
    }

    #[test]
    fn mutations_set_add_remove() {
        let mut h = HeaderMap::new();
        h.insert("x-old", "1".parse().unwrap());
        h.insert("x-set", "old".parse().unwrap());
        let m = HeaderMutations {
            set: [("x-set".to_string(), "new".to_string())].into(),
            add: [("x-add".to_string(), "a".to_string())].into(),
            remove: vec!["x-old".into()],
        };
        apply_mutations(&mut h, &m);
        assert_eq!(h["x-set"], "new");
        assert_eq!(h["x-add"], "a");
        assert!(!h.contains_key("x-old"));
    }
}
