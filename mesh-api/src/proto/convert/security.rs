//! Inbound and authorization policies.

use super::{enum_from, enum_map, ip_from, ip_to, port_from, resource};
use crate::{
    model::{self, FieldError, Invalid, Reason, validate::ResultExt as _},
    proto::discovery::v1 as pb,
};

enum_map!(MtlsMode, unspecified => Permissive, [Strict, Permissive, Disable]);
enum_map!(AuthzAction, unspecified => Allow, [Allow, Deny, Audit]);

// === InboundPolicy ===

impl TryFrom<pb::InboundPolicy> for model::InboundPolicy {
    type Error = Invalid;

    fn try_from(p: pb::InboundPolicy) -> Result<Self, Invalid> {
        resource(model::InboundPolicy::NAME, || {
            Ok(Self {
                mode: enum_from::<pb::MtlsMode>(p.mode).at("mode")?.into(),
                port_overrides: p
                    .port_overrides
                    .into_iter()
                    .map(|(port, mode)| {
                        let mode = enum_from::<pb::MtlsMode>(mode).at_key("portOverrides", port)?;
                        Ok((port_from(port).at_key("portOverrides", port)?, mode.into()))
                    })
                    .collect::<Result<_, FieldError>>()?,
            })
        })
    }
}

impl From<&model::InboundPolicy> for pb::InboundPolicy {
    fn from(p: &model::InboundPolicy) -> Self {
        Self {
            mode: pb::MtlsMode::from(p.mode).into(),
            port_overrides: p
                .port_overrides
                .iter()
                .map(|(&port, &mode)| (port.into(), pb::MtlsMode::from(mode).into()))
                .collect(),
        }
    }
}

// === AuthorizationPolicy ===

impl TryFrom<pb::AuthorizationPolicy> for model::AuthorizationPolicy {
    type Error = Invalid;

    fn try_from(p: pb::AuthorizationPolicy) -> Result<Self, Invalid> {
        let name = format!("{}/{}", p.namespace, p.name);
        resource(&name, || {
            Ok(Self {
                action: enum_from::<pb::AuthzAction>(p.action).at("action")?.into(),
                rules: p
                    .rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| rule_from(r).at_index("rules", i))
                    .collect::<Result<_, _>>()?,
                name: p.name,
                namespace: p.namespace,
            })
        })
    }
}

fn rule_from(r: pb::Rule) -> Result<model::Rule, FieldError> {
    Ok(model::Rule {
        from: each("from", r.from, source_from)?,
        to: each("to", r.to, operation_from)?,
        when: each("when", r.when, |c| {
            Ok(model::Condition {
                key: c
                    .key
                    .parse()
                    .map_err(|e: model::ConditionKeyError| {
                        FieldError::new(Reason::Other(e.to_string()))
                    })
                    .at("key")?,
                values: c.values,
                not_values: c.not_values,
            })
        })?,
    })
}

fn each<P, M>(
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

fn globs(field: &'static str, items: Vec<String>) -> Result<Vec<model::Glob>, FieldError> {
    each(field, items, |s| {
        s.parse()
            .map_err(|e: model::GlobError| FieldError::new(Reason::Other(e.to_string())))
    })
}

fn nets(field: &'static str, items: Vec<pb::IpNet>) -> Result<Vec<model::IpNet>, FieldError> {
    each(field, items, |n| {
        let addr = ip_from(&n.address).at("address")?;
        model::IpNet::new(addr, n.prefix_len).map_err(|e| FieldError::field("prefixLen", e))
    })
}

fn ports(field: &'static str, items: Vec<u32>) -> Result<Vec<u16>, FieldError> {
    each(field, items, port_from)
}

fn source_from(s: pb::Source) -> Result<model::Source, FieldError> {
    Ok(model::Source {
        principals: globs("principals", s.principals)?,
        not_principals: globs("notPrincipals", s.not_principals)?,
        namespaces: globs("namespaces", s.namespaces)?,
        not_namespaces: globs("notNamespaces", s.not_namespaces)?,
        ip_blocks: nets("ipBlocks", s.ip_blocks)?,
        not_ip_blocks: nets("notIpBlocks", s.not_ip_blocks)?,
    })
}

fn operation_from(o: pb::Operation) -> Result<model::Operation, FieldError> {
    Ok(model::Operation {
        hosts: globs("hosts", o.hosts)?,
        not_hosts: globs("notHosts", o.not_hosts)?,
        ports: ports("ports", o.ports)?,
        not_ports: ports("notPorts", o.not_ports)?,
        methods: o.methods,
        not_methods: o.not_methods,
        paths: globs("paths", o.paths)?,
        not_paths: globs("notPaths", o.not_paths)?,
    })
}

impl From<&model::AuthorizationPolicy> for pb::AuthorizationPolicy {
    fn from(p: &model::AuthorizationPolicy) -> Self {
        let globs = |g: &[model::Glob]| g.iter().map(ToString::to_string).collect();
        let nets = |n: &[model::IpNet]| {
            n.iter()
                .map(|n| pb::IpNet {
                    address: ip_to(n.addr()),
                    prefix_len: n.prefix_len().into(),
                })
                .collect()
        };
        let ports = |p: &[u16]| p.iter().map(|&p| p.into()).collect();
        Self {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            action: pb::AuthzAction::from(p.action).into(),
            rules: p
                .rules
                .iter()
                .map(|r| pb::Rule {
                    from: r
                        .from
                        .iter()
                        .map(|s| pb::Source {
                            principals: globs(&s.principals),
                            not_principals: globs(&s.not_principals),
                            namespaces: globs(&s.namespaces),
                            not_namespaces: globs(&s.not_namespaces),
                            ip_blocks: nets(&s.ip_blocks),
                            not_ip_blocks: nets(&s.not_ip_blocks),
                        })
                        .collect(),
                    to: r
                        .to
                        .iter()
                        .map(|o| pb::Operation {
                            hosts: globs(&o.hosts),
                            not_hosts: globs(&o.not_hosts),
                            ports: ports(&o.ports),
                            not_ports: ports(&o.not_ports),
                            methods: o.methods.clone(),
                            not_methods: o.not_methods.clone(),
                            paths: globs(&o.paths),
                            not_paths: globs(&o.not_paths),
                        })
                        .collect(),
                    when: r
                        .when
                        .iter()
                        .map(|c| pb::Condition {
                            key: c.key.to_string(),
                            values: c.values.clone(),
                            not_values: c.not_values.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
