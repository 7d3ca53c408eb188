//! Reaching the control plane on Kubernetes: pick a Ready `app=mesh-control` pod in the
//! control-plane namespace and port-forward to its debug port, as `kubectl port-forward`
//! does (a websocket to the API server; no local port is opened).
//!
//! API failures are mapped once, in [`Error::from_api`], to messages that say what to do:
//! a 403 names the verb and resource the user's role lacks.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncWrite};

/// The label selecting control-plane pods.
pub const SELECTOR: &str = "app=mesh-control";

/// Where and how to find the control plane on Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    pub context: Option<String>,
    /// The control plane's namespace.
    pub namespace: String,
}

/// What went wrong finding or reaching the control-plane pod.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("cannot load the Kubernetes client config: {0}; {hint}", hint = crate::cluster::CONFIG_HINT)]
    Config(String),
    /// No pod is Ready, and none exists at all.
    #[error("no ready mesh-control pod in namespace {namespace}: run `meshctl install`")]
    NoPod {
        /// The namespace searched.
        namespace: String,
    },
    /// Pods exist but none is Ready.
    #[error(
        "no ready mesh-control pod in namespace {namespace} ({}); see `kubectl -n {namespace} describe pods -l {SELECTOR}`",
        .not_ready.join(", ")
    )]
    NotReady {
        /// The namespace searched.
        namespace: String,
        /// The pods found, each with why it is not ready: `mesh-control-7d9 (Pending)`.
        not_ready: Vec<String>,
    },
    /// The user's role lacks a permission.
    #[error(
        "permission denied: {verb} {resource} in namespace {namespace} is not allowed ({message}); ask for a role that grants {verbs} on {resource} in {namespace}"
    )]
    Forbidden {
        /// What was attempted: `list`, `port-forward to`.
        verb: &'static str,
        /// The resource: `pods`, `pods/portforward`.
        resource: &'static str,
        /// The RBAC verbs that allow it: `list`, `get and create`.
        verbs: &'static str,
        /// The namespace.
        namespace: String,
        /// The API server's words.
        message: String,
    },
    /// The credentials were rejected.
    #[error(
        "the Kubernetes API server rejected the credentials ({0}); log in again or pick another --context"
    )]
    Unauthorized(String),
    /// Any other answer of the API server.
    #[error("the Kubernetes API server refused to {action}: {message}")]
    Api {
        /// What was attempted.
        action: String,
        /// The status and the server's words.
        message: String,
    },
    /// The API server could not be reached.
    #[error(
        "cannot reach the Kubernetes API server to {action}: {reason}; is the cluster up and the kubeconfig context right (`kubectl config current-context`)?"
    )]
    Unreachable {
        /// What was attempted.
        action: String,
        /// The cause.
        reason: String,
    },
    /// The port-forward failed after it was set up.
    #[error("port-forward to pod {namespace}/{pod} port {port} failed: {reason}")]
    PortForward {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
        /// The port.
        port: u16,
        /// The cause (the kubelet's words).
        reason: String,
    },
}

/// What a request to the API server was doing, for [`Error::from_api`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    ListPods,
    PortForward,
}

// === impl Target ===

impl Target {
    /// A client for the configured kubeconfig and context (found as kubectl finds them,
    /// see [`crate::cluster::Cluster::connect`]), with a 3 s connect timeout.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let (mut config, _context) =
            crate::cluster::load_config(self.kubeconfig.as_deref(), self.context.as_deref())
                .await
                .map_err(Error::Config)?;
        config.connect_timeout = Some(super::CONNECT_TIMEOUT);
        kube::Client::try_from(config).map_err(|e| Error::Config(chain(&e)))
    }
}

