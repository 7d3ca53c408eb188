//! The domain model: the plain types the proxy runs on.
//!
//! The control plane turns user config (`crate::config`: Istio-shaped CRDs, Kubernetes
//! Services, Gateway API routes) and registry state into these types, one
//! [`ProxyConfig`] per proxy, and ships them as protobuf ([`crate::proto`], converted at the
//! boundary). A proxy can also run from a static file of them ([`ProxyConfigSpec`], YAML or
//! JSON with camelCase fields; unknown fields are rejected).
//!
//! The types do no I/O. Invariants the type system cannot express are checked by
//! [`ResourceType::validate`] (and by [`ProxyConfig::new`], which validates everything),
//! with errors that name the field: `invalid route table "reviews:9080":
//! http[2].action.forward.backends: weights must not all be zero`.
//!
//! - [`service`]: [`Service`], its ports and protocols.
//! - [`workload`]: [`Workload`]s and the [`EndpointSet`] of a service.
//! - [`route`]: [`RouteTable`]s of HTTP and TCP routes and their actions.
//! - [`cluster`]: [`Cluster`]s: load balancing, pools, outlier detection, TLS.
//! - [`listener`]: a gateway's [`Listener`]s: server ports and their virtual hosts.
//! - [`security`]: [`InboundPolicy`] (mTLS mode) and [`AuthorizationPolicy`].
//! - [`resource`]: the [`Resource`] kinds of the discovery protocol and the proxy's [`Node`].
//! - [`proxy`]: [`ProxyConfig`], the indexed snapshot with the proxy's lookups.
//! - Building blocks: [`StringMatch`], [`Pattern`] and [`Glob`] matchers, [`Percent`],
//!   [`IpNet`], and the [`FieldError`]/[`Invalid`] validation errors.

pub mod cluster;
pub(crate) mod duration;
pub mod listener;
pub mod matcher;
pub mod net;
pub mod percent;
pub mod proxy;
pub mod resource;
pub mod route;
pub mod security;
pub mod service;
pub mod validate;
pub mod workload;

#[cfg(test)]
pub(crate) mod fixtures;

pub use self::{
    cluster::{Cluster, ConnectionPool, LoadBalancer, OutlierDetection, TlsMode},
    listener::{Listener, ListenerTls, ServerCertificate},
    matcher::{Glob, GlobError, Pattern, StringMatch},
    net::{IpNet, IpNetError},
    percent::{Percent, PercentError},
    proxy::{ProxyConfig, ProxyConfigSpec},
    resource::{Node, ProxyMode, Resource, ResourceKind, ResourceType},
    route::{
        AbortError, Backoff, ClusterKey, DirectResponse, Fault, FaultAbort, FaultDelay, Forward,
        HeaderMatch, HeaderMutations, HttpAction, HttpMatch, HttpRoute, Mirror, QueryParamMatch,
        Redirect, RetryBudget, RetryCondition, RetryOn, RetryPolicy, Rewrite, RouteTable, TcpMatch,
        TcpRoute, WeightedBackend,
    },
    security::{
        AuthorizationPolicy, AuthzAction, Condition, ConditionKey, ConditionKeyError,
        InboundPolicy, MtlsMode, Operation, Rule, Source,
    },
    service::{AppProtocol, Service, ServiceKind, ServiceName, ServicePort},
    validate::{FieldError, Invalid, Reason},
    workload::{Endpoint, EndpointSet, Health, Locality, Workload},
};
pub use crate::duration::ParseError as ParseDurationError;
