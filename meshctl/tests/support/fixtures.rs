//! `mk_*` builders of debug API documents for tests: a [`ProxyStatusList`] with a proxy in
//! each sync state, a [`ProxyConfigDump`] of a bookinfo-like productpage sidecar, and the
//! [`ProxySecretList`] of certificates the CA issued.
//!
//! Shared by the unit tests (`#[path]` from `src/lib.rs`) and the end-to-end tests
//! (`tests/support`), so the renderers' tests and the binary's see the same data.

#![allow(dead_code, reason = "each test crate uses a part of the fixtures")]

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use mesh_api::model::*;
use mesh_api::spiffe::SpiffeId;
use mesh_api::status::{
    CertInfo, ControlPlaneInfo, Nack, ProxyConfigDump, ProxySecret, ProxySecretList, ProxyStatus,
    ProxyStatusList, SyncState,
};

/// The documents' clock.
pub(crate) const NOW: u64 = 1_700_000_000_000;

const SEC: u64 = 1000;

pub(crate) fn mk_identity(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

pub(crate) fn mk_proxy(pod: &str, ns: &str, ip: &str, sync: SyncState) -> ProxyStatus {
    ProxyStatus {
        id: format!("sidecar~{ip}~{pod}.{ns}"),
        pod_name: pod.to_owned(),
        namespace: ns.to_owned(),
        identity: mk_identity(ns, pod.split('-').next().unwrap()).to_string(),
        mode: "sidecar".to_owned(),
        proxy_version: "0.1.0".to_owned(),
        peer_addr: format!("{ip}:40312"),
        connected_unix_ms: NOW - 3600 * SEC,
        sync,
        sent_version: "42".to_owned(),
        acked_version: "42".to_owned(),
        last_ack_unix_ms: Some(NOW - SEC),
        pending_responses: 0,
        resources: [("Service".to_owned(), 4), ("RouteTable".to_owned(), 2)].into(),
        last_nack: None,
    }
}

/// Four proxies, in the server's order (namespace, pod): one NACKED, one SYNCED, two
/// STALE (one never acknowledged anything).
pub(crate) fn mk_status_list() -> ProxyStatusList {
    let mut ratings = mk_proxy("ratings-v1-8f2a", "bookinfo", "10.0.1.9", SyncState::Nacked);
    ratings.acked_version = "40".to_owned();
    ratings.last_ack_unix_ms = Some(NOW - 184 * SEC);
    ratings.connected_unix_ms = NOW - (86_400 + 1_234) * SEC;
    ratings.last_nack = Some(Nack {
        type_url: "mesh.discovery.v1.RouteTable".to_owned(),
        version: "42".to_owned(),
        message: "invalid route table \"ratings.bookinfo.svc.cluster.local:9080\": http[0].action.forward.backends: weights must not all be zero".to_owned(),
        at_unix_ms: NOW - 5 * SEC,
    });

    let mut productpage = mk_proxy(
        "productpage-v1-6b7f",
        "default",
        "10.0.0.5",
        SyncState::Synced,
    );
    productpage.last_ack_unix_ms = Some(NOW - 850);
    productpage.connected_unix_ms = NOW - (2 * 3600 + 5 * 60 + 10) * SEC;

    let mut reviews = mk_proxy("reviews-v2-5c9d", "default", "10.0.0.7", SyncState::Stale);
    reviews.acked_version = "41".to_owned();
    reviews.pending_responses = 1;
    reviews.last_ack_unix_ms = Some(NOW - 12_400);
    reviews.connected_unix_ms = NOW - 184 * SEC;

    let mut gateway = mk_proxy("ingress-gw-1", "mesh-system", "10.0.2.1", SyncState::Stale);
    gateway.id = "gateway~10.0.2.1~ingress-gw-1.mesh-system".to_owned();
    gateway.mode = "gateway".to_owned();
    gateway.proxy_version = "0.1.0-rc".to_owned();
    gateway.acked_version = String::new();
    gateway.last_ack_unix_ms = None;
    gateway.pending_responses = 7;
    gateway.connected_unix_ms = NOW - 850;

    ProxyStatusList {
        now_unix_ms: NOW,
        control_plane: ControlPlaneInfo {
            version: "0.1.0".to_owned(),
            config_version: "42".to_owned(),
            synced: true,
        },
        proxies: vec![ratings, productpage, reviews, gateway],
    }
}

fn host(name: &str) -> String {
    format!("{name}.default.svc.cluster.local")
}

fn port(port: u16, name: &str, protocol: AppProtocol) -> ServicePort {
    ServicePort {
        port,
        target_port: port,
        name: name.to_owned(),
        protocol,
    }
}

pub(crate) fn mk_workload(name: &str, ip: &str, labels: &[(&str, &str)]) -> Workload {
    Workload {
        uid: format!("uid-{name}"),
        name: name.to_owned(),
        namespace: "default".to_owned(),
        address: ip.parse().unwrap(),
        identity: mk_identity("default", name.split('-').next().unwrap()),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        canonical_service: String::new(),
        canonical_revision: String::new(),
        locality: Locality::default(),
        health: Health::Healthy,
        in_mesh: true,
    }
}

fn backend(name: &str, port: u16, subset: Option<&str>, weight: u32) -> WeightedBackend {
    let mut cluster = ClusterKey::new(host(name), port);
    if let Some(s) = subset {
        cluster = cluster.with_subset(s);
    }
    WeightedBackend { cluster, weight }
}

fn forward(backends: Vec<WeightedBackend>) -> Forward {
    Forward {
        backends,
        timeout: None,
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        rewrite: None,
        request_headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
    }
}

/// The config of `productpage-v1-6b7f.default`: services with a VIP, two VIPs, headless and
/// external; endpoints; clusters with and without subsets and limits; a canary route table
/// and a TCP one; strict mTLS with a port override and one authorization policy.
pub(crate) fn mk_config() -> ProxyConfigSpec {
    let services = vec![
        Service {
            name: ServiceName::new("default", "reviews"),
            hostname: host("reviews"),
            vips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![port(9080, "http", AppProtocol::Http)],
            kind: ServiceKind::ClusterIp,
        },
        Service {
            name: ServiceName::new("default", "ratings"),
            hostname: host("ratings"),
            vips: vec!["10.96.0.11".parse().unwrap(), "fd00::11".parse().unwrap()],
            ports: vec![port(9080, "grpc", AppProtocol::Grpc)],
            kind: ServiceKind::ClusterIp,
        },
        Service {
            name: ServiceName::new("default", "mysql"),
            hostname: host("mysql"),
            vips: Vec::new(),
            ports: vec![port(3306, "tcp-mysql", AppProtocol::Tcp)],
            kind: ServiceKind::Headless,
        },
    ];

    let mut reviews_v2 = mk_workload("reviews-v2-5c9d", "10.0.0.7", &[("version", "v2")]);
    reviews_v2.health = Health::Draining;
    let mut mysql = mk_workload("mysql-0", "10.0.3.4", &[]);
    mysql.in_mesh = false;
    mysql.health = Health::Unhealthy;
    let endpoints = vec![
        EndpointSet {
            hostname: host("reviews"),
            endpoints: vec![
                Endpoint {
                    workload: mk_workload("reviews-v1-7f8c", "10.0.0.6", &[("version", "v1")]),
                    ports: BTreeMap::new(),
                    weight: NonZeroU32::MIN,
                },
                Endpoint {
                    workload: reviews_v2,
                    ports: [(9080, 8080)].into(),
                    weight: NonZeroU32::MIN,
                },
            ],
        },
        EndpointSet {
            hostname: host("mysql"),
            endpoints: vec![Endpoint {
                workload: mysql,
                ports: BTreeMap::new(),
                weight: NonZeroU32::MIN,
            }],
        },
    ];

    let cluster = |key: ClusterKey| Cluster {
        key,
        subset_labels: BTreeMap::new(),
        load_balancer: LoadBalancer::P2cEwma,
        connection_pool: ConnectionPool::default(),
        outlier_detection: None,
        tls: TlsMode::Auto,
    };
    let mut v1 = cluster(ClusterKey::new(host("reviews"), 9080).with_subset("v1"));
    v1.subset_labels = [("version".to_owned(), "v1".to_owned())].into();
    v1.load_balancer = LoadBalancer::RoundRobin;
    v1.connection_pool.max_connections = NonZeroU32::new(100);
    v1.connection_pool.max_pending = NonZeroU32::new(10);
    v1.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 5,
        consecutive_gateway_errors: 0,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: Percent::new(50.0).unwrap(),
    });
    v1.tls = TlsMode::IstioMutual;
    let mut v2 = cluster(ClusterKey::new(host("reviews"), 9080).with_subset("v2"));
    v2.subset_labels = [("version".to_owned(), "v2".to_owned())].into();
    let mut mysql_cluster = cluster(ClusterKey::new(host("mysql"), 3306));
    mysql_cluster.tls = TlsMode::Disable;
    let clusters = vec![
        cluster(ClusterKey::new(host("reviews"), 9080)),
        v1,
        v2,
        mysql_cluster,
    ];

    let mut jason = forward(vec![backend("reviews", 9080, Some("v2"), 100)]);
    jason.timeout = Some(Duration::from_secs(2));
    jason.retry = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout: Some(Duration::from_millis(500)),
        retry_on: RetryOn::DEFAULT,
        backoff: Backoff::default(),
        budget: None,
    });
    let routes = vec![
        RouteTable {
            name: format!("{}:9080", host("reviews")),
            hostnames: vec![
                host("reviews"),
                "reviews".to_owned(),
                "reviews.default".to_owned(),
            ],
            port: 9080,
            http: vec![
                HttpRoute {
                    name: "jason".to_owned(),
                    matches: vec![HttpMatch {
                        uri: Some(StringMatch::Prefix("/api".to_owned())),
                        headers: vec![HeaderMatch {
                            name: "end-user".to_owned(),
                            value: Some(StringMatch::Exact("jason".to_owned())),
                        }],
                        ..HttpMatch::default()
                    }],
                    action: HttpAction::Forward(jason),
                },
                HttpRoute {
                    name: String::new(),
                    matches: Vec::new(),
                    action: HttpAction::Forward(forward(vec![
                        backend("reviews", 9080, Some("v1"), 90),
                        backend("reviews", 9080, Some("v2"), 10),
                    ])),
                },
            ],
            tcp: Vec::new(),
        },
        RouteTable {
            name: format!("{}:3306", host("mysql")),
            hostnames: vec![host("mysql")],
            port: 3306,
            http: Vec::new(),
            tcp: vec![TcpRoute {
                name: String::new(),
                matches: Vec::new(),
                backends: vec![backend("mysql", 3306, None, 1)],
            }],
        },
    ];

    ProxyConfigSpec {
        version: "42".to_owned(),
        identity: mk_identity("default", "productpage"),
        mode: ProxyMode::Sidecar,
        workload: Some(mk_workload(
            "productpage-v1-6b7f",
            "10.0.0.5",
            &[("app", "productpage")],
        )),
        services,
        endpoints,
        routes,
        clusters,
        inbound: InboundPolicy {
            mode: MtlsMode::Strict,
            port_overrides: [(9090, MtlsMode::Permissive)].into(),
        },
        authorization: vec![AuthorizationPolicy {
            name: "productpage-viewer".to_owned(),
            namespace: "default".to_owned(),
            action: AuthzAction::Allow,
            rules: vec![Rule {
                from: vec![Source {
                    principals: vec!["cluster.local/ns/default/sa/gateway".parse().unwrap()],
                    ..Source::default()
                }],
                to: vec![Operation {
                    methods: vec!["GET".to_owned()],
                    ..Operation::default()
                }],
                when: Vec::new(),
            }],
        }],
        listeners: Vec::new(),
    }
}

