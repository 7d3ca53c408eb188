//! The Kubernetes registry: kube-runtime watchers on the API server, turned into the
//! [`RegistryEvent`]s that feed the [`crate::index`].
//!
//! [`KubeRegistry::run`] watches, cluster-wide, every kind in [`Watched`]: Services,
//! EndpointSlices, Pods and Namespaces, our CRDs (`networking.mesh.dev`,
//! `security.mesh.dev`) and the Gateway API routes and Gateways. Each watcher lists, then
//! watches, and recovers by itself (re-watch from the last resource version, re-list on
//! `410 Gone`) with kube-runtime's default backoff; all of them are merged into one task
//! that translates objects and sends events in order, so the consumer only has to call
//! [`Index::apply`](crate::index::Index::apply) and
//! [`Index::delete`](crate::index::Index::delete).
//!
//! # What the index gets
//!
//! Our CRDs, Services and Gateway API objects go through as [`Resource`]s. Kubernetes
//! objects the index does not know are translated here (see `translate`), so the index
//! stays a pure function of [`Resource`]s:
//!
//! - a Pod becomes a `WorkloadEntry` named after it, while it is Running, Ready, not
//!   terminating and has an IP (otherwise it is deleted); a pod without a `mesh-proxy`
//!   container is labelled `sidecar.mesh.dev/inject: "false"` (out of the mesh);
//! - a Service without a selector gets the synthesized selector
//!   `mesh.dev/endpointslice-service: <name>`, and its EndpointSlices' ready addresses
//!   become out-of-mesh `WorkloadEntries` `<slice>-<n>` carrying that label. Slices the
//!   EndpointSlice controller manages (those of Services with selectors) are ignored: the
//!   pods are the source of those endpoints;
//! - Namespaces only update [`NamespaceLabels`].
//!
//! `managedFields`, `status` and the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation are dropped before anything is handed on.
//!
//! # Sync
//!
//! [`RegistryEvent::Synced`] is sent once, after every watcher has completed its first
//! list: until then the consumer must not push config (after a restart it would push
//! empty endpoint sets). A CRD that is not installed (`404` on the list) counts as listed
//! with zero objects, so a cluster without the Gateway API still syncs; its watcher keeps
//! retrying in the background and picks the kind up once the CRD appears. A `403` does
//! not count: a resource mesh-control may not read is unknown, not empty, so `Synced`
//! waits until RBAC is fixed.
//!
//! After a re-list, objects that vanished during the gap are deleted: each watcher keeps
//! the keys it emitted per Kubernetes object and compares them with what the list
//! returned.
//!
//! # Errors
//!
//! Every watcher error is counted per resource in [`WatchErrors`] (for the metrics) and
//! logged; actionable ones are also sent as [`RegistryEvent::Problem`] with a fix (RBAC
//! for `403`, `meshctl install` for a missing CRD), once until the watcher makes
//! progress again. A `410 Gone` is routine (the watcher re-lists) and only logged.

