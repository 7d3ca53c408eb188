//! The configuration model users write, and how it is read and checked.
//!
//! - [`networking`] and [`security`]: our CRDs (`networking.mesh.dev/v1alpha1`,
//!   `security.mesh.dev/v1alpha1`), field-compatible with Istio's for the supported subset.
//! - Kubernetes `v1` Services and Gateway API `HTTPRoute`/`GRPCRoute`/`Gateway`
//!   (`gateway.networking.k8s.io/v1`), read through `k8s-openapi` and the maintained
//!   `gateway-api` crate rather than retyped.
//! - [`Loader`] reads multi-document YAML from files, directories and streams into
//!   [`Resource`]s; [`validate`] checks what types cannot (weights, subsets, regexes,
//!   durations, ports, duplicates). Both report [`Diagnostic`]s that name the file,
//!   document, line, field path and fix.
//!
//! The control plane translates these resources into the proxy's domain model; nothing in
//! this module does I/O beyond reading the files it is given.

pub mod diagnostic;
pub mod load;
pub mod networking;
pub mod security;
pub mod validate;

use std::path::Path;

use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde_json::Value;

pub use diagnostic::{Code, Diagnostic, Location, Severity};
pub use load::{ConfigSet, Loaded, Loader, Origin};
pub use networking::{DestinationRule, Gateway, ServiceEntry, VirtualService, WorkloadEntry};
pub use security::{AuthorizationPolicy, PeerAuthentication};

/// Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`).
pub type HttpRoute = gateway_api::httproutes::HttpRoute;
/// Gateway API `GRPCRoute` (`gateway.networking.k8s.io/v1`).
pub type GrpcRoute = gateway_api::grpcroutes::GrpcRoute;
/// Gateway API `Gateway` (`gateway.networking.k8s.io/v1`).
pub type KubeGateway = gateway_api::gateways::Gateway;

/// Every CRD this mesh defines, generated from the Rust types. `cargo xtask codegen` writes
/// them to `deploy/crds/`.
pub fn crd_definitions() -> Vec<CustomResourceDefinition> {
    vec![
        VirtualService::crd(),
        DestinationRule::crd(),
        Gateway::crd(),
        ServiceEntry::crd(),
        WorkloadEntry::crd(),
        PeerAuthentication::crd(),
        AuthorizationPolicy::crd(),
    ]
}

/// Loads and validates everything under `paths` (files or directories): the whole of
/// `meshctl analyze` without the printing.
pub fn analyze_paths<P: AsRef<Path>>(paths: &[P]) -> ConfigSet {
    let mut loader = Loader::new();
    for p in paths {
        loader.add_path(p.as_ref());
    }
    let mut set = loader.finish();
    validate::validate(&mut set);
    set
}

/// One config object the mesh reads.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Reason: resources are loaded once, not moved on a hot path.
pub enum Resource {
    /// `networking.mesh.dev/v1alpha1` VirtualService.
    VirtualService(VirtualService),
    /// `networking.mesh.dev/v1alpha1` DestinationRule.
    DestinationRule(DestinationRule),
    /// `networking.mesh.dev/v1alpha1` Gateway.
    Gateway(Gateway),
    /// `networking.mesh.dev/v1alpha1` ServiceEntry.
    ServiceEntry(ServiceEntry),
    /// `networking.mesh.dev/v1alpha1` WorkloadEntry.
    WorkloadEntry(WorkloadEntry),
    /// `security.mesh.dev/v1alpha1` PeerAuthentication.
    PeerAuthentication(PeerAuthentication),
    /// `security.mesh.dev/v1alpha1` AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// Kubernetes `v1` Service.
    Service(KubeService),
    /// Gateway API HTTPRoute.
    HttpRoute(HttpRoute),
    /// Gateway API GRPCRoute.
    GrpcRoute(GrpcRoute),
    /// Gateway API Gateway.
    KubeGateway(KubeGateway),
}

/// The kinds of [`Resource`], with their `apiVersion` and `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// VirtualService.
    VirtualService,
    /// DestinationRule.
    DestinationRule,
    /// Gateway (ours).
    Gateway,
    /// ServiceEntry.
    ServiceEntry,
    /// WorkloadEntry.
    WorkloadEntry,
    /// PeerAuthentication.
    PeerAuthentication,
    /// AuthorizationPolicy.
    AuthorizationPolicy,
    /// Kubernetes Service.
    Service,
    /// Gateway API HTTPRoute.
    HttpRoute,
    /// Gateway API GRPCRoute.
    GrpcRoute,
    /// Gateway API Gateway.
    KubeGateway,
}

