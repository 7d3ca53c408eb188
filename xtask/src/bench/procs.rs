//! Child processes of a benchmark (proxies, HAProxy): spawning with their output in a log
//! file, optional CPU pinning, readiness polling, and guaranteed cleanup.
//!
//! Cleanup has two layers: [`Proc`]'s `Drop` sends SIGTERM, waits up to 2 s, then SIGKILLs
//! and reaps, so every exit path of `cargo xtask bench` (success, `?` errors, panics) stops
//! its children; and children are started through `setpriv --pdeathsig KILL` (util-linux),
//! so even if the xtask itself is killed they die with it.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Finds `name` on `PATH` (and in the sbin directories, where Debian puts `haproxy`).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Pins the calling thread (and so every thread and child it creates later) to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pin to CPU {cpu}"))
}

/// A running child process, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    /// A short name for messages (`mesh-client`, `haproxy-1`).
    pub(crate) name: String,
    child: Child,
    log: PathBuf,
    spawned: Instant,
}

/// How children are started.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    /// `setpriv`, when present: children get `--pdeathsig KILL`.
    setpriv: Option<PathBuf>,
    /// Pin children to this CPU (and the xtask back to `home_cpu` after each spawn).
    pub(crate) pin: Option<(usize, usize)>,
    /// Where logs go.
    pub(crate) log_dir: PathBuf,
}

impl Launcher {
    /// A launcher writing logs to `log_dir`; `pin` is `(child_cpu, xtask_cpu)`.
    pub(crate) fn new(log_dir: &Path, pin: Option<(usize, usize)>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("create {}", log_dir.display()))?;
        Ok(Self {
            setpriv: which("setpriv"),
            pin,
            log_dir: log_dir.to_path_buf(),
        })
    }

    /// Starts `program args…` as `name`, stdout and stderr to `<log_dir>/<name>.log`.
    pub(crate) fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let log = self.log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = match &self.setpriv {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // A child inherits the affinity of the thread that forks it: switch this thread to
        // the children's CPU just for the spawn.
        if let Some((child_cpu, _)) = self.pin {
            pin_current_thread(child_cpu)?;
        }
        let spawned = Instant::now();
        let child = cmd.spawn();
        if let Some((_, home)) = self.pin {
            pin_current_thread(home)?;
        }
        let child = child.with_context(|| format!("start {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
            spawned,
        })
    }
}

impl Proc {
    /// The process id (after `setpriv` exec'd the program, the program's).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited, quoting its log.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ({}) ends with:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Polls `GET http://{addr}{path}` every millisecond until it answers 200; returns the
    /// time from spawn to that answer.
    pub(crate) fn wait_ready(
        &mut self,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        // Bounded by the deadline; each probe by its own short timeouts.
        while Instant::now() < deadline {
            self.check_alive()?;
            match http_status(addr, path, Duration::from_millis(200)) {
                Ok(200) => return Ok(self.spawned.elapsed()),
                Ok(status) => last = format!("status {status}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        bail!(
            "{} not ready at http://{addr}{path} within {timeout:?} ({last}); log ({}):\n{}",
            self.name,
            self.log.display(),
            self.log_tail()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            for _ in 0..200 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The status code of `GET path` on a fresh connection (`Connection: close`).
fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    // "HTTP/1.1 200" is 12 bytes; at most a few reads.
    while got < 12 {
        let n = s.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let text = std::str::from_utf8(&buf[..got]).unwrap_or("");
    text.split_ascii_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))
}
