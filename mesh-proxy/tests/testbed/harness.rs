//! The testbed harness: a [`Mesh`] of pods with real capture and real sidecars, the
//! third-party tools the tests need ([`Tool`]), bounded command runs, curl, plain HTTP GETs
//! from inside a pod, and Prometheus text parsing.
//!
//! A test builds a [`Mesh`] (which applies the `MESH_E2E` skip/require policy to the testbed
//! and to its tools), describes workloads and a [`Topology`], and calls [`Mesh::sidecar`]
//! per meshed pod: that writes the pod's proxy config, runs `mesh-proxy init` as root in the
//! pod, starts `mesh-proxy run` as uid/gid 1337 and waits until `/healthz/ready` answers 200.
//! Applications run as uid/gid [`APP_UID`] ([`Mesh::spawn_app`]), so their connections are
//! captured. The mesh owns every process it starts and kills them before the testbed's
//! namespaces go away; when a test panics, the tail of every proxy and app log is printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mesh_api::model::{ProxyConfigSpec, Workload};
use mesh_testbed::{Pod, Process, Testbed, policy};

use crate::config::Topology;

/// The proxy binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mesh-proxy");
/// The system Python (Debian's, where `python3-grpcio` installs; readable by any uid).
pub(crate) const PYTHON: &str = "/usr/bin/python3";
/// curl.
pub(crate) const CURL: &str = "/usr/bin/curl";
/// The uid and gid applications run as: not the proxy's, so their traffic is captured.
pub(crate) const APP_UID: u32 = 1000;
/// The proxy's uid and gid (excluded from capture).
pub(crate) const PROXY_UID: u32 = 1337;
/// How long a sidecar may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect/read bound of the harness's own HTTP GETs.
const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// `tests/fixtures/testbed`: Python scripts and the proto.
/// Generates the Python gRPC code of `fixtures/testbed/testbed.proto` into the mesh's
/// `grpc-gen` directory (with `grpc_tools.protoc`); returns the directory.
pub(crate) fn generate_grpc_python(mesh: &Mesh) -> PathBuf {
    let generated = mesh.subdir("grpc-gen", 0o755);
    let protoc = run_bounded(
        Command::new(PYTHON)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(fixtures())
            .arg("--python_out")
            .arg(&generated)
            .arg("--grpc_python_out")
            .arg(&generated)
            .arg("testbed.proto"),
        Duration::from_secs(60),
        "grpc_tools.protoc",
    );
    assert!(protoc.success, "protoc failed: {}", protoc.text());
    generated
}

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testbed")
}

// === impl Tool ===

/// A third-party program a test needs, how to check for it and how to install it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tool {
    /// What is missing, for the message.
    pub(crate) name: &'static str,
    /// The Debian packages that provide it.
    pub(crate) packages: &'static str,
    /// A command line that succeeds when the tool is usable.
    pub(crate) probe: &'static [&'static str],
}

/// curl with `%header{}` in `--write-out` (7.84+; bookworm has 7.88).
pub(crate) const CURL_TOOL: Tool = Tool {
    name: "curl",
    packages: "curl",
    probe: &[CURL, "--version"],
};
/// Python 3.
pub(crate) const PYTHON_TOOL: Tool = Tool {
    name: "python3",
    packages: "python3",
    probe: &[PYTHON, "-c", "import socket, json"],
};
/// grpcio and grpc_tools for the system Python.
pub(crate) const GRPC_TOOL: Tool = Tool {
    name: "python3 grpcio and grpc_tools",
    packages: "python3-grpcio python3-grpc-tools",
    probe: &[PYTHON, "-c", "import grpc, grpc_tools.protoc"],
};
/// redis-server.
pub(crate) const REDIS_SERVER_TOOL: Tool = Tool {
    name: "redis-server",
    packages: "redis-server",
    probe: &["/usr/bin/redis-server", "--version"],
};
/// redis-cli.
pub(crate) const REDIS_CLI_TOOL: Tool = Tool {
    name: "redis-cli",
    packages: "redis-tools",
    probe: &["/usr/bin/redis-cli", "--version"],
};
/// Prometheus.
pub(crate) const PROMETHEUS_TOOL: Tool = Tool {
    name: "prometheus",
    packages: "prometheus",
    probe: &["/usr/bin/prometheus", "--version"],
};
/// promtool (ships with Debian's prometheus package).
pub(crate) const PROMTOOL_TOOL: Tool = Tool {
    name: "promtool",
    packages: "prometheus",
    probe: &["/usr/bin/promtool", "--version"],
};

