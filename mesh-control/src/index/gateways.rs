//! Gateways and the VirtualServices bound to them → listeners of gateway-mode proxies.
//!
//! A `Gateway` (ours, Istio's shape) selects gateway proxies by label (in any namespace, as
//! Istio's default) and declares servers: a port and the hosts exposed on it. A
//! VirtualService binds to it with `gateways: [ns/name]` (or `[name]` in its own
//! namespace). For a gateway proxy, each HTTP server port of every Gateway selecting it
//! becomes one [`Listener`]; each bound VirtualService becomes a virtual host there, serving
//! the intersection of its hosts with the server's hosts (`*`, `*.example.com`, and
//! `ns/host` which only admits VirtualServices from `ns`; `*/` and `./` mean any and the
//! Gateway's own namespace).
//!
//! The listener binds the target port of the gateway Service's port (a server on 80 behind
//! `mesh-ingressgateway`'s 80→8080 is bound on 8080): the Services whose endpoints include
//! the proxy's own workload decide.
//!
//! Not yet translated (reported by [`Index::warnings`](super::Index::warnings)): HTTPS,
//! TLS and TCP servers, `bind`, and a VirtualService's `tcp`/`tls` routes at gateways. Of
//! two virtual hosts claiming one host on one port, the first by VirtualService namespace
//! and name keeps it.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::{
    config::{Gateway, VirtualService},
    model::{HttpRoute, Listener, Node, ProxyMode, RouteTable, Workload},
};

use super::{
    hosts::{Cx, Resolver, ResourceRef, selects, valid_hostname},
    routes::{self, SubsetNames},
    services::ServiceRecord,
};

/// A translated Gateway.
#[derive(Debug, Clone)]
pub(super) struct GatewayRecord {
    pub(super) selector: BTreeMap<String, String>,
    /// The HTTP servers.
    pub(super) servers: Vec<ServerRecord>,
}

/// One HTTP server of a Gateway.
#[derive(Debug, Clone)]
pub(super) struct ServerRecord {
    pub(super) port: u16,
    /// `(namespace filter, host)`; `None` admits VirtualServices from any namespace.
    pub(super) hosts: Vec<(Option<String>, String)>,
}

/// A VirtualService's routes at one Gateway, per server port.
#[derive(Debug, Clone)]
pub(super) struct GatewayRoutes {
    pub(super) origin: ResourceRef,
    /// The VirtualService's hosts, lower-case.
    pub(super) hosts: Vec<String>,
    /// Per server port, the translated `http` routes.
    pub(super) tables: BTreeMap<u16, Vec<HttpRoute>>,
}

/// Translates a Gateway; servers that cannot be served yet are reported and skipped.
pub(super) fn translate(cx: &mut Cx<'_>, gw: &Gateway) -> GatewayRecord {
    let ns = cx.namespace().to_owned();
    let mut servers = Vec::new();
    for (i, s) in gw.spec.servers.iter().enumerate() {
        let what = format!("servers[{i}]");
        let protocol = s.port.protocol.to_ascii_uppercase();
        if !matches!(protocol.as_str(), "HTTP" | "HTTP2" | "GRPC") {
            cx.warn(format!(
                "{what}: protocol {} is not served by gateways yet (only HTTP, HTTP2 and GRPC); server skipped",
                s.port.protocol
            ));
            continue;
        }
        let Some(port) = cx.port(&format!("{what}.port.number"), i64::from(s.port.number)) else {
            continue;
        };
        if s.bind.is_some() {
            cx.warn(format!(
                "{what}.bind is not supported; the server listens on every address"
            ));
        }
        let mut hosts = Vec::new();
        for h in &s.hosts {
            let (filter, host) = match h.split_once('/') {
                Some(("*", host)) => (None, host),
                Some((".", host)) => (Some(ns.clone()), host),
                Some((n, host)) => (Some(n.to_owned()), host),
                None => (None, h.as_str()),
            };
            let host = host.to_ascii_lowercase();
            if !valid_hostname(&host, true) {
                cx.warn(format!("{what}.hosts: {h:?} is not a host name; ignored"));
                continue;
            }
            hosts.push((filter, host));
        }
        servers.push(ServerRecord { port, hosts });
    }
    GatewayRecord {
        selector: gw.spec.selector.clone(),
        servers,
    }
}

/// Translates a VirtualService bound to Gateways: its routes per bound Gateway (by
/// `(namespace, name)`) and server port. Sidecar bindings (`mesh`) are `routes`' business.
pub(super) fn translate_virtual_service(
    cx: &mut Cx<'_>,
    vs: &VirtualService,
    gateways: &BTreeMap<(String, String), GatewayRecord>,
    resolver: &Resolver<'_>,
    subsets: &SubsetNames,
) -> Vec<((String, String), GatewayRoutes)> {
    let ns = cx.namespace().to_owned();
    let mut hosts = Vec::new();
    for h in &vs.spec.hosts {
        let host = h.to_ascii_lowercase();
        if valid_hostname(&host, true) {
            hosts.push(host);
        } else {
            cx.warn(format!(
                "host {h:?} is not a host name; ignored at gateways"
            ));
        }
    }
    let refs: BTreeSet<(String, String)> = vs
        .spec
        .gateways
        .iter()
        .filter_map(|g| routes::gateway_ref(g, &ns))
        .collect();
    if !vs.spec.tcp.is_empty() && !refs.is_empty() {
        cx.warn("tcp routes are not served by gateways yet; ignored there");
    }
    let mut out = Vec::new();
    for gw_ref in refs {
        let Some(gw) = gateways.get(&gw_ref) else {
            cx.warn(format!(
                "gateway {}/{} does not exist (or has no HTTP server); binding ignored",
                gw_ref.0, gw_ref.1
            ));
            continue;
        };
        let ports: BTreeSet<u16> = gw.servers.iter().map(|s| s.port).collect();
        let tables = ports
            .into_iter()
            .map(|port| {
                let http = routes::translate_for_gateway(cx, vs, resolver, subsets, &gw_ref, port);
                (port, http)
            })
            .filter(|(_, http)| !http.is_empty())
            .collect();
        out.push((
            gw_ref,
            GatewayRoutes {
                origin: cx.origin.clone(),
                hosts: hosts.clone(),
                tables,
            },
        ));
    }
    out
}

