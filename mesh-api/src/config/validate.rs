//! Semantic validation: what the types cannot say.
//!
//! Runs over a whole [`ConfigSet`] so that cross-resource rules (a route's subset must be
//! defined by a DestinationRule for its host; a resource must not be defined twice) are
//! checked too. Every check appends a [`Diagnostic`] that points at the offending field
//! with the YAML's own spelling of the path (`spec.http[0].route[1].weight`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::diagnostic::{Code, Diagnostic};
use super::load::{Origin, check_dns_label, check_dns_subdomain};
use super::networking::{
    Destination, DestinationRuleSpec, GatewaySpec, HttpRoute, HttpRouteDestination,
    ServiceEntrySpec, StringMatch, TrafficPolicy, VirtualServiceSpec, WorkloadEntrySpec,
};
use super::security::{
    AuthorizationAction, AuthorizationPolicySpec, Condition, MtlsMode, Operation,
    PeerAuthenticationSpec, Source,
};
use super::{ConfigSet, Loaded, Resource, ResourceKind};
use crate::model::{ConditionKey, ConditionKeyError, Glob, IpNet};
use crate::spiffe::{DEFAULT_TRUST_DOMAIN, SCHEME_PREFIX, SpiffeId};

/// The trust domain / cluster domain used to expand short host names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What the validator knows about the mesh the config is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The SPIFFE trust domain of workload identities (`mesh-control --trust-domain`):
    /// principals of another trust domain can never match. Default `cluster.local`.
    pub trust_domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
        }
    }
}

/// Validates every resource of `set` for a mesh with the default [`Options`] (trust domain
/// `cluster.local`), appending diagnostics to `set.diagnostics`.
pub fn validate(set: &mut ConfigSet) {
    validate_with(set, &Options::default());
}

/// Validates every resource of `set` for a mesh described by `options`, appending
/// diagnostics to `set.diagnostics`.
pub fn validate_with(set: &mut ConfigSet, options: &Options) {
    let subsets = SubsetIndex::build(&set.resources);
    let mut out = Vec::new();
    for loaded in &set.resources {
        let mut cx = Cx {
            origin: &loaded.origin,
            namespace: loaded.resource.namespace(),
            options,
            out: &mut out,
        };
        match &loaded.resource {
            Resource::VirtualService(vs) => virtual_service(&mut cx, &vs.spec, &subsets),
            Resource::DestinationRule(dr) => destination_rule(&mut cx, &dr.spec),
            Resource::Gateway(gw) => gateway(&mut cx, &gw.spec),
            Resource::ServiceEntry(se) => service_entry(&mut cx, &se.spec),
            Resource::WorkloadEntry(we) => workload_entry(&mut cx, &we.spec, "spec"),
            Resource::PeerAuthentication(pa) => peer_authentication(&mut cx, &pa.spec),
            Resource::AuthorizationPolicy(ap) => authorization_policy(&mut cx, &ap.spec),
            Resource::Service(svc) => kube_service(&mut cx, svc),
            Resource::HttpRoute(route) => http_route_regexes(&mut cx, route),
            Resource::GrpcRoute(_) | Resource::KubeGateway(_) => {}
        }
    }
    duplicates(&set.resources, &mut out);
    conflicting_hosts(&set.resources, &mut out);
    set.diagnostics.extend(out);
}

/// The validation context of one resource.
struct Cx<'a> {
    origin: &'a Origin,
    namespace: &'a str,
    options: &'a Options,
    out: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn report(
        &mut self,
        code: Code,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.out
            .push(Diagnostic::new(code, self.origin.at(path), message).with_fix(fix));
    }

    fn duration(&mut self, path: &str, value: Option<&str>) {
        if let Some(v) = value
            && let Err(e) = crate::duration::parse(v)
        {
            self.report(
                Code::InvalidDuration,
                path,
                e.to_string(),
                "write a number with a unit: ns, us, ms, s, m or h (e.g. `500ms`, `2s`, `1m30s`)",
            );
        }
    }

    fn percent(&mut self, path: &str, value: Option<f64>) {
        if let Some(v) = value
            && !(0.0..=100.0).contains(&v)
        {
            self.report(
                Code::InvalidPercentage,
                path,
                format!("percentage {v} is outside 0-100"),
                "use a value from 0 to 100, e.g. `percentage: {value: 10}` for 10 %",
            );
        }
    }

    fn port(&mut self, path: &str, port: u32) {
        if port == 0 || port > 65535 {
            self.report(
                Code::InvalidPort,
                path,
                format!("port {port} is not in 1-65535"),
                "use a TCP port number from 1 to 65535",
            );
        }
    }

    fn host(&mut self, path: &str, host: &str) {
        if let Err(why) = check_host(host) {
            self.report(
                Code::InvalidHost,
                path,
                format!("invalid host {host:?}: {why}"),
                "use a service name (`reviews`), an FQDN (`reviews.default.svc.cluster.local`) or a wildcard (`*.example.com`)",
            );
        }
    }

    fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (key, value) in labels {
            let mut p = path.to_string();
            super::load::push_key(&mut p, key);
            if let Err(why) = check_label_key(key) {
                self.report(
                    Code::InvalidLabel,
                    &p,
                    format!("invalid label key {key:?}: {why}"),
                    "label keys are `[prefix/]name`: name up to 63 of [A-Za-z0-9-_.], prefix a DNS subdomain",
                );
            } else if let Err(why) = check_label_value(value) {
                self.report(
                    Code::InvalidLabel,
                    &p,
                    format!("invalid label value {value:?}: {why}"),
                    "label values are up to 63 of [A-Za-z0-9-_.], starting and ending alphanumeric",
                );
            }
        }
    }

    fn cidr(&mut self, path: &str, value: &str) {
        if let Err(why) = value.parse::<crate::model::IpNet>() {
            self.report(
                Code::InvalidAddress,
                path,
                why.to_string(),
                "write an IP (`10.0.0.1`) or a CIDR (`10.0.0.0/8`, `fd00::/8`)",
            );
        }
    }
}

// === VirtualService ===

fn virtual_service(cx: &mut Cx<'_>, spec: &VirtualServiceSpec, subsets: &SubsetIndex) {
    if spec.hosts.is_empty() {
        cx.report(
            Code::InvalidHost,
            "spec.hosts",
            "a VirtualService needs at least one host",
            "list the service host(s) the rules apply to, e.g. `hosts: [reviews]`",
        );
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        cx.host(&format!("spec.hosts[{i}]"), host);
    }
    if spec.http.is_empty() && spec.tcp.is_empty() {
        cx.report(
            Code::InvalidRouteAction,
            "spec",
            "a VirtualService needs at least one `http` or `tcp` route",
            "add an `http:` route list (or `tcp:` for opaque traffic)",
        );
    }
    let mut names = HashMap::new();
    let mut catch_all: Option<usize> = None;
    for (i, route) in spec.http.iter().enumerate() {
        let path = format!("spec.http[{i}]");
        if let Some(first) = catch_all {
            cx.report(
                Code::Ineffective,
                &path,
                format!("this route can never match: route {first} above matches every request"),
                "move catch-all routes (no `match`) to the end of the list",
            );
        }
        if route.matches.is_empty() && catch_all.is_none() {
            catch_all = Some(i);
        }
        if let Some(name) = &route.name
            && let Some(prev) = names.insert(name.clone(), i)
        {
            cx.report(
                Code::DuplicateName,
                &format!("{path}.name"),
                format!("route name {name:?} is also used by route {prev}"),
                "give every route a unique name",
            );
        }
        http_route(cx, &path, route, subsets);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        if route.route.is_empty() {
            cx.report(
                Code::InvalidRouteAction,
                &format!("{path}.route"),
                "a TCP route needs at least one destination",
                "add `route: [{destination: {host: ...}}]`",
            );
        }
        for (j, m) in route.matches.iter().enumerate() {
            let mpath = format!("{path}.match[{j}]");
            if let Some(port) = m.port {
                cx.port(&format!("{mpath}.port"), port);
            }
            for (k, subnet) in m.destination_subnets.iter().enumerate() {
                cx.cidr(&format!("{mpath}.destinationSubnets[{k}]"), subnet);
            }
            cx.labels(&format!("{mpath}.sourceLabels"), &m.source_labels);
        }
        let weights: Vec<Option<i32>> = route.route.iter().map(|d| d.weight).collect();
        weights_check(cx, &format!("{path}.route"), &weights);
        for (j, d) in route.route.iter().enumerate() {
            destination(
                cx,
                &format!("{path}.route[{j}].destination"),
                &d.destination,
                subsets,
            );
        }
    }
}

