//! Route tables and everything in them.

use super::{
    duration_to, enum_from, opt_duration_from, percent_from, port_from, required,
    required_duration, resource,
};
use crate::{
    model::{self, FieldError, Invalid, Reason, validate::ResultExt as _},
    proto::discovery::v1 as pb,
};

/// Converts each element of a list with `f`, naming the failing element `field[i]`.
fn list<P, M>(
    field: &'static str,
    items: Vec<P>,
    f: impl Fn(P) -> Result<M, FieldError>,
) -> Result<Vec<M>, FieldError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, p)| f(p).at_index(field, i))
        .collect()
}

// === RouteTable ===

impl TryFrom<pb::RouteTable> for model::RouteTable {
    type Error = Invalid;

    fn try_from(r: pb::RouteTable) -> Result<Self, Invalid> {
        let name = r.name.clone();
        resource(&name, || route_table_fields(r))
    }
}

/// The fields of a route table, unvalidated (also a listener's virtual hosts).
fn route_table_fields(r: pb::RouteTable) -> Result<model::RouteTable, FieldError> {
    Ok(model::RouteTable {
        port: port_from(r.port).at("port")?,
        name: r.name,
        hostnames: r.hostnames,
        http: list("http", r.http, model::HttpRoute::try_from)?,
        tcp: list("tcp", r.tcp, model::TcpRoute::try_from)?,
    })
}

// === Listener ===

impl TryFrom<pb::Listener> for model::Listener {
    type Error = Invalid;

    fn try_from(l: pb::Listener) -> Result<Self, Invalid> {
        let name = l.name.clone();
        resource(&name, || {
            Ok(Self {
                port: port_from(l.port).at("port")?,
                bind_port: match l.bind_port {
                    0 => None,
                    p => Some(port_from(p).at("bindPort")?),
                },
                name: l.name,
                virtual_hosts: list("virtualHosts", l.virtual_hosts, route_table_fields)?,
                tls: l.tls.map(|t| model::ListenerTls {
                    certificates: t
                        .certificates
                        .into_iter()
                        .map(|c| model::ServerCertificate {
                            credential_name: c.credential_name,
                            hosts: c.hosts,
                        })
                        .collect(),
                }),
            })
        })
    }
}

impl From<&model::Listener> for pb::Listener {
    fn from(l: &model::Listener) -> Self {
        Self {
            name: l.name.clone(),
            port: l.port.into(),
            bind_port: l.bind_port.map_or(0, u32::from),
            virtual_hosts: l.virtual_hosts.iter().map(Into::into).collect(),
            tls: l.tls.as_ref().map(|t| pb::ListenerTls {
                certificates: t
                    .certificates
                    .iter()
                    .map(|c| pb::ServerCertificate {
                        credential_name: c.credential_name.clone(),
                        hosts: c.hosts.clone(),
                    })
                    .collect(),
            }),
        }
    }
}

impl From<&model::RouteTable> for pb::RouteTable {
    fn from(r: &model::RouteTable) -> Self {
        Self {
            name: r.name.clone(),
            hostnames: r.hostnames.clone(),
            port: r.port.into(),
            http: r.http.iter().map(Into::into).collect(),
            tcp: r.tcp.iter().map(Into::into).collect(),
        }
    }
}

// === HttpRoute ===

impl TryFrom<pb::HttpRoute> for model::HttpRoute {
    type Error = FieldError;

    fn try_from(r: pb::HttpRoute) -> Result<Self, FieldError> {
        use pb::http_route::Action;
        let action = match r.action {
            None => Err(FieldError::new(Reason::Missing)),
            Some(Action::Forward(f)) => model::Forward::try_from(f)
                .map(model::HttpAction::Forward)
                .at("forward"),
            Some(Action::Redirect(r)) => model::Redirect::try_from(r)
                .map(model::HttpAction::Redirect)
                .at("redirect"),
            Some(Action::DirectResponse(d)) => status_from(d.status)
                .at("status")
                .map(|status| {
                    model::HttpAction::DirectResponse(model::DirectResponse {
                        status,
                        body: d.body,
                    })
                })
                .at("directResponse"),
        }
        .at("action")?;
        Ok(Self {
            name: r.name,
            matches: list("matches", r.matches, model::HttpMatch::try_from)?,
            action,
        })
    }
}

