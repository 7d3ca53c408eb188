use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderValue, Method};
use mesh_api::{
    model::{AuthorizationPolicy, AuthzAction, Condition, ConditionKey, Rule},
    spiffe::SpiffeId,
};
use serde_json::{Value, json};

use super::{Authorizer, Decision, HttpRequest, Reason, Request};
use crate::canon;

// === fixtures ===

/// A policy `default/<name>` from Istio-shaped JSON rules.
fn policy(name: &str, action: &str, rules: Value) -> AuthorizationPolicy {
    serde_json::from_value(json!({
        "name": name,
        "namespace": "default",
        "action": action,
        "rules": rules,
    }))
    .expect("test policy must deserialize")
}

fn allow(rules: Value) -> AuthorizationPolicy {
    policy("allow", "allow", rules)
}

fn deny(rules: Value) -> AuthorizationPolicy {
    policy("deny", "deny", rules)
}

fn authz(policies: &[AuthorizationPolicy]) -> Authorizer {
    Authorizer::new(policies)
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).expect("test identity must be valid")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address must parse")
}

/// An owned request; [`Req::eval`] borrows it as a [`Request`].
#[derive(Clone)]
struct Req {
    peer: Option<SpiffeId>,
    source_ip: IpAddr,
    remote_ip: Option<IpAddr>,
    destination_ip: IpAddr,
    port: u16,
    sni: Option<&'static str>,
    http: Option<Http>,
}

#[derive(Clone)]
struct Http {
    method: Method,
    path: String,
    host: String,
    headers: HeaderMap,
}

impl Req {
    /// `GET /` for `svc`, plaintext, 10.0.0.1 → 10.0.0.2:8080.
    fn get() -> Self {
        Self {
            http: Some(Http {
                method: Method::GET,
                path: "/".into(),
                host: "svc".into(),
                headers: HeaderMap::new(),
            }),
            ..Self::tcp()
        }
    }

    /// An opaque TCP connection, plaintext, 10.0.0.1 → 10.0.0.2:8080.
    fn tcp() -> Self {
        Self {
            peer: None,
            source_ip: ip("10.0.0.1"),
            remote_ip: None,
            destination_ip: ip("10.0.0.2"),
            port: 8080,
            sni: None,
            http: None,
        }
    }

    fn peer(mut self, ns: &str, sa: &str) -> Self {
        self.peer = Some(id(ns, sa));
        self
    }

    fn source(mut self, s: &str) -> Self {
        self.source_ip = ip(s);
        self
    }

    fn remote(mut self, s: &str) -> Self {
        self.remote_ip = Some(ip(s));
        self
    }

    fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    fn sni(mut self, sni: &'static str) -> Self {
        self.sni = Some(sni);
        self
    }

    fn http(&mut self) -> &mut Http {
        self.http.as_mut().expect("an HTTP request")
    }

    fn method(mut self, m: Method) -> Self {
        self.http().method = m;
        self
    }

    /// Sets an already-canonical path.
    fn path(mut self, p: &str) -> Self {
        self.http().path = p.into();
        self
    }

    fn header(mut self, name: &'static str, value: HeaderValue) -> Self {
        self.http().headers.append(name, value);
        self
    }

    fn eval(&self, a: &Authorizer) -> Decision {
        a.evaluate(&Request {
            peer: self.peer.as_ref(),
            source_ip: self.source_ip,
            remote_ip: self.remote_ip,
            destination_ip: self.destination_ip,
            destination_port: self.port,
            sni: self.sni,
            http: self.http.as_ref().map(|h| HttpRequest {
                method: &h.method,
                path: &h.path,
                host: &h.host,
                headers: &h.headers,
            }),
        })
    }

    fn allowed(&self, a: &Authorizer) -> bool {
        self.eval(a).allowed
    }
}

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Rejected before authorization: the target or host has no canonical form.
    BadRequest,
    Allowed,
    Denied,
}

/// Canonicalises `path_and_query` and `authority` and authorizes, as the proxy does.
fn authorize(a: &Authorizer, path_and_query: &str, authority: &str) -> Outcome {
    let (Ok(target), Ok(host)) = (canon::path(path_and_query), canon::host(authority)) else {
        return Outcome::BadRequest;
    };
    let req = Req::get();
    let http = req.http.as_ref().expect("an HTTP request");
    let decision = a.evaluate(&Request {
        peer: None,
        source_ip: req.source_ip,
        remote_ip: None,
        destination_ip: req.destination_ip,
        destination_port: req.port,
        sni: None,
        http: Some(HttpRequest {
            method: &http.method,
            path: &target.path,
            host: &host,
            headers: &http.headers,
        }),
    });
    if decision.allowed {
        Outcome::Allowed
    } else {
        Outcome::Denied
    }
}

