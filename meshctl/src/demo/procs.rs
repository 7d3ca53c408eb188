//! The demo's child processes: started with their output in a log file each, in a process
//! group of their own (so a terminal's Ctrl-C reaches only `meshctl demo`, which then stops
//! them in order), watched for early exits, and stopped — SIGTERM, then SIGKILL after a
//! grace period — when the [`Supervisor`] is dropped, on every path out of the demo.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long processes get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// One running child.
#[derive(Debug)]
pub struct Proc {
    /// What it is, e.g. `frontend-v1 sidecar`.
    pub name: String,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The children, stopped (in reverse start order) when dropped.
#[derive(Debug, Default)]
pub struct Supervisor {
    procs: Vec<Proc>,
}

impl Supervisor {
    /// Starts `cmd` as `name`, its stdout and stderr appended to `log`.
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<u32> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().context("duplicate a log file handle")?)
            .stderr(file)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({})", cmd.get_program().to_string_lossy()))?;
        let pid = child.id();
        self.procs.push(Proc {
            name: name.to_owned(),
            log: log.to_owned(),
            child,
        });
        Ok(pid)
    }

    /// The running children.
    pub fn procs(&self) -> &[Proc] {
        &self.procs
    }

    /// The first child that has exited, with its status.
    pub fn exited(&mut self) -> Option<(&Proc, ExitStatus)> {
        let index = self
            .procs
            .iter_mut()
            .position(|p| matches!(p.child.try_wait(), Ok(Some(_))))?;
        let proc = &mut self.procs[index];
        let status = proc.child.try_wait().ok().flatten()?;
        Some((&self.procs[index], status))
    }

    /// Stops every child: SIGTERM in reverse start order, up to [`GRACE`] for all of them to
    /// exit, then SIGKILL for the rest; every child is reaped.
    pub fn stop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            if matches!(p.child.try_wait(), Ok(None)) {
                let pid = Pid::from_raw(i32::try_from(p.child.id()).unwrap_or(i32::MAX));
                // Reaped children cannot be signalled by mistake: `try_wait` said it runs,
                // so the pid is still ours.
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline
            && self
                .procs
                .iter_mut()
                .any(|p| matches!(p.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &mut self.procs {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
        self.procs.clear();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file (for "it exited early" messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
