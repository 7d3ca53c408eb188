//! Sidecar injection: the one pure function that turns a pod, or a workload's pod template,
//! into a meshed one. mesh-control's admission webhook and `meshctl inject` both call it
//! (DESIGN.md "Components"), so a pod injected at admission and a manifest injected on a
//! laptop are the same pod.
//!
//! [`inject_pod`] (and [`inject_template`] for Deployments, Jobs, …) takes a pod and a
//! [`Context`] (image, control-plane address, trust domain, proxy resources, whether the
//! cluster has native sidecars) and returns an [`Outcome`]: the injected pod with
//! warnings, or why it was [`Skip`]ped — opted out with `sidecar.mesh.dev/inject: "false"`,
//! already injected (a container or init container named `mesh-proxy` exists; injection is
//! idempotent), or `hostNetwork: true` (capture rules would rewrite the node's own network).
//! Invalid input is an [`InjectError`] that names the annotation, the value and the
//! expected form: the webhook turns it into a denial, never into a broken pod.
//! [`inject_yaml`] applies the same to every workload of a multi-document YAML stream.
//!
//! # What an injected pod has
//!
//! - An init container `mesh-init` (`mesh-proxy init`: the capture rules), root with
//!   `NET_ADMIN` and `NET_RAW` only, all other capabilities dropped, no privilege
//!   escalation. The annotations `traffic.sidecar.mesh.dev/excludeInboundPorts`,
//!   `…/excludeOutboundPorts` (ports and `8000-8010` ranges) and
//!   `…/excludeOutboundIPRanges` (CIDRs) become its `--exclude-*` flags.
//! - The proxy `mesh-proxy` (`mesh-proxy run`), uid/gid 1337, non-root, read-only root file
//!   system, no capabilities, with the ports 15008 (`mesh`), 15020 (`mesh-metrics`) and
//!   15021 (`mesh-health`, the readiness probe `/healthz/ready`), the DESIGN.md proxy
//!   environment (`POD_NAME`, `POD_NAMESPACE`, `POD_IP` and `SERVICE_ACCOUNT` from the
//!   downward API; `MESH_CONTROL_ADDR`, `MESH_TRUST_DOMAIN`, `MESH_CONTROL_PLANE_IDENTITY`,
//!   `MESH_LOG`, `MESH_TOKEN_FILE`, `MESH_CA_BUNDLE`, and per the [`Context`]
//!   `MESH_ACCESS_LOG`, `MESH_TRACE_SAMPLING`, `MESH_TRACE_COLLECTOR`; `MESH_APP_PROBES`
//!   when probes are rewritten, see below), the pod's labels as `--label KEY=VALUE`
//!   arguments, a projected ServiceAccount token (audience `mesh-control`, 12 h) in
//!   `/var/run/secrets/tokens` and the `mesh-root-cert` ConfigMap (`root-cert.pem`, which the
//!   control plane publishes into meshed namespaces) in `/var/run/secrets/mesh`.
//! - Annotations: `sidecar.mesh.dev/status` (JSON [`Status`]: the injected names and the
//!   injector's version, so a stale injection is visible), Prometheus scrape annotations for
//!   15020 unless the pod has its own, and in classic mode
//!   `kubectl.kubernetes.io/default-container` so `kubectl logs` shows the application.
//! - The label `security.mesh.dev/tlsMode: mesh`.
//!
//! Both containers use one image whose entrypoint is `mesh-proxy`: they set only `args`.
//!
//! # Native and classic sidecars
//!
//! With native sidecars (Kubernetes 1.29 and later, [`Context::native_sidecars`]) the proxy
//! is an init container right after `mesh-init` with `restartPolicy: Always` and a startup
//! probe on `/healthz/ready`: the kubelet starts the application containers (and any
//! later init containers) only once the proxy has its certificate and config, and a Job's
//! pod completes when its application exits. Before 1.29 the proxy is the *first*
//! container with a `postStart` hook running `mesh-proxy wait`: the kubelet starts the
//! application container only when the hook returns, i.e. once the proxy is ready (Istio's
//! `holdApplicationUntilProxyStarts`). The [`Outcome`] carries honest warnings: a pod that
//! runs to completion (`restartPolicy` `Never` or `OnFailure`: a Job's) does not complete
//! until the proxy is told to quit (`POST localhost:15000/quitquitquit`), and the pod's own
//! init containers run before `mesh-init`, i.e. outside the mesh (plaintext, which servers
//! under STRICT mTLS refuse).
//!
//! # Probes under STRICT mTLS
//!
//! The kubelet probes from the node, in plaintext, to the pod's IP; captured, a probe would
//! reach the proxy and be refused under STRICT mTLS. Excluding the probed ports from
//! capture would make them bypass the proxy for *every* client (a probe on the serving
//! port, the common case, would make the service plaintext and unauthorized), so, as
//! Istio does, injection rewrites the probes to go through the proxy ([`probe`]): each
//! `livenessProbe`, `readinessProbe` and `startupProbe` of an application container (and,
//! with native sidecars, of the pod's own sidecar init containers) that is `httpGet`,
//! `tcpSocket` or `grpc` becomes `httpGet :15021/app-health/<container>/<livez|readyz|startupz>`
//! with its timing fields kept, and the originals, named ports resolved through the
//! container's `ports`, go to the proxy as JSON [`AppProbes`] in `MESH_APP_PROBES`. The
//! proxy (uid 1337, not captured) runs each original probe against 127.0.0.1 and answers
//! with its result, so the application must listen on localhost (or all addresses).
//!
//! Left as they are: `exec` probes, probes with an explicit `host` (they go elsewhere),
//! probes on the proxy's own ports, and probes whose named port the container does not
//! have (a warning: the kubelet cannot probe them either).
//!
//! Opt out with the pod annotation `sidecar.mesh.dev/rewriteAppProbers: "false"`: the
//! probes are left untouched, so under STRICT mTLS the proxy refuses the kubelet's
//! plaintext probes and the pod never becomes ready, unless the probed ports are excluded
//! from capture with `traffic.sidecar.mesh.dev/excludeInboundPorts` (which makes them
//! bypass the proxy for every client).
//!
//! # Not covered
//!
//! Restricted or baseline Pod Security admission forbids `NET_ADMIN`; such namespaces need
//! a CNI plugin instead of the init container (not provided). The `--label` arguments are
//! the labels at injection time; label changes on a running pod are not seen by its proxy.