impl Tool {
    fn present(&self) -> bool {
        let (program, args) = self.probe.split_first().expect("a probe command");
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The name libtest and nextest give the test's thread.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Whether every tool is present. When one is missing: under `MESH_E2E=require`, panics
/// with the install line; otherwise prints `SKIPPED: …` and returns false.
pub(crate) fn tools_or_skip(tools: &[Tool]) -> bool {
    let missing: Vec<&Tool> = tools.iter().filter(|t| !t.present()).collect();
    let Some(reason) = missing_reason(&missing) else {
        return true;
    };
    let env = std::env::var(policy::ENV).ok();
    if policy::Mode::parse(env.as_deref()) == Ok(policy::Mode::Require) {
        panic!("{}: {reason} ({}=require)", test_name(), policy::ENV);
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {}: {reason} (set {}=require to make this a failure)",
        test_name(),
        policy::ENV
    );
    false
}

/// `missing X, Y: apt-get install -y P Q`, or `None` when nothing is missing.
fn missing_reason(missing: &[&Tool]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let names = missing
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ");
    let mut packages: Vec<&str> = Vec::new();
    for p in missing.iter().flat_map(|t| t.packages.split(' ')) {
        if !packages.contains(&p) {
            packages.push(p);
        }
    }
    Some(format!(
        "missing {names}: apt-get install -y {}",
        packages.join(" ")
    ))
}

#[test]
fn missing_tools_name_their_packages() {
    assert_eq!(missing_reason(&[]), None);
    assert_eq!(
        missing_reason(&[&GRPC_TOOL, &PROMETHEUS_TOOL, &PROMTOOL_TOOL]).as_deref(),
        Some(
            "missing python3 grpcio and grpc_tools, prometheus, promtool: \
             apt-get install -y python3-grpcio python3-grpc-tools prometheus"
        )
    );
    let bogus = Tool {
        name: "bogus",
        packages: "bogus",
        probe: &["/nonexistent/mesh-testbed-tool"],
    };
    assert!(!bogus.present());
}

// === impl Mesh ===

/// A testbed whose pods run sidecars and apps. Field order is drop order: apps, then
/// sidecars, then the namespaces, then the temporary directory.
pub(crate) struct Mesh {
    apps: Vec<Guarded>,
    sidecars: Vec<Guarded>,
    tb: Testbed,
    dir: tempfile::TempDir,
}

/// A process the mesh started, with its log file.
struct Guarded {
    label: String,
    log: PathBuf,
    process: Option<Process>,
}

impl Mesh {
    /// Builds a testbed with these pods, when the machine can (`MESH_E2E` policy) and every
    /// tool is present; `None` means the test was skipped (and said so).
    pub(crate) fn new(pods: &[&str], tools: &[Tool]) -> Option<Self> {
        let builder = pods.iter().fold(Testbed::builder(), |b, name| b.pod(*name));
        let tb = mesh_testbed::testbed_or_skip(builder)?;
        if !tools_or_skip(tools) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("mesh-testbed-")
            .tempdir()
            .expect("create a temporary directory");
        // The proxy (uid 1337) and the apps (uid 1000) read configs and scripts from here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temporary directory");
        Some(Self {
            apps: Vec::new(),
            sidecars: Vec::new(),
            tb,
            dir,
        })
    }

    /// The pod named `name`.
    pub(crate) fn pod(&self, name: &str) -> &Pod {
        self.tb
            .pod(name)
            .unwrap_or_else(|| panic!("no pod {name:?}"))
    }

    /// The scenario's temporary directory (mode 0755, readable by every uid).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh subdirectory of [`Mesh::dir`] with `mode`.
    pub(crate) fn subdir(&self, name: &str, mode: u32) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::create_dir_all(&path).expect("create a subdirectory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod a subdirectory");
        path
    }

    /// Injects the sidecar into the pod of `workload` (the pod named `workload.name`):
    /// writes its config from `topology`, installs the capture rules, starts the proxy as
    /// uid/gid 1337 and waits until it is ready.
    pub(crate) fn sidecar(&mut self, workload: &Workload, topology: &Topology) {
        self.sidecar_spec(&topology.spec_for(workload));
    }

    /// [`Mesh::sidecar`] with a config of the test's own: the pod is the one named after
    /// `spec.workload`.
    pub(crate) fn sidecar_spec(&mut self, spec: &ProxyConfigSpec) {
        self.sidecar_spec_with(spec, &[]);
    }

    /// [`Mesh::sidecar_spec`] with extra `mesh-proxy run` arguments.
    pub(crate) fn sidecar_spec_with(&mut self, spec: &ProxyConfigSpec, extra: &[&str]) {
        let workload = spec
            .workload
            .as_ref()
            .expect("a sidecar config names its workload");
        let pod = self.pod(&workload.name).clone();
        let config = self.config_path(pod.name());
        self.replace_config(
            pod.name(),
            &serde_json::to_vec_pretty(spec).expect("serialize the proxy config"),
        );

        // Its certificate, from the test CA every sidecar of the test process trusts.
        let identity = self.subdir(&format!("{}-identity", pod.name()), 0o755);
        crate::pki::ca().issue_into(&spec.identity, &identity);
        let mut args: Vec<std::ffi::OsString> = vec![
            "--config".into(),
            config.into(),
            "--identity-dir".into(),
            identity.into(),
        ];
        args.extend(extra.iter().map(Into::into));
        self.start_sidecar(&pod, &args);
    }

    /// Injects a sidecar that takes its config from the control plane at `control_plane`
    /// (`--control-plane`), as the workload `pod_name` with `service_account`; `extra` are
    /// more `mesh-proxy run` arguments. Waits until it is ready (it has its config).
    pub(crate) fn sidecar_discovery(
        &mut self,
        pod: &str,
        control_plane: SocketAddr,
        service_account: &str,
        extra: &[&str],
    ) {
        let pod = self.pod(pod).clone();
        let mut args: Vec<std::ffi::OsString> = vec![
            "--control-plane".into(),
            control_plane.to_string().into(),
            "--pod-name".into(),
            pod.name().into(),
            "--pod-namespace".into(),
            "default".into(),
            "--pod-ip".into(),
            pod.ip().to_string().into(),
            "--service-account".into(),
            service_account.into(),
        ];
        args.extend(extra.iter().map(Into::into));
        self.start_sidecar(&pod, &args);
    }

    /// Runs `mesh-proxy init` in `pod`, then `mesh-proxy run ARGS` as uid/gid 1337, and waits
    /// until it is ready.
    fn start_sidecar(&mut self, pod: &Pod, run_args: &[std::ffi::OsString]) {
        let init = run_bounded(
            pod.command(BIN).arg("init"),
            Duration::from_secs(30),
            &format!("mesh-proxy init in {}", pod.name()),
        );
        assert!(
            init.success,
            "mesh-proxy init in {} failed: {}",
            pod.name(),
            init.text()
        );
        assert!(
            init.stdout.contains("applied IPv4 rules"),
            "{}",
            init.text()
        );

        let log = self.dir().join(format!("{}-proxy.log", pod.name()));
        let mut cmd = pod.command_as(BIN, PROXY_UID, PROXY_UID);
        cmd.arg("run").args(run_args).env("MESH_LOG", "info");
        let process = spawn_logged(pod, &mut cmd, &log);
        self.sidecars.push(Guarded {
            label: format!("proxy in {}", pod.name()),
            log,
            process: Some(process),
        });
        let index = self.sidecars.len() - 1;
        self.wait_ready(pod, index);
    }

    fn wait_ready(&mut self, pod: &Pod, index: usize) {
        let health: SocketAddr = ([127, 0, 0, 1], 15021).into();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let guarded = &mut self.sidecars[index];
            if let Some(status) = guarded
                .process
                .as_mut()
                .and_then(|p| p.try_wait().ok().flatten())
            {
                panic!(
                    "the proxy in {} exited ({status}) before it was ready:\n{}",
                    pod.name(),
                    tail(&guarded.log, 40)
                );
            }
            let last = match http_get(pod, health, "/healthz/ready") {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "the proxy in {} was not ready within {READY_TIMEOUT:?} (last: {last}):\n{}",
                pod.name(),
                tail(&self.sidecars[index].log, 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config_path(&self, pod: &str) -> PathBuf {
        self.dir().join(format!("{pod}-proxy.json"))
    }

    /// Replaces the config file of the sidecar in `pod` atomically (write, then rename, as a
    /// config-map update would); a running proxy reloads it.
    pub(crate) fn replace_config(&self, pod: &str, contents: &[u8]) {
        let path = self.config_path(pod);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, contents).expect("write the proxy config");
        std::fs::rename(&tmp, &path).expect("rename the proxy config into place");
    }

    /// The log of the sidecar in `pod` so far.
    pub(crate) fn sidecar_log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.sidecar_guard(pod).log.as_path()).unwrap_or_default()
    }

    fn sidecar_guard(&self, pod: &str) -> &Guarded {
        let label = format!("proxy in {pod}");
        self.sidecars
            .iter()
            .find(|g| g.label == label)
            .unwrap_or_else(|| panic!("no sidecar in {pod}"))
    }

    /// Sends `signal` (e.g. `TERM`) to the sidecar of `pod`.
    pub(crate) fn signal_sidecar(&self, pod: &str, signal: &str) {
        let pid = self
            .sidecar_guard(pod)
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("the sidecar in {pod} is gone"))
            .id();
        let out = run_bounded(
            Command::new("/bin/kill")
                .arg("-s")
                .arg(signal)
                .arg(pid.to_string()),
            Duration::from_secs(10),
            "kill",
        );
        assert!(out.success, "kill -s {signal} {pid}: {}", out.text());
    }

