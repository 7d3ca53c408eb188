//! Loading config from YAML: files, directories and streams of multi-document YAML.
//!
//! Each document is parsed with `serde-saphyr` (which enforces budgets against YAML bombs)
//! into a tree that remembers the line and column of every node, dispatched on
//! `apiVersion`/`kind`, and decoded into its typed [`Resource`]. Decoding reports the field
//! path of a wrong value and every field the type does not have — unknown fields are
//! errors, for our CRDs, Kubernetes Services and Gateway API routes alike, because a typo
//! silently ignored is a policy silently not applied.
//!
//! Problems become [`Diagnostic`]s; a broken document is skipped and the rest still load,
//! so one run reports everything.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use super::diagnostic::{Code, Diagnostic, Location};
use super::{Resource, ResourceKind};

/// The largest file read, to keep a mistaken path (a log, a binary) from exhausting memory.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The field-path → (line, column) index of one YAML document.
#[derive(Debug, Default)]
struct SpanMap {
    spans: HashMap<String, (u64, u64)>,
}

impl SpanMap {
    /// The location of `path`, or of its nearest ancestor that has one.
    fn locate(&self, path: &str) -> (u64, u64) {
        let mut p = path;
        loop {
            if let Some(span) = self.spans.get(p) {
                return *span;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return self.spans.get("").copied().unwrap_or((0, 0)),
            }
        }
    }
}

/// Strips the last segment of a field path (`a.b[0]` → `a.b`, `a["x.y"]` → `a`).
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let bytes = path.as_bytes();
    if bytes[bytes.len() - 1] == b']' {
        // `[0]` or `["key"]`: find the matching `[` (keys never contain `"]`).
        let open = if let Some(quoted) = path.strip_suffix("\"]") {
            quoted.rfind("[\"")?
        } else {
            path.rfind('[')?
        };
        return Some(&path[..open]);
    }
    Some(path.rfind('.').map_or("", |dot| &path[..dot]))
}

/// Appends a map key to a field path: `.key` for plain keys, `["key"]` for keys with dots,
/// slashes or other punctuation (label keys such as `app.kubernetes.io/name`).
pub(crate) fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        let _ = write!(path, "[{key:?}]");
    }
}

/// Appends a sequence index to a field path.
pub(crate) fn push_index(path: &mut String, index: usize) {
    let _ = write!(path, "[{index}]");
}

// === impl Node ===

/// A YAML node that keeps the location of each child, so diagnostics can name lines.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        String::from_utf8(v.to_vec())
            .map(Node::Str)
            .map_err(|_| E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<Node>, Spanned<Node>>()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

fn span_of<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

/// Converts a node tree into JSON, recording where each field path sits.
fn to_json(node: Node, path: &mut String, spans: &mut SpanMap) -> Result<Value, String> {
    Ok(match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::from(i),
        Node::UInt(u) => Value::from(u),
        Node::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{path}: non-finite numbers (.nan, .inf) are not allowed"))?,
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = path.len();
                push_index(path, i);
                spans.spans.insert(path.clone(), span_of(&item));
                out.push(to_json(item.value, path, spans)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key_span = span_of(&k);
                let key = match k.value {
                    Node::Str(s) => s,
                    Node::Int(i) => i.to_string(),
                    Node::UInt(u) => u.to_string(),
                    Node::Bool(b) => b.to_string(),
                    Node::Float(f) => f.to_string(),
                    Node::Null => "null".to_string(),
                    Node::Seq(_) | Node::Map(_) => {
                        return Err(format!(
                            "{}: complex mapping keys are not supported",
                            if path.is_empty() { "<root>" } else { path }
                        ));
                    }
                };
                let len = path.len();
                push_key(path, &key);
                // Point at the key: that is where a reader looks for a field.
                spans.spans.insert(path.clone(), key_span);
                let value = to_json(v.value, path, spans)?;
                path.truncate(len);
                out.insert(key, value);
            }
            Value::Object(out)
        }
    })
}

// === impl Origin ===

/// Where a loaded resource came from, to locate diagnostics about it.
#[derive(Debug, Clone)]
pub struct Origin {
    file: Arc<str>,
    document: usize,
    resource: String,
    spans: Arc<SpanMap>,
}

impl Origin {
    /// An origin for a resource that did not come from a file (e.g. an admission request).
    pub fn synthetic(label: &str, resource: String) -> Self {
        Self {
            file: label.into(),
            document: 0,
            resource,
            spans: Arc::default(),
        }
    }

    /// The location of a field path (`spec.http[0].route`) in this resource's document.
    pub fn at(&self, path: &str) -> Location {
        let (line, column) = self.spans.locate(path);
        Location {
            file: self.file.clone(),
            document: self.document,
            line,
            column,
            resource: Some(self.resource.clone()),
            path: path.to_string(),
        }
    }

