//! The JSONPatch (RFC 6902) from a pod as the apiserver sent it to the injected pod.
//!
//! Injection works on k8s-openapi's typed [`Pod`](k8s_openapi::api::core::v1::Pod), which
//! drops fields it does not know (a newer Kubernetes' fields, alpha fields). Replacing the
//! object, or diffing the typed original against the raw one, would remove them. So the
//! patch is the difference between the *typed* original and the *typed* injected pod —
//! exactly what injection changed, since both went through the same types — and it is
//! addressed to the *raw* object, which is walked alongside to choose between `add` (the
//! raw object has nothing there) and `replace`. Only `add` and `replace` are emitted:
//!
//! - objects are diffed member by member, so unknown members beside a changed one stay;
//! - arrays of named objects (containers, init containers, volumes) are aligned by name:
//!   new elements are `add`ed at their index (which inserts), existing ones diffed in place,
//!   so an application container is never replaced and keeps its unknown fields;
//! - other values that differ are replaced whole (injection changes none of the user's);
//! - so are probes (`livenessProbe`, `readinessProbe`, `startupProbe`) that injection
//!   rewrote to go through the proxy: their handler changes kind (`tcpSocket` or `grpc` to
//!   `httpGet`), which member-wise would need a `remove`, and nothing of the old handler
//!   applies any more (the proxy keeps it, in `MESH_APP_PROBES`).
//!
//! A change that would need a `remove` (injection dropping a field or an element) is an
//! [`Error`]: the webhook denies rather than sending a patch that deletes user data.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::Value;

/// Why no patch was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The injected pod lacks something the original had; a patch never removes.
    #[error("injection would remove {0} from the pod, which the webhook never does")]
    Removal(String),
}

/// The operations that turn `raw` (the object as received, whose typed form is `from`)
/// into `to`, keeping every field of `raw` that `from` does not know.
pub fn diff(from: &Value, to: &Value, raw: &Value) -> Result<Patch, Error> {
    let mut ops = Vec::new();
    walk(from, to, Some(raw), &mut PointerBuf::root(), &mut ops)?;
    Ok(Patch(ops))
}

fn walk(
    from: &Value,
    to: &Value,
    raw: Option<&Value>,
    path: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), Error> {
    if from == to {
        return Ok(());
    }
    // Nothing in the raw object here (absent or null): the whole value is new.
    let Some(raw) = raw.filter(|r| !r.is_null()) else {
        ops.push(PatchOperation::Add(AddOperation {
            path: path.clone(),
            value: to.clone(),
        }));
        return Ok(());
    };
    match (from, to, raw) {
        (Value::Object(_), Value::Object(_), Value::Object(_)) if is_probe(path) => {
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: path.clone(),
                value: to.clone(),
            }));
            Ok(())
        }
        (Value::Object(a), Value::Object(b), Value::Object(r)) => {
            if let Some(gone) = a.keys().find(|k| !b.contains_key(*k)) {
                path.push_back(gone.as_str());
                return Err(Error::Removal(path.to_string()));
            }
            for (key, value) in b {
                path.push_back(key.as_str());
                match a.get(key) {
                    Some(old) => walk(old, value, r.get(key), path, ops)?,
                    None => ops.push(PatchOperation::Add(AddOperation {
                        path: path.clone(),
                        value: value.clone(),
                    })),
                }
                path.pop_back();
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b), Value::Array(r))
            if named(a) && named(b) && a.len() == r.len() =>
        {
            // After the operations for elements 0..i, the array being patched starts
            // with b[..i] and continues with a[j..].
            let mut j = 0;
            for (i, value) in b.iter().enumerate() {
                path.push_back(i);
                if a.get(j).is_some_and(|old| name(old) == name(value)) {
                    walk(&a[j], value, r.get(j), path, ops)?;
                    j += 1;
                } else {
                    ops.push(PatchOperation::Add(AddOperation {
                        path: path.clone(),
                        value: value.clone(),
                    }));
                }
                path.pop_back();
            }
            if let Some(gone) = a.get(j) {
                return Err(Error::Removal(format!(
                    "{path}: the element named {:?}",
                    name(gone).unwrap_or_default()
                )));
            }
            Ok(())
        }
        _ => {
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: path.clone(),
                value: to.clone(),
            }));
            Ok(())
        }
    }
}

/// Whether `path` is a container's probe: `…/containers/N/readinessProbe` and the like.
fn is_probe(path: &PointerBuf) -> bool {
    let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
    match tokens.as_slice() {
        [.., list, index, probe] => {
            matches!(list.as_str(), "containers" | "initContainers")
                && index.parse::<usize>().is_ok()
                && matches!(
                    probe.as_str(),
                    "livenessProbe" | "readinessProbe" | "startupProbe"
                )
        }
        _ => false,
    }
}

