//! Versioned, encoded resources shared between proxies.
//!
//! Every accepted config change makes a new [`Generation`] (one index [`View`]). Within a
//! generation, the resources every proxy of one namespace and mode can reach — services,
//! endpoint sets, clusters, route tables — are the same, so they are translated, encoded
//! and versioned once per scope ([`ScopeResources`], built on first use) and shared by
//! `Arc` between all those proxies' streams. The difference between two scope snapshots is
//! computed once too ([`ScopeResources::delta_from`]) and reused by every proxy that was in
//! sync with the older one, so one endpoint change costs one diff, not one per proxy.
//!
//! A resource's version is a hash of its encoded body: equal content gives equal versions,
//! also across control-plane restarts, so a reconnecting proxy that lists what it holds
//! (`initial_resource_versions`) is sent only what really changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mesh_api::model::{self, ProxyMode, ResourceKind};
use mesh_api::proto::discovery::v1 as pb;
use prost::Message as _;
use tokio::sync::OnceCell;

use crate::index::{OwnConfig, ScopeConfig, View};

/// The kinds shared by every proxy of a scope, in dependency order.
pub(crate) const SCOPE_KINDS: [ResourceKind; 4] = [
    ResourceKind::Service,
    ResourceKind::EndpointSet,
    ResourceKind::Cluster,
    ResourceKind::RouteTable,
];

/// The position of a scope kind in [`SCOPE_KINDS`].
pub(crate) fn scope_slot(kind: ResourceKind) -> Option<usize> {
    SCOPE_KINDS.iter().position(|k| *k == kind)
}

/// One encoded, versioned resource.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The resource with its name and version set.
    pub(crate) resource: pb::Resource,
}

impl Entry {
    /// Encodes `r` and versions it by content.
    pub(crate) fn new(r: &model::Resource) -> Arc<Self> {
        let mut resource = pb::Resource::new(r, String::new());
        resource.version = content_version(&resource.encode_to_vec());
        Arc::new(Self { resource })
    }

    pub(crate) fn name(&self) -> &str {
        &self.resource.name
    }

    pub(crate) fn version(&self) -> &str {
        &self.resource.version
    }
}

/// FNV-1a over the encoded body, as 16 hex digits: stable across processes and builds.
fn content_version(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Resources of one kind by name.
pub(crate) type KindMap = BTreeMap<String, Arc<Entry>>;

/// What a proxy holds of one kind: name → version.
pub(crate) type Held = BTreeMap<String, String>;

/// Changes to one kind.
#[derive(Debug, Default, Clone)]
pub(crate) struct KindDelta {
    /// Resources to add or replace.
    pub(crate) upserts: Vec<Arc<Entry>>,
    /// Names to remove.
    pub(crate) removes: Vec<String>,
}

impl KindDelta {
    pub(crate) fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removes.is_empty()
    }

    /// The changes that turn `held` into `want`.
    pub(crate) fn between_held(held: &Held, want: &KindMap) -> Self {
        let upserts = want
            .values()
            .filter(|e| held.get(e.name()).is_none_or(|v| v != e.version()))
            .cloned()
            .collect();
        let removes = held
            .keys()
            .filter(|name| !want.contains_key(*name))
            .cloned()
            .collect();
        Self { upserts, removes }
    }

    /// The changes that turn `old` into `new`.
    fn between(old: &KindMap, new: &KindMap) -> Self {
        let upserts = new
            .values()
            .filter(|e| {
                old.get(e.name())
                    .is_none_or(|o| !Arc::ptr_eq(o, e) && o.version() != e.version())
            })
            .cloned()
            .collect();
        let removes = old
            .keys()
            .filter(|name| !new.contains_key(*name))
            .cloned()
            .collect();
        Self { upserts, removes }
    }
}

/// The scope resources of one (namespace, mode) in one generation.
#[derive(Debug)]
pub(crate) struct ScopeResources {
    /// A process-unique id, to key cached deltas.
    id: u64,
    /// By [`SCOPE_KINDS`] slot.
    pub(crate) kinds: [KindMap; 4],
    /// Deltas from older snapshots of this scope, by their id (a few at most).
    deltas: Mutex<Vec<(u64, Arc<[KindDelta; 4]>)>>,
}

