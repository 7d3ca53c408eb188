//! Request handlers of the three servers: routing by path and method, and the endpoints.

use std::{fmt::Write as _, time::SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header, request::Parts};
use http_body_util::Full;
use mesh_api::model::ProxyConfigSpec;
use serde::Serialize;
use serde_json::json;

use super::{AdminState, DRAINING, Readiness, StateInner, query, server::Body};
use crate::telemetry::{self, Rfc3339, metrics::SharedRegistry};

/// One endpoint: its path, methods (`GET` implies `HEAD`) and what it does, for the index
/// and for 404/405 answers.
struct Endpoint {
    path: &'static str,
    methods: &'static [Method],
    help: &'static str,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];

const ADMIN: &[Endpoint] = &[
    Endpoint {
        path: "/",
        methods: GET,
        help: "this list",
    },
    Endpoint {
        path: "/config_dump",
        methods: GET,
        help: "the current config (JSON) with its version and age",
    },
    Endpoint {
        path: "/clusters",
        methods: GET,
        help: "upstream clusters, endpoints and load-balancer state (JSON)",
    },
    Endpoint {
        path: "/logging",
        methods: GET_POST,
        help: "GET: the tracing filter; POST ?level=<trace|debug|info|warn|error|off> or ?filter=<directives>: change it",
    },
    Endpoint {
        path: "/quitquitquit",
        methods: POST,
        help: "POST: shut the proxy down gracefully",
    },
    Endpoint {
        path: "/ready",
        methods: GET,
        help: "200 when ready, else 503 with the reason",
    },
    Endpoint {
        path: "/stats/prometheus",
        methods: GET,
        help: "metrics in the Prometheus/OpenMetrics text format",
    },
];

const METRICS: &[Endpoint] = &[Endpoint {
    path: "/metrics",
    methods: GET,
    help: "metrics in the Prometheus/OpenMetrics text format",
}];

const HEALTH: &[Endpoint] = &[Endpoint {
    path: "/healthz/ready",
    methods: GET,
    help: "200 when ready, else 503 with the reason",
}];

/// The levels `POST /logging?level=` accepts.
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

// === dispatch ===

/// The endpoint `parts` asks for, or the 404/405 answer.
fn route<'a>(table: &'a [Endpoint], parts: &Parts) -> Result<&'a Endpoint, Box<Response<Body>>> {
    let path = parts.uri.path();
    let Some(ep) = table.iter().find(|e| e.path == path) else {
        let mut body = format!("no endpoint {path:?}; the endpoints are:\n");
        write_index(&mut body, table);
        return Err(Box::new(text(StatusCode::NOT_FOUND, body)));
    };
    let m = &parts.method;
    let allowed =
        ep.methods.contains(m) || (m == Method::HEAD && ep.methods.contains(&Method::GET));
    if !allowed {
        return Err(Box::new(method_not_allowed(ep, m)));
    }
    Ok(ep)
}