fn http_route(cx: &mut Cx<'_>, path: &str, route: &HttpRoute, subsets: &SubsetIndex) {
    let actions = usize::from(!route.route.is_empty())
        + usize::from(route.redirect.is_some())
        + usize::from(route.direct_response.is_some());
    if actions != 1 {
        let message = if actions == 0 {
            "the route has no action".to_string()
        } else {
            "the route has more than one action".to_string()
        };
        cx.report(
            Code::InvalidRouteAction,
            path,
            message,
            "give each http route exactly one of `route`, `redirect` or `directResponse`",
        );
    }
    for (j, m) in route.matches.iter().enumerate() {
        let mpath = format!("{path}.match[{j}]");
        for (field, sm) in [
            ("uri", &m.uri),
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                string_match(cx, &format!("{mpath}.{field}"), sm);
            }
        }
        for (field, map) in [
            ("headers", &m.headers),
            ("withoutHeaders", &m.without_headers),
            ("queryParams", &m.query_params),
        ] {
            for (key, sm) in map {
                let mut p = format!("{mpath}.{field}");
                super::load::push_key(&mut p, key);
                string_match(cx, &p, sm);
            }
        }
        if let Some(port) = m.port {
            cx.port(&format!("{mpath}.port"), port);
        }
        cx.labels(&format!("{mpath}.sourceLabels"), &m.source_labels);
    }
    let weights: Vec<Option<i32>> = route
        .route
        .iter()
        .map(|d: &HttpRouteDestination| d.weight)
        .collect();
    weights_check(cx, &format!("{path}.route"), &weights);
    for (j, d) in route.route.iter().enumerate() {
        destination(
            cx,
            &format!("{path}.route[{j}].destination"),
            &d.destination,
            subsets,
        );
    }
    cx.duration(&format!("{path}.timeout"), route.timeout.as_deref());
    if let Some(retries) = &route.retries {
        let rpath = format!("{path}.retries");
        if retries.attempts < 0 {
            cx.report(
                Code::InvalidValue,
                &format!("{rpath}.attempts"),
                format!("retry attempts {} is negative", retries.attempts),
                "use 0 to disable retries, or a small positive number such as 3",
            );
        }
        cx.duration(
            &format!("{rpath}.perTryTimeout"),
            retries.per_try_timeout.as_deref(),
        );
        if let Some(retry_on) = &retries.retry_on {
            for cond in retry_on.split(',').map(str::trim) {
                if !valid_retry_on(cond) {
                    cx.report(
                        Code::InvalidRetryOn,
                        &format!("{rpath}.retryOn"),
                        format!("unknown retry condition {cond:?}"),
                        format!(
                            "use a comma-separated list of: {}, or HTTP status codes",
                            RETRY_ON.join(", ")
                        ),
                    );
                }
            }
        }
    }
    if let Some(fault) = &route.fault {
        let fpath = format!("{path}.fault");
        if let Some(delay) = &fault.delay {
            cx.duration(
                &format!("{fpath}.delay.fixedDelay"),
                Some(&delay.fixed_delay),
            );
            cx.percent(
                &format!("{fpath}.delay.percentage.value"),
                delay.percentage.as_ref().map(|p| p.value),
            );
        }
        if let Some(abort) = &fault.abort {
            let apath = format!("{fpath}.abort");
            cx.percent(
                &format!("{apath}.percentage.value"),
                abort.percentage.as_ref().map(|p| p.value),
            );
            match (abort.http_status, &abort.grpc_status) {
                (Some(_), Some(_)) | (None, None) => cx.report(
                    Code::InvalidStatus,
                    &apath,
                    "an abort needs exactly one of `httpStatus` or `grpcStatus`",
                    "set `httpStatus: 503` for HTTP, or `grpcStatus: UNAVAILABLE` for gRPC",
                ),
                (Some(status), None) if !(200..=599).contains(&status) => cx.report(
                    Code::InvalidStatus,
                    &format!("{apath}.httpStatus"),
                    format!("HTTP status {status} is not in 200-599"),
                    "use an HTTP status from 200 to 599, e.g. 503",
                ),
                (None, Some(name)) if !GRPC_STATUS.contains(&name.as_str()) => cx.report(
                    Code::InvalidStatus,
                    &format!("{apath}.grpcStatus"),
                    format!("unknown gRPC status {name:?}"),
                    format!("use one of {}", GRPC_STATUS.join(", ")),
                ),
                _ => {}
            }
        }
        if fault.delay.is_none() && fault.abort.is_none() {
            cx.report(
                Code::Ineffective,
                &fpath,
                "the fault has neither `delay` nor `abort`",
                "add a `delay` or an `abort`, or remove `fault`",
            );
        }
    }
    if let Some(mirror) = &route.mirror {
        destination(cx, &format!("{path}.mirror"), mirror, subsets);
    }
    cx.percent(
        &format!("{path}.mirrorPercentage.value"),
        route.mirror_percentage.as_ref().map(|p| p.value),
    );
    if route.mirror_percentage.is_some() && route.mirror.is_none() {
        cx.report(
            Code::Ineffective,
            &format!("{path}.mirrorPercentage"),
            "`mirrorPercentage` has no effect without `mirror`",
            "add `mirror: {host: ...}` or remove `mirrorPercentage`",
        );
    }
    if let Some(redirect) = &route.redirect {
        if let Some(code) = redirect.redirect_code
            && !matches!(code, 301 | 302 | 303 | 307 | 308)
        {
            cx.report(
                Code::InvalidStatus,
                &format!("{path}.redirect.redirectCode"),
                format!("redirect code {code} is not a redirect status"),
                "use 301, 302, 303, 307 or 308",
            );
        }
        if let Some(port) = redirect.port {
            cx.port(&format!("{path}.redirect.port"), port);
        }
    }
    if let Some(direct) = &route.direct_response
        && !(200..=599).contains(&direct.status)
    {
        cx.report(
            Code::InvalidStatus,
            &format!("{path}.directResponse.status"),
            format!("HTTP status {} is not in 200-599", direct.status),
            "use an HTTP status from 200 to 599",
        );
    }
    if route.rewrite.is_some() && route.route.is_empty() {
        cx.report(
            Code::Ineffective,
            &format!("{path}.rewrite"),
            "`rewrite` only applies to forwarded requests (`route`)",
            "add a `route`, or drop `rewrite`",
        );
    }
}

/// The `retryOn` conditions the proxy implements.
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

fn valid_retry_on(cond: &str) -> bool {
    RETRY_ON.contains(&cond)
        || (cond.len() == 3 && cond.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c)))
}

