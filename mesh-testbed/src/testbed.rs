//! The testbed: a bridge namespace and N pod namespaces joined to it by veth pairs.
//!
//! ```text
//!   mtb-<pid>-<n>-br          mtb-<pid>-<n>-<pod>
//!  ┌──────────────────┐       ┌──────────────────────────┐
//!  │ br0 10.a.b.1/24  │       │ lo                       │
//!  │  ├─ veth0 ───────┼───────┼─ eth0 10.a.b.2/24        │
//!  │  └─ veth1 ─ …    │       │ default via 10.a.b.1     │
//!  └──────────────────┘       └──────────────────────────┘
//! ```
//!
//! The veth pairs are created directly inside the bridge and pod namespaces, so no interface
//! of a testbed ever exists in the host namespace: interface names (`br0`, `vethN`, `eth0`)
//! cannot collide between testbeds, and only the namespace names carry the testbed id. The
//! host namespace is not connected to the bridge, so nothing a test sends leaves the
//! testbed. Each testbed picks a /24 in 10.200.0.0–10.255.255.0 from its id (readable logs;
//! the namespaces would isolate equal subnets anyway), leaving lower 10/8 space such as the
//! Kubernetes service range 10.96.0.0/12 free for "service VIPs" that later tests route out
//! of a pod through its default route.
//!
//! Traffic that leaves a pod for an address outside the subnet — a VIP nobody captured, DNS
//! to the host's resolver — reaches the bridge namespace, where every such address is local
//! (`ip route add local 0.0.0.0/0 dev lo`): TCP gets an immediate RST ("connection refused"),
//! UDP an ICMP port unreachable, so it fails at once instead of timing out, and goes no
//! further. The bridge answers ARP only for the gateway address (`arp_ignore=1`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::{Netns, Process};
use crate::prereq::{self, Prerequisites, Unavailable};
use crate::{Error, cleanup, cmd};

/// The most pods one testbed holds (addresses .2 to .201 of its /24).
pub const MAX_PODS: usize = 200;

/// The longest pod name accepted.
pub const MAX_POD_NAME: usize = 32;

/// The bridge inside the bridge namespace.
const BRIDGE: &str = "br0";

/// The pod's end of its veth pair.
const POD_IFACE: &str = "eth0";

/// Per-process testbed counter: the `<n>` in `mtb-<pid>-<n>-…`.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Configures a [`Testbed`]: which pods it has.
#[derive(Clone, Debug)]
#[must_use]
pub struct Builder {
    pods: Vec<String>,
    signals: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            pods: Vec::new(),
            signals: true,
        }
    }
}

impl Builder {
    /// Adds `n` pods named `pod<i>`, numbered after the pods already added.
    pub fn pods(mut self, n: usize) -> Self {
        let start = self.pods.len();
        self.pods
            .extend((start..start + n).map(|i| format!("pod{i}")));
        self
    }

    /// Adds one pod with this name (`[a-z0-9-]`, at most [`MAX_POD_NAME`] chars, not `br`).
    pub fn pod(mut self, name: impl Into<String>) -> Self {
        self.pods.push(name.into());
        self
    }

    /// Whether SIGINT, SIGTERM and SIGHUP tear the testbed down and end the process (the
    /// default, for tests). A program that handles those signals itself and drops the
    /// testbed on its way out (`meshctl demo --transparent`) turns this off; namespaces it
    /// leaves when killed outright are collected by the next testbed built on the machine.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Creates the namespaces, bridge, veth pairs, addresses and routes.
    ///
    /// Checks the prerequisites first ([`Error::Unavailable`] when missing) and removes stale
    /// namespaces of dead test processes. On failure, whatever was created is deleted.
    pub fn build(self) -> Result<Testbed, Error> {
        validate(&self.pods)?;
        prereq::check()?;
        if self.signals {
            cleanup::install_signal_handler();
        }

        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{pid}-{n}");
        let prefix = format!("{}{id}-", cleanup::PREFIX);
        let subnet = subnet_for(pid, n);
        let [a, b, c, _] = subnet.octets();
        let bridge = Netns::new(format!("{prefix}br"));
        let pods = self
            .pods
            .into_iter()
            .zip(2u8..)
            .map(|(name, host)| Pod {
                netns: Netns::new(format!("{prefix}{name}")),
                ip: Ipv4Addr::new(a, b, c, host),
                name,
            })
            .collect::<Vec<_>>();

        let mut names = vec![bridge.name().to_owned()];
        names.extend(pods.iter().map(|p| p.netns.name().to_owned()));
        cleanup::register(&id, names);

        // From here on, dropping `tb` removes whatever exists.
        let tb = Testbed {
            id,
            subnet,
            bridge,
            pods,
        };
        tb.setup()?;
        Ok(tb)
    }
}

