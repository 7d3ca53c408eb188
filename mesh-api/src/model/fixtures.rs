//! `mk_*` builders of valid model values for tests (here and in [`crate::proto`]).

use std::{collections::BTreeMap, num::NonZeroU32, time::Duration};

use crate::{model::*, spiffe::SpiffeId};

pub(crate) fn mk_identity(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

pub(crate) fn mk_workload(name: &str, ip: &str, version: &str) -> Workload {
    Workload {
        uid: format!("uid-{name}"),
        name: name.into(),
        namespace: "default".into(),
        address: ip.parse().unwrap(),
        identity: mk_identity("default", "reviews"),
        labels: [
            ("app".to_owned(), "reviews".to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]
        .into(),
        canonical_service: "reviews".into(),
        canonical_revision: version.into(),
        locality: Locality {
            region: "eu-west1".into(),
            zone: "eu-west1-b".into(),
            subzone: String::new(),
        },
        health: Health::Healthy,
        in_mesh: true,
    }
}

pub(crate) fn mk_service(name: &str, vip: &str, port: u16) -> Service {
    Service {
        name: ServiceName::new("default", name),
        hostname: format!("{name}.default.svc.cluster.local"),
        vips: vec![vip.parse().unwrap()],
        ports: vec![ServicePort {
            port,
            target_port: port,
            name: "http".into(),
            protocol: AppProtocol::Http,
        }],
        kind: ServiceKind::ClusterIp,
    }
}

pub(crate) fn mk_endpoints(name: &str) -> EndpointSet {
    EndpointSet {
        hostname: format!("{name}.default.svc.cluster.local"),
        endpoints: vec![
            Endpoint {
                workload: mk_workload(&format!("{name}-v1"), "10.0.0.1", "v1"),
                ports: BTreeMap::new(),
                weight: NonZeroU32::MIN,
            },
            Endpoint {
                workload: mk_workload(&format!("{name}-v2"), "10.0.0.2", "v2"),
                ports: [(9080, 8080)].into(),
                weight: NonZeroU32::new(3).unwrap(),
            },
        ],
    }
}

pub(crate) fn mk_cluster(host: &str, port: u16, subset: Option<&str>) -> Cluster {
    let mut key = ClusterKey::new(host, port);
    let mut subset_labels = BTreeMap::new();
    if let Some(s) = subset {
        key = key.with_subset(s);
        subset_labels.insert("version".to_owned(), s.to_owned());
    }
    Cluster {
        key,
        subset_labels,
        load_balancer: LoadBalancer::P2cEwma,
        connection_pool: ConnectionPool::default(),
        outlier_detection: None,
        tls: TlsMode::Auto,
    }
}

/// A route table using every HTTP feature.
pub(crate) fn mk_route_table(name: &str, port: u16) -> RouteTable {
    let host = format!("{name}.default.svc.cluster.local");
    let backend = |subset: &str, weight| WeightedBackend {
        cluster: ClusterKey::new(host.clone(), port).with_subset(subset),
        weight,
    };
    RouteTable {
        name: format!("{host}:{port}"),
        hostnames: vec![host.clone(), name.to_owned(), format!("{name}.default")],
        port,
        http: vec![
            HttpRoute {
                name: "canary".into(),
                matches: vec![HttpMatch {
                    name: "api".into(),
                    uri: Some(StringMatch::Prefix("/api".into())),
                    method: Some(StringMatch::Exact("GET".into())),
                    authority: Some(StringMatch::Regex(Pattern::new(".*\\.example").unwrap())),
                    scheme: None,
                    headers: vec![
                        HeaderMatch {
                            name: "x-user".into(),
                            value: Some(StringMatch::Exact("jason".into())),
                        },
                        HeaderMatch {
                            name: "x-trace".into(),
                            value: None,
                        },
                    ],
                    without_headers: vec![HeaderMatch {
                        name: "x-skip".into(),
                        value: None,
                    }],
                    query_params: vec![QueryParamMatch {
                        name: "debug".into(),
                        value: Some(StringMatch::Exact("1".into())),
                    }],
                    source_labels: [("app".to_owned(), "frontend".to_owned())].into(),
                    source_namespace: Some("default".into()),
                }],
                action: HttpAction::Forward(Forward {
                    backends: vec![backend("v1", 90), backend("v2", 10)],
                    timeout: Some(Duration::from_millis(1500)),
                    retry: Some(RetryPolicy {
                        attempts: 3,
                        per_try_timeout: Some(Duration::from_millis(200)),
                        retry_on: [RetryCondition::GatewayError, RetryCondition::Unavailable]
                            .into_iter()
                            .collect(),
                        backoff: Backoff::default(),
                        budget: Some(RetryBudget {
                            percent: Percent::new(20.0).unwrap(),
                            min_retries_per_second: 10,
                            ttl: Duration::from_secs(10),
                        }),
                    }),
                    fault: Some(Fault {
                        delay: Some(FaultDelay {
                            fixed: Duration::from_secs(5),
                            percentage: Percent::new(0.1).unwrap(),
                        }),
                        abort: Some(FaultAbort {
                            error: AbortError::GrpcStatus(14),
                            percentage: Percent::new(1.0).unwrap(),
                        }),
                    }),
                    mirrors: vec![Mirror {
                        cluster: ClusterKey::new(host.clone(), port).with_subset("shadow"),
                        percentage: Percent::new(5.0).unwrap(),
                    }],
                    rewrite: Some(Rewrite {
                        uri_prefix: Some("/v2/api".into()),
                        authority: Some("reviews.internal".into()),
                    }),
                    request_headers: HeaderMutations {
                        set: [("x-canary".to_owned(), "1".to_owned())].into(),
                        add: [("x-via".to_owned(), "mesh".to_owned())].into(),
                        remove: vec!["x-debug".into()],
                    },
                    response_headers: HeaderMutations::default(),
                }),
            },
            HttpRoute {
                name: "old".into(),
                matches: vec![HttpMatch {
                    uri: Some(StringMatch::Exact("/old".into())),
                    ..HttpMatch::default()
                }],
                action: HttpAction::Redirect(Redirect {
                    scheme: Some("https".into()),
                    authority: None,
                    port: Some(8443),
                    path: Some("/new".into()),
                    status: 308,
                }),
            },
            HttpRoute {
                name: "teapot".into(),
                matches: vec![HttpMatch {
                    uri: Some(StringMatch::Exact("/teapot".into())),
                    ..HttpMatch::default()
                }],
                action: HttpAction::DirectResponse(DirectResponse {
                    status: 418,
                    body: Some("short and stout".into()),
                }),
            },
            HttpRoute {
                name: String::new(),
                matches: vec![],
                action: HttpAction::Forward(Forward {
                    backends: vec![backend("v1", 1)],
                    timeout: None,
                    retry: None,
                    fault: None,
                    mirrors: vec![],
                    rewrite: None,
                    request_headers: HeaderMutations::default(),
                    response_headers: HeaderMutations::default(),
                }),
            },
        ],
        tcp: vec![TcpRoute {
            name: "tls".into(),
            matches: vec![TcpMatch {
                source_labels: BTreeMap::new(),
                sni_hosts: vec!["*.example.com".into()],
            }],
            backends: vec![backend("v1", 1)],
        }],
    }
}

pub(crate) fn mk_authz() -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: "allow-frontend".into(),
        namespace: "default".into(),
        action: AuthzAction::Allow,
        rules: vec![Rule {
            from: vec![Source {
                principals: vec!["cluster.local/ns/default/sa/frontend".parse().unwrap()],
                not_principals: vec!["*/sa/evil".parse().unwrap()],
                namespaces: vec!["default".parse().unwrap()],
                not_namespaces: vec!["kube-*".parse().unwrap()],
                ip_blocks: vec!["10.0.0.0/8".parse().unwrap()],
                not_ip_blocks: vec!["10.9.0.0/16".parse().unwrap(), "::1".parse().unwrap()],
            }],
            to: vec![Operation {
                hosts: vec!["*.example.com".parse().unwrap()],
                not_hosts: vec!["admin.example.com".parse().unwrap()],
                ports: vec![9080],
                not_ports: vec![15000],
                methods: vec!["GET".into()],
                not_methods: vec!["DELETE".into()],
                paths: vec!["/api/*".parse().unwrap()],
                not_paths: vec!["/api/admin*".parse().unwrap()],
            }],
            when: vec![Condition {
                key: ConditionKey::RequestHeader("x-version".into()),
                values: vec!["v1".into()],
                not_values: vec!["v0*".into()],
            }],
        }],
    }
}