/// [`authorize`] on a raw request target, both as received on the wire and after
/// `http::Uri` parsing (as hyper hands it over: fragments dropped); the two must agree on
/// whether it is allowed.
fn through_proxy(a: &Authorizer, target: &str, authority: &str) -> Outcome {
    let raw = authorize(a, target, authority);
    let parsed = match target.parse::<http::Uri>() {
        Ok(uri) => {
            let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
            authorize(a, pq, authority)
        }
        Err(_) => Outcome::BadRequest,
    };
    assert_eq!(
        raw == Outcome::Allowed,
        parsed == Outcome::Allowed,
        "{target:?}: raw {raw:?}, via http::Uri {parsed:?}"
    );
    raw
}

// === canon → authz ===

#[test]
fn path_bypass_corpus() {
    let a = authz(&[allow(
        json!([{"to": [{"paths": ["/public", "/public/*"]}]}]),
    )]);
    for target in [
        "/private",
        "/public/../private",
        "/public/%2e%2e/private",
        "/public/%2E%2E/private",
        "/public/.%2e/private",
        "/public%2F..%2Fprivate",
        "/public%2f..%2fprivate",
        "/public/..%2Fprivate",
        "/public%5C..%5Cprivate",
        "/public\\..\\private",
        "/public/..;/private",
        "/public;/../private",
        "//private",
        "/PRIVATE",
        "/Public",
        "/private;x",
        "/private#x",
        "/private?x",
        "/private?/public",
        "/%70rivate",
        "/public%00/../../private",
        "/public/%2e%2e%2fprivate",
        "/publicx",
        "/public%",
        "public",
        "",
    ] {
        let outcome = through_proxy(&a, target, "svc");
        assert_ne!(outcome, Outcome::Allowed, "{target:?}");
    }
    for target in [
        "/public",
        "/public/x",
        "/public?x=1",
        "/public/./x",
        "/%70ublic",
        "/public/x/../y",
        "//public//x",
        "/private/../public",
        "/public/%2e%2e/public/x",
        "/public/",
    ] {
        assert_eq!(
            through_proxy(&a, target, "svc"),
            Outcome::Allowed,
            "{target:?}"
        );
    }
    // A fragment never reaches the path: `http::Uri` drops it (so this is `/public`, routed,
    // authorized and forwarded as such), and a raw target with one is rejected.
    let target = "/public#/../private";
    assert_eq!(authorize(&a, target, "svc"), Outcome::BadRequest);
    let uri: http::Uri = target.parse().expect("http::Uri accepts fragments");
    assert_eq!(uri.path_and_query().map(|pq| pq.as_str()), Some("/public"));

    // Rejected outright: the proxy answers 400.
    for target in [
        "/public%2F..%2Fprivate",
        "/public\\..\\private",
        "/private#x",
        "/public%",
    ] {
        assert_eq!(
            authorize(&a, target, "svc"),
            Outcome::BadRequest,
            "{target:?}"
        );
    }
}

#[test]
fn host_matching() {
    let a = authz(&[allow(json!([{"to": [{"hosts": ["api.example.com"]}]}]))]);
    for authority in [
        "api.example.com",
        "API.Example.com.",
        "api.example.com:8080",
    ] {
        assert_eq!(
            authorize(&a, "/", authority),
            Outcome::Allowed,
            "{authority}"
        );
    }
    for authority in [
        "api.example.com.evil",
        "evil.com",
        "api.example.com..",
        "x@api.example.com",
    ] {
        assert_ne!(
            authorize(&a, "/", authority),
            Outcome::Allowed,
            "{authority}"
        );
    }

    let a = authz(&[deny(json!([{"to": [{"hosts": ["admin.example.com"]}]}]))]);
    for authority in [
        "ADMIN.example.com.",
        "admin.example.com:443",
        "admin.example.com",
    ] {
        assert_eq!(
            authorize(&a, "/", authority),
            Outcome::Denied,
            "{authority}"
        );
    }
    assert_eq!(authorize(&a, "/", "www.example.com"), Outcome::Allowed);

    // The canonical host has no port: a policy host with one never matches.
    let a = authz(&[allow(
        json!([{"to": [{"hosts": ["api.example.com:8080"]}]}]),
    )]);
    assert_eq!(authorize(&a, "/", "api.example.com:8080"), Outcome::Denied);

    // Globs ignore case too; not_hosts as well.
    let a = authz(&[allow(
        json!([{"to": [{"hosts": ["*.Example.com"], "notHosts": ["Internal.example.com"]}]}]),
    )]);
    assert_eq!(authorize(&a, "/", "a.EXAMPLE.com"), Outcome::Allowed);
    assert_eq!(authorize(&a, "/", "internal.example.com"), Outcome::Denied);
    assert_eq!(authorize(&a, "/", "example.com"), Outcome::Denied);
}

