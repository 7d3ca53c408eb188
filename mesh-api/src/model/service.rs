//! Services: a stable name, a DNS host name, virtual IPs and ports with their application
//! protocol. What a client addresses; [`crate::model::EndpointSet`] says who serves it.

use std::{collections::BTreeSet, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::model::validate::{self, FieldError, Reason, ResultExt as _};

/// A namespaced name, `namespace/name` (a Kubernetes object reference).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceName {
    /// The namespace.
    pub namespace: String,
    /// The name within the namespace.
    pub name: String,
}

impl ServiceName {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::non_empty(&self.namespace).at("namespace")?;
        validate::non_empty(&self.name).at("name")
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A service as clients see it.
///
/// Its resource name is its [`Service::hostname`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// The object the service comes from (a Kubernetes Service, a ServiceEntry...).
    pub name: ServiceName,
    /// The fully-qualified DNS name, lower-case: `reviews.default.svc.cluster.local`.
    pub hostname: String,
    /// Virtual IPs clients connect to (the cluster IP; none when headless).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<IpAddr>,
    /// The ports the service exposes; port numbers are unique.
    pub ports: Vec<ServicePort>,
    /// How the service is addressed.
    #[serde(default)]
    pub kind: ServiceKind,
}

/// One port of a [`Service`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// The port clients connect to.
    pub port: u16,
    /// The port on endpoints, unless an endpoint's `ports` map says otherwise (named target
    /// ports resolve per endpoint).
    pub target_port: u16,
    /// The port's name (may be empty for a single-port service).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The application protocol spoken on the port.
    #[serde(default)]
    pub protocol: AppProtocol,
}

/// The application protocol of a port, which decides how the proxy handles a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AppProtocol {
    /// HTTP/1.1 (or HTTP/2 with prior knowledge, detected per connection).
    Http,
    /// HTTP/2.
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// Opaque TCP: forwarded as bytes, never sniffed.
    Tcp,
    /// TLS originated by the application: routed on SNI, forwarded as bytes.
    Tls,
    /// Not declared: the proxy sniffs the first bytes.
    #[default]
    Unknown,
}

/// How a [`Service`] is addressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceKind {
    /// Clients connect to a virtual IP; the proxy picks an endpoint.
    #[default]
    ClusterIp,
    /// No virtual IP: clients connect to endpoint addresses directly (from DNS).
    Headless,
    /// Outside the mesh (a ServiceEntry): endpoints are external addresses or DNS names.
    External,
}

// === impl Service ===

impl Service {
    /// The port numbered `port`, if the service exposes it.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        self.name.check().at("name")?;
        validate::hostname(&self.hostname, false).at("hostname")?;
        let mut seen = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            validate::non_zero(p.port.into())
                .at("port")
                .at_index("ports", i)?;
            validate::non_zero(p.target_port.into())
                .at("targetPort")
                .at_index("ports", i)?;
            if !seen.insert(p.port) {
                return Err(FieldError::field(
                    "port",
                    Reason::Duplicate(format!("port {}", p.port)),
                )
                .at_index("ports", i));
            }
        }
        let mut vips = BTreeSet::new();
        for (i, vip) in self.vips.iter().enumerate() {
            if !vips.insert(vip) {
                return Err(
                    FieldError::new(Reason::Duplicate(format!("vip {vip}"))).at_index("vips", i)
                );
            }
        }
        if self.kind == ServiceKind::Headless && !self.vips.is_empty() {
            return Err(FieldError::field(
                "vips",
                Reason::Other("a headless service has no virtual ips".to_owned()),
            ));
        }
        Ok(())
    }
}

// === impl AppProtocol ===

impl AppProtocol {
    /// The protocol a port declares, Istio's way: an explicit `appProtocol` wins, else the
    /// port name's prefix before the first `-` (`http-web`, `grpc`, `tcp-db`). Unknown
    /// names mean [`AppProtocol::Unknown`] (sniff).
    pub fn infer(app_protocol: Option<&str>, port_name: &str) -> Self {
        let from = |s: &str| -> Self {
            let s = s.to_ascii_lowercase();
            match s.as_str() {
                "http" | "http1" | "kubernetes.io/h1c" => Self::Http,
                "http2" | "h2c" | "kubernetes.io/h2c" => Self::Http2,
                "grpc" | "grpc-web" => Self::Grpc,
                "tcp" | "mongo" | "mysql" | "redis" | "postgres" | "postgresql" => Self::Tcp,
                "tls" | "https" | "kubernetes.io/wss" => Self::Tls,
                _ => Self::Unknown,
            }
        };
        match app_protocol.map(from) {
            Some(p) if p != Self::Unknown => p,
            _ => from(port_name.split('-').next().unwrap_or("")),
        }
    }

    /// Whether requests on this port are routed per HTTP request.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Http2 | Self::Grpc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        Service {
            name: ServiceName::new("default", "reviews"),
            hostname: "reviews.default.svc.cluster.local".into(),
            vips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![ServicePort {
                port: 9080,
                target_port: 9080,
                name: "http".into(),
                protocol: AppProtocol::Http,
            }],
            kind: ServiceKind::ClusterIp,
        }
    }

    #[test]
    fn checks() {
        assert_eq!(svc().check(), Ok(()));
        let mut s = svc();
        s.ports.push(s.ports[0].clone());
        assert_eq!(
            s.check().unwrap_err().to_string(),
            "ports[1].port: duplicate port 9080"
        );
        let mut s = svc();
        s.ports[0].target_port = 0;
        assert_eq!(
            s.check().unwrap_err().to_string(),
            "ports[0].targetPort: must not be zero"
        );
        let mut s = svc();
        s.hostname = "Reviews".into();
        assert_eq!(s.check().unwrap_err().path(), "hostname");
        let mut s = svc();
        s.kind = ServiceKind::Headless;
        assert_eq!(s.check().unwrap_err().path(), "vips");
        let mut s = svc();
        s.name.namespace.clear();
        assert_eq!(
            s.check().unwrap_err().to_string(),
            "name.namespace: must not be empty"
        );
    }

    #[test]
    fn infers_protocols() {
        assert_eq!(AppProtocol::infer(None, "http-web"), AppProtocol::Http);
        assert_eq!(AppProtocol::infer(None, "grpc"), AppProtocol::Grpc);
        assert_eq!(AppProtocol::infer(None, "tcp-db"), AppProtocol::Tcp);
        assert_eq!(AppProtocol::infer(None, "web"), AppProtocol::Unknown);
        assert_eq!(
            AppProtocol::infer(Some("kubernetes.io/h2c"), "web"),
            AppProtocol::Http2
        );
        assert_eq!(AppProtocol::infer(Some("HTTP"), "tcp"), AppProtocol::Http);
        assert_eq!(
            AppProtocol::infer(Some("weird"), "grpc-x"),
            AppProtocol::Grpc
        );
        assert!(AppProtocol::Grpc.is_http() && !AppProtocol::Tcp.is_http());
    }

    #[test]
    fn yaml_shape() {
        let json = serde_json::json!({
            "name": {"namespace": "default", "name": "reviews"},
            "hostname": "reviews.default.svc.cluster.local",
            "vips": ["10.96.0.10"],
            "ports": [{"port": 9080, "targetPort": 9080, "name": "http", "protocol": "http"}],
            "kind": "clusterIp"
        });
        let s: Service = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(s, svc());
        assert_eq!(serde_json::to_value(&s).unwrap(), json);
        let mut bad = json;
        bad["extra"] = 1.into();
        assert!(serde_json::from_value::<Service>(bad).is_err());
    }
}
