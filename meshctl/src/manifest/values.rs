//! The values the manifests are rendered from: a [`Profile`]'s defaults, then `--set
//! KEY=VALUE` overrides, each checked where it is parsed so a typo fails before anything
//! reaches the cluster.
//!
//! # Profiles
//!
//! | profile | contents |
//! |---|---|
//! | `minimal` | the control plane only (CRDs, namespace, RBAC, `mesh-control`, webhooks) |
//! | `default` | `minimal` plus the ingress gateway `mesh-ingressgateway` |
//! | `demo` | `default` with proxy access logs, 100 % trace sampling and small requests |
//!
//! # `--set` keys
//!
//! | key | form | default |
//! |---|---|---|
//! | `namespace` | DNS label | `mesh-system` |
//! | `hub` | registry and path, e.g. `ghcr.io/mesh-dev` | [`DEFAULT_HUB`] |
//! | `tag` | image tag | [`DEFAULT_TAG`] (meshctl's version) |
//! | `imagePullPolicy` | `Always`, `IfNotPresent` or `Never` | `IfNotPresent` |
//! | `trustDomain` | SPIFFE trust domain | `cluster.local` |
//! | `logLevel` | tracing filter of mesh-control (`MESH_LOG`) | `info` |
//! | `proxy.logLevel` | tracing filter of proxies and the gateway | `info` |
//! | `proxy.accessLog` | `true` or `false` | `false` (`demo`: `true`) |
//! | `proxy.traceSampling` | percentage 0-100 | proxy default, 1 (`demo`: 100) |
//! | `proxy.traceCollector` | `http://HOST[:PORT]` (OTLP/gRPC) | unset: tracing off |
//! | `proxy.resources.requests.cpu` | quantity | `10m` |
//! | `proxy.resources.requests.memory` | quantity | `40Mi` |
//! | `proxy.resources.limits.memory` | quantity | `128Mi` |
//! | `control.image` | whole image reference | `<hub>/mesh-control:<tag>` |
//! | `control.replicas` | integer 1-100 | `1` |
//! | `control.resources.requests.cpu` | quantity | `100m` (`demo`: `50m`) |
//! | `control.resources.requests.memory` | quantity | `256Mi` (`demo`: `128Mi`) |
//! | `control.resources.limits.cpu` | quantity | unset |
//! | `control.resources.limits.memory` | quantity | `1Gi` |
//! | `gateway.enabled` | `true` or `false` | `true` (`minimal`: `false`) |
//! | `gateway.replicas` | integer 1-100 | `1` |
//! | `gateway.serviceType` | `LoadBalancer`, `NodePort` or `ClusterIP` | `LoadBalancer` |
//! | `gateway.resources.requests.cpu` | quantity | `100m` (`demo`: `10m`) |
//! | `gateway.resources.requests.memory` | quantity | `128Mi` (`demo`: `40Mi`) |
//! | `gateway.resources.limits.memory` | quantity | `1Gi` |
//! | `gateway.credentials` | comma-separated Secret names | none |
//! | `webhook.failurePolicy` | `Fail` or `Ignore` | `Fail` |
//! | `webhook.timeoutSeconds` | integer 1-30 | `10` |
//!
//! Quantities are Kubernetes quantities (`100m`, `0.5`, `128Mi`, `1G`, `1e3`); a request
//! above its limit is refused. [`KEYS`] is the same table in code: errors and tests use it.

use std::collections::BTreeMap;
use std::fmt;

use http::Uri;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use mesh_api::inject::{DEFAULT_HUB, DEFAULT_LOG_LEVEL, DEFAULT_TAG};
use mesh_api::spiffe::{DEFAULT_TRUST_DOMAIN, SpiffeId};

/// The default control-plane namespace (DESIGN.md "Names").
pub const DEFAULT_NAMESPACE: &str = "mesh-system";

/// The installation profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// The control plane only.
    Minimal,
    /// The control plane and the ingress gateway.
    #[default]
    Default,
    /// `default` tuned for trying the mesh: access logs, 100 % trace sampling, small
    /// resource requests.
    Demo,
}

impl Profile {
    /// Every profile, in the order of their size.
    pub const ALL: [Profile; 3] = [Profile::Minimal, Profile::Default, Profile::Demo];

