//! Waiting for what `install` applied to take effect: CRDs `Established`, Deployments
//! rolled out, webhook configurations given their `caBundle` by mesh-control.
//!
//! Each wait polls every [`POLL`] until a deadline, printing one progress line per object
//! when its state changes (at most every [`REPORT_EVERY`]; every [`REPORT_IDLE`] when it
//! does not). The judgement of each state is a pure function ([`crd_state`],
//! [`rollout_state`], [`pod_problems`]) so it is tested on recorded objects. A rollout that
//! cannot finish (`ProgressDeadlineExceeded`) or does not finish in time is explained from
//! the Deployment's conditions and its pods' container states, with what to do.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::{Cluster, Error, Mark, Object, Op, Verb, format_duration, line};

/// How often a wait polls.
pub const POLL: Duration = Duration::from_secs(1);
/// The shortest time between two progress lines of one object.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A progress line is repeated this often when nothing changes, to show the wait goes on.
pub const REPORT_IDLE: Duration = Duration::from_secs(10);

/// Where a CRD stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrdState {
    /// `Established`: its API is served.
    Established,
    /// Not yet, and why (the `Established` condition's words).
    Pending(String),
    /// It cannot become established (its names were not accepted).
    Failed(String),
}

/// Where a Deployment's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every desired replica is updated and available.
    Done {
        /// Available replicas.
        available: i32,
        /// Desired replicas.
        desired: i32,
    },
    /// In progress.
    Waiting {
        /// `0/1 available`, with more words when the counts do not say it all.
        progress: String,
    },
    /// It cannot finish: the deployment controller gave up (`ProgressDeadlineExceeded`).
    Failed {
        /// The condition's reason and message.
        why: String,
    },
}

/// Prints progress lines, at most every [`REPORT_EVERY`] per object.
#[derive(Debug)]
struct Reporter {
    started: Instant,
    last: HashMap<String, (Instant, String)>,
}

impl Reporter {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: HashMap::new(),
        }
    }

    fn report(&mut self, out: &mut dyn Write, key: &str, text: String) -> std::io::Result<()> {
        let now = Instant::now();
        let due = match self.last.get(key) {
            None => true,
            Some((at, last)) => {
                let since = now - *at;
                since >= REPORT_EVERY && (*last != text || since >= REPORT_IDLE)
            }
        };
        if due {
            let elapsed = (now - self.started).as_secs();
            let suffix = if elapsed > 0 {
                format!(" ({elapsed}s)")
            } else {
                String::new()
            };
            line(out, Mark::Wait, format!("{text}{suffix}"))?;
            self.last.insert(key.to_owned(), (now, text));
        }
        Ok(())
    }
}

/// Sleeps for [`POLL`], or until `deadline` if sooner; `false` when the deadline has passed.
async fn pause(deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    tokio::time::sleep_until(deadline.min(now + POLL)).await;
    true
}

fn io(e: std::io::Error) -> Error {
    Error::Other {
        action: "write the progress".to_owned(),
        reason: e.to_string(),
    }
}

// === CRDs ===

