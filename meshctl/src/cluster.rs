//! The Kubernetes cluster as `install`, `uninstall`, `precheck` and `check` see it: a
//! [`Cluster`] (a kube client plus the server URL and context it was built from, for
//! messages), the kinds meshctl installs ([`kinds`]), and the machinery those commands share:
//! server-side apply ([`apply`]), waits for CRDs, rollouts and webhook CA bundles ([`wait`]),
//! idempotent deletes and label sweeps ([`delete`]), permission checks ([`access`]) and
//! byte streams to a pod's port ([`tunnel`]).
//!
//! Every API failure is mapped once, by [`Cluster::error`], into an [`Error`] that says what
//! to do: a 403 names the verb, resource and namespace the user's role lacks; a 401 says to
//! log in again; an unreachable server is named with the kubeconfig context; a 404 on one of
//! the mesh's own resources says the CRDs are not installed.
//!
//! The command logic takes a [`Cluster`] (tests build one over a `tower-test` mock with
//! [`Cluster::new`]); each command's `run` builds one from [`Args`] with [`Cluster::connect`]
//! on a current-thread runtime ([`block_on`]), as `control` does for the debug API.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub mod access;
pub mod apply;
pub mod delete;
pub mod kinds;
pub mod tunnel;
pub mod wait;

pub use kinds::{Kind, Object};

/// The labels every object meshctl installs carries: part-of=mesh, managed-by=meshctl.
pub use crate::manifest::{MANAGED_BY_LABEL, PART_OF_LABEL};
/// The label mesh-control puts on the objects it creates itself (the `mesh-root-cert`
/// ConfigMap in every namespace).
pub const CONTROL_MANAGED_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "mesh-control");
/// The oldest Kubernetes release meshctl installs into (k8s-openapi's floor).
pub const MIN_VERSION: (u32, u32) = (1, 32);
/// How long connecting to the API server may take.
pub const CONNECT_TIMEOUT: Duration = crate::control::CONNECT_TIMEOUT;

/// `--kubeconfig` and `--context`, with kubectl's defaults.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "cluster-access")]
#[command(next_help_heading = "Reaching the cluster")]
pub struct Args {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// A kube client and where it points, for messages.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    server: String,
    context: Option<String>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The API server's version (`GET /version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The major version (1).
    pub major: u32,
    /// The minor version (32; `32+` on some managed clusters reads as 32).
    pub minor: u32,
    /// The full version as the server reports it: `v1.32.2-gke.1297000`.
    pub git_version: String,
}

/// What to check when no client config loads.
pub(crate) const CONFIG_HINT: &str = "check --kubeconfig, KUBECONFIG and --context (no cluster yet? `minikube start` creates one and writes ~/.kube/config)";

