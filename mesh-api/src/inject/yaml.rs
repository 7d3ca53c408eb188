//! Injection over a multi-document YAML stream, for `meshctl inject` (Istio's
//! `kube-inject`).
//!
//! The stream is split at its `---` document markers. Each document is read with
//! serde-saphyr (default budgets, duplicate keys rejected); the pod templates of Pods,
//! Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and
//! CronJobs (`spec.jobTemplate.spec.template`), also as items of a `v1` `List`, are
//! injected with [`inject_template`]/[`inject_pod`]. Only documents that change are
//! re-serialized (as YAML that quotes every string a YAML 1.1 reader such as kubectl's
//! could take for a number or a boolean); every other document — Services, ConfigMaps,
//! unknown kinds, skipped workloads — is copied byte for byte, comments included. So the
//! output of an injection, injected again, is the same text.
//!
//! The pod template is decoded strictly as the Kubernetes 1.32 API: a field the Pod API
//! does not have would be dropped by the round trip through the typed objects, so it is an
//! error naming its path (a typo, or a field newer than the API this injector knows),
//! never a silent loss. The rest of a workload (its `spec.selector`, `strategy`, unknown
//! fields, …) is kept as written.

use serde_json::Value;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};

use super::{Context, InjectError, Outcome, Skip, inject_pod, inject_template};
use crate::config::load::{MAX_FILE_BYTES, decode, push_index, push_key};

/// The result of [`inject_yaml`].
#[derive(Debug, Clone, PartialEq)]
pub struct YamlOutput {
    /// The stream with every injectable workload injected, documents in input order.
    pub yaml: String,
    /// What happened to each pod template found (not to other documents).
    pub reports: Vec<DocumentReport>,
}

impl YamlOutput {
    /// How many pod templates were injected.
    pub fn injected(&self) -> usize {
        self.reports
            .iter()
            .filter(|r| matches!(r.result, DocumentResult::Injected { .. }))
            .count()
    }
}

/// What happened to one workload of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentReport {
    /// The document's number, from 1 (empty documents are not counted).
    pub document: usize,
    /// The line its text starts on, from 1.
    pub line: usize,
    /// `Kind namespace/name` (`Kind name` without a namespace), prefixed with `items[i] ` for
    /// the items of a `List`.
    pub resource: String,
    /// Injected or skipped.
    pub result: DocumentResult,
}

/// Whether a workload was injected.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentResult {
    /// Injected, with the [`Outcome::Injected`] warnings.
    Injected {
        /// Caveats, one sentence each.
        warnings: Vec<String>,
    },
    /// Left unchanged.
    Skipped(Skip),
}

/// Why a stream could not be injected. Messages name the document (and, from 1, the line
/// it starts on) and the resource; the caller adds the file name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// The input exceeds [`MAX_FILE_BYTES`].
    #[error("larger than {} MiB; split it into several files", MAX_FILE_BYTES >> 20)]
    TooLarge,
    /// A document is not valid YAML.
    #[error("document {document} (line {line}, column {column}): invalid YAML: {message}")]
    Syntax {
        /// The document's number.
        document: usize,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1 (0 when unknown).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A document or pod template does not have the shape of its kind.
    #[error("document {document} ({resource}, line {line}): {path}: {message}")]
    Invalid {
        /// The document's number.
        document: usize,
        /// The line the document starts on.
        line: usize,
        /// `Kind namespace/name`.
        resource: String,
        /// The field path (`spec.template.spec.containers[0].ports`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The pod template cannot be injected.
    #[error("document {document} ({resource}, line {line}): {source}")]
    Inject {
        /// The document's number.
        document: usize,
        /// The line the document starts on.
        line: usize,
        /// `Kind namespace/name`.
        resource: String,
        /// Why.
        source: InjectError,
    },
}

/// Injects every workload of a multi-document YAML (or JSON) stream; see the module
/// documentation. `ctx.namespace` is the namespace of objects that do not name one.
pub fn inject_yaml(text: &str, ctx: &Context) -> Result<YamlOutput, YamlError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(YamlError::TooLarge);
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut reports = Vec::new();
    let mut document = 0;
    for chunk in split(text) {
        let source = &text[chunk.start..chunk.end];
        let value = match serde_saphyr::from_multiple::<Value>(source) {
            Ok(docs) => docs.into_iter().find(|v| !v.is_null()),
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map_or((1, 0), |l| (l.line() as usize, l.column() as usize));
                return Err(YamlError::Syntax {
                    document: document + 1,
                    line: chunk.line + line.saturating_sub(1),
                    column,
                    message: syntax_message(&e.to_string()),
                });
            }
        };
        let Some(mut value) = value else {
            // Empty (or comments only): copied as it is, not counted.
            out.push_str(source);
            continue;
        };
        document += 1;
        let mut doc = Doc {
            document,
            line: chunk.line + chunk.leading_blank_lines,
            ctx,
            reports: &mut reports,
        };
        if doc.inject_object(&mut value, "")? {
            // The marker and the comments above the content stay; the rest is rewritten.
            if chunk.content_on_marker {
                out.push_str("---\n");
            } else {
                out.extend(source.split_inclusive('\n').take(chunk.leading_blank_lines));
            }
            let yaml = serde_saphyr::to_string(&value).map_err(|e| YamlError::Invalid {
                document,
                line: doc.line,
                resource: resource_name(&value),
                path: String::new(),
                message: format!("cannot write the injected YAML: {e}"),
            })?;
            out.push_str(&yaml);
            if !yaml.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(source);
        }
    }
    Ok(YamlOutput { yaml: out, reports })
}

