//! Services, workloads and endpoints.

use std::net::IpAddr;

use mesh_api::model::{AppProtocol, Health, ServiceKind};

use super::*;

#[test]
fn kube_service_becomes_a_service_with_protocols_from_port_names() {
    let index = mk_index(&[r#"
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: web}
spec:
  clusterIP: 10.96.1.1
  selector: {app: shop}
  ports:
  - {port: 80, name: http-web, targetPort: 8080}
  - {port: 81, name: http2}
  - {port: 82, name: grpc-api}
  - {port: 83, name: tcp-db}
  - {port: 84, name: tls}
  - {port: 85, name: redis}
  - {port: 86, name: mysql}
  - {port: 87, name: mongo}
  - {port: 88, name: web, appProtocol: http}
  - {port: 89, name: metrics}
"#
    .to_owned()]);
    assert!(index.warnings().is_empty(), "{:?}", warnings(&index));
    let spec = proxy(&index, &mk_client("web"));
    let svc = service(&spec, "shop.web.svc.cluster.local");
    assert_eq!(svc.name.to_string(), "web/shop");
    assert_eq!(svc.kind, ServiceKind::ClusterIp);
    assert_eq!(svc.vips, vec!["10.96.1.1".parse::<IpAddr>().unwrap()]);
    let protocols: Vec<(u16, u16, &str, AppProtocol)> = svc
        .ports
        .iter()
        .map(|p| (p.port, p.target_port, p.name.as_str(), p.protocol))
        .collect();
    assert_eq!(
        protocols,
        vec![
            (80, 8080, "http-web", AppProtocol::Http),
            (81, 81, "http2", AppProtocol::Http2),
            (82, 82, "grpc-api", AppProtocol::Grpc),
            (83, 83, "tcp-db", AppProtocol::Tcp),
            (84, 84, "tls", AppProtocol::Tls),
            (85, 85, "redis", AppProtocol::Tcp),
            (86, 86, "mysql", AppProtocol::Tcp),
            (87, 87, "mongo", AppProtocol::Tcp),
            (88, 88, "web", AppProtocol::Http),
            (89, 89, "metrics", AppProtocol::Unknown),
        ]
    );
}

#[test]
fn headless_service_has_no_vip() {
    let index = mk_index(&[
        mk_service("db", "default", "None", &[(5432, "tcp")]),
        r#"
apiVersion: v1
kind: Service
metadata: {name: nocip}
spec:
  ports: [{port: 80, name: http}]
"#
        .to_owned(),
        mk_workload("db-0", "default", "10.1.0.9", "db", &[("app", "db")]),
    ]);
    let spec = proxy(&index, &mk_client("default"));
    for host in [
        "db.default.svc.cluster.local",
        "nocip.default.svc.cluster.local",
    ] {
        let svc = service(&spec, host);
        assert_eq!(svc.kind, ServiceKind::Headless, "{host}");
        assert!(svc.vips.is_empty(), "{host}");
    }
    // A headless service still has endpoints, reachable at their own addresses.
    let config = ProxyConfig::new(spec).unwrap();
    let (svc, port) = config
        .service_by_addr("10.1.0.9:5432".parse().unwrap())
        .unwrap();
    assert_eq!(
        (svc.hostname.as_str(), port.port),
        ("db.default.svc.cluster.local", 5432)
    );
}

