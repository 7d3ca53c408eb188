//! Opaque TCP through both sidecars: redis-cli in pod `client` talks to redis-server in pod
//! `server` through the `redis` VIP (port 6379: opaque by declaration and by the proxy's
//! server-first port list), and a server-first banner protocol on a port with no declared
//! protocol gets its banner promptly: the client sidecar's sniff gives up after 100 ms and
//! forwards the connection as opaque TCP instead of waiting for the client to speak. The
//! same holds for the server sidecar's inbound capture, and a client's half-close travels
//! through the tunnel between the sidecars.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mesh_api::model::AppProtocol;
use serde_json::Value;

use crate::config::{self, Topology};
use crate::harness::{
    self, Mesh, Output, PYTHON, PYTHON_TOOL, REDIS_CLI_TOOL, REDIS_SERVER_TOOL, metric_sum,
    run_bounded, run_bounded_with_input,
};

/// The `redis` service VIP.
const REDIS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
const REDIS_PORT: u16 = 6379;
/// The `banner` service VIP.
const BANNER_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 31);
/// Not a well-known server-first port: only the sniff timeout keeps the banner flowing.
const BANNER_PORT: u16 = 7025;
/// Banner connections.
const BANNER_ATTEMPTS: usize = 5;

/// Pods `client` and `server` with sidecars and both services; redis-server or the banner
/// server running in `server`.
fn start(redis: bool) -> Option<Mesh> {
    let tools = if redis {
        &[REDIS_SERVER_TOOL, REDIS_CLI_TOOL][..]
    } else {
        &[PYTHON_TOOL][..]
    };
    let mut mesh = Mesh::new(&["client", "server"], tools)?;
    let client = config::workload(mesh.pod("client"), "worker", "v1");
    let server = config::workload(mesh.pod("server"), "store", "v1");
    let topology = Topology {
        services: vec![
            config::service("redis", REDIS_VIP, REDIS_PORT, REDIS_PORT, AppProtocol::Tcp),
            config::service(
                "banner",
                BANNER_VIP,
                BANNER_PORT,
                BANNER_PORT,
                AppProtocol::Unknown,
            ),
        ],
        endpoints: vec![
            config::endpoints("redis", &[&server]),
            config::endpoints("banner", &[&server]),
        ],
        routes: Vec::new(),
        clusters: vec![
            config::cluster("redis", REDIS_PORT),
            config::cluster("banner", BANNER_PORT),
        ],
    };
    for w in [&client, &server] {
        mesh.sidecar(w, &topology);
    }
    if redis {
        let redis_dir = mesh.subdir("redis", 0o777);
        mesh.spawn_app(
            "server",
            "/usr/bin/redis-server",
            &[
                "--port",
                &REDIS_PORT.to_string(),
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                redis_dir.to_str().expect("a UTF-8 path"),
            ],
        );
        mesh.wait_for_listener("server", SocketAddr::from(([127, 0, 0, 1], REDIS_PORT)));
    } else {
        let banner = harness::fixtures().join("banner_server.py");
        mesh.spawn_app(
            "server",
            PYTHON,
            &[
                banner.to_str().expect("a UTF-8 path"),
                "0.0.0.0",
                &BANNER_PORT.to_string(),
                "180",
            ],
        );
        mesh.wait_for_listener("server", SocketAddr::from(([127, 0, 0, 1], BANNER_PORT)));
    }
    Some(mesh)
}

