//! `meshctl install`: install the mesh into the cluster, or upgrade it (installing again
//! is an upgrade: server-side apply is idempotent).
//!
//! The objects are [`manifest::render`]'s, for `--profile` and `--set`. In order:
//!
//! 1. a quick precheck: the cluster answers and runs Kubernetes 1.32 or newer (`--skip-precheck`
//!    skips it; `meshctl precheck` is the thorough one);
//! 2. the CRDs, server-side applied, then waited for until `Established`;
//! 3. everything else but the webhook configurations (namespace, RBAC, services,
//!    deployments), then the Deployments' rollouts, with a progress line per step;
//! 4. the webhook configurations last, so pod creation is never sent to a webhook whose
//!    backend is not up yet, then their `caBundle`, which mesh-control sets.
//!
//! Every apply is a `PATCH` with `application/apply-patch+yaml` as field manager `meshctl`;
//! fields another manager owns stop the install with who owns what, unless
//! `--force-conflicts`. `--dry-run` prints the manifests (as `meshctl manifest generate`)
//! and touches no cluster.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kube::api::DynamicObject;

use crate::cluster::{self, Cluster, Mark, Object, line};
use crate::manifest;

/// Arguments of `meshctl install`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Profile and overrides.
    #[command(flatten)]
    pub values: manifest::ValuesArgs,
    /// Print the manifests instead of applying them (as `meshctl manifest generate`).
    #[arg(long)]
    pub dry_run: bool,
    /// Take over fields that another field manager owns (server-side apply `force`).
    #[arg(long)]
    pub force_conflicts: bool,
    /// Skip the quick check of the cluster's reachability and version.
    #[arg(long)]
    pub skip_precheck: bool,
    /// How long each wait (CRDs, rollouts, webhook CA bundles) may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = cluster::parse_duration)]
    pub timeout: Duration,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: cluster::Args,
}

/// How to install, apart from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The control-plane namespace (for messages).
    pub namespace: String,
    /// Server-side apply with `force`.
    pub force_conflicts: bool,
    /// Skip the reachability and version check.
    pub skip_precheck: bool,
    /// The bound of each wait.
    pub timeout: Duration,
}

/// What an install did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every object applied, in order: `Deployment mesh-system/mesh-control`.
    pub applied: Vec<String>,
}

/// Runs `meshctl install`.
pub fn run(args: &Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if args.dry_run {
        let generate = manifest::Args {
            command: manifest::ManifestCommand::Generate(manifest::GenerateArgs {
                values: args.values.clone(),
            }),
        };
        return manifest::run(&generate, out);
    }
    let values = args.values.values()?;
    let objects = manifest::render(&values)?;
    let options = Options {
        namespace: values.namespace.clone(),
        force_conflicts: args.force_conflicts,
        skip_precheck: args.skip_precheck,
        timeout: args.timeout,
    };
    cluster::block_on(async {
        let cluster = Cluster::connect(&args.cluster).await?;
        install(&cluster, objects, &options, out).await
    })??;
    Ok(ExitCode::SUCCESS)
}

/// Installs (or upgrades) `objects` (in [`manifest::render`]'s order) into `cluster`,
/// printing a line per step to `out`, then the next steps.
pub async fn install(
    cluster: &Cluster,
    objects: Vec<DynamicObject>,
    options: &Options,
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    if !options.skip_precheck {
        let version = cluster.version().await?;
        if !version.is_supported() {
            anyhow::bail!(version.unsupported());
        }
        line(
            out,
            Mark::Ok,
            format!(
                "cluster {} runs Kubernetes {}",
                cluster.describe(),
                version.display()
            ),
        )?;
    }
    let objects = cluster::kinds::resolve(cluster, objects).await?;
    let (crds, rest): (Vec<&Object>, Vec<&Object>) = objects
        .iter()
        .partition(|o| o.is("CustomResourceDefinition"));
    let (webhooks, rest): (Vec<&Object>, Vec<&Object>) = rest.into_iter().partition(|o| {
        o.is("MutatingWebhookConfiguration") || o.is("ValidatingWebhookConfiguration")
    });
    let mut report = Report::default();

    if !crds.is_empty() {
        apply_all(cluster, &crds, options, &mut report).await?;
        line(out, Mark::Ok, format!("CRDs applied ({})", crds.len()))?;
        cluster::wait::crds_established(cluster, &crds, options.timeout, out).await?;
    }

    apply_all(cluster, &rest, options, &mut report).await?;
    if !rest.is_empty() {
        line(
            out,
            Mark::Ok,
            format!("control plane applied ({})", summarize(&rest)),
        )?;
    }
    let deployments: Vec<&Object> = rest
        .iter()
        .copied()
        .filter(|o| o.is("Deployment"))
        .collect();
    cluster::wait::rollouts(cluster, &deployments, options.timeout, out).await?;

    if !webhooks.is_empty() {
        apply_all(cluster, &webhooks, options, &mut report).await?;
        line(
            out,
            Mark::Ok,
            format!("webhook configurations applied ({})", summarize(&webhooks)),
        )?;
        cluster::wait::ca_bundles(cluster, &webhooks, options.timeout, out).await?;
    }

    line(
        out,
        Mark::Ok,
        format!(
            "the mesh is installed in namespace {} ({} objects applied)",
            options.namespace,
            report.applied.len()
        ),
    )?;
    write_next_steps(out, &options.namespace)?;
    Ok(report)
}

/// Applies `objects` in order; the first failure stops the install.
async fn apply_all(
    cluster: &Cluster,
    objects: &[&Object],
    options: &Options,
    report: &mut Report,
) -> Result<(), cluster::Error> {
    for object in objects {
        cluster::apply::apply(cluster, object, options.force_conflicts).await?;
        report.applied.push(object.to_string());
    }
    Ok(())
}

/// `Namespace, 2 ServiceAccount, ClusterRole, …`: the kinds of `objects` in order, counted.
fn summarize(objects: &[&Object]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for o in objects {
        match counts.iter_mut().find(|(k, _)| *k == o.kind.name()) {
            Some((_, n)) => *n += 1,
            None => counts.push((o.kind.name(), 1)),
        }
    }
    counts
        .iter()
        .map(|(kind, n)| {
            if *n == 1 {
                (*kind).to_owned()
            } else {
                format!("{n} {kind}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do after installing.
fn write_next_steps(out: &mut dyn Write, namespace: &str) -> std::io::Result<()> {
    let check = if namespace == "mesh-system" {
        "meshctl check".to_owned()
    } else {
        format!("meshctl check -n {namespace}")
    };
    let ns_flag = if namespace == "mesh-system" {
        String::new()
    } else {
        format!(" --control-plane-namespace {namespace}")
    };
    writeln!(
        out,
        "\nNext steps:\n  \
         kubectl label namespace default mesh-injection=enabled   # inject sidecars into new pods of a namespace\n  \
         kubectl apply -f <your app>.yaml                          # deploy (restart existing pods to inject them)\n  \
         {check:<56}  # verify the control plane, webhook and CA\n  \
         meshctl proxy-status --kubernetes{ns_flag}"
    )?;
    out.flush()
}
