//! Running the proxy: options, listeners, config source, readiness and graceful drain.
//!
//! [`Args`] is the command line (`mesh-proxy run`, and within [`crate::gateway::Args`]
//! `mesh-proxy gateway`, built by [`App::build_gateway`]: no capture or mesh inbound
//! listeners, the gateway's listeners instead), parsed once. [`App::build`] binds every
//! listener (so port 0 works in tests) and returns the addresses it actually bound;
//! [`App::run`] serves until SIGTERM/SIGINT (or the admin `/quitquitquit`), then stops
//! accepting, lets in-flight requests finish within the drain timeout, flushes the last
//! spans, and returns.
//!
//! `--trace-collector` turns on distributed tracing ([`crate::telemetry::trace`]), with
//! `--trace-sampling` percent of new traces recorded (1 % by default, as Istio).
//!
//! Mutual TLS is always on: the proxy needs a workload certificate ([`crate::identity`]),
//! from the control plane's CA (`--control-plane` with `--ca-bundle` and `--token-file`) or
//! from files (`--identity-dir`). Without one it is not ready and the mesh port refuses
//! every handshake; it never falls back to plaintext.
//!
//! Config comes from one of two sources, exactly one of which is given:
//!
//! - `--control-plane HOST:PORT` (`MESH_CONTROL_ADDR`): the discovery stream from
//!   mesh-control ([`crate::discovery`]), with the node identity from `--pod-name`,
//!   `--pod-namespace`, `--pod-ip`, `--service-account`, `--trust-domain`, `--proxy-id` and
//!   `--label` (and their environment variables). Listeners are bound at once, but the proxy
//!   is not ready (`/healthz/ready` answers 503 `waiting for config from <addr>`) until the
//!   first response of every resource kind has been applied. Invalid updates are NACKed and
//!   the last good config stays in force; a lost stream is retried forever.
//! - `--config FILE` (with `--identity-dir`): a static file of the domain model
//!   ([`mesh_api::model::ProxyConfigSpec`], YAML or JSON), loaded before the listeners and
//!   reloaded when it changes; an invalid update is logged and the last good config stays in
//!   force.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use mesh_api::model::{ProxyConfig, ProxyConfigSpec, ProxyMode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminState, Readiness};
use crate::discovery;
use crate::identity::{self, Identity, ca::CaClient};
use crate::outbound::Target;
use crate::proxy::{Limits, Proxy, RetryBudget};
use crate::state::{MESH_PORT, State};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::{self, Collector, Sampler, Tracer};
use crate::transport::Direct;