/// What went wrong talking to the cluster; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("cannot load the Kubernetes client config: {0}; {hint}", hint = CONFIG_HINT)]
    Config(String),
    /// The API server could not be reached.
    #[error(
        "cannot reach the Kubernetes API server at {server}{} to {action}: {reason}; is the cluster up and is this the right context? (`kubectl cluster-info{}`)",
        in_context(.context),
        context_flag(.context)
    )]
    Unreachable {
        /// The server URL.
        server: String,
        /// The kubeconfig context, when one was used.
        context: Option<String>,
        /// What was attempted.
        action: String,
        /// The cause.
        reason: String,
    },
    /// The credentials were rejected.
    #[error(
        "the Kubernetes API server at {server}{} rejected the credentials ({message}); log in again (the token may have expired) or pick another --context",
        in_context(.context)
    )]
    Unauthorized {
        /// The server URL.
        server: String,
        /// The kubeconfig context, when one was used.
        context: Option<String>,
        /// The server's words.
        message: String,
    },
    /// The user's role lacks a permission.
    #[error(
        "permission denied: {} {target} is not allowed ({message}); ask for a role that grants {} on {resource}{}{}",
        .verb.as_str(),
        .verb.needs(),
        scope(.namespace),
        .verb.hint()
    )]
    Forbidden {
        /// The operation's verb.
        verb: Verb,
        /// What it was done to: `deployments.apps "mesh-control" in namespace mesh-system`.
        target: String,
        /// The resource: `deployments.apps`.
        resource: String,
        /// The namespace (`None`: cluster-scoped).
        namespace: Option<String>,
        /// The API server's words.
        message: String,
    },
    /// Server-side apply found fields owned by another field manager.
    #[error(
        "cannot apply {object}: {} that meshctl sets; rerun with --force-conflicts to take them over, or change the other owner so it stops setting them",
        apply::describe_conflicts(.conflicts)
    )]
    Conflict {
        /// The object: `Deployment mesh-system/mesh-control`.
        object: String,
        /// Who owns what.
        conflicts: Vec<apply::FieldConflict>,
    },
    /// One of the mesh's own resources is not served: its CRD is missing.
    #[error(
        "the cluster does not serve {resource}: the mesh's CRDs are not installed; run `meshctl install`"
    )]
    CrdsMissing {
        /// The resource: `virtualservices.networking.mesh.dev`.
        resource: String,
    },
    /// A kind the manifests use is not served by the cluster.
    #[error("the cluster does not serve {api_version} {kind} ({reason}); is the cluster too old?")]
    UnknownKind {
        /// The apiVersion.
        api_version: String,
        /// The kind.
        kind: String,
        /// The discovery error.
        reason: String,
    },
    /// The rendered manifests are not what meshctl can apply (a meshctl bug).
    #[error("the rendered manifests are invalid: {0}; this is a meshctl bug, please report it")]
    Manifest(String),
    /// Something did not become ready in time, or cannot become ready.
    #[error("{what} {why}{}", .hint.as_deref().map(|h| format!("\n{h}")).unwrap_or_default())]
    NotReady {
        /// What: `deployment mesh-system/mesh-control`.
        what: String,
        /// Why, starting with a verb: `did not roll out within 5m: 0/1 available; …`.
        why: String,
        /// What to look at.
        hint: Option<String>,
    },
    /// Any other answer of the API server.
    #[error("the Kubernetes API server refused to {action}: {code} {reason}: {message}")]
    Api {
        /// What was attempted.
        action: String,
        /// The HTTP status.
        code: u16,
        /// The machine-readable reason: `Invalid`, `InternalError`.
        reason: String,
        /// The server's words.
        message: String,
    },
    /// An answer that could not be read, or another client failure.
    #[error("cannot {action}: {reason}")]
    Other {
        /// What was attempted.
        action: String,
        /// The cause.
        reason: String,
    },
}

fn in_context(context: &Option<String>) -> String {
    context
        .as_deref()
        .map(|c| format!(" (context {c})"))
        .unwrap_or_default()
}

fn context_flag(context: &Option<String>) -> String {
    context
        .as_deref()
        .map(|c| format!(" --context {c}"))
        .unwrap_or_default()
}

fn scope(namespace: &Option<String>) -> String {
    match namespace {
        Some(ns) => format!(" in namespace {ns}"),
        None => " cluster-wide (a ClusterRole)".to_owned(),
    }
}

/// An RBAC verb meshctl uses, for [`Op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `get` one object.
    Get,
    /// `list` objects.
    List,
    /// Server-side apply: a `patch` that may `create`.
    Apply,
    /// `create` (a review).
    Create,
    /// `delete` one object.
    Delete,
}

impl Verb {
    /// The verb of the request, as RBAC names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Apply => "patch",
            Self::Create => "create",
            Self::Delete => "delete",
        }
    }

    /// The RBAC verbs a role needs for the operation.
    pub fn needs(self) -> &'static str {
        match self {
            Self::Apply => "create and patch",
            other => other.as_str(),
        }
    }

    /// More to do when the verb is denied, starting with `; ` (or empty).
    fn hint(self) -> &'static str {
        match self {
            Self::Apply => "; `meshctl precheck` lists every permission install needs",
            _ => "",
        }
    }
}

/// What a request to the API server was doing, for [`Cluster::error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The verb.
    pub verb: Verb,
    /// The resource, kubectl style: `deployments.apps`, `namespaces`.
    pub resource: String,
    /// The object's name (`None` for a list or a create).
    pub name: Option<String>,
    /// The namespace (`None`: cluster-scoped, or across all namespaces for a list).
    pub namespace: Option<String>,
}

impl Op {
    /// An operation on `resource`.
    pub fn new(verb: Verb, resource: impl Into<String>) -> Self {
        Self {
            verb,
            resource: resource.into(),
            name: None,
            namespace: None,
        }
    }

    /// On the object `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// In `namespace` (`None` leaves it cluster-wide).
    pub fn in_namespace(mut self, namespace: Option<&str>) -> Self {
        self.namespace = namespace.map(str::to_owned);
        self
    }

    /// `deployments.apps "mesh-control" in namespace mesh-system`.
    fn target(&self) -> String {
        let mut s = self.resource.clone();
        if let Some(name) = &self.name {
            s.push_str(&format!(" {name:?}"));
        }
        match &self.namespace {
            Some(ns) => s.push_str(&format!(" in namespace {ns}")),
            None if self.verb == Verb::List => s.push_str(" in all namespaces"),
            None => {}
        }
        s
    }

