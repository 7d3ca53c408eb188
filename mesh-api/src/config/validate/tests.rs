use super::*;
use crate::config::Loader;

fn analyze(text: &str) -> ConfigSet {
    let mut loader = Loader::new();
    loader.add_str("test.yaml", text);
    let mut set = loader.finish();
    assert!(
        set.diagnostics.is_empty(),
        "fixture must load cleanly: {:#?}",
        set.diagnostics
    );
    validate(&mut set);
    set
}

/// The (code, path) pairs of the diagnostics.
fn codes(set: &ConfigSet) -> Vec<(Code, String)> {
    set.diagnostics
        .iter()
        .map(|d| (d.code, d.location.path.clone()))
        .collect()
}

const DR: &str = r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
"#;

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.mesh.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: reviews}}\n\
         spec:\n  hosts: [reviews]\n  http:\n{http}\n---\n{DR}"
    )
}

const SPLIT_90_10: &str = "  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10";

#[test]
fn a_good_canary_passes() {
    let set = analyze(&vs(SPLIT_90_10));
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
}

#[test]
fn weights_must_sum_to_100() {
    let set = analyze(&vs(&SPLIT_90_10.replace("weight: 10", "weight: 5")));
    assert_eq!(
        codes(&set),
        [(Code::WeightSum, "spec.http[0].route".to_string())]
    );
    let d = &set.diagnostics[0];
    assert!(d.message.contains("95"), "{d}");
    assert!(d.fix.as_deref().unwrap().contains("5 short"), "{d}");
    assert_eq!(d.location.line, 7, "{d}");
}

