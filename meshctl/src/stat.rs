//! `meshctl stat`: the golden metrics of every meshed workload, as one table.
//!
//! Scrapes the sidecars' Prometheus endpoints (`:15020/metrics`) twice, a `--window`
//! apart, and prints per destination workload what its own sidecar measured
//! (`reporter="destination"`): requests per second, success rate (responses that are not
//! 5xx), p50 and p99 latency from the `mesh_request_duration_milliseconds` histogram, and
//! the share of requests that arrived over mutual TLS. SHARE is the workload's part of its
//! app's requests (`destination_app`): a 90/10 canary shows as 90 % and 10 %, routed by
//! subsets or by Gateway API weights over a Service per version. The proxies come from a
//! running `meshctl demo` (its `demo.json`) or from `--metrics ADDR` flags.
//!
//! The parsing and the arithmetic are pure functions ([`parse`], [`Snapshot`],
//! [`rows`], [`table`]) shared with the demo's live table.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpStream;

use crate::control::client;
use crate::output::Table;

/// The request counter.
pub const REQUESTS: &str = "mesh_requests_total";
/// The request-duration histogram's buckets.
pub const DURATION_BUCKETS: &str = "mesh_request_duration_milliseconds_bucket";

/// Arguments of `meshctl stat`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A proxy's metrics address (`HOST:PORT`, its `/metrics`). Repeatable. Without any,
    /// the proxies of the running `meshctl demo` (its `demo.json` in --state-dir).
    #[arg(long = "metrics", value_name = "HOST:PORT")]
    pub metrics: Vec<SocketAddr>,
    /// The demo's state directory (as given to `meshctl demo`).
    #[arg(long, value_name = "DIR", env = "MESH_DEMO_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long to measure rates over (two scrapes this far apart).
    #[arg(long, default_value = "2s", value_parser = parse_window)]
    pub window: Duration,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    match mesh_api::duration::parse(s) {
        Ok(d) if d >= Duration::from_millis(100) => Ok(d),
        Ok(_) => Err("the window must be at least 100ms".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Scrapes the proxies twice and prints the table; fails when no proxy answered.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let targets: Vec<SocketAddr> = if args.metrics.is_empty() {
        let dir = match &args.state_dir {
            Some(dir) => dir.clone(),
            None => crate::demo::default_state_dir()?,
        };
        let info = crate::demo::Info::read(&dir)?;
        info.proxies.iter().map(|p| p.metrics).collect()
    } else {
        args.metrics.clone()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    let (before, errors) = rt.block_on(scrape_all(&targets));
    if errors.len() == targets.len() {
        for e in &errors {
            writeln!(out, "{e}")?;
        }
        out.flush()?;
        anyhow::bail!(
            "no proxy answered on /metrics: is the demo running (`meshctl demo`), or are the --metrics addresses right?"
        );
    }
    std::thread::sleep(args.window);
    let (after, errors) = rt.block_on(scrape_all(&targets));
    table(&rows(&before, &after, args.window)).write(out)?;
    for e in &errors {
        writeln!(out, "warning: {e}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Scrapes every target: the merged snapshot and one message per target that failed.
pub async fn scrape_all(targets: &[SocketAddr]) -> (Snapshot, Vec<String>) {
    let mut snapshot = Snapshot::default();
    let mut errors = Vec::new();
    for target in targets {
        match scrape(*target).await {
            Ok(text) => snapshot.add(&parse(&text)),
            Err(e) => errors.push(format!("{target}: {e}")),
        }
    }
    (snapshot, errors)
}

/// `GET http://addr/metrics`, within 2 s.
pub async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let res = client::get(tcp, &addr.to_string(), "/metrics").await?;
        if !res.status.is_success() {
            return Err(format!("/metrics answered {}", res.status));
        }
        String::from_utf8(res.body.to_vec()).map_err(|_| "/metrics is not UTF-8".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 2s".to_owned()))
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, with its `_total` / `_bucket` suffix.
    pub name: String,
    /// The labels, in their order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text exposition format (and OpenMetrics' `# EOF`): comments and
/// lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

/// Which workload a row is about: the destination service and workload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The destination service's short name (`destination_service_name`: the service the
    /// client's proxy routed to); the workload's `app` label when the request came from
    /// outside the mesh with an authority that names no service.
    pub service: String,
    /// `destination_workload`.
    pub workload: String,
    /// `destination_app`: the canonical service, whose requests [`Row::share`] divides.
    pub app: String,
}

/// Cumulative counters of one workload, as of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Requests.
    pub requests: f64,
    /// Requests whose response was not a 5xx (nor a missing response, code 0).
    pub successes: f64,
    /// Requests that arrived over mutual TLS.
    pub mutual_tls: f64,
    /// The latency histogram: cumulative count per upper bound in milliseconds, ascending
    /// (the last bound is `+Inf`).
    pub buckets: Vec<(f64, f64)>,
}

/// The counters of every workload seen, merged over the scraped proxies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Per workload.
    pub workloads: BTreeMap<Key, Counters>,
}

impl Snapshot {
    /// Adds one proxy's samples: its `reporter="destination"` request counters and
    /// latency buckets.
    pub fn add(&mut self, samples: &[Sample]) {
        for s in samples {
            if s.label("reporter") != Some("destination") {
                continue;
            }
            let service = s
                .label("destination_service_name")
                .filter(|n| !n.is_empty() && *n != "unknown" && n.parse::<IpAddr>().is_err())
                .or_else(|| s.label("destination_app"))
                .unwrap_or("unknown");
            let key = Key {
                service: service.to_owned(),
                workload: s
                    .label("destination_workload")
                    .unwrap_or("unknown")
                    .to_owned(),
                app: s.label("destination_app").unwrap_or("unknown").to_owned(),
            };
            if s.name == REQUESTS {
                let c = self.workloads.entry(key).or_default();
                c.requests += s.value;
                let code: u16 = s
                    .label("response_code")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                if (1..500).contains(&code) {
                    c.successes += s.value;
                }
                if s.label("connection_security_policy") == Some("mutual_tls") {
                    c.mutual_tls += s.value;
                }
            } else if s.name == DURATION_BUCKETS {
                let Some(le) = s.label("le").and_then(parse_le) else {
                    continue;
                };
                let c = self.workloads.entry(key).or_default();
                match c.buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, count)) => *count += s.value,
                    None => {
                        c.buckets.push((le, s.value));
                        c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    }
                }
            }
        }
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        s => s.parse().ok(),
    }
}

