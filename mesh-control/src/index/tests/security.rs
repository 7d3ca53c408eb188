//! PeerAuthentication and AuthorizationPolicy.

use mesh_api::model::{
    AuthzAction, Condition, ConditionKey, Glob, InboundPolicy, MtlsMode, Operation, Rule, Source,
};

use super::*;

fn pa(name: &str, ns: &str, selector: Option<&str>, mode: &str, ports: &str) -> String {
    let selector = selector.map_or(String::new(), |s| {
        format!("  selector: {{matchLabels: {{{s}}}}}\n")
    });
    let ports = if ports.is_empty() {
        String::new()
    } else {
        format!("  portLevelMtls: {{{ports}}}\n")
    };
    format!(
        "apiVersion: security.mesh.dev/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{selector}  mtls: {{mode: {mode}}}\n{ports}"
    )
}

/// The reviews-v1 sidecar (its workload has `app: reviews, version: v1`).
fn reviews_v1() -> Node {
    mk_node("default", "reviews-v1", "reviews")
}

fn inbound(docs: &[String]) -> InboundPolicy {
    let mut all = bookinfo_reviews();
    all.extend_from_slice(docs);
    let index = mk_index(&all);
    proxy(&index, &reviews_v1()).inbound
}

#[test]
fn strict_by_default() {
    assert_eq!(
        inbound(&[]),
        InboundPolicy {
            mode: MtlsMode::Strict,
            port_overrides: Default::default()
        }
    );
}

#[test]
fn peer_authentication_precedence() {
    let mesh = pa("default", "mesh-system", None, "PERMISSIVE", "");
    let ns = pa("default", "default", None, "DISABLE", "");
    let wl = pa("reviews", "default", Some("app: reviews"), "STRICT", "");
    let unset_wl = pa("reviews", "default", Some("app: reviews"), "UNSET", "");
    let other_ns = pa("default", "other", None, "DISABLE", "");
    let other_wl = pa("ratings", "default", Some("app: ratings"), "DISABLE", "");

    assert_eq!(
        inbound(std::slice::from_ref(&mesh)).mode,
        MtlsMode::Permissive
    );
    assert_eq!(inbound(&[mesh.clone(), ns.clone()]).mode, MtlsMode::Disable);
    assert_eq!(
        inbound(&[mesh.clone(), ns.clone(), wl]).mode,
        MtlsMode::Strict
    );
    // UNSET inherits from the namespace, then the mesh.
    assert_eq!(
        inbound(&[mesh.clone(), ns, unset_wl.clone()]).mode,
        MtlsMode::Disable
    );
    assert_eq!(
        inbound(&[mesh, unset_wl.clone()]).mode,
        MtlsMode::Permissive
    );
    assert_eq!(inbound(&[unset_wl]).mode, MtlsMode::Strict);
    // Policies for other namespaces or workloads do not apply.
    assert_eq!(inbound(&[other_ns, other_wl]).mode, MtlsMode::Strict);
}

#[test]
fn port_level_mtls_comes_from_the_workload_policy_only() {
    let ns = pa(
        "default",
        "default",
        None,
        "STRICT",
        "8080: {mode: DISABLE}",
    );
    let wl = pa(
        "reviews",
        "default",
        Some("app: reviews"),
        "STRICT",
        "9080: {mode: PERMISSIVE}, 9081: {mode: UNSET}",
    );
    let p = inbound(&[ns.clone(), wl]);
    assert_eq!(p.mode, MtlsMode::Strict);
    assert_eq!(p.port_overrides, [(9080, MtlsMode::Permissive)].into());
    assert_eq!(p.mode_for(9081), MtlsMode::Strict, "UNSET inherits");

    let mut docs = bookinfo_reviews();
    docs.push(ns);
    let index = mk_index(&docs);
    assert!(
        proxy(&index, &reviews_v1())
            .inbound
            .port_overrides
            .is_empty()
    );
    assert_warned(
        &index,
        &[
            "PeerAuthentication default/default",
            "portLevelMtls needs a selector",
        ],
    );
}