/// gRPC status names, as Istio writes them.
pub const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn string_match(cx: &mut Cx<'_>, path: &str, sm: &StringMatch) {
    let set = usize::from(sm.exact.is_some())
        + usize::from(sm.prefix.is_some())
        + usize::from(sm.regex.is_some());
    if set != 1 {
        cx.report(
            Code::InvalidStringMatch,
            path,
            if set == 0 {
                "the match sets none of `exact`, `prefix`, `regex`".to_string()
            } else {
                "the match sets more than one of `exact`, `prefix`, `regex`".to_string()
            },
            "set exactly one, e.g. `uri: {prefix: /api}`",
        );
    }
    if let Some(re) = &sm.regex
        && let Err(e) = compile_regex(re)
    {
        cx.report(
            Code::InvalidRegex,
            &format!("{path}.regex"),
            format!("invalid regex {re:?}: {}", one_line(&e)),
            "use RE2 syntax (no look-around or backreferences); the regex must match the whole value, e.g. `/api/v[0-9]+/.*`",
        );
    }
}

/// Compiles a config regex the way the proxy will: anchored, with a size limit so a
/// pathological pattern cannot exhaust memory.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

fn one_line(s: &str) -> String {
    // The regex crate's errors are multi-line drawings; keep the last line (the reason).
    let last = s
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(s);
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn weights_check(cx: &mut Cx<'_>, path: &str, weights: &[Option<i32>]) {
    let mut any_set = false;
    let mut sum: i64 = 0;
    for (i, w) in weights.iter().enumerate() {
        if let Some(w) = *w {
            any_set = true;
            sum += i64::from(w);
            if !(0..=100).contains(&w) {
                cx.report(
                    Code::WeightRange,
                    &format!("{path}[{i}].weight"),
                    format!("weight {w} is outside 0-100"),
                    "weights are percentages from 0 to 100",
                );
            }
        }
    }
    if weights.len() > 1 && !any_set {
        cx.report(
            Code::WeightSum,
            path,
            format!("{} destinations but no weights", weights.len()),
            "give every destination a `weight`, summing to 100 (e.g. 90 and 10)",
        );
    } else if any_set && sum != 100 {
        let listed: Vec<String> = weights.iter().map(|w| w.unwrap_or(0).to_string()).collect();
        cx.report(
            Code::WeightSum,
            path,
            format!("weights sum to {sum}, not 100 ({})", listed.join(" + ")),
            if sum < 100 {
                format!(
                    "adjust the weights so they add up to 100 (they are {} short)",
                    100 - sum
                )
            } else {
                format!(
                    "adjust the weights so they add up to 100 (they are {} over)",
                    sum - 100
                )
            },
        );
    }
}

fn destination(cx: &mut Cx<'_>, path: &str, d: &Destination, subsets: &SubsetIndex) {
    if d.host.is_empty() {
        cx.report(
            Code::InvalidHost,
            &format!("{path}.host"),
            "empty destination host",
            "name the service, e.g. `host: reviews`",
        );
    } else {
        cx.host(&format!("{path}.host"), &d.host);
    }
    if let Some(port) = &d.port {
        cx.port(&format!("{path}.port.number"), port.number);
    }
    if let Some(subset) = &d.subset {
        let host = fqdn(&d.host, cx.namespace);
        match subsets.by_host.get(&host) {
            Some(defined) if defined.contains(subset) => {}
            Some(defined) => cx.report(
                Code::UndefinedSubset,
                &format!("{path}.subset"),
                format!(
                    "subset {subset:?} is not defined for host {:?} (defined: {})",
                    d.host,
                    defined.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
                ),
                format!("add a subset named {subset:?} to the DestinationRule for {:?}, or use a defined one", d.host),
            ),
            None => cx.report(
                Code::UndefinedSubset,
                &format!("{path}.subset"),
                format!("subset {subset:?} is not defined: no DestinationRule for host {:?} was found", d.host),
                format!(
                    "add a DestinationRule with `host: {}` and `subsets: [{{name: {subset}, labels: {{version: ...}}}}]` (if it lives in another file, analyze both files together)",
                    d.host
                ),
            ),
        }
    }
}

/// Which subsets each host's DestinationRules define.
struct SubsetIndex {
    by_host: HashMap<String, BTreeSet<String>>,
}

impl SubsetIndex {
    fn build(resources: &[Loaded]) -> Self {
        let mut by_host: HashMap<String, BTreeSet<String>> = HashMap::new();
        for loaded in resources {
            if let Resource::DestinationRule(dr) = &loaded.resource {
                let host = fqdn(&dr.spec.host, loaded.resource.namespace());
                by_host
                    .entry(host)
                    .or_default()
                    .extend(dr.spec.subsets.iter().map(|s| s.name.clone()));
            }
        }
        Self { by_host }
    }
}

/// Expands a short host name (`reviews`) to its FQDN in `namespace`
/// (`reviews.<namespace>.svc.cluster.local`); names with a dot are already qualified.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.contains('.') || host.contains('*') {
        host
    } else {
        format!("{host}.{namespace}.svc.{CLUSTER_DOMAIN}")
    }
}

// === DestinationRule ===

fn destination_rule(cx: &mut Cx<'_>, spec: &DestinationRuleSpec) {
    if spec.host.is_empty() {
        cx.report(
            Code::InvalidHost,
            "spec.host",
            "empty host",
            "name the service the rule is for, e.g. `host: reviews`",
        );
    } else {
        cx.host("spec.host", &spec.host);
    }
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(cx, "spec.trafficPolicy", tp);
    }
    let mut seen = HashMap::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let path = format!("spec.subsets[{i}]");
        if let Err(why) = check_dns_label(&subset.name) {
            cx.report(
                Code::InvalidName,
                &format!("{path}.name"),
                format!("invalid subset name {:?}: {why}", subset.name),
                "subset names are DNS labels, e.g. `v1`, `canary`",
            );
        }
        if let Some(prev) = seen.insert(subset.name.as_str(), i) {
            cx.report(
                Code::DuplicateName,
                &format!("{path}.name"),
                format!(
                    "subset {:?} is also defined at subsets[{prev}]",
                    subset.name
                ),
                "give every subset a unique name",
            );
        }
        cx.labels(&format!("{path}.labels"), &subset.labels);
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(cx, &format!("{path}.trafficPolicy"), tp);
        }
    }
}

fn traffic_policy(cx: &mut Cx<'_>, path: &str, tp: &TrafficPolicy) {
    type Parts<'a> = (
        Option<&'a super::networking::ConnectionPoolSettings>,
        Option<&'a super::networking::OutlierDetection>,
    );
    let mut parts: Vec<(String, Parts<'_>)> = vec![(
        path.to_string(),
        (tp.connection_pool.as_ref(), tp.outlier_detection.as_ref()),
    )];
    let mut ports = HashMap::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let ppath = format!("{path}.portLevelSettings[{i}]");
        cx.port(&format!("{ppath}.port.number"), pl.port.number);
        if let Some(prev) = ports.insert(pl.port.number, i) {
            cx.report(
                Code::InvalidPort,
                &format!("{ppath}.port.number"),
                format!(
                    "port {} also has settings at portLevelSettings[{prev}]",
                    pl.port.number
                ),
                "merge the settings for one port into one entry",
            );
        }
        parts.push((
            ppath,
            (pl.connection_pool.as_ref(), pl.outlier_detection.as_ref()),
        ));
    }
    for (p, (pool, outlier)) in parts {
        if let Some(pool) = pool {
            if let Some(tcp) = &pool.tcp {
                cx.duration(
                    &format!("{p}.connectionPool.tcp.connectTimeout"),
                    tcp.connect_timeout.as_deref(),
                );
                cx.duration(
                    &format!("{p}.connectionPool.tcp.idleTimeout"),
                    tcp.idle_timeout.as_deref(),
                );
                cx.duration(
                    &format!("{p}.connectionPool.tcp.maxConnectionDuration"),
                    tcp.max_connection_duration.as_deref(),
                );
                non_negative(
                    cx,
                    &format!("{p}.connectionPool.tcp.maxConnections"),
                    tcp.max_connections,
                );
            }
            if let Some(http) = &pool.http {
                cx.duration(
                    &format!("{p}.connectionPool.http.idleTimeout"),
                    http.idle_timeout.as_deref(),
                );
                for (field, v) in [
                    ("http1MaxPendingRequests", http.http1_max_pending_requests),
                    ("http2MaxRequests", http.http2_max_requests),
                    ("maxRequestsPerConnection", http.max_requests_per_connection),
                    ("maxRetries", http.max_retries),
                ] {
                    non_negative(cx, &format!("{p}.connectionPool.http.{field}"), v);
                }
            }
        }
        if let Some(od) = outlier {
            let op = format!("{p}.outlierDetection");
            cx.duration(&format!("{op}.interval"), od.interval.as_deref());
            cx.duration(
                &format!("{op}.baseEjectionTime"),
                od.base_ejection_time.as_deref(),
            );
            for (field, v) in [
                ("maxEjectionPercent", od.max_ejection_percent),
                ("minHealthPercent", od.min_health_percent),
            ] {
                if let Some(v) = v
                    && !(0..=100).contains(&v)
                {
                    cx.report(
                        Code::InvalidPercentage,
                        &format!("{op}.{field}"),
                        format!("{field} {v} is outside 0-100"),
                        "use a percentage from 0 to 100",
                    );
                }
            }
        }
    }
}