static NEXT_SCOPE_ID: AtomicU64 = AtomicU64::new(1);

impl ScopeResources {
    /// Encodes a scope config; entries equal to `reuse`'s are shared with it.
    fn build(config: ScopeConfig, reuse: Option<&ScopeResources>) -> Self {
        let ScopeConfig {
            services,
            endpoints,
            clusters,
            routes,
        } = config;
        let mut kinds: [KindMap; 4] = Default::default();
        let resources = services
            .into_iter()
            .map(model::Resource::Service)
            .chain(endpoints.into_iter().map(model::Resource::EndpointSet))
            .chain(clusters.into_iter().map(model::Resource::Cluster))
            .chain(routes.into_iter().map(model::Resource::RouteTable));
        for r in resources {
            let slot = scope_slot(r.kind()).expect("scope kinds only");
            let mut entry = Entry::new(&r);
            if let Some(old) = reuse.and_then(|p| p.kinds[slot].get(entry.name()))
                && old.version() == entry.version()
            {
                entry = old.clone();
            }
            kinds[slot].insert(entry.name().to_owned(), entry);
        }
        Self {
            id: NEXT_SCOPE_ID.fetch_add(1, Ordering::Relaxed),
            kinds,
            deltas: Mutex::new(Vec::new()),
        }
    }

    /// The changes from `old` (an earlier snapshot of this scope) to this one, computed
    /// once and shared.
    pub(crate) fn delta_from(&self, old: &ScopeResources) -> Arc<[KindDelta; 4]> {
        let mut cache = self.deltas.lock().expect("delta cache poisoned");
        if let Some((_, d)) = cache.iter().find(|(id, _)| *id == old.id) {
            return d.clone();
        }
        let delta: Arc<[KindDelta; 4]> = Arc::new(std::array::from_fn(|slot| {
            KindDelta::between(&old.kinds[slot], &self.kinds[slot])
        }));
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push((old.id, delta.clone()));
        delta
    }

    /// Whether `self` and `other` are the same snapshot.
    pub(crate) fn same(&self, other: &ScopeResources) -> bool {
        self.id == other.id
    }

    /// What a proxy holding exactly this snapshot holds, as name → version maps.
    pub(crate) fn held(&self) -> [Held; 4] {
        std::array::from_fn(|slot| {
            self.kinds[slot]
                .iter()
                .map(|(n, e)| (n.clone(), e.version().to_owned()))
                .collect()
        })
    }
}

/// A proxy's own resources (workload, inbound policy, authorization policies, gateway
/// listeners), by kind.
pub(crate) fn own_resources(own: OwnConfig) -> [KindMap; OWN_KINDS.len()] {
    let OwnConfig {
        workload,
        inbound,
        authorization,
        listeners,
    } = own;
    let mut kinds: [KindMap; OWN_KINDS.len()] = Default::default();
    let resources = workload
        .map(model::Resource::Workload)
        .into_iter()
        .chain(std::iter::once(model::Resource::InboundPolicy(inbound)))
        .chain(
            authorization
                .into_iter()
                .map(model::Resource::AuthorizationPolicy),
        )
        .chain(listeners.into_iter().map(model::Resource::Listener));
    for r in resources {
        let slot = own_slot(r.kind()).expect("own kinds only");
        let e = Entry::new(&r);
        kinds[slot].insert(e.name().to_owned(), e);
    }
    kinds
}

/// The kinds that are each proxy's own. They are sent in [`ResourceKind::ALL`] order with
/// the scope kinds: listeners last, after the clusters their routes name.
pub(crate) const OWN_KINDS: [ResourceKind; 4] = [
    ResourceKind::Workload,
    ResourceKind::InboundPolicy,
    ResourceKind::AuthorizationPolicy,
    ResourceKind::Listener,
];

/// The position of an own kind in [`OWN_KINDS`].
pub(crate) fn own_slot(kind: ResourceKind) -> Option<usize> {
    OWN_KINDS.iter().position(|k| *k == kind)
}

type ScopeKey = (String, ProxyMode);