    /// The profile's name, as `--profile` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
            Profile::Default => "default",
            Profile::Demo => "demo",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--profile` and `--set`, shared by `install` and `manifest generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValuesArgs {
    /// The installation profile.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Override one value of the profile (repeatable), e.g. `--set gateway.enabled=false`.
    ///
    /// Keys (quantities are Kubernetes quantities such as 100m, 0.5, 128Mi or 1G):
    ///   namespace                          control-plane namespace (DNS label)
    ///   hub                                image registry and path, e.g. ghcr.io/mesh-dev
    ///   tag                                image tag
    ///   imagePullPolicy                    Always | IfNotPresent | Never
    ///   trustDomain                        SPIFFE trust domain, e.g. cluster.local
    ///   logLevel                           mesh-control's tracing filter (MESH_LOG)
    ///   proxy.logLevel                     proxies' and the gateway's tracing filter
    ///   proxy.accessLog                    true | false
    ///   proxy.traceSampling                percentage 0-100
    ///   proxy.traceCollector               OTLP/gRPC collector, http://HOST or http://HOST:PORT
    ///   proxy.resources.requests.cpu       quantity
    ///   proxy.resources.requests.memory    quantity
    ///   proxy.resources.limits.memory      quantity
    ///   control.image                      whole image reference
    ///   control.replicas                   1-100
    ///   control.resources.requests.cpu     quantity
    ///   control.resources.requests.memory  quantity
    ///   control.resources.limits.cpu       quantity
    ///   control.resources.limits.memory    quantity
    ///   gateway.enabled                    true | false
    ///   gateway.replicas                   1-100
    ///   gateway.serviceType                LoadBalancer | NodePort | ClusterIP
    ///   gateway.resources.requests.cpu     quantity
    ///   gateway.resources.requests.memory  quantity
    ///   gateway.resources.limits.memory    quantity
    ///   gateway.credentials                NAME,... (kubernetes.io/tls Secrets to mount)
    ///   webhook.failurePolicy              Fail | Ignore
    ///   webhook.timeoutSeconds             1-30
    #[arg(long = "set", value_name = "KEY=VALUE", verbatim_doc_comment)]
    pub set: Vec<String>,
}

impl ValuesArgs {
    /// The profile's values with the overrides applied, in order (a later `--set` of the
    /// same key wins).
    pub fn values(&self) -> anyhow::Result<Values> {
        let mut values = Values::profile(self.profile);
        for assignment in &self.set {
            values.apply(assignment)?;
        }
        values.validate()?;
        Ok(values)
    }
}

/// Why a `--set` or a set of values was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The argument is not `KEY=VALUE`.
    #[error("--set {0:?}: expected KEY=VALUE, e.g. --set gateway.enabled=false")]
    Malformed(String),
    /// No such key.
    #[error("unknown --set key {key:?}; valid keys: {valid}")]
    UnknownKey {
        /// The key as given.
        key: String,
        /// Every valid key, comma-separated.
        valid: String,
    },
    /// The value does not have the key's form.
    #[error("invalid --set {key}={value:?}: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as given.
        value: String,
        /// The form the key takes.
        expected: &'static str,
    },
    /// Values that are each valid but do not fit together (a request above its limit).
    #[error("{0}")]
    Inconsistent(String),
}

/// One `--set` key: its name and the form of its value (shown in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key, e.g. `gateway.enabled`.
    pub name: &'static str,
    /// The form of its value, e.g. `true or false`.
    pub form: &'static str,
    /// A valid value that differs from the `default` profile's (for tests and examples).
    pub example: &'static str,
}

const QUANTITY: &str = "a Kubernetes quantity such as 100m, 0.5, 128Mi or 1G";
const BOOL: &str = "true or false";
const REPLICAS: &str = "an integer from 1 to 100";

