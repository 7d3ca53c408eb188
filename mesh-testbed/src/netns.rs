//! A handle on one named network namespace: commands, child processes and threads inside it.
//!
//! [`Netns::command`] builds a `std::process::Command` that runs a program inside the
//! namespace through `nsenter --net=/run/netns/<name>` (optionally dropping to a uid/gid via
//! `setpriv`); [`Process`] kills the child on drop. [`Netns::run_in`] runs a closure on a fresh
//! OS thread that has entered the namespace with `setns(2)` — only that thread moves, the rest
//! of the test process stays in the host namespace. Sockets keep the namespace they were
//! created in, so a listener bound inside `run_in` can be served from any thread afterwards.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{io, thread};

use nix::sched::{CloneFlags, setns};

use crate::{Error, cleanup, cmd};

/// A named network namespace (`/run/netns/<name>`).
///
/// Cheap to clone; a handle does not own the namespace (the [`crate::Testbed`] does) and
/// becomes useless once the testbed is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn new(name: String) -> Self {
        Self { name }
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(cleanup::NETNS_DIR).join(&self.name)
    }

    /// A command that runs `program` as root inside this namespace.
    ///
    /// The program is `nsenter`; arguments added with `.arg(..)` go to `program`. `nsenter`
    /// execs the program, so the child's PID is the program's. Only the network namespace
    /// changes: the filesystem, environment and PID namespace are the host's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = self.nsenter();
        c.arg(program);
        c
    }

    /// A command that runs `program` inside this namespace as `uid`/`gid` with no
    /// supplementary groups (e.g. 1337 for the proxy, another uid for an app).
    ///
    /// Built as `nsenter --net=… -- setpriv --reuid=U --regid=G --clear-groups -- program`;
    /// the uid need not exist in `/etc/passwd`. The environment (`HOME`, `PATH`) is inherited,
    /// so prefer absolute program paths the uid can read.
    pub fn command_as(&self, program: impl AsRef<OsStr>, uid: u32, gid: u32) -> Command {
        let mut c = self.nsenter();
        c.arg(cmd::SETPRIV)
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    }

    fn nsenter(&self) -> Command {
        let mut c = Command::new(cmd::NSENTER);
        c.arg(format!("--net={}", self.path().display())).arg("--");
        c
    }

    /// Spawns `cmd` (normally from [`Netns::command`]) and guards the child: it is killed
    /// when the returned [`Process`] drops.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Process, Error> {
        Process::spawn(cmd)
    }

    /// Runs `f` on a fresh OS thread inside this namespace and returns its result.
    ///
    /// The closure may borrow from the caller. Threads it starts (e.g. a multi-thread tokio
    /// runtime's workers) inherit the namespace; a current-thread runtime built inside the
    /// closure is the simplest way to run async code in a pod. A panic in `f` is resumed on
    /// the calling thread.
    pub fn run_in<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        thread::scope(|scope| {
            let handle = thread::Builder::new()
                .name(self.thread_name())
                .spawn_scoped(scope, move || {
                    self.enter(file)?;
                    Ok(f())
                })
                .map_err(|source| Error::Thread {
                    netns: self.name.clone(),
                    source,
                })?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts a long-lived thread inside this namespace running `f` (e.g. a server loop).
    ///
    /// Entering the namespace happens on the new thread; if it fails, joining yields the
    /// error. Give the thread a way to stop (a shutdown channel, a bounded loop).
    pub fn spawn_thread<F, R>(&self, f: F) -> Result<JoinHandle<Result<R, Error>>, Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        let netns = self.clone();
        thread::Builder::new()
            .name(self.thread_name())
            .spawn(move || {
                netns.enter(file)?;
                Ok(f())
            })
            .map_err(|source| Error::Thread {
                netns: self.name.clone(),
                source,
            })
    }

    /// Waits, from inside this namespace, until a TCP connect to `addr` succeeds.
    ///
    /// Polls every 50 ms with a bounded connect timeout; gives up after `timeout` with
    /// [`Error::Timeout`] naming the last connect error.
    pub fn wait_for_tcp(&self, addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
        self.run_in(|| poll_connect(addr, timeout))?
    }

    fn open(&self) -> Result<File, Error> {
        let path = self.path();
        File::open(&path).map_err(|source| Error::OpenNetns { path, source })
    }

    fn enter(&self, file: File) -> Result<(), Error> {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| Error::EnterNetns {
            netns: self.name.clone(),
            source,
        })
    }

    fn thread_name(&self) -> String {
        // Linux keeps 15 bytes of a thread name; the tail (pod name) is the useful part.
        let tail: String = self.name.chars().rev().take(15).collect();
        tail.chars().rev().collect()
    }
}

fn poll_connect(addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = remaining
            .min(Duration::from_millis(500))
            .max(Duration::from_millis(1));
        let Err(err) = TcpStream::connect_timeout(&addr, attempt) else {
            return Ok(());
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Timeout {
                what: format!("a tcp listener at {addr}"),
                timeout,
                last: err.to_string(),
            });
        }
        thread::sleep(remaining.min(Duration::from_millis(50)));
    }
}

/// A child process that is killed (SIGKILL) and reaped when this guard drops.
#[derive(Debug)]
pub struct Process {
    child: Child,
    command: String,
}

impl Process {
    /// Spawns `cmd` and guards the child.
    pub fn spawn(cmd: &mut Command) -> Result<Self, Error> {
        let command = cmd::display(cmd);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
            hint: "is util-linux (nsenter, setpriv) installed? see Testbed::check_prerequisites",
        })?;
        cleanup::register_child(child.id());
        Ok(Self { child, command })
    }

    /// The child's PID (the program's own PID: `nsenter` and `setpriv` exec it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line that started the child.
    pub fn command_line(&self) -> &str {
        &self.command
    }

    /// The child, e.g. to take its piped stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Kills the child (if still running) and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            cleanup::unregister_child(self.child.id());
            return Ok(status);
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        cleanup::unregister_child(self.child.id());
        Ok(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!(
                "mesh-testbed: cannot kill `{}` (pid {}): {e}",
                self.command,
                self.child.id()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn command_enters_the_namespace() {
        let ns = Netns::new("mtb-1-0-pod0".to_owned());
        let mut c = ns.command("curl");
        c.arg("-sS");
        assert_eq!(c.get_program(), "nsenter");
        assert_eq!(
            args(&c),
            ["--net=/run/netns/mtb-1-0-pod0", "--", "curl", "-sS"]
        );
    }

    #[test]
    fn command_as_drops_to_uid_and_gid() {
        let ns = Netns::new("mtb-1-0-pod0".to_owned());
        let c = ns.command_as("/usr/bin/python3", 1337, 1338);
        assert_eq!(
            args(&c),
            [
                "--net=/run/netns/mtb-1-0-pod0",
                "--",
                "setpriv",
                "--reuid=1337",
                "--regid=1338",
                "--clear-groups",
                "--",
                "/usr/bin/python3"
            ]
        );
    }

    #[test]
    fn thread_name_keeps_the_tail() {
        let ns = Netns::new("mtb-123456-7-server".to_owned());
        assert_eq!(ns.thread_name(), "123456-7-server");
        assert!(ns.thread_name().len() <= 15);
    }

    #[test]
    fn process_guard_kills_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let p = Process::spawn(&mut cmd).expect("spawn sleep");
        let proc_dir = PathBuf::from(format!("/proc/{}", p.id()));
        assert!(proc_dir.exists());
        drop(p);
        // Reaped by the guard: the PID is gone (not even a zombie).
        assert!(!proc_dir.exists());
    }
}
