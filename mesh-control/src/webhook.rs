//! The admission webhooks (port 15017, HTTPS): sidecar injection (`/inject`), a thin
//! handler over [`mesh_api::inject::inject_pod`], the same pure function `meshctl inject`
//! calls; config validation (`/validate`, see [`validate`]); and the upkeep of their
//! configurations' `caBundle` ([`ca_bundle`]).
//!
//! The apiserver POSTs an `admission.k8s.io/v1` `AdmissionReview` to `/inject` for every
//! Pod CREATE in a namespace labelled `mesh-injection=enabled`; [`review`] answers it with
//! the request's `uid`:
//!
//! - injected: allowed, with a JSONPatch from the pod as received to the injected pod
//!   (see [`patch`] for why it never drops fields k8s-openapi does not know) and the
//!   injection's warnings, which `kubectl` shows;
//! - skipped: allowed without a patch; a warning says why when it is news to the user
//!   (host network, a `mesh-proxy` container that is not ours or an older injector's), not
//!   for an opt-out;
//! - an [`InjectError`](mesh_api::inject::InjectError) (an invalid annotation, a reserved
//!   name): denied with code 400 and the error's message, which names what to fix;
//! - anything but a Pod CREATE: allowed, untouched. `dryRun` requests get the same answer,
//!   as injection has no side effects.
//!
//! A body that is not an `AdmissionReview` is an [`Error`], which [`serve`] answers with
//! HTTP 400. Pods created by controllers carry no `metadata.namespace` in the review: the
//! request's `namespace` stands in for it.
//!
//! [`serve`] is the HTTPS server (HTTP/1.1 and HTTP/2): `POST /inject` and `POST /validate`
//! with an `application/json` body of at most [`MAX_BODY`] bytes, and `GET /healthz`. Its
//! certificate comes from the caller's `rustls::ServerConfig` — in mesh-control, the
//! CA-issued serving certificate of [`crate::grpc`] through a
//! [`CertStore`](mesh_api::tls::CertStore), renewed without a restart.

pub mod ca_bundle;
pub mod patch;
pub mod validate;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use mesh_api::config::validate::Options;
use mesh_api::inject::{self, Context, Outcome, Skip};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::debug::{Body, text};

/// The webhook's port (DESIGN.md "control-plane ports").
pub const PORT: u16 = 15017;
/// The path the apiserver posts pod reviews to (injection).
pub const INJECT_PATH: &str = "/inject";
/// The path the apiserver posts reviews of our CRDs to (validation).
pub const VALIDATE_PATH: &str = "/validate";
/// The liveness path.
pub const HEALTH_PATH: &str = "/healthz";
/// The largest review accepted (bigger bodies get 413). The apiserver's own request limit
/// is 3 MiB, so a real review always fits.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The TLS handshake must complete within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1 request's headers must arrive within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; the accept loop waits beyond.
pub const MAX_HANDSHAKES: usize = 256;

/// Why a body is not a review the webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON of an `AdmissionReview`'s shape.
    #[error("the body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Parse(#[source] serde_json::Error),
    /// The body is JSON of another kind.
    #[error("the body is a {0:?}, not an AdmissionReview")]
    Kind(String),
    /// The review has no `request`.
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// The response could not be encoded (a bug).
    #[error("cannot encode the response: {0}")]
    Encode(#[source] serde_json::Error),
}

/// What the webhook needs: the injection context and the validator's options.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Sidecar injection (`/inject`).
    pub inject: Context,
    /// Config validation (`/validate`).
    pub validation: Options,
}

/// Whether injected proxies run as native sidecars (`--native-sidecars`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NativeSidecars {
    /// From the cluster's version: Kubernetes 1.29 or newer (local mode: yes).
    #[default]
    Auto,
    /// Always (restartable init containers).
    Always,
    /// Never: the proxy is the first container.
    Never,
}

