//! Workloads: the instances that serve traffic, whatever they come from.
//!
//! Every source is first turned into a [`WorkloadInfo`] — a WorkloadEntry now (local mode
//! and VMs), a Pod from the Kubernetes registry later — and everything downstream
//! (endpoint selection, named target ports, the proxy's own workload) works on that, then
//! on the [`Workload`] built from it.

use std::{collections::BTreeMap, net::IpAddr, num::NonZeroU32};

use mesh_api::{
    config::networking::WorkloadEntrySpec,
    model::{Health, Locality, Workload},
    spiffe::{self, SpiffeId},
};

use super::hosts::Cx;

/// The label (or annotation) that opts a workload out of the mesh: `"false"` means no
/// sidecar runs next to it, so peers reach it in plaintext.
pub(super) const INJECT_LABEL: &str = "sidecar.mesh.dev/inject";

/// One workload instance as the index sees it, independent of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// A unique, stable id: `<namespace>/<name>` for WorkloadEntries (a pod's UID later).
    pub uid: String,
    /// The WorkloadEntry (or pod) name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The workload's IP address.
    pub address: IpAddr,
    /// Port name → port number on the workload: resolves named target ports and a
    /// service port's per-workload override (keyed by service port name, as Istio).
    pub ports: BTreeMap<String, u16>,
    /// The workload's labels.
    pub labels: BTreeMap<String, String>,
    /// The service account whose identity the workload holds (`default` when unset).
    pub service_account: String,
    /// Where it runs.
    pub locality: Locality,
    /// Relative load-balancing weight.
    pub weight: NonZeroU32,
    /// Whether a mesh proxy fronts it.
    pub in_mesh: bool,
    /// Whether it may receive traffic.
    pub health: Health,
}

// === impl WorkloadInfo ===

impl WorkloadInfo {
    /// Translates a WorkloadEntry spec (or a ServiceEntry's static endpoint). `None`, with a
    /// warning, when the address is not an IP (DNS endpoints are not supported).
    pub(super) fn from_entry(
        cx: &mut Cx<'_>,
        uid: String,
        name: String,
        spec: &WorkloadEntrySpec,
        in_mesh: bool,
    ) -> Option<Self> {
        let Ok(address) = spec.address.trim().parse::<IpAddr>() else {
            cx.warn(format!(
                "{name}: address {:?} is not an IP address (DNS and unix-socket endpoints are not supported); skipped",
                spec.address
            ));
            return None;
        };
        let mut ports = BTreeMap::new();
        for (port_name, &number) in &spec.ports {
            if let Some(p) = cx.port(&format!("{name}: ports[{port_name}]"), number.into()) {
                ports.insert(port_name.clone(), p);
            }
        }
        let mut labels = spec.labels.clone();
        if labels.remove("").is_some() {
            cx.warn(format!("{name}: a label with an empty key was dropped"));
        }
        let opted_out = labels.get(INJECT_LABEL).is_some_and(|v| v == "false");
        Some(Self {
            uid,
            name,
            namespace: cx.namespace().to_owned(),
            address,
            ports,
            service_account: spec
                .service_account
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_owned(),
            locality: parse_locality(spec.locality.as_deref().unwrap_or_default()),
            weight: spec
                .weight
                .and_then(NonZeroU32::new)
                .unwrap_or(NonZeroU32::MIN),
            in_mesh: in_mesh && !opted_out,
            health: Health::Healthy,
            labels,
        })
    }

    /// The model's workload, with its SPIFFE identity in `trust_domain`.
    pub fn to_workload(&self, trust_domain: &str) -> Result<Workload, spiffe::Error> {
        let identity = SpiffeId::new(trust_domain, &self.namespace, &self.service_account)?;
        let label = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| self.labels.get(*k).filter(|v| !v.is_empty()))
                .cloned()
        };
        Ok(Workload {
            uid: self.uid.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            address: self.address,
            identity,
            labels: self.labels.clone(),
            canonical_service: label(&["app.kubernetes.io/name", "app"])
                .unwrap_or_else(|| self.name.clone()),
            canonical_revision: label(&["app.kubernetes.io/version", "version"])
                .unwrap_or_else(|| "latest".to_owned()),
            locality: self.locality.clone(),
            health: self.health,
            in_mesh: self.in_mesh,
        })
    }
}

/// A workload with its model form, as the index keeps it.
#[derive(Debug, Clone)]
pub(super) struct WorkloadRecord {
    pub(super) info: WorkloadInfo,
    pub(super) workload: Workload,
}

impl WorkloadRecord {
    /// Builds the model form; `None`, with a warning, when the identity is invalid.
    pub(super) fn new(cx: &mut Cx<'_>, info: WorkloadInfo) -> Option<Self> {
        match info.to_workload(&cx.settings.trust_domain) {
            Ok(workload) => Some(Self { info, workload }),
            Err(e) => {
                cx.warn(format!(
                    "{}: cannot build the identity of service account {:?}: {e}; skipped",
                    info.name, info.service_account
                ));
                None
            }
        }
    }
}

/// Translates a WorkloadEntry resource.
pub(super) fn from_workload_entry(
    cx: &mut Cx<'_>,
    we: &mesh_api::config::WorkloadEntry,
) -> Option<WorkloadRecord> {
    let name = cx.origin.name.clone();
    let uid = format!("{}/{name}", cx.namespace());
    let annotated_out = we
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECT_LABEL))
        .is_some_and(|v| v == "false");
    let info = WorkloadInfo::from_entry(cx, uid, name, &we.spec, !annotated_out)?;
    WorkloadRecord::new(cx, info)
}

/// `region/zone/subzone`, each part optional.
pub(super) fn parse_locality(s: &str) -> Locality {
    let mut parts = s.trim().splitn(3, '/').map(str::to_owned);
    Locality {
        region: parts.next().unwrap_or_default(),
        zone: parts.next().unwrap_or_default(),
        subzone: parts.next().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localities() {
        assert_eq!(parse_locality(""), Locality::default());
        let l = parse_locality("us-east1/us-east1-b/rack1");
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
            ("us-east1", "us-east1-b", "rack1")
        );
        let l = parse_locality("eu");
        assert_eq!((l.region.as_str(), l.zone.as_str()), ("eu", ""));
    }
}
