//! `mesh-proxy init`: installs the iptables rules that send a pod's TCP traffic through its
//! proxy (transparent capture, DESIGN.md "Data plane"), like `istio-iptables` and Linkerd's
//! `proxy-init`.
//!
//! It runs once in the pod's network namespace before the app starts (a Kubernetes init
//! container with `NET_ADMIN`, or a testbed pod) and exits. The proxy then finds captured
//! connections on its capture ports and reads their original destination with
//! `SO_ORIGINAL_DST`.
//!
//! # What is captured
//!
//! All rules live in the `nat` table, in chains we own (prefix `MESH_`), hooked from the
//! built-in chains by exactly one jump each: `PREROUTING -p tcp -j MESH_INBOUND` and
//! `OUTPUT -p tcp -j MESH_OUTPUT`. UDP and other protocols are never touched.
//!
//! - **Inbound** (`MESH_INBOUND`): TCP arriving at the pod is redirected to the inbound
//!   capture port (15006), except the proxy's own ports, which peers and the kubelet reach
//!   directly — 15008 (mesh mTLS), 15020 (metrics), 15021 (health), 15000 (admin; listening
//!   on localhost only, so a direct connection is refused rather than forwarded) — and the
//!   `--exclude-inbound-ports`. `--include-inbound-ports` narrows capture to a list.
//! - **Outbound** (`MESH_OUTPUT`), in order: `--exclude-outbound-ports` are not captured;
//!   loopback destinations (127.0.0.0/8, ::1) are not captured; connections from the
//!   passthrough source 127.0.0.6 (`::6`) over `lo` are not captured (the proxy may bind it to
//!   reach an app that listens on the pod address only); the proxy (uid or gid 1337) calling
//!   the pod's **own** address over `lo` goes through `MESH_INBOUND`, i.e. takes the inbound
//!   path like any other client of this pod — this is Istio's
//!   `-o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT`, which matters
//!   when a service the app calls resolves to an endpoint in its own pod (the server-side
//!   policy still applies), while 15008 and the other excluded ports stay direct; all other
//!   traffic of the proxy (and of `--exclude-uids` / `--exclude-gids`) is never captured, so
//!   the proxy cannot loop into itself; other programs calling the pod's own address over
//!   `lo` are not captured (app to itself by endpoint address, as both Istio and Linkerd do);
//!   `--exclude-outbound-cidrs` are not captured; everything else (or only the
//!   `--include-outbound-cidrs`) is redirected to the outbound capture port (15001).
//!
//! The proxy must therefore forward inbound connections to the app on a loopback address (or
//! from the passthrough source); a forward from uid 1337 to the pod address would be
//! captured again.
//!
//! # How it is applied
//!
//! [`render`] is a pure function from [`Config`] to `iptables-restore` input for one
//! address family. At run time the current `nat` table is read (`iptables-save -t nat`) and
//! the ruleset is applied in one atomic `iptables-restore --noflush` commit that (re)creates our
//! chains, adds a hook jump only when it is missing and deletes duplicates and leftovers, so
//! running init any number of times leaves exactly one copy of every rule. `--clean` removes
//! every `MESH_*` chain and every jump into one (a no-op when there is none). The iptables
//! backend (nft or legacy) is detected ([`IptablesMode`]); IPv6 rules are installed when the
//! namespace has IPv6 ([`Ipv6Mode`]). Everything applied is printed to stdout.

mod config;
mod iptables;
mod rules;

use std::fmt::Write as _;

pub use config::{
    Cidr, Config, INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT, PROXY_ID, PROXY_INBOUND_PORTS,
    PortRange, Selection, parse_cidr, parse_cidr_list, parse_cidr_selection, parse_id_list,
    parse_port, parse_port_list, parse_port_selection,
};
pub use iptables::{Backend, IptablesMode};
pub use rules::{
    CHAIN_PREFIX, Family, IN_REDIRECT, INBOUND, NatState, OUTPUT, REDIRECT, clean_plan,
    install_plan, render,
};

use iptables::{Ipv6, Tools};

/// The log prefix of every line this command prints.
const LOG: &str = "mesh-proxy init:";