/// Every `--set` key, in the order the module documentation lists them.
pub const KEYS: &[Key] = &[
    key(
        "namespace",
        "a DNS label (lower-case letters, digits and '-', at most 63 characters)",
        "mesh",
    ),
    key(
        "hub",
        "an image registry and path without a scheme, e.g. ghcr.io/mesh-dev",
        "registry.example.com/mesh",
    ),
    key(
        "tag",
        "an image tag (letters, digits, '_', '.' and '-', at most 128 characters)",
        "dev",
    ),
    key("imagePullPolicy", "Always, IfNotPresent or Never", "Always"),
    key(
        "trustDomain",
        "a SPIFFE trust domain (lower-case DNS-like name), e.g. cluster.local",
        "example.org",
    ),
    key(
        "logLevel",
        "a tracing filter without spaces, e.g. info or info,mesh_control=debug",
        "debug",
    ),
    key(
        "proxy.logLevel",
        "a tracing filter without spaces, e.g. info or info,mesh_proxy=debug",
        "debug",
    ),
    key("proxy.accessLog", BOOL, "true"),
    key(
        "proxy.traceSampling",
        "a percentage from 0 to 100, e.g. 1 or 0.5",
        "50",
    ),
    key(
        "proxy.traceCollector",
        "an OTLP/gRPC collector URL http://HOST[:PORT], e.g. http://otel-collector.observability:4317",
        "http://collector.observability:4317",
    ),
    key("proxy.resources.requests.cpu", QUANTITY, "20m"),
    key("proxy.resources.requests.memory", QUANTITY, "64Mi"),
    key("proxy.resources.limits.memory", QUANTITY, "256Mi"),
    key(
        "control.image",
        "a whole image reference without spaces, e.g. registry.example.com/mesh-control:dev",
        "registry.example.com/mesh-control:dev",
    ),
    key("control.replicas", REPLICAS, "2"),
    key("control.resources.requests.cpu", QUANTITY, "200m"),
    key("control.resources.requests.memory", QUANTITY, "512Mi"),
    key("control.resources.limits.cpu", QUANTITY, "2"),
    key("control.resources.limits.memory", QUANTITY, "2Gi"),
    key("gateway.enabled", BOOL, "false"),
    key("gateway.replicas", REPLICAS, "3"),
    key(
        "gateway.serviceType",
        "LoadBalancer, NodePort or ClusterIP",
        "NodePort",
    ),
    key("gateway.resources.requests.cpu", QUANTITY, "500m"),
    key("gateway.resources.requests.memory", QUANTITY, "256Mi"),
    key("gateway.resources.limits.memory", QUANTITY, "2Gi"),
    key(
        "gateway.credentials",
        "comma-separated names of kubernetes.io/tls Secrets in the install namespace, e.g. shop-cert,api-cert (empty for none)",
        "shop-cert,api-cert",
    ),
    key("webhook.failurePolicy", "Fail or Ignore", "Ignore"),
    key("webhook.timeoutSeconds", "an integer from 1 to 30", "5"),
];

const fn key(name: &'static str, form: &'static str, example: &'static str) -> Key {
    Key {
        name,
        form,
        example,
    }
}

/// The settings the manifests are rendered from: a profile's values with `--set` applied.
///
/// Build it with [`Values::profile`] (or [`ValuesArgs::values`]); [`Values::set`] applies
/// one override with the same checks as `--set`. The fields are public for reading; code
/// that changes them directly should call [`Values::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    /// The profile these values started from.
    pub profile: Profile,
    /// The control-plane namespace (`namespace`).
    pub namespace: String,
    /// Where the images are published (`hub`), without a trailing `/`.
    pub hub: String,
    /// The images' tag (`tag`).
    pub tag: String,
    /// The containers' `imagePullPolicy`.
    pub image_pull_policy: PullPolicy,
    /// The mesh's SPIFFE trust domain (`trustDomain`).
    pub trust_domain: String,
    /// mesh-control's tracing filter, `MESH_LOG` (`logLevel`).
    pub log_level: String,
    /// Sidecars' and the gateway's settings (`proxy.*`).
    pub proxy: ProxyValues,
    /// The control plane's deployment (`control.*`).
    pub control: ControlValues,
    /// The ingress gateway (`gateway.*`).
    pub gateway: GatewayValues,
    /// Both admission webhooks (`webhook.*`).
    pub webhook: WebhookValues,
}

/// `proxy.*`: what mesh-control tells the injector, and the gateway's proxy settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyValues {
    /// The proxies' tracing filter, `MESH_LOG`.
    pub log_level: String,
    /// Whether proxies write access logs.
    pub access_log: bool,
    /// The percentage of new traces proxies record; `None` keeps the proxy's default.
    pub trace_sampling: Option<f64>,
    /// The OTLP/gRPC collector, `http://HOST[:PORT]`; `None`: tracing off.
    pub trace_collector: Option<String>,
    /// Sidecar resources (`limits.cpu` stays unset: throttling a proxy adds latency).
    pub resources: Resources,
}

