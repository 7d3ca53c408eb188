//! Where captured connections end up: a service served by the calling pod itself (the
//! sidecar dials its own pod's mesh port, which capture must leave alone), an endpoint
//! without a sidecar (called directly, in plaintext, on its target port), and a headless
//! service, whose clients dial one endpoint's own address (a StatefulSet member through its
//! DNS name) and must reach exactly that endpoint.

use std::net::{Ipv4Addr, SocketAddr};

use mesh_api::model::AppProtocol;

use crate::backend::{Backend, Behavior};
use crate::config::{self, Topology};
use crate::harness::{CURL_TOOL, Mesh, metric_sum};

/// The `legacy` service VIP.
const LEGACY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 61);
/// The `solo` service VIP.
const SOLO_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 60);
const PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;

#[test]
fn a_pod_calls_a_service_it_serves_itself() {
    let Some(mut mesh) = Mesh::new(&["solo"], &[CURL_TOOL]) else {
        return;
    };
    let solo = config::workload(mesh.pod("solo"), "solo", "v1");
    let topology = Topology {
        services: vec![config::service(
            "solo",
            SOLO_VIP,
            PORT,
            TARGET_PORT,
            AppProtocol::Http,
        )],
        endpoints: vec![config::endpoints("solo", &[&solo])],
        routes: Vec::new(),
        clusters: vec![config::cluster("solo", PORT)],
    };
    let backend = Backend::start(mesh.pod("solo"), TARGET_PORT, "solo", Behavior::default());
    mesh.sidecar(&solo, &topology);
    let urls: Vec<String> = (0..20)
        .map(|i| format!("http://{SOLO_VIP}:{PORT}/self/{i}"))
        .collect();
    for t in mesh.curl("solo", &urls, &["--http1.1"]) {
        assert_eq!(t.status, 200, "{t:?}");
        assert_eq!(t.backend, "solo", "{t:?}");
        assert_eq!(t.peer, "127.0.0.1", "{t:?}");
    }
    assert_eq!(backend.requests(), 20);
    // Out through the sidecar's client side and back in through its mesh port.
    let metrics = mesh.metrics("solo");
    for reporter in ["source", "destination"] {
        let n = metric_sum(
            &metrics,
            "mesh_requests_total",
            &[("reporter", reporter), ("response_code", "200")],
        );
        assert_eq!(n, 20.0, "{reporter}: {metrics}");
    }
}

#[test]
fn endpoints_without_a_sidecar_are_called_directly() {
    let Some(mut mesh) = Mesh::new(&["client", "legacy"], &[CURL_TOOL]) else {
        return;
    };
    let client = config::workload(mesh.pod("client"), "app", "v1");
    let mut legacy = config::workload(mesh.pod("legacy"), "legacy", "v1");
    legacy.in_mesh = false;
    let topology = Topology {
        services: vec![config::service(
            "legacy",
            LEGACY_VIP,
            PORT,
            TARGET_PORT,
            AppProtocol::Http,
        )],
        endpoints: vec![config::endpoints("legacy", &[&legacy])],
        routes: Vec::new(),
        clusters: vec![config::cluster("legacy", PORT)],
    };
    let backend = Backend::start(
        mesh.pod("legacy"),
        TARGET_PORT,
        "legacy",
        Behavior::default(),
    );
    // Only the client has a sidecar.
    mesh.sidecar(&client, &topology);
    let client_ip = mesh.pod("client").ip().to_string();
    let connect_to = format!("::{LEGACY_VIP}:{PORT}");
    let http1: Vec<String> = (0..10)
        .map(|i| format!("http://{LEGACY_VIP}:{PORT}/http1/{i}"))
        .collect();
    // h2c: a host name per request, so curl 7.88 never reuses a connection (see
    // `http::Canary::run_h2c`); all of them connect to the VIP.
    let h2c: Vec<String> = (0..10)
        .map(|i| format!("http://r{i}.legacy:{PORT}/h2c/{i}"))
        .collect();
    let mut transfers = mesh.curl("client", &http1, &["--http1.1"]);
    transfers.extend(mesh.curl(
        "client",
        &h2c,
        &["--http2-prior-knowledge", "--connect-to", &connect_to],
    ));
    for t in &transfers {
        assert_eq!(t.status, 200, "{t:?}");
        assert_eq!(t.backend, "legacy", "{t:?}");
        // Straight from the client's sidecar: no proxy in front of the app.
        assert_eq!(t.peer, client_ip, "{t:?}");
        assert_eq!(t.leak, "clean", "{t:?}");
    }
    assert_eq!(backend.requests(), 20);
    let metrics = mesh.metrics("client");
    let sent = metric_sum(
        &metrics,
        "mesh_requests_total",
        &[("reporter", "source"), ("response_code", "200")],
    );
    assert_eq!(sent, 20.0, "{metrics}");
}

