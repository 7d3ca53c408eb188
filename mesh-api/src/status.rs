//! The control plane's debug API (`mesh-control`, port 15014): the JSON documents it
//! serves and `meshctl proxy-status` / `proxy-config` read.
//!
//! | path | document |
//! |---|---|
//! | `GET /debug/proxies` | [`ProxyStatusList`]: every connected proxy and its sync state |
//! | `GET /debug/config?proxy=<id\|pod.namespace>` | [`ProxyConfigDump`]: one proxy's computed config |
//! | `GET /debug/registry` | [`RegistryStatus`]: where config comes from, its problems |
//! | `GET /debug/secrets?proxy=<id\|pod.namespace\|pod>` | [`ProxySecretList`]: the certificates the CA issued to proxies |
//! | `GET /debug/ca` | [`CaStatus`]: the CA, its trust bundle and root rotation |
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz/ready` | 200 once the registry has synced, 503 before |
//!
//! Times are Unix milliseconds from the control plane's clock, and every document carries
//! the server's `now_unix_ms`, so a client computes ages without trusting its own clock.

use serde::{Deserialize, Serialize};

use crate::model::ProxyConfigSpec;

/// The default debug address of a local control plane.
pub const DEFAULT_DEBUG_ADDR: &str = "127.0.0.1:15014";

/// How far a proxy's config is from what the control plane computed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// Every response sent was acknowledged and nothing newer is due.
    Synced,
    /// A response is unanswered (or not yet sent): the proxy is behind.
    Stale,
    /// The proxy rejected the latest response of some kind; it keeps serving its last good
    /// config. [`ProxyStatus::last_nack`] says why.
    Nacked,
}

impl SyncState {
    /// `SYNCED`, `STALE` or `NACKED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "SYNCED",
            Self::Stale => "STALE",
            Self::Nacked => "NACKED",
        }
    }
}

/// The proxies of `items` that `query` names, by the one rule `meshctl` and the debug API
/// share: the proxies with that id; else those whose `pod.namespace` it is; else those
/// whose pod name it is. `node` gives an item's (id, pod name, namespace). Pod names may
/// contain dots, so `pod.namespace` is compared whole, never split.
pub fn select_proxies<'a, T>(
    items: &'a [T],
    query: &str,
    node: impl Fn(&T) -> (&str, &str, &str),
) -> Vec<&'a T> {
    let pick = |f: &dyn Fn(&str, &str, &str) -> bool| -> Vec<&'a T> {
        items
            .iter()
            .filter(|item| {
                let (id, pod, ns) = node(item);
                f(id, pod, ns)
            })
            .collect()
    };
    let by_id = pick(&|id, _, _| id == query);
    if !by_id.is_empty() {
        return by_id;
    }
    let by_name = pick(&|_, pod, ns| {
        query.len() == pod.len() + 1 + ns.len()
            && query.starts_with(pod)
            && query[pod.len()..].starts_with('.')
            && query.ends_with(ns)
    });
    if !by_name.is_empty() {
        return by_name;
    }
    pick(&|_, pod, _| pod == query)
}

/// `GET /debug/proxies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyStatusList {
    /// The control plane's clock when the document was made.
    pub now_unix_ms: u64,
    /// The control plane itself.
    pub control_plane: ControlPlaneInfo,
    /// Connected proxies, ordered by namespace, pod name and id.
    pub proxies: Vec<ProxyStatus>,
}

/// What the control plane says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneInfo {
    /// The `mesh-control` build version.
    pub version: String,
    /// The version of the config state (moves on every accepted change).
    pub config_version: String,
    /// Whether the registry has loaded its sources once; until then no config is pushed.
    pub synced: bool,
}

/// One connected proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyStatus {
    /// The proxy's unique id (its `Node.id`).
    pub id: String,
    /// The pod or WorkloadEntry name.
    pub pod_name: String,
    /// The namespace.
    pub namespace: String,
    /// The SPIFFE identity.
    pub identity: String,
    /// `sidecar` or `gateway`.
    pub mode: String,
    /// The proxy's build version.
    pub proxy_version: String,
    /// The address the stream comes from.
    pub peer_addr: String,
    /// When the stream opened.
    pub connected_unix_ms: u64,
    /// The sync state.
    pub sync: SyncState,
    /// The config version last sent.
    pub sent_version: String,
    /// The config version the proxy last acknowledged in full.
    pub acked_version: String,
    /// When the proxy last acknowledged a response (absent before the first).
    pub last_ack_unix_ms: Option<u64>,
    /// Responses sent and not answered yet.
    pub pending_responses: u32,
    /// Resources the proxy holds, by kind (`Service`, `RouteTable`...).
    pub resources: std::collections::BTreeMap<String, u32>,
    /// The latest rejection still in force (cleared when a later response of that kind is
    /// acknowledged).
    pub last_nack: Option<Nack>,
}

/// A rejected response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nack {
    /// The resource kind of the response.
    pub type_url: String,
    /// The config version it carried.
    pub version: String,
    /// The proxy's reason.
    pub message: String,
    /// When the NACK arrived.
    pub at_unix_ms: u64,
}