// === sources ===

#[test]
fn principals() {
    let a = authz(&[allow(
        json!([{"from": [{"principals": ["cluster.local/ns/default/sa/a"]}]}]),
    )]);
    let d = Req::get().peer("default", "a").eval(&a);
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::AllowMatched);
    assert_eq!(d.policy.as_deref(), Some("default/allow"));
    assert!(!Req::get().peer("default", "b").allowed(&a));
    assert!(!Req::get().peer("other", "a").allowed(&a));
    assert!(!Req::get().allowed(&a), "plaintext");

    let any = authz(&[allow(json!([{"from": [{"principals": ["*"]}]}]))]);
    assert!(Req::get().peer("x", "y").allowed(&any));
    assert!(!Req::get().allowed(&any), "`*` requires mTLS");

    let prefix = authz(&[allow(
        json!([{"from": [{"principals": ["cluster.local/ns/prod/*"]}]}]),
    )]);
    assert!(Req::get().peer("prod", "x").allowed(&prefix));
    assert!(!Req::get().peer("prod2", "x").allowed(&prefix));
}

#[test]
fn not_principals() {
    let plaintext_only = authz(&[deny(json!([{"from": [{"notPrincipals": ["*"]}]}]))]);
    let d = Req::get().eval(&plaintext_only);
    assert_eq!(
        (d.allowed, d.reason, d.policy.as_deref()),
        (false, Reason::DenyMatched, Some("default/deny"))
    );
    assert!(Req::get().peer("default", "a").allowed(&plaintext_only));

    // "Everyone but a": plaintext has nothing to exclude, so it is denied too.
    let all_but_a = authz(&[deny(
        json!([{"from": [{"notPrincipals": ["cluster.local/ns/default/sa/a"]}]}]),
    )]);
    assert!(Req::get().peer("default", "a").allowed(&all_but_a));
    assert!(!Req::get().peer("default", "b").allowed(&all_but_a));
    assert!(!Req::get().allowed(&all_but_a));

    // In an ALLOW policy the same reading allows plaintext (as Istio does).
    let not_b = authz(&[allow(
        json!([{"from": [{"notPrincipals": ["cluster.local/ns/default/sa/b"]}]}]),
    )]);
    assert!(Req::get().peer("default", "a").allowed(&not_b));
    assert!(!Req::get().peer("default", "b").allowed(&not_b));
    assert!(Req::get().allowed(&not_b));
}

#[test]
fn namespaces() {
    let a = authz(&[allow(
        json!([{"from": [{"namespaces": ["prod", "stage-*"]}]}]),
    )]);
    assert!(Req::get().peer("prod", "x").allowed(&a));
    assert!(Req::get().peer("stage-1", "x").allowed(&a));
    assert!(!Req::get().peer("dev", "x").allowed(&a));
    assert!(!Req::get().allowed(&a));

    let any = authz(&[allow(json!([{"from": [{"namespaces": ["*"]}]}]))]);
    assert!(Req::get().peer("dev", "x").allowed(&any));
    assert!(!Req::get().allowed(&any));

    let not_dev = authz(&[deny(json!([{"from": [{"notNamespaces": ["prod"]}]}]))]);
    assert!(Req::get().peer("prod", "x").allowed(&not_dev));
    assert!(!Req::get().peer("dev", "x").allowed(&not_dev));
    assert!(!Req::get().allowed(&not_dev), "plaintext is not in prod");
}

