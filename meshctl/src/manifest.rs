//! `meshctl manifest generate` and the manifests `meshctl install` applies: the control
//! plane, its RBAC, webhooks and (per profile) the ingress gateway, rendered from typed
//! k8s-openapi objects built into the binary, for a profile and `--set` overrides.
//!
//! [`render`] turns [`Values`] (a [`Profile`] with `--set` overrides: [`ValuesArgs`], and
//! the key table in [`values`], also in `--set`'s help) into every object of an
//! installation, in the order they must be applied:
//!
//! 1. the mesh's CRDs ([`crds`], embedded from `deploy/crds/`; Gateway API CRDs are not
//!    ours and are not rendered),
//! 2. the Namespace (`mesh-system` unless `--set namespace=…`),
//! 3. the ServiceAccounts `mesh-control` and `mesh-ingressgateway`,
//! 4. RBAC: ClusterRole, ClusterRoleBinding, Role and RoleBinding `mesh-control`
//!    ([`control`]),
//! 5. the Services `mesh-control` and `mesh-ingressgateway`,
//! 6. the Deployments `mesh-control` ([`control`]) and `mesh-ingressgateway` ([`gateway`]),
//! 7. last, the webhook configurations `mesh-sidecar-injector` and `mesh-validator`
//!    ([`webhooks`]), once the Service they call exists.
//!
//! The gateway's objects are there only when `gateway.enabled` (profiles `default` and
//! `demo`). Every object carries [`PART_OF_LABEL`], [`MANAGED_BY_LABEL`] and
//! [`VERSION_LABEL`], so an installation's objects can be found by label. The objects are built as
//! typed k8s-openapi values (so a misspelt field does not compile) and handed out as
//! [`DynamicObject`]s with `apiVersion` and `kind` set, ready for server-side apply.
//!
//! `meshctl manifest generate` prints them as multi-document YAML for `kubectl apply -f -`;
//! the output is deterministic, and `cargo xtask codegen` commits it for each profile as
//! `deploy/manifests/<profile>.yaml`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::core::TypeMeta;
use serde::Serialize;

pub mod control;
pub mod crds;
pub mod gateway;
pub mod values;
pub mod webhooks;

#[cfg(test)]
mod tests;

pub use self::values::{
    ControlValues, DEFAULT_NAMESPACE, Error as ValuesError, FailurePolicy, GatewayValues, KEYS,
    Key, Profile, ProxyValues, PullPolicy, Resources, ServiceType, Values, ValuesArgs,
    WebhookValues,
};

/// The label every rendered object carries: part of the mesh.
pub const PART_OF_LABEL: (&str, &str) = ("app.kubernetes.io/part-of", "mesh");
/// The label every rendered object carries: installed by meshctl.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "meshctl");
/// The label every rendered object carries, with meshctl's version ([`VERSION`]) as value.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
/// The version the manifests are rendered by (and, by default, the images' tag).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The control plane's name: its Deployment, Service, ServiceAccount and RBAC objects.
pub const CONTROL: &str = "mesh-control";
/// The ingress gateway's name: its Deployment, Service and ServiceAccount.
pub const GATEWAY: &str = "mesh-ingressgateway";
/// The MutatingWebhookConfiguration of sidecar injection.
pub const INJECTOR_CONFIG: &str = "mesh-sidecar-injector";
/// The ValidatingWebhookConfiguration of config validation.
pub const VALIDATOR_CONFIG: &str = "mesh-validator";
/// mesh-control's discovery and identity port (gRPC over TLS).
pub const GRPC_PORT: u16 = 15012;
/// mesh-control's admission webhook port (HTTPS).
pub const WEBHOOK_PORT: u16 = 15017;
/// mesh-control's metrics and debug port (HTTP).
pub const DEBUG_PORT: u16 = 15014;