#[test]
fn oldest_selector_policy_wins_and_the_conflict_is_reported() {
    let a = pa(
        "a-by-app",
        "default",
        Some("app: reviews"),
        "PERMISSIVE",
        "",
    );
    let b = pa(
        "b-by-version",
        "default",
        Some("version: v1"),
        "DISABLE",
        "",
    );
    let mut docs = bookinfo_reviews();
    docs.extend([a, b]);
    let index = mk_index(&docs);
    assert_eq!(
        proxy(&index, &reviews_v1()).inbound.mode,
        MtlsMode::Permissive
    );
    assert_warned(
        &index,
        &[
            "PeerAuthentication default/b-by-version",
            "PeerAuthentication default/a-by-app",
            "workload default/reviews-v1",
        ],
    );
    // With creation timestamps, the older one wins whatever its name.
    let mut docs = bookinfo_reviews();
    docs.push(
        r#"
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: a-new, creationTimestamp: "2024-05-01T00:00:00Z"}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}}
---
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: z-old, creationTimestamp: "2023-01-01T00:00:00Z"}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}
"#
        .to_owned(),
    );
    let index = mk_index(&docs);
    assert_eq!(proxy(&index, &reviews_v1()).inbound.mode, MtlsMode::Disable);
}

fn ap(name: &str, ns: &str, body: &str) -> String {
    format!(
        "apiVersion: security.mesh.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}"
    )
}

fn applied(index: &Index, node: &Node) -> Vec<String> {
    proxy(index, node)
        .authorization
        .iter()
        .map(|p| p.resource_name())
        .collect()
}

#[test]
fn authorization_policy_selection() {
    let mut docs = bookinfo_reviews();
    docs.extend([
        ap(
            "mesh-deny",
            "mesh-system",
            "  action: DENY\n  rules: [{from: [{source: {notNamespaces: [\"*\"]}}]}]\n",
        ),
        ap(
            "mesh-selected",
            "mesh-system",
            "  selector: {matchLabels: {version: v1}}\n  rules: [{}]\n",
        ),
        ap("ns-wide", "default", "  rules: [{}]\n"),
        ap(
            "v1-only",
            "default",
            "  selector: {matchLabels: {app: reviews, version: v1}}\n  rules: [{}]\n",
        ),
        ap(
            "v2-only",
            "default",
            "  selector: {matchLabels: {version: v2}}\n  rules: [{}]\n",
        ),
        ap("other-ns", "other", "  rules: [{}]\n"),
        ap(
            "other-ns-selector",
            "other",
            "  selector: {matchLabels: {app: reviews}}\n  rules: [{}]\n",
        ),
    ]);
    let index = mk_index(&docs);
    assert_eq!(
        applied(&index, &reviews_v1()),
        [
            "default/ns-wide",
            "default/v1-only",
            "mesh-system/mesh-deny",
            "mesh-system/mesh-selected"
        ]
    );
    assert_eq!(
        applied(&index, &mk_node("default", "reviews-v2", "reviews")),
        [
            "default/ns-wide",
            "default/v2-only",
            "mesh-system/mesh-deny"
        ]
    );
    // A node naming no known workload is selected by its own labels.
    let mut node = mk_node("other", "x", "x");
    node.labels = [("app".to_owned(), "reviews".to_owned())].into();
    assert_eq!(
        applied(&index, &node),
        [
            "mesh-system/mesh-deny",
            "other/other-ns",
            "other/other-ns-selector"
        ]
    );
}

