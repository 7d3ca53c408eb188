//! Reaching the control plane's debug API (`mesh-control`, port 15014; the documents are
//! `mesh_api::status`).
//!
//! Two ways there, chosen by [`Args`] (flattened into each command that needs them):
//!
//! - local mode (the default): a plain HTTP/1.1 GET to `--control-plane HOST:PORT`
//!   (`MESH_CONTROL_DEBUG_ADDR`, default `127.0.0.1:15014`);
//! - `--kubernetes`: find a Ready `app=mesh-control` pod in the control-plane namespace and
//!   send the same GET through a port-forward ([`kubernetes`]).
//!
//! Either way: a current-thread runtime, 3 s to connect, 10 s for the whole exchange, and
//! errors ([`Error`]) that name the cause and what to do about it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use mesh_api::status::DEFAULT_DEBUG_ADDR;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout_at};

pub(crate) mod client;
pub mod kubernetes;

/// The control plane's debug port.
pub const DEBUG_PORT: u16 = 15014;
/// How long connecting may take (TCP in local mode; to the API server on Kubernetes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the whole exchange may take.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the control plane.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "control-plane-access")]
#[command(next_help_heading = "Reaching the control plane")]
pub struct Args {
    /// The control plane's debug address in local mode.
    #[arg(
        long = "control-plane",
        value_name = "HOST:PORT",
        env = "MESH_CONTROL_DEBUG_ADDR",
        default_value = DEFAULT_DEBUG_ADDR,
        value_parser = parse_addr,
    )]
    pub addr: String,
    /// Reach the control plane on Kubernetes: port-forward to a Ready `app=mesh-control`
    /// pod (uses the kubeconfig as kubectl does).
    #[arg(long)]
    pub kubernetes: bool,
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "PATH", requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    pub context: Option<String>,
    /// The control plane's namespace (with --kubernetes).
    #[arg(
        short = 'n',
        long = "control-plane-namespace",
        value_name = "NAMESPACE",
        default_value = "mesh-system"
    )]
    pub namespace: String,
}

/// Checks a `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
fn parse_addr(s: &str) -> Result<String, String> {
    let bad = |why: &str| format!("expected HOST:PORT such as {DEFAULT_DEBUG_ADDR}, {why}");
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("got no port"))?;
    if host.is_empty() {
        return Err(bad("got no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad("with IPv6 addresses in brackets: [::1]:15014"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(s.to_owned()),
        _ => Err(bad(&format!("got port {port:?}"))),
    }
}

/// Where the answer came from (or was expected from), for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A `HOST:PORT` in local mode.
    Local(String),
    /// A pod found on Kubernetes (`pod` is `None` until one was picked).
    Pod {
        /// The control-plane namespace.
        namespace: String,
        /// The pod's name.
        pod: Option<String>,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(addr) => f.write_str(addr),
            Self::Pod {
                namespace,
                pod: Some(pod),
            } => write!(f, "pod {namespace}/{pod} (port-forward to {DEBUG_PORT})"),
            Self::Pod {
                namespace,
                pod: None,
            } => write!(f, "namespace {namespace}"),
        }
    }
}

impl Location {
    /// What to check when the thing there does not speak the debug API.
    fn hint(&self) -> String {
        match self {
            Self::Local(addr) => format!(
                "; is {addr} the debug address of mesh-control (port {DEBUG_PORT}, plain HTTP)?"
            ),
            Self::Pod { .. } => String::new(),
        }
    }
}

/// Why the debug API gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection in local mode.
    #[error(
        "cannot reach the control plane at {addr}: {reason}. Is mesh-control running? In local mode start it with `mesh-control --config-dir DIR`; on Kubernetes use --kubernetes."
    )]
    Unreachable {
        /// The address tried.
        addr: String,
        /// `connection refused`, `no connection within 3s`...
        reason: String,
    },
    /// No complete answer in time.
    #[error("no answer from the control plane at {at} to GET {path} within {}s{}", TOTAL_TIMEOUT.as_secs(), .at.hint())]
    Timeout {
        /// Where.
        at: Location,
        /// The request's path and query.
        path: String,
    },
    /// The connection broke, or what came back was not HTTP.
    #[error("GET {path} from the control plane at {at} failed: {reason}{}", .at.hint())]
    Broken {
        /// Where.
        at: Location,
        /// The request's path and query.
        path: String,
        /// The cause.
        reason: String,
    },
    /// An HTTP error status (the control plane's plain-text reason is in `body`).
    #[error("the control plane at {at} answered GET {path} with {status}: {body}")]
    Status {
        /// Where.
        at: Location,
        /// The request's path and query.
        path: String,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The answer was not JSON.
    #[error("the control plane at {at} answered GET {path} with something that is not JSON ({what}){}", .at.hint())]
    NotJson {
        /// Where.
        at: Location,
        /// The request's path and query.
        path: String,
        /// The content type and the start of the body.
        what: String,
    },
    /// JSON, but not the expected document.
    #[error(
        "cannot read the control plane's answer to GET {path}: {reason}; meshctl {} may not match mesh-control's version (see `meshctl proxy-status -o json`)",
        crate::version::VERSION
    )]
    Decode {
        /// The request's path and query.
        path: String,
        /// serde's words, with line and column.
        reason: String,
    },
    /// Finding or reaching the pod on Kubernetes failed.
    #[error(transparent)]
    Kubernetes(#[from] kubernetes::Error),
    /// The I/O runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(String),
}

