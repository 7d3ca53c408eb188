//! VirtualServices → route tables for sidecars.
//!
//! A VirtualService bound to sidecars (`gateways` empty or containing `mesh`) yields, for
//! each of its hosts that is a known service (short names resolve in the VirtualService's
//! namespace; `*.suffix` wildcards match every known service under the suffix) and each
//! port of that service, the routes that apply on that port: `http` routes on HTTP and
//! undeclared ports, `tcp` routes on opaque and undeclared ports, and of those only routes
//! with a match for the port (or no `port` in their matches). Gateway-bound
//! VirtualServices are translated per gateway and server port by
//! [`translate_for_gateway`] (see `gateways`).
//!
//! Field mapping, with what cannot be expressed skipped and reported:
//!
//! - `match` → [`HttpMatch`] (a condition that does not translate is dropped; a route
//!   whose every condition is dropped is skipped, so it never matches more than written).
//!   `ignoreUriCase` turns the `uri` match into a case-insensitive regex.
//! - `route[]` → weighted [`ClusterKey`]s: the destination host resolved in the
//!   VirtualService's namespace; its port, or the destination service's only port, or the
//!   table's port; its subset. Weights are relative; a lone destination without a weight
//!   gets 100.
//! - `timeout` (`0s` means none), `retries` (`attempts: 0` disables; `retryOn` defaults to
//!   [`RetryOn::DEFAULT`]: connect-failure, refused-stream, unavailable, cancelled),
//!   `fault`, `mirror` + `mirrorPercentage`, `rewrite` (`uri` → `uriPrefix`, `authority`),
//!   `headers` (per-destination headers only with a single destination), `redirect`,
//!   `directResponse`.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
};

use mesh_api::{
    config::{
        VirtualService,
        networking::{self as cfg, Destination},
    },
    model::{
        AbortError, Backoff, ClusterKey, DirectResponse, Fault, FaultAbort, FaultDelay, Forward,
        HeaderMatch, HeaderMutations, HttpAction, HttpMatch, HttpRoute, Mirror, Percent,
        QueryParamMatch, Redirect, RetryCondition, RetryOn, RetryPolicy, Rewrite, StringMatch,
        TcpMatch, TcpRoute, WeightedBackend,
    },
};

use super::hosts::{
    Cx, ExportTo, HostMatch, Resolver, ResourceRef, string_match, valid_header_name,
    valid_header_value, valid_hostname,
};

/// The largest weight kept, so sums stay far from overflowing (Gateway API's maximum).
pub(super) const MAX_WEIGHT: u32 = 1_000_000;

/// The routes one resource contributes for one port of one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PortRoutes {
    pub(super) http: Vec<HttpRoute>,
    pub(super) tcp: Vec<TcpRoute>,
}

/// A VirtualService's routes for one service host.
#[derive(Debug, Clone)]
pub(super) struct VsCandidate {
    pub(super) origin: ResourceRef,
    pub(super) export: ExportTo,
    /// How the host was named: exact hosts beat wildcards.
    pub(super) specificity: (u8, Reverse<usize>),
    /// Per service port.
    pub(super) tables: BTreeMap<u16, PortRoutes>,
}

impl VsCandidate {
    /// The order in which candidates for one host win.
    pub(super) fn precedence(&self) -> ((u8, Reverse<usize>), &ResourceRef) {
        (self.specificity, &self.origin)
    }
}

/// Whether a `gateways` list includes the sidecars (`mesh`, or empty).
pub(super) fn binds_mesh(gateways: &[String]) -> bool {
    gateways.is_empty() || gateways.iter().any(|g| g == "mesh")
}

/// Whom a translation is for: the sidecars, or one gateway.
#[derive(Debug, Clone, Copy)]
pub(super) enum Binding<'a> {
    /// Sidecars (`mesh`).
    Mesh,
    /// The Gateway `(namespace, name)`.
    Gateway(&'a (String, String)),
}

impl Binding<'_> {
    /// Whether a `gateways` list (of a VirtualService in `ns`, or of one of its matches)
    /// names this binding.
    pub(super) fn bound_by(self, gateways: &[String], ns: &str) -> bool {
        match self {
            Self::Mesh => binds_mesh(gateways),
            Self::Gateway(gw) => gateways
                .iter()
                .filter_map(|g| gateway_ref(g, ns))
                .any(|r| r == *gw),
        }
    }
}

