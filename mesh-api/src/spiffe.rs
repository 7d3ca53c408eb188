//! SPIFFE identities of mesh workloads.
//!
//! Every workload in the mesh is identified by a SPIFFE ID of exactly one shape,
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`. The CA writes it into the
//! URI SAN of workload certificates, proxies compare peers' certificates against it, and
//! authorization policies match on its scheme-less form (Istio's "principal",
//! `cluster.local/ns/default/sa/reviews`).
//!
//! Because the string ends up in certificates and security decisions, the parser is strict:
//! it accepts only the canonical form (lower-case trust domain; no port, user info, query,
//! fragment, percent-encoding, dot segments, empty segments or control characters), so that
//! two different strings never denote the same identity.

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The URI scheme prefix of every SPIFFE ID.
pub const SCHEME_PREFIX: &str = "spiffe://";

/// The trust domain used when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Longest accepted SPIFFE ID, in bytes (the SPIFFE spec's limit for URI SANs).
pub const MAX_LEN: usize = 2048;

/// Longest accepted trust domain, in bytes (a DNS name).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A validated workload identity, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
///
/// Cloning is cheap (the string is shared). Equality, ordering and hashing are those of the
/// canonical string. Serializes as that string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    uri: Arc<str>,
    /// Byte offset where the trust domain ends (`/ns/` starts).
    td_end: u16,
    /// Byte offset where the service account starts (just after `/sa/`).
    sa_start: u16,
}

/// Why a string is not a valid mesh SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The string does not start with `spiffe://`.
    #[error("spiffe id must start with \"spiffe://\"")]
    Scheme,
    /// The string is longer than [`MAX_LEN`].
    #[error("spiffe id is longer than {MAX_LEN} bytes")]
    TooLong,
    /// The trust domain is empty.
    #[error("trust domain is empty")]
    EmptyTrustDomain,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    /// The authority contains user info (`user@host`).
    #[error("spiffe id must not contain user info ('@')")]
    UserInfo,
    /// The authority contains a port (`host:port`).
    #[error("spiffe id must not contain a port (':')")]
    Port,
    /// The trust domain starts or ends with a dot, or has two in a row.
    #[error("trust domain must not start or end with '.' or contain '..'")]
    TrustDomainDots,
    /// The trust domain contains a character outside `[a-z0-9._-]`.
    #[error(
        "trust domain contains invalid character {0:?}: only lower-case letters, digits, '.', '-' and '_' are allowed"
    )]
    TrustDomainChar(char),
    /// The ID has a query component.
    #[error("spiffe id must not contain a query ('?')")]
    Query,
    /// The ID has a fragment component.
    #[error("spiffe id must not contain a fragment ('#')")]
    Fragment,
    /// The ID contains a percent-encoded octet.
    #[error("spiffe id must not contain percent-encoded characters ('%')")]
    PercentEncoded,
    /// The path is not `/ns/<namespace>/sa/<service-account>`.
    #[error("path must be /ns/<namespace>/sa/<service-account>")]
    Path,
    /// A path segment is empty.
    #[error("path segments must not be empty")]
    EmptySegment,
    /// A path segment is `.` or `..`.
    #[error("path segments must not be '.' or '..'")]
    DotSegment,
    /// A path segment contains a character outside `[A-Za-z0-9._-]`.
    #[error(
        "path segment contains invalid character {0:?}: only letters, digits, '.', '-' and '_' are allowed"
    )]
    SegmentChar(char),
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Builds the identity of service account `sa` in namespace `ns` of trust domain `td`,
    /// validating each part as [`FromStr`] would.
    pub fn new(td: &str, ns: &str, sa: &str) -> Result<Self, Error> {
        // Validate the parts individually first, so that a `/` smuggled into one of them
        // cannot shift segment boundaries.
        check_trust_domain(td)?;
        check_segment(ns)?;
        check_segment(sa)?;
        format!("{SCHEME_PREFIX}{td}/ns/{ns}/sa/{sa}").parse()
    }

    /// The whole ID, `spiffe://td/ns/<ns>/sa/<sa>`.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len()..usize::from(self.td_end)]
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        let start = usize::from(self.td_end) + "/ns/".len();
        let end = usize::from(self.sa_start) - "/sa/".len();
        &self.uri[start..end]
    }

    /// The service account name.
    pub fn service_account(&self) -> &str {
        &self.uri[usize::from(self.sa_start)..]
    }

    /// The ID without its scheme, `td/ns/<ns>/sa/<sa>`: what Istio calls a *principal* and
    /// what `AuthorizationPolicy` `principals` match against.
    pub fn principal(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len()..]
    }
}