/// `mesh-proxy run`: serve as a sidecar. Exactly one of `--config` and `--control-plane`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("config_source")
        .args(["config", "control_plane"])
        .required(true)
))]
pub struct Args {
    /// A static config file (the domain model as YAML or JSON), reloaded when it changes.
    /// Exclusive with --control-plane.
    #[arg(long, env = "MESH_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control plane and this proxy's identity (`--control-plane`, `--pod-name`, …).
    #[command(flatten)]
    pub discovery: discovery::Args,
    /// Where the workload certificate comes from (`--identity-dir`, `--token-file`, …).
    #[command(flatten)]
    pub identity: identity::Args,
    /// Transparent outbound capture listener (where `mesh-proxy init` redirects to).
    #[arg(long, default_value = "0.0.0.0:15001")]
    pub outbound_capture: SocketAddr,
    /// Transparent inbound capture listener (plaintext clients; PERMISSIVE only).
    #[arg(long, default_value = "0.0.0.0:15006")]
    pub inbound_capture: SocketAddr,
    /// Do not open the capture listeners (explicit mode: no root, no iptables).
    #[arg(long)]
    pub no_capture: bool,
    /// The mesh inbound listener peers connect to (HTTP/2 over mutual TLS).
    #[arg(long, default_value = "0.0.0.0:15008")]
    pub inbound: SocketAddr,
    /// Explicit upstream listeners, `LISTEN_ADDR=SERVICE_HOST:PORT`, e.g.
    /// `127.0.0.1:18080=reviews.default.svc.cluster.local:9080`. Repeatable.
    #[arg(long = "upstream", value_name = "ADDR=HOST:PORT", value_parser = parse_upstream)]
    pub upstreams: Vec<(SocketAddr, String, u16)>,
    /// The admin server (config dump, clusters, log level, quit). Keep it on localhost.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// The Prometheus metrics server.
    #[arg(long, default_value = "0.0.0.0:15020")]
    pub metrics: SocketAddr,
    /// The health server (`/healthz/ready`, and `/app-health/...` for `--app-probes`).
    #[arg(long, default_value = "0.0.0.0:15021")]
    pub health: SocketAddr,
    /// The application's original probes, which the health server runs against
    /// 127.0.0.1 when the kubelet asks for their `/app-health/<container>/<kind>` path
    /// (JSON `mesh_api::inject::AppProbes`, written by sidecar injection).
    #[arg(
        long,
        env = "MESH_APP_PROBES",
        value_name = "JSON",
        value_parser = mesh_api::inject::AppProbes::parse
    )]
    pub app_probes: Option<mesh_api::inject::AppProbes>,
    /// Where the application listens; inbound traffic is forwarded there.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_host: IpAddr,
    /// The port peer proxies accept mesh traffic on.
    #[arg(long, default_value_t = MESH_PORT)]
    pub mesh_port: u16,
    /// Write an access log (JSON lines on stdout).
    #[arg(long, env = "MESH_ACCESS_LOG")]
    pub access_log: bool,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Largest request head in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: u32,
    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, default_value_t = 1000)]
    pub max_concurrent_streams: u32,
    /// How long a client may take to send a request head.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Worker threads. One (the default, as linkerd2-proxy) runs everything on a single
    /// thread: no cross-thread wake-ups on the request path, the least CPU per request and
    /// the lowest latency for a sidecar; raise it for a busy gateway.
    #[arg(long, env = "MESH_PROXY_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// The OTLP/gRPC collector spans are exported to, `http://HOST[:PORT]` (port 4317 by
    /// default). Unset: tracing is off — no spans, trace headers pass through untouched.
    #[arg(
        long,
        env = "MESH_TRACE_COLLECTOR",
        value_name = "URL",
        value_parser = trace::parse_collector
    )]
    pub trace_collector: Option<Collector>,
    /// Percentage (0-100) of new traces to record. Requests that arrive with a sampling
    /// decision (W3C `traceparent` flags, B3) keep it.
    #[arg(
        long,
        env = "MESH_TRACE_SAMPLING",
        value_name = "PERCENT",
        default_value = "1",
        value_parser = parse_sampling
    )]
    pub trace_sampling: f64,
}

fn parse_sampling(s: &str) -> Result<f64, trace::Error> {
    trace::sampler::parse_percent(s)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_api::duration::parse(s).map_err(|e| e.to_string())
}

fn parse_upstream(s: &str) -> Result<(SocketAddr, String, u16), String> {
    let (listen, target) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected LISTEN_ADDR=SERVICE_HOST:PORT"))?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("{listen:?} is not an address like 127.0.0.1:18080"))?;
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?}: expected SERVICE_HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    if host.is_empty() {
        return Err(format!("{target:?}: the service host is empty"));
    }
    Ok((listen, host.to_ascii_lowercase(), port))
}

/// Loads and validates a static config file.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<ProxyConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read proxy config {}", path.display()))?;
    let spec: ProxyConfigSpec = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not a valid proxy config", path.display()))?;
    ProxyConfig::new(spec).with_context(|| format!("{} is invalid", path.display()))
}

/// The addresses the proxy bound.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Outbound capture (absent with `--no-capture`).
    pub outbound_capture: Option<SocketAddr>,
    /// Inbound capture (absent with `--no-capture`).
    pub inbound_capture: Option<SocketAddr>,
    /// Mesh inbound (absent in gateway mode).
    pub inbound: Option<SocketAddr>,
    /// Gateway mode: the `--listen` listeners, by gateway server port (listeners from the
    /// config bind later, as it arrives).
    pub gateway: Vec<(u16, SocketAddr)>,
    /// Explicit upstream listeners, in the order given.
    pub upstreams: Vec<SocketAddr>,
    /// Admin.
    pub admin: SocketAddr,
    /// Metrics.
    pub metrics: SocketAddr,
    /// Health.
    pub health: SocketAddr,
}

/// Where the config comes from.
#[derive(Debug)]
enum Source {
    /// A static file, watched for changes.
    File(PathBuf),
    /// The control plane's discovery stream.
    ControlPlane(Box<discovery::Client>),
}

