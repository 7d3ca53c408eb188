//! Gateway API HTTPRoutes and GRPCRoutes attached to Services (GAMMA mesh routing) →
//! route tables for sidecars.
//!
//! A route whose `parentRefs` name a Service (`kind: Service`, core group) routes that
//! service's HTTP (and undeclared) ports, or only the parent's `port` / `sectionName`.
//! As GAMMA specifies, a route in the service's namespace (a *producer* route) applies to
//! every client, and a route in another namespace (a *consumer* route) only to clients in
//! its own namespace, where it replaces the producer routes.
//!
//! Routes attached to Gateway API Gateways of class `mesh` are for gateway proxies:
//! [`translate_http_at_gateways`] and [`translate_grpc_at_gateways`] translate their rules
//! per listener port the same way, into [`GatewayRoutes`] that
//! [`super::gateways::listeners`] turns into virtual hosts.
//!
//! The rules of all routes that apply are merged and ordered by Gateway API precedence:
//! exact path, then longest path prefix, then regex; then method; then most header
//! matches; then most query matches; then route (namespace, name) and rule order. Each
//! match becomes its own model route, so the order holds across rules.
//!
//! Mapping: `PathPrefix` is path-element-wise (`/foo` matches `/foo` and `/foo/x`, not
//! `/foobar`), so it becomes an exact match and a `/foo/` prefix match. `backendRefs` →
//! weighted clusters (weights are relative, default 1; no usable backend or all weights
//! zero → a 500, as the spec requires). `timeouts.request` → the route timeout (`0s`:
//! none). Filters: RequestHeaderModifier, ResponseHeaderModifier, URLRewrite,
//! RequestRedirect (status default 302) and RequestMirror map to the model; CORS is
//! ignored with a warning; ExtensionRef answers 500 (the spec forbids skipping it).
//! Backend-level filters are honoured (header modifiers only) when a rule has a single
//! backend.

use std::{cmp::Reverse, collections::BTreeMap, time::Duration};

use mesh_api::{
    config::{GrpcRoute, HttpRoute as KubeHttpRoute},
    model::{
        AppProtocol, ClusterKey, DirectResponse, Forward, HeaderMatch, HeaderMutations, HttpAction,
        HttpMatch, HttpRoute, Mirror, Percent, QueryParamMatch, Redirect, Rewrite, StringMatch,
        WeightedBackend,
    },
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    gateways::{GatewayMap, GatewayRoutes},
    hosts::{Cx, Resolver, ResourceRef, regex, valid_header_name, valid_hostname},
    routes::{clamp_weight, destination_key, mutable_header},
};

/// One route's rules for one service host, per port, each with its precedence key.
#[derive(Debug, Clone)]
pub(super) struct GammaCandidate {
    pub(super) origin: ResourceRef,
    pub(super) tables: BTreeMap<u16, Vec<(RuleKey, HttpRoute)>>,
}

/// Gateway API rule precedence; smaller sorts (and matches) first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RuleKey {
    path_kind: u8,
    path_len: Reverse<usize>,
    no_method: bool,
    headers: Reverse<usize>,
    query_params: Reverse<usize>,
    origin: ResourceRef,
    rule: usize,
    matched: usize,
    variant: usize,
}

// === Common shapes (HTTPRoute and GRPCRoute share them; read through serde) ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParentRef {
    group: Option<String>,
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    port: Option<i64>,
    section_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendRef {
    group: Option<String>,
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    port: Option<i64>,
    weight: Option<i64>,
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(rename = "type")]
    kind: String,
    request_header_modifier: Option<HeaderModifier>,
    response_header_modifier: Option<HeaderModifier>,
    url_rewrite: Option<UrlRewrite>,
    request_redirect: Option<RequestRedirect>,
    request_mirror: Option<RequestMirror>,
}