mod exclude;
pub mod probe;
mod yaml;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, ObjectFieldSelector, Pod,
    PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::spiffe::{self, DEFAULT_TRUST_DOMAIN, SpiffeId};

use self::exclude::{CIDRS_FORM, PORTS_FORM};
pub use self::probe::{APP_PROBES_ENV, AppProbe, AppProbes};
pub use self::yaml::{DocumentReport, DocumentResult, YamlError, YamlOutput, inject_yaml};
use crate::capture::{self, Cidr, PortRange};

/// This injector's version, recorded in [`STATUS_ANNOTATION`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the proxy image is published by default.
pub const DEFAULT_HUB: &str = "ghcr.io/mesh-dev";
/// The default proxy image tag: the injector's own version.
pub const DEFAULT_TAG: &str = VERSION;
/// The control plane's discovery and identity address inside the cluster.
pub const DEFAULT_CONTROL_PLANE_ADDR: &str = "mesh-control.mesh-system.svc:15012";
/// The default tracing filter of injected proxies (`MESH_LOG`).
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The proxy container's name; a pod with a container or init container of this name is
/// already injected.
pub const PROXY_CONTAINER: &str = "mesh-proxy";
/// The init container that installs the capture rules.
pub const INIT_CONTAINER: &str = "mesh-init";
/// The projected ServiceAccount token volume.
pub const TOKEN_VOLUME: &str = "mesh-token";
/// The trust bundle volume, and the ConfigMap it mounts.
pub const ROOT_CERT_VOLUME: &str = "mesh-root-cert";
/// The audience of the projected token, checked by mesh-control's CA.
pub const TOKEN_AUDIENCE: &str = "mesh-control";
/// The projected token's requested lifetime (12 h; the kubelet refreshes it at 80 %).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 43_200;
/// Where the token volume is mounted.
pub const TOKEN_DIR: &str = "/var/run/secrets/tokens";
/// The token file (`MESH_TOKEN_FILE`).
pub const TOKEN_FILE: &str = "/var/run/secrets/tokens/mesh-token";
/// Where the trust bundle ConfigMap is mounted.
pub const ROOT_CERT_DIR: &str = "/var/run/secrets/mesh";
/// The trust bundle key of the ConfigMap.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
/// The trust bundle file (`MESH_CA_BUNDLE`).
pub const CA_BUNDLE_FILE: &str = "/var/run/secrets/mesh/root-cert.pem";

/// The proxy's uid and gid, excluded from capture (DESIGN.md "proxy UID/GID").
pub const PROXY_ID: i64 = 1337;
/// The proxy's mesh (mTLS) inbound port.
pub const MESH_PORT: u16 = 15008;
/// The proxy's metrics port (`/metrics`).
pub const METRICS_PORT: u16 = 15020;
/// The proxy's health port (`/healthz/ready`).
pub const HEALTH_PORT: u16 = 15021;
/// The proxy's admin port (localhost only).
pub const ADMIN_PORT: u16 = 15000;
/// The readiness path of the health port.
pub const READY_PATH: &str = "/healthz/ready";