/// The name of the Ready control-plane pod to talk to: the first by name among the Ready,
/// not terminating pods labelled [`SELECTOR`] in `namespace`.
pub async fn find_pod(client: &kube::Client, namespace: &str) -> Result<String, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .map_err(|e| Error::from_api(e, Action::ListPods, namespace))?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match why_not_ready(&pod) {
            None => ready.push(name),
            Some(why) => not_ready.push(format!("{name} ({why})")),
        }
    }
    ready.sort();
    not_ready.sort();
    match ready.into_iter().next() {
        Some(name) => Ok(name),
        None if not_ready.is_empty() => Err(Error::NoPod {
            namespace: namespace.to_owned(),
        }),
        None => Err(Error::NotReady {
            namespace: namespace.to_owned(),
            not_ready,
        }),
    }
}

/// `None` for a Ready pod, else a few words on why it is not.
fn why_not_ready(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("terminating".to_owned());
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return Some(phase.to_owned());
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        None
    } else {
        Some("Running, not Ready".to_owned())
    }
}

/// A port-forward to `pod`'s `port`: the forwarder, which must stay alive while the stream
/// is used, and the stream.
pub async fn port_forward(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<(Forward, Box<dyn Stream>), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .map_err(|e| Error::from_api(e, Action::PortForward, namespace))?;
    let stream = forwarder
        .take_stream(port)
        .expect("the forwarder has a stream for the port it was asked for");
    let errors = forwarder
        .take_error(port)
        .expect("the forwarder has an error channel for the port it was asked for");
    let forward = Forward {
        forwarder,
        errors: Box::pin(errors),
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        port,
    };
    Ok((forward, Box::new(stream)))
}

/// A byte stream to a pod's port.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// An open port-forward; dropping it ends the forwarding.
pub struct Forward {
    forwarder: kube::api::Portforwarder,
    errors: std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>,
    namespace: String,
    pod: String,
    port: u16,
}

impl Forward {
    /// Runs `fut` (which uses the stream) until it finishes or the kubelet reports that the
    /// forward failed (nothing listens on the port, the pod went away), whichever is first.
    pub async fn guard<T>(&mut self, fut: impl Future<Output = T>) -> Result<T, Error> {
        tokio::select! {
            out = fut => Ok(out),
            Some(reason) = &mut self.errors => Err(Error::PortForward {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                port: self.port,
                reason,
            }),
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forward({}/{}:{})", self.namespace, self.pod, self.port)
    }
}

// === impl Error ===

impl Error {
    fn from_api(e: kube::Error, action: Action, namespace: &str) -> Self {
        let (verb, resource, verbs, doing) = match action {
            Action::ListPods => (
                "list",
                "pods",
                "list",
                format!("list pods in namespace {namespace}"),
            ),
            Action::PortForward => (
                "port-forward to",
                "pods/portforward",
                "get and create",
                format!("port-forward to a pod in namespace {namespace}"),
            ),
        };
        let forbidden = |message: String| Self::Forbidden {
            verb,
            resource,
            verbs,
            namespace: namespace.to_owned(),
            message,
        };
        match e {
            kube::Error::Api(status) => match status.code {
                403 => forbidden(status.message),
                401 => Self::Unauthorized(if status.message.is_empty() {
                    "401 Unauthorized".to_owned()
                } else {
                    status.message
                }),
                code => Self::Api {
                    action: doing,
                    message: format!("{code} {}: {}", status.reason, status.message),
                },
            },
            kube::Error::UpgradeConnection(
                kube::client::UpgradeConnectionError::ProtocolSwitch(code),
            ) => match code.as_u16() {
                403 => forbidden(format!("the upgrade to a websocket was answered {code}")),
                401 => Self::Unauthorized(code.to_string()),
                _ => Self::Api {
                    action: doing,
                    message: format!("the upgrade to a websocket was answered {code}"),
                },
            },
            kube::Error::Service(e) => Self::Unreachable {
                action: doing,
                reason: chain(&*e),
            },
            kube::Error::HyperError(e) => Self::Unreachable {
                action: doing,
                reason: chain(&e),
            },
            e @ kube::Error::Auth(_) => Self::Unauthorized(chain(&e)),
            e => Self::Api {
                action: doing,
                message: chain(&e),
            },
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    super::client::chain(e)
}

#[cfg(test)]
mod tests;
