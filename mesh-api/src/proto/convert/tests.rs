use prost::Message as _;

use super::*;
use crate::model::fixtures::*;

/// model → proto → bytes → proto → model.
fn round_trip(r: model::Resource) {
    let wire = pb::Resource::new(&r, "v1");
    assert_eq!(wire.kind(), Some(r.kind()));
    let bytes = wire.encode_to_vec();
    let decoded = pb::Resource::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, wire);
    assert_eq!(decoded.version, "v1");
    let back = model::Resource::try_from(decoded).unwrap();
    assert_eq!(back, r);
}

#[test]
fn every_resource_kind_round_trips() {
    let spec = mk_spec();
    let mut resources = vec![
        model::Resource::Workload(spec.workload.clone().unwrap()),
        model::Resource::InboundPolicy(spec.inbound.clone()),
        model::Resource::InboundPolicy(model::InboundPolicy::default()),
    ];
    resources.extend(spec.services.iter().cloned().map(model::Resource::Service));
    resources.extend(
        spec.endpoints
            .iter()
            .cloned()
            .map(model::Resource::EndpointSet),
    );
    resources.extend(spec.clusters.iter().cloned().map(model::Resource::Cluster));
    resources.extend(spec.routes.iter().cloned().map(model::Resource::RouteTable));
    resources.extend(
        spec.authorization
            .iter()
            .cloned()
            .map(model::Resource::AuthorizationPolicy),
    );
    let mut headless = mk_service("db", "10.0.0.9", 5432);
    headless.vips.clear();
    headless.kind = model::ServiceKind::Headless;
    headless.ports[0].protocol = model::AppProtocol::Unknown;
    resources.push(model::Resource::Service(headless));
    let mut v6 = mk_workload("v6", "fd00::1", "v1");
    v6.health = model::Health::Draining;
    v6.locality = model::Locality::default();
    resources.push(model::Resource::Workload(v6));
    let mut vhost = mk_route_table("reviews", 80);
    vhost.hostnames = vec!["shop.example.com".into(), "*.example.org".into()];
    let tls = model::ListenerTls {
        certificates: vec![model::ServerCertificate {
            credential_name: "shop-cert".into(),
            hosts: vec!["shop.example.com".into()],
        }],
    };
    for (bind_port, tls) in [(None, None), (Some(8080), Some(tls))] {
        resources.push(model::Resource::Listener(model::Listener {
            name: model::Listener::name_for(80),
            port: 80,
            bind_port,
            virtual_hosts: vec![vhost.clone()],
            tls,
        }));
    }

    let kinds: std::collections::BTreeSet<_> = resources.iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds.len(),
        ResourceKind::ALL.len(),
        "every kind is covered"
    );
    for r in resources {
        round_trip(r);
    }
}

#[test]
fn a_whole_config_survives_the_wire() {
    let spec = mk_spec();
    let mut rebuilt = model::ProxyConfigSpec::new(spec.identity.clone());
    rebuilt.version = spec.version.clone();
    let resources = [
        model::Resource::Workload(spec.workload.clone().unwrap()),
        model::Resource::InboundPolicy(spec.inbound.clone()),
    ]
    .into_iter()
    .chain(
        spec.authorization
            .iter()
            .cloned()
            .map(model::Resource::AuthorizationPolicy),
    )
    .chain(spec.services.iter().cloned().map(model::Resource::Service))
    .chain(
        spec.endpoints
            .iter()
            .cloned()
            .map(model::Resource::EndpointSet),
    )
    .chain(spec.clusters.iter().cloned().map(model::Resource::Cluster))
    .chain(spec.routes.iter().cloned().map(model::Resource::RouteTable));
    for r in resources {
        let wire = pb::Resource::decode(pb::Resource::from(&r).encode_to_vec().as_slice()).unwrap();
        rebuilt.push(wire.try_into().unwrap());
    }
    assert_eq!(rebuilt, spec);
    assert!(model::ProxyConfig::new(rebuilt).is_ok());
}

