//! Conversions between the wire types of [`crate::proto::discovery::v1`] and
//! [`crate::model`].
//!
//! Field paths in errors use the model's (camelCase) names, which are also the static
//! config's, so an error reads the same whichever way the config arrived.

use std::{net::IpAddr, time::Duration};

use crate::{
    model::{
        self, FieldError, Invalid, Percent, Reason, ResourceKind, ResourceType,
        validate::ResultExt as _,
    },
    proto::discovery::v1 as pb,
    spiffe::SpiffeId,
};

mod cluster;
mod route;
mod security;
mod service;

#[cfg(test)]
mod tests;

// === helpers ===

fn required<T>(v: Option<T>) -> Result<T, FieldError> {
    v.ok_or_else(|| FieldError::new(Reason::Missing))
}

fn ip_from(bytes: &[u8]) -> Result<IpAddr, FieldError> {
    match bytes.len() {
        4 => Ok(IpAddr::from(
            <[u8; 4]>::try_from(bytes).expect("length checked"),
        )),
        16 => Ok(IpAddr::from(
            <[u8; 16]>::try_from(bytes).expect("length checked"),
        )),
        n => Err(FieldError::new(Reason::IpLength(n))),
    }
}

fn ip_to(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn port_from(v: u32) -> Result<u16, FieldError> {
    u16::try_from(v).map_err(|_| {
        FieldError::new(Reason::OutOfRange {
            value: v.to_string(),
            expected: "a port number (0..=65535)",
        })
    })
}

fn duration_from(d: prost_types::Duration) -> Result<Duration, FieldError> {
    let secs = u64::try_from(d.seconds);
    let nanos = u32::try_from(d.nanos);
    match (secs, nanos) {
        (Ok(s), Ok(n)) if n < 1_000_000_000 => Ok(Duration::new(s, n)),
        _ => Err(FieldError::new(Reason::Duration(format!(
            "{}s {}ns is negative or malformed",
            d.seconds, d.nanos
        )))),
    }
}

fn duration_to(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        // Durations beyond i64::MAX seconds (292 billion years) saturate.
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).expect("subsec nanos fit in i32"),
    }
}

fn opt_duration_from(d: Option<prost_types::Duration>) -> Result<Option<Duration>, FieldError> {
    d.map(duration_from).transpose()
}

fn required_duration(d: Option<prost_types::Duration>) -> Result<Duration, FieldError> {
    duration_from(required(d)?)
}

fn percent_from(v: f64) -> Result<Percent, FieldError> {
    Percent::new(v).map_err(|e| {
        FieldError::new(Reason::OutOfRange {
            value: e.0.to_string(),
            expected: "a percentage (0..=100)",
        })
    })
}

fn enum_from<E: TryFrom<i32>>(v: i32) -> Result<E, FieldError> {
    E::try_from(v).map_err(|_| FieldError::new(Reason::UnknownEnum(v)))
}

fn spiffe_from(s: &str) -> Result<SpiffeId, FieldError> {
    s.parse().map_err(|e| FieldError::new(Reason::SpiffeId(e)))
}

/// Converts the fields of a resource (with `convert`), then validates it, wrapping errors
/// in [`Invalid::Resource`] named `name`.
fn resource<T: ResourceType>(
    name: &str,
    convert: impl FnOnce() -> Result<T, FieldError>,
) -> Result<T, Invalid> {
    let value = convert().map_err(|e| Invalid::resource(T::KIND, name, e))?;
    value.validate()?;
    Ok(value)
}

/// Maps a protobuf enum with an `UNSPECIFIED` zero value to a model enum and back:
/// unspecified means the model's default.
macro_rules! enum_map {
    ($name:ident, unspecified => $default:ident, [$($variant:ident),+ $(,)?]) => {
        impl From<pb::$name> for model::$name {
            fn from(v: pb::$name) -> Self {
                match v {
                    pb::$name::Unspecified => model::$name::$default,
                    $(pb::$name::$variant => model::$name::$variant,)+
                }
            }
        }

        impl From<model::$name> for pb::$name {
            fn from(v: model::$name) -> Self {
                match v {
                    $(model::$name::$variant => pb::$name::$variant,)+
                }
            }
        }
    };
}
use enum_map;

// === Node ===

enum_map!(ProxyMode, unspecified => Sidecar, [Sidecar, Gateway]);

impl TryFrom<pb::Node> for model::Node {
    type Error = Invalid;