/// `"false"` opts a pod out of injection (`"true"` is accepted and changes nothing).
pub const INJECT_ANNOTATION: &str = "sidecar.mesh.dev/inject";
/// The injection record, JSON [`Status`].
pub const STATUS_ANNOTATION: &str = "sidecar.mesh.dev/status";
/// `"false"` leaves the application's probes as they are instead of rewriting them through
/// the proxy (`"true"`, the default, rewrites them); see the module documentation.
pub const REWRITE_PROBES_ANNOTATION: &str = "sidecar.mesh.dev/rewriteAppProbers";
/// Inbound ports (and ranges) the capture rules leave alone.
pub const EXCLUDE_INBOUND_PORTS_ANNOTATION: &str = "traffic.sidecar.mesh.dev/excludeInboundPorts";
/// Outbound destination ports (and ranges) the capture rules leave alone.
pub const EXCLUDE_OUTBOUND_PORTS_ANNOTATION: &str = "traffic.sidecar.mesh.dev/excludeOutboundPorts";
/// Outbound destination networks the capture rules leave alone.
pub const EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION: &str =
    "traffic.sidecar.mesh.dev/excludeOutboundIPRanges";
/// kubectl's default container for `logs`/`exec` (set in classic mode, where the proxy
/// comes first).
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// The label marking a pod whose proxy accepts mutual TLS.
pub const TLS_MODE_LABEL: &str = "security.mesh.dev/tlsMode";
/// The value of [`TLS_MODE_LABEL`] on injected pods.
pub const TLS_MODE_MESH: &str = "mesh";

const PROMETHEUS_SCRAPE: &str = "prometheus.io/scrape";
const PROMETHEUS_PORT: &str = "prometheus.io/port";
const PROMETHEUS_PATH: &str = "prometheus.io/path";

// === Context ===

/// The settings injection needs from its caller (the webhook's flags and the cluster's
/// version, or `meshctl inject`'s flags). [`Default`] gives the in-cluster defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The proxy image, for both containers (default [`Context::image`] of [`DEFAULT_HUB`]
    /// and [`DEFAULT_TAG`]).
    pub image: String,
    /// The control plane's address, `HOST:PORT` (`MESH_CONTROL_ADDR`).
    pub control_plane_addr: String,
    /// The mesh's trust domain (`MESH_TRUST_DOMAIN`).
    pub trust_domain: String,
    /// The control plane's SPIFFE identity; `None` means
    /// `spiffe://<trust-domain>/ns/mesh-system/sa/mesh-control`.
    pub control_plane_identity: Option<SpiffeId>,
    /// Whether the cluster runs native sidecars (`restartPolicy: Always` init containers,
    /// Kubernetes 1.29+; see [`native_sidecars_supported`]).
    pub native_sidecars: bool,
    /// Requests and limits of the proxy (and of `mesh-init`).
    pub resources: ResourceRequirements,
    /// The proxy's tracing filter (`MESH_LOG`), e.g. `info` or `info,mesh_proxy=debug`.
    pub log_level: String,
    /// The namespace of pods whose metadata names none (admission requests and manifests
    /// often leave it to the request); used for the identity check and in messages.
    pub namespace: String,
    /// Whether proxies write access logs (`MESH_ACCESS_LOG=true`).
    pub access_log: bool,
    /// The percentage (0-100) of new traces proxies record (`MESH_TRACE_SAMPLING`); `None`
    /// keeps the proxy's default (1 %).
    pub trace_sampling: Option<f64>,
    /// The OTLP/gRPC collector proxies export spans to, `http://HOST[:PORT]`
    /// (`MESH_TRACE_COLLECTOR`); `None`: tracing off.
    pub trace_collector: Option<String>,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            image: Self::image(DEFAULT_HUB, DEFAULT_TAG),
            control_plane_addr: DEFAULT_CONTROL_PLANE_ADDR.to_owned(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            control_plane_identity: None,
            native_sidecars: true,
            resources: Self::default_resources(),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            namespace: "default".to_owned(),
            access_log: false,
            trace_sampling: None,
            trace_collector: None,
        }
    }
}

impl Context {
    /// The proxy image reference `<hub>/mesh-proxy:<tag>`.
    pub fn image(hub: &str, tag: &str) -> String {
        format!("{}/mesh-proxy:{tag}", hub.trim_end_matches('/'))
    }