fn name(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

/// Whether every element is an object with a `name`, unique in the array.
fn named(items: &[Value]) -> bool {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .all(|v| name(v).is_some_and(|n| seen.insert(n)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(raw: &Value, patch: &Patch) -> Value {
        let mut doc = raw.clone();
        json_patch::patch(&mut doc, patch).expect("the patch applies");
        doc
    }

    #[test]
    fn unknown_fields_survive_and_only_add_or_replace_is_used() {
        let raw = json!({
            "metadata": {"labels": {"app": "a"}, "future": 1},
            "spec": {
                "containers": [{"name": "app", "image": "x", "futureField": true}],
                "someFutureField": {"k": "v"},
            },
        });
        let from = json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
        });
        let to = json!({
            "metadata": {"labels": {"app": "a", "mesh": "yes"}, "annotations": {"s": "1"}},
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [{"name": "proxy"}, {"name": "app", "image": "x"}, {"name": "z"}],
                "volumes": [{"name": "v"}],
            },
        });
        let patch = diff(&from, &to, &raw).unwrap();
        assert!(
            patch
                .0
                .iter()
                .all(|op| matches!(op, PatchOperation::Add(_) | PatchOperation::Replace(_))),
            "{patch:?}"
        );
        let out = apply(&raw, &patch);
        assert_eq!(
            out,
            json!({
                "metadata": {
                    "labels": {"app": "a", "mesh": "yes"},
                    "annotations": {"s": "1"},
                    "future": 1,
                },
                "spec": {
                    "initContainers": [{"name": "init"}],
                    "containers": [
                        {"name": "proxy"},
                        {"name": "app", "image": "x", "futureField": true},
                        {"name": "z"},
                    ],
                    "volumes": [{"name": "v"}],
                    "someFutureField": {"k": "v"},
                },
            })
        );
    }

    #[test]
    fn null_in_the_raw_object_is_added_over() {
        let raw = json!({"metadata": {"annotations": null}});
        let from = json!({"metadata": {}});
        let to = json!({"metadata": {"annotations": {"a": "b"}}});
        let patch = diff(&from, &to, &raw).unwrap();
        assert_eq!(
            apply(&raw, &patch),
            json!({"metadata": {"annotations": {"a": "b"}}})
        );
    }

    #[test]
    fn keys_needing_escapes_are_addressed_correctly() {
        let raw = json!({"a": {"x/y~z": "1"}});
        let to = json!({"a": {"x/y~z": "1", "sidecar.mesh.dev/status": "{}"}});
        let patch = diff(&raw, &to, &raw).unwrap();
        assert_eq!(apply(&raw, &patch), to);
    }

    #[test]
    fn removals_are_refused() {
        let raw = json!({"a": 1, "b": 2});
        assert_eq!(
            diff(&raw, &json!({"a": 1}), &raw),
            Err(Error::Removal("/b".to_owned()))
        );
        let raw = json!({"c": [{"name": "x"}, {"name": "y"}]});
        let err = diff(&raw, &json!({"c": [{"name": "x"}]}), &raw).unwrap_err();
        assert!(err.to_string().contains("\"y\""), "{err}");
    }

    #[test]
    fn rewritten_probes_are_replaced_whole() {
        let probe = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 5});
        let rewritten = json!({"httpGet": {"path": "/app-health/app/readyz", "port": 15021, "scheme": "HTTP"}, "periodSeconds": 5});
        let raw = json!({"spec": {"containers": [{"name": "app", "readinessProbe": probe}]}});
        let to = json!({"spec": {"containers": [{"name": "app", "readinessProbe": rewritten}]}});
        let patch = diff(&raw, &to, &raw).unwrap();
        assert!(
            matches!(patch.0.as_slice(), [PatchOperation::Replace(r)] if r.path.as_str() == "/spec/containers/0/readinessProbe"),
            "{patch:?}"
        );
        assert_eq!(apply(&raw, &patch), to);
        // Elsewhere, a member that disappears is still refused.
        let raw = json!({"spec": {"readinessProbe": {"tcpSocket": {}}}});
        let to = json!({"spec": {"readinessProbe": {"httpGet": {}}}});
        assert!(diff(&raw, &to, &raw).is_err());
    }

    #[test]
    fn unnamed_arrays_are_replaced_whole() {
        let raw = json!({"args": ["a"]});
        let to = json!({"args": ["a", "b"]});
        let patch = diff(&raw, &to, &raw).unwrap();
        assert!(matches!(patch.0.as_slice(), [PatchOperation::Replace(_)]));
        assert_eq!(apply(&raw, &patch), to);
    }
}
