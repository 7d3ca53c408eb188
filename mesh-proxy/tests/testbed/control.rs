//! The control plane end to end: `mesh-control --config-dir` in a pod of its own, sidecars in pods
//! that take their config from it over the discovery stream (`--control-plane`), steady
//! traffic from a client pod, and the config directory edited under it:
//!
//! - the VirtualService goes from 90/10 to 50/50 → the observed split follows within 1 s;
//! - a new WorkloadEntry (a new backend pod) → it gets traffic within 1 s;
//! - mesh-control killed and restarted → proxies keep serving and resync;
//! - a broken YAML file → traffic untouched, `meshctl proxy-status` stays SYNCED, and
//!   mesh-control names the file and line;
//!
//! and not one request fails throughout. A second scenario has a proxy refuse an update
//! (over its `--max-resources` limit): it NACKs, keeps serving, and `meshctl
//! proxy-status` shows NACKED with the reason. A third renews 10-second workload
//! certificates and rotates the CA's root under steady traffic without a failed request.
//!
//! Every sidecar gets its certificate from mesh-control's CA with a local-mode token, and
//! talks to mesh-control and to its peers over mutual TLS.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Behavior};
use crate::harness::{
    self, BIN, GRPC_TOOL, Mesh, PYTHON, PYTHON_TOOL, get, http_get, metric_sum, run_bounded,
    wait_until,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 80);
const PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;

/// The binaries next to the proxy's (the workspace build puts them side by side).
fn sibling(name: &str) -> PathBuf {
    let path = Path::new(BIN).with_file_name(name);
    assert!(
        path.is_file(),
        "{} not found: build the workspace first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A `mesh-control` process in its own pod (no sidecar, no capture), as in a cluster;
/// killed on drop.
struct ControlPlane {
    pod: mesh_testbed::Pod,
    child: Option<mesh_testbed::Process>,
    /// Where proxies reach it (the pod's address).
    discovery: SocketAddr,
    /// The debug API, on the pod's loopback.
    debug: SocketAddr,
    dir: PathBuf,
    /// Its state directory: the CA, the local-mode tokens, the trust bundle.
    state: PathBuf,
    /// More `mesh-control` arguments.
    extra: Vec<String>,
    log: PathBuf,
}

impl ControlPlane {
    /// Starts mesh-control on `dir` in the pod `control`.
    fn start(mesh: &Mesh, dir: &Path) -> Self {
        Self::start_with(mesh, dir, &[])
    }

    /// [`ControlPlane::start`] with more `mesh-control` arguments.
    fn start_with(mesh: &Mesh, dir: &Path, extra: &[&str]) -> Self {
        let pod = mesh.pod("control").clone();
        let mut cp = Self {
            discovery: SocketAddr::from((pod.ip(), 15012)),
            debug: SocketAddr::from((Ipv4Addr::LOCALHOST, 15014)),
            pod,
            child: None,
            dir: dir.to_owned(),
            state: mesh.subdir("control-state", 0o700),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: mesh.dir().join("mesh-control.log"),
        };
        cp.restart();
        cp
    }

    /// The `mesh-proxy run` flags a workload with service account `sa` in `pod` needs to
    /// get its certificate from this control plane: its local-mode token and the trust
    /// bundle, copied where the proxy's uid can read them (as a projected token and the
    /// root ConfigMap are mounted into a Kubernetes pod).
    fn credentials(&self, mesh: &Mesh, pod: &str, sa: &str) -> Vec<String> {
        let mut cmd = self.pod.command(sibling("mesh-control"));
        cmd.arg("token")
            .arg("--state-dir")
            .arg(&self.state)
            .arg(format!("default/{sa}"));
        let out = run_bounded(&mut cmd, Duration::from_secs(20), "mesh-control token");
        assert!(out.success, "mesh-control token: {}", out.text());
        let token = PathBuf::from(out.stdout.trim());
        let dir = mesh.subdir(&format!("{pod}-credentials"), 0o755);
        std::fs::copy(&token, dir.join("token")).expect("copy the token");
        // The proxy runs as uid 1337 (a projected token is mounted readable by the pod).
        std::fs::set_permissions(dir.join("token"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod the token copy");
        std::fs::copy(self.state.join("trust-bundle.pem"), dir.join("bundle.pem"))
            .expect("copy the trust bundle");
        vec![
            "--token-file".into(),
            dir.join("token").display().to_string(),
            "--ca-bundle".into(),
            dir.join("bundle.pem").display().to_string(),
        ]
    }

    /// Injects a sidecar into `pod` that gets its config and certificate from this
    /// control plane.
    fn join(&self, mesh: &mut Mesh, pod: &str, sa: &str, extra: &[&str]) {
        let mut args = self.credentials(mesh, pod, sa);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mesh.sidecar_discovery(pod, self.discovery, sa, &args);
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "mesh-control already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the mesh-control log");
        let mut cmd = self.pod.command(sibling("mesh-control"));
        cmd.arg("--config-dir")
            .arg(&self.dir)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.extra)
            .arg("--discovery-addr")
            .arg(format!("0.0.0.0:{}", self.discovery.port()))
            .arg("--debug-addr")
            .arg(self.debug.to_string())
            .env("MESH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        self.child = Some(self.pod.spawn(&mut cmd).expect("start mesh-control"));
        wait_until("mesh-control ready", Duration::from_secs(20), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mesh-control exited ({status}):\n{}", self.log_text());
            }
            match self.get("/healthz/ready") {
                Ok((200, _)) => Ok(()),
                Ok((s, b)) => Err(format!("{s} {b}")),
                Err(e) => Err(e),
            }
        });
    }

    /// `GET path` on the debug API.
    fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.pod, self.debug, path)
    }

    /// SIGKILL, as a crashed or evicted control plane.
    fn kill(&mut self) {
        // Dropping the process kills (SIGKILL) and reaps it.
        drop(self.child.take().expect("mesh-control runs"));
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `meshctl proxy-status ARGS` against this control plane: (success, stdout+stderr).
    fn proxy_status(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = self.pod.command(sibling("meshctl"));
        cmd.arg("proxy-status")
            .arg("--control-plane")
            .arg(self.debug.to_string())
            .args(args);
        let out = run_bounded(&mut cmd, Duration::from_secs(20), "meshctl proxy-status");
        (out.success, out.text())
    }

    /// Waits until `meshctl proxy-status --check` passes (every proxy SYNCED) with `n`
    /// proxies listed.
    fn wait_all_synced(&self, n: usize) -> String {
        wait_until(
            "every proxy SYNCED in meshctl proxy-status",
            Duration::from_secs(20),
            || {
                let (ok, text) = self.proxy_status(&["--check"]);
                let rows = text.lines().filter(|l| l.contains("SYNCED")).count();
                if ok && rows == n { Ok(text) } else { Err(text) }
            },
        )
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        drop(self.child.take());
        if std::thread::panicking() {
            eprintln!("--- mesh-control log:\n{}", self.log_text());
        }
    }
}