    /// Waits up to `timeout` for the sidecar of `pod` to exit; returns its exit status.
    pub(crate) fn wait_sidecar_exit(
        &mut self,
        pod: &str,
        timeout: Duration,
    ) -> std::process::ExitStatus {
        let label = format!("proxy in {pod}");
        let guarded = self
            .sidecars
            .iter_mut()
            .find(|g| g.label == label)
            .unwrap_or_else(|| panic!("no sidecar in {pod}"));
        let process = guarded
            .process
            .as_mut()
            .unwrap_or_else(|| panic!("the sidecar in {pod} is gone"));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = process.try_wait().expect("wait for the proxy") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the sidecar in {pod} still runs after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the sidecar of pod `name` (SIGKILL), as a crashed proxy.
    pub(crate) fn kill_sidecar(&mut self, name: &str) {
        let label = format!("proxy in {name}");
        let guarded = self
            .sidecars
            .iter_mut()
            .find(|g| g.label == label)
            .unwrap_or_else(|| panic!("no sidecar in {name}"));
        // Dropping the guard kills and reaps the process.
        drop(guarded.process.take());
    }

    /// Starts an application in `pod` as uid/gid [`APP_UID`] (`HOME` is the scenario
    /// directory), logging to a file; the mesh kills it at the end of the test.
    pub(crate) fn spawn_app(&mut self, pod: &str, program: &str, args: &[&str]) {
        self.spawn_app_as(pod, APP_UID, program, args);
    }

    /// [`Mesh::spawn_app`] as `uid` (and the same gid), e.g. root for a tool that needs it.
    pub(crate) fn spawn_app_as(&mut self, pod: &str, uid: u32, program: &str, args: &[&str]) {
        let pod = self.pod(pod).clone();
        let n = self.apps.len();
        let base = Path::new(program)
            .file_name()
            .map_or_else(|| "app".into(), |f| f.to_string_lossy().into_owned());
        let log = self.dir().join(format!("{}-app{n}-{base}.log", pod.name()));
        let mut cmd = if uid == 0 {
            pod.command(program)
        } else {
            pod.command_as(program, uid, uid)
        };
        cmd.args(args)
            .env("HOME", self.dir())
            .current_dir(self.dir());
        let process = spawn_logged(&pod, &mut cmd, &log);
        self.apps.push(Guarded {
            label: format!("{base} in {}", pod.name()),
            log,
            process: Some(process),
        });
    }

    /// Waits until something listens on `addr` as seen from inside `pod`; panics with the
    /// app logs otherwise.
    pub(crate) fn wait_for_listener(&mut self, pod: &str, addr: SocketAddr) {
        let pod = self.pod(pod).clone();
        if let Err(e) = pod.wait_for_tcp(addr, Duration::from_secs(20)) {
            let logs: String = self
                .apps
                .iter()
                .map(|g| format!("--- {}:\n{}\n", g.label, tail(&g.log, 30)))
                .collect();
            panic!("nothing listens on {addr} in {}: {e}\n{logs}", pod.name());
        }
    }

    /// An application command in `pod` as uid/gid [`APP_UID`], `HOME` set to the scenario
    /// directory (for [`run_bounded`]).
    pub(crate) fn app_command(&self, pod: &str, program: &str) -> Command {
        let mut cmd = self.pod(pod).command_as(program, APP_UID, APP_UID);
        cmd.env("HOME", self.dir()).current_dir(self.dir());
        cmd
    }

    /// The sidecar's `/metrics` of pod `name` (Prometheus text format).
    pub(crate) fn metrics(&self, name: &str) -> String {
        let pod = self.pod(name);
        match http_get(pod, ([127, 0, 0, 1], 15020).into(), "/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics in {name}: {other:?}"),
        }
    }

