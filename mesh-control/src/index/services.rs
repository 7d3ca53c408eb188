//! Services: Kubernetes `v1` Services and ServiceEntries → [`Service`]s, and the endpoints
//! behind each.
//!
//! - A Kubernetes Service is `<name>.<ns>.svc.<cluster-domain>`; its cluster IP(s) are the
//!   VIPs (`None` or no cluster IP: headless); ports keep their number, target port and
//!   name, and their protocol comes from `appProtocol` or the port name
//!   ([`AppProtocol::infer`]). UDP and SCTP ports are skipped (the mesh carries TCP).
//!   `ExternalName` services are not supported. The annotation
//!   `networking.mesh.dev/exportTo` (comma-separated) limits visibility like `exportTo`.
//! - A ServiceEntry gives one service per host: MESH_EXTERNAL (the default) is
//!   [`ServiceKind::External`]; MESH_INTERNAL is [`ServiceKind::ClusterIp`] with
//!   `addresses`, [`ServiceKind::Headless`] without. Endpoints are the static `endpoints`
//!   (in the mesh only when MESH_INTERNAL) and/or the WorkloadEntries `workloadSelector`
//!   picks.
//! - Endpoints: the workloads in the service's namespace whose labels contain its
//!   selector. A workload's port for a service port is, in order: its `ports` entry named
//!   by the service port's (named) `targetPort`, its entry named like the service port
//!   (Istio's WorkloadEntry semantics), else the port's `targetPort`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::{
    config::{
        ResourceKind, ServiceEntry,
        networking::{ServiceEntryLocation, ServiceEntryResolution},
    },
    model::{AppProtocol, Endpoint, Service, ServiceKind, ServiceName, ServicePort},
};

use super::{
    hosts::{Cx, ExportTo, ResourceRef, valid_hostname},
    workloads::{WorkloadInfo, WorkloadRecord},
};

/// The annotation that limits a Kubernetes Service's visibility, as `exportTo` does.
pub(super) const EXPORT_TO_ANNOTATION: &str = "networking.mesh.dev/exportTo";

/// One definition of a service host.
#[derive(Debug, Clone)]
pub(super) struct ServiceRecord {
    /// The Service or ServiceEntry it comes from.
    pub(super) origin: ResourceRef,
    /// Who sees it.
    pub(super) export: ExportTo,
    /// The model service.
    pub(super) service: Service,
    /// Per port of `service.ports`: the named target port, if the port has one.
    pub(super) named_targets: Vec<Option<String>>,
    /// Labels selecting workloads (in the same namespace) as endpoints.
    pub(super) selector: Option<BTreeMap<String, String>>,
    /// A ServiceEntry's static endpoints.
    pub(super) static_endpoints: Vec<WorkloadRecord>,
    /// The endpoints, ordered by workload uid (filled in by [`fill_endpoints`]).
    pub(super) endpoints: Vec<Endpoint>,
    /// Extra names of a Kubernetes service: `<name>.<ns>`, `<name>.<ns>.svc`.
    pub(super) aliases: Vec<String>,
    /// The short name of a Kubernetes service, valid from its own namespace only.
    pub(super) short_name: Option<String>,
}

impl ServiceRecord {
    /// Which definition wins when several share a host name: Kubernetes Services before
    /// ServiceEntries, then one in the proxy's namespace, then by namespace and name.
    pub(super) fn priority<'a>(&'a self, proxy_ns: &str) -> (u8, bool, &'a ResourceRef) {
        let rank = u8::from(self.origin.kind != ResourceKind::Service);
        (rank, self.origin.namespace != proxy_ns, &self.origin)
    }
}