#[test]
fn node_round_trips_and_validates() {
    let node = model::Node {
        id: "sidecar~10.0.1.1~productpage-v1.default".into(),
        pod_name: "productpage-v1".into(),
        namespace: "default".into(),
        ip: "10.0.1.1".parse().unwrap(),
        identity: mk_identity("default", "productpage"),
        labels: [("app".to_owned(), "productpage".to_owned())].into(),
        mode: model::ProxyMode::Gateway,
        proxy_version: "0.1.0".into(),
    };
    let wire = pb::Node::from(&node);
    assert_eq!(model::Node::try_from(wire.clone()).unwrap(), node);

    let mut bad = wire.clone();
    bad.ip = vec![10, 0, 1];
    assert_eq!(
        model::Node::try_from(bad).unwrap_err().to_string(),
        "invalid node \"sidecar~10.0.1.1~productpage-v1.default\": ip: ip address must be 4 or 16 bytes, got 3"
    );
    let mut bad = wire.clone();
    bad.identity = "spiffe://cluster.local/ns/default/sa/productpage?x".into();
    assert_eq!(
        model::Node::try_from(bad).unwrap_err().to_string(),
        "invalid node \"sidecar~10.0.1.1~productpage-v1.default\": identity: invalid spiffe id: spiffe id must not contain a query ('?')"
    );
    let mut bad = wire.clone();
    bad.mode = 7;
    assert!(
        model::Node::try_from(bad)
            .unwrap_err()
            .to_string()
            .ends_with("mode: unknown enum value 7")
    );
    let mut bad = wire;
    bad.pod_name.clear();
    assert!(
        model::Node::try_from(bad)
            .unwrap_err()
            .to_string()
            .ends_with("podName: must not be empty")
    );
}

#[test]
fn unspecified_enums_and_zero_values_mean_defaults() {
    let mut ep = pb::EndpointSet::from(&mk_endpoints("reviews"));
    let w = ep.endpoints[0].workload.as_mut().unwrap();
    w.health = 0;
    w.locality = None;
    ep.endpoints[0].weight = 0;
    let set = model::EndpointSet::try_from(ep).unwrap();
    assert_eq!(set.endpoints[0].workload.health, model::Health::Healthy);
    assert_eq!(set.endpoints[0].weight.get(), 1);
    assert!(set.endpoints[0].workload.locality.is_empty());

    let c = pb::Cluster {
        key: Some(pb::ClusterKey {
            hostname: "a.default.svc.cluster.local".into(),
            port: 80,
            subset: None,
        }),
        ..Default::default()
    };
    let c = model::Cluster::try_from(c).unwrap();
    assert_eq!(c.load_balancer, model::LoadBalancer::P2cEwma);
    assert_eq!(c.tls, model::TlsMode::Auto);
    assert_eq!(c.connection_pool, model::ConnectionPool::default());
    assert_eq!(
        c.resource_name(),
        "outbound|80||a.default.svc.cluster.local"
    );

    let p = model::InboundPolicy::try_from(pb::InboundPolicy::default()).unwrap();
    assert_eq!(p.mode, model::MtlsMode::Permissive);

    let mut rt = pb::RouteTable::from(&mk_route_table("reviews", 9080));
    let Some(pb::http_route::Action::Redirect(r)) = &mut rt.http[1].action else {
        panic!("fixture changed")
    };
    r.status = 0;
    let rt = model::RouteTable::try_from(rt).unwrap();
    let model::HttpAction::Redirect(r) = &rt.http[1].action else {
        panic!("fixture changed")
    };
    assert_eq!(r.status, 301);
}

// === invalid input: each names the resource and the field ===

fn route_err(edit: impl FnOnce(&mut pb::RouteTable)) -> String {
    let mut rt = pb::RouteTable::from(&mk_route_table("reviews", 9080));
    edit(&mut rt);
    model::RouteTable::try_from(rt).unwrap_err().to_string()
}

fn forward(rt: &mut pb::RouteTable, i: usize) -> &mut pb::Forward {
    match rt.http[i].action.as_mut() {
        Some(pb::http_route::Action::Forward(f)) => f,
        _ => panic!("http[{i}] is not a forward"),
    }
}

const RT: &str = "invalid route table \"reviews.default.svc.cluster.local:9080\"";