/// Waits until every CRD in `crds` is `Established`, or `timeout` passes.
pub async fn crds_established(
    cluster: &Cluster,
    crds: &[&Object],
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if crds.is_empty() {
        return Ok(());
    }
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client().clone());
    let deadline = Instant::now() + timeout;
    let mut reporter = Reporter::new();
    let mut pending: Vec<&Object> = crds.to_vec();
    loop {
        let mut still = Vec::new();
        let mut why = Vec::new();
        for crd in pending {
            let current = api
                .get(crd.name())
                .await
                .map_err(|e| cluster.error(e, &crd.op(Verb::Get)))?;
            match crd_state(&current) {
                CrdState::Established => {}
                CrdState::Pending(reason) => {
                    why.push(format!("{}: {reason}", crd.name()));
                    still.push(crd);
                }
                CrdState::Failed(reason) => {
                    return Err(Error::NotReady {
                        what: format!("CRD {}", crd.name()),
                        why: format!("cannot be established: {reason}"),
                        hint: Some(format!(
                            "see `kubectl get crd {} -o yaml`; another CRD may already use its names",
                            crd.name()
                        )),
                    });
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        let text = format!(
            "waiting for CRDs to be established: {}/{} ({})",
            crds.len() - pending.len(),
            crds.len(),
            why.join("; ")
        );
        reporter.report(out, "crds", text).map_err(io)?;
        if !pause(deadline).await {
            return Err(Error::NotReady {
                what: format!("{} of {} CRDs", pending.len(), crds.len()),
                why: format!(
                    "were not established within {}: {}",
                    format_duration(timeout),
                    why.join("; ")
                ),
                hint: Some(
                    "see `kubectl get crds -l app.kubernetes.io/part-of=mesh`; rerun with a longer --timeout".to_owned(),
                ),
            });
        }
    }
    line(out, Mark::Ok, format!("CRDs established ({})", crds.len())).map_err(io)
}

/// Where a CRD stands, from its conditions.
pub fn crd_state(crd: &CustomResourceDefinition) -> CrdState {
    let conditions = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = find("NamesAccepted")
        && c.status == "False"
    {
        return CrdState::Failed(format!(
            "NamesAccepted=False ({}): {}",
            c.reason.as_deref().unwrap_or("no reason"),
            c.message.as_deref().unwrap_or_default()
        ));
    }
    match find("Established") {
        Some(c) if c.status == "True" => CrdState::Established,
        Some(c) => CrdState::Pending(format!(
            "Established={} ({})",
            c.status,
            c.reason.as_deref().unwrap_or("no reason")
        )),
        None => CrdState::Pending("no Established condition yet".to_owned()),
    }
}

// === Deployments ===

/// Waits until every Deployment in `deployments` has rolled out, or `timeout` passes, or
/// one cannot finish.
pub async fn rollouts(
    cluster: &Cluster,
    deployments: &[&Object],
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let mut reporter = Reporter::new();
    let mut pending: Vec<&Object> = deployments.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for object in pending {
            let namespace = object.namespace().unwrap_or("default");
            let api: Api<Deployment> = Api::namespaced(cluster.client().clone(), namespace);
            let deployment = api
                .get(object.name())
                .await
                .map_err(|e| cluster.error(e, &object.op(Verb::Get)))?;
            let what = format!("deployment {namespace}/{}", object.name());
            match rollout_state(&deployment) {
                Rollout::Done { available, desired } => {
                    line(
                        out,
                        Mark::Ok,
                        format!("{what} rolled out ({available}/{desired} available)"),
                    )
                    .map_err(io)?;
                }
                Rollout::Waiting { progress } => {
                    reporter
                        .report(out, &what, format!("waiting for {what}: {progress}"))
                        .map_err(io)?;
                    still.push((object, what, deployment, progress));
                }
                Rollout::Failed { why } => {
                    return Err(rollout_failure(
                        cluster,
                        &what,
                        &deployment,
                        format!("cannot roll out: {why}"),
                    )
                    .await);
                }
            }
        }
        if still.is_empty() {
            break;
        }
        if !pause(deadline).await {
            // Explain the first one still waiting.
            let (_, what, deployment, progress) = &still[0];
            let mut why = format!(
                "did not roll out within {}: {progress}",
                format_duration(timeout)
            );
            let conditions = describe_conditions(deployment);
            if !conditions.is_empty() {
                why.push_str(&format!("; {conditions}"));
            }
            return Err(rollout_failure(cluster, what, deployment, why).await);
        }
        pending = still.into_iter().map(|(o, ..)| o).collect();
    }
    Ok(())
}

/// The error for a rollout that failed or timed out: `why`, the pods' problems, and where
/// to look.
async fn rollout_failure(
    cluster: &Cluster,
    what: &str,
    deployment: &Deployment,
    mut why: String,
) -> Error {
    let namespace = deployment
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let selector = selector(deployment);
    let problems = match &selector {
        Some(sel) => pods_problems(cluster, namespace, sel).await,
        None => Vec::new(),
    };
    for p in &problems {
        why.push_str(&format!("\n  {p}"));
    }
    let hint = match &selector {
        Some(sel) => format!("see `kubectl -n {namespace} describe pods -l {sel}`"),
        None => format!("see `kubectl -n {namespace} describe {what}`"),
    };
    Error::NotReady {
        what: what.to_owned(),
        why,
        hint: Some(hint),
    }
}

/// A Deployment's `matchLabels` as a label selector: `app=mesh-control`.
pub fn selector(deployment: &Deployment) -> Option<String> {
    let labels = deployment
        .spec
        .as_ref()?
        .selector
        .match_labels
        .as_ref()
        .filter(|l| !l.is_empty())?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Where a Deployment's rollout stands, as `kubectl rollout status` judges it, and the
/// `Available` condition too.
pub fn rollout_state(d: &Deployment) -> Rollout {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return Rollout::Waiting {
            progress: format!("0/{desired} available (no status yet)"),
        };
    };
    let available = status.available_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let counts = format!("{available}/{desired} available");
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Waiting {
            progress: format!("{counts} (the new spec is not observed yet)"),
        };
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if let Some(c) = conditions.iter().find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Rollout::Failed {
            why: format!(
                "{counts}; Progressing={} (ProgressDeadlineExceeded): {}",
                c.status,
                c.message.as_deref().unwrap_or_default()
            ),
        };
    }
    let progress = if updated < desired {
        format!("{counts}, {updated}/{desired} updated")
    } else if replicas > updated {
        format!(
            "{counts}, {} old replicas pending termination",
            replicas - updated
        )
    } else if available < desired {
        counts
    } else if !conditions
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True")
    {
        format!("{counts} (not yet Available)")
    } else {
        return Rollout::Done { available, desired };
    };
    Rollout::Waiting { progress }
}

