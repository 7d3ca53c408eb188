//! Unit tests of the discovery client: applying responses ([`Resources`]), backoff,
//! addresses, the node, connect errors and readiness hand-over.

use std::net::IpAddr;

use mesh_api::model::{
    self, AppProtocol, AuthorizationPolicy, AuthzAction, ClusterKey, Forward, HeaderMutations,
    HttpAction, HttpRoute, InboundPolicy, Locality, MtlsMode, Resource, RouteTable, Service,
    ServiceKind, ServiceName, ServicePort, WeightedBackend, Workload,
};

use super::*;

const HOST: &str = "reviews.default.svc.cluster.local";

fn identity() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "productpage").unwrap()
}

fn resources() -> Resources {
    Resources::new(identity(), ProxyMode::Sidecar)
}

fn service(hostname: &str, vip: &str) -> Resource {
    Resource::Service(Service {
        name: ServiceName::new("default", hostname.split('.').next().unwrap()),
        hostname: hostname.into(),
        vips: vec![vip.parse().unwrap()],
        ports: vec![ServicePort {
            port: 9080,
            target_port: 8080,
            name: "http".into(),
            protocol: AppProtocol::Http,
        }],
        kind: ServiceKind::ClusterIp,
    })
}

fn workload(name: &str) -> Resource {
    Resource::Workload(Workload {
        uid: format!("uid-{name}"),
        name: name.into(),
        namespace: "default".into(),
        address: "10.1.0.1".parse().unwrap(),
        identity: identity(),
        labels: Default::default(),
        canonical_service: name.into(),
        canonical_revision: "v1".into(),
        locality: Locality::default(),
        health: model::Health::Healthy,
        in_mesh: true,
    })
}

fn route(weight: u32) -> Resource {
    Resource::RouteTable(RouteTable {
        name: "reviews:9080".into(),
        hostnames: vec![HOST.into()],
        port: 9080,
        http: vec![HttpRoute {
            name: "all".into(),
            matches: Vec::new(),
            action: HttpAction::Forward(Forward {
                backends: vec![WeightedBackend {
                    cluster: ClusterKey::new(HOST, 9080),
                    weight,
                }],
                timeout: None,
                retry: None,
                fault: None,
                mirrors: Vec::new(),
                rewrite: None,
                request_headers: HeaderMutations::default(),
                response_headers: HeaderMutations::default(),
            }),
        }],
        tcp: Vec::new(),
    })
}