    /// `patch deployments.apps "mesh-control" in namespace mesh-system`.
    fn action(&self) -> String {
        format!("{} {}", self.verb.as_str(), self.target())
    }

    /// Whether the resource is one of the mesh's own (its group is ours).
    fn is_ours(&self) -> bool {
        self.resource.ends_with(".mesh.dev")
    }
}

// === impl Cluster ===

impl Cluster {
    /// A cluster over an existing client (tests pass one over a `tower-test` mock).
    pub fn new(client: kube::Client, server: impl Into<String>, context: Option<String>) -> Self {
        Self {
            client,
            server: server.into(),
            context,
        }
    }

    /// Connects as kubectl would: `--kubeconfig`, else `$KUBECONFIG`, else
    /// `~/.kube/config`, else the in-cluster service account; `--context`, else the
    /// current context. Nothing is sent yet.
    pub async fn connect(args: &Args) -> Result<Self, Error> {
        let (mut config, context) =
            load_config(args.kubeconfig.as_deref(), args.context.as_deref())
                .await
                .map_err(Error::Config)?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| Error::Config(chain(&e)))?;
        Ok(Self {
            client,
            server: server.trim_end_matches('/').to_owned(),
            context,
        })
    }

    /// The kube client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The kubeconfig context (`None` in-cluster).
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// `https://…:6443 (context kind-mesh)`, for messages.
    pub fn describe(&self) -> String {
        format!("{}{}", self.server, in_context(&self.context))
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<ServerVersion, Error> {
        let info = self.client.apiserver_version().await.map_err(|e| {
            self.error_with(e, "get the server version (/version)".to_owned(), None)
        })?;
        ServerVersion::parse(&info.major, &info.minor, &info.git_version).ok_or_else(|| {
            Error::Other {
                action: "read the server version".to_owned(),
                reason: format!(
                    "unexpected version major {:?} minor {:?} ({})",
                    info.major, info.minor, info.git_version
                ),
            }
        })
    }

    /// Maps a failed request, described by `op`, to an [`Error`] that says what to do.
    pub fn error(&self, e: kube::Error, op: &Op) -> Error {
        self.error_with(e, op.action(), Some(op))
    }

    fn error_with(&self, e: kube::Error, action: String, op: Option<&Op>) -> Error {
        match e {
            kube::Error::Api(status) => {
                let message = if status.message.is_empty() {
                    format!("{} {}", status.code, status.reason)
                } else {
                    status.message.clone()
                };
                match (status.code, op) {
                    (401, _) => Error::Unauthorized {
                        server: self.server.clone(),
                        context: self.context.clone(),
                        message,
                    },
                    (403, _) if message.contains("being terminated") => Error::Api {
                        action,
                        code: 403,
                        reason: status.reason.clone(),
                        message: format!(
                            "{message}; wait until the namespace is gone (`kubectl get namespace`) and run meshctl again"
                        ),
                    },
                    (403, Some(op)) => Error::Forbidden {
                        verb: op.verb,
                        target: op.target(),
                        resource: op.resource.clone(),
                        namespace: op.namespace.clone(),
                        message,
                    },
                    // A list, or a 404 that is not an object's NotFound (Go's "404 page
                    // not found" of an unserved group): the CRD is missing.
                    (404, Some(op))
                        if op.is_ours() && (op.name.is_none() || status.reason != "NotFound") =>
                    {
                        Error::CrdsMissing {
                            resource: op.resource.clone(),
                        }
                    }
                    (code, _) => Error::Api {
                        action,
                        code,
                        reason: status.reason.clone(),
                        message,
                    },
                }
            }
            kube::Error::Service(e) => self.unreachable(action, chain(&*e)),
            kube::Error::HyperError(e) => self.unreachable(action, chain(&e)),
            e @ kube::Error::Auth(_) => Error::Unauthorized {
                server: self.server.clone(),
                context: self.context.clone(),
                message: chain(&e),
            },
            e => Error::Other {
                action,
                reason: chain(&e),
            },
        }
    }

    fn unreachable(&self, action: String, reason: String) -> Error {
        Error::Unreachable {
            server: self.server.clone(),
            context: self.context.clone(),
            action,
            reason,
        }
    }
}