    /// The default proxy resources: requests cpu 10m, memory 40Mi; limit memory 128Mi (no
    /// CPU limit: throttling a proxy adds latency to every request).
    pub fn default_resources() -> ResourceRequirements {
        let q = |s: &str| Quantity(s.to_owned());
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), q("10m")),
                ("memory".to_owned(), q("40Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), q("128Mi"))])),
            ..ResourceRequirements::default()
        }
    }

    /// The control plane's identity the proxies verify.
    pub fn control_plane_identity(&self) -> Result<SpiffeId, InjectError> {
        match &self.control_plane_identity {
            Some(id) => Ok(id.clone()),
            None => SpiffeId::new(&self.trust_domain, "mesh-system", "mesh-control").map_err(|e| {
                InjectError::Context(format!("trust domain {:?}: {e}", self.trust_domain))
            }),
        }
    }

    fn validate(&self) -> Result<SpiffeId, InjectError> {
        let bad = |what: &str, value: &str| {
            Err(InjectError::Context(format!(
                "{what} {value:?} must be non-empty and contain no whitespace"
            )))
        };
        if self.image.is_empty() || self.image.contains(char::is_whitespace) {
            return bad("image", &self.image);
        }
        if self.control_plane_addr.is_empty()
            || self.control_plane_addr.contains(char::is_whitespace)
        {
            return bad("control-plane address", &self.control_plane_addr);
        }
        if self.log_level.trim().is_empty() {
            return Err(InjectError::Context("the log level is empty".to_owned()));
        }
        if let Some(p) = self.trace_sampling
            && !(0.0..=100.0).contains(&p)
        {
            return Err(InjectError::Context(format!(
                "trace sampling {p} is not a percentage from 0 to 100"
            )));
        }
        if let Some(c) = &self.trace_collector
            && (c.is_empty() || c.contains(char::is_whitespace))
        {
            return bad("trace collector", c);
        }
        self.control_plane_identity()
    }
}

/// Whether a Kubernetes version (as `/version` reports it: major `"1"`, minor `"29"` or
/// `"29+"`) runs native sidecars, i.e. is 1.29 or later.
pub fn native_sidecars_supported(major: &str, minor: &str) -> bool {
    let num = |s: &str| -> Option<u32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    match (num(major), num(minor)) {
        (Some(major), Some(minor)) => (major, minor) >= (1, 29),
        _ => false,
    }
}

// === Outcome ===

/// What injection did with one pod (`T` = [`Pod`]) or pod template (`T` =
/// [`PodTemplateSpec`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T = Pod> {
    /// The injected pod, and what its owner should know about it (each warning a sentence).
    Injected {
        /// The injected pod or template.
        pod: Box<T>,
        /// Caveats about the result (classic sidecars, probes on unknown ports, …).
        warnings: Vec<String>,
    },
    /// The pod is left as it is.
    Skipped(Skip),
}

/// Why a pod is not injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `sidecar.mesh.dev/inject: "false"`.
    OptedOut,
    /// It already has a `mesh-proxy` container; `status` is its injection record, if any.
    AlreadyInjected {
        /// The pod's [`STATUS_ANNOTATION`], when present and readable.
        status: Option<Status>,
    },
    /// `hostNetwork: true`: capture rules would be installed in the node's network.
    HostNetwork,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OptedOut => write!(f, "opted out with {INJECT_ANNOTATION}: \"false\""),
            Self::AlreadyInjected { status: Some(s) } if s.version != VERSION => write!(
                f,
                "already injected, by injector {} (this is {VERSION}): to upgrade the proxy, \
                 inject the original manifest again or restart the workload so the webhook \
                 re-injects it",
                s.version
            ),
            Self::AlreadyInjected { .. } => {
                write!(f, "already injected (it has a {PROXY_CONTAINER} container)")
            }
            Self::HostNetwork => write!(
                f,
                "hostNetwork: true (capture rules would redirect the node's own traffic); \
                 host-network pods stay outside the mesh"
            ),
        }
    }
}

/// The injection record in [`STATUS_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The injector's version ([`VERSION`]).
    pub version: String,
    /// The injected init containers, in pod order.
    pub init_containers: Vec<String>,
    /// The injected containers.
    pub containers: Vec<String>,
    /// The injected volumes.
    pub volumes: Vec<String>,
}

impl Status {
    /// The record of a pod's metadata, if it has a readable one.
    pub fn of(meta: &ObjectMeta) -> Option<Self> {
        let text = meta.annotations.as_ref()?.get(STATUS_ANNOTATION)?;
        serde_json::from_str(text).ok()
    }
}

