//! Canonical request paths and hosts: the one canonicaliser that both routing
//! ([`crate::outbound::route`]) and authorization ([`crate::authz`]) see requests through.
//!
//! A request must never be routed as one path and authorized as another (the classic
//! `/public/..%2fadmin` bypass), so the proxy canonicalises the request target and the
//! `Host`/`:authority` once, at the edge, rejects what it cannot canonicalise with a 400, and
//! hands the *same* canonical strings to the router, to the authorizer and upstream. The
//! canonical path is what the application receives: it is a fixed point of [`path`], so an
//! application that normalises again sees nothing left to change.
//!
//! [`path`] decodes percent-encoded unreserved characters, removes dot segments and empty
//! segments, and rejects what is ambiguous between implementations (encoded `/` and `\`,
//! backslashes, control characters). [`host`] strips the port and one trailing dot and
//! lower-cases. Both are pure and allocate only when the input is not already canonical,
//! which is rare for real clients.
//!
//! Path parameters (`;`) are kept as ordinary characters, as in Envoy: a DENY policy on
//! `/admin` does not match `/admin;x`, which a Java backend may serve as `/admin`. Write such
//! DENY paths as prefixes (`/admin*`), or prefer ALLOW policies.

use std::{borrow::Cow, fmt, net::Ipv6Addr};

/// A canonical request target: the path, and the query as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    /// The canonical path: starts with `/`, no empty, `.` or `..` segments (a trailing `/`
    /// is kept), percent-encoded unreserved characters decoded and other percent-encodings
    /// upper-cased. Borrowed from the input when it was already canonical.
    pub path: Cow<'a, str>,
    /// What follows the first `?`, without the `?`, untouched. `None` when there is no
    /// `?`; `Some("")` for a bare `?`.
    pub query: Option<&'a str>,
}

/// Why a request target has no canonical path. The messages are fit for a 400 response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (an empty, asterisk- or absolute-form target).
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// The target contains a `#`: clients never send fragments.
    #[error("a fragment ('#') in the request target is not allowed")]
    Fragment,
    /// The target contains a control character (0x00–0x1F, 0x7F).
    #[error("control character 0x{0:02X} in the request target is not allowed")]
    ControlChar(u8),
    /// The target contains a space.
    #[error("a space in the request target is not allowed; encode it as %20")]
    Space,
    /// The path contains a byte outside ASCII.
    #[error("non-ASCII byte 0x{0:02X} in the path is not allowed; percent-encode it")]
    NonAscii(u8),
    /// The path contains a literal backslash.
    #[error("a backslash ('\\') in the path is not allowed")]
    Backslash,
    /// The path contains `%2F`: an encoded `/` that implementations split differently.
    #[error("encoded '/' (%2F) in the path is not allowed")]
    EncodedSlash,
    /// The path contains `%5C`: an encoded `\` that some implementations treat as `/`.
    #[error("encoded '\\' (%5C) in the path is not allowed")]
    EncodedBackslash,
    /// The path contains a percent-encoded control character, e.g. `%00`.
    #[error("encoded control character (%{0:02X}) in the path is not allowed")]
    EncodedControlChar(u8),
    /// A `.` or `..` segment with parameters (`/a/..;x/b`): Tomcat and Spring strip the
    /// parameters and resolve the `..`, everything else keeps the segment.
    #[error("a '.' or '..' segment with parameters (like '..;') in the path is not allowed")]
    DotSegmentParams,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path: '%' must be followed by two hex digits")]
    MalformedPercent,
}

/// Why a `Host`/`:authority` value has no canonical host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Nothing left once the port and trailing dot are stripped.
    #[error("the host is empty")]
    Empty,
    /// The authority has user info (`user@host`).
    #[error("user info ('@') in the host is not allowed")]
    UserInfo,
    /// A character that is not valid in a host name (only letters, digits, '.', '-' and
    /// '_'; IPv6 addresses in brackets).
    #[error(
        "invalid character {0:?} in the host: only letters, digits, '.', '-' and '_' are allowed"
    )]
    InvalidChar(char),
    /// A name with an empty label: a leading dot, `..`, or two trailing dots.
    #[error("empty label in the host name (a leading '.', '..' or a trailing '..')")]
    EmptyLabel,
    /// The port is not a number from 0 to 65535.
    #[error("invalid port in the host: expected a number up to 65535")]
    InvalidPort,
    /// A bracketed IPv6 literal that does not parse (or has no closing bracket).
    #[error("invalid IPv6 address in the host: expected e.g. [2001:db8::1]:8080")]
    InvalidIpv6,
}

