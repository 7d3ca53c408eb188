//! `security.mesh.dev/v1alpha1`: mutual TLS and authorization resources.
//!
//! Field names and semantics follow Istio's `security.istio.io` API. Two deliberate
//! differences in defaults, both fail-closed: with no PeerAuthentication at all the mesh is
//! STRICT, and a policy field the proxy cannot evaluate denies.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the security resources.
pub const GROUP: &str = "security.mesh.dev";
/// The version of the security resources.
pub const VERSION: &str = "v1alpha1";

/// Selects workloads by labels (Istio's `WorkloadSelector`, `matchLabels` form).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels a workload must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

// === PeerAuthentication ===

/// Which traffic a workload accepts: mutual TLS only, mutual TLS or plaintext, or
/// plaintext only.
///
/// Scope and precedence as in Istio: a policy with a `selector` applies to matching
/// workloads and beats a namespace-wide policy (no selector), which beats the mesh-wide
/// one (no selector, in the control-plane namespace). Port-level settings beat the
/// workload's mode.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.mesh.dev",
    version = "v1alpha1",
    kind = "PeerAuthentication",
    namespaced,
    shortname = "pa",
    category = "mesh",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mtls.mode"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// The workloads the policy applies to. Unset: the whole namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// The mode for all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Per-port modes, by workload port number. Needs a `selector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<u32, MutualTls>,
}

/// A mutual TLS setting.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutualTls {
    /// The mode.
    #[serde(default)]
    pub mode: MtlsMode,
}

/// Mutual TLS modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the enclosing scope (the mesh default is STRICT).
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// Mutual TLS and plaintext.
    Permissive,
    /// Mutual TLS only.
    Strict,
}

// === AuthorizationPolicy ===

/// Access control for workloads: which sources may perform which operations.
///
/// Evaluated as in Istio: DENY policies first (any match denies), then ALLOW policies
/// (when any exists for the workload, a request must match one). AUDIT only records.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.mesh.dev",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced,
    shortname = "ap",
    category = "mesh",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// The workloads the policy applies to. Unset: the whole namespace (or, in the
    /// control-plane namespace, the whole mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// What a match means. Default `ALLOW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<AuthorizationAction>,
    /// Rules, ORed. An ALLOW policy with no rules allows nothing; with one empty rule it
    /// allows everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// Policy actions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    /// Allow matching requests.
    #[default]
    Allow,
    /// Deny matching requests.
    Deny,
    /// Record matching requests in metrics and logs; no effect on the decision.
    Audit,
}

/// A rule: sources AND operations AND conditions. Each list is ORed inside.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Who the request comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// What the request does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    /// Extra conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// A source clause.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleFrom {
    /// The source.
    pub source: Source,
}

/// Attributes of the request's source. Set fields are ANDed; values in a list are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Peer identities, `<trust-domain>/ns/<ns>/sa/<sa>`, with `*` prefix/suffix wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Identities that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// Peer namespaces (from the peer identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Peer IPs or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// IPs or CIDRs that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
}

/// An operation clause.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleTo {
    /// The operation.
    pub operation: Operation,
}

/// Attributes of the request itself. Set fields are ANDed; values in a list are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Hosts (`Host`/`:authority`, without port), with `*` prefix/suffix wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports, as strings (`"8080"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Ports that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Methods that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Paths (normalized), with `*` prefix/suffix wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Paths that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A condition on a request attribute, e.g. `request.headers[x-token]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The attribute: `request.headers[<name>]`, `source.ip`, `source.namespace`,
    /// `source.principal`, `destination.port`, `request.method` or `request.host`.
    pub key: String,
    /// Values, ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}