#[test]
fn invalid_route_tables() {
    type Edit = Box<dyn FnOnce(&mut pb::RouteTable)>;
    let cases: Vec<(Edit, String)> = vec![
        (
            Box::new(|rt| {
                for b in &mut forward(rt, 0).backends {
                    b.weight = 0;
                }
            }),
            format!("{RT}: http[0].action.forward.backends: weights must not all be zero"),
        ),
        (
            Box::new(|rt| forward(rt, 0).backends[1].weight = u32::MAX),
            format!(
                "{RT}: http[0].action.forward.backends[1].weight: 4294967295 is out of range, expected a weight whose sum with the others fits in 32 bits"
            ),
        ),
        (
            Box::new(|rt| forward(rt, 0).backends[0].cluster = None),
            format!("{RT}: http[0].action.forward.backends[0].cluster: is required"),
        ),
        (
            Box::new(|rt| forward(rt, 3).backends[0].cluster.as_mut().unwrap().port = 70000),
            format!(
                "{RT}: http[3].action.forward.backends[0].cluster.port: 70000 is out of range, expected a port number (0..=65535)"
            ),
        ),
        (
            Box::new(|rt| forward(rt, 0).backends.clear()),
            format!("{RT}: http[0].action.forward.backends: must not be empty"),
        ),
        (
            Box::new(|rt| rt.http[2].action = None),
            format!("{RT}: http[2].action: is required"),
        ),
        (
            Box::new(|rt| {
                rt.http[0].matches[0].uri = Some(pb::StringMatch {
                    kind: Some(pb::string_match::Kind::Regex("(unclosed".into())),
                });
            }),
            format!("{RT}: http[0].matches[0].uri.regex: invalid regex: "),
        ),
        (
            Box::new(|rt| rt.http[0].matches[0].method = Some(pb::StringMatch { kind: None })),
            format!("{RT}: http[0].matches[0].method: is required"),
        ),
        (
            Box::new(|rt| rt.http[0].matches[0].headers[0].name = "X-User".into()),
            format!(
                "{RT}: http[0].matches[0].headers[0].name: invalid header name \"X-User\": expected lower-case token characters"
            ),
        ),
        (
            Box::new(|rt| forward(rt, 0).retry.as_mut().unwrap().retry_on.push(99)),
            format!("{RT}: http[0].action.forward.retry.retryOn[2]: unknown enum value 99"),
        ),
        (
            Box::new(|rt| forward(rt, 0).retry.as_mut().unwrap().retry_on[0] = 0),
            format!("{RT}: http[0].action.forward.retry.retryOn[0]: is required"),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0).retry.as_mut().unwrap().per_try_timeout =
                    Some(prost_types::Duration {
                        seconds: -1,
                        nanos: 0,
                    });
            }),
            format!(
                "{RT}: http[0].action.forward.retry.perTryTimeout: invalid duration: -1s 0ns is negative or malformed"
            ),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0).timeout = Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 2_000_000_000,
                });
            }),
            format!(
                "{RT}: http[0].action.forward.timeout: invalid duration: 1s 2000000000ns is negative or malformed"
            ),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0)
                    .retry
                    .as_mut()
                    .unwrap()
                    .backoff
                    .as_mut()
                    .unwrap()
                    .max_interval = None;
            }),
            format!("{RT}: http[0].action.forward.retry.backoff.maxInterval: is required"),
        ),
        (
            Box::new(|rt| {
                let b = forward(rt, 0)
                    .retry
                    .as_mut()
                    .unwrap()
                    .backoff
                    .as_mut()
                    .unwrap();
                b.base_interval = Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                });
            }),
            format!(
                "{RT}: http[0].action.forward.retry.backoff.baseInterval: must not exceed maxInterval"
            ),
        ),
        (
            Box::new(|rt| forward(rt, 0).mirrors[0].percentage = 150.0),
            format!(
                "{RT}: http[0].action.forward.mirrors[0].percentage: 150 is out of range, expected a percentage (0..=100)"
            ),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0)
                    .fault
                    .as_mut()
                    .unwrap()
                    .abort
                    .as_mut()
                    .unwrap()
                    .error = Some(pb::fault_abort::Error::GrpcStatus(300));
            }),
            format!(
                "{RT}: http[0].action.forward.fault.abort.grpcStatus: 300 is out of range, expected a grpc status code (1..=16)"
            ),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0)
                    .fault
                    .as_mut()
                    .unwrap()
                    .abort
                    .as_mut()
                    .unwrap()
                    .error = Some(pb::fault_abort::Error::HttpStatus(600));
            }),
            format!(
                "{RT}: http[0].action.forward.fault.abort.httpStatus: 600 is out of range, expected 200..=599"
            ),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0)
                    .fault
                    .as_mut()
                    .unwrap()
                    .delay
                    .as_mut()
                    .unwrap()
                    .fixed = None;
            }),
            format!("{RT}: http[0].action.forward.fault.delay.fixed: is required"),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0)
                    .request_headers
                    .as_mut()
                    .unwrap()
                    .set
                    .insert("x-bad".into(), "a\r\nb".into());
            }),
            format!(
                "{RT}: http[0].action.forward.requestHeaders.set[x-bad]: header value must be visible ascii (no control characters)"
            ),
        ),
        (
            Box::new(|rt| {
                forward(rt, 0).rewrite.as_mut().unwrap().uri_prefix = Some("no-slash".into());
            }),
            format!(
                "{RT}: http[0].action.forward.rewrite.uriPrefix: path \"no-slash\" must start with '/'"
            ),
        ),
        (
            Box::new(|rt| {
                let Some(pb::http_route::Action::Redirect(r)) = rt.http[1].action.as_mut() else {
                    unreachable!()
                };
                r.status = 200;
            }),
            format!(
                "{RT}: http[1].action.redirect.status: 200 is out of range, expected one of 301, 302, 303, 307, 308"
            ),
        ),
        (
            Box::new(|rt| {
                let Some(pb::http_route::Action::DirectResponse(d)) = rt.http[2].action.as_mut()
                else {
                    unreachable!()
                };
                d.status = 70000;
            }),
            format!(
                "{RT}: http[2].action.directResponse.status: 70000 is out of range, expected an http status (200..=599)"
            ),
        ),
        (
            Box::new(|rt| rt.tcp[0].matches[0].sni_hosts[0] = "*.Example.com".into()),
            format!(
                "{RT}: tcp[0].matches[0].sniHosts[0]: invalid host name \"*.Example.com\": expected lower-case DNS labels, optionally after \"*.\""
            ),
        ),
        (
            Box::new(|rt| rt.tcp[0].backends.clear()),
            format!("{RT}: tcp[0].backends: must not be empty"),
        ),
        (
            Box::new(|rt| rt.hostnames.clear()),
            format!("{RT}: hostnames: must not be empty"),
        ),
        (
            Box::new(|rt| rt.port = 0),
            format!("{RT}: port: must not be zero"),
        ),
    ];
    for (edit, want) in cases {
        let got = route_err(edit);
        assert!(got.starts_with(&want), "\n got: {got}\nwant: {want}");
    }
}

