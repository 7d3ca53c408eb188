//! String matchers shared by routing and authorization: [`StringMatch`] (with the anchored
//! regex [`Pattern`]) for HTTP route matches, and [`Glob`] for Istio-style `*` wildcards in
//! authorization policies.
//!
//! All matchers are compiled when the config is built, so matching a request allocates
//! nothing.

use std::{fmt, hash, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Upper bound on the compiled size of one [`Pattern`], against pathological configs.
pub const MAX_PATTERN_SIZE: usize = 1 << 20;

/// A validated regular expression with full-match semantics (as Istio's and Envoy's
/// `regex` matches: `^(?:...)$`, RE2 syntax).
///
/// Equality, hashing and (de)serialization use the source string.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

// === impl Pattern ===

impl Pattern {
    /// Compiles `source`, anchored at both ends.
    pub fn new(source: impl Into<String>) -> Result<Self, regex::Error> {
        let source = source.into();
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(MAX_PATTERN_SIZE)
            .build()?;
        Ok(Self { source, regex })
    }

    /// The expression as written (unanchored).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled, anchored regex.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl hash::Hash for Pattern {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Pattern {
    type Err = regex::Error;

    fn from_str(s: &str) -> Result<Self, regex::Error> {
        Self::new(s)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// How a string (a path, a header value, a method...) is matched. Serialized as Istio's
/// `StringMatch`: `{exact: ...}`, `{prefix: ...}` or `{regex: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The whole string equals this.
    Exact(String),
    /// The string starts with this.
    Prefix(String),
    /// The whole string matches this regex.
    Regex(Pattern),
}

impl StringMatch {
    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Self::Exact(v) => s == v,
            Self::Prefix(p) => s.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(s),
        }
    }
}

/// An Istio authorization value: exact, `prefix*`, `*suffix`, or `*` (any non-empty value).
///
/// Used for principals, namespaces, hosts and paths. Serialized as the string form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Glob {
    /// `*`: any non-empty value (presence).
    Any,
    /// No wildcard: the whole value.
    Exact(String),
    /// `abc*`: values starting with `abc`.
    Prefix(String),
    /// `*abc`: values ending with `abc`.
    Suffix(String),
}

/// A glob with `*` anywhere but at one end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {0:?}: '*' is only allowed alone, at the start or at the end")]
pub struct GlobError(pub String);

// === impl Glob ===

impl Glob {
    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Self::Any => !s.is_empty(),
            Self::Exact(v) => s == v,
            Self::Prefix(p) => s.starts_with(p.as_str()),
            Self::Suffix(x) => s.ends_with(x.as_str()),
        }
    }

    /// Whether `s` matches, ignoring ASCII case (for host names).
    pub fn matches_ignore_ascii_case(&self, s: &str) -> bool {
        fn starts(s: &str, p: &str) -> bool {
            s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        }
        fn ends(s: &str, x: &str) -> bool {
            s.len() >= x.len()
                && s.as_bytes()[s.len() - x.len()..].eq_ignore_ascii_case(x.as_bytes())
        }
        match self {
            Self::Any => !s.is_empty(),
            Self::Exact(v) => s.eq_ignore_ascii_case(v),
            Self::Prefix(p) => starts(s, p),
            Self::Suffix(x) => ends(s, x),
        }
    }
}

impl FromStr for Glob {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<Self, GlobError> {
        if s == "*" {
            return Ok(Self::Any);
        }
        let (pat, glob): (&str, fn(String) -> Self) = if let Some(p) = s.strip_suffix('*') {
            (p, Self::Prefix)
        } else if let Some(x) = s.strip_prefix('*') {
            (x, Self::Suffix)
        } else {
            (s, Self::Exact)
        };
        if pat.contains('*') {
            return Err(GlobError(s.to_owned()));
        }
        Ok(glob(pat.to_owned()))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(v) => f.write_str(v),
            Self::Prefix(p) => write!(f, "{p}*"),
            Self::Suffix(x) => write!(f, "*{x}"),
        }
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_anchored() {
        let p = Pattern::new("/api/v[0-9]+").unwrap();
        assert!(p.is_match("/api/v1"));
        assert!(!p.is_match("/api/v1/users"));
        assert!(!p.is_match("x/api/v1"));
        // Alternation stays inside the anchors.
        let p = Pattern::new("a|b").unwrap();
        assert!(p.is_match("a"));
        assert!(!p.is_match("ab"));
    }

    #[test]
    fn pattern_equality_and_serde_use_source() {
        let a = Pattern::new("a+").unwrap();
        assert_eq!(a, Pattern::new("a+").unwrap());
        assert_ne!(a, Pattern::new("a{1,}").unwrap());
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"a+\"");
        assert_eq!(serde_json::from_str::<Pattern>("\"a+\"").unwrap(), a);
        assert!(serde_json::from_str::<Pattern>("\"(\"").is_err());
    }

    #[test]
    fn pattern_rejects_huge_programs() {
        assert!(Pattern::new("(((a{100}){100}){100})").is_err());
    }

    #[test]
    fn string_match() {
        let json = r#"[{"exact":"/a"},{"prefix":"/b"},{"regex":"/c.*"}]"#;
        let ms: Vec<StringMatch> = serde_json::from_str(json).unwrap();
        assert!(ms[0].matches("/a") && !ms[0].matches("/ab"));
        assert!(ms[1].matches("/bc") && !ms[1].matches("/a"));
        assert!(ms[2].matches("/cde") && !ms[2].matches("x/c"));
        assert_eq!(serde_json::to_string(&ms).unwrap(), json);
        assert!(serde_json::from_str::<StringMatch>(r#"{"suffix":"x"}"#).is_err());
    }

    #[test]
    fn glob() {
        let g = |s: &str| s.parse::<Glob>().unwrap();
        assert_eq!(g("*"), Glob::Any);
        assert!(g("*").matches("x") && !g("*").matches(""));
        assert!(g("/admin*").matches("/admin/x") && !g("/admin*").matches("/x"));
        assert!(g("*.example.com").matches("a.example.com"));
        assert!(!g("*.example.com").matches("example.com"));
        assert!(g("*.Example.com").matches_ignore_ascii_case("A.EXAMPLE.COM"));
        assert!(g("Host").matches_ignore_ascii_case("hOST"));
        assert!(g("ab*").matches_ignore_ascii_case("ABc"));
        assert!(g("exact").matches("exact") && !g("exact").matches("exactly"));
        for s in ["a*b", "**", "*a*"] {
            assert_eq!(s.parse::<Glob>(), Err(GlobError(s.to_owned())), "{s}");
        }
        for s in ["*", "a*", "*a", "a"] {
            assert_eq!(g(s).to_string(), s);
        }
    }
}
