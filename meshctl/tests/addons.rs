//! The addons in `deploy/addons/` and the examples in `examples/online-boutique/`: every
//! document is a valid Kubernetes object (decoded into its k8s-openapi type and encoded
//! back without losing a field, so a misspelt or misplaced field fails), the scrape config
//! follows the `prometheus.io/*` annotations, and the examples fit together.

#[path = "support/e2e.rs"]
mod e2e;
use e2e::skip;

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn addon(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/addons")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes `doc` as `T` and checks nothing was dropped.
fn strict<T: DeserializeOwned + Serialize>(doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{} {} has fields its type does not know",
        doc["kind"], doc["metadata"]["name"]
    );
}

fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("valid YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

#[test]
fn prometheus_addon_objects_are_valid_kubernetes_objects() {
    let docs = documents(&addon("prometheus.yaml"));
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Service"
        ]
    );
    for doc in &docs {
        match doc["kind"].as_str().unwrap() {
            "ServiceAccount" => strict::<ServiceAccount>(doc),
            "ClusterRole" => strict::<ClusterRole>(doc),
            "ClusterRoleBinding" => strict::<ClusterRoleBinding>(doc),
            "ConfigMap" => strict::<ConfigMap>(doc),
            "Deployment" => strict::<Deployment>(doc),
            "Service" => strict::<Service>(doc),
            other => panic!("unexpected kind {other}"),
        }
        if doc["kind"] != "ClusterRole" && doc["kind"] != "ClusterRoleBinding" {
            assert_eq!(doc["metadata"]["namespace"], "mesh-system");
        }
    }
    // Prometheus itself is not meshed (it scrapes plaintext metrics ports).
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["sidecar.mesh.dev/inject"],
        "false"
    );
}

/// The scrape config keeps annotated pods and moves the scrape to the annotated port.
/// (Debian's `promtool` is built without Kubernetes service discovery, so it cannot check
/// this file; the relabel rules are evaluated here with the same anchored-regex semantics
/// Prometheus uses.)
#[test]
fn the_scrape_config_follows_the_prometheus_annotations() {
    let docs = documents(&addon("prometheus.yaml"));
    let text = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["prometheus.yml"].as_str())
        .expect("the ConfigMap holds prometheus.yml");
    let config: Value = serde_saphyr::from_str(text).expect("prometheus.yml is YAML");
    let job = &config["scrape_configs"][0];
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let rules = job["relabel_configs"].as_array().unwrap();
    let rule = |target: &str| {
        rules
            .iter()
            .find(|r| r["target_label"] == target || (target == "keep" && r["action"] == "keep"))
            .unwrap_or_else(|| panic!("a relabel rule for {target}"))
    };
    let keep = rule("keep");
    assert_eq!(
        keep["source_labels"][0],
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape"
    );
    let address = rule("__address__");
    let regex = mesh_api::config::validate::compile_regex(address["regex"].as_str().unwrap())
        .expect("the address regex compiles");
    let replacement = address["replacement"].as_str().unwrap();
    for (joined, want) in [
        ("10.244.0.7:8080;15020", "10.244.0.7:15020"),
        ("10.244.0.7;15014", "10.244.0.7:15014"),
    ] {
        assert!(regex.is_match(joined), "{joined}");
        assert_eq!(regex.replace(joined, replacement), want);
    }
    // A pod without the port annotation keeps its address (the rule does not match).
    assert!(!regex.is_match("10.244.0.7:8080;"));
    let path = rule("__metrics_path__");
    assert_eq!(
        path["source_labels"][0],
        "__meta_kubernetes_pod_annotation_prometheus_io_path"
    );
}

/// Injects the shop's manifests: all 12 Deployments, none with a warning.
fn inject_all_twelve(text: &str) -> mesh_api::inject::YamlOutput {
    let out = mesh_api::inject::inject_yaml(text, &mesh_api::inject::Context::default())
        .expect("the manifests inject");
    assert_eq!(out.injected(), 12);
    for report in &out.reports {
        if let mesh_api::inject::DocumentResult::Injected { warnings } = &report.result {
            assert!(warnings.is_empty(), "{report:?}");
        }
    }
    out
}

fn example(name: &str) -> (std::path::PathBuf, Vec<Value>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/online-boutique")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    (path, documents(&text))
}

/// What `meshctl analyze` finds in `path` (errors and warnings), and how many resources.
fn analyze(path: &Path) -> (Vec<String>, usize) {
    let set = mesh_api::config::analyze_paths(&[path]);
    let problems = set
        .diagnostics
        .iter()
        .filter(|d| d.severity != mesh_api::config::Severity::Info)
        .map(ToString::to_string)
        .collect();
    (problems, set.resources.len())
}

