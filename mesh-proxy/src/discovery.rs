//! The discovery client: the proxy's config from the control plane (`mesh-control`, port
//! 15012) over the bidirectional stream `mesh.discovery.v1.Discovery/Stream`, as the
//! protocol in `mesh-api/proto/mesh/discovery/v1/discovery.proto` describes.
//!
//! `mesh-proxy run --control-plane HOST:PORT` builds a [`Client`] instead of reading a
//! config file ([`crate::app`]). The client:
//!
//! - opens one stream and subscribes to every [`ResourceKind`] in dependency order
//!   ([`ResourceKind::ALL`]); the first request carries the proxy's [`Node`] (from
//!   [`Args`]: pod name, namespace, IP, SPIFFE identity, labels, `proxy_version`, sidecar
//!   mode). On reconnect each subscription lists what the proxy holds
//!   (`initial_resource_versions`), so an unchanged server sends nothing;
//! - applies each response atomically ([`Resources::apply`]): the response's adds, replaces
//!   and removals on a copy, the whole config validated by [`ProxyConfig::new`]; a valid
//!   result replaces the proxy's snapshot ([`crate::state::State::update`]) and is ACKed, an
//!   invalid one (a resource that does not convert or validate, a config that does not
//!   validate, an unknown `type_url`) is NACKed with an `ErrorDetail` naming the resource and
//!   the reason, and the last good config stays in force;
//! - marks the proxy ready ([`crate::admin::Readiness`]) once the first response of every
//!   kind has been applied; until then `/healthz/ready` answers 503
//!   `waiting for config from <addr>`. (So the server must answer a subscription that lists
//!   nothing held, even with an empty response: the protocol's "the server answers each
//!   subscription".) Readiness, once reached, is never withdrawn by a lost stream;
//! - optionally caps what it holds (`--max-resources`): an update that would exceed the cap
//!   is NACKed like an invalid one;
//! - reconnects forever with full-jitter exponential backoff (100 ms base, 5 s cap; reset
//!   once a stream has lived 10 s), never dropping the current config. HTTP/2 keep-alive
//!   pings (every 5 s, 5 s timeout) notice a dead control plane within ~10 s.
//!
//! Observability: `mesh_proxy_control_plane_connected`,
//! `mesh_proxy_config_updates_total{result="ack"|"nack"}` and
//! `mesh_proxy_config_last_update_timestamp_seconds`
//! ([`crate::telemetry::metrics`]); the admin `/config_dump` shows the address and
//! connection state ([`Status`]).
//!
//! The transport is HTTP/2 over mutual TLS 1.3 with the workload certificate
//! ([`crate::identity`]; the stream starts only once the first certificate is in, and the
//! control plane takes the proxy's identity from it), over the proxy's own hyper client
//! through `tonic::client::Grpc`, as the trace exporter does ([`crate::telemetry::trace`]):
//! no tonic transport stack.
//!
//! Nothing here runs on the request path: the client task wakes only for stream events and
//! backoff timers.