/// Why a pod cannot be injected. Each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    /// An annotation's value is not of its form.
    #[error("annotation {annotation}: {value:?} is invalid: {reason}; expected {expected}")]
    InvalidAnnotation {
        /// The annotation's key.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
        /// The form it must have.
        expected: &'static str,
    },
    /// The pod already uses a name injection adds.
    #[error(
        "the pod already has {what} named {name:?}, a name sidecar injection reserves; rename it"
    )]
    ReservedName {
        /// `a container`, `an init container` or `a volume`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The pod's SPIFFE identity (from its namespace and service account) would be invalid,
    /// so its proxy could never get a certificate.
    #[error(
        "the pod's identity spiffe://<trust-domain>/ns/{namespace}/sa/{service_account} is \
         invalid: {source}"
    )]
    Identity {
        /// The pod's namespace.
        namespace: String,
        /// Its service account.
        service_account: String,
        /// Why the identity is invalid.
        source: spiffe::Error,
    },
    /// The pod has no `spec`.
    #[error("the pod has no spec")]
    NoSpec,
    /// The [`Context`] is unusable (a caller's bug or a bad flag).
    #[error("invalid injection settings: {0}")]
    Context(String),
}

// === injection ===

/// Injects a pod. See the module documentation for what is added.
pub fn inject_pod(pod: &Pod, ctx: &Context) -> Result<Outcome<Pod>, InjectError> {
    let spec = pod.spec.as_ref().ok_or(InjectError::NoSpec)?;
    Ok(match inject_parts(&pod.metadata, spec, ctx)? {
        Ok((metadata, spec, warnings)) => Outcome::Injected {
            pod: Box::new(Pod {
                metadata,
                spec: Some(spec),
                status: pod.status.clone(),
            }),
            warnings,
        },
        Err(skip) => Outcome::Skipped(skip),
    })
}

/// Injects a workload's pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
/// CronJob `jobTemplate`), exactly as [`inject_pod`] injects the pods made from it.
pub fn inject_template(
    template: &PodTemplateSpec,
    ctx: &Context,
) -> Result<Outcome<PodTemplateSpec>, InjectError> {
    let spec = template.spec.as_ref().ok_or(InjectError::NoSpec)?;
    let metadata = template.metadata.clone().unwrap_or_default();
    Ok(match inject_parts(&metadata, spec, ctx)? {
        Ok((metadata, spec, warnings)) => Outcome::Injected {
            pod: Box::new(PodTemplateSpec {
                metadata: Some(metadata),
                spec: Some(spec),
            }),
            warnings,
        },
        Err(skip) => Outcome::Skipped(skip),
    })
}

type Injected = (ObjectMeta, PodSpec, Vec<String>);

