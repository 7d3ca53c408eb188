//! Inbound security: whether peers must use mutual TLS ([`InboundPolicy`], from
//! PeerAuthentication) and who may do what ([`AuthorizationPolicy`]).
//!
//! The control plane sends a proxy only the policies that select its workload, so nothing
//! here carries a workload selector. Evaluation follows Istio: a request is denied if any
//! DENY policy matches; else allowed if there are no ALLOW policies or any ALLOW policy
//! matches; AUDIT policies only mark the request for logging.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{
    Glob, IpNet,
    validate::{self, FieldError, Reason, ResultExt as _},
};

/// Whether inbound connections must be mutual TLS.
///
/// Its resource name is [`InboundPolicy::NAME`]: a proxy has exactly one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundPolicy {
    /// The mode for ports without an override.
    #[serde(default)]
    pub mode: MtlsMode,
    /// Per-port modes (workload target ports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_overrides: BTreeMap<u16, MtlsMode>,
}

/// PeerAuthentication's mTLS modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MtlsMode {
    /// Only mutual TLS from mesh peers.
    Strict,
    /// Mutual TLS or plaintext.
    #[default]
    Permissive,
    /// Plaintext only: the proxy passes connections through without terminating TLS.
    Disable,
}

/// An authorization policy that applies to this proxy's workload.
///
/// Its resource name is `namespace/name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The policy's name.
    pub name: String,
    /// The policy's namespace (the root namespace for mesh-wide policies).
    pub namespace: String,
    /// What happens when a rule matches.
    #[serde(default)]
    pub action: AuthzAction,
    /// The policy matches a request if any rule matches. An ALLOW policy without rules
    /// matches nothing (so it denies everything); a DENY policy without rules denies nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// What an [`AuthorizationPolicy`] does when it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthzAction {
    /// Allow matching requests (and, once any ALLOW policy exists, deny the rest).
    #[default]
    Allow,
    /// Deny matching requests.
    Deny,
    /// Log matching requests; no effect on the decision.
    Audit,
}

/// A rule matches if some source in `from`, some operation in `to` and every condition in
/// `when` match; an empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Who sends the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Source>,
    /// What the request does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Operation>,
    /// Further conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// Conditions on the peer. Every non-empty field must match: a field matches if any of its
/// values matches, and a `not_*` field matches if none of its values does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer principals (`cluster.local/ns/default/sa/frontend`; `*` wildcards), from the
    /// peer's mTLS certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<Glob>,
    /// Negated `principals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<Glob>,
    /// Peer namespaces, from the peer's certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<Glob>,
    /// Negated `namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<Glob>,
    /// Peer IP networks (the connection's source address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<IpNet>,
    /// Negated `ip_blocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<IpNet>,
}

/// Conditions on the request. Every non-empty field must match, as for [`Source`].
/// HTTP-only fields (`methods`, `paths`, `hosts`) never match opaque TCP connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// `Host` values (case-insensitive; `*` wildcards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Glob>,
    /// Negated `hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<Glob>,
    /// Destination (workload) ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Negated `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    /// HTTP methods (exact, upper-case) or gRPC `POST`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Negated `methods`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Request paths (without query; `*` wildcards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<Glob>,
    /// Negated `paths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<Glob>,
}

/// A condition on an attribute of the request, Istio's `when` clause: matches if the
/// attribute matches some value of `values` (when non-empty) and none of `not_values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute.
    pub key: ConditionKey,
    /// Values, any of which matches (`*` wildcards; CIDRs for IP keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values, none of which may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// The attributes a [`Condition`] can test (Istio's supported keys without JWT claims).
/// Serialized as Istio writes them, e.g. `request.headers[x-token]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConditionKey {
    /// `request.headers[<name>]`: a request header (name lower-case).
    RequestHeader(String),
    /// `source.ip`: the connection's peer address.
    SourceIp,
    /// `remote.ip`: the original client address (from `X-Forwarded-For` at gateways).
    RemoteIp,
    /// `source.namespace`: the peer's namespace.
    SourceNamespace,
    /// `source.principal`: the peer's principal.
    SourcePrincipal,
    /// `destination.ip`: the address the connection was made to.
    DestinationIp,
    /// `destination.port`: the port the connection was made to.
    DestinationPort,
    /// `connection.sni`: the TLS server name.
    ConnectionSni,
}

/// An unknown [`ConditionKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported condition key {0:?}: expected request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port or connection.sni"
)]
pub struct ConditionKeyError(pub String);

// === impl InboundPolicy ===

impl InboundPolicy {
    /// The resource name of a proxy's only inbound policy.
    pub const NAME: &'static str = "inbound";

    /// The mode on workload port `port`.
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        self.port_overrides.get(&port).copied().unwrap_or(self.mode)
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        for &port in self.port_overrides.keys() {
            validate::non_zero(port.into()).at_key("portOverrides", port)?;
        }
        Ok(())
    }
}

// === impl AuthorizationPolicy ===

impl AuthorizationPolicy {
    /// The resource name, `namespace/name`.
    pub fn resource_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::non_empty(&self.name).at("name")?;
        validate::non_empty(&self.namespace).at("namespace")?;
        for (i, rule) in self.rules.iter().enumerate() {
            rule.check().at_index("rules", i)?;
        }
        Ok(())
    }
}

impl Rule {
    fn check(&self) -> Result<(), FieldError> {
        for (i, op) in self.to.iter().enumerate() {
            op.check().at_index("to", i)?;
        }
        for (i, c) in self.when.iter().enumerate() {
            c.check().at_index("when", i)?;
        }
        Ok(())
    }
}