#[test]
fn headless_service_endpoints_are_reached_at_the_address_dialed() {
    // `db` is routed as HTTP, `db-raw` forwarded as opaque TCP; both headless.
    const RAW_PORT: u16 = 8081;
    let Some(mut mesh) = Mesh::new(&["client", "db-0", "db-1"], &[CURL_TOOL]) else {
        return;
    };
    let client = config::workload(mesh.pod("client"), "app", "v1");
    let db0 = config::workload(mesh.pod("db-0"), "db", "v1");
    let db1 = config::workload(mesh.pod("db-1"), "db", "v1");
    let topology = Topology {
        services: vec![
            config::headless("db", TARGET_PORT, TARGET_PORT, AppProtocol::Http),
            config::headless("db-raw", RAW_PORT, RAW_PORT, AppProtocol::Tcp),
        ],
        endpoints: vec![
            config::endpoints("db", &[&db0, &db1]),
            config::endpoints("db-raw", &[&db0, &db1]),
        ],
        routes: Vec::new(),
        clusters: vec![
            config::cluster("db", TARGET_PORT),
            config::cluster("db-raw", RAW_PORT),
        ],
    };
    let _backends = [
        Backend::start(mesh.pod("db-0"), TARGET_PORT, "db-0", Behavior::default()),
        Backend::start(mesh.pod("db-1"), TARGET_PORT, "db-1", Behavior::default()),
        Backend::start(mesh.pod("db-0"), RAW_PORT, "db-0", Behavior::default()),
        Backend::start(mesh.pod("db-1"), RAW_PORT, "db-1", Behavior::default()),
    ];
    for w in [&client, &db0, &db1] {
        mesh.sidecar(w, &topology);
    }
    for port in [TARGET_PORT, RAW_PORT] {
        for target in ["db-0", "db-1"] {
            let addr = SocketAddr::from((mesh.pod(target).ip(), port));
            let urls: Vec<String> = (0..20).map(|i| format!("http://{addr}/{i}")).collect();
            // Without keep-alive each request is a connection of its own (for `db-raw`).
            let transfers = mesh.curl("client", &urls, &["--http1.1", "-H", "Connection: close"]);
            for t in &transfers {
                assert_eq!(t.status, 200, "{t:?}");
            }
            let elsewhere: Vec<&str> = transfers
                .iter()
                .map(|t| t.backend.as_str())
                .filter(|b| *b != target)
                .collect();
            assert!(
                elsewhere.is_empty(),
                "requests to {target} ({addr}) were served by {elsewhere:?}"
            );
        }
    }
    // They were handled by the client's sidecar as the headless services, not passed
    // through: as HTTP requests for `db`, as TCP connections for `db-raw`.
    let metrics = mesh.metrics("client");
    let requests = metric_sum(
        &metrics,
        "mesh_requests_total",
        &[
            ("reporter", "source"),
            ("destination_service", &config::hostname("db")),
        ],
    );
    assert_eq!(requests, 40.0, "{metrics}");
    let connections = metric_sum(
        &metrics,
        "mesh_tcp_connections_opened_total",
        &[
            ("reporter", "source"),
            ("destination_service", &config::hostname("db-raw")),
        ],
    );
    assert_eq!(connections, 40.0, "{metrics}");
}
