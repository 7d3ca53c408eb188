//! `meshctl uninstall`: remove the mesh from the cluster.
//!
//! What to delete comes from rendering the manifests for the control-plane namespace (the
//! names are fixed; the `demo` profile renders every object any profile does) plus a sweep
//! of the objects labelled `app.kubernetes.io/part-of=mesh` of the same kinds (in the
//! namespace, or cluster-wide for cluster-scoped kinds), plus the ConfigMaps
//! `mesh-root-cert` that mesh-control published in every namespace. They are deleted in
//! this order (see [`rank`]):
//!
//! 1. the webhook configurations, so pod creation is never blocked by a webhook whose
//!    backend is going away;
//! 2. Deployments, then Services, then RBAC (bindings before roles), then ServiceAccounts
//!    and other namespaced objects;
//! 3. the `mesh-root-cert` ConfigMaps;
//! 4. the namespace, when meshctl created it (labelled part-of=mesh; never `default` or a
//!    `kube-` namespace);
//! 5. with `--purge`, the CRDs — and with them every VirtualService, DestinationRule, … in
//!    the cluster.
//!
//! A 404 means already gone: running it twice is fine. Without `-y` it asks on a terminal
//! and refuses when stdin is not one.

use std::io::{BufRead, IsTerminal as _, Write};
use std::process::ExitCode;

use kube::api::DynamicObject;

use crate::cluster::delete::{self, Deleted};
use crate::cluster::{self, Cluster, Kind, Mark, Object, line};
use crate::manifest;

/// The ConfigMap mesh-control publishes the trust bundle in, in every namespace.
pub const ROOT_CERT_CONFIGMAP: &str = "mesh-root-cert";

/// Namespaces never deleted, whatever their labels say.
const PROTECTED_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Arguments of `meshctl uninstall`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane's namespace.
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        default_value = "mesh-system"
    )]
    pub namespace: String,
    /// Also delete the mesh's CRDs, and with them every VirtualService, DestinationRule,
    /// Gateway, ServiceEntry, WorkloadEntry, PeerAuthentication and AuthorizationPolicy in
    /// the cluster.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: cluster::Args,
}

/// What to uninstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The control-plane namespace.
    pub namespace: String,
    /// Delete the CRDs too.
    pub purge: bool,
}

/// What an uninstall did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Objects deleted, in order: `Deployment mesh-system/mesh-control`.
    pub deleted: Vec<String>,
    /// Objects that were already gone.
    pub already_gone: Vec<String>,
    /// Objects left in place, with why.
    pub kept: Vec<String>,
}

/// Runs `meshctl uninstall`.
pub fn run(args: &Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let options = Options {
        namespace: args.namespace.clone(),
        purge: args.purge,
    };
    let objects = rendered(&options.namespace)?;
    if !args.yes {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        if !confirm(&options, interactive, &mut stdin.lock(), out)? {
            writeln!(out, "uninstall cancelled")?;
            return Ok(ExitCode::FAILURE);
        }
    }
    cluster::block_on(async {
        let cluster = Cluster::connect(&args.cluster).await?;
        uninstall(&cluster, objects, &options, out).await
    })??;
    Ok(ExitCode::SUCCESS)
}

/// Every object an installation into `namespace` can have.
pub fn rendered(namespace: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let values = manifest::ValuesArgs {
        profile: manifest::Profile::Demo,
        set: vec![format!("namespace={namespace}")],
    }
    .values()?;
    manifest::render(&values)
}

