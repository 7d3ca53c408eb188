//! Running the control plane: options, the registry loop, the CA, the gRPC (discovery +
//! identity, TLS) and debug servers.
//!
//! One task owns the [`Index`]: it takes changes from the source (a directory of YAML in
//! local mode, Kubernetes watchers otherwise), applies them, and publishes each new
//! version to the discovery streams. Nothing is published until the source has loaded
//! once, so a restarted control plane never pushes a half-empty mesh.
//!
//! [`App::build`] opens the CA (creating a root on first start), issues mesh-control's own
//! serving certificate and, in local mode, writes `<state-dir>/trust-bundle.pem` (what
//! proxies bootstrap from with `--ca-bundle`) before it binds anything, so a control plane
//! that answers is one whose CA works. In local mode the registry loop also creates a
//! workload token for every (namespace, service account) it sees.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use mesh_api::config::{Resource, Severity};
use mesh_api::spiffe::SpiffeId;
use mesh_api::tls::CertStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ca::{self, Bundle, Ca, LocalStore, Storage};
use crate::debug::{self, DebugState, SourceStatus};
use crate::discovery::{Clients, DiscoveryService, Publisher};
use crate::grpc::{self, ServingIdentity};
use crate::identity::{IdentityService, LocalTokens, Secrets, TokenReviewer, Tokens};
use crate::index::{Index, Settings};
use crate::metrics::Metrics;
use crate::registry::kube::{self as kube_registry, KubeRegistry, RegistryEvent};
use crate::registry::local::{LocalRegistry, Reload};
use crate::webhook;

/// The trust bundle file in the state directory (local mode).
pub const TRUST_BUNDLE_FILE: &str = "trust-bundle.pem";

/// The server's options (`mesh-control` without a subcommand; see [`crate::cli`]).
#[derive(Debug, Clone, clap::Args)]
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
    /// Local mode: where mesh-control keeps its state, created 0700: the CA in `ca/`,
    /// workload tokens in `tokens/<namespace>/<service-account>`, and `trust-bundle.pem`
    /// (proxies' `--ca-bundle`).
    /// Default: `${XDG_STATE_HOME:-$HOME/.local/state}/mesh-control`.
    #[arg(long, env = "MESH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Local mode: the CA directory — our root (`root-cert.pem`, `root-key.pem`, made on
    /// first start) or a plug-in CA in Istio's `cacerts` layout (`ca-cert.pem`,
    /// `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`). Default: `<state-dir>/ca`.
    #[arg(long, env = "MESH_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// The lifetime of workload certificates; proxies renew at half of it. A shorter
    /// lifetime asked for is honored (10s at least).
    #[arg(long, env = "MESH_WORKLOAD_CERT_TTL", default_value = "24h", value_parser = parse_duration)]
    pub workload_cert_ttl: Duration,
    /// How long a new root (`mesh-control ca rotate`, replaced plug-in files) is in the
    /// trust bundle before the CA signs with it: long enough for every proxy to learn it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub root_rotation_grace: Duration,
    /// How often the CA storage is checked for rotations.
    #[arg(long, default_value = "1s", value_parser = parse_duration, hide = true)]
    pub ca_poll_interval: Duration,
    /// The admission webhooks (sidecar injection, config validation).
    #[command(flatten)]
    pub webhook: webhook::Args,
}

/// The state directory: `dir`, or `${XDG_STATE_HOME:-$HOME/.local/state}/mesh-control`.
pub fn resolve_state_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d.to_owned());
    }
    let base = match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute())
                .context("cannot find a state directory: HOME is not set; pass --state-dir DIR (or MESH_STATE_DIR)")?;
            home.join(".local").join("state")
        }
    };
    Ok(base.join("mesh-control"))
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
    /// The admission webhooks (HTTPS), when `--webhook-addr` is set.
    pub webhook: Option<SocketAddr>,
}

/// A built control plane: CA open, listeners bound.
pub struct App {
    args: Args,
    discovery: TcpListener,
    debug: TcpListener,
    webhook: Option<(TcpListener, webhook::Settings)>,
    bound: Bound,
    ca: Ca,
    serving: ServingIdentity,
    certs: Arc<CertStore>,
    refresh_at: SystemTime,
    /// Local mode.
    state_dir: Option<PathBuf>,
    /// Kubernetes mode.
    kube: Option<kube::Client>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("bound", &self.bound)
            .field("ca", &self.ca)
            .field("state_dir", &self.state_dir)
            .field("kubernetes", &self.kube.is_some())
            .finish_non_exhaustive()
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} ({what}): is another mesh-control running? Choose another address with the flag")
    })
}