impl From<&model::HttpRoute> for pb::HttpRoute {
    fn from(r: &model::HttpRoute) -> Self {
        use pb::http_route::Action;
        Self {
            name: r.name.clone(),
            matches: r.matches.iter().map(Into::into).collect(),
            action: Some(match &r.action {
                model::HttpAction::Forward(f) => Action::Forward(f.into()),
                model::HttpAction::Redirect(r) => Action::Redirect(r.into()),
                model::HttpAction::DirectResponse(d) => {
                    Action::DirectResponse(pb::DirectResponse {
                        status: d.status.into(),
                        body: d.body.clone(),
                    })
                }
            }),
        }
    }
}

fn status_from(v: u32) -> Result<u16, FieldError> {
    u16::try_from(v).map_err(|_| {
        FieldError::new(Reason::OutOfRange {
            value: v.to_string(),
            expected: "an http status (200..=599)",
        })
    })
}

// === matches ===

impl TryFrom<pb::HttpMatch> for model::HttpMatch {
    type Error = FieldError;

    fn try_from(m: pb::HttpMatch) -> Result<Self, FieldError> {
        let opt = |field, v: Option<pb::StringMatch>| {
            v.map(model::StringMatch::try_from).transpose().at(field)
        };
        Ok(Self {
            uri: opt("uri", m.uri)?,
            method: opt("method", m.method)?,
            authority: opt("authority", m.authority)?,
            scheme: opt("scheme", m.scheme)?,
            headers: list("headers", m.headers, header_match_from)?,
            without_headers: list("withoutHeaders", m.without_headers, header_match_from)?,
            query_params: list("queryParams", m.query_params, |q| {
                Ok(model::QueryParamMatch {
                    name: q.name,
                    value: q.value.map(TryInto::try_into).transpose().at("value")?,
                })
            })?,
            name: m.name,
            source_labels: m.source_labels,
            source_namespace: m.source_namespace,
        })
    }
}

fn header_match_from(h: pb::HeaderMatch) -> Result<model::HeaderMatch, FieldError> {
    Ok(model::HeaderMatch {
        name: h.name,
        value: h.value.map(TryInto::try_into).transpose().at("value")?,
    })
}

impl From<&model::HttpMatch> for pb::HttpMatch {
    fn from(m: &model::HttpMatch) -> Self {
        let header = |h: &model::HeaderMatch| pb::HeaderMatch {
            name: h.name.clone(),
            value: h.value.as_ref().map(Into::into),
        };
        Self {
            name: m.name.clone(),
            uri: m.uri.as_ref().map(Into::into),
            method: m.method.as_ref().map(Into::into),
            authority: m.authority.as_ref().map(Into::into),
            scheme: m.scheme.as_ref().map(Into::into),
            headers: m.headers.iter().map(header).collect(),
            without_headers: m.without_headers.iter().map(header).collect(),
            query_params: m
                .query_params
                .iter()
                .map(|q| pb::QueryParamMatch {
                    name: q.name.clone(),
                    value: q.value.as_ref().map(Into::into),
                })
                .collect(),
            source_labels: m.source_labels.clone(),
            source_namespace: m.source_namespace.clone(),
        }
    }
}

impl TryFrom<pb::StringMatch> for model::StringMatch {
    type Error = FieldError;

    fn try_from(m: pb::StringMatch) -> Result<Self, FieldError> {
        use pb::string_match::Kind;
        Ok(match required(m.kind)? {
            Kind::Exact(s) => Self::Exact(s),
            Kind::Prefix(s) => Self::Prefix(s),
            Kind::Regex(s) => Self::Regex(
                model::Pattern::new(s)
                    .map_err(|e| FieldError::field("regex", Reason::Regex(e.to_string())))?,
            ),
        })
    }
}