    /// The file (or stream) name.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The document index in the file, from 1.
    pub fn document(&self) -> usize {
        self.document
    }
}

/// A resource with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed resource.
    pub resource: Resource,
    /// Its source location.
    pub origin: Origin,
}

// === impl Loader ===

/// Reads config from files, directories and streams, collecting resources and diagnostics.
///
/// ```
/// let mut loader = mesh_api::config::Loader::new();
/// loader.add_str("inline.yaml", r#"
/// apiVersion: networking.mesh.dev/v1alpha1
/// kind: VirtualService
/// metadata: { name: reviews }
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: { host: reviews }
/// "#);
/// let set = loader.finish();
/// assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
/// assert_eq!(set.resources.len(), 1);
/// assert_eq!(set.resources[0].resource.namespace(), "default");
/// ```
#[derive(Debug)]
pub struct Loader {
    default_namespace: String,
    resources: Vec<Loaded>,
    diagnostics: Vec<Diagnostic>,
}

/// Everything loaded: resources, and the problems found on the way.
#[derive(Debug, Default)]
pub struct ConfigSet {
    /// The resources that decoded cleanly, in input order.
    pub resources: Vec<Loaded>,
    /// Problems, in input order.
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigSet {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// A loader that puts resources without a namespace into `default`.
    pub fn new() -> Self {
        Self {
            default_namespace: "default".to_string(),
            resources: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    /// Sets the namespace for resources that do not name one.
    #[must_use]
    pub fn with_default_namespace(mut self, ns: impl Into<String>) -> Self {
        self.default_namespace = ns.into();
        self
    }

    /// Loads a file, or every `.yaml`, `.yml` and `.json` file under a directory (sorted,
    /// recursively, skipping hidden entries such as Kubernetes' `..data`).
    pub fn add_path(&mut self, path: &Path) {
        let label: Arc<str> = path.display().to_string().into();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                self.read_error(
                    &label,
                    &format!("cannot read: {e}"),
                    "check the path exists and is readable",
                );
                return;
            }
        };
        if meta.is_dir() {
            let mut files = Vec::new();
            if let Err(e) = collect_files(path, &mut files, 0) {
                self.read_error(
                    &label,
                    &format!("cannot list directory: {e}"),
                    "check the directory's permissions",
                );
            }
            files.sort();
            if files.is_empty() {
                self.read_error(
                    &label,
                    "directory has no .yaml, .yml or .json files",
                    "point at a directory of config files, or at a file",
                );
            }
            for file in files {
                self.add_file(&file);
            }
        } else {
            self.add_file(path);
        }
    }

    fn add_file(&mut self, path: &Path) {
        let label: Arc<str> = path.display().to_string().into();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.read_error(
                    &label,
                    &format!("cannot open: {e}"),
                    "check the file's permissions",
                );
                return;
            }
        };
        self.add_reader(&label, file);
    }

    /// Loads everything from a reader (e.g. standard input, named `<stdin>`).
    pub fn add_reader(&mut self, name: &str, reader: impl Read) {
        let mut bytes = Vec::new();
        match reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
            Ok(_) if bytes.len() as u64 > MAX_FILE_BYTES => {
                self.read_error(
                    name,
                    &format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
                    "split the config into several files",
                );
            }
            Ok(_) => match String::from_utf8(bytes) {
                Ok(text) => self.add_str(name, &text),
                Err(e) => self.read_error(
                    name,
                    &format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                    "config files must be UTF-8 YAML or JSON",
                ),
            },
            Err(e) => self.read_error(
                name,
                &format!("cannot read: {e}"),
                "check the file is readable",
            ),
        }
    }

    /// Loads every document of a YAML (or JSON) text.
    pub fn add_str(&mut self, name: &str, text: &str) {
        let file: Arc<str> = name.into();
        let docs = match serde_saphyr::from_multiple::<Spanned<Node>>(text) {
            Ok(docs) => docs,
            Err(e) => {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                let message = first_line(&e.to_string());
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::YamlSyntax,
                        Location { file, line, column, ..Location::default() },
                        format!("invalid YAML: {message}"),
                    )
                    .with_fix("fix the YAML syntax (indentation, quoting, duplicate keys); no document of this file was loaded"),
                );
                return;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            let document = i + 1;
            let root_span = span_of(&doc);
            let mut spans = SpanMap::default();
            spans.spans.insert(String::new(), root_span);
            let value = match to_json(doc.value, &mut String::new(), &mut spans) {
                Ok(v) => v,
                Err(message) => {
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::YamlSyntax,
                            Location {
                                file: file.clone(),
                                document,
                                line: root_span.0,
                                column: root_span.1,
                                ..Location::default()
                            },
                            message,
                        )
                        .with_fix("use plain scalar keys and finite numbers"),
                    );
                    continue;
                }
            };
            let spans = Arc::new(spans);
            self.add_document(&file, document, &spans, value, "");
        }
    }

    /// Loads one parsed document. `prefix` is the field path of a `List` item.
    fn add_document(
        &mut self,
        file: &Arc<str>,
        document: usize,
        spans: &Arc<SpanMap>,
        value: Value,
        prefix: &str,
    ) {
        let mut origin = Origin {
            file: file.clone(),
            document,
            resource: String::new(),
            spans: spans.clone(),
        };
        let here = |path: &str| {
            let mut full = prefix.to_string();
            if !path.is_empty() {
                if !full.is_empty() && !path.starts_with('[') {
                    full.push('.');
                }
                full.push_str(path);
            }
            full
        };
        let Value::Object(obj) = &value else {
            self.diagnostics.push(
                Diagnostic::new(Code::MissingTypeMeta, origin.at(&here("")), "document is not a mapping")
                    .with_fix("each document must be a Kubernetes-style object with apiVersion, kind, metadata and spec"),
            );
            return;
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if api_version.is_empty() || kind.is_empty() {
            let missing = if api_version.is_empty() {
                "apiVersion"
            } else {
                "kind"
            };
            self.diagnostics.push(
                Diagnostic::new(Code::MissingTypeMeta, origin.at(&here(missing)), format!("missing `{missing}`"))
                    .with_fix("add `apiVersion` and `kind`, e.g. `apiVersion: networking.mesh.dev/v1alpha1` and `kind: VirtualService`"),
            );
            return;
        }
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = obj
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(&self.default_namespace)
            .to_string();
        origin.resource = format!("{kind} {namespace}/{name}");

        if kind == "List" && api_version == "v1" {
            let items = obj
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            origin.resource = "List".to_string();
            if obj.get("items").is_some_and(|i| !i.is_array()) {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        origin.at(&here("items")),
                        "`items` must be a list",
                    )
                    .with_fix("write the List's resources as a YAML sequence under `items`"),
                );
            }
            for (i, item) in items.into_iter().enumerate() {
                let mut p = here("items");
                push_index(&mut p, i);
                self.add_document(file, document, spans, item, &p);
            }
            return;
        }

        let Some(kind_enum) = ResourceKind::from_type_meta(&api_version, &kind) else {
            self.unknown_kind(&origin, &here("kind"), &api_version, &kind);
            return;
        };

        if name.is_empty() {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::InvalidName,
                    origin.at(&here("metadata")),
                    "missing `metadata.name`",
                )
                .with_fix("give the resource a name: `metadata: {name: my-name}`"),
            );
            return;
        } else if let Err(why) = check_dns_subdomain(&name) {
            self.diagnostics.push(
                Diagnostic::new(Code::InvalidName, origin.at(&here("metadata.name")), format!("invalid name {name:?}: {why}"))
                    .with_fix("use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"),
            );
            return;
        }

        let mut decoded = match kind_enum.decode(value) {
            Ok(decoded) => decoded,
            Err(DecodeError { path, message }) => {
                let field = here(&path);
                let fix = if message.contains("unknown variant") {
                    "use one of the values listed above (they are case-sensitive)"
                } else if message.contains("missing field") {
                    "add the required field"
                } else {
                    "give the field a value of the type the schema expects"
                };
                self.diagnostics.push(
                    Diagnostic::new(Code::InvalidValue, origin.at(&field), message).with_fix(fix),
                );
                return;
            }
        };
        for path in decoded.unknown_fields.drain(..) {
            let leaf = path
                .rsplit(['.', '['])
                .next()
                .unwrap_or(&path)
                .trim_end_matches([']', '"'])
                .trim_start_matches('"');
            self.diagnostics.push(
                Diagnostic::new(
                    Code::UnknownField,
                    origin.at(&here(&path)),
                    format!("unknown field `{leaf}` in {kind}"),
                )
                .with_fix("remove it, or fix its spelling or indentation; see `kubectl explain` or the CRD schema in deploy/crds/ for the fields"),
            );
        }
        let mut resource = decoded.resource;
        resource.set_default_namespace(&namespace);
        self.resources.push(Loaded { resource, origin });
    }

    fn unknown_kind(&mut self, origin: &Origin, path: &str, api_version: &str, kind: &str) {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let location = origin.at(path);
        let ours = group.ends_with("mesh.dev");
        let istio = group.ends_with("istio.io");
        if istio {
            let replacement = if group.starts_with("security") {
                "security.mesh.dev/v1alpha1"
            } else {
                "networking.mesh.dev/v1alpha1"
            };
            let supported = ResourceKind::ALL.iter().any(|k| k.kind() == kind);
            let fix = if supported {
                format!(
                    "change `apiVersion` to `{replacement}`: field names are Istio's, nothing else needs to change"
                )
            } else {
                format!(
                    "{kind} is not supported; supported kinds: {}",
                    ResourceKind::supported_list()
                )
            };
            self.diagnostics.push(
                Diagnostic::new(
                    Code::UnknownKind,
                    location,
                    format!("`{api_version}` is Istio's API group, not this mesh's"),
                )
                .with_fix(fix),
            );
        } else if ours
            || group == "gateway.networking.k8s.io"
                && matches!(kind, "HTTPRoute" | "GRPCRoute" | "Gateway")
        {
            let same_kind = ResourceKind::ALL.iter().find(|k| k.kind() == kind);
            let fix = match same_kind {
                Some(k) => format!("use `apiVersion: {}` for {kind}", k.api_version()),
                None => format!("supported kinds: {}", ResourceKind::supported_list()),
            };
            self.diagnostics.push(
                Diagnostic::new(
                    Code::UnknownKind,
                    location,
                    format!("unknown kind `{kind}` in `{api_version}`"),
                )
                .with_fix(fix),
            );
        } else {
            // Someone else's resource (a Deployment, a ConfigMap): not ours to judge.
            self.diagnostics.push(Diagnostic::new(
                Code::Ignored,
                location,
                format!("{kind} ({api_version}) is not mesh config; ignored"),
            ));
        }
    }

    fn read_error(&mut self, file: &str, message: &str, fix: &str) {
        self.diagnostics.push(
            Diagnostic::new(
                Code::ReadError,
                Location {
                    file: file.into(),
                    ..Location::default()
                },
                message.to_string(),
            )
            .with_fix(fix),
        );
    }

    /// The resources and diagnostics collected so far.
    pub fn finish(self) -> ConfigSet {
        ConfigSet {
            resources: self.resources,
            diagnostics: self.diagnostics,
        }
    }
}

