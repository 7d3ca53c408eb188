//! Local mode end to end, without I/O beyond the files: a directory of YAML through the
//! local registry into the index, and the config one proxy gets from it.

use mesh_api::config::Resource;
use mesh_api::model::{MtlsMode, Node, ProxyConfig, ProxyMode};
use mesh_control::index::{Index, Settings};
use mesh_control::registry::local::{LocalRegistry, Reload};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../meshctl/tests/fixtures/good")
}

#[test]
fn a_config_directory_becomes_a_proxy_config() {
    let mut registry = LocalRegistry::new(fixtures(), "default");
    let Reload::Applied(snapshot) = registry.load_now() else {
        panic!("the good fixtures load")
    };
    let resources: Vec<Resource> = snapshot.resources.clone();
    let mut index = Index::new(Settings::default());
    index.replace_all(resources);

    let node = Node {
        id: "sidecar~127.0.0.1~productcatalogservice-v1.boutique".into(),
        pod_name: "productcatalogservice-v1".into(),
        namespace: "boutique".into(),
        ip: "127.0.0.1".parse().unwrap(),
        identity: "spiffe://cluster.local/ns/boutique/sa/productcatalogservice"
            .parse()
            .unwrap(),
        labels: [
            ("app".to_string(), "productcatalogservice".to_string()),
            ("version".to_string(), "v1".to_string()),
        ]
        .into(),
        mode: ProxyMode::Sidecar,
        proxy_version: "test".into(),
    };
    let spec = index.proxy_config(&node);
    // The proxy's own workload, found by namespace, name and identity.
    let me = spec
        .workload
        .as_ref()
        .expect("the node's workload is known");
    assert_eq!(me.canonical_service, "productcatalogservice");
    // The catalog service, with this workload as its endpoint on the named port.
    let svc = spec
        .services
        .iter()
        .find(|s| s.hostname == "productcatalogservice.boutique.svc.cluster.local")
        .expect("the service is visible");
    assert_eq!(
        svc.vips,
        vec!["10.96.0.20".parse::<std::net::IpAddr>().unwrap()]
    );
    let eps = spec
        .endpoints
        .iter()
        .find(|e| e.hostname == svc.hostname)
        .expect("its endpoints");
    assert_eq!(eps.endpoints.len(), 1);
    assert_eq!(eps.endpoints[0].target_port(3550, 3550), 13550);
    // Mesh-wide STRICT from the root namespace, and the ALLOW policy for the catalog.
    assert_eq!(spec.inbound.mode, MtlsMode::Strict);
    assert_eq!(spec.authorization.len(), 1);
    assert_eq!(spec.authorization[0].name, "productcatalog");
    // What the index computes is what a proxy accepts.
    ProxyConfig::new(spec).expect("the computed config validates");
}