#[test]
fn ip_blocks() {
    let a = authz(&[allow(json!([{"from": [{
        "ipBlocks": ["10.0.0.0/8", "2001:db8::/32"],
        "notIpBlocks": ["10.9.0.0/16"],
    }]}]))]);
    assert!(Req::get().source("10.1.2.3").allowed(&a));
    assert!(
        Req::get().source("::ffff:10.1.2.3").allowed(&a),
        "IPv4-mapped"
    );
    assert!(Req::get().source("2001:db8::7").allowed(&a));
    assert!(!Req::get().source("10.9.0.1").allowed(&a));
    assert!(!Req::get().source("192.168.0.1").allowed(&a));
    // `ipBlocks` is the connection's peer, not the forwarded client.
    assert!(
        !Req::get()
            .source("192.168.0.1")
            .remote("10.1.1.1")
            .allowed(&a)
    );
    assert!(
        Req::tcp().source("10.1.2.3").allowed(&a),
        "sources apply to TCP"
    );
}

#[test]
fn sources_are_or_and_fields_are_and() {
    let a = authz(&[allow(json!([{"from": [
        {"namespaces": ["prod"], "ipBlocks": ["10.0.0.0/8"]},
        {"principals": ["cluster.local/ns/dev/sa/ci"]},
    ]}]))]);
    assert!(Req::get().peer("prod", "x").allowed(&a));
    assert!(!Req::get().peer("prod", "x").source("11.0.0.1").allowed(&a));
    assert!(Req::get().peer("dev", "ci").source("11.0.0.1").allowed(&a));
    assert!(!Req::get().peer("dev", "other").allowed(&a));
}

// === operations ===

#[test]
fn ports() {
    let a = authz(&[allow(json!([{"to": [{"ports": [8080, 9090]}]}]))]);
    assert!(Req::get().allowed(&a));
    assert!(Req::get().port(9090).allowed(&a));
    assert!(!Req::get().port(8081).allowed(&a));
    assert!(Req::tcp().allowed(&a), "ports apply to TCP");

    let a = authz(&[deny(json!([{"to": [{"notPorts": [8080]}]}]))]);
    assert!(Req::get().allowed(&a));
    assert!(!Req::get().port(15000).allowed(&a));
}

#[test]
fn methods() {
    let a = authz(&[allow(json!([{"to": [{"methods": ["GET", "HEAD"]}]}]))]);
    assert!(Req::get().allowed(&a));
    assert!(Req::get().method(Method::HEAD).allowed(&a));
    assert!(!Req::get().method(Method::POST).allowed(&a));
    let lower = Method::from_bytes(b"get").expect("a valid extension method");
    assert!(!Req::get().method(lower).allowed(&a), "methods are exact");

    let a = authz(&[deny(json!([{"to": [{"notMethods": ["GET"]}]}]))]);
    assert!(Req::get().allowed(&a));
    assert!(!Req::get().method(Method::DELETE).allowed(&a));
}

#[test]
fn paths_and_operation_fields_are_and() {
    let a = authz(&[allow(json!([{"to": [{
        "methods": ["GET"],
        "paths": ["/api/*"],
        "notPaths": ["/api/admin", "/api/admin/*"],
    }]}]))]);
    assert!(Req::get().path("/api/users").allowed(&a));
    assert!(!Req::get().path("/api/admin").allowed(&a));
    assert!(!Req::get().path("/api/admin/x").allowed(&a));
    assert!(
        !Req::get().path("/API/users").allowed(&a),
        "paths are case-sensitive"
    );
    assert!(
        !Req::get()
            .path("/api/users")
            .method(Method::PUT)
            .allowed(&a)
    );
}

#[test]
fn from_to_and_when_must_all_match() {
    let a = authz(&[allow(json!([{
        "from": [{"namespaces": ["prod"]}],
        "to": [{"methods": ["GET"]}],
        "when": [{"key": "request.headers[x-env]", "values": ["prod"]}],
    }]))]);
    let ok = Req::get()
        .peer("prod", "x")
        .header("x-env", HeaderValue::from_static("prod"));
    assert!(ok.allowed(&a));
    assert!(!ok.clone().method(Method::POST).allowed(&a));
    assert!(!Req::get().peer("prod", "x").allowed(&a));
    let mut wrong_ns = ok.clone();
    wrong_ns.peer = Some(id("dev", "x"));
    assert!(!wrong_ns.allowed(&a));

    // An empty rule matches everything, TCP included.
    let a = authz(&[allow(json!([{}]))]);
    assert!(Req::get().allowed(&a));
    assert!(Req::tcp().allowed(&a));
}

