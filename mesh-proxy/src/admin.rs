//! The proxy's three small HTTP servers: admin (15000, localhost only), metrics (15020) and
//! health (15021), DESIGN.md "proxy ports".
//!
//! - [`serve_admin`]: `GET /` (index), `GET /config_dump` (the current
//!   [`ProxyConfigSpec`](mesh_api::model::ProxyConfigSpec) with its version and age),
//!   `GET /clusters` (endpoints and load-balancer state, from a caller-supplied closure),
//!   `GET /logging` / `POST /logging?level=debug` / `POST /logging?filter=mesh_proxy=trace`
//!   (the tracing filter, changed at run time through a [`LogHandle`]), `POST /quitquitquit`
//!   (asks the proxy to shut down gracefully), `GET /ready`, `GET /stats/prometheus`.
//! - [`serve_metrics`]: `GET /metrics`, for Prometheus.
//! - [`serve_health`]: `GET /healthz/ready`, for the kubelet: `200 ready` or `503 <reason>`
//!   from a shared [`Readiness`]; and `GET /app-health/<container>/<kind>`, the
//!   application's own probes rewritten through the proxy by sidecar injection
//!   ([`AdminState::set_app_probes`], the [`app_probe`] module).
//!
//! Each server takes a listener the caller bound (so tests use port 0 and the caller decides
//! the address: the admin port must be bound to 127.0.0.1), speaks HTTP/1.1 and HTTP/2
//! (hyper-util's auto builder), runs each connection in its own task, off the data path, and
//! stops accepting when its `shutdown` future completes, then lets in-flight requests finish
//! (for at most [`DRAIN_TIMEOUT`]). Bad input never panics: unknown paths get 404 with the
//! list of endpoints, wrong methods 405 with `Allow`, bad query strings 400 with the reason.
//! Rendering metrics (which can be large) runs on the blocking pool.
//!
//! Everything the servers show comes from an [`AdminState`]: the config through a
//! [`ConfigView`] closure (the proxy keeps its config in an `ArcSwap`; the closure returns the
//! snapshot and when it was applied, which `/config_dump` reports as `received_at` and
//! `age_seconds`), readiness, the metrics registry, a [`ClustersView`] closure, the optional
//! [`LogHandle`] and the shutdown trigger (a `watch::Sender<bool>` that `/quitquitquit` sets).
//! With a control plane, a [`ControlPlaneView`] ([`AdminState::set_control_plane`]) adds
//! its address and connection state to `/config_dump` as `control_plane`; the workload
//! certificate's state is there as `identity` ([`AdminState::set_identity`]).

pub mod app_probe;
mod query;
mod routes;
mod server;

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use mesh_api::{inject::AppProbes, model::ProxyConfig};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{net::TcpListener, sync::watch};

use crate::telemetry::{LogHandle, metrics::SharedRegistry};

/// The admin port (bind it to 127.0.0.1 only).
pub const ADMIN_PORT: u16 = 15000;
/// The metrics port (`/metrics`).
pub const METRICS_PORT: u16 = 15020;
/// The health port (`/healthz/ready`).
pub const HEALTH_PORT: u16 = 15021;

/// How long a stopping server waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A readiness reason: no config from the control plane yet.
pub const WAITING_FOR_CONFIG: &str = "waiting for config";
/// A readiness reason: no workload certificate yet.
pub const WAITING_FOR_CERTIFICATE: &str = "waiting for certificate";
/// A readiness reason: the proxy is shutting down.
pub const DRAINING: &str = "draining";

// === impl Readiness ===

/// Whether the proxy is ready to take traffic, and if not, why. Shared by the health server,
/// the admin server and whatever decides readiness; cheap to clone.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

struct ReadinessInner {
    /// `None` when ready, else the reason.
    state: Mutex<Option<Cow<'static, str>>>,
    /// Mirrors the state in `mesh_proxy_ready`, if set.
    gauge: Option<Gauge>,
}

impl Readiness {
    /// Not ready because of `reason` (usually [`WAITING_FOR_CONFIG`]).
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::build(reason.into(), None)
    }

    /// Not ready because of `reason`; mirrors every change in `gauge` (1 ready, 0 not):
    /// pass [`Metrics::ready_gauge`](crate::telemetry::metrics::Metrics::ready_gauge).
    pub fn with_gauge(reason: impl Into<Cow<'static, str>>, gauge: Gauge) -> Self {
        Self::build(reason.into(), Some(gauge))
    }

    fn build(reason: Cow<'static, str>, gauge: Option<Gauge>) -> Self {
        if let Some(g) = &gauge {
            g.set(0);
        }
        Self {
            inner: Arc::new(ReadinessInner {
                state: Mutex::new(Some(reason)),
                gauge,
            }),
        }
    }

    /// Marks the proxy ready.
    pub fn set_ready(&self) {
        self.set(None);
    }

    /// Marks the proxy ready if it is not ready for exactly `reason`, in one step: a reason
    /// set meanwhile (e.g. [`DRAINING`]) is kept. Returns whether the proxy is now ready.
    pub fn set_ready_from(&self, reason: &str) -> bool {
        let mut guard = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*guard {
            None => true,
            Some(r) if r == reason => {
                if let Some(g) = &self.inner.gauge {
                    g.set(1);
                }
                *guard = None;
                true
            }
            Some(_) => false,
        }
    }

    /// Replaces the reason `from` by `to` in one step (the next thing the proxy waits
    /// for); another reason set meanwhile is kept. Returns whether it was replaced.
    pub fn advance(&self, from: &str, to: impl Into<Cow<'static, str>>) -> bool {
        let mut guard = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*guard {
            Some(r) if r == from => {
                *guard = Some(to.into());
                true
            }
            _ => false,
        }
    }

    /// Marks the proxy not ready because of `reason` (e.g. [`WAITING_FOR_CERTIFICATE`],
    /// [`DRAINING`]); the health endpoint answers 503 with it.
    pub fn set_not_ready(&self, reason: impl Into<Cow<'static, str>>) {
        self.set(Some(reason.into()));
    }

    fn set(&self, state: Option<Cow<'static, str>>) {
        let mut guard = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = &self.inner.gauge {
            g.set(i64::from(state.is_none()));
        }
        *guard = state;
    }

    /// Whether the proxy is ready.
    pub fn is_ready(&self) -> bool {
        self.status().is_ok()
    }

    /// `Ok` when ready, else the reason.
    pub fn status(&self) -> Result<(), String> {
        match &*self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            None => Ok(()),
            Some(reason) => Err(reason.to_string()),
        }
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Readiness").field(&self.status()).finish()
    }
}