pub(crate) mod backoff;
pub(crate) mod connection;
mod resources;

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use mesh_api::{
    model::{Node, ProxyConfig, ProxyMode, ResourceKind},
    proto::discovery::v1::{self as pb, discovery_client::DiscoveryClient},
    spiffe::{self, SpiffeId},
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

pub use self::resources::{Applied, Rejected, Resources};
use self::{backoff::Backoff, connection::Connection};
use crate::{admin::Readiness, proxy::Proxy, telemetry::Rfc3339};

/// The control plane's gRPC port (discovery and identity).
pub const CONTROL_PLANE_PORT: u16 = 15012;

/// The proxy's version, sent in its [`Node`].
pub const PROXY_VERSION: &str = env!("CARGO_PKG_VERSION");

// === Args ===

/// Where the config comes from when it comes from a control plane, and who this proxy is
/// (DESIGN.md "proxy env"). Part of `mesh-proxy run` ([`crate::app::Args`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[group(id = "discovery")]
pub struct Args {
    /// The control plane's discovery address, `HOST[:PORT]` (port 15012 by default), e.g.
    /// `mesh-control.mesh-system.svc:15012`, reached with mutual TLS (see --ca-bundle,
    /// --token-file). Exclusive with --config.
    #[arg(
        long,
        env = "MESH_CONTROL_ADDR",
        value_name = "HOST:PORT",
        requires = "pod_name"
    )]
    pub control_plane: Option<ControlPlaneAddr>,
    /// This proxy's pod (or WorkloadEntry) name; required with --control-plane.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    /// The pod's namespace.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = "default"
    )]
    pub pod_namespace: String,
    /// The pod's IP address (0.0.0.0 in the node when unknown).
    #[arg(long, env = "POD_IP", value_name = "IP")]
    pub pod_ip: Option<IpAddr>,
    /// The pod's service account: with the namespace and trust domain, the proxy's identity
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    #[arg(
        long,
        env = "SERVICE_ACCOUNT",
        value_name = "NAME",
        default_value = "default"
    )]
    pub service_account: String,
    /// The mesh's trust domain.
    #[arg(
        long,
        env = "MESH_TRUST_DOMAIN",
        value_name = "DOMAIN",
        default_value = "cluster.local"
    )]
    pub trust_domain: String,
    /// A unique id of this proxy instance; `sidecar~<pod-ip or 0.0.0.0>~<pod>.<namespace>`
    /// by default.
    #[arg(long, value_name = "ID")]
    pub proxy_id: Option<String>,
    /// A label of the workload, `KEY=VALUE`. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The most resources (all kinds together) the proxy accepts from the control plane; an
    /// update that would exceed it is NACKed and the last good config stays. No limit when
    /// unset.
    #[arg(long, env = "MESH_PROXY_MAX_RESOURCES", value_name = "N")]
    pub max_resources: Option<usize>,
}

impl Default for Args {
    /// No control plane; the identity defaults of the command line.
    fn default() -> Self {
        Self {
            control_plane: None,
            pod_name: None,
            pod_namespace: "default".into(),
            pod_ip: None,
            service_account: "default".into(),
            trust_domain: "cluster.local".into(),
            proxy_id: None,
            labels: Vec::new(),
            max_resources: None,
        }
    }
}

impl Args {
    /// The node this proxy describes itself with, as a sidecar.
    pub fn node(&self) -> Result<Node, Error> {
        self.node_as(ProxyMode::Sidecar)
    }

    /// The node this proxy describes itself with, running as `mode`.
    pub fn node_as(&self, mode: ProxyMode) -> Result<Node, Error> {
        let pod_name = self
            .pod_name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(Error::MissingPodName)?;
        let identity = SpiffeId::new(
            &self.trust_domain,
            &self.pod_namespace,
            &self.service_account,
        )
        .map_err(|source| Error::Identity {
            trust_domain: self.trust_domain.clone(),
            namespace: self.pod_namespace.clone(),
            service_account: self.service_account.clone(),
            source,
        })?;
        let ip = self.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let id = self.proxy_id.clone().unwrap_or_else(|| {
            let kind = match mode {
                ProxyMode::Sidecar => "sidecar",
                ProxyMode::Gateway => "router",
            };
            format!("{kind}~{ip}~{pod_name}.{}", self.pod_namespace)
        });
        let node = Node {
            id,
            pod_name,
            namespace: self.pod_namespace.clone(),
            ip,
            identity,
            labels: self.labels.iter().cloned().collect(),
            mode,
            proxy_version: PROXY_VERSION.into(),
        };
        node.validate().map_err(Error::Node)?;
        Ok(node)
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE, e.g. app=reviews")),
    }
}

/// The control plane's address, `HOST:PORT`: a DNS name or an IP address (IPv6 in
/// brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneAddr {
    host: String,
    port: u16,
}

impl ControlPlaneAddr {
    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://HOST:PORT`, the gRPC origin.
    pub(crate) fn origin(&self) -> http::Uri {
        format!("https://{self}")
            .parse()
            .expect("a parsed address is a valid authority")
    }
}