/// The Gateway a `gateways` entry of a VirtualService in `ns` names: `ns/name` or `name`
/// (in `ns`); `None` for `mesh`.
pub(super) fn gateway_ref(entry: &str, ns: &str) -> Option<(String, String)> {
    if entry == "mesh" {
        return None;
    }
    Some(match entry.split_once('/') {
        Some((gw_ns, name)) => (gw_ns.to_owned(), name.to_owned()),
        None => (ns.to_owned(), entry.to_owned()),
    })
}

/// Translates a VirtualService's `http` routes for the server port `port` of the Gateway
/// `gateway` it is bound to. Routes keep their matches for that port (Istio: a match
/// `port` at a gateway is the server port) and for that gateway.
pub(super) fn translate_for_gateway(
    cx: &mut Cx<'_>,
    vs: &VirtualService,
    resolver: &Resolver<'_>,
    subsets: &SubsetNames,
    gateway: &(String, String),
    port: u16,
) -> Vec<HttpRoute> {
    let tr = Translator {
        resolver,
        subsets,
        binding: Binding::Gateway(gateway),
    };
    vs.spec
        .http
        .iter()
        .enumerate()
        .filter_map(|(i, r)| tr.http_route(cx, r, i, port))
        .collect()
}

/// Names of subsets defined by any DestinationRule, by host, to flag references to
/// undefined ones.
pub(super) type SubsetNames = BTreeMap<String, BTreeSet<String>>;

/// Translates a VirtualService for sidecars: one candidate per service host it covers.
pub(super) fn translate(
    cx: &mut Cx<'_>,
    vs: &VirtualService,
    resolver: &Resolver<'_>,
    subsets: &SubsetNames,
) -> Vec<(String, VsCandidate)> {
    let spec = &vs.spec;
    if !binds_mesh(&spec.gateways) {
        // Gateway-bound: served by gateway proxies (see `proxy::gateway_routes`).
        return Vec::new();
    }
    let ns = cx.namespace();
    let mut targets: BTreeMap<String, (u8, Reverse<usize>)> = BTreeMap::new();
    for host in &spec.hosts {
        let pattern = HostMatch::new(resolver, host, ns);
        let mut any = false;
        for h in resolver.hostnames().filter(|h| pattern.matches(h)) {
            any = true;
            let s = pattern.specificity();
            targets
                .entry(h.to_owned())
                .and_modify(|cur| *cur = (*cur).min(s))
                .or_insert(s);
        }
        if !any {
            cx.warn(format!("host {host:?} is not a known service; ignored"));
        }
    }
    let export = ExportTo::parse(&spec.export_to, ns);
    let tr = Translator {
        resolver,
        subsets,
        binding: Binding::Mesh,
    };
    let mut out = Vec::new();
    for (hostname, specificity) in targets {
        let Some(svc) = resolver.service(&hostname) else {
            continue;
        };
        let mut tables = BTreeMap::new();
        for port in &svc.service.ports {
            let mut routes = PortRoutes::default();
            if !matches!(
                port.protocol,
                mesh_api::model::AppProtocol::Tcp | mesh_api::model::AppProtocol::Tls
            ) {
                for (i, r) in spec.http.iter().enumerate() {
                    if let Some(route) = tr.http_route(cx, r, i, port.port) {
                        routes.http.push(route);
                    }
                }
            }
            if !port.protocol.is_http() {
                for (i, r) in spec.tcp.iter().enumerate() {
                    if let Some(route) = tr.tcp_route(cx, r, i, port.port) {
                        routes.tcp.push(route);
                    }
                }
            }
            if !routes.http.is_empty() || !routes.tcp.is_empty() {
                tables.insert(port.port, routes);
            }
        }
        if tables.is_empty() {
            cx.warn(format!(
                "no route applies to any port of {hostname} (check match ports, and that http routes target HTTP ports and tcp routes opaque ones)"
            ));
        }
        out.push((
            hostname,
            VsCandidate {
                origin: cx.origin.clone(),
                export: export.clone(),
                specificity,
                tables,
            },
        ));
    }
    out
}