/// The webhook's flags (`mesh-control` without a subcommand).
#[derive(Debug, Clone, clap::Args)]
#[group(id = "webhook-args")]
#[command(next_help_heading = "Admission webhooks")]
pub struct Args {
    /// The webhook listener (HTTPS; injection on `/inject`, validation on `/validate`).
    /// Unset: no webhook (local mode needs none).
    #[arg(long, env = "MESH_WEBHOOK_ADDR", value_name = "ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// Kubernetes mode: the MutatingWebhookConfiguration whose `caBundle` mesh-control
    /// keeps equal to its trust bundle.
    #[arg(long, value_name = "NAME")]
    pub injector_config: Option<String>,
    /// Kubernetes mode: the ValidatingWebhookConfiguration whose `caBundle` mesh-control
    /// keeps equal to its trust bundle.
    #[arg(long, value_name = "NAME")]
    pub validator_config: Option<String>,
    /// The image of injected proxies (and their init container).
    #[arg(long, env = "MESH_PROXY_IMAGE", value_name = "IMAGE",
          default_value_t = Context::image(inject::DEFAULT_HUB, inject::DEFAULT_TAG))]
    pub proxy_image: String,
    /// The address injected proxies reach the control plane at. Default:
    /// `mesh-control.<root-namespace>.svc:15012`.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy_control_plane_addr: Option<String>,
    /// Injected proxies' tracing filter (`MESH_LOG`).
    #[arg(long, value_name = "FILTER", default_value = inject::DEFAULT_LOG_LEVEL)]
    pub proxy_log_level: String,
    /// Injected proxies write access logs.
    #[arg(long)]
    pub proxy_access_log: bool,
    /// The percentage (0-100) of new traces injected proxies record.
    #[arg(long, value_name = "PERCENT")]
    pub proxy_trace_sampling: Option<f64>,
    /// The OTLP/gRPC collector injected proxies export spans to, `http://HOST[:PORT]`.
    #[arg(long, value_name = "URL")]
    pub proxy_trace_collector: Option<String>,
    /// Injected proxies' CPU request.
    #[arg(long, value_name = "QUANTITY", default_value = "10m")]
    pub proxy_cpu_request: String,
    /// Injected proxies' memory request.
    #[arg(long, value_name = "QUANTITY", default_value = "40Mi")]
    pub proxy_memory_request: String,
    /// Injected proxies' memory limit.
    #[arg(long, value_name = "QUANTITY", default_value = "128Mi")]
    pub proxy_memory_limit: String,
    /// Whether injected proxies are native sidecars.
    #[arg(long, value_enum, default_value_t = NativeSidecars::Auto)]
    pub native_sidecars: NativeSidecars,
}

impl Args {
    /// The webhook's settings; `native` is the cluster's answer for
    /// [`NativeSidecars::Auto`].
    pub fn settings(
        &self,
        trust_domain: &str,
        root_namespace: &str,
        native: bool,
    ) -> anyhow::Result<Settings> {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let quantity = |flag: &str, value: &str| -> anyhow::Result<Quantity> {
            anyhow::ensure!(
                valid_quantity(value),
                "--{flag} {value:?} is not a Kubernetes quantity; write e.g. 100m, 0.5, 64Mi or 1Gi"
            );
            Ok(Quantity(value.to_owned()))
        };
        let resources = k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(std::collections::BTreeMap::from([
                (
                    "cpu".to_owned(),
                    quantity("proxy-cpu-request", &self.proxy_cpu_request)?,
                ),
                (
                    "memory".to_owned(),
                    quantity("proxy-memory-request", &self.proxy_memory_request)?,
                ),
            ])),
            limits: Some(std::collections::BTreeMap::from([(
                "memory".to_owned(),
                quantity("proxy-memory-limit", &self.proxy_memory_limit)?,
            )])),
            ..Default::default()
        };
        let inject = Context {
            image: self.proxy_image.clone(),
            control_plane_addr: self
                .proxy_control_plane_addr
                .clone()
                .unwrap_or_else(|| format!("mesh-control.{root_namespace}.svc:15012")),
            trust_domain: trust_domain.to_owned(),
            control_plane_identity: Some(
                mesh_api::spiffe::SpiffeId::new(trust_domain, root_namespace, "mesh-control")
                    .map_err(|e| anyhow::anyhow!("--trust-domain / --root-namespace: {e}"))?,
            ),
            native_sidecars: match self.native_sidecars {
                NativeSidecars::Auto => native,
                NativeSidecars::Always => true,
                NativeSidecars::Never => false,
            },
            resources,
            log_level: self.proxy_log_level.clone(),
            access_log: self.proxy_access_log,
            trace_sampling: self.proxy_trace_sampling,
            trace_collector: self.proxy_trace_collector.clone(),
            ..Context::default()
        };
        // Checked now, so a bad flag stops mesh-control at start, not every pod later.
        let probe = k8s_openapi::api::core::v1::Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "app".to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        inject::inject_pod(&probe, &inject)
            .map_err(|e| anyhow::anyhow!("the --proxy-* flags: {e}"))?;
        Ok(Settings {
            inject,
            validation: Options {
                trust_domain: trust_domain.to_owned(),
            },
        })
    }
}

