//! `meshctl check`: is the installed mesh healthy? One line per check, `✔`, `⚠` or `✗`,
//! and exit status 1 on any `✗`:
//!
//! 1. the control plane's Deployments (labelled part-of=mesh in `-n`) are rolled out and
//!    Available; when not, why, from the pods' container states (an `ImagePullBackOff`
//!    says how to get the images there);
//! 2. the webhook configurations exist and every webhook's `caBundle` is PEM certificates
//!    holding mesh-control's current root (ConfigMap `mesh-root-cert`, key
//!    `root-cert.pem`, in the control-plane namespace);
//! 3. the webhook answers: through a port-forward to a Ready mesh-control pod's 15017, TLS
//!    trusting only the `caBundle`, server name `mesh-control.<ns>.svc` (what the API
//!    server checks), `GET /healthz` → 200;
//! 4. the CA is healthy (`GET /debug/ca` on 15014): its signing certificate and roots are
//!    not expiring within [`EXPIRY_WARNING_DAYS`] days and no root rotation is stuck;
//! 5. the connected proxies are in sync (`GET /debug/proxies`, judged as
//!    `meshctl proxy-status --check` judges it).
//!
//! The streams to the pod come from a [`Dial`]: a port-forward in `run`, servers on
//! 127.0.0.1 in tests.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use http::StatusCode;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams};
use mesh_api::status::{CaStatus, ProxyStatusList, RotationPhase};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;

use crate::cluster::tunnel::{Dial, PortForward};
use crate::cluster::{self, Checklist, Cluster, Kind, Object, Verb};
use crate::control::{self, Location, kubernetes};
use crate::uninstall::ROOT_CERT_CONFIGMAP;
use crate::{proxy_status, uninstall};

/// The control plane's Deployment (DESIGN.md).
pub const CONTROL_DEPLOYMENT: &str = "mesh-control";
/// The key of the trust bundle in ConfigMap `mesh-root-cert`.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
/// The webhook's port.
pub const WEBHOOK_PORT: u16 = 15017;
/// The webhook's liveness path.
pub const HEALTH_PATH: &str = "/healthz";
/// A certificate of the CA expiring within this many days fails the check.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// How late a rotation step may be before it counts as stuck, in seconds.
pub const ROTATION_GRACE_SECS: i64 = 300;

/// Arguments of `meshctl check`.
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
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: cluster::Args,
}

/// The outcome of a check.
pub type Report = Checklist;

/// Runs `meshctl check`.
pub fn run(args: &Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let objects = uninstall::rendered(&args.namespace)?;
    let report = cluster::block_on(async {
        let cluster = Cluster::connect(&args.cluster).await?;
        let dialer = PortForward::new(cluster.client().clone());
        check(&cluster, &dialer, objects, &args.namespace, out).await
    })??;
    Ok(report.exit_code())
}

/// Checks the mesh installed in `namespace` (whose manifests are `objects`, for the names
/// of its webhook configurations), reaching pods through `dialer`.
pub async fn check<D: Dial>(
    cluster: &Cluster,
    dialer: &D,
    objects: Vec<DynamicObject>,
    namespace: &str,
    out: &mut dyn Write,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let result = run_checks(cluster, dialer, objects, namespace, &mut report, out).await;
    if let Err(e) = result {
        // The cluster cannot be asked at all: that is the answer.
        report.fail(out, format!("{e:#}"))?;
    }
    if report.passed() {
        writeln!(out, "\nthe mesh in namespace {namespace} is healthy")?;
    } else {
        writeln!(
            out,
            "\n{} check(s) failed in namespace {namespace}",
            report.failures.len()
        )?;
    }
    out.flush()?;
    Ok(report)
}