#[test]
fn invalid_services_workloads_and_endpoints() {
    let svc = || pb::Service::from(&mk_service("reviews", "10.96.0.10", 9080));
    let err = |s: pb::Service| model::Service::try_from(s).unwrap_err().to_string();
    const SVC: &str = "invalid service \"reviews.default.svc.cluster.local\"";

    let mut s = svc();
    s.vips.push(vec![1, 2, 3]);
    assert_eq!(
        err(s),
        format!("{SVC}: vips[1]: ip address must be 4 or 16 bytes, got 3")
    );
    let mut s = svc();
    s.ports[0].target_port = 65536;
    assert_eq!(
        err(s),
        format!(
            "{SVC}: ports[0].targetPort: 65536 is out of range, expected a port number (0..=65535)"
        )
    );
    let mut s = svc();
    s.ports[0].protocol = 42;
    assert_eq!(
        err(s),
        format!("{SVC}: ports[0].protocol: unknown enum value 42")
    );
    let mut s = svc();
    s.kind = 9;
    assert_eq!(err(s), format!("{SVC}: kind: unknown enum value 9"));
    let mut s = svc();
    s.name = None;
    assert_eq!(err(s), format!("{SVC}: name: is required"));
    let mut s = svc();
    s.hostname = "REVIEWS".into();
    assert_eq!(
        err(s),
        "invalid service \"REVIEWS\": hostname: invalid host name \"REVIEWS\": expected lower-case DNS labels"
    );

    let mut w = pb::Workload::from(&mk_workload("r1", "10.0.0.1", "v1"));
    w.identity = "spiffe://cluster.local/ns/default/sa/".into();
    assert_eq!(
        model::Workload::try_from(w).unwrap_err().to_string(),
        "invalid workload \"default/r1\": identity: invalid spiffe id: path segments must not be empty"
    );

    const EPS: &str = "invalid endpoint set \"reviews.default.svc.cluster.local\"";
    let eps = || pb::EndpointSet::from(&mk_endpoints("reviews"));
    let err = |e: pb::EndpointSet| model::EndpointSet::try_from(e).unwrap_err().to_string();
    let mut e = eps();
    e.endpoints[1].workload = None;
    assert_eq!(err(e), format!("{EPS}: endpoints[1].workload: is required"));
    let mut e = eps();
    e.endpoints[1].ports.insert(9080, 70000);
    assert_eq!(
        err(e),
        format!(
            "{EPS}: endpoints[1].ports[9080]: 70000 is out of range, expected a port number (0..=65535)"
        )
    );
    let mut e = eps();
    e.endpoints[0].workload.as_mut().unwrap().address.clear();
    assert_eq!(
        err(e),
        format!("{EPS}: endpoints[0].workload.address: ip address must be 4 or 16 bytes, got 0")
    );
}

