//! Gateway listeners: what a gateway-mode proxy serves on each port.
//!
//! A [`Listener`] is one gateway server port (merged over every `Gateway` selecting the
//! proxy) with its virtual hosts: [`RouteTable`]s keyed by host name, the routes of the
//! VirtualServices bound to the gateway. Sidecars never get listeners; their route tables
//! are keyed by service port instead ([`crate::model::ProxyConfig::route_table`]).

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