async fn run_checks<D: Dial>(
    cluster: &Cluster,
    dialer: &D,
    objects: Vec<DynamicObject>,
    namespace: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !deployments(cluster, namespace, report, out).await? {
        return Ok(());
    }
    let objects = cluster::kinds::resolve(cluster, objects).await?;
    let bundles = webhooks(cluster, &objects, namespace, report, out).await?;

    let pod = match kubernetes::find_pod(cluster.client(), namespace).await {
        Ok(pod) => pod,
        Err(e) => {
            report.fail(out, format!("cannot reach mesh-control: {e}"))?;
            return Ok(());
        }
    };
    for bundle in &bundles {
        webhook_reachable(dialer, namespace, &pod, bundle, report, out).await?;
    }
    ca(dialer, namespace, &pod, report, out).await?;
    proxies(dialer, namespace, &pod, report, out).await?;
    Ok(())
}

// === deployments ===

/// Checks the Deployments labelled part-of=mesh; `false` when mesh-control is not
/// installed (nothing else can be checked).
async fn deployments(
    cluster: &Cluster,
    namespace: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let api: Api<Deployment> = Api::namespaced(cluster.client().clone(), namespace);
    let selector = format!("{}={}", cluster::PART_OF_LABEL.0, cluster::PART_OF_LABEL.1);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            cluster.error(
                e,
                &Kind::of::<Deployment>()
                    .op(Verb::List)
                    .in_namespace(Some(namespace)),
            )
        })?;
    if !list
        .items
        .iter()
        .any(|d| d.metadata.name.as_deref() == Some(CONTROL_DEPLOYMENT))
    {
        report.fail(
            out,
            format!(
                "the mesh is not installed in namespace {namespace} (no Deployment {CONTROL_DEPLOYMENT} labelled {selector}): run `meshctl install`, or pass the namespace it is in with -n"
            ),
        )?;
        return Ok(false);
    }
    for d in &list.items {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let what = format!("deployment {namespace}/{name}");
        match cluster::wait::rollout_state(d) {
            cluster::wait::Rollout::Done { available, desired } => {
                report.ok(out, format!("{what} is available ({available}/{desired})"))?;
            }
            cluster::wait::Rollout::Waiting { progress: why }
            | cluster::wait::Rollout::Failed { why } => {
                let mut text = format!("{what} is not available: {why}");
                let conditions = cluster::wait::describe_conditions(d);
                if !conditions.is_empty() && !why.contains(&conditions) {
                    text.push_str(&format!("; {conditions}"));
                }
                if let Some(sel) = cluster::wait::selector(d) {
                    for p in cluster::wait::pods_problems(cluster, namespace, &sel).await {
                        text.push_str(&format!("\n  {p}"));
                    }
                    text.push_str(&format!(
                        "\n  see `kubectl -n {namespace} describe pods -l {sel}`"
                    ));
                }
                report.fail(out, text)?;
            }
        }
    }
    Ok(true)
}

// === webhook configurations ===

/// A `caBundle` and the server name its webhook is called with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bundle {
    certs: Vec<CertificateDer<'static>>,
    server_name: String,
}