struct Translator<'a, 'r> {
    resolver: &'a Resolver<'r>,
    subsets: &'a SubsetNames,
    binding: Binding<'a>,
}

impl Translator<'_, '_> {
    fn http_route(
        &self,
        cx: &mut Cx<'_>,
        route: &cfg::HttpRoute,
        idx: usize,
        port: u16,
    ) -> Option<HttpRoute> {
        let what = match &route.name {
            Some(n) => format!("http[{idx}] ({n})"),
            None => format!("http[{idx}]"),
        };
        let mut matches = Vec::new();
        for (j, m) in route.matches.iter().enumerate() {
            if m.port.is_some_and(|p| p != u32::from(port)) {
                continue;
            }
            if !m.gateways.is_empty() && !self.binding.bound_by(&m.gateways, cx.namespace()) {
                continue;
            }
            match http_match(m) {
                Ok(hm) => matches.push(hm),
                Err(e) => cx.warn(format!("{what}.match[{j}]: {e}; the condition is skipped")),
            }
        }
        if !route.matches.is_empty() && matches.is_empty() {
            return None;
        }

        let actions = usize::from(!route.route.is_empty())
            + usize::from(route.redirect.is_some())
            + usize::from(route.direct_response.is_some());
        if actions > 1 {
            cx.warn(format!(
                "{what}: more than one of route, redirect, directResponse; using the first"
            ));
        }
        let action = if !route.route.is_empty() {
            HttpAction::Forward(self.forward(cx, route, &what, port)?)
        } else if let Some(r) = &route.redirect {
            HttpAction::Redirect(redirect(cx, r, &what)?)
        } else if let Some(d) = &route.direct_response {
            let status = u16::try_from(d.status)
                .ok()
                .filter(|s| (200..=599).contains(s));
            let Some(status) = status else {
                cx.warn(format!(
                    "{what}: directResponse status {} is not in 200-599; route skipped",
                    d.status
                ));
                return None;
            };
            HttpAction::DirectResponse(DirectResponse {
                status,
                body: d.body.as_ref().and_then(|b| b.string.clone()),
            })
        } else {
            cx.warn(format!(
                "{what}: no route, redirect or directResponse; route skipped"
            ));
            return None;
        };
        if route.rewrite.is_some() && !matches!(action, HttpAction::Forward(_)) {
            cx.warn(format!(
                "{what}: rewrite only applies to forwarded requests; ignored"
            ));
        }
        Some(HttpRoute {
            name: route.name.clone().unwrap_or_default(),
            matches,
            action,
        })
    }

    fn forward(
        &self,
        cx: &mut Cx<'_>,
        route: &cfg::HttpRoute,
        what: &str,
        port: u16,
    ) -> Option<Forward> {
        let dests: Vec<(&Destination, Option<i32>)> = route
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        let backends = self.backends(cx, &dests, port, &format!("{what}.route"))?;

        let mut request_headers = HeaderMutations::default();
        let mut response_headers = HeaderMutations::default();
        if let Some(h) = &route.headers {
            headers(cx, h, &mut request_headers, &mut response_headers, what);
        }
        let per_dest: Vec<&cfg::Headers> = route
            .route
            .iter()
            .filter_map(|d| d.headers.as_ref())
            .collect();
        if !per_dest.is_empty() {
            if route.route.len() == 1 {
                headers(
                    cx,
                    per_dest[0],
                    &mut request_headers,
                    &mut response_headers,
                    what,
                );
            } else {
                cx.warn(format!(
                    "{what}: per-destination headers are only supported with a single destination; ignored"
                ));
            }
        }

        let timeout = route
            .timeout
            .as_deref()
            .and_then(|t| cx.duration(&format!("{what}.timeout"), t))
            .filter(|d| !d.is_zero());
        let retry = route.retries.as_ref().and_then(|r| retry(cx, r, what));
        let fault = route.fault.as_ref().and_then(|f| fault(cx, f, what));
        let mut mirrors = Vec::new();
        if let Some(m) = &route.mirror
            && let Some(cluster) = self.cluster_key(cx, m, port, &format!("{what}.mirror"))
        {
            let percentage = route
                .mirror_percentage
                .as_ref()
                .map_or(Percent::HUNDRED, |p| {
                    cx.percent(&format!("{what}.mirrorPercentage"), p.value)
                });
            mirrors.push(Mirror {
                cluster,
                percentage,
            });
        }
        let rewrite = route.rewrite.as_ref().and_then(|rw| {
            let uri_prefix = rw.uri.clone().filter(|u| {
                let ok = u.starts_with('/');
                if !ok {
                    cx.warn(format!(
                        "{what}.rewrite.uri: {u:?} does not start with '/'; ignored"
                    ));
                }
                ok
            });
            let authority = rw.authority.clone().filter(|a| !a.is_empty());
            if uri_prefix.is_some()
                && route
                    .matches
                    .iter()
                    .any(|m| m.ignore_uri_case == Some(true) && m.uri.is_some())
            {
                cx.warn(format!(
                    "{what}: with ignoreUriCase the uri match becomes a regex, so rewrite.uri replaces the whole path"
                ));
            }
            (uri_prefix.is_some() || authority.is_some()).then_some(Rewrite {
                uri_prefix,
                authority,
            })
        });
        Some(Forward {
            backends,
            timeout,
            retry,
            fault,
            mirrors,
            rewrite,
            request_headers,
            response_headers,
        })
    }

