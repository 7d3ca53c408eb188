//! Validation errors of the model: [`FieldError`] names the offending field by its path
//! (`http[2].backends[0].weight`), and [`Invalid`] names the resource it belongs to.
//!
//! The same errors come out of static-config loading ([`crate::model::ProxyConfig`]) and
//! of protobuf conversion ([`crate::proto`]), so a NACK from a proxy reads exactly like a
//! rejected config file.

use std::fmt;

use crate::{
    model::{IpNetError, ResourceKind},
    spiffe,
};

/// Why a field is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// A required field is absent.
    #[error("is required")]
    Missing,
    /// A string or list that must have content is empty.
    #[error("must not be empty")]
    Empty,
    /// A number that must be positive is zero.
    #[error("must not be zero")]
    Zero,
    /// A number is outside its allowed range.
    #[error("{value} is out of range, expected {expected}")]
    OutOfRange {
        /// The offending value.
        value: String,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// A regular expression does not compile.
    #[error("invalid regex: {0}")]
    Regex(String),
    /// A SPIFFE ID does not parse.
    #[error("invalid spiffe id: {0}")]
    SpiffeId(#[from] spiffe::Error),
    /// An IP network does not parse.
    #[error(transparent)]
    IpNet(#[from] IpNetError),
    /// An IP address in protobuf bytes has the wrong length.
    #[error("ip address must be 4 or 16 bytes, got {0}")]
    IpLength(usize),
    /// A protobuf enum has a value this version does not know.
    #[error("unknown enum value {0}")]
    UnknownEnum(i32),
    /// A protobuf duration is negative or out of range.
    #[error("invalid duration: {0}")]
    Duration(String),
    /// A key appears twice where keys must be unique.
    #[error("duplicate {0}")]
    Duplicate(String),
    /// Anything else, described in words.
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(&'static str),
    Index(&'static str, usize),
    Key(&'static str, String),
}

/// An invalid field: where (a path like `http[2].backends[0].weight`) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{reason}", Path(&self.segments))]
pub struct FieldError {
    /// Path segments, innermost first (they are pushed while unwinding).
    segments: Vec<Segment>,
    reason: Reason,
}

struct Path<'a>(&'a [Segment]);

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        for (i, seg) in self.0.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match seg {
                Segment::Field(name) => f.write_str(name)?,
                Segment::Index(name, i) => write!(f, "{name}[{i}]")?,
                Segment::Key(name, k) => write!(f, "{name}[{k}]")?,
            }
        }
        f.write_str(": ")
    }
}

// === impl FieldError ===

impl FieldError {
    /// An error about the value itself (no path yet); callers add the path with
    /// [`FieldError::at`] and friends while unwinding.
    pub fn new(reason: impl Into<Reason>) -> Self {
        Self {
            segments: Vec::new(),
            reason: reason.into(),
        }
    }

    /// An error about field `field`.
    pub fn field(field: &'static str, reason: impl Into<Reason>) -> Self {
        Self::new(reason).at(field)
    }

    /// Prepends field `name` to the path.
    #[must_use]
    pub fn at(mut self, name: &'static str) -> Self {
        self.segments.push(Segment::Field(name));
        self
    }

    /// Prepends list element `name[index]` to the path.
    #[must_use]
    pub fn at_index(mut self, name: &'static str, index: usize) -> Self {
        self.segments.push(Segment::Index(name, index));
        self
    }

    /// Prepends map entry `name[key]` to the path.
    #[must_use]
    pub fn at_key(mut self, name: &'static str, key: impl fmt::Display) -> Self {
        self.segments.push(Segment::Key(name, key.to_string()));
        self
    }

    /// The path of the invalid field, e.g. `http[2].backends[0].weight` (empty when the
    /// error is about the value as a whole).
    pub fn path(&self) -> String {
        let mut p = Path(&self.segments).to_string();
        p.truncate(p.len().saturating_sub(2)); // the trailing ": "
        p
    }

    /// Why it is invalid.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

/// Adds path segments to the error of a `Result<_, FieldError>`; nothing is allocated on
/// success.
pub(crate) trait ResultExt<T> {
    /// See [`FieldError::at`].
    fn at(self, name: &'static str) -> Result<T, FieldError>;
    /// See [`FieldError::at_index`].
    fn at_index(self, name: &'static str, index: usize) -> Result<T, FieldError>;
    /// See [`FieldError::at_key`].
    fn at_key(self, name: &'static str, key: impl fmt::Display) -> Result<T, FieldError>;
}

impl<T> ResultExt<T> for Result<T, FieldError> {
    fn at(self, name: &'static str) -> Result<T, FieldError> {
        self.map_err(|e| e.at(name))
    }

    fn at_index(self, name: &'static str, index: usize) -> Result<T, FieldError> {
        self.map_err(|e| e.at_index(name, index))
    }

    fn at_key(self, name: &'static str, key: impl fmt::Display) -> Result<T, FieldError> {
        self.map_err(|e| e.at_key(name, key))
    }
}

/// An invalid resource: which one, and the field error inside it.
///
/// Displays as `invalid route table "reviews:9080": http[2].backends[0].weight: ...`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// A resource of a known kind failed validation.
    #[error("invalid {kind} {name:?}: {error}")]
    Resource {
        /// What kind of resource.
        kind: ResourceKind,
        /// The resource's name (possibly empty if the name itself is the problem).
        name: String,
        /// What is wrong inside it.
        error: FieldError,
    },
    /// A discovery resource envelope is malformed (no body, wrong kind, name mismatch).
    #[error("invalid discovery resource {name:?}: {error}")]
    Envelope {
        /// The envelope's name.
        name: String,
        /// What is wrong.
        error: FieldError,
    },
    /// A proxy's node description (first discovery request) is invalid.
    #[error("invalid node {id:?}: {error}")]
    Node {
        /// The node id.
        id: String,
        /// What is wrong.
        error: FieldError,
    },
    /// Two resources of one kind share a name in one config.
    #[error("duplicate {kind} {name:?}")]
    Duplicate {
        /// What kind of resource.
        kind: ResourceKind,
        /// The shared name.
        name: String,
    },
}

impl Invalid {
    /// An invalid resource of `kind` named `name`.
    pub fn resource(kind: ResourceKind, name: impl Into<String>, error: FieldError) -> Self {
        Self::Resource {
            kind,
            name: name.into(),
            error,
        }
    }

    /// The field error inside, if there is one.
    pub fn field_error(&self) -> Option<&FieldError> {
        match self {
            Self::Resource { error, .. }
            | Self::Envelope { error, .. }
            | Self::Node { error, .. } => Some(error),
            Self::Duplicate { .. } => None,
        }
    }
}

/// Fails with `Reason::Empty` if `s` is empty.
pub(crate) fn non_empty(s: &str) -> Result<(), FieldError> {
    if s.is_empty() {
        Err(FieldError::new(Reason::Empty))
    } else {
        Ok(())
    }
}

/// Fails with `Reason::Zero` if `n` is zero.
pub(crate) fn non_zero(n: u64) -> Result<(), FieldError> {
    if n == 0 {
        Err(FieldError::new(Reason::Zero))
    } else {
        Ok(())
    }
}

/// Checks a DNS host name as the model stores it: lower-case, no trailing dot or port,
/// labels of `[a-z0-9-_]`; a leading `*.` label (or `*` alone) is allowed when `wildcard`.
pub(crate) fn hostname(s: &str, wildcard: bool) -> Result<(), FieldError> {
    non_empty(s)?;
    if s.len() > 253 {
        return Err(FieldError::new(Reason::Other(format!(
            "host name {s:?} is longer than 253 bytes"
        ))));
    }
    let body = match s.strip_prefix('*') {
        Some("") if wildcard => return Ok(()),
        Some(rest) if wildcard && rest.starts_with('.') => &rest[1..],
        _ => s,
    };
    let ok = body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
    });
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(Reason::Other(format!(
            "invalid host name {s:?}: expected lower-case DNS labels{}",
            if wildcard {
                ", optionally after \"*.\""
            } else {
                ""
            }
        ))))
    }
}