/// The listeners of the gateway proxy `node` (none for sidecars): every HTTP server of
/// the Gateways selecting `labels`, with the virtual hosts bound there.
pub(super) fn listeners(
    gateways: &BTreeMap<(String, String), GatewayRecord>,
    bound: &BTreeMap<(String, String), Vec<GatewayRoutes>>,
    services: &BTreeMap<String, Vec<ServiceRecord>>,
    node: &Node,
    labels: &BTreeMap<String, String>,
    workload: Option<&Workload>,
) -> Vec<Listener> {
    if node.mode != ProxyMode::Gateway {
        return Vec::new();
    }
    // Server port → virtual host name → (hosts, routes).
    type Hosts = BTreeMap<String, (BTreeSet<String>, Vec<HttpRoute>)>;
    let mut ports: BTreeMap<u16, Hosts> = BTreeMap::new();
    for (key, gw) in gateways {
        if !selects(&gw.selector, labels) {
            continue;
        }
        let routes = bound.get(key).map(Vec::as_slice).unwrap_or_default();
        for server in &gw.servers {
            let vhosts = ports.entry(server.port).or_default();
            for r in routes {
                let Some(http) = r.tables.get(&server.port) else {
                    continue;
                };
                let hosts: BTreeSet<String> = r
                    .hosts
                    .iter()
                    .flat_map(|h| {
                        server
                            .hosts
                            .iter()
                            .filter(|(ns, _)| ns.as_ref().is_none_or(|n| *n == r.origin.namespace))
                            .filter_map(move |(_, s)| intersect(h, s))
                    })
                    .collect();
                if hosts.is_empty() {
                    continue;
                }
                let name = format!("{}/{}:{}", r.origin.namespace, r.origin.name, server.port);
                vhosts
                    .entry(name)
                    .or_insert_with(|| (BTreeSet::new(), http.clone()))
                    .0
                    .extend(hosts);
            }
        }
    }
    ports
        .into_iter()
        .map(|(port, vhosts)| {
            let mut claimed = BTreeSet::new();
            let virtual_hosts = vhosts
                .into_iter()
                .filter_map(|(name, (hosts, http))| {
                    let hostnames: Vec<String> = hosts
                        .into_iter()
                        .filter(|h| claimed.insert(h.clone()))
                        .collect();
                    (!hostnames.is_empty()).then_some(RouteTable {
                        name,
                        hostnames,
                        port,
                        http,
                        tcp: Vec::new(),
                    })
                })
                .collect();
            let bind = bind_port(services, workload, &node.namespace, port);
            Listener {
                name: Listener::name_for(port),
                port,
                bind_port: bind.filter(|b| *b != port),
                virtual_hosts,
            }
        })
        .collect()
}

/// The port a server port is bound on: the target port of a Service in the gateway's
/// namespace exposing `port` with the gateway's workload among its endpoints.
fn bind_port(
    services: &BTreeMap<String, Vec<ServiceRecord>>,
    workload: Option<&Workload>,
    ns: &str,
    port: u16,
) -> Option<u16> {
    let w = workload?;
    services
        .values()
        .flatten()
        .filter(|rec| rec.origin.namespace == ns)
        .find_map(|rec| {
            let ep = rec.endpoints.iter().find(|e| e.workload.uid == w.uid)?;
            let p = rec.service.port(port)?;
            Some(ep.target_port(p.port, p.target_port))
        })
}

/// The hosts both a VirtualService host `vs` and a server host `server` cover: the more
/// specific of the two when one covers the other.
fn intersect(vs: &str, server: &str) -> Option<String> {
    let covers = |wide: &str, narrow: &str| match wide.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => narrow.len() > suffix.len() && narrow.ends_with(suffix),
        None => wide == narrow,
    };
    if covers(server, vs) {
        Some(vs.to_owned())
    } else if covers(vs, server) {
        Some(server.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::intersect;

    #[test]
    fn host_intersection_is_the_more_specific_host() {
        assert_eq!(
            intersect("shop.example.com", "*").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            intersect("*", "shop.example.com").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            intersect("shop.example.com", "*.example.com").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            intersect("*.example.com", "*.shop.example.com").as_deref(),
            Some("*.shop.example.com")
        );
        assert_eq!(intersect("shop.example.com", "shop.example.org"), None);
        assert_eq!(intersect("example.com", "*.example.com"), None);
    }
}