/// Where certificates come from.
#[derive(Debug)]
enum CertSource {
    /// Files, watched for changes.
    Dir(PathBuf),
    /// The control plane's CA.
    Ca(Box<CaClient>),
}

/// The config source chosen from the arguments, before the proxy is built.
enum Chosen {
    File(PathBuf),
    ControlPlane(discovery::ControlPlaneAddr, mesh_api::model::Node),
}

/// A built proxy, listeners bound, ready to [`run`](App::run).
#[derive(Debug)]
pub struct App {
    args: Args,
    source: Source,
    certs: CertSource,
    proxy: Arc<Proxy>,
    listeners: Listeners,
    bound: Bound,
    readiness: Readiness,
    registry: Arc<prometheus_client::registry::Registry>,
    log: Option<crate::telemetry::log::LogHandle>,
}

#[derive(Debug)]
struct Listeners {
    outbound_capture: Option<TcpListener>,
    inbound_capture: Option<TcpListener>,
    inbound: Option<TcpListener>,
    /// Gateway mode: the `--listen` listeners, the host config listeners bind on, and
    /// where TLS credentials are.
    gateway: Option<GatewayListen<TcpListener>>,
    upstreams: Vec<(TcpListener, Arc<str>, u16)>,
    admin: TcpListener,
    metrics: TcpListener,
    health: TcpListener,
}

/// Gateway mode's listener settings: the `--listen` listeners by server port (addresses,
/// then bound listeners), the host config listeners bind on, and where TLS credentials are.
#[derive(Debug)]
struct GatewayListen<L> {
    explicit: Vec<(u16, L)>,
    host: IpAddr,
    credentials: crate::gateway::tls::Credentials,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} ({what}): is another proxy or program using it?")
    })
}

impl App {
    /// Loads the config (with `--config`), binds every listener and builds the shared
    /// state of a sidecar. With `--control-plane`, config arrives once [`App::run`] runs.
    pub async fn build(
        args: Args,
        log: Option<crate::telemetry::log::LogHandle>,
    ) -> anyhow::Result<Self> {
        Self::build_as(args, None, log).await
    }

    /// As [`App::build`], for `mesh-proxy gateway`: a gateway-mode node, no capture or
    /// mesh inbound listeners, and the gateway's listeners ([`crate::gateway`]).
    pub async fn build_gateway(
        args: crate::gateway::Args,
        log: Option<crate::telemetry::log::LogHandle>,
    ) -> anyhow::Result<Self> {
        let crate::gateway::Args {
            run,
            listen_host,
            listen,
            credentials_dir,
        } = args;
        if let Some(dir) = &credentials_dir {
            tracing::info!(dir = %dir.display(), "gateway TLS credentials directory");
        }
        let credentials =
            crate::gateway::tls::Credentials::new(credentials_dir, &run.discovery.pod_namespace);
        let gateway = GatewayListen {
            explicit: listen,
            host: listen_host,
            credentials,
        };
        Self::build_as(run, Some(gateway), log).await
    }