fn inject_parts(
    meta: &ObjectMeta,
    spec: &PodSpec,
    ctx: &Context,
) -> Result<Result<Injected, Skip>, InjectError> {
    let control_plane_identity = ctx.validate()?;
    let annotations = meta.annotations.clone().unwrap_or_default();

    if let Some(value) = annotations.get(INJECT_ANNOTATION) {
        match value.trim().to_ascii_lowercase().as_str() {
            "false" => return Ok(Err(Skip::OptedOut)),
            "true" => {}
            _ => {
                return Err(InjectError::InvalidAnnotation {
                    annotation: INJECT_ANNOTATION,
                    value: value.clone(),
                    reason: "not a boolean".to_owned(),
                    expected: "\"true\" or \"false\"",
                });
            }
        }
    }
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let all_containers = || init_containers.iter().chain(&spec.containers);
    if all_containers().any(|c| c.name == PROXY_CONTAINER) {
        return Ok(Err(Skip::AlreadyInjected {
            status: Status::of(meta),
        }));
    }
    if spec.host_network == Some(true) {
        return Ok(Err(Skip::HostNetwork));
    }
    for c in init_containers {
        if c.name == INIT_CONTAINER {
            return Err(reserved("an init container", &c.name));
        }
    }
    for c in &spec.containers {
        if c.name == INIT_CONTAINER {
            return Err(reserved("a container", &c.name));
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.name == TOKEN_VOLUME || v.name == ROOT_CERT_VOLUME {
            return Err(reserved("a volume", &v.name));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or(&ctx.namespace);
    let service_account = spec
        .service_account_name
        .as_deref()
        .or(spec.service_account.as_deref())
        .filter(|sa| !sa.is_empty())
        .unwrap_or("default");
    SpiffeId::new(&ctx.trust_domain, namespace, service_account).map_err(|source| {
        InjectError::Identity {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            source,
        }
    })?;

    let port_annotation = |key: &'static str| -> Result<Vec<PortRange>, InjectError> {
        annotations.get(key).map_or(Ok(Vec::new()), |value| {
            capture::parse_port_list(value).map_err(|reason| InjectError::InvalidAnnotation {
                annotation: key,
                value: value.clone(),
                reason,
                expected: PORTS_FORM,
            })
        })
    };
    let exclude_inbound = port_annotation(EXCLUDE_INBOUND_PORTS_ANNOTATION)?;
    let exclude_outbound = port_annotation(EXCLUDE_OUTBOUND_PORTS_ANNOTATION)?;
    let exclude_cidrs = match annotations.get(EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION) {
        None => Vec::new(),
        Some(value) => {
            capture::parse_cidr_list(value).map_err(|reason| InjectError::InvalidAnnotation {
                annotation: EXCLUDE_OUTBOUND_IP_RANGES_ANNOTATION,
                value: value.clone(),
                reason,
                expected: CIDRS_FORM,
            })?
        }
    };

    let rewrite_probes = match annotations.get(REWRITE_PROBES_ANNOTATION) {
        None => true,
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(InjectError::InvalidAnnotation {
                    annotation: REWRITE_PROBES_ANNOTATION,
                    value: value.clone(),
                    reason: "not a boolean".to_owned(),
                    expected: "\"true\" (rewrite probes through the proxy) or \"false\"",
                });
            }
        },
    };

    let mut warnings = Vec::new();
    let mut spec = spec.clone();
    let app_probes = if rewrite_probes {
        rewrite_app_probes(&mut spec, ctx.native_sidecars, &mut warnings)
    } else {
        AppProbes::default()
    };

    // Metadata: the label first, since the proxy's `--label` arguments include it.
    let mut meta = meta.clone();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(TLS_MODE_LABEL.to_owned(), TLS_MODE_MESH.to_owned());
    let labels = labels.clone();

    let init = init_container(ctx, &exclude_inbound, &exclude_outbound, &exclude_cidrs);
    let proxy = proxy_container(ctx, &control_plane_identity, &labels, &app_probes);

    let user_init: Vec<String> = init_containers.iter().map(|c| c.name.clone()).collect();
    let status = if ctx.native_sidecars {
        let mut inits = vec![init, proxy];
        inits.extend(spec.init_containers.take().unwrap_or_default());
        spec.init_containers = Some(inits);
        Status {
            version: VERSION.to_owned(),
            init_containers: vec![INIT_CONTAINER.to_owned(), PROXY_CONTAINER.to_owned()],
            containers: Vec::new(),
            volumes: vec![TOKEN_VOLUME.to_owned(), ROOT_CERT_VOLUME.to_owned()],
        }
    } else {
        // The pod's own init containers first: they run before the proxy exists, so they
        // must not be captured.
        spec.init_containers.get_or_insert_with(Vec::new).push(init);
        spec.containers.insert(0, proxy);
        if matches!(spec.restart_policy.as_deref(), Some("Never" | "OnFailure")) {
            warnings.push(
                "without native sidecars a pod that runs to completion (restartPolicy \
                 Never or OnFailure, as a Job's) does not complete until the proxy quits too: \
                 have the application call POST localhost:15000/quitquitquit when it is done"
                    .to_owned(),
            );
        }
        if !user_init.is_empty() {
            warnings.push(format!(
                "without native sidecars the init containers {} run before the proxy, \
                 outside the mesh: their connections are plaintext, which servers under \
                 STRICT mTLS refuse",
                user_init.join(", ")
            ));
        }
        Status {
            version: VERSION.to_owned(),
            init_containers: vec![INIT_CONTAINER.to_owned()],
            containers: vec![PROXY_CONTAINER.to_owned()],
            volumes: vec![TOKEN_VOLUME.to_owned(), ROOT_CERT_VOLUME.to_owned()],
        }
    };
    spec.volumes
        .get_or_insert_with(Vec::new)
        .extend(identity_volumes());

    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        STATUS_ANNOTATION.to_owned(),
        serde_json::to_string(&status).expect("a status serializes"),
    );
    let own_scrape = [PROMETHEUS_SCRAPE, PROMETHEUS_PORT, PROMETHEUS_PATH]
        .iter()
        .any(|k| annotations.contains_key(*k));
    if own_scrape {
        if annotations.get(PROMETHEUS_SCRAPE).map(String::as_str) != Some("false") {
            warnings.push(format!(
                "the pod has its own prometheus.io annotations, which are kept: the proxy's \
                 metrics (:{METRICS_PORT}/metrics) are not scraped through them"
            ));
        }
    } else {
        annotations.insert(PROMETHEUS_SCRAPE.to_owned(), "true".to_owned());
        annotations.insert(PROMETHEUS_PORT.to_owned(), METRICS_PORT.to_string());
        annotations.insert(PROMETHEUS_PATH.to_owned(), "/metrics".to_owned());
    }
    if !ctx.native_sidecars
        && let Some(app) = spec.containers.get(1)
    {
        annotations
            .entry(DEFAULT_CONTAINER_ANNOTATION.to_owned())
            .or_insert_with(|| app.name.clone());
    }
    Ok(Ok((meta, spec, warnings)))
}