fn non_negative(cx: &mut Cx<'_>, path: &str, v: Option<i32>) {
    if let Some(v) = v
        && v < 0
    {
        cx.report(
            Code::InvalidValue,
            path,
            format!("{v} is negative"),
            "use 0 or a positive number",
        );
    }
}

// === Gateway ===

/// Listener protocols a Gateway or ServiceEntry port may declare.
pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS", "MONGO", "MYSQL", "REDIS",
];

fn gateway(cx: &mut Cx<'_>, spec: &GatewaySpec) {
    if spec.servers.is_empty() {
        cx.report(
            Code::InvalidProtocol,
            "spec.servers",
            "a Gateway needs at least one server",
            "add `servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]`",
        );
    }
    cx.labels("spec.selector", &spec.selector);
    let mut ports: HashMap<u32, (usize, String)> = HashMap::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        cx.port(&format!("{path}.port.number"), server.port.number);
        let protocol = server.port.protocol.to_ascii_uppercase();
        if !PROTOCOLS.contains(&protocol.as_str()) {
            cx.report(
                Code::InvalidProtocol,
                &format!("{path}.port.protocol"),
                format!("unknown protocol {:?}", server.port.protocol),
                format!("use one of {}", PROTOCOLS.join(", ")),
            );
        }
        if let Some((prev, prev_protocol)) = ports.insert(server.port.number, (i, protocol.clone()))
            && prev_protocol != protocol
        {
            cx.report(
                Code::InvalidPort,
                &format!("{path}.port"),
                format!(
                    "port {} is {protocol} here but {prev_protocol} in servers[{prev}]",
                    server.port.number
                ),
                "use one protocol per port",
            );
        }
        if server.hosts.is_empty() {
            cx.report(
                Code::InvalidHost,
                &format!("{path}.hosts"),
                "a server needs at least one host",
                "add `hosts: ['*']` or the hosts to expose",
            );
        }
        for (j, host) in server.hosts.iter().enumerate() {
            // `namespace/host` restricts which namespaces' VirtualServices may bind.
            let h = host.rsplit_once('/').map_or(host.as_str(), |(_, h)| h);
            cx.host(&format!("{path}.hosts[{j}]"), h);
        }
        let tls_needed = matches!(protocol.as_str(), "HTTPS" | "TLS");
        match &server.tls {
            None if tls_needed => cx.report(
                Code::InvalidProtocol,
                &format!("{path}.tls"),
                format!("a {protocol} server needs `tls` settings"),
                "add `tls: {mode: SIMPLE, credentialName: <secret>}`",
            ),
            Some(tls) => {
                use super::networking::ServerTlsMode;
                if matches!(
                    tls.mode,
                    Some(ServerTlsMode::Simple | ServerTlsMode::Mutual)
                ) && tls.credential_name.is_none()
                {
                    cx.report(
                        Code::InvalidProtocol,
                        &format!("{path}.tls.credentialName"),
                        "TLS termination needs a certificate",
                        "set `credentialName` to the Secret (or local credential directory) holding tls.crt and tls.key",
                    );
                }
                if let Some(v) = &tls.min_protocol_version
                    && !matches!(v.as_str(), "TLSV1_2" | "TLSV1_3" | "TLS_AUTO")
                {
                    cx.report(
                        Code::InvalidProtocol,
                        &format!("{path}.tls.minProtocolVersion"),
                        format!("unsupported TLS version {v:?}"),
                        "use TLSV1_2 or TLSV1_3 (older versions are not offered)",
                    );
                }
            }
            None => {}
        }
    }
}

// === ServiceEntry / WorkloadEntry ===

fn service_entry(cx: &mut Cx<'_>, spec: &ServiceEntrySpec) {
    use super::networking::ServiceEntryResolution;
    if spec.hosts.is_empty() {
        cx.report(
            Code::InvalidHost,
            "spec.hosts",
            "a ServiceEntry needs at least one host",
            "list the host names, e.g. `hosts: [api.example.com]`",
        );
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        cx.host(&format!("spec.hosts[{i}]"), host);
    }
    for (i, addr) in spec.addresses.iter().enumerate() {
        cx.cidr(&format!("spec.addresses[{i}]"), addr);
    }
    if spec.ports.is_empty() {
        cx.report(
            Code::InvalidPort,
            "spec.ports",
            "a ServiceEntry needs at least one port",
            "add `ports: [{number: 443, name: https, protocol: TLS}]`",
        );
    }
    let mut numbers = HashMap::new();
    let mut names = HashMap::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        cx.port(&format!("{path}.number"), port.number);
        if let Some(t) = port.target_port {
            cx.port(&format!("{path}.targetPort"), t);
        }
        if let Some(prev) = numbers.insert(port.number, i) {
            cx.report(
                Code::InvalidPort,
                &format!("{path}.number"),
                format!("port {} is also declared at ports[{prev}]", port.number),
                "declare each port once",
            );
        }
        if let Some(prev) = names.insert(port.name.as_str(), i) {
            cx.report(
                Code::DuplicateName,
                &format!("{path}.name"),
                format!("port name {:?} is also used by ports[{prev}]", port.name),
                "give every port a unique name",
            );
        }
        if let Some(p) = &port.protocol
            && !PROTOCOLS.contains(&p.to_ascii_uppercase().as_str())
        {
            cx.report(
                Code::InvalidProtocol,
                &format!("{path}.protocol"),
                format!("unknown protocol {p:?}"),
                format!("use one of {}", PROTOCOLS.join(", ")),
            );
        }
    }
    if spec.resolution == Some(ServiceEntryResolution::Static)
        && spec.endpoints.is_empty()
        && spec.workload_selector.is_none()
    {
        cx.report(
            Code::Ineffective,
            "spec.endpoints",
            "STATIC resolution with no endpoints and no workloadSelector has nowhere to send traffic",
            "list `endpoints`, add a `workloadSelector`, or use `resolution: DNS`",
        );
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        cx.report(
            Code::InvalidValue,
            "spec.workloadSelector",
            "`workloadSelector` and `endpoints` cannot be combined",
            "use one: static `endpoints` or WorkloadEntries selected by labels",
        );
    }
    if let Some(sel) = &spec.workload_selector {
        cx.labels("spec.workloadSelector.labels", &sel.labels);
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}]");
        workload_entry(cx, ep, &path);
        for name in ep.ports.keys() {
            if !names.contains_key(name.as_str()) {
                let mut p = format!("{path}.ports");
                super::load::push_key(&mut p, name);
                cx.report(
                    Code::InvalidPort,
                    &p,
                    format!("port name {name:?} is not one of the entry's ports"),
                    "use a name from `spec.ports[].name`",
                );
            }
        }
    }
}

