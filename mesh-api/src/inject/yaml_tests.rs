//! Injection of YAML streams ([`inject_yaml`]).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use serde_json::Value;

use super::tests::strict_round_trip;
use super::*;

const APP: &str = include_str!("../../tests/fixtures/inject/app.yaml");
const WORKLOADS: &str = include_str!("../../tests/fixtures/inject/workloads.yaml");

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn inject(yaml: &str) -> YamlOutput {
    inject_yaml(yaml, &Context::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The documents of `text` as they are written, split at `---` lines.
fn raw_docs(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push_str(line);
        }
    }
    out
}

fn container_names(spec: &Value, key: &str) -> Vec<String> {
    spec[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn injects_the_deployment_and_copies_the_service_and_configmap_verbatim() {
    let out = inject(APP);
    let input = raw_docs(APP);
    let output = raw_docs(&out.yaml);
    assert_eq!(output.len(), 3, "{}", out.yaml);
    assert_ne!(output[0], input[0]);
    assert!(
        output[0].starts_with(
            "# The web tier: a Deployment, its Service and its config.\napiVersion: apps/v1\n"
        ),
        "the comment above the injected document stays:\n{}",
        output[0]
    );
    assert_eq!(output[1], input[1], "the Service, comments included");
    assert_eq!(output[2], input[2], "the ConfigMap, block scalar included");

    assert_eq!(out.injected(), 1);
    assert_eq!(
        out.reports,
        [DocumentReport {
            document: 1,
            line: 2,
            resource: "Deployment shop/web".to_owned(),
            result: DocumentResult::Injected {
                warnings: Vec::new()
            },
        }]
    );

    let parsed = docs(&out.yaml);
    let deployment: Deployment = strict_round_trip(&parsed[0]);
    let deployment_in: Deployment = serde_json::from_value(docs(APP).remove(0)).unwrap();
    let spec = deployment.spec.as_ref().unwrap();
    // Outside the template, nothing changed.
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(deployment.metadata, deployment_in.metadata);
    assert_eq!(spec.selector, deployment_in.spec.as_ref().unwrap().selector);
    // The template: native sidecar, the readiness probe rewritten through the proxy.
    let pod = spec.template.spec.as_ref().unwrap();
    let inits: Vec<_> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["mesh-init", "mesh-proxy"]);
    assert_eq!(
        pod.init_containers.as_ref().unwrap()[0].args.as_deref(),
        Some(&["init"].map(str::to_owned)[..])
    );
    let proxy_env = pod.init_containers.as_ref().unwrap()[1]
        .env
        .as_ref()
        .unwrap();
    let probes = proxy_env
        .iter()
        .find(|e| e.name == APP_PROBES_ENV)
        .and_then(|e| e.value.as_deref())
        .expect("MESH_APP_PROBES");
    assert_eq!(
        serde_json::from_str::<Value>(probes).unwrap(),
        serde_json::json!({"/app-health/web/readyz": {
            "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
            "timeoutSeconds": 1,
        }})
    );
    // The app container is what it was but for the readiness probe's handler (the
    // numeric cpu request reads as the same quantity), and the "yes" env value is still a
    // string.
    let mut containers_in = deployment_in
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers;
    containers_in[0].readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/app-health/web/readyz".to_owned()),
            port: IntOrString::Int(15021),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    });
    assert_eq!(pod.containers, containers_in);
    assert_eq!(
        pod.containers[0].env.as_ref().unwrap()[0].value.as_deref(),
        Some("yes")
    );
}

#[test]
fn injecting_the_output_again_changes_nothing() {
    for ctx in [
        Context::default(),
        Context {
            native_sidecars: false,
            ..Context::default()
        },
    ] {
        for input in [APP, WORKLOADS] {
            let once = inject_yaml(input, &ctx).unwrap();
            let twice = inject_yaml(&once.yaml, &ctx).unwrap();
            assert_eq!(twice.yaml, once.yaml);
            assert_eq!(twice.injected(), 0);
            assert!(
                twice.reports.iter().all(|r| matches!(
                    &r.result,
                    DocumentResult::Skipped(Skip::AlreadyInjected { status: Some(_) })
                        | DocumentResult::Skipped(Skip::OptedOut)
                )),
                "{:#?}",
                twice.reports
            );
        }
    }
}

