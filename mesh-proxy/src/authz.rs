//! Inbound authorization: evaluates the workload's [`AuthorizationPolicy`]s against a
//! request, with Istio's semantics, failing closed.
//!
//! [`Authorizer::new`] compiles the policies once per config (it lives in the proxy's config
//! snapshot); [`Authorizer::evaluate`] runs on every request, without locks and without
//! allocating. Requests are described by [`Request`]; HTTP paths and hosts must first go
//! through [`crate::canon`], the same canonicaliser routing uses, so that a request cannot
//! be routed as one path and authorized as another.
//!
//! # Semantics
//!
//! - A request is denied if any DENY policy matches; otherwise, if at least one ALLOW policy
//!   exists, it is allowed only if one matches; otherwise it is allowed. AUDIT policies only
//!   set [`Decision::audited`].
//! - A policy matches if any of its rules matches; a policy without rules matches nothing
//!   (an ALLOW policy without rules therefore denies everything).
//! - A rule matches if some source in `from` (or `from` is empty), some operation in `to`
//!   (or `to` is empty) and every `when` condition match.
//! - In a source, operation or condition every non-empty field must match: a positive field
//!   if any of its values matches, a `not_*` field if none does.
//! - Principals match [`SpiffeId::principal`] and namespaces [`SpiffeId::namespace`] of the
//!   peer's verified mTLS identity. A plaintext request has no identity, and an absent
//!   attribute matches no value: positive `principals`/`namespaces` never match it, their
//!   `not_*` forms always do. As `*` matches any non-empty value, `principals: ["*"]` means
//!   "any mTLS peer" and `notPrincipals: ["*"]` matches exactly the plaintext requests. The
//!   same holds for the `source.principal`, `source.namespace` and `connection.sni` (no SNI)
//!   conditions and for absent headers.
//! - Hosts match the canonical host ignoring ASCII case, `connection.sni` the SNI ignoring
//!   ASCII case; paths, principals, namespaces and header values are case-sensitive;
//!   methods are exact; `ports` and `destination.port` match the workload port; `ip_blocks`
//!   and `source.ip` the connection's peer address, `remote.ip` the original client
//!   (falling back to the peer address).
//! - The canonical host has no port, so a policy host written with one
//!   (`api.example.com:8080`, `api.example.com:*`) never matches: write the bare name.
//!
//! # Failing closed
//!
//! Whatever the evaluator cannot decide comes out as a deny, never an allow. An attribute
//! that cannot be evaluated makes the field that tests it *not match* in an ALLOW policy and
//! *match* in a DENY policy (and in an AUDIT policy, which over-reports rather than hides).
//! As a request's decision only ever combines fields with AND and OR, this pushes every
//! undecidable case towards deny. The undecidable cases are:
//!
//! - HTTP-only fields on opaque TCP (`Request::http` is `None`): `hosts`, `methods`, `paths`,
//!   their `not_*` forms and `request.headers[...]` conditions. So an ALLOW rule that needs
//!   them never matches TCP, and a DENY rule `to: [{paths: ["/admin"]}]` denies all TCP to
//!   the workload (as Istio does).
//! - A header value that is not UTF-8: it cannot be compared with the policy's strings, so
//!   if no other value of that header decides the question, `values` and `notValues` are
//!   undecidable. In an ALLOW policy it matches no value and counts as matching an excluded
//!   one; in a DENY policy the reverse.
//! - A condition that does not compile (the control plane validates them, so this means a
//!   bug or version skew): an unparsable CIDR, port, glob or header name, a condition with
//!   neither `values` nor `notValues`, or a condition key this proxy does not know.
//!
//! Header conditions compare each value of a multi-valued header separately; a
//! comma-separated header line is one value.

use std::{fmt, net::IpAddr, str::FromStr, sync::Arc};

use http::{HeaderMap, HeaderName, Method};
use mesh_api::{
    model::{self, AuthorizationPolicy, AuthzAction, ConditionKey, Glob, IpNet, Operation, Source},
    spiffe::SpiffeId,
};

/// The compiled authorization policies of one workload. Cheap to evaluate; build it once
/// per config.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    deny: Box<[Policy]>,
    allow: Box<[Policy]>,
    audit: Box<[Policy]>,
}