fn reserved(what: &'static str, name: &str) -> InjectError {
    InjectError::ReservedName {
        what,
        name: name.to_owned(),
    }
}

/// Rewrites the application's probes through the proxy's health port (see the module
/// documentation) and returns the originals. The pod's own sidecar init containers
/// (`restartPolicy: Always`) are rewritten only with native sidecars, where the proxy
/// starts before them; in classic mode the proxy starts after all init containers, so a
/// rewritten startup probe would never succeed.
fn rewrite_app_probes(
    spec: &mut PodSpec,
    native_sidecars: bool,
    warnings: &mut Vec<String>,
) -> AppProbes {
    let mut originals = AppProbes::default();
    let sidecars = spec
        .init_containers
        .iter_mut()
        .flatten()
        .filter(|c| native_sidecars && c.restart_policy.as_deref() == Some("Always"));
    for c in sidecars.chain(&mut spec.containers) {
        let Container {
            name,
            ports,
            liveness_probe,
            readiness_probe,
            startup_probe,
            ..
        } = c;
        let probes = [
            ("liveness", "livez", liveness_probe),
            ("readiness", "readyz", readiness_probe),
            ("startup", "startupz", startup_probe),
        ];
        for (kind, suffix, probe) in probes {
            let Some(probe) = probe else { continue };
            let resolve_port = |port: &IntOrString| match port {
                IntOrString::Int(n) => u16::try_from(*n).ok().filter(|p| *p != 0),
                IntOrString::String(port_name) => ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(port_name.as_str()))
                    .and_then(|p| u16::try_from(p.container_port).ok()),
            };
            let has_host = |host: &Option<String>| host.as_deref().is_some_and(|h| !h.is_empty());
            let (port, handler) = if let Some(http) = &probe.http_get {
                if has_host(&http.host) {
                    continue;
                }
                let handler = resolve_port(&http.port).map(|port| {
                    probe::Handler::HttpGet(probe::HttpGet {
                        path: http
                            .path
                            .clone()
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "/".to_owned()),
                        port,
                        scheme: if http.scheme.as_deref() == Some("HTTPS") {
                            probe::Scheme::Https
                        } else {
                            probe::Scheme::Http
                        },
                        http_headers: http
                            .http_headers
                            .iter()
                            .flatten()
                            .map(|h| probe::HttpHeader {
                                name: h.name.clone(),
                                value: h.value.clone(),
                            })
                            .collect(),
                    })
                });
                (http.port.clone(), handler)
            } else if let Some(tcp) = &probe.tcp_socket {
                if has_host(&tcp.host) {
                    continue;
                }
                let handler = resolve_port(&tcp.port)
                    .map(|port| probe::Handler::TcpSocket(probe::TcpSocket { port }));
                (tcp.port.clone(), handler)
            } else if let Some(grpc) = &probe.grpc {
                let handler = u16::try_from(grpc.port)
                    .ok()
                    .filter(|p| *p != 0)
                    .map(|port| {
                        probe::Handler::Grpc(probe::Grpc {
                            port,
                            service: grpc.service.clone().filter(|s| !s.is_empty()),
                        })
                    });
                (IntOrString::Int(grpc.port), handler)
            } else {
                continue;
            };
            let Some(handler) = handler else {
                warnings.push(unknown_probe_port(name, kind, &port));
                continue;
            };
            let target = match &handler {
                probe::Handler::HttpGet(h) => h.port,
                probe::Handler::TcpSocket(t) => t.port,
                probe::Handler::Grpc(g) => g.port,
            };
            if [MESH_PORT, METRICS_PORT, HEALTH_PORT, ADMIN_PORT].contains(&target) {
                continue;
            }
            let path = probe::app_health_path(name, suffix);
            let timeout_seconds = probe
                .timeout_seconds
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(probe::DEFAULT_TIMEOUT_SECONDS)
                .max(1);
            originals.insert(
                path.clone(),
                AppProbe {
                    handler,
                    timeout_seconds,
                },
            );
            // Only the handler changes: the timing fields stay as they are.
            probe.http_get = Some(HTTPGetAction {
                path: Some(path),
                port: IntOrString::Int(i32::from(HEALTH_PORT)),
                scheme: Some("HTTP".to_owned()),
                ..HTTPGetAction::default()
            });
            probe.tcp_socket = None;
            probe.grpc = None;
        }
    }
    originals
}

fn unknown_probe_port(container: &str, kind: &str, port: &IntOrString) -> String {
    format!(
        "container {container}: the {kind} probe's port {} is not a port of the container, \
         so the probe is left as it is (and the kubelet cannot probe it)",
        match port {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => format!("{s:?}"),
        }
    )
}

