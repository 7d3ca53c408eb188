//! The sidecar's metrics as Prometheus sees them: after an HTTP/1.1 canary run, `promtool
//! check metrics` lints the client sidecar's `/metrics`, and a real Prometheus in the client
//! pod scrapes it (port 15020) every second; its query API must show the 90/10 split with
//! exactly the counts curl observed.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    CURL_TOOL, PROMETHEUS_TOOL, PROMTOOL_TOOL, http_get, query_escape, run_bounded_with_input,
    wait_until,
};
use crate::http::{Canary, REQUESTS, assert_canary_share};

/// The one lint promtool may report: Istio's metric name, which the spec requires, is not in
/// base units.
const TOLERATED_LINT: &str =
    r#"mesh_request_duration_milliseconds use base unit "seconds" instead of "milliseconds""#;

/// Where Prometheus listens, inside the client pod.
const PROMETHEUS: ([u8; 4], u16) = ([127, 0, 0, 1], 9090);

#[test]
fn prometheus_scrapes_the_canary_split() {
    let Some(mut canary) = Canary::start(&[CURL_TOOL, PROMETHEUS_TOOL, PROMTOOL_TOOL]) else {
        return;
    };
    let transfers = canary.run_http1();
    let v2 = assert_canary_share(&transfers);

    // promtool: the exposition parses and lints clean but for the tolerated name.
    let metrics = canary.mesh.metrics("client");
    let lint = run_bounded_with_input(
        Command::new("/usr/bin/promtool").args(["check", "metrics"]),
        metrics.as_bytes(),
        Duration::from_secs(30),
        "promtool check metrics",
    );
    let problems: Vec<&str> = lint
        .stdout
        .lines()
        .chain(lint.stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let unexpected: Vec<&&str> = problems.iter().filter(|l| **l != TOLERATED_LINT).collect();
    assert!(
        unexpected.is_empty(),
        "promtool check metrics: {}\n{metrics}",
        lint.text()
    );
    // Exit 0 when clean, 3 when it found only lint problems (1 would be a parse error).
    let expected_code = if problems.is_empty() { 0 } else { 3 };
    assert_eq!(lint.code, Some(expected_code), "{}", lint.text());

    // A real Prometheus in the client pod, scraping the sidecar every second.
    let prom_dir = canary.mesh.subdir("prometheus", 0o755);
    let data = canary.mesh.subdir("prometheus/data", 0o755);
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: mesh-sidecar\n    static_configs:\n      \
         - targets: ['127.0.0.1:15020']\n",
    )
    .expect("write the Prometheus config");
    let listen = SocketAddr::from(PROMETHEUS);
    // Root in the pod (it writes its data directory); its scrapes go to localhost and are
    // never captured.
    canary.mesh.spawn_app_as(
        "client",
        0,
        "/usr/bin/prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            &format!("--web.listen-address={listen}"),
            "--log.level=warn",
        ],
    );
    let pod = canary.mesh.pod("client").clone();
    wait_until(
        "Prometheus to be ready",
        Duration::from_secs(60),
        || match http_get(&pod, listen, "/-/ready")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        },
    );

    let query = r#"sum by (destination_version) (mesh_requests_total{reporter="source"})"#;
    let path = format!("/api/v1/query?query={}", query_escape(query));
    let by_version = wait_until(
        "a scrape with every canary request",
        Duration::from_secs(60),
        || {
            let (status, body) = http_get(&pod, listen, &path)?;
            if status != 200 {
                return Err(format!("{status} {body}"));
            }
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            let mut counts = std::collections::BTreeMap::new();
            for r in v["data"]["result"].as_array().into_iter().flatten() {
                let version = r["metric"]["destination_version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let value: f64 = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad sample in {body}"))?;
                counts.insert(version, value);
            }
            let total: f64 = counts.values().sum();
            if total < REQUESTS as f64 {
                return Err(format!("not scraped yet: {body}"));
            }
            Ok(counts)
        },
    );
    // Exactly what curl saw: 2000 requests, v2's share as counted from the responses.
    assert_eq!(by_version.len(), 2, "{by_version:?}");
    assert_eq!(
        by_version.get("v2").copied(),
        Some(v2 as f64),
        "{by_version:?}"
    );
    assert_eq!(
        by_version.get("v1").copied(),
        Some((REQUESTS - v2) as f64),
        "{by_version:?}"
    );
}
