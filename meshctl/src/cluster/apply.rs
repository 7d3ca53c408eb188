//! Server-side apply, as `kubectl apply --server-side --field-manager=meshctl` does it:
//! `PATCH` with `application/apply-patch+yaml`, `fieldManager=meshctl`, and `force=true`
//! only when the user asked to take over fields another manager owns.
//!
//! Applying is idempotent, so installing again is an upgrade. A 409 conflict is read from
//! the `Status` the API server sends (`details.causes` of reason `FieldManagerConflict`,
//! each naming a manager and a field) into [`Error::Conflict`], which says who owns what.

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::Status;

use super::{Cluster, Error, Object, Verb};

/// The field manager of everything meshctl applies.
pub const FIELD_MANAGER: &str = "meshctl";

/// Fields of an object that another field manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other manager, as the server names it: `kubectl-client-side-apply`.
    pub manager: String,
    /// How it wrote them, when the server says: `using apps/v1`.
    pub how: String,
    /// The fields: `.spec.replicas`.
    pub fields: Vec<String>,
}

/// Server-side-applies `object` as [`FIELD_MANAGER`], forcing ownership of conflicting
/// fields when `force`. Returns the object as stored.
pub async fn apply(
    cluster: &Cluster,
    object: &Object,
    force: bool,
) -> Result<DynamicObject, Error> {
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    object
        .api(cluster)
        .patch(object.name(), &params, &Patch::Apply(&object.data))
        .await
        .map_err(|e| match &e {
            kube::Error::Api(status) if status.code == 409 => {
                let conflicts = conflicts(status);
                if conflicts.is_empty() {
                    cluster.error(e, &object.op(Verb::Apply))
                } else {
                    Error::Conflict {
                        object: object.to_string(),
                        conflicts,
                    }
                }
            }
            _ => cluster.error(e, &object.op(Verb::Apply)),
        })
}

/// The field-manager conflicts of a 409 `Status`, grouped by manager in the order the
/// server lists them.
pub fn conflicts(status: &Status) -> Vec<FieldConflict> {
    let mut out: Vec<FieldConflict> = Vec::new();
    let causes = status.details.iter().flat_map(|d| &d.causes);
    for cause in causes.filter(|c| c.reason == "FieldManagerConflict") {
        let (manager, how) = parse_manager(&cause.message);
        match out
            .iter_mut()
            .find(|c| c.manager == manager && c.how == how)
        {
            Some(c) => c.fields.push(cause.field.clone()),
            None => out.push(FieldConflict {
                manager,
                how,
                fields: vec![cause.field.clone()],
            }),
        }
    }
    out
}

/// Reads `conflict with "kubectl-client-side-apply" using apps/v1` into the manager and
/// the rest (`using apps/v1`).
fn parse_manager(message: &str) -> (String, String) {
    let rest = message
        .strip_prefix("conflict with ")
        .unwrap_or(message)
        .trim();
    if let Some(quoted) = rest.strip_prefix('"') {
        // Go's %q: backslash escapes.
        let mut manager = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        manager.push(escaped);
                    }
                }
                '"' => return (manager, quoted[i + 1..].trim().to_owned()),
                c => manager.push(c),
            }
        }
        return (manager, String::new());
    }
    (rest.to_owned(), String::new())
}

/// `"kubectl-client-side-apply" (using apps/v1) owns .spec.replicas and
/// .spec.template.spec.containers[name="discovery"].image`.
pub fn describe_conflicts(conflicts: &[FieldConflict]) -> String {
    let parts: Vec<String> = conflicts
        .iter()
        .map(|c| {
            let how = if c.how.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.how)
            };
            format!("{:?}{how} owns {}", c.manager, join_and(&c.fields))
        })
        .collect();
    join_and(&parts)
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