mod translate;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::{StreamExt, stream::BoxStream};
use k8s_openapi::api::{
    core::v1::{Namespace, Pod, Service as KubeService},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use mesh_api::config::{
    AuthorizationPolicy, DestinationRule, Gateway, GrpcRoute, HttpRoute, KubeGateway,
    PeerAuthentication, Resource, ResourceKind, ServiceEntry, VirtualService, WorkloadEntry,
};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use self::translate::{ENDPOINTSLICE_SERVICE_LABEL, INJECT_LABEL, SIDECAR_CONTAINER};

/// What the registry tells its consumer, in order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Reason: events are moved once, into the index.
pub enum RegistryEvent {
    /// Add or replace a resource (by kind, namespace and name).
    Apply(Resource),
    /// Remove a resource, if the index has it.
    Delete {
        /// Its kind.
        kind: ResourceKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Every watcher has completed its first list: the index now reflects the cluster and
    /// config may be pushed. Sent once.
    Synced,
    /// A watcher failed in a way a user can fix; the message names the resource and the
    /// fix. The watcher retries by itself.
    Problem(String),
}

/// Options of the [`KubeRegistry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Namespaces whose objects are not read at all (none by default). They are excluded
    /// with a field selector, so the API server does not even send them.
    pub ignore_namespaces: BTreeSet<String>,
}

/// The Kubernetes registry. See the [module docs](self).
pub struct KubeRegistry {
    client: Client,
    options: Options,
    errors: WatchErrors,
    namespaces: NamespaceLabels,
}

impl fmt::Debug for KubeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeRegistry")
            .field("options", &self.options)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

// === impl KubeRegistry ===

impl KubeRegistry {
    /// A registry reading the cluster `client` talks to.
    pub fn new(client: Client, options: Options) -> Self {
        Self {
            client,
            options,
            errors: WatchErrors::default(),
            namespaces: NamespaceLabels::default(),
        }
    }

    /// The per-resource watch error counters (shared; they keep counting while
    /// [`run`](Self::run) runs).
    pub fn watch_errors(&self) -> WatchErrors {
        self.errors.clone()
    }

    /// The labels of every namespace (shared; kept current while [`run`](Self::run)
    /// runs).
    pub fn namespace_labels(&self) -> NamespaceLabels {
        self.namespaces.clone()
    }

    /// Watches the cluster and sends events to `tx` until `tx`'s receiver is dropped.
    /// Watchers retry every error with backoff, so this only returns then.
    pub async fn run(self, tx: mpsc::Sender<RegistryEvent>) {
        let client = self.client;
        let selector = field_selector(&self.options.ignore_namespaces);
        let namespaced = || {
            let config = watcher::Config::default();
            match &selector {
                Some(s) => config.fields(s),
                None => config,
            }
        };
        let streams = vec![
            watch::<KubeService>(&client, Watched::Services, namespaced(), Object::Service),
            watch::<EndpointSlice>(
                &client,
                Watched::EndpointSlices,
                namespaced(),
                Object::Slice,
            ),
            watch::<Pod>(&client, Watched::Pods, namespaced(), |p| {
                Object::Pod(Box::new(p))
            }),
            watch::<Namespace>(
                &client,
                Watched::Namespaces,
                watcher::Config::default(),
                Object::Namespace,
            ),
            watch::<VirtualService>(&client, Watched::VirtualServices, namespaced(), |r| {
                Object::Resource(Resource::VirtualService(r))
            }),
            watch::<DestinationRule>(&client, Watched::DestinationRules, namespaced(), |r| {
                Object::Resource(Resource::DestinationRule(r))
            }),
            watch::<Gateway>(&client, Watched::Gateways, namespaced(), |r| {
                Object::Resource(Resource::Gateway(r))
            }),
            watch::<ServiceEntry>(&client, Watched::ServiceEntries, namespaced(), |r| {
                Object::Resource(Resource::ServiceEntry(r))
            }),
            watch::<WorkloadEntry>(&client, Watched::WorkloadEntries, namespaced(), |r| {
                Object::Resource(Resource::WorkloadEntry(r))
            }),
            watch::<PeerAuthentication>(&client, Watched::PeerAuthentications, namespaced(), |r| {
                Object::Resource(Resource::PeerAuthentication(r))
            }),
            watch::<AuthorizationPolicy>(
                &client,
                Watched::AuthorizationPolicies,
                namespaced(),
                |r| Object::Resource(Resource::AuthorizationPolicy(r)),
            ),
            watch::<HttpRoute>(&client, Watched::HttpRoutes, namespaced(), |r| {
                Object::Resource(Resource::HttpRoute(r))
            }),
            watch::<GrpcRoute>(&client, Watched::GrpcRoutes, namespaced(), |r| {
                Object::Resource(Resource::GrpcRoute(r))
            }),
            watch::<KubeGateway>(&client, Watched::KubeGateways, namespaced(), |r| {
                Object::Resource(Resource::KubeGateway(r))
            }),
        ];
        debug_assert_eq!(streams.len(), Watched::ALL.len());
        let mut events = futures_util::stream::select_all(streams);
        let mut state = State::new(self.options, self.errors, self.namespaces);
        info!(
            resources = Watched::ALL.len(),
            "watching the Kubernetes API server"
        );
        while let Some((watched, event)) = events.next().await {
            for out in state.handle(watched, event) {
                if tx.send(out).await.is_err() {
                    debug!("the registry's consumer is gone; stopping the watchers");
                    return;
                }
            }
        }
    }
}

/// `metadata.namespace!=a,metadata.namespace!=b` for the ignored namespaces.
fn field_selector(ignore: &BTreeSet<String>) -> Option<String> {
    if ignore.is_empty() {
        return None;
    }
    let terms: Vec<String> = ignore
        .iter()
        .map(|ns| format!("metadata.namespace!={ns}"))
        .collect();
    Some(terms.join(","))
}

type WatchItem = (Watched, Result<Event<Object>, watcher::Error>);

/// One watcher with backoff, its objects wrapped by `wrap`.
fn watch<K>(
    client: &Client,
    watched: Watched,
    config: watcher::Config,
    wrap: fn(K) -> Object,
) -> BoxStream<'static, WatchItem>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
{
    let api = Api::<K>::all(client.clone());
    watcher::watcher(api, config)
        .default_backoff()
        .map(move |event| (watched, event.map(|e| map_event(e, wrap))))
        .boxed()
}

fn map_event<K>(event: Event<K>, wrap: fn(K) -> Object) -> Event<Object> {
    match event {
        Event::Apply(k) => Event::Apply(wrap(k)),
        Event::Delete(k) => Event::Delete(wrap(k)),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(wrap(k)),
        Event::InitDone => Event::InitDone,
    }
}

// === impl Watched ===

/// The resources the registry watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    /// `v1` Services.
    Services,
    /// `discovery.k8s.io/v1` EndpointSlices.
    EndpointSlices,
    /// `v1` Pods.
    Pods,
    /// `v1` Namespaces.
    Namespaces,
    /// Our VirtualServices.
    VirtualServices,
    /// Our DestinationRules.
    DestinationRules,
    /// Our Gateways.
    Gateways,
    /// Our ServiceEntries.
    ServiceEntries,
    /// Our WorkloadEntries.
    WorkloadEntries,
    /// Our PeerAuthentications.
    PeerAuthentications,
    /// Our AuthorizationPolicies.
    AuthorizationPolicies,
    /// Gateway API HTTPRoutes.
    HttpRoutes,
    /// Gateway API GRPCRoutes.
    GrpcRoutes,
    /// Gateway API Gateways.
    KubeGateways,
}

