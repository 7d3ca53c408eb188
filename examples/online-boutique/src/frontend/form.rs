//! The small pieces of HTTP the frontend and the load generator share:
//! `application/x-www-form-urlencoded` bodies (decoded by the frontend's POST handlers,
//! encoded by the load generator) and `Cookie` headers.

/// A decoded form body: its fields in order; the first of repeated names wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

// === impl Form ===

impl Form {
    /// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte;
    /// malformed escapes are kept as they are, invalid UTF-8 is replaced).
    pub fn decode(body: &[u8]) -> Self {
        let fields = body
            .split(|&b| b == b'&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                (percent_decode(name), percent_decode(value))
            })
            .collect();
        Self { fields }
    }

    /// The value of the field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Encodes `fields` as an `application/x-www-form-urlencoded` body.
pub fn encode<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode(name, &mut out);
        out.push('=');
        percent_encode(value, &mut out);
    }
    out
}

/// The value of the cookie `name` in the request's `Cookie` headers, if present and text.
pub fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

fn percent_decode(input: &[u8]) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi * 16 + lo).expect("two hex digits fit a byte"));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(input: &str, out: &mut String) {
    for b in input.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_bodies() {
        let form =
            Form::decode(b"email=someone%40example.com&street_address=1600+Amphitheatre&x&y=%zz%4");
        assert_eq!(form.get("email"), Some("someone@example.com"));
        assert_eq!(form.get("street_address"), Some("1600 Amphitheatre"));
        assert_eq!(form.get("x"), Some(""));
        assert_eq!(form.get("y"), Some("%zz%4"));
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::decode(b"a=%C3%A9&a=2").get("a"), Some("é"));
    }

    #[test]
    fn encoding_round_trips() {
        let fields = [("currency_code", "EUR"), ("q", "a b&c=d/é%")];
        let body = encode(fields);
        assert_eq!(body, "currency_code=EUR&q=a+b%26c%3Dd%2F%C3%A9%25");
        let form = Form::decode(body.as_bytes());
        for (name, value) in fields {
            assert_eq!(form.get(name), Some(value));
        }
    }

    #[test]
    fn reads_cookies_from_every_header() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; shop_currency=EUR".parse().unwrap(),
        );
        headers.append(
            http::header::COOKIE,
            "shop_session-id=\"s1\"".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, "shop_currency").as_deref(), Some("EUR"));
        assert_eq!(cookie(&headers, "shop_session-id").as_deref(), Some("s1"));
        assert_eq!(cookie(&headers, "shop"), None);
    }
}
