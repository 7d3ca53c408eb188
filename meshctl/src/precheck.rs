//! `meshctl precheck`: is the cluster ready for `meshctl install`? One line per check,
//! `✔`, `⚠` (fine, but know this) or `✗` (fix it first), and exit status 1 on any `✗`:
//!
//! - the API server answers (`GET /version`); when it does not, the server URL and the
//!   kubeconfig context are named and nothing else is checked;
//! - it runs Kubernetes 1.32 or newer (k8s-openapi's floor; native sidecar containers are
//!   on by default there);
//! - the caller may `create` and `patch` every kind the manifests render, where they render
//!   it (and `get` what install waits on), asked with `SelfSubjectAccessReview`s derived
//!   from the rendered objects;
//! - no other mesh is in the way: Istio's sidecar injector or `istiod` (a warning: both
//!   injectors would act on a namespace labelled for both), or mesh-control in another
//!   namespace (an error: two control planes would fight over the cluster-wide webhooks
//!   and CRDs);
//! - the mesh's CRDs either do not exist yet or were installed by meshctl.

use std::io::Write;
use std::process::ExitCode;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};

use crate::cluster::access::{self, Permission};
use crate::cluster::{self, Cluster, Kind, Object, Verb};
use crate::manifest;

/// Arguments of `meshctl precheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The profile and overrides `meshctl install` will be given.
    #[command(flatten)]
    pub values: manifest::ValuesArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: cluster::Args,
}

/// The outcome of a precheck.
pub type Report = cluster::Checklist;

/// Runs `meshctl precheck`.
pub fn run(args: &Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let values = args.values.values()?;
    let objects = manifest::render(&values)?;
    let report = cluster::block_on(async {
        let cluster = Cluster::connect(&args.cluster).await?;
        precheck(&cluster, objects, &values.namespace, out).await
    })??;
    Ok(report.exit_code())
}

/// Checks `cluster` for installing `objects` (rendered for control-plane namespace
/// `namespace`), printing a line per check.
pub async fn precheck(
    cluster: &Cluster,
    objects: Vec<DynamicObject>,
    namespace: &str,
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let version = match cluster.version().await {
        Ok(v) => v,
        Err(e) => {
            report.fail(out, e.to_string())?;
            summary(&report, out)?;
            return Ok(report);
        }
    };
    report.ok(out, format!("cluster reachable: {}", cluster.describe()))?;
    if version.is_supported() {
        report.ok(
            out,
            format!(
                "Kubernetes {} is supported (1.32 or newer; native sidecar containers available)",
                version.display()
            ),
        )?;
    } else {
        report.fail(out, version.unsupported())?;
    }

    let objects = match cluster::kinds::resolve(cluster, objects).await {
        Ok(objects) => objects,
        Err(e) => {
            report.fail(out, e.to_string())?;
            summary(&report, out)?;
            return Ok(report);
        }
    };
    permissions(cluster, &objects, &mut report, out).await?;
    other_meshes(cluster, namespace, &mut report, out).await?;
    crd_ownership(cluster, &objects, &mut report, out).await?;
    summary(&report, out)?;
    Ok(report)
}

fn summary(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    if report.passed() {
        writeln!(out, "\nthe cluster is ready for `meshctl install`")?;
    } else {
        writeln!(
            out,
            "\n{} check(s) failed; fix them and run `meshctl precheck` again",
            report.failures.len()
        )?;
    }
    out.flush()
}

/// The permissions installing `objects` needs: `create` and `patch` on every kind where it
/// is rendered, and `get` on what install waits on. In the order first needed.
pub fn needed_permissions(objects: &[Object]) -> Vec<Permission> {
    let mut needed: Vec<Permission> = Vec::new();
    for o in objects {
        let waited_on = o.is("CustomResourceDefinition")
            || o.is("Deployment")
            || o.is("MutatingWebhookConfiguration")
            || o.is("ValidatingWebhookConfiguration");
        let verbs: &[&'static str] = if waited_on {
            &["create", "patch", "get"]
        } else {
            &["create", "patch"]
        };
        for verb in verbs {
            let p = Permission::new(verb, &o.kind, o.namespace());
            if !needed.contains(&p) {
                needed.push(p);
            }
        }
    }
    needed
}

async fn permissions(
    cluster: &Cluster,
    objects: &[Object],
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let needed = needed_permissions(objects);
    let mut denied = Vec::new();
    for p in &needed {
        match access::can_i(cluster, p).await {
            Ok(d) if d.allowed => {}
            Ok(d) => denied.push((p, d.reason)),
            Err(e) => {
                report.fail(out, format!("cannot check permissions: {e}"))?;
                return Ok(());
            }
        }
    }
    if denied.is_empty() {
        let kinds = needed
            .iter()
            .map(Permission::resource_name)
            .fold(Vec::new(), |mut v, r| {
                if !v.contains(&r) {
                    v.push(r);
                }
                v
            });
        report.ok(
            out,
            format!(
                "permissions: all {} granted (create and patch on {})",
                needed.len(),
                kinds.join(", ")
            ),
        )?;
        return Ok(());
    }
    for (p, reason) in denied {
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        report.fail(
            out,
            format!("missing permission: {p}{reason}; installing the mesh needs it (usually a cluster-admin does the install)"),
        )?;
    }
    Ok(())
}

