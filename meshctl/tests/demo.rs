//! `meshctl demo` and `meshctl stat`: the generated local-mode config loads and validates
//! cleanly (with and without the canary), the address plan has no collisions, the metrics
//! table's arithmetic is right, and — when the sibling binaries are built — the whole demo
//! serves the shop through the gateway over mutual TLS and leaves no process behind.
//!
//! The end-to-end test needs `mesh-control`, `mesh-proxy` and `boutique` beside meshctl
//! (`cargo build -p mesh-control -p mesh-proxy -p online-boutique`) and `curl`; without
//! them it prints `SKIPPED: …`, and fails under `MESH_E2E=require`. `MESH_DEMO_BIN_DIR`
//! points it at binaries elsewhere (a release build).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_api::config::{Loader, Severity, validate};
use meshctl::demo::{Info, topology::Plan};
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
        text.contains("cartservice   cartservice-v1   25.00   90.0%     5.0ms   24.6ms   90.0%"),
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
    assert!(text.contains("cartservice-v1   0.00   -   "), "{text}");
}

// === end to end ===

/// Skips (printing why), or fails under `MESH_E2E=require`.
fn skip(why: &str) {
    if std::env::var("MESH_E2E").is_ok_and(|v| v == "require") {
        panic!("MESH_E2E=require but {why}");
    }
    eprintln!("SKIPPED: {why}");
}

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
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("demo");
    let shop = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(&meshctl)
        .args(["demo", "--duration", "40s", "--no-loadgen", "--no-redis"])
        .args(["--gateway-addr", &shop, "--loopback-net", "79"])
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

    // Every sidecar that served a request received it over mutual TLS (its
    // `reporter="destination"` series), the frontend's from the gateway's identity.
    // productcatalogservice-v2 gets no traffic before the canary; the gateway only
    // reports the client side.
    let gateway = "spiffe://cluster.local/ns/mesh-system/sa/mesh-ingressgateway";
    for proxy in info
        .proxies
        .iter()
        .filter(|p| p.name != "productcatalogservice-v2" && p.name != "mesh-ingressgateway")
    {
        let (status, text) = curl(&jar, &format!("http://{}/metrics", proxy.metrics), &[]);
        assert_eq!(status, 200, "{}: {text}", proxy.name);
        let mtls: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("mesh_requests_total{")
                    && l.contains(r#"reporter="destination""#)
                    && l.contains(r#"connection_security_policy="mutual_tls""#)
            })
            .collect();
        assert!(
            !mtls.is_empty(),
            "{} received no request over mutual TLS:\n{text}",
            proxy.name
        );
        if proxy.name == "frontend-v1" {
            assert!(
                mtls.iter().any(|l| l.contains(gateway)),
                "the frontend saw no mutual TLS request from the gateway:\n{text}"
            );
        }
    }

    // `meshctl stat` prints the same table once, from the demo's demo.json.
    let out = Command::new(&meshctl)
        .args(["stat", "--window", "500ms", "--state-dir"])
        .arg(&state)
        .output()
        .expect("run meshctl stat");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for workload in ["frontend-v1", "checkoutservice-v1", "paymentservice-v1"] {
        assert!(text.contains(workload), "no {workload} row:\n{text}");
    }

    // The --duration ends it; nothing stays behind.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "meshctl demo did not stop after --duration:\n{}",
            demo.drain()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = demo.drain();
    assert!(status.success(), "{status}:\n{output}");
    assert!(
        output.contains("stopped (the --duration elapsed)"),
        "{output}"
    );
    let left: Vec<&str> = info
        .processes
        .iter()
        .filter(|p| Path::new(&format!("/proc/{}", p.pid)).exists())
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("127.79.0."))
        })
        .map(|p| p.name.as_str())
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!state.exists(), "the state directory was not removed");
}