fn method_not_allowed(ep: &Endpoint, m: &Method) -> Response<Body> {
    let allow = allow_header(ep.methods);
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{m} is not allowed on {}; use {allow}\n", ep.path),
    );
    if let Ok(v) = HeaderValue::from_str(&allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

fn allow_header(methods: &[Method]) -> String {
    let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if methods.contains(&Method::GET) {
        names.push("HEAD");
    }
    names.join(", ")
}

fn write_index(out: &mut String, table: &[Endpoint]) {
    for ep in table {
        let methods: Vec<&str> = ep.methods.iter().map(Method::as_str).collect();
        let _ = writeln!(
            out,
            "  {:<9} {:<18} {}",
            methods.join(","),
            ep.path,
            ep.help
        );
    }
}

// === admin ===

/// The admin server's handler.
pub(super) async fn admin(state: AdminState, parts: Parts) -> Response<Body> {
    let state = state.inner;
    let ep = match route(ADMIN, &parts) {
        Ok(ep) => ep,
        Err(r) => return *r,
    };
    match ep.path {
        "/" => {
            let mut body = String::from("mesh-proxy admin; endpoints:\n");
            write_index(&mut body, ADMIN);
            text(StatusCode::OK, body)
        }
        "/config_dump" => blocking(move || config_dump(&state)).await,
        "/clusters" => {
            let clusters = state.clusters.clone();
            blocking(move || json_response(StatusCode::OK, &clusters())).await
        }
        "/logging" => logging(&state, &parts),
        "/quitquitquit" => {
            tracing::info!("shutdown requested through the admin server");
            state.readiness.set_not_ready(DRAINING);
            state.shutdown.send_replace(true);
            text(StatusCode::OK, "OK\n")
        }
        "/ready" => ready(&state.readiness),
        "/stats/prometheus" => render_metrics(state.registry.clone(), &parts).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The `/config_dump` body. Every field is `null` before the first config, except
/// `control_plane`, which is there whenever the proxy has one.
#[derive(Serialize)]
struct ConfigDump<'a> {
    version: Option<&'a str>,
    received_at: Option<Rfc3339>,
    age_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<serde_json::Value>,
    config: Option<&'a ProxyConfigSpec>,
}

fn config_dump(state: &StateInner) -> Response<Body> {
    let current = (state.config)();
    let age = current.as_ref().map(|(_, at)| at.elapsed());
    let dump = ConfigDump {
        version: current.as_ref().map(|(c, _)| c.version()),
        received_at: age.map(|age| Rfc3339(SystemTime::now() - age)),
        age_seconds: age.map(|age| age.as_secs_f64()),
        control_plane: state.control_plane.get().map(|view| view()),
        identity: state.identity.get().map(|view| view()),
        config: current.as_ref().map(|(c, _)| c.spec()),
    };
    json_response(StatusCode::OK, &dump)
}

fn logging(state: &StateInner, parts: &Parts) -> Response<Body> {
    let Some(log) = &state.log else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "the log filter cannot be read or changed in this process (no log handle)\n",
        );
    };
    let query = parts.uri.query().unwrap_or_default();
    if parts.method != Method::POST {
        if !query.is_empty() {
            return method_not_allowed_for_change(parts.uri.path());
        }
        return match log.current() {
            Ok(filter) => json_response(StatusCode::OK, &json!({ "filter": filter })),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        };
    }
    let filter = match logging_filter(query) {
        Ok(f) => f,
        Err(reason) => return text(StatusCode::BAD_REQUEST, format!("{reason}\n")),
    };
    match log.set(&filter) {
        Ok(filter) => {
            tracing::info!(%filter, "log filter changed through the admin server");
            json_response(StatusCode::OK, &json!({ "filter": filter }))
        }
        Err(e @ telemetry::Error::InvalidFilter { .. }) => {
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// A `GET /logging?…` tries to change the filter: only POST may.
fn method_not_allowed_for_change(path: &str) -> Response<Body> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("changing the log filter needs POST: curl -X POST '{path}?level=debug'\n"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

/// The filter a `POST /logging` query asks for: exactly one of `level=` or `filter=`.
pub(super) fn logging_filter(query: &str) -> Result<String, String> {
    let pairs = query::parse(query).map_err(|e| e.to_string())?;
    let mut wanted = None;
    for (name, value) in pairs {
        let filter = match name.as_str() {
            "level" => {
                let level = value.to_ascii_lowercase();
                if !LEVELS.contains(&level.as_str()) {
                    return Err(format!(
                        "unknown level {value:?}; expected one of {}",
                        LEVELS.join(", ")
                    ));
                }
                level
            }
            "filter" => {
                if value.trim().is_empty() {
                    return Err("empty filter; expected e.g. filter=mesh_proxy=debug,info".into());
                }
                value
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; expected level= or filter="
                ));
            }
        };
        if wanted.replace(filter).is_some() {
            return Err("give exactly one of level= or filter=".into());
        }
    }
    wanted.ok_or_else(|| {
        "nothing to change; use ?level=<trace|debug|info|warn|error|off> or ?filter=<directives>"
            .into()
    })
}

// === metrics and health ===

/// The metrics server's handler.
pub(super) async fn metrics(registry: SharedRegistry, parts: Parts) -> Response<Body> {
    if let Err(r) = route(METRICS, &parts) {
        return *r;
    }
    render_metrics(registry, &parts).await
}

async fn render_metrics(registry: SharedRegistry, parts: &Parts) -> Response<Body> {
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Encoding thousands of series takes a while: keep it off the runtime's workers.
    blocking(move || {
        let (format, body) = registry.render(accept.as_deref());
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        r
    })
    .await
}

/// The health server's handler.
pub(super) async fn health(readiness: Readiness, parts: Parts) -> Response<Body> {
    if let Err(r) = route(HEALTH, &parts) {
        return *r;
    }
    ready(&readiness)
}

fn ready(readiness: &Readiness) -> Response<Body> {
    match readiness.status() {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

// === responses ===

async fn blocking(f: impl FnOnce() -> Response<Body> + Send + 'static) -> Response<Body> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "an admin handler failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {e}\n"),
        ),
    }
}