/// `mesh-proxy init` arguments. Lists are comma-separated; every setting has an environment
/// variable fallback (`MESH_INIT_<FLAG>`, e.g. `MESH_INIT_EXCLUDE_INBOUND_PORTS`), convenient
/// for init-container specs.
///
/// (List fields are spelled `Option<std::vec::Vec<_>>`: clap's derive reads a plain `Vec` as
/// "the flag repeats", while each of these flags takes one comma-separated value.)
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// UID the proxy runs as; its traffic is never captured.
    #[arg(long, env = "MESH_INIT_PROXY_UID", default_value_t = PROXY_ID, value_name = "UID")]
    pub proxy_uid: u32,

    /// GID the proxy runs as; its traffic is never captured.
    #[arg(long, env = "MESH_INIT_PROXY_GID", default_value_t = PROXY_ID, value_name = "GID")]
    pub proxy_gid: u32,

    /// Port that captured outbound connections are redirected to.
    #[arg(
        long,
        env = "MESH_INIT_OUTBOUND_PORT",
        default_value_t = OUTBOUND_CAPTURE_PORT,
        value_parser = parse_port,
        value_name = "PORT"
    )]
    pub outbound_port: u16,

    /// Port that captured inbound connections are redirected to.
    #[arg(
        long,
        env = "MESH_INIT_INBOUND_PORT",
        default_value_t = INBOUND_CAPTURE_PORT,
        value_parser = parse_port,
        value_name = "PORT"
    )]
    pub inbound_port: u16,

    /// Destination ports (or ranges, `8000-8010`) whose outbound connections are not captured.
    #[arg(long, env = "MESH_INIT_EXCLUDE_OUTBOUND_PORTS", value_parser = parse_port_list, value_name = "PORTS")]
    pub exclude_outbound_ports: Option<std::vec::Vec<PortRange>>,

    /// Ports (or ranges) reached directly by inbound connections, besides the proxy's own
    /// 15008, 15020, 15021 and 15000.
    #[arg(long, env = "MESH_INIT_EXCLUDE_INBOUND_PORTS", value_parser = parse_port_list, value_name = "PORTS")]
    pub exclude_inbound_ports: Option<std::vec::Vec<PortRange>>,

    /// Inbound ports to capture: `*` for all, or a list (empty: none).
    #[arg(
        long,
        env = "MESH_INIT_INCLUDE_INBOUND_PORTS",
        default_value = "*",
        value_parser = parse_port_selection,
        value_name = "PORTS"
    )]
    pub include_inbound_ports: Selection<PortRange>,

    /// Destination networks (CIDRs, IPv4 or IPv6) whose outbound connections are not captured.
    #[arg(long, env = "MESH_INIT_EXCLUDE_OUTBOUND_CIDRS", value_parser = parse_cidr_list, value_name = "CIDRS")]
    pub exclude_outbound_cidrs: Option<std::vec::Vec<Cidr>>,

    /// Destination networks to capture: `*` for all, or a list of CIDRs (empty: none).
    #[arg(
        long,
        env = "MESH_INIT_INCLUDE_OUTBOUND_CIDRS",
        default_value = "*",
        value_parser = parse_cidr_selection,
        value_name = "CIDRS"
    )]
    pub include_outbound_cidrs: Selection<Cidr>,

    /// Further uids whose outbound connections are not captured.
    #[arg(long, env = "MESH_INIT_EXCLUDE_UIDS", value_parser = parse_id_list, value_name = "UIDS")]
    pub exclude_uids: Option<std::vec::Vec<u32>>,

    /// Further gids whose outbound connections are not captured.
    #[arg(long, env = "MESH_INIT_EXCLUDE_GIDS", value_parser = parse_id_list, value_name = "GIDS")]
    pub exclude_gids: Option<std::vec::Vec<u32>>,

    /// IPv6 rules: `auto` installs them when the namespace has IPv6 and ip6tables works (and
    /// fails when ip6tables is broken but routable IPv6 addresses exist, which would bypass
    /// capture); `on` requires them; `off` skips them.
    #[arg(long, env = "MESH_INIT_IPV6", value_enum, default_value_t = Ipv6Mode::Auto, value_name = "MODE")]
    pub ipv6: Ipv6Mode,

    /// iptables backend: `auto` uses the one already holding rules in this namespace, else
    /// the system `iptables` binary's.
    #[arg(long, env = "MESH_INIT_IPTABLES_MODE", value_enum, default_value_t = IptablesMode::Auto, value_name = "MODE")]
    pub iptables_mode: IptablesMode,

    /// Print what would be applied and change nothing (no iptables command is run unless
    /// combined with --clean, which reads the current rules).
    #[arg(long)]
    pub dry_run: bool,

    /// Remove every rule and chain `mesh-proxy init` installed (a no-op when there is none).
    #[arg(long)]
    pub clean: bool,
}

/// `--ipv6`: whether to install ip6tables rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Ipv6Mode {
    /// When the namespace has IPv6 and ip6tables works.
    #[default]
    Auto,
    /// Always; fail when that is impossible.
    On,
    /// Never.
    Off,
}