/// Where a watched kind is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Built into Kubernetes.
    Core,
    /// Our CRDs, installed by `meshctl install`.
    Mesh,
    /// The Gateway API CRDs, installed separately.
    GatewayApi,
}

impl Watched {
    /// Every watched resource.
    pub const ALL: [Watched; 14] = [
        Self::Services,
        Self::EndpointSlices,
        Self::Pods,
        Self::Namespaces,
        Self::VirtualServices,
        Self::DestinationRules,
        Self::Gateways,
        Self::ServiceEntries,
        Self::WorkloadEntries,
        Self::PeerAuthentications,
        Self::AuthorizationPolicies,
        Self::HttpRoutes,
        Self::GrpcRoutes,
        Self::KubeGateways,
    ];

    /// The resource as RBAC rules and `kubectl` name it: `pods`,
    /// `endpointslices.discovery.k8s.io`, `virtualservices.networking.mesh.dev`.
    pub fn resource(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::EndpointSlices => "endpointslices.discovery.k8s.io",
            Self::Pods => "pods",
            Self::Namespaces => "namespaces",
            Self::VirtualServices => "virtualservices.networking.mesh.dev",
            Self::DestinationRules => "destinationrules.networking.mesh.dev",
            Self::Gateways => "gateways.networking.mesh.dev",
            Self::ServiceEntries => "serviceentries.networking.mesh.dev",
            Self::WorkloadEntries => "workloadentries.networking.mesh.dev",
            Self::PeerAuthentications => "peerauthentications.security.mesh.dev",
            Self::AuthorizationPolicies => "authorizationpolicies.security.mesh.dev",
            Self::HttpRoutes => "httproutes.gateway.networking.k8s.io",
            Self::GrpcRoutes => "grpcroutes.gateway.networking.k8s.io",
            Self::KubeGateways => "gateways.gateway.networking.k8s.io",
        }
    }

    /// The `kind` of the objects.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Services => "Service",
            Self::EndpointSlices => "EndpointSlice",
            Self::Pods => "Pod",
            Self::Namespaces => "Namespace",
            Self::VirtualServices => "VirtualService",
            Self::DestinationRules => "DestinationRule",
            Self::Gateways | Self::KubeGateways => "Gateway",
            Self::ServiceEntries => "ServiceEntry",
            Self::WorkloadEntries => "WorkloadEntry",
            Self::PeerAuthentications => "PeerAuthentication",
            Self::AuthorizationPolicies => "AuthorizationPolicy",
            Self::HttpRoutes => "HTTPRoute",
            Self::GrpcRoutes => "GRPCRoute",
        }
    }

    fn origin(self) -> Origin {
        match self {
            Self::Services | Self::EndpointSlices | Self::Pods | Self::Namespaces => Origin::Core,
            Self::HttpRoutes | Self::GrpcRoutes | Self::KubeGateways => Origin::GatewayApi,
            _ => Origin::Mesh,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource())
    }
}