/// The dump of `productpage-v1-6b7f.default`.
pub(crate) fn mk_config_dump() -> ProxyConfigDump {
    let proxy = mk_status_list()
        .proxies
        .into_iter()
        .find(|p| p.pod_name == "productpage-v1-6b7f")
        .unwrap();
    ProxyConfigDump {
        now_unix_ms: NOW,
        proxy,
        config: mk_config(),
    }
}

/// `NOW` in Unix seconds, the unit of certificate times.
const NOW_S: i64 = (NOW / 1000) as i64;
const HOUR_S: i64 = 3600;
const DAY_S: i64 = 86_400;

const ROOT: &str = "O=cluster.local,CN=mesh root";
const INTERMEDIATE: &str = "O=cluster.local,CN=mesh intermediate";

fn mk_cert(subject: &str, issuer: &str, serial: &str, not_before: i64, not_after: i64) -> CertInfo {
    CertInfo {
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
        serial: serial.to_owned(),
        not_before,
        not_after,
        spiffe_id: None,
        is_ca: true,
    }
}

fn mk_leaf(identity: &str, serial: &str, not_before: i64, not_after: i64) -> CertInfo {
    CertInfo {
        spiffe_id: Some(identity.to_owned()),
        is_ca: false,
        ..mk_cert("", INTERMEDIATE, serial, not_before, not_after)
    }
}