/// Each workload kind's template is found; other kinds and a CRD with a `spec.template`
/// pass through; a List's items are injected; document order is kept.
#[test]
fn injects_every_workload_kind_and_passes_the_rest_through() {
    let out = inject(WORKLOADS);
    let input = docs(WORKLOADS);
    let output = docs(&out.yaml);
    assert_eq!(output.len(), input.len());
    for (i, (a, b)) in input.iter().zip(&output).enumerate() {
        assert_eq!(a["kind"], b["kind"], "document {}", i + 1);
        assert_eq!(a["metadata"]["name"], b["metadata"]["name"]);
    }
    let injected =
        |spec: &Value| container_names(spec, "initContainers").contains(&"mesh-proxy".to_owned());
    assert!(injected(&output[0]["spec"]), "Pod");
    for i in [1, 2, 3, 4, 6] {
        assert!(
            injected(&output[i]["spec"]["template"]["spec"]),
            "{}",
            output[i]["kind"]
        );
    }
    assert!(injected(
        &output[5]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    ));
    assert_eq!(
        output[7]["items"][0], input[7]["items"][0],
        "ConfigMap in a List"
    );
    assert!(injected(&output[7]["items"][1]["spec"]["template"]["spec"]));
    assert_eq!(output[8], input[8], "the Rollout CRD");
    assert_eq!(output[9], input[9], "the opted-out Deployment");
    assert!(raw_docs(&out.yaml)[8].contains("# Not ours"));
    assert!(raw_docs(&out.yaml)[9].contains("# stays as written"));

    let resources: Vec<_> = out.reports.iter().map(|r| r.resource.as_str()).collect();
    assert_eq!(
        resources,
        [
            "Pod debug",
            "StatefulSet db",
            "DaemonSet agent",
            "ReplicaSet rs",
            "Job migrate",
            "CronJob report",
            "ReplicationController legacy",
            "items[1] Deployment listed",
            "Deployment opted-out",
        ]
    );
    assert_eq!(
        out.reports[8].result,
        DocumentResult::Skipped(Skip::OptedOut)
    );
    assert_eq!(out.reports[8].document, 10);

    // The CronJob reads back strictly as a CronJob.
    let cron: CronJob = strict_round_trip(&output[5]);
    assert_eq!(cron.spec.unwrap().schedule, "0 3 * * *");
}

/// Strings a YAML 1.1 reader (kubectl's) would take for something else come out quoted,
/// and every value reads back as written.
#[test]
fn output_quotes_ambiguous_strings_for_yaml_1_1_readers() {
    let values = [
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "true",
        "null",
        "~",
        "",
        "0755",
        "1e3",
        "0x1F",
        "1:30",
        "2024-01-01",
        "- item",
        "a: b",
        "#hash",
        " lead",
        "multi\nline\n",
        "tab\there",
        "ünïcode",
        "'quoted'",
        "\"dq\"",
        "[x]",
        "{x}",
        "*star",
        "&amp",
        "!bang",
        "%pct",
        "@at",
        "`tick",
        "=",
        "<<",
    ];
    let env: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"name": format!("V{i}"), "value": v}))
        .collect();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "quoting"},
        "spec": {"containers": [{"name": "app", "image": "app", "env": env}]},
    });
    let out = inject(&serde_json::to_string_pretty(&doc).unwrap());
    let back = &docs(&out.yaml)[0];
    let app = back["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    assert_eq!(
        app["env"], doc["spec"]["containers"][0]["env"],
        "{}",
        out.yaml
    );
    for word in [
        "yes", "no", "on", "off", "y", "n", "true", "null", "0755", "1:30",
    ] {
        assert!(
            !out.yaml.contains(&format!("value: {word}\n")),
            "{word} unquoted:\n{}",
            out.yaml
        );
    }
}

#[test]
fn empty_documents_comments_and_marker_forms_are_kept() {
    let input = "# header comment\n---\n---   \n# only a comment\n--- {apiVersion: v1, kind: ConfigMap, metadata: {name: flow}}\n---\r\napiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: crlf\r\nspec:\r\n  containers:\r\n  - name: app\r\n    image: app\r\n";
    let out = inject(input);
    let expected_head = "# header comment\n---\n---   \n# only a comment\n--- {apiVersion: v1, kind: ConfigMap, metadata: {name: flow}}\n---\r\n";
    assert!(out.yaml.starts_with(expected_head), "{}", out.yaml);
    assert_eq!(out.reports.len(), 1);
    assert_eq!(out.reports[0].document, 2);
    assert_eq!(out.reports[0].line, 7);
    let parsed = docs(&out.yaml);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1]["metadata"]["name"], "crlf");
    assert_eq!(
        container_names(&parsed[1]["spec"], "initContainers"),
        ["mesh-init", "mesh-proxy"]
    );
    assert_eq!(inject(&out.yaml).yaml, out.yaml);
}