#[test]
fn redis_through_both_sidecars() {
    let Some(mesh) = start(true) else {
        return;
    };
    // A few commands, each its own connection, and a value bigger than any buffer.
    assert_eq!(redis(&mesh, &["PING"], b"").stdout.trim(), "PONG");
    assert_eq!(
        redis(&mesh, &["SET", "greeting", "hello through the mesh"], b"")
            .stdout
            .trim(),
        "OK"
    );
    assert_eq!(
        redis(&mesh, &["GET", "greeting"], b"").stdout.trim(),
        "hello through the mesh"
    );
    let big: String = (0..256 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(
        redis(&mesh, &["-x", "SET", "big"], big.as_bytes())
            .stdout
            .trim(),
        "OK"
    );
    let got = redis(&mesh, &["GET", "big"], b"");
    assert!(got.stdout.trim() == big, "GET big came back different");

    // Both sidecars counted five TCP connections (and no HTTP request).
    let client_metrics = mesh.metrics("client");
    let opened = metric_sum(
        &client_metrics,
        "mesh_tcp_connections_opened_total",
        &[
            ("reporter", "source"),
            ("destination_service", &config::hostname("redis")),
        ],
    );
    assert_eq!(opened, 5.0, "{client_metrics}");
    let requests = metric_sum(&client_metrics, "mesh_requests_total", &[]);
    assert_eq!(requests, 0.0, "{client_metrics}");
    let server_metrics = mesh.metrics("server");
    let inbound = metric_sum(
        &server_metrics,
        "mesh_tcp_connections_opened_total",
        &[
            ("reporter", "destination"),
            ("destination_service", &config::hostname("redis")),
            ("connection_security_policy", "mutual_tls"),
        ],
    );
    assert_eq!(inbound, 5.0, "{server_metrics}");
}

#[test]
fn server_first_banner_is_not_held_by_the_sniffer() {
    let Some(mesh) = start(false) else {
        return;
    };
    // Through the VIP: the client sidecar sniffs (nothing comes), tunnels to the server's
    // sidecar, which calls the app on localhost.
    let via_vip = banners(&mesh, BANNER_VIP, BANNER_ATTEMPTS, false);
    for r in &via_vip {
        assert_eq!(r["bye"], "221 bye", "{r}");
    }
    assert_prompt(&via_vip);
    // A half-close travels through both sidecars, and the answers still come back.
    for r in banners(&mesh, BANNER_VIP, 2, true) {
        assert_eq!(r["rest"], "250 PING\r\n299 eof\r\n", "{r}");
    }
    // The server pod's address (no service has it): the client sidecar passes it through
    // and the server's inbound capture sniffs it — again without waiting for the client.
    let direct = banners(&mesh, mesh.pod("server").ip(), 3, false);
    assert_prompt(&direct);

    let client_metrics = mesh.metrics("client");
    let opened = metric_sum(
        &client_metrics,
        "mesh_tcp_connections_opened_total",
        &[
            ("reporter", "source"),
            ("destination_service", &config::hostname("banner")),
        ],
    );
    assert_eq!(opened, (BANNER_ATTEMPTS + 2) as f64, "{client_metrics}");
    let server_metrics = mesh.metrics("server");
    let inbound = metric_sum(
        &server_metrics,
        "mesh_tcp_connections_opened_total",
        &[("reporter", "destination")],
    );
    assert_eq!(
        inbound,
        (BANNER_ATTEMPTS + 2 + 3) as f64,
        "{server_metrics}"
    );
}

/// Banner exchanges from the client pod (as the app uid) with `ip`:[`BANNER_PORT`]; each
/// came through the server's sidecar (the server saw 127.0.0.1).
fn banners(mesh: &Mesh, ip: Ipv4Addr, attempts: usize, half_close: bool) -> Vec<Value> {
    let mut cmd = mesh.app_command("client", PYTHON);
    cmd.arg(harness::fixtures().join("banner_client.py"))
        .arg(ip.to_string())
        .arg(BANNER_PORT.to_string())
        .arg(attempts.to_string());
    if half_close {
        cmd.arg("halfclose");
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(60), "banner_client.py");
    assert!(out.success, "{}", out.text());
    let results: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(results.len(), attempts, "{}", out.text());
    for r in &results {
        let banner = r["banner"].as_str().unwrap_or_else(|| panic!("{ip}: {r}"));
        assert!(banner.starts_with("220 banner peer=127.0.0.1:"), "{r}");
    }
    results
}

/// The banners came promptly: the sniff timeout is 100 ms, so a banner must not wait much
/// longer for a client that never speaks. The median keeps one descheduled attempt on a
/// busy machine from failing the test; every attempt must still be far from hanging.
fn assert_prompt(results: &[Value]) {
    let mut millis: Vec<f64> = results
        .iter()
        .map(|r| r["ms"].as_f64().expect("a duration"))
        .collect();
    millis.sort_by(f64::total_cmp);
    let median = millis[millis.len() / 2];
    assert!(median < 200.0, "banner latencies {millis:?} ms");
    assert!(
        millis[millis.len() - 1] < 2000.0,
        "banner latencies {millis:?} ms"
    );
}

/// Runs redis-cli in the client pod against the VIP.
fn redis(mesh: &Mesh, args: &[&str], input: &[u8]) -> Output {
    let out = run_bounded_with_input(
        mesh.app_command("client", "/usr/bin/redis-cli")
            .args(["-h", &REDIS_VIP.to_string(), "-p", &REDIS_PORT.to_string()])
            .args(args),
        input,
        Duration::from_secs(30),
        "redis-cli",
    );
    assert!(out.success, "redis-cli {args:?}: {}", out.text());
    out
}