/// The conditions that are not fine: `Available=False (MinimumReplicasUnavailable):
/// Deployment does not have minimum availability.`
pub fn describe_conditions(d: &Deployment) -> String {
    let conditions = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    conditions
        .iter()
        .filter(|c| c.status != "True" || c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .map(|c| {
            format!(
                "{}={} ({}): {}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or("no reason"),
                c.message.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// === pods ===

/// What is wrong with the pods labelled `selector` in `namespace`, one line each with what
/// to do. Empty when nothing is (or the pods cannot be listed: this only explains).
pub async fn pods_problems(cluster: &Cluster, namespace: &str, selector: &str) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(cluster.client().clone(), namespace);
    match api.list(&ListParams::default().labels(selector)).await {
        Ok(list) if list.items.is_empty() => {
            vec![format!("no pods match {selector} in namespace {namespace}")]
        }
        Ok(list) => list.items.iter().flat_map(pod_problems).collect(),
        Err(e) => vec![format!(
            "(cannot list its pods: {})",
            cluster.error(
                e,
                &Op::new(Verb::List, "pods").in_namespace(Some(namespace))
            )
        )],
    }
}

/// What is wrong with one pod: containers waiting for a reason other than starting up,
/// or the pod not being scheduled. Each line says what to do.
pub fn pod_problems(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Vec::new();
    let Some(status) = &pod.status else {
        return out;
    };
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" {
            out.push(format!(
                "pod {name} is not scheduled ({}): {}; free capacity or lower the resource requests",
                c.reason.as_deref().unwrap_or("no reason"),
                c.message.as_deref().unwrap_or_default()
            ));
        }
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in containers {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or("");
        if reason.is_empty() || reason == "ContainerCreating" || reason == "PodInitializing" {
            continue;
        }
        let message = waiting
            .message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        let fix = match reason {
            "ImagePullBackOff" | "ErrImagePull" | "ErrImageNeverPull" | "InvalidImageName" => {
                format!(
                    "the image {} cannot be pulled: load it into the cluster (`kind load docker-image {0}`, `minikube image load {0}`) or install from a registry that has it: `meshctl install --set hub=REGISTRY`",
                    cs.image
                )
            }
            "CrashLoopBackOff" => {
                let last = cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| {
                        format!(
                            "it last exited with code {}{}; ",
                            t.exit_code,
                            t.reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{last}see `kubectl -n {namespace} logs {name} -c {} --previous`",
                    cs.name
                )
            }
            "CreateContainerConfigError" | "CreateContainerError" => format!(
                "a ConfigMap, Secret or setting it needs is missing or wrong; see `kubectl -n {namespace} describe pod {name}`"
            ),
            _ => format!("see `kubectl -n {namespace} describe pod {name}`"),
        };
        out.push(format!(
            "pod {name}: container {} is waiting: {reason}{message}: {fix}",
            cs.name
        ));
    }
    out
}

// === webhook CA bundles ===

/// Waits until every webhook of the configurations in `webhooks` has a `caBundle` (which
/// mesh-control sets once it runs), or `timeout` passes.
pub async fn ca_bundles(
    cluster: &Cluster,
    webhooks: &[&Object],
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if webhooks.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut reporter = Reporter::new();
    let mut pending: Vec<&Object> = webhooks.to_vec();
    loop {
        let mut still = Vec::new();
        for object in pending {
            let current = object
                .api(cluster)
                .get(object.name())
                .await
                .map_err(|e| cluster.error(e, &object.op(Verb::Get)))?;
            if !missing_ca_bundles(&current.data).is_empty() {
                still.push(object);
            }
        }
        pending = still;
        let Some(first) = pending.first() else {
            break;
        };
        let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
        let text = format!(
            "waiting for mesh-control to set the caBundle of {}",
            names.join(", ")
        );
        reporter.report(out, "ca-bundles", text).map_err(io)?;
        if !pause(deadline).await {
            let namespace = first
                .data
                .data
                .pointer("/webhooks/0/clientConfig/service/namespace")
                .and_then(|v| v.as_str())
                .unwrap_or("mesh-system");
            return Err(Error::NotReady {
                what: names.join(", "),
                why: format!(
                    "got no caBundle within {}: mesh-control sets it once it runs",
                    format_duration(timeout)
                ),
                hint: Some(format!(
                    "see `kubectl -n {namespace} logs deploy/mesh-control`; `meshctl check -n {namespace}` tells more"
                )),
            });
        }
    }
    line(
        out,
        Mark::Ok,
        format!(
            "webhook configurations have mesh-control's caBundle ({})",
            webhooks.len()
        ),
    )
    .map_err(io)
}

/// The names of the webhooks of a webhook configuration (its JSON) without a `caBundle`.
pub fn missing_ca_bundles(config: &serde_json::Value) -> Vec<String> {
    config
        .get("webhooks")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
        .filter(|w| {
            w.pointer("/clientConfig/caBundle")
                .and_then(|b| b.as_str())
                .is_none_or(str::is_empty)
        })
        .map(|w| {
            w.get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}