impl App {
    /// Opens the CA, issues mesh-control's certificate and binds the listeners.
    pub async fn build(args: Args) -> anyhow::Result<Self> {
        if let Some(dir) = &args.config_dir {
            anyhow::ensure!(
                dir.is_dir(),
                "--config-dir {}: not a directory; create it and put Service and WorkloadEntry YAML in it",
                dir.display()
            );
        }
        if !args.kubernetes {
            for (flag, set) in [
                ("--injector-config", &args.webhook.injector_config),
                ("--validator-config", &args.webhook.validator_config),
            ] {
                anyhow::ensure!(
                    set.is_none(),
                    "{flag} names a Kubernetes webhook configuration: it needs --kubernetes (drop it in local mode)"
                );
            }
        }
        anyhow::ensure!(
            args.workload_cert_ttl >= Duration::from_secs(1),
            "--workload-cert-ttl {:?} is too short; use 1s or more (24h is the default)",
            args.workload_cert_ttl
        );
        let settings = ca::Settings {
            trust_domain: args.trust_domain.clone(),
            workload_cert_ttl: args.workload_cert_ttl,
            root_rotation_grace: args.root_rotation_grace,
        };
        let (storage, state_dir, kube) = if args.kubernetes {
            let client = kube::Client::try_default().await.context(
                "cannot build a Kubernetes client: run in a pod with a service account, or set KUBECONFIG / ~/.kube/config",
            )?;
            let store = ca::kube::KubeStore::new(client.clone(), args.root_namespace.clone());
            (Storage::Kube(store), None, Some(client))
        } else {
            let state_dir = resolve_state_dir(args.state_dir.as_deref())?;
            crate::files::create_private_dir(&state_dir)
                .context("cannot create the state directory (--state-dir)")?;
            let ca_dir = args.ca_dir.clone().unwrap_or_else(|| state_dir.join("ca"));
            let store =
                LocalStore::open(ca_dir).context("cannot open the CA directory (--ca-dir)")?;
            (Storage::Local(store), Some(state_dir), None)
        };
        let ca = Ca::open(storage, settings, true)
            .await
            .context("cannot start the certificate authority")?;
        if let Some(dir) = &state_dir {
            write_bundle_file(&dir.join(TRUST_BUNDLE_FILE), &ca.bundle())?;
        }
        let serving = grpc::serving_identity(
            &args.trust_domain,
            &args.root_namespace,
            &args.cluster_domain,
        )
        .context("--trust-domain / --root-namespace do not make a valid identity")?;
        let certs = Arc::new(CertStore::new());
        let refresh_at = grpc::renew_serving_cert(&ca, &serving, &certs)
            .context("cannot issue mesh-control's own certificate")?;

        let webhook = match args.webhook.webhook_addr {
            Some(addr) => {
                let native = match &kube {
                    Some(client) => native_sidecars(client).await,
                    None => true,
                };
                let settings =
                    args.webhook
                        .settings(&args.trust_domain, &args.root_namespace, native)?;
                let listener = bind(addr, "admission webhooks, --webhook-addr").await?;
                Some((listener, settings))
            }
            None => None,
        };
        let discovery = bind(args.discovery_addr, "discovery, --discovery-addr").await?;
        let debug = bind(args.debug_addr, "debug, --debug-addr").await?;
        let bound = Bound {
            discovery: discovery.local_addr()?,
            debug: debug.local_addr()?,
            webhook: match &webhook {
                Some((l, _)) => Some(l.local_addr()?),
                None => None,
            },
        };
        Ok(Self {
            args,
            discovery,
            debug,
            webhook,
            bound,
            ca,
            serving,
            certs,
            refresh_at,
            state_dir,
            kube,
        })
    }

