//! Workloads (the pods or processes that serve traffic) and the endpoint sets that map a
//! service to the workloads behind it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    num::NonZeroU32,
};

use serde::{Deserialize, Serialize};

use crate::{
    model::validate::{self, FieldError, Reason, ResultExt as _},
    spiffe::SpiffeId,
};

/// A workload instance: one pod, VM or process with one IP address and one identity.
///
/// Its resource name is `namespace/name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// A unique, stable id (the pod UID; for local workloads, the WorkloadEntry name).
    pub uid: String,
    /// The pod or WorkloadEntry name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The workload's IP address.
    pub address: IpAddr,
    /// The workload's identity, `spiffe://td/ns/<ns>/sa/<sa>`; the service account is
    /// [`Workload::service_account`].
    pub identity: SpiffeId,
    /// The workload's labels (for subsets, source matches and policy selectors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The canonical service (`app.kubernetes.io/name` or `app` label, else the workload
    /// name), for telemetry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_service: String,
    /// The canonical revision (`app.kubernetes.io/version` or `version` label, else
    /// `latest`), for telemetry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canonical_revision: String,
    /// Where the workload runs, for locality-aware load balancing.
    #[serde(default, skip_serializing_if = "Locality::is_empty")]
    pub locality: Locality,
    /// Whether it may receive new traffic.
    #[serde(default)]
    pub health: Health,
    /// Whether a mesh proxy fronts the workload: if so, peers reach it with mutual TLS on
    /// its port 15008; if not, in plaintext on the target port.
    #[serde(default)]
    pub in_mesh: bool,
}

/// Where a workload runs: region, zone, sub-zone (all optional, outermost first).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Locality {
    /// e.g. `us-east1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// e.g. `us-east1-b`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// A finer division within a zone (a rack, a node pool).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subzone: String,
}

impl Locality {
    /// Whether no part is set.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }
}

/// Whether a workload may receive new traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    /// Ready: load balancers pick it.
    #[default]
    Healthy,
    /// Not ready: load balancers skip it (unless nothing else is left).
    Unhealthy,
    /// Terminating: finish in-flight requests, send no new ones.
    Draining,
}

/// The endpoints of one service: every workload that serves it, with the ports it serves on.
///
/// Its resource name is the service's [`hostname`](EndpointSet::hostname).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSet {
    /// The [`crate::model::Service::hostname`] of the service these endpoints serve.
    pub hostname: String,
    /// The endpoints, in no particular order.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One workload serving one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// The workload.
    pub workload: Workload,
    /// Service port → the port this workload serves it on, where it differs from the
    /// service port's `targetPort` (named target ports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, u16>,
    /// Relative load-balancing weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: NonZeroU32,
}

fn default_weight() -> NonZeroU32 {
    NonZeroU32::MIN
}

// === impl Workload ===

impl Workload {
    /// The service account, from [`Workload::identity`].
    pub fn service_account(&self) -> &str {
        self.identity.service_account()
    }

    /// The resource name, `namespace/name`.
    pub fn resource_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::non_empty(&self.uid).at("uid")?;
        validate::non_empty(&self.name).at("name")?;
        validate::non_empty(&self.namespace).at("namespace")?;
        for k in self.labels.keys() {
            validate::non_empty(k).at_key("labels", "\"\"")?;
        }
        Ok(())
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// The port to connect to on this endpoint for service port `port`, whose default
    /// target port is `target_port`.
    pub fn target_port(&self, port: u16, target_port: u16) -> u16 {
        self.ports.get(&port).copied().unwrap_or(target_port)
    }
}

// === impl EndpointSet ===

impl EndpointSet {
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::hostname(&self.hostname, false).at("hostname")?;
        let mut uids = BTreeSet::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            ep.workload
                .check()
                .at("workload")
                .at_index("endpoints", i)?;
            if !uids.insert(&ep.workload.uid) {
                return Err(FieldError::field(
                    "uid",
                    Reason::Duplicate(format!("workload {:?}", ep.workload.uid)),
                )
                .at("workload")
                .at_index("endpoints", i));
            }
            for (&port, &target) in &ep.ports {
                validate::non_zero(port.into())
                    .and_then(|()| validate::non_zero(target.into()))
                    .at_key("ports", port)
                    .at_index("endpoints", i)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::mk_workload;

    #[test]
    fn endpoint_defaults_and_ports() {
        let json = serde_json::json!({
            "workload": {
                "uid": "u1", "name": "reviews-1", "namespace": "default",
                "address": "10.0.0.1",
                "identity": "spiffe://cluster.local/ns/default/sa/reviews"
            }
        });
        let ep: Endpoint = serde_json::from_value(json).unwrap();
        assert_eq!(ep.weight.get(), 1);
        assert_eq!(ep.workload.health, Health::Healthy);
        assert!(!ep.workload.in_mesh);
        assert_eq!(ep.workload.service_account(), "reviews");
        assert_eq!(ep.target_port(9080, 8080), 8080);
        let ep = Endpoint {
            ports: [(9080, 9999)].into(),
            ..ep
        };
        assert_eq!(ep.target_port(9080, 8080), 9999);
    }

    #[test]
    fn checks() {
        let mut set = EndpointSet {
            hostname: "reviews.default.svc.cluster.local".into(),
            endpoints: vec![
                Endpoint {
                    workload: mk_workload("a", "10.0.0.1", "v1"),
                    ports: BTreeMap::new(),
                    weight: NonZeroU32::MIN,
                },
                Endpoint {
                    workload: mk_workload("b", "10.0.0.2", "v1"),
                    ports: [(9080, 0)].into(),
                    weight: NonZeroU32::MIN,
                },
            ],
        };
        assert_eq!(
            set.check().unwrap_err().to_string(),
            "endpoints[1].ports[9080]: must not be zero"
        );
        set.endpoints[1].ports.clear();
        assert_eq!(set.check(), Ok(()));
        set.endpoints[1].workload.uid = "uid-a".into();
        assert_eq!(
            set.check().unwrap_err().to_string(),
            "endpoints[1].workload.uid: duplicate workload \"uid-a\""
        );
        set.endpoints[1].workload.uid.clear();
        assert_eq!(
            set.check().unwrap_err().to_string(),
            "endpoints[1].workload.uid: must not be empty"
        );
    }

    #[test]
    fn rejects_zero_weight() {
        let json = serde_json::json!({
            "workload": {
                "uid": "u1", "name": "n", "namespace": "default", "address": "10.0.0.1",
                "identity": "spiffe://cluster.local/ns/default/sa/reviews"
            },
            "weight": 0
        });
        assert!(serde_json::from_value::<Endpoint>(json).is_err());
    }
}