impl Error {
    /// The HTTP status, when the control plane answered with an error status.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET path_and_query` and parse the JSON answer as `T`.
pub fn get<T: DeserializeOwned>(args: &Args, path_and_query: &str) -> Result<T, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let (at, res) = rt.block_on(fetch(args, path_and_query))?;
    decode(at, path_and_query, res)
}

/// `GET path_and_query` over a stream already open to the debug port (a port-forward
/// `check` opened) and parse the JSON answer as `T`; `at` names the far end in errors. The
/// whole exchange must finish within [`TOTAL_TIMEOUT`].
pub(crate) async fn get_over<T: DeserializeOwned>(
    stream: impl kubernetes::Stream,
    at: Location,
    path_and_query: &str,
) -> Result<T, Error> {
    let authority = format!("localhost:{DEBUG_PORT}");
    let res = tokio::time::timeout(
        TOTAL_TIMEOUT,
        client::get(stream, &authority, path_and_query),
    )
    .await
    .map_err(|_| Error::Timeout {
        at: at.clone(),
        path: path_and_query.to_owned(),
    })?
    .map_err(|reason| Error::Broken {
        at: at.clone(),
        path: path_and_query.to_owned(),
        reason,
    })?;
    decode(at, path_and_query, res)
}

/// The path of `GET /debug/config` for `proxy` (an id, `pod.namespace` or pod name).
pub fn config_path(proxy: &str) -> String {
    format!("/debug/config?proxy={}", client::encode_query_value(proxy))
}

/// The path of `GET /debug/secrets` for `proxy` (an id, `pod.namespace` or pod name).
pub fn secrets_path(proxy: &str) -> String {
    format!("/debug/secrets?proxy={}", client::encode_query_value(proxy))
}

async fn fetch(args: &Args, path: &str) -> Result<(Location, client::Response), Error> {
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    if args.kubernetes {
        let target = kubernetes::Target {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            namespace: args.namespace.clone(),
        };
        let mut at = Location::Pod {
            namespace: target.namespace.clone(),
            pod: None,
        };
        let res = timeout_at(deadline, fetch_kubernetes(&target, path, &mut at)).await;
        let res = res.map_err(|_| Error::Timeout {
            at: at.clone(),
            path: path.to_owned(),
        })??;
        return Ok((at, res));
    }

    let addr = args.addr.as_str();
    let at = Location::Local(addr.to_owned());
    let unreachable = |reason: String| Error::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| unreachable(describe_io(&e)))?;
    let _ = stream.set_nodelay(true);
    let res = timeout_at(deadline, client::get(stream, addr, path))
        .await
        .map_err(|_| Error::Timeout {
            at: at.clone(),
            path: path.to_owned(),
        })?
        .map_err(|reason| Error::Broken {
            at: at.clone(),
            path: path.to_owned(),
            reason,
        })?;
    Ok((at, res))
}

async fn fetch_kubernetes(
    target: &kubernetes::Target,
    path: &str,
    at: &mut Location,
) -> Result<client::Response, Error> {
    let client = target.client().await?;
    let pod = kubernetes::find_pod(&client, &target.namespace).await?;
    *at = Location::Pod {
        namespace: target.namespace.clone(),
        pod: Some(pod.clone()),
    };
    let (mut forward, stream) =
        kubernetes::port_forward(&client, &target.namespace, &pod, DEBUG_PORT).await?;
    let authority = format!("localhost:{DEBUG_PORT}");
    forward
        .guard(client::get(stream, &authority, path))
        .await?
        .map_err(|reason| Error::Broken {
            at: at.clone(),
            path: path.to_owned(),
            reason,
        })
}

fn decode<T: DeserializeOwned>(
    at: Location,
    path: &str,
    res: client::Response,
) -> Result<T, Error> {
    if !res.status.is_success() {
        return Err(Error::Status {
            at,
            path: path.to_owned(),
            status: res.status,
            body: excerpt(&res.body, 400),
        });
    }
    let not_json = |why: String| Error::NotJson {
        at: at.clone(),
        path: path.to_owned(),
        what: format!(
            "content-type {}, {why}: {:?}",
            res.content_type.as_deref().unwrap_or("not given"),
            excerpt(&res.body, 80)
        ),
    };
    let first = res.body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        return Err(not_json("starting".to_owned()));
    }
    serde_json::from_slice(&res.body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        _ => not_json(e.to_string()),
    })
}

/// The start of a body as text, trimmed, at most `max` characters (`…` when cut).
fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Lower-case words for the usual connect failures.
fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".to_owned(),
        TimedOut => "connection timed out".to_owned(),
        HostUnreachable => "host unreachable".to_owned(),
        NetworkUnreachable => "network unreachable".to_owned(),
        AddrNotAvailable => "address not available".to_owned(),
        ConnectionReset => "connection reset".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests;