/// The pod labels of the Deployment named `name` in `docs`.
fn pod_labels<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Deployment {name}"));
    &deployment["spec"]["template"]["metadata"]["labels"]
}

/// The canary example the README walks through: a valid v2 Deployment, and mesh config
/// that `meshctl analyze` finds no problem in.
#[test]
fn the_canary_example_is_valid() {
    let (_, v2) = example("productcatalogservice-v2.yaml");
    assert_eq!(v2.len(), 1);
    strict::<Deployment>(&v2[0]);
    let labels = pod_labels(&v2, "productcatalogservice-v2");
    assert_eq!(labels["app"], "productcatalogservice");
    assert_eq!(labels["version"], "v2");
    let (path, _) = example("canary-90-10.yaml");
    let (problems, resources) = analyze(&path);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(resources, 2);
}

/// The Gateway API canary: a Service per version selecting exactly the v1 pods of
/// kubernetes-manifests.yaml and the v2 pods of productcatalogservice-v2.yaml, and a
/// GRPCRoute attached to productcatalogservice's Service port that weighs them 90/10.
/// (`meshctl demo` applies this very file in its end-to-end test.)
#[test]
fn the_gateway_api_canary_example_is_valid() {
    let (path, docs) = example("canary-90-10-gateway-api.yaml");
    let (problems, resources) = analyze(&path);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(resources, 3);
    let (_, shop) = example("kubernetes-manifests.yaml");
    let (_, v2) = example("productcatalogservice-v2.yaml");
    let pods = [
        ("v1", pod_labels(&shop, "productcatalogservice")),
        ("v2", pod_labels(&v2, "productcatalogservice-v2")),
    ];
    for (version, labels) in pods {
        let name = format!("productcatalogservice-{version}");
        let service = docs
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no Service {name}"));
        strict::<Service>(service);
        let selector = service["spec"]["selector"].as_object().unwrap();
        assert_eq!(selector.len(), 2, "{selector:?}");
        for (k, v) in selector {
            assert_eq!(&labels[k], v, "{name} selects {k}={v}");
        }
    }
    let route = docs.iter().find(|d| d["kind"] == "GRPCRoute").unwrap();
    let parent = &route["spec"]["parentRefs"][0];
    assert_eq!(
        (&parent["kind"], &parent["name"], &parent["port"]),
        (
            &Value::from("Service"),
            &Value::from("productcatalogservice"),
            &Value::from(3550)
        )
    );
    let backends: Vec<(&str, u64)> = route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["weight"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        backends,
        vec![
            ("productcatalogservice-v1", 90),
            ("productcatalogservice-v2", 10)
        ]
    );
}

/// The Gateway API variant of gateway.yaml: a Gateway of class `mesh` (served by
/// `mesh-ingressgateway`) on port 80 and an HTTPRoute from it to the frontend Service's
/// port. (`meshctl demo` applies this very file in its end-to-end test.)
#[test]
fn the_gateway_api_gateway_example_is_valid() {
    let (path, docs) = example("gateway-api.yaml");
    let (problems, resources) = analyze(&path);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(resources, 2);
    let gateway = docs.iter().find(|d| d["kind"] == "Gateway").unwrap();
    assert_eq!(gateway["spec"]["gatewayClassName"], "mesh");
    assert_eq!(gateway["spec"]["listeners"][0]["port"], 80);
    let route = docs.iter().find(|d| d["kind"] == "HTTPRoute").unwrap();
    assert_eq!(
        route["spec"]["parentRefs"][0]["name"],
        gateway["metadata"]["name"]
    );
    let backend = &route["spec"]["rules"][0]["backendRefs"][0];
    let (_, shop) = example("kubernetes-manifests.yaml");
    let frontend = shop
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == backend["name"])
        .unwrap_or_else(|| panic!("no Service {}", backend["name"]));
    assert!(
        frontend["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == backend["port"]),
        "{frontend}"
    );
}

