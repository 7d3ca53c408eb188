//! The typed, validated configuration behind `mesh-proxy init`'s flags.
//!
//! The command line ([`super::Args`]) parses every value with the `parse_*` functions here, so a
//! bad value is rejected by clap with an error naming the flag and the value (e.g.
//! `invalid value '80a' for '--exclude-inbound-ports <PORTS>': "80a" is not a port number
//! (1-65535)`). [`Config`] is what the pure renderer ([`super::render`]) consumes; it is built
//! from the arguments by [`Config::from_args`], which adds the checks that involve more than one
//! flag.

use super::{Args, Error};

pub use mesh_api::capture::{
    Cidr, PortRange, parse_cidr, parse_cidr_list, parse_port, parse_port_list,
};
use mesh_api::capture::{items, push_unique};

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

/// Parses `*` (all ports) or a port list as [`parse_port_list`] does.
pub fn parse_port_selection(value: &str) -> Result<Selection<PortRange>, String> {
    selection(value, parse_port_list)
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