fn init_container(
    ctx: &Context,
    exclude_inbound: &[PortRange],
    exclude_outbound: &[PortRange],
    exclude_cidrs: &[Cidr],
) -> Container {
    let mut args = vec!["init".to_owned()];
    let mut flag = |name: &str, value: String| {
        if !value.is_empty() {
            args.push(name.to_owned());
            args.push(value);
        }
    };
    flag(
        "--exclude-inbound-ports",
        exclude::join_ports(exclude_inbound),
    );
    flag(
        "--exclude-outbound-ports",
        exclude::join_ports(exclude_outbound),
    );
    flag("--exclude-outbound-cidrs", exclude::join(exclude_cidrs));
    Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(ctx.image.clone()),
        args: Some(args),
        resources: Some(ctx.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

fn proxy_container(
    ctx: &Context,
    control_plane_identity: &SpiffeId,
    labels: &BTreeMap<String, String>,
    app_probes: &AppProbes,
) -> Container {
    let mut args = vec!["run".to_owned()];
    for (k, v) in labels {
        args.push("--label".to_owned());
        args.push(format!("{k}={v}"));
    }
    let field = env_from_field;
    let value = env_value;
    let port = |port: u16, name: &str| ContainerPort {
        container_port: i32::from(port),
        name: Some(name.to_owned()),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let ready = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(READY_PATH.to_owned()),
            port: IntOrString::Int(i32::from(HEALTH_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_IP", "status.podIP"),
        field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        value("MESH_CONTROL_ADDR", &ctx.control_plane_addr),
        value("MESH_TRUST_DOMAIN", &ctx.trust_domain),
        value(
            "MESH_CONTROL_PLANE_IDENTITY",
            control_plane_identity.as_str(),
        ),
        value("MESH_LOG", &ctx.log_level),
        value("MESH_TOKEN_FILE", TOKEN_FILE),
        value("MESH_CA_BUNDLE", CA_BUNDLE_FILE),
    ];
    if ctx.access_log {
        env.push(value("MESH_ACCESS_LOG", "true"));
    }
    if let Some(p) = ctx.trace_sampling {
        env.push(value("MESH_TRACE_SAMPLING", &p.to_string()));
    }
    if let Some(c) = &ctx.trace_collector {
        env.push(value("MESH_TRACE_COLLECTOR", c));
    }
    if !app_probes.is_empty() {
        env.push(value(APP_PROBES_ENV, &app_probes.to_json()));
    }
    Container {
        name: PROXY_CONTAINER.to_owned(),
        image: Some(ctx.image.clone()),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![
            port(MESH_PORT, "mesh"),
            port(METRICS_PORT, "mesh-metrics"),
            port(HEALTH_PORT, "mesh-health"),
        ]),
        readiness_probe: Some(ready(5, 3)),
        // Native sidecar: the kubelet starts the next containers once this succeeds (up
        // to 10 minutes for the first certificate and config).
        startup_probe: ctx.native_sidecars.then(|| ready(1, 600)),
        restart_policy: ctx.native_sidecars.then(|| "Always".to_owned()),
        // Classic sidecar: the kubelet starts the next container (the application) only
        // when this hook returns, i.e. once the proxy is ready.
        lifecycle: (!ctx.native_sidecars).then(|| Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![PROXY_CONTAINER.to_owned(), "wait".to_owned()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(ctx.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(PROXY_ID),
            run_as_group: Some(PROXY_ID),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount(TOKEN_VOLUME, TOKEN_DIR),
            mount(ROOT_CERT_VOLUME, ROOT_CERT_DIR),
        ]),
        ..Container::default()
    }
}

/// An environment variable from the downward API: `name` = the pod's `path`
/// (`metadata.name`, `status.podIP`, ...). The proxy's `POD_*` variables are made so.
pub fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// An environment variable with a literal value.
pub fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// The volumes a proxy's identity needs, named [`TOKEN_VOLUME`] and [`ROOT_CERT_VOLUME`]:
/// the projected ServiceAccount token for the CA (audience [`TOKEN_AUDIENCE`]) and the
/// `mesh-root-cert` ConfigMap's trust bundle. Injection adds them to meshed pods; the
/// ingress gateway's Deployment has the same.
pub fn identity_volumes() -> [Volume; 2] {
    [
        Volume {
            name: TOKEN_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(TOKEN_AUDIENCE.to_owned()),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        path: TOKEN_VOLUME.to_owned(),
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: ROOT_CERT_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: ROOT_CERT_VOLUME.to_owned(),
                items: Some(vec![KeyToPath {
                    key: ROOT_CERT_KEY.to_owned(),
                    path: ROOT_CERT_KEY.to_owned(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod yaml_tests;