/// The roots trusted now: the signing root and one retiring in 5 days.
fn mk_trust_bundle() -> Vec<CertInfo> {
    vec![
        mk_cert(ROOT, ROOT, "01", NOW_S - 30 * DAY_S, NOW_S + 3650 * DAY_S),
        mk_cert(
            "O=cluster.local,CN=mesh root 2022",
            "O=cluster.local,CN=mesh root 2022",
            "7f:00:3c",
            NOW_S - 400 * DAY_S,
            NOW_S + 5 * DAY_S,
        ),
    ]
}

/// The certificate of `productpage-v1-6b7f.default`, issued 2 minutes ago (backdated one
/// more) for 12 hours: a leaf that expires in 11h57m and the intermediate that signed it.
pub(crate) fn mk_secret() -> ProxySecret {
    let identity = mk_identity("default", "productpage").to_string();
    ProxySecret {
        proxy: "sidecar~10.0.0.5~productpage-v1-6b7f.default".to_owned(),
        identity: identity.clone(),
        issued_unix_ms: NOW - 120 * SEC,
        authenticated_by: "token".to_owned(),
        chain: vec![
            mk_leaf(
                &identity,
                "3a:f1:07:9c:21:5e:88:10",
                NOW_S - 180,
                NOW_S - 180 + 12 * HOUR_S,
            ),
            mk_cert(
                INTERMEDIATE,
                ROOT,
                "02",
                NOW_S - 30 * DAY_S,
                NOW_S + 335 * DAY_S,
            ),
        ],
        trust_bundle: mk_trust_bundle(),
    }
}