    fn tcp_route(
        &self,
        cx: &mut Cx<'_>,
        route: &cfg::TcpRoute,
        idx: usize,
        port: u16,
    ) -> Option<TcpRoute> {
        let what = format!("tcp[{idx}]");
        let mut matches = Vec::new();
        for (j, m) in route.matches.iter().enumerate() {
            if m.port.is_some_and(|p| p != u32::from(port)) {
                continue;
            }
            if !m.gateways.is_empty() && !binds_mesh(&m.gateways) {
                continue;
            }
            if !m.destination_subnets.is_empty() || m.source_namespace.is_some() {
                cx.warn(format!(
                    "{what}.match[{j}]: destinationSubnets and sourceNamespace are not supported for TCP routes; the condition is skipped"
                ));
                continue;
            }
            matches.push(TcpMatch {
                source_labels: m.source_labels.clone(),
                sni_hosts: Vec::new(),
            });
        }
        if !route.matches.is_empty() && matches.is_empty() {
            return None;
        }
        let dests: Vec<(&Destination, Option<i32>)> = route
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        let backends = self.backends(cx, &dests, port, &format!("{what}.route"))?;
        Some(TcpRoute {
            name: String::new(),
            matches,
            backends,
        })
    }

    /// Weighted backends; `None` (with a warning) when none is usable.
    fn backends(
        &self,
        cx: &mut Cx<'_>,
        dests: &[(&Destination, Option<i32>)],
        port: u16,
        what: &str,
    ) -> Option<Vec<WeightedBackend>> {
        let any_weight = dests.iter().any(|(_, w)| w.is_some());
        let equal = u32::try_from(dests.len())
            .ok()
            .filter(|n| *n > 0)
            .map_or(1, |n| (100 / n).max(1));
        let mut backends = Vec::new();
        for (k, (dest, weight)) in dests.iter().enumerate() {
            let Some(cluster) = self.cluster_key(cx, dest, port, &format!("{what}[{k}]")) else {
                continue;
            };
            let weight = match weight {
                Some(w) => clamp_weight(*w),
                None if any_weight => 0,
                None => equal,
            };
            backends.push(WeightedBackend { cluster, weight });
        }
        if backends.is_empty() {
            cx.warn(format!("{what}: no usable destination; route skipped"));
            return None;
        }
        if backends.iter().all(|b| b.weight == 0) {
            cx.warn(format!("{what}: every weight is zero; route skipped"));
            return None;
        }
        Some(backends)
    }

