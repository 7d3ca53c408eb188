//! The typed, validated configuration behind `mesh-proxy init`'s flags.
//!
//! The command line ([`super::Args`]) parses every value with the `parse_*` functions here, so a
//! bad value is rejected by clap with an error naming the flag and the value (e.g.
//! `invalid value '80a' for '--exclude-inbound-ports <PORTS>': "80a" is not a port number
//! (1-65535)`). [`Config`] is what the pure renderer ([`super::render`]) consumes; it is built
//! from the arguments by [`Config::from_args`], which adds the checks that involve more than one
//! flag.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Args, Error};

/// The proxy's outbound capture port (DESIGN.md, "proxy ports").
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
/// The proxy's inbound capture port (plaintext / permissive).
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
/// The UID and GID the proxy runs as; its traffic is never captured.
pub const PROXY_ID: u32 = 1337;

/// Ports the proxy serves itself, reached directly and never redirected to the inbound
/// capture port, with what they are.
///
/// 15000 (admin) listens on localhost only; it is listed so that a peer connecting to
/// `<pod-ip>:15000` gets a plain "connection refused" instead of being handed to the inbound
/// capture port, whose job is forwarding to the app on localhost.
pub const PROXY_INBOUND_PORTS: [(u16, &str); 4] = [
    (15008, "mesh inbound (mTLS between proxies)"),
    (15020, "metrics"),
    (15021, "health"),
    (15000, "admin"),
];

/// Either everything (`*`) or an explicit list (possibly empty: nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection<T> {
    /// `*`: all ports / all destinations.
    #[default]
    All,
    /// Only these; an empty list selects nothing.
    Only(Vec<T>),
}

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

/// What `mesh-proxy init` installs: everything the rendered ruleset depends on.
///
/// [`Config::default`] is the mesh's standard sidecar (DESIGN.md): proxy uid/gid 1337,
/// outbound capture 15001, inbound capture 15006, every inbound port and every outbound
/// destination captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The proxy's uid: its traffic is never captured.
    pub proxy_uid: u32,
    /// The proxy's gid: its traffic is never captured.
    pub proxy_gid: u32,
    /// Where captured outbound connections are redirected.
    pub outbound_port: u16,
    /// Where captured inbound connections are redirected.
    pub inbound_port: u16,
    /// Destination ports whose outbound connections are not captured.
    pub exclude_outbound_ports: Vec<PortRange>,
    /// Ports whose inbound connections reach the pod directly (in addition to
    /// [`PROXY_INBOUND_PORTS`]).
    pub exclude_inbound_ports: Vec<PortRange>,
    /// Inbound ports that are captured (after the exclusions).
    pub include_inbound_ports: Selection<PortRange>,
    /// Destination networks whose outbound connections are not captured.
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Destination networks whose outbound connections are captured (after the exclusions).
    pub include_outbound_cidrs: Selection<Cidr>,
    /// Further uids whose outbound connections are not captured.
    pub exclude_uids: Vec<u32>,
    /// Further gids whose outbound connections are not captured.
    pub exclude_gids: Vec<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            proxy_uid: PROXY_ID,
            proxy_gid: PROXY_ID,
            outbound_port: OUTBOUND_CAPTURE_PORT,
            inbound_port: INBOUND_CAPTURE_PORT,
            exclude_outbound_ports: Vec::new(),
            exclude_inbound_ports: Vec::new(),
            include_inbound_ports: Selection::All,
            exclude_outbound_cidrs: Vec::new(),
            include_outbound_cidrs: Selection::All,
            exclude_uids: Vec::new(),
            exclude_gids: Vec::new(),
        }
    }
}

impl Config {
    /// Builds the configuration from parsed arguments and checks the rules that span flags.
    pub fn from_args(args: &Args) -> Result<Self, Error> {
        let config = Self {
            proxy_uid: args.proxy_uid,
            proxy_gid: args.proxy_gid,
            outbound_port: args.outbound_port,
            inbound_port: args.inbound_port,
            exclude_outbound_ports: args.exclude_outbound_ports.clone().unwrap_or_default(),
            exclude_inbound_ports: args.exclude_inbound_ports.clone().unwrap_or_default(),
            include_inbound_ports: args.include_inbound_ports.clone(),
            exclude_outbound_cidrs: args.exclude_outbound_cidrs.clone().unwrap_or_default(),
            include_outbound_cidrs: args.include_outbound_cidrs.clone(),
            exclude_uids: args.exclude_uids.clone().unwrap_or_default(),
            exclude_gids: args.exclude_gids.clone().unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules that involve more than one value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.outbound_port == self.inbound_port {
            return Err(Error::InvalidConfig(format!(
                "--outbound-port and --inbound-port must differ (both are {})",
                self.outbound_port
            )));
        }
        for (flag, port) in [
            ("--outbound-port", self.outbound_port),
            ("--inbound-port", self.inbound_port),
        ] {
            if let Some((_, what)) = PROXY_INBOUND_PORTS.iter().find(|(p, _)| *p == port) {
                return Err(Error::InvalidConfig(format!(
                    "{flag}: {port} is the proxy's {what} port, which is never captured; \
                     pick another port"
                )));
            }
        }
        Ok(())
    }
}

// === parsers (clap value parsers; errors name the bad value, clap adds the flag) ===

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

/// Parses `*` (all ports) or a port list as [`parse_port_list`] does.
pub fn parse_port_selection(value: &str) -> Result<Selection<PortRange>, String> {
    selection(value, parse_port_list)
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

/// Parses a comma-separated list of CIDRs; empty items are ignored. `*` is rejected (use
/// `--include-outbound-cidrs ""` to capture no outbound traffic).
pub fn parse_cidr_list(value: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for item in items(value) {
        if item == "*" {
            return Err(
                "\"*\" cannot be excluded; to capture no outbound traffic use \
                 --include-outbound-cidrs \"\""
                    .to_owned(),
            );
        }
        push_unique(&mut out, parse_cidr(item)?);
    }
    Ok(out)
}

/// Parses `*` (every destination) or a CIDR list as [`parse_cidr_list`] does.
pub fn parse_cidr_selection(value: &str) -> Result<Selection<Cidr>, String> {
    selection(value, parse_cidr_list)
}

/// Parses a comma-separated list of numeric uids or gids; empty items are ignored.
pub fn parse_id_list(value: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in items(value) {
        let id = item
            .parse::<u32>()
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| format!("{item:?} is not a numeric uid/gid"))?;
        push_unique(&mut out, id);
    }
    Ok(out)
}

fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn push_unique<T: PartialEq>(out: &mut Vec<T>, value: T) {
    if !out.contains(&value) {
        out.push(value);
    }
}

fn selection<T>(
    value: &str,
    list: impl FnOnce(&str) -> Result<Vec<T>, String>,
) -> Result<Selection<T>, String> {
    if value.trim() == "*" {
        return Ok(Selection::All);
    }
    if items(value).any(|item| item == "*") {
        return Err(format!(
            "{value:?} mixes \"*\" (everything) with other values; give either \"*\" or a list"
        ));
    }
    list(value).map(Selection::Only)
}

#[cfg(test)]
mod tests;