fn workload_entry(cx: &mut Cx<'_>, spec: &WorkloadEntrySpec, path: &str) {
    if spec.address.is_empty() {
        cx.report(
            Code::InvalidAddress,
            &format!("{path}.address"),
            "empty address",
            "set the workload's IP address, e.g. `address: 10.0.0.12`",
        );
    } else if spec.address.parse::<IpAddr>().is_err() && check_host(&spec.address).is_err() {
        cx.report(
            Code::InvalidAddress,
            &format!("{path}.address"),
            format!(
                "{:?} is neither an IP address nor a host name",
                spec.address
            ),
            "set an IP address such as `10.0.0.12` (or a DNS name with DNS resolution)",
        );
    }
    for (name, port) in &spec.ports {
        let mut p = format!("{path}.ports");
        super::load::push_key(&mut p, name);
        cx.port(&p, *port);
    }
    cx.labels(&format!("{path}.labels"), &spec.labels);
    if let Some(sa) = &spec.service_account
        && let Err(why) = check_dns_subdomain(sa)
    {
        cx.report(
            Code::InvalidName,
            &format!("{path}.serviceAccount"),
            format!("invalid service account {sa:?}: {why}"),
            "use the Kubernetes-style name of the service account",
        );
    }
}

// === Kubernetes Service ===

fn kube_service(cx: &mut Cx<'_>, svc: &k8s_openapi::api::core::v1::Service) {
    let Some(spec) = &svc.spec else {
        cx.report(
            Code::InvalidValue,
            "spec",
            "a Service needs a `spec` with `ports`",
            "add `spec: {selector: {...}, ports: [{port: 80, name: http}]}`",
        );
        return;
    };
    if let Some(ip) = &spec.cluster_ip
        && ip != "None"
        && !ip.is_empty()
        && ip.parse::<IpAddr>().is_err()
    {
        cx.report(
            Code::InvalidAddress,
            "spec.clusterIP",
            format!("clusterIP {ip:?} is not an IP address"),
            "use an IP address, or `None` for a headless service",
        );
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() {
        cx.report(
            Code::InvalidPort,
            "spec.ports",
            "a Service needs at least one port",
            "add `ports: [{port: 80, name: http}]`",
        );
    }
    let mut numbers = HashMap::new();
    let mut names = HashMap::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        if !(1..=65535).contains(&p.port) {
            cx.report(
                Code::InvalidPort,
                &format!("{path}.port"),
                format!("port {} is not in 1-65535", p.port),
                "use a TCP port number from 1 to 65535",
            );
        }
        if let Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(t)) =
            &p.target_port
            && !(1..=65535).contains(t)
        {
            cx.report(
                Code::InvalidPort,
                &format!("{path}.targetPort"),
                format!("targetPort {t} is not in 1-65535"),
                "use the container's port number or name",
            );
        }
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if let Some(prev) = numbers.insert((p.port, proto.to_string()), i) {
            cx.report(
                Code::InvalidPort,
                &format!("{path}.port"),
                format!("port {} is also declared at ports[{prev}]", p.port),
                "declare each port once",
            );
        }
        if let Some(name) = &p.name
            && let Some(prev) = names.insert(name.clone(), i)
        {
            cx.report(
                Code::DuplicateName,
                &format!("{path}.name"),
                format!("port name {name:?} is also used by ports[{prev}]"),
                "give every port a unique name",
            );
        }
        if ports.len() > 1 && p.name.is_none() {
            cx.report(
                Code::InvalidName,
                &path,
                "ports of a multi-port Service need names",
                "name the port after its protocol, e.g. `name: http` or `name: grpc`",
            );
        }
    }
    if let Some(selector) = &spec.selector {
        cx.labels("spec.selector", selector);
    }
}

// === Gateway API ===

fn http_route_regexes(cx: &mut Cx<'_>, route: &super::HttpRoute) {
    use gateway_api::httproutes::HttpRouteRulesMatchesPathType as PathType;
    for (i, rule) in route.spec.rules.iter().flatten().enumerate() {
        for (j, m) in rule.matches.iter().flatten().enumerate() {
            if let Some(path) = &m.path
                && path.r#type == Some(PathType::RegularExpression)
                && let Some(value) = &path.value
                && let Err(e) = compile_regex(value)
            {
                cx.report(
                    Code::InvalidRegex,
                    &format!("spec.rules[{i}].matches[{j}].path.value"),
                    format!("invalid regex {value:?}: {}", one_line(&e)),
                    "use RE2 syntax; the regex must match the whole path",
                );
            }
        }
    }
}

// === PeerAuthentication / AuthorizationPolicy ===

fn peer_authentication(cx: &mut Cx<'_>, spec: &PeerAuthenticationSpec) {
    if let Some(sel) = &spec.selector {
        cx.labels("spec.selector.matchLabels", &sel.match_labels);
    }
    if !spec.port_level_mtls.is_empty() && spec.selector.is_none() {
        cx.report(
            Code::InvalidMtls,
            "spec.portLevelMtls",
            "`portLevelMtls` needs a `selector`: ports are a workload's, not a namespace's",
            "add `selector: {matchLabels: {app: ...}}` for the workload whose ports these are",
        );
    }
    for (port, mtls) in &spec.port_level_mtls {
        let path = format!("spec.portLevelMtls[\"{port}\"]");
        cx.port(&path, *port);
        if mtls.mode == MtlsMode::Unset {
            cx.report(
                Code::Ineffective,
                &format!("{path}.mode"),
                "UNSET at port level has no effect",
                "set STRICT, PERMISSIVE or DISABLE, or remove the entry",
            );
        }
    }
}

/// The `when` keys the proxy evaluates, as messages spell them. Whether a key is valid is
/// decided by the model's parser ([`condition_key`]), never by this list; a test keeps the
/// list and [`ConditionKey`] in step.
pub const CONDITION_KEYS: &[&str] = &[
    "request.headers[<name>]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

/// Parses a `when` key as the control plane does when it translates a policy: header names
/// are case-insensitive (the model keeps them lower-case); the rest is [`ConditionKey`]'s
/// own syntax, so `analyze` accepts exactly the keys the proxy evaluates.
pub fn condition_key(key: &str) -> Result<ConditionKey, ConditionKeyError> {
    if key.starts_with("request.headers[") {
        key.to_ascii_lowercase().parse()
    } else {
        key.parse()
    }
}

fn authorization_policy(cx: &mut Cx<'_>, spec: &AuthorizationPolicySpec) {
    if let Some(sel) = &spec.selector {
        cx.labels("spec.selector.matchLabels", &sel.match_labels);
    }
    let action = spec.action.unwrap_or_default();
    if spec.rules.is_empty() && action == AuthorizationAction::Allow {
        cx.report(
            Code::Ineffective,
            "spec.rules",
            "an ALLOW policy with no rules allows nothing: every request to the selected workloads is denied",
            "if that is the intent, keep it (`spec: {}` is the idiom); to allow everything use `rules: [{}]`",
        );
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        for (j, from) in rule.from.iter().enumerate() {
            let sp = format!("{path}.from[{j}].source");
            authz_source(cx, &sp, &from.source, action);
            if action == AuthorizationAction::Allow
                && let Some(field) = matches_plaintext(&from.source, &rule.when)
            {
                let attribute = if field == "notPrincipals" {
                    "principal"
                } else {
                    "namespace"
                };
                cx.report(
                    Code::PlaintextAllowed,
                    &format!("{sp}.{field}"),
                    format!(
                        "this source also matches plaintext requests: they have no {attribute}, so `{field}` holds for them and the rule allows them wherever mTLS is PERMISSIVE or DISABLE"
                    ),
                    "add `principals: [\"*\"]` to the source to require mTLS (any peer but the excluded ones)",
                );
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let op = format!("{path}.to[{j}].operation");
            authz_operation(cx, &op, &to.operation, action);
        }
        for (j, cond) in rule.when.iter().enumerate() {
            authz_condition(cx, &format!("{path}.when[{j}]"), cond, action);
        }
    }
}

/// A field and its `not` form: `(name, values, negated)`.
fn field_pair<'a>(
    name: &'static str,
    values: &'a [String],
    not_name: &'static str,
    not_values: &'a [String],
) -> [(&'static str, &'a [String], bool); 2] {
    [(name, values, false), (not_name, not_values, true)]
}

/// How a value that matches nothing fails: a positive field never matches, a negated one
/// never excludes.
fn never(negated: bool) -> &'static str {
    if negated {
        "never excludes anything"
    } else {
        "can never match"
    }
}