    fn cluster_key(
        &self,
        cx: &mut Cx<'_>,
        dest: &Destination,
        port: u16,
        what: &str,
    ) -> Option<ClusterKey> {
        let key = destination_key(
            cx,
            self.resolver,
            &dest.host,
            dest.port.as_ref().map(|p| i64::from(p.number)),
            port,
            what,
        )?;
        let key = match dest.subset.as_deref().filter(|s| !s.is_empty()) {
            Some(subset) => {
                let defined = self
                    .subsets
                    .get(&key.hostname)
                    .is_some_and(|s| s.contains(subset));
                if !defined {
                    cx.warn(format!(
                        "{what}: subset {subset:?} of {} is not defined by any DestinationRule; requests to it fail",
                        key.hostname
                    ));
                }
                key.with_subset(subset)
            }
            None => key,
        };
        Some(key)
    }
}

/// The cluster key of a destination `host` (resolved in the resource's namespace) and
/// optional port: the given port, else the service's only port, else `table_port`.
pub(super) fn destination_key(
    cx: &mut Cx<'_>,
    resolver: &Resolver<'_>,
    host: &str,
    dest_port: Option<i64>,
    table_port: u16,
    what: &str,
) -> Option<ClusterKey> {
    let hostname = resolver.resolve(host, cx.namespace());
    if !valid_hostname(&hostname, false) {
        cx.warn(format!(
            "{what}: destination host {host:?} is not a service host name; skipped"
        ));
        return None;
    }
    let svc = resolver.service(&hostname);
    if svc.is_none() {
        cx.warn(format!(
            "{what}: destination host {hostname} is not a known service; requests to it fail"
        ));
    }
    let port = match dest_port {
        Some(p) => cx.port(&format!("{what}.port"), p)?,
        None => match svc {
            Some(s) if s.service.ports.len() == 1 => s.service.ports[0].port,
            _ => table_port,
        },
    };
    Some(ClusterKey::new(hostname, port))
}

/// A weight in `0..=MAX_WEIGHT`.
pub(super) fn clamp_weight(w: impl Into<i64>) -> u32 {
    u32::try_from(w.into().clamp(0, i64::from(MAX_WEIGHT))).unwrap_or(0)
}