/// Checks an HTTP header name as the model stores it: lower-case token characters.
pub(crate) fn header_name(s: &str) -> Result<(), FieldError> {
    non_empty(s)?;
    let ok = s.bytes().all(|b| {
        matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*'
            | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
            // HTTP/2 pseudo-headers (":authority") may be matched, not set.
            || b == b':'
    });
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(Reason::Other(format!(
            "invalid header name {s:?}: expected lower-case token characters"
        ))))
    }
}

/// Checks an HTTP header value: visible ASCII, spaces and tabs (no CR, LF or NUL).
pub(crate) fn header_value(s: &str) -> Result<(), FieldError> {
    if s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(FieldError::new(Reason::Other(
            "header value must be visible ascii (no control characters)".to_owned(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_outermost_first() {
        let e = FieldError::field("weight", Reason::Zero)
            .at_index("backends", 0)
            .at("forward")
            .at_index("http", 2);
        assert_eq!(e.path(), "http[2].forward.backends[0].weight");
        assert_eq!(
            e.to_string(),
            "http[2].forward.backends[0].weight: must not be zero"
        );
        let bare = FieldError::new(Reason::Empty);
        assert_eq!(bare.path(), "");
        assert_eq!(bare.to_string(), "must not be empty");
        let key = FieldError::new(Reason::Zero).at_key("ports", 9080);
        assert_eq!(key.to_string(), "ports[9080]: must not be zero");
    }

    #[test]
    fn invalid_names_resource_and_field() {
        let e = Invalid::resource(
            ResourceKind::RouteTable,
            "reviews:9080",
            FieldError::field("weight", Reason::Zero)
                .at_index("backends", 0)
                .at_index("http", 2),
        );
        assert_eq!(
            e.to_string(),
            "invalid route table \"reviews:9080\": http[2].backends[0].weight: must not be zero"
        );
    }

    #[test]
    fn hostnames() {
        assert!(hostname("reviews.default.svc.cluster.local", false).is_ok());
        assert!(hostname("a_b-1", false).is_ok());
        assert!(hostname("*.example.com", true).is_ok());
        assert!(hostname("*", true).is_ok());
        for bad in [
            "", "Reviews", "a..b", "a.", ".a", "a:80", "*.x", "*", "a b", "a/b",
        ] {
            assert!(hostname(bad, false).is_err(), "{bad:?}");
        }
        assert!(hostname("*x.com", true).is_err());
        assert!(hostname("a.*.com", true).is_err());
    }

    #[test]
    fn headers() {
        assert!(header_name("x-request-id").is_ok());
        assert!(header_name(":authority").is_ok());
        assert!(header_name("X-Upper").is_err());
        assert!(header_name("a b").is_err());
        assert!(header_value("ok value\t1").is_ok());
        assert!(header_value("bad\r\nInjected: 1").is_err());
    }
}