impl From<&model::StringMatch> for pb::StringMatch {
    fn from(m: &model::StringMatch) -> Self {
        use pb::string_match::Kind;
        Self {
            kind: Some(match m {
                model::StringMatch::Exact(s) => Kind::Exact(s.clone()),
                model::StringMatch::Prefix(s) => Kind::Prefix(s.clone()),
                model::StringMatch::Regex(p) => Kind::Regex(p.as_str().to_owned()),
            }),
        }
    }
}

// === Forward ===

impl TryFrom<pb::Forward> for model::Forward {
    type Error = FieldError;

    fn try_from(f: pb::Forward) -> Result<Self, FieldError> {
        Ok(Self {
            backends: list("backends", f.backends, model::WeightedBackend::try_from)?,
            timeout: opt_duration_from(f.timeout).at("timeout")?,
            retry: f.retry.map(TryInto::try_into).transpose().at("retry")?,
            fault: f.fault.map(TryInto::try_into).transpose().at("fault")?,
            mirrors: list("mirrors", f.mirrors, |m| {
                Ok(model::Mirror {
                    cluster: required(m.cluster)
                        .at("cluster")?
                        .try_into()
                        .at("cluster")?,
                    percentage: percent_from(m.percentage).at("percentage")?,
                })
            })?,
            rewrite: f.rewrite.map(|r| model::Rewrite {
                uri_prefix: r.uri_prefix,
                authority: r.authority,
            }),
            request_headers: f.request_headers.map(Into::into).unwrap_or_default(),
            response_headers: f.response_headers.map(Into::into).unwrap_or_default(),
        })
    }
}

impl From<&model::Forward> for pb::Forward {
    fn from(f: &model::Forward) -> Self {
        let headers = |h: &model::HeaderMutations| (!h.is_empty()).then(|| h.into());
        Self {
            backends: f.backends.iter().map(Into::into).collect(),
            timeout: f.timeout.map(duration_to),
            retry: f.retry.as_ref().map(Into::into),
            fault: f.fault.as_ref().map(Into::into),
            mirrors: f
                .mirrors
                .iter()
                .map(|m| pb::Mirror {
                    cluster: Some((&m.cluster).into()),
                    percentage: m.percentage.get(),
                })
                .collect(),
            rewrite: f.rewrite.as_ref().map(|r| pb::Rewrite {
                uri_prefix: r.uri_prefix.clone(),
                authority: r.authority.clone(),
            }),
            request_headers: headers(&f.request_headers),
            response_headers: headers(&f.response_headers),
        }
    }
}

impl TryFrom<pb::WeightedBackend> for model::WeightedBackend {
    type Error = FieldError;

    fn try_from(b: pb::WeightedBackend) -> Result<Self, FieldError> {
        Ok(Self {
            cluster: required(b.cluster)
                .at("cluster")?
                .try_into()
                .at("cluster")?,
            weight: b.weight,
        })
    }
}

impl From<&model::WeightedBackend> for pb::WeightedBackend {
    fn from(b: &model::WeightedBackend) -> Self {
        Self {
            cluster: Some((&b.cluster).into()),
            weight: b.weight,
        }
    }
}

impl TryFrom<pb::ClusterKey> for model::ClusterKey {
    type Error = FieldError;

    fn try_from(k: pb::ClusterKey) -> Result<Self, FieldError> {
        Ok(Self {
            port: port_from(k.port).at("port")?,
            hostname: k.hostname,
            subset: k.subset,
        })
    }
}

impl From<&model::ClusterKey> for pb::ClusterKey {
    fn from(k: &model::ClusterKey) -> Self {
        Self {
            hostname: k.hostname.clone(),
            port: k.port.into(),
            subset: k.subset.clone(),
        }
    }
}

impl From<pb::HeaderMutations> for model::HeaderMutations {
    fn from(h: pb::HeaderMutations) -> Self {
        Self {
            set: h.set,
            add: h.add,
            remove: h.remove,
        }
    }
}

