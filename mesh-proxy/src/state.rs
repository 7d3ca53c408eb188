//! The proxy's live view of its config: the validated [`ProxyConfig`] plus the runtime
//! objects built from it — one load balancer per cluster, with endpoint state and peer
//! connections that survive config updates.
//!
//! A new config builds a new [`Snapshot`] off the request path and swaps it in atomically;
//! requests load the current snapshot without a lock ([`State::snapshot`]). Endpoint load
//! statistics ([`EndpointState`]) and peer connections ([`MeshConn`]) are reused by address,
//! so an update (a new VirtualService weight, an added endpoint) neither forgets latency
//! estimates nor drops connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use mesh_api::model::{AppProtocol, Cluster, ClusterKey, ProxyConfig, Service, TlsMode, Workload};
use mesh_api::spiffe::SpiffeId;
use mesh_api::tls::Expected;

use crate::balance::{Balancer, EndpointState, Member};
use crate::identity::Identity;
use crate::transport::MeshConn;

/// The port peer proxies accept mesh traffic on.
pub const MESH_PORT: u16 = 15008;

/// What the proxy knows about a workload, for telemetry and the mesh headers: cheap to
/// clone, built once per snapshot.
#[derive(Debug, Clone, Default)]
pub struct PeerMeta {
    /// Workload (pod) name.
    pub workload: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Canonical service (`app` label).
    pub app: Arc<str>,
    /// Canonical revision (`version` label).
    pub version: Arc<str>,
    /// The SPIFFE id (`spiffe://…`, as Istio's `*_principal` labels show it), or empty.
    pub principal: Arc<str>,
}

impl PeerMeta {
    /// Metadata of a workload from config.
    pub fn of(w: &Workload) -> Self {
        Self {
            workload: w.name.as_str().into(),
            namespace: w.namespace.as_str().into(),
            app: w.canonical_service.as_str().into(),
            version: w.canonical_revision.as_str().into(),
            principal: w.identity.as_str().into(),
        }
    }

    /// Metadata of this proxy from its own node description, for when the control plane
    /// knows no workload for it (a gateway in local mode): the pod name as workload, the
    /// `app`/`version` labels (or their `app.kubernetes.io/` forms) as canonical service
    /// and revision, as the control plane derives them for a workload.
    pub fn of_node(node: &mesh_api::model::Node) -> Self {
        let label = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| node.labels.get(*k).filter(|v| !v.is_empty()))
                .map(String::as_str)
        };
        Self {
            workload: node.pod_name.as_str().into(),
            namespace: node.namespace.as_str().into(),
            app: label(&["app.kubernetes.io/name", "app"])
                .unwrap_or(&node.pod_name)
                .into(),
            version: label(&["app.kubernetes.io/version", "version"])
                .unwrap_or("latest")
                .into(),
            principal: node.identity.as_str().into(),
        }
    }

    /// The `x-mesh-peer` header value: `namespace/workload/app/version`.
    pub fn header_value(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace, self.workload, self.app, self.version
        )
    }

    /// Parses an `x-mesh-peer` header value. Unknown parts stay empty.
    pub fn from_header(v: &str) -> Self {
        let mut parts = v.splitn(4, '/');
        let mut next = || -> Arc<str> { parts.next().unwrap_or_default().into() };
        let namespace = next();
        let workload = next();
        let app = next();
        let version = next();
        Self {
            workload,
            namespace,
            app,
            version,
            principal: "".into(),
        }
    }
}

/// How the proxy reaches one endpoint of a cluster.
#[derive(Debug, Clone)]
pub struct EndpointMeta {
    /// The endpoint's workload.
    pub peer: PeerMeta,
    /// The application port on the endpoint.
    pub target_port: u16,
    /// The endpoint's IP and application port (for direct connections and CONNECT).
    pub target: SocketAddr,
    /// The peer proxy's connection when the endpoint is in the mesh; `None` means plain
    /// traffic straight to `target`.
    pub mesh: Option<Arc<MeshConn>>,
}

/// A cluster at runtime: its settings and its balancer.
#[derive(Debug)]
pub struct ClusterRt {
    /// The cluster's settings.
    pub cluster: Cluster,
    /// The service host name (for messages and metrics).
    pub service: Arc<str>,
    /// The service's short name.
    pub service_name: Arc<str>,
    /// The `x-mesh-service` header naming the service to the server proxy.
    pub service_header: http::HeaderValue,
    /// The service port's declared protocol.
    pub protocol: AppProtocol,
    /// The endpoints and their picker.
    pub balancer: Balancer<EndpointMeta>,
    /// Requests in flight to the cluster, for the `maxRequests` limit.
    in_flight: AtomicU32,
}