#[test]
fn weights_out_of_range_and_missing() {
    let set = analyze(&vs(&SPLIT_90_10
        .replace("weight: 90", "weight: 110")
        .replace("weight: 10", "weight: -10")));
    assert_eq!(
        codes(&set),
        [
            (
                Code::WeightRange,
                "spec.http[0].route[0].weight".to_string()
            ),
            (
                Code::WeightRange,
                "spec.http[0].route[1].weight".to_string()
            ),
        ]
    );
    let set = analyze(&vs("  - route:
    - destination: {host: reviews, subset: v1}
    - destination: {host: reviews, subset: v2}"));
    assert_eq!(codes(&set)[0].0, Code::WeightSum);
}

#[test]
fn undefined_subsets_are_errors() {
    let set = analyze(&vs(&SPLIT_90_10.replace("subset: v2", "subset: v3")));
    assert_eq!(
        codes(&set),
        [(
            Code::UndefinedSubset,
            "spec.http[0].route[1].destination.subset".to_string()
        )]
    );
    assert!(set.diagnostics[0].message.contains("v1, v2"));

    // No DestinationRule for the host at all.
    let set =
        analyze(&vs(SPLIT_90_10).replace("host: reviews\n  traffic", "host: ratings\n  traffic"));
    assert_eq!(set.diagnostics.len(), 2);
    assert!(
        set.diagnostics
            .iter()
            .all(|d| d.code == Code::UndefinedSubset)
    );
}

#[test]
fn subsets_resolve_across_namespaces_by_fqdn() {
    let text =
        vs(&SPLIT_90_10.replace("host: reviews,", "host: reviews.default.svc.cluster.local,"));
    assert!(analyze(&text).diagnostics.is_empty());
    // The same short name in another namespace is another service.
    let text = vs(SPLIT_90_10).replace(
        "metadata: {name: reviews}\nspec:\n  host: reviews\n",
        "metadata: {name: reviews, namespace: other}\nspec:\n  host: reviews\n",
    );
    let set = analyze(&text);
    assert!(
        set.diagnostics
            .iter()
            .all(|d| d.code == Code::UndefinedSubset)
    );
    assert_eq!(set.diagnostics.len(), 2);
}

#[test]
fn invalid_regex_is_named() {
    let set = analyze(&vs("  - match:
    - uri: {regex: \"/api/(v1\"}
    route:
    - destination: {host: reviews}"));
    assert_eq!(
        codes(&set),
        [(
            Code::InvalidRegex,
            "spec.http[0].match[0].uri.regex".to_string()
        )]
    );
    assert!(
        set.diagnostics[0].message.contains("unclosed group"),
        "{}",
        set.diagnostics[0]
    );
    assert_eq!(set.diagnostics[0].message.lines().count(), 1);
}

#[test]
fn string_match_needs_exactly_one_kind() {
    let set = analyze(&vs("  - match:
    - uri: {prefix: /a, exact: /b}
      headers:
        x-user: {}
    route:
    - destination: {host: reviews}"));
    assert_eq!(
        codes(&set),
        [
            (
                Code::InvalidStringMatch,
                "spec.http[0].match[0].uri".to_string()
            ),
            (
                Code::InvalidStringMatch,
                "spec.http[0].match[0].headers.x-user".to_string()
            ),
        ]
    );
}

#[test]
fn bad_durations_are_named() {
    let set = analyze(&vs("  - timeout: 2 seconds
    retries: {attempts: 3, perTryTimeout: \"500\", retryOn: \"5xx,connect-failure,sometimes\"}
    fault:
      delay: {fixedDelay: 1x, percentage: {value: 150}}
    route:
    - destination: {host: reviews}"));
    assert_eq!(
        codes(&set),
        [
            (Code::InvalidDuration, "spec.http[0].timeout".to_string()),
            (
                Code::InvalidDuration,
                "spec.http[0].retries.perTryTimeout".to_string()
            ),
            (
                Code::InvalidRetryOn,
                "spec.http[0].retries.retryOn".to_string()
            ),
            (
                Code::InvalidDuration,
                "spec.http[0].fault.delay.fixedDelay".to_string()
            ),
            (
                Code::InvalidPercentage,
                "spec.http[0].fault.delay.percentage.value".to_string()
            ),
        ]
    );
    let timeout = &set.diagnostics[0];
    assert_eq!(timeout.location.line, 7);
    assert!(timeout.fix.as_deref().unwrap().contains("500ms"));
}

#[test]
fn duration_in_a_destination_rule() {
    let text = vs(SPLIT_90_10).replace("interval: 10s", "interval: ten");
    assert_eq!(
        codes(&analyze(&text)),
        [(
            Code::InvalidDuration,
            "spec.trafficPolicy.outlierDetection.interval".to_string()
        )]
    );
}

#[test]
fn abort_status_and_route_actions() {
    let set = analyze(&vs("  - fault:
      abort: {httpStatus: 700, percentage: {value: 50}}
    route:
    - destination: {host: reviews}
  - fault:
      abort: {grpcStatus: NOPE}
    route:
    - destination: {host: reviews}
  - directResponse: {status: 200}
    route:
    - destination: {host: reviews}"));
    assert_eq!(
        codes(&set),
        [
            (
                Code::InvalidStatus,
                "spec.http[0].fault.abort.httpStatus".to_string()
            ),
            (Code::Ineffective, "spec.http[1]".to_string()),
            (
                Code::InvalidStatus,
                "spec.http[1].fault.abort.grpcStatus".to_string()
            ),
            (Code::Ineffective, "spec.http[2]".to_string()),
            (Code::InvalidRouteAction, "spec.http[2]".to_string()),
        ]
    );
}

#[test]
fn duplicates_and_conflicts_across_resources() {
    let one = vs(SPLIT_90_10);
    let set = analyze(&format!("{one}\n---\n{one}"));
    let got = codes(&set);
    assert!(
        got.contains(&(Code::DuplicateResource, "metadata.name".to_string())),
        "{got:?}"
    );
    assert!(
        got.contains(&(Code::ConflictingHosts, "spec.hosts[0]".to_string())),
        "{got:?}"
    );
    assert!(
        got.contains(&(Code::ConflictingHosts, "spec.host".to_string())),
        "{got:?}"
    );
}

#[test]
fn gateway_servers() {
    let set = analyze(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {mesh: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop/*.example.com"]
  - port: {number: 80, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 70000, name: x, protocol: SPDY}
    hosts: ["bad..host"]
"#,
    );
    assert_eq!(
        codes(&set),
        [
            (Code::InvalidProtocol, "spec.servers[0].tls".to_string()),
            (Code::InvalidPort, "spec.servers[2].port".to_string()),
            (Code::InvalidPort, "spec.servers[3].port.number".to_string()),
            (
                Code::InvalidProtocol,
                "spec.servers[3].port.protocol".to_string()
            ),
            (Code::InvalidHost, "spec.servers[3].hosts[0]".to_string()),
        ]
    );
}

#[test]
fn service_entries_and_workload_entries() {
    let set = analyze(
        r#"
apiVersion: networking.mesh.dev/v1alpha1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [api.example.com]
  addresses: [10.1.0.0/40]
  ports:
  - {number: 443, name: https, protocol: TLS}
  - {number: 443, name: https, protocol: GOPHER}
  resolution: STATIC
  endpoints:
  - address: 10.1.0.1
    ports: {http: 8080}
---
apiVersion: networking.mesh.dev/v1alpha1
kind: WorkloadEntry
metadata: {name: productcatalog-v1}
spec:
  address: not an address
  ports: {grpc: 0}
  labels: {app: productcatalog, version: v1}
  serviceAccount: productcatalog
"#,
    );
    assert_eq!(
        codes(&set),
        [
            (Code::InvalidAddress, "spec.addresses[0]".to_string()),
            (Code::InvalidPort, "spec.ports[1].number".to_string()),
            (Code::DuplicateName, "spec.ports[1].name".to_string()),
            (Code::InvalidProtocol, "spec.ports[1].protocol".to_string()),
            (
                Code::InvalidPort,
                "spec.endpoints[0].ports.http".to_string()
            ),
            (Code::InvalidAddress, "spec.address".to_string()),
            (Code::InvalidPort, "spec.ports.grpc".to_string()),
        ]
    );
}

#[test]
fn kubernetes_services() {
    let set = analyze(
        r#"
apiVersion: v1
kind: Service
metadata: {name: cart}
spec:
  clusterIP: 10.96.0.300
  selector: {app: cart}
  ports:
  - {port: 7070, targetPort: 7070}
  - {port: 7070, name: grpc}
"#,
    );
    assert_eq!(
        codes(&set),
        [
            (Code::InvalidAddress, "spec.clusterIP".to_string()),
            (Code::InvalidName, "spec.ports[0]".to_string()),
            (Code::InvalidPort, "spec.ports[1].port".to_string()),
        ]
    );
}

#[test]
fn security_policies() {
    let set = analyze(
        r#"
apiVersion: security.mesh.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
---
apiVersion: security.mesh.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: frontend}
spec:
  selector: {matchLabels: {app: frontend}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["spiffe://cluster.local/ns/default/sa/gateway", "cluster.local/ns/*/sa/x"]
        ipBlocks: [10.0.0.0/33]
    to:
    - operation: {methods: [get], paths: [public], ports: ["http"]}
    when:
    - {key: "request.auth.claims[iss]", values: [x]}
    - {key: "request.headers[x-team]"}
---
apiVersion: security.mesh.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-all}
spec: {}
"#,
    );
    assert_eq!(
        codes(&set),
        [
            (Code::InvalidMtls, "spec.portLevelMtls".to_string()),
            (
                Code::InvalidPrincipal,
                "spec.rules[0].from[0].source.principals[0]".to_string()
            ),
            (
                Code::InvalidPrincipal,
                "spec.rules[0].from[0].source.principals[1]".to_string()
            ),
            (
                Code::InvalidAddress,
                "spec.rules[0].from[0].source.ipBlocks[0]".to_string()
            ),
            (
                Code::InvalidPort,
                "spec.rules[0].to[0].operation.ports[0]".to_string()
            ),
            (
                Code::Ineffective,
                "spec.rules[0].to[0].operation.paths[0]".to_string()
            ),
            (
                Code::Ineffective,
                "spec.rules[0].to[0].operation.methods[0]".to_string()
            ),
            (
                Code::InvalidConditionKey,
                "spec.rules[0].when[0].key".to_string()
            ),
            (Code::InvalidValue, "spec.rules[0].when[1]".to_string()),
            (Code::Ineffective, "spec.rules".to_string()),
        ]
    );
    // The portLevelMtls key (a number in YAML) still locates to its line.
    assert_eq!(set.diagnostics[0].location.line, 7);
}

#[test]
fn catch_all_route_shadows_later_routes() {
    let set = analyze(&vs("  - route:
    - destination: {host: reviews, subset: v1}
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}"));
    assert_eq!(
        codes(&set),
        [(Code::Ineffective, "spec.http[1]".to_string())]
    );
}

#[test]
fn fqdn_expansion() {
    assert_eq!(fqdn("reviews", "prod"), "reviews.prod.svc.cluster.local");
    assert_eq!(
        fqdn("Reviews.Prod.svc.cluster.local.", "x"),
        "reviews.prod.svc.cluster.local"
    );
    assert_eq!(fqdn("*.example.com", "x"), "*.example.com");
}

#[test]
fn host_syntax() {
    assert!(check_host("reviews").is_ok());
    assert!(check_host("*.example.com").is_ok());
    assert!(check_host("*").is_ok());
    assert!(check_host("10.0.0.1").is_ok());
    assert!(check_host("a.*.com").is_err());
    assert!(check_host("-a.com").is_err());
    assert!(check_host("a..com").is_err());
    assert!(check_host("").is_err());
}

// === AuthorizationPolicy: what the proxy can match ===

/// An AuthorizationPolicy `p` in namespace `default` with `action` and `rules` (YAML flow
/// or block text under `rules:`).
fn authz(action: &str, rules: &str) -> String {
    format!(
        "apiVersion: security.mesh.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: p}}\n\
         spec:\n  action: {action}\n  rules:\n{rules}\n"
    )
}

/// The diagnostic at `path`.
fn at<'a>(set: &'a ConfigSet, path: &str) -> &'a Diagnostic {
    set.diagnostics
        .iter()
        .find(|d| d.location.path == path)
        .unwrap_or_else(|| panic!("no diagnostic at {path}: {:#?}", set.diagnostics))
}

#[test]
fn condition_keys_are_exactly_the_models() {
    // The list in messages names every key the model parses, and nothing else.
    fn listed(key: &ConditionKey) -> &'static str {
        // Exhaustive on purpose: a new key fails to compile here until it is listed.
        match key {
            ConditionKey::RequestHeader(_) => "request.headers[<name>]",
            ConditionKey::SourceIp => "source.ip",
            ConditionKey::RemoteIp => "remote.ip",
            ConditionKey::SourceNamespace => "source.namespace",
            ConditionKey::SourcePrincipal => "source.principal",
            ConditionKey::DestinationIp => "destination.ip",
            ConditionKey::DestinationPort => "destination.port",
            ConditionKey::ConnectionSni => "connection.sni",
        }
    }
    for k in CONDITION_KEYS {
        let key = condition_key(&k.replace("<name>", "x-user")).unwrap();
        assert_eq!(listed(&key), *k);
    }
    // Header names are case-insensitive, as the control plane reads them.
    assert_eq!(
        condition_key("request.headers[X-User]").unwrap(),
        ConditionKey::RequestHeader("x-user".into())
    );

    let set = analyze(&authz(
        "ALLOW",
        r#"  - when:
    - {key: remote.ip, values: [203.0.113.0/24]}
    - {key: destination.ip, notValues: ["10.0.0.1"]}
    - {key: connection.sni, values: ["*.example.com"]}
    - {key: "request.headers[X-User]", values: [jason]}
    - {key: destination.port, values: ["9080"]}
    - {key: source.principal, values: ["cluster.local/ns/default/sa/*"]}
    - {key: source.namespace, notValues: [kube-system]}"#,
    ));
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);

    // Keys analyze used to accept but the model rejects: the fix says where they belong.
    let set = analyze(&authz(
        "DENY",
        r#"  - when:
    - {key: request.method, values: [GET]}
    - {key: request.host, values: [a.example]}
    - {key: request.path, values: [/admin]}
    - {key: "request.auth.claims[iss]", values: [x]}"#,
    ));
    assert_eq!(
        codes(&set),
        (0..4)
            .map(|j| (
                Code::InvalidConditionKey,
                format!("spec.rules[0].when[{j}].key")
            ))
            .collect::<Vec<_>>()
    );
    let method = &set.diagnostics[0];
    assert!(
        method
            .message
            .contains("unsupported condition key \"request.method\""),
        "{method}"
    );
    assert!(
        method.message.contains("DENY rule match every request"),
        "{method}"
    );
    assert!(
        method.fix.as_deref().unwrap().contains("methods: [GET]"),
        "{method}"
    );
    assert!(
        set.diagnostics[2]
            .fix
            .as_deref()
            .unwrap()
            .contains("paths: [...]")
    );
    assert!(
        set.diagnostics[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("hosts: [...]")
    );
    assert!(
        set.diagnostics[3]
            .fix
            .as_deref()
            .unwrap()
            .contains("JWT) is not supported")
    );
}

#[test]
fn condition_values_are_checked_for_their_key() {
    let set = analyze(&authz(
        "ALLOW",
        r#"  - when:
    - {key: remote.ip, values: ["10.0.0.0/8"], notValues: [nope]}
    - {key: destination.port, values: [http]}
    - {key: "request.headers[x-user]", values: ["a*b"]}"#,
    ));
    assert_eq!(
        codes(&set),
        [
            (
                Code::InvalidAddress,
                "spec.rules[0].when[0].notValues[0]".to_string()
            ),
            (
                Code::InvalidPort,
                "spec.rules[0].when[1].values[0]".to_string()
            ),
            (
                Code::InvalidAuthzValue,
                "spec.rules[0].when[2].values[0]".to_string()
            ),
        ]
    );
    assert!(
        set.diagnostics[2]
            .message
            .contains("drops this rule, so it allows nothing"),
        "{}",
        set.diagnostics[2]
    );
}

#[test]
fn principals_must_be_identities_of_the_trust_domain() {
    let set = analyze(&authz(
        "ALLOW",
        r#"  - from:
    - source:
        principals:
        - productpage
        - default/productpage
        - example.org/ns/default/sa/productpage
        - cluster.local/default/productpage*
        - "*/ns/default"
        - cluster.local/ns/default/sa/productpage
        - "*/sa/admin"
        - cluster.local/ns/default/*
        - "*""#,
    ));
    let p = |i: usize| format!("spec.rules[0].from[0].source.principals[{i}]");
    assert_eq!(
        codes(&set),
        [
            (Code::PrincipalShape, p(0)),
            (Code::PrincipalShape, p(1)),
            (Code::ForeignTrustDomain, p(2)),
            (Code::PrincipalShape, p(3)),
            (Code::PrincipalShape, p(4)),
        ]
    );
    let bare = at(&set, &p(0));
    assert!(bare.message.starts_with("principal \"productpage\" can never match: peers' principals have the form `<trust domain>/ns/<namespace>/sa/<service account>`"), "{bare}");
    assert_eq!(
        bare.fix.as_deref(),
        Some("write \"cluster.local/ns/default/sa/productpage\"")
    );
    assert_eq!(
        at(&set, &p(1)).fix.as_deref(),
        Some("write \"cluster.local/ns/default/sa/productpage\"")
    );
    let foreign = at(&set, &p(2));
    assert!(
        foreign
            .message
            .contains("its trust domain \"example.org\" is not the mesh's (\"cluster.local\")"),
        "{foreign}"
    );
    assert_eq!(
        foreign.fix.as_deref(),
        Some(
            "write \"cluster.local/ns/default/sa/productpage\"; if the mesh's trust domain is \"example.org\", give it with --trust-domain example.org"
        )
    );
    assert!(
        at(&set, &p(4))
            .message
            .contains("`sa` is expected where it has \"ns\""),
        "{}",
        at(&set, &p(4))
    );

    // With the mesh's trust domain given, the other one is foreign.
    let mut loader = crate::config::Loader::new();
    loader.add_str(
        "test.yaml",
        &authz(
            "ALLOW",
            "  - from: [{source: {principals: [example.org/ns/a/sa/b, cluster.local/ns/a/sa/b]}}]",
        ),
    );
    let mut set = loader.finish();
    validate_with(
        &mut set,
        &Options {
            trust_domain: "example.org".into(),
        },
    );
    assert_eq!(
        codes(&set),
        [(
            Code::ForeignTrustDomain,
            "spec.rules[0].from[0].source.principals[1]".to_string()
        )]
    );
}

#[test]
fn principal_patterns_that_can_match() {
    let td = "cluster.local";
    let check = |p: &str| unmatchable_principal(&p.parse::<Glob>().unwrap(), td);
    for ok in [
        "*",
        "cluster.local/ns/a/sa/b",
        "cluster.local/ns/a/sa/*",
        "cluster.local/ns/*",
        "cluster.local/n*",
        "clus*",
        "*/sa/b",
        "*b",
        "*a/sa/b",
        "*local/ns/a/sa/b",
        "*/ns/a/sa/b",
        "*/a/sa/b",
    ] {
        assert_eq!(check(ok), None, "{ok}");
    }
    for (bad, why) in [
        ("b", Unmatchable::Shape(String::new())),
        ("default/b", Unmatchable::Shape(String::new())),
        ("Cluster.local/ns/a/sa/b", Unmatchable::Shape("trust domain contains invalid character 'C': only lower-case letters, digits, '.', '-' and '_' are allowed".into())),
        ("cluster.local/ns/a/sa/b/c*", Unmatchable::Shape("it has more than five `/`-separated parts".into())),
        ("cluster.local/sa/*", Unmatchable::Shape("`ns` is expected where it has \"sa\"".into())),
        ("cluster.local/ns//*", Unmatchable::Shape("a part is empty".into())),
        ("cluster.local/ns/a/x*", Unmatchable::Shape("`sa` is expected where it has \"x\"".into())),
        ("b*", Unmatchable::Shape("it does not start with the trust domain \"cluster.local\"".into())),
        ("other/ns/*", Unmatchable::TrustDomain { theirs: "other".into() }),
        ("*x/ns/a/sa/b", Unmatchable::TrustDomain { theirs: "x".into() }),
        ("*x/a/sa/b", Unmatchable::Shape("`ns` is expected where it has \"x\"".into())),
        ("*/a/b/c/d/e", Unmatchable::Shape("it has more than five `/`-separated parts".into())),
    ] {
        assert_eq!(check(bad), Some(why), "{bad}");
    }
}

#[test]
fn namespaces_hosts_paths_and_blocks_that_can_never_match() {
    let set = analyze(&authz(
        "ALLOW",
        r#"  - from:
    - source:
        namespaces: [cluster.local/ns/frontend/sa/web, frontend]
        notNamespaces: ["*/x"]
        ipBlocks: [10.0.0.1/8, 10.0.0.0/8, "fd00::1/64"]
    to:
    - operation:
        hosts: ["api.example.com:8080", "api.example.com", "[fd00::1]:80", "fd00::1", "fd00::*"]
        notHosts: ["api.example.com:*"]
        paths: ["/search?q=x", "/api/*", "/a*b"]
        notPaths: ["/admin#top"]"#,
    ));
    let src = |f: &str| format!("spec.rules[0].from[0].source.{f}");
    let op = |f: &str| format!("spec.rules[0].to[0].operation.{f}");
    assert_eq!(
        codes(&set),
        [
            (Code::NamespaceShape, src("namespaces[0]")),
            (Code::NamespaceShape, src("notNamespaces[0]")),
            (Code::CidrHostBits, src("ipBlocks[0]")),
            (Code::CidrHostBits, src("ipBlocks[2]")),
            (Code::HostWithPort, op("hosts[0]")),
            (Code::HostWithPort, op("hosts[2]")),
            (Code::HostWithPort, op("notHosts[0]")),
            (Code::PathWithQuery, op("paths[0]")),
            (Code::InvalidAuthzValue, op("paths[2]")),
            (Code::PathWithQuery, op("notPaths[0]")),
        ]
    );
    let ns = &set.diagnostics[0];
    assert_eq!(
        ns.message,
        "namespace \"cluster.local/ns/frontend/sa/web\" can never match: namespace names have no `/`"
    );
    assert!(
        ns.fix
            .as_deref()
            .unwrap()
            .contains("write the namespace alone, \"frontend\""),
        "{ns}"
    );
    assert!(
        set.diagnostics[1]
            .message
            .contains("never excludes anything"),
        "{}",
        set.diagnostics[1]
    );
    let block = &set.diagnostics[2];
    assert_eq!(
        block.message,
        "\"10.0.0.1/8\" has bits set after its /8 prefix: it means 10.0.0.0/8"
    );
    assert_eq!(
        block.fix.as_deref(),
        Some("write \"10.0.0.0/8\" for the network, or \"10.0.0.1/32\" for the one address")
    );
    let host = at(&set, &op("hosts[0]"));
    assert!(
        host.message.contains(
            "can never match: authorization compares the request's host without its port"
        ),
        "{host}"
    );
    assert_eq!(
        host.fix.as_deref(),
        Some(
            "write \"api.example.com\"; to restrict the port, add `ports: [\"8080\"]` (the workload's port)"
        )
    );
    assert_eq!(
        at(&set, &op("notHosts[0]")).fix.as_deref(),
        Some("write \"api.example.com\"")
    );
    let query = at(&set, &op("paths[0]"));
    assert!(
        query.message.contains("has no query string or fragment"),
        "{query}"
    );
    assert!(
        query.fix.as_deref().unwrap().contains("\"/search\""),
        "{query}"
    );
    assert!(at(&set, &op("paths[2]")).is_error());
}

#[test]
fn allow_rules_that_only_exclude_identities_admit_plaintext() {
    let set = analyze(&authz(
        "ALLOW",
        r#"  - from:
    - source: {notPrincipals: [cluster.local/ns/default/sa/blocked]}
    - source: {notNamespaces: [test], ipBlocks: [10.0.0.0/8]}
    - source: {principals: ["*"], notPrincipals: [cluster.local/ns/default/sa/blocked]}
    - source: {notPrincipals: ["*"]}
  - from:
    - source: {notPrincipals: [cluster.local/ns/default/sa/blocked]}
    when:
    - {key: source.principal, values: ["*"]}"#,
    ));
    assert_eq!(
        codes(&set),
        [
            (
                Code::PlaintextAllowed,
                "spec.rules[0].from[0].source.notPrincipals".to_string()
            ),
            (
                Code::PlaintextAllowed,
                "spec.rules[0].from[1].source.notNamespaces".to_string()
            ),
        ]
    );
    let d = &set.diagnostics[0];
    assert!(
        d.message
            .starts_with("this source also matches plaintext requests: they have no principal"),
        "{d}"
    );
    assert_eq!(
        d.fix.as_deref(),
        Some(
            "add `principals: [\"*\"]` to the source to require mTLS (any peer but the excluded ones)"
        )
    );
    assert_eq!(d.severity, crate::config::Severity::Warning);

    // DENY with only exclusions is the usual "deny everyone but" idiom: fine.
    let set = analyze(&authz(
        "DENY",
        "  - from: [{source: {notPrincipals: [cluster.local/ns/default/sa/admin]}}]",
    ));
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
}