/// One document's text: `start..end` of the input, including its `---` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    start: usize,
    end: usize,
    /// The line (from 1) the chunk starts on.
    line: usize,
    /// Blank and comment lines (and the marker) before the content.
    leading_blank_lines: usize,
    /// Whether the content starts on the `---` line (`--- {a: 1}`).
    content_on_marker: bool,
}

/// Whether a line is a document start marker: `---` at column 0, alone or followed by a
/// blank (`--- # comment`, `--- {a: 1}`).
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.chars().next().is_none_or(char::is_whitespace))
}

/// Splits a stream into its documents (a `---` inside a block scalar at column 0 would end
/// the document in YAML too, so the split agrees with the parser).
fn split(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        start: 0,
        end: 0,
        line: 1,
        leading_blank_lines: 0,
        content_on_marker: false,
    };
    let mut content_seen = false;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line) {
            if offset > 0 {
                current.end = offset;
                chunks.push(current);
            }
            // Content on the marker line (`--- {a: 1}`) starts the document there.
            let rest = line[3..].trim();
            content_seen = !rest.is_empty() && !rest.starts_with('#');
            current = Chunk {
                start: offset,
                end: offset,
                line: i + 1,
                leading_blank_lines: usize::from(!content_seen),
                content_on_marker: content_seen,
            };
        } else if !content_seen {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                current.leading_blank_lines += 1;
            } else {
                content_seen = true;
            }
        }
        offset += line.len();
    }
    current.end = text.len();
    if current.end > current.start || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The parser's message without its location (given relative to the document; the error
/// gives it for the stream) and without hints meant for programmers.
fn syntax_message(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") && head.contains(" column ") => rest,
        _ => first,
    };
    first.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
}

/// `Kind namespace/name` of an object, or what of it there is.
fn resource_name(value: &Value) -> String {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<no kind>");
    let meta = value.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let name = field("name")
        .map(str::to_owned)
        .or_else(|| field("generateName").map(|g| format!("{g}*")))
        .unwrap_or_else(|| "<no name>".to_owned());
    match field("namespace") {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Where a kind keeps its pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    /// The object is a Pod.
    Pod,
    /// A `PodTemplateSpec` at this path.
    At(&'static [&'static str]),
}

fn template_of(api_version: &str, kind: &str) -> Option<Template> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    const SPEC_TEMPLATE: &[&str] = &["spec", "template"];
    match (group, kind) {
        ("", "Pod") => Some(Template::Pod),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(Template::At(SPEC_TEMPLATE)),
        ("batch", "CronJob") => Some(Template::At(&["spec", "jobTemplate", "spec", "template"])),
        _ => None,
    }
}

/// One document being injected.
struct Doc<'a> {
    document: usize,
    line: usize,
    ctx: &'a Context,
    reports: &'a mut Vec<DocumentReport>,
}

