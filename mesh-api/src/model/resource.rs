//! Resources: the units the discovery protocol sends, with their kinds and names, and the
//! [`Node`] a proxy describes itself with.

use std::{borrow::Cow, collections::BTreeMap, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    model::{
        AuthorizationPolicy, Cluster, EndpointSet, InboundPolicy, Listener, RouteTable, Service,
        Workload,
        validate::{self, FieldError, Invalid, ResultExt as _},
    },
    spiffe::SpiffeId,
};

/// The kinds of resource a proxy's config is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// [`crate::model::Workload`]
    Workload,
    /// [`crate::model::InboundPolicy`]
    InboundPolicy,
    /// [`crate::model::AuthorizationPolicy`]
    AuthorizationPolicy,
    /// [`crate::model::Service`]
    Service,
    /// [`crate::model::EndpointSet`]
    EndpointSet,
    /// [`crate::model::Cluster`]
    Cluster,
    /// [`crate::model::RouteTable`]
    RouteTable,
    /// [`crate::model::Listener`] (gateway-mode proxies only)
    Listener,
}

impl ResourceKind {
    /// Every kind, in the order a server sends them (dependencies first), so that a route
    /// never names a cluster the proxy has not heard of yet.
    pub const ALL: [Self; 8] = [
        Self::Workload,
        Self::InboundPolicy,
        Self::AuthorizationPolicy,
        Self::Service,
        Self::EndpointSet,
        Self::Cluster,
        Self::RouteTable,
        Self::Listener,
    ];

    /// The kind's name in messages, e.g. `route table`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::InboundPolicy => "inbound policy",
            Self::AuthorizationPolicy => "authorization policy",
            Self::Service => "service",
            Self::EndpointSet => "endpoint set",
            Self::Cluster => "cluster",
            Self::RouteTable => "route table",
            Self::Listener => "listener",
        }
    }

    /// The discovery protocol's `type_url` for this kind: the fully-qualified name of its
    /// protobuf message, e.g. `mesh.discovery.v1.RouteTable`.
    pub fn type_url(self) -> &'static str {
        match self {
            Self::Workload => "mesh.discovery.v1.Workload",
            Self::InboundPolicy => "mesh.discovery.v1.InboundPolicy",
            Self::AuthorizationPolicy => "mesh.discovery.v1.AuthorizationPolicy",
            Self::Service => "mesh.discovery.v1.Service",
            Self::EndpointSet => "mesh.discovery.v1.EndpointSet",
            Self::Cluster => "mesh.discovery.v1.Cluster",
            Self::RouteTable => "mesh.discovery.v1.RouteTable",
            Self::Listener => "mesh.discovery.v1.Listener",
        }
    }

    /// The kind whose [`ResourceKind::type_url`] is `url`.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_url() == url)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model type that is sent as a discovery resource.
pub trait ResourceType {
    /// Its kind.
    const KIND: ResourceKind;

    /// Its resource name (unique among resources of its kind).
    fn resource_name(&self) -> Cow<'_, str>;

    /// Checks everything the type system does not, naming the offending field.
    fn validate(&self) -> Result<(), Invalid>;
}

macro_rules! resource_type {
    ($ty:ident, |$s:ident| $name:expr) => {
        impl ResourceType for $ty {
            const KIND: ResourceKind = ResourceKind::$ty;

            fn resource_name(&self) -> Cow<'_, str> {
                let $s = self;
                $name
            }

            fn validate(&self) -> Result<(), Invalid> {
                self.check()
                    .map_err(|e| Invalid::resource(Self::KIND, self.resource_name(), e))
            }
        }
    };
}

resource_type!(Workload, |w| Cow::Owned(w.resource_name()));
resource_type!(InboundPolicy, |_p| Cow::Borrowed(InboundPolicy::NAME));
resource_type!(AuthorizationPolicy, |p| Cow::Owned(p.resource_name()));
resource_type!(Service, |s| Cow::Borrowed(&s.hostname));
resource_type!(EndpointSet, |e| Cow::Borrowed(&e.hostname));
resource_type!(Cluster, |c| Cow::Owned(c.resource_name()));
resource_type!(RouteTable, |r| Cow::Borrowed(&r.name));
resource_type!(Listener, |l| Cow::Borrowed(&l.name));

/// A resource of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Resource {
    /// This proxy's own workload.
    Workload(Workload),
    /// This proxy's inbound mTLS policy.
    InboundPolicy(InboundPolicy),
    /// An authorization policy selecting this proxy's workload.
    AuthorizationPolicy(AuthorizationPolicy),
    /// A service.
    Service(Service),
    /// A service's endpoints.
    EndpointSet(EndpointSet),
    /// Upstream settings of a service port or subset.
    Cluster(Cluster),
    /// Routes for a host and port.
    RouteTable(RouteTable),
    /// A gateway listener.
    Listener(Listener),
}

macro_rules! each_resource {
    ($self:expr, |$r:ident| $body:expr) => {
        match $self {
            Resource::Workload($r) => $body,
            Resource::InboundPolicy($r) => $body,
            Resource::AuthorizationPolicy($r) => $body,
            Resource::Service($r) => $body,
            Resource::EndpointSet($r) => $body,
            Resource::Cluster($r) => $body,
            Resource::RouteTable($r) => $body,
            Resource::Listener($r) => $body,
        }
    };
}

impl Resource {
    /// Its kind.
    pub fn kind(&self) -> ResourceKind {
        fn kind_of<T: ResourceType>(_: &T) -> ResourceKind {
            T::KIND
        }
        each_resource!(self, |r| kind_of(r))
    }

    /// Its resource name.
    pub fn name(&self) -> Cow<'_, str> {
        each_resource!(self, |r| ResourceType::resource_name(r))
    }

    /// Validates it; see [`ResourceType::validate`].
    pub fn validate(&self) -> Result<(), Invalid> {
        each_resource!(self, |r| r.validate())
    }
}

/// What a proxy is deployed as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProxyMode {
    /// Next to one workload, capturing its traffic.
    #[default]
    Sidecar,
    /// A standalone ingress (or egress) gateway.
    Gateway,
}

/// A proxy's description of itself, sent when it subscribes.
///
/// The control plane trusts only the identity from the proxy's authenticated client
/// certificate; the rest selects what config to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// A unique id of this proxy instance, e.g. `sidecar~10.1.2.3~reviews-v1-abc.default`.
    pub id: String,
    /// The pod (or WorkloadEntry) name.
    pub pod_name: String,
    /// The namespace.
    pub namespace: String,
    /// The workload's IP address.
    pub ip: IpAddr,
    /// The proxy's identity (its service account).
    pub identity: SpiffeId,
    /// The workload's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Sidecar or gateway.
    #[serde(default)]
    pub mode: ProxyMode,
    /// The proxy's version, e.g. `0.1.0`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
}

impl Node {
    /// Checks the fields, naming the offending one.
    pub fn validate(&self) -> Result<(), Invalid> {
        let check = || -> Result<(), FieldError> {
            validate::non_empty(&self.id).at("id")?;
            validate::non_empty(&self.pod_name).at("podName")?;
            validate::non_empty(&self.namespace).at("namespace")?;
            Ok(())
        };
        check().map_err(|error| Invalid::Node {
            id: self.id.clone(),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip() {
        for k in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_type_url(k.type_url()), Some(k));
        }
        assert_eq!(ResourceKind::from_type_url("mesh.discovery.v1.Nope"), None);
    }
}