    fn try_from(n: pb::Node) -> Result<Self, Invalid> {
        let id = n.id.clone();
        let convert = || -> Result<Self, FieldError> {
            Ok(Self {
                ip: ip_from(&n.ip).at("ip")?,
                identity: spiffe_from(&n.identity).at("identity")?,
                mode: enum_from::<pb::ProxyMode>(n.mode).at("mode")?.into(),
                id: n.id,
                pod_name: n.pod_name,
                namespace: n.namespace,
                labels: n.labels,
                proxy_version: n.proxy_version,
            })
        };
        let node = convert().map_err(|error| Invalid::Node { id, error })?;
        node.validate()?;
        Ok(node)
    }
}

impl From<&model::Node> for pb::Node {
    fn from(n: &model::Node) -> Self {
        Self {
            id: n.id.clone(),
            pod_name: n.pod_name.clone(),
            namespace: n.namespace.clone(),
            ip: ip_to(n.ip),
            identity: n.identity.to_string(),
            labels: n.labels.clone(),
            mode: pb::ProxyMode::from(n.mode).into(),
            proxy_version: n.proxy_version.clone(),
        }
    }
}

// === Resource ===

impl TryFrom<pb::Resource> for model::Resource {
    type Error = Invalid;

    /// Converts and validates the body, and checks that the envelope's name is the body's
    /// resource name.
    fn try_from(r: pb::Resource) -> Result<Self, Invalid> {
        use pb::resource::Body;
        let pb::Resource { name, body, .. } = r;
        let envelope = |error| Invalid::Envelope {
            name: name.clone(),
            error,
        };
        let body = body.ok_or_else(|| envelope(FieldError::field("body", Reason::Missing)))?;
        let resource = match body {
            Body::Workload(b) => Self::Workload(b.try_into()?),
            Body::InboundPolicy(b) => Self::InboundPolicy(b.try_into()?),
            Body::AuthorizationPolicy(b) => Self::AuthorizationPolicy(b.try_into()?),
            Body::Service(b) => Self::Service(b.try_into()?),
            Body::EndpointSet(b) => Self::EndpointSet(b.try_into()?),
            Body::Cluster(b) => Self::Cluster(b.try_into()?),
            Body::RouteTable(b) => Self::RouteTable(b.try_into()?),
            Body::Listener(b) => Self::Listener(b.try_into()?),
        };
        if resource.name() != name {
            return Err(envelope(FieldError::field(
                "name",
                Reason::Other(format!(
                    "does not match the {}'s name {:?}",
                    resource.kind(),
                    resource.name()
                )),
            )));
        }
        Ok(resource)
    }
}

impl From<&model::Resource> for pb::Resource {
    /// The resource, named by its body, with an empty version (see [`pb::Resource::new`]).
    fn from(r: &model::Resource) -> Self {
        Self::new(r, String::new())
    }
}

impl pb::Resource {
    /// Wraps `resource` with its name and `version`.
    pub fn new(resource: &model::Resource, version: impl Into<String>) -> Self {
        use pb::resource::Body;
        let body = match resource {
            model::Resource::Workload(r) => Body::Workload(r.into()),
            model::Resource::InboundPolicy(r) => Body::InboundPolicy(r.into()),
            model::Resource::AuthorizationPolicy(r) => Body::AuthorizationPolicy(r.into()),
            model::Resource::Service(r) => Body::Service(r.into()),
            model::Resource::EndpointSet(r) => Body::EndpointSet(r.into()),
            model::Resource::Cluster(r) => Body::Cluster(r.into()),
            model::Resource::RouteTable(r) => Body::RouteTable(r.into()),
            model::Resource::Listener(r) => Body::Listener(r.into()),
        };
        Self {
            name: resource.name().into_owned(),
            version: version.into(),
            body: Some(body),
        }
    }

    /// The kind of the body, if there is one.
    pub fn kind(&self) -> Option<ResourceKind> {
        use pb::resource::Body;
        Some(match self.body.as_ref()? {
            Body::Workload(_) => ResourceKind::Workload,
            Body::InboundPolicy(_) => ResourceKind::InboundPolicy,
            Body::AuthorizationPolicy(_) => ResourceKind::AuthorizationPolicy,
            Body::Service(_) => ResourceKind::Service,
            Body::EndpointSet(_) => ResourceKind::EndpointSet,
            Body::Cluster(_) => ResourceKind::Cluster,
            Body::RouteTable(_) => ResourceKind::RouteTable,
            Body::Listener(_) => ResourceKind::Listener,
        })
    }
}

impl From<&Invalid> for pb::ErrorDetail {
    /// A NACK's detail: INVALID_ARGUMENT with the error's message.
    fn from(e: &Invalid) -> Self {
        Self {
            code: 3,
            message: e.to_string(),
        }
    }
}
