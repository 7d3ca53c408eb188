//! The proxy-config renderers on the shared productpage fixture, and the route summary on
//! every kind of match and action.

use std::time::Duration;

use mesh_api::model::{
    ClusterKey, DirectResponse, Endpoint, Forward, HeaderMatch, HeaderMutations, Mirror, Pattern,
    Percent, QueryParamMatch, Redirect, TcpMatch,
};

use super::*;
use crate::fixtures::{NOW, mk_config, mk_config_dump, mk_secret, mk_secret_list, mk_workload};

#[test]
fn renders_listeners_with_inbound_and_authorization() {
    assert_eq!(
        listeners(&mk_config()),
        "\
ADDRESS           SERVICE                             PROTOCOL   TARGET PORT
10.96.0.10:9080   reviews.default.svc.cluster.local   http       9080
10.96.0.11:9080   ratings.default.svc.cluster.local   grpc       9080
[fd00::11]:9080   ratings.default.svc.cluster.local   grpc       9080
-:3306            mysql.default.svc.cluster.local     tcp        3306

inbound mTLS: strict
  port 9090: permissive
authorization: 1 policy
  default/productpage-viewer: ALLOW, 1 rule
"
    );
}

#[test]
fn renders_route_tables_and_a_line_per_route() {
    assert_eq!(
        routes(&mk_config()),
        "\
NAME                                     HOSTS                                           PORT   ROUTES
reviews.default.svc.cluster.local:9080   reviews.default.svc.cluster.local, reviews +1   9080   2
  jason: path^=/api header[end-user]=jason → outbound|9080|v2|reviews.default.svc.cluster.local [timeout=2s retries=3 per-try=500ms]
  http[1]: * → outbound|9080|v1|reviews.default.svc.cluster.local 90%, outbound|9080|v2|reviews.default.svc.cluster.local 10%
mysql.default.svc.cluster.local:3306     mysql.default.svc.cluster.local                 3306   1
  tcp[0]: * → outbound|3306||mysql.default.svc.cluster.local
"
    );
}

#[test]
fn renders_clusters() {
    assert_eq!(
        clusters(&mk_config()),
        "\
NAME                                                 LB           SUBSET       POOL                         OUTLIER   TLS
outbound|9080||reviews.default.svc.cluster.local     p2cEwma      -            unlimited                    off       auto
outbound|9080|v1|reviews.default.svc.cluster.local   roundRobin   version=v1   connections=100 pending=10   on        istioMutual
outbound|9080|v2|reviews.default.svc.cluster.local   p2cEwma      version=v2   unlimited                    off       auto
outbound|3306||mysql.default.svc.cluster.local       p2cEwma      -            unlimited                    off       disable
"
    );
}

#[test]
fn renders_endpoints_on_their_target_ports() {
    let mut spec = mk_config();
    // Endpoints of a service the proxy does not know show without a port.
    spec.endpoints.push(EndpointSet {
        hostname: "legacy.default.svc.cluster.local".into(),
        endpoints: vec![Endpoint {
            workload: mk_workload("legacy-0", "fd00::7", &[]),
            ports: Default::default(),
            weight: std::num::NonZeroU32::MIN,
        }],
    });
    assert_eq!(
        endpoints(&spec),
        "\
ENDPOINT        HEALTH      WORKLOAD                  SERVICE                                  IN MESH
10.0.0.6:9080   healthy     default/reviews-v1-7f8c   reviews.default.svc.cluster.local:9080   yes
10.0.0.7:8080   draining    default/reviews-v2-5c9d   reviews.default.svc.cluster.local:9080   yes
10.0.3.4:3306   unhealthy   default/mysql-0           mysql.default.svc.cluster.local:3306     no
fd00::7         healthy     default/legacy-0          legacy.default.svc.cluster.local         yes
"
    );
}

#[test]
fn all_has_a_header_and_every_section() {
    let text = render(&mk_config_dump(), Section::All);
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "proxy productpage-v1-6b7f.default (id sidecar~10.0.0.5~productpage-v1-6b7f.default), sidecar 0.1.0, SYNCED, config version 42, connected 2h5m ago"
    );
    let spec = mk_config();
    for part in [
        listeners(&spec),
        routes(&spec),
        clusters(&spec),
        endpoints(&spec),
    ] {
        assert!(text.contains(&part), "{text}");
    }
    for title in [
        "\nListeners:\n",
        "\nRoutes:\n",
        "\nClusters:\n",
        "\nEndpoints:\n",
    ] {
        assert!(text.contains(title), "{title} in {text}");
    }
}

