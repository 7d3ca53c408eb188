//! Application probes rewritten through the proxy (Istio's "app probers").
//!
//! The kubelet probes from the node, in plaintext, to the pod's IP; captured, such a probe
//! would reach the proxy's inbound port and be refused under STRICT mTLS. So injection
//! ([`super::inject_pod`]) points each application probe at the proxy's health port
//! instead, `GET :15021/app-health/<container>/<livez|readyz|startupz>`, and hands the
//! original probes to the proxy as JSON [`AppProbes`] in the proxy's `MESH_APP_PROBES`
//! environment variable. The proxy (uid 1337, which the capture rules leave alone) runs the
//! original probe against the application on 127.0.0.1 and answers the kubelet with its
//! result. This module is the one type both sides share: injection writes it, the proxy
//! [parses](AppProbes::parse) it at start.
//!
//! The JSON is an object keyed by the health-port path, each value the original handler
//! (with named ports resolved to numbers) and its timeout:
//!
//! ```json
//! {
//!   "/app-health/web/readyz": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 1},
//!   "/app-health/web/livez": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
//!   "/app-health/grpc/readyz": {"grpc": {"port": 9555, "service": "x"}, "timeoutSeconds": 1}
//! }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The proxy environment variable (and `mesh-proxy run --app-probes`) holding the JSON
/// [`AppProbes`].
pub const APP_PROBES_ENV: &str = "MESH_APP_PROBES";
/// The prefix of the health-port paths of rewritten probes.
pub const APP_HEALTH_PREFIX: &str = "/app-health/";
/// The kubelet's default probe timeout, used when a probe names none.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1;

/// The health-port path of a container's rewritten probe, e.g. `/app-health/web/readyz`.
/// `kind` is `livez`, `readyz` or `startupz`.
pub fn app_health_path(container: &str, kind: &str) -> String {
    format!("{APP_HEALTH_PREFIX}{container}/{kind}")
}

/// The original application probes, keyed by the health-port path the kubelet now probes
/// (`/app-health/<container>/<kind>`). Serialized as a JSON object (see the module
/// documentation); iteration is in path order, so the JSON is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppProbes(BTreeMap<String, AppProbe>);

/// One original probe: what to run against the application, and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "wire::AppProbe", into = "wire::AppProbe")]
pub struct AppProbe {
    /// The check.
    pub handler: Handler,
    /// How long the check may take before it counts as failed (`timeoutSeconds`, at
    /// least 1).
    pub timeout_seconds: u32,
}

/// The check of an [`AppProbe`], run by the proxy against `127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// `httpGet`: success is a status from 200 to 399.
    HttpGet(HttpGet),
    /// `tcpSocket`: success is an accepted connection.
    TcpSocket(TcpSocket),
    /// `grpc`: success is `SERVING` from `grpc.health.v1.Health/Check`.
    Grpc(Grpc),
}

/// An `httpGet` probe, its port resolved to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGet {
    /// The request path (with its query, if any), e.g. `/healthz`.
    pub path: String,
    /// The application's port.
    pub port: u16,
    /// `HTTP` or `HTTPS` (the latter without certificate verification, as the kubelet).
    pub scheme: Scheme,
    /// Request headers, in order (`Host` among them overrides the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// The scheme of an [`HttpGet`] probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 over TLS, the server's certificate not verified.
    #[serde(rename = "HTTPS")]
    Https,
}

/// A header of an [`HttpGet`] probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeader {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A `tcpSocket` probe, its port resolved to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSocket {
    /// The application's port.
    pub port: u16,
}

/// A `grpc` probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grpc {
    /// The application's port.
    pub port: u16,
    /// The service name sent in the `HealthCheckRequest` (`None`: the empty name, the
    /// server's overall health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Why [`AppProbes::parse`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not the JSON of [`AppProbes`].
    #[error(
        "{APP_PROBES_ENV} is not valid JSON app probes: {0}; it is written by sidecar \
         injection: re-inject the pod rather than editing it"
    )]
    Json(String),
    /// A key is not an `/app-health/<container>/<kind>` path.
    #[error(
        "{APP_PROBES_ENV}: the key {0:?} is not a path of the form \
         /app-health/<container>/<kind>; re-inject the pod rather than editing it"
    )]
    Path(String),
}

// === impl AppProbes ===

impl AppProbes {
    /// Parses the JSON of [`APP_PROBES_ENV`]; every key must be an
    /// `/app-health/<container>/<kind>` path.
    pub fn parse(json: &str) -> Result<Self, Error> {
        let probes: Self = serde_json::from_str(json).map_err(|e| Error::Json(e.to_string()))?;
        for path in probes.0.keys() {
            let valid = path.strip_prefix(APP_HEALTH_PREFIX).is_some_and(|rest| {
                let mut parts = rest.split('/');
                matches!(
                    (parts.next(), parts.next(), parts.next()),
                    (Some(c), Some(k), None) if !c.is_empty() && !k.is_empty()
                )
            });
            if !valid {
                return Err(Error::Path(path.clone()));
            }
        }
        Ok(probes)
    }

    /// The JSON form, as [`AppProbes::parse`] reads it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("app probes serialize")
    }

    /// Adds (or replaces) the probe served at `path`.
    pub fn insert(&mut self, path: String, probe: AppProbe) {
        self.0.insert(path, probe);
    }

    /// The probe served at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&AppProbe> {
        self.0.get(path)
    }

    /// The probes, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AppProbe)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many probes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The serde form of [`AppProbe`]: the Kubernetes probe's field names, exactly one handler.
mod wire {
    use super::{Grpc, Handler, HttpGet, TcpSocket};

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct AppProbe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http_get: Option<HttpGet>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tcp_socket: Option<TcpSocket>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grpc: Option<Grpc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_seconds: Option<u32>,
    }

    impl TryFrom<AppProbe> for super::AppProbe {
        type Error = String;

        fn try_from(w: AppProbe) -> Result<Self, String> {
            let handler = match (w.http_get, w.tcp_socket, w.grpc) {
                (Some(h), None, None) => Handler::HttpGet(h),
                (None, Some(t), None) => Handler::TcpSocket(t),
                (None, None, Some(g)) => Handler::Grpc(g),
                _ => {
                    return Err(
                        "a probe needs exactly one of httpGet, tcpSocket and grpc".to_owned()
                    );
                }
            };
            Ok(Self {
                handler,
                timeout_seconds: w
                    .timeout_seconds
                    .unwrap_or(super::DEFAULT_TIMEOUT_SECONDS)
                    .max(1),
            })
        }
    }

    impl From<super::AppProbe> for AppProbe {
        fn from(p: super::AppProbe) -> Self {
            let (mut http_get, mut tcp_socket, mut grpc) = (None, None, None);
            match p.handler {
                Handler::HttpGet(h) => http_get = Some(h),
                Handler::TcpSocket(t) => tcp_socket = Some(t),
                Handler::Grpc(g) => grpc = Some(g),
            }
            Self {
                http_get,
                tcp_socket,
                grpc,
                timeout_seconds: Some(p.timeout_seconds),
            }
        }
    }
}