fn validate(pods: &[String]) -> Result<(), Error> {
    if pods.len() > MAX_PODS {
        return Err(Error::InvalidPod {
            name: format!("({} pods)", pods.len()),
            reason: "a testbed holds at most 200 pods",
        });
    }
    for (i, name) in pods.iter().enumerate() {
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > MAX_POD_NAME {
            Some("longer than 32 characters")
        } else if !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            Some("only lower-case letters, digits and '-' are allowed")
        } else if name == "br" {
            Some("`br` is reserved for the bridge namespace")
        } else if pods[..i].contains(name) {
            Some("duplicate pod name")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidPod {
                name: name.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// The testbed's /24: 10.(200..=255).x.0, spread by PID and counter.
fn subnet_for(pid: u32, n: u32) -> Ipv4Addr {
    // The splitmix64 finalizer: every input bit moves every output bit.
    let mut z = (u64::from(pid) << 32) | u64::from(n);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let [x, y, ..] = z.to_le_bytes();
    Ipv4Addr::new(10, 200 + x % 56, y, 0)
}

/// Writes a sysctl of the calling thread's network namespace (`key` relative to
/// `/proc/sys`).
fn sysctl(key: &str, value: &str) -> Result<(), Error> {
    let path = std::path::Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|source| Error::Sysctl { path, source })
}

/// A running testbed; dropping it deletes its namespaces (and with them its links).
///
/// Drop child [`Process`] guards before the testbed (declare them after it) so no program
/// outlives its pod's namespace name.
#[derive(Debug)]
pub struct Testbed {
    id: String,
    subnet: Ipv4Addr,
    bridge: Netns,
    pods: Vec<Pod>,
}

impl Testbed {
    /// A [`Builder`] with no pods.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Whether this machine can host a testbed; the error names what is missing and how to
    /// fix it. Cached per process.
    pub fn check_prerequisites() -> Result<Prerequisites, Unavailable> {
        prereq::check()
    }

    /// Deletes namespaces left behind by test processes that died without cleaning up
    /// (e.g. killed by SIGKILL); returns the names deleted. [`Builder::build`] does this too.
    pub fn collect_garbage() -> Vec<String> {
        cleanup::collect_garbage()
    }

    /// The testbed id, `<pid>-<n>`, embedded in every namespace name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The testbed's subnet: network address and prefix length (always 24).
    pub fn subnet(&self) -> (Ipv4Addr, u8) {
        (self.subnet, 24)
    }

    /// The bridge's address (`.1`): every pod's default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The namespace holding the bridge (e.g. for `tcpdump -i br0` while debugging).
    pub fn bridge(&self) -> &Netns {
        &self.bridge
    }

    /// The pods, in the order they were added.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The pod with this name.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// The names of all namespaces of this testbed (bridge first).
    pub fn netns_names(&self) -> Vec<String> {
        std::iter::once(&self.bridge)
            .chain(self.pods.iter().map(|p| &p.netns))
            .map(|ns| ns.name().to_owned())
            .collect()
    }

    /// Deletes the namespaces now and reports the first failure (drop only logs).
    pub fn teardown(mut self) -> Result<(), Error> {
        self.delete_all()
    }

    fn setup(&self) -> Result<(), Error> {
        let br = self.bridge.name();
        let gateway = format!("{}/24", self.gateway());
        cmd::ip(["netns", "add", br])?;
        cmd::ip_in(br, ["link", "set", "lo", "up"])?;
        cmd::ip_in(br, ["link", "add", BRIDGE, "type", "bridge"])?;
        cmd::ip_in(br, ["addr", "add", &gateway, "dev", BRIDGE])?;
        cmd::ip_in(br, ["link", "set", BRIDGE, "up"])?;
        // Every address outside the pods is local to the bridge namespace: stray traffic
        // (an uncaptured VIP, DNS to the host's resolver) gets a TCP RST or an ICMP port
        // unreachable at once instead of a timeout, and goes no further.
        cmd::ip_in(br, ["route", "add", "local", "0.0.0.0/0", "dev", "lo"])?;
        self.bridge.run_in(|| {
            // Answer ARP only for the gateway itself, not for the pods' addresses.
            sysctl("net/ipv4/conf/all/arp_ignore", "1")?;
            // No rate limit on the "unreachable" answers (this namespace only).
            sysctl("net/ipv4/icmp_ratemask", "0")
        })??;
        for (i, pod) in self.pods.iter().enumerate() {
            let ns = pod.netns.name();
            let veth = format!("veth{i}");
            let addr = format!("{}/24", pod.ip);
            cmd::ip(["netns", "add", ns])?;
            // Both ends are created in their namespaces: nothing appears in the host's.
            cmd::ip_in(
                br,
                [
                    "link", "add", &veth, "type", "veth", "peer", "name", POD_IFACE, "netns", ns,
                ],
            )?;
            cmd::ip_in(br, ["link", "set", &veth, "master", BRIDGE])?;
            cmd::ip_in(br, ["link", "set", &veth, "up"])?;
            cmd::ip_in(ns, ["link", "set", "lo", "up"])?;
            cmd::ip_in(ns, ["addr", "add", &addr, "dev", POD_IFACE])?;
            cmd::ip_in(ns, ["link", "set", POD_IFACE, "up"])?;
            cmd::ip_in(
                ns,
                [
                    "route",
                    "add",
                    "default",
                    "via",
                    &self.gateway().to_string(),
                ],
            )?;
        }
        Ok(())
    }

    /// Deletes every namespace that exists; returns the first error.
    fn delete_all(&mut self) -> Result<(), Error> {
        let mut first = None;
        // Pods first: their veth peers vanish with them.
        for name in self.netns_names().iter().rev() {
            if !cleanup::netns_exists(name) {
                continue;
            }
            if let Err(e) = cleanup::delete_netns(name) {
                eprintln!("mesh-testbed: teardown of testbed {}: {e}", self.id);
                first.get_or_insert(e);
            }
        }
        cleanup::unregister(&self.id);
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Errors were logged by `delete_all`.
        let _ = self.delete_all();
    }
}

/// One pod: a network namespace with an address on the testbed's subnet.
///
/// Cheap to clone and `Send`, so a handle can move into a thread; it does not own the
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    name: String,
    ip: Ipv4Addr,
    netns: Netns,
}

impl Pod {
    /// The pod's name within the testbed (e.g. `pod0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod's address on `eth0`.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The pod's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The namespace's name, for `ip netns exec <name> …`.
    pub fn netns_name(&self) -> &str {
        self.netns.name()
    }

    /// See [`Netns::command`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        self.netns.command(program)
    }

    /// See [`Netns::command_as`].
    pub fn command_as(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        uid: u32,
        gid: u32,
    ) -> std::process::Command {
        self.netns.command_as(program, uid, gid)
    }

    /// See [`Netns::spawn`].
    pub fn spawn(&self, cmd: &mut std::process::Command) -> Result<Process, Error> {
        self.netns.spawn(cmd)
    }

    /// See [`Netns::run_in`].
    pub fn run_in<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        self.netns.run_in(f)
    }

    /// See [`Netns::spawn_thread`].
    pub fn spawn_thread<F, R>(
        &self,
        f: F,
    ) -> Result<std::thread::JoinHandle<Result<R, Error>>, Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.netns.spawn_thread(f)
    }

    /// See [`Netns::wait_for_tcp`].
    pub fn wait_for_tcp(
        &self,
        addr: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> Result<(), Error> {
        self.netns.wait_for_tcp(addr, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn builder_numbers_pods_after_existing_ones() {
        let b = Testbed::builder().pod("client").pods(2);
        assert_eq!(b.pods, names(&["client", "pod1", "pod2"]));
    }

    #[test]
    fn pod_names_are_validated() {
        assert!(validate(&names(&["a", "b-2"])).is_ok());
        for bad in ["", "Upper", "under_score", "br", &"x".repeat(33)] {
            let err = validate(&names(&[bad])).unwrap_err();
            assert!(matches!(err, Error::InvalidPod { .. }), "{bad:?}: {err}");
        }
        let err = validate(&names(&["a", "a"])).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
        assert!(validate(&vec!["p".to_owned(); MAX_PODS + 1]).is_err());
    }

    #[test]
    fn subnets_stay_in_range_and_differ() {
        let mut seen = std::collections::BTreeSet::new();
        for pid in 1000..1100 {
            for n in 0..3 {
                let s = subnet_for(pid, n);
                let [a, b, _, d] = s.octets();
                assert_eq!((a, d), (10, 0), "{s}");
                assert!(b >= 200, "{s}");
                seen.insert(s);
            }
        }
        // Not a uniqueness guarantee (namespaces isolate equal subnets), but well spread.
        assert!(seen.len() > 250, "only {} distinct subnets", seen.len());
    }
}