    /// Runs curl in `pod` as the app uid over `urls` in one process (one connection, reused),
    /// with `extra` flags; returns one [`Transfer`] per URL, in order.
    pub(crate) fn curl(&self, pod: &str, urls: &[String], extra: &[&str]) -> Vec<Transfer> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let config = self.dir().join(format!("curl-{n}.cfg"));
        let mut text = String::new();
        for url in urls {
            let _ = writeln!(text, "url = \"{url}\"\noutput = \"/dev/null\"");
        }
        std::fs::write(&config, text).expect("write the curl config");
        let mut cmd = self.app_command(pod, CURL);
        cmd.args(["--silent", "--show-error", "--max-time", "10"])
            .args(extra)
            .arg("--config")
            .arg(&config)
            .arg("--write-out")
            .arg(Transfer::WRITE_OUT);
        // Bounded: 10 s per transfer at worst, far less in practice.
        let timeout = Duration::from_secs(60) + Duration::from_millis(20) * urls.len() as u32;
        let out = run_bounded(&mut cmd, timeout, &format!("curl in {pod}"));
        let transfers: Vec<Transfer> = out.stdout.lines().map(Transfer::parse).collect();
        assert_eq!(
            transfers.len(),
            urls.len(),
            "curl reported {} transfers for {} urls: {}",
            transfers.len(),
            urls.len(),
            out.text()
        );
        transfers
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut report = String::new();
        for g in self.sidecars.iter().chain(&self.apps) {
            let _ = writeln!(report, "--- {} ({}):", g.label, g.log.display());
            let _ = writeln!(report, "{}", tail(&g.log, 25));
        }
        let _ = writeln!(
            std::io::stderr(),
            "testbed logs of the failed test:\n{report}"
        );
    }
}

