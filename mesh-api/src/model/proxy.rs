//! [`ProxyConfig`]: everything one proxy runs on, as one immutable, indexed snapshot.
//!
//! The proxy holds the current snapshot behind a `watch` channel and swaps it whole when
//! discovery delivers an update (or a static config file changes). Lookups on the request
//! path go through hash maps built once per snapshot and allocate nothing.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    fmt,
    net::SocketAddr,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    model::{
        AuthorizationPolicy, Cluster, ClusterKey, Endpoint, EndpointSet, InboundPolicy, Invalid,
        Listener, ProxyMode, Resource, ResourceKind, ResourceType, RouteTable, Service,
        ServiceKind, ServicePort, Workload,
        validate::{FieldError, Reason},
    },
    spiffe::SpiffeId,
};

/// The plain contents of a [`ProxyConfig`]: what a static config file holds and what a
/// config dump shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfigSpec {
    /// The version of this config (the discovery `system_version`, or any label).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The proxy's own identity.
    pub identity: SpiffeId,
    /// Sidecar or gateway.
    #[serde(default)]
    pub mode: ProxyMode,
    /// The proxy's own workload, if it fronts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Services the proxy can reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// Their endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSet>,
    /// Route tables, by host and port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteTable>,
    /// Upstream cluster settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<Cluster>,
    /// The inbound mTLS policy.
    #[serde(default)]
    pub inbound: InboundPolicy,
    /// Authorization policies selecting the proxy's workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<AuthorizationPolicy>,
    /// Gateway listeners (gateway mode only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
}

impl ProxyConfigSpec {
    /// An empty config for a proxy with `identity`.
    pub fn new(identity: SpiffeId) -> Self {
        Self {
            version: String::new(),
            identity,
            mode: ProxyMode::Sidecar,
            workload: None,
            services: Vec::new(),
            endpoints: Vec::new(),
            routes: Vec::new(),
            clusters: Vec::new(),
            inbound: InboundPolicy::default(),
            authorization: Vec::new(),
            listeners: Vec::new(),
        }
    }

    /// Adds a resource (a workload or inbound policy replaces the current one).
    pub fn push(&mut self, resource: Resource) {
        match resource {
            Resource::Workload(w) => self.workload = Some(w),
            Resource::InboundPolicy(p) => self.inbound = p,
            Resource::AuthorizationPolicy(p) => self.authorization.push(p),
            Resource::Service(s) => self.services.push(s),
            Resource::EndpointSet(e) => self.endpoints.push(e),
            Resource::Cluster(c) => self.clusters.push(c),
            Resource::RouteTable(r) => self.routes.push(r),
            Resource::Listener(l) => self.listeners.push(l),
        }
    }
}

/// A validated, indexed snapshot of a proxy's config. Cheap to share (wrap it in an `Arc`),
/// never mutated.
///
/// (De)serializes as its [`ProxyConfigSpec`]; deserializing validates and indexes.
#[derive(Clone)]
pub struct ProxyConfig {
    spec: ProxyConfigSpec,
    index: Index,
}

#[derive(Clone, Default)]
struct Index {
    services: HashMap<String, usize>,
    /// (VIP or headless endpoint address, port) → (service, port index).
    service_addrs: HashMap<SocketAddr, (usize, usize)>,
    endpoints: HashMap<String, usize>,
    clusters: HashMap<ClusterKey, usize>,
    routes: HashMap<u16, HostRoutes>,
    /// Gateway server port → (listener, its virtual hosts by host).
    listeners: HashMap<u16, (usize, HostRoutes)>,
}