/// The attributes of a request (or of a TCP connection) that policies test.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The peer's verified identity from its mTLS client certificate; `None` for plaintext.
    pub peer: Option<&'a SpiffeId>,
    /// The connection's peer address (`source.ip`, `ipBlocks`).
    pub source_ip: IpAddr,
    /// The original client address (`remote.ip`), e.g. from `X-Forwarded-For` at a gateway;
    /// `None` to use `source_ip`.
    pub remote_ip: Option<IpAddr>,
    /// The address the connection was made to (`destination.ip`).
    pub destination_ip: IpAddr,
    /// The workload (application) port the request is for (`ports`, `destination.port`).
    pub destination_port: u16,
    /// The TLS server name the peer asked for (`connection.sni`), if any.
    pub sni: Option<&'a str>,
    /// The HTTP request; `None` for opaque TCP.
    pub http: Option<HttpRequest<'a>>,
}

/// The HTTP attributes of a [`Request`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The canonical path from [`crate::canon::path`], without the query.
    pub path: &'a str,
    /// The canonical host from [`crate::canon::host`]; empty if the request has none.
    pub host: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// The outcome of [`Authorizer::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// The deciding policy as `namespace/name`: the DENY policy that matched
    /// ([`Reason::DenyMatched`]) or the ALLOW policy that matched ([`Reason::AllowMatched`]);
    /// `None` otherwise.
    pub policy: Option<Arc<str>>,
    /// Whether some AUDIT policy matched (the request should be logged as audited).
    pub audited: bool,
}

/// Why a [`Decision`] went the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Allowed: no DENY policy matched and there are no ALLOW policies.
    NoAllowPolicies,
    /// Allowed by the ALLOW policy in [`Decision::policy`].
    AllowMatched,
    /// Denied by the DENY policy in [`Decision::policy`].
    DenyMatched,
    /// Denied: there are ALLOW policies and none matched.
    NoAllowMatched,
}

/// A compiled policy.
#[derive(Debug, Clone)]
struct Policy {
    /// `namespace/name`.
    name: Arc<str>,
    rules: Box<[Rule]>,
    /// What a field that cannot be evaluated yields: `false` in ALLOW policies, `true` in
    /// DENY and AUDIT policies (see the module docs).
    undecidable: bool,
}

/// A compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    from: Box<[Source]>,
    to: Box<[Operation]>,
    when: Box<[Condition]>,
}

/// A compiled `when` condition.
#[derive(Debug, Clone)]
enum Condition {
    Header {
        name: HeaderName,
        values: Values<Glob>,
    },
    Ip {
        attr: IpAttr,
        values: Values<IpNet>,
    },
    Glob {
        attr: GlobAttr,
        values: Values<Glob>,
    },
    DestinationPort(Values<u16>),
    /// A condition that did not compile: undecidable.
    Invalid,
}

/// A condition's compiled `values` and `not_values`.
#[derive(Debug, Clone)]
struct Values<T> {
    any: Box<[T]>,
    none: Box<[T]>,
}

#[derive(Debug, Clone, Copy)]
enum IpAttr {
    Source,
    Remote,
    Destination,
}

#[derive(Debug, Clone, Copy)]
enum GlobAttr {
    Namespace,
    Principal,
    Sni,
}

// === impl Authorizer ===

impl Authorizer {
    /// Compiles the policies that apply to this workload. Never fails: what does not compile
    /// fails closed (see the module docs).
    pub fn new(policies: &[AuthorizationPolicy]) -> Self {
        let (mut deny, mut allow, mut audit) = (Vec::new(), Vec::new(), Vec::new());
        for p in policies {
            match p.action {
                AuthzAction::Deny => deny.push(Policy::new(p, true)),
                AuthzAction::Allow => allow.push(Policy::new(p, false)),
                AuthzAction::Audit => audit.push(Policy::new(p, true)),
            }
        }
        Self {
            deny: deny.into(),
            allow: allow.into(),
            audit: audit.into(),
        }
    }

    /// Whether there are no policies at all, so every request is allowed and none audited:
    /// the proxy may skip [`Self::evaluate`].
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.audit.is_empty()
    }

    /// Decides `req`. Allocation-free (the policy name is a shared string).
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let audited = self.audit.iter().any(|p| p.matches(req));
        if let Some(p) = self.deny.iter().find(|p| p.matches(req)) {
            return Decision {
                allowed: false,
                reason: Reason::DenyMatched,
                policy: Some(p.name.clone()),
                audited,
            };
        }
        if self.allow.is_empty() {
            return Decision {
                allowed: true,
                reason: Reason::NoAllowPolicies,
                policy: None,
                audited,
            };
        }
        match self.allow.iter().find(|p| p.matches(req)) {
            Some(p) => Decision {
                allowed: true,
                reason: Reason::AllowMatched,
                policy: Some(p.name.clone()),
                audited,
            },
            None => Decision {
                allowed: false,
                reason: Reason::NoAllowMatched,
                policy: None,
                audited,
            },
        }
    }
}