// === conditions ===

#[test]
fn header_conditions() {
    let a = authz(&[allow(json!([{"when": [
        {"key": "request.headers[x-version]", "values": ["v1", "v2*"]},
    ]}]))]);
    let v = |s: &'static str| HeaderValue::from_static(s);
    assert!(Req::get().header("x-version", v("v1")).allowed(&a));
    assert!(Req::get().header("x-version", v("v2-beta")).allowed(&a));
    assert!(!Req::get().header("x-version", v("v3")).allowed(&a));
    assert!(
        !Req::get().header("x-version", v("V1")).allowed(&a),
        "case-sensitive"
    );
    assert!(!Req::get().allowed(&a), "absent");
    // Multi-valued: any value.
    let multi = Req::get()
        .header("x-version", v("v3"))
        .header("x-version", v("v1"));
    assert!(multi.allowed(&a));
    // One line with a comma is one value.
    assert!(!Req::get().header("x-version", v("v3, v1")).allowed(&a));

    let present = authz(&[allow(json!([{"when": [
        {"key": "request.headers[x-token]", "values": ["*"]},
    ]}]))]);
    assert!(Req::get().header("x-token", v("t")).allowed(&present));
    assert!(!Req::get().header("x-token", v("")).allowed(&present));
    assert!(!Req::get().allowed(&present));

    // notValues: no value may match; absent has nothing to exclude.
    let not = authz(&[allow(json!([{"when": [
        {"key": "request.headers[x-user]", "notValues": ["admin", "root*"]},
    ]}]))]);
    assert!(Req::get().header("x-user", v("alice")).allowed(&not));
    assert!(!Req::get().header("x-user", v("admin")).allowed(&not));
    assert!(!Req::get().header("x-user", v("rootkit")).allowed(&not));
    assert!(
        !Req::get()
            .header("x-user", v("alice"))
            .header("x-user", v("admin"))
            .allowed(&not),
        "any excluded value excludes"
    );
    assert!(Req::get().allowed(&not));

    // Both.
    let both = authz(&[deny(json!([{"when": [
        {"key": "request.headers[x-token]", "values": ["*"], "notValues": ["secret"]},
    ]}]))]);
    assert!(!Req::get().header("x-token", v("guess")).allowed(&both));
    assert!(Req::get().header("x-token", v("secret")).allowed(&both));
    assert!(Req::get().allowed(&both), "absent: values do not match");
}

#[test]
fn non_utf8_header_values_fail_closed() {
    let opaque = HeaderValue::from_bytes(b"v1\xff").expect("obs-text is a valid header value");
    let v = |s: &'static str| HeaderValue::from_static(s);

    // ALLOW: an opaque value matches nothing, and counts as excluded.
    let allow_values = authz(&[allow(json!([{"when": [
        {"key": "request.headers[x-version]", "values": ["v1*"]},
    ]}]))]);
    assert!(
        !Req::get()
            .header("x-version", opaque.clone())
            .allowed(&allow_values)
    );
    assert!(
        Req::get()
            .header("x-version", opaque.clone())
            .header("x-version", v("v1"))
            .allowed(&allow_values),
        "another value decides"
    );
    let allow_not = authz(&[allow(json!([{"when": [
        {"key": "request.headers[x-user]", "notValues": ["admin"]},
    ]}]))]);
    assert!(
        !Req::get()
            .header("x-user", opaque.clone())
            .allowed(&allow_not)
    );
    assert!(
        !Req::get()
            .header("x-user", v("alice"))
            .header("x-user", opaque.clone())
            .allowed(&allow_not)
    );

    // DENY: an opaque value matches, and is not known to be excluded.
    let deny_values = authz(&[deny(json!([{"when": [
        {"key": "request.headers[x-user]", "values": ["admin*"]},
    ]}]))]);
    assert!(
        !Req::get()
            .header("x-user", opaque.clone())
            .allowed(&deny_values)
    );
    assert!(
        Req::get()
            .header("x-user", v("alice"))
            .allowed(&deny_values)
    );
    let deny_not = authz(&[deny(json!([{"when": [
        {"key": "request.headers[x-token]", "notValues": ["secret"]},
    ]}]))]);
    assert!(
        !Req::get()
            .header("x-token", opaque.clone())
            .allowed(&deny_not)
    );
    assert!(Req::get().header("x-token", v("secret")).allowed(&deny_not));
    // A UTF-8 non-ASCII value is compared normally.
    let utf8 = HeaderValue::from_bytes("s\u{e9}cret".as_bytes()).expect("valid header value");
    assert!(!Req::get().header("x-token", utf8).allowed(&deny_not));
}