pub(crate) fn mk_inbound() -> InboundPolicy {
    InboundPolicy {
        mode: MtlsMode::Strict,
        port_overrides: [(8080, MtlsMode::Permissive), (9000, MtlsMode::Disable)].into(),
    }
}

pub(crate) fn mk_cluster_full() -> Cluster {
    Cluster {
        load_balancer: LoadBalancer::LeastRequest,
        connection_pool: ConnectionPool {
            max_connections: NonZeroU32::new(100),
            max_pending: NonZeroU32::new(10),
            max_requests: None,
            max_requests_per_connection: NonZeroU32::new(1),
            connect_timeout: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(60),
        },
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: Percent::new(50.0).unwrap(),
        }),
        tls: TlsMode::IstioMutual,
        ..mk_cluster("reviews.default.svc.cluster.local", 9080, Some("v2"))
    }
}

/// A whole, valid proxy config for the `productpage` sidecar calling `reviews`.
pub(crate) fn mk_spec() -> ProxyConfigSpec {
    let mut spec = ProxyConfigSpec::new(mk_identity("default", "productpage"));
    spec.version = "v42".into();
    spec.workload = Some(mk_workload("productpage-v1", "10.0.1.1", "v1"));
    spec.services = vec![
        mk_service("reviews", "10.96.0.10", 9080),
        mk_service("ratings", "10.96.0.11", 9080),
    ];
    spec.endpoints = vec![mk_endpoints("reviews")];
    spec.clusters = vec![
        mk_cluster("reviews.default.svc.cluster.local", 9080, None),
        mk_cluster("reviews.default.svc.cluster.local", 9080, Some("v1")),
        mk_cluster_full(),
    ];
    spec.routes = vec![mk_route_table("reviews", 9080)];
    spec.inbound = mk_inbound();
    spec.authorization = vec![mk_authz()];
    spec
}
