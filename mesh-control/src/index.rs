//! The index: user config in, per-proxy config out. Synchronous, no I/O.
//!
//! Sources (Kubernetes watchers, or a directory of YAML in local mode) call
//! [`Index::apply`], [`Index::delete`] or [`Index::replace_all`] with typed
//! [`mesh_api::config::Resource`]s; the discovery server calls [`Index::proxy_config`] for
//! each connected proxy whenever [`Index::version`] moves, and pushes the result through a
//! `watch` per proxy.
//!
//! # How it works
//!
//! The index keeps every resource by `(kind, namespace, name)`. On each change it
//! re-derives its tables from the whole set (translation is cheap and a full rebuild keeps
//! every cross-resource rule — selectors, subsets, conflicts — obviously right):
//!
//! - `workloads`: WorkloadEntries → [`WorkloadInfo`] → [`mesh_api::model::Workload`].
//!   Pods will be another source of [`WorkloadInfo`].
//! - `services`: Kubernetes Services and ServiceEntries → [`mesh_api::model::Service`]s
//!   with their endpoints (selected workloads, or a ServiceEntry's static endpoints).
//! - `routes`: VirtualServices → route tables per (host, port) for sidecars.
//! - `gateways`: Gateways and the VirtualServices bound to them → gateway listeners.
//! - `gateway_api`: HTTPRoutes and GRPCRoutes attached to Services (GAMMA) → route tables.
//! - `clusters`: DestinationRules → clusters (default and per subset).
//! - `security`: PeerAuthentication → the inbound mTLS policy; AuthorizationPolicies.
//!
//! `proxy` then assembles one proxy's [`mesh_api::model::ProxyConfigSpec`]: what is
//! visible from its namespace (`exportTo`), the route and destination rules that win for
//! it (Istio's precedence), and the policies that select its workload. The output is
//! sorted throughout, so equal inputs give byte-identical JSON.
//!
//! Config arrives validated (`mesh_api::config::validate`), but the index is defensive:
//! whatever cannot be translated is skipped and reported by [`Index::warnings`], naming the
//! resource; it never panics. Security translation fails closed (see `security`).
//!
//! # Deviations from Istio
//!
//! - No PeerAuthentication at all means STRICT mTLS (Istio: PERMISSIVE).
//! - A VirtualService without `retries` gets no retries (Istio adds 2 attempts), the same
//!   as traffic with no VirtualService at all in this mesh's proxy.
//! - Host names such as `reviews.default` resolve to a known service's FQDN
//!   (`reviews.default.svc.cluster.local`) where Istio would take them literally.
//! - Two VirtualServices for one host: the first by (namespace, name) wins (Istio merges
//!   only at gateways); a warning names both.

mod clusters;
mod gateway_api;
mod gateways;
mod hosts;
mod proxy;
mod routes;
mod security;
mod services;
mod state;
mod workloads;

#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, sync::Arc};

use mesh_api::{
    config::{Resource, ResourceKind},
    model::{
        AuthorizationPolicy, Cluster, EndpointSet, InboundPolicy, Listener, Node, ProxyConfigSpec,
        ProxyMode, RouteTable, Service, Workload,
    },
    spiffe,
};

use self::state::State;
pub use self::workloads::WorkloadInfo;

/// Mesh-wide settings the translation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The SPIFFE trust domain of workload identities, `cluster.local` by default.
    pub trust_domain: String,
    /// The control-plane namespace, whose selector-less policies apply mesh-wide
    /// (`mesh-system`).
    pub root_namespace: String,
    /// The DNS suffix of Kubernetes services, `cluster.local` by default:
    /// `<name>.<namespace>.svc.<cluster_domain>`.
    pub cluster_domain: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trust_domain: spiffe::DEFAULT_TRUST_DOMAIN.to_owned(),
            root_namespace: "mesh-system".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
        }
    }
}

/// A translation problem: a resource (or part of one) the index skipped or approximated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexWarning {
    /// The kind of the resource.
    pub kind: ResourceKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What was skipped or approximated, and why.
    pub message: String,
}

impl fmt::Display for IndexWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}",
            self.kind.kind(),
            self.namespace,
            self.name,
            self.message
        )
    }
}

type Key = (ResourceKind, String, String);

/// The control plane's view of the mesh: every config resource, and the per-proxy
/// translation of them. See the [module docs](self).
#[derive(Debug)]
pub struct Index {
    settings: Arc<Settings>,
    resources: BTreeMap<Key, Resource>,
    state: Arc<State>,
    version: u64,
}

/// An immutable view of the index at one version: cheap to clone and to share across
/// threads, so the discovery server computes configs without holding the index.
#[derive(Debug, Clone)]
pub struct View {
    settings: Arc<Settings>,
    state: Arc<State>,
    version: u64,
}

/// The part of a proxy's config that depends only on its namespace and mode, so one
/// computation serves every proxy of that scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeConfig {
    /// Services visible from the namespace.
    pub services: Vec<Service>,
    /// Their endpoints.
    pub endpoints: Vec<EndpointSet>,
    /// Their clusters, with the DestinationRules that win for the namespace.
    pub clusters: Vec<Cluster>,
    /// Route tables (sidecars only).
    pub routes: Vec<RouteTable>,
}