/// An HTTP backend named `name` on the target port of `pod`.
fn backend(mesh: &Mesh, pod: &str, name: &'static str) -> Backend {
    Backend::start(mesh.pod(pod), TARGET_PORT, name, Behavior::default())
}

fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, dir.join(file)).expect("rename config");
}

fn workload_entry(name: &str, ip: Ipv4Addr, app: &str, version: &str) -> String {
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: default
spec:
  address: {ip}
  labels:
    app: {app}
    version: {version}
  serviceAccount: {app}
"
    )
}

/// The base config. The reviews DestinationRule balances round robin: these tests measure
/// how fast config reaches proxies, and with one sequential client the default P2C over
/// latency EWMAs sends everything to whichever endpoint currently looks fastest, so a new
/// backend whose first request was slower than its peer's average would get no traffic
/// for seconds, whatever the control plane does.
fn base_config(mesh: &Mesh) -> String {
    let ip = |pod: &str| mesh.pod(pod).ip();
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
spec:
  clusterIP: {VIP}
  selector:
    app: reviews
  ports:
  - name: http
    port: {PORT}
    targetPort: {TARGET_PORT}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
{}---
{}---
{}",
        workload_entry("client", ip("client"), "client", "v1"),
        workload_entry("reviews-v1", ip("reviews-v1"), "reviews", "v1"),
        workload_entry("reviews-v2", ip("reviews-v2"), "reviews", "v2"),
    )
}

fn split(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: {v1}
    - destination:
        host: reviews
        subset: v2
      weight: {v2}
"
    )
}

/// One request of the steady load.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    result: Result<(u16, String), String>,
}