#[test]
fn connection_conditions() {
    let when = |key: &str, values: Value, not_values: Value| {
        authz(&[allow(json!([{"when": [
            {"key": key, "values": values, "notValues": not_values},
        ]}]))])
    };

    let a = when("source.ip", json!(["10.0.0.0/8"]), json!(["10.0.0.9"]));
    assert!(Req::get().allowed(&a));
    assert!(!Req::get().source("10.0.0.9").allowed(&a));
    assert!(!Req::get().source("11.0.0.1").remote("10.0.0.1").allowed(&a));

    let a = when("remote.ip", json!(["192.168.0.0/16"]), json!([]));
    assert!(Req::get().remote("192.168.1.1").allowed(&a));
    assert!(
        !Req::get()
            .remote("10.1.1.1")
            .source("192.168.1.1")
            .allowed(&a)
    );
    assert!(
        Req::get().source("192.168.1.1").allowed(&a),
        "falls back to source.ip"
    );

    let a = when("destination.ip", json!(["10.0.0.2"]), json!([]));
    assert!(Req::get().allowed(&a));
    let mut other = Req::get();
    other.destination_ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert!(!other.allowed(&a));

    let a = when("destination.port", json!(["8080"]), json!([]));
    assert!(Req::tcp().allowed(&a));
    assert!(!Req::tcp().port(80).allowed(&a));
    let a = when("destination.port", json!([]), json!(["8080"]));
    assert!(!Req::tcp().allowed(&a));
    assert!(Req::tcp().port(80).allowed(&a));

    let a = when("source.namespace", json!(["prod"]), json!([]));
    assert!(Req::tcp().peer("prod", "x").allowed(&a));
    assert!(!Req::tcp().peer("dev", "x").allowed(&a));
    assert!(!Req::tcp().allowed(&a));

    let a = when(
        "source.principal",
        json!([]),
        json!(["cluster.local/ns/dev/*"]),
    );
    assert!(Req::tcp().peer("prod", "x").allowed(&a));
    assert!(!Req::tcp().peer("dev", "x").allowed(&a));
    assert!(Req::tcp().allowed(&a), "plaintext has nothing to exclude");

    let a = when("connection.sni", json!(["*.example.com"]), json!([]));
    assert!(Req::tcp().sni("db.example.com").allowed(&a));
    assert!(Req::tcp().sni("DB.Example.COM").allowed(&a));
    assert!(!Req::tcp().sni("example.org").allowed(&a));
    assert!(!Req::tcp().allowed(&a), "no SNI");
}

#[test]
fn unparsable_condition_values_fail_closed() {
    let bad_cidr = |action: AuthzAction| AuthorizationPolicy {
        name: "bad".into(),
        namespace: "default".into(),
        action,
        rules: vec![Rule {
            when: vec![Condition {
                key: ConditionKey::SourceIp,
                values: vec!["10.0.0.0/8".into(), "10.0.0.0/99".into()],
                not_values: vec![],
            }],
            ..Rule::default()
        }],
    };
    // ALLOW: the condition never matches, even for an address in the valid CIDR.
    let a = authz(&[bad_cidr(AuthzAction::Allow)]);
    assert!(!Req::get().source("10.0.0.1").allowed(&a));
    // DENY: the condition always matches, even outside the valid CIDR.
    let a = authz(&[bad_cidr(AuthzAction::Deny)]);
    let d = Req::get().source("192.168.0.1").eval(&a);
    assert_eq!(
        (d.allowed, d.policy.as_deref()),
        (false, Some("default/bad"))
    );
    // AUDIT: audited.
    let a = authz(&[bad_cidr(AuthzAction::Audit)]);
    let d = Req::get().source("192.168.0.1").eval(&a);
    assert!(d.allowed && d.audited);

    // Also in notValues, and for other keys.
    for (key, values, not_values) in [
        ("remote.ip", vec![], vec!["nope"]),
        ("destination.ip", vec!["10.0.0.2", "::1/200"], vec![]),
        ("destination.port", vec!["8080", "http"], vec![]),
        ("destination.port", vec!["0"], vec![]),
        ("source.principal", vec!["a*b"], vec![]),
        ("connection.sni", vec![], vec!["**"]),
        ("request.headers[x-a]", vec!["x*y"], vec![]),
        ("request.headers[x a]", vec!["x"], vec![]),
        ("source.ip", vec![], vec![]),
    ] {
        let key: ConditionKey = key
            .strip_prefix("request.headers[")
            .and_then(|k| k.strip_suffix(']'))
            .map_or_else(
                || key.parse().expect("a known key"),
                |name| ConditionKey::RequestHeader(name.into()),
            );
        let condition = Condition {
            key: key.clone(),
            values: values.iter().map(|&v| v.to_owned()).collect(),
            not_values: not_values.iter().map(|&v| v.to_owned()).collect(),
        };
        let p = |action| AuthorizationPolicy {
            name: "bad".into(),
            namespace: "default".into(),
            action,
            rules: vec![Rule {
                when: vec![condition.clone()],
                ..Rule::default()
            }],
        };
        let req = Req::get().header("x-a", HeaderValue::from_static("xy"));
        assert!(
            !req.allowed(&authz(&[p(AuthzAction::Allow)])),
            "ALLOW {key}"
        );
        assert!(!req.allowed(&authz(&[p(AuthzAction::Deny)])), "DENY {key}");
    }
}