#[test]
fn invalid_clusters() {
    const C: &str = "invalid cluster \"outbound|9080|v2|reviews.default.svc.cluster.local\"";
    let c = || pb::Cluster::from(&mk_cluster_full());
    let err = |c: pb::Cluster| model::Cluster::try_from(c).unwrap_err().to_string();

    let mut x = c();
    x.key = None;
    assert_eq!(err(x), "invalid cluster \"\": key: is required");
    let mut x = c();
    x.connection_pool.as_mut().unwrap().connect_timeout = Some(prost_types::Duration {
        seconds: 0,
        nanos: -5,
    });
    assert_eq!(
        err(x),
        format!(
            "{C}: connectionPool.connectTimeout: invalid duration: 0s -5ns is negative or malformed"
        )
    );
    let mut x = c();
    x.connection_pool.as_mut().unwrap().connect_timeout = Some(prost_types::Duration::default());
    assert_eq!(
        err(x),
        format!("{C}: connectionPool.connectTimeout: must not be zero")
    );
    let mut x = c();
    x.outlier_detection.as_mut().unwrap().max_ejection_percent = -1.0;
    assert_eq!(
        err(x),
        format!(
            "{C}: outlierDetection.maxEjectionPercent: -1 is out of range, expected a percentage (0..=100)"
        )
    );
    let mut x = c();
    x.outlier_detection.as_mut().unwrap().interval = None;
    assert_eq!(
        err(x),
        format!("{C}: outlierDetection.interval: is required")
    );
    let mut x = c();
    x.tls = 12;
    assert_eq!(err(x), format!("{C}: tls: unknown enum value 12"));
    let mut x = c();
    x.load_balancer = -1;
    assert_eq!(err(x), format!("{C}: loadBalancer: unknown enum value -1"));
    let mut x = c();
    x.key.as_mut().unwrap().subset = None;
    assert_eq!(
        err(x),
        "invalid cluster \"outbound|9080||reviews.default.svc.cluster.local\": subsetLabels: subset labels need a subset name in key.subset"
    );
}

