//! The debug and metrics HTTP server (port 15014): the documents of [`mesh_api::status`]
//! (`/debug/proxies`, `/debug/config`, `/debug/registry`, `/debug/secrets`, `/debug/ca`),
//! Prometheus `/metrics`, and `/healthz/ready`.
//!
//! `/debug/secrets` shows certificates (public data: subjects, serials, validity), never
//! keys or tokens.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use mesh_api::status::{
    ControlPlaneInfo, ProxyConfigDump, ProxySecretList, ProxyStatusList, RegistryStatus,
};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ca::Ca;
use crate::discovery::clients::{ConnState, unix_ms};
use crate::discovery::{Clients, Generation};
use crate::identity::Secrets;
use crate::metrics::Metrics;

/// What the registry loop reports about its sources.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    /// `local:<dir>` or `kubernetes`.
    pub source: String,
    /// Whether the sources were loaded once.
    pub synced: bool,
    /// Resources in the index.
    pub resources: usize,
    /// When the latest change was published.
    pub last_change_unix_ms: Option<u64>,
    /// The latest rejected change, one line per problem.
    pub rejected: Vec<String>,
    /// Problems that did not stop loading.
    pub warnings: Vec<String>,
}

/// Everything the debug server reads.
#[derive(Debug, Clone)]
pub struct DebugState {
    /// The published generations.
    pub generations: watch::Receiver<Option<Arc<Generation>>>,
    /// Connected proxies.
    pub clients: Clients,
    /// The registry's status.
    pub source: Arc<Mutex<SourceStatus>>,
    /// Metrics.
    pub registry: Arc<Registry>,
    /// The metrics refreshed at scrape time (the CA gauges).
    pub metrics: Arc<Metrics>,
    /// The certificate authority.
    pub ca: Ca,
    /// Certificates issued per proxy.
    pub secrets: Secrets,
}

/// The body type of both HTTP servers (debug, webhook).
pub(crate) type Body = Full<Bytes>;

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())))
        .expect("valid response")
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(bytes) => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .expect("valid response"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}\n"),
        ),
    }
}

impl DebugState {
    fn current(&self) -> Option<Arc<Generation>> {
        self.generations.borrow().clone()
    }