// === impl AdminState ===

/// How the admin server reads the current config: the snapshot and when it was applied, or
/// `None` before the first config. Called per `/config_dump` request, off the data path.
///
/// The proxy keeps its config in an `ArcSwap` (lock-free on the request path), so this is a
/// closure over it rather than a channel: the admin server never holds the config itself.
pub type ConfigView = Arc<dyn Fn() -> Option<(Arc<ProxyConfig>, Instant)> + Send + Sync>;

/// What `/clusters` shows (endpoints and their load-balancer state), as JSON. Called per
/// request, off the data path.
pub type ClustersView = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What `/config_dump` shows as `control_plane` (address, connection state), as JSON.
/// Called per request, off the data path.
pub type ControlPlaneView = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the three servers show and control. Cheap to clone; [`serve_admin`],
/// [`serve_metrics`] and [`serve_health`] each take a clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<StateInner>,
}

struct StateInner {
    config: ConfigView,
    readiness: Readiness,
    registry: SharedRegistry,
    clusters: ClustersView,
    log: Option<LogHandle>,
    shutdown: watch::Sender<bool>,
    control_plane: OnceLock<ControlPlaneView>,
    identity: OnceLock<ControlPlaneView>,
    app_probes: OnceLock<Arc<AppProbes>>,
}

impl AdminState {
    /// The admin state:
    /// - `config`: the current config and when it was applied (`/config_dump`);
    /// - `readiness`: `/ready` and the health server's `/healthz/ready`;
    /// - `registry`: what `/metrics` and `/stats/prometheus` show;
    /// - `clusters`: what `/clusters` shows;
    /// - `log`: the tracing filter handle for `/logging` (`None`: `/logging` answers 501);
    /// - `shutdown`: set to `true` by `POST /quitquitquit`; the caller waits on a receiver.
    pub fn new(
        config: ConfigView,
        readiness: Readiness,
        registry: impl Into<SharedRegistry>,
        clusters: ClustersView,
        log: Option<LogHandle>,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(StateInner {
                config,
                readiness,
                registry: registry.into(),
                clusters,
                log,
                shutdown,
                control_plane: OnceLock::new(),
                identity: OnceLock::new(),
                app_probes: OnceLock::new(),
            }),
        }
    }

    /// Adds the control plane's state to `/config_dump` (as `control_plane`). Only the first
    /// call counts; without one, `/config_dump` has no `control_plane` field.
    pub fn set_control_plane(&self, view: ControlPlaneView) {
        let _ = self.inner.control_plane.set(view);
    }

    /// Adds the workload identity (SPIFFE id, certificate chain, trust bundle, renewal
    /// state) to `/config_dump` (as `identity`). Only the first call counts.
    pub fn set_identity(&self, view: ControlPlaneView) {
        let _ = self.inner.identity.set(view);
    }

    /// Has the health server answer `GET /app-health/<container>/<kind>` for each of
    /// `probes` by running the original probe against the application (see [`app_probe`]).
    /// Only the first call counts; without one, every `/app-health/...` path is 404.
    pub fn set_app_probes(&self, probes: AppProbes) {
        let _ = self.inner.app_probes.set(Arc::new(probes));
    }

    /// The readiness handle.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The metrics registry.
    pub fn registry(&self) -> &SharedRegistry {
        &self.inner.registry
    }
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("readiness", &self.inner.readiness)
            .field("log", &self.inner.log.is_some())
            .finish_non_exhaustive()
    }
}

// === servers ===

/// Serves the admin endpoints on `listener` until `shutdown` completes. Bind the listener to
/// 127.0.0.1: the endpoints change the proxy's behaviour and are not authenticated.
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |parts| routes::admin(state.clone(), parts);
    server::serve("admin", listener, handler, shutdown).await;
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) {
    let registry = state.inner.registry.clone();
    let handler = move |parts| routes::metrics(registry.clone(), parts);
    server::serve("metrics", listener, handler, shutdown).await;
}

/// Serves `GET /healthz/ready`, and the application probes of
/// [`AdminState::set_app_probes`] under `/app-health/`, on `listener` until `shutdown`
/// completes.
pub async fn serve_health(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |parts: http::request::Parts| {
        let state = state.clone();
        async move {
            if parts.uri.path().starts_with(app_probe::PREFIX) {
                let probes = state.inner.app_probes.get().cloned().unwrap_or_default();
                app_probe::answer(&probes, &parts).await
            } else {
                routes::health(state.inner.readiness.clone(), parts).await
            }
        }
    };
    server::serve("health", listener, handler, shutdown).await;
}

#[cfg(test)]
mod tests;