/// Checks the `caBundle` of every webhook of the rendered webhook configurations against
/// mesh-control's root; returns the distinct usable bundles, for [`webhook_reachable`].
async fn webhooks(
    cluster: &Cluster,
    objects: &[Object],
    namespace: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<Bundle>> {
    let roots = match root_bundle(cluster, namespace).await? {
        Ok(roots) => Some(roots),
        Err(why) => {
            report.fail(out, why)?;
            None
        }
    };
    let mut bundles: Vec<Bundle> = Vec::new();
    let configs = objects
        .iter()
        .filter(|o| o.is("MutatingWebhookConfiguration") || o.is("ValidatingWebhookConfiguration"));
    for config in configs {
        let current = match config.api(cluster).get_opt(config.name()).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                report.fail(
                    out,
                    format!(
                        "{} {} is missing: without it {}; run `meshctl install` again",
                        config.kind.name(),
                        config.name(),
                        if config.is("MutatingWebhookConfiguration") {
                            "no sidecar is injected"
                        } else {
                            "mesh config is not validated when applied"
                        }
                    ),
                )?;
                continue;
            }
            Err(e) => return Err(cluster.error(e, &config.op(Verb::Get)).into()),
        };
        let hooks = current
            .data
            .get("webhooks")
            .and_then(|w| w.as_array())
            .cloned()
            .unwrap_or_default();
        let mut fine = 0;
        for hook in &hooks {
            let hook_name = hook.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            let what = format!(
                "webhook {hook_name} of {} {}",
                config.kind.name(),
                config.name()
            );
            let bundle = match ca_bundle(hook, namespace) {
                Ok(bundle) => bundle,
                Err(why) => {
                    report.fail(
                        out,
                        format!(
                            "{what}: {why}; mesh-control sets it when it runs: see `kubectl -n {namespace} logs deploy/{CONTROL_DEPLOYMENT}`"
                        ),
                    )?;
                    continue;
                }
            };
            if let Some(roots) = &roots
                && !bundle.certs.iter().any(|c| roots.contains(c))
            {
                report.fail(
                    out,
                    format!(
                        "{what}: its caBundle does not hold mesh-control's current root (ConfigMap {namespace}/{ROOT_CERT_CONFIGMAP}): the API server cannot verify the webhook; mesh-control updates it when it runs: see `kubectl -n {namespace} logs deploy/{CONTROL_DEPLOYMENT}`"
                    ),
                )?;
                continue;
            }
            fine += 1;
            if !bundles.contains(&bundle) {
                bundles.push(bundle);
            }
        }
        if hooks.is_empty() {
            report.fail(
                out,
                format!(
                    "{} {} has no webhooks; run `meshctl install` again",
                    config.kind.name(),
                    config.name()
                ),
            )?;
        } else if fine == hooks.len() {
            report.ok(
                out,
                format!(
                    "{} {}: caBundle holds mesh-control's root ({} webhook{})",
                    config.kind.name(),
                    config.name(),
                    hooks.len(),
                    if hooks.len() == 1 { "" } else { "s" }
                ),
            )?;
        }
    }
    Ok(bundles)
}

/// The trust bundle mesh-control publishes (ConfigMap `mesh-root-cert`), or why it cannot
/// be used (a sentence for a failed check).
async fn root_bundle(
    cluster: &Cluster,
    namespace: &str,
) -> anyhow::Result<Result<Vec<CertificateDer<'static>>, String>> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), namespace);
    let op = Kind::of::<ConfigMap>()
        .op(Verb::Get)
        .named(ROOT_CERT_CONFIGMAP)
        .in_namespace(Some(namespace));
    let Some(cm) = api
        .get_opt(ROOT_CERT_CONFIGMAP)
        .await
        .map_err(|e| cluster.error(e, &op))?
    else {
        return Ok(Err(format!(
            "ConfigMap {namespace}/{ROOT_CERT_CONFIGMAP} is missing: mesh-control publishes its root there when it starts; see `kubectl -n {namespace} logs deploy/{CONTROL_DEPLOYMENT}`"
        )));
    };
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get(ROOT_CERT_KEY))
        .map(String::as_str)
        .unwrap_or_default();
    match parse_pem_certs(pem.as_bytes()) {
        Ok(certs) => Ok(Ok(certs)),
        Err(why) => Ok(Err(format!(
            "ConfigMap {namespace}/{ROOT_CERT_CONFIGMAP} key {}: {why}",
            ROOT_CERT_KEY
        ))),
    }
}