#[test]
fn named_target_port_resolves_per_endpoint() {
    let index = mk_index(&[
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.5
  selector: {app: web}
  ports:
  - {port: 80, name: http, targetPort: http-web}
  - {port: 9090, name: admin}
"#
        .to_owned(),
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: web-a}
spec: {address: 10.1.0.1, labels: {app: web}, ports: {http-web: 8080}}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: web-b}
spec: {address: 10.1.0.2, labels: {app: web}, ports: {http-web: 9999, admin: 19090}}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: web-c}
spec: {address: 10.1.0.3, labels: {app: web}}
"#
        .to_owned(),
    ]);
    let spec = proxy(&index, &mk_client("default"));
    let svc = service(&spec, "web.default.svc.cluster.local");
    // The service-level target of a named port defaults to the port itself.
    assert_eq!(svc.port(80).unwrap().target_port, 80);
    let eps = &endpoints(&spec, "web.default.svc.cluster.local").endpoints;
    let ports: Vec<(&str, Vec<(u16, u16)>)> = eps
        .iter()
        .map(|e| {
            (
                e.workload.name.as_str(),
                e.ports.clone().into_iter().collect(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("web-a", vec![(80, 8080)]),
            // `admin` overrides by service port name, as Istio's WorkloadEntry ports do.
            ("web-b", vec![(80, 9999), (9090, 19090)]),
            ("web-c", vec![]),
        ]
    );
    assert_eq!(eps[0].target_port(80, 80), 8080);
    assert_warned(
        &index,
        &[
            "Service default/web",
            "default/web-c has no port named \"http-web\"",
        ],
    );
}

#[test]
fn endpoints_are_workloads_in_the_namespace_matching_the_selector() {
    let index = mk_index(&[
        mk_service("api", "prod", "10.96.0.7", &[(80, "http")]),
        mk_workload(
            "api-1",
            "prod",
            "10.1.0.1",
            "api",
            &[("app", "api"), ("tier", "be")],
        ),
        mk_workload("api-2", "staging", "10.1.0.2", "api", &[("app", "api")]),
        mk_workload("other", "prod", "10.1.0.3", "api", &[("app", "other")]),
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: api-heavy, namespace: prod}
spec: {address: 10.1.0.4, labels: {app: api}, weight: 5}
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: prod}
spec:
  clusterIP: 10.96.0.8
  ports: [{port: 80, name: http}]
"#
        .to_owned(),
    ]);
    let spec = proxy(&index, &mk_client("prod"));
    let eps = &endpoints(&spec, "api.prod.svc.cluster.local").endpoints;
    let names: Vec<(&str, u32)> = eps
        .iter()
        .map(|e| (e.workload.name.as_str(), e.weight.get()))
        .collect();
    assert_eq!(names, vec![("api-1", 1), ("api-heavy", 5)]);
    // A service without a selector gets no endpoints from selection.
    assert!(
        endpoints(&spec, "manual.prod.svc.cluster.local")
            .endpoints
            .is_empty()
    );
}

#[test]
fn workload_entry_becomes_a_workload() {
    let index = mk_index(&[r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: ratings-1, namespace: shop}
spec:
  address: 10.2.0.1
  serviceAccount: ratings
  locality: us-east1/us-east1-b/rack7
  labels: {app.kubernetes.io/name: ratings, app: ignored, version: v2}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: plain, namespace: shop}
spec:
  address: 10.2.0.2
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: legacy, namespace: shop}
spec:
  address: 10.2.0.3
  labels: {app: legacy, sidecar.mesh.dev/inject: "false"}
"#
    .to_owned()]);
    let ws: Vec<_> = index.workloads().collect();
    assert_eq!(ws.len(), 3);
    let (legacy, plain, ratings) = (ws[0], ws[1], ws[2]);

    assert_eq!(ratings.uid, "shop/ratings-1");
    assert_eq!(ratings.name, "ratings-1");
    assert_eq!(ratings.namespace, "shop");
    assert_eq!(ratings.address.to_string(), "10.2.0.1");
    assert_eq!(
        ratings.identity.as_str(),
        "spiffe://cluster.local/ns/shop/sa/ratings"
    );
    assert_eq!(ratings.canonical_service, "ratings");
    assert_eq!(ratings.canonical_revision, "v2");
    assert_eq!(
        (
            ratings.locality.region.as_str(),
            ratings.locality.zone.as_str(),
            ratings.locality.subzone.as_str()
        ),
        ("us-east1", "us-east1-b", "rack7")
    );
    assert_eq!(ratings.health, Health::Healthy);
    assert!(ratings.in_mesh);

    assert_eq!(plain.identity.service_account(), "default");
    assert_eq!(plain.canonical_service, "plain");
    assert_eq!(plain.canonical_revision, "latest");
    assert!(plain.locality.is_empty());

    assert_eq!(legacy.canonical_service, "legacy");
    assert!(!legacy.in_mesh, "opted out of the mesh");
}

#[test]
fn workload_entries_that_cannot_be_translated_are_skipped_with_a_warning() {
    let index = mk_index(&[r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: by-dns}
spec: {address: vm.example.com}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: bad-sa}
spec: {address: 10.0.0.1, serviceAccount: "a/b"}
"#
    .to_owned()]);
    assert_eq!(index.workloads().count(), 0);
    assert_warned(
        &index,
        &["WorkloadEntry default/by-dns", "not an IP address"],
    );
    assert_warned(&index, &["WorkloadEntry default/bad-sa", "identity"]);
}