/// What `GET /debug/secrets` lists, ordered by proxy id: productpage's certificate,
/// ratings' that expired 3m4s ago (issued by renewal), and `reviews-v2-5c9d` in two
/// namespaces.
pub(crate) fn mk_secret_list() -> ProxySecretList {
    let mut ratings = mk_secret();
    ratings.proxy = "sidecar~10.0.1.9~ratings-v1-8f2a.bookinfo".to_owned();
    ratings.identity = mk_identity("bookinfo", "ratings").to_string();
    ratings.issued_unix_ms = NOW - 12 * 3600 * SEC;
    ratings.authenticated_by = "certificate".to_owned();
    ratings.chain[0] = mk_leaf(
        &ratings.identity,
        "5b:02",
        NOW_S - 12 * HOUR_S - 184,
        NOW_S - 184,
    );
    let reviews = |ip: &str, ns: &str| {
        let mut s = mk_secret();
        s.proxy = format!("sidecar~{ip}~reviews-v2-5c9d.{ns}");
        s.identity = mk_identity(ns, "reviews").to_string();
        s.chain[0].spiffe_id = Some(s.identity.clone());
        s
    };
    ProxySecretList {
        now_unix_ms: NOW,
        secrets: vec![
            mk_secret(),
            reviews("10.0.0.7", "default"),
            ratings,
            reviews("10.1.0.7", "staging"),
        ],
    }
}