/// `control.*`: the `mesh-control` deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlValues {
    /// The whole image reference; `None`: `<hub>/mesh-control:<tag>`.
    pub image: Option<String>,
    /// Replicas of the deployment.
    pub replicas: i32,
    /// The container's resources.
    pub resources: Resources,
}

/// `gateway.*`: the ingress gateway `mesh-ingressgateway`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayValues {
    /// Whether it is installed at all.
    pub enabled: bool,
    /// Replicas of the deployment.
    pub replicas: i32,
    /// The type of its Service.
    pub service_type: ServiceType,
    /// The container's resources.
    pub resources: Resources,
    /// The `kubernetes.io/tls` Secrets (in the install namespace) mounted as TLS
    /// credentials, for `Gateway` servers with `tls.credentialName` among them.
    pub credentials: Vec<String>,
}

/// `webhook.*`: both admission webhook configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookValues {
    /// What the API server does when mesh-control cannot answer.
    pub failure_policy: FailurePolicy,
    /// How long the API server waits for an answer.
    pub timeout_seconds: i32,
}

/// A container's requests and limits; unset entries are left out of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `requests.cpu`.
    pub requests_cpu: Option<String>,
    /// `requests.memory`.
    pub requests_memory: Option<String>,
    /// `limits.cpu`.
    pub limits_cpu: Option<String>,
    /// `limits.memory`.
    pub limits_memory: Option<String>,
}

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// `Always`.
    Always,
    /// `IfNotPresent`.
    IfNotPresent,
    /// `Never`.
    Never,
}

/// The type of the gateway's Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// `LoadBalancer`.
    LoadBalancer,
    /// `NodePort`.
    NodePort,
    /// `ClusterIP`.
    ClusterIp,
}

/// A webhook's `failurePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Refuse the request when the webhook cannot answer.
    Fail,
    /// Admit the request unchanged when the webhook cannot answer.
    Ignore,
}

// === impl Values ===

impl Default for Values {
    /// The `default` profile.
    fn default() -> Self {
        Self::profile(Profile::Default)
    }
}

impl Values {
    /// A profile's values.
    pub fn profile(profile: Profile) -> Self {
        let demo = profile == Profile::Demo;
        let (control_cpu, control_memory) = if demo {
            ("50m", "128Mi")
        } else {
            ("100m", "256Mi")
        };
        let (gateway_cpu, gateway_memory) = if demo {
            ("10m", "40Mi")
        } else {
            ("100m", "128Mi")
        };
        Self {
            profile,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            hub: DEFAULT_HUB.to_owned(),
            tag: DEFAULT_TAG.to_owned(),
            image_pull_policy: PullPolicy::IfNotPresent,
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            proxy: ProxyValues {
                log_level: DEFAULT_LOG_LEVEL.to_owned(),
                access_log: demo,
                trace_sampling: demo.then_some(100.0),
                trace_collector: None,
                resources: Resources::new(Some("10m"), Some("40Mi"), None, Some("128Mi")),
            },
            control: ControlValues {
                image: None,
                replicas: 1,
                resources: Resources::new(
                    Some(control_cpu),
                    Some(control_memory),
                    None,
                    Some("1Gi"),
                ),
            },
            gateway: GatewayValues {
                enabled: profile != Profile::Minimal,
                replicas: 1,
                service_type: ServiceType::LoadBalancer,
                resources: Resources::new(
                    Some(gateway_cpu),
                    Some(gateway_memory),
                    None,
                    Some("1Gi"),
                ),
                credentials: Vec::new(),
            },
            webhook: WebhookValues {
                failure_policy: FailurePolicy::Fail,
                timeout_seconds: 10,
            },
        }
    }

