//! HTTP through both sidecars: curl in a client pod calls the `reviews` VIP; its sidecar
//! splits 90/10 between the sidecars of pods `v1` and `v2`, which forward to the in-process
//! backend on localhost — over HTTP/1.1 end to end, and with curl's h2c prior knowledge (the
//! server sidecars then speak HTTP/2 to the backend). The same scenario carries large request
//! and response bodies, a hundred concurrent connections, mirroring, and a route change (and
//! a broken config) written to the client sidecar's config file while it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mesh_api::model::{AppProtocol, ClusterKey, Mirror, Percent, Workload};

use crate::backend::{Backend, Behavior};
use crate::config::{self, Topology};
use crate::harness::{self, CURL_TOOL, Mesh, Tool, Transfer, metric_sum, wait_until};

/// The `reviews` service VIP (outside the testbed subnet: only capture makes it work).
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The service port.
pub(crate) const PORT: u16 = 9080;
/// The backends' port.
pub(crate) const TARGET_PORT: u16 = 8080;
/// Requests per protocol.
pub(crate) const REQUESTS: usize = 2000;

/// The canary scenario: pods `client`, `v1`, `v2` with sidecars, a 90/10 split, backends.
/// Field order is drop order: the backends stop before the mesh goes away.
pub(crate) struct Canary {
    /// The backend in pod `v1`.
    pub(crate) v1: Backend,
    /// The backend in pod `v2`.
    pub(crate) v2: Backend,
    /// The pods and sidecars.
    pub(crate) mesh: Mesh,
    /// What every sidecar was configured with.
    pub(crate) topology: Topology,
    /// The client pod's workload.
    pub(crate) client: Workload,
}

impl Canary {
    /// Builds the scenario, or `None` when the test is skipped.
    pub(crate) fn start(tools: &[Tool]) -> Option<Self> {
        let mut mesh = Mesh::new(&["client", "v1", "v2"], tools)?;
        let client = config::workload(mesh.pod("client"), "productpage", "v1");
        let w1 = config::workload(mesh.pod("v1"), "reviews", "v1");
        let w2 = config::workload(mesh.pod("v2"), "reviews", "v2");
        let topology = Topology {
            services: vec![config::service(
                "reviews",
                VIP,
                PORT,
                TARGET_PORT,
                AppProtocol::Http,
            )],
            endpoints: vec![config::endpoints("reviews", &[&w1, &w2])],
            routes: vec![config::split("reviews", PORT, &[("v1", 90), ("v2", 10)])],
            clusters: vec![
                config::cluster("reviews", PORT),
                config::subset("reviews", PORT, "v1"),
                config::subset("reviews", PORT, "v2"),
            ],
        };
        let v1 = Backend::start(mesh.pod("v1"), TARGET_PORT, "v1", Behavior::default());
        let v2 = Backend::start(mesh.pod("v2"), TARGET_PORT, "v2", Behavior::default());
        for w in [&client, &w1, &w2] {
            mesh.sidecar(w, &topology);
        }
        Some(Self {
            v1,
            v2,
            mesh,
            topology,
            client,
        })
    }

    /// [`REQUESTS`] HTTP/1.1 requests from the client pod: one curl process, one
    /// keep-alive connection to the VIP.
    pub(crate) fn run_http1(&self) -> Vec<Transfer> {
        let vip = SocketAddr::from((VIP, PORT));
        let urls = harness::urls(vip, "/reviews/", REQUESTS);
        let transfers = self.mesh.curl("client", &urls, &["--http1.1"]);
        check(&transfers, "1.1", "HTTP/1.1");
        let connections: u32 = transfers.iter().map(|t| t.connects).sum();
        assert_eq!(
            connections, 1,
            "the sidecar did not keep the connection alive"
        );
        transfers
    }

    /// [`REQUESTS`] h2c (prior knowledge) requests from the client pod, one curl process.
    ///
    /// Debian bookworm's curl 7.88.1 cannot send a second request on a reused
    /// prior-knowledge HTTP/2 connection ("Error in the HTTP2 framing layer", curl issue
    /// #10634, fixed in 8.0.0), so each request names a different host
    /// (`r<i>.reviews:9080`, every one connected to the VIP with `--connect-to`) and gets
    /// its own connection. HTTP/2 multiplexing through the sidecars is covered by the gRPC
    /// test; the proxy routes these by the service the VIP resolves to.
    pub(crate) fn run_h2c(&self) -> Vec<Transfer> {
        let urls: Vec<String> = (0..REQUESTS)
            .map(|i| format!("http://r{i}.reviews:{PORT}/reviews/{i}"))
            .collect();
        let connect_to = format!("::{VIP}:{PORT}");
        let transfers = self.mesh.curl(
            "client",
            &urls,
            &["--http2-prior-knowledge", "--connect-to", &connect_to],
        );
        // HTTP/2 on every hop: the server sidecar speaks HTTP/2 to the backend too.
        check(&transfers, "2", "HTTP/2.0");
        transfers
    }
}