// === impl Request ===

impl Request<'_> {
    /// The original client address that `remote.ip` tests: `remote_ip`, or else
    /// `source_ip`.
    pub fn client_ip(&self) -> IpAddr {
        self.remote_ip.unwrap_or(self.source_ip)
    }

    fn principal(&self) -> Option<&str> {
        self.peer.map(SpiffeId::principal)
    }

    fn namespace(&self) -> Option<&str> {
        self.peer.map(SpiffeId::namespace)
    }
}

// === impl Decision ===

/// For access logs and 403 bodies: `denied by default/deny-private`, `no ALLOW policy
/// matched`, `allowed by default/allow-get`, `allowed: no ALLOW policies`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = self.policy.as_deref().unwrap_or("?");
        match self.reason {
            Reason::NoAllowPolicies => f.write_str("allowed: no ALLOW policies"),
            Reason::AllowMatched => write!(f, "allowed by {policy}"),
            Reason::DenyMatched => write!(f, "denied by {policy}"),
            Reason::NoAllowMatched => f.write_str("no ALLOW policy matched"),
        }
    }
}

// === impl Policy ===

impl Policy {
    fn new(p: &AuthorizationPolicy, undecidable: bool) -> Self {
        let rules = p
            .rules
            .iter()
            .map(|r| Rule {
                from: r.from.clone().into(),
                to: r.to.clone().into(),
                when: r.when.iter().map(Condition::new).collect(),
            })
            .collect();
        Self {
            name: p.resource_name().into(),
            rules,
            undecidable,
        }
    }

    fn matches(&self, req: &Request<'_>) -> bool {
        let u = self.undecidable;
        self.rules.iter().any(|r| {
            (r.from.is_empty() || r.from.iter().any(|s| source_matches(s, req)))
                && (r.to.is_empty() || r.to.iter().any(|o| operation_matches(o, req, u)))
                && r.when.iter().all(|c| c.matches(req, u))
        })
    }
}

fn source_matches(s: &Source, req: &Request<'_>) -> bool {
    let principal = req.principal();
    let namespace = req.namespace();
    field(&s.principals, &s.not_principals, |g| {
        principal.is_some_and(|p| g.matches(p))
    }) && field(&s.namespaces, &s.not_namespaces, |g| {
        namespace.is_some_and(|ns| g.matches(ns))
    }) && field(&s.ip_blocks, &s.not_ip_blocks, |n| {
        n.contains(req.source_ip)
    })
}

/// `undecidable` is what an HTTP-only field yields on opaque TCP.
fn operation_matches(o: &Operation, req: &Request<'_>, undecidable: bool) -> bool {
    let port = req.destination_port;
    if !field(&o.ports, &o.not_ports, |&p| p == port) {
        return false;
    }
    match &req.http {
        Some(h) => {
            field(&o.hosts, &o.not_hosts, |g| {
                g.matches_ignore_ascii_case(h.host)
            }) && field(&o.methods, &o.not_methods, |m| m == h.method.as_str())
                && field(&o.paths, &o.not_paths, |g| g.matches(h.path))
        }
        None => {
            let http_only = [
                o.hosts.is_empty() && o.not_hosts.is_empty(),
                o.methods.is_empty() && o.not_methods.is_empty(),
                o.paths.is_empty() && o.not_paths.is_empty(),
            ];
            http_only.iter().all(|&empty| empty) || undecidable
        }
    }
}

/// A field pair: matches if `values` is empty or one matches, and no `not_values` matches.
fn field<T>(values: &[T], not_values: &[T], matches: impl Fn(&T) -> bool) -> bool {
    (values.is_empty() || values.iter().any(&matches)) && !not_values.iter().any(&matches)
}

// === impl Condition ===

