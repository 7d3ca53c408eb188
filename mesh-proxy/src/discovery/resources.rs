//! [`Resources`]: what the proxy holds from the control plane, and applying one discovery
//! response to it atomically. Synchronous and free of I/O, so it is tested without a
//! stream.
//!
//! The resources themselves live once, in the current [`ProxyConfig`] (shared with the
//! request path by `Arc`); beside it only each resource's name and version are kept, for
//! `initial_resource_versions` on reconnect. Applying a response copies the config's
//! contents, replaces the response's kind in the copy (removals, then adds and replaces)
//! and validates the whole result with [`ProxyConfig::new`]; only if every step succeeds
//! does the copy become current. A failure leaves everything as it was.
//!
//! With a limit ([`Resources::with_limit`], `--max-resources`), a response that would leave
//! the proxy holding more resources than that is rejected too, before anything is built.
//!
//! [`ProxyConfig::new`] checks every resource and uniqueness (names, hosts, VIPs) but not
//! references: a route to a cluster the proxy has not received is valid (requests to it
//! fail with `NC` until the cluster arrives), as the server sends kinds in dependency order.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use mesh_api::{
    model::{
        self, FieldError, Invalid, ProxyConfig, ProxyConfigSpec, ProxyMode, Reason, ResourceKind,
    },
    proto::discovery::v1 as pb,
    spiffe::SpiffeId,
};

/// Versions of one kind's resources, by name.
type Versions = BTreeMap<String, String>;

/// What the proxy holds: the current config and every resource's version.
#[derive(Debug)]
pub struct Resources {
    identity: SpiffeId,
    mode: ProxyMode,
    versions: [Versions; ResourceKind::ALL.len()],
    /// Kinds of which a response was applied.
    received: [bool; ResourceKind::ALL.len()],
    current: Option<Arc<ProxyConfig>>,
    /// The most resources (all kinds together) the proxy accepts to hold.
    max: Option<usize>,
}

/// A response applied.
#[derive(Debug)]
pub struct Applied {
    /// The kind it was about.
    pub kind: ResourceKind,
    /// The new config (its version is the response's `system_version`).
    pub config: Arc<ProxyConfig>,
    /// Resources added or replaced.
    pub upserted: usize,
    /// Resources removed (names the proxy did not hold are not counted).
    pub removed: usize,
}

/// Why a response was rejected (NACKed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// The response is about a kind this proxy does not know.
    #[error("unknown type_url {url:?}; the proxy subscribes to {}", known_types())]
    UnknownType {
        /// The response's `type_url`.
        url: String,
    },
    /// A resource is invalid, or the config it would make is.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The response would leave the proxy with more resources than it accepts.
    #[error(
        "too many resources: this {kind} update would leave the proxy with {count}, more than \
         --max-resources {max}"
    )]
    TooMany {
        /// The kind of the response.
        kind: ResourceKind,
        /// How many resources the proxy would hold.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl Rejected {
    /// The NACK's `error_detail`: INVALID_ARGUMENT with the message.
    pub fn detail(&self) -> pb::ErrorDetail {
        match self {
            Self::Invalid(e) => pb::ErrorDetail::from(e),
            Self::UnknownType { .. } => pb::ErrorDetail {
                code: 3,
                message: self.to_string(),
            },
            // RESOURCE_EXHAUSTED
            Self::TooMany { .. } => pb::ErrorDetail {
                code: 8,
                message: self.to_string(),
            },
        }
    }
}

fn known_types() -> String {
    let urls: Vec<&str> = ResourceKind::ALL.iter().map(|k| k.type_url()).collect();
    urls.join(", ")
}

fn slot(kind: ResourceKind) -> usize {
    ResourceKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ALL")
}

/// An error about resource envelope `name` (in the response, before conversion).
fn envelope(name: &str, field: &'static str, reason: String) -> Invalid {
    Invalid::Envelope {
        name: name.to_owned(),
        error: FieldError::field(field, Reason::Other(reason)),
    }
}

impl Resources {
    /// Nothing held yet, for a proxy with `identity` running as `mode`.
    pub fn new(identity: SpiffeId, mode: ProxyMode) -> Self {
        Self {
            identity,
            mode,
            versions: Default::default(),
            received: [false; ResourceKind::ALL.len()],
            current: None,
            max: None,
        }
    }

    /// Rejects responses that would leave more than `max` resources held (`None`: no limit).
    #[must_use]
    pub fn with_limit(mut self, max: Option<usize>) -> Self {
        self.max = max;
        self
    }

    /// The current config, if a response was applied.
    pub fn current(&self) -> Option<&Arc<ProxyConfig>> {
        self.current.as_ref()
    }