/// `examples/online-boutique/kubernetes-manifests.yaml`: valid objects, every `*_ADDR`
/// naming a Service and port that exist, every pod labelled for the canary, and every
/// Deployment injectable (probes rewritten through the proxy, no warnings).
#[test]
fn the_online_boutique_manifests_are_consistent_and_injectable() {
    use k8s_openapi::api::core::v1::Service as KubeService;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/online-boutique/kubernetes-manifests.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = documents(&text);
    let mut services = std::collections::BTreeMap::new();
    let mut deployments = Vec::new();
    for doc in &docs {
        match doc["kind"].as_str().unwrap() {
            "ServiceAccount" => strict::<ServiceAccount>(doc),
            "Deployment" => {
                strict::<Deployment>(doc);
                deployments.push(doc);
            }
            "Service" => {
                strict::<KubeService>(doc);
                let ports: Vec<i64> = doc["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_i64().unwrap())
                    .collect();
                services.insert(
                    doc["metadata"]["name"].as_str().unwrap().to_owned(),
                    (doc["spec"]["selector"]["app"].clone(), ports),
                );
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    assert_eq!(deployments.len(), 12, "11 services and the load generator");
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app"], name);
        assert_eq!(labels["version"], "v1", "{name}: the canary's v1 subset");
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            for e in c["env"].as_array().into_iter().flatten() {
                let var = e["name"].as_str().unwrap();
                if !var.ends_with("_ADDR") || var == "SHOPPING_ASSISTANT_SERVICE_ADDR" {
                    continue; // the optional assistant is not part of the demo
                }
                let value = e["value"].as_str().unwrap();
                let (host, port) = value.rsplit_once(':').unwrap();
                let (app, ports) = services
                    .get(host)
                    .unwrap_or_else(|| panic!("{name}: {var}={value}: no Service {host}"));
                assert!(
                    ports.contains(&port.parse().unwrap()),
                    "{name}: {var}={value}: Service {host} has ports {ports:?}"
                );
                assert!(
                    deployments.iter().any(|d| d["metadata"]["name"] == *app),
                    "{name}: {var}: nothing serves Service {host}"
                );
            }
        }
    }
    let out = inject_all_twelve(&text);
    // The frontend's HTTP probes now go through the proxy's health port.
    let injected = documents(&out.yaml);
    let frontend = injected
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "frontend")
        .unwrap();
    let app = frontend["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "server")
        .unwrap();
    assert_eq!(app["readinessProbe"]["httpGet"]["port"], 15021);
    assert_eq!(
        app["readinessProbe"]["httpGet"]["path"],
        "/app-health/server/readyz"
    );
}

/// `examples/online-boutique/gateway.yaml`: mesh config without problems that binds the
/// frontend to the ingress gateway's pods.
#[test]
fn the_gateway_example_is_valid() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/online-boutique/gateway.yaml");
    let set = mesh_api::config::analyze_paths(&[&path]);
    assert!(!set.has_errors(), "{:#?}", set.diagnostics);
    let docs = documents(&std::fs::read_to_string(&path).unwrap());
    let gateway = docs.iter().find(|d| d["kind"] == "Gateway").unwrap();
    assert_eq!(gateway["spec"]["selector"]["mesh"], "ingressgateway");
    let vs = docs.iter().find(|d| d["kind"] == "VirtualService").unwrap();
    assert_eq!(vs["spec"]["gateways"][0], gateway["metadata"]["name"]);
}

/// The image `kubernetes-manifests-rust.yaml` runs: `cargo xtask images` builds it under
/// the names `meshctl install` uses by default.
fn boutique_image() -> String {
    format!(
        "{}/boutique:{}",
        mesh_api::inject::DEFAULT_HUB,
        mesh_api::inject::DEFAULT_TAG
    )
}

/// `(Deployment, container)` of every app container (not init container) of `docs`.
fn app_containers(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |c| (name.clone(), c))
        })
        .collect()
}

/// The `boutique` subcommand each Deployment of `kubernetes-manifests-rust.yaml` runs.
fn boutique_services() -> Vec<(String, String)> {
    let (_, ours) = example("kubernetes-manifests-rust.yaml");
    app_containers(&ours)
        .into_iter()
        .filter(|(_, c)| c["image"] == boutique_image().as_str())
        .map(|(d, c)| (d, c["args"][0].as_str().unwrap().to_owned()))
        .collect()
}