/// Each transfer came back 200 from a backend, through both sidecars, with the HTTP
/// versions expected on the client's hop (`curl_version`) and at the backend.
fn check(transfers: &[Transfer], curl_version: &str, backend_proto: &str) {
    for t in transfers {
        assert_eq!(t.status, 200, "{t:?}");
        assert_eq!(t.http_version, curl_version, "{t:?}");
        assert_eq!(t.backend_proto, backend_proto, "{t:?}");
        // The server sidecar strips the mesh headers and calls the app on localhost.
        assert_eq!(t.leak, "clean", "{t:?}");
        assert_eq!(t.peer, "127.0.0.1", "{t:?}");
    }
}

/// The share of transfers answered by `v2`, asserted to be 10 % ± 3 points.
pub(crate) fn assert_canary_share(transfers: &[Transfer]) -> usize {
    let v1 = harness::count_backend(transfers, "v1");
    let v2 = harness::count_backend(transfers, "v2");
    assert_eq!(v1 + v2, transfers.len(), "answers from unknown backends");
    let share = v2 as f64 / transfers.len() as f64;
    assert!(
        (0.07..=0.13).contains(&share),
        "v2 share {share:.3} ({v2} of {}) is not 10 % ± 3",
        transfers.len()
    );
    v2
}

#[test]
fn canary_split_90_10_over_http1_and_h2c() {
    let Some(canary) = Canary::start(&[CURL_TOOL]) else {
        return;
    };
    let http1 = canary.run_http1();
    let v2_http1 = assert_canary_share(&http1);
    let h2c = canary.run_h2c();
    let v2_h2c = assert_canary_share(&h2c);

    // The backends saw exactly what curl saw.
    let total = (2 * REQUESTS) as u64;
    assert_eq!(canary.v1.requests() + canary.v2.requests(), total);
    assert_eq!(canary.v2.requests(), (v2_http1 + v2_h2c) as u64);

    // Every request went through the client's sidecar (capture) and a server's sidecar.
    let source = canary.mesh.metrics("client");
    let sent = metric_sum(
        &source,
        "mesh_requests_total",
        &[("reporter", "source"), ("response_code", "200")],
    );
    assert_eq!(sent, total as f64, "client sidecar metrics:\n{source}");
    for (pod, backend) in [("v1", &canary.v1), ("v2", &canary.v2)] {
        let text = canary.mesh.metrics(pod);
        let received = metric_sum(
            &text,
            "mesh_requests_total",
            &[("reporter", "destination"), ("destination_version", pod)],
        );
        assert_eq!(
            received,
            backend.requests() as f64,
            "{pod} sidecar metrics:\n{text}"
        );
    }
}

#[test]
fn large_bodies_both_ways_over_http1_and_h2c() {
    const UPLOAD: usize = 4 << 20;
    const DOWNLOAD: u64 = 8 << 20;
    let Some(canary) = Canary::start(&[CURL_TOOL]) else {
        return;
    };
    let upload = canary.mesh.dir().join("upload.bin");
    std::fs::write(&upload, vec![b'u'; UPLOAD]).expect("write the upload file");
    let data = format!("@{}", upload.display());
    let connect_to = format!("::{VIP}:{PORT}");
    let h1 = ["--http1.1"];
    let h2c = ["--http2-prior-knowledge", "--connect-to", &connect_to];
    for (flags, base, version) in [
        (&h1[..], format!("http://{VIP}:{PORT}"), "1.1"),
        (&h2c[..], format!("http://reviews:{PORT}"), "2"),
    ] {
        let one = |path: &str, more: &[&str]| -> Transfer {
            let all: Vec<&str> = flags.iter().chain(more).copied().collect();
            let t = canary.mesh.curl("client", &[format!("{base}{path}")], &all);
            let t = t.into_iter().next().expect("one transfer");
            assert_eq!(t.status, 200, "{path}: {t:?}");
            assert_eq!(t.http_version, version, "{path}: {t:?}");
            t
        };
        let t = one("/upload", &["--data-binary", &data]);
        assert_eq!(t.received, Some(UPLOAD as u64), "{t:?}");
        if version == "1.1" {
            // A chunked request body (no content-length) streams through as well.
            let t = one(
                "/upload-chunked",
                &["-H", "Transfer-Encoding: chunked", "--data-binary", &data],
            );
            assert_eq!(t.received, Some(UPLOAD as u64), "{t:?}");
        }
        let t = one(&format!("/bytes/{DOWNLOAD}"), &[]);
        assert_eq!(t.downloaded, DOWNLOAD, "{t:?}");
    }
}