/// Spawns `cmd` with stdout and stderr appended to `log`.
fn spawn_logged(pod: &Pod, cmd: &mut Command, log: &Path) -> Process {
    let file = std::fs::File::create(log).expect("create a log file");
    let err = file.try_clone().expect("clone the log file");
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    pod.spawn(cmd)
        .unwrap_or_else(|e| panic!("start a process in {}: {e}", pod.name()))
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// === impl Transfer ===

/// What curl's `--write-out` reports for one transfer.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    /// The HTTP status (0: no response).
    pub(crate) status: u16,
    /// The HTTP version curl used (`1.1`, `2`).
    pub(crate) http_version: String,
    /// `x-backend`: which backend answered (its version).
    pub(crate) backend: String,
    /// `x-proto`: the HTTP version the backend saw.
    pub(crate) backend_proto: String,
    /// `x-leak`: whether mesh headers reached the backend (`clean` / `leaked`).
    pub(crate) leak: String,
    /// `x-peer`: the address the backend's connection came from.
    pub(crate) peer: String,
    /// `x-mesh-error`: the proxy's reason for an error response.
    pub(crate) mesh_error: String,
    /// The transfer's total time in seconds.
    pub(crate) seconds: f64,
    /// curl's error message when the transfer failed.
    pub(crate) error: String,
    /// `x-received`: the request body size the backend read.
    pub(crate) received: Option<u64>,
    /// The response body size curl downloaded.
    pub(crate) downloaded: u64,
    /// New connections curl made for this transfer.
    pub(crate) connects: u32,
}