    async fn build_as(
        args: Args,
        gateway: Option<GatewayListen<SocketAddr>>,
        log: Option<crate::telemetry::log::LogHandle>,
    ) -> anyhow::Result<Self> {
        let mode = if gateway.is_some() {
            ProxyMode::Gateway
        } else {
            ProxyMode::Sidecar
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let access_log = if args.access_log {
            AccessLog::stdout(&metrics)
        } else {
            AccessLog::disabled()
        };
        let trace_metrics = trace::Metrics::register(&mut registry);
        let tracer = match &args.trace_collector {
            Some(collector) => {
                let sampler = Sampler::new(args.trace_sampling)?;
                tracing::info!(%collector, sampling_percent = sampler.percent(), "tracing on");
                Tracer::spawn(collector, sampler, trace_metrics)
            }
            None => Tracer::disabled(),
        };
        let limits = Limits {
            app_host: args.app_host,
            max_header_bytes: args.max_header_bytes,
            max_concurrent_streams: args.max_concurrent_streams,
            header_read_timeout: args.header_read_timeout,
            ..Limits::default()
        };
        let (readiness, chosen, identity, certs, config) = match (
            &args.config,
            &args.discovery.control_plane,
        ) {
            (Some(path), None) => {
                let config = load_config(path)?;
                tracing::info!(version = config.version(), path = %path.display(), "config loaded");
                let Some(dir) = &args.identity.identity_dir else {
                    anyhow::bail!(
                        "--config needs --identity-dir DIR with this proxy's certificate for {} \
                         (mutual TLS is always on; make the files with `mesh-control ca issue \
                         --identity {} --out-dir DIR`)",
                        config.identity(),
                        config.identity()
                    );
                };
                let identity = Identity::from_dir(config.identity().clone(), dir, metrics.clone())?;
                let readiness =
                    Readiness::with_gauge(admin::WAITING_FOR_CONFIG, metrics.ready_gauge());
                (
                    readiness,
                    Chosen::File(path.clone()),
                    identity,
                    CertSource::Dir(dir.clone()),
                    Some(config),
                )
            }
            (None, Some(addr)) => {
                let node = args.discovery.node_as(mode)?;
                tracing::info!(
                    control_plane = %addr,
                    node = %node.id,
                    identity = %node.identity,
                    "config from the control plane"
                );
                if let Some(dir) = &args.identity.identity_dir {
                    let identity = Identity::from_dir(node.identity.clone(), dir, metrics.clone())?;
                    let readiness = Readiness::with_gauge(
                        discovery::waiting_reason(addr),
                        metrics.ready_gauge(),
                    );
                    (
                        readiness,
                        Chosen::ControlPlane(addr.clone(), node),
                        identity,
                        CertSource::Dir(dir.clone()),
                        None,
                    )
                } else {
                    let bundle_path = args.identity.ca_bundle.as_ref().with_context(|| {
                        format!(
                            "--control-plane needs --ca-bundle FILE (MESH_CA_BUNDLE): the roots \
                             to verify mesh-control at {addr} with (local mode: \
                             <state-dir>/trust-bundle.pem; Kubernetes: the mesh-root-cert \
                             ConfigMap), or --identity-dir with a certificate"
                        )
                    })?;
                    anyhow::ensure!(
                        args.identity.token_file.is_some(),
                        "--control-plane needs --token-file FILE (MESH_TOKEN_FILE) to prove this \
                         proxy is {} to the CA (local mode: the path `mesh-control token {}/{}` \
                         prints; Kubernetes: a projected ServiceAccount token), or \
                         --identity-dir with a certificate",
                        node.identity,
                        node.namespace,
                        node.identity.service_account()
                    );
                    let bundle = identity::read_bundle(bundle_path)?;
                    let identity = Identity::new(
                        node.identity.clone(),
                        bundle,
                        format!("control-plane {addr}"),
                        metrics.clone(),
                    );
                    let readiness = Readiness::with_gauge(
                        identity::ca::waiting_reason(addr),
                        metrics.ready_gauge(),
                    );
                    let control_plane_id = args.identity.control_plane(&node.identity)?;
                    let ca = CaClient::new(
                        addr.clone(),
                        identity.clone(),
                        control_plane_id,
                        args.identity.token_file.clone(),
                        args.identity.cert_lifetime,
                        node.id.clone(),
                        readiness.clone(),
                        discovery::waiting_reason(addr).into(),
                    );
                    (
                        readiness,
                        Chosen::ControlPlane(addr.clone(), node),
                        identity,
                        CertSource::Ca(Box::new(ca)),
                        None,
                    )
                }
            }
            (Some(_), Some(_)) => anyhow::bail!(
                "--config and --control-plane (MESH_CONTROL_ADDR) are exclusive: give one"
            ),
            (None, None) => anyhow::bail!(
                "no config source: give --config FILE or --control-plane HOST:PORT \
                     (MESH_CONTROL_ADDR)"
            ),
        };

        let mut state = State::new(args.mesh_port, identity.clone());
        if let Chosen::ControlPlane(_, node) = &chosen {
            state = state.with_node(node);
        }
        let state = Arc::new(state);
        if let Some(config) = config {
            metrics.config_applied(config.version());
            state.update(Arc::new(config));
        }

        let (outbound_capture, inbound_capture) = if args.no_capture || gateway.is_some() {
            (None, None)
        } else {
            (
                Some(bind(args.outbound_capture, "outbound capture").await?),
                Some(bind(args.inbound_capture, "inbound capture").await?),
            )
        };
        let inbound = match gateway {
            Some(_) => None,
            None => Some(bind(args.inbound, "mesh inbound").await?),
        };
        let gateway = match gateway {
            Some(GatewayListen {
                explicit,
                host,
                credentials,
            }) => {
                let mut bound = Vec::new();
                for (port, addr) in explicit {
                    bound.push((port, bind(addr, "gateway").await?));
                }
                Some(GatewayListen {
                    explicit: bound,
                    host,
                    credentials,
                })
            }
            None => None,
        };
        let mut upstreams = Vec::new();
        for (addr, host, port) in &args.upstreams {
            upstreams.push((
                bind(*addr, "upstream").await?,
                Arc::<str>::from(host.as_str()),
                *port,
            ));
        }
        let admin = bind(args.admin, "admin").await?;
        let metrics_l = bind(args.metrics, "metrics").await?;
        let health = bind(args.health, "health").await?;
        let bound = Bound {
            outbound_capture: outbound_capture
                .as_ref()
                .map(|l| l.local_addr())
                .transpose()?,
            inbound_capture: inbound_capture
                .as_ref()
                .map(|l| l.local_addr())
                .transpose()?,
            inbound: inbound.as_ref().map(|l| l.local_addr()).transpose()?,
            gateway: gateway
                .iter()
                .flat_map(|g| g.explicit.iter().map(|(p, l)| Ok((*p, l.local_addr()?))))
                .collect::<std::io::Result<_>>()?,
            upstreams: upstreams
                .iter()
                .map(|(l, _, _)| l.local_addr())
                .collect::<Result<_, _>>()?,
            admin: admin.local_addr()?,
            metrics: metrics_l.local_addr()?,
            health: health.local_addr()?,
        };
        let proxy = Arc::new(Proxy {
            state,
            direct: Direct::new(limits.connect_timeout, limits.idle_timeout),
            metrics,
            access_log,
            tracer,
            config: limits,
            graceful: std::sync::Mutex::new(Some(
                hyper_util::server::graceful::GracefulShutdown::new(),
            )),
            retry_budget: RetryBudget::default(),
        });
        let source = match chosen {
            Chosen::File(path) => Source::File(path),
            Chosen::ControlPlane(addr, node) => {
                let tls = match &certs {
                    CertSource::Ca(ca) => ca.tls(),
                    CertSource::Dir(_) => {
                        let id = args.identity.control_plane(&node.identity)?;
                        identity.client_for(mesh_api::tls::Expected::Exactly(id))
                    }
                };
                Source::ControlPlane(Box::new(discovery::Client::new(
                    addr,
                    &node,
                    proxy.clone(),
                    readiness.clone(),
                    discovery::Settings {
                        max_resources: args.discovery.max_resources,
                        ..discovery::Settings::default()
                    },
                    tls,
                )))
            }
        };
        Ok(Self {
            args,
            source,
            certs,
            proxy,
            listeners: Listeners {
                outbound_capture,
                inbound_capture,
                inbound,
                gateway,
                upstreams,
                admin,
                metrics: metrics_l,
                health,
            },
            bound,
            readiness,
            registry: Arc::new(registry),
            log,
        })
    }

    /// The addresses bound.
    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    /// The shared proxy handle (for tests and embedding).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Serves until `shutdown` resolves (or `/quitquitquit`), then drains.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Self {
            args,
            source,
            certs,
            proxy,
            listeners,
            bound,
            readiness,
            registry,
            log,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let gateway_stop = stop_rx.clone();
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(l) = listeners.outbound_capture {
            tasks.spawn(crate::outbound::serve(
                l,
                proxy.clone(),
                Target::Captured,
                stopped(),
            ));
        }
        if let Some(l) = listeners.inbound_capture {
            tasks.spawn(crate::inbound::serve_captured(l, proxy.clone(), stopped()));
        }
        if let Some(l) = listeners.inbound {
            tasks.spawn(crate::inbound::serve_mesh(l, proxy.clone(), stopped()));
        }
        if let Some(GatewayListen {
            explicit,
            host,
            credentials,
        }) = listeners.gateway
        {
            tasks.spawn(crate::gateway::serve(
                proxy.clone(),
                explicit,
                host,
                credentials,
                gateway_stop,
            ));
        }
        for (l, hostname, port) in listeners.upstreams {
            let target = Target::Service { hostname, port };
            tasks.spawn(crate::outbound::serve(l, proxy.clone(), target, stopped()));
        }

        // Admin, metrics and health servers.
        let clusters_proxy = proxy.clone();
        let admin_state = AdminState::new(
            config_view(&proxy),
            readiness.clone(),
            registry.clone(),
            Arc::new(move || crate::admin_clusters(&clusters_proxy)),
            log,
            stop_tx.clone(),
        );
        let identity_view = proxy.state.identity().clone();
        admin_state.set_identity(Arc::new(move || {
            serde_json::to_value(&*identity_view.status()).unwrap_or_default()
        }));
        tasks.spawn(admin::serve_admin(
            listeners.admin,
            admin_state.clone(),
            stopped(),
        ));
        tasks.spawn(admin::serve_metrics(
            listeners.metrics,
            admin_state.clone(),
            stopped(),
        ));
        match certs {
            CertSource::Dir(dir) => {
                tasks.spawn(identity::watch_dir(
                    proxy.state.identity().clone(),
                    dir,
                    stopped(),
                ));
            }
            CertSource::Ca(ca) => {
                tasks.spawn(ca.run(stopped()));
            }
        }
        match source {
            Source::File(path) => {
                // Config reloads from the file.
                tasks.spawn(watch_file(path, proxy.clone(), stopped()));
                readiness.set_ready();
                tracing::info!(?bound, "proxy ready");
            }
            Source::ControlPlane(client) => {
                let status = client.status().clone();
                admin_state.set_control_plane(Arc::new(move || status.to_json()));
                tracing::info!(?bound, control_plane = %client.addr(), "listening; waiting for a certificate and config");
                // The stream is authenticated by the workload certificate: start it once
                // there is one.
                let identity = proxy.state.identity().clone();
                let (wait_stop, run_stop) = (stopped(), stopped());
                tasks.spawn(async move {
                    tokio::select! {
                        () = identity.wait_for_certificate() => {}
                        () = wait_stop => return,
                    }
                    client.run(run_stop).await;
                });
            }
        }
        if let Some(probes) = args.app_probes.clone().filter(|p| !p.is_empty()) {
            tracing::info!(
                paths = ?probes.iter().map(|(path, _)| path).collect::<Vec<_>>(),
                "serving application probes"
            );
            admin_state.set_app_probes(probes);
        }
        tasks.spawn(admin::serve_health(
            listeners.health,
            admin_state,
            stopped(),
        ));

        let quit = stopped();
        tokio::pin!(quit);
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => tracing::info!("shutdown signal: draining"),
            () = &mut quit => tracing::info!("quit requested: draining"),
        }
        readiness.set_not_ready(admin::DRAINING);
        let _ = stop_tx.send(true);
        // Listeners stop accepting (they watch `stop`); in-flight HTTP connections finish
        // their requests and close, within the drain timeout.
        let drain = args.drain_timeout;
        let drained = tokio::time::timeout(drain, async {
            proxy.drain().await;
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(?drain, "drain timeout: closing the remaining connections");
        }
        if proxy.tracer.is_enabled() && !proxy.tracer.flush(Duration::from_secs(2)).await {
            tracing::warn!("the last spans were not exported within 2s");
        }
        tracing::info!("proxy stopped");
        Ok(())
    }
}

/// What the admin server shows as the current config.
fn config_view(proxy: &Arc<Proxy>) -> admin::ConfigView {
    let state = proxy.state.clone();
    Arc::new(move || state.snapshot().map(|s| (s.config.clone(), s.built_at)))
}

/// Reloads the config file when its modification time changes; keeps the last good config
/// when the new one is invalid.
async fn watch_file(path: PathBuf, proxy: Arc<Proxy>, stop: impl std::future::Future<Output = ()>) {
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = mtime(&path);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let now = mtime(&path);
        if now == last {
            continue;
        }
        last = now;
        match load_config(&path) {
            Ok(config) => {
                tracing::info!(version = config.version(), "config reloaded");
                proxy.metrics.config_applied(config.version());
                proxy.state.update(Arc::new(config));
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "config update rejected; keeping the last good config"
            ),
        }
    }
}