/// What the control plane does with a rule it cannot translate (it fails closed).
fn fails_closed(action: AuthorizationAction) -> &'static str {
    match action {
        AuthorizationAction::Deny => {
            "the control plane makes this DENY rule match every request (it fails closed)"
        }
        AuthorizationAction::Allow | AuthorizationAction::Audit => {
            "the control plane drops this rule, so it allows nothing (it fails closed)"
        }
    }
}

fn authz_source(cx: &mut Cx<'_>, sp: &str, s: &Source, action: AuthorizationAction) {
    for (field, list, negated) in field_pair(
        "principals",
        &s.principals,
        "notPrincipals",
        &s.not_principals,
    ) {
        for (k, p) in list.iter().enumerate() {
            principal(cx, &format!("{sp}.{field}[{k}]"), p, negated);
        }
    }
    for (field, list, negated) in field_pair(
        "namespaces",
        &s.namespaces,
        "notNamespaces",
        &s.not_namespaces,
    ) {
        for (k, ns) in list.iter().enumerate() {
            let path = format!("{sp}.{field}[{k}]");
            if authz_glob(cx, &path, ns, action) {
                namespace(cx, &path, ns, negated);
            }
        }
    }
    for (field, list, _) in field_pair("ipBlocks", &s.ip_blocks, "notIpBlocks", &s.not_ip_blocks) {
        for (k, b) in list.iter().enumerate() {
            ip_block(cx, &format!("{sp}.{field}[{k}]"), b);
        }
    }
}

fn authz_operation(cx: &mut Cx<'_>, op: &str, o: &Operation, action: AuthorizationAction) {
    for (field, list, _) in field_pair("ports", &o.ports, "notPorts", &o.not_ports) {
        for (k, p) in list.iter().enumerate() {
            match p.parse::<u32>() {
                Ok(n) => cx.port(&format!("{op}.{field}[{k}]"), n),
                Err(_) => cx.report(
                    Code::InvalidPort,
                    &format!("{op}.{field}[{k}]"),
                    format!("port {p:?} is not a number"),
                    "write ports as quoted numbers, e.g. \"8080\"",
                ),
            }
        }
    }
    for (field, list, negated) in field_pair("hosts", &o.hosts, "notHosts", &o.not_hosts) {
        for (k, h) in list.iter().enumerate() {
            let path = format!("{op}.{field}[{k}]");
            if !authz_glob(cx, &path, h, action) {
                continue;
            }
            if let Some((host, port)) = host_port(h) {
                let ports = if port == "*" {
                    String::new()
                } else {
                    format!(
                        "; to restrict the port, add `ports: [\"{port}\"]` (the workload's port)"
                    )
                };
                cx.report(
                    Code::HostWithPort,
                    &path,
                    format!(
                        "host {h:?} {}: authorization compares the request's host without its port",
                        never(negated)
                    ),
                    format!("write {host:?}{ports}"),
                );
            }
        }
    }
    for (field, list, negated) in field_pair("paths", &o.paths, "notPaths", &o.not_paths) {
        for (k, p) in list.iter().enumerate() {
            let path = format!("{op}.{field}[{k}]");
            if !authz_glob(cx, &path, p, action) {
                continue;
            }
            if !(p.starts_with('/') || p.starts_with('*')) {
                cx.report(
                    Code::Ineffective,
                    &path,
                    format!(
                        "path {p:?} {}: request paths start with `/`",
                        never(negated)
                    ),
                    format!("write it as \"/{p}\""),
                );
            }
            if let Some(cut) = p.find(['?', '#']) {
                cx.report(
                    Code::PathWithQuery,
                    &path,
                    format!(
                        "path {p:?} {}: the path authorization compares has no query string or fragment",
                        never(negated)
                    ),
                    format!(
                        "write the path alone, {:?}; authorization policies cannot test query parameters",
                        &p[..cut]
                    ),
                );
            }
        }
    }
    for (field, list, negated) in field_pair("methods", &o.methods, "notMethods", &o.not_methods) {
        for (k, m) in list.iter().enumerate() {
            if m.chars().any(|c| c.is_ascii_lowercase()) {
                cx.report(
                    Code::Ineffective,
                    &format!("{op}.{field}[{k}]"),
                    format!(
                        "method {m:?} {}: HTTP methods are upper case",
                        never(negated)
                    ),
                    format!("write it as {:?}", m.to_ascii_uppercase()),
                );
            }
        }
    }
}

fn authz_condition(cx: &mut Cx<'_>, cp: &str, cond: &Condition, action: AuthorizationAction) {
    let key = match condition_key(&cond.key) {
        Ok(key) => Some(key),
        Err(e) => {
            cx.report(
                Code::InvalidConditionKey,
                &format!("{cp}.key"),
                format!("{e}; {}", fails_closed(action)),
                condition_key_fix(&cond.key),
            );
            None
        }
    };
    if cond.values.is_empty() && cond.not_values.is_empty() {
        cx.report(
            Code::InvalidValue,
            cp,
            format!(
                "a condition needs `values` or `notValues`; {}",
                fails_closed(action)
            ),
            "add `values: [...]`",
        );
    }
    let Some(key) = key else { return };
    for (field, list, negated) in field_pair("values", &cond.values, "notValues", &cond.not_values)
    {
        for (k, v) in list.iter().enumerate() {
            let path = format!("{cp}.{field}[{k}]");
            match key {
                ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                    ip_block(cx, &path, v);
                }
                ConditionKey::DestinationPort => {
                    if !v.parse::<u16>().is_ok_and(|p| p != 0) {
                        cx.report(
                            Code::InvalidPort,
                            &path,
                            format!("{v:?} is not a port number; {}", fails_closed(action)),
                            "write a port from 1 to 65535, e.g. \"8080\"",
                        );
                    }
                }
                ConditionKey::SourcePrincipal => principal(cx, &path, v, negated),
                ConditionKey::SourceNamespace => {
                    if authz_glob(cx, &path, v, action) {
                        namespace(cx, &path, v, negated);
                    }
                }
                _ => {
                    authz_glob(cx, &path, v, action);
                }
            }
        }
    }
}

/// The fix for an unknown `when` key (the message lists the supported ones): where the
/// usual mistakes belong.
fn condition_key_fix(key: &str) -> String {
    match key {
        "request.method" => "match methods in the rule's `to`: `to: [{operation: {methods: [GET]}}]`".to_owned(),
        "request.host" => "match hosts in the rule's `to`: `to: [{operation: {hosts: [...]}}]`".to_owned(),
        "request.path" => "match paths in the rule's `to`: `to: [{operation: {paths: [...]}}]`".to_owned(),
        k if k.starts_with("request.auth.") => "request authentication (JWT) is not supported: match the peer with `source.principal`, or a header with `request.headers[<name>]`".to_owned(),
        k if k.starts_with("request.headers[") => {
            "write a valid header name inside the brackets, e.g. `request.headers[x-user]`".to_owned()
        }
        _ => format!("use one of {}", CONDITION_KEYS.join(", ")),
    }
}

