//! The index's derived tables, rebuilt from the whole resource set on every change.
//!
//! Everything that does not depend on which proxy asks is translated here, once: model
//! services with their endpoints, VirtualService and GAMMA route candidates per host,
//! translated DestinationRules and security policies, and the warnings. [`super::proxy`]
//! only selects and assembles.

use std::collections::BTreeMap;
use std::net::IpAddr;

use mesh_api::config::Resource;

use super::{
    IndexWarning, Settings,
    clusters::{self, DrRecord},
    gateway_api::{self, GammaCandidate},
    gateways::{self, BoundRoutes, GatewayMap},
    hosts::{Cx, Resolver, ResourceRef, push_warning},
    routes::{self, SubsetNames, VsCandidate},
    security::{self, AuthzRecord, PeerAuthnRecord},
    services::{self, ServiceRecord},
    workloads::{self, WorkloadRecord},
};

/// The derived tables.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Workloads by uid.
    pub(super) workloads: BTreeMap<String, WorkloadRecord>,
    /// Workload uids by (namespace, name): how a proxy's node finds its own workload.
    pub(super) workload_names: std::collections::HashMap<(String, String), Vec<String>>,
    /// Service definitions by host name, in [`ServiceRecord::priority`] order (for a proxy
    /// in no particular namespace).
    pub(super) services: BTreeMap<String, Vec<ServiceRecord>>,
    /// VirtualService route candidates by service host name, in precedence order.
    pub(super) virtual_services: BTreeMap<String, Vec<VsCandidate>>,
    /// Gateways (with at least one HTTP server) by (namespace, name).
    pub(super) gateways: GatewayMap,
    /// VirtualService routes bound to each Gateway, by VirtualService namespace and name.
    pub(super) gateway_routes: BoundRoutes,
    /// Gateway API Gateways of class `mesh` (with at least one listener served), by
    /// (namespace, name): a name space of their own, apart from our Gateways'.
    pub(super) kube_gateways: GatewayMap,
    /// HTTPRoutes and GRPCRoutes attached to each Gateway API Gateway.
    pub(super) kube_gateway_routes: BoundRoutes,
    /// HTTPRoute/GRPCRoute candidates by service host name.
    pub(super) gamma_routes: BTreeMap<String, Vec<GammaCandidate>>,
    /// DestinationRules by namespace, by name.
    pub(super) destination_rules: BTreeMap<String, Vec<DrRecord>>,
    /// PeerAuthentications.
    pub(super) peer_authentications: Vec<PeerAuthnRecord>,
    /// AuthorizationPolicies.
    pub(super) authorization_policies: Vec<AuthzRecord>,
    /// Translation problems, sorted and deduplicated.
    pub(super) warnings: Vec<IndexWarning>,
}

