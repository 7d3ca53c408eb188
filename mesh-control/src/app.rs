//! Running the control plane: options, the registry loop, the discovery and debug servers.
//!
//! One task owns the [`Index`]: it takes changes from the source (a directory of YAML in
//! local mode, Kubernetes watchers otherwise), applies them, and publishes each new
//! version to the discovery streams. Nothing is published until the source has loaded
//! once, so a restarted control plane never pushes a half-empty mesh.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mesh_api::config::Severity;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::debug::{self, DebugState, SourceStatus};
use crate::discovery::{self, Clients, DiscoveryService, Publisher};
use crate::index::{Index, Settings};
use crate::metrics::Metrics;
use crate::registry::kube::{self as kube_registry, KubeRegistry, RegistryEvent};
use crate::registry::local::{LocalRegistry, Reload};

/// `mesh-control`: the mesh's control plane.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "mesh-control", version, about)]
pub struct Args {
    /// Local mode: read config from this directory of YAML (Kubernetes `v1` Services,
    /// WorkloadEntries, our CRDs, Gateway API routes) and reload it when it changes.
    #[arg(
        long,
        env = "MESH_CONFIG_DIR",
        value_name = "DIR",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    pub config_dir: Option<PathBuf>,
    /// Kubernetes mode: watch the cluster of the in-cluster service account (or the
    /// current kubeconfig context).
    #[arg(long)]
    pub kubernetes: bool,
    /// Local mode: the namespace of resources that name none.
    #[arg(long, default_value = "default")]
    pub default_namespace: String,
    /// The discovery (gRPC) listener proxies connect to.
    #[arg(long, env = "MESH_DISCOVERY_ADDR", default_value = "0.0.0.0:15012")]
    pub discovery_addr: SocketAddr,
    /// The debug and metrics HTTP listener (`meshctl proxy-status` reads it). It shows every
    /// proxy's config: keep it on localhost unless something must scrape it.
    #[arg(long, env = "MESH_DEBUG_ADDR", default_value = "127.0.0.1:15014")]
    pub debug_addr: SocketAddr,
    /// The SPIFFE trust domain of workload identities.
    #[arg(long, env = "MESH_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// The control-plane namespace, whose selector-less policies apply mesh-wide.
    #[arg(long, default_value = "mesh-system")]
    pub root_namespace: String,
    /// The DNS suffix of Kubernetes services.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Local mode: how often the directory is scanned for changes.
    #[arg(long, default_value = "50ms", value_parser = parse_duration, hide = true)]
    pub poll_interval: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_api::duration::parse(s).map_err(|e| e.to_string())
}

/// The addresses bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Discovery (gRPC).
    pub discovery: SocketAddr,
    /// Debug and metrics HTTP.
    pub debug: SocketAddr,
}

/// A built control plane, listeners bound.
#[derive(Debug)]
pub struct App {
    args: Args,
    discovery: TcpListener,
    debug: TcpListener,
    bound: Bound,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} ({what}): is another mesh-control running? Choose another address with the flag")
    })
}

impl App {
    /// Binds the listeners.
    pub async fn build(args: Args) -> anyhow::Result<Self> {
        if let Some(dir) = &args.config_dir {
            anyhow::ensure!(
                dir.is_dir(),
                "--config-dir {}: not a directory; create it and put Service and WorkloadEntry YAML in it",
                dir.display()
            );
        }
        let discovery = bind(args.discovery_addr, "discovery, --discovery-addr").await?;
        let debug = bind(args.debug_addr, "debug, --debug-addr").await?;
        let bound = Bound {
            discovery: discovery.local_addr()?,
            debug: debug.local_addr()?,
        };
        Ok(Self {
            args,
            discovery,
            debug,
            bound,
        })
    }