impl Doc<'_> {
    fn invalid(&self, value: &Value, path: String, message: impl Into<String>) -> YamlError {
        YamlError::Invalid {
            document: self.document,
            line: self.line,
            resource: resource_name(value),
            path: if path.is_empty() {
                "<root>".to_owned()
            } else {
                path
            },
            message: message.into(),
        }
    }

    /// Injects an object (a document, or an item of a `List` at `prefix`); returns whether
    /// it changed.
    fn inject_object(&mut self, value: &mut Value, prefix: &str) -> Result<bool, YamlError> {
        let Some(obj) = value.as_object() else {
            return Err(self.invalid(
                value,
                prefix.to_owned(),
                "not a mapping: each document must be a Kubernetes object with apiVersion \
                 and kind",
            ));
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if api_version == "v1" && kind == "List" {
            let mut changed = false;
            let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) else {
                return Ok(false);
            };
            for (i, item) in items.iter_mut().enumerate() {
                let mut path = prefix.to_owned();
                push_key(&mut path, "items");
                push_index(&mut path, i);
                changed |= self.inject_object(item, &path)?;
            }
            return Ok(changed);
        }
        let Some(template) = template_of(&api_version, &kind) else {
            return Ok(false);
        };
        let resource = resource_name(value);
        let resource = if prefix.is_empty() {
            resource
        } else {
            format!("{prefix} {resource}")
        };
        let mut ctx = self.ctx.clone();
        if let Some(ns) = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
        {
            ns.clone_into(&mut ctx.namespace);
        }
        let full_path = |rel: &str| {
            let mut p = prefix.to_owned();
            if !p.is_empty() && !rel.is_empty() && !rel.starts_with('[') {
                p.push('.');
            }
            p.push_str(rel);
            p
        };
        let result = match template {
            Template::Pod => {
                let (pod, unknown) = decode::<Pod>(value)
                    .map_err(|e| self.invalid(value, full_path(&e.path), e.message))?;
                self.check_known(value, &unknown, &full_path)?;
                match inject_pod(&pod, &ctx).map_err(|e| self.inject_error(&resource, e))? {
                    Outcome::Injected { pod, warnings } => {
                        *value = to_value(&*pod);
                        DocumentResult::Injected { warnings }
                    }
                    Outcome::Skipped(skip) => DocumentResult::Skipped(skip),
                }
            }
            Template::At(path) => {
                let mut rel = String::new();
                let mut slot = Some(&*value);
                for key in path {
                    push_key(&mut rel, key);
                    slot = slot.and_then(|v| v.get(key));
                }
                let Some(slot) = slot else {
                    return Err(self.invalid(value, full_path(&rel), "missing: no pod template"));
                };
                let (template, unknown) = decode::<PodTemplateSpec>(slot).map_err(|e| {
                    let mut p = rel.clone();
                    if !e.path.is_empty() && !e.path.starts_with('[') {
                        p.push('.');
                    }
                    p.push_str(&e.path);
                    self.invalid(value, full_path(&p), e.message)
                })?;
                let unknown: Vec<String> = unknown
                    .into_iter()
                    .map(|u| {
                        if u.starts_with('[') {
                            format!("{rel}{u}")
                        } else {
                            format!("{rel}.{u}")
                        }
                    })
                    .collect();
                self.check_known(value, &unknown, &full_path)?;
                match inject_template(&template, &ctx)
                    .map_err(|e| self.inject_error(&resource, e))?
                {
                    Outcome::Injected { pod, warnings } => {
                        let mut slot = &mut *value;
                        for key in path {
                            slot = slot.get_mut(key).expect("the path was read above");
                        }
                        *slot = to_value(&*pod);
                        DocumentResult::Injected { warnings }
                    }
                    Outcome::Skipped(skip) => DocumentResult::Skipped(skip),
                }
            }
        };
        let changed = matches!(result, DocumentResult::Injected { .. });
        self.reports.push(DocumentReport {
            document: self.document,
            line: self.line,
            resource,
            result,
        });
        Ok(changed)
    }

    fn check_known(
        &self,
        value: &Value,
        unknown: &[String],
        full_path: &dyn Fn(&str) -> String,
    ) -> Result<(), YamlError> {
        match unknown.first() {
            None => Ok(()),
            Some(path) => Err(self.invalid(
                value,
                full_path(path),
                "unknown field: injection reads pods as the Kubernetes 1.32 API and would \
                 drop it; fix its spelling, or remove it if it is from a newer Kubernetes",
            )),
        }
    }

    fn inject_error(&self, resource: &str, source: InjectError) -> YamlError {
        YamlError::Inject {
            document: self.document,
            line: self.line,
            resource: resource.to_owned(),
            source,
        }
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("Kubernetes objects serialize to JSON")
}