/// Whether a request failed with 404 Not Found (the object is gone).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The client config and the context it came from, as kubectl picks them. Errors are
/// described for [`Error::Config`].
pub(crate) async fn load_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(kube::Config, Option<String>), String> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let file = match kubeconfig {
        Some(path) => Some(
            Kubeconfig::read_from(path)
                .map_err(|e| format!("{}: {}", path.display(), chain(&e)))?,
        ),
        None => match Kubeconfig::read() {
            Ok(file) => Some(file),
            // No kubeconfig: in a pod, the service account (as kubectl does).
            Err(e) if context.is_none() => {
                return match kube::Config::incluster() {
                    Ok(config) => Ok((config, None)),
                    Err(_) => Err(chain(&e)),
                };
            }
            Err(e) => return Err(chain(&e)),
        },
    };
    let file = file.expect("a kubeconfig was read or the function returned");
    let used = options
        .context
        .clone()
        .or_else(|| file.current_context.clone());
    let config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(|e| chain(&e))?;
    Ok((config, used))
}

// === impl ServerVersion ===

impl ServerVersion {
    /// Reads `/version`'s `major` and `minor` (`"32+"` counts as 32), falling back to
    /// `gitVersion` (`v1.32.2`).
    pub fn parse(major: &str, minor: &str, git_version: &str) -> Option<Self> {
        let digits = |s: &str| -> Option<u32> {
            let d: String = s.chars().take_while(char::is_ascii_digit).collect();
            d.parse().ok()
        };
        let (major, minor) = match (digits(major), digits(minor)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                let mut parts = git_version.trim_start_matches('v').split('.');
                (digits(parts.next()?)?, digits(parts.next()?)?)
            }
        };
        Some(Self {
            major,
            minor,
            git_version: git_version.to_owned(),
        })
    }

    /// Whether meshctl supports this release ([`MIN_VERSION`] or newer).
    pub fn is_supported(&self) -> bool {
        (self.major, self.minor) >= MIN_VERSION
    }

    /// `v1.32.2`, or `1.32` when the server gave no git version.
    pub fn display(&self) -> String {
        if self.git_version.is_empty() {
            format!("{}.{}", self.major, self.minor)
        } else {
            self.git_version.clone()
        }
    }

    /// Why an unsupported release cannot be used, with what to do.
    pub fn unsupported(&self) -> String {
        format!(
            "Kubernetes {} is older than {}.{}, the oldest release the mesh supports; upgrade the cluster (or use local mode, which needs no cluster)",
            self.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        )
    }
}

// === output ===

/// The mark at the start of a report line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Done, or fine.
    Ok,
    /// Failed.
    Fail,
    /// Fine, with something to know.
    Warn,
    /// In progress.
    Wait,
    /// Nothing to do.
    Skip,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "✔",
            Self::Fail => "✗",
            Self::Warn => "⚠",
            Self::Wait => "…",
            Self::Skip => "-",
        })
    }
}

/// Writes `mark text` as one line and flushes, so progress shows as it happens.
pub fn line(out: &mut dyn Write, mark: Mark, text: impl fmt::Display) -> std::io::Result<()> {
    writeln!(out, "{mark} {text}")?;
    out.flush()
}

/// The lines of a checking command (`precheck`, `check`): each check prints `✔`, `⚠` or
/// `✗` and a sentence; failures and warnings are kept for the exit status and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checklist {
    /// The failed checks, one line each.
    pub failures: Vec<String>,
    /// The warnings, one line each.
    pub warnings: Vec<String>,
}

impl Checklist {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Prints a passed check.
    pub fn ok(&mut self, out: &mut dyn Write, text: impl fmt::Display) -> std::io::Result<()> {
        line(out, Mark::Ok, text)
    }

    /// Prints and records a failed check.
    pub fn fail(&mut self, out: &mut dyn Write, text: impl fmt::Display) -> std::io::Result<()> {
        let text = text.to_string();
        line(out, Mark::Fail, &text)?;
        self.failures.push(text);
        Ok(())
    }

    /// Prints and records a warning.
    pub fn warn(&mut self, out: &mut dyn Write, text: impl fmt::Display) -> std::io::Result<()> {
        let text = text.to_string();
        line(out, Mark::Warn, &text)?;
        self.warnings.push(text);
        Ok(())
    }

    /// The exit status: 1 when a check failed.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.passed() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }
}

// === durations and runtimes ===

/// Parses a duration as kubectl does: `5m`, `90s`, `1m30s`, `1h`, `500ms`, or a number of
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 5m, 90s or 1m30s, got {s:?}");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(bad()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a duration as [`parse_duration`] reads it: `5m`, `1m30s`, `45s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Runs `fut` on a current-thread runtime, as every cluster command does.
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    Ok(rt.block_on(fut))
}

/// An error and its causes, `outer: inner`, without repeating a cause the outer message
/// already contains.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::control::client::chain(e)
}

#[cfg(test)]
mod tests;
