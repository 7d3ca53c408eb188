//! `meshctl demo --transparent`: the shop in network-namespace pods with real traffic
//! capture, as on a Kubernetes node.
//!
//! Every pod of the [`Plan`] — and mesh-control and the ingress gateway — gets a network
//! namespace of its own on a private bridge ([`mesh_testbed::Testbed`], the same testbed
//! the end-to-end tests use). In each shop pod `mesh-proxy init` installs the iptables
//! capture rules, the sidecar runs as uid 1337 (exempt from capture) and the application
//! as root, unmodified: it dials the Services' virtual IPs and listens on `0.0.0.0`, and
//! its sidecar captures both directions. Nothing but the demo's own processes runs in the
//! namespaces; the host's routes and firewall are not touched.
//!
//! The host reaches the pods the way `kubectl port-forward` does ([`Cluster::forward`]):
//! each host address the explicit mode would use (the shop on `--gateway-addr`, every
//! pod's `127.<net>.0.x` admin, metrics, health and application ports, mesh-control's
//! debug port) is a listener in meshctl that opens its upstream connection from inside the
//! pod's namespace. So `meshctl stat`, `proxy-status`, the live table and curl work the
//! same in both modes.
//!
//! Needs root, iproute2, util-linux (`nsenter`, `setpriv`) and iptables; without them the
//! demo stops before starting anything, naming what is missing and how to install it.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mesh_testbed::{Pod, Testbed};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::topology::Plan;

/// The pod mesh-control runs in.
pub const CONTROL_POD: &str = "mesh-control";
/// The uid and gid the sidecars run as: the one `mesh-proxy init` exempts from capture.
pub const PROXY_UID: u32 = 1337;
/// How long `mesh-proxy init` may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The shared files' directory, followed by meshctl's pid.
const FILES_PREFIX: &str = "/run/mesh-demo-";
/// How long a forwarded connection may take to reach its pod.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The demo's pods, their shared files and the host's port-forwards. Dropping it stops
/// the forwards, deletes the namespaces (stop the processes in them first) and removes
/// the files.
#[derive(Debug)]
pub struct Cluster {
    forwards: JoinSet<()>,
    forward_log: Option<PathBuf>,
    files: PathBuf,
    proxy: PathBuf,
    tb: Testbed,
}