#[test]
fn says_so_when_a_section_is_empty() {
    let mut spec = mk_config();
    spec.services.clear();
    spec.routes.clear();
    spec.clusters.clear();
    spec.endpoints.clear();
    spec.authorization.clear();
    assert!(listeners(&spec).starts_with("no services\n"));
    assert!(listeners(&spec).contains("authorization: no policies (all allowed)\n"));
    assert_eq!(routes(&spec), "no route tables\n");
    assert_eq!(clusters(&spec), "no clusters\n");
    assert_eq!(endpoints(&spec), "no endpoints\n");
}

fn key(subset: &str) -> ClusterKey {
    ClusterKey::new("reviews.default.svc.cluster.local", 9080).with_subset(subset)
}

fn forward_to(backends: Vec<WeightedBackend>) -> Forward {
    Forward {
        backends,
        timeout: None,
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        rewrite: None,
        request_headers: HeaderMutations::default(),
        response_headers: HeaderMutations::default(),
    }
}

#[test]
fn summarizes_every_kind_of_match() {
    let m = HttpMatch {
        uri: Some(StringMatch::Exact("/login".into())),
        method: Some(StringMatch::Regex(Pattern::new("GET|HEAD").unwrap())),
        authority: Some(StringMatch::Prefix("shop.".into())),
        scheme: Some(StringMatch::Exact("https".into())),
        headers: vec![HeaderMatch {
            name: "x-canary".into(),
            value: None,
        }],
        without_headers: vec![HeaderMatch {
            name: "x-skip".into(),
            value: Some(StringMatch::Exact("1".into())),
        }],
        query_params: vec![QueryParamMatch {
            name: "debug".into(),
            value: None,
        }],
        source_labels: [("app".to_owned(), "web".to_owned())].into(),
        source_namespace: Some("front".into()),
        ..HttpMatch::default()
    };
    assert_eq!(
        http_match(&m),
        "path=/login method~=GET|HEAD authority^=shop. scheme=https header[x-canary] !header[x-skip]=1 query[debug] source-labels[app=web] source-namespace=front"
    );
    assert_eq!(http_match(&HttpMatch::default()), "*");

    // Several matches: any may hold.
    let route = HttpRoute {
        name: String::new(),
        matches: vec![
            HttpMatch {
                uri: Some(StringMatch::Prefix("/a".into())),
                ..HttpMatch::default()
            },
            HttpMatch {
                uri: Some(StringMatch::Prefix("/b".into())),
                ..HttpMatch::default()
            },
        ],
        action: HttpAction::DirectResponse(DirectResponse {
            status: 503,
            body: None,
        }),
    };
    assert_eq!(
        http_route_line(4, &route),
        "  http[4]: path^=/a | path^=/b → respond 503"
    );
}

