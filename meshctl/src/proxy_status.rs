//! `meshctl proxy-status [PROXY]`: every connected proxy and how far its config is from
//! what the control plane computed (`GET /debug/proxies`, [`ProxyStatusList`]).
//!
//! The table is Istio's: one row per proxy with its sync state (SYNCED, STALE, NACKED), the
//! config version it acknowledged and ages computed against the document's own clock
//! (`now_unix_ms`), then the reason of each NACK. `-o json|yaml` prints the document (with
//! PROXY, holding only the proxies it names).
//!
//! Exit status: 0 (a report, whatever the states), 1 when PROXY matches nothing (or a pod
//! name matches proxies in several namespaces), and with `--check` 1 unless the control
//! plane has synced and every proxy shown is SYNCED. 2 when the control plane gave no
//! usable answer.

use std::io::Write;
use std::process::ExitCode;

use mesh_api::status::{ProxyStatus, ProxyStatusList, SyncState};

use crate::control;
use crate::output::{Format, Table, age_between, write_document};

/// The debug API path.
pub const PATH: &str = "/debug/proxies";

/// Arguments of `meshctl proxy-status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only this proxy: its id, `pod.namespace`, or a pod name that is unique.
    #[arg(value_name = "PROXY")]
    pub proxy: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Exit 1 unless the control plane has synced and every proxy shown is SYNCED.
    #[arg(long)]
    pub check: bool,
    /// How to reach the control plane.
    #[command(flatten)]
    pub control: control::Args,
}

/// PROXY named no proxy, or several.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// Nothing matched.
    #[error("no proxy matches {query:?}; {}", known_list(.known))]
    NotFound {
        /// What was asked for.
        query: String,
        /// The names of the connected proxies (`pod.namespace`).
        known: Vec<String>,
    },
    /// A pod name matched proxies in several namespaces.
    #[error(
        "pod name {query:?} matches proxies in several namespaces: {}; name one as pod.namespace",
        .matches.join(", ")
    )]
    Ambiguous {
        /// What was asked for.
        query: String,
        /// The names that matched.
        matches: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    const MAX: usize = 20;
    match known.len() {
        0 => "no proxies are connected".to_owned(),
        n if n <= MAX => format!("connected proxies: {}", known.join(", ")),
        n => format!(
            "connected proxies: {}, and {} more (see `meshctl proxy-status`)",
            known[..MAX].join(", "),
            n - MAX
        ),
    }
}

/// Prints the status of the connected proxies.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let mut list: ProxyStatusList = control::get(&args.control, PATH)?;
    if let Some(query) = &args.proxy {
        match select(&list.proxies, query) {
            Ok(selected) => list.proxies = selected,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    match args.output {
        Format::Table => out.write_all(render(&list).as_bytes())?,
        format => write_document(format, &list, out)?,
    }
    out.flush()?;
    if args.check
        && let Some(why) = check(&list)
    {
        eprintln!("check failed: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A proxy's display name, `pod.namespace` (as Istio prints it).
pub fn name(p: &ProxyStatus) -> String {
    format!("{}.{}", p.pod_name, p.namespace)
}

/// The proxies `query` names: the one with that id, else those named `pod.namespace`
/// (several streams of one pod), else those whose pod name it is when all are in one
/// namespace.
pub fn select(proxies: &[ProxyStatus], query: &str) -> Result<Vec<ProxyStatus>, SelectError> {
    let selected: Vec<ProxyStatus> = mesh_api::status::select_proxies(proxies, query, |p| {
        (p.id.as_str(), p.pod_name.as_str(), p.namespace.as_str())
    })
    .into_iter()
    .cloned()
    .collect();
    // By id or `pod.namespace` the answer is one pod; by pod name it must be one too.
    let mut names: Vec<String> = selected.iter().map(name).collect();
    names.dedup();
    match names.len() {
        0 => Err(SelectError::NotFound {
            query: query.to_owned(),
            known: {
                let mut known: Vec<String> = proxies.iter().map(name).collect();
                known.dedup();
                known
            },
        }),
        1 => Ok(selected),
        _ => Err(SelectError::Ambiguous {
            query: query.to_owned(),
            matches: names,
        }),
    }
}

/// Why `--check` fails, or `None` when the control plane has synced and every proxy is
/// SYNCED.
pub fn check(list: &ProxyStatusList) -> Option<String> {
    if !list.control_plane.synced {
        return Some("the control plane has not loaded its config sources yet".to_owned());
    }
    let behind: Vec<String> = list
        .proxies
        .iter()
        .filter(|p| p.sync != SyncState::Synced)
        .map(|p| format!("{} ({})", name(p), p.sync.as_str()))
        .collect();
    if behind.is_empty() {
        return None;
    }
    Some(format!(
        "{} of {} proxies not SYNCED: {}",
        behind.len(),
        list.proxies.len(),
        behind.join(", ")
    ))
}

/// The table: a header line on the control plane, a row per proxy, then each NACK.
pub fn render(list: &ProxyStatusList) -> String {
    let cp = &list.control_plane;
    let mut text = format!(
        "mesh-control {}, config version {}\n",
        or_dash(&cp.version),
        or_dash(&cp.config_version)
    );
    if !cp.synced {
        text.push_str(
            "warning: the control plane has not loaded its config sources yet; it pushes no config until it has\n",
        );
    }
    if list.proxies.is_empty() {
        text.push_str("no proxies are connected\n");
        return text;
    }
    let mut table = Table::new(&[
        "NAME",
        "ID",
        "VERSION",
        "CONFIG VERSION",
        "SYNC",
        "LAST ACK",
        "CONNECTED",
    ]);
    let now = list.now_unix_ms;
    for p in &list.proxies {
        table.row(vec![
            name(p),
            p.id.clone(),
            or_dash(&p.proxy_version).to_owned(),
            or_dash(&p.acked_version).to_owned(),
            p.sync.as_str().to_owned(),
            p.last_ack_unix_ms
                .map_or_else(|| "never".to_owned(), |t| age_between(t, now)),
            age_between(p.connected_unix_ms, now),
        ]);
    }
    text.push_str(&table.render());
    let nacks: Vec<_> = list
        .proxies
        .iter()
        .filter(|p| p.sync == SyncState::Nacked)
        .collect();
    if !nacks.is_empty() {
        text.push('\n');
    }
    for p in nacks {
        match &p.last_nack {
            Some(n) => text.push_str(&format!(
                "{}: NACKED {} version {}: {}\n",
                name(p),
                n.type_url,
                or_dash(&n.version),
                n.message.trim_end()
            )),
            None => text.push_str(&format!("{}: NACKED (no reason recorded)\n", name(p))),
        }
    }
    text
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests;