/// Translates a Kubernetes Service.
pub(super) fn from_kube(
    cx: &mut Cx<'_>,
    svc: &k8s_openapi::api::core::v1::Service,
) -> Option<ServiceRecord> {
    let ns = cx.namespace().to_owned();
    let name = cx.origin.name.clone();
    let hostname = format!("{name}.{ns}.svc.{}", cx.settings.cluster_domain);
    if !valid_hostname(&hostname, false) {
        cx.warn(format!(
            "host name {hostname:?} is not a valid DNS name; the service is skipped"
        ));
        return None;
    }
    let Some(spec) = &svc.spec else {
        cx.warn("the service has no spec; skipped");
        return None;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        cx.warn("ExternalName services are not supported (use a ServiceEntry); skipped");
        return None;
    }

    let mut vips = Vec::new();
    let ips: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    for ip in ips {
        let ip = ip.trim();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        match ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if !vips.contains(&ip) => vips.push(ip),
            Ok(_) => {}
            Err(_) => cx.warn(format!("cluster IP {ip:?} is not an IP address; ignored")),
        }
    }
    let kind = if vips.is_empty() {
        ServiceKind::Headless
    } else {
        ServiceKind::ClusterIp
    };

    let mut ports = Vec::new();
    let mut named_targets = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let what = format!("spec.ports[{i}]");
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        if !protocol.eq_ignore_ascii_case("TCP") {
            cx.warn(format!(
                "{what}: protocol {protocol} is not supported (the mesh carries TCP); port skipped"
            ));
            continue;
        }
        let Some(port) = cx.port(&what, p.port.into()) else {
            continue;
        };
        if ports.iter().any(|sp: &ServicePort| sp.port == port) {
            cx.warn(format!("{what}: port {port} is listed twice; skipped"));
            continue;
        }
        let (target_port, named) = match &p.target_port {
            None => (port, None),
            Some(IntOrString::Int(t)) => (
                cx.port(&format!("{what}.targetPort"), (*t).into())
                    .unwrap_or(port),
                None,
            ),
            Some(IntOrString::String(s)) => match s.parse::<u16>() {
                Ok(t) if t != 0 => (t, None),
                _ if s.is_empty() => (port, None),
                _ => (port, Some(s.clone())),
            },
        };
        let name = p.name.clone().unwrap_or_default();
        ports.push(ServicePort {
            port,
            target_port,
            protocol: AppProtocol::infer(p.app_protocol.as_deref(), &name),
            name,
        });
        named_targets.push(named);
    }

    let export = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPORT_TO_ANNOTATION))
        .map_or(ExportTo::ALL, |v| {
            let list: Vec<&str> = v.split(',').collect();
            ExportTo::parse(&list, &ns)
        });
    let selector = spec.selector.clone().filter(|s| !s.is_empty());

    Some(ServiceRecord {
        origin: cx.origin.clone(),
        export,
        service: Service {
            name: ServiceName::new(&ns, &name),
            hostname,
            vips,
            ports,
            kind,
        },
        named_targets,
        selector,
        static_endpoints: Vec::new(),
        endpoints: Vec::new(),
        aliases: vec![format!("{name}.{ns}"), format!("{name}.{ns}.svc")],
        short_name: Some(name),
    })
}

/// Translates a ServiceEntry: one record per host.
pub(super) fn from_service_entry(cx: &mut Cx<'_>, se: &ServiceEntry) -> Vec<ServiceRecord> {
    let spec = &se.spec;
    let ns = cx.namespace().to_owned();
    let se_name = cx.origin.name.clone();
    let location = spec.location.unwrap_or(ServiceEntryLocation::MeshExternal);
    let internal = location == ServiceEntryLocation::MeshInternal;

    let mut vips = Vec::new();
    for addr in &spec.addresses {
        let parsed = addr.parse::<mesh_api::model::IpNet>().ok().filter(|n| {
            n.prefix_len()
                == match n.addr() {
                    IpAddr::V4(_) => 32,
                    IpAddr::V6(_) => 128,
                }
        });
        match parsed.map(|n| n.addr().to_canonical()) {
            Some(ip) if !vips.contains(&ip) => vips.push(ip),
            Some(_) => {}
            None => cx.warn(format!(
                "address {addr:?} is not a single IP address (CIDR ranges are not supported as virtual IPs); ignored"
            )),
        }
    }
    let kind = match (internal, vips.is_empty()) {
        (false, _) => ServiceKind::External,
        (true, false) => ServiceKind::ClusterIp,
        (true, true) => ServiceKind::Headless,
    };

    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let what = format!("spec.ports[{i}]");
        let Some(port) = cx.port(&what, p.number.into()) else {
            continue;
        };
        if ports.iter().any(|sp: &ServicePort| sp.port == port) {
            cx.warn(format!("{what}: port {port} is listed twice; skipped"));
            continue;
        }
        let target_port = match p.target_port {
            Some(t) => cx
                .port(&format!("{what}.targetPort"), t.into())
                .unwrap_or(port),
            None => port,
        };
        ports.push(ServicePort {
            port,
            target_port,
            protocol: AppProtocol::infer(p.protocol.as_deref(), &p.name),
            name: p.name.clone(),
        });
    }
    let named_targets = vec![None; ports.len()];

    let mut static_endpoints = Vec::new();
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let uid = format!("{ns}/{se_name}/endpoints[{i}]");
        let name = format!("{se_name}-{i}");
        if let Some(info) = WorkloadInfo::from_entry(cx, uid, name, ep, internal)
            && let Some(rec) = WorkloadRecord::new(cx, info)
        {
            static_endpoints.push(rec);
        }
    }
    let selector = match &spec.workload_selector {
        Some(s) if s.labels.is_empty() => {
            cx.warn("workloadSelector has no labels; it selects nothing");
            None
        }
        Some(s) => Some(s.labels.clone()),
        None => None,
    };
    let dns = matches!(
        spec.resolution,
        Some(ServiceEntryResolution::Dns | ServiceEntryResolution::DnsRoundRobin)
    );
    if dns && spec.endpoints.is_empty() && selector.is_none() {
        cx.warn(
            "DNS resolution of the hosts themselves is not supported: the service has no endpoints; list IP endpoints instead",
        );
    }
    if !spec.subject_alt_names.is_empty() {
        cx.warn("subjectAltNames is not supported; ignored");
    }
    let export = ExportTo::parse(&spec.export_to, &ns);

    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for host in &spec.hosts {
        let hostname = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if hostname.starts_with('*') {
            cx.warn(format!(
                "wildcard host {host:?} is not supported for services; skipped"
            ));
            continue;
        }
        if !valid_hostname(&hostname, false) {
            cx.warn(format!("host {host:?} is not a valid DNS name; skipped"));
            continue;
        }
        if !seen.insert(hostname.clone()) {
            continue;
        }
        out.push(ServiceRecord {
            origin: cx.origin.clone(),
            export: export.clone(),
            service: Service {
                name: ServiceName::new(&ns, &se_name),
                hostname,
                vips: vips.clone(),
                ports: ports.clone(),
                kind,
            },
            named_targets: named_targets.clone(),
            selector: selector.clone(),
            static_endpoints: static_endpoints.clone(),
            endpoints: Vec::new(),
            aliases: Vec::new(),
            short_name: None,
        });
    }
    out
}

