//! `meshctl inject` end to end: the real binary on fixture manifests, from files and stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inject")
        .join(name)
}

fn meshctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .env_remove("MESH_TRUST_DOMAIN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meshctl");
    if let Some(input) = stdin {
        // Dropped at the end of the statement: meshctl sees end of input.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait for meshctl")
}

/// Runs `meshctl inject` and returns (exit code, stdout, stderr).
fn inject(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut all = vec!["inject"];
    all.extend_from_slice(args);
    let out = meshctl(&all, stdin);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn path(name: &str) -> String {
    fixture(name).to_str().unwrap().to_owned()
}

/// The documents of a stream as written, split at `---` lines.
fn raw_docs(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            out.push(String::new());
        } else {
            let last = out.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

fn docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn injects_the_deployment_and_copies_the_service_and_configmap() {
    let (code, out, err) = inject(&["-f", &path("app.yaml")], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "no warnings with native sidecars");

    let input = std::fs::read_to_string(fixture("app.yaml")).unwrap();
    let (raw_in, raw_out) = (raw_docs(&input), raw_docs(&out));
    assert_eq!(raw_out.len(), 3, "{out}");
    assert_eq!(raw_out[1], raw_in[1], "the Service as written");
    assert_eq!(raw_out[2], raw_in[2], "the ConfigMap as written");

    let parsed = docs(&out);
    let deployment = &parsed[0];
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["metadata"]["name"], "frontend");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(names(&pod["initContainers"]), ["mesh-init", "mesh-proxy"]);
    assert_eq!(names(&pod["containers"]), ["server"]);
    assert_eq!(
        pod["initContainers"][0]["args"],
        serde_json::json!(["init"])
    );
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"],
        serde_json::json!({"path": "/app-health/server/livez", "port": 15021, "scheme": "HTTP"})
    );
    assert_eq!(pod["initContainers"][1]["restartPolicy"], "Always");
    let meta = &deployment["spec"]["template"]["metadata"];
    assert_eq!(meta["labels"]["security.mesh.dev/tlsMode"], "mesh");
    assert!(
        meta["annotations"]
            .get("sidecar.mesh.dev/probe-ports")
            .is_none()
    );
    assert_eq!(meta["annotations"]["prometheus.io/port"], "15020");
}

/// The output, injected again (through stdin), is the same text; stdin and a file give
/// the same result.
#[test]
fn injecting_twice_gives_identical_output_and_stdin_works() {
    let (code, once, err) = inject(&["-f", &path("app.yaml")], None);
    assert_eq!(code, 0, "{err}");
    let (code, twice, err) = inject(&["-f", "-"], Some(&once));
    assert_eq!(code, 0, "{err}");
    assert_eq!(twice, once);
    assert!(
        err.starts_with(
            "note: <stdin>: document 1 (Deployment shop/frontend): not injected: already injected"
        ),
        "{err}"
    );

    let input = std::fs::read_to_string(fixture("app.yaml")).unwrap();
    let (code, from_stdin, err) = inject(&["-f", "-"], Some(&input));
    assert_eq!(code, 0, "{err}");
    assert_eq!(from_stdin, once);
}

#[test]
fn flags_choose_image_control_plane_and_classic_sidecars() {
    let (code, out, err) = inject(
        &[
            "-f",
            &path("app.yaml"),
            "--image",
            "registry.local/mesh-proxy:dev",
            "--control-plane-addr",
            "10.1.2.3:15012",
            "--trust-domain",
            "example.org",
            "--no-native-sidecars",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    // A long-running Deployment without init containers: classic mode costs nothing
    // worth a warning, as the postStart hook holds the application until the proxy is
    // ready.
    assert_eq!(err, "", "{err}");
    let d = &docs(&out)[0];
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(names(&pod["containers"]), ["mesh-proxy", "server"]);
    assert_eq!(names(&pod["initContainers"]), ["mesh-init"]);
    let proxy = &pod["containers"][0];
    assert_eq!(
        proxy["lifecycle"]["postStart"]["exec"]["command"],
        serde_json::json!(["mesh-proxy", "wait"])
    );
    assert_eq!(proxy["image"], "registry.local/mesh-proxy:dev");
    let env = |name: &str| {
        proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap()
    };
    assert_eq!(env("MESH_CONTROL_ADDR"), "10.1.2.3:15012");
    assert_eq!(env("MESH_TRUST_DOMAIN"), "example.org");
    assert_eq!(
        env("MESH_CONTROL_PLANE_IDENTITY"),
        "spiffe://example.org/ns/mesh-system/sa/mesh-control"
    );

    let (code, _, err) = inject(
        &["-f", &path("app.yaml"), "--hub", "h", "--image", "i:1"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = inject(
        &["-f", &path("app.yaml"), "--trust-domain", "Bad Domain"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--trust-domain"), "{err}");
}

#[test]
fn invalid_yaml_names_file_document_and_line() {
    let (code, out, err) = inject(&["-f", &path("bad-yaml.yaml")], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    let prefix = format!("error: {}: document 2 (line ", path("bad-yaml.yaml"));
    assert!(err.starts_with(&prefix), "{err}");
    assert!(err.contains("invalid YAML"), "{err}");
    let line: usize = err[prefix.len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((9..=11).contains(&line), "{err}");
}

#[test]
fn invalid_annotation_names_document_resource_annotation_and_value() {
    let (code, out, err) = inject(&["-f", &path("bad-annotation.yaml")], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}: document 2 (StatefulSet db, line 9): annotation \
             traffic.sidecar.mesh.dev/excludeInboundPorts: \"5432,99999\" is invalid: \
             \"99999\" is not a port number (1-65535); expected a comma-separated list of \
             ports (1-65535) and port ranges, e.g. \"8080,9000-9010\"",
            path("bad-annotation.yaml")
        )
    );
}

#[test]
fn unreadable_input_is_an_error() {
    let missing = path("no-such-file.yaml");
    let (code, out, err) = inject(&["-f", &missing], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert!(
        err.starts_with(&format!("error: {missing}: cannot read: ")),
        "{err}"
    );
    let (code, _, err) = inject(&["-f", "-"], Some("\u{feff}ok: [\u{0}"));
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: <stdin>: document 1 "), "{err}");
}
