//! `meshctl proxy-config <PROXY> [SECTION]`: the config the control plane computed for one
//! proxy (`GET /debug/config?proxy=...`, a [`ProxyConfigDump`] holding a
//! [`ProxyConfigSpec`]), as tables or as the document.
//!
//! Sections, after Istio's `proxy-config`:
//!
//! - `listeners`: one row per service address (VIP, or `-` for a headless or external
//!   service) and port, then the inbound mTLS mode and the authorization policies;
//! - `routes`: one row per route table, then a line per route: its match, where it sends
//!   traffic and with which weights, and markers for timeouts, retries, faults...;
//! - `clusters`: load balancing, subset labels, pool limits, outlier detection, TLS;
//! - `endpoints`: one row per endpoint and service port;
//! - `all` (the default): a header line on the proxy, then every section above;
//! - `secret`: the workload certificate the CA issued to the proxy ([`secret`], from
//!   `GET /debug/secrets`). Not computed config, so not in `all`: ask for it by name.
//!
//! `-o json|yaml` prints the section's part of the spec under its field names
//! (`{"routes": [...]}`), the whole dump for `all`, the `ProxySecret` for `secret`. Exit
//! status: 0; 1 when the control plane knows no such proxy (404) or several (409) (for
//! `secret`: issued no certificate to it, or to several that match); 2 when it gave no
//! usable answer.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use http::StatusCode;
use mesh_api::model::{
    AuthorizationPolicy, Cluster, EndpointSet, HttpAction, HttpMatch, HttpRoute, InboundPolicy,
    ProxyConfigSpec, RouteTable, Service, ServiceKind, StringMatch, TcpRoute, WeightedBackend,
};
use mesh_api::status::ProxyConfigDump;
use serde::Serialize;

use crate::control;
use crate::output::{Format, Table, age_between, serde_name, write_document};
use crate::proxy_status;

pub mod secret;

/// Which part of the config to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Service addresses and ports, inbound mTLS and authorization.
    Listeners,
    /// Route tables and their routes.
    Routes,
    /// Upstream clusters.
    Clusters,
    /// Service endpoints.
    Endpoints,
    /// Every section above (not `secret`).
    #[default]
    All,
    /// The workload certificate and trust bundle the CA issued to the proxy (from
    /// /debug/secrets; not part of `all`).
    Secret,
}

/// Arguments of `meshctl proxy-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The proxy: its id, `pod.namespace`, or a pod name that is unique.
    #[arg(value_name = "PROXY")]
    pub proxy: String,
    /// What to show.
    #[arg(value_enum, default_value_t = Section::All)]
    pub section: Section,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How to reach the control plane.
    #[command(flatten)]
    pub control: control::Args,
}