impl Cluster {
    /// Checks the prerequisites and creates one namespace per pod of `plan`, plus
    /// mesh-control's and the gateway's; moves the plan's pods to their namespace
    /// addresses. `proxy` is the mesh-proxy binary (copied where uid 1337 can run it when
    /// it cannot where it is).
    pub fn new(plan: &mut Plan, proxy: &Path) -> anyhow::Result<Self> {
        if let Err(unavailable) = Testbed::check_prerequisites() {
            let problems: Vec<String> = unavailable
                .problems()
                .iter()
                .map(|p| format!("  - {}: {}", p.what, p.fix))
                .collect();
            bail!(
                "--transparent needs network namespaces and iptables, and this machine cannot run them:\n{}\n\
                 Or run the demo without --transparent (explicit mode needs no root).",
                problems.join("\n")
            );
        }
        let mut builder = Testbed::builder()
            .handle_signals(false)
            .pod(CONTROL_POD)
            .pod(super::topology::GATEWAY_NAME);
        for pod in &plan.pods {
            builder = builder.pod(pod.name.clone());
        }
        let tb = builder
            .build()
            .context("create the pods' network namespaces")?;
        plan.place(|name| {
            tb.pod(name)
                .map(Pod::ip)
                .expect("every pod of the plan has a namespace")
        });
        // Files the sidecars (uid 1337) read: tokens, the trust bundle, maybe the binary.
        remove_stale_files();
        let files = PathBuf::from(format!("{FILES_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&files).with_context(|| format!("create {}", files.display()))?;
        std::fs::set_permissions(&files, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", files.display()))?;
        let mut cluster = Self {
            forwards: JoinSet::new(),
            forward_log: None,
            files,
            proxy: proxy.to_owned(),
            tb,
        };
        cluster.proxy = cluster.runnable_proxy()?;
        Ok(cluster)
    }

    /// The mesh-proxy binary as uid 1337 can run it: where it is when its directories let
    /// that uid in (`--version` succeeds), else a copy in the shared files.
    fn runnable_proxy(&self) -> anyhow::Result<PathBuf> {
        let pod = self.pod(CONTROL_POD)?;
        let runs = |bin: &Path| {
            pod.command_as(bin, PROXY_UID, PROXY_UID)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if runs(&self.proxy) {
            return Ok(self.proxy.clone());
        }
        let copy = self.files.join("mesh-proxy");
        std::fs::copy(&self.proxy, &copy).with_context(|| {
            format!(
                "copy {} to {} (uid {PROXY_UID} cannot run it where it is)",
                self.proxy.display(),
                copy.display()
            )
        })?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        if !runs(&copy) {
            bail!(
                "uid {PROXY_UID} cannot run {} (nor a copy in {}): check that the file system allows executing it",
                self.proxy.display(),
                self.files.display()
            );
        }
        Ok(copy)
    }

    /// The pod named `name`.
    pub fn pod(&self, name: &str) -> anyhow::Result<&Pod> {
        self.tb
            .pod(name)
            .with_context(|| format!("no pod {name} in the demo's testbed"))
    }

    /// mesh-control's pod address.
    pub fn control_ip(&self) -> anyhow::Result<Ipv4Addr> {
        Ok(self.pod(CONTROL_POD)?.ip())
    }

    /// The mesh-proxy binary to run (as uid 1337).
    pub fn proxy(&self) -> &Path {
        &self.proxy
    }

    /// A command running `program` as root in pod `name`.
    pub fn command(&self, name: &str, program: &Path) -> anyhow::Result<Command> {
        Ok(self.pod(name)?.command(program))
    }

    /// A command running the mesh-proxy as uid/gid 1337 in pod `name`.
    pub fn proxy_command(&self, name: &str) -> anyhow::Result<Command> {
        Ok(self
            .pod(name)?
            .command_as(&self.proxy, PROXY_UID, PROXY_UID))
    }

    /// Installs the capture rules in pod `name` (`mesh-proxy init`, as the init container
    /// does), bounded in time; fails with its output.
    pub fn capture(&self, name: &str) -> anyhow::Result<()> {
        let mut cmd = self.pod(name)?.command(&self.proxy);
        cmd.arg("init");
        let out = run_bounded(&mut cmd, INIT_TIMEOUT)
            .with_context(|| format!("run mesh-proxy init in pod {name}"))?;
        if !out.status.success() {
            bail!(
                "mesh-proxy init in pod {name} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Copies `file` into the shared files as `name`, readable by uid 1337 only (a token,
    /// as a projected volume would mount it) or by everyone (`public`: the trust bundle).
    pub fn share(&self, file: &Path, name: &str, public: bool) -> anyhow::Result<PathBuf> {
        let to = self.files.join(name);
        std::fs::copy(file, &to)
            .with_context(|| format!("copy {} to {}", file.display(), to.display()))?;
        let mode = if public { 0o644 } else { 0o400 };
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&to, Some(PROXY_UID), Some(PROXY_UID))
            .with_context(|| format!("chown {}", to.display()))?;
        Ok(to)
    }

    /// Where the shared files are (Redis writes nothing there: it runs without
    /// persistence).
    pub fn files(&self) -> &Path {
        &self.files
    }

    /// Where the port-forwards write why a connection could not be relayed (the demo's
    /// table owns the terminal).
    pub fn log_forwards_to(&mut self, path: PathBuf) {
        self.forward_log = Some(path);
    }

    /// Serves `listen` on this machine: each connection is relayed to `target` as seen from
    /// inside pod `name` (its loopback is the pod's own), like `kubectl port-forward`. A
    /// connection that cannot reach the pod is closed, and why goes to the forward log.
    pub async fn forward(
        &mut self,
        listen: SocketAddr,
        name: &str,
        target: SocketAddr,
    ) -> anyhow::Result<()> {
        let pod = self.pod(name)?.clone();
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen} (forwarding to pod {name})"))?;
        let log = self.forward_log.clone();
        let name = name.to_owned();
        self.forwards.spawn(async move {
            loop {
                let mut client = match listener.accept().await {
                    Ok((client, _)) => client,
                    Err(e) => {
                        // Out of file descriptors, say: note it and back off, no busy loop.
                        note(log.as_deref(), &format!("{listen}: accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (pod, log, name) = (pod.clone(), log.clone(), name.clone());
                tokio::spawn(async move {
                    let mut upstream = match connect_in(&pod, target).await {
                        Ok(upstream) => upstream,
                        Err(e) => {
                            let why = format!("{listen} -> pod {name} {target}: {e}");
                            note(log.as_deref(), &why);
                            return;
                        }
                    };
                    let _ = client.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.forwards.abort_all();
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// Appends `line` to the forward log, if there is one (best effort: the log is for the
/// post-mortem, never a reason to stop relaying).
fn note(log: Option<&Path>, line: &str) {
    use std::io::Write as _;
    let Some(path) = log else {
        return;
    };
    if let Ok(mut file) = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// Removes the shared files of demos that were killed outright (their pid is gone); the
/// testbed collects their namespaces the same way.
fn remove_stale_files() {
    let Ok(entries) = std::fs::read_dir("/run") else {
        return;
    };
    let prefix = FILES_PREFIX.trim_start_matches("/run/");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A TCP connection to `target` from inside `pod`: the socket is made in the pod's
/// namespace (on a short-lived thread there), then connected from here.
async fn connect_in(pod: &Pod, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = pod
        .run_in(tokio::net::TcpSocket::new_v4)
        .map_err(std::io::Error::other)??;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}