/// One line of the table: a workload's golden metrics over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Which workload.
    pub key: Key,
    /// Requests per second.
    pub rps: f64,
    /// The workload's share of its app's requests (`destination_app`, the canonical
    /// service), 0-100: a canary's split, whether routed by subsets of one Service or by
    /// weights over a Service per version (Gateway API). `None` when the app had no
    /// requests.
    pub share: Option<f64>,
    /// The share of non-5xx responses, 0-100; `None` without requests.
    pub success: Option<f64>,
    /// Median latency in milliseconds; `None` without requests.
    pub p50: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99: Option<f64>,
    /// The share of requests over mutual TLS, 0-100.
    pub mtls: Option<f64>,
}

/// The rows for the window between two snapshots, one per workload seen in `after`.
/// Counters that went down (a restarted proxy) count from zero.
pub fn rows(before: &Snapshot, after: &Snapshot, window: Duration) -> Vec<Row> {
    let secs = window.as_secs_f64().max(f64::EPSILON);
    let empty = Counters::default();
    let mut rows: Vec<Row> = after
        .workloads
        .iter()
        .map(|(key, now)| {
            let then = before.workloads.get(key).unwrap_or(&empty);
            let restarted = now.requests < then.requests;
            let then = if restarted { &empty } else { then };
            let requests = now.requests - then.requests;
            let share = |n: f64, d: f64| (requests > 0.0).then(|| 100.0 * (n - d) / requests);
            let buckets: Vec<(f64, f64)> = now
                .buckets
                .iter()
                .map(|&(le, n)| {
                    let prev = then
                        .buckets
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0.0, |b| b.1);
                    (le, (n - prev).max(0.0))
                })
                .collect();
            Row {
                key: key.clone(),
                rps: requests / secs,
                share: None,
                success: share(now.successes, then.successes),
                p50: quantile(&buckets, 0.5),
                p99: quantile(&buckets, 0.99),
                mtls: share(now.mutual_tls, then.mutual_tls),
            }
        })
        .collect();
    let mut per_app: BTreeMap<String, f64> = BTreeMap::new();
    for row in &rows {
        *per_app.entry(row.key.app.clone()).or_default() += row.rps;
    }
    for row in &mut rows {
        let total = per_app[&row.key.app];
        row.share = (total > 0.0).then(|| 100.0 * row.rps / total);
    }
    rows
}

/// The `q` quantile (0-1) of a cumulative histogram, as Prometheus'
/// `histogram_quantile`: linear within the bucket it falls in (from 0 for the first);
/// the largest finite bound when it falls in `+Inf`. `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// The table of `rows`: SERVICE, WORKLOAD, RPS, SHARE (of the service's requests),
/// SUCCESS, P50, P99, MTLS.
pub fn table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "SERVICE", "WORKLOAD", "RPS", "SHARE", "SUCCESS", "P50", "P99", "MTLS",
    ]);
    let percent = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}%"));
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"));
    for row in rows {
        table.row(vec![
            row.key.service.clone(),
            row.key.workload.clone(),
            format!("{:.2}", row.rps),
            percent(row.share),
            percent(row.success),
            ms(row.p50),
            ms(row.p99),
            percent(row.mtls),
        ]);
    }
    table
}

#[cfg(test)]
mod tests;
