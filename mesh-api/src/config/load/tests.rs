use super::*;
use crate::config::security::MtlsMode;

fn load(text: &str) -> ConfigSet {
    let mut loader = Loader::new();
    loader.add_str("test.yaml", text);
    loader.finish()
}

fn only_diag(set: &ConfigSet) -> &Diagnostic {
    assert_eq!(set.diagnostics.len(), 1, "{:#?}", set.diagnostics);
    &set.diagnostics[0]
}

const VS: &str = r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
"#;

#[test]
fn loads_a_virtual_service() {
    let set = load(VS);
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let Resource::VirtualService(vs) = &set.resources[0].resource else {
        panic!("wrong kind")
    };
    assert_eq!(vs.metadata.namespace.as_deref(), Some("bookinfo"));
    assert_eq!(vs.spec.http[0].route[1].weight, Some(10));
    assert_eq!(
        vs.spec.http[0].route[1].destination.subset.as_deref(),
        Some("v2")
    );
}

#[test]
fn unknown_field_is_an_error_with_path_and_line() {
    let text = VS.replace("      weight: 10", "      wieght: 10");
    let set = load(&text);
    let d = only_diag(&set);
    assert_eq!(d.code, Code::UnknownField);
    assert_eq!(d.location.path, "spec.http[0].route[1].wieght");
    assert_eq!(d.location.line, 18, "{d}");
    assert_eq!(d.location.document, 1);
    assert_eq!(
        d.location.resource.as_deref(),
        Some("VirtualService bookinfo/reviews")
    );
    assert!(d.message.contains("`wieght`"), "{d}");
    // The resource itself still loads: unknown fields are reported, not fatal to the rest.
    assert_eq!(set.resources.len(), 1);
}

#[test]
fn unknown_fields_in_kubernetes_and_gateway_api_types_are_errors_too() {
    let set = load(
        r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports:
  - port: 9080
    name: http
    targetPrt: 9080
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: reviews, port: 9080, wieght: 3}]
"#,
    );
    let paths: Vec<_> = set
        .diagnostics
        .iter()
        .map(|d| (d.code, d.location.document, d.location.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            (Code::UnknownField, 1, "spec.ports[0].targetPrt"),
            (Code::UnknownField, 2, "spec.rules[0].backendRefs[0].wieght"),
        ]
    );
    assert_eq!(set.resources.len(), 2);
}

#[test]
fn wrong_type_names_the_field() {
    let text = VS.replace("weight: 90", "weight: ninety");
    let set = load(&text);
    let d = only_diag(&set);
    assert_eq!(d.code, Code::InvalidValue);
    assert_eq!(d.location.path, "spec.http[0].route[0].weight");
    assert_eq!(d.location.line, 14);
    assert!(set.resources.is_empty());
}

#[test]
fn unknown_enum_value_lists_the_choices() {
    let set = load(
        r#"
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRCT}
"#,
    );
    let d = only_diag(&set);
    assert_eq!(d.code, Code::InvalidValue);
    assert_eq!(d.location.path, "spec.mtls.mode");
    assert!(d.message.contains("STRICT"), "{d}");
}

#[test]
fn port_level_mtls_takes_numeric_keys() {
    let set = load(
        r#"
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: db, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
  portLevelMtls:
    5432: {mode: PERMISSIVE}
"#,
    );
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let Resource::PeerAuthentication(pa) = &set.resources[0].resource else {
        panic!()
    };
    assert_eq!(pa.spec.port_level_mtls[&5432].mode, MtlsMode::Permissive);
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let set = load("apiVersion: v1\nkind: Service\nmetadata: {name: x\n");
    let d = only_diag(&set);
    assert_eq!(d.code, Code::YamlSyntax);
    assert!(d.location.line >= 3, "{d}");
}

#[test]
fn duplicate_keys_are_rejected() {
    let set =
        load("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {}\nspec: {ports: []}\n");
    assert_eq!(only_diag(&set).code, Code::YamlSyntax);
}

#[test]
fn yaml_bombs_are_refused() {
    // A billion-laughs style document: each level references the previous nine times.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let set = load(&text);
    assert_eq!(only_diag(&set).code, Code::YamlSyntax);
}