/// The route tables of one port, by host.
#[derive(Clone, Default)]
struct HostRoutes {
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com`.
    suffix: HashMap<String, usize>,
    any: Option<usize>,
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// Validates every resource and builds the lookup indexes. Fails on the first invalid
    /// resource, or on two resources of one kind with one name (or two route tables claiming
    /// one host and port, or two services one VIP and port).
    pub fn new(spec: ProxyConfigSpec) -> Result<Self, Invalid> {
        if let Some(w) = &spec.workload {
            w.validate()?;
        }
        spec.inbound.validate()?;

        let mut index = Index::default();
        let mut names = HashSet::new();
        for p in &spec.authorization {
            p.validate()?;
            unique(&mut names, p)?;
        }
        for (i, s) in spec.services.iter().enumerate() {
            s.validate()?;
            insert_unique(&mut index.services, s.hostname.clone(), i, s)?;
            if s.kind != ServiceKind::Headless {
                for vip in &s.vips {
                    for (j, p) in s.ports.iter().enumerate() {
                        let addr = SocketAddr::new(vip.to_canonical(), p.port);
                        if let Some(&(other, _)) = index.service_addrs.get(&addr) {
                            return Err(Invalid::resource(
                                ResourceKind::Service,
                                &s.hostname,
                                FieldError::field(
                                    "vips",
                                    Reason::Other(format!(
                                        "{addr} is also the address of service {:?}",
                                        spec.services[other].hostname
                                    )),
                                ),
                            ));
                        }
                        index.service_addrs.insert(addr, (i, j));
                    }
                }
            }
        }
        for (i, e) in spec.endpoints.iter().enumerate() {
            e.validate()?;
            insert_unique(&mut index.endpoints, e.hostname.clone(), i, e)?;
        }
        // Headless services are reached at endpoint addresses; the first service claiming
        // an address and port keeps it (a pod may back several headless services).
        for (i, s) in spec.services.iter().enumerate() {
            if s.kind != ServiceKind::Headless {
                continue;
            }
            let Some(&e) = index.endpoints.get(&s.hostname) else {
                continue;
            };
            for ep in &spec.endpoints[e].endpoints {
                for (j, p) in s.ports.iter().enumerate() {
                    let ip = ep.workload.address.to_canonical();
                    for port in [p.port, ep.target_port(p.port, p.target_port)] {
                        index
                            .service_addrs
                            .entry(SocketAddr::new(ip, port))
                            .or_insert((i, j));
                    }
                }
            }
        }
        for (i, c) in spec.clusters.iter().enumerate() {
            c.validate()?;
            insert_unique(&mut index.clusters, c.key.clone(), i, c)?;
        }
        names.clear();
        for (i, r) in spec.routes.iter().enumerate() {
            r.validate()?;
            unique(&mut names, r)?;
            index.routes.entry(r.port).or_default().insert(r, i)?;
        }
        names.clear();
        let mut bind_ports = HashMap::new();
        for (i, l) in spec.listeners.iter().enumerate() {
            l.validate()?;
            unique(&mut names, l)?;
            if let Some(other) = bind_ports.insert(l.bind_port(), i) {
                return Err(Invalid::resource(
                    ResourceKind::Listener,
                    &l.name,
                    FieldError::field(
                        "bindPort",
                        Reason::Other(format!(
                            "port {} is also bound by listener {:?}",
                            l.bind_port(),
                            spec.listeners[other].name
                        )),
                    ),
                ));
            }
            let mut hosts = HostRoutes::default();
            for (j, v) in l.virtual_hosts.iter().enumerate() {
                hosts.insert(v, j)?;
            }
            if index.listeners.insert(l.port, (i, hosts)).is_some() {
                return Err(Invalid::Duplicate {
                    kind: ResourceKind::Listener,
                    name: Listener::name_for(l.port),
                });
            }
        }
        Ok(Self { spec, index })
    }

    /// The plain contents.
    pub fn spec(&self) -> &ProxyConfigSpec {
        &self.spec
    }

    /// The plain contents, by value.
    pub fn into_spec(self) -> ProxyConfigSpec {
        self.spec
    }

    /// The config's version.
    pub fn version(&self) -> &str {
        &self.spec.version
    }

    /// The proxy's own identity.
    pub fn identity(&self) -> &SpiffeId {
        &self.spec.identity
    }

    /// The proxy's own workload.
    pub fn workload(&self) -> Option<&Workload> {
        self.spec.workload.as_ref()
    }

    /// The inbound mTLS policy.
    pub fn inbound_policy(&self) -> &InboundPolicy {
        &self.spec.inbound
    }

    /// The authorization policies that apply to this proxy's workload.
    pub fn authorization_policies(&self) -> &[AuthorizationPolicy] {
        &self.spec.authorization
    }

    /// The service with host name `hostname` (exact, lower-case).
    pub fn service(&self, hostname: &str) -> Option<&Service> {
        let &i = self.index.services.get(hostname)?;
        Some(&self.spec.services[i])
    }

    /// The service (and its port) a connection to `addr` is for: by VIP and port, or, for
    /// headless services, by endpoint address and service or target port. This is what
    /// transparent capture does with `SO_ORIGINAL_DST`.
    pub fn service_by_addr(&self, addr: SocketAddr) -> Option<(&Service, &ServicePort)> {
        let key = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        let &(s, p) = self.index.service_addrs.get(&key)?;
        let svc = &self.spec.services[s];
        Some((svc, &svc.ports[p]))
    }

    /// The endpoints of the service with host name `hostname`.
    pub fn endpoints(&self, hostname: &str) -> Option<&EndpointSet> {
        let &i = self.index.endpoints.get(hostname)?;
        Some(&self.spec.endpoints[i])
    }

    /// The cluster `key` names.
    pub fn cluster(&self, key: &ClusterKey) -> Option<&Cluster> {
        let &i = self.index.clusters.get(key)?;
        Some(&self.spec.clusters[i])
    }

    /// The endpoints of `cluster`: its service's endpoints that carry the subset's labels.
    pub fn cluster_endpoints<'a>(
        &'a self,
        cluster: &'a Cluster,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints(&cluster.key.hostname)
            .map(|set| set.endpoints.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|ep| cluster.selects(&ep.workload.labels))
    }

    /// The route table for a request to `authority` on `port`.
    ///
    /// `authority` is a `Host` header or `:authority` as received: a `:port` suffix and a
    /// trailing dot are ignored, and case does not matter. An exact host wins over the
    /// longest matching `*.suffix` wildcard, which wins over `*`.
    pub fn route_table(&self, authority: &str, port: u16) -> Option<&RouteTable> {
        let i = self.index.routes.get(&port)?.find(authority)?;
        Some(&self.spec.routes[i])
    }

    /// The gateway listeners.
    pub fn listeners(&self) -> &[Listener] {
        &self.spec.listeners
    }

    /// The gateway listener of server port `port`.
    pub fn listener(&self, port: u16) -> Option<&Listener> {
        let (i, _) = self.index.listeners.get(&port)?;
        Some(&self.spec.listeners[*i])
    }

    /// The virtual host of the gateway listener of server port `port` for a request to
    /// `authority`, matched as [`ProxyConfig::route_table`] matches.
    pub fn virtual_host(&self, port: u16, authority: &str) -> Option<&RouteTable> {
        let (l, hosts) = self.index.listeners.get(&port)?;
        let v = hosts.find(authority)?;
        Some(&self.spec.listeners[*l].virtual_hosts[v])
    }
}

// === impl HostRoutes ===

impl HostRoutes {
    /// Indexes the host names of `table` (position `i`); a host claimed twice is an error.
    fn insert(&mut self, table: &RouteTable, i: usize) -> Result<(), Invalid> {
        for h in &table.hostnames {
            let slot = if h == "*" {
                if self.any.is_some() {
                    return Err(duplicate_host(h, table.port));
                }
                self.any = Some(i);
                continue;
            } else if let Some(suffix) = h.strip_prefix('*') {
                self.suffix.entry(suffix.to_owned())
            } else {
                self.exact.entry(h.clone())
            };
            match slot {
                Entry::Occupied(_) => return Err(duplicate_host(h, table.port)),
                Entry::Vacant(v) => {
                    v.insert(i);
                }
            }
        }
        Ok(())
    }

    /// The table for `authority`: exact host, then the longest `*.suffix`, then `*`.
    fn find(&self, authority: &str) -> Option<usize> {
        let host = host_of(authority);
        with_lower_case(host, |host| {
            if let Some(&i) = self.exact.get(host) {
                return Some(i);
            }
            // Longest suffix first: each '.' after the first byte starts a candidate.
            for (dot, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
                if let Some(&i) = self.suffix.get(&host[dot..]) {
                    return Some(i);
                }
            }
            None
        })
        .or(self.any)
    }
}

fn unique<'a, T: ResourceType>(
    names: &mut HashSet<std::borrow::Cow<'a, str>>,
    r: &'a T,
) -> Result<(), Invalid> {
    let name = r.resource_name();
    if names.contains(&name) {
        return Err(Invalid::Duplicate {
            kind: T::KIND,
            name: name.into_owned(),
        });
    }
    names.insert(name);
    Ok(())
}

fn insert_unique<K: std::hash::Hash + Eq, T: ResourceType>(
    map: &mut HashMap<K, usize>,
    key: K,
    i: usize,
    r: &T,
) -> Result<(), Invalid> {
    match map.entry(key) {
        Entry::Occupied(_) => Err(Invalid::Duplicate {
            kind: T::KIND,
            name: r.resource_name().into_owned(),
        }),
        Entry::Vacant(v) => {
            v.insert(i);
            Ok(())
        }
    }
}

fn duplicate_host(host: &str, port: u16) -> Invalid {
    Invalid::Duplicate {
        kind: ResourceKind::RouteTable,
        name: format!("{host}:{port}"),
    }
}

/// The host of an authority: without `:port` and trailing dot. IPv6 literals keep their
/// brackets.
fn host_of(authority: &str) -> &str {
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Runs `f` on `s` lower-cased, using a stack buffer instead of allocating.
fn with_lower_case<R>(s: &str, f: impl FnOnce(&str) -> Option<R>) -> Option<R> {
    if !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(s);
    }
    let mut buf = [0u8; 255];
    let bytes = buf.get_mut(..s.len())?;
    bytes.copy_from_slice(s.as_bytes());
    bytes.make_ascii_lowercase();
    // ASCII lower-casing keeps UTF-8 valid.
    f(std::str::from_utf8(bytes).ok()?)
}

impl TryFrom<ProxyConfigSpec> for ProxyConfig {
    type Error = Invalid;

    fn try_from(spec: ProxyConfigSpec) -> Result<Self, Invalid> {
        Self::new(spec)
    }
}

impl PartialEq for ProxyConfig {
    fn eq(&self, other: &Self) -> bool {
        // The index is a function of the spec.
        self.spec == other.spec
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProxyConfig").field(&self.spec).finish()
    }
}

impl Serialize for ProxyConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.spec.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProxyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = ProxyConfigSpec::deserialize(d)?;
        Self::new(spec).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