    fn control_plane(&self) -> ControlPlaneInfo {
        let synced = self.source.lock().expect("source status poisoned").synced;
        ControlPlaneInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config_version: self
                .current()
                .map(|g| g.system_version().to_owned())
                .unwrap_or_default(),
            synced,
        }
    }

    fn proxies(&self) -> ProxyStatusList {
        let current = self.current();
        let version = current.as_ref().map(|g| g.system_version());
        ProxyStatusList {
            now_unix_ms: unix_ms(),
            control_plane: self.control_plane(),
            proxies: self
                .clients
                .snapshot()
                .iter()
                .map(|c| c.status(version))
                .collect(),
        }
    }

    fn config(&self, query: &str) -> Response<Body> {
        let Some(wanted) = query_param(query, "proxy") else {
            return text(
                StatusCode::BAD_REQUEST,
                "missing ?proxy=<id | pod.namespace | pod>\n",
            );
        };
        let conns = self.clients.snapshot();
        let matches: Vec<&ConnState> = find_proxy(&conns, &wanted);
        let conn = match matches.as_slice() {
            [one] => *one,
            [] => {
                let known: Vec<String> = conns
                    .iter()
                    .map(|c| format!("{}.{}", c.node.pod_name, c.node.namespace))
                    .collect();
                return text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no connected proxy matches {wanted:?}; connected: {}\n",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|c| c.node.id.as_str()).collect();
                return text(
                    StatusCode::CONFLICT,
                    format!(
                        "{wanted:?} matches {} proxies ({}); name one by id or pod.namespace\n",
                        many.len(),
                        ids.join(", ")
                    ),
                );
            }
        };
        let Some(g) = self.current() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the control plane has not loaded its config sources yet\n",
            );
        };
        let mut config = g.view().proxy_config(&conn.node);
        config.version = g.system_version().to_owned();
        json(&ProxyConfigDump {
            now_unix_ms: unix_ms(),
            proxy: conn.status(Some(g.system_version())),
            config,
        })
    }

    fn registry_status(&self) -> RegistryStatus {
        let source = self.source.lock().expect("source status poisoned").clone();
        let current = self.current();
        RegistryStatus {
            now_unix_ms: unix_ms(),
            source: source.source,
            synced: source.synced,
            config_version: current
                .as_ref()
                .map(|g| g.system_version().to_owned())
                .unwrap_or_default(),
            resources: u32::try_from(source.resources).unwrap_or(u32::MAX),
            last_change_unix_ms: source.last_change_unix_ms,
            rejected: source.rejected,
            warnings: source.warnings,
            index_warnings: current
                .map(|g| {
                    g.view()
                        .warnings()
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn secrets(&self, query: &str) -> Response<Body> {
        let secrets = match query_param(query, "proxy") {
            None => self.secrets.all(),
            Some(wanted) => {
                let found = self.secrets.select(&wanted);
                if found.is_empty() {
                    let known: Vec<String> =
                        self.secrets.all().into_iter().map(|s| s.proxy).collect();
                    return text(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no certificate was issued to a proxy matching {wanted:?}; issued to: {}\n",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
                found
            }
        };
        json(&ProxySecretList {
            now_unix_ms: unix_ms(),
            secrets,
        })
    }

    fn handle(&self, req: &Request<hyper::body::Incoming>) -> Response<Body> {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
        }
        let query = req.uri().query().unwrap_or("");
        match req.uri().path() {
            "/debug/proxies" => json(&self.proxies()),
            "/debug/config" => self.config(query),
            "/debug/registry" => json(&self.registry_status()),
            "/debug/secrets" => self.secrets(query),
            "/debug/ca" => json(&self.ca.status()),
            "/metrics" => {
                let expiry = self
                    .ca
                    .signing_expiry()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                self.metrics.ca_state(expiry, self.ca.bundle().roots.len());
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
                    Ok(()) => Response::builder()
                        .header(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(out)))
                        .expect("valid response"),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                }
            }
            "/healthz/ready" => {
                if self.source.lock().expect("source status poisoned").synced {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: the config sources have not loaded (see /debug/registry)\n",
                    )
                }
            }
            "/version" => text(StatusCode::OK, format!("{}\n", env!("CARGO_PKG_VERSION"))),
            "/" => text(
                StatusCode::OK,
                "mesh-control debug: /debug/proxies /debug/config?proxy=<id|pod.namespace> /debug/registry /debug/secrets[?proxy=...] /debug/ca /metrics /healthz/ready /version\n",
            ),
            other => text(
                StatusCode::NOT_FOUND,
                format!(
                    "{other}: not found; try /debug/proxies, /debug/config?proxy=..., /debug/registry, /debug/secrets, /debug/ca, /metrics\n"
                ),
            ),
        }
    }
}

/// Proxies matching `wanted` (see [`mesh_api::status::select_proxies`]).
fn find_proxy<'a>(conns: &'a [ConnState], wanted: &str) -> Vec<&'a ConnState> {
    mesh_api::status::select_proxies(conns, wanted, |c| {
        (
            c.node.id.as_str(),
            c.node.pod_name.as_str(),
            c.node.namespace.as_str(),
        )
    })
}

/// The percent-decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the debug API on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    state: DebugState,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let (socket, peer): (_, SocketAddr) = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "debug accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let svc = hyper::service::service_fn(move |req| {
            let resp = state.handle(&req);
            async move { Ok::<_, Infallible>(resp) }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(socket), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "debug connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("proxy=sidecar~10.0.0.1~a.default&x=1", "proxy").as_deref(),
            Some("sidecar~10.0.0.1~a.default")
        );
        assert_eq!(query_param("proxy=a%2Eb", "proxy").as_deref(), Some("a.b"));
        assert_eq!(query_param("proxy=a%2", "proxy").as_deref(), Some("a%2"));
        assert_eq!(query_param("x=1", "proxy"), None);
    }
}