    /// The certificate authority (for tests minting certificates in process).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The state directory (local mode).
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
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
            webhook,
            bound,
            ca,
            serving,
            certs,
            refresh_at,
            state_dir,
            kube,
        } = self;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let publisher = Publisher::new();
        let clients = Clients::default();
        let secrets = Secrets::default();
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
        let local_tokens = state_dir
            .as_ref()
            .map(|dir| Arc::new(LocalTokens::new(dir.clone(), args.trust_domain.clone())));
        let tokens = match (&local_tokens, &kube) {
            (Some(t), _) => Tokens::Local(t.clone()),
            (None, Some(client)) => Tokens::Kube(Arc::new(TokenReviewer::new(
                client.clone(),
                args.trust_domain.clone(),
            ))),
            (None, None) => anyhow::bail!("neither a state directory nor a Kubernetes client"),
        };
        let discovery_service =
            DiscoveryService::new(publisher.subscribe(), clients.clone(), metrics.clone());
        let identity_service =
            IdentityService::new(ca.clone(), tokens, secrets.clone(), metrics.clone());
        let debug_state = DebugState {
            generations: publisher.subscribe(),
            clients: clients.clone(),
            source: source.clone(),
            registry: Arc::new(registry),
            metrics: metrics.clone(),
            ca: ca.clone(),
            secrets,
        };
        let tls = grpc::tls_config(certs.clone(), ca.trust_store(), &args.trust_domain);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(grpc::serve(
            discovery,
            tls,
            discovery_service,
            identity_service,
            stopped(),
        ));
        tasks.spawn(debug::serve(debug, debug_state, stopped()));
        if let Some((listener, settings)) = webhook {
            tracing::info!(
                addr = %listener.local_addr()?,
                native_sidecars = settings.inject.native_sidecars,
                proxy_image = %settings.inject.image,
                "admission webhooks serving (/inject, /validate)"
            );
            tasks.spawn(webhook::serve(
                listener,
                webhook::tls_config(certs.clone())?,
                Arc::new(settings),
                stopped(),
            ));
        }
        if let Some(client) = &kube {
            use k8s_openapi::api::admissionregistration::v1::{
                MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
            };
            if let Some(name) = &args.webhook.injector_config {
                tasks.spawn(webhook::ca_bundle::keep_current::<
                    MutatingWebhookConfiguration,
                >(
                    client.clone(), name.clone(), ca.watch_bundle(), stopped()
                ));
            }
            if let Some(name) = &args.webhook.validator_config {
                tasks.spawn(webhook::ca_bundle::keep_current::<
                    ValidatingWebhookConfiguration,
                >(
                    client.clone(), name.clone(), ca.watch_bundle(), stopped()
                ));
            }
        }
        tasks.spawn(ca.clone().run(args.ca_poll_interval, stopped()));
        tasks.spawn(grpc::keep_serving_cert(
            ca.clone(),
            serving,
            certs,
            refresh_at,
            stopped(),
        ));
        match (&state_dir, &kube) {
            (Some(dir), _) => {
                tasks.spawn(keep_bundle_file(
                    dir.join(TRUST_BUNDLE_FILE),
                    ca.watch_bundle(),
                    stopped(),
                ));
            }
            (None, Some(client)) => {
                tasks.spawn(ca::kube::publish_bundle(
                    client.clone(),
                    ca.watch_bundle(),
                    ca::kube::Applied::default(),
                    Duration::from_secs(30),
                    stopped(),
                ));
            }
            (None, None) => {}
        }
        tracing::info!(
            discovery = %bound.discovery,
            debug = %bound.debug,
            trust_domain = %args.trust_domain,
            workload_cert_ttl = ?args.workload_cert_ttl,
            root_rotation_grace = ?args.root_rotation_grace,
            state_dir = ?state_dir,
            "mesh-control serving (gRPC over TLS)"
        );

        let index = Index::new(settings);
        let source_task = match (&args.config_dir, kube) {
            (Some(dir), _) => {
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
                    local_tokens.map(|t| (t, args.trust_domain.clone())),
                    stopped(),
                ))
            }
            (None, Some(client)) => {
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
            (None, None) => anyhow::bail!("neither --config-dir nor --kubernetes"),
        };

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = source_task.await;
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Whether the cluster runs native sidecars (Kubernetes 1.29+); when the version cannot be
/// read, yes (every Kubernetes version we support has them), with a warning.
async fn native_sidecars(client: &kube::Client) -> bool {
    match client.apiserver_version().await {
        Ok(v) => {
            let native = mesh_api::inject::native_sidecars_supported(&v.major, &v.minor);
            tracing::info!(version = %v.git_version, native_sidecars = native, "Kubernetes version");
            native
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Kubernetes version; injecting native sidecars (set --native-sidecars never for clusters before 1.29)");
            true
        }
    }
}

/// Writes the trust bundle file.
fn write_bundle_file(path: &Path, bundle: &Bundle) -> anyhow::Result<()> {
    crate::files::write_atomic(path, bundle.pem().as_bytes(), crate::files::PUBLIC)
        .context("cannot write the trust bundle file")?;
    Ok(())
}

/// Rewrites the trust bundle file whenever the bundle changes, until `stop` resolves.
async fn keep_bundle_file(
    path: PathBuf,
    mut bundle: watch::Receiver<Arc<Bundle>>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            changed = bundle.changed() => if changed.is_err() { return },
        }
        let current = bundle.borrow_and_update().clone();
        match write_bundle_file(&path, &current) {
            Ok(()) => {
                tracing::info!(path = %path.display(), roots = current.roots.len(), "trust bundle file updated");
            }
            Err(e) => tracing::error!("{e:#}"),
        }
    }
}

/// The identities of the WorkloadEntries in `resources`.
fn workload_identities(resources: &[Resource], trust_domain: &str) -> Vec<SpiffeId> {
    let mut ids: Vec<SpiffeId> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::WorkloadEntry(w) => {
                let sa = w
                    .spec
                    .service_account
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                SpiffeId::new(trust_domain, r.namespace(), sa).ok()
            }
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The registry loop of local mode.
#[allow(clippy::too_many_arguments)] // Reason: one call site; the loop's whole context.
async fn local_loop(
    mut registry: LocalRegistry,
    mut index: Index,
    mut publisher: Publisher,
    metrics: Arc<Metrics>,
    source: Arc<Mutex<SourceStatus>>,
    interval: Duration,
    tokens: Option<(Arc<LocalTokens>, String)>,
    stop: impl std::future::Future<Output = ()>,
) {
    let apply = |reload: Reload, index: &mut Index, publisher: &mut Publisher| match reload {
        Reload::Unchanged => {}
        Reload::Applied(snapshot) => {
            if let Some((tokens, trust_domain)) = &tokens {
                tokens.ensure_all(&workload_identities(&snapshot.resources, trust_domain));
            }
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