// === impl WatchErrors ===

/// Watch errors per [`Watched`] resource since start: a cheap, shared handle for the
/// metrics.
#[derive(Debug, Clone, Default)]
pub struct WatchErrors(Arc<[AtomicU64; Watched::ALL.len()]>);

impl WatchErrors {
    /// The errors of `watched` so far.
    pub fn get(&self, watched: Watched) -> u64 {
        self.0[watched.index()].load(Ordering::Relaxed)
    }

    /// Every resource with its count, in [`Watched::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Watched, u64)> + '_ {
        Watched::ALL.iter().map(|w| (*w, self.get(*w)))
    }

    fn inc(&self, watched: Watched) {
        self.0[watched.index()].fetch_add(1, Ordering::Relaxed);
    }
}

// === impl NamespaceLabels ===

/// The labels of every namespace, kept by the Namespace watcher (for injection and
/// visibility rules to come). A cheap, shared handle.
#[derive(Debug, Clone, Default)]
pub struct NamespaceLabels(Arc<RwLock<BTreeMap<String, BTreeMap<String, String>>>>);

impl NamespaceLabels {
    /// The labels of `namespace`, if it exists.
    pub fn get(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.read().get(namespace).cloned()
    }

    /// How many namespaces are known.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no namespace is known (yet).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, BTreeMap<String, String>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, namespace: String, labels: BTreeMap<String, String>) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(namespace, labels);
    }

    fn remove(&self, namespace: &str) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(namespace);
    }
}

// === impl Object ===

/// A watched Kubernetes object.
#[derive(Debug)]
enum Object {
    Service(KubeService),
    Slice(EndpointSlice),
    Pod(Box<Pod>),
    Namespace(Namespace),
    Resource(Resource),
}

impl Object {
    /// `(namespace, name)`; cluster-scoped objects have an empty namespace.
    fn key(&self) -> ObjKey {
        let meta = match self {
            Self::Service(o) => &o.metadata,
            Self::Slice(o) => &o.metadata,
            Self::Pod(o) => &o.metadata,
            Self::Namespace(o) => &o.metadata,
            Self::Resource(r) => r.meta(),
        };
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

type ObjKey = (String, String);
type ResKey = (ResourceKind, String, String);

// === impl State ===

/// The translation state: what each watcher has emitted, whether it has synced.
/// Synchronous, so it is tested without an API server.
struct State {
    ignore_namespaces: BTreeSet<String>,
    sources: [Source; Watched::ALL.len()],
    errors: WatchErrors,
    namespaces: NamespaceLabels,
    synced: bool,
}

/// One watcher's state.
#[derive(Debug, Default)]
struct Source {
    /// Per Kubernetes object, the resource keys applied for it (an entry with no keys for
    /// namespaces, which produce no resources).
    emitted: BTreeMap<ObjKey, Vec<ResKey>>,
    /// During a (re-)list: the objects listed so far.
    listing: Option<BTreeSet<ObjKey>>,
    /// Whether the first list completed (or found the CRD missing).
    synced: bool,
    /// The last problem reported, to report it once until the watcher makes progress.
    last_problem: Option<String>,
}

/// How a watcher error is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// 403: RBAC.
    Forbidden,
    /// 404 on the list: the CRD is not installed; as good as an empty list.
    NotInstalled,
    /// 404 starting a watch: the CRD went away after it was listed.
    Uninstalled,
    /// 410 on a watch: the watcher re-lists. Routine.
    Expired,
    /// Anything else (network, 5xx, decoding).
    Other,
}

impl State {
    fn new(options: Options, errors: WatchErrors, namespaces: NamespaceLabels) -> Self {
        Self {
            ignore_namespaces: options.ignore_namespaces,
            sources: Default::default(),
            errors,
            namespaces,
            synced: false,
        }
    }