async fn other_meshes(
    cluster: &Cluster,
    namespace: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = cluster.client().clone();
    let mut clean = true;

    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let op = Kind::of::<MutatingWebhookConfiguration>().op(Verb::List);
    match webhooks.list(&ListParams::default()).await {
        Ok(list) => {
            let istio: Vec<String> = list
                .items
                .iter()
                .filter_map(|w| w.metadata.name.clone())
                .filter(|n| n.starts_with("istio-sidecar-injector"))
                .collect();
            if !istio.is_empty() {
                clean = false;
                report.warn(
                    out,
                    format!(
                        "Istio's sidecar injector is installed (MutatingWebhookConfiguration {}): Istio and the mesh would both inject a sidecar into pods of a namespace labelled for both; label each namespace for one mesh only (istio-injection=enabled or mesh-injection=enabled)",
                        istio.join(", ")
                    ),
                )?;
            }
        }
        Err(e) => {
            report.warn(
                out,
                format!(
                    "cannot look for other meshes' injectors: {}",
                    cluster.error(e, &op)
                ),
            )?;
        }
    }

    let deployments: Api<Deployment> = Api::all(client);
    for name in ["istiod", "mesh-control"] {
        let op = Kind::of::<Deployment>().op(Verb::List);
        let found = match deployments
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                report.warn(
                    out,
                    format!(
                        "cannot look for other control planes: {}",
                        cluster.error(e, &op)
                    ),
                )?;
                continue;
            }
        };
        for d in found {
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            match name {
                "istiod" => {
                    clean = false;
                    report.warn(
                        out,
                        format!(
                            "an Istio control plane runs (Deployment {ns}/istiod): its injector and the mesh's would both act on a namespace labelled for both; label each namespace for one mesh only"
                        ),
                    )?;
                }
                _ if ns == namespace => {
                    report.ok(
                        out,
                        format!("mesh-control is installed in {ns}: install upgrades it"),
                    )?;
                }
                _ => {
                    clean = false;
                    report.fail(
                        out,
                        format!(
                            "mesh-control is already installed in namespace {ns}: two control planes would fight over the same webhooks and CRDs; uninstall it (`meshctl uninstall -n {ns}`) or install into {ns} (`--set namespace={ns}`)"
                        ),
                    )?;
                }
            }
        }
    }
    if clean {
        report.ok(out, "no other service mesh control plane found")?;
    }
    Ok(())
}

async fn crd_ownership(
    cluster: &Cluster,
    objects: &[Object],
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let crds: Vec<&Object> = objects
        .iter()
        .filter(|o| o.is("CustomResourceDefinition"))
        .collect();
    if crds.is_empty() {
        return Ok(());
    }
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client().clone());
    let (mut new, mut ours) = (0, 0);
    for crd in &crds {
        let existing = match api.get_opt(crd.name()).await {
            Ok(existing) => existing,
            Err(e) => {
                report.fail(
                    out,
                    format!(
                        "cannot check CRD {}: {}",
                        crd.name(),
                        cluster.error(e, &crd.op(Verb::Get))
                    ),
                )?;
                continue;
            }
        };
        let Some(existing) = existing else {
            new += 1;
            continue;
        };
        match foreign_owner(&existing) {
            None => ours += 1,
            Some(why) => report.fail(
                out,
                format!(
                    "CRD {} exists but was not installed by meshctl ({why}): if it is an older copy of the mesh's CRD, `meshctl install --force-conflicts` adopts it; otherwise remove it with `kubectl delete crd {}` (this deletes every object of that kind)",
                    crd.name(),
                    crd.name()
                ),
            )?,
        }
    }
    if new + ours == crds.len() {
        let what = match (new, ours) {
            (_, 0) => format!("{new} to create"),
            (0, _) => format!("{ours} installed by meshctl, to upgrade"),
            _ => format!("{new} to create, {ours} installed by meshctl to upgrade"),
        };
        report.ok(out, format!("CRDs: {what}"))?;
    }
    Ok(())
}

/// Why an existing CRD is not meshctl's (`None` when it is): missing labels, and the other
/// field managers that wrote its spec.
pub fn foreign_owner(crd: &CustomResourceDefinition) -> Option<String> {
    let labels = crd.metadata.labels.clone().unwrap_or_default();
    let label_ok = |(k, v): (&str, &str)| labels.get(k).map(String::as_str) == Some(v);
    if label_ok(cluster::PART_OF_LABEL) && label_ok(cluster::MANAGED_BY_LABEL) {
        return None;
    }
    let mut why = Vec::new();
    for (k, v) in [cluster::PART_OF_LABEL, cluster::MANAGED_BY_LABEL] {
        match labels.get(k) {
            Some(other) if other != v => why.push(format!("label {k}={other}")),
            Some(_) => {}
            None => why.push(format!("no label {k}={v}")),
        }
    }
    let mut managers: Vec<String> = crd
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref().is_none_or(str::is_empty))
        .filter_map(|m| m.manager.clone())
        .filter(|m| m != crate::cluster::apply::FIELD_MANAGER)
        .collect();
    managers.dedup();
    if !managers.is_empty() {
        why.push(format!("written by {}", managers.join(", ")));
    }
    Some(why.join("; "))
}