/// A Kubernetes quantity: a decimal number with an optional suffix (`m`, `k`, `M`, `G`,
/// `T`, `P`, `E`, `Ki` … `Ei`, or an exponent `e3`).
fn valid_quantity(s: &str) -> bool {
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number = number.strip_prefix(['+', '-']).unwrap_or(number);
    let digits_ok = !number.is_empty()
        && number.chars().filter(|&c| c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit())
        && number.chars().all(|c| c.is_ascii_digit() || c == '.');
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || suffix.strip_prefix(['e', 'E']).is_some_and(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    digits_ok && suffix_ok
}

/// The webhook server's TLS: mesh-control's serving certificate (`certs`, whose DNS names
/// include `mesh-control.<namespace>.svc`, the name the apiserver verifies against the
/// configuration's `caBundle`), TLS 1.2 and 1.3, no client certificate (the apiserver
/// presents none by default), ALPN `h2` and `http/1.1`.
pub fn tls_config(
    certs: Arc<mesh_api::tls::CertStore>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| anyhow::anyhow!("webhook TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// === review ===

/// Answers an injection `AdmissionReview` (the request body) with an `AdmissionReview`
/// carrying the response (the response body). See the module documentation for the
/// verdicts.
pub fn review(body: &[u8], ctx: &Context) -> Result<Vec<u8>, Error> {
    let (request, object) = parse(body)?;
    encode(admit(&request, object, ctx))
}

/// Answers a validation `AdmissionReview` (see [`validate`]).
pub fn review_config(body: &[u8], options: &Options) -> Result<Vec<u8>, Error> {
    let (request, object) = parse(body)?;
    encode(validate::admit(&request, object, options))
}

/// The request of a review, and its `object` as received.
fn parse(body: &[u8]) -> Result<(AdmissionRequest<DynamicObject>, Option<Value>), Error> {
    let mut value: Value = serde_json::from_slice(body).map_err(Error::Parse)?;
    // The object is kept raw, so fields k8s-openapi does not know survive the patch; the
    // old object is not needed. The rest is read typed.
    let object = value
        .pointer_mut("/request/object")
        .map(Value::take)
        .filter(|o| !o.is_null());
    if let Some(old) = value.pointer_mut("/request/oldObject") {
        old.take();
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(Error::Parse)?;
    if review.types.kind != kube::core::admission::META_KIND {
        return Err(Error::Kind(review.types.kind));
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| Error::NoRequest)?;
    Ok((request, object))
}

/// The response to one request; `object` is the request's `object` as received (the
/// request's own `object` field is not read).
pub fn admit(
    request: &AdmissionRequest<DynamicObject>,
    object: Option<Value>,
    ctx: &Context,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.sub_resource.is_some() || request.operation != Operation::Create {
        return allowed;
    }
    let Some(raw) = object else {
        return deny(
            allowed,
            400,
            "BadRequest",
            "the Pod CREATE request has no object",
        );
    };
    let pod: Pod = match serde_json::from_value(raw.clone()) {
        Ok(pod) => pod,
        Err(e) => {
            return deny(
                allowed,
                400,
                "BadRequest",
                format!("the pod cannot be read: {e}"),
            );
        }
    };
    let ctx = match &request.namespace {
        Some(ns) if pod.metadata.namespace.is_none() => &Context {
            namespace: ns.clone(),
            ..ctx.clone()
        },
        _ => ctx,
    };
    let who = pod_name(&pod, request);
    match inject::inject_pod(&pod, ctx) {
        Err(e) => {
            tracing::info!(uid = %request.uid, pod = %who, error = %e, "injection denied");
            deny(
                allowed,
                400,
                "BadRequest",
                format!("sidecar injection: {e}"),
            )
        }
        Ok(Outcome::Skipped(skip)) => {
            tracing::debug!(uid = %request.uid, pod = %who, reason = %skip, "injection skipped");
            let news = match &skip {
                Skip::OptedOut => false,
                Skip::AlreadyInjected { status } => {
                    status.as_ref().is_none_or(|s| s.version != inject::VERSION)
                }
                Skip::HostNetwork => true,
            };
            let mut response = allowed;
            if news {
                response.warnings = Some(vec![format!("sidecar not injected: {skip}")]);
            }
            response
        }
        Ok(Outcome::Injected {
            pod: injected,
            warnings,
        }) => {
            let typed = (serde_json::to_value(&pod), serde_json::to_value(&*injected));
            let (Ok(from), Ok(to)) = typed else {
                return deny(
                    allowed,
                    500,
                    "InternalError",
                    "sidecar injection: cannot encode the pod",
                );
            };
            let patched = patch::diff(&from, &to, &raw)
                .map_err(|e| e.to_string())
                .and_then(|p| allowed.clone().with_patch(p).map_err(|e| e.to_string()));
            match patched {
                Ok(mut response) => {
                    tracing::info!(
                        uid = %request.uid,
                        pod = %who,
                        dry_run = request.dry_run,
                        "sidecar injected"
                    );
                    if !warnings.is_empty() {
                        response.warnings = Some(warnings);
                    }
                    response
                }
                Err(e) => {
                    tracing::error!(uid = %request.uid, pod = %who, error = %e, "no patch");
                    deny(
                        allowed,
                        500,
                        "InternalError",
                        format!("sidecar injection: {e}"),
                    )
                }
            }
        }
    }
}

pub(crate) fn deny(
    mut response: AdmissionResponse,
    code: u16,
    reason: &str,
    message: impl Into<String>,
) -> AdmissionResponse {
    response.allowed = false;
    response.result = Status::failure(&message.into(), reason).with_code(code);
    response
}

/// `namespace/name` or `namespace/generateName*` for logs.
fn pod_name(pod: &Pod, request: &AdmissionRequest<DynamicObject>) -> String {
    let ns = pod
        .metadata
        .namespace
        .as_deref()
        .or(request.namespace.as_deref())
        .unwrap_or("");
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) => format!("{ns}/{name}"),
        (None, Some(prefix)) => format!("{ns}/{prefix}*"),
        (None, None) => format!("{ns}/?"),
    }
}

/// The review's JSON, with the patch base64-encoded as the API's `[]byte` is (kube's
/// `Vec<u8>` would serialize as an array of numbers, which the apiserver accepts but at
/// three times the size).
fn encode(mut response: AdmissionResponse) -> Result<Vec<u8>, Error> {
    let patch = response.patch.take();
    let mut value = serde_json::to_value(response.into_review()).map_err(Error::Encode)?;
    if let (Some(patch), Some(Value::Object(out))) = (patch, value.get_mut("response")) {
        out.insert(
            "patch".to_owned(),
            Value::String(mesh_api::tls::base64(&patch)),
        );
    }
    serde_json::to_vec(&value).map_err(Error::Encode)
}

// === server ===

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("only {allow} is served here\n"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

/// Answers one HTTP request (any body type, so tests can call it directly).
pub async fn handle<B>(req: Request<B>, settings: &Settings) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match req.uri().path() {
        HEALTH_PATH if req.method() == Method::GET => text(StatusCode::OK, "ok\n"),
        HEALTH_PATH => not_allowed("GET"),
        INJECT_PATH if req.method() == Method::POST => {
            answer(req, |body| review(body, &settings.inject)).await
        }
        VALIDATE_PATH if req.method() == Method::POST => {
            answer(req, |body| review_config(body, &settings.validation)).await
        }
        INJECT_PATH | VALIDATE_PATH => not_allowed("POST"),
        other => text(
            StatusCode::NOT_FOUND,
            format!(
                "{other}: not found; the webhook serves POST {INJECT_PATH}, POST {VALIDATE_PATH} and GET {HEALTH_PATH}\n"
            ),
        ),
    }
}

/// Reads a review from `req` and answers it with `review`.
async fn answer<B>(
    req: Request<B>,
    review: impl FnOnce(&[u8]) -> Result<Vec<u8>, Error>,
) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an AdmissionReview is sent as Content-Type: application/json\n",
        );
    }
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the review exceeds {MAX_BODY} bytes\n"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            );
        }
    };
    match review(&body) {
        Ok(out) => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(out)))
            .expect("valid response"),
        Err(e @ Error::Encode(_)) => {
            tracing::error!(error = %e, "admission response");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
        Err(e) => {
            tracing::debug!(error = %e, "unreadable admission review");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

/// Serves the webhook over TLS on `listener` until `stop` resolves. `tls` should offer
/// ALPN `h2` and `http/1.1`; connections in progress when `stop` resolves run to their end.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    settings: Arc<Settings>,
    stop: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    tokio::pin!(stop);
    loop {
        let next = async {
            let permit = handshakes.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        let (permit, (socket, peer)): (_, (_, SocketAddr)) = tokio::select! {
            () = &mut stop => return,
            (permit, accepted) = next => match (permit, accepted) {
                (Err(_), _) => return,
                (Ok(p), Ok(a)) => (p, a),
                (Ok(_), Err(e)) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            drop(permit);
            let svc = hyper::service::service_fn(move |req| {
                let settings = settings.clone();
                async move { Ok::<_, Infallible>(handle(req, &settings).await) }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            if let Err(e) = builder.serve_connection(io, svc).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests;