impl State {
    /// Translates `resources` (each at most once per kind, namespace and name).
    pub(super) fn build<'a>(
        settings: &Settings,
        resources: impl Iterator<Item = &'a Resource>,
    ) -> Self {
        let mut warnings = Vec::new();
        let resources: Vec<(ResourceRef, &Resource)> = resources
            .map(|r| (ResourceRef::of(r), r))
            .filter(|(origin, _)| {
                let named = !origin.name.is_empty() && !origin.namespace.is_empty();
                if !named {
                    push_warning(&mut warnings, origin, "no name or namespace; skipped");
                }
                named
            })
            .collect();
        let mut state = Self::default();

        // Workloads first: services select them.
        for (origin, r) in &resources {
            if let Resource::WorkloadEntry(we) = r {
                let mut cx = Cx::new(settings, origin, &mut warnings);
                if let Some(w) = workloads::from_workload_entry(&mut cx, we) {
                    state.workloads.insert(w.workload.uid.clone(), w);
                }
            }
        }

        for w in state.workloads.values() {
            state
                .workload_names
                .entry((w.workload.namespace.clone(), w.workload.name.clone()))
                .or_default()
                .push(w.workload.uid.clone());
        }

        // Services and their endpoints.
        let by_label = services::WorkloadsByLabel::new(state.workloads.values());
        let mut services: BTreeMap<String, Vec<ServiceRecord>> = BTreeMap::new();
        for (origin, r) in &resources {
            let mut cx = Cx::new(settings, origin, &mut warnings);
            let records = match r {
                Resource::Service(svc) => services::from_kube(&mut cx, svc).into_iter().collect(),
                Resource::ServiceEntry(se) => services::from_service_entry(&mut cx, se),
                _ => continue,
            };
            for mut rec in records {
                let origin = rec.origin.clone();
                services::fill_endpoints(&mut rec, &by_label, &mut |m| {
                    push_warning(&mut warnings, &origin, m);
                });
                services
                    .entry(rec.service.hostname.clone())
                    .or_default()
                    .push(rec);
            }
        }
        drop(by_label);
        state.services = services;
        for (hostname, records) in &mut state.services {
            records.sort_by(|a, b| a.priority("").cmp(&b.priority("")));
            for r in &records[1..] {
                push_warning(
                    &mut warnings,
                    &r.origin,
                    format!(
                        "host {hostname} is also defined by {}; a proxy sees one definition (Kubernetes Services first, then the one in its own namespace)",
                        records[0].origin
                    ),
                );
            }
        }

        // Two services on one virtual IP and port: proxies that see both keep it on the
        // Kubernetes Service, else on the first by host name.
        let mut by_claim: Vec<&ServiceRecord> = state.services.values().map(|r| &r[0]).collect();
        by_claim.sort_by(|a, b| {
            (a.priority("").0, &a.service.hostname).cmp(&(b.priority("").0, &b.service.hostname))
        });
        let mut vips: BTreeMap<(IpAddr, u16), &str> = BTreeMap::new();
        for rec in by_claim {
            let svc = &rec.service;
            for vip in &svc.vips {
                for p in &svc.ports {
                    match vips.get(&(vip.to_canonical(), p.port)) {
                        Some(first) => push_warning(
                            &mut warnings,
                            &rec.origin,
                            format!(
                                "virtual IP {vip} port {} is also used by {first}; proxies that see both drop it from {}",
                                p.port, svc.hostname
                            ),
                        ),
                        None => {
                            vips.insert((vip.to_canonical(), p.port), &svc.hostname);
                        }
                    }
                }
            }
        }

        let resolver = Resolver::new(settings, &state.services);

        // DestinationRules, before routes: routes check the subsets they name.
        let mut subsets: SubsetNames = BTreeMap::new();
        for (origin, r) in &resources {
            if let Resource::DestinationRule(dr) = r {
                let mut cx = Cx::new(settings, origin, &mut warnings);
                let rec = clusters::translate(&mut cx, dr, &resolver);
                for h in resolver.hostnames().filter(|h| rec.host.matches(h)) {
                    subsets
                        .entry(h.to_owned())
                        .or_default()
                        .extend(rec.subset_names().map(str::to_owned));
                }
                state
                    .destination_rules
                    .entry(origin.namespace.clone())
                    .or_default()
                    .push(rec);
            }
        }
        for drs in state.destination_rules.values_mut() {
            drs.sort_by(|a, b| a.origin.cmp(&b.origin));
            for (i, dr) in drs.iter().enumerate() {
                if let Some(first) = drs[..i].iter().find(|o| o.host == dr.host) {
                    push_warning(
                        &mut warnings,
                        &dr.origin,
                        format!(
                            "{} in the same namespace is for the same host and comes first by name; it takes precedence",
                            first.origin
                        ),
                    );
                }
            }
        }

        // Gateways, before routes: gateway-bound VirtualServices are translated per server.
        for (origin, r) in &resources {
            if let Resource::Gateway(gw) = r {
                let mut cx = Cx::new(settings, origin, &mut warnings);
                let rec = gateways::translate(&mut cx, gw);
                if !rec.servers.is_empty() {
                    let key = (origin.namespace.clone(), origin.name.clone());
                    state.gateways.insert(key, rec);
                }
            }
            if let Resource::KubeGateway(gw) = r {
                let mut cx = Cx::new(settings, origin, &mut warnings);
                if let Some(rec) = gateways::translate_kube(&mut cx, gw)
                    && !rec.servers.is_empty()
                {
                    let key = (origin.namespace.clone(), origin.name.clone());
                    state.kube_gateways.insert(key, rec);
                }
            }
        }

        // Routes.
        for (origin, r) in &resources {
            let mut cx = Cx::new(settings, origin, &mut warnings);
            match r {
                Resource::VirtualService(vs) => {
                    for (host, c) in routes::translate(&mut cx, vs, &resolver, &subsets) {
                        state.virtual_services.entry(host).or_default().push(c);
                    }
                    for (gw, c) in gateways::translate_virtual_service(
                        &mut cx,
                        vs,
                        &state.gateways,
                        &resolver,
                        &subsets,
                    ) {
                        state.gateway_routes.entry(gw).or_default().push(c);
                    }
                }
                Resource::HttpRoute(route) => {
                    for (host, c) in gateway_api::translate_http(&mut cx, route, &resolver) {
                        state.gamma_routes.entry(host).or_default().push(c);
                    }
                    for (gw, c) in gateway_api::translate_http_at_gateways(
                        &mut cx,
                        route,
                        &resolver,
                        &state.kube_gateways,
                    ) {
                        state.kube_gateway_routes.entry(gw).or_default().push(c);
                    }
                }
                Resource::GrpcRoute(route) => {
                    for (host, c) in gateway_api::translate_grpc(&mut cx, route, &resolver) {
                        state.gamma_routes.entry(host).or_default().push(c);
                    }
                    for (gw, c) in gateway_api::translate_grpc_at_gateways(
                        &mut cx,
                        route,
                        &resolver,
                        &state.kube_gateways,
                    ) {
                        state.kube_gateway_routes.entry(gw).or_default().push(c);
                    }
                }
                _ => {}
            }
        }
        for (host, cands) in &mut state.virtual_services {
            cands.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
            for c in &cands[1..] {
                if c.specificity == cands[0].specificity {
                    push_warning(
                        &mut warnings,
                        &c.origin,
                        format!(
                            "host {host} is also routed by {}, which takes precedence where both are visible",
                            cands[0].origin
                        ),
                    );
                }
            }
        }
        for (host, cands) in &mut state.gamma_routes {
            cands.sort_by(|a, b| a.origin.cmp(&b.origin));
            if let Some(vs) = state.virtual_services.get(host).and_then(|v| v.first()) {
                for c in cands.iter() {
                    push_warning(
                        &mut warnings,
                        &c.origin,
                        format!(
                            "host {host} is also routed by {}; the VirtualService wins where both apply",
                            vs.origin
                        ),
                    );
                }
            }
        }

        // Security.
        for (origin, r) in &resources {
            let mut cx = Cx::new(settings, origin, &mut warnings);
            match r {
                Resource::PeerAuthentication(pa) => state
                    .peer_authentications
                    .push(security::peer_authentication(&mut cx, pa)),
                Resource::AuthorizationPolicy(ap) => state
                    .authorization_policies
                    .push(security::authorization_policy(&mut cx, ap)),
                _ => {}
            }
        }
        security::peer_authentication_conflicts(
            &state.peer_authentications,
            state.workloads.values().map(|w| {
                (
                    w.workload.namespace.as_str(),
                    w.workload.name.as_str(),
                    &w.workload.labels,
                )
            }),
            &mut warnings,
        );

        warnings.sort();
        warnings.dedup();
        state.warnings = warnings;
        state
    }
}