#[test]
fn service_entry_with_static_endpoints() {
    let index = mk_index(&[r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: payments-api, namespace: shop}
spec:
  hosts: [api.payments.example, API.payments2.example]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  endpoints:
  - {address: 192.0.2.10, ports: {http: 8081}}
  - {address: 192.0.2.11, locality: eu-west1, weight: 3}
  - {address: payments.internal.example}
"#
    .to_owned()]);
    assert_warned(
        &index,
        &[
            "ServiceEntry shop/payments-api",
            "\"payments.internal.example\" is not an IP address",
        ],
    );
    let spec = proxy(&index, &mk_client("shop"));
    for host in ["api.payments.example", "api.payments2.example"] {
        let svc = service(&spec, host);
        assert_eq!(svc.kind, ServiceKind::External);
        assert_eq!(svc.name.to_string(), "shop/payments-api");
        assert!(svc.vips.is_empty());
        assert_eq!(svc.port(443).unwrap().protocol, AppProtocol::Tls);
        assert_eq!(svc.port(80).unwrap().protocol, AppProtocol::Http);
        assert_eq!(svc.port(80).unwrap().target_port, 8080);
        let eps = &endpoints(&spec, host).endpoints;
        assert_eq!(eps.len(), 2, "{host}");
        assert!(
            eps.iter().all(|e| !e.workload.in_mesh),
            "external endpoints run no proxy"
        );
        assert_eq!(eps[0].workload.address.to_string(), "192.0.2.10");
        assert_eq!(eps[0].ports.get(&80), Some(&8081));
        assert_eq!(eps[1].weight.get(), 3);
        assert_eq!(eps[1].workload.locality.region, "eu-west1");
    }
}

#[test]
fn mesh_internal_service_entry_selects_workload_entries() {
    let index = mk_index(&[
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: vm-db, namespace: data}
spec:
  hosts: [db.vms.internal]
  addresses: [240.0.0.5]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  workloadSelector: {labels: {app: pg}}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: no-vip, namespace: data}
spec:
  hosts: [novip.vms.internal]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.9.0.1}]
"#
        .to_owned(),
        mk_workload("pg-1", "data", "10.3.0.1", "pg", &[("app", "pg")]),
        mk_workload("pg-elsewhere", "other", "10.3.0.2", "pg", &[("app", "pg")]),
    ]);
    let spec = proxy(&index, &mk_client("data"));
    let svc = service(&spec, "db.vms.internal");
    assert_eq!(svc.kind, ServiceKind::ClusterIp);
    assert_eq!(svc.vips, vec!["240.0.0.5".parse::<IpAddr>().unwrap()]);
    let eps = &endpoints(&spec, "db.vms.internal").endpoints;
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].workload.uid, "data/pg-1");
    assert!(eps[0].workload.in_mesh);

    let svc = service(&spec, "novip.vms.internal");
    assert_eq!(svc.kind, ServiceKind::Headless);
    let eps = &endpoints(&spec, "novip.vms.internal").endpoints;
    assert!(
        eps[0].workload.in_mesh,
        "MESH_INTERNAL endpoints run a proxy"
    );
}

#[test]
fn unsupported_service_shapes_are_skipped_with_warnings() {
    let index = mk_index(&[r#"
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  clusterIP: 10.96.0.53
  selector: {app: dns}
  ports:
  - {port: 53, name: dns, protocol: UDP}
  - {port: 53, name: dns-tcp, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: wild}
spec:
  hosts: ["*.example.com", ok.example.com]
  addresses: [10.0.0.0/24]
  ports: [{number: 443, name: tls}]
  resolution: DNS
"#
    .to_owned()]);
    assert_warned(
        &index,
        &["Service default/dns", "protocol UDP is not supported"],
    );
    assert_warned(&index, &["Service default/ext", "ExternalName"]);
    assert_warned(&index, &["ServiceEntry default/wild", "wildcard host"]);
    assert_warned(&index, &["ServiceEntry default/wild", "CIDR"]);
    assert_warned(&index, &["ServiceEntry default/wild", "DNS resolution"]);
    let spec = proxy(&index, &mk_client("default"));
    let dns = service(&spec, "dns.default.svc.cluster.local");
    assert_eq!(dns.ports.len(), 1);
    assert_eq!(dns.ports[0].name, "dns-tcp");
    assert!(
        spec.services
            .iter()
            .all(|s| !s.hostname.contains("ext.default"))
    );
    assert!(service(&spec, "ok.example.com").vips.is_empty());
}
