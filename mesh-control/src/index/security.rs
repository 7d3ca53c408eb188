//! PeerAuthentication → the proxy's [`InboundPolicy`]; AuthorizationPolicies → the
//! [`AuthorizationPolicy`]s that apply to its workload.
//!
//! # mTLS
//!
//! Precedence as in Istio: a policy with a `selector` matching the workload (the oldest
//! wins if several match; a warning names the others) beats the namespace-wide policy (no
//! selector), which beats the mesh-wide one (no selector, in the root namespace); with
//! none the mode is **STRICT** (Istio: PERMISSIVE). `UNSET` inherits from the next scope.
//! Port-level modes (`portLevelMtls`, workload ports) come from the selector policy only.
//!
//! # Authorization
//!
//! A workload gets the policies without a selector in the root namespace (mesh-wide) and
//! in its own namespace, and the policies whose selector matches its labels in its own or
//! the root namespace. Rules translate field for field; a rule the model cannot express
//! (an unknown `when` key such as a JWT claim, a malformed glob, CIDR or port) fails
//! closed: an ALLOW (or AUDIT) policy drops the rule (it can never allow), a DENY policy
//! replaces it with a rule that matches every request (deny more, never less). Both are
//! reported.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mesh_api::{
    config::{
        AuthorizationPolicy as CfgAuthz, PeerAuthentication,
        security::{self as cfg, AuthorizationAction, MtlsMode as CfgMode, Selector},
    },
    model::{
        AuthorizationPolicy, AuthzAction, Condition, ConditionKey, Glob, InboundPolicy, IpNet,
        MtlsMode, Operation, Rule, Source,
    },
};

use super::{
    IndexWarning,
    hosts::{Cx, ResourceRef, push_warning, selects},
};

/// A selector's labels; an empty selector is treated as none (namespace-wide).
fn selector_labels(s: Option<&Selector>) -> Option<BTreeMap<String, String>> {
    s.map(|s| s.match_labels.clone()).filter(|l| !l.is_empty())
}

// === PeerAuthentication ===

/// A translated PeerAuthentication.
#[derive(Debug, Clone)]
pub(super) struct PeerAuthnRecord {
    origin: ResourceRef,
    created: Option<Time>,
    selector: Option<BTreeMap<String, String>>,
    /// `None` is UNSET.
    mode: Option<MtlsMode>,
    ports: BTreeMap<u16, MtlsMode>,
}

impl PeerAuthnRecord {
    fn age(&self) -> (bool, Option<&Time>, &ResourceRef) {
        // Oldest first; resources without a timestamp (local files) by name.
        (self.created.is_some(), self.created.as_ref(), &self.origin)
    }
}

fn mode(m: CfgMode) -> Option<MtlsMode> {
    match m {
        CfgMode::Unset => None,
        CfgMode::Disable => Some(MtlsMode::Disable),
        CfgMode::Permissive => Some(MtlsMode::Permissive),
        CfgMode::Strict => Some(MtlsMode::Strict),
    }
}

/// Translates a PeerAuthentication.
pub(super) fn peer_authentication(cx: &mut Cx<'_>, pa: &PeerAuthentication) -> PeerAuthnRecord {
    let spec = &pa.spec;
    let selector = selector_labels(spec.selector.as_ref());
    let mut ports = BTreeMap::new();
    if !spec.port_level_mtls.is_empty() && selector.is_none() {
        cx.warn("portLevelMtls needs a selector (as in Istio); ignored");
    } else {
        for (&port, m) in &spec.port_level_mtls {
            let Some(port) = cx.port(&format!("portLevelMtls[{port}]"), port.into()) else {
                continue;
            };
            if let Some(m) = mode(m.mode) {
                ports.insert(port, m);
            }
        }
    }
    PeerAuthnRecord {
        origin: cx.origin.clone(),
        created: pa.metadata.creation_timestamp.clone(),
        selector,
        mode: spec.mtls.as_ref().and_then(|m| mode(m.mode)),
        ports,
    }
}