/// One accepted state of the config: the index view and the scope snapshots built from it.
#[derive(Debug)]
pub struct Generation {
    /// The index view.
    pub(crate) view: View,
    /// The version proxies see (`system_version`).
    pub(crate) system_version: String,
    /// When the change was accepted (push latency is measured from here).
    pub(crate) created: Instant,
    scopes: Mutex<HashMap<ScopeKey, Arc<OnceCell<Arc<ScopeResources>>>>>,
    /// The previous generation's scopes, to share unchanged entries (dropped once this
    /// generation has built a scope).
    previous: Mutex<Option<Arc<Generation>>>,
}

impl Generation {
    /// A generation of `view`; `previous` lends unchanged entries.
    pub(crate) fn new(
        view: View,
        system_version: String,
        previous: Option<Arc<Generation>>,
    ) -> Self {
        Self {
            view,
            system_version,
            created: Instant::now(),
            scopes: Mutex::new(HashMap::new()),
            previous: Mutex::new(previous),
        }
    }

    /// The version proxies see.
    pub fn system_version(&self) -> &str {
        &self.system_version
    }

    /// The index view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The scope snapshot of (`namespace`, `mode`), built on first use (off the async
    /// workers: a large mesh takes milliseconds to encode).
    pub(crate) async fn scope(
        self: &Arc<Self>,
        namespace: &str,
        mode: ProxyMode,
    ) -> Arc<ScopeResources> {
        let cell = {
            let mut scopes = self.scopes.lock().expect("scope cache poisoned");
            scopes
                .entry((namespace.to_owned(), mode))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| {
            let this = self.clone();
            let namespace = namespace.to_owned();
            async move {
                let reuse = this
                    .previous
                    .lock()
                    .expect("previous poisoned")
                    .clone()
                    .and_then(|p| p.built_scope(&namespace, mode));
                tokio::task::spawn_blocking(move || {
                    let config = this.view.scope_config(&namespace, mode);
                    Arc::new(ScopeResources::build(config, reuse.as_deref()))
                })
                .await
                .expect("scope build panicked")
            }
        })
        .await
        .clone()
    }

    /// A scope snapshot already built, if any.
    fn built_scope(&self, namespace: &str, mode: ProxyMode) -> Option<Arc<ScopeResources>> {
        let scopes = self.scopes.lock().expect("scope cache poisoned");
        scopes
            .get(&(namespace.to_owned(), mode))
            .and_then(|c| c.get().cloned())
    }

    /// Forgets the previous generation (so old generations do not chain in memory).
    pub(crate) fn release_previous(&self) {
        self.previous.lock().expect("previous poisoned").take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_content_hashes() {
        assert_eq!(content_version(b""), "cbf29ce484222325");
        assert_ne!(content_version(b"a"), content_version(b"b"));
    }

    #[test]
    fn delta_between_held_and_wanted() {
        let svc = |host: &str, port: u16| {
            let yaml = format!(
                "hostname: {host}\nname: {{namespace: default, name: x}}\nports: [{{port: {port}, targetPort: {port}, protocol: http}}]\n"
            );
            Entry::new(&model::Resource::Service(
                serde_saphyr::from_str(&yaml).expect("service yaml"),
            ))
        };
        let a = svc("a.default.svc.cluster.local", 80);
        let b = svc("b.default.svc.cluster.local", 80);
        let b2 = svc("b.default.svc.cluster.local", 81);
        let want: KindMap = [a.clone(), b2.clone()]
            .into_iter()
            .map(|e| (e.name().to_owned(), e))
            .collect();
        let held: Held = [
            (a.name().to_owned(), a.version().to_owned()),
            (b.name().to_owned(), b.version().to_owned()),
            ("gone".to_owned(), "1".to_owned()),
        ]
        .into_iter()
        .collect();
        let d = KindDelta::between_held(&held, &want);
        assert_eq!(d.upserts.len(), 1, "only the changed service");
        assert_eq!(d.upserts[0].version(), b2.version());
        assert_eq!(d.removes, vec!["gone".to_owned()]);
        assert!(KindDelta::between_held(&want_held(&want), &want).is_empty());
    }

    fn want_held(m: &KindMap) -> Held {
        m.iter()
            .map(|(n, e)| (n.clone(), e.version().to_owned()))
            .collect()
    }
}
