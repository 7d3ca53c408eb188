//! `meshctl demo` and `meshctl stat`: the generated local-mode config loads and validates
//! cleanly (with and without the canary), the address plan has no collisions, the metrics
//! table's arithmetic is right, and — when the sibling binaries are built — the whole demo
//! serves the shop through the gateway, every edge of the call graph shows in the metrics
//! over mutual TLS, the 90/10 canary moves 10 % ± 3 of the catalog's requests (as
//! `meshctl stat` shows), and Ctrl-C leaves no process behind.
//!
//! The end-to-end test needs `mesh-control`, `mesh-proxy` and `boutique` beside meshctl
//! (`cargo build -p mesh-control -p mesh-proxy -p online-boutique`), `curl` and
//! `redis-server`; without them it prints `SKIPPED: …`, and fails under
//! `MESH_E2E=require`. `MESH_DEMO_BIN_DIR` points it at binaries elsewhere (a release
//! build).

#[path = "support/e2e.rs"]
mod e2e;
use e2e::skip;

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_api::config::{Loader, Severity, validate};
use meshctl::demo::Info;
use meshctl::demo::topology::{COMPONENTS, Plan};
use meshctl::stat;

fn gateway() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))
}

/// Writes `plan`'s config into `dir` and returns the loader's and validator's problems
/// (errors and warnings) and the number of resources.
fn load(dir: &Path, plan: &Plan, routes: Option<String>) -> (Vec<String>, usize) {
    for file in plan.config_files() {
        std::fs::write(dir.join(file.name), file.text).unwrap();
    }
    if let Some(routes) = routes {
        std::fs::write(dir.join(meshctl::demo::topology::ROUTES_FILE), routes).unwrap();
    }
    load_dir(dir)
}

/// Loads and validates the config directory `dir` as mesh-control would.
fn load_dir(dir: &Path) -> (Vec<String>, usize) {
    let mut loader = Loader::new().with_default_namespace("default");
    loader.add_path(dir);
    let mut set = loader.finish();
    validate::validate_with(
        &mut set,
        &validate::Options {
            trust_domain: "cluster.local".to_owned(),
        },
    );
    let problems = set
        .diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .map(|d| d.to_string())
        .collect();
    (problems, set.resources.len())
}

#[test]
fn generated_config_loads_and_validates_without_problems() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::new(10, gateway(), true);
    let (problems, resources) = load(dir.path(), &plan, None);
    assert!(problems.is_empty(), "{problems:#?}");
    // 11 Services, 12 WorkloadEntries (productcatalogservice twice), the Gateway and its
    // VirtualService, productcatalogservice's DestinationRule and VirtualService.
    assert_eq!(resources, 11 + 12 + 2 + 2);
}

