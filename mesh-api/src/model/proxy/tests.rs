use std::net::SocketAddr;

use super::*;
use crate::model::{fixtures::*, *};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn indexes_services_by_vip_and_hostname() {
    let cfg = ProxyConfig::new(mk_spec()).unwrap();
    let (svc, port) = cfg.service_by_addr(addr("10.96.0.10:9080")).unwrap();
    assert_eq!(svc.hostname, "reviews.default.svc.cluster.local");
    assert_eq!(port.port, 9080);
    // IPv4-mapped IPv6, as a dual-stack listener reports it.
    let (svc, _) = cfg
        .service_by_addr(addr("[::ffff:10.96.0.11]:9080"))
        .unwrap();
    assert_eq!(svc.name.name, "ratings");
    assert!(cfg.service_by_addr(addr("10.96.0.10:80")).is_none());
    assert!(cfg.service("ratings.default.svc.cluster.local").is_some());
    assert!(cfg.service("nope").is_none());
}

#[test]
fn headless_services_resolve_by_endpoint_address() {
    let mut spec = mk_spec();
    spec.services[0].vips.clear();
    spec.services[0].kind = ServiceKind::Headless;
    let cfg = ProxyConfig::new(spec).unwrap();
    let (svc, _) = cfg.service_by_addr(addr("10.0.0.1:9080")).unwrap();
    assert_eq!(svc.name.name, "reviews");
    // The v2 endpoint serves service port 9080 on 8080.
    assert!(cfg.service_by_addr(addr("10.0.0.2:8080")).is_some());
    assert!(cfg.service_by_addr(addr("10.96.0.10:9080")).is_none());
}

#[test]
fn route_tables_by_authority() {
    let mut spec = mk_spec();
    let mut wild = mk_route_table("gw", 9080);
    wild.name = "wild".into();
    wild.hostnames = vec!["*.example.com".into(), "*.b.example.com".into()];
    let mut any = mk_route_table("any", 9080);
    any.name = "any".into();
    any.hostnames = vec!["*".into()];
    spec.routes.extend([wild, any]);
    let cfg = ProxyConfig::new(spec).unwrap();
    let name = |authority: &str| cfg.route_table(authority, 9080).map(|r| r.name.as_str());

    let reviews = Some("reviews.default.svc.cluster.local:9080");
    assert_eq!(name("reviews.default.svc.cluster.local"), reviews);
    assert_eq!(name("reviews.default.svc.cluster.local:9080"), reviews);
    assert_eq!(name("reviews.default.svc.cluster.local."), reviews);
    assert_eq!(name("Reviews.Default.svc.cluster.local"), reviews);
    assert_eq!(name("reviews"), reviews);
    assert_eq!(name("reviews:9080"), reviews);
    // Longest wildcard suffix wins; wildcards need a non-empty label in front.
    assert_eq!(name("a.b.example.com"), Some("wild"));
    assert_eq!(name("x.example.com"), Some("wild"));
    assert_eq!(name("example.com"), Some("any"));
    assert_eq!(name("[::1]:9080"), Some("any"));
    assert_eq!(name(&"A".repeat(300)), Some("any"));
    assert!(cfg.route_table("reviews", 80).is_none());
}

#[test]
fn longest_wildcard_is_preferred() {
    let mut spec = mk_spec();
    for (name, host) in [("short", "*.example.com"), ("long", "*.b.example.com")] {
        let mut r = mk_route_table("x", 1);
        r.name = name.into();
        r.hostnames = vec![host.into()];
        spec.routes.push(r);
    }
    let cfg = ProxyConfig::new(spec).unwrap();
    assert_eq!(cfg.route_table("a.b.example.com", 1).unwrap().name, "long");
    assert_eq!(cfg.route_table("a.c.example.com", 1).unwrap().name, "short");
}