#[test]
fn route_changes_apply_without_a_restart_and_bad_updates_are_ignored() {
    let Some(canary) = Canary::start(&[CURL_TOOL]) else {
        return;
    };
    let vip = SocketAddr::from((VIP, PORT));
    // The client sidecar's config changes: everything to v2.
    let mut topology = canary.topology.clone();
    topology.routes = vec![config::split("reviews", PORT, &[("v2", 1)])];
    let mut spec = topology.spec_for(&canary.client);
    spec.version = "all-to-v2".into();
    canary.mesh.replace_config(
        "client",
        &serde_json::to_vec_pretty(&spec).expect("serialize the proxy config"),
    );
    // The file is polled: wait (bounded) until the new route answers.
    wait_until("the new route", Duration::from_secs(10), || {
        let t = canary
            .mesh
            .curl("client", &harness::urls(vip, "/probe/", 20), &["--http1.1"]);
        match harness::count_backend(&t, "v2") {
            20 => Ok(()),
            n => Err(format!("{n} of 20 from v2")),
        }
    });
    let metrics = canary.mesh.metrics("client");
    assert_eq!(
        metric_sum(
            &metrics,
            "mesh_proxy_config_info",
            &[("version", "all-to-v2")]
        ),
        1.0,
        "{metrics}"
    );
    let before = canary.v1.requests();
    let t = canary.mesh.curl(
        "client",
        &harness::urls(vip, "/after/", 200),
        &["--http1.1"],
    );
    assert!(
        t.iter().all(|t| t.status == 200 && t.backend == "v2"),
        "{t:?}"
    );
    assert_eq!(canary.v1.requests(), before);

    // A broken update is rejected; the proxy keeps serving the last good config.
    canary
        .mesh
        .replace_config("client", b"{ this is not a proxy config");
    wait_until("the rejection in the log", Duration::from_secs(10), || {
        let log = canary.mesh.sidecar_log("client");
        if log.contains("config update rejected") {
            Ok(())
        } else {
            Err(log)
        }
    });
    let t = canary.mesh.curl(
        "client",
        &harness::urls(vip, "/still/", 100),
        &["--http1.1"],
    );
    assert!(
        t.iter().all(|t| t.status == 200 && t.backend == "v2"),
        "{t:?}"
    );
    let metrics = canary.mesh.metrics("client");
    assert_eq!(
        metric_sum(
            &metrics,
            "mesh_proxy_config_info",
            &[("version", "all-to-v2")]
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_hundred_concurrent_connections() {
    let Some(canary) = Canary::start(&[CURL_TOOL]) else {
        return;
    };
    let vip = SocketAddr::from((VIP, PORT));
    let urls = harness::urls(vip, "/concurrent/", 1000);
    let transfers = canary.mesh.curl(
        "client",
        &urls,
        &["--http1.1", "--parallel", "--parallel-max", "100"],
    );
    check(&transfers, "1.1", "HTTP/1.1");
    let connections: u32 = transfers.iter().map(|t| t.connects).sum();
    assert!(
        connections >= 50,
        "curl opened only {connections} connections"
    );
    assert_eq!(canary.v1.requests() + canary.v2.requests(), 1000);
}

#[test]
fn mirrored_requests_reach_the_shadow_and_answers_come_from_the_primary() {
    let Some(canary) = Canary::start(&[CURL_TOOL]) else {
        return;
    };
    let mut fwd = config::forward(vec![(
        ClusterKey::new(config::hostname("reviews"), PORT).with_subset("v1"),
        1,
    )]);
    fwd.mirrors = vec![Mirror {
        cluster: ClusterKey::new(config::hostname("reviews"), PORT).with_subset("v2"),
        percentage: Percent::new(100.0).expect("a percentage"),
    }];
    let mut topology = canary.topology.clone();
    topology.routes = vec![config::route("reviews", PORT, fwd)];
    let mut spec = topology.spec_for(&canary.client);
    spec.version = "mirror-to-v2".into();
    canary.mesh.replace_config(
        "client",
        &serde_json::to_vec_pretty(&spec).expect("serialize the proxy config"),
    );
    wait_until("the mirroring config", Duration::from_secs(10), || {
        let metrics = canary.mesh.metrics("client");
        match metric_sum(
            &metrics,
            "mesh_proxy_config_info",
            &[("version", "mirror-to-v2")],
        ) {
            1.0 => Ok(()),
            _ => Err(metrics),
        }
    });
    let vip = SocketAddr::from((VIP, PORT));
    let transfers = canary.mesh.curl(
        "client",
        &harness::urls(vip, "/mirrored/", 200),
        &["--http1.1"],
    );
    check(&transfers, "1.1", "HTTP/1.1");
    assert_eq!(harness::count_backend(&transfers, "v1"), 200);
    assert_eq!(canary.v1.requests(), 200);
    // Mirrors are fire-and-forget: the shadow's copies may still be arriving.
    wait_until(
        "every mirrored copy at v2",
        Duration::from_secs(10),
        || match canary.v2.requests() {
            200 => Ok(()),
            n => Err(format!("v2 saw {n} of 200")),
        },
    );
}