/// The part of a proxy's config that is its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnConfig {
    /// Its workload, when the node names a known one holding the node's identity.
    pub workload: Option<Workload>,
    /// Its inbound mTLS policy.
    pub inbound: InboundPolicy,
    /// The authorization policies selecting it.
    pub authorization: Vec<AuthorizationPolicy>,
    /// Gateway mode: the listeners of the Gateways selecting it.
    pub listeners: Vec<Listener>,
}

// === impl View ===

impl View {
    /// The version of the index this view was taken at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The full config of the proxy `node` describes; see [`Index::proxy_config`].
    pub fn proxy_config(&self, node: &Node) -> ProxyConfigSpec {
        proxy::build(&self.settings, &self.state, node)
    }

    /// The scope part of the config of proxies in `namespace` running as `mode`.
    pub fn scope_config(&self, namespace: &str, mode: ProxyMode) -> ScopeConfig {
        proxy::scope(&self.settings, &self.state, namespace, mode)
    }

    /// The proxy's own part of its config.
    pub fn own_config(&self, node: &Node) -> OwnConfig {
        proxy::own(&self.settings, &self.state, node)
    }

    /// Every known workload, ordered by uid.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.state.workloads.values().map(|w| &w.workload)
    }

    /// Translation problems, sorted by resource.
    pub fn warnings(&self) -> &[IndexWarning] {
        &self.state.warnings
    }
}

// === impl Index ===

impl Index {
    /// An empty index.
    pub fn new(settings: Settings) -> Self {
        let state = Arc::new(State::build(&settings, std::iter::empty()));
        Self {
            settings: Arc::new(settings),
            resources: BTreeMap::new(),
            state,
            version: 0,
        }
    }

    /// The settings the index was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Adds `resource`, or replaces the one with its kind, namespace and name.
    pub fn apply(&mut self, resource: Resource) {
        let key = key_of(&resource);
        if self.resources.get(&key) == Some(&resource) {
            return;
        }
        self.resources.insert(key, resource);
        self.changed();
    }

    /// Removes the resource of `kind` named `namespace/name`, if present.
    pub fn delete(&mut self, kind: ResourceKind, namespace: &str, name: &str) {
        let key = (kind, namespace.to_owned(), name.to_owned());
        if self.resources.remove(&key).is_some() {
            self.changed();
        }
    }

    /// Applies many changes with one rebuild (a watcher's burst of events): `Ok` adds or
    /// replaces, `Err((kind, namespace, name))` removes.
    pub fn apply_many(
        &mut self,
        changes: impl IntoIterator<Item = Result<Resource, (ResourceKind, String, String)>>,
    ) {
        let mut changed = false;
        for change in changes {
            match change {
                Ok(resource) => {
                    let key = key_of(&resource);
                    if self.resources.get(&key) != Some(&resource) {
                        self.resources.insert(key, resource);
                        changed = true;
                    }
                }
                Err(key) => changed |= self.resources.remove(&key).is_some(),
            }
        }
        if changed {
            self.changed();
        }
    }

    /// Replaces everything with `resources` (local mode: a whole directory snapshot). Of
    /// two resources with one kind, namespace and name, the later wins.
    pub fn replace_all(&mut self, resources: Vec<Resource>) {
        let resources: BTreeMap<Key, Resource> =
            resources.into_iter().map(|r| (key_of(&r), r)).collect();
        if resources == self.resources {
            return;
        }
        self.resources = resources;
        self.changed();
    }

    /// The full config of the proxy `node` describes: what it can reach from its namespace,
    /// its own workload (when `node` names a known one with the node's identity), its
    /// inbound mTLS policy and the authorization policies selecting it.
    ///
    /// The spec's `version` is left empty for the caller to fill (e.g. with a content hash).
    pub fn proxy_config(&self, node: &Node) -> ProxyConfigSpec {
        proxy::build(&self.settings, &self.state, node)
    }

    /// An immutable view of the current state, for computing configs elsewhere.
    pub fn view(&self) -> View {
        View {
            settings: self.settings.clone(),
            state: self.state.clone(),
            version: self.version,
        }
    }

    /// How many resources the index holds.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether the index holds no resources.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Every known workload, ordered by uid.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.state.workloads.values().map(|w| &w.workload)
    }

    /// Translation problems of the current config, sorted by resource.
    pub fn warnings(&self) -> &[IndexWarning] {
        &self.state.warnings
    }

    /// A counter that moves on every change of the config (not on no-op updates).
    pub fn version(&self) -> u64 {
        self.version
    }

    fn changed(&mut self) {
        self.state = Arc::new(State::build(&self.settings, self.resources.values()));
        self.version += 1;
    }
}

fn key_of(r: &Resource) -> Key {
    (r.kind(), r.namespace().to_owned(), r.name().to_owned())
}