    /// The resources of `kind` held, name to version: a reconnect's
    /// `initial_resource_versions`.
    pub fn versions(&self, kind: ResourceKind) -> &BTreeMap<String, String> {
        &self.versions[slot(kind)]
    }

    /// Whether a response of every kind was applied (the proxy is ready then).
    pub fn is_synced(&self) -> bool {
        self.received.iter().all(|r| *r)
    }

    /// Applies `response` to a copy of what is held and validates the result; on success
    /// the copy becomes current. On failure nothing changes.
    pub fn apply(&mut self, response: pb::DiscoveryResponse) -> Result<Applied, Rejected> {
        let pb::DiscoveryResponse {
            type_url,
            system_version,
            resources,
            removed_resources,
            ..
        } = response;
        let kind = ResourceKind::from_type_url(&type_url)
            .ok_or(Rejected::UnknownType { url: type_url })?;
        let slot = slot(kind);
        let mut versions = self.versions[slot].clone();
        let mut spec = match &self.current {
            Some(c) => c.spec().clone(),
            None => {
                let mut spec = ProxyConfigSpec::new(self.identity.clone());
                spec.mode = self.mode;
                spec
            }
        };
        // This kind's resources, by name (a default inbound policy the server never sent is
        // not held).
        let mut held: BTreeMap<String, model::Resource> = take(&mut spec, kind)
            .into_iter()
            .map(|r| (r.name().into_owned(), r))
            .filter(|(name, _)| versions.contains_key(name))
            .collect();

        let removals: BTreeSet<&str> = removed_resources.iter().map(String::as_str).collect();
        let mut removed = 0;
        for name in &removals {
            versions.remove(*name);
            if held.remove(*name).is_some() {
                removed += 1;
            }
        }
        let mut upserted = BTreeSet::new();
        for r in resources {
            if let Some(body) = r.kind()
                && body != kind
            {
                return Err(envelope(
                    &r.name,
                    "body",
                    format!(
                        "is a {body}, but the response is about {kind}s ({type_url})",
                        type_url = kind.type_url()
                    ),
                )
                .into());
            }
            if removals.contains(r.name.as_str()) {
                return Err(envelope(
                    &r.name,
                    "name",
                    "is both added and removed in one response".into(),
                )
                .into());
            }
            if upserted.contains(&r.name) {
                return Err(Invalid::Duplicate { kind, name: r.name }.into());
            }
            let (name, version) = (r.name.clone(), r.version.clone());
            let resource = model::Resource::try_from(r)?;
            versions.insert(name.clone(), version);
            held.insert(name.clone(), resource);
            upserted.insert(name);
        }
        if kind == ResourceKind::Workload && held.len() > 1 {
            let names: Vec<&String> = held.keys().collect();
            let name = upserted.first().cloned().unwrap_or_default();
            return Err(Invalid::Resource {
                kind,
                name,
                error: FieldError::new(Reason::Other(format!(
                    "a proxy has one workload, but this would leave it with {names:?}"
                ))),
            }
            .into());
        }

        if let Some(max) = self.max {
            let others: usize = (0..self.versions.len())
                .filter(|i| *i != slot)
                .map(|i| self.versions[i].len())
                .sum();
            let count = others + versions.len();
            if count > max {
                return Err(Rejected::TooMany { kind, count, max });
            }
        }

        for r in held.into_values() {
            spec.push(r);
        }
        spec.version = system_version;
        let config = Arc::new(ProxyConfig::new(spec)?);
        self.versions[slot] = versions;
        self.received[slot] = true;
        self.current = Some(config.clone());
        Ok(Applied {
            kind,
            config,
            upserted: upserted.len(),
            removed,
        })
    }
}

/// Takes `kind`'s resources out of `spec` (leaving none, or the default inbound policy).
fn take(spec: &mut ProxyConfigSpec, kind: ResourceKind) -> Vec<model::Resource> {
    use model::Resource as R;
    fn drain<T>(v: &mut Vec<T>, f: fn(T) -> R) -> Vec<R> {
        std::mem::take(v).into_iter().map(f).collect()
    }
    match kind {
        ResourceKind::Workload => spec.workload.take().map(R::Workload).into_iter().collect(),
        ResourceKind::InboundPolicy => vec![R::InboundPolicy(std::mem::take(&mut spec.inbound))],
        ResourceKind::AuthorizationPolicy => drain(&mut spec.authorization, R::AuthorizationPolicy),
        ResourceKind::Service => drain(&mut spec.services, R::Service),
        ResourceKind::EndpointSet => drain(&mut spec.endpoints, R::EndpointSet),
        ResourceKind::Cluster => drain(&mut spec.clusters, R::Cluster),
        ResourceKind::RouteTable => drain(&mut spec.routes, R::RouteTable),
        ResourceKind::Listener => drain(&mut spec.listeners, R::Listener),
    }
}
