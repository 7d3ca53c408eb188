//! Gateway listeners: what a gateway-mode proxy serves on each port.
//!
//! A [`Listener`] is one gateway server port (merged over every `Gateway` selecting the
//! proxy) with its virtual hosts: [`RouteTable`]s keyed by host name, the routes of the
//! VirtualServices bound to the gateway. Sidecars never get listeners; their route tables
//! are keyed by service port instead ([`crate::model::ProxyConfig::route_table`]).
//!
//! A listener with [`Listener::tls`] terminates TLS (an HTTPS server, `tls.mode: SIMPLE`)
//! with certificates it names by credential ([`ServerCertificate::credential_name`]); the
//! gateway reads the certificate and key itself, so private keys never travel in config.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::model::{
    RouteTable,
    validate::{self, FieldError, Reason, ResultExt as _},
};

/// An HTTP listener of a gateway: a server port and the virtual hosts served on it.
///
/// Its resource name is [`Listener::name`], `http.<port>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// The resource name, `http.<port>` ([`Listener::name_for`]).
    pub name: String,
    /// The gateway server port (`servers[].port.number`); route port matches and the
    /// virtual hosts' `port` refer to it.
    pub port: u16,
    /// The port the proxy binds: the target port of the gateway Service's port `port` (a
    /// server on 80 behind a Service mapping 80 to 8080 is bound on 8080). `None` means
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_port: Option<u16>,
    /// Virtual hosts: route tables whose `hostnames` are the hosts they serve here; a host
    /// name appears in at most one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_hosts: Vec<RouteTable>,
    /// TLS termination; `None` serves plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

/// TLS termination at a listener: the certificates it serves, chosen by SNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificates, picked by the client's SNI among their hosts (exact, then the
    /// longest `*.suffix`, then `*`); without SNI or a covering host, the first. At least
    /// one; credential names are unique.
    pub certificates: Vec<ServerCertificate>,
}

/// One certificate of a TLS listener, by credential name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerCertificate {
    /// The credential (`tls.credentialName`): a `kubernetes.io/tls` Secret, mounted or in
    /// local mode a directory `<name>/` with `tls.crt` and `tls.key`.
    pub credential_name: String,
    /// The SNI names it serves (exact, `*.suffix`, `*`), lower-case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

// === impl Listener ===

impl Listener {
    /// The conventional resource name of the listener for server port `port`.
    pub fn name_for(port: u16) -> String {
        format!("http.{port}")
    }

    /// The port the proxy binds for this listener.
    pub fn bind_port(&self) -> u16 {
        self.bind_port.unwrap_or(self.port)
    }

    /// Every host name the listener serves, in virtual host order (for error messages).
    pub fn hostnames(&self) -> impl Iterator<Item = &str> {
        self.virtual_hosts
            .iter()
            .flat_map(|v| v.hostnames.iter().map(String::as_str))
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        validate::non_empty(&self.name).at("name")?;
        validate::non_zero(self.port.into()).at("port")?;
        if let Some(p) = self.bind_port {
            validate::non_zero(p.into()).at("bindPort")?;
        }
        if let Some(tls) = &self.tls {
            tls.check().at("tls")?;
        }
        let mut seen = HashSet::new();
        for (i, v) in self.virtual_hosts.iter().enumerate() {
            v.check().at_index("virtualHosts", i)?;
            if v.port != self.port {
                return Err(FieldError::field(
                    "port",
                    Reason::Other(format!(
                        "is {}, but a virtual host of listener port {} must have port {}",
                        v.port, self.port, self.port
                    )),
                )
                .at_index("virtualHosts", i));
            }
            for h in &v.hostnames {
                if !seen.insert(h.as_str()) {
                    return Err(FieldError::field(
                        "hostnames",
                        Reason::Duplicate(format!("host {h:?} (served by two virtual hosts)")),
                    )
                    .at_index("virtualHosts", i));
                }
            }
        }
        Ok(())
    }
}

// === impl ListenerTls ===

impl ListenerTls {
    fn check(&self) -> Result<(), FieldError> {
        if self.certificates.is_empty() {
            return Err(FieldError::field(
                "certificates",
                Reason::Other("is empty; a TLS listener needs a certificate".into()),
            ));
        }
        let mut seen = HashSet::new();
        for (i, c) in self.certificates.iter().enumerate() {
            validate::non_empty(&c.credential_name)
                .at("credentialName")
                .at_index("certificates", i)?;
            if !seen.insert(c.credential_name.as_str()) {
                return Err(FieldError::field(
                    "credentialName",
                    Reason::Duplicate(format!("credential {:?}", c.credential_name)),
                )
                .at_index("certificates", i));
            }
        }
        Ok(())
    }

    /// The certificate for the SNI name `sni` (lower-case): the one with an exact host,
    /// else the longest `*.suffix`, else `*`, else the first.
    pub fn select(&self, sni: Option<&str>) -> Option<&ServerCertificate> {
        let best = sni.and_then(|name| {
            self.certificates
                .iter()
                .filter_map(|c| {
                    c.hosts
                        .iter()
                        .filter_map(|h| host_rank(h, name))
                        .max()
                        .map(|rank| (rank, c))
                })
                .max_by_key(|(rank, _)| *rank)
                .map(|(_, c)| c)
        });
        best.or_else(|| self.certificates.first())
    }
}

/// How well host pattern `pattern` covers `name`: `None` not at all; higher is more
/// specific (an exact name beats any wildcard, a longer suffix a shorter one).
fn host_rank(pattern: &str, name: &str) -> Option<usize> {
    match pattern.strip_prefix('*') {
        Some("") => Some(0),
        Some(suffix) => {
            (name.len() > suffix.len() && name.ends_with(suffix)).then_some(suffix.len())
        }
        None => (pattern == name).then_some(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, hosts: &[&str]) -> ServerCertificate {
        ServerCertificate {
            credential_name: name.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn sni_picks_the_most_specific_certificate_else_the_first() {
        let tls = ListenerTls {
            certificates: vec![
                cert("any", &["*"]),
                cert("wild", &["*.example.com"]),
                cert("shop", &["shop.example.com"]),
            ],
        };
        let pick = |sni| tls.select(sni).map(|c| c.credential_name.as_str());
        assert_eq!(pick(Some("shop.example.com")), Some("shop"));
        assert_eq!(pick(Some("api.example.com")), Some("wild"));
        assert_eq!(pick(Some("example.com")), Some("any"));
        assert_eq!(pick(None), Some("any"));
        let narrow = ListenerTls {
            certificates: vec![cert("a", &["a.example.com"]), cert("b", &["b.example.com"])],
        };
        assert_eq!(
            narrow
                .select(Some("c.example.com"))
                .unwrap()
                .credential_name,
            "a"
        );
    }

    #[test]
    fn tls_listeners_need_unique_named_certificates() {
        let mut l = Listener {
            name: Listener::name_for(443),
            port: 443,
            bind_port: None,
            virtual_hosts: Vec::new(),
            tls: Some(ListenerTls {
                certificates: Vec::new(),
            }),
        };
        assert!(
            l.check()
                .unwrap_err()
                .to_string()
                .contains("tls.certificates")
        );
        l.tls = Some(ListenerTls {
            certificates: vec![cert("a", &["*"]), cert("a", &["x.example.com"])],
        });
        let err = l.check().unwrap_err().to_string();
        assert!(err.contains("credential \"a\""), "{err}");
        l.tls = Some(ListenerTls {
            certificates: vec![cert("a", &["*"])],
        });
        l.check().unwrap();
    }
}
