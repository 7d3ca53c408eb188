//! Kubernetes objects → [`Resource`]s for the index: Pods and EndpointSlices become
//! `WorkloadEntries`, selector-less Services get a selector for those, and everything
//! loses what the index never reads (`managedFields`, `status`, kubectl's
//! last-applied annotation). Pure functions.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{Pod, Service as KubeService},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use mesh_api::config::{Resource, WorkloadEntry, networking::WorkloadEntrySpec};

/// The label that opts a workload out of the mesh (`"false"`): set on pods without a
/// sidecar and on EndpointSlice addresses.
pub const INJECT_LABEL: &str = "sidecar.mesh.dev/inject";

/// The label tying a `WorkloadEntry` made from an EndpointSlice address to its Service;
/// selector-less Services select it.
pub const ENDPOINTSLICE_SERVICE_LABEL: &str = "mesh.dev/endpointslice-service";

/// The name of the sidecar container (or native-sidecar init container) injection adds.
pub const SIDECAR_CONTAINER: &str = "mesh-proxy";

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller managing an EndpointSlice.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The EndpointSlice controller, which manages the slices of Services with selectors.
const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// kubectl's copy of the whole object, often the largest part of it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the metadata the index never reads.
fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A Service for the index: slimmed, and a Service without a selector selects the
/// `WorkloadEntries` made from its EndpointSlices.
pub(super) fn service(mut svc: KubeService) -> KubeService {
    slim(&mut svc.metadata);
    svc.status = None;
    let name = svc.metadata.name.clone().unwrap_or_default();
    if let Some(spec) = &mut svc.spec
        && spec.selector.as_ref().is_none_or(BTreeMap::is_empty)
    {
        spec.selector = Some(BTreeMap::from([(
            ENDPOINTSLICE_SERVICE_LABEL.to_owned(),
            name,
        )]));
    }
    svc
}

/// One of our CRDs or a Gateway API object, slimmed.
pub(super) fn resource(mut r: Resource) -> Resource {
    let meta = match &mut r {
        Resource::VirtualService(o) => &mut o.metadata,
        Resource::DestinationRule(o) => &mut o.metadata,
        Resource::Gateway(o) => &mut o.metadata,
        Resource::ServiceEntry(o) => &mut o.metadata,
        Resource::WorkloadEntry(o) => &mut o.metadata,
        Resource::PeerAuthentication(o) => &mut o.metadata,
        Resource::AuthorizationPolicy(o) => &mut o.metadata,
        Resource::Service(o) => {
            o.status = None;
            &mut o.metadata
        }
        Resource::HttpRoute(o) => {
            o.status = None;
            &mut o.metadata
        }
        Resource::GrpcRoute(o) => {
            o.status = None;
            &mut o.metadata
        }
        Resource::KubeGateway(o) => {
            o.status = None;
            &mut o.metadata
        }
    };
    slim(meta);
    r
}

/// The `WorkloadEntry` of a pod that may receive traffic: Running, Ready, not
/// terminating, with an IP. `None` otherwise.
///
/// Address = the pod IP; labels = the pod's, plus `sidecar.mesh.dev/inject: "false"` when
/// no `mesh-proxy` container runs in it; service account = the pod's; ports = the named
/// container ports (of the app containers), which resolve named target ports.
pub(super) fn pod(pod: &Pod) -> Option<WorkloadEntry> {
    let meta = &pod.metadata;
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    let namespace = meta.namespace.as_deref().filter(|n| !n.is_empty())?;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let spec = pod.spec.as_ref()?;

    let mut labels = meta.labels.clone().unwrap_or_default();
    let has_sidecar = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == SIDECAR_CONTAINER);
    if !has_sidecar {
        labels.insert(INJECT_LABEL.to_owned(), "false".to_owned());
    }
    let mut ports = BTreeMap::new();
    for c in spec
        .containers
        .iter()
        .filter(|c| c.name != SIDECAR_CONTAINER)
    {
        for p in c.ports.iter().flatten() {
            if let (Some(port_name), Ok(number)) = (
                p.name.as_deref().filter(|n| !n.is_empty()),
                u32::try_from(p.container_port),
            ) {
                ports.entry(port_name.to_owned()).or_insert(number);
            }
        }
    }
    #[allow(deprecated)] // Reason: `serviceAccount` is the old spelling some pods still carry.
    let service_account = spec
        .service_account_name
        .as_deref()
        .or(spec.service_account.as_deref())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);

    Some(workload_entry(
        name,
        namespace,
        WorkloadEntrySpec {
            address: ip.to_owned(),
            ports,
            labels,
            service_account,
            ..WorkloadEntrySpec::default()
        },
    ))
}

/// The out-of-mesh `WorkloadEntries` of an EndpointSlice of a Service without a selector:
/// `<slice>-<n>` for the first address of the `n`th endpoint when it is ready, labelled
/// with the Service's name. Empty for slices the EndpointSlice controller manages (their
/// Service has a selector; the pods are the source), FQDN slices and slices without a
/// Service.
pub(super) fn endpoint_slice(slice: &EndpointSlice) -> Vec<WorkloadEntry> {
    let meta = &slice.metadata;
    let (Some(name), Some(namespace)) = (meta.name.as_deref(), meta.namespace.as_deref()) else {
        return Vec::new();
    };
    let labels = meta.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(MANAGED_BY_LABEL) == Some(SLICE_CONTROLLER) || slice.address_type == "FQDN" {
        return Vec::new();
    }
    let Some(service) = label(SERVICE_NAME_LABEL).filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let ports: BTreeMap<String, u32> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port_name = p.name.as_deref().filter(|n| !n.is_empty())?;
            Some((port_name.to_owned(), u32::try_from(p.port?).ok()?))
        })
        .collect();
    let workload_labels = BTreeMap::from([
        (ENDPOINTSLICE_SERVICE_LABEL.to_owned(), service.to_owned()),
        (INJECT_LABEL.to_owned(), "false".to_owned()),
    ]);
    slice
        .endpoints
        .iter()
        .enumerate()
        .filter(|(_, ep)| {
            // Kubernetes: a missing `ready` means ready.
            ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
        })
        .filter_map(|(n, ep)| {
            // Addresses of one endpoint are fungible; consumers may use the first.
            let address = ep.addresses.first()?;
            Some(workload_entry(
                &format!("{name}-{n}"),
                namespace,
                WorkloadEntrySpec {
                    address: address.clone(),
                    ports: ports.clone(),
                    labels: workload_labels.clone(),
                    ..WorkloadEntrySpec::default()
                },
            ))
        })
        .collect()
}

fn workload_entry(name: &str, namespace: &str, spec: WorkloadEntrySpec) -> WorkloadEntry {
    let mut we = WorkloadEntry::new(name, spec);
    we.metadata.namespace = Some(namespace.to_owned());
    we
}
