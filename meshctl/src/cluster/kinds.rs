//! The kinds meshctl installs, and rendered objects paired with theirs.
//!
//! Every kind the manifests render comes from a static table built from the k8s-openapi
//! types (plural and scope as the types declare them, so nothing is typed by hand), so an
//! install sends no discovery requests. A kind outside the table is looked up once with
//! discovery (`GET /apis/<group>/<version>`), so a new kind in the manifests works before
//! the table learns it.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};

use super::{Cluster, Error, Op, Verb};

/// A kind: where its objects live in the API and whether they are namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
}

/// Whether a k8s-openapi scope is a namespace.
trait IsNamespaced {
    const NAMESPACED: bool;
}

impl IsNamespaced for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl IsNamespaced for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// The kinds meshctl knows without discovery.
static KNOWN: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    vec![
        Kind::of::<CustomResourceDefinition>(),
        Kind::of::<Namespace>(),
        Kind::of::<ServiceAccount>(),
        Kind::of::<ConfigMap>(),
        Kind::of::<Secret>(),
        Kind::of::<Service>(),
        Kind::of::<Pod>(),
        Kind::of::<ClusterRole>(),
        Kind::of::<ClusterRoleBinding>(),
        Kind::of::<Role>(),
        Kind::of::<RoleBinding>(),
        Kind::of::<Deployment>(),
        Kind::of::<DaemonSet>(),
        Kind::of::<StatefulSet>(),
        Kind::of::<PodDisruptionBudget>(),
        Kind::of::<HorizontalPodAutoscaler>(),
        Kind::of::<NetworkPolicy>(),
        Kind::of::<MutatingWebhookConfiguration>(),
        Kind::of::<ValidatingWebhookConfiguration>(),
    ]
});

// === impl Kind ===

impl Kind {
    /// The kind of a k8s-openapi type.
    #[expect(private_bounds, reason = "the scope trait is an implementation detail")]
    pub fn of<K>() -> Self
    where
        K: kube::Resource<DynamicType = ()>,
        K::Scope: IsNamespaced,
    {
        Self {
            resource: ApiResource::erase::<K>(&()),
            namespaced: <K::Scope as IsNamespaced>::NAMESPACED,
        }
    }

    /// The kind named by `apiVersion` and `kind`, when meshctl knows it without discovery.
    pub fn known(api_version: &str, kind: &str) -> Option<Self> {
        KNOWN
            .iter()
            .find(|k| k.resource.api_version == api_version && k.resource.kind == kind)
            .cloned()
    }

    /// The kind's name: `Deployment`.
    pub fn name(&self) -> &str {
        &self.resource.kind
    }

    /// The resource, kubectl style: `deployments.apps`, `namespaces`.
    pub fn resource_name(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    /// An [`Op`] on this kind's resource.
    pub fn op(&self, verb: Verb) -> Op {
        Op::new(verb, self.resource_name())
    }

    /// The API of this kind in `namespace` (ignored for cluster-scoped kinds; `None` for a
    /// namespaced kind: across all namespaces).
    pub fn api(&self, cluster: &Cluster, namespace: Option<&str>) -> Api<DynamicObject> {
        let client = cluster.client().clone();
        match namespace {
            Some(ns) if self.namespaced => Api::namespaced_with(client, ns, &self.resource),
            _ => Api::all_with(client, &self.resource),
        }
    }

    /// The kind named by `apiVersion` and `kind`: from the table, else by discovery.
    pub async fn resolve(cluster: &Cluster, api_version: &str, kind: &str) -> Result<Self, Error> {
        if let Some(known) = Self::known(api_version, kind) {
            return Ok(known);
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(cluster.client(), &gvk).await {
            Ok((resource, caps)) => Ok(Self {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            }),
            Err(e @ kube::Error::Discovery(_)) => Err(Error::UnknownKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if super::is_not_found(&e) => Err(Error::UnknownKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                reason: format!("GET /apis/{api_version}: 404 Not Found"),
            }),
            Err(e) => Err(cluster.error(
                e,
                &Op::new(Verb::Get, format!("API discovery for {api_version}")),
            )),
        }
    }
}

/// A rendered object and its kind.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its kind.
    pub kind: Kind,
    /// The object as rendered (or as listed from the cluster).
    pub data: DynamicObject,
}

impl fmt::Display for Object {
    /// `Deployment mesh-system/mesh-control`, `Namespace mesh-system`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace() {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.name(), self.name()),
            None => write!(f, "{} {}", self.kind.name(), self.name()),
        }
    }
}

// === impl Object ===

impl Object {
    /// Pairs `data` with `kind`, checking that it has a name and (for a namespaced kind) a
    /// namespace.
    pub fn new(kind: Kind, data: DynamicObject) -> Result<Self, Error> {
        let what = || format!("a {} ({})", kind.name(), kind.resource.api_version);
        if data.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(Error::Manifest(format!("{} has no name", what())));
        }
        if kind.namespaced && data.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            return Err(Error::Manifest(format!(
                "{} {:?} has no namespace",
                what(),
                data.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        Ok(Self { kind, data })
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.data
            .metadata
            .name
            .as_deref()
            .expect("objects are checked for a name when made")
    }

    /// The object's namespace (`None` for a cluster-scoped kind).
    pub fn namespace(&self) -> Option<&str> {
        if self.kind.namespaced {
            self.data.metadata.namespace.as_deref()
        } else {
            None
        }
    }

    /// An [`Op`] on this object.
    pub fn op(&self, verb: Verb) -> Op {
        self.kind
            .op(verb)
            .named(self.name())
            .in_namespace(self.namespace())
    }

    /// The API of the object's kind in its namespace.
    pub fn api(&self, cluster: &Cluster) -> Api<DynamicObject> {
        self.kind.api(cluster, self.namespace())
    }

    /// Whether the object is of `kind` (`Deployment`).
    pub fn is(&self, kind: &str) -> bool {
        self.kind.name() == kind
    }

    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.data
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
    }

    /// Same kind, namespace and name.
    pub fn same(&self, other: &Self) -> bool {
        self.kind.resource.kind == other.kind.resource.kind
            && self.kind.resource.group == other.kind.resource.group
            && self.namespace() == other.namespace()
            && self.name() == other.name()
    }
}

/// Pairs every rendered object with its kind (discovering kinds outside the table once
/// each), in order. Fails before anything is sent to the cluster when an object cannot be
/// applied.
pub async fn resolve(cluster: &Cluster, objects: Vec<DynamicObject>) -> Result<Vec<Object>, Error> {
    let mut cache: HashMap<(String, String), Kind> = HashMap::new();
    let mut out = Vec::with_capacity(objects.len());
    for data in objects {
        let Some(types) = data.types.clone() else {
            return Err(Error::Manifest(format!(
                "object {:?} has no apiVersion and kind",
                data.metadata.name.as_deref().unwrap_or_default()
            )));
        };
        let key = (types.api_version.clone(), types.kind.clone());
        let kind = match cache.get(&key) {
            Some(kind) => kind.clone(),
            None => {
                let kind = Kind::resolve(cluster, &types.api_version, &types.kind).await?;
                cache.insert(key, kind.clone());
                kind
            }
        };
        out.push(Object::new(kind, data)?);
    }
    Ok(out)
}