#[test]
fn the_gateway_api_gateway_and_canary_validate_in_place_of_ours() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::new(10, gateway(), true);
    let routes = meshctl::demo::topology::CANARY_GATEWAY_API.to_owned();
    let (problems, resources) = load(dir.path(), &plan, Some(routes));
    std::fs::write(
        dir.path().join(meshctl::demo::topology::GATEWAY_FILE),
        meshctl::demo::topology::GATEWAY_API,
    )
    .unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    // Two Services per version and the GRPCRoute in place of the DestinationRule and the
    // VirtualService.
    assert_eq!(resources, 11 + 12 + 2 + 3);
    let (problems, _) = load_dir(dir.path());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_canary_and_its_rollback_validate_in_place_of_the_routes() {
    for (v1, v2) in [(90, 10), (100, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let routes = meshctl::demo::topology::routes(v1, v2);
        assert!(routes.contains(&format!("weight: {v2}")), "{routes}");
        let (problems, _) = load(dir.path(), &Plan::new(10, gateway(), false), Some(routes));
        assert!(problems.is_empty(), "{v1}/{v2}: {problems:#?}");
    }
}

#[test]
fn every_pod_has_its_own_address_and_no_listener_collides() {
    let plan = Plan::new(42, gateway(), true);
    let mut ips: Vec<_> = plan.pods.iter().map(|p| p.ip).collect();
    ips.extend([plan.gateway_ip(), Ipv4Addr::new(127, 42, 0, 1)]);
    assert_eq!(plan.discovery(), "127.42.0.1:15012".parse().unwrap());
    let n = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "an address is shared");
    assert!(
        ips.iter().all(|ip| ip.octets()[..2] == [127, 42]),
        "{ips:?}"
    );
    for pod in &plan.pods {
        let (flags, env) = plan.upstreams(pod);
        assert_eq!(flags.len(), plan.calls(pod).len());
        let mut ports: Vec<u16> = env
            .iter()
            .map(|(_, addr)| addr.parse::<SocketAddr>().unwrap().port())
            .chain([pod.component.target_port, 15000, 15008, 15020, 15021])
            .collect();
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n, "{}: ports collide: {flags:?}", pod.name);
    }
    let frontend = plan.pods.iter().find(|p| p.name == "frontend-v1").unwrap();
    let (flags, env) = plan.upstreams(frontend);
    assert_eq!(env.len(), 7, "{env:?}");
    assert!(
        flags.contains(&format!(
            "{}:15100=productcatalogservice.default.svc.cluster.local:3550",
            frontend.ip
        )),
        "{flags:?}"
    );
    let v2 = plan
        .pods
        .iter()
        .find(|p| p.name == "productcatalogservice-v2")
        .unwrap();
    assert_eq!(v2.extra_env, vec![("EXTRA_LATENCY", "50ms")]);
}

#[test]
fn without_redis_the_cart_keeps_carts_in_memory() {
    let plan = Plan::new(10, gateway(), false);
    assert!(plan.pods.iter().all(|p| p.component.name != "redis-cart"));
    let cart = plan
        .pods
        .iter()
        .find(|p| p.name == "cartservice-v1")
        .unwrap();
    assert!(plan.upstreams(cart).1.is_empty());
    let with = Plan::new(10, gateway(), true);
    let cart = with
        .pods
        .iter()
        .find(|p| p.name == "cartservice-v1")
        .unwrap();
    assert_eq!(with.upstreams(cart).1[0].0, "REDIS_ADDR");
}

