//! Resilience features with capture and real processes: curl in pod `client` calls the
//! `ratings` VIP; its sidecar retries a flaky backend (replaying request bodies), times out a
//! slow one, injects abort faults, ejects an endpoint whose sidecar died (outlier detection),
//! and on SIGTERM finishes the request in flight before it exits.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mesh_api::model::{
    AbortError, AppProtocol, Backoff, Cluster, Fault, FaultAbort, Forward, LoadBalancer,
    OutlierDetection, Percent, RetryCondition, RetryPolicy,
};

use crate::backend::{Backend, Behavior};
use crate::config::{self, Topology};
use crate::harness::{self, CURL_TOOL, Mesh, Transfer, wait_until};

/// The `ratings` service VIP.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 40);
const PORT: u16 = 9080;
const TARGET_PORT: u16 = 8080;

/// A client pod and backend pods behind one service. Field order is drop order.
struct Scenario {
    backends: Vec<Backend>,
    mesh: Mesh,
}

impl Scenario {
    /// Pods `client` and one per backend (named after it, `version` label = its name), the
    /// service's default cluster `cluster`, and a catch-all route with `fwd` when given.
    fn start(
        backends: &[(&'static str, Behavior)],
        fwd: Option<Forward>,
        cluster: Cluster,
    ) -> Option<Self> {
        let mut pods = vec!["client"];
        pods.extend(backends.iter().map(|(name, _)| *name));
        let mut mesh = Mesh::new(&pods, &[CURL_TOOL])?;
        let client = config::workload(mesh.pod("client"), "reviews", "v1");
        let servers: Vec<_> = backends
            .iter()
            .map(|(name, _)| config::workload(mesh.pod(name), "ratings", name))
            .collect();
        let topology = Topology {
            services: vec![config::service(
                "ratings",
                VIP,
                PORT,
                TARGET_PORT,
                AppProtocol::Http,
            )],
            endpoints: vec![config::endpoints(
                "ratings",
                &servers.iter().collect::<Vec<_>>(),
            )],
            routes: fwd
                .map(|f| vec![config::route("ratings", PORT, f)])
                .unwrap_or_default(),
            clusters: vec![cluster],
        };
        let started = backends
            .iter()
            .map(|(name, behavior)| {
                Backend::start(mesh.pod(name), TARGET_PORT, name, behavior.clone())
            })
            .collect();
        mesh.sidecar(&client, &topology);
        for w in &servers {
            mesh.sidecar(w, &topology);
        }
        Some(Self {
            backends: started,
            mesh,
        })
    }

    /// `n` HTTP/1.1 requests from the client pod to the VIP, one curl process.
    fn requests(&self, path: &str, n: usize) -> Vec<Transfer> {
        let urls = harness::urls(SocketAddr::from((VIP, PORT)), path, n);
        self.mesh.curl("client", &urls, &["--http1.1"])
    }

    fn backend_requests(&self) -> u64 {
        self.backends.iter().map(Backend::requests).sum()
    }
}

fn default_cluster() -> Cluster {
    config::cluster("ratings", PORT)
}

#[test]
fn retries_hide_a_flaky_backend() {
    let flaky = Behavior {
        fail_ratio: 0.3,
        ..Behavior::default()
    };
    let mut fwd = config::forward_all("ratings", PORT);
    fwd.retry = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout: Some(Duration::from_secs(2)),
        retry_on: [RetryCondition::Status5xx].into_iter().collect(),
        backoff: Backoff {
            base_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
        },
        budget: None,
    });
    let Some(s) = Scenario::start(
        &[("a", flaky.clone()), ("b", flaky)],
        Some(fwd),
        default_cluster(),
    ) else {
        return;
    };
    let n = 500;
    let transfers = s.requests("/flaky/", n);
    let ok = transfers.iter().filter(|t| t.status == 200).count();
    for t in transfers.iter().filter(|t| t.status != 200) {
        assert_eq!(t.status, 503, "{t:?}");
    }
    let rate = ok as f64 / n as f64;
    assert!(rate >= 0.99, "success rate {rate} with retries");
    // About 30 % of first tries fail: the backends saw the extra tries.
    let tries = s.backend_requests();
    assert!(
        tries > n as u64 + 100,
        "the backends saw only {tries} tries"
    );

    // Request bodies are replayed whole on every try.
    const BODY: usize = 10 * 1024;
    let body = s.mesh.dir().join("body.bin");
    std::fs::write(&body, vec![b'b'; BODY]).expect("write the request body");
    let data = format!("@{}", body.display());
    let urls = harness::urls(SocketAddr::from((VIP, PORT)), "/post/", 100);
    let posts = s
        .mesh
        .curl("client", &urls, &["--http1.1", "--data-binary", &data]);
    let ok: Vec<&Transfer> = posts.iter().filter(|t| t.status == 200).collect();
    assert!(ok.len() >= 98, "{} of 100 POSTs succeeded", ok.len());
    for t in ok {
        assert_eq!(t.received, Some(BODY as u64), "{t:?}");
    }
}

