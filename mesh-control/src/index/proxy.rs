//! One proxy's config, assembled from the derived tables: what its namespace can see, the
//! rules that win for it, and the policies that select its workload.
//!
//! - **Workload**: the known workload named by the node (namespace and pod name) *and*
//!   holding the node's identity; the node's identity is authenticated, its claims are
//!   not, so a proxy cannot pick up another service account's workload. Policies are
//!   selected by that workload's labels, or by the node's labels when it names none.
//! - **Services**: per host, the definition exported to the proxy's namespace with the
//!   highest priority (Kubernetes Services first, then one in the proxy's namespace, then
//!   by namespace and name); a virtual IP and port already taken is dropped from the
//!   later service (Kubernetes Services claim first, then by host name). Every such service comes with its endpoints and clusters.
//! - **Routes** (sidecars): per host, the first visible VirtualService; else the
//!   applicable GAMMA routes. Route tables answer to the FQDN, `<name>.<ns>`,
//!   `<name>.<ns>.svc`, the short name (same namespace only) and each IPv4 VIP. Gateway
//!   proxies get none: their routes come with their listeners.
//! - **Listeners** (gateways): the servers of the Gateways selecting the proxy's labels,
//!   with the VirtualServices bound to them (see `gateways`).
//! - **Security**: the inbound mTLS policy and authorization policies of the workload.
//!
//! Every list is sorted, so the same inputs give the same JSON.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use mesh_api::model::{
    EndpointSet, HttpRoute, Node, ProxyConfigSpec, ProxyMode, RouteTable, Service,
};

use super::{
    OwnConfig, ScopeConfig, Settings, clusters, gateway_api::RuleKey, gateways, security,
    services::ServiceRecord, state::State,
};

/// Assembles the config of the proxy `node` describes.
pub(super) fn build(settings: &Settings, state: &State, node: &Node) -> ProxyConfigSpec {
    let mut spec = ProxyConfigSpec::new(node.identity.clone());
    spec.mode = node.mode;
    let ScopeConfig {
        services,
        endpoints,
        clusters,
        routes,
    } = scope(settings, state, &node.namespace, node.mode);
    let OwnConfig {
        workload,
        inbound,
        authorization,
        listeners,
    } = own(settings, state, node);
    spec.workload = workload;
    spec.services = services;
    spec.endpoints = endpoints;
    spec.clusters = clusters;
    spec.routes = routes;
    spec.inbound = inbound;
    spec.authorization = authorization;
    spec.listeners = listeners;
    spec
}

/// The part of a proxy's config that depends only on its namespace and mode (shared by
/// every proxy of that scope).
pub(super) fn scope(settings: &Settings, state: &State, ns: &str, mode: ProxyMode) -> ScopeConfig {
    let mut out = ScopeConfig::default();
    // Per host, the visible definition that wins; VIP claims go to Kubernetes Services
    // first, then by host name.
    let mut visible: Vec<&ServiceRecord> = state
        .services
        .values()
        .filter_map(|records| {
            records
                .iter()
                .filter(|r| r.export.visible_to(ns))
                .min_by(|a, b| a.priority(ns).cmp(&b.priority(ns)))
        })
        .collect();
    visible.sort_by(|a, b| {
        (a.priority(ns).0, &a.service.hostname).cmp(&(b.priority(ns).0, &b.service.hostname))
    });
    let mut claimed: BTreeSet<(IpAddr, u16)> = BTreeSet::new();
    for rec in visible {
        let mut svc = rec.service.clone();
        svc.vips.retain(|vip| {
            svc.ports
                .iter()
                .all(|p| !claimed.contains(&(vip.to_canonical(), p.port)))
        });
        for vip in &svc.vips {
            for p in &svc.ports {
                claimed.insert((vip.to_canonical(), p.port));
            }
        }

        out.endpoints.push(EndpointSet {
            hostname: svc.hostname.clone(),
            endpoints: rec.endpoints.clone(),
        });
        let dr = clusters::select(&state.destination_rules, settings, ns, rec);
        out.clusters.extend(clusters::clusters(&svc, dr));
        if mode == ProxyMode::Sidecar {
            out.routes.extend(mesh_routes(state, ns, rec, &svc));
        }
        out.services.push(svc);
    }
    // Gateway proxies get no service route tables: their routes are their listeners'
    // virtual hosts (`own`).

    out.services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    out.endpoints.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    out.clusters.sort_by(|a, b| a.key.cmp(&b.key));
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    dedupe_route_hosts(&mut out.routes);
    out
}