/// Checks an authorization value the control plane parses as a [`Glob`]; reports what it
/// cannot translate and returns whether the value is usable.
fn authz_glob(cx: &mut Cx<'_>, path: &str, v: &str, action: AuthorizationAction) -> bool {
    let why = if v.is_empty() {
        "an empty value"
    } else if v.parse::<Glob>().is_err() {
        "`*` is allowed only alone, at the start or at the end"
    } else {
        return true;
    };
    cx.report(
        Code::InvalidAuthzValue,
        path,
        format!("value {v:?} is malformed: {why}; {}", fails_closed(action)),
        "write an exact value, `prefix*`, `*suffix` or `*` (any value)",
    );
    false
}

/// Checks a principal (in `principals`, `notPrincipals` or a `source.principal` condition).
fn principal(cx: &mut Cx<'_>, path: &str, p: &str, negated: bool) {
    if let Some(rest) = p.strip_prefix(SCHEME_PREFIX) {
        cx.report(
            Code::InvalidPrincipal,
            path,
            format!(
                "principal {p:?} {}: principals are written without `spiffe://`",
                never(negated)
            ),
            format!("write it as {rest:?}"),
        );
        return;
    }
    let glob = match p.parse::<Glob>() {
        Ok(g) if !p.is_empty() => g,
        _ => {
            cx.report(
                Code::InvalidPrincipal,
                path,
                format!(
                    "principal {p:?} is malformed: `*` is allowed only at the start or the end"
                ),
                "write `cluster.local/ns/<ns>/sa/<sa>`, optionally with a leading or trailing `*`",
            );
            return;
        }
    };
    let td = cx.options.trust_domain.as_str();
    match unmatchable_principal(&glob, td) {
        None => {}
        Some(Unmatchable::Shape(why)) => {
            let fix = match principal_guess(p, td, cx.namespace) {
                Some(guess) => format!("write {guess:?}"),
                None => format!(
                    "write `<trust domain>/ns/<namespace>/sa/<service account>`, e.g. \"{td}/ns/{}/sa/default\" (`*` only at the start or the end)",
                    cx.namespace
                ),
            };
            let why = if why.is_empty() {
                why
            } else {
                format!(" ({why})")
            };
            cx.report(
                Code::PrincipalShape,
                path,
                format!(
                    "principal {p:?} {}: peers' principals have the form `<trust domain>/ns/<namespace>/sa/<service account>`{why}",
                    never(negated)
                ),
                fix,
            );
        }
        Some(Unmatchable::TrustDomain { theirs }) => {
            let fix = match &glob {
                Glob::Exact(_) => {
                    let rest = &p[theirs.len()..];
                    format!(
                        "write \"{td}{rest}\"; if the mesh's trust domain is {theirs:?}, give it with --trust-domain {theirs}"
                    )
                }
                _ => format!(
                    "start the principal with the mesh's trust domain, \"{td}/ns/...\", or give the mesh's trust domain with --trust-domain"
                ),
            };
            cx.report(
                Code::ForeignTrustDomain,
                path,
                format!(
                    "principal {p:?} {}: its trust domain {theirs:?} is not the mesh's ({td:?}), and peers' certificates carry only the mesh's",
                    never(negated)
                ),
                fix,
            );
        }
    }
}

/// Why no identity of trust domain `td` matches a principal pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unmatchable {
    /// Not `<td>/ns/<ns>/sa/<sa>`: the reason (empty when that is all there is to say).
    Shape(String),
    /// Another trust domain (for a glob: the part of it that is written).
    TrustDomain { theirs: String },
}

/// The literal segments of `<td>/ns/<ns>/sa/<sa>`, by position; `None` where any
/// non-empty value goes.
const PRINCIPAL_SEGMENTS: [Option<&str>; 5] = [None, Some("ns"), None, Some("sa"), None];

/// Whether any identity `<td>/ns/<ns>/sa/<sa>` of trust domain `td` matches `g`; if none
/// can, why. Exact principals must be valid identities (the SPIFFE parser decides); a
/// `prefix*` must be the start of one, a `*suffix` the end of one.
fn unmatchable_principal(g: &Glob, td: &str) -> Option<Unmatchable> {
    match g {
        Glob::Any => None,
        Glob::Exact(p) => match format!("{SCHEME_PREFIX}{p}").parse::<SpiffeId>() {
            // The form is in the message already; other reasons add to it.
            Err(crate::spiffe::Error::Path) => Some(Unmatchable::Shape(String::new())),
            Err(e) => Some(Unmatchable::Shape(e.to_string())),
            Ok(id) if id.trust_domain() != td => Some(Unmatchable::TrustDomain {
                theirs: id.trust_domain().to_owned(),
            }),
            Ok(_) => None,
        },
        Glob::Prefix(prefix) => {
            let segments: Vec<&str> = prefix.split('/').collect();
            let (last, whole) = segments.split_last()?;
            if segments.len() > PRINCIPAL_SEGMENTS.len() {
                return Some(too_many_segments());
            }
            whole
                .iter()
                .enumerate()
                .find_map(|(pos, s)| whole_segment(pos, s, td))
                .or_else(|| {
                    partial_segment(segments.len() - 1, last, td, segments.len() == 1, |w, p| {
                        w.starts_with(p)
                    })
                })
        }
        Glob::Suffix(suffix) => {
            let segments: Vec<&str> = suffix.split('/').collect();
            let (first, whole) = segments.split_first()?;
            let Some(start) = PRINCIPAL_SEGMENTS.len().checked_sub(segments.len()) else {
                return Some(too_many_segments());
            };
            partial_segment(start, first, td, false, |w, p| w.ends_with(p)).or_else(|| {
                whole
                    .iter()
                    .enumerate()
                    .find_map(|(i, s)| whole_segment(start + 1 + i, s, td))
            })
        }
    }
}

fn too_many_segments() -> Unmatchable {
    Unmatchable::Shape("it has more than five `/`-separated parts".to_owned())
}

/// A segment written whole at position `pos` of `<td>/ns/<ns>/sa/<sa>`.
fn whole_segment(pos: usize, s: &str, td: &str) -> Option<Unmatchable> {
    match (pos, PRINCIPAL_SEGMENTS[pos]) {
        (_, Some(literal)) if s != literal => Some(Unmatchable::Shape(format!(
            "`{literal}` is expected where it has {s:?}"
        ))),
        (_, Some(_)) => None,
        (_, None) if s.is_empty() => Some(Unmatchable::Shape("a part is empty".to_owned())),
        (0, None) if s != td => Some(Unmatchable::TrustDomain {
            theirs: s.to_owned(),
        }),
        _ => None,
    }
}

/// A segment of which only a part is written (the end of a `prefix*`, the start of a
/// `*suffix`), at position `pos`; `fits(whole, part)` says whether `part` can be that part
/// of `whole`. `alone`: the pattern has no `/` at all.
fn partial_segment(
    pos: usize,
    part: &str,
    td: &str,
    alone: bool,
    fits: fn(&str, &str) -> bool,
) -> Option<Unmatchable> {
    match (pos, PRINCIPAL_SEGMENTS[pos]) {
        (_, Some(literal)) if !fits(literal, part) => Some(Unmatchable::Shape(format!(
            "`{literal}` is expected where it has {part:?}"
        ))),
        (0, None) if !fits(td, part) => Some(if alone {
            Unmatchable::Shape(format!("it does not start with the trust domain {td:?}"))
        } else {
            Unmatchable::TrustDomain {
                theirs: part.to_owned(),
            }
        }),
        _ => None,
    }
}