/// `GET /debug/config?proxy=...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfigDump {
    /// The control plane's clock when the document was made.
    pub now_unix_ms: u64,
    /// The proxy's status.
    pub proxy: ProxyStatus,
    /// The config the control plane computed for it from the current state.
    pub config: ProxyConfigSpec,
}

/// `GET /debug/registry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryStatus {
    /// The control plane's clock when the document was made.
    pub now_unix_ms: u64,
    /// Where config comes from: `local:<dir>` or `kubernetes`.
    pub source: String,
    /// Whether the sources were loaded once.
    pub synced: bool,
    /// The version of the config state.
    pub config_version: String,
    /// Resources in the index.
    pub resources: u32,
    /// When the latest config change was accepted and published to proxies.
    #[serde(default)]
    pub last_change_unix_ms: Option<u64>,
    /// The latest rejected change, still in force until the sources are fixed: each line
    /// names file, line and column (local mode) or the object (Kubernetes).
    pub rejected: Vec<String>,
    /// Source problems that did not stop loading (warnings, watch errors).
    pub warnings: Vec<String>,
    /// Translation problems in the index (resources skipped or approximated).
    pub index_warnings: Vec<String>,
}

/// What a certificate says, for status pages and `meshctl proxy-config secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// The subject, RFC 4514 form.
    pub subject: String,
    /// The issuer, RFC 4514 form.
    pub issuer: String,
    /// The serial number, colon-separated hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The SPIFFE identity, when the certificate has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
}

/// `GET /debug/secrets[?proxy=<id | pod.namespace | pod>]`: the certificates the CA issued
/// to proxies, latest per proxy (proxies name themselves in `CertifyRequest.proxy_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySecretList {
    /// The control plane's clock when the document was made.
    pub now_unix_ms: u64,
    /// One entry per proxy, ordered by proxy id.
    pub secrets: Vec<ProxySecret>,
}

/// The certificate last issued to one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySecret {
    /// The proxy's id as it sent it (`<pod>.<namespace>`).
    pub proxy: String,
    /// The SPIFFE identity the certificate carries.
    pub identity: String,
    /// When it was issued.
    pub issued_unix_ms: u64,
    /// How the caller authenticated: `token` or `certificate` (a renewal).
    pub authenticated_by: String,
    /// The chain sent: the leaf first, then intermediates.
    pub chain: Vec<CertInfo>,
    /// The trust bundle sent with it.
    pub trust_bundle: Vec<CertInfo>,
}

/// `GET /debug/ca`: the certificate authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaStatus {
    /// The control plane's clock when the document was made.
    pub now_unix_ms: u64,
    /// The trust domain of the identities it signs.
    pub trust_domain: String,
    /// Where the CA material lives: `local:<dir>` or `kubernetes:<namespace>/<secret>`.
    pub source: String,
    /// Whether it signs with a plug-in intermediate (`cacerts`) rather than its own root.
    pub plug_in: bool,
    /// The certificate that signs workload certificates (a root or a plug-in intermediate).
    pub signing: CertInfo,
    /// Intermediates sent after each leaf (empty for a self-signed root).
    pub intermediates: Vec<CertInfo>,
    /// The trust bundle: every root currently trusted.
    pub trust_bundle: Vec<CertInfo>,
    /// Root rotation.
    pub rotation: RotationStatus,
    /// The lifetime of workload certificates, in seconds.
    pub workload_cert_ttl_seconds: u64,
    /// Problems the CA works around (bad staged or replaced material), one line each.
    pub problems: Vec<String>,
}

/// Where a root rotation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// The phase.
    pub phase: RotationPhase,
    /// While `ANNOUNCED`: the CA material that will sign next (already in the bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<CertInfo>,
    /// While `ANNOUNCED`: when signing switches to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_at_unix_ms: Option<u64>,
    /// Roots that no longer sign but stay trusted until the certificates they signed expire.
    pub retiring: Vec<RetiringRoot>,
}

/// A phase of root rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RotationPhase {
    /// One signing root, nothing retiring.
    Stable,
    /// A new root is in the trust bundle and will sign after the grace period.
    Announced,
    /// The new root signs; the previous one stays in the bundle until its certificates
    /// have expired.
    Draining,
}

/// A root that left signing and is still trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetiringRoot {
    /// The root.
    pub root: CertInfo,
    /// When it leaves the trust bundle.
    pub drop_after_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::select_proxies;

    #[test]
    fn proxies_are_selected_by_id_then_name_then_pod() {
        let items = [
            ("sidecar~1", "a.b", "ns"),
            ("sidecar~2", "a", "b.ns"),
            ("sidecar~3", "c", "x"),
            ("sidecar~4", "c", "y"),
        ];
        let ids = |q: &str| -> Vec<&str> {
            select_proxies(&items, q, |i| *i)
                .iter()
                .map(|i| i.0)
                .collect()
        };
        assert_eq!(ids("sidecar~3"), ["sidecar~3"]);
        // A dotted pod name is matched whole, not split at its first dot.
        assert_eq!(ids("a.b.ns"), ["sidecar~1", "sidecar~2"]);
        assert_eq!(ids("c.y"), ["sidecar~4"]);
        assert_eq!(ids("c"), ["sidecar~3", "sidecar~4"]);
        assert!(ids("nope").is_empty());
    }
}