/// `examples/online-boutique/kubernetes-manifests-rust.yaml` (`cargo xtask codegen` makes
/// it from kubernetes-manifests.yaml): valid objects, and the same objects as upstream's
/// file — names, env, ports, probes, resources, security contexts — except that every app
/// container but redis runs our boutique image with one argument, its service.
#[test]
fn the_online_boutique_on_our_images_is_upstreams_manifests_with_our_image() {
    use k8s_openapi::api::core::v1::Service as KubeService;
    let (_, upstream) = example("kubernetes-manifests.yaml");
    let (_, ours) = example("kubernetes-manifests-rust.yaml");
    let objects = |docs: &[Value]| -> Vec<(String, String)> {
        docs.iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_owned(),
                    d["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(objects(&ours), objects(&upstream));
    for doc in &ours {
        match doc["kind"].as_str().unwrap() {
            "ServiceAccount" => strict::<ServiceAccount>(doc),
            "Deployment" => strict::<Deployment>(doc),
            "Service" => strict::<KubeService>(doc),
            other => panic!("unexpected kind {other}"),
        }
    }
    // Every app container but redis runs our image, with exactly one argument.
    let image = boutique_image();
    let containers = app_containers(&ours);
    assert_eq!(containers.len(), 12);
    for (deployment, c) in &containers {
        if c["image"] == "redis:alpine" {
            assert_eq!(deployment, "redis-cart");
            assert!(c.get("args").is_none(), "{c}");
            continue;
        }
        assert_eq!(c["image"], image.as_str(), "{deployment}");
        let args = c["args"]
            .as_array()
            .unwrap_or_else(|| panic!("{deployment}: {c}"));
        assert_eq!(args.len(), 1, "{deployment}: {args:?}");
        assert!(
            c.get("command").is_none(),
            "{deployment}: the entrypoint is boutique"
        );
    }
    let services = boutique_services();
    assert_eq!(services.len(), 11, "{services:?}");
    let distinct: std::collections::BTreeSet<&str> =
        services.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        distinct.len(),
        11,
        "one service per Deployment: {services:?}"
    );
    // Nothing else differs: without images and our args, the objects are equal (so are the
    // names, env, ports, probes, resources and security contexts), and no upstream
    // microservices-demo image is left.
    let strip = |docs: &[Value], ours: bool| -> Vec<Value> {
        let mut docs = docs.to_vec();
        for d in docs.iter_mut().filter(|d| d["kind"] == "Deployment") {
            let spec = &mut d["spec"]["template"]["spec"];
            for list in ["containers", "initContainers"] {
                let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                    continue;
                };
                for c in containers {
                    let c = c.as_object_mut().unwrap();
                    let image = c["image"].as_str().unwrap();
                    assert!(
                        !ours || !image.contains("/microservices-demo/"),
                        "an upstream image is left: {image}"
                    );
                    if image == boutique_image() || image.contains("/microservices-demo/") {
                        c.remove("image");
                        if ours {
                            c.remove("args");
                        }
                    }
                }
            }
        }
        docs
    };
    let (ours, upstream) = (strip(&ours, true), strip(&upstream, false));
    for (ours, upstream) in ours.iter().zip(&upstream) {
        assert_eq!(
            ours, upstream,
            "{} {} differs from upstream's beyond image and args",
            upstream["kind"], upstream["metadata"]["name"]
        );
    }
}

/// Every argument of `kubernetes-manifests-rust.yaml` is a service the real `boutique`
/// binary runs: `boutique <service> --help` succeeds (and an unknown service fails).
#[test]
fn the_online_boutique_on_our_images_runs_real_boutique_services() {
    let meshctl = Path::new(env!("CARGO_BIN_EXE_meshctl"));
    let boutique = meshctl.parent().unwrap().join("boutique");
    if !boutique.is_file() {
        return skip(&format!(
            "boutique not built in {} (cargo build -p online-boutique)",
            meshctl.parent().unwrap().display()
        ));
    }
    let help = |service: &str| {
        std::process::Command::new(&boutique)
            .args([service, "--help"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", boutique.display()))
    };
    for (deployment, service) in boutique_services() {
        let out = help(&service);
        assert!(
            out.status.success(),
            "{deployment}: `boutique {service} --help`: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("boutique {service}")),
            "{deployment}: the help of `boutique {service}`"
        );
    }
    assert!(!help("productcatalogservice").status.success());
}

/// Every Deployment of `kubernetes-manifests-rust.yaml` injects without warnings, as
/// upstream's do, and keeps its image and service argument beside the proxy.
#[test]
fn the_online_boutique_on_our_images_is_injectable() {
    let (path, _) = example("kubernetes-manifests-rust.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let out = inject_all_twelve(&text);
    let injected = documents(&out.yaml);
    let services: Vec<(String, String)> = app_containers(&injected)
        .into_iter()
        .filter(|(_, c)| c["image"] == boutique_image().as_str())
        .map(|(d, c)| {
            assert_eq!(c["args"].as_array().unwrap().len(), 1, "{d}: {c}");
            (d, c["args"][0].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(services, boutique_services());
    // The frontend's HTTP probes now go through the proxy's health port.
    let frontend = app_containers(&injected)
        .into_iter()
        .find(|(d, c)| d == "frontend" && c["name"] == "server")
        .unwrap()
        .1;
    assert_eq!(frontend["readinessProbe"]["httpGet"]["port"], 15021);
}
