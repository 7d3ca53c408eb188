//! Authorization through real proxies, in process: a client proxy with an explicit upstream
//! listener, a server proxy in front of a real backend, mutual TLS between them (test CA),
//! and requests written byte for byte so that nothing between the test and the proxies
//! normalises them first.
//!
//! - the bypass corpus: every way of spelling a path other than `/public` is denied by an
//!   ALLOW-only-`/public` policy (403, or 400 when the spelling has no canonical form), and
//!   the backend only ever sees canonical `/public` paths;
//! - hosts are matched without case, port or trailing dot, for ALLOW and DENY;
//! - an ALLOW on service A's principal (from its certificate) denies service B.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use mesh_api::model::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A policy named `name` in `default`.
fn policy(name: &str, action: AuthzAction, rules: Vec<Rule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        namespace: "default".into(),
        action,
        rules,
    }
}

fn globs(values: &[&str]) -> Vec<Glob> {
    values.iter().map(|v| v.parse().unwrap()).collect()
}

struct Setup {
    clients: Vec<TestProxy>,
    server: TestProxy,
    backend: Backend,
}

/// A server `reviews` at `ip(net, 2)` with `policies`, and one client proxy per service
/// account in `clients` (at `ip(net, 10 + i)`).
async fn setup(net: u8, policies: Vec<AuthorizationPolicy>, clients: &[&str]) -> Setup {
    let server = workload("reviews-v1", ip(net, 2), "reviews", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![server.clone()])];
    let backend = backend(SocketAddr::new(ip(net, 2), 8080), "v1", Behavior::default()).await;
    let mut s = spec(
        server.clone(),
        services.clone(),
        eps.clone(),
        Vec::new(),
        Vec::new(),
    );
    s.inbound.mode = MtlsMode::Strict;
    s.authorization = policies;
    let server = proxy(server.address, &s, &[]).await;
    let mut proxies = Vec::new();
    for (i, sa) in clients.iter().enumerate() {
        let me = workload(sa, ip(net, 10 + i as u8), sa, "v1", true);
        let c = spec(
            me.clone(),
            services.clone(),
            eps.clone(),
            Vec::new(),
            Vec::new(),
        );
        proxies.push(proxy(me.address, &c, &[(HOST, 9080)]).await);
    }
    Setup {
        clients: proxies,
        server,
        backend,
    }
}

/// Sends `GET <target>` with `host` as raw HTTP/1.1 to `addr`; the status (0 if the
/// connection closed without one) and the body.
async fn raw_get(addr: SocketAddr, target: &str, host: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("the proxy answers within 10s")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_spellings_cannot_bypass_an_allow_only_public_policy() {
    let allow_public = policy(
        "allow-public",
        AuthzAction::Allow,
        vec![Rule {
            to: vec![Operation {
                paths: globs(&["/public", "/public/*"]),
                ..Operation::default()
            }],
            ..Rule::default()
        }],
    );
    let s = setup(70, vec![allow_public], &["productpage"]).await;
    let client = s.clients[0].upstream();

    for target in [
        "/public",
        "/public/x",
        "/public?x=1",
        "/public/./x",
        "/%70ublic",
        "/public//x",
    ] {
        let (status, body) = raw_get(client, target, "reviews").await;
        assert_eq!(status, 200, "{target:?} must be allowed: {body}");
        // The backend sees the canonical path: what was authorized is what it serves.
        let seen = body.split(' ').nth(1).unwrap_or_default();
        assert!(
            seen == "/public" || seen.starts_with("/public/"),
            "{target:?} reached the backend as {seen:?}"
        );
    }
    let allowed = s
        .backend
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);

    for target in [
        "/private",
        "/public/../private",
        "/public/%2e%2e/private",
        "/public/%2E%2E/private",
        "/public%2F..%2Fprivate",
        "/public%2f..%2fprivate",
        "/public%5C..%5Cprivate",
        "//private",
        "/PRIVATE",
        "/Public",
        "/private;x",
        "/public/..;/private",
        "/private#x",
        "/private?x",
        "/%70rivate",
        "/public/../../private",
        "/public/%2e%2e%2fprivate",
        "/public/%00/../private",
    ] {
        let (status, body) = raw_get(client, target, "reviews").await;
        assert!(
            status == 403 || status == 400,
            "{target:?} must be denied (403) or refused (400), got {status}: {body}"
        );
    }
    assert_eq!(
        s.backend
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        allowed,
        "a denied request reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_match_without_case_port_or_trailing_dot() {
    let only_api = policy(
        "allow-api-host",
        AuthzAction::Allow,
        vec![Rule {
            to: vec![Operation {
                hosts: globs(&["api.example.com"]),
                ..Operation::default()
            }],
            ..Rule::default()
        }],
    );
    let deny_admin = policy(
        "deny-admin-host",
        AuthzAction::Deny,
        vec![Rule {
            to: vec![Operation {
                hosts: globs(&["admin.example.com"]),
                ..Operation::default()
            }],
            ..Rule::default()
        }],
    );
    let allow_all = policy("allow-all", AuthzAction::Allow, vec![Rule::default()]);
    let a = setup(71, vec![only_api], &["productpage"]).await;
    let client = a.clients[0].upstream();
    for host in [
        "api.example.com",
        "API.Example.com.",
        "api.example.com:8080",
    ] {
        let (status, body) = raw_get(client, "/", host).await;
        assert_eq!(status, 200, "Host {host:?}: {body}");
    }
    for host in ["api.example.com.evil", "evil.com", "api.example.com.."] {
        let (status, _) = raw_get(client, "/", host).await;
        assert!(status == 403 || status == 400, "Host {host:?}: {status}");
    }

    let d = setup(72, vec![deny_admin, allow_all], &["productpage"]).await;
    let client = d.clients[0].upstream();
    for host in [
        "ADMIN.example.com.",
        "admin.example.com:443",
        "Admin.Example.Com",
    ] {
        let (status, body) = raw_get(client, "/", host).await;
        assert_eq!(status, 403, "Host {host:?}: {body}");
        assert!(body.contains("denied by default/deny-admin-host"), "{body}");
    }
    let (status, body) = raw_get(client, "/", "www.example.com").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_on_one_principal_denies_another() {
    let only_productpage = policy(
        "allow-productpage",
        AuthzAction::Allow,
        vec![Rule {
            from: vec![Source {
                principals: globs(&["cluster.local/ns/default/sa/productpage"]),
                ..Source::default()
            }],
            ..Rule::default()
        }],
    );
    let s = setup(73, vec![only_productpage], &["productpage", "ratings"]).await;
    let (status, body) = raw_get(s.clients[0].upstream(), "/", "reviews").await;
    assert_eq!(status, 200, "productpage is allowed: {body}");
    let (status, body) = raw_get(s.clients[1].upstream(), "/", "reviews").await;
    assert_eq!(status, 403, "ratings is denied: {body}");
    assert_eq!(body, "RBAC: access denied (no ALLOW policy matched)\n");
    assert_eq!(
        s.backend
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The admin server shows the certificate the proxy serves with.
    let (status, body, _) = get(&http1_client(), s.server.bound.admin, "/config_dump", &[]).await;
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = "spiffe://cluster.local/ns/default/sa/reviews";
    assert_eq!(dump["identity"]["identity"], id, "{dump}");
    assert_eq!(dump["identity"]["chain"][0]["spiffeId"], id, "{dump}");
    assert_eq!(dump["identity"]["trustBundle"][0]["isCa"], true, "{dump}");
}