#[test]
fn clusters_and_their_endpoints() {
    let cfg = ProxyConfig::new(mk_spec()).unwrap();
    let key = ClusterKey::new("reviews.default.svc.cluster.local", 9080).with_subset("v2");
    let cluster = cfg.cluster(&key).unwrap();
    let eps: Vec<_> = cfg
        .cluster_endpoints(cluster)
        .map(|e| e.workload.name.as_str())
        .collect();
    assert_eq!(eps, ["reviews-v2"]);
    let all = cfg
        .cluster(&ClusterKey::new("reviews.default.svc.cluster.local", 9080))
        .unwrap();
    assert_eq!(cfg.cluster_endpoints(all).count(), 2);
    let ratings = mk_cluster("ratings.default.svc.cluster.local", 9080, None);
    assert_eq!(cfg.cluster_endpoints(&ratings).count(), 0);
}

#[test]
fn rejects_duplicates() {
    let mut spec = mk_spec();
    spec.services
        .push(mk_service("reviews", "10.96.0.99", 9080));
    assert_eq!(
        ProxyConfig::new(spec).unwrap_err().to_string(),
        "duplicate service \"reviews.default.svc.cluster.local\""
    );

    let mut spec = mk_spec();
    spec.services.push(mk_service("other", "10.96.0.10", 9080));
    assert_eq!(
        ProxyConfig::new(spec).unwrap_err().to_string(),
        "invalid service \"other.default.svc.cluster.local\": vips: 10.96.0.10:9080 is also the address of service \"reviews.default.svc.cluster.local\""
    );

    let mut spec = mk_spec();
    let mut r = mk_route_table("reviews", 9080);
    r.name = "other".into();
    spec.routes.push(r);
    assert_eq!(
        ProxyConfig::new(spec).unwrap_err().to_string(),
        "duplicate route table \"reviews.default.svc.cluster.local:9080\""
    );

    let mut spec = mk_spec();
    spec.clusters.push(mk_cluster_full());
    assert!(matches!(
        ProxyConfig::new(spec),
        Err(Invalid::Duplicate {
            kind: ResourceKind::Cluster,
            ..
        })
    ));

    let mut spec = mk_spec();
    spec.authorization.push(mk_authz());
    assert_eq!(
        ProxyConfig::new(spec).unwrap_err().to_string(),
        "duplicate authorization policy \"default/allow-frontend\""
    );
}

#[test]
fn rejects_invalid_resources_naming_the_field() {
    let mut spec = mk_spec();
    let HttpAction::Forward(f) = &mut spec.routes[0].http[0].action else {
        unreachable!()
    };
    f.backends[1].cluster.port = 0;
    assert_eq!(
        ProxyConfig::new(spec).unwrap_err().to_string(),
        "invalid route table \"reviews.default.svc.cluster.local:9080\": http[0].action.forward.backends[1].cluster.port: must not be zero"
    );
}

