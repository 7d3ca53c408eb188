//! Shared vocabulary of the translation: which resource a warning is about ([`Cx`]),
//! `exportTo` visibility ([`ExportTo`]), host names (short-name expansion, wildcards) and
//! the checks that keep every emitted model value valid.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::{
    config::ResourceKind,
    model::{Percent, StringMatch},
};

use super::{IndexWarning, Settings};

/// The resource a translation is about: `(kind, namespace, name)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct ResourceRef {
    pub(super) kind: ResourceKind,
    pub(super) namespace: String,
    pub(super) name: String,
}

impl ResourceRef {
    pub(super) fn of(r: &mesh_api::config::Resource) -> Self {
        Self {
            kind: r.kind(),
            namespace: r.namespace().to_owned(),
            name: r.name().to_owned(),
        }
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.kind(), self.namespace, self.name)
    }
}

/// The context of translating one resource: settings, and where warnings go.
pub(super) struct Cx<'a> {
    pub(super) settings: &'a Settings,
    pub(super) origin: &'a ResourceRef,
    warnings: &'a mut Vec<IndexWarning>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(
        settings: &'a Settings,
        origin: &'a ResourceRef,
        warnings: &'a mut Vec<IndexWarning>,
    ) -> Self {
        Self {
            settings,
            origin,
            warnings,
        }
    }

    /// The resource's namespace.
    pub(super) fn namespace(&self) -> &'a str {
        &self.origin.namespace
    }

    /// Records a warning about the resource.
    pub(super) fn warn(&mut self, message: impl Into<String>) {
        push_warning(self.warnings, self.origin, message);
    }

    /// A percentage, clamped into 0-100 (with a warning when it was not).
    pub(super) fn percent(&mut self, what: &str, value: f64) -> Percent {
        Percent::new(value).unwrap_or_else(|_| {
            let clamped = if value > 100.0 { 100.0 } else { 0.0 };
            self.warn(format!(
                "{what}: percentage {value} is outside 0-100; using {clamped}"
            ));
            Percent::new(clamped).unwrap_or(Percent::ZERO)
        })
    }

    /// A duration in the config syntax; `None` (with a warning) when it does not parse.
    pub(super) fn duration(&mut self, what: &str, value: &str) -> Option<std::time::Duration> {
        match mesh_api::duration::parse(value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.warn(format!("{what}: {e}; ignored"));
                None
            }
        }
    }

    /// A port number in 1-65535; `None` (with a warning) otherwise.
    pub(super) fn port(&mut self, what: &str, value: i64) -> Option<u16> {
        match u16::try_from(value) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                self.warn(format!("{what}: port {value} is not in 1-65535; ignored"));
                None
            }
        }
    }
}

pub(super) fn push_warning(
    out: &mut Vec<IndexWarning>,
    origin: &ResourceRef,
    message: impl Into<String>,
) {
    out.push(IndexWarning {
        kind: origin.kind,
        namespace: origin.namespace.clone(),
        name: origin.name.clone(),
        message: message.into(),
    });
}

// === ExportTo ===

/// The namespaces a resource is visible to (`exportTo`): `None` is all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExportTo(Option<BTreeSet<String>>);

impl ExportTo {
    /// Visible everywhere.
    pub(super) const ALL: Self = Self(None);

    /// Parses Istio's `exportTo`: empty or `*` is all namespaces, `.` the resource's own,
    /// `~` none, anything else a namespace name.
    pub(super) fn parse<S: AsRef<str>>(export_to: &[S], own_namespace: &str) -> Self {
        if export_to.is_empty() {
            return Self::ALL;
        }
        let mut set = BTreeSet::new();
        for e in export_to {
            match e.as_ref().trim() {
                "*" => return Self::ALL,
                "." => {
                    set.insert(own_namespace.to_owned());
                }
                "~" | "" => {}
                ns => {
                    set.insert(ns.to_owned());
                }
            }
        }
        Self(Some(set))
    }

    /// Whether a proxy in `namespace` sees the resource.
    pub(super) fn visible_to(&self, namespace: &str) -> bool {
        self.0.as_ref().is_none_or(|set| set.contains(namespace))
    }
}

// === Host names ===

/// A host pattern of a VirtualService or DestinationRule: an exact host or a `*` wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostMatch {
    /// One host.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
    /// `*`.
    Any,
}

impl HostMatch {
    /// The pattern for `host` as written in `namespace`: short names are expanded to FQDNs
    /// (and partly-qualified names to a known service's FQDN, see [`Resolver`]).
    pub(super) fn new(resolver: &Resolver<'_>, host: &str, namespace: &str) -> Self {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host == "*" {
            Self::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            Self::Suffix(suffix.to_owned())
        } else {
            Self::Exact(resolver.resolve(&host, namespace))
        }
    }

    /// Whether `hostname` matches.
    pub(super) fn matches(&self, hostname: &str) -> bool {
        match self {
            Self::Exact(h) => h == hostname,
            Self::Suffix(s) => hostname.len() > s.len() && hostname.ends_with(s.as_str()),
            Self::Any => true,
        }
    }

    /// More specific patterns sort first: exact hosts, then longer suffixes, then `*`.
    pub(super) fn specificity(&self) -> (u8, std::cmp::Reverse<usize>) {
        match self {
            Self::Exact(_) => (0, std::cmp::Reverse(0)),
            Self::Suffix(s) => (1, std::cmp::Reverse(s.len())),
            Self::Any => (2, std::cmp::Reverse(0)),
        }
    }
}