    /// The addresses bound.
    pub fn bound(&self) -> Bound {
        self.bound
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Self {
            args,
            discovery,
            debug,
            bound,
        } = self;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let publisher = Publisher::new();
        let clients = Clients::default();
        let source = Arc::new(Mutex::new(SourceStatus::default()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let settings = Settings {
            trust_domain: args.trust_domain.clone(),
            root_namespace: args.root_namespace.clone(),
            cluster_domain: args.cluster_domain.clone(),
        };
        let service =
            DiscoveryService::new(publisher.subscribe(), clients.clone(), metrics.clone());
        let debug_state = DebugState {
            generations: publisher.subscribe(),
            clients: clients.clone(),
            source: source.clone(),
            registry: Arc::new(registry),
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(discovery::serve(discovery, service, stopped()));
        tasks.spawn(debug::serve(debug, debug_state, stopped()));
        tracing::info!(discovery = %bound.discovery, debug = %bound.debug, "mesh-control serving");

        let index = Index::new(settings);
        let source_task = match &args.config_dir {
            Some(dir) => {
                let registry = LocalRegistry::new(dir.clone(), args.default_namespace.clone());
                let source = source.clone();
                source.lock().expect("source status poisoned").source =
                    format!("local:{}", dir.display());
                tokio::spawn(local_loop(
                    registry,
                    index,
                    publisher,
                    metrics,
                    source,
                    args.poll_interval,
                    stopped(),
                ))
            }
            None => {
                let client = kube::Client::try_default().await.context(
                    "cannot build a Kubernetes client: run in a pod with a service account, or set KUBECONFIG / ~/.kube/config",
                )?;
                source.lock().expect("source status poisoned").source = "kubernetes".to_owned();
                let registry = KubeRegistry::new(client, kube_registry::Options::default());
                tokio::spawn(kube_loop(
                    registry,
                    index,
                    publisher,
                    metrics,
                    source.clone(),
                    stopped(),
                ))
            }
        };

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = source_task.await;
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// The registry loop of local mode.
async fn local_loop(
    mut registry: LocalRegistry,
    mut index: Index,
    mut publisher: Publisher,
    metrics: Arc<Metrics>,
    source: Arc<Mutex<SourceStatus>>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let apply = |reload: Reload, index: &mut Index, publisher: &mut Publisher| match reload {
        Reload::Unchanged => {}
        Reload::Applied(snapshot) => {
            let started = Instant::now();
            index.replace_all(snapshot.resources.clone());
            let view = index.view();
            let build = started.elapsed();
            for w in view.warnings() {
                tracing::warn!("{w}");
            }
            let warnings: Vec<String> = snapshot
                .diagnostics
                .iter()
                .filter(|d| d.severity != Severity::Error)
                .map(ToString::to_string)
                .collect();
            {
                let mut s = source.lock().expect("source status poisoned");
                s.synced = true;
                s.resources = index.len();
                s.rejected.clear();
                s.warnings = warnings;
            }
            if publisher.publish(view) {
                source
                    .lock()
                    .expect("source status poisoned")
                    .last_change_unix_ms = Some(crate::discovery::clients::unix_ms());
                metrics.config_changed(build, index.len());
                tracing::info!(
                    generation = snapshot.generation,
                    resources = index.len(),
                    build_ms = build.as_secs_f64() * 1000.0,
                    "config loaded"
                );
            }
        }
        Reload::Rejected(diagnostics) => {
            metrics.config_rejected();
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            for line in &lines {
                tracing::error!("{line}");
            }
            tracing::error!(
                errors = lines.len(),
                "config change rejected; proxies keep the last good config until the files are fixed"
            );
            source.lock().expect("source status poisoned").rejected = lines;
        }
    };
    // An empty directory is a valid (empty) mesh; a broken one leaves us unsynced.
    let first = registry.load_now();
    apply(first, &mut index, &mut publisher);
    if registry.current().is_none() {
        tracing::error!(
            "no valid config yet: proxies get nothing until the errors above are fixed"
        );
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let reload = registry.poll(Instant::now());
        apply(reload, &mut index, &mut publisher);
    }
}

/// The registry loop of Kubernetes mode: applies watcher events in bursts (one index
/// rebuild per burst), publishes once the watchers have synced.
async fn kube_loop(
    registry: KubeRegistry,
    mut index: Index,
    mut publisher: Publisher,
    metrics: Arc<Metrics>,
    source: Arc<Mutex<SourceStatus>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let errors = registry.watch_errors();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let watchers = tokio::spawn(registry.run(tx));
    let mut synced = false;
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        let first = tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {
                for (watched, n) in errors.iter() {
                    metrics.watch_errors_seen(watched.resource(), n);
                }
                continue;
            }
            event = rx.recv() => match event {
                Some(e) => e,
                None => break,
            },
        };
        // Take the whole burst that is already queued.
        let mut events = vec![first];
        while events.len() < 10_000
            && let Ok(e) = rx.try_recv()
        {
            events.push(e);
        }
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            match event {
                RegistryEvent::Apply(r) => changes.push(Ok(r)),
                RegistryEvent::Delete {
                    kind,
                    namespace,
                    name,
                } => changes.push(Err((kind, namespace, name))),
                RegistryEvent::Synced => {
                    synced = true;
                    tracing::info!("Kubernetes watchers synced");
                }
                RegistryEvent::Problem(message) => {
                    tracing::error!("{message}");
                    let mut s = source.lock().expect("source status poisoned");
                    if !s.warnings.contains(&message) {
                        s.warnings.push(message);
                    }
                }
            }
        }
        let started = Instant::now();
        index.apply_many(changes);
        let build = started.elapsed();
        {
            let mut s = source.lock().expect("source status poisoned");
            s.synced = synced;
            s.resources = index.len();
        }
        if synced && publisher.publish(index.view()) {
            source
                .lock()
                .expect("source status poisoned")
                .last_change_unix_ms = Some(crate::discovery::clients::unix_ms());
            metrics.config_changed(build, index.len());
            for w in index.warnings() {
                tracing::warn!("{w}");
            }
        }
    }
    watchers.abort();
}