fn http_match(m: &cfg::HttpMatchRequest) -> Result<HttpMatch, String> {
    let required =
        |field: &str, sm: &Option<cfg::StringMatch>| -> Result<Option<StringMatch>, String> {
            match sm {
                None => Ok(None),
                Some(sm) => match string_match(sm) {
                    Ok(Some(m)) => Ok(Some(m)),
                    Ok(None) => Err(format!("{field} sets none of exact, prefix, regex")),
                    Err(e) => Err(format!("{field} {e}")),
                },
            }
        };
    let mut uri = required("uri", &m.uri)?;
    if m.ignore_uri_case == Some(true)
        && let Some(u) = uri.take()
    {
        uri = Some(case_insensitive(&u)?);
    }
    let headers = |field: &str,
                   map: &BTreeMap<String, cfg::StringMatch>|
     -> Result<Vec<HeaderMatch>, String> {
        map.iter()
            .map(|(name, sm)| {
                let name = name.to_ascii_lowercase();
                if !valid_header_name(&name) {
                    return Err(format!("{field}: invalid header name {name:?}"));
                }
                let value = string_match(sm).map_err(|e| format!("{field}[{name}] {e}"))?;
                Ok(HeaderMatch { name, value })
            })
            .collect()
    };
    let query_params = m
        .query_params
        .iter()
        .map(|(name, sm)| {
            if name.is_empty() {
                return Err("queryParams: empty parameter name".to_owned());
            }
            let value = string_match(sm).map_err(|e| format!("queryParams[{name}] {e}"))?;
            Ok(QueryParamMatch {
                name: name.clone(),
                value,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(HttpMatch {
        name: m.name.clone().unwrap_or_default(),
        uri,
        method: required("method", &m.method)?,
        authority: required("authority", &m.authority)?,
        scheme: required("scheme", &m.scheme)?,
        headers: headers("headers", &m.headers)?,
        without_headers: headers("withoutHeaders", &m.without_headers)?,
        query_params,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone().filter(|s| !s.is_empty()),
    })
}

/// The case-insensitive regex equivalent of a uri match.
fn case_insensitive(m: &StringMatch) -> Result<StringMatch, String> {
    let src = match m {
        StringMatch::Exact(v) => format!("(?i){}", regex::escape(v)),
        StringMatch::Prefix(p) => format!("(?i){}.*", regex::escape(p)),
        StringMatch::Regex(r) => format!("(?i){}", r.as_str()),
    };
    super::hosts::regex(&src)
}

/// Applies config header operations onto model mutations (later values win).
pub(super) fn headers(
    cx: &mut Cx<'_>,
    h: &cfg::Headers,
    request: &mut HeaderMutations,
    response: &mut HeaderMutations,
    what: &str,
) {
    if let Some(ops) = &h.request {
        mutations(cx, ops, request, &format!("{what}.headers.request"));
    }
    if let Some(ops) = &h.response {
        mutations(cx, ops, response, &format!("{what}.headers.response"));
    }
}

fn mutations(cx: &mut Cx<'_>, ops: &cfg::HeaderOperations, into: &mut HeaderMutations, what: &str) {
    for (k, v) in &ops.set {
        if let Some(k) = mutable_header(cx, k, v, what) {
            into.set.insert(k, v.clone());
        }
    }
    for (k, v) in &ops.add {
        if let Some(k) = mutable_header(cx, k, v, what) {
            into.add.insert(k, v.clone());
        }
    }
    for k in &ops.remove {
        if let Some(k) = mutable_header(cx, k, "", what)
            && !into.remove.contains(&k)
        {
            into.remove.push(k);
        }
    }
}

/// A header name the proxy may set, lower-cased; `None` (with a warning) otherwise.
pub(super) fn mutable_header(
    cx: &mut Cx<'_>,
    name: &str,
    value: &str,
    what: &str,
) -> Option<String> {
    let name = name.to_ascii_lowercase();
    if !valid_header_name(&name) || name.starts_with(':') || name == "host" {
        cx.warn(format!(
            "{what}: header {name:?} cannot be changed (use rewrite.authority for the host); ignored"
        ));
        return None;
    }
    if !valid_header_value(value) {
        cx.warn(format!(
            "{what}: the value of header {name:?} has control characters; ignored"
        ));
        return None;
    }
    Some(name)
}

fn retry(cx: &mut Cx<'_>, r: &cfg::HttpRetry, what: &str) -> Option<RetryPolicy> {
    let attempts = u32::try_from(r.attempts).ok().filter(|a| *a > 0)?;
    let per_try_timeout = r
        .per_try_timeout
        .as_deref()
        .and_then(|t| cx.duration(&format!("{what}.retries.perTryTimeout"), t))
        .filter(|d| !d.is_zero());
    let retry_on = match &r.retry_on {
        None => RetryOn::DEFAULT,
        Some(s) => retry_on(cx, s, &format!("{what}.retries.retryOn")),
    };
    Some(RetryPolicy {
        attempts,
        per_try_timeout,
        retry_on,
        backoff: Backoff::default(),
        budget: None,
    })
}

/// Parses Istio's comma-separated `retryOn`. `retriable-status-codes` adds nothing (there
/// is no status list to go with it); status codes map to the nearest condition: 409 to
/// `retriable-4xx`, 502-504 to `gateway-error` and other 5xx to `5xx`, with a warning when
/// that retries more than asked.
pub(super) fn retry_on(cx: &mut Cx<'_>, s: &str, what: &str) -> RetryOn {
    use RetryCondition as C;
    let mut set = RetryOn::NONE;
    for cond in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let c = match cond {
            "5xx" => C::Status5xx,
            "gateway-error" => C::GatewayError,
            "connect-failure" => C::ConnectFailure,
            "reset" => C::Reset,
            "retriable-4xx" | "409" => C::Retriable4xx,
            "refused-stream" => C::RefusedStream,
            "cancelled" => C::Cancelled,
            "deadline-exceeded" => C::DeadlineExceeded,
            "resource-exhausted" => C::ResourceExhausted,
            "unavailable" => C::Unavailable,
            "internal" => C::Internal,
            "retriable-status-codes" => continue,
            code => match code.parse::<u16>() {
                Ok(502..=504) => {
                    cx.warn(format!(
                        "{what}: status {code} is retried as gateway-error (502, 503, 504)"
                    ));
                    C::GatewayError
                }
                Ok(500..=599) => {
                    cx.warn(format!("{what}: status {code} is retried as 5xx"));
                    C::Status5xx
                }
                _ => {
                    cx.warn(format!(
                        "{what}: unsupported retry condition {code:?}; ignored"
                    ));
                    continue;
                }
            },
        };
        set.insert(c);
    }
    set
}

fn fault(cx: &mut Cx<'_>, f: &cfg::HttpFaultInjection, what: &str) -> Option<Fault> {
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = cx.duration(&format!("{what}.fault.delay.fixedDelay"), &d.fixed_delay)?;
        let percentage = d.percentage.as_ref().map_or(Percent::HUNDRED, |p| {
            cx.percent(&format!("{what}.fault.delay.percentage"), p.value)
        });
        Some(FaultDelay { fixed, percentage })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let error = match (a.http_status, a.grpc_status.as_deref()) {
            (Some(s), None) => u16::try_from(s)
                .ok()
                .filter(|s| (200..=599).contains(s))
                .map(AbortError::HttpStatus),
            (None, Some(name)) => grpc_code(name).map(AbortError::GrpcStatus),
            _ => None,
        };
        let Some(error) = error else {
            cx.warn(format!(
                "{what}.fault.abort: needs exactly one of an httpStatus in 200-599 or a non-OK grpcStatus; ignored"
            ));
            return None;
        };
        let percentage = a.percentage.as_ref().map_or(Percent::HUNDRED, |p| {
            cx.percent(&format!("{what}.fault.abort.percentage"), p.value)
        });
        Some(FaultAbort { error, percentage })
    });
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

/// A gRPC status by name (`UNAVAILABLE`, as `mesh_api::config::validate::GRPC_STATUS`
/// lists them) or number, 1-16.
fn grpc_code(name: &str) -> Option<u8> {
    let code = match name.parse::<u8>() {
        Ok(n) => n,
        Err(_) => {
            let i = mesh_api::config::validate::GRPC_STATUS
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))?;
            u8::try_from(i).ok()?
        }
    };
    (1..=16).contains(&code).then_some(code)
}