#[test]
fn route_timeout_cuts_a_slow_backend() {
    let slow = Behavior {
        delay: Duration::from_secs(2),
        ..Behavior::default()
    };
    let mut fwd = config::forward_all("ratings", PORT);
    fwd.timeout = Some(Duration::from_millis(200));
    let Some(s) = Scenario::start(&[("slow", slow)], Some(fwd), default_cluster()) else {
        return;
    };
    for t in s.requests("/slow/", 3) {
        assert_eq!(t.status, 504, "{t:?}");
        assert!(
            t.mesh_error.starts_with("upstream request timeout"),
            "{t:?}"
        );
        // Cut at 200 ms, far before the backend's 2 s (a loose bound: not a benchmark).
        assert!(t.seconds < 1.5, "{t:?}");
    }
    assert_eq!(s.backend_requests(), 3);
}

#[test]
fn abort_fault_fails_half_the_requests() {
    let mut fwd = config::forward_all("ratings", PORT);
    fwd.fault = Some(Fault {
        delay: None,
        abort: Some(FaultAbort {
            error: AbortError::HttpStatus(418),
            percentage: Percent::new(50.0).expect("a percentage"),
        }),
    });
    let Some(s) = Scenario::start(&[("a", Behavior::default())], Some(fwd), default_cluster())
    else {
        return;
    };
    let n = 2000;
    let transfers = s.requests("/fault/", n);
    let mut aborted = 0;
    for t in &transfers {
        match t.status {
            418 => aborted += 1,
            200 => assert_eq!(t.backend, "a", "{t:?}"),
            _ => panic!("unexpected response {t:?}"),
        }
    }
    let share = f64::from(aborted) / n as f64;
    assert!(
        (0.45..=0.55).contains(&share),
        "aborted share {share:.3} is not 50 % ± 5"
    );
    // Aborted requests never reach the backend.
    assert_eq!(s.backend_requests(), (n - aborted as usize) as u64);
}

#[test]
fn outlier_detection_stops_sending_to_a_dead_endpoint() {
    let mut cluster = default_cluster();
    cluster.load_balancer = LoadBalancer::RoundRobin;
    cluster.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 2,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(60),
        max_ejection_percent: Percent::new(50.0).expect("a percentage"),
    });
    let Some(mut s) = Scenario::start(
        &[("a", Behavior::default()), ("b", Behavior::default())],
        None,
        cluster,
    ) else {
        return;
    };
    // Both endpoints serve while healthy.
    let before = s.requests("/before/", 20);
    assert!(before.iter().all(|t| t.status == 200), "{before:?}");
    assert_eq!(harness::count_backend(&before, "a"), 10, "{before:?}");
    assert_eq!(harness::count_backend(&before, "b"), 10, "{before:?}");

    // b's sidecar crashes: its mesh port refuses connections.
    s.mesh.kill_sidecar("b");
    let after = s.requests("/after/", 100);
    let failed: Vec<&Transfer> = after.iter().filter(|t| t.status != 200).collect();
    for t in &failed {
        assert_eq!(t.status, 503, "{t:?}");
        assert!(!t.mesh_error.is_empty(), "{t:?}");
    }
    assert!(
        failed
            .iter()
            .any(|t| t.mesh_error.starts_with("upstream connect error")),
        "{failed:?}"
    );
    // Round robin tries b again until two consecutive failures eject it (a third failure
    // is tolerated: a request may race the proxy noticing the old connection's end).
    assert!(
        (1..=3).contains(&failed.len()),
        "{} failures after b died: {failed:?}",
        failed.len()
    );
    let tail = &after[10..];
    assert!(
        tail.iter().all(|t| t.status == 200 && t.backend == "a"),
        "after ejection every request goes to a: {tail:?}"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_stops() {
    let slow = Behavior {
        delay: Duration::from_secs(1),
        ..Behavior::default()
    };
    let Some(mut s) = Scenario::start(&[("slow", slow)], None, default_cluster()) else {
        return;
    };
    let in_flight = std::thread::scope(|scope| {
        let request = scope.spawn(|| s.requests("/in-flight/", 1));
        // Once the backend holds the request, the client's sidecar is told to stop.
        wait_until(
            "the request to reach the backend",
            Duration::from_secs(10),
            || match s.backend_requests() {
                0 => Err("not yet".to_owned()),
                _ => Ok(()),
            },
        );
        s.mesh.signal_sidecar("client", "TERM");
        request.join().expect("the curl thread")
    });
    // The request in flight finished normally.
    assert_eq!(in_flight[0].status, 200, "{:?}", in_flight[0]);
    assert_eq!(in_flight[0].backend, "slow", "{:?}", in_flight[0]);
    // The proxy then exits cleanly (its drain timeout is 5 s)...
    let status = s.mesh.wait_sidecar_exit("client", Duration::from_secs(15));
    assert!(status.success(), "the proxy exited with {status}");
    let log = s.mesh.sidecar_log("client");
    assert!(log.contains("shutdown signal: draining"), "{log}");
    // ...and with it gone, captured connections find nobody listening.
    let after = s.requests("/after/", 1);
    assert_eq!(after[0].status, 0, "{:?}", after[0]);
    assert!(!after[0].error.is_empty(), "{:?}", after[0]);
    assert_eq!(s.backend_requests(), 1);
}
