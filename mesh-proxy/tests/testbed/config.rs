//! The mesh config of a testbed scenario, as the domain model (`mesh_api::model`): workloads
//! for pods, services with VIPs outside the testbed subnet (capture resolves them), endpoint
//! sets, subset clusters and route tables — shared by every pod — and each pod's
//! [`ProxyConfigSpec`], whose `workload` is the pod itself.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use mesh_api::model::{
    AppProtocol, Cluster, ClusterKey, Endpoint, EndpointSet, Forward, HeaderMutations, HttpAction,
    HttpRoute, InboundPolicy, ProxyConfigSpec, RouteTable, Service, ServiceKind, ServiceName,
    ServicePort, WeightedBackend, Workload,
};
use mesh_api::spiffe::SpiffeId;
use mesh_testbed::Pod;

/// The namespace of every workload and service.
pub(crate) const NAMESPACE: &str = "default";

/// The fully-qualified host name of service `name`.
pub(crate) fn hostname(name: &str) -> String {
    format!("{name}.{NAMESPACE}.svc.cluster.local")
}

/// The workload of a meshed pod: named after the pod, labelled `app` and `version`, served
/// at the pod's address.
pub(crate) fn workload(pod: &Pod, app: &str, version: &str) -> Workload {
    Workload {
        uid: format!("uid-{}", pod.name()),
        name: pod.name().to_owned(),
        namespace: NAMESPACE.into(),
        address: IpAddr::V4(pod.ip()),
        identity: SpiffeId::new("cluster.local", NAMESPACE, app).expect("valid identity"),
        labels: [
            ("app".to_owned(), app.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]
        .into(),
        canonical_service: app.into(),
        canonical_revision: version.into(),
        locality: Default::default(),
        health: Default::default(),
        in_mesh: true,
    }
}

/// A cluster-IP service `name` at `vip`, one port (`port` → `target_port`) with `protocol`.
pub(crate) fn service(
    name: &str,
    vip: Ipv4Addr,
    port: u16,
    target_port: u16,
    protocol: AppProtocol,
) -> Service {
    Service {
        name: ServiceName::new(NAMESPACE, name),
        hostname: hostname(name),
        vips: vec![IpAddr::V4(vip)],
        ports: vec![ServicePort {
            port,
            target_port,
            name: String::new(),
            protocol,
        }],
        kind: ServiceKind::ClusterIp,
    }
}

/// A headless service `name` (no VIP: clients dial endpoint addresses), one port.
pub(crate) fn headless(name: &str, port: u16, target_port: u16, protocol: AppProtocol) -> Service {
    Service {
        name: ServiceName::new(NAMESPACE, name),
        hostname: hostname(name),
        vips: Vec::new(),
        ports: vec![ServicePort {
            port,
            target_port,
            name: String::new(),
            protocol,
        }],
        kind: ServiceKind::Headless,
    }
}

/// The endpoints of service `name`.
pub(crate) fn endpoints(name: &str, workloads: &[&Workload]) -> EndpointSet {
    EndpointSet {
        hostname: hostname(name),
        endpoints: workloads
            .iter()
            .map(|w| Endpoint {
                workload: (*w).clone(),
                ports: BTreeMap::new(),
                weight: NonZeroU32::MIN,
            })
            .collect(),
    }
}

/// The service port's default cluster (all endpoints, default balancing).
pub(crate) fn cluster(name: &str, port: u16) -> Cluster {
    mesh_proxy::state::default_cluster(ClusterKey::new(hostname(name), port))
}

/// The subset cluster of the endpoints labelled `version`.
pub(crate) fn subset(name: &str, port: u16, version: &str) -> Cluster {
    let mut c = mesh_proxy::state::default_cluster(
        ClusterKey::new(hostname(name), port).with_subset(version),
    );
    c.subset_labels = [("version".to_owned(), version.to_owned())].into();
    c
}

/// Forwarding to weighted clusters, nothing else configured.
pub(crate) fn forward(backends: Vec<(ClusterKey, u32)>) -> Forward {
    Forward {
        backends: backends
            .into_iter()
            .map(|(cluster, weight)| WeightedBackend { cluster, weight })
            .collect(),
        timeout: None,
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        rewrite: None,
        request_headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
    }
}

/// Forwarding to the service port's default cluster.
pub(crate) fn forward_all(name: &str, port: u16) -> Forward {
    forward(vec![(ClusterKey::new(hostname(name), port), 1)])
}

/// A route table for service `name` on `port` with one catch-all route.
pub(crate) fn route(name: &str, port: u16, fwd: Forward) -> RouteTable {
    RouteTable {
        name: format!("{name}:{port}"),
        hostnames: vec![hostname(name), name.to_owned()],
        port,
        http: vec![HttpRoute {
            name: "all".into(),
            matches: Vec::new(),
            action: HttpAction::Forward(fwd),
        }],
        tcp: Vec::new(),
    }
}

/// A weighted split over the version subsets of service `name` on `port`.
pub(crate) fn split(name: &str, port: u16, weights: &[(&str, u32)]) -> RouteTable {
    let backends = weights
        .iter()
        .map(|(version, w)| {
            (
                ClusterKey::new(hostname(name), port).with_subset(*version),
                *w,
            )
        })
        .collect();
    route(name, port, forward(backends))
}

/// What every proxy of a scenario knows: services, endpoints, routes and clusters.
#[derive(Clone, Debug, Default)]
pub(crate) struct Topology {
    /// Services.
    pub(crate) services: Vec<Service>,
    /// Their endpoints.
    pub(crate) endpoints: Vec<EndpointSet>,
    /// Route tables.
    pub(crate) routes: Vec<RouteTable>,
    /// Clusters (default and subset).
    pub(crate) clusters: Vec<Cluster>,
}

impl Topology {
    /// The config of the proxy in front of workload `me`.
    pub(crate) fn spec_for(&self, me: &Workload) -> ProxyConfigSpec {
        let mut spec = ProxyConfigSpec::new(me.identity.clone());
        spec.version = format!("testbed-{}", me.name);
        spec.workload = Some(me.clone());
        spec.services = self.services.clone();
        spec.endpoints = self.endpoints.clone();
        spec.routes = self.routes.clone();
        spec.clusters = self.clusters.clone();
        spec.inbound = InboundPolicy::default();
        spec
    }
}