#[test]
fn summarizes_actions_weights_and_markers() {
    let mut f = forward_to(vec![
        WeightedBackend {
            cluster: key("v1"),
            weight: 1,
        },
        WeightedBackend {
            cluster: key("v2"),
            weight: 2,
        },
    ]);
    f.fault = Some(mesh_api::model::Fault {
        delay: None,
        abort: None,
    });
    f.mirrors.push(Mirror {
        cluster: key("shadow"),
        percentage: Percent::new(5.0).unwrap(),
    });
    f.rewrite = Some(Default::default());
    f.request_headers.remove.push("x-internal".into());
    f.timeout = Some(Duration::from_millis(1500));
    let route = |action| HttpRoute {
        name: "r".into(),
        matches: Vec::new(),
        action,
    };
    assert_eq!(
        http_route_line(0, &route(HttpAction::Forward(f))),
        "  r: * → outbound|9080|v1|reviews.default.svc.cluster.local 33.3%, outbound|9080|v2|reviews.default.svc.cluster.local 66.7% [timeout=1500ms fault mirror=outbound|9080|shadow|reviews.default.svc.cluster.local 5% rewrite headers]"
    );

    let redirect = |scheme: Option<&str>, authority: Option<&str>, port, path: Option<&str>| {
        http_route_line(
            0,
            &route(HttpAction::Redirect(Redirect {
                scheme: scheme.map(str::to_owned),
                authority: authority.map(str::to_owned),
                port,
                path: path.map(str::to_owned),
                status: 308,
            })),
        )
    };
    assert_eq!(
        redirect(Some("https"), Some("shop.example"), Some(8443), Some("/x")),
        "  r: * → redirect 308 to https://shop.example:8443/x"
    );
    assert_eq!(
        redirect(Some("https"), None, None, None),
        "  r: * → redirect 308 to https://<host>"
    );
    assert_eq!(
        redirect(None, None, None, Some("/new")),
        "  r: * → redirect 308 to /new"
    );
    assert_eq!(
        redirect(None, None, None, None),
        "  r: * → redirect 308 to <same>"
    );

    let tcp = TcpRoute {
        name: "tls".into(),
        matches: vec![TcpMatch {
            sni_hosts: vec!["a.example".into(), "*.b.example".into()],
            source_labels: [("app".to_owned(), "web".to_owned())].into(),
        }],
        backends: vec![WeightedBackend {
            cluster: key("v1"),
            weight: 0,
        }],
    };
    assert_eq!(
        tcp_route_line(0, &tcp),
        "  tls: sni=a.example,*.b.example source-labels[app=web] → outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    assert_eq!(percent(100.0 / 3.0), "33.3%");
    assert_eq!(percent(90.0), "90%");
    assert_eq!(percent(99.96), "100%");
}

#[test]
fn documents_hold_the_section_under_its_field_name() {
    let spec = mk_config();
    let keys = |section| -> Vec<String> {
        let value = serde_json::to_value(Part::of(&spec, section)).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(Section::Routes), ["routes"]);
    assert_eq!(keys(Section::Clusters), ["clusters"]);
    assert_eq!(keys(Section::Endpoints), ["endpoints"]);
    assert_eq!(
        keys(Section::Listeners),
        ["authorization", "inbound", "services"]
    );
    // The parts read back as the spec's own types.
    let routes = serde_json::to_value(Part::of(&spec, Section::Routes)).unwrap();
    let back: Vec<RouteTable> = serde_json::from_value(routes["routes"].clone()).unwrap();
    assert_eq!(back, spec.routes);
}

#[test]
fn renders_the_certificate_chain_and_trust_bundle() {
    assert_eq!(
        secret::render(&mk_secret(), NOW),
        "\
proxy sidecar~10.0.0.5~productpage-v1-6b7f.default
identity spiffe://cluster.local/ns/default/sa/productpage
issued 2m ago, authenticated by token

Certificate chain:
TYPE           SERIAL                    SPIFFE ID                                          NOT BEFORE             NOT AFTER                                  ISSUER
leaf           3a:f1:07:9c:21:5e:88:10   spiffe://cluster.local/ns/default/sa/productpage   2023-11-14T22:10:20Z   2023-11-15T10:10:20Z (expires in 11h57m)   O=cluster.local,CN=mesh intermediate
intermediate   02                        -                                                  2023-10-15T22:13:20Z   2024-10-14T22:13:20Z (expires in 335d)     O=cluster.local,CN=mesh root

Trust bundle:
SUBJECT                             SERIAL     NOT AFTER
O=cluster.local,CN=mesh root        01         2033-11-11T22:13:20Z (expires in 3650d)
O=cluster.local,CN=mesh root 2022   7f:00:3c   2023-11-19T22:13:20Z (expires in 5d)
"
    );
}

#[test]
fn marks_expired_and_self_signed_certificates_and_empty_parts() {
    let list = mk_secret_list();
    let ratings = list
        .secrets
        .iter()
        .find(|s| s.proxy.contains("ratings"))
        .unwrap();
    let text = secret::render(ratings, NOW);
    assert!(
        text.contains("issued 12h ago, authenticated by certificate\n"),
        "{text}"
    );
    let leaf = text.lines().find(|l| l.starts_with("leaf ")).unwrap();
    assert!(
        leaf.contains("2023-11-14T22:10:16Z (EXPIRED 3m4s ago)"),
        "{leaf}"
    );

    let mut odd = mk_secret();
    odd.chain[1].subject = odd.chain[1].issuer.clone();
    let text = secret::render(&odd, NOW);
    assert!(text.contains("\nroot   "), "{text}");
    odd.chain.clear();
    odd.trust_bundle.clear();
    let text = secret::render(&odd, NOW);
    assert!(
        text.ends_with("Certificate chain:\nno certificates\n\nTrust bundle:\nno roots\n"),
        "{text}"
    );
}