/// Expands host names as written in config to the FQDNs services are known by.
pub(super) struct Resolver<'a> {
    settings: &'a Settings,
    known: &'a BTreeMap<String, Vec<super::services::ServiceRecord>>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        settings: &'a Settings,
        known: &'a BTreeMap<String, Vec<super::services::ServiceRecord>>,
    ) -> Self {
        Self { settings, known }
    }

    /// The FQDN `host` names from `namespace`: `reviews` → `reviews.<ns>.svc.<domain>`;
    /// `reviews.default` and `reviews.default.svc` → the FQDN when that service is known;
    /// anything else lower-cased as is.
    pub(super) fn resolve(&self, host: &str, namespace: &str) -> String {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let domain = &self.settings.cluster_domain;
        if !host.contains('.') && !host.contains('*') {
            return format!("{host}.{namespace}.svc.{domain}");
        }
        if self.known.contains_key(&host) {
            return host;
        }
        for candidate in [format!("{host}.svc.{domain}"), format!("{host}.{domain}")] {
            if self.known.contains_key(&candidate) {
                return candidate;
            }
        }
        host
    }

    /// The service known by this FQDN (the highest-priority definition).
    pub(super) fn service(&self, hostname: &str) -> Option<&'a super::services::ServiceRecord> {
        self.known.get(hostname).and_then(|v| v.first())
    }

    /// Every known FQDN.
    pub(super) fn hostnames(&self) -> impl Iterator<Item = &'a str> {
        self.known.keys().map(String::as_str)
    }
}

// === Checks mirroring the model's validation ===

/// A DNS host name as the model stores it: lower-case labels of `[a-z0-9-_]`, no trailing
/// dot; a leading `*.` (or `*` alone) when `wildcard`.
pub(super) fn valid_hostname(s: &str, wildcard: bool) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let body = match s.strip_prefix('*') {
        Some("") if wildcard => return true,
        Some(rest) if wildcard && rest.starts_with('.') => &rest[1..],
        _ => s,
    };
    body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
    })
}

/// A header name as the model stores it: lower-case token characters (and `:` for
/// pseudo-headers, which may be matched but not set).
pub(super) fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
                | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~' | b':')
        })
}

/// A header value: visible ASCII, spaces and tabs.
pub(super) fn valid_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Whether every `selector` label is on `labels`.
pub(super) fn selects(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A config string match (exactly one of exact/prefix/regex) as the model's; `Err` says
/// why it cannot be translated, `Ok(None)` means none was set.
pub(super) fn string_match(
    m: &mesh_api::config::networking::StringMatch,
) -> Result<Option<StringMatch>, String> {
    match (&m.exact, &m.prefix, &m.regex) {
        (None, None, None) => Ok(None),
        (Some(e), None, None) => Ok(Some(StringMatch::Exact(e.clone()))),
        (None, Some(p), None) => Ok(Some(StringMatch::Prefix(p.clone()))),
        (None, None, Some(r)) => regex(r).map(Some),
        _ => Err("sets more than one of exact, prefix, regex".to_owned()),
    }
}

/// A full-match regex matcher.
pub(super) fn regex(r: &str) -> Result<StringMatch, String> {
    mesh_api::model::Pattern::new(r)
        .map(StringMatch::Regex)
        .map_err(|e| {
            let e = e.to_string();
            let last = e
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("");
            format!("invalid regex {r:?}: {last}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_to() {
        let e = ExportTo::parse::<&str>(&[], "a");
        assert!(e.visible_to("a") && e.visible_to("b"));
        let e = ExportTo::parse(&["."], "a");
        assert!(e.visible_to("a") && !e.visible_to("b"));
        let e = ExportTo::parse(&[".", "b"], "a");
        assert!(e.visible_to("a") && e.visible_to("b") && !e.visible_to("c"));
        let e = ExportTo::parse(&["b", "*"], "a");
        assert!(e.visible_to("c"));
        let e = ExportTo::parse(&["~"], "a");
        assert!(!e.visible_to("a"));
    }

    #[test]
    fn host_checks() {
        assert!(valid_hostname("reviews.default.svc.cluster.local", false));
        assert!(valid_hostname("10.0.0.1", false));
        assert!(!valid_hostname("Reviews", false));
        assert!(!valid_hostname("*.example.com", false));
        assert!(valid_hostname("*.example.com", true));
        assert!(valid_hostname("*", true));
        assert!(!valid_hostname("a..b", false));
        assert!(!valid_hostname("fd00::1", false));
        assert!(valid_header_name("x-user") && !valid_header_name("X-User"));
        assert!(valid_header_value("a b\t") && !valid_header_value("a\nb"));
    }

    #[test]
    fn host_match() {
        let m = HostMatch::Suffix(".example.com".into());
        assert!(m.matches("a.example.com") && !m.matches("example.com"));
        assert!(HostMatch::Any.matches("x"));
        assert!(HostMatch::Exact("a".into()).specificity() < m.specificity());
        assert!(m.specificity() < HostMatch::Any.specificity());
    }
}
