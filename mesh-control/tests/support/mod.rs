//! Shared harness of the in-process tests: a [`ControlPlane`] in local mode on port 0 with
//! its own state directory, and a TLS HTTP/2 client for its gRPC port (tonic's generated
//! clients over a hyper connection), with or without a client certificate.
//!
//! Every wait is bounded by [`DEADLINE`].

#![allow(dead_code, unreachable_pub)] // Reason: each test file uses a part of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use mesh_api::spiffe::SpiffeId;
use mesh_api::tls::{
    ALPN_H2, CertStore, Expected, ServerVerifier, TrustBundle, TrustStore, certified_key,
    client_config,
};
use mesh_control::app::{App, Bound};
use mesh_control::ca::Ca;
use mesh_control::cli::Cli;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The bound on every wait.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Writes `text` to `dir/file` atomically (the registry polls).
pub fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, dir.join(file)).expect("rename config");
}

/// A control plane running in this process.
pub struct ControlPlane {
    pub bound: Bound,
    pub ca: Ca,
    pub state_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ControlPlane {
    /// Starts `mesh-control --config-dir <dir> --state-dir <state>` plus `extra` flags.
    pub async fn start(dir: &Path, state_dir: &Path, extra: &[&str]) -> Self {
        let mut argv = vec![
            "mesh-control".to_owned(),
            "--config-dir".into(),
            dir.display().to_string(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--discovery-addr".into(),
            "127.0.0.1:0".into(),
            "--debug-addr".into(),
            "127.0.0.1:0".into(),
            "--poll-interval".into(),
            "20ms".into(),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let cli = Cli::try_parse_from(argv).expect("valid flags");
        let app = App::build(cli.server).await.expect("build control plane");
        let bound = app.bound();
        let ca = app.ca().clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        Self {
            bound,
            ca,
            state_dir: state_dir.to_owned(),
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("control plane stops")
            .expect("no panic")
            .expect("clean stop");
    }

    /// A certificate for `identity` minted by the control plane's CA.
    pub fn credentials(&self, identity: &str) -> Credentials {
        let id: SpiffeId = identity.parse().unwrap();
        let issued = self
            .ca
            .issue(&id, &[], Duration::from_secs(3600))
            .expect("issue");
        Credentials {
            chain: issued.issued.chain,
            key: issued.key,
        }
    }

    /// Connects to the gRPC port, trusting the current bundle.
    pub async fn connect(&self, client: Option<&Credentials>) -> anyhow::Result<H2> {
        connect(self.bound.discovery, &self.ca.bundle().roots, client).await
    }

    /// GET `path` on the debug port.
    pub async fn debug(&self, path: &str) -> String {
        http_get(self.bound.debug, path).await
    }

    /// The token file of `ns/sa`, once the control plane has created it.
    pub async fn token(&self, ns: &str, sa: &str) -> String {
        let path = self.state_dir.join("tokens").join(ns).join(sa);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(t) = std::fs::read_to_string(&path) {
                return t.trim().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not created",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A client certificate and key.
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// mesh-control's identity in the default root namespace.
pub fn control_plane_identity() -> SpiffeId {
    "spiffe://cluster.local/ns/mesh-system/sa/mesh-control"
        .parse()
        .unwrap()
}

/// A TLS HTTP/2 connection to `addr` verifying mesh-control's identity against `roots`,
/// presenting `client` if given.
pub async fn connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    client: Option<&Credentials>,
) -> anyhow::Result<H2> {
    let tls = tls_stream(addr, roots, client).await?;
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await?;
    tokio::spawn(conn);
    Ok(H2(send))
}

/// A TLS connection to `addr` (the client side of the handshake done).
pub async fn tls_stream(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    client: Option<&Credentials>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let store = Arc::new(TrustStore::new(TrustBundle::new(roots.to_vec())?));
    let verifier = Arc::new(ServerVerifier::new(
        store,
        Expected::Exactly(control_plane_identity()),
    ));
    let certs = match client {
        Some(c) => {
            let s = CertStore::new();
            s.store(certified_key(c.chain.clone(), c.key.clone_key())?);
            Some(Arc::new(s))
        }
        None => None,
    };
    let config = client_config(certs, verifier, &[ALPN_H2]);
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("mesh-control.mesh-system.svc")?, tcp)
        .await?;
    Ok(tls)
}

/// A hyper HTTP/2 connection as the service tonic's generated clients call.
#[derive(Clone)]
pub struct H2(pub hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        *req.uri_mut() = format!(
            "https://mesh-control{}",
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        )
        .parse()
        .expect("valid uri");
        Box::pin(self.0.send_request(req))
    }
}

/// GET `path` from an HTTP/1.1 server.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect debug");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "debug")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("debug request");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(body.to_vec()).expect("utf-8")
}

/// A DER CSR for a new P-256 key (with `sans` requested, which the CA must ignore), and
/// the key.
pub fn csr(sans: Vec<rcgen::SanType>) -> (Vec<u8>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans;
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (der, key)
}

/// Whether `cert` was signed by `issuer`'s key.
pub fn signed_by(cert: &CertificateDer<'_>, issuer: &CertificateDer<'_>) -> bool {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert.as_ref()).unwrap();
    let (_, i) = X509Certificate::from_der(issuer.as_ref()).unwrap();
    c.verify_signature(Some(i.public_key())).is_ok()
}
