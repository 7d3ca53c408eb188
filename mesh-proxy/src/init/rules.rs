//! Rendering the capture ruleset as `iptables-restore --noflush` input: pure functions, no I/O.
//!
//! [`render`] turns a [`Config`] into the complete ruleset for one address family, as it is
//! applied to a namespace that holds none of our rules (and as `--dry-run` prints it).
//! [`install_plan`] and [`clean_plan`] take the namespace's current `nat` table (parsed from
//! `iptables-save -t nat` into a [`NatState`]) and produce the input that reaches the desired
//! state in one atomic `iptables-restore` commit:
//!
//! - our chains are declared, which creates them or flushes them (`--noflush` keeps every
//!   other chain untouched), then refilled;
//! - the jumps from the built-in `PREROUTING` and `OUTPUT` chains are added only when missing;
//!   duplicates, and jumps into `MESH_*` chains that this version does not install, are
//!   deleted;
//! - `MESH_*` chains this version does not install (left by an older version) are flushed
//!   and deleted.
//!
//! The `nat` table's `MESH_` prefix belongs to `mesh-proxy init`.

use std::fmt::Write as _;

use super::config::{Cidr, Config, PROXY_INBOUND_PORTS, Selection};

/// The prefix of every chain `mesh-proxy init` owns in the `nat` table.
pub const CHAIN_PREFIX: &str = "MESH_";
/// Inbound TCP: port exclusions, then the jump to [`IN_REDIRECT`].
pub const INBOUND: &str = "MESH_INBOUND";
/// Redirects to the inbound capture port.
pub const IN_REDIRECT: &str = "MESH_IN_REDIRECT";
/// Outbound TCP: owner, loopback, port and network exclusions, then [`REDIRECT`].
pub const OUTPUT: &str = "MESH_OUTPUT";
/// Redirects to the outbound capture port.
pub const REDIRECT: &str = "MESH_REDIRECT";

/// The chains we install, in declaration order.
const CHAINS: [&str; 4] = [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT];

/// The hooks: one jump each from a built-in chain, exactly as `iptables-save` prints it
/// (without the leading `-A `), so an existing jump is recognised by string equality.
const HOOKS: [&str; 2] = [
    "PREROUTING -p tcp -j MESH_INBOUND",
    "OUTPUT -p tcp -j MESH_OUTPUT",
];

/// An IP address family: which of `iptables` / `ip6tables` a ruleset is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// `IPv4` / `IPv6`, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    /// The loopback destinations, never captured.
    pub fn loopback(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.0/8",
            Self::V6 => "::1/128",
        }
    }

    /// The source address the proxy binds to reach the app on the pod's own address without
    /// being captured (Istio's inbound passthrough address; on IPv6 the proxy must first add
    /// `::6/128` to `lo`).
    pub fn passthrough_source(self) -> &'static str {
        match self {
            Self::V4 => "127.0.0.6/32",
            Self::V6 => "::6/128",
        }
    }

    fn matches(self, cidr: &Cidr) -> bool {
        cidr.is_ipv4() == (self == Self::V4)
    }
}

/// The ruleset for `family`, as applied to a namespace without any of our rules: the text
/// `--dry-run` prints and [`install_plan`] produces for an empty [`NatState`].
pub fn render(config: &Config, family: Family) -> String {
    install_plan(config, family, &NatState::default())
}

/// The `iptables-restore --noflush` input that installs `config`'s rules for `family` into a
/// `nat` table currently in state `current`, leaving exactly one copy of every rule.
pub fn install_plan(config: &Config, family: Family, current: &NatState) -> String {
    let mut out = Text::default();
    out.line("*nat");
    for chain in CHAINS {
        out.line(&format!(":{chain} - [0:0]"));
    }
    let stale: Vec<&str> = current
        .chains
        .iter()
        .map(String::as_str)
        .filter(|c| !CHAINS.contains(c))
        .collect();
    for chain in &stale {
        out.line(&format!(":{chain} - [0:0]"));
    }
    // Keep the first copy of each wanted hook; delete everything else that jumps into ours.
    let mut kept: Vec<&str> = Vec::new();
    let mut delete: Vec<&str> = Vec::new();
    for jump in &current.jumps {
        if HOOKS.contains(&jump.as_str()) && !kept.contains(&jump.as_str()) {
            kept.push(jump);
        } else {
            delete.push(jump);
        }
    }
    if !delete.is_empty() || !stale.is_empty() {
        out.comment("Left over from an earlier run: duplicate jumps and chains no longer used.");
        for jump in delete {
            out.line(&format!("-D {jump}"));
        }
        for chain in &stale {
            out.line(&format!("-X {chain}"));
        }
    }

    inbound_rules(config, &mut out);
    outbound_rules(config, family, &mut out);

    let missing: Vec<&str> = HOOKS.into_iter().filter(|h| !kept.contains(h)).collect();
    if !missing.is_empty() {
        out.comment("Hooks: one jump each from PREROUTING and OUTPUT (TCP only).");
        for hook in missing {
            out.line(&format!("-A {hook}"));
        }
    }
    out.line("COMMIT");
    out.0
}