impl From<&model::HeaderMutations> for pb::HeaderMutations {
    fn from(h: &model::HeaderMutations) -> Self {
        Self {
            set: h.set.clone(),
            add: h.add.clone(),
            remove: h.remove.clone(),
        }
    }
}

// === retries ===

impl TryFrom<pb::RetryPolicy> for model::RetryPolicy {
    type Error = FieldError;

    fn try_from(r: pb::RetryPolicy) -> Result<Self, FieldError> {
        let mut retry_on = model::RetryOn::NONE;
        for (i, &c) in r.retry_on.iter().enumerate() {
            let c = enum_from::<pb::RetryCondition>(c).at_index("retryOn", i)?;
            retry_on.insert(retry_condition_from(c).at_index("retryOn", i)?);
        }
        Ok(Self {
            attempts: r.attempts,
            per_try_timeout: opt_duration_from(r.per_try_timeout).at("perTryTimeout")?,
            retry_on,
            backoff: match r.backoff {
                None => model::Backoff::default(),
                Some(b) => model::Backoff {
                    base_interval: required_duration(b.base_interval)
                        .at("baseInterval")
                        .at("backoff")?,
                    max_interval: required_duration(b.max_interval)
                        .at("maxInterval")
                        .at("backoff")?,
                },
            },
            budget: r
                .budget
                .map(|b| {
                    Ok(model::RetryBudget {
                        percent: percent_from(b.percent).at("percent")?,
                        min_retries_per_second: b.min_retries_per_second,
                        ttl: required_duration(b.ttl).at("ttl")?,
                    })
                })
                .transpose()
                .at("budget")?,
        })
    }
}

fn retry_condition_from(c: pb::RetryCondition) -> Result<model::RetryCondition, FieldError> {
    use model::RetryCondition as M;
    use pb::RetryCondition as P;
    Ok(match c {
        P::Unspecified => return Err(FieldError::new(Reason::Missing)),
        P::Status5xx => M::Status5xx,
        P::GatewayError => M::GatewayError,
        P::ConnectFailure => M::ConnectFailure,
        P::Reset => M::Reset,
        P::Retriable4xx => M::Retriable4xx,
        P::RefusedStream => M::RefusedStream,
        P::Cancelled => M::Cancelled,
        P::DeadlineExceeded => M::DeadlineExceeded,
        P::ResourceExhausted => M::ResourceExhausted,
        P::Unavailable => M::Unavailable,
        P::Internal => M::Internal,
    })
}

fn retry_condition_to(c: model::RetryCondition) -> pb::RetryCondition {
    use model::RetryCondition as M;
    use pb::RetryCondition as P;
    match c {
        M::Status5xx => P::Status5xx,
        M::GatewayError => P::GatewayError,
        M::ConnectFailure => P::ConnectFailure,
        M::Reset => P::Reset,
        M::Retriable4xx => P::Retriable4xx,
        M::RefusedStream => P::RefusedStream,
        M::Cancelled => P::Cancelled,
        M::DeadlineExceeded => P::DeadlineExceeded,
        M::ResourceExhausted => P::ResourceExhausted,
        M::Unavailable => P::Unavailable,
        M::Internal => P::Internal,
    }
}

impl From<&model::RetryPolicy> for pb::RetryPolicy {
    fn from(r: &model::RetryPolicy) -> Self {
        Self {
            attempts: r.attempts,
            per_try_timeout: r.per_try_timeout.map(duration_to),
            retry_on: r
                .retry_on
                .iter()
                .map(|c| retry_condition_to(c).into())
                .collect(),
            backoff: Some(pb::Backoff {
                base_interval: Some(duration_to(r.backoff.base_interval)),
                max_interval: Some(duration_to(r.backoff.max_interval)),
            }),
            budget: r.budget.as_ref().map(|b| pb::RetryBudget {
                percent: b.percent.get(),
                min_retries_per_second: b.min_retries_per_second,
                ttl: Some(duration_to(b.ttl)),
            }),
        }
    }
}

