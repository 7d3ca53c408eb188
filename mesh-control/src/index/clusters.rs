//! DestinationRules → [`Cluster`]s.
//!
//! Every port of every service a proxy sees gets a default cluster (no subset), even
//! without a DestinationRule: the proxy would create the same one itself, but emitting it
//! keeps config dumps complete and explicit. A DestinationRule for the host sets that
//! cluster's policy and adds one cluster per subset.
//!
//! Which DestinationRule applies follows Istio: the first of the proxy's namespace, the
//! service's namespace and the root namespace holding a rule for the host that is
//! exported to the proxy's namespace; within a namespace the most specific host wins
//! (exact, then the longest wildcard), then the name.
//!
//! Policy merging follows Istio's `MergeTrafficPolicy`: a `portLevelSettings` entry for
//! the port replaces load balancer, connection pool, outlier detection and TLS as a whole
//! (unset parts fall back to defaults); a subset's policy overrides the rule's field by
//! field, and its own port-level entry again replaces all four.
//!
//! Mapping: `loadBalancer.simple` → [`LoadBalancer`] (`PASSTHROUGH` unsupported: default);
//! `connectionPool` → [`ConnectionPool`] (`maxConnectionDuration`, `maxRetries`
//! unsupported); `outlierDetection` → [`OutlierDetection`] with Istio's defaults
//! (5 consecutive 5xx, 10 s interval, 30 s base ejection, 10 %); `tls.mode` DISABLE →
//! [`TlsMode::Disable`], ISTIO_MUTUAL → [`TlsMode::IstioMutual`]; SIMPLE and MUTUAL (TLS
//! origination with user certificates) are not supported and fail closed to
//! [`TlsMode::IstioMutual`], so traffic meant to be encrypted is never sent in plaintext.

use std::{collections::BTreeMap, num::NonZeroU32, time::Duration};

use mesh_api::{
    config::{
        DestinationRule,
        networking::{
            ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings,
            OutlierDetection as CfgOutlier, SimpleLb, TrafficPolicy,
        },
    },
    model::{
        Cluster, ClusterKey, ConnectionPool, LoadBalancer, OutlierDetection, Percent, Service,
        TlsMode,
    },
};

use super::{
    Settings,
    hosts::{Cx, ExportTo, HostMatch, Resolver, ResourceRef},
    services::ServiceRecord,
};

/// The four settings a traffic policy carries; `None` is "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Settings4 {
    load_balancer: Option<LoadBalancer>,
    connection_pool: Option<ConnectionPool>,
    outlier_detection: Option<OutlierDetection>,
    tls: Option<TlsMode>,
}

impl Settings4 {
    /// `over`'s set fields replace this one's.
    fn overlay(&mut self, over: &Self) {
        if over.load_balancer.is_some() {
            self.load_balancer = over.load_balancer;
        }
        if over.connection_pool.is_some() {
            self.connection_pool.clone_from(&over.connection_pool);
        }
        if over.outlier_detection.is_some() {
            self.outlier_detection.clone_from(&over.outlier_detection);
        }
        if over.tls.is_some() {
            self.tls = over.tls;
        }
    }
}

/// A translated traffic policy: top-level settings and per-port replacements.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Policy {
    top: Settings4,
    ports: BTreeMap<u16, Settings4>,
}

impl Policy {
    /// The settings on `port`: the port-level entry if there is one, else the top level.
    fn on_port(&self, port: u16) -> Settings4 {
        self.ports.get(&port).unwrap_or(&self.top).clone()
    }
}

/// A named subset.
#[derive(Debug, Clone)]
pub(super) struct SubsetRecord {
    name: String,
    labels: BTreeMap<String, String>,
    policy: Option<Policy>,
}

/// A translated DestinationRule.
#[derive(Debug, Clone)]
pub(super) struct DrRecord {
    pub(super) origin: ResourceRef,
    pub(super) export: ExportTo,
    pub(super) host: HostMatch,
    policy: Policy,
    subsets: Vec<SubsetRecord>,
}

impl DrRecord {
    /// The subset names, for checking route references.
    pub(super) fn subset_names(&self) -> impl Iterator<Item = &str> {
        self.subsets.iter().map(|s| s.name.as_str())
    }
}