// === opaque TCP ===

#[test]
fn tcp_with_http_only_fields() {
    for to in [
        json!({"paths": ["/admin"]}),
        json!({"notPaths": ["/admin"]}),
        json!({"hosts": ["*"]}),
        json!({"notHosts": ["evil.com"]}),
        json!({"methods": ["GET"]}),
        json!({"notMethods": ["DELETE"]}),
        json!({"ports": [8080], "paths": ["/admin"]}),
    ] {
        // ALLOW: never matches TCP.
        let a = authz(&[allow(json!([{"to": [to]}]))]);
        assert!(!Req::tcp().allowed(&a), "ALLOW {to}");
        // DENY: treated as matching, so all TCP to the port is denied.
        let d = Req::tcp().eval(&authz(&[deny(json!([{"to": [to]}]))]));
        assert_eq!(
            (d.allowed, d.reason),
            (false, Reason::DenyMatched),
            "DENY {to}"
        );
        // AUDIT: audited.
        let d = Req::tcp().eval(&authz(&[policy("audit", "audit", json!([{"to": [to]}]))]));
        assert!(d.allowed && d.audited, "AUDIT {to}");
    }

    // Other fields of a DENY rule still apply.
    let a = authz(&[deny(
        json!([{"to": [{"ports": [9090], "paths": ["/admin"]}]}]),
    )]);
    assert!(Req::tcp().allowed(&a));
    assert!(!Req::tcp().port(9090).allowed(&a));

    // Another operation without HTTP fields can still allow TCP.
    let a = authz(&[allow(
        json!([{"to": [{"paths": ["/x"]}, {"ports": [8080]}]}]),
    )]);
    assert!(Req::tcp().allowed(&a));
    assert!(!Req::tcp().port(1).allowed(&a));

    // Header conditions.
    let when = json!([{"when": [{"key": "request.headers[x-a]", "values": ["*"]}]}]);
    assert!(!Req::tcp().allowed(&authz(&[allow(when.clone())])));
    assert!(!Req::tcp().allowed(&authz(&[deny(when)])));
    let when = json!([{"when": [{"key": "request.headers[x-a]", "notValues": ["*"]}]}]);
    assert!(!Req::tcp().allowed(&authz(&[allow(when.clone())])));
    assert!(!Req::tcp().allowed(&authz(&[deny(when)])));
}

// === combining policies ===

#[test]
fn no_policies_allow() {
    let a = authz(&[]);
    assert!(a.is_empty());
    let d = Req::get().eval(&a);
    assert_eq!(
        d,
        Decision {
            allowed: true,
            reason: Reason::NoAllowPolicies,
            policy: None,
            audited: false,
        }
    );
    assert!(Req::tcp().allowed(&a));
    assert!(Authorizer::default().is_empty());
    assert!(!authz(&[policy("a", "audit", json!([]))]).is_empty());
}

