//! "Can I?" — permission checks with `SelfSubjectAccessReview`, as `kubectl auth can-i`
//! does, for `precheck`: the API server answers for the caller's own credentials, so no
//! permission beyond creating the review is needed.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::{Cluster, Error, Kind, Op, Verb};

/// One permission: a verb on a kind's resource, in a namespace or cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// The RBAC verb: `create`, `patch`, `get`.
    pub verb: &'static str,
    /// The API group (empty for the core group).
    pub group: String,
    /// The resource (plural).
    pub resource: String,
    /// The namespace (`None`: cluster-wide).
    pub namespace: Option<String>,
}

/// The API server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the permission is granted.
    pub allowed: bool,
    /// The authorizer's words, when it gave any.
    pub reason: String,
}

// === impl Permission ===

impl Permission {
    /// `verb` on `kind`'s resource in `namespace` (ignored for cluster-scoped kinds).
    pub fn new(verb: &'static str, kind: &Kind, namespace: Option<&str>) -> Self {
        Self {
            verb,
            group: kind.resource.group.clone(),
            resource: kind.resource.plural.clone(),
            namespace: namespace.filter(|_| kind.namespaced).map(str::to_owned),
        }
    }

    /// The resource, kubectl style: `deployments.apps`.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

impl std::fmt::Display for Permission {
    /// `create deployments.apps in namespace mesh-system`, `create
    /// customresourcedefinitions.apiextensions.k8s.io cluster-wide`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource_name())?;
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " cluster-wide"),
        }
    }
}

/// Asks the API server whether the caller has `permission`.
pub async fn can_i(cluster: &Cluster, permission: &Permission) -> Result<Decision, Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(permission.verb.to_owned()),
                group: Some(permission.group.clone()),
                resource: Some(permission.resource.clone()),
                namespace: permission.namespace.clone(),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client().clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            cluster.error(
                e,
                &Op::new(
                    Verb::Create,
                    "selfsubjectaccessreviews.authorization.k8s.io",
                ),
            )
        })?;
    let status = answer.status.unwrap_or_default();
    Ok(Decision {
        allowed: status.allowed,
        reason: status
            .reason
            .or(status.evaluation_error)
            .unwrap_or_default(),
    })
}