/// Workloads by (namespace, label key, label value), so a selector looks only at the
/// workloads carrying one of its labels instead of scanning the whole mesh (5,000
/// services over 50,000 workloads would otherwise be 250 million label checks per
/// change).
#[derive(Debug, Default)]
pub(super) struct WorkloadsByLabel<'w> {
    map: std::collections::HashMap<(&'w str, &'w str, &'w str), Vec<&'w WorkloadRecord>>,
}

impl<'w> WorkloadsByLabel<'w> {
    pub(super) fn new(workloads: impl Iterator<Item = &'w WorkloadRecord>) -> Self {
        let mut map: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
        for w in workloads {
            for (k, v) in &w.info.labels {
                map.entry((w.info.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(w);
            }
        }
        Self { map }
    }

    /// The workloads of `namespace` whose labels contain all of `selector` (non-empty).
    fn select<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'w WorkloadRecord> + 's {
        // The rarest label narrows the candidates; the full selector decides.
        let candidates = selector
            .iter()
            .map(|(k, v)| {
                self.map
                    .get(&(namespace, k.as_str(), v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|c| c.len())
            .unwrap_or(&[]);
        candidates
            .iter()
            .copied()
            .filter(move |w| super::hosts::selects(selector, &w.info.labels))
    }
}

/// Computes `record.endpoints` from its static endpoints and the workloads its selector
/// picks; named target ports no workload port resolves are reported through `warn`.
pub(super) fn fill_endpoints(
    record: &mut ServiceRecord,
    workloads: &WorkloadsByLabel<'_>,
    warn: &mut dyn FnMut(String),
) {
    let mut endpoints: BTreeMap<String, Endpoint> = BTreeMap::new();
    for w in &record.static_endpoints {
        endpoints
            .entry(w.workload.uid.clone())
            .or_insert_with(|| endpoint(record, w, warn));
    }
    if let Some(selector) = &record.selector {
        for w in workloads.select(&record.origin.namespace, selector) {
            endpoints
                .entry(w.workload.uid.clone())
                .or_insert_with(|| endpoint(record, w, warn));
        }
    }
    record.endpoints = endpoints.into_values().collect();
}

fn endpoint(rec: &ServiceRecord, w: &WorkloadRecord, warn: &mut dyn FnMut(String)) -> Endpoint {
    let mut ports = BTreeMap::new();
    for (port, named) in rec.service.ports.iter().zip(&rec.named_targets) {
        let by_target = named.as_ref().and_then(|n| w.info.ports.get(n));
        let by_name = Some(&port.name)
            .filter(|n| !n.is_empty())
            .and_then(|n| w.info.ports.get(n));
        let target = by_target.or(by_name).copied();
        if let (Some(n), None) = (named, target) {
            warn(format!(
                "port {}: workload {} has no port named {n:?} (targetPort); using port {}",
                port.port, w.info.uid, port.target_port
            ));
        }
        if let Some(t) = target
            && t != port.target_port
        {
            ports.insert(port.port, t);
        }
    }
    Endpoint {
        workload: w.workload.clone(),
        ports,
        weight: w.info.weight,
    }
}