/// Warns when several PeerAuthentications compete for one scope: two namespace-wide ones
/// in a namespace, or two selector policies matching one known workload (`workloads`:
/// namespace and labels). The oldest wins; the others are named.
pub(super) fn peer_authentication_conflicts<'a>(
    records: &[PeerAuthnRecord],
    workloads: impl Iterator<Item = (&'a str, &'a str, &'a BTreeMap<String, String>)>,
    warnings: &mut Vec<IndexWarning>,
) {
    let mut conflict = |winner: &PeerAuthnRecord, loser: &PeerAuthnRecord, scope: String| {
        push_warning(
            warnings,
            &loser.origin,
            format!(
                "{} also applies to {scope} and is older (or first by name); it takes precedence",
                winner.origin
            ),
        );
    };
    let mut namespaces: BTreeMap<&str, Vec<&PeerAuthnRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.selector.is_none()) {
        namespaces.entry(&r.origin.namespace).or_default().push(r);
    }
    for (ns, mut rs) in namespaces {
        rs.sort_by(|a, b| a.age().cmp(&b.age()));
        for loser in &rs[1..] {
            conflict(rs[0], loser, format!("namespace {ns}"));
        }
    }
    for (ns, name, labels) in workloads {
        let mut rs: Vec<&PeerAuthnRecord> = records
            .iter()
            .filter(|r| {
                r.origin.namespace == ns && r.selector.as_ref().is_some_and(|s| selects(s, labels))
            })
            .collect();
        rs.sort_by(|a, b| a.age().cmp(&b.age()));
        for loser in rs.iter().skip(1) {
            conflict(rs[0], loser, format!("workload {ns}/{name}"));
        }
    }
}