/// Errors from `mesh-proxy init`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Flags that are valid one by one but not together.
    #[error("{0}")]
    InvalidConfig(String),

    /// An iptables binary is missing.
    #[error("`{program}` not found; hint: {hint}")]
    NotFound {
        /// The binary looked for.
        program: String,
        /// How to install it.
        hint: &'static str,
    },

    /// An iptables command could not be started.
    #[error("cannot run `{command}`: {source}; hint: {}", iptables::PRIVILEGE_HINT)]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },

    /// An iptables command ran and failed.
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

    /// IPv6 rules were required (by `--ipv6 on`, or by routable IPv6 addresses that would
    /// otherwise bypass capture) but cannot be installed.
    #[error(
        "cannot install IPv6 capture rules, which are required because {why}: {reason}; hint: {hint}"
    )]
    Ipv6Unavailable {
        /// Why IPv6 rules are required.
        why: &'static str,
        /// Why they cannot be installed.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
}

/// Runs `mesh-proxy init`: installs the capture rules, or removes them with `--clean`, or
/// prints them with `--dry-run`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    if args.clean {
        clean(args)?;
    } else if args.dry_run {
        dry_run(&config, args.ipv6);
    } else {
        install(&config, args)?;
    }
    Ok(())
}

/// A one-line summary of the effective configuration, for the log.
fn summary(config: &Config) -> String {
    fn list<T: std::fmt::Display>(items: &[T]) -> String {
        if items.is_empty() {
            return "none".to_owned();
        }
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
    fn selection<T: std::fmt::Display>(s: &Selection<T>) -> String {
        match s {
            Selection::All => "*".to_owned(),
            Selection::Only(items) => list(items),
        }
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "proxy uid {} gid {}, outbound port {}, inbound port {}, \
         exclude outbound ports {}, exclude inbound ports {}, include inbound ports {}, \
         exclude outbound cidrs {}, include outbound cidrs {}, exclude uids {}, exclude gids {}",
        config.proxy_uid,
        config.proxy_gid,
        config.outbound_port,
        config.inbound_port,
        list(&config.exclude_outbound_ports),
        list(&config.exclude_inbound_ports),
        selection(&config.include_inbound_ports),
        list(&config.exclude_outbound_cidrs),
        selection(&config.include_outbound_cidrs),
        list(&config.exclude_uids),
        list(&config.exclude_gids),
    );
    out
}

fn dry_run(config: &Config, ipv6: Ipv6Mode) {
    println!("{LOG} {}", summary(config));
    println!("{LOG} dry run: nothing is changed");
    println!("{LOG} IPv4 ruleset (input for iptables-restore --noflush):");
    print!("{}", render(config, Family::V4));
    let v6 = match (ipv6, iptables::ipv6_support()) {
        (Ipv6Mode::Off, _) => Err("--ipv6 off".to_owned()),
        (Ipv6Mode::Auto, Ipv6::Absent(why)) => Err(why),
        _ => Ok(()),
    };
    match v6 {
        Ok(()) => {
            println!("{LOG} IPv6 ruleset (input for ip6tables-restore --noflush):");
            print!("{}", render(config, Family::V6));
        }
        Err(why) => println!("{LOG} no IPv6 ruleset: {why}"),
    }
}

/// One family's tools and current state, read before anything is changed.
struct Target {
    tools: Tools,
    state: NatState,
}

impl Target {
    /// Reads the `nat` table (creating it if needed: we are about to write to it).
    fn read(tools: Tools) -> Result<Self, Error> {
        let state = NatState::parse(&tools.save_nat()?);
        Ok(Self { tools, state })
    }

    /// Reads the `nat` table only if it exists: `*-save -t nat` would instantiate an empty
    /// one in a backend the namespace does not use.
    fn read_existing(tools: Tools) -> Result<Self, Error> {
        let state = NatState::parse(&tools.save_all()?);
        Ok(Self { tools, state })
    }

    fn apply(&self, config: &Config) -> Result<(), Error> {
        let text = install_plan(config, self.tools.family, &self.state);
        self.tools.restore(&text)?;
        println!(
            "{LOG} applied {} rules ({}) with `{}`:",
            self.tools.family.label(),
            self.tools.backend,
            self.tools.restore_command()
        );
        print!("{text}");
        Ok(())
    }
}

fn install(config: &Config, args: &Args) -> Result<(), Error> {
    println!("{LOG} {}", summary(config));
    let (backend, why) = iptables::choose_backend(args.iptables_mode)?;
    println!("{LOG} iptables backend {backend} ({why})");
    // Read both families before changing anything, so a missing ip6tables fails early.
    let v4 = Target::read(Tools::find(backend, Family::V4)?)?;
    let v6 = ipv6_target(args.ipv6, backend)?;
    v4.apply(config)?;
    match v6 {
        None => {}
        Some((target, required)) => match (target.apply(config), required) {
            (Ok(()), _) => {}
            (Err(e), None) => {
                println!("{LOG} warning: IPv6 rules not installed (no routable IPv6 here): {e}");
            }
            (Err(e), Some(why)) => {
                return Err(Error::Ipv6Unavailable {
                    why,
                    reason: e.to_string(),
                    hint: IPV6_HINT,
                });
            }
        },
    }
    Ok(())
}

const IPV6_HINT: &str = "make ip6tables work in this namespace (apt-get install -y iptables; \
     kernel module ip6table_nat), or pass --ipv6 off to capture IPv4 only";

/// Decides about IPv6 rules. `Some((target, required))`: install them; `required` says why
/// failing to is an error (`None`: a failure is only a warning).
fn ipv6_target(
    mode: Ipv6Mode,
    backend: Backend,
) -> Result<Option<(Target, Option<&'static str>)>, Error> {
    if mode == Ipv6Mode::Off {
        println!("{LOG} IPv6: skipped (--ipv6 off)");
        return Ok(None);
    }
    let required = match (mode, iptables::ipv6_support()) {
        (Ipv6Mode::On, Ipv6::Absent(reason)) => {
            return Err(Error::Ipv6Unavailable {
                why: "--ipv6 on was given",
                reason,
                hint: IPV6_HINT,
            });
        }
        (_, Ipv6::Absent(reason)) => {
            println!("{LOG} IPv6: skipped ({reason})");
            return Ok(None);
        }
        (Ipv6Mode::On, Ipv6::Present { .. }) => Some("--ipv6 on was given"),
        (_, Ipv6::Present { routable: true }) => {
            Some("this namespace has routable IPv6 addresses, whose traffic would bypass the proxy")
        }
        (_, Ipv6::Present { routable: false }) => None,
    };
    match Tools::find(backend, Family::V6).and_then(Target::read) {
        Ok(target) => Ok(Some((target, required))),
        Err(e) => match required {
            None => {
                println!(
                    "{LOG} IPv6: skipped (no routable IPv6 address, and ip6tables fails: {e})"
                );
                Ok(None)
            }
            Some(why) => Err(Error::Ipv6Unavailable {
                why,
                reason: e.to_string(),
                hint: IPV6_HINT,
            }),
        },
    }
}

fn clean(args: &Args) -> Result<(), Error> {
    let backends = match args.iptables_mode {
        IptablesMode::Auto => Backend::ALL.to_vec(),
        IptablesMode::Nft => vec![Backend::Nft],
        IptablesMode::Legacy => vec![Backend::Legacy],
    };
    let explicit_backend = args.iptables_mode != IptablesMode::Auto;
    let mut families = vec![Family::V4];
    match (args.ipv6, iptables::ipv6_support()) {
        (Ipv6Mode::Off, _) => {}
        (Ipv6Mode::On, Ipv6::Absent(reason)) => {
            return Err(Error::Ipv6Unavailable {
                why: "--ipv6 on was given",
                reason,
                hint: IPV6_HINT,
            });
        }
        (Ipv6Mode::Auto, Ipv6::Absent(_)) => {}
        (_, Ipv6::Present { .. }) => families.push(Family::V6),
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut read_v4 = false;
    let mut first_error = None;
    let mut removed = false;
    for &backend in &backends {
        for &family in &families {
            let must_work = match family {
                Family::V4 => explicit_backend,
                Family::V6 => explicit_backend && args.ipv6 == Ipv6Mode::On,
            };
            let target = match Tools::find(backend, family).and_then(Target::read_existing) {
                Ok(target) => target,
                Err(e) if must_work => return Err(e),
                Err(e) => {
                    if family == Family::V4 {
                        first_error.get_or_insert(e);
                    }
                    continue;
                }
            };
            read_v4 |= family == Family::V4;
            let Some(text) = clean_plan(&target.state) else {
                continue;
            };
            if !args.dry_run {
                target.tools.restore(&text)?;
            }
            removed = true;
            println!(
                "{LOG} {verb} {} rules ({}) with `{}`:",
                family.label(),
                backend,
                target.tools.restore_command()
            );
            print!("{text}");
        }
    }
    if !read_v4 {
        return Err(first_error.unwrap_or(Error::NotFound {
            program: "iptables-nft-save or iptables-legacy-save".to_owned(),
            hint: iptables::INSTALL_HINT,
        }));
    }
    if !removed {
        println!("{LOG} nothing to clean: no {CHAIN_PREFIX}* chains or jumps in the nat table");
    }
    Ok(())
}
