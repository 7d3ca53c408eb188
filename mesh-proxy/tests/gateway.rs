//! In-process tests of `mesh-proxy gateway`: an ingress gateway with a static config routes
//! by host to a backend behind a sidecar over mutual TLS, answers 404 for hosts it does not
//! serve, and reports `reporter="source"` metrics; HTTPS listeners terminate TLS with
//! certificates from `--credentials-dir` (SNI, ALPN h2 and http/1.1, reloads, a missing
//! credential). Loopback network `127.97.0.0/16`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use mesh_api::model::*;
use support::*;

const NET: u8 = 97;

/// GET `/` through the gateway listener `addr` with `Host: host`.
async fn get_host(addr: SocketAddr, host: &str) -> (StatusCode, String, http::HeaderMap) {
    let req = Request::builder()
        .uri(format!("http://{addr}/"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), http1_client().request(req))
        .await
        .expect("request within 10s")
        .expect("request succeeds at the HTTP level");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_by_host_to_a_sidecar_over_mtls_and_404s_unknown_hosts() {
    let server = workload("reviews-v1", ip(NET, 2), "reviews", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![server.clone()])];
    let backend = backend(SocketAddr::new(ip(NET, 2), 8080), "v1", Behavior::default()).await;
    let server_proxy = proxy(
        server.address,
        &spec(
            server.clone(),
            services.clone(),
            eps.clone(),
            Vec::new(),
            Vec::new(),
        ),
        &[],
    )
    .await;

    let me = workload("ingress-1", ip(NET, 1), "mesh-ingressgateway", "v1", true);
    let mut gw = spec(me.clone(), services, eps, Vec::new(), Vec::new());
    gw.mode = ProxyMode::Gateway;
    gw.listeners = vec![Listener {
        name: Listener::name_for(80),
        port: 80,
        bind_port: Some(8080),
        virtual_hosts: vec![RouteTable {
            name: "shop/shop:80".into(),
            hostnames: vec!["shop.example.com".into()],
            port: 80,
            http: vec![catch_all(
                "shop",
                HttpAction::Forward(forward(vec![(ClusterKey::new(HOST, 9080), 1)])),
            )],
            tcp: Vec::new(),
        }],
        tls: None,
    }];
    let gateway = gateway_proxy(me.address, &gw, &[80]).await;
    let (port, listen) = gateway.bound.gateway[0];
    assert_eq!(port, 80);

    // Host matching ignores case and the port.
    for host in ["shop.example.com", "SHOP.Example.com:80"] {
        let (status, body, _) = get_host(listen, host).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert!(body.starts_with("v1 "), "{host}: {body}");
    }
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    let (status, _, headers) = get_host(listen, "unknown.example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let why = headers
        .get("x-mesh-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        why.contains("unknown.example.com") && why.contains("it serves shop.example.com"),
        "{why:?}"
    );

    // The gateway reports as the source, naming itself and the destination service…
    let (_, metrics, _) = get(&http1_client(), gateway.bound.metrics, "/metrics", &[]).await;
    let ok = metrics.lines().find(|l| {
        l.starts_with("mesh_requests_total{")
            && l.contains("reporter=\"source\"")
            && l.contains("response_code=\"200\"")
    });
    let ok = ok.unwrap_or_else(|| panic!("no 200 series in:\n{metrics}"));
    assert!(ok.contains("source_workload=\"ingress-1\""), "{ok}");
    assert!(ok.contains("source_app=\"mesh-ingressgateway\""), "{ok}");
    assert!(
        ok.contains(&format!("destination_service=\"{HOST}\"")),
        "{ok}"
    );
    assert!(ok.ends_with(" 2"), "{ok}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mesh_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("response_code=\"404\"")),
        "{metrics}"
    );
    // …and the sidecar saw the gateway's mesh identity over mutual TLS.
    let (_, server_metrics, _) =
        get(&http1_client(), server_proxy.bound.metrics, "/metrics", &[]).await;
    assert!(
        server_metrics
            .lines()
            .any(|l| l.starts_with("mesh_requests_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("connection_security_policy=\"mutual_tls\"")
                && l.contains(
                    "source_principal=\"spiffe://cluster.local/ns/default/sa/mesh-ingressgateway\""
                )),
        "{server_metrics}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binds_config_listeners_on_their_bind_port() {
    // No `--listen`: the listener of server port 80 binds its bind port on the listen host.
    let me = workload("ingress-2", ip(NET, 5), "mesh-ingressgateway", "v1", true);
    let mut gw = spec(me.clone(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    gw.mode = ProxyMode::Gateway;
    let bind = {
        // A free port on this test's own address.
        let l = std::net::TcpListener::bind(SocketAddr::new(me.address, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    gw.listeners = vec![Listener {
        name: Listener::name_for(80),
        port: 80,
        bind_port: Some(bind),
        virtual_hosts: Vec::new(),
        tls: None,
    }];
    let gateway = gateway_proxy(me.address, &gw, &[]).await;
    let addr = SocketAddr::new(me.address, bind);
    let mut answered = None;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            answered = Some(get_host(addr, "shop.example.com").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, headers) = answered.expect("the gateway binds its listener within 5s");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let why = headers.get("x-mesh-error").unwrap().to_str().unwrap();
    assert!(why.contains("serves no hosts"), "{why}");
    gateway.stop().await;
}

/// A test web PKI: a root the HTTPS client trusts, issuing server certificates.
struct WebPki {
    root: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl WebPki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "gateway test root");
        let root = p.self_signed(&key).unwrap().der().clone();
        Self {
            root,
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// Writes credential `name` for `host` (`tls.crt`, `tls.key`) under `dir`.
    fn write_credential(&self, dir: &std::path::Path, name: &str, host: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        // The key first, so a reader never sees a new certificate with the old key for long.
        std::fs::write(d.join("tls.key"), key.serialize_pem()).unwrap();
        std::fs::write(d.join("tls.crt"), cert.pem()).unwrap();
    }
}

/// GET `/` over TLS to `addr` with SNI and `Host` `host`, offering ALPN `alpn`; returns the
/// status, body and the negotiated protocol.
async fn https_get(
    addr: SocketAddr,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[u8],
) -> anyhow::Result<(StatusCode, String, Vec<u8>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone())?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await?;
        let negotiated = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
        let io = hyper_util::rt::TokioIo::new(tls);
        let res = if negotiated == b"h2" {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await?;
            tokio::spawn(conn);
            let req = Request::builder()
                .uri(format!("https://{host}/"))
                .body(Full::new(Bytes::new()))?;
            send.send_request(req).await?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let req = Request::builder()
                .uri("/")
                .header("host", host)
                .body(Full::new(Bytes::new()))?;
            send.send_request(req).await?
        };
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        anyhow::Ok((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            negotiated,
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), run).await?
}

/// The value of the unlabelled gauge `name` in the gateway's metrics, if exposed.
async fn gauge(metrics: SocketAddr, name: &str) -> Option<String> {
    let (_, body, _) = get(&http1_client(), metrics, "/metrics", &[]).await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_terminates_tls_by_sni_with_credentials_from_its_directory() {
    let server = workload("reviews-v1", ip(NET, 12), "reviews", "v1", true);
    let services = vec![service(9080, 8080, AppProtocol::Http)];
    let eps = vec![endpoints(vec![server.clone()])];
    let _backend = backend(
        SocketAddr::new(ip(NET, 12), 8080),
        "v1",
        Behavior::default(),
    )
    .await;
    let _server_proxy = proxy(
        server.address,
        &spec(
            server.clone(),
            services.clone(),
            eps.clone(),
            Vec::new(),
            Vec::new(),
        ),
        &[],
    )
    .await;

    let pki = WebPki::new();
    let credentials = tempfile::tempdir().unwrap();
    pki.write_credential(credentials.path(), "shop-cert", "shop.example.com");
    pki.write_credential(credentials.path(), "api-cert", "api.example.com");

    let vhost = |port: u16| RouteTable {
        name: format!("shop/shop:{port}"),
        hostnames: vec!["shop.example.com".into(), "api.example.com".into()],
        port,
        http: vec![catch_all(
            "shop",
            HttpAction::Forward(forward(vec![(ClusterKey::new(HOST, 9080), 1)])),
        )],
        tcp: Vec::new(),
    };
    let tls = |names: &[(&str, &str)]| {
        Some(ListenerTls {
            certificates: names
                .iter()
                .map(|(name, host)| ServerCertificate {
                    credential_name: (*name).to_owned(),
                    hosts: vec![(*host).to_owned()],
                })
                .collect(),
        })
    };
    let me = workload(
        "ingress-tls",
        ip(NET, 11),
        "mesh-ingressgateway",
        "v1",
        true,
    );
    let mut gw = spec(me.clone(), services, eps, Vec::new(), Vec::new());
    gw.mode = ProxyMode::Gateway;
    gw.listeners = vec![
        Listener {
            name: Listener::name_for(80),
            port: 80,
            bind_port: None,
            virtual_hosts: vec![vhost(80)],
            tls: None,
        },
        Listener {
            name: Listener::name_for(443),
            port: 443,
            bind_port: None,
            virtual_hosts: vec![vhost(443)],
            tls: tls(&[
                ("api-cert", "api.example.com"),
                ("shop-cert", "shop.example.com"),
            ]),
        },
        Listener {
            name: Listener::name_for(8443),
            port: 8443,
            bind_port: None,
            virtual_hosts: vec![vhost(8443)],
            tls: tls(&[("late-cert", "shop.example.com")]),
        },
    ];
    let gateway =
        gateway_proxy_with_credentials(me.address, &gw, &[80, 443, 8443], Some(credentials.path()))
            .await;
    let addr = |port: u16| {
        gateway
            .bound
            .gateway
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, a)| *a)
            .unwrap()
    };
    let metrics = gateway.bound.metrics;

    // The missing credential is reported once the config is applied: its listener is
    // unavailable, the others are not.
    let mut unavailable = None;
    for _ in 0..100 {
        unavailable = gauge(metrics, "mesh_gateway_listeners_unavailable").await;
        if unavailable.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unavailable.as_deref(), Some("1"), "within 5s");

    // HTTPS with SNI: the client verifies the certificate for the name, over h2 and
    // http/1.1, and the request is routed through the sidecar.
    for alpn in [&b"h2"[..], b"http/1.1"] {
        for host in ["shop.example.com", "api.example.com"] {
            let (status, body, negotiated) = https_get(addr(443), host, &pki.root, alpn)
                .await
                .unwrap_or_else(|e| panic!("{host} over {alpn:?}: {e:#}"));
            assert_eq!(status, StatusCode::OK, "{host}: {body}");
            assert!(body.starts_with("v1 "), "{host}: {body}");
            assert_eq!(negotiated, alpn);
        }
    }
    // Plain HTTP to the TLS port fails; the HTTP port serves as before.
    let plain = Request::builder()
        .uri(format!("http://{}/", addr(443)))
        .header("host", "shop.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), http1_client().request(plain))
        .await
        .expect("answered or closed within 10s");
    assert!(res.is_err(), "plain HTTP to a TLS listener: {res:?}");
    let (status, body, _) = get_host(addr(80), "shop.example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The listener without its credential closes connections…
    https_get(addr(8443), "shop.example.com", &pki.root, b"h2")
        .await
        .expect_err("no certificate to serve");
    // …until the credential appears, which the gateway picks up by itself.
    pki.write_credential(credentials.path(), "late-cert", "shop.example.com");
    let mut served = None;
    for _ in 0..100 {
        if let Ok(r) = https_get(addr(8443), "shop.example.com", &pki.root, b"h2").await {
            served = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = served.expect("the new credential is served within 10s");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        gauge(metrics, "mesh_gateway_listeners_unavailable")
            .await
            .as_deref(),
        Some("0")
    );
    gateway.stop().await;
}