#[test]
fn policies_without_rules() {
    let empty_allow = authz(&[allow(json!([]))]);
    let d = Req::get().peer("default", "a").eval(&empty_allow);
    assert_eq!((d.allowed, d.reason), (false, Reason::NoAllowMatched));
    assert!(!Req::tcp().allowed(&empty_allow));

    let empty_deny = authz(&[deny(json!([]))]);
    let d = Req::get().eval(&empty_deny);
    assert_eq!((d.allowed, d.reason), (true, Reason::NoAllowPolicies));
}

#[test]
fn deny_beats_allow() {
    let a = authz(&[
        policy("allow-all", "allow", json!([{}])),
        policy(
            "deny-admin",
            "deny",
            json!([{"to": [{"paths": ["/admin*"]}]}]),
        ),
        policy(
            "allow-admin",
            "allow",
            json!([{"to": [{"paths": ["/admin"]}]}]),
        ),
    ]);
    let d = Req::get().path("/admin").eval(&a);
    assert_eq!(
        (d.allowed, d.reason, d.policy.as_deref()),
        (false, Reason::DenyMatched, Some("default/deny-admin"))
    );
    let d = Req::get().path("/x").eval(&a);
    assert_eq!(
        (d.allowed, d.reason, d.policy.as_deref()),
        (true, Reason::AllowMatched, Some("default/allow-all"))
    );
}

#[test]
fn any_allow_policy_allows() {
    let a = authz(&[
        policy("a", "allow", json!([{"to": [{"paths": ["/a"]}]}])),
        policy(
            "b",
            "allow",
            json!([{"to": [{"paths": ["/b"]}]}, {"to": [{"paths": ["/c"]}]}]),
        ),
    ]);
    assert_eq!(
        Req::get().path("/a").eval(&a).policy.as_deref(),
        Some("default/a")
    );
    assert_eq!(
        Req::get().path("/c").eval(&a).policy.as_deref(),
        Some("default/b")
    );
    let d = Req::get().path("/d").eval(&a);
    assert_eq!(
        (d.allowed, d.reason, d.policy),
        (false, Reason::NoAllowMatched, None)
    );
}

#[test]
fn audit_only_audits() {
    let audit = policy(
        "audit-admin",
        "audit",
        json!([{"to": [{"paths": ["/admin"]}]}]),
    );
    let a = authz(std::slice::from_ref(&audit));
    let d = Req::get().path("/admin").eval(&a);
    assert_eq!(
        d,
        Decision {
            allowed: true,
            reason: Reason::NoAllowPolicies,
            policy: None,
            audited: true,
        }
    );
    assert!(!Req::get().path("/x").eval(&a).audited);

    // Audited whatever the decision; an audit match does not count as an ALLOW.
    let a = authz(&[
        audit.clone(),
        policy(
            "deny-admin",
            "deny",
            json!([{"to": [{"paths": ["/admin"]}]}]),
        ),
    ]);
    let d = Req::get().path("/admin").eval(&a);
    assert!(!d.allowed && d.audited);
    let a = authz(&[audit, allow(json!([{"to": [{"paths": ["/x"]}]}]))]);
    let d = Req::get().path("/admin").eval(&a);
    assert_eq!(
        (d.allowed, d.reason, d.audited),
        (false, Reason::NoAllowMatched, true)
    );
}

#[test]
fn decision_display() {
    let a = authz(&[
        policy(
            "deny-private",
            "deny",
            json!([{"to": [{"paths": ["/private"]}]}]),
        ),
        policy(
            "allow-get",
            "allow",
            json!([{"to": [{"methods": ["GET"]}]}]),
        ),
    ]);
    let show = |r: Req| r.eval(&a).to_string();
    assert_eq!(
        show(Req::get().path("/private")),
        "denied by default/deny-private"
    );
    assert_eq!(show(Req::get()), "allowed by default/allow-get");
    assert_eq!(
        show(Req::get().method(Method::POST)),
        "no ALLOW policy matched"
    );
    assert_eq!(
        Req::get().eval(&authz(&[])).to_string(),
        "allowed: no ALLOW policies"
    );
}

#[test]
fn ipv4_mapped_sources_match_ipv4_conditions() {
    let a = authz(&[allow(
        json!([{"when": [{"key": "source.ip", "values": ["10.0.0.0/8"]}]}]),
    )]);
    let mut r = Req::tcp();
    r.source_ip = IpAddr::V6(Ipv4Addr::new(10, 1, 1, 1).to_ipv6_mapped());
    assert!(r.allowed(&a));
}