impl FromStr for ControlPlaneAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "expected HOST:PORT, e.g. mesh-control.mesh-system.svc:15012";
        if s.contains("://") {
            return Err(format!("{s:?}: give the address without a scheme ({hint})"));
        }
        let authority: http::uri::Authority = s.parse().map_err(|_| format!("{s:?}: {hint}"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{s:?}: {hint}"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!("{s:?}: the host is empty ({hint})"));
        }
        let rest = &authority.as_str()[authority.host().len()..];
        let port = match rest.strip_prefix(':') {
            None if rest.is_empty() => CONTROL_PLANE_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(format!("{s:?}: {p:?} is not a port ({hint})")),
            },
            None => return Err(format!("{s:?}: {hint}")),
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for ControlPlaneAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

// === Error ===

/// Why the discovery client cannot start, or why a stream ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--control-plane` without a pod name.
    #[error("--pod-name (POD_NAME) is required with --control-plane")]
    MissingPodName,
    /// The identity flags do not make a SPIFFE ID.
    #[error(
        "invalid identity from trust domain {trust_domain:?}, namespace {namespace:?} and \
         service account {service_account:?}: {source} (check --trust-domain, --pod-namespace \
         and --service-account)"
    )]
    Identity {
        /// `--trust-domain`.
        trust_domain: String,
        /// `--pod-namespace`.
        namespace: String,
        /// `--service-account`.
        service_account: String,
        /// Why.
        source: spiffe::Error,
    },
    /// The node description is invalid (e.g. an empty `--proxy-id`).
    #[error("{0} (check --proxy-id, --pod-name and --pod-namespace)")]
    Node(#[source] mesh_api::model::Invalid),
    /// The address did not resolve, or the TCP connect or HTTP/2 handshake failed.
    #[error("{0}")]
    Connect(String),
    /// The stream failed or was refused.
    #[error("{}", describe(.0))]
    Stream(tonic::Status),
    /// The control plane ended the stream.
    #[error("the control plane closed the stream")]
    Closed,
}

/// A status's message and its error sources, repeated parts once
/// (`h2 protocol error: connection reset`), with the code when the server chose it
/// (`unknown service mesh.discovery.v1.Discovery (Unimplemented)`).
fn describe(status: &tonic::Status) -> String {
    let mut out = status.message().to_owned();
    if out.is_empty() {
        out = format!("{:?}", status.code());
    }
    let mut last = out.clone();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let part = e.to_string();
        if part != last && !part.is_empty() && !out.contains(&part) {
            out.push_str(": ");
            out.push_str(&part);
            last = part;
        }
        source = e.source();
    }
    if !matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Unavailable
    ) {
        out = format!("{out} ({:?})", status.code());
    }
    out
}

// === Settings ===

/// Timings and limits of the client; [`Settings::default`] is what the proxy uses (with
/// `max_resources` from `--max-resources`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first reconnect delay's upper bound; doubles per failure (full jitter).
    pub backoff_base: Duration,
    /// The cap on reconnect delays.
    pub backoff_cap: Duration,
    /// A stream that lived this long resets the backoff.
    pub backoff_reset: Duration,
    /// Timeout of name resolution plus TCP connect plus HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval on the connection, also while idle.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is considered dead.
    pub keepalive_timeout: Duration,
    /// The largest response accepted, in bytes (a full push of a big mesh is several MiB).
    pub max_message_bytes: usize,
    /// The most resources held; see [`Args::max_resources`].
    pub max_resources: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            backoff_reset: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            max_message_bytes: 64 << 20,
            max_resources: None,
        }
    }
}

// === Status ===

/// What the client reports about its connection, for the admin `/config_dump`. Cheap to
/// clone; updated a few times per stream, never per request.
#[derive(Clone, Debug)]
pub struct Status {
    inner: Arc<Mutex<StatusInner>>,
}

#[derive(Debug)]
struct StatusInner {
    address: String,
    connected: bool,
    since: SystemTime,
    last_error: Option<String>,
    last_nack: Option<String>,
    versions: BTreeMap<&'static str, String>,
}