/// The principal probably meant by `p`, when it is a bare service account (`reviews`), a
/// `namespace/service-account` pair or lacks only the trust domain (`ns/a/sa/b`).
fn principal_guess(p: &str, td: &str, policy_ns: &str) -> Option<String> {
    let parts: Vec<&str> = p.split('/').collect();
    if parts.iter().any(|s| s.is_empty() || s.contains('*')) {
        return None;
    }
    let (ns, sa) = match parts.as_slice() {
        [sa] => (policy_ns, *sa),
        [ns, sa] | ["ns", ns, "sa", sa] => (*ns, *sa),
        _ => return None,
    };
    let guess = format!("{td}/ns/{ns}/sa/{sa}");
    // Only a guess that is an identity.
    SpiffeId::new(td, ns, sa).ok().map(|_| guess)
}

/// Checks a namespace (in `namespaces`, `notNamespaces` or a `source.namespace`
/// condition): namespaces have no `/`, so a principal pasted there matches nothing.
fn namespace(cx: &mut Cx<'_>, path: &str, ns: &str, negated: bool) {
    if !ns.contains('/') {
        return;
    }
    let parts: Vec<&str> = ns.split('/').collect();
    let named = parts
        .windows(2)
        .find(|w| w[0] == "ns" && !w[1].is_empty() && !w[1].contains('*'))
        .map(|w| w[1]);
    let fix = match named {
        Some(name) => format!(
            "this looks like a principal: write the namespace alone, {name:?}, or move the value to `principals`"
        ),
        None => "write the namespace's name alone, e.g. \"default\"".to_owned(),
    };
    cx.report(
        Code::NamespaceShape,
        path,
        format!(
            "namespace {ns:?} {}: namespace names have no `/`",
            never(negated)
        ),
        fix,
    );
}

/// Checks an IP block or IP condition value: its syntax, and bits set after the prefix.
fn ip_block(cx: &mut Cx<'_>, path: &str, v: &str) {
    let Ok(net) = v.parse::<IpNet>() else {
        cx.cidr(path, v);
        return;
    };
    if let Some((addr, _)) = v.split_once('/')
        && let Ok(addr) = addr.parse::<IpAddr>()
        && addr != net.addr()
    {
        let host = IpNet::host(addr);
        cx.report(
            Code::CidrHostBits,
            path,
            format!(
                "{v:?} has bits set after its /{} prefix: it means {net}",
                net.prefix_len()
            ),
            format!("write \"{net}\" for the network, or \"{host}\" for the one address"),
        );
    }
}

/// `(host, port)` when an authorization host is written with a port (`api.example.com:8080`,
/// `[fd00::1]:80`, `api.example.com:*`).
fn host_port(h: &str) -> Option<(&str, &str)> {
    if h.parse::<IpAddr>().is_ok() {
        return None;
    }
    let (host, port) = if h.starts_with('[') {
        let end = h.find("]:")?;
        (&h[..=end], &h[end + 2..])
    } else {
        // More colons: an IPv6 address or pattern, which needs brackets to carry a port.
        h.split_once(':').filter(|(_, port)| !port.contains(':'))?
    };
    let is_port = port == "*" || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    is_port.then_some((host, port))
}

/// Whether an ALLOW source also matches plaintext requests: it excludes identities
/// (`notPrincipals`, `notNamespaces`) without requiring one, and nothing else in the rule
/// requires one. Returns the field to point at. `notPrincipals: ["*"]` (plaintext only) is
/// deliberate and passes.
fn matches_plaintext(s: &Source, when: &[Condition]) -> Option<&'static str> {
    if !s.principals.is_empty() || !s.namespaces.is_empty() {
        return None;
    }
    let star = |l: &[String]| l.iter().any(|v| v == "*");
    if star(&s.not_principals) || star(&s.not_namespaces) {
        return None;
    }
    let identity_required = when.iter().any(|c| {
        !c.values.is_empty()
            && matches!(
                condition_key(&c.key),
                Ok(ConditionKey::SourcePrincipal | ConditionKey::SourceNamespace)
            )
    });
    if identity_required {
        None
    } else if !s.not_principals.is_empty() {
        Some("notPrincipals")
    } else if !s.not_namespaces.is_empty() {
        Some("notNamespaces")
    } else {
        None
    }
}

// === cross-resource ===

fn duplicates(resources: &[Loaded], out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(ResourceKind, &str, &str), &Loaded> = HashMap::new();
    for loaded in resources {
        let r = &loaded.resource;
        let key = (r.kind(), r.namespace(), r.name());
        if let Some(first) = seen.get(&key) {
            out.push(
                Diagnostic::new(
                    Code::DuplicateResource,
                    loaded.origin.at("metadata.name"),
                    format!(
                        "{} {}/{} is defined twice (first in {} document {})",
                        r.kind().kind(),
                        r.namespace(),
                        r.name(),
                        first.origin.file(),
                        first.origin.document()
                    ),
                )
                .with_fix("rename one of them, or delete the copy"),
            );
        } else {
            seen.insert(key, loaded);
        }
    }
}

fn conflicting_hosts(resources: &[Loaded], out: &mut Vec<Diagnostic>) {
    // Sidecar routing takes one VirtualService per host; a second one for the same host and
    // the same gateways is ignored by Istio in creation order, which users rarely intend.
    let mut vs_hosts: HashMap<(String, Vec<String>), &Loaded> = HashMap::new();
    let mut dr_hosts: HashMap<(String, &str), &Loaded> = HashMap::new();
    for loaded in resources {
        let ns = loaded.resource.namespace();
        match &loaded.resource {
            Resource::VirtualService(vs) => {
                let mut gateways = vs.spec.gateways.clone();
                gateways.sort();
                for (i, host) in vs.spec.hosts.iter().enumerate() {
                    let key = (fqdn(host, ns), gateways.clone());
                    if let Some(first) = vs_hosts.get(&key) {
                        out.push(
                            Diagnostic::new(
                                Code::ConflictingHosts,
                                loaded.origin.at(&format!("spec.hosts[{i}]")),
                                format!(
                                    "host {host:?} is also routed by VirtualService {}/{}; only one of them takes effect",
                                    first.resource.namespace(),
                                    first.resource.name()
                                ),
                            )
                            .with_fix("merge the routes into one VirtualService per host"),
                        );
                    } else {
                        vs_hosts.insert(key, loaded);
                    }
                }
            }
            Resource::DestinationRule(dr) => {
                let key = (fqdn(&dr.spec.host, ns), ns);
                if let Some(first) = dr_hosts.get(&key) {
                    out.push(
                        Diagnostic::new(
                            Code::ConflictingHosts,
                            loaded.origin.at("spec.host"),
                            format!(
                                "host {:?} also has DestinationRule {}/{} in this namespace; their subsets are merged but only the first's trafficPolicy applies",
                                dr.spec.host,
                                first.resource.namespace(),
                                first.resource.name()
                            ),
                        )
                        .with_fix("keep one DestinationRule per host and namespace"),
                    );
                } else {
                    dr_hosts.insert(key, loaded);
                }
            }
            _ => {}
        }
    }
}

// === syntax helpers ===

/// Checks a host: a DNS name, optionally with a leading `*.` wildcard, or `*`, or an IP.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty");
    }
    if host == "*" || host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.contains('*') {
        return Err("`*` is only allowed as the whole first label (`*.example.com`)");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row?)");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("labels must start and end with a letter or digit");
        }
    }
    Ok(())
}

fn check_label_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_dns_subdomain(p).map_err(|_| "the prefix must be a DNS subdomain")?;
    }
    if name.is_empty() {
        return Err("empty name");
    }
    check_label_value(name)
}

fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err("longer than 63 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    let (first, last) = (value.as_bytes()[0], value.as_bytes()[value.len() - 1]);
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