#[test]
fn invalid_policies() {
    let mut p = pb::InboundPolicy::from(&mk_inbound());
    p.port_overrides.insert(70000, 1);
    assert_eq!(
        model::InboundPolicy::try_from(p).unwrap_err().to_string(),
        "invalid inbound policy \"inbound\": portOverrides[70000]: 70000 is out of range, expected a port number (0..=65535)"
    );
    let mut p = pb::InboundPolicy::from(&mk_inbound());
    p.port_overrides.insert(80, 99);
    assert_eq!(
        model::InboundPolicy::try_from(p).unwrap_err().to_string(),
        "invalid inbound policy \"inbound\": portOverrides[80]: unknown enum value 99"
    );
    let mut p = pb::InboundPolicy::from(&mk_inbound());
    p.port_overrides.insert(0, 1);
    assert_eq!(
        model::InboundPolicy::try_from(p).unwrap_err().to_string(),
        "invalid inbound policy \"inbound\": portOverrides[0]: must not be zero"
    );

    const AP: &str = "invalid authorization policy \"default/allow-frontend\"";
    let ap = || pb::AuthorizationPolicy::from(&mk_authz());
    let err = |p: pb::AuthorizationPolicy| {
        model::AuthorizationPolicy::try_from(p)
            .unwrap_err()
            .to_string()
    };
    let mut p = ap();
    p.rules[0].from[0].principals.push("a*b".into());
    assert_eq!(
        err(p),
        format!(
            "{AP}: rules[0].from[0].principals[1]: invalid value \"a*b\": '*' is only allowed alone, at the start or at the end"
        )
    );
    let mut p = ap();
    p.rules[0].from[0].ip_blocks[0].prefix_len = 33;
    assert_eq!(
        err(p),
        format!(
            "{AP}: rules[0].from[0].ipBlocks[0].prefixLen: prefix length 33 is longer than 32 bits"
        )
    );
    let mut p = ap();
    p.rules[0].from[0].not_ip_blocks[1].address = vec![0; 5];
    assert_eq!(
        err(p),
        format!(
            "{AP}: rules[0].from[0].notIpBlocks[1].address: ip address must be 4 or 16 bytes, got 5"
        )
    );
    let mut p = ap();
    p.rules[0].when[0].key = "request.auth.claims[iss]".into();
    assert!(err(p).starts_with(&format!(
        "{AP}: rules[0].when[0].key: unsupported condition key \"request.auth.claims[iss]\""
    )));
    let mut p = ap();
    p.rules[0].to[0].not_ports.push(1 << 20);
    assert_eq!(
        err(p),
        format!(
            "{AP}: rules[0].to[0].notPorts[1]: 1048576 is out of range, expected a port number (0..=65535)"
        )
    );
    let mut p = ap();
    p.action = 5;
    assert_eq!(err(p), format!("{AP}: action: unknown enum value 5"));
    let mut p = ap();
    p.name.clear();
    assert_eq!(
        err(p),
        "invalid authorization policy \"default/\": name: must not be empty"
    );
}

#[test]
fn resource_envelopes_are_checked() {
    let svc = model::Resource::Service(mk_service("reviews", "10.96.0.10", 9080));
    let mut wire = pb::Resource::from(&svc);
    wire.name = "ratings.default.svc.cluster.local".into();
    assert_eq!(
        model::Resource::try_from(wire).unwrap_err().to_string(),
        "invalid discovery resource \"ratings.default.svc.cluster.local\": name: does not match the service's name \"reviews.default.svc.cluster.local\""
    );
    let empty = pb::Resource {
        name: "x".into(),
        version: "1".into(),
        body: None,
    };
    assert_eq!(empty.kind(), None);
    assert_eq!(
        model::Resource::try_from(empty).unwrap_err().to_string(),
        "invalid discovery resource \"x\": body: is required"
    );
    // Body errors keep their own resource name.
    let mut wire = pb::Resource::from(&svc);
    let Some(pb::resource::Body::Service(s)) = wire.body.as_mut() else {
        unreachable!()
    };
    s.ports[0].port = 0;
    let err = model::Resource::try_from(wire).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid service \"reviews.default.svc.cluster.local\": ports[0].port: must not be zero"
    );
    let detail = pb::ErrorDetail::from(&err);
    assert_eq!(detail.code, 3);
    assert_eq!(detail.message, err.to_string());
}

#[test]
fn durations_convert_exactly() {
    for d in [
        Duration::ZERO,
        Duration::new(1, 1),
        Duration::from_millis(1500),
        Duration::new(i64::MAX as u64, 999_999_999),
    ] {
        assert_eq!(duration_from(duration_to(d)), Ok(d));
    }
    // Beyond the protobuf range: saturates instead of wrapping.
    assert_eq!(duration_to(Duration::MAX).seconds, i64::MAX);
}

#[test]
fn descriptor_set_describes_both_services() {
    let fds = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
    let services: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    assert_eq!(
        services,
        ["mesh.discovery.v1.Discovery", "mesh.identity.v1.Identity"]
    );
    for kind in ResourceKind::ALL {
        let (pkg, msg) = kind.type_url().rsplit_once('.').unwrap();
        assert!(
            fds.file
                .iter()
                .any(|f| f.package() == pkg && f.message_type.iter().any(|m| m.name() == msg)),
            "{} names no message",
            kind.type_url()
        );
    }
}