impl Transfer {
    /// Tab-separated, one line per transfer.
    const WRITE_OUT: &str = "%{http_code}\t%{http_version}\t%header{x-backend}\t%header{x-proto}\t%header{x-leak}\t%header{x-peer}\t%header{x-mesh-error}\t%{time_total}\t%{errormsg}\t%header{x-received}\t%{size_download}\t%{num_connects}\n";

    fn parse(line: &str) -> Self {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 12, "unexpected curl --write-out line {line:?}");
        Self {
            status: f[0].parse().unwrap_or(0),
            http_version: f[1].to_owned(),
            backend: f[2].to_owned(),
            backend_proto: f[3].to_owned(),
            leak: f[4].to_owned(),
            peer: f[5].to_owned(),
            mesh_error: f[6].to_owned(),
            seconds: f[7].parse().unwrap_or(f64::NAN),
            error: f[8].to_owned(),
            received: f[9].parse().ok(),
            downloaded: f[10].parse().unwrap_or(0),
            connects: f[11].parse().unwrap_or(0),
        }
    }
}

/// How many transfers `backend` answered.
pub(crate) fn count_backend(transfers: &[Transfer], backend: &str) -> usize {
    transfers.iter().filter(|t| t.backend == backend).count()
}

/// `http://<addr><path>` for `n` distinct paths `<path><i>`.
pub(crate) fn urls(addr: SocketAddr, path: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("http://{addr}{path}{i}")).collect()
}

// === bounded command runs ===

/// A finished command.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit status was 0.
    pub(crate) success: bool,
    /// The exit code, when it exited normally.
    pub(crate) code: Option<i32>,
    /// Its stdout.
    pub(crate) stdout: String,
    /// Its stderr.
    pub(crate) stderr: String,
}

impl Output {
    /// Both streams, for failure messages.
    pub(crate) fn text(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion within `timeout` (killed and a panic otherwise).
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    run_bounded_with_input(cmd, &[], timeout, what)
}

/// [`run_bounded`] with `input` written to the command's stdin.
pub(crate) fn run_bounded_with_input(
    cmd: &mut Command,
    input: &[u8],
    timeout: Duration,
    what: &str,
) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = Process::spawn(cmd).unwrap_or_else(|e| panic!("{what}: {e}"));
    let child = process.child_mut();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = process.try_wait().expect("wait for a child") {
            break status;
        }
        if Instant::now() >= deadline {
            drop(process);
            let out = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
            let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
            panic!("{what}: still running after {timeout:?}; stdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Output {
        success: status.success(),
        code: status.code(),
        stdout,
        stderr,
    }
}

// === HTTP from inside a pod ===

/// A plain HTTP/1.1 GET from inside `pod` (as root, so only loopback or excluded ports are
/// uncaptured); returns the status and body.
pub(crate) fn http_get(pod: &Pod, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    pod.run_in(|| get(addr, path)).map_err(|e| e.to_string())?
}

/// A plain HTTP/1.1 GET from the calling thread's network namespace (a thread a pod
/// spawned); returns the status and body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, GET_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(GET_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no response head from {addr}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line from {addr}: {head}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Percent-encodes a URL query value.
pub(crate) fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// === Prometheus text ===

/// The labels of one sample line `name{a="x",b="y"} value`, or `None` for another metric.
fn sample<'a>(line: &'a str, name: &str) -> Option<(BTreeMap<&'a str, &'a str>, f64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
        let end = rest.rfind('}')?;
        (&rest[..end], rest[end + 1..].trim())
    } else if rest.starts_with(' ') {
        ("", rest.trim())
    } else {
        return None;
    };
    let mut map = BTreeMap::new();
    // Label values in our metrics never contain `",`, so a plain split is enough.
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once("=\"")?;
        map.insert(k.trim(), v.trim_end_matches('"'));
    }
    let value = value.split_whitespace().next()?.parse().ok()?;
    Some((map, value))
}

/// The sum of metric `name`'s samples whose labels include all of `filter`.
pub(crate) fn metric_sum(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|l| sample(l, name))
        .filter(|(labels, _)| filter.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .map(|(_, v)| v)
        .sum()
}

/// Polls `f` every 50 ms until it returns `Ok`, for at most `timeout`; panics naming
/// `what` and the last failure otherwise.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
