//! Coded diagnostics about config: what is wrong, exactly where, and how to fix it.
//!
//! Every problem the loader or the validator finds becomes a [`Diagnostic`] with a stable
//! [`Code`] (`MSH0101`), a severity, a [`Location`] (file, document, line and column, the
//! resource, the field path) and a fix. `meshctl analyze`, the control plane's file watcher
//! and the validating webhook all print these, so a user sees the same message everywhere.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config is rejected; the control plane keeps the last good state.
    Error,
    /// The config is accepted but probably not what was meant.
    Warning,
    /// Worth knowing.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $severity:ident; )*) => {
        /// The stable identifier of a kind of problem. Codes never change meaning; a
        /// retired code is not reused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[$doc])* $name, )*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The printed form, e.g. `MSH0101`.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$name => $code, )* }
            }

            /// The severity diagnostics with this code have.
            pub fn severity(self) -> Severity {
                match self { $( Code::$name => Severity::$severity, )* }
            }
        }
    };
}

codes! {
    /// A file or directory could not be read.
    ReadError = "MSH0001", Error;
    /// The text is not valid YAML (or exceeds the parser's safety budget).
    YamlSyntax = "MSH0002", Error;
    /// A document lacks `apiVersion` or `kind`, or is not a mapping.
    MissingTypeMeta = "MSH0003", Error;
    /// The `apiVersion`/`kind` pair is not one the mesh reads.
    UnknownKind = "MSH0004", Error;
    /// A field has a value of the wrong type or an unknown enum value.
    InvalidValue = "MSH0005", Error;
    /// A field the schema does not have (often a typo or a wrong indentation level).
    UnknownField = "MSH0006", Error;
    /// `metadata.name` is missing or not a valid name.
    InvalidName = "MSH0007", Error;
    /// The same resource (kind, namespace, name) is defined twice.
    DuplicateResource = "MSH0008", Error;
    /// A document that is not mesh config (a Deployment, a ConfigMap) was skipped.
    Ignored = "MSH0009", Info;
    /// A route's destination weights do not sum to 100.
    WeightSum = "MSH0101", Error;
    /// A weight is outside 0-100.
    WeightRange = "MSH0102", Error;
    /// A route refers to a subset no DestinationRule for that host defines.
    UndefinedSubset = "MSH0103", Error;
    /// A regular expression does not compile.
    InvalidRegex = "MSH0104", Error;
    /// A duration cannot be parsed.
    InvalidDuration = "MSH0105", Error;
    /// A name (subset, port, route) is used twice where it must be unique.
    DuplicateName = "MSH0106", Error;
    /// Two resources claim the same host and the result depends on ordering.
    ConflictingHosts = "MSH0107", Warning;
    /// A port number is 0, above 65535, or repeated.
    InvalidPort = "MSH0108", Error;
    /// A string match has none, or more than one, of `exact`, `prefix`, `regex`.
    InvalidStringMatch = "MSH0109", Error;
    /// A percentage is outside 0-100.
    InvalidPercentage = "MSH0110", Error;
    /// A host name is empty or malformed.
    InvalidHost = "MSH0111", Error;
    /// A `retryOn` condition is unknown.
    InvalidRetryOn = "MSH0112", Error;
    /// An HTTP or gRPC status is not valid.
    InvalidStatus = "MSH0113", Error;
    /// An IP address or CIDR is malformed.
    InvalidAddress = "MSH0114", Error;
    /// An HTTP route has no action, or more than one.
    InvalidRouteAction = "MSH0115", Error;
    /// A protocol name is unknown, or TLS settings are missing or contradictory.
    InvalidProtocol = "MSH0116", Error;
    /// A label key or selector is malformed.
    InvalidLabel = "MSH0117", Error;
    /// A rule that can never match, or a setting that has no effect.
    Ineffective = "MSH0118", Warning;
    /// A principal is malformed (e.g. written with a `spiffe://` prefix).
    InvalidPrincipal = "MSH0201", Error;
    /// An authorization condition key is unknown.
    InvalidConditionKey = "MSH0202", Error;
    /// A mutual-TLS setting is contradictory.
    InvalidMtls = "MSH0203", Error;
    /// A principal no peer can have: not `<trust domain>/ns/<namespace>/sa/<service
    /// account>` (e.g. a bare service account, or `namespace/name`).
    PrincipalShape = "MSH0204", Warning;
    /// A principal in a trust domain other than the mesh's: no peer certificate carries it.
    ForeignTrustDomain = "MSH0205", Warning;
    /// A namespace with a `/` (often a principal pasted into `namespaces`): never matches.
    NamespaceShape = "MSH0206", Warning;
    /// An authorization host written with a port: hosts are compared without one.
    HostWithPort = "MSH0207", Warning;
    /// An authorization path with a query or fragment: paths are compared without them.
    PathWithQuery = "MSH0208", Warning;
    /// A CIDR with bits set after its prefix (`10.0.0.1/8` means `10.0.0.0/8`).
    CidrHostBits = "MSH0209", Warning;
    /// An ALLOW source that only excludes identities, so it matches plaintext requests too.
    PlaintextAllowed = "MSH0210", Warning;
    /// An authorization value the control plane cannot translate (empty, or `*` in the
    /// middle): the rule fails closed.
    InvalidAuthzValue = "MSH0211", Error;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The file (or `<stdin>`), as given.
    #[serde(serialize_with = "serialize_str")]
    pub file: Arc<str>,
    /// The YAML document in the file, counting from 1; 0 when the problem is the file itself.
    pub document: usize,
    /// The line, counting from 1; 0 when unknown.
    pub line: u64,
    /// The column, counting from 1; 0 when unknown.
    pub column: u64,
    /// The resource, as `Kind namespace/name`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The field path, as `spec.http[0].route[1].weight`; empty for the whole document.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

fn serialize_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if self.document > 0 {
            write!(f, " (document {}", self.document)?;
            if let Some(resource) = &self.resource {
                write!(f, ", {resource}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// One problem found in config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// What kind of problem.
    pub code: Code,
    /// How bad it is.
    pub severity: Severity,
    /// Where it is.
    pub location: Location,
    /// What is wrong, in lower case, without the location.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's severity.
    pub fn new(code: Code, location: Location, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.severity(),
            location,
            message: message.into(),
            fix: None,
        }
    }

    /// Adds how to fix it.
    #[must_use]
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Whether this diagnostic rejects the config.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `MSH0101 error: file.yaml:12:9 (document 2, VirtualService default/reviews): spec.http[0]: …`
/// followed by an indented `fix:` line.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.severity, self.location)?;
        if self.location.path.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.location.path, self.message)?;
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n    fix: {fix}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.starts_with("MSH") && s.len() == 7, "{s}");
            assert!(s[3..].bytes().all(|b| b.is_ascii_digit()), "{s}");
        }
    }

    #[test]
    fn display_names_location_path_and_fix() {
        let d = Diagnostic::new(
            Code::WeightSum,
            Location {
                file: "vs.yaml".into(),
                document: 2,
                line: 12,
                column: 9,
                resource: Some("VirtualService default/reviews".into()),
                path: "spec.http[0].route".into(),
            },
            "weights sum to 95, not 100",
        )
        .with_fix("make the weights add up to 100");
        assert_eq!(
            d.to_string(),
            "MSH0101 error: vs.yaml:12:9 (document 2, VirtualService default/reviews): \
             spec.http[0].route: weights sum to 95, not 100\n    fix: make the weights add up to 100"
        );
    }
}
