//! Network-namespace testbed: a small "cluster" of pods on one Linux machine for the mesh's
//! end-to-end tests (tier 3 in DESIGN.md, "Tests, in tiers").
//!
//! A [`Testbed`] is one bridge namespace holding a Linux bridge and N pod namespaces, each
//! joined to the bridge by a veth pair and given its own IPv4 address on a private /24 with a
//! default route via the bridge. Tests run real programs inside a pod with
//! [`Pod::command`] / [`Pod::command_as`] (e.g. the proxy as uid 1337), guard them with
//! [`Process`], and run in-process code (std or tokio servers and clients) inside a pod with
//! [`Pod::run_in`]. Later tests install iptables capture rules inside pods; the proxy and the
//! apps then talk across the bridge exactly as they would across a node.
//!
//! Every namespace is named `mtb-<pid>-<n>-<pod>`, so tests in parallel processes never
//! collide. Teardown always happens: on drop (also during a panic), on SIGINT/SIGTERM/SIGHUP,
//! and — for processes killed outright — by the next testbed built on the machine, which
//! deletes namespaces whose owning process is gone (see [`Testbed::collect_garbage`]).
//!
//! # Skip or require: `MESH_E2E`
//!
//! Building a testbed needs root, iproute2, util-linux (`nsenter`, `setpriv`) and, for the
//! capture tests, iptables (`apt-get install -y iptables iproute2 util-linux`). Every e2e
//! test starts with [`testbed_or_skip`]:
//!
//! - `MESH_E2E=require` (CI): missing prerequisites **fail** the test with the reason;
//! - unset or `auto`: missing prerequisites print
//!   `SKIPPED: <test>: <reason> (set MESH_E2E=require to make this a failure)` and the test
//!   returns early — never a silent pass;
//! - `MESH_E2E=skip`: every e2e test says SKIPPED.
//!
//! See [`policy`] for the full table. The `SKIPPED` line goes straight to stderr, past
//! libtest's capture; cargo-nextest hides a passing test's output unless run with
//! `--success-output immediate`. CI runs `MESH_E2E=require cargo nextest run` as root.
//!
//! # Good to know
//!
//! - Programs started with [`Pod::command`] share the host's filesystem, environment and
//!   `/etc/resolv.conf`; only the network namespace differs. Use absolute program paths that
//!   the chosen uid can read.
//! - Traffic from a pod to an address outside the testbed's subnet is answered by the bridge
//!   namespace at once (TCP: connection refused; UDP: port unreachable) and goes no further,
//!   so an uncaptured "service VIP" or a DNS lookup fails fast instead of hanging.
//! - For async code, build a current-thread tokio runtime inside [`Pod::run_in`] (a client)
//!   or [`Pod::spawn_thread`] (a long-lived server); its sockets belong to the pod.
//! - Declare [`Process`] guards after the testbed, so they drop (and kill) first.
//!
//! # Example
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use mesh_testbed::Testbed;
//!
//! let Some(tb) = mesh_testbed::testbed_or_skip(Testbed::builder().pods(2)) else {
//!     return;
//! };
//! let (a, b) = (&tb.pods()[0], &tb.pods()[1]);
//! // Bound inside pod b's namespace; served from a plain thread afterwards.
//! let listener = b.run_in(|| TcpListener::bind((b.ip(), 7000))).unwrap().unwrap();
//! std::thread::spawn(move || {
//!     let (mut s, _) = listener.accept().unwrap();
//!     let mut buf = [0; 5];
//!     s.read_exact(&mut buf).unwrap();
//!     s.write_all(&buf).unwrap();
//! });
//! let reply = a
//!     .run_in(|| {
//!         let mut s = TcpStream::connect((b.ip(), 7000))?;
//!         s.write_all(b"hello")?;
//!         let mut buf = [0; 5];
//!         s.read_exact(&mut buf)?;
//!         std::io::Result::Ok(buf)
//!     })
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(&reply, b"hello");
//! ```

mod cleanup;
mod cmd;
mod netns;
pub mod policy;
mod prereq;
mod testbed;

use std::path::PathBuf;
use std::time::Duration;

pub use netns::{Netns, Process};
pub use policy::{prerequisites_or_skip, testbed_or_skip};
pub use prereq::{IptablesBackend, Prerequisites, Problem, Unavailable};
pub use testbed::{Builder, MAX_POD_NAME, MAX_PODS, Pod, Testbed};

/// Errors from building or using a testbed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The machine cannot host a testbed; the message lists what is missing and the fix.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),

    /// A helper command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}; hint: {hint}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
        /// What to check.
        hint: &'static str,
    },

    /// A helper command could not be started.
    #[error("cannot run `{command}`: {source}; hint: {hint}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
        /// What to check.
        hint: &'static str,
    },

    /// A namespace file could not be opened.
    #[error("cannot open network namespace {path}: {source}; hint: was the testbed dropped?")]
    OpenNetns {
        /// `/run/netns/<name>`.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },

    /// `setns(2)` failed.
    #[error(
        "cannot enter network namespace {netns}: {source}; hint: setns needs CAP_SYS_ADMIN (run as root)"
    )]
    EnterNetns {
        /// The namespace name.
        netns: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },

    /// A namespace's sysctl could not be written.
    #[error("cannot write {path}: {source}; hint: the testbed needs root")]
    Sysctl {
        /// The `/proc/sys/...` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A thread for a namespace could not be started.
    #[error("cannot start a thread for network namespace {netns}: {source}")]
    Thread {
        /// The namespace name.
        netns: String,
        /// Why the thread could not start.
        #[source]
        source: std::io::Error,
    },

    /// A pod name (or the pod count) was rejected by the builder.
    #[error("invalid pod {name:?}: {reason}")]
    InvalidPod {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },

    /// A bounded wait ran out.
    #[error("timed out after {timeout:?} waiting for {what}; last error: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
        /// The last attempt's error.
        last: String,
    },
}
