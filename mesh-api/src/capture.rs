//! Traffic-capture exclusions: the port lists (with ranges) and CIDR lists that
//! `mesh-proxy init` takes as flags (`--exclude-inbound-ports 8080,9000-9010`,
//! `--exclude-outbound-cidrs 10.96.0.0/12`) and sidecar injection reads from pod
//! annotations (`traffic.sidecar.mesh.dev/excludeInboundPorts`, …). One parser for both, so
//! the injector refuses exactly what the init container would, before a pod is created.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One destination port or an inclusive port range (`8000-8010` on the command line).
///
/// Always `1 <= first <= last`; [`fmt::Display`] renders the iptables form (`80`,
/// `8000:8010`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`; `None` when a bound is 0 or `first > last`.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first != 0 && first <= last).then_some(Self { first, last })
    }

    /// A single port; `None` for port 0.
    pub fn single(port: u16) -> Option<Self> {
        Self::new(port, port)
    }

    /// The first port.
    pub fn first(self) -> u16 {
        self.first
    }

    /// The last port (equal to [`PortRange::first`] for a single port).
    pub fn last(self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// An IPv4 or IPv6 network; the address is normalized to the network address
/// (`10.1.2.3/8` becomes `10.0.0.0/8`, as iptables would store it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network `addr/prefix`; `None` when the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(a.to_bits() & mask))
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(a.to_bits() & mask))
            }
            _ => return None,
        };
        Some(Self { addr, prefix })
    }

    /// The network address.
    pub fn addr(self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 network.
    pub fn is_ipv4(self) -> bool {
        self.addr.is_ipv4()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

// === parsers (errors name the bad value; callers add where it came from) ===

/// Parses one port number (1-65535).
pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("{value:?} is not a port number (1-65535)")),
    }
}

/// Parses a comma-separated list of ports and port ranges (`80,443,8000-8010`); empty items
/// are ignored, so `""` is the empty list. Duplicates are dropped.
pub fn parse_port_list(value: &str) -> Result<Vec<PortRange>, String> {
    let mut out = Vec::new();
    for item in items(value) {
        let range = match item.split_once(['-', ':']) {
            Some((first, last)) => {
                let first = parse_port(first)?;
                let last = parse_port(last)?;
                PortRange::new(first, last).ok_or_else(|| {
                    format!(
                        "{item:?} is not a port range (the first port must not exceed the last)"
                    )
                })?
            }
            None => PortRange::single(parse_port(item)?).expect("parse_port rejects 0"),
        };
        push_unique(&mut out, range);
    }
    Ok(out)
}

/// Parses one CIDR (`10.96.0.0/12`, `fd00::/8`) or a bare address (a /32 or /128).
pub fn parse_cidr(value: &str) -> Result<Cidr, String> {
    let value = value.trim();
    let (addr, prefix) = match value.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (value, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("{value:?} is not an IP address or CIDR (expected e.g. 10.96.0.0/12 or fd00::/8)")
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
            let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
            format!("{value:?} is not a CIDR (the prefix length must be 0-{max} for {family})")
        })?,
    };
    Ok(Cidr::new(addr, prefix).expect("the prefix length was checked"))
}

/// Parses a comma-separated list of CIDRs; empty items are ignored, duplicates dropped. `*`
/// is rejected: excluding everything is not an exclusion list.
pub fn parse_cidr_list(value: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for item in items(value) {
        if item == "*" {
            return Err(
                "\"*\" (every destination) cannot be excluded: list the networks that \
                 should bypass the proxy (to capture no outbound traffic at all, use \
                 `mesh-proxy init --include-outbound-cidrs \"\"`)"
                    .to_owned(),
            );
        }
        push_unique(&mut out, parse_cidr(item)?);
    }
    Ok(out)
}

/// The non-empty, trimmed items of a comma-separated list.
pub fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Appends `value` unless `out` has it already.
pub fn push_unique<T: PartialEq>(out: &mut Vec<T>, value: T) {
    if !out.contains(&value) {
        out.push(value);
    }
}
