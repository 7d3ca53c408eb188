//! Services, workloads and endpoint sets.

use std::num::NonZeroU32;

use super::{enum_from, enum_map, ip_from, ip_to, port_from, required, resource, spiffe_from};
use crate::{
    model::{self, FieldError, Invalid, validate::ResultExt as _},
    proto::discovery::v1 as pb,
};

enum_map!(ServiceKind, unspecified => ClusterIp, [ClusterIp, Headless, External]);
enum_map!(Health, unspecified => Healthy, [Healthy, Unhealthy, Draining]);

impl From<pb::AppProtocol> for model::AppProtocol {
    fn from(p: pb::AppProtocol) -> Self {
        match p {
            pb::AppProtocol::Unspecified => Self::Unknown,
            pb::AppProtocol::Http => Self::Http,
            pb::AppProtocol::Http2 => Self::Http2,
            pb::AppProtocol::Grpc => Self::Grpc,
            pb::AppProtocol::Tcp => Self::Tcp,
            pb::AppProtocol::Tls => Self::Tls,
        }
    }
}

impl From<model::AppProtocol> for pb::AppProtocol {
    fn from(p: model::AppProtocol) -> Self {
        match p {
            model::AppProtocol::Unknown => Self::Unspecified,
            model::AppProtocol::Http => Self::Http,
            model::AppProtocol::Http2 => Self::Http2,
            model::AppProtocol::Grpc => Self::Grpc,
            model::AppProtocol::Tcp => Self::Tcp,
            model::AppProtocol::Tls => Self::Tls,
        }
    }
}

// === Service ===

impl TryFrom<pb::Service> for model::Service {
    type Error = Invalid;

    fn try_from(s: pb::Service) -> Result<Self, Invalid> {
        let hostname = s.hostname.clone();
        resource(&hostname, || {
            let name = required(s.name).at("name")?;
            Ok(Self {
                name: model::ServiceName {
                    namespace: name.namespace,
                    name: name.name,
                },
                hostname: s.hostname,
                vips: s
                    .vips
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ip_from(v).at_index("vips", i))
                    .collect::<Result<_, _>>()?,
                ports: s
                    .ports
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| model::ServicePort::try_from(p).at_index("ports", i))
                    .collect::<Result<_, _>>()?,
                kind: enum_from::<pb::ServiceKind>(s.kind).at("kind")?.into(),
            })
        })
    }
}

impl TryFrom<pb::ServicePort> for model::ServicePort {
    type Error = FieldError;

    fn try_from(p: pb::ServicePort) -> Result<Self, FieldError> {
        Ok(Self {
            port: port_from(p.port).at("port")?,
            target_port: port_from(p.target_port).at("targetPort")?,
            name: p.name,
            protocol: enum_from::<pb::AppProtocol>(p.protocol)
                .at("protocol")?
                .into(),
        })
    }
}

impl From<&model::Service> for pb::Service {
    fn from(s: &model::Service) -> Self {
        Self {
            name: Some(pb::ServiceName {
                namespace: s.name.namespace.clone(),
                name: s.name.name.clone(),
            }),
            hostname: s.hostname.clone(),
            vips: s.vips.iter().map(|v| ip_to(*v)).collect(),
            ports: s
                .ports
                .iter()
                .map(|p| pb::ServicePort {
                    port: p.port.into(),
                    target_port: p.target_port.into(),
                    name: p.name.clone(),
                    protocol: pb::AppProtocol::from(p.protocol).into(),
                })
                .collect(),
            kind: pb::ServiceKind::from(s.kind).into(),
        }
    }
}

// === Workload ===

impl TryFrom<pb::Workload> for model::Workload {
    type Error = Invalid;

    fn try_from(w: pb::Workload) -> Result<Self, Invalid> {
        let name = format!("{}/{}", w.namespace, w.name);
        resource(&name, || Self::try_from_fields(w))
    }
}

impl model::Workload {
    fn try_from_fields(w: pb::Workload) -> Result<Self, FieldError> {
        let locality = w.locality.unwrap_or_default();
        Ok(Self {
            address: ip_from(&w.address).at("address")?,
            identity: spiffe_from(&w.identity).at("identity")?,
            health: enum_from::<pb::Health>(w.health).at("health")?.into(),
            uid: w.uid,
            name: w.name,
            namespace: w.namespace,
            labels: w.labels,
            canonical_service: w.canonical_service,
            canonical_revision: w.canonical_revision,
            locality: model::Locality {
                region: locality.region,
                zone: locality.zone,
                subzone: locality.subzone,
            },
            in_mesh: w.in_mesh,
        })
    }
}

impl From<&model::Workload> for pb::Workload {
    fn from(w: &model::Workload) -> Self {
        Self {
            uid: w.uid.clone(),
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            address: ip_to(w.address),
            identity: w.identity.to_string(),
            labels: w.labels.clone(),
            canonical_service: w.canonical_service.clone(),
            canonical_revision: w.canonical_revision.clone(),
            locality: (!w.locality.is_empty()).then(|| pb::Locality {
                region: w.locality.region.clone(),
                zone: w.locality.zone.clone(),
                subzone: w.locality.subzone.clone(),
            }),
            health: pb::Health::from(w.health).into(),
            in_mesh: w.in_mesh,
        }
    }
}

// === EndpointSet ===

impl TryFrom<pb::EndpointSet> for model::EndpointSet {
    type Error = Invalid;

    fn try_from(e: pb::EndpointSet) -> Result<Self, Invalid> {
        let hostname = e.hostname.clone();
        resource(&hostname, || {
            Ok(Self {
                hostname: e.hostname,
                endpoints: e
                    .endpoints
                    .into_iter()
                    .enumerate()
                    .map(|(i, ep)| model::Endpoint::try_from(ep).at_index("endpoints", i))
                    .collect::<Result<_, _>>()?,
            })
        })
    }
}

impl TryFrom<pb::Endpoint> for model::Endpoint {
    type Error = FieldError;

    fn try_from(ep: pb::Endpoint) -> Result<Self, FieldError> {
        let workload = required(ep.workload)
            .and_then(model::Workload::try_from_fields)
            .at("workload")?;
        let ports = ep
            .ports
            .into_iter()
            .map(|(k, v)| {
                let port = port_from(k).at_key("ports", k)?;
                Ok((port, port_from(v).at_key("ports", k)?))
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(Self {
            workload,
            ports,
            // Zero (unset) means the default weight, 1.
            weight: NonZeroU32::new(ep.weight).unwrap_or(NonZeroU32::MIN),
        })
    }
}

impl From<&model::EndpointSet> for pb::EndpointSet {
    fn from(e: &model::EndpointSet) -> Self {
        Self {
            hostname: e.hostname.clone(),
            endpoints: e
                .endpoints
                .iter()
                .map(|ep| pb::Endpoint {
                    workload: Some((&ep.workload).into()),
                    ports: ep
                        .ports
                        .iter()
                        .map(|(&k, &v)| (k.into(), v.into()))
                        .collect(),
                    weight: ep.weight.get(),
                })
                .collect(),
        }
    }
}