impl ClusterRt {
    /// Takes a request slot under the cluster's `connectionPool` limit (`maxRequests` plus
    /// `maxPending`: with multiplexed HTTP/2 to peers, requests never wait for a
    /// connection, so the two together bound what may be outstanding). `None` means the
    /// cluster is full: the request fails fast with `UO` instead of piling onto a struggling
    /// service. The slot is held until the response head arrives. The count starts afresh
    /// with each config snapshot.
    pub fn acquire(self: &Arc<Self>) -> Option<RequestSlot> {
        let pool = &self.cluster.connection_pool;
        if let Some(max) = pool.max_requests {
            let limit = max
                .get()
                .saturating_add(pool.max_pending.map_or(0, |p| p.get()));
            let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
            if prev >= limit {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
        }
        Some(RequestSlot {
            cluster: pool.max_requests.is_some().then(|| self.clone()),
        })
    }
}

/// A request's place under its cluster's limit; released on drop.
#[derive(Debug)]
pub struct RequestSlot {
    cluster: Option<Arc<ClusterRt>>,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        if let Some(c) = &self.cluster {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One consistent view of config and runtime objects.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated config.
    pub config: Arc<ProxyConfig>,
    /// Clusters by key: every cluster in the config, plus a default (no subset) cluster for
    /// every service port.
    pub clusters: HashMap<ClusterKey, Arc<ClusterRt>>,
    /// This proxy's own workload.
    pub local: PeerMeta,
    /// The precomputed `x-mesh-peer` header for outgoing requests.
    pub local_header: http::HeaderValue,
    /// The workload's authorization policies, compiled.
    pub authz: crate::authz::Authorizer,
    /// When this snapshot was built.
    pub built_at: Instant,
}

impl Snapshot {
    /// The cluster for `key`.
    pub fn cluster(&self, key: &ClusterKey) -> Option<&Arc<ClusterRt>> {
        self.clusters.get(key)
    }
}

/// The proxy's state: the current snapshot, and the registries that keep endpoint state and
/// peer connections alive across snapshots.
#[derive(Debug)]
pub struct State {
    current: ArcSwapOption<Snapshot>,
    endpoints: Mutex<HashMap<SocketAddr, Weak<EndpointState>>>,
    conns: Mutex<HashMap<(SocketAddr, SpiffeId), Weak<MeshConn>>>,
    mesh_port: u16,
    identity: Arc<Identity>,
    /// Counts config updates, for tasks that follow the config (gateway listeners).
    updates: tokio::sync::watch::Sender<u64>,
    /// This proxy's metadata when the config names no workload for it.
    unlisted: Option<PeerMeta>,
}

impl State {
    /// Empty state: no config yet. Peer proxies are dialed on `mesh_port` (15008) with
    /// mutual TLS as `identity`.
    pub fn new(mesh_port: u16, identity: Arc<Identity>) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            endpoints: Mutex::default(),
            conns: Mutex::default(),
            mesh_port,
            identity,
            updates: tokio::sync::watch::Sender::new(0),
            unlisted: None,
        }
    }

    /// Describes this proxy by its own node when the config names no workload for it
    /// (telemetry labels and the `x-mesh-peer` header).
    #[must_use]
    pub fn with_node(mut self, node: &mesh_api::model::Node) -> Self {
        self.unlisted = Some(PeerMeta::of_node(node));
        self
    }

    /// A receiver that is marked changed after every config update (not on the request
    /// path: for tasks that reconcile with the config, like the gateway's listeners).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// The proxy's identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The current snapshot, if a config has arrived. Lock-free.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Builds a snapshot from `config` and makes it current.
    pub fn update(&self, config: Arc<ProxyConfig>) {
        let snapshot = self.build(config);
        self.current.store(Some(Arc::new(snapshot)));
        self.gc();
        self.updates.send_modify(|n| *n += 1);
    }

    fn build(&self, config: Arc<ProxyConfig>) -> Snapshot {
        let mut clusters = HashMap::new();
        let spec = config.spec();
        for cluster in &spec.clusters {
            if let Some(rt) = self.cluster_rt(&config, cluster.clone()) {
                clusters.insert(cluster.key.clone(), Arc::new(rt));
            }
        }
        for svc in &spec.services {
            for port in &svc.ports {
                let key = ClusterKey::new(svc.hostname.clone(), port.port);
                if clusters.contains_key(&key) {
                    continue;
                }
                let cluster = default_cluster(key.clone());
                if let Some(rt) = self.cluster_rt(&config, cluster) {
                    clusters.insert(key, Arc::new(rt));
                }
            }
        }
        let local = match (config.workload(), &self.unlisted) {
            (Some(w), _) => PeerMeta::of(w),
            (None, Some(me)) => PeerMeta {
                principal: config.identity().as_str().into(),
                ..me.clone()
            },
            (None, None) => PeerMeta {
                principal: config.identity().as_str().into(),
                ..PeerMeta::default()
            },
        };
        let local_header = crate::http::value_of(&local.header_value());
        let authz = crate::authz::Authorizer::new(config.authorization_policies());
        Snapshot {
            config,
            clusters,
            local,
            local_header,
            authz,
            built_at: Instant::now(),
        }
    }