/// Prints one proxy's config (or, for `secret`, its certificate).
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if args.section == Section::Secret {
        return secret::run(args, out);
    }
    let dump: ProxyConfigDump = match control::get(
        &args.control,
        &control::config_path(&args.proxy),
    ) {
        Ok(dump) => dump,
        Err(control::Error::Status { status, body, .. })
            if status == StatusCode::NOT_FOUND || status == StatusCode::CONFLICT =>
        {
            eprintln!(
                "error: proxy {:?}: {body}\nhint: `meshctl proxy-status` lists the connected proxies",
                args.proxy
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    match args.output {
        Format::Table => out.write_all(render(&dump, args.section).as_bytes())?,
        format => match args.section {
            Section::All => write_document(format, &dump, out)?,
            section => write_document(format, &Part::of(&dump.config, section), out)?,
        },
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A section's part of the spec, under the spec's own field names.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<&'a [Service]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inbound: Option<&'a InboundPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<&'a [AuthorizationPolicy]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<&'a [RouteTable]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clusters: Option<&'a [Cluster]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoints: Option<&'a [EndpointSet]>,
}

impl<'a> Part<'a> {
    fn of(spec: &'a ProxyConfigSpec, section: Section) -> Self {
        match section {
            Section::Listeners => Self {
                services: Some(&spec.services),
                inbound: Some(&spec.inbound),
                authorization: Some(&spec.authorization),
                ..Self::default()
            },
            Section::Routes => Self {
                routes: Some(&spec.routes),
                ..Self::default()
            },
            Section::Clusters => Self {
                clusters: Some(&spec.clusters),
                ..Self::default()
            },
            Section::Endpoints => Self {
                endpoints: Some(&spec.endpoints),
                ..Self::default()
            },
            // `secret` is not in the spec; `run` never asks for its part.
            Section::All | Section::Secret => Self {
                services: Some(&spec.services),
                inbound: Some(&spec.inbound),
                authorization: Some(&spec.authorization),
                routes: Some(&spec.routes),
                clusters: Some(&spec.clusters),
                endpoints: Some(&spec.endpoints),
            },
        }
    }
}

/// The tables of `section`; for `all` (and `secret`, which is not in a config dump: see
/// [`secret::render`]), a header line and every section under a title.
pub fn render(dump: &ProxyConfigDump, section: Section) -> String {
    let spec = &dump.config;
    match section {
        Section::Listeners => listeners(spec),
        Section::Routes => routes(spec),
        Section::Clusters => clusters(spec),
        Section::Endpoints => endpoints(spec),
        Section::All | Section::Secret => {
            let p = &dump.proxy;
            let mut text = format!(
                "proxy {} (id {}), {} {}, {}, config version {}, connected {} ago\n",
                proxy_status::name(p),
                p.id,
                p.mode,
                p.proxy_version,
                p.sync.as_str(),
                if spec.version.is_empty() {
                    "-"
                } else {
                    &spec.version
                },
                age_between(p.connected_unix_ms, dump.now_unix_ms),
            );
            let _ = writeln!(text, "identity {}", spec.identity);
            for (title, body) in [
                ("Listeners", listeners(spec)),
                ("Routes", routes(spec)),
                ("Clusters", clusters(spec)),
                ("Endpoints", endpoints(spec)),
            ] {
                let _ = write!(text, "\n{title}:\n{body}");
            }
            text
        }
    }
}

/// Service addresses and ports, then the inbound policy and the authorization policies.
pub fn listeners(spec: &ProxyConfigSpec) -> String {
    let mut table = Table::new(&["ADDRESS", "SERVICE", "PROTOCOL", "TARGET PORT"]);
    for s in &spec.services {
        let vips: Vec<Option<std::net::IpAddr>> =
            if s.kind == ServiceKind::Headless || s.vips.is_empty() {
                vec![None]
            } else {
                s.vips.iter().copied().map(Some).collect()
            };
        for p in &s.ports {
            for vip in &vips {
                let address = match vip {
                    Some(ip) => SocketAddr::new(*ip, p.port).to_string(),
                    None => format!("-:{}", p.port),
                };
                table.row(vec![
                    address,
                    s.hostname.clone(),
                    serde_name(&p.protocol),
                    p.target_port.to_string(),
                ]);
            }
        }
    }
    let mut text = if table.is_empty() {
        "no services\n".to_owned()
    } else {
        table.render()
    };

    let inbound = &spec.inbound;
    let _ = writeln!(text, "\ninbound mTLS: {}", serde_name(&inbound.mode));
    for (port, mode) in &inbound.port_overrides {
        let _ = writeln!(text, "  port {port}: {}", serde_name(mode));
    }
    match spec.authorization.len() {
        0 => text.push_str("authorization: no policies (all allowed)\n"),
        n => {
            let _ = writeln!(
                text,
                "authorization: {n} {}",
                plural(n, "policy", "policies")
            );
            for p in &spec.authorization {
                let _ = writeln!(
                    text,
                    "  {}: {}, {} {}",
                    p.resource_name(),
                    serde_name(&p.action).to_ascii_uppercase(),
                    p.rules.len(),
                    plural(p.rules.len(), "rule", "rules")
                );
            }
        }
    }
    text
}

/// A row per route table, with a line per route under it.
pub fn routes(spec: &ProxyConfigSpec) -> String {
    if spec.routes.is_empty() {
        return "no route tables\n".to_owned();
    }
    let mut table = Table::new(&["NAME", "HOSTS", "PORT", "ROUTES"]);
    for rt in &spec.routes {
        let hosts = match rt.hostnames.len() {
            0..=2 => rt.hostnames.join(", "),
            n => format!("{} +{}", rt.hostnames[..2].join(", "), n - 2),
        };
        table.row(vec![
            rt.name.clone(),
            hosts,
            rt.port.to_string(),
            (rt.http.len() + rt.tcp.len()).to_string(),
        ]);
        for (i, r) in rt.http.iter().enumerate() {
            table.detail(http_route_line(i, r));
        }
        for (i, r) in rt.tcp.iter().enumerate() {
            table.detail(tcp_route_line(i, r));
        }
    }
    table.render()
}

/// `  jason: path^=/api header[end-user]=jason → outbound|9080|v2|reviews... [timeout=2s]`
fn http_route_line(i: usize, r: &HttpRoute) -> String {
    let label = if r.name.is_empty() {
        format!("http[{i}]")
    } else {
        r.name.clone()
    };
    let matches = if r.matches.is_empty() {
        "*".to_owned()
    } else {
        r.matches
            .iter()
            .map(http_match)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let action = match &r.action {
        HttpAction::Forward(f) => {
            let mut s = backends(&f.backends);
            let mut marks = Vec::new();
            if let Some(t) = f.timeout {
                marks.push(format!("timeout={}", mesh_api::duration::format(t)));
            }
            if let Some(retry) = &f.retry {
                let mut m = format!("retries={}", retry.attempts);
                if let Some(t) = retry.per_try_timeout {
                    let _ = write!(m, " per-try={}", mesh_api::duration::format(t));
                }
                marks.push(m);
            }
            if f.fault.is_some() {
                marks.push("fault".to_owned());
            }
            for m in &f.mirrors {
                marks.push(format!("mirror={} {}%", m.cluster, m.percentage.get()));
            }
            if f.rewrite.is_some() {
                marks.push("rewrite".to_owned());
            }
            if !f.request_headers.is_empty() || !f.response_headers.is_empty() {
                marks.push("headers".to_owned());
            }
            if !marks.is_empty() {
                let _ = write!(s, " [{}]", marks.join(" "));
            }
            s
        }
        HttpAction::Redirect(r) => {
            let mut to = String::new();
            if let Some(scheme) = &r.scheme {
                let _ = write!(to, "{scheme}://");
            }
            if let Some(a) = &r.authority {
                to.push_str(a);
            } else if r.scheme.is_some() || r.port.is_some() {
                to.push_str("<host>");
            }
            if let Some(port) = r.port {
                let _ = write!(to, ":{port}");
            }
            to.push_str(
                r.path
                    .as_deref()
                    .unwrap_or(if to.is_empty() { "<same>" } else { "" }),
            );
            format!("redirect {} to {to}", r.status)
        }
        HttpAction::DirectResponse(d) => format!("respond {}", d.status),
    };
    format!("  {label}: {matches} → {action}")
}

/// `path^=/api method=GET header[x-user]=jason !header[x-skip] query[debug]`, all of which
/// must hold.
fn http_match(m: &HttpMatch) -> String {
    let mut parts = Vec::new();
    let mut string = |name: &str, sm: &Option<StringMatch>| {
        if let Some(sm) = sm {
            parts.push(string_match(name, sm));
        }
    };
    string("path", &m.uri);
    string("method", &m.method);
    string("authority", &m.authority);
    string("scheme", &m.scheme);
    for h in &m.headers {
        parts.push(optional_match(&format!("header[{}]", h.name), &h.value));
    }
    for h in &m.without_headers {
        parts.push(format!(
            "!{}",
            optional_match(&format!("header[{}]", h.name), &h.value)
        ));
    }
    for q in &m.query_params {
        parts.push(optional_match(&format!("query[{}]", q.name), &q.value));
    }
    if !m.source_labels.is_empty() {
        parts.push(format!("source-labels[{}]", labels(&m.source_labels)));
    }
    if let Some(ns) = &m.source_namespace {
        parts.push(format!("source-namespace={ns}"));
    }
    if parts.is_empty() {
        "*".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `name=v` (exact), `name^=v` (prefix), `name~=v` (regex).
fn string_match(name: &str, m: &StringMatch) -> String {
    match m {
        StringMatch::Exact(v) => format!("{name}={v}"),
        StringMatch::Prefix(v) => format!("{name}^={v}"),
        StringMatch::Regex(p) => format!("{name}~={p}"),
    }
}

fn optional_match(name: &str, m: &Option<StringMatch>) -> String {
    match m {
        Some(m) => string_match(name, m),
        None => name.to_owned(),
    }
}

/// `  tcp[0]: * → outbound|3306||mysql.default.svc.cluster.local`
fn tcp_route_line(i: usize, r: &TcpRoute) -> String {
    let label = if r.name.is_empty() {
        format!("tcp[{i}]")
    } else {
        r.name.clone()
    };
    let matches = if r.matches.is_empty() {
        "*".to_owned()
    } else {
        r.matches
            .iter()
            .map(|m| {
                let mut parts = Vec::new();
                if !m.sni_hosts.is_empty() {
                    parts.push(format!("sni={}", m.sni_hosts.join(",")));
                }
                if !m.source_labels.is_empty() {
                    parts.push(format!("source-labels[{}]", labels(&m.source_labels)));
                }
                if parts.is_empty() {
                    "*".to_owned()
                } else {
                    parts.join(" ")
                }
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    format!("  {label}: {matches} → {}", backends(&r.backends))
}

/// The backends with their share of traffic (`90%`); a single backend without it.
fn backends(backends: &[WeightedBackend]) -> String {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if backends.len() == 1 {
        return backends[0].cluster.to_string();
    }
    backends
        .iter()
        .map(|b| {
            let share = if total == 0 {
                0.0
            } else {
                f64::from(b.weight) * 100.0 / total as f64
            };
            format!("{} {}", b.cluster, percent(share))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `90%`, `33.3%`.
fn percent(share: f64) -> String {
    let rounded = (share * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}%")
    } else {
        format!("{rounded:.1}%")
    }
}

/// A row per cluster.
pub fn clusters(spec: &ProxyConfigSpec) -> String {
    if spec.clusters.is_empty() {
        return "no clusters\n".to_owned();
    }
    let mut table = Table::new(&["NAME", "LB", "SUBSET", "POOL", "OUTLIER", "TLS"]);
    for c in &spec.clusters {
        let pool = &c.connection_pool;
        let limits: Vec<String> = [
            ("connections", pool.max_connections),
            ("pending", pool.max_pending),
            ("requests", pool.max_requests),
            ("requests/conn", pool.max_requests_per_connection),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| format!("{name}={v}")))
        .collect();
        table.row(vec![
            c.key.to_string(),
            serde_name(&c.load_balancer),
            if c.subset_labels.is_empty() {
                "-".to_owned()
            } else {
                labels(&c.subset_labels)
            },
            if limits.is_empty() {
                "unlimited".to_owned()
            } else {
                limits.join(" ")
            },
            if c.outlier_detection.is_some() {
                "on"
            } else {
                "off"
            }
            .to_owned(),
            serde_name(&c.tls),
        ]);
    }
    table.render()
}

/// A row per endpoint and service port (the endpoint's own target port).
pub fn endpoints(spec: &ProxyConfigSpec) -> String {
    let mut table = Table::new(&["ENDPOINT", "HEALTH", "WORKLOAD", "SERVICE", "IN MESH"]);
    for set in &spec.endpoints {
        let ports: Vec<(u16, u16)> = spec
            .services
            .iter()
            .find(|s| s.hostname == set.hostname)
            .map(|s| s.ports.iter().map(|p| (p.port, p.target_port)).collect())
            .unwrap_or_default();
        for ep in &set.endpoints {
            let w = &ep.workload;
            let row = |endpoint: String, service: String| {
                vec![
                    endpoint,
                    serde_name(&w.health),
                    format!("{}/{}", w.namespace, w.name),
                    service,
                    if w.in_mesh { "yes" } else { "no" }.to_owned(),
                ]
            };
            if ports.is_empty() {
                // Endpoints of a service this proxy does not know: no port to show.
                table.row(row(w.address.to_string(), set.hostname.clone()));
            }
            for &(port, target) in &ports {
                let addr = SocketAddr::new(w.address, ep.target_port(port, target));
                table.row(row(addr.to_string(), format!("{}:{port}", set.hostname)));
            }
        }
    }
    if table.is_empty() {
        "no endpoints\n".to_owned()
    } else {
        table.render()
    }
}

fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests;