#[test]
fn authorization_rules_translate_field_by_field() {
    let mut docs = bookinfo_reviews();
    docs.push(ap(
        "full",
        "default",
        r#"  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/productpage", "*/sa/admin"]
        notPrincipals: ["cluster.local/ns/default/sa/blocked"]
        namespaces: [default]
        notNamespaces: ["test-*"]
        ipBlocks: [10.0.0.0/8]
        notIpBlocks: [10.9.0.0/16]
    to:
    - operation:
        hosts: ["reviews*"]
        notHosts: [evil.example]
        ports: ["9080"]
        notPorts: ["9090"]
        methods: [GET, HEAD]
        notMethods: [DELETE]
        paths: ["/reviews/*"]
        notPaths: ["/reviews/admin*"]
    when:
    - {key: "request.headers[X-Version]", values: ["v1", "v2*"]}
    - {key: source.ip, notValues: ["10.0.0.1"]}
    - {key: destination.port, values: ["9080"]}
"#,
    ));
    let index = mk_index(&docs);
    assert!(index.warnings().is_empty(), "{:#?}", warnings(&index));
    let spec = proxy(&index, &reviews_v1());
    let p = &spec.authorization[0];
    assert_eq!(
        (p.name.as_str(), p.namespace.as_str(), p.action),
        ("full", "default", AuthzAction::Allow)
    );
    let g = |s: &str| s.parse::<Glob>().unwrap();
    assert_eq!(
        p.rules,
        vec![Rule {
            from: vec![Source {
                principals: vec![
                    g("cluster.local/ns/default/sa/productpage"),
                    g("*/sa/admin")
                ],
                not_principals: vec![g("cluster.local/ns/default/sa/blocked")],
                namespaces: vec![g("default")],
                not_namespaces: vec![g("test-*")],
                ip_blocks: vec!["10.0.0.0/8".parse().unwrap()],
                not_ip_blocks: vec!["10.9.0.0/16".parse().unwrap()],
            }],
            to: vec![Operation {
                hosts: vec![g("reviews*")],
                not_hosts: vec![g("evil.example")],
                ports: vec![9080],
                not_ports: vec![9090],
                methods: vec!["GET".into(), "HEAD".into()],
                not_methods: vec!["DELETE".into()],
                paths: vec![g("/reviews/*")],
                not_paths: vec![g("/reviews/admin*")],
            }],
            when: vec![
                Condition {
                    key: ConditionKey::RequestHeader("x-version".into()),
                    values: vec!["v1".into(), "v2*".into()],
                    not_values: vec![],
                },
                Condition {
                    key: ConditionKey::SourceIp,
                    values: vec![],
                    not_values: vec!["10.0.0.1".into()],
                },
                Condition {
                    key: ConditionKey::DestinationPort,
                    values: vec!["9080".into()],
                    not_values: vec![],
                },
            ],
        }]
    );
}

#[test]
fn untranslatable_rules_fail_closed() {
    let jwt_rule = r#"{to: [{operation: {methods: [GET]}}], when: [{key: "request.auth.claims[iss]", values: [x]}]}"#;
    let mut docs = bookinfo_reviews();
    docs.extend([
        ap(
            "allow",
            "default",
            &format!("  action: ALLOW\n  rules:\n  - {jwt_rule}\n  - {{to: [{{operation: {{methods: [POST]}}}}]}}\n"),
        ),
        ap("deny", "default", &format!("  action: DENY\n  rules:\n  - {jwt_rule}\n")),
        ap(
            "bad-values",
            "default",
            "  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [not-a-cidr]}}]\n  - to: [{operation: {ports: [\"http\"], paths: [\"/a*b\"]}}]\n",
        ),
        ap("audit", "default", &format!("  action: AUDIT\n  rules:\n  - {jwt_rule}\n")),
    ]);
    let index = mk_index(&docs);
    let spec = proxy(&index, &reviews_v1());
    let by_name = |n: &str| spec.authorization.iter().find(|p| p.name == n).unwrap();

    // ALLOW: the rule that cannot be evaluated is dropped, the other kept.
    let allow = by_name("allow");
    assert_eq!(allow.rules.len(), 1);
    assert_eq!(allow.rules[0].to[0].methods, ["POST"]);
    // DENY: the rule becomes a match-everything rule.
    assert_eq!(by_name("deny").rules, vec![Rule::default()]);
    assert_eq!(
        by_name("bad-values").rules,
        vec![Rule::default(), Rule::default()]
    );
    assert_eq!(by_name("deny").action, AuthzAction::Deny);
    // AUDIT never decides: dropped.
    assert!(by_name("audit").rules.is_empty());

    assert_warned(
        &index,
        &[
            "AuthorizationPolicy default/allow",
            "rules[0]",
            "request.auth.claims[iss]",
            "dropped",
        ],
    );
    assert_warned(
        &index,
        &["AuthorizationPolicy default/deny", "matches every request"],
    );
    assert_warned(
        &index,
        &[
            "AuthorizationPolicy default/bad-values",
            "rules[0]",
            "ipBlocks",
        ],
    );
    assert_warned(
        &index,
        &[
            "AuthorizationPolicy default/bad-values",
            "rules[1]",
            "ports",
        ],
    );
}

#[test]
fn allow_policy_with_only_untranslatable_rules_allows_nothing() {
    let mut docs = bookinfo_reviews();
    docs.push(ap(
        "allow",
        "default",
        "  rules:\n  - when: [{key: \"request.auth.principal\", values: [x]}]\n",
    ));
    let index = mk_index(&docs);
    let spec = proxy(&index, &reviews_v1());
    assert_eq!(spec.authorization[0].action, AuthzAction::Allow);
    assert!(
        spec.authorization[0].rules.is_empty(),
        "an ALLOW policy without rules denies all"
    );
}