/// A webhook's `clientConfig.caBundle` as certificates, and the name the API server
/// expects on the webhook's certificate (`<service>.<namespace>.svc`).
fn ca_bundle(hook: &serde_json::Value, namespace: &str) -> Result<Bundle, String> {
    let raw = hook
        .pointer("/clientConfig/caBundle")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        .ok_or("it has no caBundle")?;
    let pem: ByteString = serde_json::from_value(raw.clone())
        .map_err(|e| format!("its caBundle is not base64: {e}"))?;
    let certs = parse_pem_certs(&pem.0).map_err(|why| format!("its caBundle: {why}"))?;
    let service = hook.pointer("/clientConfig/service");
    let name = service
        .and_then(|s| s.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or(CONTROL_DEPLOYMENT);
    let ns = service
        .and_then(|s| s.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or(namespace);
    Ok(Bundle {
        certs,
        server_name: format!("{name}.{ns}.svc"),
    })
}

/// The certificates of a PEM text, or why there are none.
fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    Ok(certs)
}

// === through the port-forward ===

/// `GET /healthz` on the webhook port over TLS that trusts only `bundle`.
async fn webhook_reachable<D: Dial>(
    dialer: &D,
    namespace: &str,
    pod: &str,
    bundle: &Bundle,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let what = format!(
        "webhook https://{}:{WEBHOOK_PORT}{HEALTH_PATH} (pod {namespace}/{pod})",
        bundle.server_name
    );
    let result = match dialer.dial(namespace, pod, WEBHOOK_PORT).await {
        Ok(tunnel) => tunnel
            .run(|stream| healthz_over_tls(stream, bundle))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(StatusCode::OK) => report.ok(out, format!("{what} answers 200 over TLS verified with the caBundle"))?,
        Ok(status) => report.fail(
            out,
            format!(
                "{what} answered {status}; see `kubectl -n {namespace} logs {pod}`"
            ),
        )?,
        Err(why) => report.fail(
            out,
            format!("{what} cannot be reached: {why}; the API server would fail the same way, so pods in labelled namespaces may not be created"),
        )?,
    }
    Ok(())
}

/// A TLS 1.3 handshake trusting only `bundle` (server name checked), then `GET /healthz`.
async fn healthz_over_tls(
    stream: Box<dyn kubernetes::Stream>,
    bundle: &Bundle,
) -> Result<StatusCode, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in &bundle.certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("the caBundle holds a certificate that cannot be a root: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(bundle.server_name.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", bundle.server_name))?;
    let connect = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream);
    let tls = tokio::time::timeout(control::TOTAL_TIMEOUT, connect)
        .await
        .map_err(|_| {
            format!(
                "no TLS handshake within {}s",
                control::TOTAL_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("TLS handshake failed: {}", control::client::chain(&e)))?;
    let authority = format!("{}:{WEBHOOK_PORT}", bundle.server_name);
    let get = control::client::get(tls, &authority, HEALTH_PATH);
    let res = tokio::time::timeout(control::TOTAL_TIMEOUT, get)
        .await
        .map_err(|_| format!("no answer within {}s", control::TOTAL_TIMEOUT.as_secs()))??;
    Ok(res.status)
}

/// `GET path` from the debug API of `pod`, through `dialer`.
async fn debug_get<D: Dial, T: DeserializeOwned>(
    dialer: &D,
    namespace: &str,
    pod: &str,
    path: &str,
) -> Result<T, String> {
    let at = Location::Pod {
        namespace: namespace.to_owned(),
        pod: Some(pod.to_owned()),
    };
    let tunnel = dialer
        .dial(namespace, pod, control::DEBUG_PORT)
        .await
        .map_err(|e| e.to_string())?;
    tunnel
        .run(|stream| control::get_over::<T>(stream, at, path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn ca<D: Dial>(
    dialer: &D,
    namespace: &str,
    pod: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let status: CaStatus = match debug_get(dialer, namespace, pod, "/debug/ca").await {
        Ok(status) => status,
        Err(why) => {
            report.fail(out, format!("cannot read the CA's status: {why}"))?;
            return Ok(());
        }
    };
    let verdict = ca_verdict(&status);
    for w in &verdict.warnings {
        report.warn(out, format!("CA: {w}"))?;
    }
    if verdict.failures.is_empty() {
        report.ok(out, format!("CA healthy: {}", verdict.summary))?;
    }
    for f in verdict.failures {
        report.fail(out, format!("CA: {f}"))?;
    }
    Ok(())
}

async fn proxies<D: Dial>(
    dialer: &D,
    namespace: &str,
    pod: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let list: ProxyStatusList = match debug_get(dialer, namespace, pod, proxy_status::PATH).await {
        Ok(list) => list,
        Err(why) => {
            report.fail(out, format!("cannot read the proxies' status: {why}"))?;
            return Ok(());
        }
    };
    match proxy_status::check(&list) {
        None if list.proxies.is_empty() => report.ok(
            out,
            "no proxies connected yet: label a namespace `mesh-injection=enabled` and (re)start its pods",
        )?,
        None => report.ok(
            out,
            format!("proxies: {} connected, all SYNCED", list.proxies.len()),
        )?,
        Some(why) => report.fail(
            out,
            format!("proxies: {why}; see `meshctl proxy-status --kubernetes --control-plane-namespace {namespace}`"),
        )?,
    }
    Ok(())
}

// === the CA's health ===

/// What the CA's status says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaVerdict {
    /// One line on a healthy CA.
    pub summary: String,
    /// What is wrong, with what to do.
    pub failures: Vec<String>,
    /// What the CA works around.
    pub warnings: Vec<String>,
}

/// Judges the CA from its status, by its own clock (`now_unix_ms`): the signing
/// certificate and every root still trusted must be valid for more than
/// [`EXPIRY_WARNING_DAYS`] days (retiring roots excepted), and a rotation step that is due
/// must not be more than [`ROTATION_GRACE_SECS`] late.
pub fn ca_verdict(ca: &CaStatus) -> CaVerdict {
    let now = i64::try_from(ca.now_unix_ms / 1000).unwrap_or(i64::MAX);
    let mut verdict = CaVerdict::default();
    let days_left = |not_after: i64| (not_after - now).div_euclid(86_400);
    let rotate = if ca.plug_in {
        "replace the plug-in CA (Secret cacerts) with a renewed one"
    } else {
        "rotate the root: `mesh-control ca rotate` (see its --help)"
    };
    let retiring: Vec<&str> = ca
        .rotation
        .retiring
        .iter()
        .map(|r| r.root.serial.as_str())
        .collect();
    let mut certs = vec![("signing certificate", &ca.signing)];
    certs.extend(
        ca.trust_bundle
            .iter()
            .filter(|c| !retiring.contains(&c.serial.as_str()) && c.serial != ca.signing.serial)
            .map(|c| ("root", c)),
    );
    for (role, cert) in certs {
        let days = days_left(cert.not_after);
        if cert.not_after <= now {
            verdict
                .failures
                .push(format!("the {role} {} has expired: {rotate}", cert.subject));
        } else if days < EXPIRY_WARNING_DAYS {
            verdict.failures.push(format!(
                "the {role} {} expires in {days} days: {rotate}",
                cert.subject
            ));
        }
    }
    let rotation = &ca.rotation;
    if rotation.phase == RotationPhase::Announced
        && let Some(at) = rotation.switch_at_unix_ms
    {
        let late = now - i64::try_from(at / 1000).unwrap_or(i64::MAX);
        if late > ROTATION_GRACE_SECS {
            verdict.failures.push(format!(
                "root rotation is stuck: the announced root should have started signing {} minutes ago; see mesh-control's logs",
                late / 60
            ));
        }
    }
    for r in &rotation.retiring {
        let late = now - i64::try_from(r.drop_after_unix_ms / 1000).unwrap_or(i64::MAX);
        if late > ROTATION_GRACE_SECS {
            verdict.failures.push(format!(
                "root rotation is stuck: the retired root {} should have left the trust bundle {} minutes ago; see mesh-control's logs",
                r.root.subject,
                late / 60
            ));
        }
    }
    verdict.warnings = ca.problems.clone();
    verdict.summary = format!(
        "signing with {} (expires in {} days), {} root{} trusted, rotation {}",
        ca.signing.subject,
        days_left(ca.signing.not_after),
        ca.trust_bundle.len(),
        if ca.trust_bundle.len() == 1 { "" } else { "s" },
        match rotation.phase {
            RotationPhase::Stable => "stable",
            RotationPhase::Announced => "announced",
            RotationPhase::Draining => "draining",
        }
    );
    verdict
}

#[cfg(test)]
mod tests;