    /// Handles one watcher item; returns the events to send, in order.
    fn handle(
        &mut self,
        watched: Watched,
        event: Result<Event<Object>, watcher::Error>,
    ) -> Vec<RegistryEvent> {
        let mut out = Vec::new();
        match event {
            Ok(Event::Init) => {
                self.source(watched).listing = Some(BTreeSet::new());
            }
            Ok(Event::InitApply(obj)) => {
                let src = self.source(watched);
                src.last_problem = None;
                if let Some(listing) = &mut src.listing {
                    listing.insert(obj.key());
                }
                self.apply(watched, obj, &mut out);
            }
            Ok(Event::InitDone) => {
                let src = self.source(watched);
                src.last_problem = None;
                let listed = src.listing.take().unwrap_or_default();
                self.relisted(watched, &listed, &mut out);
            }
            Ok(Event::Apply(obj)) => {
                self.source(watched).last_problem = None;
                self.apply(watched, obj, &mut out);
            }
            Ok(Event::Delete(obj)) => {
                self.source(watched).last_problem = None;
                self.retract(watched, &obj.key(), &mut out);
            }
            Err(err) => self.failed(watched, &err, &mut out),
        }
        if !self.synced && self.sources.iter().all(|s| s.synced) {
            self.synced = true;
            info!("initial sync with the Kubernetes API server complete");
            out.push(RegistryEvent::Synced);
        }
        out
    }

    fn source(&mut self, watched: Watched) -> &mut Source {
        &mut self.sources[watched.index()]
    }

    /// A (re-)list completed with `listed`: what was emitted for anything else vanished.
    fn relisted(
        &mut self,
        watched: Watched,
        listed: &BTreeSet<ObjKey>,
        out: &mut Vec<RegistryEvent>,
    ) {
        let src = self.source(watched);
        let gone: Vec<ObjKey> = src
            .emitted
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        if !gone.is_empty() {
            info!(
                resource = %watched,
                count = gone.len(),
                "objects vanished while not watching; deleting them"
            );
        }
        for key in &gone {
            self.retract(watched, key, out);
        }
        let src = self.source(watched);
        if !src.synced {
            src.synced = true;
            debug!(resource = %watched, objects = listed.len(), "initial list complete");
        }
    }

    /// Translates `obj` and emits its resources, deleting what it emitted before and no
    /// longer does.
    fn apply(&mut self, watched: Watched, obj: Object, out: &mut Vec<RegistryEvent>) {
        let key = obj.key();
        let resources: Vec<Resource> = if self.ignore_namespaces.contains(&key.0) {
            Vec::new()
        } else {
            match obj {
                Object::Namespace(ns) => {
                    let labels = ns.metadata.labels.unwrap_or_default();
                    self.namespaces.set(key.1.clone(), labels);
                    Vec::new()
                }
                Object::Service(svc) => vec![Resource::Service(translate::service(svc))],
                Object::Pod(pod) => translate::pod(&pod)
                    .map(Resource::WorkloadEntry)
                    .into_iter()
                    .collect(),
                Object::Slice(slice) => translate::endpoint_slice(&slice)
                    .into_iter()
                    .map(Resource::WorkloadEntry)
                    .collect(),
                Object::Resource(r) => vec![translate::resource(r)],
            }
        };
        let keys: Vec<ResKey> = resources.iter().map(res_key).collect();
        let src = self.source(watched);
        let before = src.emitted.remove(&key).unwrap_or_default();
        for old in before.into_iter().filter(|k| !keys.contains(k)) {
            out.push(delete(old));
        }
        if !keys.is_empty() || watched == Watched::Namespaces {
            src.emitted.insert(key, keys);
        }
        out.extend(resources.into_iter().map(RegistryEvent::Apply));
    }

