//! Clusters: how the proxy talks to the endpoints behind a [`ClusterKey`] — load balancing,
//! connection limits, outlier detection and transport security (what Istio's
//! DestinationRule configures).

use std::{collections::BTreeMap, num::NonZeroU32, time::Duration};

use serde::{Deserialize, Serialize};

use crate::model::{
    ClusterKey, Percent, duration,
    validate::{self, FieldError, Reason, ResultExt as _},
};

/// Upstream settings for one service port (or one subset of it).
///
/// Its resource name is the key's `Display` form, `outbound|9080|v1|reviews.default.svc...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Which service port and subset.
    pub key: ClusterKey,
    /// Endpoints must carry all these labels (the subset's labels; empty for no subset).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subset_labels: BTreeMap<String, String>,
    /// How an endpoint is picked per request (or per connection for TCP).
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Connection and request limits and timeouts.
    #[serde(default)]
    pub connection_pool: ConnectionPool,
    /// Ejection of failing endpoints; `None` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Transport security towards endpoints.
    #[serde(default)]
    pub tls: TlsMode,
}

/// Load-balancing algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancer {
    /// Power of two choices over a latency EWMA (peak-EWMA, as linkerd2-proxy).
    #[default]
    P2cEwma,
    /// Each endpoint in turn (weighted).
    RoundRobin,
    /// Power of two choices over outstanding requests.
    LeastRequest,
    /// Uniformly random (weighted).
    Random,
}

/// Limits and timeouts of the connection pool to a cluster's endpoints.
///
/// `None` limits are unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    /// Most connections to all endpoints together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<NonZeroU32>,
    /// Most requests waiting for a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<NonZeroU32>,
    /// Most requests in flight to all endpoints together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<NonZeroU32>,
    /// Requests per connection before it is closed (1 disables keep-alive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<NonZeroU32>,
    /// Timeout of establishing a connection (TCP and TLS).
    #[serde(with = "duration", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Idle connections are closed after this long.
    #[serde(with = "duration", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl Default for ConnectionPool {
    /// Unlimited; 10 s connect timeout and 1 h idle timeout (Istio's defaults).
    fn default() -> Self {
        Self {
            max_connections: None,
            max_pending: None,
            max_requests: None,
            max_requests_per_connection: None,
            connect_timeout: default_connect_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

/// Passive health checking: endpoints that fail repeatedly are ejected for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive 5xx responses (or connect failures) that eject an endpoint; 0 disables.
    #[serde(default)]
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 responses (or connect failures) that eject; 0 disables.
    #[serde(default)]
    pub consecutive_gateway_errors: u32,
    /// How often ejections are evaluated.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// An endpoint's first ejection lasts this long; each further one adds as much again.
    #[serde(with = "duration")]
    pub base_ejection_time: Duration,
    /// Never eject more than this share of endpoints.
    pub max_ejection_percent: Percent,
}

/// Transport security from this proxy to a cluster's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// Mutual TLS with mesh identities to endpoints that run a mesh proxy
    /// ([`crate::model::Workload::in_mesh`]), plaintext to the others (Istio's auto mTLS).
    #[default]
    Auto,
    /// Always mutual TLS with mesh identities; endpoints outside the mesh are unreachable.
    IstioMutual,
    /// Plaintext, straight to the endpoint's target port.
    Disable,
}

// === impl Cluster ===

impl Cluster {
    /// The resource name, `outbound|<port>|<subset>|<hostname>`.
    pub fn resource_name(&self) -> String {
        self.key.to_string()
    }

    /// Whether an endpoint with `labels` belongs to this cluster's subset.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.subset_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    pub(crate) fn check(&self) -> Result<(), FieldError> {
        self.key.check().at("key")?;
        if self.key.subset.is_none() && !self.subset_labels.is_empty() {
            return Err(FieldError::field(
                "subsetLabels",
                Reason::Other("subset labels need a subset name in key.subset".to_owned()),
            ));
        }
        for k in self.subset_labels.keys() {
            validate::non_empty(k).at_key("subsetLabels", "\"\"")?;
        }
        let pool = &self.connection_pool;
        if pool.connect_timeout.is_zero() {
            return Err(FieldError::field("connectTimeout", Reason::Zero).at("connectionPool"));
        }
        if pool.idle_timeout.is_zero() {
            return Err(FieldError::field("idleTimeout", Reason::Zero).at("connectionPool"));
        }
        if let Some(od) = &self.outlier_detection {
            if od.interval.is_zero() {
                return Err(FieldError::field("interval", Reason::Zero).at("outlierDetection"));
            }
            if od.base_ejection_time.is_zero() {
                return Err(
                    FieldError::field("baseEjectionTime", Reason::Zero).at("outlierDetection")
                );
            }
        }
        Ok(())
    }
}
