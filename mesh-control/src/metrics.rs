//! The control plane's Prometheus metrics (`/metrics` on the debug port, 15014).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mesh_control_proxies_connected` | gauge | |
//! | `mesh_control_pushes_total` | counter | `type` (resource kind) |
//! | `mesh_control_pushed_resources_total` | counter | `type` |
//! | `mesh_control_push_latency_seconds` | histogram | — config change accepted → proxy ACK |
//! | `mesh_control_nacks_total` | counter | `type` |
//! | `mesh_control_config_changes_total` | counter | — accepted changes |
//! | `mesh_control_config_rejected_total` | counter | — rejected source updates (bad files) |
//! | `mesh_control_index_build_seconds` | histogram | — index rebuild per change |
//! | `mesh_control_resources` | gauge | — resources in the index |
//! | `mesh_control_watch_errors_total` | counter | `resource` (Kubernetes watchers) |
//! | `mesh_control_certificates_issued_total` | counter | — workload certificates signed |
//! | `mesh_control_certificate_requests_denied_total` | counter | `reason`: `unauthenticated`, `permission_denied`, `invalid_request`, `invalid_csr`, `unavailable` |
//! | `mesh_control_ca_root_expiry_timestamp_seconds` | gauge | — expiry of the certificate the CA signs with (the root, or a plug-in intermediate) |
//! | `mesh_control_trust_bundle_roots` | gauge | — roots in the trust bundle (2 during a rotation) |

use std::time::Duration;

use mesh_api::model::ResourceKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a certificate request was denied (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No or invalid credentials.
    Unauthenticated,
    /// The caller asked for another identity.
    PermissionDenied,
    /// A malformed request (identity, lifetime).
    InvalidRequest,
    /// An unusable CSR.
    InvalidCsr,
    /// The CA or the token check failed on our side.
    Unavailable,
}

impl DenyReason {
    fn label(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidCsr => "invalid_csr",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The metrics, registered once.
#[derive(Debug)]
pub struct Metrics {
    connected: Gauge,
    pushes: Family<TypeLabel, Counter>,
    pushed_resources: Family<TypeLabel, Counter>,
    push_latency: Histogram,
    nacks: Family<TypeLabel, Counter>,
    config_changes: Counter,
    config_rejected: Counter,
    index_build: Histogram,
    resources: Gauge,
    watch_errors: Family<ResourceLabel, Counter>,
    certificates_issued: Counter,
    certificates_denied: Family<ReasonLabel, Counter>,
    root_expiry: Gauge,
    bundle_roots: Gauge,
}

fn kind_label(kind: ResourceKind) -> &'static str {
    kind.type_url().rsplit('.').next().unwrap_or("unknown")
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            connected: Gauge::default(),
            pushes: Family::default(),
            pushed_resources: Family::default(),
            // 1 ms .. ~33 s.
            push_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            nacks: Family::default(),
            config_changes: Counter::default(),
            config_rejected: Counter::default(),
            index_build: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            resources: Gauge::default(),
            watch_errors: Family::default(),
            certificates_issued: Counter::default(),
            certificates_denied: Family::default(),
            root_expiry: Gauge::default(),
            bundle_roots: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("mesh_control");
        r.register(
            "proxies_connected",
            "Proxies with an open discovery stream",
            m.connected.clone(),
        );
        r.register(
            "pushes",
            "Discovery responses sent, by resource type",
            m.pushes.clone(),
        );
        r.register(
            "pushed_resources",
            "Resources sent in discovery responses, by resource type",
            m.pushed_resources.clone(),
        );
        r.register(
            "push_latency_seconds",
            "From a config change being accepted to a proxy acknowledging the response it caused",
            m.push_latency.clone(),
        );
        r.register(
            "nacks",
            "Discovery responses rejected by proxies, by resource type",
            m.nacks.clone(),
        );
        r.register(
            "config_changes",
            "Accepted config changes",
            m.config_changes.clone(),
        );
        r.register(
            "config_rejected",
            "Source updates rejected as invalid (the last good config stays)",
            m.config_rejected.clone(),
        );
        r.register(
            "index_build_seconds",
            "Time to rebuild the index after a change",
            m.index_build.clone(),
        );
        r.register(
            "resources",
            "Config resources in the index",
            m.resources.clone(),
        );
        r.register(
            "watch_errors",
            "Kubernetes watch errors, by resource",
            m.watch_errors.clone(),
        );
        r.register(
            "certificates_issued",
            "Workload certificates signed",
            m.certificates_issued.clone(),
        );
        r.register(
            "certificate_requests_denied",
            "Certificate and trust bundle requests refused, by reason",
            m.certificates_denied.clone(),
        );
        r.register(
            "ca_root_expiry_timestamp_seconds",
            "When the certificate the CA signs with expires (Unix seconds)",
            m.root_expiry.clone(),
        );
        r.register(
            "trust_bundle_roots",
            "Roots in the trust bundle",
            m.bundle_roots.clone(),
        );
        m
    }

    /// A certificate was signed.
    pub fn certificate_issued(&self) {
        self.certificates_issued.inc();
    }

    /// A certificate or trust bundle request was refused.
    pub fn certificate_denied(&self, reason: DenyReason) {
        self.certificates_denied
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// The CA's signing certificate expires at `unix_s`; the bundle has `roots` roots.
    pub fn ca_state(&self, expiry_unix_s: i64, roots: usize) {
        self.root_expiry.set(expiry_unix_s);
        self.bundle_roots.set(roots as i64);
    }

    pub(crate) fn connected(&self, delta: i64) {
        self.connected.inc_by(delta);
    }

    pub(crate) fn pushed(&self, kind: ResourceKind, resources: usize) {
        let label = TypeLabel {
            r#type: kind_label(kind),
        };
        self.pushes.get_or_create(&label).inc();
        self.pushed_resources
            .get_or_create(&label)
            .inc_by(resources as u64);
    }

    pub(crate) fn push_acked(&self, _kind: ResourceKind, latency: Duration) {
        self.push_latency.observe(latency.as_secs_f64());
    }

    pub(crate) fn push_nacked(&self, kind: ResourceKind) {
        self.nacks
            .get_or_create(&TypeLabel {
                r#type: kind_label(kind),
            })
            .inc();
    }

    /// An accepted config change whose index rebuild took `build`; the index now holds
    /// `resources`.
    pub fn config_changed(&self, build: Duration, resources: usize) {
        self.config_changes.inc();
        self.index_build.observe(build.as_secs_f64());
        self.resources.set(resources as i64);
    }

    /// A rejected source update.
    pub fn config_rejected(&self) {
        self.config_rejected.inc();
    }

    /// Brings the watch-error counter of `resource` up to `total` (the registry counts;
    /// this mirrors its counts into Prometheus).
    pub fn watch_errors_seen(&self, resource: &str, total: u64) {
        let counter = self.watch_errors.get_or_create(&ResourceLabel {
            resource: resource.to_owned(),
        });
        let seen = counter.get();
        if total > seen {
            counter.inc_by(total - seen);
        }
    }
}