#[derive(Debug, Default, Deserialize)]
struct HeaderModifier {
    #[serde(default)]
    set: Vec<NameValue>,
    #[serde(default)]
    add: Vec<NameValue>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct UrlRewrite {
    hostname: Option<String>,
    path: Option<PathModifier>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathModifier {
    #[serde(rename = "type")]
    kind: String,
    replace_full_path: Option<String>,
    replace_prefix_match: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestRedirect {
    scheme: Option<String>,
    hostname: Option<String>,
    path: Option<PathModifier>,
    port: Option<i64>,
    status_code: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMirror {
    backend_ref: BackendRef,
    percent: Option<i64>,
    fraction: Option<Fraction>,
}

#[derive(Debug, Deserialize)]
struct Fraction {
    numerator: i64,
    denominator: Option<i64>,
}

fn reshape<T: Serialize, U: DeserializeOwned>(t: &T) -> Result<U, String> {
    serde_json::to_value(t)
        .and_then(serde_json::from_value)
        .map_err(|e| e.to_string())
}

fn reshape_all<T: Serialize, U: DeserializeOwned>(
    cx: &mut Cx<'_>,
    items: Option<&Vec<T>>,
    what: &str,
) -> Vec<U> {
    let mut out = Vec::new();
    for (i, t) in items.into_iter().flatten().enumerate() {
        match reshape(t) {
            Ok(u) => out.push(u),
            Err(e) => cx.warn(format!("{what}[{i}]: {e}; skipped")),
        }
    }
    out
}

// === Translation ===

/// A rule in the shape both route kinds share, before matches are applied.
struct Rule {
    name: String,
    filters: Vec<Filter>,
    backends: Vec<BackendRef>,
    timeout: Option<Duration>,
}

/// How a path match was expanded, for rewrites that depend on it.
#[derive(Debug, Clone, PartialEq)]
enum PathVariant {
    /// No path condition.
    None,
    /// `PathPrefix: /`.
    Root,
    /// An exact path (also the `/foo` half of `PathPrefix: /foo`).
    Exact,
    /// The `/foo/` half of `PathPrefix: /foo` (the prefix without its slash).
    Dir(String),
    /// A regex.
    Regex,
}

/// Translates an HTTPRoute: one candidate per Service host it attaches to.
pub(super) fn translate_http(
    cx: &mut Cx<'_>,
    route: &KubeHttpRoute,
    resolver: &Resolver<'_>,
) -> Vec<(String, GammaCandidate)> {
    let parents: Vec<ParentRef> = reshape_all(cx, route.spec.parent_refs.as_ref(), "parentRefs");
    if !parents.iter().any(ParentRef::is_service) {
        return Vec::new();
    }
    let rules = http_rules(cx, route);
    attach(cx, resolver, &parents, &rules)
}

/// Translates an HTTPRoute attached to Gateways: its routes per Gateway (by `(namespace,
/// name)`, among `gateways`) and listener port.
pub(super) fn translate_http_at_gateways(
    cx: &mut Cx<'_>,
    route: &KubeHttpRoute,
    resolver: &Resolver<'_>,
    gateways: &GatewayMap,
) -> Vec<((String, String), GatewayRoutes)> {
    let parents: Vec<ParentRef> = reshape_all(cx, route.spec.parent_refs.as_ref(), "parentRefs");
    if !parents.iter().any(ParentRef::is_gateway) {
        return Vec::new();
    }
    let rules = http_rules(cx, route);
    let hostnames = route.spec.hostnames.as_deref().unwrap_or_default();
    at_gateways(cx, resolver, &parents, &rules, hostnames, gateways)
}

/// Translates a GRPCRoute attached to Gateways, as [`translate_http_at_gateways`].
pub(super) fn translate_grpc_at_gateways(
    cx: &mut Cx<'_>,
    route: &GrpcRoute,
    resolver: &Resolver<'_>,
    gateways: &GatewayMap,
) -> Vec<((String, String), GatewayRoutes)> {
    let parents: Vec<ParentRef> = reshape_all(cx, route.spec.parent_refs.as_ref(), "parentRefs");
    if !parents.iter().any(ParentRef::is_gateway) {
        return Vec::new();
    }
    let rules = grpc_rules(cx, route);
    let hostnames = route.spec.hostnames.as_deref().unwrap_or_default();
    at_gateways(cx, resolver, &parents, &rules, hostnames, gateways)
}

/// An HTTPRoute's rules with their matches.
fn http_rules(
    cx: &mut Cx<'_>,
    route: &KubeHttpRoute,
) -> Vec<(Rule, Vec<Result<MatchVariants, String>>)> {
    let spec = &route.spec;
    let mut rules = Vec::new();
    for (ri, r) in spec.rules.iter().flatten().enumerate() {
        let what = format!("rules[{ri}]");
        let mut timeout = r
            .timeouts
            .as_ref()
            .and_then(|t| t.request.as_deref())
            .and_then(|t| cx.duration(&format!("{what}.timeouts.request"), t));
        if timeout.is_none()
            && let Some(t) = r
                .timeouts
                .as_ref()
                .and_then(|t| t.backend_request.as_deref())
        {
            cx.warn(format!(
                "{what}.timeouts.backendRequest: applied as the request timeout (no per-try timeouts without retries)"
            ));
            timeout = cx.duration(&format!("{what}.timeouts.backendRequest"), t);
        }
        let matches: Vec<_> = match &r.matches {
            Some(m) if !m.is_empty() => m.iter().map(http_match).collect(),
            _ => vec![http_match(&Default::default())],
        };
        rules.push((
            Rule {
                name: r.name.clone().unwrap_or_else(|| cx.origin.name.clone()),
                filters: reshape_all(cx, r.filters.as_ref(), &format!("{what}.filters")),
                backends: reshape_all(cx, r.backend_refs.as_ref(), &format!("{what}.backendRefs")),
                timeout: timeout.filter(|d| !d.is_zero()),
            },
            matches,
        ));
    }
    rules
}

/// Translates a GRPCRoute: one candidate per Service host it attaches to.
pub(super) fn translate_grpc(
    cx: &mut Cx<'_>,
    route: &GrpcRoute,
    resolver: &Resolver<'_>,
) -> Vec<(String, GammaCandidate)> {
    let parents: Vec<ParentRef> = reshape_all(cx, route.spec.parent_refs.as_ref(), "parentRefs");
    if !parents.iter().any(ParentRef::is_service) {
        return Vec::new();
    }
    let rules = grpc_rules(cx, route);
    attach(cx, resolver, &parents, &rules)
}

/// A GRPCRoute's rules with their matches.
fn grpc_rules(
    cx: &mut Cx<'_>,
    route: &GrpcRoute,
) -> Vec<(Rule, Vec<Result<MatchVariants, String>>)> {
    let spec = &route.spec;
    let mut rules = Vec::new();
    for (ri, r) in spec.rules.iter().flatten().enumerate() {
        let what = format!("rules[{ri}]");
        let matches: Vec<_> = match &r.matches {
            Some(m) if !m.is_empty() => m.iter().map(grpc_match).collect(),
            _ => vec![Ok(MatchVariants {
                key: (3, 0, false, 0, 0),
                variants: vec![(HttpMatch::default(), PathVariant::None)],
            })],
        };
        rules.push((
            Rule {
                name: r.name.clone().unwrap_or_else(|| cx.origin.name.clone()),
                filters: reshape_all(cx, r.filters.as_ref(), &format!("{what}.filters")),
                backends: reshape_all(cx, r.backend_refs.as_ref(), &format!("{what}.backendRefs")),
                timeout: None,
            },
            matches,
        ));
    }
    rules
}

// === impl ParentRef ===

impl ParentRef {
    /// Whether the parent is a Gateway API Gateway (the default kind).
    fn is_gateway(&self) -> bool {
        self.group.as_deref().unwrap_or("gateway.networking.k8s.io") == "gateway.networking.k8s.io"
            && self.kind.as_deref().unwrap_or("Gateway") == "Gateway"
    }

    /// Whether the parent is something other than a Gateway: a Service (GAMMA), or an
    /// unsupported kind `attach` reports.
    fn is_service(&self) -> bool {
        !self.is_gateway()
    }
}

/// The routes of `rules` at the Gateways `parents` names, per listener port, in
/// precedence order. Parents not in `gateways` (other classes) are left alone; a
/// `sectionName` or `port` that matches no listener of ours is reported.
fn at_gateways(
    cx: &mut Cx<'_>,
    resolver: &Resolver<'_>,
    parents: &[ParentRef],
    rules: &[(Rule, Vec<Result<MatchVariants, String>>)],
    hostnames: &[String],
    gateways: &GatewayMap,
) -> Vec<((String, String), GatewayRoutes)> {
    let mut hosts = Vec::new();
    for h in hostnames {
        let host = h.to_ascii_lowercase();
        if valid_hostname(&host, true) {
            hosts.push(host);
        } else {
            cx.warn(format!("hostnames: {h:?} is not a host name; ignored"));
        }
    }
    if hosts.is_empty() {
        if !hostnames.is_empty() {
            return Vec::new();
        }
        hosts.push("*".to_owned());
    }
    let mut out: BTreeMap<(String, String), GatewayRoutes> = BTreeMap::new();
    for (pi, parent) in parents.iter().enumerate() {
        if !parent.is_gateway() {
            continue;
        }
        let what = format!("parentRefs[{pi}]");
        let ns = parent
            .namespace
            .as_deref()
            .unwrap_or(cx.namespace())
            .to_owned();
        let key = (ns, parent.name.clone());
        let Some(gw) = gateways.get(&key) else {
            // Not a Gateway of class `mesh` (or none we know): another controller's
            // business, so no warning.
            continue;
        };
        let servers: Vec<_> = gw
            .servers
            .iter()
            .filter(|s| {
                parent
                    .section_name
                    .as_ref()
                    .is_none_or(|n| s.name.as_ref() == Some(n))
                    && parent.port.is_none_or(|p| i64::from(s.port) == p)
            })
            .collect();
        if servers.is_empty() {
            cx.warn(format!(
                "{what}: Gateway {}/{} has no listener{}{}; ignored",
                key.0,
                key.1,
                parent
                    .section_name
                    .as_ref()
                    .map(|n| format!(" named {n:?}"))
                    .unwrap_or_default(),
                parent
                    .port
                    .map(|p| format!(" on port {p}"))
                    .unwrap_or_default(),
            ));
            continue;
        }
        let entry = out.entry(key).or_insert_with(|| GatewayRoutes {
            origin: cx.origin.clone(),
            hosts: hosts.clone(),
            tables: BTreeMap::new(),
            sections: Some(Default::default()),
        });
        for s in servers {
            if let (Some(sections), Some(name)) = (&mut entry.sections, &s.name) {
                sections.insert(name.clone());
            }
            if let std::collections::btree_map::Entry::Vacant(table) = entry.tables.entry(s.port) {
                let mut keyed = port_rules(cx, resolver, rules, s.port);
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                table.insert(keyed.into_iter().map(|(_, r)| r).collect());
            }
        }
    }
    out.into_iter()
        .filter(|(_, r)| !r.tables.is_empty())
        .collect()
}

/// A Gateway API match expanded into model matches, with its precedence.
struct MatchVariants {
    /// (path kind, path length, has method, header count, query count).
    key: (u8, usize, bool, usize, usize),
    variants: Vec<(HttpMatch, PathVariant)>,
}

fn attach(
    cx: &mut Cx<'_>,
    resolver: &Resolver<'_>,
    parents: &[ParentRef],
    rules: &[(Rule, Vec<Result<MatchVariants, String>>)],
) -> Vec<(String, GammaCandidate)> {
    let mut out: BTreeMap<String, GammaCandidate> = BTreeMap::new();
    for (pi, parent) in parents.iter().enumerate() {
        let what = format!("parentRefs[{pi}]");
        let group = parent
            .group
            .as_deref()
            .unwrap_or("gateway.networking.k8s.io");
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if kind == "Gateway" && group == "gateway.networking.k8s.io" {
            // Attached to a Gateway: for gateway proxies, not sidecars.
            continue;
        }
        if kind != "Service" || !matches!(group, "" | "core") {
            cx.warn(format!(
                "{what}: parent {group}/{kind} is not supported (attach to a Service or a Gateway); ignored"
            ));
            continue;
        }
        let ns = parent.namespace.as_deref().unwrap_or(cx.namespace());
        let hostname = format!("{}.{ns}.svc.{}", parent.name, cx.settings.cluster_domain);
        let Some(svc) = resolver.service(&hostname) else {
            cx.warn(format!(
                "{what}: Service {ns}/{} not found; ignored",
                parent.name
            ));
            continue;
        };
        let mut only_port = match parent.port {
            Some(p) => match cx.port(&format!("{what}.port"), p) {
                Some(p) => Some(p),
                None => continue,
            },
            None => None,
        };
        if let Some(section) = &parent.section_name {
            match svc.service.ports.iter().find(|p| &p.name == section) {
                Some(p) => only_port = Some(p.port),
                None => {
                    cx.warn(format!(
                        "{what}: Service {ns}/{} has no port named {section:?}; ignored",
                        parent.name
                    ));
                    continue;
                }
            }
        }
        let candidate = out
            .entry(hostname.clone())
            .or_insert_with(|| GammaCandidate {
                origin: cx.origin.clone(),
                tables: BTreeMap::new(),
            });
        for port in &svc.service.ports {
            if only_port.is_some_and(|p| p != port.port)
                || matches!(port.protocol, AppProtocol::Tcp | AppProtocol::Tls)
                || candidate.tables.contains_key(&port.port)
            {
                continue;
            }
            let routes = port_rules(cx, resolver, rules, port.port);
            candidate.tables.insert(port.port, routes);
        }
        if only_port.is_some_and(|p| svc.service.port(p).is_none()) {
            cx.warn(format!(
                "{what}: Service {ns}/{} has no port {}; ignored",
                parent.name,
                only_port.unwrap_or_default()
            ));
        }
    }
    out.into_iter()
        .filter(|(_, c)| !c.tables.is_empty())
        .collect()
}

/// The model routes of every rule for one service port, with their precedence keys.
fn port_rules(
    cx: &mut Cx<'_>,
    resolver: &Resolver<'_>,
    rules: &[(Rule, Vec<Result<MatchVariants, String>>)],
    port: u16,
) -> Vec<(RuleKey, HttpRoute)> {
    let mut out = Vec::new();
    for (ri, (rule, matches)) in rules.iter().enumerate() {
        let what = format!("rules[{ri}]");
        let action = rule_action(cx, resolver, rule, port, &what);
        for (mi, m) in matches.iter().enumerate() {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    cx.warn(format!("{what}.matches[{mi}]: {e}; the match is skipped"));
                    continue;
                }
            };
            for (vi, (hm, variant)) in m.variants.iter().enumerate() {
                let Some((hm, action)) = finish(cx, &action, hm.clone(), variant, &what) else {
                    continue;
                };
                let (path_kind, path_len, has_method, headers, query_params) = m.key;
                let key = RuleKey {
                    path_kind,
                    path_len: Reverse(path_len),
                    no_method: !has_method,
                    headers: Reverse(headers),
                    query_params: Reverse(query_params),
                    origin: cx.origin.clone(),
                    rule: ri,
                    matched: mi,
                    variant: vi,
                };
                out.push((
                    key,
                    HttpRoute {
                        name: rule.name.clone(),
                        matches: vec![hm],
                        action,
                    },
                ));
            }
        }
    }
    out
}

/// What a rule does, before it is specialized to one path variant.
struct RuleAction {
    action: HttpAction,
    rewrite_path: Option<PathModifier>,
    redirect_path: Option<PathModifier>,
}

fn internal_error() -> HttpAction {
    HttpAction::DirectResponse(DirectResponse {
        status: 500,
        body: None,
    })
}

fn rule_action(
    cx: &mut Cx<'_>,
    resolver: &Resolver<'_>,
    rule: &Rule,
    port: u16,
    what: &str,
) -> RuleAction {
    let mut request_headers = HeaderMutations::default();
    let mut response_headers = HeaderMutations::default();
    let mut authority = None;
    let mut rewrite_path = None;
    let mut redirect = None;
    let mut redirect_path = None;
    let mut mirrors = Vec::new();
    let mut failed = false;
    for (fi, f) in rule.filters.iter().enumerate() {
        let fwhat = format!("{what}.filters[{fi}]");
        match f.kind.as_str() {
            "RequestHeaderModifier" => {
                if let Some(m) = &f.request_header_modifier {
                    header_modifier(cx, m, &mut request_headers, &fwhat);
                }
            }
            "ResponseHeaderModifier" => {
                if let Some(m) = &f.response_header_modifier {
                    header_modifier(cx, m, &mut response_headers, &fwhat);
                }
            }
            "URLRewrite" => {
                if let Some(rw) = &f.url_rewrite {
                    authority = rw.hostname.clone().filter(|h| !h.is_empty());
                    rewrite_path = rw.path.clone();
                }
            }
            "RequestRedirect" => {
                if let Some(r) = &f.request_redirect {
                    match redirect_of(cx, r, &fwhat) {
                        Some(r) => redirect = Some(r),
                        None => failed = true,
                    }
                    redirect_path = r.path.clone();
                }
            }
            "RequestMirror" => {
                if let Some(m) = &f.request_mirror
                    && let Some(cluster) = backend_key(
                        cx,
                        resolver,
                        &m.backend_ref,
                        port,
                        &format!("{fwhat}.backendRef"),
                    )
                {
                    let percentage = match (m.percent, &m.fraction) {
                        (Some(p), _) => cx.percent(&fwhat, p as f64),
                        (None, Some(f)) => {
                            let d = f.denominator.unwrap_or(100);
                            if d <= 0 {
                                cx.warn(format!("{fwhat}: fraction denominator {d} is not positive; mirroring nothing"));
                                Percent::ZERO
                            } else {
                                cx.percent(&fwhat, f.numerator as f64 * 100.0 / d as f64)
                            }
                        }
                        (None, None) => Percent::HUNDRED,
                    };
                    mirrors.push(Mirror {
                        cluster,
                        percentage,
                    });
                }
            }
            "CORS" => cx.warn(format!(
                "{fwhat}: the CORS filter is not supported; ignored"
            )),
            other => {
                cx.warn(format!(
                    "{fwhat}: filter {other} is not supported; matching requests get a 500"
                ));
                failed = true;
            }
        }
    }
    if failed {
        return RuleAction {
            action: internal_error(),
            rewrite_path: None,
            redirect_path: None,
        };
    }
    if let Some(r) = redirect {
        return RuleAction {
            action: HttpAction::Redirect(r),
            rewrite_path: None,
            redirect_path,
        };
    }

    let mut backends = Vec::new();
    let single = rule.backends.len() == 1;
    for (bi, b) in rule.backends.iter().enumerate() {
        let bwhat = format!("{what}.backendRefs[{bi}]");
        let Some(cluster) = backend_key(cx, resolver, b, port, &bwhat) else {
            continue;
        };
        for (fi, f) in b.filters.iter().enumerate() {
            let fwhat = format!("{bwhat}.filters[{fi}]");
            match (f.kind.as_str(), single) {
                ("RequestHeaderModifier", true) => {
                    if let Some(m) = &f.request_header_modifier {
                        header_modifier(cx, m, &mut request_headers, &fwhat);
                    }
                }
                ("ResponseHeaderModifier", true) => {
                    if let Some(m) = &f.response_header_modifier {
                        header_modifier(cx, m, &mut response_headers, &fwhat);
                    }
                }
                (kind, _) => cx.warn(format!(
                    "{fwhat}: backend filter {kind} is not supported{}; ignored",
                    if single { "" } else { " with several backends" }
                )),
            }
        }
        backends.push(WeightedBackend {
            cluster,
            weight: clamp_weight(b.weight.unwrap_or(1)),
        });
    }
    if backends.iter().all(|b| b.weight == 0) {
        if rule.backends.is_empty() {
            cx.warn(format!(
                "{what}: no backendRefs; matching requests get a 500"
            ));
        } else {
            cx.warn(format!(
                "{what}: no usable backend with a non-zero weight; matching requests get a 500"
            ));
        }
        return RuleAction {
            action: internal_error(),
            rewrite_path: None,
            redirect_path: None,
        };
    }
    RuleAction {
        action: HttpAction::Forward(Forward {
            backends,
            timeout: rule.timeout,
            retry: None,
            fault: None,
            mirrors,
            rewrite: authority.map(|a| Rewrite {
                uri_prefix: None,
                authority: Some(a),
            }),
            request_headers,
            response_headers,
        }),
        rewrite_path,
        redirect_path: None,
    }
}

fn backend_key(
    cx: &mut Cx<'_>,
    resolver: &Resolver<'_>,
    b: &BackendRef,
    port: u16,
    what: &str,
) -> Option<ClusterKey> {
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    if kind != "Service" || !matches!(group, "" | "core") {
        cx.warn(format!(
            "{what}: backend {group}/{kind} is not supported (only Services); skipped"
        ));
        return None;
    }
    let ns = b.namespace.as_deref().unwrap_or(cx.namespace());
    let host = format!("{}.{ns}.svc.{}", b.name, cx.settings.cluster_domain);
    destination_key(cx, resolver, &host, b.port, port, what)
}

fn header_modifier(cx: &mut Cx<'_>, m: &HeaderModifier, into: &mut HeaderMutations, what: &str) {
    for nv in &m.set {
        if let Some(k) = mutable_header(cx, &nv.name, &nv.value, what) {
            into.set.insert(k, nv.value.clone());
        }
    }
    for nv in &m.add {
        if let Some(k) = mutable_header(cx, &nv.name, &nv.value, what) {
            into.add.insert(k, nv.value.clone());
        }
    }
    for name in &m.remove {
        if let Some(k) = mutable_header(cx, name, "", what)
            && !into.remove.contains(&k)
        {
            into.remove.push(k);
        }
    }
}

fn redirect_of(cx: &mut Cx<'_>, r: &RequestRedirect, what: &str) -> Option<Redirect> {
    let status = r.status_code.unwrap_or(302);
    let Some(status) = u16::try_from(status)
        .ok()
        .filter(|s| matches!(s, 301 | 302 | 303 | 307 | 308))
    else {
        cx.warn(format!(
            "{what}: statusCode {status} is not 301, 302, 303, 307 or 308; matching requests get a 500"
        ));
        return None;
    };
    if let Some(s) = &r.scheme
        && s != "http"
        && s != "https"
    {
        cx.warn(format!(
            "{what}: scheme {s:?} is not http or https; matching requests get a 500"
        ));
        return None;
    }
    let port = match r.port {
        Some(p) => Some(cx.port(&format!("{what}.port"), p)?),
        None => None,
    };
    Some(Redirect {
        scheme: r.scheme.clone(),
        authority: r.hostname.clone().filter(|h| !h.is_empty()),
        port,
        path: None,
        status,
    })
}

/// Specializes a rule's action to one expanded match: path rewrites and redirects depend on
/// what the match consumed. `None` (with a warning) when the route cannot be expressed.
fn finish(
    cx: &mut Cx<'_>,
    action: &RuleAction,
    mut hm: HttpMatch,
    variant: &PathVariant,
    what: &str,
) -> Option<(HttpMatch, HttpAction)> {
    let mut out = action.action.clone();
    match &mut out {
        HttpAction::Forward(f) => {
            if let Some(pm) = &action.rewrite_path {
                let uri_prefix = match (path_value(pm), variant) {
                    (Some(PathValue::Prefix(r)), PathVariant::Root | PathVariant::Dir(_)) => {
                        Some(with_slash(r))
                    }
                    (Some(PathValue::Prefix(r)), PathVariant::Exact) => Some(non_empty_path(r)),
                    (Some(PathValue::Full(p)), PathVariant::Exact | PathVariant::Regex) => {
                        Some(non_empty_path(p))
                    }
                    (Some(PathValue::Full(p)), PathVariant::Root | PathVariant::Dir(_)) => {
                        // The model replaces the whole path only after an exact or regex
                        // match: express the prefix as the equivalent regex.
                        let prefix = match variant {
                            PathVariant::Dir(d) => format!("{d}/"),
                            _ => "/".to_owned(),
                        };
                        hm.uri = Some(regex(&format!("{}.*", regex::escape(&prefix))).ok()?);
                        Some(non_empty_path(p))
                    }
                    (Some(PathValue::Full(p)), PathVariant::None) => {
                        hm.uri = Some(regex(".*").ok()?);
                        Some(non_empty_path(p))
                    }
                    (Some(PathValue::Prefix(_)), PathVariant::Regex | PathVariant::None) => {
                        cx.warn(format!(
                            "{what}: ReplacePrefixMatch needs a PathPrefix match; the path rewrite is ignored"
                        ));
                        None
                    }
                    (None, _) => {
                        cx.warn(format!(
                            "{what}: URLRewrite path has no replacement; ignored"
                        ));
                        None
                    }
                };
                if let Some(p) = uri_prefix {
                    if p.starts_with('/') {
                        f.rewrite.get_or_insert_with(Rewrite::default).uri_prefix = Some(p);
                    } else {
                        cx.warn(format!(
                            "{what}: rewrite path {p:?} does not start with '/'; ignored"
                        ));
                    }
                }
            }
        }
        HttpAction::Redirect(r) => {
            if let Some(pm) = &action.redirect_path {
                let path = match (path_value(pm), variant) {
                    (Some(PathValue::Full(p)), _) => Some(non_empty_path(p)),
                    (Some(PathValue::Prefix(p)), PathVariant::Exact) => Some(non_empty_path(p)),
                    (Some(PathValue::Prefix(p)), _) => {
                        cx.warn(format!(
                            "{what}: a redirect cannot keep the rest of the path (ReplacePrefixMatch); redirecting to {p:?}"
                        ));
                        Some(non_empty_path(p))
                    }
                    (None, _) => None,
                };
                match path {
                    Some(p) if p.starts_with('/') => r.path = Some(p),
                    Some(p) => {
                        cx.warn(format!(
                            "{what}: redirect path {p:?} does not start with '/'; route skipped"
                        ));
                        return None;
                    }
                    None => {}
                }
            }
        }
        HttpAction::DirectResponse(_) => {}
    }
    Some((hm, out))
}

enum PathValue<'a> {
    Full(&'a str),
    Prefix(&'a str),
}

fn path_value(pm: &PathModifier) -> Option<PathValue<'_>> {
    match pm.kind.as_str() {
        "ReplaceFullPath" => pm.replace_full_path.as_deref().map(PathValue::Full),
        "ReplacePrefixMatch" => pm.replace_prefix_match.as_deref().map(PathValue::Prefix),
        _ => None,
    }
}

fn with_slash(p: &str) -> String {
    if p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

fn non_empty_path(p: &str) -> String {
    if p.is_empty() {
        "/".to_owned()
    } else {
        p.to_owned()
    }
}

// === Matches ===

fn http_match(m: &gateway_api::httproutes::HttpRouteRulesMatches) -> Result<MatchVariants, String> {
    use gateway_api::httproutes::{
        HttpRouteRulesMatchesHeadersType as HeaderType, HttpRouteRulesMatchesPathType as PathType,
        HttpRouteRulesMatchesQueryParamsType as QueryType,
    };
    let mut base = HttpMatch::default();
    for h in m.headers.iter().flatten() {
        let name = h.name.to_ascii_lowercase();
        if !valid_header_name(&name) {
            return Err(format!("invalid header name {:?}", h.name));
        }
        let value = match h.r#type {
            Some(HeaderType::RegularExpression) => regex(&h.value)?,
            _ => StringMatch::Exact(h.value.clone()),
        };
        base.headers.push(HeaderMatch {
            name,
            value: Some(value),
        });
    }
    for q in m.query_params.iter().flatten() {
        if q.name.is_empty() {
            return Err("empty query parameter name".to_owned());
        }
        let value = match q.r#type {
            Some(QueryType::RegularExpression) => regex(&q.value)?,
            _ => StringMatch::Exact(q.value.clone()),
        };
        base.query_params.push(QueryParamMatch {
            name: q.name.clone(),
            value: Some(value),
        });
    }
    if let Some(method) = &m.method {
        let method = serde_json::to_value(method).map_err(|e| e.to_string())?;
        let method = method.as_str().unwrap_or_default().to_owned();
        base.method = Some(StringMatch::Exact(method));
    }
    let counts = (
        base.method.is_some(),
        base.headers.len(),
        base.query_params.len(),
    );
    let path = m.path.as_ref();
    let value = path
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".to_owned());
    let kind = path
        .and_then(|p| p.r#type.clone())
        .unwrap_or(PathType::PathPrefix);
    let with = |uri: StringMatch| HttpMatch {
        uri: Some(uri),
        ..base.clone()
    };
    let (path_kind, len, variants) = match kind {
        PathType::Exact => {
            if !value.starts_with('/') {
                return Err(format!("path {value:?} does not start with '/'"));
            }
            let len = value.len();
            (
                0,
                len,
                vec![(with(StringMatch::Exact(value)), PathVariant::Exact)],
            )
        }
        PathType::PathPrefix => {
            if !value.starts_with('/') {
                return Err(format!("path {value:?} does not start with '/'"));
            }
            let trimmed = value.trim_end_matches('/');
            if trimmed.is_empty() {
                (
                    1,
                    1,
                    vec![(with(StringMatch::Prefix("/".to_owned())), PathVariant::Root)],
                )
            } else {
                (
                    1,
                    trimmed.len(),
                    vec![
                        (
                            with(StringMatch::Exact(trimmed.to_owned())),
                            PathVariant::Exact,
                        ),
                        (
                            with(StringMatch::Prefix(format!("{trimmed}/"))),
                            PathVariant::Dir(trimmed.to_owned()),
                        ),
                    ],
                )
            }
        }
        PathType::RegularExpression => {
            let len = value.len();
            (2, len, vec![(with(regex(&value)?), PathVariant::Regex)])
        }
    };
    Ok(MatchVariants {
        key: (path_kind, len, counts.0, counts.1, counts.2),
        variants,
    })
}

fn grpc_match(m: &gateway_api::grpcroutes::GrpcRouteRulesMatches) -> Result<MatchVariants, String> {
    use gateway_api::grpcroutes::{
        GrpcRouteRulesMatchesHeadersType as HeaderType,
        GrpcRouteRulesMatchesMethodType as MethodType,
    };
    let mut hm = HttpMatch::default();
    for h in m.headers.iter().flatten() {
        let name = h.name.to_ascii_lowercase();
        if !valid_header_name(&name) {
            return Err(format!("invalid header name {:?}", h.name));
        }
        let value = match h.r#type {
            Some(HeaderType::RegularExpression) => regex(&h.value)?,
            _ => StringMatch::Exact(h.value.clone()),
        };
        hm.headers.push(HeaderMatch {
            name,
            value: Some(value),
        });
    }
    let (kind, len, variant) = match &m.method {
        None => (3, 0, PathVariant::None),
        Some(method) => {
            let service = method.service.as_deref().filter(|s| !s.is_empty());
            let name = method.method.as_deref().filter(|s| !s.is_empty());
            let regex_type = matches!(method.r#type, Some(MethodType::RegularExpression));
            let (kind, uri, variant) = match (regex_type, service, name) {
                (_, None, None) => {
                    return Err("method match names neither service nor method".to_owned());
                }
                (false, Some(s), Some(n)) => (
                    0,
                    StringMatch::Exact(format!("/{s}/{n}")),
                    PathVariant::Exact,
                ),
                (false, Some(s), None) => (
                    1,
                    StringMatch::Prefix(format!("/{s}/")),
                    PathVariant::Dir(format!("/{s}")),
                ),
                (false, None, Some(n)) => (
                    2,
                    regex(&format!("/[^/]+/{}", regex::escape(n)))?,
                    PathVariant::Regex,
                ),
                (true, s, n) => (
                    2,
                    regex(&format!(
                        "/{}/{}",
                        s.unwrap_or("[^/]+"),
                        n.unwrap_or("[^/]+")
                    ))?,
                    PathVariant::Regex,
                ),
            };
            let len = service.map_or(0, str::len) + name.map_or(0, str::len);
            hm.uri = Some(uri);
            (kind, len, variant)
        }
    };
    Ok(MatchVariants {
        key: (kind, len, false, hm.headers.len(), 0),
        variants: vec![(hm, variant)],
    })
}
