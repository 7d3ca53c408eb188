//! `meshctl proxy-status` and `meshctl proxy-config` end to end: the real binary against a
//! fake debug API (hyper on 127.0.0.1, port 0) serving documents built from the mesh-api
//! types, and against addresses where nothing answers.

mod support;

use std::process::{Command, Output};

use mesh_api::status::{ProxyConfigDump, ProxySecret, ProxySecretList, ProxyStatusList};
use support::fixtures::{mk_config, mk_config_dump, mk_secret, mk_secret_list, mk_status_list};
use support::server::{Canned, FakeControlPlane, percent_decode};

/// The debug API as mesh-control serves it, over the fixtures: the productpage proxy has a
/// config dump; `reviews` matches two proxies; `/debug/secrets` selects by the shared rule.
fn debug_api() -> FakeControlPlane {
    FakeControlPlane::start(|path, query| match path {
        "/debug/proxies" => Canned::json(&mk_status_list()),
        "/debug/secrets" => secrets(query.and_then(|q| q.strip_prefix("proxy="))),
        "/debug/config" => {
            let proxy = query
                .and_then(|q| q.strip_prefix("proxy="))
                .map(percent_decode)
                .unwrap_or_default();
            let dump = mk_config_dump();
            if [
                dump.proxy.id.as_str(),
                "productpage-v1-6b7f.default",
                "productpage-v1-6b7f",
            ]
            .contains(&proxy.as_str())
            {
                Canned::json(&dump)
            } else if proxy == "reviews" {
                Canned::text(
                    409,
                    "\"reviews\" matches several proxies: reviews-v1.default, reviews-v2.default\n",
                )
            } else {
                Canned::text(404, format!("no proxy matches {proxy:?}\n"))
            }
        }
        _ => Canned::text(404, "not found\n"),
    })
}