/// Translates a DestinationRule.
pub(super) fn translate(
    cx: &mut Cx<'_>,
    dr: &DestinationRule,
    resolver: &Resolver<'_>,
) -> DrRecord {
    let spec = &dr.spec;
    let host = HostMatch::new(resolver, &spec.host, cx.namespace());
    if !resolver.hostnames().any(|h| host.matches(h)) {
        cx.warn(format!(
            "host {:?} is not a known service; the rule has no effect",
            spec.host
        ));
    }
    let policy = spec
        .traffic_policy
        .as_ref()
        .map(|p| traffic_policy(cx, p, "trafficPolicy"))
        .unwrap_or_default();
    let mut subsets: Vec<SubsetRecord> = Vec::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        let what = format!("subsets[{i}]");
        if s.name.is_empty() {
            cx.warn(format!("{what}: a subset needs a name; skipped"));
            continue;
        }
        if subsets.iter().any(|o| o.name == s.name) {
            cx.warn(format!(
                "{what}: subset {:?} is defined twice; the first wins",
                s.name
            ));
            continue;
        }
        let mut labels = s.labels.clone();
        if labels.remove("").is_some() {
            cx.warn(format!("{what}: a label with an empty key was dropped"));
        }
        subsets.push(SubsetRecord {
            name: s.name.clone(),
            labels,
            policy: s
                .traffic_policy
                .as_ref()
                .map(|p| traffic_policy(cx, p, &format!("{what}.trafficPolicy"))),
        });
    }
    DrRecord {
        origin: cx.origin.clone(),
        export: ExportTo::parse(&spec.export_to, cx.namespace()),
        host,
        policy,
        subsets,
    }
}

/// The DestinationRule that applies to `svc` for a proxy in `proxy_ns`, if any.
pub(super) fn select<'a>(
    by_namespace: &'a BTreeMap<String, Vec<DrRecord>>,
    settings: &Settings,
    proxy_ns: &str,
    svc: &ServiceRecord,
) -> Option<&'a DrRecord> {
    let hostname = &svc.service.hostname;
    let tiers = [
        proxy_ns,
        svc.origin.namespace.as_str(),
        settings.root_namespace.as_str(),
    ];
    for (i, ns) in tiers.iter().enumerate() {
        if tiers[..i].contains(ns) {
            continue;
        }
        let found = by_namespace
            .get(*ns)
            .into_iter()
            .flatten()
            .filter(|dr| dr.export.visible_to(proxy_ns) && dr.host.matches(hostname))
            .min_by(|a, b| {
                (a.host.specificity(), &a.origin).cmp(&(b.host.specificity(), &b.origin))
            });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The clusters of every port of `svc` under `dr`: a default one per port, and one per
/// subset and port.
pub(super) fn clusters(svc: &Service, dr: Option<&DrRecord>) -> Vec<Cluster> {
    let mut out = Vec::new();
    for port in &svc.ports {
        let base = dr.map(|d| d.policy.on_port(port.port)).unwrap_or_default();
        out.push(cluster(
            ClusterKey::new(svc.hostname.clone(), port.port),
            BTreeMap::new(),
            &base,
        ));
        for subset in dr.map(|d| d.subsets.as_slice()).unwrap_or_default() {
            let mut merged = base.clone();
            if let Some(p) = &subset.policy {
                merged.overlay(&p.top);
                if let Some(port_level) = p.ports.get(&port.port) {
                    merged = port_level.clone();
                }
            }
            out.push(cluster(
                ClusterKey::new(svc.hostname.clone(), port.port).with_subset(&subset.name),
                subset.labels.clone(),
                &merged,
            ));
        }
    }
    out
}

fn cluster(key: ClusterKey, subset_labels: BTreeMap<String, String>, s: &Settings4) -> Cluster {
    Cluster {
        key,
        subset_labels,
        load_balancer: s.load_balancer.unwrap_or_default(),
        connection_pool: s.connection_pool.clone().unwrap_or_default(),
        outlier_detection: s.outlier_detection.clone(),
        tls: s.tls.unwrap_or_default(),
    }
}

// === Translation of the policy parts ===

fn traffic_policy(cx: &mut Cx<'_>, p: &TrafficPolicy, what: &str) -> Policy {
    let top = settings4(
        cx,
        p.load_balancer.as_ref(),
        p.connection_pool.as_ref(),
        p.outlier_detection.as_ref(),
        p.tls.as_ref(),
        what,
    );
    let mut ports = BTreeMap::new();
    for (i, pl) in p.port_level_settings.iter().enumerate() {
        let pwhat = format!("{what}.portLevelSettings[{i}]");
        let Some(port) = cx.port(&format!("{pwhat}.port"), pl.port.number.into()) else {
            continue;
        };
        let s = settings4(
            cx,
            pl.load_balancer.as_ref(),
            pl.connection_pool.as_ref(),
            pl.outlier_detection.as_ref(),
            pl.tls.as_ref(),
            &pwhat,
        );
        if ports.insert(port, s).is_some() {
            cx.warn(format!(
                "{pwhat}: port {port} is listed twice; the last wins"
            ));
        }
    }
    Policy { top, ports }
}

fn settings4(
    cx: &mut Cx<'_>,
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    od: Option<&CfgOutlier>,
    tls: Option<&ClientTlsSettings>,
    what: &str,
) -> Settings4 {
    Settings4 {
        load_balancer: lb.and_then(|lb| load_balancer(cx, lb, what)),
        connection_pool: pool.map(|p| connection_pool(cx, p, what)),
        outlier_detection: od.map(|o| outlier_detection(cx, o, what)),
        tls: tls.map(|t| tls_mode(cx, t, what)),
    }
}

fn load_balancer(cx: &mut Cx<'_>, lb: &LoadBalancerSettings, what: &str) -> Option<LoadBalancer> {
    Some(match lb.simple? {
        SimpleLb::Unspecified => LoadBalancer::P2cEwma,
        SimpleLb::RoundRobin => LoadBalancer::RoundRobin,
        SimpleLb::LeastRequest => LoadBalancer::LeastRequest,
        SimpleLb::Random => LoadBalancer::Random,
        SimpleLb::Passthrough => {
            cx.warn(format!(
                "{what}.loadBalancer: PASSTHROUGH is not supported; using the default balancer"
            ));
            return None;
        }
    })
}

fn connection_pool(cx: &mut Cx<'_>, p: &ConnectionPoolSettings, what: &str) -> ConnectionPool {
    let what = format!("{what}.connectionPool");
    let limit = |v: Option<i32>| {
        v.and_then(|v| u32::try_from(v).ok())
            .and_then(NonZeroU32::new)
    };
    let mut pool = ConnectionPool::default();
    let duration = |cx: &mut Cx<'_>, field: &str, v: Option<&str>, into: &mut Duration| {
        if let Some(v) = v
            && let Some(d) = cx.duration(&format!("{what}.{field}"), v)
        {
            if d.is_zero() {
                cx.warn(format!(
                    "{what}.{field}: must not be zero; using the default"
                ));
            } else {
                *into = d;
            }
        }
    };
    if let Some(tcp) = &p.tcp {
        pool.max_connections = limit(tcp.max_connections);
        duration(
            cx,
            "tcp.connectTimeout",
            tcp.connect_timeout.as_deref(),
            &mut pool.connect_timeout,
        );
        duration(
            cx,
            "tcp.idleTimeout",
            tcp.idle_timeout.as_deref(),
            &mut pool.idle_timeout,
        );
        if tcp.max_connection_duration.is_some() {
            cx.warn(format!(
                "{what}.tcp.maxConnectionDuration: not supported; ignored"
            ));
        }
    }
    if let Some(http) = &p.http {
        pool.max_pending = limit(http.http1_max_pending_requests);
        pool.max_requests = limit(http.http2_max_requests);
        pool.max_requests_per_connection = limit(http.max_requests_per_connection);
        duration(
            cx,
            "http.idleTimeout",
            http.idle_timeout.as_deref(),
            &mut pool.idle_timeout,
        );
        if http.max_retries.is_some() {
            cx.warn(format!("{what}.http.maxRetries: not supported; ignored"));
        }
    }
    pool
}