/// Canonicalises `target`, a request's path-and-query as received (origin form, e.g.
/// `http::Uri::path_and_query()`).
///
/// In order:
///
/// 1. `#` anywhere, control characters (0x00–0x1F, 0x7F) or a space anywhere are errors; the
///    query starts at the first `?` and is returned untouched.
/// 2. The path must start with `/`; a literal `\` or a non-ASCII byte is an error.
/// 3. Percent-encodings: `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is
///    decoded; `%2F` (`/`), `%5C` (`\`) and encoded control characters are errors; any other
///    `%XX` is kept with upper-case hex; a `%` without two hex digits is an error.
/// 4. Segments, after decoding (so `%2e%2e` is `..`): empty segments are dropped (`//a///b`
///    is `/a/b`), `.` segments are dropped, and `..` drops the previous segment (at the root
///    it stays at the root). Empty segments are dropped *before* `..` applies, so `/a//../b`
///    is `/b`: as nginx, Go's `path.Clean`, Tomcat and Node resolve it (Envoy says `/a/b`);
///    either way the application receives the canonical path, not the original.
/// 5. A trailing `/` is kept, and a final `.` or `..` leaves one: `/a/` and `/a/.` are
///    `/a/`, `/a/..` is `/`.
///
/// Case and `;` are ordinary path characters: `/A` is not `/a`, and `/a;x` is not `/a`
/// (path parameters are not stripped, as in Envoy). The one exception is a `.` or `..`
/// segment with parameters (`/a/..;x/b`), an error, because Tomcat and Spring resolve it as
/// `..` where everything else sees an ordinary segment. The result is a fixed point:
/// canonicalising the canonical path again returns it unchanged.
pub fn path(target: &str) -> Result<Canonical<'_>, PathError> {
    let (raw, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Scan the query first so that a `#` or a control character is reported wherever it is.
    if let Some(q) = query {
        for &b in q.as_bytes() {
            check_target_byte(b)?;
        }
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }

    // One validating pass; remember whether anything needs rewriting.
    let bytes = raw.as_bytes();
    let mut needs_decoding = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        check_target_byte(b)?;
        match b {
            b'\\' => return Err(PathError::Backslash),
            0x80.. => return Err(PathError::NonAscii(b)),
            b'%' => {
                let (v, upper) = percent_at(bytes, i)?;
                if is_unreserved(v) || !upper {
                    needs_decoding = true;
                }
                i += 3;
            }
            _ => i += 1,
        }
    }

    let path = if needs_decoding {
        let decoded = decode(raw);
        if check_segments(&decoded)? {
            Cow::Owned(decoded)
        } else {
            Cow::Owned(remove_dot_segments(&decoded))
        }
    } else if check_segments(raw)? {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(remove_dot_segments(raw))
    };
    Ok(Canonical { path, query })
}

/// Rejects the bytes that are invalid anywhere in a request target.
fn check_target_byte(b: u8) -> Result<(), PathError> {
    match b {
        b'#' => Err(PathError::Fragment),
        b' ' => Err(PathError::Space),
        0x00..=0x1F | 0x7F => Err(PathError::ControlChar(b)),
        _ => Ok(()),
    }
}

/// Validates the `%XX` at `bytes[i]`, returning the octet and whether the hex digits are
/// already upper-case.
fn percent_at(bytes: &[u8], i: usize) -> Result<(u8, bool), PathError> {
    let digit = |j: usize| -> Result<u8, PathError> {
        let c = *bytes.get(j).ok_or(PathError::MalformedPercent)?;
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(PathError::MalformedPercent)
    };
    let v = (digit(i + 1)? << 4) | digit(i + 2)?;
    match v {
        b'/' => return Err(PathError::EncodedSlash),
        b'\\' => return Err(PathError::EncodedBackslash),
        0x00..=0x1F | 0x7F => return Err(PathError::EncodedControlChar(v)),
        _ => {}
    }
    let upper = !bytes[i + 1..=i + 2].iter().any(u8::is_ascii_lowercase);
    Ok((v, upper))
}