const NETWORKING: &str = "networking.mesh.dev/v1alpha1";
const SECURITY: &str = "security.mesh.dev/v1alpha1";
const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";

impl ResourceKind {
    /// Every kind.
    pub const ALL: &'static [ResourceKind] = &[
        Self::VirtualService,
        Self::DestinationRule,
        Self::Gateway,
        Self::ServiceEntry,
        Self::WorkloadEntry,
        Self::PeerAuthentication,
        Self::AuthorizationPolicy,
        Self::Service,
        Self::HttpRoute,
        Self::GrpcRoute,
        Self::KubeGateway,
    ];

    /// The `apiVersion` this kind is written with.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::VirtualService
            | Self::DestinationRule
            | Self::Gateway
            | Self::ServiceEntry
            | Self::WorkloadEntry => NETWORKING,
            Self::PeerAuthentication | Self::AuthorizationPolicy => SECURITY,
            Self::Service => "v1",
            Self::HttpRoute | Self::GrpcRoute | Self::KubeGateway => GATEWAY_API,
        }
    }

    /// The `kind` field's value.
    pub fn kind(self) -> &'static str {
        match self {
            Self::VirtualService => "VirtualService",
            Self::DestinationRule => "DestinationRule",
            Self::Gateway | Self::KubeGateway => "Gateway",
            Self::ServiceEntry => "ServiceEntry",
            Self::WorkloadEntry => "WorkloadEntry",
            Self::PeerAuthentication => "PeerAuthentication",
            Self::AuthorizationPolicy => "AuthorizationPolicy",
            Self::Service => "Service",
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
        }
    }

    /// The kind for an `apiVersion`/`kind` pair, if the mesh reads it. Gateway API
    /// `v1beta1` routes are read as `v1` (their schemas are the same for what we use).
    pub fn from_type_meta(api_version: &str, kind: &str) -> Option<Self> {
        let api_version = match api_version {
            "gateway.networking.k8s.io/v1beta1" => GATEWAY_API,
            other => other,
        };
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.api_version() == api_version && k.kind() == kind)
    }

    /// `Kind (apiVersion)` for every kind, for error messages.
    pub fn supported_list() -> String {
        Self::ALL
            .iter()
            .map(|k| format!("{} ({})", k.kind(), k.api_version()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Decodes a document of this kind.
    pub(crate) fn decode(self, mut value: Value) -> Result<load::Decoded, load::DecodeError> {
        use load::decode;
        // Gateway API v1beta1 documents decode as v1; the typed object re-serializes as v1.
        if matches!(self, Self::HttpRoute | Self::GrpcRoute | Self::KubeGateway)
            && let Some(av) = value.get_mut("apiVersion")
        {
            *av = Value::from(GATEWAY_API);
        }
        let v = &value;
        let (resource, unknown_fields) = match self {
            Self::VirtualService => decode(v).map(|(r, u)| (Resource::VirtualService(r), u))?,
            Self::DestinationRule => decode(v).map(|(r, u)| (Resource::DestinationRule(r), u))?,
            Self::Gateway => decode(v).map(|(r, u)| (Resource::Gateway(r), u))?,
            Self::ServiceEntry => decode(v).map(|(r, u)| (Resource::ServiceEntry(r), u))?,
            Self::WorkloadEntry => decode(v).map(|(r, u)| (Resource::WorkloadEntry(r), u))?,
            Self::PeerAuthentication => {
                decode(v).map(|(r, u)| (Resource::PeerAuthentication(r), u))?
            }
            Self::AuthorizationPolicy => {
                decode(v).map(|(r, u)| (Resource::AuthorizationPolicy(r), u))?
            }
            Self::Service => decode(v).map(|(r, u)| (Resource::Service(r), u))?,
            Self::HttpRoute => decode(v).map(|(r, u)| (Resource::HttpRoute(r), u))?,
            Self::GrpcRoute => decode(v).map(|(r, u)| (Resource::GrpcRoute(r), u))?,
            Self::KubeGateway => decode(v).map(|(r, u)| (Resource::KubeGateway(r), u))?,
        };
        Ok(load::Decoded {
            resource,
            unknown_fields,
        })
    }
}

impl Resource {
    /// This resource's kind.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::VirtualService(_) => ResourceKind::VirtualService,
            Self::DestinationRule(_) => ResourceKind::DestinationRule,
            Self::Gateway(_) => ResourceKind::Gateway,
            Self::ServiceEntry(_) => ResourceKind::ServiceEntry,
            Self::WorkloadEntry(_) => ResourceKind::WorkloadEntry,
            Self::PeerAuthentication(_) => ResourceKind::PeerAuthentication,
            Self::AuthorizationPolicy(_) => ResourceKind::AuthorizationPolicy,
            Self::Service(_) => ResourceKind::Service,
            Self::HttpRoute(_) => ResourceKind::HttpRoute,
            Self::GrpcRoute(_) => ResourceKind::GrpcRoute,
            Self::KubeGateway(_) => ResourceKind::KubeGateway,
        }
    }

    /// The object metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::VirtualService(r) => &r.metadata,
            Self::DestinationRule(r) => &r.metadata,
            Self::Gateway(r) => &r.metadata,
            Self::ServiceEntry(r) => &r.metadata,
            Self::WorkloadEntry(r) => &r.metadata,
            Self::PeerAuthentication(r) => &r.metadata,
            Self::AuthorizationPolicy(r) => &r.metadata,
            Self::Service(r) => &r.metadata,
            Self::HttpRoute(r) => &r.metadata,
            Self::GrpcRoute(r) => &r.metadata,
            Self::KubeGateway(r) => &r.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::VirtualService(r) => &mut r.metadata,
            Self::DestinationRule(r) => &mut r.metadata,
            Self::Gateway(r) => &mut r.metadata,
            Self::ServiceEntry(r) => &mut r.metadata,
            Self::WorkloadEntry(r) => &mut r.metadata,
            Self::PeerAuthentication(r) => &mut r.metadata,
            Self::AuthorizationPolicy(r) => &mut r.metadata,
            Self::Service(r) => &mut r.metadata,
            Self::HttpRoute(r) => &mut r.metadata,
            Self::GrpcRoute(r) => &mut r.metadata,
            Self::KubeGateway(r) => &mut r.metadata,
        }
    }

    /// The name (`metadata.name`).
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// The namespace (`metadata.namespace`; loaders fill in the default).
    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or("default")
    }

    pub(crate) fn set_default_namespace(&mut self, ns: &str) {
        let meta = self.meta_mut();
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(ns.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_are_generated_for_every_kind_we_define() {
        let crds = crd_definitions();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "virtualservices.networking.mesh.dev",
                "destinationrules.networking.mesh.dev",
                "gateways.networking.mesh.dev",
                "serviceentries.networking.mesh.dev",
                "workloadentries.networking.mesh.dev",
                "peerauthentications.security.mesh.dev",
                "authorizationpolicies.security.mesh.dev",
            ]
        );
        for crd in &crds {
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["mesh".to_string()][..])
            );
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1alpha1");
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("a schema");
            let spec = &schema.properties.as_ref().unwrap()["spec"];
            assert!(
                spec.properties.as_ref().is_some_and(|p| !p.is_empty()),
                "{}: spec has no properties",
                crd.spec.names.kind
            );
        }
    }

    #[test]
    fn crd_schemas_carry_istio_field_names() {
        let vs = serde_json::to_value(VirtualService::crd()).unwrap();
        let http = &vs["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["http"]["items"]["properties"];
        for field in [
            "match",
            "route",
            "timeout",
            "retries",
            "fault",
            "mirror",
            "mirrorPercentage",
            "rewrite",
        ] {
            assert!(
                http.get(field).is_some(),
                "http route schema lacks `{field}`: {http:#}"
            );
        }
    }

    #[test]
    fn kinds_round_trip_through_type_meta() {
        for kind in ResourceKind::ALL {
            assert_eq!(
                ResourceKind::from_type_meta(kind.api_version(), kind.kind()),
                Some(*kind)
            );
        }
        assert_eq!(
            ResourceKind::from_type_meta("networking.istio.io/v1", "VirtualService"),
            None
        );
    }
}