fn response(
    kind: ResourceKind,
    upserts: &[(&Resource, &str)],
    removed: &[&str],
) -> pb::DiscoveryResponse {
    pb::DiscoveryResponse {
        type_url: kind.type_url().into(),
        system_version: "sv-1".into(),
        nonce: "n".into(),
        resources: upserts
            .iter()
            .map(|(r, v)| pb::Resource::new(r, *v))
            .collect(),
        removed_resources: removed.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn hostnames(r: &Resources) -> Vec<String> {
    let config = r.current().expect("a config");
    config
        .spec()
        .services
        .iter()
        .map(|s| s.hostname.clone())
        .collect()
}

// === Resources ===

#[test]
fn responses_add_replace_and_remove_resources_of_their_kind() {
    let mut r = resources();
    let (a, b) = (
        service("a.default", "10.96.0.1"),
        service("b.default", "10.96.0.2"),
    );
    let applied = r
        .apply(response(
            ResourceKind::Service,
            &[(&a, "1"), (&b, "1")],
            &[],
        ))
        .unwrap();
    assert_eq!(
        (applied.kind, applied.upserted, applied.removed),
        (ResourceKind::Service, 2, 0)
    );
    assert_eq!(applied.config.version(), "sv-1");
    assert_eq!(applied.config.identity(), &identity());
    assert_eq!(hostnames(&r), ["a.default", "b.default"]);
    assert_eq!(
        r.versions(ResourceKind::Service),
        &versions(&[("a.default", "1"), ("b.default", "1")])
    );

    // Another kind leaves services alone.
    r.apply(response(ResourceKind::RouteTable, &[(&route(1), "7")], &[]))
        .unwrap();
    assert_eq!(hostnames(&r), ["a.default", "b.default"]);

    // Replace a (new VIP), remove b, ignore an unknown removal.
    let a2 = service("a.default", "10.96.0.9");
    let applied = r
        .apply(response(
            ResourceKind::Service,
            &[(&a2, "2")],
            &["b.default", "zzz"],
        ))
        .unwrap();
    assert_eq!((applied.upserted, applied.removed), (1, 1));
    assert_eq!(hostnames(&r), ["a.default"]);
    let vip = r.current().unwrap().service("a.default").unwrap().vips[0];
    assert_eq!(vip, "10.96.0.9".parse::<IpAddr>().unwrap());
    assert_eq!(
        r.versions(ResourceKind::Service),
        &versions(&[("a.default", "2")])
    );
    assert_eq!(
        r.versions(ResourceKind::RouteTable),
        &versions(&[("reviews:9080", "7")])
    );
    assert_eq!(r.current().unwrap().spec().routes.len(), 1);
}

/// Applies `bad` to a proxy holding a service and a route; checks it is rejected with a
/// message containing every `want`, and that nothing changed.
fn assert_rejected(bad: pb::DiscoveryResponse, want: &[&str]) -> Rejected {
    let mut r = resources();
    r.apply(response(
        ResourceKind::Service,
        &[(&service("a.default", "10.96.0.1"), "1")],
        &[],
    ))
    .unwrap();
    r.apply(response(ResourceKind::RouteTable, &[(&route(1), "1")], &[]))
        .unwrap();
    let before = r.current().unwrap().clone();
    let versions_before: Vec<_> = ResourceKind::ALL
        .iter()
        .map(|k| r.versions(*k).clone())
        .collect();

    let err = r.apply(bad).unwrap_err();
    let message = err.to_string();
    for w in want {
        assert!(message.contains(w), "{w:?} not in {message:?}");
    }
    let detail = err.detail();
    assert_eq!(
        (detail.code, detail.message.as_str()),
        (3, message.as_str())
    );
    assert!(
        Arc::ptr_eq(r.current().unwrap(), &before),
        "the config changed"
    );
    let versions_after: Vec<_> = ResourceKind::ALL
        .iter()
        .map(|k| r.versions(*k).clone())
        .collect();
    assert_eq!(versions_after, versions_before);
    err
}

#[test]
fn an_invalid_resource_rejects_the_whole_response() {
    // The valid route in the same response is not applied either.
    let mut bad = response(ResourceKind::RouteTable, &[(&route(0), "2")], &[]);
    bad.resources.push(pb::Resource::new(
        &Resource::RouteTable(RouteTable {
            name: "other:80".into(),
            hostnames: vec!["other".into()],
            port: 80,
            http: Vec::new(),
            tcp: Vec::new(),
        }),
        "1",
    ));
    bad.resources.swap(0, 1);
    let err = assert_rejected(
        bad,
        &[
            r#"invalid route table "reviews:9080""#,
            "weights must not all be zero",
        ],
    );
    assert!(matches!(err, Rejected::Invalid(_)));
}

#[test]
fn a_name_that_does_not_match_the_body_is_rejected() {
    let mut bad = response(ResourceKind::RouteTable, &[(&route(1), "2")], &[]);
    bad.resources[0].name = "wrong".into();
    assert_rejected(bad, &[r#""wrong""#, r#""reviews:9080""#]);
}

#[test]
fn a_body_of_another_kind_is_rejected() {
    let bad = response(ResourceKind::Cluster, &[(&route(1), "2")], &[]);
    assert_rejected(bad, &[r#""reviews:9080""#, "route table", "clusters"]);
}

#[test]
fn a_config_that_does_not_validate_as_a_whole_is_rejected() {
    // A second service on the first one's VIP and port: each is valid, the config is not.
    let clash = service("b.default", "10.96.0.1");
    let bad = response(ResourceKind::Service, &[(&clash, "1")], &[]);
    assert_rejected(bad, &["b.default", "10.96.0.1:9080", "a.default"]);
}

#[test]
fn duplicates_and_contradictions_in_one_response_are_rejected() {
    let a = service("a.default", "10.96.0.1");
    let dup = response(ResourceKind::Service, &[(&a, "2"), (&a, "3")], &[]);
    assert_rejected(dup, &["a.default"]);
    let both = response(ResourceKind::Service, &[(&a, "2")], &["a.default"]);
    assert_rejected(both, &["a.default", "added and removed"]);
}

#[test]
fn an_unknown_type_url_is_rejected() {
    let bad = pb::DiscoveryResponse {
        type_url: "mesh.discovery.v1.Nope".into(),
        nonce: "n".into(),
        ..Default::default()
    };
    let err = assert_rejected(
        bad,
        &["mesh.discovery.v1.Nope", "mesh.discovery.v1.RouteTable"],
    );
    assert!(matches!(err, Rejected::UnknownType { .. }));
}

#[test]
fn a_proxy_holds_one_workload() {
    let mut r = resources();
    r.apply(response(
        ResourceKind::Workload,
        &[(&workload("a"), "1")],
        &[],
    ))
    .unwrap();
    let err = r
        .apply(response(
            ResourceKind::Workload,
            &[(&workload("b"), "1")],
            &[],
        ))
        .unwrap_err();
    assert!(err.to_string().contains("default/b"), "{err}");
    // Replacing it (remove the old, add the new) is fine.
    r.apply(response(
        ResourceKind::Workload,
        &[(&workload("b"), "1")],
        &["default/a"],
    ))
    .unwrap();
    assert_eq!(r.current().unwrap().workload().unwrap().name, "b");
    r.apply(response(ResourceKind::Workload, &[], &["default/b"]))
        .unwrap();
    assert!(r.current().unwrap().workload().is_none());
}

#[test]
fn removing_the_inbound_policy_restores_the_default() {
    let mut r = resources();
    let strict = Resource::InboundPolicy(InboundPolicy {
        mode: MtlsMode::Strict,
        port_overrides: Default::default(),
    });
    r.apply(response(
        ResourceKind::InboundPolicy,
        &[(&strict, "1")],
        &[],
    ))
    .unwrap();
    assert_eq!(r.current().unwrap().inbound_policy().mode, MtlsMode::Strict);
    assert_eq!(
        r.versions(ResourceKind::InboundPolicy),
        &versions(&[("inbound", "1")])
    );
    // Another kind keeps it.
    let authz = Resource::AuthorizationPolicy(AuthorizationPolicy {
        name: "audit".into(),
        namespace: "default".into(),
        action: AuthzAction::Audit,
        rules: Vec::new(),
    });
    r.apply(response(
        ResourceKind::AuthorizationPolicy,
        &[(&authz, "1")],
        &[],
    ))
    .unwrap();
    assert_eq!(r.current().unwrap().inbound_policy().mode, MtlsMode::Strict);
    r.apply(response(ResourceKind::InboundPolicy, &[], &["inbound"]))
        .unwrap();
    assert_eq!(
        r.current().unwrap().inbound_policy(),
        &InboundPolicy::default()
    );
    assert!(r.versions(ResourceKind::InboundPolicy).is_empty());
}

#[test]
fn synced_once_every_kind_has_been_applied() {
    let mut r = resources();
    for (i, kind) in ResourceKind::ALL.into_iter().enumerate() {
        assert!(!r.is_synced(), "synced after {i} kinds");
        // A rejected response does not count.
        let bad = response(kind, &[(&route(0), "1")], &[]);
        assert!(r.apply(bad).is_err());
        r.apply(response(kind, &[], &[])).unwrap();
    }
    assert!(r.is_synced());
    assert_eq!(r.current().unwrap().spec().mode, ProxyMode::Sidecar);
}

#[test]
fn a_response_over_the_resource_limit_is_rejected() {
    let mut r = resources().with_limit(Some(3));
    let a = service("a.default", "10.96.0.1");
    let b = service("b.default", "10.96.0.2");
    r.apply(response(
        ResourceKind::Service,
        &[(&a, "1"), (&b, "1")],
        &[],
    ))
    .unwrap();
    r.apply(response(ResourceKind::RouteTable, &[(&route(1), "1")], &[]))
        .unwrap();
    let c = service("c.default", "10.96.0.3");
    let err = r
        .apply(response(ResourceKind::Service, &[(&c, "1")], &[]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "too many resources: this service update would leave the proxy with 4, more than \
         --max-resources 3"
    );
    assert_eq!(err.detail().code, 8);
    assert_eq!(hostnames(&r), ["a.default", "b.default"]);
    // Replacing one by another stays within the limit.
    r.apply(response(
        ResourceKind::Service,
        &[(&c, "1")],
        &["a.default"],
    ))
    .unwrap();
    assert_eq!(hostnames(&r), ["b.default", "c.default"]);
}

// === Backoff ===

#[test]
fn backoff_doubles_up_to_the_cap_with_full_jitter_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut ceilings = Vec::new();
    for _ in 0..10 {
        let ceiling = b.ceiling();
        let delay = b.next_delay();
        assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
        ceilings.push(ceiling.as_millis());
    }
    assert_eq!(
        ceilings,
        [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
    );
    // Jitter spreads delays (100 draws below 5 s are not all equal).
    let draws: std::collections::BTreeSet<_> = (0..100).map(|_| b.next_delay()).collect();
    assert!(draws.len() > 50, "{draws:?}");
    b.reset();
    assert_eq!(b.ceiling(), Duration::from_millis(100));
}

// === Addresses, node, flags ===

#[test]
fn control_plane_addresses_parse() {
    let ok = |s: &str| s.parse::<ControlPlaneAddr>().unwrap();
    let a = ok("mesh-control.mesh-system.svc:15012");
    assert_eq!(
        (a.host(), a.port()),
        ("mesh-control.mesh-system.svc", 15012)
    );
    assert_eq!(a.to_string(), "mesh-control.mesh-system.svc:15012");
    assert_eq!(ok("Mesh-Control").port(), CONTROL_PLANE_PORT);
    assert_eq!(ok("Mesh-Control").host(), "mesh-control");
    let v6 = ok("[::1]:9000");
    assert_eq!((v6.host(), v6.port()), ("::1", 9000));
    assert_eq!(v6.to_string(), "[::1]:9000");
    assert_eq!(v6.origin().to_string(), "https://[::1]:9000/");
    assert_eq!(ok("10.0.0.1:1").to_string(), "10.0.0.1:1");
    for bad in [
        "",
        ":15012",
        "http://cp:15012",
        "cp:0",
        "cp:port",
        "a@cp:1",
        "cp:1/x",
    ] {
        assert!(bad.parse::<ControlPlaneAddr>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn the_node_comes_from_the_identity_flags() {
    let args = Args {
        control_plane: Some("cp:15012".parse().unwrap()),
        pod_name: Some("reviews-v1-abc".into()),
        pod_namespace: "shop".into(),
        pod_ip: Some("10.1.2.3".parse().unwrap()),
        service_account: "reviews".into(),
        trust_domain: "example.org".into(),
        proxy_id: None,
        labels: vec![("app".into(), "reviews".into())],
        max_resources: None,
    };
    let node = args.node().unwrap();
    assert_eq!(node.id, "sidecar~10.1.2.3~reviews-v1-abc.shop");
    assert_eq!(
        node.identity.as_str(),
        "spiffe://example.org/ns/shop/sa/reviews"
    );
    assert_eq!(node.ip, "10.1.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(node.labels["app"], "reviews");
    assert_eq!(
        (node.mode, node.proxy_version.as_str()),
        (ProxyMode::Sidecar, PROXY_VERSION)
    );
    let wire = pb::Node::from(&node);
    assert_eq!(wire.proxy_version, PROXY_VERSION);
    assert_eq!(wire.mode, pb::ProxyMode::Sidecar as i32);

    let unnamed = Args {
        pod_name: None,
        ..args.clone()
    };
    assert!(matches!(unnamed.node(), Err(Error::MissingPodName)));
    let no_ip = Args {
        pod_ip: None,
        proxy_id: None,
        ..args.clone()
    };
    assert_eq!(
        no_ip.node().unwrap().id,
        "sidecar~0.0.0.0~reviews-v1-abc.shop"
    );
    let empty_id = Args {
        proxy_id: Some(String::new()),
        ..args.clone()
    };
    assert!(matches!(empty_id.node(), Err(Error::Node(_))));
    let custom = Args {
        proxy_id: Some("gw-1".into()),
        ..args.clone()
    };
    assert_eq!(custom.node().unwrap().id, "gw-1");
    let bad = Args {
        trust_domain: "Bad Domain".into(),
        ..args
    };
    let err = bad.node().unwrap_err().to_string();
    assert!(
        err.contains("--trust-domain") && err.contains("Bad Domain"),
        "{err}"
    );
}

#[test]
fn labels_are_key_value_pairs() {
    assert_eq!(
        parse_label("app=a=b").unwrap(),
        ("app".into(), "a=b".into())
    );
    assert_eq!(
        parse_label("empty=").unwrap(),
        ("empty".into(), String::new())
    );
    assert!(parse_label("novalue").is_err());
    assert!(parse_label("=x").is_err());
}

// === Connecting and readiness ===

#[tokio::test]
async fn a_refused_connection_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: ControlPlaneAddr = listener.local_addr().unwrap().to_string().parse().unwrap();
    drop(listener);
    let tls = Arc::new(mesh_api::tls::client_config(
        None,
        Arc::new(mesh_api::tls::ServerVerifier::new(
            Arc::new(mesh_api::tls::TrustStore::new(
                mesh_api::tls::TrustBundle::empty(),
            )),
            mesh_api::tls::Expected::TrustDomain("cluster.local".into()),
        )),
        &[],
    ));
    let err = Connection::connect(&addr, &Settings::default(), &tls)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
}

#[tokio::test]
async fn a_control_plane_the_bundle_does_not_trust_is_refused() {
    // A TLS server with a certificate of a CA the proxy does not trust.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://cluster.local/ns/mesh-system/sa/mesh-control"
            .try_into()
            .unwrap(),
    )];
    let cert = params.self_signed(&key).unwrap();
    let certs = mesh_api::tls::CertStore::new();
    certs.store(
        mesh_api::tls::certified_key(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap(),
    );
    let store = Arc::new(mesh_api::tls::TrustStore::new(
        mesh_api::tls::TrustBundle::empty(),
    ));
    let server = mesh_api::tls::server_config(
        Arc::new(certs),
        Arc::new(mesh_api::tls::ClientVerifier::new(
            store.clone(),
            "cluster.local",
            false,
        )),
        &[mesh_api::tls::ALPN_H2],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: ControlPlaneAddr = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tokio_rustls::TlsAcceptor::from(Arc::new(server))
            .accept(tcp)
            .await;
    });
    let tls = Arc::new(mesh_api::tls::client_config(
        None,
        Arc::new(mesh_api::tls::ServerVerifier::new(
            store,
            mesh_api::tls::Expected::TrustDomain("cluster.local".into()),
        )),
        &[mesh_api::tls::ALPN_H2],
    ));
    let err = Connection::connect(&addr, &Settings::default(), &tls)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "TLS handshake failed: invalid peer certificate: UnknownIssuer"
    );
}

#[test]
fn stream_errors_name_the_cause_and_the_servers_code() {
    let refused = Error::Stream(tonic::Status::unimplemented("unknown service"));
    assert_eq!(refused.to_string(), "unknown service (Unimplemented)");
    let transport = Error::Stream(tonic::Status::unavailable("connection reset"));
    assert_eq!(transport.to_string(), "connection reset");
    assert_eq!(
        Error::Closed.to_string(),
        "the control plane closed the stream"
    );
}

#[test]
fn readiness_moves_from_waiting_to_ready_but_not_from_draining() {
    let addr: ControlPlaneAddr = "cp:15012".parse().unwrap();
    let waiting = waiting_reason(&addr);
    assert_eq!(waiting, "waiting for config from cp:15012");
    let readiness = Readiness::new(waiting.clone());
    assert!(readiness.set_ready_from(&waiting));
    assert!(readiness.is_ready());
    readiness.set_not_ready(crate::admin::DRAINING);
    assert!(!readiness.set_ready_from(&waiting));
    assert_eq!(readiness.status(), Err("draining".into()));
}
