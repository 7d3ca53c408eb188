//! Clusters.

use std::num::NonZeroU32;

use super::{
    duration_from, duration_to, enum_from, enum_map, percent_from, required, required_duration,
    resource,
};
use crate::{
    model::{self, FieldError, Invalid, validate::ResultExt as _},
    proto::discovery::v1 as pb,
};

enum_map!(LoadBalancer, unspecified => P2cEwma, [P2cEwma, RoundRobin, LeastRequest, Random]);
enum_map!(TlsMode, unspecified => Auto, [Auto, IstioMutual, Disable]);

impl TryFrom<pb::Cluster> for model::Cluster {
    type Error = Invalid;

    fn try_from(c: pb::Cluster) -> Result<Self, Invalid> {
        let name = c.key.as_ref().map_or_else(String::new, |k| {
            // The resource name, as the model would print it.
            format!(
                "outbound|{}|{}|{}",
                k.port,
                k.subset.as_deref().unwrap_or(""),
                k.hostname
            )
        });
        resource(&name, || {
            Ok(Self {
                key: required(c.key).at("key")?.try_into().at("key")?,
                subset_labels: c.subset_labels,
                load_balancer: enum_from::<pb::LoadBalancer>(c.load_balancer)
                    .at("loadBalancer")?
                    .into(),
                connection_pool: c
                    .connection_pool
                    .map(pool_from)
                    .transpose()
                    .at("connectionPool")?
                    .unwrap_or_default(),
                outlier_detection: c
                    .outlier_detection
                    .map(|o| {
                        Ok(model::OutlierDetection {
                            consecutive_5xx: o.consecutive_5xx,
                            consecutive_gateway_errors: o.consecutive_gateway_errors,
                            interval: required_duration(o.interval).at("interval")?,
                            base_ejection_time: required_duration(o.base_ejection_time)
                                .at("baseEjectionTime")?,
                            max_ejection_percent: percent_from(o.max_ejection_percent)
                                .at("maxEjectionPercent")?,
                        })
                    })
                    .transpose()
                    .at("outlierDetection")?,
                tls: enum_from::<pb::TlsMode>(c.tls).at("tls")?.into(),
            })
        })
    }
}

fn pool_from(p: pb::ConnectionPool) -> Result<model::ConnectionPool, FieldError> {
    let defaults = model::ConnectionPool::default();
    Ok(model::ConnectionPool {
        // Zero means unlimited.
        max_connections: NonZeroU32::new(p.max_connections),
        max_pending: NonZeroU32::new(p.max_pending),
        max_requests: NonZeroU32::new(p.max_requests),
        max_requests_per_connection: NonZeroU32::new(p.max_requests_per_connection),
        connect_timeout: p
            .connect_timeout
            .map(duration_from)
            .transpose()
            .at("connectTimeout")?
            .unwrap_or(defaults.connect_timeout),
        idle_timeout: p
            .idle_timeout
            .map(duration_from)
            .transpose()
            .at("idleTimeout")?
            .unwrap_or(defaults.idle_timeout),
    })
}

impl From<&model::Cluster> for pb::Cluster {
    fn from(c: &model::Cluster) -> Self {
        let p = &c.connection_pool;
        let limit = |l: Option<NonZeroU32>| l.map_or(0, NonZeroU32::get);
        Self {
            key: Some((&c.key).into()),
            subset_labels: c.subset_labels.clone(),
            load_balancer: pb::LoadBalancer::from(c.load_balancer).into(),
            connection_pool: Some(pb::ConnectionPool {
                max_connections: limit(p.max_connections),
                max_pending: limit(p.max_pending),
                max_requests: limit(p.max_requests),
                max_requests_per_connection: limit(p.max_requests_per_connection),
                connect_timeout: Some(duration_to(p.connect_timeout)),
                idle_timeout: Some(duration_to(p.idle_timeout)),
            }),
            outlier_detection: c.outlier_detection.as_ref().map(|o| pb::OutlierDetection {
                consecutive_5xx: o.consecutive_5xx,
                consecutive_gateway_errors: o.consecutive_gateway_errors,
                interval: Some(duration_to(o.interval)),
                base_ejection_time: Some(duration_to(o.base_ejection_time)),
                max_ejection_percent: o.max_ejection_percent.get(),
            }),
            tls: pb::TlsMode::from(c.tls).into(),
        }
    }
}