    /// Applies one `KEY=VALUE` override.
    pub fn apply(&mut self, assignment: &str) -> Result<(), Error> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| Error::Malformed(assignment.to_owned()))?;
        self.set(key.trim(), value.trim())
    }

    /// Sets one key (see [`KEYS`]) after checking its value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let unknown = || Error::UnknownKey {
            key: key.to_owned(),
            valid: KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
        };
        let spec = KEYS.iter().find(|k| k.name == key).ok_or_else(unknown)?;
        let bad = || Error::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: spec.form,
        };
        let quantity = || {
            parse_quantity(value)
                .map(|_| Some(value.to_owned()))
                .ok_or_else(bad)
        };
        let boolean = || match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad()),
        };
        let integer = |range: std::ops::RangeInclusive<i32>| {
            value
                .parse::<i32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(bad)
        };
        // The value itself, if `ok`.
        let text = |ok: bool| if ok { Ok(value.to_owned()) } else { Err(bad()) };
        let filter = || text(!value.is_empty() && !value.contains(char::is_whitespace));
        match key {
            "namespace" => self.namespace = text(is_dns_label(value))?,
            "hub" => {
                self.hub = is_image_ref(value)
                    .then(|| value.trim_end_matches('/').to_owned())
                    .filter(|h| !h.is_empty())
                    .ok_or_else(bad)?;
            }
            "tag" => self.tag = text(is_tag(value))?,
            "imagePullPolicy" => {
                self.image_pull_policy = match value {
                    "Always" => PullPolicy::Always,
                    "IfNotPresent" => PullPolicy::IfNotPresent,
                    "Never" => PullPolicy::Never,
                    _ => return Err(bad()),
                };
            }
            "trustDomain" => {
                self.trust_domain = text(SpiffeId::new(value, "default", "default").is_ok())?;
            }
            "logLevel" => self.log_level = filter()?,
            "proxy.logLevel" => self.proxy.log_level = filter()?,
            "proxy.accessLog" => self.proxy.access_log = boolean()?,
            "proxy.traceSampling" => {
                let p = value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(bad)?;
                self.proxy.trace_sampling = Some(p);
            }
            "proxy.traceCollector" => {
                self.proxy.trace_collector = Some(text(is_collector(value))?);
            }
            "proxy.resources.requests.cpu" => self.proxy.resources.requests_cpu = quantity()?,
            "proxy.resources.requests.memory" => {
                self.proxy.resources.requests_memory = quantity()?;
            }
            "proxy.resources.limits.memory" => self.proxy.resources.limits_memory = quantity()?,
            "control.image" => {
                self.control.image = Some(text(is_image_ref(value))?);
            }
            "control.replicas" => self.control.replicas = integer(1..=100)?,
            "control.resources.requests.cpu" => self.control.resources.requests_cpu = quantity()?,
            "control.resources.requests.memory" => {
                self.control.resources.requests_memory = quantity()?;
            }
            "control.resources.limits.cpu" => self.control.resources.limits_cpu = quantity()?,
            "control.resources.limits.memory" => {
                self.control.resources.limits_memory = quantity()?;
            }
            "gateway.enabled" => self.gateway.enabled = boolean()?,
            "gateway.replicas" => self.gateway.replicas = integer(1..=100)?,
            "gateway.serviceType" => {
                self.gateway.service_type = match value {
                    "LoadBalancer" => ServiceType::LoadBalancer,
                    "NodePort" => ServiceType::NodePort,
                    "ClusterIP" => ServiceType::ClusterIp,
                    _ => return Err(bad()),
                };
            }
            "gateway.resources.requests.cpu" => self.gateway.resources.requests_cpu = quantity()?,
            "gateway.resources.requests.memory" => {
                self.gateway.resources.requests_memory = quantity()?;
            }
            "gateway.resources.limits.memory" => {
                self.gateway.resources.limits_memory = quantity()?;
            }
            "gateway.credentials" => {
                let names: Vec<String> = value
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                if !names.iter().all(|n| is_dns_subdomain(n)) {
                    return Err(bad());
                }
                self.gateway.credentials = names;
            }
            "webhook.failurePolicy" => {
                self.webhook.failure_policy = match value {
                    "Fail" => FailurePolicy::Fail,
                    "Ignore" => FailurePolicy::Ignore,
                    _ => return Err(bad()),
                };
            }
            "webhook.timeoutSeconds" => self.webhook.timeout_seconds = integer(1..=30)?,
            // Every entry of KEYS has an arm above (the tests set each one).
            _ => return Err(unknown()),
        }
        Ok(())
    }

    /// Checks what single keys cannot: every request is at most its limit.
    pub fn validate(&self) -> Result<(), Error> {
        for (component, r) in [
            ("proxy", &self.proxy.resources),
            ("control", &self.control.resources),
            ("gateway", &self.gateway.resources),
        ] {
            for (resource, request, limit) in [
                ("cpu", &r.requests_cpu, &r.limits_cpu),
                ("memory", &r.requests_memory, &r.limits_memory),
            ] {
                let (Some(request), Some(limit)) = (request, limit) else {
                    continue;
                };
                let value = |q: &str| {
                    parse_quantity(q).ok_or_else(|| {
                        Error::Inconsistent(format!(
                            "{component} {resource} {q:?} is not a Kubernetes quantity"
                        ))
                    })
                };
                if value(request)? > value(limit)? {
                    return Err(Error::Inconsistent(format!(
                        "{component}.resources.requests.{resource} {request} is above \
                         {component}.resources.limits.{resource} {limit}; raise the limit \
                         or lower the request"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The control plane's image: `control.image`, or `<hub>/mesh-control:<tag>`.
    pub fn control_image(&self) -> String {
        self.control
            .image
            .clone()
            .unwrap_or_else(|| format!("{}/mesh-control:{}", self.hub, self.tag))
    }

    /// The proxy image of sidecars and the gateway: `<hub>/mesh-proxy:<tag>`.
    pub fn proxy_image(&self) -> String {
        mesh_api::inject::Context::image(&self.hub, &self.tag)
    }

    /// The control plane's discovery and identity address in the cluster,
    /// `mesh-control.<namespace>.svc:15012`.
    pub fn control_addr(&self) -> String {
        format!(
            "{}.{}.svc:{}",
            super::CONTROL,
            self.namespace,
            super::GRPC_PORT
        )
    }

    /// The control plane's SPIFFE identity, `spiffe://<td>/ns/<namespace>/sa/mesh-control`.
    pub fn control_identity(&self) -> anyhow::Result<SpiffeId> {
        SpiffeId::new(&self.trust_domain, &self.namespace, super::CONTROL).map_err(|e| {
            anyhow::anyhow!(
                "trust domain {:?} / namespace {:?}: {e}",
                self.trust_domain,
                self.namespace
            )
        })
    }
}

// === impl Resources ===

impl Resources {
    fn new(
        requests_cpu: Option<&str>,
        requests_memory: Option<&str>,
        limits_cpu: Option<&str>,
        limits_memory: Option<&str>,
    ) -> Self {
        let own = |s: Option<&str>| s.map(str::to_owned);
        Self {
            requests_cpu: own(requests_cpu),
            requests_memory: own(requests_memory),
            limits_cpu: own(limits_cpu),
            limits_memory: own(limits_memory),
        }
    }

    /// The Kubernetes form; empty maps are left out.
    pub fn to_requirements(&self) -> ResourceRequirements {
        let map = |cpu: &Option<String>, memory: &Option<String>| {
            let m: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), Quantity(v.clone()?))))
                .collect();
            (!m.is_empty()).then_some(m)
        };
        ResourceRequirements {
            requests: map(&self.requests_cpu, &self.requests_memory),
            limits: map(&self.limits_cpu, &self.limits_memory),
            ..ResourceRequirements::default()
        }
    }
}

// === impl PullPolicy, ServiceType, FailurePolicy ===

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIp => "ClusterIP",
        }
    }
}