/// The `iptables-restore --noflush` input that removes every `MESH_*` chain and every jump
/// into one; `None` when there is nothing to remove.
pub fn clean_plan(current: &NatState) -> Option<String> {
    if current.is_empty() {
        return None;
    }
    let mut out = Text::default();
    out.line("*nat");
    // Declaring a chain flushes it, so no chain still references another when deleted.
    for chain in &current.chains {
        out.line(&format!(":{chain} - [0:0]"));
    }
    for jump in &current.jumps {
        out.line(&format!("-D {jump}"));
    }
    for chain in &current.chains {
        out.line(&format!("-X {chain}"));
    }
    out.line("COMMIT");
    Some(out.0)
}

fn inbound_rules(config: &Config, out: &mut Text) {
    out.comment(&format!(
        "{INBOUND}: TCP arriving at the pod (and the proxy calling its own pod over lo)."
    ));
    let own: Vec<String> = PROXY_INBOUND_PORTS
        .iter()
        .map(|(port, what)| format!("{port} {what}"))
        .collect();
    out.comment(&format!(
        "The proxy's own ports are reached directly: {}.",
        own.join(", ")
    ));
    for (port, _) in PROXY_INBOUND_PORTS {
        out.rule(&format!("-A {INBOUND} -p tcp --dport {port} -j RETURN"));
    }
    if !config.exclude_inbound_ports.is_empty() {
        out.comment("Excluded inbound ports (--exclude-inbound-ports).");
        for port in &config.exclude_inbound_ports {
            out.rule(&format!("-A {INBOUND} -p tcp --dport {port} -j RETURN"));
        }
    }
    match &config.include_inbound_ports {
        Selection::All => {
            out.comment("Every other port goes to the inbound capture port.");
            out.rule(&format!("-A {INBOUND} -p tcp -j {IN_REDIRECT}"));
        }
        Selection::Only(ports) if ports.is_empty() => {
            out.comment("No inbound port is captured (--include-inbound-ports is empty).");
        }
        Selection::Only(ports) => {
            out.comment("These ports go to the inbound capture port (--include-inbound-ports).");
            for port in ports {
                out.rule(&format!(
                    "-A {INBOUND} -p tcp --dport {port} -j {IN_REDIRECT}"
                ));
            }
        }
    }
    out.rule(&format!(
        "-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        config.inbound_port
    ));
}

