use std::{fs, path::PathBuf};

use super::*;

fn copy_tree(from: &Path, to: &Path) {
    for dir in [Path::new("")] {
        for file in list_files(from, dir).unwrap() {
            let dest = to.join(&file);
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(from.join(&file), dest).unwrap();
        }
    }
}

fn proto_output() -> Generated {
    proto::generate(&workspace_root()).unwrap()
}

#[test]
fn proto_generator_produces_the_expected_files() {
    let g = proto_output();
    let names: Vec<_> = g.files.iter().map(|f| f.path.clone()).collect();
    let gen_dir = Path::new(proto::OUT_DIR);
    assert_eq!(
        names,
        [
            gen_dir.join(proto::DESCRIPTOR_SET),
            gen_dir.join("mesh.discovery.v1.rs"),
            gen_dir.join("mesh.identity.v1.rs"),
        ]
    );
    assert_eq!(g.owned_dirs, [PathBuf::from(proto::OUT_DIR)]);
    // Deterministic: a second run is byte-identical.
    assert_eq!(proto_output().files, g.files);
    // Client and server stubs, no transport.
    let discovery = String::from_utf8(g.files[1].contents.clone()).unwrap();
    assert!(discovery.contains("pub mod discovery_client"));
    assert!(discovery.contains("pub mod discovery_server"));
    assert!(!discovery.contains("tonic::transport"));
}

#[test]
fn compare_detects_edited_missing_and_extra_files() {
    let g = proto_output();
    let fresh = tempfile::tempdir().unwrap();
    let committed = tempfile::tempdir().unwrap();
    g.write_to(fresh.path()).unwrap();
    copy_tree(fresh.path(), committed.path());
    let dirs = g.owned_dirs.clone();

    assert_eq!(compare(fresh.path(), committed.path(), &dirs).unwrap(), []);

    // A hand edit to a generated file.
    let edited = Path::new(proto::OUT_DIR).join("mesh.discovery.v1.rs");
    let mut text = fs::read_to_string(committed.path().join(&edited)).unwrap();
    text.push_str("\n// a hand edit\n");
    fs::write(committed.path().join(&edited), text).unwrap();
    // A deleted one and a stray one.
    let deleted = Path::new(proto::OUT_DIR).join("mesh.identity.v1.rs");
    fs::remove_file(committed.path().join(&deleted)).unwrap();
    let extra = Path::new(proto::OUT_DIR).join("old.rs");
    fs::write(committed.path().join(&extra), "").unwrap();

    let stale = compare(fresh.path(), committed.path(), &dirs).unwrap();
    let shown: Vec<String> = stale.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{} differs from generated output", edited.display()),
            format!("{} is missing", deleted.display()),
            format!("{} is not generated anymore", extra.display()),
        ]
    );

    // Writing repairs all three.
    assert_eq!(g.write_to(committed.path()).unwrap(), 3);
    assert_eq!(compare(fresh.path(), committed.path(), &dirs).unwrap(), []);
    assert_eq!(
        g.write_to(committed.path()).unwrap(),
        0,
        "unchanged files are not rewritten"
    );
}

#[test]
fn check_compares_loose_files_too() {
    let mut g = Generated::default();
    g.add("a/loose.txt", "fresh");
    let root = tempfile::tempdir().unwrap();
    let stale = check(&g, root.path()).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].kind, StaleKind::Missing);
    g.write_to(root.path()).unwrap();
    assert_eq!(check(&g, root.path()).unwrap(), []);
    fs::write(root.path().join("a/loose.txt"), "edited").unwrap();
    assert_eq!(check(&g, root.path()).unwrap()[0].kind, StaleKind::Differs);
    // Files next to a loose file are not the generator's business.
    fs::write(root.path().join("a/loose.txt"), "fresh").unwrap();
    fs::write(root.path().join("a/other.txt"), "").unwrap();
    assert_eq!(check(&g, root.path()).unwrap(), []);
}

/// The committed generated code must match what the generators produce now. (CI also runs
/// `cargo xtask codegen --check`.)
#[test]
fn committed_generated_code_is_fresh() {
    let root = workspace_root();
    let stale = check(&generate_all(&root).unwrap(), &root).unwrap();
    assert!(
        stale.is_empty(),
        "stale generated files: {stale:#?}\nrun `cargo xtask codegen` and commit the result"
    );
}

#[test]
fn crds_render_one_yaml_file_each() {
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.mesh.dev"},
            "spec": {
                "group": "example.mesh.dev",
                "names": {"kind": "Widget", "plural": "widgets"},
                "scope": "Namespaced",
                "versions": [{"name": "v1alpha1", "served": true, "storage": true}]
            }
        }))
        .unwrap();
    let mut all = proto_output();
    all.extend(crds::render(std::slice::from_ref(&crd)).unwrap());
    all.sort();
    let file = all
        .files
        .iter()
        .find(|f| f.path.starts_with(crds::OUT_DIR))
        .unwrap();
    assert_eq!(
        file.path,
        Path::new("deploy/crds/widgets.example.mesh.dev.yaml")
    );
    let text = String::from_utf8(file.contents.clone()).unwrap();
    assert!(text.starts_with("# Generated by `cargo xtask codegen`"));
    let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(back["spec"]["names"]["kind"], "Widget");
    assert!(all.owned_dirs.contains(&PathBuf::from(crds::OUT_DIR)));
}

#[test]
fn boutique_proto_generator_produces_the_expected_files() {
    let g = proto::boutique(&workspace_root()).unwrap();
    let names: Vec<_> = g.files.iter().map(|f| f.path.clone()).collect();
    let gen_dir = Path::new(proto::BOUTIQUE_OUT_DIR);
    assert_eq!(
        names,
        [
            gen_dir.join("grpc.health.v1.rs"),
            gen_dir.join("hipstershop.rs"),
        ]
    );
    assert_eq!(g.owned_dirs, [PathBuf::from(proto::BOUTIQUE_OUT_DIR)]);
    let hipstershop = String::from_utf8(g.files[1].contents.clone()).unwrap();
    assert!(hipstershop.contains("pub mod checkout_service_server"));
}