fn redirect(cx: &mut Cx<'_>, r: &cfg::HttpRedirect, what: &str) -> Option<Redirect> {
    let bad = |cx: &mut Cx<'_>, msg: String| {
        cx.warn(format!("{what}.redirect: {msg}; route skipped"));
        None
    };
    let status = r.redirect_code.unwrap_or(301);
    let Some(status) = u16::try_from(status)
        .ok()
        .filter(|s| matches!(s, 301 | 302 | 303 | 307 | 308))
    else {
        return bad(
            cx,
            format!("redirectCode {status} is not 301, 302, 303, 307 or 308"),
        );
    };
    if let Some(s) = &r.scheme
        && s != "http"
        && s != "https"
    {
        return bad(cx, format!("scheme {s:?} is not http or https"));
    }
    if let Some(p) = &r.uri
        && !p.starts_with('/')
    {
        return bad(cx, format!("uri {p:?} does not start with '/'"));
    }
    let port = match r.port {
        Some(p) => Some(cx.port(&format!("{what}.redirect.port"), p.into())?),
        None => None,
    };
    Some(Redirect {
        scheme: r.scheme.clone(),
        authority: r.authority.clone().filter(|a| !a.is_empty()),
        port,
        path: r.uri.clone(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes() {
        assert_eq!(grpc_code("UNAVAILABLE"), Some(14));
        assert_eq!(grpc_code("cancelled"), Some(1));
        assert_eq!(grpc_code("OK"), None);
        assert_eq!(grpc_code("0"), None);
        assert_eq!(grpc_code("16"), Some(16));
        assert_eq!(grpc_code("nope"), None);
    }

    #[test]
    fn case_insensitive_uri() {
        let m = case_insensitive(&StringMatch::Prefix("/Api.v1".into())).unwrap();
        assert!(m.matches("/API.V1/users"));
        assert!(!m.matches("/apixv1"));
        let m = case_insensitive(&StringMatch::Exact("/a".into())).unwrap();
        assert!(m.matches("/A") && !m.matches("/ab"));
    }

    #[test]
    fn weights_clamp() {
        assert_eq!(clamp_weight(-5), 0);
        assert_eq!(clamp_weight(90), 90);
        assert_eq!(clamp_weight(i64::MAX), MAX_WEIGHT);
    }
}