impl FromStr for SpiffeId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() > MAX_LEN {
            return Err(Error::TooLong);
        }
        let rest = s.strip_prefix(SCHEME_PREFIX).ok_or(Error::Scheme)?;
        // Reject URI components we never accept before anything else, so that the error
        // names the actual problem rather than an invalid character.
        if s.contains('%') {
            return Err(Error::PercentEncoded);
        }
        if s.contains('?') {
            return Err(Error::Query);
        }
        if s.contains('#') {
            return Err(Error::Fragment);
        }
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(td)?;

        // path = "/ns/<ns>/sa/<sa>"
        let mut segments = path.split('/');
        let leading = segments.next();
        debug_assert!(leading.is_none_or(str::is_empty));
        let parts: Vec<&str> = segments.collect();
        for seg in &parts {
            check_segment(seg)?;
        }
        match parts.as_slice() {
            ["ns", _, "sa", _] => {}
            _ => return Err(Error::Path),
        }
        let td_end = SCHEME_PREFIX.len() + td.len();
        let sa_start = s.len() - parts[3].len();
        Ok(Self {
            uri: Arc::from(s),
            // Both fit: `s.len() <= MAX_LEN < u16::MAX`.
            td_end: u16::try_from(td_end).map_err(|_| Error::TooLong)?,
            sa_start: u16::try_from(sa_start).map_err(|_| Error::TooLong)?,
        })
    }
}

fn check_trust_domain(td: &str) -> Result<(), Error> {
    if td.is_empty() {
        return Err(Error::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(Error::TrustDomainTooLong);
    }
    for c in td.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            '@' => return Err(Error::UserInfo),
            ':' => return Err(Error::Port),
            '%' => return Err(Error::PercentEncoded),
            '?' => return Err(Error::Query),
            '#' => return Err(Error::Fragment),
            c => return Err(Error::TrustDomainChar(c)),
        }
    }
    if td.starts_with('.') || td.ends_with('.') || td.contains("..") {
        return Err(Error::TrustDomainDots);
    }
    Ok(())
}