impl Operation {
    fn check(&self) -> Result<(), FieldError> {
        for (name, ports) in [("ports", &self.ports), ("notPorts", &self.not_ports)] {
            for (i, &p) in ports.iter().enumerate() {
                validate::non_zero(p.into()).at_index(name, i)?;
            }
        }
        for (name, methods) in [
            ("methods", &self.methods),
            ("notMethods", &self.not_methods),
        ] {
            for (i, m) in methods.iter().enumerate() {
                validate::non_empty(m).at_index(name, i)?;
            }
        }
        Ok(())
    }
}

impl Condition {
    fn check(&self) -> Result<(), FieldError> {
        if self.values.is_empty() && self.not_values.is_empty() {
            return Err(FieldError::field(
                "values",
                Reason::Other("a condition needs values or notValues".to_owned()),
            ));
        }
        for (name, values) in [("values", &self.values), ("notValues", &self.not_values)] {
            for (i, v) in values.iter().enumerate() {
                self.key.check_value(v).at_index(name, i)?;
            }
        }
        Ok(())
    }
}

// === impl ConditionKey ===

impl ConditionKey {
    fn check_value(&self, v: &str) -> Result<(), FieldError> {
        match self {
            Self::SourceIp | Self::RemoteIp | Self::DestinationIp => {
                v.parse::<IpNet>()
                    .map_err(|e| FieldError::new(Reason::IpNet(e)))?;
            }
            Self::DestinationPort => {
                let ok = v.parse::<u16>().is_ok_and(|p| p != 0);
                if !ok {
                    return Err(FieldError::new(Reason::Other(format!(
                        "{v:?} is not a port number"
                    ))));
                }
            }
            _ => {
                v.parse::<Glob>()
                    .map_err(|e| FieldError::new(Reason::Other(e.to_string())))?;
            }
        }
        Ok(())
    }
}

impl FromStr for ConditionKey {
    type Err = ConditionKeyError;

    fn from_str(s: &str) -> Result<Self, ConditionKeyError> {
        let err = || ConditionKeyError(s.to_owned());
        Ok(match s {
            "source.ip" => Self::SourceIp,
            "remote.ip" => Self::RemoteIp,
            "source.namespace" => Self::SourceNamespace,
            "source.principal" => Self::SourcePrincipal,
            "destination.ip" => Self::DestinationIp,
            "destination.port" => Self::DestinationPort,
            "connection.sni" => Self::ConnectionSni,
            _ => {
                let name = s
                    .strip_prefix("request.headers[")
                    .and_then(|r| r.strip_suffix(']'))
                    .ok_or_else(err)?;
                validate::header_name(name).map_err(|_| err())?;
                Self::RequestHeader(name.to_owned())
            }
        })
    }
}

impl fmt::Display for ConditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestHeader(h) => write!(f, "request.headers[{h}]"),
            Self::SourceIp => f.write_str("source.ip"),
            Self::RemoteIp => f.write_str("remote.ip"),
            Self::SourceNamespace => f.write_str("source.namespace"),
            Self::SourcePrincipal => f.write_str("source.principal"),
            Self::DestinationIp => f.write_str("destination.ip"),
            Self::DestinationPort => f.write_str("destination.port"),
            Self::ConnectionSni => f.write_str("connection.sni"),
        }
    }
}

impl Serialize for ConditionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConditionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_mode_per_port() {
        let p = InboundPolicy {
            mode: MtlsMode::Strict,
            port_overrides: [(8080, MtlsMode::Permissive)].into(),
        };
        assert_eq!(p.mode_for(8080), MtlsMode::Permissive);
        assert_eq!(p.mode_for(9090), MtlsMode::Strict);
        assert_eq!(InboundPolicy::default().mode_for(1), MtlsMode::Permissive);
    }

    #[test]
    fn condition_keys_round_trip() {
        for s in [
            "request.headers[x-token]",
            "source.ip",
            "remote.ip",
            "source.namespace",
            "source.principal",
            "destination.ip",
            "destination.port",
            "connection.sni",
        ] {
            assert_eq!(s.parse::<ConditionKey>().unwrap().to_string(), s);
        }
        for s in [
            "request.headers[]",
            "request.headers[X-Up]",
            "request.auth.claims[iss]",
            "",
        ] {
            assert!(s.parse::<ConditionKey>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn istio_shaped_yaml_deserializes_and_validates() {
        let json = serde_json::json!({
            "name": "allow-frontend",
            "namespace": "default",
            "action": "allow",
            "rules": [{
                "from": [{"principals": ["cluster.local/ns/default/sa/frontend"],
                          "notIpBlocks": ["10.0.0.0/8"]}],
                "to": [{"methods": ["GET"], "paths": ["/api/*"], "ports": [8080]}],
                "when": [{"key": "request.headers[x-version]", "values": ["v1", "v2*"]}]
            }]
        });
        let p: AuthorizationPolicy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(p.check(), Ok(()));
        assert_eq!(serde_json::to_value(&p).unwrap(), json);
        assert_eq!(p.resource_name(), "default/allow-frontend");

        let mut bad = p.clone();
        bad.rules[0].when[0] = Condition {
            key: ConditionKey::SourceIp,
            values: vec!["10.0.0.0/8".into(), "nope".into()],
            not_values: vec![],
        };
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "rules[0].when[0].values[1]: invalid ip network \"nope\": expected an address or CIDR like 10.0.0.0/8"
        );
        let mut bad = p;
        bad.rules[0].to[0].ports = vec![0];
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "rules[0].to[0].ports[0]: must not be zero"
        );
    }
}