/// The parser's first line, without its own `error: line N column M:` prefix (the
/// diagnostic's location already says where).
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default().trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, reason)) if position.contains("column") => reason.to_string(),
        _ => line.to_string(),
    }
}

fn collect_files(
    dir: &Path,
    out: &mut Vec<std::path::PathBuf>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks: ConfigMap mounts link files into `..data`.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !entry.file_type()?.is_symlink() {
                collect_files(&path, out, depth + 1)?;
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks a Kubernetes object name (RFC 1123 subdomain).
pub(crate) fn check_dns_subdomain(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        check_dns_label(label)?;
    }
    Ok(())
}

/// Checks an RFC 1123 label (63 characters of `[a-z0-9-]`, alphanumeric at both ends).
pub(crate) fn check_dns_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > 63 {
        return Err("a label is longer than 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lower-case letters, digits, '-' and '.' are allowed");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

// === decoding ===

/// A decoded resource and the paths of fields its type does not have.
pub(crate) struct Decoded {
    pub(crate) resource: Resource,
    pub(crate) unknown_fields: Vec<String>,
}

/// A value that does not fit the type, at a field path.
pub(crate) struct DecodeError {
    pub(crate) path: String,
    pub(crate) message: String,
}

/// Decodes `value` into `T`, collecting unknown fields and the path of the first error.
pub(crate) fn decode<T: DeserializeOwned>(value: &Value) -> Result<(T, Vec<String>), DecodeError> {
    let mut unknown = Vec::new();
    let result = {
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            let mut s = String::new();
            fmt_ignored(&path, &mut s);
            // The type meta is checked before decoding; `status` is the server's to write.
            if !matches!(s.as_str(), "apiVersion" | "kind" | "status") {
                unknown.push(s);
            }
        };
        let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
        serde_path_to_error::deserialize::<_, T>(de)
    };
    match result {
        Ok(v) => Ok((v, unknown)),
        Err(e) => {
            let mut path = String::new();
            for segment in e.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => push_index(&mut path, *index),
                    serde_path_to_error::Segment::Map { key } => push_key(&mut path, key),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => {}
                }
            }
            Err(DecodeError {
                path,
                message: e.into_inner().to_string(),
            })
        }
    }
}

fn fmt_ignored(path: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            fmt_ignored(parent, out);
            push_index(out, *index);
        }
        Path::Map { parent, key } => {
            fmt_ignored(parent, out);
            push_key(out, key);
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            fmt_ignored(parent, out);
        }
    }
}

#[cfg(test)]
mod tests;