#[test]
fn missing_type_meta_and_names() {
    let set =
        load("metadata: {name: x}\n---\n- a list\n---\napiVersion: v1\nkind: Service\nspec: {}\n");
    let codes: Vec<_> = set
        .diagnostics
        .iter()
        .map(|d| (d.code, d.location.document))
        .collect();
    assert_eq!(
        codes,
        [
            (Code::MissingTypeMeta, 1),
            (Code::MissingTypeMeta, 2),
            (Code::InvalidName, 3)
        ]
    );
    let set = load("apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\n");
    assert_eq!(only_diag(&set).code, Code::InvalidName);
}

#[test]
fn istio_api_version_gets_a_porting_hint() {
    let text = VS.replace(
        "networking.mesh.dev/v1alpha1",
        "networking.istio.io/v1beta1",
    );
    let set = load(&text);
    let d = only_diag(&set);
    assert_eq!(d.code, Code::UnknownKind);
    assert!(
        d.fix
            .as_deref()
            .unwrap()
            .contains("networking.mesh.dev/v1alpha1"),
        "{d}"
    );
}

#[test]
fn misspelled_kind_in_our_group_is_an_error_but_foreign_kinds_are_ignored() {
    let set = load(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: VirtualServise\nmetadata: {name: x}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
    );
    let codes: Vec<_> = set.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::UnknownKind, Code::Ignored]);
    assert!(!set.diagnostics[1].is_error());
}

#[test]
fn lists_are_flattened_with_item_paths() {
    let set = load(
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: networking.mesh.dev/v1alpha1
  kind: DestinationRule
  metadata: {name: reviews}
  spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
- apiVersion: networking.mesh.dev/v1alpha1
  kind: DestinationRule
  metadata: {name: ratings}
  spec: {host: ratings, extra: 1}
"#,
    );
    assert_eq!(set.resources.len(), 2);
    let d = only_diag(&set);
    assert_eq!(d.location.path, "items[1].spec.extra");
    assert_eq!(d.location.line, 12);
}

#[test]
fn gateway_api_v1beta1_is_read_as_v1() {
    let set = load(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: r}\n\
         spec: {rules: [{backendRefs: [{name: a, port: 80}]}]}\n",
    );
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    assert_eq!(set.resources[0].resource.kind(), ResourceKind::HttpRoute);
}

#[test]
fn label_keys_with_dots_get_quoted_paths() {
    let set = load(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: w}
spec:
  address: 10.0.0.1
  labels:
    app.kubernetes.io/name: 7
"#,
    );
    // A number where a string belongs.
    let d = only_diag(&set);
    assert_eq!(d.location.path, "spec.labels[\"app.kubernetes.io/name\"]");
    assert_eq!(d.location.line, 8);
}

#[test]
fn directories_load_sorted_and_skip_hidden_entries() {
    let dir = std::env::temp_dir().join(format!("mesh-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("..data")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        VS.replace("name: reviews\n", "name: b\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("sub/a.yml"),
        VS.replace("name: reviews\n", "name: a\n"),
    )
    .unwrap();
    std::fs::write(dir.join("..data/hidden.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let mut loader = Loader::new();
    loader.add_path(&dir);
    let set = loader.finish();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let names: Vec<_> = set.resources.iter().map(|r| r.resource.name()).collect();
    assert_eq!(names, ["b", "a"]);
}

#[test]
fn unreadable_inputs_are_reported() {
    let mut loader = Loader::new();
    loader.add_path(Path::new("/nonexistent/mesh/config.yaml"));
    loader.add_reader("<stdin>", &[0xff, 0xfe, b'a'][..]);
    let set = loader.finish();
    let codes: Vec<_> = set.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::ReadError, Code::ReadError]);
    assert!(set.diagnostics[1].message.contains("UTF-8"));
}

#[test]
fn parent_paths() {
    assert_eq!(parent_path("a.b[0].c"), Some("a.b[0]"));
    assert_eq!(parent_path("a.b[0]"), Some("a.b"));
    assert_eq!(parent_path("a[\"x.y/z\"]"), Some("a"));
    assert_eq!(parent_path("a"), Some(""));
    assert_eq!(parent_path(""), None);
}