/// `GET /debug/secrets[?proxy=]`: every secret, or those `proxy` names by
/// `select_proxies` (ids are `mode~ip~pod.namespace`); 404 when none.
fn secrets(proxy: Option<&str>) -> Canned {
    let list = mk_secret_list();
    let Some(query) = proxy.map(percent_decode) else {
        return Canned::json(&list);
    };
    let keyed: Vec<(&ProxySecret, String, String)> = list
        .secrets
        .iter()
        .map(|s| {
            let name = s.proxy.rsplit('~').next().unwrap();
            let ns = s.identity.split('/').nth(4).unwrap();
            let pod = name.strip_suffix(&format!(".{ns}")).unwrap();
            (s, pod.to_owned(), ns.to_owned())
        })
        .collect();
    let found: Vec<ProxySecret> =
        mesh_api::status::select_proxies(&keyed, &query, |(s, pod, ns)| {
            (s.proxy.as_str(), pod.as_str(), ns.as_str())
        })
        .into_iter()
        .map(|(s, _, _)| (*s).clone())
        .collect();
    if found.is_empty() {
        return Canned::text(
            404,
            format!("no certificate was issued to a proxy matching {query:?}; issued to: ...\n"),
        );
    }
    Canned::json(&ProxySecretList {
        now_unix_ms: list.now_unix_ms,
        secrets: found,
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn meshctl(args: &[&str]) -> Run {
    meshctl_with_env(args, None)
}

fn meshctl_with_env(args: &[&str], addr_env: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshctl"));
    cmd.args(args).env_remove("MESH_CONTROL_DEBUG_ADDR");
    if let Some(addr) = addr_env {
        cmd.env("MESH_CONTROL_DEBUG_ADDR", addr);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run meshctl");
    Run {
        code: status.code().expect("exit code"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// A loopback address where nothing listens: a port just released.
fn refused_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

#[test]
fn status_table_shows_sync_states_and_nack_reasons() {
    let cp = debug_api();
    let run = meshctl(&["proxy-status", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "mesh-control 0.1.0, config version 42");
    assert!(lines[1].starts_with("NAME "), "{}", run.stdout);
    for header in [
        "ID",
        "VERSION",
        "CONFIG VERSION",
        "SYNC",
        "LAST ACK",
        "CONNECTED",
    ] {
        assert!(lines[1].contains(header), "{header}: {}", lines[1]);
    }
    let row = |name: &str| -> Vec<&str> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {}", run.stdout));
        line.split_whitespace().collect()
    };
    assert_eq!(
        row("productpage-v1-6b7f.default"),
        [
            "productpage-v1-6b7f.default",
            "sidecar~10.0.0.5~productpage-v1-6b7f.default",
            "0.1.0",
            "42",
            "SYNCED",
            "850ms",
            "2h5m"
        ]
    );
    assert_eq!(
        row("ratings-v1-8f2a.bookinfo")[4..],
        ["NACKED", "3m4s", "1d"]
    );
    assert_eq!(
        row("reviews-v2-5c9d.default")[4..],
        ["STALE", "12s", "3m4s"]
    );
    assert_eq!(
        row("ingress-gw-1.mesh-system")[3..],
        ["-", "STALE", "never", "850ms"]
    );
    assert_eq!(
        *lines.last().unwrap(),
        "ratings-v1-8f2a.bookinfo: NACKED mesh.discovery.v1.RouteTable version 42: invalid route table \"ratings.bookinfo.svc.cluster.local:9080\": http[0].action.forward.backends: weights must not all be zero"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn check_exits_1_unless_every_proxy_is_synced() {
    let cp = debug_api();
    let run = meshctl(&["proxy-status", "--check", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("NACKED"), "the report is still printed");
    assert_eq!(
        run.stderr.trim_end(),
        "check failed: 3 of 4 proxies not SYNCED: ratings-v1-8f2a.bookinfo (NACKED), reviews-v2-5c9d.default (STALE), ingress-gw-1.mesh-system (STALE)"
    );

    let run = meshctl(&[
        "proxy-status",
        "productpage-v1-6b7f.default",
        "--check",
        "--control-plane",
        &cp.addr(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);

    // Without --check the same states are a report: exit 0.
    let run = meshctl(&[
        "proxy-status",
        "ratings-v1-8f2a",
        "--control-plane",
        &cp.addr(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("NACKED"), "{}", run.stdout);
    assert!(!run.stdout.contains("productpage"), "{}", run.stdout);
}

#[test]
fn json_and_yaml_are_the_document() {
    let cp = debug_api();
    let run = meshctl(&["proxy-status", "-o", "json", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let back: ProxyStatusList = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(back, mk_status_list());

    let run = meshctl(&["proxy-status", "-o", "yaml", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let back: ProxyStatusList = serde_saphyr::from_str(&run.stdout).unwrap();
    assert_eq!(back, mk_status_list());

    // One proxy: the document with just that one.
    let run = meshctl(&[
        "proxy-status",
        "reviews-v2-5c9d",
        "-o",
        "json",
        "--control-plane",
        &cp.addr(),
    ]);
    let back: ProxyStatusList = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(back.proxies.len(), 1);
    assert_eq!(back.proxies[0].pod_name, "reviews-v2-5c9d");
}

#[test]
fn unknown_proxy_exits_1_with_the_known_names() {
    let cp = debug_api();
    let run = meshctl(&["proxy-status", "details-v1", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr.trim_end(),
        "error: no proxy matches \"details-v1\"; connected proxies: ratings-v1-8f2a.bookinfo, productpage-v1-6b7f.default, reviews-v2-5c9d.default, ingress-gw-1.mesh-system"
    );
}

#[test]
fn the_address_can_come_from_the_environment() {
    let cp = debug_api();
    let run = meshctl_with_env(&["proxy-status"], Some(&cp.addr()));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("SYNCED"), "{}", run.stdout);
}

#[test]
fn unreachable_control_plane_names_cause_and_fix() {
    let addr = refused_addr();
    for args in [
        vec!["proxy-status", "--control-plane", &addr],
        vec![
            "proxy-config",
            "productpage-v1-6b7f",
            "--control-plane",
            &addr,
        ],
    ] {
        let run = meshctl(&args);
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        assert_eq!(
            run.stderr.trim_end(),
            format!(
                "error: cannot reach the control plane at {addr}: connection refused. Is mesh-control running? In local mode start it with `mesh-control --config-dir DIR`; on Kubernetes use --kubernetes."
            )
        );
    }
}

#[test]
fn bad_answers_are_explained() {
    let html = FakeControlPlane::start(|_, _| Canned {
        status: 200,
        content_type: "text/html",
        body: "<!DOCTYPE html><title>Grafana</title>".to_owned(),
    });
    let run = meshctl(&["proxy-status", "--control-plane", &html.addr()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "answered GET /debug/proxies with something that is not JSON (content-type text/html"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("<!DOCTYPE html>"), "{}", run.stderr);

    let failing = FakeControlPlane::start(|_, _| Canned::text(503, "registry not synced yet\n"));
    let run = meshctl(&["proxy-status", "--control-plane", &failing.addr()]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "error: the control plane at {} answered GET /debug/proxies with 503 Service Unavailable: registry not synced yet",
            failing.addr()
        )
    );

    let other_shape =
        FakeControlPlane::start(|_, _| Canned::json(&serde_json::json!({"proxies": []})));
    let run = meshctl(&["proxy-status", "--control-plane", &other_shape.addr()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "cannot read the control plane's answer to GET /debug/proxies: missing field"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let run = meshctl(&["proxy-status", "-o", "xml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("[possible values: table, json, yaml]"),
        "{}",
        run.stderr
    );
    let run = meshctl(&["proxy-config", "x", "listener"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("[possible values: listeners, routes, clusters, endpoints, all, secret]"),
        "{}",
        run.stderr
    );
    let run = meshctl(&["proxy-status", "--control-plane", "localhost"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("expected HOST:PORT"), "{}", run.stderr);
    let run = meshctl(&["proxy-status", "--context", "kind-mesh"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--kubernetes"), "{}", run.stderr);
}

#[test]
fn config_sections_print_their_rows() {
    let cp = debug_api();
    let addr = cp.addr();
    let section = |name: &str| -> String {
        let run = meshctl(&[
            "proxy-config",
            "productpage-v1-6b7f.default",
            name,
            "--control-plane",
            &addr,
        ]);
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
        run.stdout
    };
    let words = |text: &str, first: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("no line starting with {first:?}: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };

    let listeners = section("listeners");
    assert_eq!(
        words(&listeners, "10.96.0.10:9080"),
        [
            "10.96.0.10:9080",
            "reviews.default.svc.cluster.local",
            "http",
            "9080"
        ]
    );
    assert_eq!(
        words(&listeners, "[fd00::11]:9080"),
        [
            "[fd00::11]:9080",
            "ratings.default.svc.cluster.local",
            "grpc",
            "9080"
        ]
    );
    assert_eq!(words(&listeners, "-:3306")[2], "tcp");
    assert!(listeners.contains("inbound mTLS: strict\n  port 9090: permissive\n"));

    let routes = section("routes");
    assert_eq!(
        words(&routes, "reviews.default.svc.cluster.local:9080"),
        [
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local,",
            "reviews",
            "+1",
            "9080",
            "2"
        ]
    );
    assert!(
        routes.contains("  http[1]: * → outbound|9080|v1|reviews.default.svc.cluster.local 90%, outbound|9080|v2|reviews.default.svc.cluster.local 10%\n"),
        "{routes}"
    );
    assert!(
        routes.contains("[timeout=2s retries=3 per-try=500ms]"),
        "{routes}"
    );

    let clusters = section("clusters");
    assert_eq!(
        words(&clusters, "outbound|9080|v1|"),
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "roundRobin",
            "version=v1",
            "connections=100",
            "pending=10",
            "on",
            "istioMutual"
        ]
    );

    let endpoints = section("endpoints");
    assert_eq!(
        words(&endpoints, "10.0.0.7:8080"),
        [
            "10.0.0.7:8080",
            "draining",
            "default/reviews-v2-5c9d",
            "reviews.default.svc.cluster.local:9080",
            "yes"
        ]
    );
    assert_eq!(words(&endpoints, "10.0.3.4:3306")[4], "no");

    // `all` is the default section: the header, then every section.
    let all = section("all");
    assert!(
        all.starts_with("proxy productpage-v1-6b7f.default (id "),
        "{all}"
    );
    for part in [&listeners, &routes, &clusters, &endpoints] {
        assert!(all.contains(part.as_str()), "{all}");
    }
    let run = meshctl(&[
        "proxy-config",
        "productpage-v1-6b7f",
        "--control-plane",
        &addr,
    ]);
    assert_eq!(run.stdout, all);
}

#[test]
fn config_json_and_yaml_hold_the_section() {
    let cp = debug_api();
    let addr = cp.addr();
    let id = mk_config_dump().proxy.id;
    let run = meshctl(&["proxy-config", &id, "-o", "json", "--control-plane", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dump: ProxyConfigDump = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(dump, mk_config_dump());

    let run = meshctl(&[
        "proxy-config",
        &id,
        "routes",
        "-o",
        "yaml",
        "--control-plane",
        &addr,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Routes {
        routes: Vec<mesh_api::model::RouteTable>,
    }
    let back: Routes = serde_saphyr::from_str(&run.stdout).unwrap();
    assert_eq!(back.routes, mk_config().routes);
}

#[test]
fn config_of_an_unknown_or_ambiguous_proxy_exits_1_with_the_reason() {
    let cp = debug_api();
    let run = meshctl(&["proxy-config", "details v1", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    // The name travels percent-encoded and comes back in the control plane's reason.
    assert_eq!(
        run.stderr,
        "error: proxy \"details v1\": no proxy matches \"details v1\"\nhint: `meshctl proxy-status` lists the connected proxies\n"
    );
    let run = meshctl(&["proxy-config", "reviews", "--control-plane", &cp.addr()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("error: proxy \"reviews\": \"reviews\" matches several proxies"),
        "{}",
        run.stderr
    );
}

#[test]
fn secret_shows_identity_chain_expiry_and_roots() {
    let cp = debug_api();
    let addr = cp.addr();
    // By pod name, pod.namespace or id: the same answer.
    let mut outputs = Vec::new();
    for proxy in [
        "productpage-v1-6b7f",
        "productpage-v1-6b7f.default",
        "sidecar~10.0.0.5~productpage-v1-6b7f.default",
    ] {
        let run = meshctl(&["proxy-config", proxy, "secret", "--control-plane", &addr]);
        assert_eq!(run.code, 0, "{proxy}: {}{}", run.stdout, run.stderr);
        assert_eq!(run.stderr, "");
        outputs.push(run.stdout);
    }
    assert!(outputs.iter().all(|o| *o == outputs[0]), "{outputs:#?}");
    let text = &outputs[0];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "proxy sidecar~10.0.0.5~productpage-v1-6b7f.default",
            "identity spiffe://cluster.local/ns/default/sa/productpage",
            "issued 2m ago, authenticated by token",
        ]
    );
    let words = |first: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("no line starting with {first:?}: {text}"))
            .split_whitespace()
            .collect()
    };
    assert_eq!(
        words("TYPE "),
        [
            "TYPE", "SERIAL", "SPIFFE", "ID", "NOT", "BEFORE", "NOT", "AFTER", "ISSUER"
        ]
    );
    assert_eq!(
        words("leaf "),
        [
            "leaf",
            "3a:f1:07:9c:21:5e:88:10",
            "spiffe://cluster.local/ns/default/sa/productpage",
            "2023-11-14T22:10:20Z",
            "2023-11-15T10:10:20Z",
            "(expires",
            "in",
            "11h57m)",
            "O=cluster.local,CN=mesh",
            "intermediate"
        ]
    );
    assert_eq!(words("intermediate ")[1], "02");
    assert_eq!(words("SUBJECT "), ["SUBJECT", "SERIAL", "NOT", "AFTER"]);
    assert_eq!(
        words("O=cluster.local,CN=mesh root 2022"),
        [
            "O=cluster.local,CN=mesh",
            "root",
            "2022",
            "7f:00:3c",
            "2023-11-19T22:13:20Z",
            "(expires",
            "in",
            "5d)"
        ]
    );

    // Not part of `all`, which is the computed config only.
    let all = meshctl(&[
        "proxy-config",
        "productpage-v1-6b7f",
        "--control-plane",
        &addr,
    ]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(!all.stdout.contains("Certificate chain"), "{}", all.stdout);
}

#[test]
fn secret_of_an_expired_certificate_says_expired() {
    let cp = debug_api();
    let run = meshctl(&[
        "proxy-config",
        "ratings-v1-8f2a.bookinfo",
        "secret",
        "--control-plane",
        &cp.addr(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let leaf = run.stdout.lines().find(|l| l.starts_with("leaf ")).unwrap();
    assert!(
        leaf.contains(" 2023-11-14T22:10:16Z (EXPIRED 3m4s ago) "),
        "{leaf}"
    );
    assert!(
        run.stdout.contains("authenticated by certificate"),
        "{}",
        run.stdout
    );
}

#[test]
fn secret_json_and_yaml_are_the_proxy_secret() {
    let cp = debug_api();
    let addr = cp.addr();
    for (format, parse) in [
        (
            "json",
            (|s: &str| serde_json::from_str::<ProxySecret>(s).map_err(|e| e.to_string()))
                as fn(&str) -> Result<ProxySecret, String>,
        ),
        ("yaml", |s: &str| {
            serde_saphyr::from_str::<ProxySecret>(s).map_err(|e| e.to_string())
        }),
    ] {
        let run = meshctl(&[
            "proxy-config",
            "productpage-v1-6b7f",
            "secret",
            "-o",
            format,
            "--control-plane",
            &addr,
        ]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert_eq!(
            parse(&run.stdout),
            Ok(mk_secret()),
            "{format}: {}",
            run.stdout
        );
    }
}

#[test]
fn secret_of_an_unknown_or_ambiguous_proxy_exits_1_with_the_reason() {
    let cp = debug_api();
    let run = meshctl(&[
        "proxy-config",
        "details-v1",
        "secret",
        "--control-plane",
        &cp.addr(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: no certificate issued to \"details-v1\": is it running with --control-plane and a token? see `meshctl proxy-status`\n\
         the control plane says: no certificate was issued to a proxy matching \"details-v1\"; issued to: ...\n"
    );

    // A pod name in two namespaces: the shape of the other sections' ambiguity error.
    let run = meshctl(&[
        "proxy-config",
        "reviews-v2-5c9d",
        "secret",
        "--control-plane",
        &cp.addr(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr,
        "error: proxy \"reviews-v2-5c9d\": \"reviews-v2-5c9d\" matches 2 proxies (sidecar~10.0.0.7~reviews-v2-5c9d.default, sidecar~10.1.0.7~reviews-v2-5c9d.staging); name one by id or pod.namespace\n\
         hint: `meshctl proxy-status` lists the connected proxies\n"
    );
    let run = meshctl(&[
        "proxy-config",
        "reviews-v2-5c9d.staging",
        "secret",
        "--control-plane",
        &cp.addr(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("identity spiffe://cluster.local/ns/staging/sa/reviews\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn secret_from_a_control_plane_without_the_endpoint_is_explained() {
    // mesh-control before certificate issuance: the path itself is unknown.
    let old = FakeControlPlane::start(|path, _| {
        Canned::text(
            404,
            format!(
                "{path}: not found; try /debug/proxies, /debug/config?proxy=..., /debug/registry, /metrics\n"
            ),
        )
    });
    let run = meshctl(&[
        "proxy-config",
        "productpage-v1-6b7f",
        "secret",
        "--control-plane",
        &old.addr(),
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "error: the control plane at {} does not serve /debug/secrets: it predates certificate issuance; upgrade mesh-control or use a meshctl of its version",
            old.addr()
        )
    );
}