impl Condition {
    fn new(c: &model::Condition) -> Self {
        if c.values.is_empty() && c.not_values.is_empty() {
            return Self::Invalid;
        }
        let compiled = match &c.key {
            ConditionKey::RequestHeader(name) => HeaderName::from_str(name).ok().and_then(|name| {
                let values = Values::parse(c)?;
                Some(Self::Header { name, values })
            }),
            ConditionKey::SourceIp => Self::ip(IpAttr::Source, c),
            ConditionKey::RemoteIp => Self::ip(IpAttr::Remote, c),
            ConditionKey::DestinationIp => Self::ip(IpAttr::Destination, c),
            ConditionKey::SourceNamespace => Self::glob(GlobAttr::Namespace, c),
            ConditionKey::SourcePrincipal => Self::glob(GlobAttr::Principal, c),
            ConditionKey::ConnectionSni => Self::glob(GlobAttr::Sni, c),
            ConditionKey::DestinationPort => Values::<u16>::parse(c)
                // Port 0 is never a workload port: the control plane rejects it.
                .filter(|v| !v.any.iter().chain(&*v.none).any(|&p| p == 0))
                .map(Self::DestinationPort),
            // A key added to the model after this proxy was built.
            _ => None,
        };
        compiled.unwrap_or(Self::Invalid)
    }

    fn ip(attr: IpAttr, c: &model::Condition) -> Option<Self> {
        Some(Self::Ip {
            attr,
            values: Values::parse(c)?,
        })
    }

    fn glob(attr: GlobAttr, c: &model::Condition) -> Option<Self> {
        Some(Self::Glob {
            attr,
            values: Values::parse(c)?,
        })
    }

    fn matches(&self, req: &Request<'_>, undecidable: bool) -> bool {
        match self {
            Self::Header { name, values } => match &req.http {
                Some(h) => header_matches(h.headers, name, values, undecidable),
                None => undecidable,
            },
            Self::Ip { attr, values } => {
                let ip = match attr {
                    IpAttr::Source => req.source_ip,
                    IpAttr::Remote => req.client_ip(),
                    IpAttr::Destination => req.destination_ip,
                };
                values.matches(|n| n.contains(ip))
            }
            Self::Glob { attr, values } => {
                let attr = match attr {
                    GlobAttr::Namespace => req.namespace(),
                    GlobAttr::Principal => req.principal(),
                    GlobAttr::Sni => {
                        let sni = req.sni;
                        return values
                            .matches(|g| sni.is_some_and(|s| g.matches_ignore_ascii_case(s)));
                    }
                };
                values.matches(|g| attr.is_some_and(|a| g.matches(a)))
            }
            Self::DestinationPort(values) => values.matches(|&p| p == req.destination_port),
            Self::Invalid => undecidable,
        }
    }
}

// === impl Values ===

impl<T: FromStr> Values<T> {
    /// Parses a condition's values; `None` if any fails.
    fn parse(c: &model::Condition) -> Option<Self> {
        let parse =
            |vs: &[String]| -> Option<Box<[T]>> { vs.iter().map(|v| v.parse().ok()).collect() };
        Some(Self {
            any: parse(&c.values)?,
            none: parse(&c.not_values)?,
        })
    }
}

impl<T> Values<T> {
    /// Some value matches (or there are none) and no excluded value does.
    fn matches(&self, matches: impl Fn(&T) -> bool) -> bool {
        field(&self.any, &self.none, matches)
    }
}

/// `request.headers[name]`: some value matches a glob in `values` (if any) and no value
/// matches one in `not_values`. A value that is not UTF-8 cannot be compared: if no other
/// value decides a side, that side is `undecidable`.
fn header_matches(
    headers: &HeaderMap,
    name: &HeaderName,
    values: &Values<Glob>,
    undecidable: bool,
) -> bool {
    let positive = values.any.is_empty()
        || match find_header(headers, name, &values.any) {
            Found::Match => true,
            Found::Opaque => undecidable,
            Found::Nothing => false,
        };
    let negative = values.none.is_empty()
        || match find_header(headers, name, &values.none) {
            Found::Match => false,
            Found::Opaque => undecidable,
            Found::Nothing => true,
        };
    positive && negative
}

/// What comparing a header's values with some globs found.
enum Found {
    /// A UTF-8 value matches a glob.
    Match,
    /// No UTF-8 value matches, but some value is not UTF-8.
    Opaque,
    /// No value matches (or the header is absent).
    Nothing,
}

fn find_header(headers: &HeaderMap, name: &HeaderName, globs: &[Glob]) -> Found {
    let mut found = Found::Nothing;
    for v in headers.get_all(name) {
        match std::str::from_utf8(v.as_bytes()) {
            Ok(s) if globs.iter().any(|g| g.matches(s)) => return Found::Match,
            Ok(_) => {}
            Err(_) => found = Found::Opaque,
        }
    }
    found
}

#[cfg(test)]
mod tests;