impl Status {
    fn new(addr: &ControlPlaneAddr) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StatusInner {
                address: addr.to_string(),
                connected: false,
                since: SystemTime::now(),
                last_error: None,
                last_nack: None,
                versions: BTreeMap::new(),
            })),
        }
    }

    fn update(&self, f: impl FnOnce(&mut StatusInner)) {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn set_connected(&self, connected: bool, error: Option<String>) {
        self.update(|s| {
            if s.connected != connected {
                s.connected = connected;
                s.since = SystemTime::now();
            }
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    /// Whether the stream is up.
    pub fn is_connected(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connected
    }

    /// The state as JSON: `address`, `connected`, `since` (RFC 3339, when `connected` last
    /// changed), `last_error`, `last_nack` and the `system_version` last applied per kind.
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        serde_json::json!({
            "address": s.address,
            "connected": s.connected,
            "since": Rfc3339(s.since).to_string(),
            "last_error": s.last_error,
            "last_nack": s.last_nack,
            "versions": s.versions,
        })
    }
}

// === Client ===

/// The discovery client of one proxy; [`Client::run`] drives it until the proxy stops.
#[derive(Debug)]
pub struct Client {
    addr: ControlPlaneAddr,
    node: pb::Node,
    proxy: Arc<Proxy>,
    readiness: Readiness,
    waiting: String,
    status: Status,
    settings: Settings,
    resources: Resources,
    /// Whether the proxy was marked ready (all kinds applied once).
    ready: bool,
    /// mTLS to the control plane with the workload certificate.
    tls: Arc<rustls::ClientConfig>,
}

/// The readiness reason until the first config: `waiting for config from <addr>`.
pub fn waiting_reason(addr: &ControlPlaneAddr) -> String {
    format!("{} from {addr}", crate::admin::WAITING_FOR_CONFIG)
}

impl Client {
    /// A client for the control plane at `addr` that updates `proxy`'s config and marks
    /// `readiness` ready (from [`waiting_reason`]) once every kind has arrived.
    pub fn new(
        addr: ControlPlaneAddr,
        node: &Node,
        proxy: Arc<Proxy>,
        readiness: Readiness,
        settings: Settings,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        proxy.metrics.set_control_plane_connected(false);
        Self {
            waiting: waiting_reason(&addr),
            status: Status::new(&addr),
            node: pb::Node::from(node),
            resources: Resources::new(node.identity.clone(), node.mode)
                .with_limit(settings.max_resources),
            addr,
            proxy,
            readiness,
            settings,
            ready: false,
            tls,
        }
    }

    /// The connection state, for the admin server.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The control plane's address.
    pub fn addr(&self) -> &ControlPlaneAddr {
        &self.addr
    }

    /// Streams config until `stop` completes, reconnecting after every failure.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
        let mut log = FailureLog::default();
        loop {
            let mut established = None;
            let error = tokio::select! {
                () = &mut stop => return,
                e = self.session(&mut established) => e,
            };
            self.proxy.metrics.set_control_plane_connected(false);
            self.status.set_connected(false, Some(error.to_string()));
            if established.is_some_and(|at: Instant| at.elapsed() >= self.settings.backoff_reset) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            log.failure(
                &self.addr,
                &error,
                established.is_some(),
                delay,
                self.has_config(),
            );
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn has_config(&self) -> bool {
        self.resources.current().is_some()
    }

    /// One stream: connect, subscribe, then apply responses until something fails. Sets
    /// `established` once the control plane accepted the stream.
    async fn session(&mut self, established: &mut Option<Instant>) -> Error {
        let conn = match Connection::connect(&self.addr, &self.settings, &self.tls).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut client = DiscoveryClient::with_origin(conn, self.addr.origin())
            .max_decoding_message_size(self.settings.max_message_bytes);
        // Subscriptions plus a few answers in flight; the stream drains it continuously.
        let (tx, rx) = mpsc::channel(ResourceKind::ALL.len() + 8);
        for (i, kind) in ResourceKind::ALL.into_iter().enumerate() {
            let request = pb::DiscoveryRequest {
                node: (i == 0).then(|| self.node.clone()),
                type_url: kind.type_url().into(),
                initial_resource_versions: self.resources.versions(kind).clone(),
                ..Default::default()
            };
            tx.try_send(request)
                .expect("the channel holds every subscription");
        }
        let mut stream = match client.stream(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => return Error::Stream(status),
        };
        *established = Some(Instant::now());
        self.proxy.metrics.set_control_plane_connected(true);
        self.status.set_connected(true, None);
        tracing::info!(control_plane = %self.addr, "discovery stream open");
        loop {
            let response = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Error::Closed,
                Err(status) => return Error::Stream(status),
            };
            let answer = self.handle(response);
            if tx.send(answer).await.is_err() {
                return Error::Closed;
            }
        }
    }

    /// Applies one response; returns the ACK or NACK.
    fn handle(&mut self, response: pb::DiscoveryResponse) -> pb::DiscoveryRequest {
        let type_url = response.type_url.clone();
        let nonce = response.nonce.clone();
        match self.resources.apply(response) {
            Ok(applied) => {
                let config: &Arc<ProxyConfig> = &applied.config;
                tracing::info!(
                    kind = %applied.kind,
                    version = config.version(),
                    added = applied.upserted,
                    removed = applied.removed,
                    "config applied"
                );
                self.proxy.state.update(config.clone());
                self.proxy.metrics.config_applied(config.version());
                self.status.update(|s| {
                    s.versions
                        .insert(applied.kind.type_url(), config.version().to_owned());
                });
                if !self.ready && self.resources.is_synced() {
                    self.ready = true;
                    if self.readiness.set_ready_from(&self.waiting) {
                        tracing::info!(control_plane = %self.addr, "config received: proxy ready");
                    }
                }
                pb::DiscoveryRequest {
                    type_url,
                    response_nonce: nonce,
                    ..Default::default()
                }
            }
            Err(rejected) => {
                tracing::warn!(
                    type_url,
                    nonce,
                    error = %rejected,
                    "config update rejected (NACK); keeping the last good config"
                );
                self.proxy.metrics.config_rejected();
                self.status
                    .update(|s| s.last_nack = Some(rejected.to_string()));
                pb::DiscoveryRequest {
                    type_url,
                    response_nonce: nonce,
                    error_detail: Some(rejected.detail()),
                    ..Default::default()
                }
            }
        }
    }
}

/// Logs stream failures once each: a warning for a lost stream and for a new cause, debug
/// lines while the same cause repeats (with a warning reminder every minute).
#[derive(Default)]
struct FailureLog {
    /// The last cause warned about, and when.
    last: Option<(String, Instant)>,
    /// Failures since then that were only logged at debug level.
    repeats: u32,
}

impl FailureLog {
    const REMIND: Duration = Duration::from_secs(60);

    fn failure(
        &mut self,
        addr: &ControlPlaneAddr,
        error: &Error,
        established: bool,
        delay: Duration,
        has_config: bool,
    ) {
        let cause = error.to_string();
        let serving = if has_config {
            "serving the last good config"
        } else {
            "no config yet"
        };
        let delay = if delay < Duration::from_secs(1) {
            format!("{}ms", delay.as_millis())
        } else {
            format!("{:.1}s", delay.as_secs_f64())
        };
        let fresh = established
            || self
                .last
                .as_ref()
                .is_none_or(|(last, at)| *last != cause || at.elapsed() >= Self::REMIND);
        if !fresh {
            self.repeats += 1;
            tracing::debug!(
                "cannot reach the control plane at {addr}: {cause}; retrying in {delay}; {serving}"
            );
            return;
        }
        let repeats = std::mem::take(&mut self.repeats);
        let again = if repeats > 0 && !established {
            format!(" ({repeats} times since the last warning)")
        } else {
            String::new()
        };
        if established {
            tracing::warn!(
                "lost the discovery stream to the control plane at {addr}: {cause}; \
                 reconnecting in {delay}; {serving}"
            );
        } else {
            tracing::warn!(
                "cannot reach the control plane at {addr}: {cause}{again}; retrying in {delay}; \
                 {serving} (is mesh-control reachable? check --control-plane / MESH_CONTROL_ADDR)"
            );
        }
        self.last = Some((cause, Instant::now()));
    }
}

#[cfg(test)]
mod tests;