#[test]
fn static_config_round_trips_through_json_and_yaml() {
    let cfg = ProxyConfig::new(mk_spec()).unwrap();
    let json = serde_json::to_string_pretty(&cfg).unwrap();
    let back: ProxyConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    assert!(back.service_by_addr(addr("10.96.0.10:9080")).is_some());

    let yaml = serde_saphyr::to_string(&cfg).unwrap();
    let back: ProxyConfig = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn static_config_in_yaml() {
    let yaml = r#"
identity: spiffe://cluster.local/ns/default/sa/productpage
services:
  - name: { namespace: default, name: reviews }
    hostname: reviews.default.svc.cluster.local
    vips: [10.96.0.10]
    ports: [{ port: 9080, targetPort: 9080, name: http, protocol: http }]
clusters:
  - key: { hostname: reviews.default.svc.cluster.local, port: 9080 }
    connectionPool: { connectTimeout: 250ms, idleTimeout: 1m30s }
routes:
  - name: reviews
    hostnames: [reviews.default.svc.cluster.local, reviews]
    port: 9080
    http:
      - matches: [{ uri: { prefix: /api } }]
        action:
          forward:
            backends:
              - cluster: { hostname: reviews.default.svc.cluster.local, port: 9080 }
                weight: 100
            timeout: 1.5s
            retry: { attempts: 2, retryOn: [5xx, connect-failure] }
inbound: { mode: strict }
"#;
    let cfg: ProxyConfig = serde_saphyr::from_str(yaml).unwrap();
    let pool = &cfg.spec().clusters[0].connection_pool;
    assert_eq!(pool.connect_timeout, std::time::Duration::from_millis(250));
    assert_eq!(pool.idle_timeout, std::time::Duration::from_secs(90));
    let rt = cfg.route_table("reviews:9080", 9080).unwrap();
    let HttpAction::Forward(f) = &rt.http[0].action else {
        panic!("not a forward")
    };
    let retry = f.retry.as_ref().unwrap();
    assert!(retry.retry_on.contains(RetryCondition::Status5xx));
    assert!(retry.retry_on.contains(RetryCondition::ConnectFailure));
    assert!(!retry.retry_on.contains(RetryCondition::Reset));
    assert!(retry.retry_on.retries_status(503));
    assert_eq!(cfg.inbound_policy().mode, MtlsMode::Strict);

    let typo = yaml.replace("retryOn", "retryOnn");
    let err = serde_saphyr::from_str::<ProxyConfig>(&typo).unwrap_err();
    assert!(err.to_string().contains("retryOnn"), "{err}");
    let bad = yaml.replace("weight: 100", "weight: 0");
    let err = serde_saphyr::from_str::<ProxyConfig>(&bad).unwrap_err();
    assert!(
        err.to_string().contains(
            "invalid route table \"reviews\": http[0].action.forward.backends: weights must not all be zero"
        ),
        "{err}"
    );
}

fn mk_listener(port: u16, bind_port: Option<u16>, hosts: &[&str]) -> Listener {
    let mut vhost = mk_route_table("reviews", port);
    vhost.name = format!("default/shop:{port}");
    vhost.hostnames = hosts.iter().map(|h| (*h).to_owned()).collect();
    Listener {
        name: Listener::name_for(port),
        port,
        bind_port,
        virtual_hosts: vec![vhost],
        tls: None,
    }
}

#[test]
fn gateway_virtual_hosts_by_server_port_and_host() {
    let mut spec = mk_spec();
    spec.listeners = vec![
        mk_listener(80, Some(8080), &["shop.example.com", "*.example.org"]),
        mk_listener(81, None, &["*"]),
    ];
    let cfg = ProxyConfig::new(spec).unwrap();
    assert_eq!(cfg.listener(80).unwrap().bind_port(), 8080);
    assert_eq!(cfg.listener(81).unwrap().bind_port(), 81);
    assert!(
        cfg.listener(8080).is_none(),
        "listeners are keyed by server port"
    );
    let v = cfg.virtual_host(80, "SHOP.example.com:80").unwrap();
    assert_eq!(v.name, "default/shop:80");
    assert!(cfg.virtual_host(80, "a.b.example.org").is_some());
    assert!(cfg.virtual_host(80, "example.org").is_none());
    assert!(cfg.virtual_host(81, "anything").is_some());
    // Service route tables and virtual hosts do not mix.
    assert!(cfg.route_table("shop.example.com", 80).is_none());
}

#[test]
fn gateway_listeners_are_checked() {
    let with = |listeners| {
        let mut spec = mk_spec();
        spec.listeners = listeners;
        ProxyConfig::new(spec).unwrap_err().to_string()
    };
    let e = with(vec![
        mk_listener(80, Some(8080), &["a.example.com"]),
        mk_listener(81, Some(8080), &["b.example.com"]),
    ]);
    assert!(
        e.contains("port 8080 is also bound by listener \"http.80\""),
        "{e}"
    );
    let mut twice = mk_listener(80, None, &["a.example.com"]);
    twice.virtual_hosts.push(twice.virtual_hosts[0].clone());
    let e = with(vec![twice]);
    assert!(e.contains("a.example.com"), "{e}");
    let mut wrong_port = mk_listener(80, None, &["a.example.com"]);
    wrong_port.virtual_hosts[0].port = 81;
    let e = with(vec![wrong_port]);
    assert!(e.contains("virtualHosts[0].port"), "{e}");
}