fn outbound_rules(config: &Config, family: Family, out: &mut Text) {
    out.comment(&format!("{OUTPUT}: TCP connections opened inside the pod."));
    if !config.exclude_outbound_ports.is_empty() {
        out.comment("Excluded destination ports (--exclude-outbound-ports).");
        for port in &config.exclude_outbound_ports {
            out.rule(&format!("-A {OUTPUT} -p tcp --dport {port} -j RETURN"));
        }
    }
    out.comment("Loopback destinations are never captured.");
    out.rule(&format!("-A {OUTPUT} -d {} -j RETURN", family.loopback()));
    out.comment("The proxy reaching the app on the pod's address from the passthrough source.");
    out.rule(&format!(
        "-A {OUTPUT} -s {} -o lo -j RETURN",
        family.passthrough_source()
    ));
    out.comment(
        "The proxy calling its own pod's address (a service endpoint that is this pod) takes \
         the inbound path.",
    );
    let (uid, gid) = (config.proxy_uid, config.proxy_gid);
    out.rule(&format!(
        "-A {OUTPUT} -o lo -m owner --uid-owner {uid} -j {INBOUND}"
    ));
    out.rule(&format!(
        "-A {OUTPUT} -o lo -m owner --gid-owner {gid} -j {INBOUND}"
    ));
    out.comment("The proxy's own connections are never captured.");
    out.rule(&format!("-A {OUTPUT} -m owner --uid-owner {uid} -j RETURN"));
    out.rule(&format!("-A {OUTPUT} -m owner --gid-owner {gid} -j RETURN"));
    if !config.exclude_uids.is_empty() || !config.exclude_gids.is_empty() {
        out.comment("Excluded owners (--exclude-uids, --exclude-gids).");
        for uid in &config.exclude_uids {
            out.rule(&format!("-A {OUTPUT} -m owner --uid-owner {uid} -j RETURN"));
        }
        for gid in &config.exclude_gids {
            out.rule(&format!("-A {OUTPUT} -m owner --gid-owner {gid} -j RETURN"));
        }
    }
    out.comment("Other programs calling the pod's own addresses are not captured.");
    out.rule(&format!("-A {OUTPUT} -o lo -j RETURN"));
    let excluded: Vec<&Cidr> = config
        .exclude_outbound_cidrs
        .iter()
        .filter(|c| family.matches(c))
        .collect();
    if !excluded.is_empty() {
        out.comment("Excluded destinations (--exclude-outbound-cidrs).");
        for cidr in excluded {
            out.rule(&format!("-A {OUTPUT} -d {cidr} -j RETURN"));
        }
    }
    match &config.include_outbound_cidrs {
        Selection::All => {
            out.comment("Everything else goes to the outbound capture port.");
            out.rule(&format!("-A {OUTPUT} -j {REDIRECT}"));
        }
        Selection::Only(cidrs) => {
            let included: Vec<&Cidr> = cidrs.iter().filter(|c| family.matches(c)).collect();
            if included.is_empty() {
                out.comment(&format!(
                    "No {} destination is captured (--include-outbound-cidrs names none).",
                    family.label()
                ));
            } else {
                out.comment("These destinations go to the outbound capture port.");
                for cidr in included {
                    out.rule(&format!("-A {OUTPUT} -d {cidr} -j {REDIRECT}"));
                }
            }
        }
    }
    out.rule(&format!(
        "-A {REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        config.outbound_port
    ));
}

/// Our part of a namespace's `nat` table, parsed from `iptables-save -t nat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatState {
    /// The `MESH_*` chains that exist.
    pub chains: Vec<String>,
    /// Rules outside our chains that jump (or goto) into one, as `iptables-save` prints them
    /// without the leading `-A ` (e.g. `OUTPUT -p tcp -j MESH_OUTPUT`), in table order.
    pub jumps: Vec<String>,
}

impl NatState {
    /// Parses `iptables-save` output; only the `nat` table is read.
    pub fn parse(save: &str) -> Self {
        let mut state = Self::default();
        let mut in_nat = false;
        for line in save.lines().map(str::trim) {
            if let Some(table) = line.strip_prefix('*') {
                in_nat = table == "nat";
            } else if !in_nat {
                continue;
            } else if let Some(decl) = line.strip_prefix(':') {
                let chain = decl.split_whitespace().next().unwrap_or_default();
                if chain.starts_with(CHAIN_PREFIX) && !state.chains.iter().any(|c| c == chain) {
                    state.chains.push(chain.to_owned());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let rule = rule.split_whitespace().collect::<Vec<_>>();
                let chain = rule.first().copied().unwrap_or_default();
                let target = rule
                    .windows(2)
                    .rev()
                    .find(|w| w[0] == "-j" || w[0] == "-g")
                    .map(|w| w[1]);
                if !chain.starts_with(CHAIN_PREFIX)
                    && target.is_some_and(|t| t.starts_with(CHAIN_PREFIX))
                {
                    state.jumps.push(rule.join(" "));
                }
            }
        }
        state
    }

    /// Whether the table holds nothing of ours.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.jumps.is_empty()
    }

    /// How many times each of our hooks is present (`PREROUTING`, `OUTPUT`).
    pub fn hook_counts(&self) -> [usize; 2] {
        HOOKS.map(|h| self.jumps.iter().filter(|j| *j == h).count())
    }
}

/// Restore input being built: rules are deduplicated (a later identical rule can never
/// change the outcome), comments explain each block.
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.0, "# {text}");
    }

    fn rule(&mut self, rule: &str) {
        if !self.0.lines().any(|l| l == rule) {
            self.line(rule);
        }
    }
}

#[cfg(test)]
mod tests;