fn metrics(ok: u64, failed: u64, fast: u64, slow: u64, plaintext: u64) -> String {
    let l = r#"reporter="destination",destination_service="cartservice.default.svc.cluster.local",destination_workload="cartservice-v1",destination_app="cartservice""#;
    format!(
        "mesh_requests_total{{{l},response_code=\"200\",connection_security_policy=\"mutual_tls\"}} {ok}
mesh_requests_total{{{l},response_code=\"503\",connection_security_policy=\"mutual_tls\"}} {failed}
mesh_requests_total{{{l},response_code=\"200\",connection_security_policy=\"none\"}} {plaintext}
mesh_request_duration_milliseconds_bucket{{{l},le=\"5.0\"}} {fast}
mesh_request_duration_milliseconds_bucket{{{l},le=\"25.0\"}} {total}
mesh_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {total}
",
        total = fast + slow,
    )
}

fn snapshot(text: &str) -> stat::Snapshot {
    let mut s = stat::Snapshot::default();
    s.add(&stat::parse(text));
    s
}

#[test]
fn table_rows_are_rates_shares_and_quantiles_of_the_window() {
    // Before: 10 requests. After: 10 + 100 (80 ok, 10 failed, 10 plaintext ok), 50 of
    // them under 5 ms and 50 between 5 and 25 ms.
    let before = snapshot(&metrics(10, 0, 10, 0, 0));
    let after = snapshot(&metrics(90, 10, 60, 50, 10));
    let rows = stat::rows(&before, &after, Duration::from_secs(4));
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.key.workload, "cartservice-v1");
    assert!((row.rps - 25.0).abs() < 1e-9, "{row:?}");
    assert!((row.success.unwrap() - 90.0).abs() < 1e-9, "{row:?}");
    assert!((row.mtls.unwrap() - 90.0).abs() < 1e-9, "{row:?}");
    assert!((row.p50.unwrap() - 5.0).abs() < 1e-9, "{row:?}");
    // Rank 99: 49 of the 50 in (5, 25].
    assert!(
        (row.p99.unwrap() - (5.0 + 20.0 * 49.0 / 50.0)).abs() < 1e-9,
        "{row:?}"
    );
    let text = stat::table(&rows).render();
    assert!(text.starts_with("SERVICE"), "{text}");
    assert!(
        text.contains(
            "cartservice   cartservice-v1   25.00   100.0%   90.0%     5.0ms   24.6ms   90.0%"
        ),
        "{text}"
    );

    // A restarted proxy (counters went down) counts from zero; no traffic shows dashes.
    let restarted = stat::rows(&after, &before, Duration::from_secs(1));
    assert!((restarted[0].rps - 10.0).abs() < 1e-9, "{restarted:?}");
    let idle = stat::rows(&after, &after, Duration::from_secs(1));
    assert_eq!(
        (idle[0].rps, idle[0].success, idle[0].p50),
        (0.0, None, None)
    );
    let text = stat::table(&idle).render();
    assert!(
        text.contains("cartservice-v1   0.00   -       -   "),
        "{text}"
    );
}

// === end to end ===

/// `meshctl demo`, stopped with SIGTERM (and then killed) if the test ends early.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
}

impl Demo {
    /// Reads output lines until one starts with `line`, for up to `timeout`.
    fn wait_for(&mut self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l.starts_with(line);
                    self.output.push(l);
                    if done {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "no {line:?} from meshctl demo within {timeout:?}; output:\n{}",
                    self.drain()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "meshctl demo ended before {line:?} ({:?}); output:\n{}",
                    self.child.wait(),
                    self.drain()
                ),
            }
        }
    }

    /// Everything printed so far.
    fn drain(&mut self) -> String {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
            self.output.push(l);
        }
        self.output.join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// curl with a cookie jar: (HTTP status, body).
fn curl(jar: &Path, url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "15", "-o", "-", "-w", "\n%{http_code}"])
        .arg("-b")
        .arg(jar)
        .arg("-c")
        .arg(jar);
    for (k, v) in form {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn demo_serves_the_shop_through_the_gateway_over_mtls_and_leaves_nothing_behind() {
    shop_flows(false);
}

/// The same flows with every pod in a network namespace of its own and its traffic
/// captured by iptables (`--transparent`, root).
#[test]
fn transparent_demo_serves_the_same_flows_with_real_capture() {
    let Some(_prerequisites) = mesh_testbed::prerequisites_or_skip() else {
        return;
    };
    shop_flows(true);
}

/// Runs the demo (explicit or transparent mode) and drives the shop, the call graph and
/// the canary through it; stops it with Ctrl-C and checks nothing is left.
fn shop_flows(transparent: bool) {
    let meshctl = PathBuf::from(env!("CARGO_BIN_EXE_meshctl"));
    // The binaries beside meshctl, or where MESH_DEMO_BIN_DIR says (e.g. a release build).
    let bin = std::env::var_os("MESH_DEMO_BIN_DIR")
        .map_or_else(|| meshctl.parent().unwrap().to_owned(), PathBuf::from);
    let missing: Vec<&str> = ["mesh-control", "mesh-proxy", "boutique"]
        .into_iter()
        .filter(|b| !bin.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        return skip(&format!(
            "{} not built in {} (cargo build -p mesh-control -p mesh-proxy -p online-boutique)",
            missing.join(", "),
            bin.display()
        ));
    }
    if Command::new("curl").arg("--version").output().is_err() {
        return skip("curl is not installed");
    }
    // The cart keeps its carts in redis, through the mesh: the cart → redis edge.
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip("redis-server is not installed (apt-get install -y redis-server)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("demo");
    let shop = format!("127.0.0.1:{}", free_port());
    let net = if transparent { "78" } else { "79" };
    let mut child = Command::new(&meshctl)
        .args(["demo", "--duration", "150s", "--no-loadgen"])
        .args(["--gateway-addr", &shop, "--loopback-net", net])
        .args(transparent.then_some("--transparent"))
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start meshctl demo");
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut demo = Demo {
        child,
        lines,
        output: Vec::new(),
    };
    demo.wait_for("ready: ", Duration::from_secs(150));
    let info = Info::read(&state).expect("demo.json of the running demo");
    assert!(info.processes.len() >= 24, "{:?}", info.processes);

    // The shop through the gateway: home page, add to cart, check out.
    let jar = tmp.path().join("cookies");
    let base = format!("http://{shop}");
    let (status, home) = curl(&jar, &format!("{base}/"), &[]);
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("/product/OLJCESPC7Z"), "{home}");
    let (status, body) = curl(
        &jar,
        &format!("{base}/cart"),
        &[("product_id", "OLJCESPC7Z"), ("quantity", "2")],
    );
    assert_eq!(status, 302, "add to cart: {body}");
    let (status, cart) = curl(&jar, &format!("{base}/cart"), &[]);
    assert_eq!(status, 200, "{cart}");
    assert!(
        cart.contains("OLJCESPC7Z"),
        "the cart page lists the product: {cart}"
    );
    let (status, order) = curl(
        &jar,
        &format!("{base}/cart/checkout"),
        &[
            ("email", "someone@example.com"),
            ("street_address", "1600 Amphitheatre Parkway"),
            ("zip_code", "94043"),
            ("city", "Mountain View"),
            ("state", "CA"),
            ("country", "United States"),
            ("credit_card_number", "4432801561520454"),
            ("credit_card_expiration_month", "1"),
            ("credit_card_expiration_year", "2099"),
            ("credit_card_cvv", "672"),
        ],
    );
    assert_eq!(status, 200, "{order}");
    assert!(order.contains("Your order is complete!"), "{order}");

    // A product page: its recommendations (frontend → recommendation → catalog).
    let (status, page) = curl(&jar, &format!("{base}/product/OLJCESPC7Z"), &[]);
    assert_eq!(status, 200, "{page}");

    // Every edge of the call graph is in the callee's sidecar metrics, over mutual TLS:
    // gateway → frontend, frontend → 7 services, checkout → 6, recommendation → catalog
    // (HTTP/gRPC requests) and cart → redis (TCP connections).
    let scraped: Vec<(String, Vec<stat::Sample>)> = info
        .proxies
        .iter()
        .map(|p| {
            let (status, text) = curl(&jar, &format!("http://{}/metrics", p.metrics), &[]);
            assert_eq!(status, 200, "{}: {text}", p.name);
            (p.name.clone(), stat::parse(&text))
        })
        .collect();
    let mut edges = vec![("mesh-ingressgateway".to_owned(), "frontend")];
    for c in COMPONENTS {
        edges.extend(c.calls.iter().map(|to| (format!("{}-v1", c.name), *to)));
    }
    assert_eq!(edges.len(), 1 + 7 + 6 + 1 + 1, "{edges:?}");
    let mut missing = Vec::new();
    for (from, to) in &edges {
        let callee = COMPONENTS.iter().find(|c| c.name == *to).unwrap();
        let metric = if callee.port_name.starts_with("tcp") {
            "mesh_tcp_connections_opened_total"
        } else {
            "mesh_requests_total"
        };
        let (_, samples) = scraped
            .iter()
            .find(|(name, _)| *name == format!("{to}-v1"))
            .unwrap_or_else(|| panic!("no sidecar for {to}"));
        let seen = samples.iter().any(|s| {
            s.name == metric
                && s.value > 0.0
                && s.label("reporter") == Some("destination")
                && s.label("source_workload") == Some(from.as_str())
                && s.label("destination_service") == Some(callee.fqdn().as_str())
                && s.label("connection_security_policy") == Some("mutual_tls")
        });
        if !seen {
            missing.push(format!("{from} → {to} ({metric})"));
        }
    }
    assert!(
        missing.is_empty(),
        "edges missing from the metrics (as mutual_tls): {missing:?}"
    );
    // The frontend's callers are authenticated as the gateway.
    let gateway = "spiffe://cluster.local/ns/mesh-system/sa/mesh-ingressgateway";
    let frontend = &scraped.iter().find(|(n, _)| n == "frontend-v1").unwrap().1;
    assert!(
        frontend.iter().any(
            |s| s.name == "mesh_requests_total" && s.label("source_principal") == Some(gateway)
        ),
        "the frontend saw no request from the gateway's identity"
    );

    // The gateway from Gateway API resources instead (the demo's `gateway-api.yaml`): a
    // Gateway of class mesh and an HTTPRoute to the frontend.
    std::fs::copy(
        state.join("gateway-api.yaml"),
        info.config_dir.join(meshctl::demo::topology::GATEWAY_FILE),
    )
    .expect("apply the Gateway API gateway");
    let gateway_admin = info
        .proxies
        .iter()
        .find(|p| p.name == "mesh-ingressgateway")
        .unwrap()
        .admin;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = curl(&jar, &format!("http://{gateway_admin}/config_dump"), &[]);
        let dump: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let from_route = dump["config"]["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["virtualHosts"].as_array().into_iter().flatten())
            .any(|v| v["name"] == "HTTPRoute:default/frontend:80");
        if from_route {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not get the HTTPRoute within 30s:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, home) = curl(&jar, &format!("{base}/"), &[]);
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("/product/OLJCESPC7Z"), "{home}");

    // The canary: 10 % ± 3 of productcatalogservice's requests move to v2, by subsets of
    // a DestinationRule and a VirtualService's weights, then by Gateway API (a GRPCRoute
    // attached to the Service, weights over a Service per version).
    canary_moves_a_tenth_of_the_catalog_requests(
        &meshctl,
        &state,
        &info,
        &base,
        "canary-90-10.yaml",
        ["v1", "v2"],
    );
    canary_moves_a_tenth_of_the_catalog_requests(
        &meshctl,
        &state,
        &info,
        &base,
        "canary-90-10-gateway-api.yaml",
        ["productcatalogservice-v1", "productcatalogservice-v2"],
    );

    // Ctrl-C (SIGINT) stops it; nothing stays behind. (--duration is the safety net.)
    let pid = nix::unistd::Pid::from_raw(demo.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("send SIGINT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "meshctl demo did not stop within 30s of SIGINT:\n{}",
            demo.drain()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = demo.drain();
    assert!(status.success(), "{status}:\n{output}");
    assert!(output.contains("stopped (interrupted)"), "{output}");
    let ours = |cmdline: &str| {
        ["mesh-control", "mesh-proxy", "boutique", "redis-server"]
            .iter()
            .any(|b| cmdline.contains(b))
    };
    let left: Vec<&str> = info
        .processes
        .iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| ours(&String::from_utf8_lossy(&c)))
        })
        .map(|p| p.name.as_str())
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!state.exists(), "the state directory was not removed");
    if transparent {
        // The pods' namespaces and the files shared with the sidecars are gone too.
        let netns = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("run ip netns list");
        let prefix = format!("mtb-{}-", info.pid);
        let namespaces = String::from_utf8_lossy(&netns.stdout);
        assert!(
            !namespaces.contains(&prefix),
            "namespaces left behind:\n{namespaces}"
        );
        let shared = format!("/run/mesh-demo-{}", info.pid);
        assert!(!Path::new(&shared).exists(), "{shared} was not removed");
    }
}

/// The clients of productcatalogservice, whose sidecars split its requests.
const CATALOG_CLIENTS: [&str; 3] = [
    "frontend-v1",
    "checkoutservice-v1",
    "recommendationservice-v1",
];

/// Whether a sidecar's `/config_dump` routes productcatalogservice to these backends (a
/// subset's name, or a Service's short name) with these weights.
fn routes_with_weights(dump: &serde_json::Value, want: &[(&str, u64)]) -> bool {
    let weights: Vec<(String, u64)> = dump["config"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["port"] == 3550)
        .flat_map(|t| t["http"].as_array().into_iter().flatten())
        .flat_map(|r| {
            r["action"]["forward"]["backends"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|b| {
            let cluster = &b["cluster"];
            let subset = cluster["subset"].as_str().unwrap_or_default();
            let host = cluster["hostname"].as_str().unwrap_or_default();
            let name = if subset.is_empty() {
                host.split('.').next().unwrap_or_default()
            } else {
                subset
            };
            (name.to_owned(), b["weight"].as_u64().unwrap_or_default())
        })
        .collect();
    want.iter()
        .all(|(name, weight)| weights.contains(&((*name).to_owned(), *weight)))
}

/// Applies one of the demo's canaries (`file`, as the `cp` it prints), waits until the
/// catalog's clients route to `backends` (v1's, v2's) by 90/10, then drives product pages
/// through the gateway (bounded in count and time) and checks v2's share of
/// productcatalogservice's requests, and that `meshctl stat` shows the split.
fn canary_moves_a_tenth_of_the_catalog_requests(
    meshctl: &Path,
    state: &Path,
    info: &Info,
    base: &str,
    file: &str,
    backends: [&str; 2],
) {
    std::fs::copy(
        state.join(file),
        info.config_dir.join(meshctl::demo::topology::ROUTES_FILE),
    )
    .expect("apply the canary");
    let admins: Vec<SocketAddr> = info
        .proxies
        .iter()
        .filter(|p| CATALOG_CLIENTS.contains(&p.name.as_str()))
        .map(|p| p.admin)
        .collect();
    assert_eq!(admins.len(), 3, "{:?}", info.proxies);
    let jar = state.join(format!("{file}.cookies"));
    let deadline = Instant::now() + Duration::from_secs(30);
    for admin in &admins {
        loop {
            let (status, body) = curl(&jar, &format!("http://{admin}/config_dump"), &[]);
            let dump: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let want = [(backends[0], 90), (backends[1], 10)];
            if status == 200 && routes_with_weights(&dump, &want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the 90/10 routes did not reach the sidecar at {admin} within 30s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let sidecars: Vec<SocketAddr> = info.proxies.iter().map(|p| p.metrics).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (before, _) = rt.block_on(stat::scrape_all(&sidecars));
    let started = Instant::now();

    // Four shoppers browse product pages (about six catalog requests each) until they
    // have seen 300 between them and `meshctl stat` has measured; at most 1200 pages or
    // 90 s.
    let products = [
        "OLJCESPC7Z",
        "66VCHSJNUP",
        "1YMWWN1N4O",
        "L9ECAV7KIM",
        "2ZYFJ3GM2N",
    ];
    let done = AtomicUsize::new(0);
    let measured = AtomicBool::new(false);
    let stat_out = std::thread::scope(|scope| {
        for shopper in 0..4 {
            let (done, measured) = (&done, &measured);
            let jar = state.join(format!("shopper-{shopper}"));
            scope.spawn(move || {
                let mut i = shopper;
                loop {
                    let n = done.load(Ordering::Relaxed);
                    let enough = n >= 300 && measured.load(Ordering::Relaxed);
                    if enough || n >= 1200 || started.elapsed() > Duration::from_secs(90) {
                        return;
                    }
                    let url = format!("{base}/product/{}", products[i % products.len()]);
                    let (status, body) = curl(&jar, &url, &[]);
                    assert_eq!(status, 200, "{url}: {body}");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let out = Command::new(meshctl)
            .args(["stat", "--window", "3s", "--state-dir"])
            .arg(state)
            .output()
            .expect("run meshctl stat");
        measured.store(true, Ordering::Relaxed);
        out
    });
    let elapsed = started.elapsed();
    let (after, _) = rt.block_on(stat::scrape_all(&sidecars));

    // `meshctl stat`, measuring while the shoppers browse, shows both versions with their
    // shares of the service.
    let text = String::from_utf8_lossy(&stat_out.stdout);
    assert!(
        stat_out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&stat_out.stderr)
    );
    assert!(
        text.lines().next().unwrap_or_default().contains("SHARE"),
        "{text}"
    );
    for workload in [
        "productcatalogservice-v1",
        "productcatalogservice-v2",
        "frontend-v1",
    ] {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(workload))
            .unwrap_or_else(|| panic!("no {workload} row:\n{text}"));
        let share = row.split_whitespace().nth(3).unwrap_or_default();
        assert!(share.ends_with('%'), "{workload} has no share:\n{text}");
    }

    // Over all of the browsing: 10 % ± 3 points of the catalog's requests went to v2.
    let rows = stat::rows(&before, &after, elapsed);
    // A workload has a row per service it was reached as (the Gateway API canary reaches
    // it as productcatalogservice-v1 where the first reached it as productcatalogservice).
    let requests = |w: &str| {
        rows.iter()
            .filter(|r| r.key.workload == w)
            .map(|r| r.rps * elapsed.as_secs_f64())
            .sum::<f64>()
    };
    let (v1, v2) = (
        requests("productcatalogservice-v1"),
        requests("productcatalogservice-v2"),
    );
    assert!(
        v1 + v2 >= 1500.0,
        "too few catalog requests to judge the split: v1 {v1:.0}, v2 {v2:.0}"
    );
    let share = 100.0 * v2 / (v1 + v2);
    eprintln!(
        "canary ({file}): v2 got {share:.1}% of {:.0} catalog requests in {elapsed:.1?}",
        v1 + v2
    );
    assert!(
        (7.0..=13.0).contains(&share),
        "v2 got {share:.1}% of {:.0} catalog requests, not 10 ± 3",
        v1 + v2
    );
}

#[test]
fn transparent_plan_points_apps_at_service_vips_and_entries_at_pod_ips() {
    let mut plan = Plan::new(10, gateway(), true);
    plan.place(|name| {
        let i = plan_index(name);
        Ipv4Addr::new(10, 200, 0, 2 + i)
    });
    let dir = tempfile::tempdir().unwrap();
    let (problems, _) = load(dir.path(), &plan, None);
    assert!(problems.is_empty(), "{problems:#?}");
    let entries = std::fs::read_to_string(dir.path().join("workloads.yaml")).unwrap();
    let services = std::fs::read_to_string(dir.path().join("services.yaml")).unwrap();
    // The host addresses stay (forwarded); the mesh sees the pods' own.
    let frontend = plan.pods.iter().find(|p| p.name == "frontend-v1").unwrap();
    assert_eq!(frontend.ip.octets()[..2], [127, 10]);
    assert!(
        entries.contains(&format!("address: {}", frontend.cluster_ip)),
        "{entries}"
    );
    assert!(!entries.contains("address: 127."), "{entries}");
    // Each application dials the VIP (clusterIP) of every Service it calls.
    let env = plan.service_env(frontend);
    assert_eq!(env.len(), 7, "{env:?}");
    for (var, addr) in &env {
        let addr: SocketAddr = addr.parse().unwrap();
        let component = COMPONENTS.iter().find(|c| c.env == var).unwrap();
        assert_eq!(addr.port(), component.port, "{var}");
        assert!(
            services.contains(&format!(
                "name: {}\n  namespace: default\nspec:\n  clusterIP: {}\n",
                component.name,
                addr.ip()
            )),
            "{var}={addr} is not {}'s clusterIP:\n{services}",
            component.name
        );
    }
}

fn plan_index(name: &str) -> u8 {
    let plan = Plan::new(10, gateway(), true);
    plan.pods.iter().position(|p| p.name == name).unwrap() as u8
}
