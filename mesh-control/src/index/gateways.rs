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
//! An `HTTPS` server with `tls: {mode: SIMPLE, credentialName: NAME}` becomes a listener
//! with [`ListenerTls`]: the gateway terminates TLS with credential NAME (for SNI names in
//! the server's hosts) and routes as for HTTP. Only the name is sent: the gateway reads
//! the certificate and key itself (`mesh-proxy gateway --credentials-dir`, where Kubernetes
//! mounts the `kubernetes.io/tls` Secrets of its namespace), so neither mesh-control nor
//! the discovery stream ever holds a private key. Whether the credential exists is the
//! gateway's to report. Several HTTPS servers on one port (of one Gateway or several) give
//! one listener with one certificate per credential; a port is either HTTP or HTTPS, the
//! first Gateway by namespace and name deciding (a Gateway mixing both on one port is
//! reported and its later servers there skipped).
//!
//! Gateway API `Gateway`s (`gateway.networking.k8s.io/v1`) of `gatewayClassName: mesh`
//! ([`MESH_GATEWAY_CLASS`]) are served by the same gateway proxies: by convention they
//! select the pods labelled `mesh: ingressgateway` ([`KUBE_GATEWAY_SELECTOR`], the label of
//! `mesh-ingressgateway`), and each of their listeners is a server as above: `HTTP`, or
//! `HTTPS` terminating TLS (`tls.mode: Terminate`, the default) with its first
//! `certificateRefs` Secret as the credential, its `hostname` (default `*`) as the hosts, and
//! `allowedRoutes.namespaces.from` (`Same` by default, or `All`) deciding which routes may
//! attach. HTTPRoutes and GRPCRoutes with `parentRefs` to such a Gateway (optionally
//! narrowed by `sectionName` or `port`) become virtual hosts on the intersection of their
//! `hostnames` (all when empty) and the listener's ([`super::gateway_api`] translates
//! their rules). Gateways of other classes are not ours and are left alone.
//!
//! Not yet translated (reported by [`Index::warnings`](super::Index::warnings)): TLS and
//! TCP servers, HTTPS servers in modes other than `SIMPLE` (`PASSTHROUGH`, `MUTUAL`,
//! `ISTIO_MUTUAL`), `minProtocolVersion`, `bind`, and a VirtualService's `tcp`/`tls` routes at
//! gateways. Of two virtual hosts claiming one host on one port, the first by
//! VirtualService namespace and name keeps it.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::gateways::{
    GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersTlsMode,
};
use mesh_api::{
    config::{
        Gateway, KubeGateway, ResourceKind, VirtualService,
        networking::{Server, ServerTlsMode},
    },
    model::{
        HttpRoute, Listener, ListenerTls, Node, ProxyMode, RouteTable, ServerCertificate, Workload,
    },
};

use super::{
    hosts::{Cx, Resolver, ResourceRef, selects, valid_hostname},
    routes::{self, SubsetNames},
    services::ServiceRecord,
};

/// The `gatewayClassName` of the Gateway API Gateways this mesh serves.
pub(super) const MESH_GATEWAY_CLASS: &str = "mesh";

/// The labels of the gateway proxies a Gateway API Gateway of class `mesh` selects: those
/// of `mesh-ingressgateway`'s pods.
pub(super) const KUBE_GATEWAY_SELECTOR: (&str, &str) = ("mesh", "ingressgateway");

/// Gateways by `(namespace, name)`.
pub(super) type GatewayMap = BTreeMap<(String, String), GatewayRecord>;
/// The routes bound to each Gateway, by the Gateway's `(namespace, name)`.
pub(super) type BoundRoutes = BTreeMap<(String, String), Vec<GatewayRoutes>>;

/// A translated Gateway.
#[derive(Debug, Clone)]
pub(super) struct GatewayRecord {
    pub(super) selector: BTreeMap<String, String>,
    /// The HTTP and HTTPS servers.
    pub(super) servers: Vec<ServerRecord>,
}

/// One HTTP or HTTPS server of a Gateway.
#[derive(Debug, Clone)]
pub(super) struct ServerRecord {
    /// The server's (Gateway API: listener's) name, for `sectionName`.
    pub(super) name: Option<String>,
    pub(super) port: u16,
    /// HTTPS: the credential name TLS is terminated with; `None` for plain HTTP.
    pub(super) credential: Option<String>,
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
    /// Only the servers of these names (a Gateway API `sectionName`); `None`: all.
    pub(super) sections: Option<BTreeSet<String>>,
}