/// Steady traffic from a thread in the client pod: one request every 10 ms to the
/// service VIP (through capture and both sidecars), until stopped. Bounded: at most
/// `max` requests.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), mesh_testbed::Error>>>,
}

impl Load {
    fn start(mesh: &Mesh, pod: &str, max: usize) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = mesh
            .pod(pod)
            .spawn_thread(move || {
                let target = SocketAddr::from((VIP, PORT));
                for i in 0..max {
                    if st.load(Ordering::Relaxed) {
                        break;
                    }
                    let at = Instant::now();
                    let result = get(target, &format!("/load/{i}"));
                    s.lock().expect("samples").push(Sample { at, result });
                    std::thread::sleep(Duration::from_millis(10).saturating_sub(at.elapsed()));
                }
            })
            .expect("start the load thread");
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .expect("load thread")
                .expect("load thread in the pod");
        }
        std::mem::take(&mut *self.samples.lock().expect("samples"))
    }

    /// Waits until the load has samples up to `until`, then returns those in
    /// `[from, until)`.
    fn window(&self, from: Instant, until: Instant) -> Vec<Sample> {
        wait_until("load samples", Duration::from_secs(30), || {
            let s = self.samples.lock().expect("samples");
            if s.last().is_some_and(|x| x.at >= until) {
                Ok(())
            } else {
                Err(format!("{} samples so far", s.len()))
            }
        });
        self.samples
            .lock()
            .expect("samples")
            .iter()
            .filter(|s| s.at >= from && s.at < until)
            .cloned()
            .collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The share of `samples` answered by `backend` (the backend's body starts with its
/// name); panics on any failure in them.
fn share(samples: &[Sample], backend: &str) -> f64 {
    assert!(!samples.is_empty(), "no samples in the window");
    let mut n = 0;
    for s in samples {
        match &s.result {
            Ok((200, body)) => {
                if body.split_whitespace().next() == Some(backend) {
                    n += 1;
                }
            }
            other => panic!("a request failed: {other:?}"),
        }
    }
    f64::from(n) / samples.len() as f64
}

/// Responses by body (backend name) or error.
fn histogram(samples: &[Sample]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for s in samples {
        let key = match &s.result {
            Ok((status, body)) => format!(
                "{status} {}",
                body.split_whitespace().next().unwrap_or_default()
            ),
            Err(e) => e.clone(),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

fn failures(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| !matches!(s.result, Ok((200, _))))
        .collect()
}

#[test]
fn config_changes_reach_running_traffic_without_failures() {
    let Some(mut mesh) = Mesh::new(
        &[
            "control",
            "client",
            "reviews-v1",
            "reviews-v2",
            "reviews-v2b",
        ],
        &[],
    ) else {
        return;
    };
    let dir = mesh.subdir("config", 0o755);
    write(&dir, "base.yaml", &base_config(&mesh));
    write(&dir, "reviews-vs.yaml", &split(90, 10));
    let mut cp = ControlPlane::start(&mesh, &dir);

    let _v1 = backend(&mesh, "reviews-v1", "v1");
    let _v2 = backend(&mesh, "reviews-v2", "v2");
    let _v2b = backend(&mesh, "reviews-v2b", "v2b");
    cp.join(&mut mesh, "client", "client", &[]);
    cp.join(&mut mesh, "reviews-v1", "reviews", &[]);
    cp.join(&mut mesh, "reviews-v2", "reviews", &[]);
    cp.join(&mut mesh, "reviews-v2b", "reviews", &[]);
    cp.wait_all_synced(4);

    // ~100 requests/s for at most 60 s.
    let load = Load::start(&mesh, "client", 6000);
    let t0 = Instant::now();
    let before = load.window(t0, t0 + Duration::from_secs(2));
    let v2 = share(&before, "v2");
    assert!(
        (0.02..=0.25).contains(&v2),
        "90/10: v2 share {v2:.2}: {:?}",
        histogram(&before)
    );

    // 90/10 → 50/50: the split follows within 1 s.
    let t1 = Instant::now();
    write(&dir, "reviews-vs.yaml", &split(50, 50));
    let after = load.window(t1 + Duration::from_secs(1), t1 + Duration::from_secs(3));
    let v2 = share(&after, "v2");
    assert!(
        (0.30..=0.70).contains(&v2),
        "50/50 one second after the edit: v2 share {v2:.2} of {}",
        after.len()
    );

    // A new backend: its WorkloadEntry gets traffic within 1 s.
    let t2 = Instant::now();
    write(
        &dir,
        "reviews-v2b.yaml",
        &workload_entry("reviews-v2b", mesh.pod("reviews-v2b").ip(), "reviews", "v2"),
    );
    let after = load.window(t2 + Duration::from_secs(1), t2 + Duration::from_secs(3));
    let v2b = share(&after, "v2b");
    assert!(
        v2b > 0.05,
        "the new backend gets traffic one second after its WorkloadEntry: {v2b:.2} of {}",
        after.len()
    );

    // The control plane dies and comes back: traffic does not notice, proxies resync.
    cp.kill();
    let t3 = Instant::now();
    let during = load.window(t3, t3 + Duration::from_secs(2));
    assert!(failures(&during).is_empty(), "{:?}", failures(&during));
    cp.restart();
    cp.wait_all_synced(4);

    // A broken file: rejected with file and line, traffic untouched, proxies SYNCED.
    write(
        &dir,
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  ports:\n  - port: 99999\n",
    );
    let registry = wait_until("the broken file rejected", Duration::from_secs(10), || {
        let (status, body) = cp.get("/debug/registry")?;
        let r: mesh_api::status::RegistryStatus =
            serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if r.rejected.is_empty() {
            Err(body)
        } else {
            Ok(r)
        }
    });
    assert!(
        registry
            .rejected
            .iter()
            .any(|l| l.contains("broken.yaml:7")),
        "{:#?}",
        registry.rejected
    );
    wait_until(
        "mesh-control logs the rejection",
        Duration::from_secs(5),
        || {
            let log = cp.log_text();
            if log.contains("broken.yaml:7") {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    );
    let t4 = Instant::now();
    let after = load.window(t4, t4 + Duration::from_secs(1));
    assert!(failures(&after).is_empty(), "{:?}", failures(&after));
    let (ok, text) = cp.proxy_status(&["--check"]);
    assert!(ok, "proxies stay SYNCED after a rejected change:\n{text}");

    let samples = load.stop();
    let failed = failures(&samples);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        samples.len() > 500,
        "only {} requests were sent",
        samples.len()
    );
}

#[test]
fn a_refused_update_is_nacked_and_the_proxy_keeps_serving() {
    let Some(mut mesh) = Mesh::new(&["control", "client", "reviews-v1", "reviews-v2"], &[]) else {
        return;
    };
    let dir = mesh.subdir("config", 0o755);
    write(&dir, "base.yaml", &base_config(&mesh));
    let cp = ControlPlane::start(&mesh, &dir);
    let _v1 = backend(&mesh, "reviews-v1", "v1");
    let _v2 = backend(&mesh, "reviews-v2", "v2");
    // The client proxy accepts at most 8 resources: today's config fits, a bigger mesh
    // does not.
    cp.join(&mut mesh, "client", "client", &["--max-resources", "8"]);
    cp.join(&mut mesh, "reviews-v1", "reviews", &[]);
    cp.join(&mut mesh, "reviews-v2", "reviews", &[]);
    cp.wait_all_synced(3);

    // meshctl shows what the CA issued to a proxy, selected by pod name.
    let mut cmd = cp.pod.command(sibling("meshctl"));
    cmd.args(["proxy-config", "client", "secret", "--control-plane"])
        .arg(cp.debug.to_string());
    let out = run_bounded(
        &mut cmd,
        Duration::from_secs(20),
        "meshctl proxy-config secret",
    );
    assert!(out.success, "{}", out.text());
    let text = out.text();
    assert!(
        text.contains("spiffe://cluster.local/ns/default/sa/client") && text.contains("expires in"),
        "{text}"
    );

    let more: String = (0..5)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: extra-{i}\n  namespace: default\nspec:\n  clusterIP: 10.96.1.{}\n  selector:\n    app: extra-{i}\n  ports:\n  - name: http\n    port: 80\n",
                i + 1
            )
        })
        .collect();
    write(&dir, "more.yaml", &more);
    let text = wait_until("the client proxy NACKED", Duration::from_secs(15), || {
        let (_, text) = cp.proxy_status(&[]);
        if text.contains("NACKED") && text.contains("--max-resources") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(text.contains("client"), "{text}");
    let (ok, _) = cp.proxy_status(&["--check"]);
    assert!(!ok, "--check fails while a proxy is NACKED");

    // It keeps serving its last good config.
    let target = SocketAddr::from((VIP, PORT));
    for i in 0..20 {
        let r = mesh
            .pod("client")
            .run_in(move || get(target, &format!("/after-nack/{i}")))
            .expect("run in the client pod");
        assert!(matches!(r, Ok((200, _))), "{r:?}");
    }
}

/// The serial of the CA's signing root and the rotation phase, from `/debug/ca`.
fn ca_state(cp: &ControlPlane) -> (String, String) {
    let (status, body) = cp.get("/debug/ca").expect("GET /debug/ca");
    assert_eq!(status, 200, "{body}");
    let ca: serde_json::Value = serde_json::from_str(&body).expect("CA status JSON");
    (
        ca["signing"]["serial"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        ca["rotation"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The serials of the roots the proxy in `pod` trusts, from its `/config_dump`.
fn proxy_bundle(mesh: &Mesh, pod: &str) -> Vec<String> {
    let (status, body) = http_get(
        mesh.pod(pod),
        (Ipv4Addr::LOCALHOST, 15000).into(),
        "/config_dump",
    )
    .expect("GET /config_dump");
    assert_eq!(status, 200, "{body}");
    let dump: serde_json::Value = serde_json::from_str(&body).expect("config dump JSON");
    dump["identity"]["trustBundle"]
        .as_array()
        .map(|roots| {
            roots
                .iter()
                .filter_map(|r| r["serial"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Successful certificate renewals of the proxy in `pod`.
fn renewals(mesh: &Mesh, pod: &str) -> f64 {
    metric_sum(
        &mesh.metrics(pod),
        "mesh_proxy_certificate_renewals_total",
        &[("result", "success")],
    )
}

/// The gRPC service `versioned` (port 50051) on the reviews pods.
const GRPC_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 81);
const GRPC_PORT: u16 = 50051;

fn grpc_service() -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: versioned
  namespace: default
spec:
  clusterIP: {GRPC_VIP}
  selector:
    app: reviews
  ports:
  - name: grpc
    port: {GRPC_PORT}
    targetPort: {GRPC_PORT}
"
    )
}

/// Rounds of gRPC calls from the client pod (unary calls, then server-streaming calls, on
/// one channel each round) until stopped; the JSON reports of `grpc_client.py`.
struct GrpcLoad {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<serde_json::Value>>>,
}

impl GrpcLoad {
    fn start(mesh: &Mesh, generated: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let script = harness::fixtures().join("grpc_client.py");
        let mut commands: Vec<std::process::Command> = (0..40)
            .map(|_| {
                let mut cmd = mesh.app_command("client", PYTHON);
                cmd.arg(&script)
                    .arg(generated)
                    .arg(format!("{GRPC_VIP}:{GRPC_PORT}"))
                    .args(["100", "10", "50"]);
                cmd
            })
            .collect();
        let thread = std::thread::spawn(move || {
            let mut reports = Vec::new();
            // Bounded: at most 40 rounds.
            for cmd in &mut commands {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let out = run_bounded(cmd, Duration::from_secs(120), "grpc_client.py");
                assert!(out.success, "the gRPC client failed: {}", out.text());
                reports.push(
                    serde_json::from_str(out.stdout.trim())
                        .unwrap_or_else(|e| panic!("bad client report ({e}): {}", out.text())),
                );
            }
            reports
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<serde_json::Value> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the gRPC load thread")
    }
}

impl Drop for GrpcLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Workload certificates live 10 s here (renewed every ~5 s) so that each proxy renews ten
/// times within a minute of steady HTTP traffic and rounds of gRPC unary and
/// server-streaming calls; halfway, the CA's root is rotated. Not one request or call
/// fails, every proxy ends up trusting only the new root, and renews under it.
/// (With `--workload-cert-ttl 60s` the same scenario takes five minutes.)
#[test]
fn certificates_and_the_root_rotate_under_load_without_failures() {
    let Some(mut mesh) = Mesh::new(
        &["control", "client", "reviews-v1", "reviews-v2"],
        &[PYTHON_TOOL, GRPC_TOOL],
    ) else {
        return;
    };
    let dir = mesh.subdir("config", 0o755);
    write(&dir, "base.yaml", &base_config(&mesh));
    write(&dir, "grpc.yaml", &grpc_service());
    let generated = harness::generate_grpc_python(&mesh);
    let fixtures = harness::fixtures();
    let cp = ControlPlane::start_with(
        &mesh,
        &dir,
        &["--workload-cert-ttl", "10s", "--root-rotation-grace", "2s"],
    );
    let _v1 = backend(&mesh, "reviews-v1", "v1");
    let _v2 = backend(&mesh, "reviews-v2", "v2");
    let pods = ["client", "reviews-v1", "reviews-v2"];
    cp.join(&mut mesh, "client", "client", &[]);
    cp.join(&mut mesh, "reviews-v1", "reviews", &[]);
    cp.join(&mut mesh, "reviews-v2", "reviews", &[]);
    cp.wait_all_synced(3);
    let server = fixtures.join("grpc_server.py");
    for (pod, version) in [("reviews-v1", "v1"), ("reviews-v2", "v2")] {
        mesh.spawn_app(
            pod,
            PYTHON,
            &[
                server.to_str().expect("a UTF-8 path"),
                generated.to_str().expect("a UTF-8 path"),
                &GRPC_PORT.to_string(),
                version,
                "300",
            ],
        );
        mesh.wait_for_listener(pod, SocketAddr::from(([127, 0, 0, 1], GRPC_PORT)));
    }

    // ~100 HTTP requests/s for at most 120 s, and gRPC unary and streaming calls.
    let load = Load::start(&mesh, "client", 12_000);
    let grpc = GrpcLoad::start(&mesh, &generated);

    // Halfway through the renewals, rotate the root.
    wait_until("five renewals per proxy", Duration::from_secs(60), || {
        let n: Vec<f64> = pods.iter().map(|p| renewals(&mesh, p)).collect();
        if n.iter().all(|&n| n >= 5.0) {
            Ok(())
        } else {
            Err(format!("{n:?}"))
        }
    });
    let (old_root, phase) = ca_state(&cp);
    assert_eq!(phase, "STABLE");
    let mut rotate = cp.pod.command(sibling("mesh-control"));
    rotate.args(["ca", "rotate", "--state-dir"]).arg(&cp.state);
    let out = run_bounded(
        &mut rotate,
        Duration::from_secs(20),
        "mesh-control ca rotate",
    );
    assert!(out.success, "mesh-control ca rotate: {}", out.text());
    // The new root signs after the grace period…
    let new_root = wait_until("the new root signs", Duration::from_secs(30), || {
        let (serial, phase) = ca_state(&cp);
        if serial != old_root {
            Ok(serial)
        } else {
            Err(phase)
        }
    });
    // …and once the old root's certificates have expired, the proxies trust only the new
    // one (so every certificate in use now chains to it).
    for pod in pods {
        wait_until(
            &format!("{pod} trusts only the new root"),
            Duration::from_secs(40),
            || {
                let roots = proxy_bundle(&mesh, pod);
                if roots == [new_root.clone()] {
                    Ok(())
                } else {
                    Err(format!("{roots:?}"))
                }
            },
        );
    }
    let after: Vec<f64> = pods.iter().map(|p| renewals(&mesh, p)).collect();
    wait_until(
        "ten renewals per proxy, two under the new root alone",
        Duration::from_secs(60),
        || {
            let n: Vec<f64> = pods.iter().map(|p| renewals(&mesh, p)).collect();
            let done = n
                .iter()
                .zip(&after)
                .all(|(n, a)| *n >= 10.0 && *n >= a + 2.0);
            if done {
                Ok(())
            } else {
                Err(format!("{n:?} (after the switch: {after:?})"))
            }
        },
    );

    let samples = load.stop();
    let failed = failures(&samples);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during certificate and root rotation: {:?}\n{:?}",
        failed.len(),
        samples.len(),
        histogram(&samples),
        failed.first()
    );
    assert!(samples.len() > 1000, "only {} requests", samples.len());
    let reports = grpc.stop();
    assert!(reports.len() >= 2, "only {} gRPC rounds", reports.len());
    for r in &reports {
        for errors in ["unary_errors", "stream_errors"] {
            assert_eq!(r[errors].as_object().map(|o| o.len()), Some(0), "{r}");
        }
        for s in r["streams"].as_array().expect("streams") {
            assert_eq!(s["messages"].as_u64(), Some(50), "{s}");
            assert_eq!(s["seqs_in_order"].as_bool(), Some(true), "{s}");
        }
    }
}