impl FailurePolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        }
    }
}

// === value checks ===

/// Whether `s` is an RFC 1123 label, as namespace names are.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is an RFC 1123 subdomain, as Secret names are.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Whether `s` looks like an image reference or registry path: non-empty, no whitespace,
/// no URL scheme.
fn is_image_ref(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains("://")
}

/// Whether `s` is an OCI image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `s` is a plaintext OTLP/gRPC collector URL, `http://HOST[:PORT]` (what the
/// proxy's `--trace-collector` accepts).
fn is_collector(s: &str) -> bool {
    let Ok(uri) = s.parse::<Uri>() else {
        return false;
    };
    uri.scheme_str() == Some("http")
        && uri
            .authority()
            .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'))
        && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
}

/// Parses a non-negative Kubernetes quantity (`<number><suffix>`: `100m`, `0.5`, `128Mi`,
/// `1G`, `1e3`) into its value in base units (cores, bytes), or `None` if it is not one.
pub(super) fn parse_quantity(s: &str) -> Option<f64> {
    let rest = s.strip_prefix('+').unwrap_or(s);
    let split = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(split);
    // `number` is digits with at most one '.', and at least one digit.
    if number.matches('.').count() > 1 || !number.contains(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let binary = |power: i32| 1024f64.powi(power);
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(value * scale)
}