/// Translates a Gateway; servers that cannot be served yet are reported and skipped.
pub(super) fn translate(cx: &mut Cx<'_>, gw: &Gateway) -> GatewayRecord {
    let ns = cx.namespace().to_owned();
    let mut servers: Vec<ServerRecord> = Vec::new();
    for (i, s) in gw.spec.servers.iter().enumerate() {
        let what = format!("servers[{i}]");
        let protocol = s.port.protocol.to_ascii_uppercase();
        let credential = match protocol.as_str() {
            "HTTP" | "HTTP2" | "GRPC" => None,
            "HTTPS" => match terminated(s) {
                Ok(name) => Some(name),
                Err(why) => {
                    cx.warn(format!("{what}: {why}; server skipped"));
                    continue;
                }
            },
            _ => {
                cx.warn(format!(
                    "{what}: protocol {} is not served by gateways yet (only HTTP, HTTP2, GRPC and HTTPS with tls.mode SIMPLE); server skipped",
                    s.port.protocol
                ));
                continue;
            }
        };
        let Some(port) = cx.port(&format!("{what}.port.number"), i64::from(s.port.number)) else {
            continue;
        };
        if let Some(why) = mixed(&servers, port, credential.is_some()) {
            cx.warn(format!("{what}: {why}"));
            continue;
        }
        if let Some(v) = s.tls.as_ref().and_then(|t| t.min_protocol_version.as_ref()) {
            cx.warn(format!(
                "{what}.tls.minProtocolVersion {v} is not applied yet; the gateway offers TLS 1.2 and 1.3"
            ));
        }
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
        servers.push(ServerRecord {
            name: s.name.clone(),
            port,
            credential,
            hosts,
        });
    }
    GatewayRecord {
        selector: gw.spec.selector.clone(),
        servers,
    }
}

/// Why a server on `port` (HTTPS when `tls`) cannot join `servers`: the port is already
/// the other protocol's.
fn mixed(servers: &[ServerRecord], port: u16, tls: bool) -> Option<String> {
    let other = servers
        .iter()
        .find(|o| o.port == port && o.credential.is_some() != tls)?;
    let (this, that) = match other.credential {
        Some(_) => ("HTTP", "HTTPS"),
        None => ("HTTPS", "HTTP"),
    };
    Some(format!(
        "port {port} is already an {that} server here, so this {this} server is skipped (a port serves either HTTP or HTTPS; use another port)"
    ))
}

/// Translates a Gateway API Gateway: `None` unless its class is [`MESH_GATEWAY_CLASS`];
/// listeners that cannot be served yet are reported and skipped.
pub(super) fn translate_kube(cx: &mut Cx<'_>, gw: &KubeGateway) -> Option<GatewayRecord> {
    if gw.spec.gateway_class_name != MESH_GATEWAY_CLASS {
        return None;
    }
    let ns = cx.namespace().to_owned();
    let mut servers: Vec<ServerRecord> = Vec::new();
    for (i, l) in gw.spec.listeners.iter().enumerate() {
        let what = format!("listeners[{i}] ({})", l.name);
        let credential = match l.protocol.as_str() {
            "HTTP" => None,
            "HTTPS" => match certificate(l) {
                Ok(name) => Some(name),
                Err(why) => {
                    cx.warn(format!("{what}: {why}; listener skipped"));
                    continue;
                }
            },
            other => {
                cx.warn(format!(
                    "{what}: protocol {other} is not served by gateways yet (only HTTP and HTTPS); listener skipped"
                ));
                continue;
            }
        };
        let Some(port) = cx.port(&format!("{what}.port"), i64::from(l.port)) else {
            continue;
        };
        if let Some(why) = mixed(&servers, port, credential.is_some()) {
            cx.warn(format!("{what}: {why}"));
            continue;
        }
        let host = l.hostname.as_deref().unwrap_or("*").to_ascii_lowercase();
        if !valid_hostname(&host, true) {
            cx.warn(format!(
                "{what}.hostname: {host:?} is not a host name; listener skipped"
            ));
            continue;
        }
        let from = l
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .and_then(|n| n.from.as_ref());
        let filter = match from {
            Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => None,
            None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => Some(ns.clone()),
            Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
                cx.warn(format!(
                    "{what}.allowedRoutes.namespaces: from Selector is not supported yet; only routes in the Gateway's namespace attach"
                ));
                Some(ns.clone())
            }
        };
        servers.push(ServerRecord {
            name: Some(l.name.clone()),
            port,
            credential,
            hosts: vec![(filter, host)],
        });
    }
    Some(GatewayRecord {
        selector: BTreeMap::from([(
            KUBE_GATEWAY_SELECTOR.0.to_owned(),
            KUBE_GATEWAY_SELECTOR.1.to_owned(),
        )]),
        servers,
    })
}