#[test]
fn json_input_is_injected() {
    let input = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "j"},
      "spec": {"selector": {"matchLabels": {"app": "j"}}, "template": {
        "metadata": {"labels": {"app": "j"}},
        "spec": {"containers": [{"name": "j", "image": "j"}]}}}}"#;
    let out = inject(input);
    assert_eq!(out.injected(), 1);
    let d = &docs(&out.yaml)[0];
    assert_eq!(
        container_names(&d["spec"]["template"]["spec"], "initContainers"),
        ["mesh-init", "mesh-proxy"]
    );
    // Everything else of the workload as written.
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "j");
}

// === errors ===

fn error(yaml: &str) -> String {
    match inject_yaml(yaml, &Context::default()) {
        Ok(out) => panic!("expected an error, got\n{}", out.yaml),
        Err(e) => e.to_string(),
    }
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";

#[test]
fn invalid_yaml_names_the_document_and_line() {
    let msg = error(&format!(
        "{SERVICE}---\n{SERVICE}---\nkind: Pod\nmetadata: [unclosed\n"
    ));
    assert!(msg.starts_with("document 3 (line "), "{msg}");
    assert!(msg.contains("invalid YAML"), "{msg}");
    let line: usize = msg["document 3 (line ".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((12..=13).contains(&line), "{msg}");

    let msg = error(&format!("{SERVICE}---\nkind: Pod\nkind: Service\n"));
    assert_eq!(
        msg,
        "document 2 (line 7, column 1): invalid YAML: duplicate mapping key: kind"
    );

    let msg = error(&format!("{SERVICE}---\n- just\n- a list\n"));
    assert!(msg.starts_with("document 2 ("), "{msg}");
    assert!(msg.contains("not a mapping"), "{msg}");
}

#[test]
fn unknown_and_mistyped_template_fields_are_errors_with_their_path() {
    let deployment = |container: &str| {
        format!(
            "{SERVICE}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  \
             namespace: shop\nspec:\n  template:\n    spec:\n      containers:\n      - \
             name: web\n        image: web\n{container}"
        )
    };
    let msg = error(&deployment("        imagePullPolicyy: Always\n"));
    assert!(
        msg.starts_with("document 2 (Deployment shop/web, line 6): "),
        "{msg}"
    );
    assert!(
        msg.contains("spec.template.spec.containers[0].imagePullPolicyy: unknown field"),
        "{msg}"
    );
    let msg = error(&deployment("        ports: 8080\n"));
    assert!(
        msg.contains("spec.template.spec.containers[0].ports: "),
        "{msg}"
    );
    let msg = error("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n");
    assert!(msg.contains("spec.template: missing"), "{msg}");
    // In a List, the item's path.
    let msg = error(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    \
         name: p\n  spec:\n    containerz: []\n",
    );
    assert!(
        msg.contains("items[0].spec.containerz: unknown field"),
        "{msg}"
    );
}

#[test]
fn invalid_annotations_name_document_resource_and_annotation() {
    let yaml = format!(
        "{SERVICE}---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  \
         schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          \
         annotations:\n            traffic.sidecar.mesh.dev/excludeOutboundPorts: 5432,x\n        \
         spec:\n          containers:\n          - name: c\n            image: c\n"
    );
    let msg = error(&yaml);
    assert!(
        msg.starts_with("document 2 (CronJob nightly, line 6): annotation traffic.sidecar.mesh.dev/excludeOutboundPorts: \"5432,x\" is invalid: \"x\" is not a port number"),
        "{msg}"
    );
}

#[test]
fn the_namespace_of_the_document_is_the_pods() {
    // No namespace in the document: the context's (invalid here) is used.
    let ctx = Context {
        namespace: "Bad NS".to_owned(),
        ..Context::default()
    };
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: c\n";
    let err = inject_yaml(pod, &ctx).unwrap_err();
    assert!(err.to_string().contains("ns/Bad NS/sa/default"), "{err}");
    let with_ns = pod.replace("  name: p\n", "  name: p\n  namespace: shop\n");
    assert_eq!(inject_yaml(&with_ns, &ctx).unwrap().injected(), 1);
}