fn outlier_detection(cx: &mut Cx<'_>, o: &CfgOutlier, what: &str) -> OutlierDetection {
    let what = format!("{what}.outlierDetection");
    let mut duration = |field: &str, v: Option<&str>, default: Duration| {
        let d = v.and_then(|v| cx.duration(&format!("{what}.{field}"), v));
        match d {
            Some(d) if d.is_zero() => {
                cx.warn(format!(
                    "{what}.{field}: must not be zero; using the default"
                ));
                default
            }
            Some(d) => d,
            None => default,
        }
    };
    let interval = duration("interval", o.interval.as_deref(), Duration::from_secs(10));
    let base_ejection_time = duration(
        "baseEjectionTime",
        o.base_ejection_time.as_deref(),
        Duration::from_secs(30),
    );
    let max_ejection_percent = match o.max_ejection_percent {
        Some(p) => cx.percent(&format!("{what}.maxEjectionPercent"), f64::from(p)),
        None => Percent::new(10.0).unwrap_or(Percent::HUNDRED),
    };
    if o.min_health_percent.is_some() {
        cx.warn(format!("{what}.minHealthPercent: not supported; ignored"));
    }
    OutlierDetection {
        consecutive_5xx: o.consecutive5xx_errors.unwrap_or(5),
        consecutive_gateway_errors: o.consecutive_gateway_errors.unwrap_or(0),
        interval,
        base_ejection_time,
        max_ejection_percent,
    }
}

fn tls_mode(cx: &mut Cx<'_>, t: &ClientTlsSettings, what: &str) -> TlsMode {
    let what = format!("{what}.tls");
    if t.sni.is_some() || !t.subject_alt_names.is_empty() || t.credential_name.is_some() {
        cx.warn(format!(
            "{what}: sni, subjectAltNames and credentialName are not supported; ignored"
        ));
    }
    match t.mode {
        ClientTlsMode::Disable => TlsMode::Disable,
        ClientTlsMode::IstioMutual => TlsMode::IstioMutual,
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            cx.warn(format!(
                "{what}: TLS origination (SIMPLE, MUTUAL) is not supported; using ISTIO_MUTUAL so traffic is never sent in plaintext (endpoints outside the mesh become unreachable)"
            ));
            TlsMode::IstioMutual
        }
    }
}