// === faults ===

impl TryFrom<pb::Fault> for model::Fault {
    type Error = FieldError;

    fn try_from(f: pb::Fault) -> Result<Self, FieldError> {
        use pb::fault_abort::Error;
        Ok(Self {
            delay: f
                .delay
                .map(|d| {
                    Ok(model::FaultDelay {
                        fixed: required_duration(d.fixed).at("fixed")?,
                        percentage: percent_from(d.percentage).at("percentage")?,
                    })
                })
                .transpose()
                .at("delay")?,
            abort: f
                .abort
                .map(|a| {
                    let error = match required(a.error).at("error")? {
                        Error::HttpStatus(s) => {
                            model::AbortError::HttpStatus(status_from(s).at("httpStatus")?)
                        }
                        Error::GrpcStatus(s) => model::AbortError::GrpcStatus(
                            u8::try_from(s)
                                .map_err(|_| {
                                    FieldError::new(Reason::OutOfRange {
                                        value: s.to_string(),
                                        expected: "a grpc status code (1..=16)",
                                    })
                                })
                                .at("grpcStatus")?,
                        ),
                    };
                    Ok(model::FaultAbort {
                        error,
                        percentage: percent_from(a.percentage).at("percentage")?,
                    })
                })
                .transpose()
                .at("abort")?,
        })
    }
}

impl From<&model::Fault> for pb::Fault {
    fn from(f: &model::Fault) -> Self {
        use pb::fault_abort::Error;
        Self {
            delay: f.delay.as_ref().map(|d| pb::FaultDelay {
                fixed: Some(duration_to(d.fixed)),
                percentage: d.percentage.get(),
            }),
            abort: f.abort.as_ref().map(|a| pb::FaultAbort {
                error: Some(match a.error {
                    model::AbortError::HttpStatus(s) => Error::HttpStatus(s.into()),
                    model::AbortError::GrpcStatus(s) => Error::GrpcStatus(s.into()),
                }),
                percentage: a.percentage.get(),
            }),
        }
    }
}

// === Redirect ===

impl TryFrom<pb::Redirect> for model::Redirect {
    type Error = FieldError;

    fn try_from(r: pb::Redirect) -> Result<Self, FieldError> {
        Ok(Self {
            port: r.port.map(port_from).transpose().at("port")?,
            // Zero (unset) means 301.
            status: match r.status {
                0 => 301,
                s => status_from(s).at("status")?,
            },
            scheme: r.scheme,
            authority: r.authority,
            path: r.path,
        })
    }
}

impl From<&model::Redirect> for pb::Redirect {
    fn from(r: &model::Redirect) -> Self {
        Self {
            scheme: r.scheme.clone(),
            authority: r.authority.clone(),
            port: r.port.map(Into::into),
            path: r.path.clone(),
            status: r.status.into(),
        }
    }
}

// === TcpRoute ===

impl TryFrom<pb::TcpRoute> for model::TcpRoute {
    type Error = FieldError;

    fn try_from(r: pb::TcpRoute) -> Result<Self, FieldError> {
        Ok(Self {
            name: r.name,
            matches: r
                .matches
                .into_iter()
                .map(|m| model::TcpMatch {
                    source_labels: m.source_labels,
                    sni_hosts: m.sni_hosts,
                })
                .collect(),
            backends: list("backends", r.backends, model::WeightedBackend::try_from)?,
        })
    }
}

impl From<&model::TcpRoute> for pb::TcpRoute {
    fn from(r: &model::TcpRoute) -> Self {
        Self {
            name: r.name.clone(),
            matches: r
                .matches
                .iter()
                .map(|m| pb::TcpMatch {
                    source_labels: m.source_labels.clone(),
                    sni_hosts: m.sni_hosts.clone(),
                })
                .collect(),
            backends: r.backends.iter().map(Into::into).collect(),
        }
    }
}