    /// Deletes what was emitted for the object `key`.
    fn retract(&mut self, watched: Watched, key: &ObjKey, out: &mut Vec<RegistryEvent>) {
        if watched == Watched::Namespaces {
            self.namespaces.remove(&key.1);
        }
        if let Some(keys) = self.source(watched).emitted.remove(key) {
            out.extend(keys.into_iter().map(delete));
        }
    }

    fn failed(&mut self, watched: Watched, err: &watcher::Error, out: &mut Vec<RegistryEvent>) {
        self.errors.inc(watched);
        let failure = classify(watched, err);
        let message = match failure {
            Failure::Expired => {
                info!(resource = %watched, "watch expired (410 Gone); re-listing");
                return;
            }
            Failure::Forbidden => format!(
                "mesh-control may not list/watch {watched} (403 Forbidden): apply deploy/ RBAC or check the ClusterRole"
            ),
            Failure::NotInstalled | Failure::Uninstalled => not_installed(watched),
            Failure::Other => {
                format!("watching {watched} failed: {err}; retrying with backoff")
            }
        };
        if failure == Failure::NotInstalled {
            // As good as an empty list: nothing of this kind exists.
            self.source(watched).listing = None;
            self.relisted(watched, &BTreeSet::new(), out);
        }
        let src = self.source(watched);
        if src.last_problem.as_ref() == Some(&message) {
            debug!(resource = %watched, error = %err, "{message}");
            return;
        }
        warn!(resource = %watched, error = %err, "{message}");
        src.last_problem = Some(message.clone());
        out.push(RegistryEvent::Problem(message));
    }
}

fn not_installed(watched: Watched) -> String {
    let kind = watched.kind();
    match watched.origin() {
        Origin::GatewayApi => format!(
            "{kind} CRD ({}) not installed; install the Gateway API CRDs (standard channel) to use it; {kind} ignored until it appears",
            watched.resource()
        ),
        Origin::Mesh | Origin::Core => format!(
            "{kind} CRD ({}) not installed; run `meshctl install`; {kind} ignored until it appears",
            watched.resource()
        ),
    }
}

fn classify(watched: Watched, err: &watcher::Error) -> Failure {
    use watcher::Error as E;
    let api_status = |e: &kube::Error| match e {
        kube::Error::Api(s) => Some((s.code, s.reason.clone())),
        _ => None,
    };
    let (code, reason, listing) = match err {
        E::InitialListFailed(e) => match api_status(e) {
            Some((code, reason)) => (code, reason, true),
            None => return Failure::Other,
        },
        E::WatchStartFailed(e) | E::WatchFailed(e) => match api_status(e) {
            Some((code, reason)) => (code, reason, false),
            None => return Failure::Other,
        },
        E::WatchError(s) => (s.code, s.reason.clone(), false),
        E::NoResourceVersion => return Failure::Other,
    };
    let crd = watched.origin() != Origin::Core;
    match (code, reason.as_str()) {
        (403, _) | (_, "Forbidden") => Failure::Forbidden,
        (404, _) | (_, "NotFound") if crd && listing => Failure::NotInstalled,
        (404, _) | (_, "NotFound") if crd => Failure::Uninstalled,
        (410, _) | (_, "Expired" | "Gone") => Failure::Expired,
        _ => Failure::Other,
    }
}

fn res_key(r: &Resource) -> ResKey {
    (r.kind(), r.namespace().to_owned(), r.name().to_owned())
}

fn delete((kind, namespace, name): ResKey) -> RegistryEvent {
    RegistryEvent::Delete {
        kind,
        namespace,
        name,
    }
}