/// The part of a proxy's config that is its own: its workload and the security policies
/// that select it.
pub(super) fn own(settings: &Settings, state: &State, node: &Node) -> OwnConfig {
    let ns = node.namespace.as_str();
    let workload = state
        .workload_names
        .get(&(ns.to_owned(), node.pod_name.clone()))
        .into_iter()
        .flatten()
        .filter_map(|uid| state.workloads.get(uid))
        .map(|w| &w.workload)
        .find(|w| w.identity == node.identity);
    let labels = workload.map_or(&node.labels, |w| &w.labels);
    let listeners = gateways::listeners(
        &[
            (&state.gateways, &state.gateway_routes),
            (&state.kube_gateways, &state.kube_gateway_routes),
        ],
        &state.services,
        node,
        labels,
        workload,
    );
    OwnConfig {
        listeners,
        workload: workload.cloned(),
        inbound: security::inbound_policy(
            &state.peer_authentications,
            &settings.root_namespace,
            ns,
            labels,
        ),
        authorization: security::authorization(
            &state.authorization_policies,
            &settings.root_namespace,
            ns,
            labels,
        ),
    }
}

/// The sidecar route tables of one visible service.
fn mesh_routes(state: &State, ns: &str, rec: &ServiceRecord, svc: &Service) -> Vec<RouteTable> {
    let hostname = &svc.hostname;
    let table = |port: u16, http: Vec<HttpRoute>, tcp| RouteTable {
        name: format!("{hostname}:{port}"),
        hostnames: route_hostnames(rec, svc, ns),
        port,
        http,
        tcp,
    };
    let vs = state
        .virtual_services
        .get(hostname)
        .and_then(|cands| cands.iter().find(|c| c.export.visible_to(ns)));
    if let Some(vs) = vs {
        return vs
            .tables
            .iter()
            .filter(|(port, _)| svc.port(**port).is_some())
            .map(|(port, r)| table(*port, r.http.clone(), r.tcp.clone()))
            .collect();
    }

    let Some(cands) = state.gamma_routes.get(hostname) else {
        return Vec::new();
    };
    // GAMMA: consumer routes (in the client's namespace) replace producer routes (in the
    // service's namespace) for that client.
    let svc_ns = rec.origin.namespace.as_str();
    let consumer: Vec<_> = cands
        .iter()
        .filter(|c| c.origin.namespace == ns && c.origin.namespace != svc_ns)
        .collect();
    let chosen = if consumer.is_empty() {
        cands
            .iter()
            .filter(|c| c.origin.namespace == svc_ns)
            .collect()
    } else {
        consumer
    };
    let mut per_port: BTreeMap<u16, Vec<&(RuleKey, HttpRoute)>> = BTreeMap::new();
    for c in chosen {
        for (port, rules) in &c.tables {
            per_port.entry(*port).or_default().extend(rules);
        }
    }
    per_port
        .into_iter()
        .filter(|(port, rules)| !rules.is_empty() && svc.port(*port).is_some())
        .map(|(port, mut rules)| {
            rules.sort_by(|a, b| a.0.cmp(&b.0));
            let http = rules.into_iter().map(|(_, r)| r.clone()).collect();
            table(port, http, Vec::new())
        })
        .collect()
}

/// The names a service's route tables answer to, FQDN first.
fn route_hostnames(rec: &ServiceRecord, svc: &Service, ns: &str) -> Vec<String> {
    let mut out = vec![svc.hostname.clone()];
    if rec.origin.namespace == ns
        && let Some(short) = &rec.short_name
    {
        out.push(short.clone());
    }
    out.extend(rec.aliases.iter().cloned());
    out.extend(
        svc.vips
            .iter()
            .filter(|v| v.is_ipv4())
            .map(ToString::to_string),
    );
    out
}

/// Makes every (port, host name) claimed by one table only: a table's first host name (its
/// service's FQDN) always wins over another table's alias, and between aliases the first
/// table by name wins.
fn dedupe_route_hosts(routes: &mut Vec<RouteTable>) {
    let primaries: BTreeSet<(u16, String)> = routes
        .iter()
        .filter_map(|r| r.hostnames.first().map(|h| (r.port, h.clone())))
        .collect();
    let mut seen = BTreeSet::new();
    routes.retain_mut(|r| {
        let Some(primary) = r.hostnames.first().cloned() else {
            return false;
        };
        if !seen.insert((r.port, primary)) {
            return false;
        }
        let aliases: Vec<String> = r.hostnames.drain(1..).collect();
        for h in aliases {
            let key = (r.port, h);
            if !primaries.contains(&key) && seen.insert(key.clone()) {
                r.hostnames.push(key.1);
            }
        }
        true
    });
}