/// RFC 3986 unreserved: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes unreserved octets and upper-cases the other percent-encodings of a path that
/// [`path`] has validated.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = &raw[i + 1..i + 3];
            match u8::from_str_radix(hex, 16) {
                Ok(v) if is_unreserved(v) => out.push(char::from(v)),
                _ => {
                    out.push('%');
                    out.push_str(&hex.to_ascii_uppercase());
                }
            }
            i += 3;
        } else {
            // Validated ASCII.
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    out
}

/// Whether `p` (starting with `/`) is clean: no empty segment but a trailing one, and no
/// `.` or `..` segment. Rejects dot segments with parameters (`..;x`).
fn check_segments(p: &str) -> Result<bool, PathError> {
    let mut clean = true;
    let mut segments = p[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." | ".." => clean = false,
            "" if !last => clean = false,
            _ => {
                if let Some((name, _)) = seg.split_once(';')
                    && matches!(name, "." | "..")
                {
                    return Err(PathError::DotSegmentParams);
                }
            }
        }
    }
    Ok(clean)
}

/// Drops empty and `.` segments and resolves `..` (see [`path`]).
fn remove_dot_segments(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut trailing_slash = false;
    for seg in p.split('/').skip(1) {
        trailing_slash = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                let keep = out.rfind('/').unwrap_or(0);
                out.truncate(keep);
            }
            _ => {
                out.push('/');
                out.push_str(seg);
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// Canonicalises a `Host` header or `:authority` value to the host alone, for matching.
///
/// - User info (`@`) is an error.
/// - The port is stripped (`example.com:8080` is `example.com`); it must be 1–5 digits up
///   to 65535.
/// - An IPv6 literal must be in brackets (`[::1]:8080`); the result is the address in its
///   standard text form (RFC 5952, lower-case, zeros compressed) **without brackets**, e.g.
///   `::1`. So the result of an IPv6 host is not itself valid input.
/// - Otherwise one trailing dot is stripped (`example.com.` is `example.com`), the name is
///   ASCII-lower-cased, and must be non-empty, without empty labels, and contain only
///   letters, digits, `.`, `-` and `_` (so non-ASCII, whitespace and control characters
///   are errors).
///
/// Borrows from `authority` unless lower-casing (or reformatting an IPv6 address) is needed.
pub fn host(authority: &str) -> Result<Cow<'_, str>, HostError> {
    if authority.contains('@') {
        return Err(HostError::UserInfo);
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(HostError::InvalidIpv6)?;
        check_port(after)?;
        let ip: Ipv6Addr = addr.parse().map_err(|_| HostError::InvalidIpv6)?;
        return Ok(if displays_as(&ip, addr) {
            Cow::Borrowed(addr)
        } else {
            Cow::Owned(ip.to_string())
        });
    }

    let (name, port) = match authority.find(':') {
        Some(i) => authority.split_at(i),
        None => (authority, ""),
    };
    check_port(port)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    let mut lower = true;
    for c in name.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => lower = false,
            _ => return Err(HostError::InvalidChar(c)),
        }
    }
    if name.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel);
    }
    Ok(if lower {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_ascii_lowercase())
    })
}

/// Accepts `""` (no port) or `:` and 1–5 digits up to 65535.
fn check_port(s: &str) -> Result<(), HostError> {
    if s.is_empty() {
        return Ok(());
    }
    let digits = s.strip_prefix(':').ok_or(HostError::InvalidPort)?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort);
    }
    digits
        .parse::<u16>()
        .map(drop)
        .map_err(|_| HostError::InvalidPort)
}

/// Whether `ip` formats exactly as `s`, without allocating.
fn displays_as(ip: &Ipv6Addr, s: &str) -> bool {
    struct Compare<'a> {
        rest: &'a str,
        equal: bool,
    }
    impl fmt::Write for Compare<'_> {
        fn write_str(&mut self, part: &str) -> fmt::Result {
            match self.rest.strip_prefix(part) {
                Some(rest) => self.rest = rest,
                None => self.equal = false,
            }
            Ok(())
        }
    }
    let mut cmp = Compare {
        rest: s,
        equal: true,
    };
    fmt::write(&mut cmp, format_args!("{ip}")).is_ok() && cmp.equal && cmp.rest.is_empty()
}

#[cfg(test)]
mod tests;