/// Asks on `out` and reads the answer from `input`; `true` for `y` or `yes`. Fails when
/// not `interactive` (stdin is not a terminal): scripts must pass `-y`.
pub fn confirm(
    options: &Options,
    interactive: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    if !interactive {
        anyhow::bail!(
            "refusing to uninstall without confirmation: stdin is not a terminal; pass -y to confirm"
        );
    }
    if options.purge {
        writeln!(out, "{}", purge_warning())?;
    }
    write!(
        out,
        "Remove the mesh from namespace {}{}? [y/N] ",
        options.namespace,
        if options.purge {
            " and delete its CRDs"
        } else {
            ""
        }
    )?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn purge_warning() -> String {
    format!(
        "{} --purge deletes the mesh's CRDs and with them every VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry, PeerAuthentication and AuthorizationPolicy in the cluster, in every namespace",
        Mark::Warn
    )
}

/// Uninstalls the mesh from `cluster`: the rendered `objects` and what the sweeps find, in
/// [`rank`] order, printing a line per object.
pub async fn uninstall(
    cluster: &Cluster,
    objects: Vec<DynamicObject>,
    options: &Options,
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    if options.purge {
        writeln!(out, "{}", purge_warning())?;
    }
    let rendered = cluster::kinds::resolve(cluster, objects).await?;
    let mut plan: Vec<Object> = Vec::new();
    let add = |o: Object, plan: &mut Vec<Object>| {
        if !plan.iter().any(|p| p.same(&o)) {
            plan.push(o);
        }
    };
    let wanted = |o: &Object| options.purge || !o.is("CustomResourceDefinition");
    for o in rendered.iter().filter(|o| wanted(o)) {
        add(o.clone(), &mut plan);
    }

    // The sweep: anything else of these kinds labelled part-of=mesh.
    let selector = format!("{}={}", cluster::PART_OF_LABEL.0, cluster::PART_OF_LABEL.1);
    let mut kinds: Vec<&Kind> = Vec::new();
    for o in rendered.iter().filter(|o| wanted(o) && !o.is("Namespace")) {
        if !kinds.contains(&&o.kind) {
            kinds.push(&o.kind);
        }
    }
    for kind in kinds {
        for o in delete::list(cluster, kind, Some(&options.namespace), &selector).await? {
            add(o, &mut plan);
        }
    }

    // The trust bundle mesh-control published in every namespace.
    let configmaps = Kind::of::<k8s_openapi::api::core::v1::ConfigMap>();
    let selector = format!(
        "{}={}",
        cluster::CONTROL_MANAGED_LABEL.0,
        cluster::CONTROL_MANAGED_LABEL.1
    );
    for o in delete::list(cluster, &configmaps, None, &selector).await? {
        if o.name() == ROOT_CERT_CONFIGMAP {
            add(o, &mut plan);
        }
    }

    plan.sort_by_key(rank);
    let mut report = Report::default();
    for object in &plan {
        if object.is("Namespace")
            && let Some(why) = keep_namespace(cluster, object).await?
        {
            line(out, Mark::Skip, format!("kept {object}: {why}"))?;
            report.kept.push(format!("{object}: {why}"));
            continue;
        }
        match delete::delete(cluster, object).await? {
            Deleted::Deleted => {
                line(out, Mark::Ok, format!("deleted {object}"))?;
                report.deleted.push(object.to_string());
            }
            Deleted::AlreadyGone => {
                line(out, Mark::Skip, format!("{object}: already gone"))?;
                report.already_gone.push(object.to_string());
            }
        }
    }

    line(
        out,
        Mark::Ok,
        format!(
            "the mesh is uninstalled from namespace {}: {} objects deleted, {} already gone",
            options.namespace,
            report.deleted.len(),
            report.already_gone.len()
        ),
    )?;
    if report
        .deleted
        .iter()
        .any(|d| d == &format!("Namespace {}", options.namespace))
    {
        writeln!(
            out,
            "namespace {0} is terminating; `kubectl get namespace {0}` shows when it is gone (install again only after that)",
            options.namespace
        )?;
    }
    if !options.purge {
        writeln!(
            out,
            "the CRDs and the mesh config in them (VirtualServices, DestinationRules, …) are kept; `meshctl uninstall --purge` deletes them"
        )?;
    }
    writeln!(
        out,
        "pods injected before keep their sidecars until restarted; remove the label with `kubectl label namespace <ns> mesh-injection-`"
    )?;
    Ok(report)
}

/// Why a namespace must be kept (`None`: delete it): it is gone already (deleting finds
/// that), it is a system namespace, or meshctl did not create it.
async fn keep_namespace(cluster: &Cluster, namespace: &Object) -> anyhow::Result<Option<String>> {
    if PROTECTED_NAMESPACES.contains(&namespace.name()) {
        return Ok(Some("a system namespace is never deleted".to_owned()));
    }
    let Some(current) = delete::get(cluster, namespace).await? else {
        return Ok(None);
    };
    let (key, value) = cluster::PART_OF_LABEL;
    if current.label(key) == Some(value) {
        Ok(None)
    } else {
        Ok(Some(format!(
            "meshctl did not create it (no label {key}={value}); delete it yourself if it is empty"
        )))
    }
}

/// The deletion order of an object: webhooks first, CRDs last.
pub fn rank(object: &Object) -> u8 {
    match object.kind.name() {
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => 0,
        "Deployment" | "DaemonSet" | "StatefulSet" => 1,
        "HorizontalPodAutoscaler" | "PodDisruptionBudget" => 2,
        "Service" => 3,
        "RoleBinding" | "ClusterRoleBinding" => 4,
        "Role" | "ClusterRole" => 5,
        "ServiceAccount" => 6,
        "ConfigMap" if object.name() == ROOT_CERT_CONFIGMAP => 8,
        "Namespace" => 9,
        "CustomResourceDefinition" => 10,
        _ => 7,
    }
}
