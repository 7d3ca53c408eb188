//! The mesh's CustomResourceDefinitions, embedded from `deploy/crds/` (which `cargo xtask
//! codegen` generates from mesh-api's types), so `meshctl install` applies exactly the
//! committed, reviewed files. Gateway API CRDs are not ours and are not rendered: install
//! them from the Gateway API project.

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The embedded files: (file name in `deploy/crds/`, contents). Sorted by file name.
pub const EMBEDDED: [(&str, &str); 7] = [
    (
        "authorizationpolicies.security.mesh.dev.yaml",
        include_str!("../../../deploy/crds/authorizationpolicies.security.mesh.dev.yaml"),
    ),
    (
        "destinationrules.networking.mesh.dev.yaml",
        include_str!("../../../deploy/crds/destinationrules.networking.mesh.dev.yaml"),
    ),
    (
        "gateways.networking.mesh.dev.yaml",
        include_str!("../../../deploy/crds/gateways.networking.mesh.dev.yaml"),
    ),
    (
        "peerauthentications.security.mesh.dev.yaml",
        include_str!("../../../deploy/crds/peerauthentications.security.mesh.dev.yaml"),
    ),
    (
        "serviceentries.networking.mesh.dev.yaml",
        include_str!("../../../deploy/crds/serviceentries.networking.mesh.dev.yaml"),
    ),
    (
        "virtualservices.networking.mesh.dev.yaml",
        include_str!("../../../deploy/crds/virtualservices.networking.mesh.dev.yaml"),
    ),
    (
        "workloadentries.networking.mesh.dev.yaml",
        include_str!("../../../deploy/crds/workloadentries.networking.mesh.dev.yaml"),
    ),
];

/// The embedded CRDs, parsed, in [`EMBEDDED`] order.
pub fn crds() -> anyhow::Result<Vec<CustomResourceDefinition>> {
    EMBEDDED
        .iter()
        .map(|(file, yaml)| {
            serde_saphyr::from_str(yaml)
                .with_context(|| format!("parsing the embedded deploy/crds/{file}"))
        })
        .collect()
}