fn check_segment(seg: &str) -> Result<(), Error> {
    if seg.is_empty() {
        return Err(Error::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(Error::DotSegment);
    }
    for c in seg.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
            '%' => return Err(Error::PercentEncoded),
            '?' => return Err(Error::Query),
            '#' => return Err(Error::Fragment),
            '/' => return Err(Error::Path),
            c => return Err(Error::SegmentChar(c)),
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({:?})", &*self.uri)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.uri
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Error> {
        s.parse()
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.uri)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SpiffeId, Error> {
        s.parse()
    }

    #[test]
    fn parses_canonical_ids() {
        let id = parse("spiffe://cluster.local/ns/default/sa/reviews").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "reviews");
        assert_eq!(id.principal(), "cluster.local/ns/default/sa/reviews");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/reviews"
        );
        assert_eq!(id.as_str(), id.as_ref());

        let id = parse("spiffe://td_1-x.example/ns/kube-system/sa/Default_SA.v2").unwrap();
        assert_eq!(id.trust_domain(), "td_1-x.example");
        assert_eq!(id.namespace(), "kube-system");
        assert_eq!(id.service_account(), "Default_SA.v2");
    }

    #[test]
    fn new_validates_and_round_trips() {
        let id = SpiffeId::new("cluster.local", "ns", "sa").unwrap();
        assert_eq!(id, parse("spiffe://cluster.local/ns/ns/sa/sa").unwrap());
        assert_eq!(id, parse(id.as_str()).unwrap());
        // Parts that would shift the segment layout are rejected, not re-parsed.
        assert_eq!(
            SpiffeId::new("cluster.local", "a/sa/b", "c"),
            Err(Error::Path)
        );
        assert_eq!(
            SpiffeId::new("cluster.local/ns/x", "a", "b"),
            Err(Error::TrustDomainChar('/'))
        );
        assert_eq!(SpiffeId::new("", "a", "b"), Err(Error::EmptyTrustDomain));
        assert_eq!(SpiffeId::new("td", "", "b"), Err(Error::EmptySegment));
        assert_eq!(SpiffeId::new("td", "a", ".."), Err(Error::DotSegment));
    }

    #[test]
    fn rejects_malicious_and_malformed_ids() {
        let cases: &[(&str, Error)] = &[
            ("", Error::Scheme),
            ("cluster.local/ns/a/sa/b", Error::Scheme),
            ("SPIFFE://cluster.local/ns/a/sa/b", Error::Scheme),
            ("spiffe:/cluster.local/ns/a/sa/b", Error::Scheme),
            ("https://cluster.local/ns/a/sa/b", Error::Scheme),
            ("spiffe://", Error::EmptyTrustDomain),
            ("spiffe:///ns/a/sa/b", Error::EmptyTrustDomain),
            (
                "spiffe://Cluster.local/ns/a/sa/b",
                Error::TrustDomainChar('C'),
            ),
            ("spiffe://evil@cluster.local/ns/a/sa/b", Error::UserInfo),
            ("spiffe://cluster.local:443/ns/a/sa/b", Error::Port),
            ("spiffe://cluster.local/ns/a/sa/b?x=1", Error::Query),
            ("spiffe://cluster.local/ns/a/sa/b#frag", Error::Fragment),
            ("spiffe://cluster.local/ns/a/sa/b%00", Error::PercentEncoded),
            (
                "spiffe://cluster.local/ns/%2e%2e/sa/b",
                Error::PercentEncoded,
            ),
            ("spiffe://cluster%2elocal/ns/a/sa/b", Error::PercentEncoded),
            (
                "spiffe://cluster.local/ns/a/sa/b\0",
                Error::SegmentChar('\0'),
            ),
            (
                "spiffe://cluster\0.local/ns/a/sa/b",
                Error::TrustDomainChar('\0'),
            ),
            (
                "spiffe://cluster.local/ns/a b/sa/b",
                Error::SegmentChar(' '),
            ),
            (
                "spiffe://cluster.local/ns/a/sa/b\n",
                Error::SegmentChar('\n'),
            ),
            ("spiffe://cluster.local/ns/ä/sa/b", Error::SegmentChar('ä')),
            ("spiffe://cluster.local", Error::Path),
            ("spiffe://cluster.local/", Error::EmptySegment),
            ("spiffe://cluster.local/ns/a/sa/b/", Error::EmptySegment),
            ("spiffe://cluster.local/ns//sa/b", Error::EmptySegment),
            ("spiffe://cluster.local//ns/a/sa/b", Error::EmptySegment),
            ("spiffe://cluster.local/ns/a/sa/", Error::EmptySegment),
            ("spiffe://cluster.local/ns/../sa/b", Error::DotSegment),
            ("spiffe://cluster.local/ns/a/sa/.", Error::DotSegment),
            ("spiffe://cluster.local/ns/a/sa/b/extra", Error::Path),
            ("spiffe://cluster.local/ns/a", Error::Path),
            ("spiffe://cluster.local/sa/b/ns/a", Error::Path),
            ("spiffe://cluster.local/NS/a/sa/b", Error::Path),
            ("spiffe://cluster.local/ns/a/serviceaccount/b", Error::Path),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_overlong_ids() {
        let long = format!("spiffe://cluster.local/ns/a/sa/{}", "b".repeat(MAX_LEN));
        assert_eq!(parse(&long), Err(Error::TooLong));
        let td = format!(
            "spiffe://{}/ns/a/sa/b",
            "a".repeat(MAX_TRUST_DOMAIN_LEN + 1)
        );
        assert_eq!(parse(&td), Err(Error::TrustDomainTooLong));
        // Just under the limits is fine.
        let sa = "b".repeat(MAX_LEN - "spiffe://td/ns/a/sa/".len());
        let id = SpiffeId::new("td", "a", &sa).unwrap();
        assert_eq!(id.service_account(), sa);
    }

    #[test]
    fn errors_are_lower_case_and_helpful() {
        let err = parse("spiffe://Cluster.local/ns/a/sa/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "trust domain contains invalid character 'C': only lower-case letters, digits, '.', '-' and '_' are allowed"
        );
    }

    #[test]
    fn serde_as_string() {
        let id = parse("spiffe://cluster.local/ns/default/sa/reviews").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://cluster.local/ns/default/sa/reviews\"");
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        let err = serde_json::from_str::<SpiffeId>("\"spiffe://x/ns/a\"").unwrap_err();
        assert!(err.to_string().contains("path must be"), "{err}");
    }

    #[test]
    fn ordering_and_equality_follow_the_string() {
        let a = parse("spiffe://td/ns/a/sa/x").unwrap();
        let b = parse("spiffe://td/ns/b/sa/x").unwrap();
        assert!(a < b);
        assert_ne!(a, b);
        assert_eq!(a.clone(), a);
    }
}
