//! A strict `application/x-www-form-urlencoded` query-string parser (no dependency for the
//! three parameters the admin server takes).

/// Why a query string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding at byte {0} of the query string")]
    BadEscape(usize),
    /// The decoded bytes are not UTF-8.
    #[error("query parameter is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    /// A parameter with an empty name (`?=x`, `?&`).
    #[error("empty query parameter name")]
    EmptyName,
}

/// The `name=value` pairs of `query` (without the `?`), decoded; `+` means space. A pair
/// without `=` has an empty value.
pub(crate) fn parse(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    if query.is_empty() {
        return Ok(out);
    }
    let mut offset = 0;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name_offset = offset;
        let value_offset = offset + name.len() + 1;
        offset += pair.len() + 1;
        let name = decode(name, name_offset)?;
        if name.is_empty() {
            return Err(QueryError::EmptyName);
        }
        out.push((name, decode(value, value_offset)?));
    }
    Ok(out)
}

fn decode(s: &str, offset: usize) -> Result<String, QueryError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                    (Some(hi), Some(lo)) => {
                        // Two hex digits: at most 0xff.
                        out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                        i += 2;
                    }
                    _ => return Err(QueryError::BadEscape(offset + i)),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse(q).unwrap()
    }

    #[test]
    fn decodes_pairs() {
        assert!(pairs("").is_empty());
        assert_eq!(pairs("level=debug"), [("level".into(), "debug".into())]);
        assert_eq!(
            pairs("filter=mesh_proxy%3Dtrace%2Cwarn&x"),
            [
                ("filter".into(), "mesh_proxy=trace,warn".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(pairs("a=b+c%20d"), [("a".into(), "b c d".into())]);
        assert_eq!(pairs("a=%C3%A9"), [("a".into(), "é".into())]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse("level=%zz"), Err(QueryError::BadEscape(6)));
        assert_eq!(parse("a=1&level=%4"), Err(QueryError::BadEscape(10)));
        assert_eq!(parse("level=%"), Err(QueryError::BadEscape(6)));
        assert_eq!(parse("a=%ff"), Err(QueryError::NotUtf8));
        assert_eq!(parse("=x"), Err(QueryError::EmptyName));
        assert_eq!(parse("a=1&&b=2"), Err(QueryError::EmptyName));
        assert!(
            parse("a=%ZZ")
                .unwrap_err()
                .to_string()
                .starts_with("bad percent")
        );
    }
}