/// The credential an HTTPS listener terminates TLS with, or why it cannot be served.
fn certificate(l: &GatewayListeners) -> Result<String, String> {
    let tls = l.tls.as_ref();
    if matches!(
        tls.and_then(|t| t.mode.as_ref()),
        Some(GatewayListenersTlsMode::Passthrough)
    ) {
        return Err("tls.mode Passthrough is not served by gateways yet (only Terminate)".into());
    }
    let refs = tls
        .and_then(|t| t.certificate_refs.as_deref())
        .unwrap_or_default();
    let Some(r) = refs.first() else {
        return Err(
            "an HTTPS listener needs tls.certificateRefs naming a kubernetes.io/tls Secret".into(),
        );
    };
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !matches!(group, "" | "core") || kind != "Secret" {
        return Err(format!(
            "tls.certificateRefs[0] is a {group}/{kind}; only Secrets are supported"
        ));
    }
    if r.name.is_empty() || r.name.contains(['/', '\\']) || r.name == "." || r.name == ".." {
        return Err(format!(
            "tls.certificateRefs[0]: {:?} is not a Secret name",
            r.name
        ));
    }
    Ok(r.name.clone())
}

/// The credential an HTTPS server terminates TLS with, or why it cannot be served.
fn terminated(s: &Server) -> Result<String, String> {
    let Some(tls) = &s.tls else {
        return Err(
            "an HTTPS server needs `tls: {mode: SIMPLE, credentialName: <secret>}`".to_owned(),
        );
    };
    match tls.mode {
        Some(ServerTlsMode::Simple) => {}
        None => {
            return Err(
                "tls.mode is unset, which means PASSTHROUGH (as in Istio), and passthrough is not served by gateways yet; set `mode: SIMPLE` to terminate TLS".to_owned(),
            );
        }
        Some(mode) => {
            let mode = match mode {
                ServerTlsMode::Passthrough => "PASSTHROUGH",
                ServerTlsMode::Mutual => "MUTUAL",
                ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
                ServerTlsMode::Simple => unreachable!("handled above"),
            };
            return Err(format!(
                "tls.mode {mode} is not served by gateways yet (only SIMPLE)"
            ));
        }
    }
    match tls.credential_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() && !name.contains(['/', '\\']) && name != ".." && name != "." => {
            Ok(name.to_owned())
        }
        Some(name) if !name.is_empty() => Err(format!(
            "tls.credentialName {name:?} is not a Secret name (no '/', '.' or '..')"
        )),
        _ => Err(
            "tls.credentialName is required with mode SIMPLE: the Secret (or local credential directory) holding tls.crt and tls.key".to_owned(),
        ),
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
                "gateway {}/{} does not exist (or has no HTTP or HTTPS server); binding ignored",
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
                sections: None,
            },
        ));
    }
    out
}

/// The listeners of the gateway proxy `node` (none for sidecars): every HTTP server of
/// the Gateways selecting `labels`, with the virtual hosts bound there.
pub(super) fn listeners(
    sources: &[(&GatewayMap, &BoundRoutes)],
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
    // Server port → (credential → SNI hosts, or `None` for plain HTTP; virtual hosts).
    type Port = (Option<BTreeMap<String, BTreeSet<String>>>, Hosts);
    let mut ports: BTreeMap<u16, Port> = BTreeMap::new();
    let gateways = sources.iter().flat_map(|(gateways, bound)| {
        gateways.iter().map(|(key, gw)| {
            let routes = bound.get(key).map(Vec::as_slice).unwrap_or_default();
            (gw, routes)
        })
    });
    for (gw, routes) in gateways {
        if !selects(&gw.selector, labels) {
            continue;
        }
        for server in &gw.servers {
            let (tls, vhosts) = ports.entry(server.port).or_insert_with(|| {
                (
                    server.credential.as_ref().map(|_| BTreeMap::new()),
                    Hosts::new(),
                )
            });
            match (tls, &server.credential) {
                (Some(certs), Some(name)) => certs
                    .entry(name.clone())
                    .or_default()
                    .extend(server.hosts.iter().map(|(_, h)| h.clone())),
                (None, None) => {}
                // The port's first server (by Gateway) decided HTTP or HTTPS.
                _ => continue,
            }
            for r in routes {
                let Some(http) = r.tables.get(&server.port) else {
                    continue;
                };
                if let Some(sections) = &r.sections
                    && !server.name.as_ref().is_some_and(|n| sections.contains(n))
                {
                    continue;
                }
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
                // VirtualServices keep their plain name; routes of other kinds are prefixed
                // so that same-named resources of two kinds never merge.
                let name = match r.origin.kind {
                    ResourceKind::VirtualService => {
                        format!("{}/{}:{}", r.origin.namespace, r.origin.name, server.port)
                    }
                    kind => format!(
                        "{}:{}/{}:{}",
                        kind.kind(),
                        r.origin.namespace,
                        r.origin.name,
                        server.port
                    ),
                };
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
        .map(|(port, (tls, vhosts))| {
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
                tls: tls.map(|certs| ListenerTls {
                    certificates: certs
                        .into_iter()
                        .map(|(credential_name, hosts)| ServerCertificate {
                            credential_name,
                            hosts: hosts.into_iter().collect(),
                        })
                        .collect(),
                }),
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
