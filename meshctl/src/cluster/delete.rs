//! Idempotent deletes and label sweeps, for `uninstall`.
//!
//! A delete that finds nothing (404) is not an error: the object is already gone, so
//! running `uninstall` twice is fine. Deletes use background propagation, as `kubectl
//! delete` does: dependents (a Deployment's ReplicaSets and pods) are removed by the
//! garbage collector after the call returns.

use kube::api::{DeleteParams, DynamicObject, ListParams};

use super::{Cluster, Error, Kind, Object, Verb, is_not_found};

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The object existed and is being deleted.
    Deleted,
    /// There was nothing to delete.
    AlreadyGone,
}

/// Deletes `object`; a 404 is [`Deleted::AlreadyGone`].
pub async fn delete(cluster: &Cluster, object: &Object) -> Result<Deleted, Error> {
    match object
        .api(cluster)
        .delete(object.name(), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(Deleted::Deleted),
        Err(e) if is_not_found(&e) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(cluster.error(e, &object.op(Verb::Delete))),
    }
}

/// Gets `object` as it is in the cluster, `None` when it does not exist.
pub async fn get(cluster: &Cluster, object: &Object) -> Result<Option<Object>, Error> {
    match object.api(cluster).get(object.name()).await {
        Ok(data) => Ok(Some(Object {
            kind: object.kind.clone(),
            data,
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(cluster.error(e, &object.op(Verb::Get))),
    }
}

/// The objects of `kind` matching the label `selector`, in `namespace` (`None`: across all
/// namespaces, or cluster-scoped).
pub async fn list(
    cluster: &Cluster,
    kind: &Kind,
    namespace: Option<&str>,
    selector: &str,
) -> Result<Vec<Object>, Error> {
    let namespace = namespace.filter(|_| kind.namespaced);
    let list = kind
        .api(cluster, namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| cluster.error(e, &kind.op(Verb::List).in_namespace(namespace)))?;
    list.items
        .into_iter()
        .map(|data: DynamicObject| Object::new(kind.clone(), data))
        .collect()
}
