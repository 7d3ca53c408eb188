//! The config validation webhook (`POST /validate`): the checks of `meshctl analyze`, run
//! by the apiserver on every CREATE and UPDATE of our CRDs (`networking.mesh.dev`,
//! `security.mesh.dev`) before the object is stored.
//!
//! The object is loaded and validated exactly as a file is by `meshctl analyze` and local
//! mode ([`mesh_api::config::load`], [`mesh_api::config::validate`]), alone:
//!
//! - errors deny the request with HTTP code 422 (`Invalid`) and one line per problem:
//!   code, field path, what is wrong and how to fix it;
//! - warnings (a rule that can never match, a principal of another trust domain) allow it,
//!   and `kubectl` prints them;
//! - checks that need the rest of the mesh — a route's subset defined by a DestinationRule
//!   that may be applied next, a duplicate, a host claimed twice — are warnings here, as
//!   the order of `kubectl apply` must not matter;
//! - DELETE, other kinds and subresources (`status`) are allowed untouched.
//!
//! Unknown fields never reach this webhook: the apiserver prunes them from CRD objects
//! before admission, and rejects them when the client asks for strict field validation
//! (`kubectl` does by default since 1.25).

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use mesh_api::config::diagnostic::{Code, Diagnostic, Severity};
use mesh_api::config::load::Loader;
use mesh_api::config::validate::{self, Options};
use serde_json::Value;

/// The API groups whose objects are validated.
pub const GROUPS: [&str; 2] = ["networking.mesh.dev", "security.mesh.dev"];

/// The largest number of problems listed in one denial.
const MAX_LISTED: usize = 20;

/// The response to one request; `object` is the request's `object` as received.
pub fn admit(
    request: &AdmissionRequest<DynamicObject>,
    object: Option<Value>,
    options: &Options,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let ours = GROUPS.contains(&request.kind.group.as_str());
    let writes = matches!(request.operation, Operation::Create | Operation::Update);
    if !ours || !writes || request.sub_resource.is_some() {
        return allowed;
    }
    let Some(object) = object else {
        return super::deny(
            allowed,
            400,
            "BadRequest",
            format!("the {:?} request has no object", request.operation),
        );
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "default".to_owned());
    let who = format!(
        "{} {namespace}/{}",
        request.kind.kind,
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    );
    let (errors, warnings) = check(&object, &namespace, options);
    let mut response = allowed;
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    if errors.is_empty() {
        tracing::debug!(uid = %request.uid, object = %who, "config admitted");
        return response;
    }
    tracing::info!(uid = %request.uid, object = %who, errors = errors.len(), "config denied");
    let mut message = format!("{who} is invalid:");
    for line in errors.iter().take(MAX_LISTED) {
        message.push_str("\n  ");
        message.push_str(line);
    }
    if errors.len() > MAX_LISTED {
        message.push_str(&format!(
            "\n  … and {} more (run `meshctl analyze -f FILE` for all of them)",
            errors.len() - MAX_LISTED
        ));
    }
    super::deny(response, 422, "Invalid", message)
}

/// The errors and warnings of one object, each a line.
pub fn check(object: &Value, namespace: &str, options: &Options) -> (Vec<String>, Vec<String>) {
    let text = match serde_json::to_string(object) {
        Ok(text) => text,
        Err(e) => return (vec![format!("cannot read the object: {e}")], Vec::new()),
    };
    let mut loader = Loader::new().with_default_namespace(namespace);
    loader.add_str("admission", &text);
    let mut set = loader.finish();
    validate::validate_with(&mut set, options);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for d in &set.diagnostics {
        match d.severity {
            Severity::Error if !needs_the_mesh(d.code) => errors.push(line(d)),
            Severity::Error | Severity::Warning => warnings.push(line(d)),
            Severity::Info => {}
        }
    }
    (errors, warnings)
}

/// Checks whose verdict depends on other objects.
fn needs_the_mesh(code: Code) -> bool {
    matches!(code, Code::UndefinedSubset | Code::DuplicateResource)
}

/// `MSH0101 spec.http[0].route: weights sum to 95, not 100 (fix: …)`.
fn line(d: &Diagnostic) -> String {
    let mut out = d.code.to_string();
    if !d.location.path.is_empty() {
        out.push(' ');
        out.push_str(&d.location.path);
    }
    out.push_str(": ");
    out.push_str(&d.message);
    if let Some(fix) = &d.fix {
        out.push_str(" (fix: ");
        out.push_str(fix);
        out.push(')');
    }
    out
}