/// The inbound policy of a workload in `ns` with `labels`.
pub(super) fn inbound_policy(
    records: &[PeerAuthnRecord],
    root_ns: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> InboundPolicy {
    let oldest = |f: &dyn Fn(&PeerAuthnRecord) -> bool| {
        records
            .iter()
            .filter(|r| f(r))
            .min_by(|a, b| a.age().cmp(&b.age()))
    };
    let workload = oldest(&|r| {
        r.origin.namespace == ns && r.selector.as_ref().is_some_and(|s| selects(s, labels))
    });
    let namespace = oldest(&|r| r.origin.namespace == ns && r.selector.is_none());
    let mesh = oldest(&|r| r.origin.namespace == root_ns && r.selector.is_none());
    let mode = [workload, namespace, mesh]
        .into_iter()
        .flatten()
        .find_map(|r| r.mode)
        .unwrap_or(MtlsMode::Strict);
    InboundPolicy {
        mode,
        port_overrides: workload.map(|w| w.ports.clone()).unwrap_or_default(),
    }
}

// === AuthorizationPolicy ===

/// A translated AuthorizationPolicy.
#[derive(Debug, Clone)]
pub(super) struct AuthzRecord {
    origin: ResourceRef,
    selector: Option<BTreeMap<String, String>>,
    policy: AuthorizationPolicy,
}

/// Translates an AuthorizationPolicy, failing closed on what cannot be expressed.
pub(super) fn authorization_policy(cx: &mut Cx<'_>, ap: &CfgAuthz) -> AuthzRecord {
    let spec = &ap.spec;
    let action = match spec.action.unwrap_or_default() {
        AuthorizationAction::Allow => AuthzAction::Allow,
        AuthorizationAction::Deny => AuthzAction::Deny,
        AuthorizationAction::Audit => AuthzAction::Audit,
    };
    let mut rules = Vec::new();
    for (i, r) in spec.rules.iter().enumerate() {
        match rule(r) {
            Ok(rule) => rules.push(rule),
            Err(why) if action == AuthzAction::Deny => {
                cx.warn(format!(
                    "rules[{i}]: {why}; failing closed: this DENY rule now matches every request"
                ));
                rules.push(Rule::default());
            }
            Err(why) => {
                cx.warn(format!(
                    "rules[{i}]: {why}; failing closed: the rule is dropped (it can never match)"
                ));
            }
        }
    }
    AuthzRecord {
        origin: cx.origin.clone(),
        selector: selector_labels(spec.selector.as_ref()),
        policy: AuthorizationPolicy {
            name: cx.origin.name.clone(),
            namespace: cx.origin.namespace.clone(),
            action,
            rules,
        },
    }
}

/// The policies that apply to a workload in `ns` with `labels`, by namespace and name.
pub(super) fn authorization(
    records: &[AuthzRecord],
    root_ns: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<AuthorizationPolicy> {
    let mut out: Vec<&AuthzRecord> = records
        .iter()
        .filter(|r| {
            let r_ns = r.origin.namespace.as_str();
            match &r.selector {
                None => r_ns == root_ns || r_ns == ns,
                Some(s) => (r_ns == root_ns || r_ns == ns) && selects(s, labels),
            }
        })
        .collect();
    out.sort_by(|a, b| a.origin.cmp(&b.origin));
    out.into_iter().map(|r| r.policy.clone()).collect()
}

fn rule(r: &cfg::Rule) -> Result<Rule, String> {
    let from = r
        .from
        .iter()
        .enumerate()
        .map(|(i, f)| source(&f.source).map_err(|e| format!("from[{i}].source.{e}")))
        .collect::<Result<_, _>>()?;
    let to =
        r.to.iter()
            .enumerate()
            .map(|(i, t)| operation(&t.operation).map_err(|e| format!("to[{i}].operation.{e}")))
            .collect::<Result<_, _>>()?;
    let when = r
        .when
        .iter()
        .enumerate()
        .map(|(i, c)| condition(c).map_err(|e| format!("when[{i}]: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(Rule { from, to, when })
}

fn globs(field: &str, values: &[String]) -> Result<Vec<Glob>, String> {
    values
        .iter()
        .map(|v| {
            v.parse::<Glob>()
                .map_err(|e| format!("{field}: {e}"))
                .and_then(|g| {
                    if v.is_empty() {
                        Err(format!("{field}: empty value"))
                    } else {
                        Ok(g)
                    }
                })
        })
        .collect()
}

fn nets(field: &str, values: &[String]) -> Result<Vec<IpNet>, String> {
    values
        .iter()
        .map(|v| v.parse::<IpNet>().map_err(|e| format!("{field}: {e}")))
        .collect()
}

fn ports(field: &str, values: &[String]) -> Result<Vec<u16>, String> {
    values
        .iter()
        .map(|v| {
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{field}: {v:?} is not a port number"))
        })
        .collect()
}

fn methods(field: &str, values: &[String]) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|v| {
            if v.is_empty() {
                Err(format!("{field}: empty method"))
            } else {
                Ok(v.clone())
            }
        })
        .collect()
}

fn source(s: &cfg::Source) -> Result<Source, String> {
    Ok(Source {
        principals: globs("principals", &s.principals)?,
        not_principals: globs("notPrincipals", &s.not_principals)?,
        namespaces: globs("namespaces", &s.namespaces)?,
        not_namespaces: globs("notNamespaces", &s.not_namespaces)?,
        ip_blocks: nets("ipBlocks", &s.ip_blocks)?,
        not_ip_blocks: nets("notIpBlocks", &s.not_ip_blocks)?,
    })
}

fn operation(o: &cfg::Operation) -> Result<Operation, String> {
    Ok(Operation {
        hosts: globs("hosts", &o.hosts)?,
        not_hosts: globs("notHosts", &o.not_hosts)?,
        ports: ports("ports", &o.ports)?,
        not_ports: ports("notPorts", &o.not_ports)?,
        methods: methods("methods", &o.methods)?,
        not_methods: methods("notMethods", &o.not_methods)?,
        paths: globs("paths", &o.paths)?,
        not_paths: globs("notPaths", &o.not_paths)?,
    })
}

fn condition(c: &cfg::Condition) -> Result<Condition, String> {
    // Header names are case-insensitive; the model keeps them lower-case.
    let key = if c.key.starts_with("request.headers[") {
        c.key.to_ascii_lowercase()
    } else {
        c.key.clone()
    };
    let key: ConditionKey = key.parse().map_err(|e| format!("{e}"))?;
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err(format!("condition {:?} has no values or notValues", c.key));
    }
    for v in c.values.iter().chain(&c.not_values) {
        condition_value(&key, v).map_err(|e| format!("{}: {e}", c.key))?;
    }
    Ok(Condition {
        key,
        values: c.values.clone(),
        not_values: c.not_values.clone(),
    })
}

/// The model's check of a condition value, for its key.
fn condition_value(key: &ConditionKey, v: &str) -> Result<(), String> {
    match key {
        ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
            v.parse::<IpNet>().map(drop).map_err(|e| e.to_string())
        }
        ConditionKey::DestinationPort => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(drop)
            .ok_or_else(|| format!("{v:?} is not a port number")),
        _ => v.parse::<Glob>().map(drop).map_err(|e| e.to_string()),
    }
}