    fn cluster_rt(&self, config: &ProxyConfig, cluster: Cluster) -> Option<ClusterRt> {
        let svc: &Service = config.service(&cluster.key.hostname)?;
        let port = svc.port(cluster.key.port)?;
        let connect_timeout = cluster.connection_pool.connect_timeout;
        let members = config
            .cluster_endpoints(&cluster)
            .map(|ep| {
                let target_port = ep
                    .ports
                    .get(&port.port)
                    .copied()
                    .unwrap_or(port.target_port);
                let ip = ep.workload.address;
                let target = SocketAddr::new(ip, target_port);
                let mtls = match cluster.tls {
                    TlsMode::Auto => ep.workload.in_mesh,
                    TlsMode::IstioMutual => true,
                    TlsMode::Disable => false,
                };
                let (dial, mesh) = if mtls {
                    let dial = SocketAddr::new(ip, self.mesh_port);
                    let conn = self.conn(dial, &ep.workload.identity, connect_timeout);
                    (dial, Some(conn))
                } else {
                    (target, None)
                };
                Member {
                    state: self.endpoint_state(dial),
                    weight: ep.weight.get(),
                    health: ep.workload.health,
                    meta: EndpointMeta {
                        peer: PeerMeta::of(&ep.workload),
                        target_port,
                        target,
                        mesh,
                    },
                }
            })
            .collect();
        let balancer = Balancer::new(
            cluster.load_balancer,
            cluster.outlier_detection.clone(),
            members,
        );
        Some(ClusterRt {
            service: svc.hostname.as_str().into(),
            service_name: svc.name.name.as_str().into(),
            service_header: crate::http::value_of(svc.hostname.as_str()),
            protocol: port.protocol,
            cluster,
            balancer,
            in_flight: AtomicU32::new(0),
        })
    }

    fn endpoint_state(&self, addr: SocketAddr) -> Arc<EndpointState> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = map.get(&addr).and_then(Weak::upgrade) {
            return state;
        }
        let state = EndpointState::new(addr);
        map.insert(addr, Arc::downgrade(&state));
        state
    }

    /// The shared connection to the peer proxy at `addr` whose identity must be `peer`.
    /// Keyed by both, so an address reused by another workload gets a new connection.
    fn conn(&self, addr: SocketAddr, peer: &SpiffeId, connect_timeout: Duration) -> Arc<MeshConn> {
        let mut map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let key = (addr, peer.clone());
        if let Some(conn) = map.get(&key).and_then(Weak::upgrade) {
            return conn;
        }
        let tls = self.identity.client_for(Expected::Exactly(peer.clone()));
        let conn = Arc::new(MeshConn::new(addr, peer, tls, connect_timeout));
        map.insert(key, Arc::downgrade(&conn));
        conn
    }

    /// Forgets registry entries no snapshot uses any more.
    fn gc(&self) {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, w| w.strong_count() > 0);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, w| w.strong_count() > 0);
    }
}

/// The cluster used when config has none for a service port: all endpoints, default
/// balancing and pool settings, no outlier detection.
pub fn default_cluster(key: ClusterKey) -> Cluster {
    Cluster {
        key,
        subset_labels: Default::default(),
        load_balancer: Default::default(),
        connection_pool: Default::default(),
        outlier_detection: None,
        tls: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlisted_proxy_describes_itself_by_its_node() {
        let node = mesh_api::model::Node {
            id: "router~10.0.0.9~mesh-ingressgateway-7f9c.mesh-system".into(),
            pod_name: "mesh-ingressgateway-7f9c".into(),
            namespace: "mesh-system".into(),
            ip: "10.0.0.9".parse().unwrap(),
            identity: SpiffeId::new("cluster.local", "mesh-system", "mesh-ingressgateway").unwrap(),
            labels: [
                ("app".to_owned(), "istio-ingressgateway".to_owned()),
                (
                    "app.kubernetes.io/name".to_owned(),
                    "mesh-ingressgateway".to_owned(),
                ),
                ("version".to_owned(), String::new()),
            ]
            .into(),
            mode: mesh_api::model::ProxyMode::Gateway,
            proxy_version: String::new(),
        };
        let me = PeerMeta::of_node(&node);
        assert_eq!(&*me.workload, "mesh-ingressgateway-7f9c");
        assert_eq!(&*me.namespace, "mesh-system");
        // The Kubernetes recommended label first, as the control plane derives it; an
        // empty label does not count.
        assert_eq!(&*me.app, "mesh-ingressgateway");
        assert_eq!(&*me.version, "latest");
        assert_eq!(
            &*me.principal,
            "spiffe://cluster.local/ns/mesh-system/sa/mesh-ingressgateway"
        );
        assert_eq!(
            me.header_value(),
            "mesh-system/mesh-ingressgateway-7f9c/mesh-ingressgateway/latest"
        );
    }
}