/// The container security context of every installed workload: non-root as `uid`/gid,
/// no privilege escalation, no capabilities, a read-only root, the runtime's seccomp
/// profile (what Pod Security "restricted" asks for).
pub(crate) fn restricted(uid: i64) -> k8s_openapi::api::core::v1::SecurityContext {
    use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// Every object of an installation, in the order they are applied (see the module
/// documentation), with the CRDs embedded in meshctl.
pub fn render(values: &Values) -> anyhow::Result<Vec<DynamicObject>> {
    render_with_crds(values, crds::crds()?)
}

/// [`render`] with the given CRDs (in any order; they are rendered sorted by name) in
/// place of the embedded ones: `cargo xtask codegen` passes mesh-api's freshly generated
/// definitions, so the manifests it writes never lag behind the CRD files it writes in
/// the same run.
pub fn render_with_crds(
    values: &Values,
    crds: Vec<CustomResourceDefinition>,
) -> anyhow::Result<Vec<DynamicObject>> {
    values.validate()?;
    let gateway = values.gateway.enabled;
    let mut out = Vec::new();
    let mut crds = crds;
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for mut crd in crds {
        crd.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(labels([]));
        out.push(to_dynamic(&crd)?);
    }
    out.push(to_dynamic(&namespace(values))?);
    out.push(to_dynamic(&control::service_account(values))?);
    if gateway {
        out.push(to_dynamic(&gateway::service_account(values))?);
    }
    out.push(to_dynamic(&control::cluster_role())?);
    out.push(to_dynamic(&control::cluster_role_binding(values))?);
    out.push(to_dynamic(&control::role(values))?);
    out.push(to_dynamic(&control::role_binding(values))?);
    out.push(to_dynamic(&control::service(values))?);
    if gateway {
        out.push(to_dynamic(&gateway::service(values))?);
    }
    out.push(to_dynamic(&control::deployment(values))?);
    if gateway {
        out.push(to_dynamic(&gateway::deployment(values)?)?);
    }
    out.push(to_dynamic(&webhooks::injector(values))?);
    out.push(to_dynamic(&webhooks::validator(values))?);
    Ok(out)
}

/// The objects as multi-document YAML, each document opened by `---`.
pub fn to_yaml(objects: &[DynamicObject]) -> anyhow::Result<String> {
    let mut out = String::new();
    for o in objects {
        let yaml = serde_saphyr::to_string(o).with_context(|| {
            format!(
                "serializing {} {}",
                o.types.as_ref().map_or("object", |t| t.kind.as_str()),
                o.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
        out.push_str("---\n");
        out.push_str(&yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// The labels of every rendered object, plus `extra`.
fn labels<'a>(extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    [PART_OF_LABEL, MANAGED_BY_LABEL, (VERSION_LABEL, VERSION)]
        .into_iter()
        .chain(extra)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Metadata with a name, an optional namespace and the common labels plus `extra`.
fn meta<'a>(
    name: &str,
    namespace: Option<&str>,
    extra: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(extra)),
        ..ObjectMeta::default()
    }
}

/// Prometheus scrape annotations for `/metrics` on `port`.
fn prometheus_annotations(port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), port.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ])
}

/// The control-plane Namespace.
fn namespace(values: &Values) -> Namespace {
    Namespace {
        metadata: meta(&values.namespace, None, []),
        ..Namespace::default()
    }
}

/// A typed object as a [`DynamicObject`] with its `apiVersion` and `kind`.
fn to_dynamic<K>(object: &K) -> anyhow::Result<DynamicObject>
where
    K: kube::Resource<DynamicType = ()> + Serialize,
{
    let what = || {
        format!(
            "converting {} {}",
            K::kind(&()),
            object.meta().name.as_deref().unwrap_or_default()
        )
    };
    let json = serde_json::to_value(object).with_context(what)?;
    let mut dynamic: DynamicObject = serde_json::from_value(json).with_context(what)?;
    dynamic.types = Some(TypeMeta {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
    });
    Ok(dynamic)
}

/// Arguments of `meshctl manifest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: ManifestCommand,
}

/// `meshctl manifest` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Print the manifests `meshctl install` would apply, as multi-document YAML.
    Generate(GenerateArgs),
}

/// Arguments of `meshctl manifest generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Profile and overrides.
    #[command(flatten)]
    pub values: ValuesArgs,
}

/// Runs `meshctl manifest`.
pub fn run(args: &Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let ManifestCommand::Generate(g) = &args.command;
    let objects = render(&g.values.values()?)?;
    out.write_all(to_yaml(&objects)?.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
