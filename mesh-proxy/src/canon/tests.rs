use std::borrow::Cow;

use super::*;

/// The canonical path of `target`, panicking on error.
#[track_caller]
fn canon(target: &str) -> String {
    match path(target) {
        Ok(c) => c.path.into_owned(),
        Err(e) => panic!("{target:?}: {e}"),
    }
}

#[test]
fn canonical_paths_are_borrowed() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/a/b.c/d",
        "/a/..b/c.",
        "/a;b=c/d",
        "/%20x",
        "/%C3%A9",
        "/a/*",
        "/...",
    ] {
        let c = path(p).unwrap();
        assert!(matches!(c.path, Cow::Borrowed(_)), "{p:?}");
        assert_eq!(c.path, p);
        assert_eq!(c.query, None);
    }
    let c = path("/a/b?x=1&y=%2F..").unwrap();
    assert!(matches!(c.path, Cow::Borrowed("/a/b")));
    assert_eq!(c.query, Some("x=1&y=%2F.."));
}

#[test]
fn query_is_split_at_the_first_question_mark_and_untouched() {
    let c = path("/a/../b?x=/../?%2f%zz").unwrap();
    assert_eq!(c.path, "/b");
    assert_eq!(c.query, Some("x=/../?%2f%zz"));
    assert_eq!(path("/a?").unwrap().query, Some(""));
    assert_eq!(path("/?").unwrap().path, "/");
}

#[test]
fn dot_segments_and_slashes() {
    for (input, want) in [
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/../../c", "/c"),
        ("/..", "/"),
        ("/../../a", "/a"),
        ("/.", "/"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/", "/a/"),
        ("//a///b", "/a/b"),
        ("//", "/"),
        ("/a//", "/a/"),
        ("/a/.//", "/a/"),
        ("/a/..//", "/"),
        // Empty segments are dropped before `..` applies.
        ("/a//../b", "/b"),
        ("/a/b//..", "/a/"),
        // Not dot segments.
        ("/a/.../b", "/a/.../b"),
        ("/a/.b/..c", "/a/.b/..c"),
    ] {
        assert_eq!(canon(input), want, "{input:?}");
    }
}

#[test]
fn percent_decoding() {
    for (input, want) in [
        ("/%70ublic", "/public"),
        ("/%41%5a%61%7A%30%39%2D%2E%5F%7E", "/AZaz09-._~"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/a/.%2e/b", "/b"),
        ("/%2e%2e/%2e", "/"),
        // Reserved and other octets stay encoded, upper-cased.
        ("/%3f", "/%3F"),
        ("/%3F", "/%3F"),
        ("/a%3b", "/a%3B"),
        ("/%c3%a9", "/%C3%A9"),
        ("/%25", "/%25"),
        ("/%252e", "/%252e"),
        ("/%20", "/%20"),
    ] {
        assert_eq!(canon(input), want, "{input:?}");
    }
}

#[test]
fn case_and_semicolons_are_kept() {
    assert_eq!(canon("/PRIVATE"), "/PRIVATE");
    assert_eq!(canon("/a;x/../b;y"), "/b;y");
    assert_eq!(canon("/a/...;x/b"), "/a/...;x/b");
    assert_eq!(canon("/a/x..;/b"), "/a/x..;/b");
    assert_eq!(canon("/a/;/b"), "/a/;/b");
    // A dot segment with parameters is `..` to Tomcat and an ordinary segment elsewhere.
    for p in [
        "/a/..;/b",
        "/a/..;x",
        "/.;",
        "/a/.;x/b",
        "/a/%2e%2e;/b",
        "/a/.%2E;x",
    ] {
        assert_eq!(path(p), Err(PathError::DotSegmentParams), "{p:?}");
    }
}

#[test]
fn errors() {
    use PathError::*;
    for (input, want) in [
        ("", NotAbsolute),
        ("a", NotAbsolute),
        ("*", NotAbsolute),
        ("http://h/a", NotAbsolute),
        ("?x", NotAbsolute),
        ("/a#x", Fragment),
        ("/a?x#y", Fragment),
        ("/a\0", ControlChar(0)),
        ("/a\n", ControlChar(b'\n')),
        ("/a\x7f", ControlChar(0x7F)),
        ("/a?\r\n", ControlChar(b'\r')),
        ("/a b", Space),
        ("/a?b c", Space),
        ("/a\\b", Backslash),
        ("/\u{e9}", NonAscii(0xC3)),
        ("/a%2Fb", EncodedSlash),
        ("/a%2fb", EncodedSlash),
        ("/a%5Cb", EncodedBackslash),
        ("/a%5cb", EncodedBackslash),
        ("/a%00", EncodedControlChar(0)),
        ("/a%0a", EncodedControlChar(0x0A)),
        ("/a%7F", EncodedControlChar(0x7F)),
        ("/a%", MalformedPercent),
        ("/a%2", MalformedPercent),
        ("/a%zz", MalformedPercent),
        ("/a%g0", MalformedPercent),
        ("/a%%41", MalformedPercent),
        ("/a%+1", MalformedPercent),
    ] {
        assert_eq!(path(input), Err(want), "{input:?}");
    }
    assert_eq!(
        EncodedSlash.to_string(),
        "encoded '/' (%2F) in the path is not allowed"
    );
    assert_eq!(
        EncodedControlChar(0).to_string(),
        "encoded control character (%00) in the path is not allowed"
    );
    assert_eq!(
        ControlChar(0x0A).to_string(),
        "control character 0x0A in the request target is not allowed"
    );
}

/// Random targets from an alphabet rich in dots, slashes and percent-encodings: the result
/// is an error or a clean, fixed-point path.
#[test]
fn property_canonical_paths_are_clean_fixed_points() {
    const ALPHABET: &[u8] = b"/.%2eEfF5cCa;?#x";
    let mut rng = fastrand::Rng::with_seed(0x5eed_ca70);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        let len = rng.usize(0..24);
        let mut s = String::from(if rng.u8(..) < 230 { "/" } else { "" });
        s.extend((0..len).map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())])));
        let Ok(c) = path(&s) else {
            err += 1;
            continue;
        };
        ok += 1;
        let p = &*c.path;
        assert!(p.starts_with('/'), "{s:?} -> {p:?}");
        assert!(!p.contains("//"), "{s:?} -> {p:?}");
        assert!(!p.contains('?') && !p.contains('#'), "{s:?} -> {p:?}");
        let interior = p.strip_suffix('/').unwrap_or(p);
        assert!(
            interior
                .split('/')
                .skip(1)
                .all(|seg| seg != "." && seg != ".."),
            "{s:?} -> {p:?}"
        );
        let again = path(p).unwrap_or_else(|e| panic!("{s:?} -> {p:?}: {e}"));
        assert!(matches!(again.path, Cow::Borrowed(_)), "{s:?} -> {p:?}");
        assert_eq!(again.path, p, "{s:?}");
        // The query is the untouched remainder.
        assert_eq!(c.query, s.split_once('?').map(|(_, q)| q));
    }
    // The alphabet exercises both outcomes.
    assert!(ok > 200 && err > 200, "ok={ok} err={err}");
}

#[test]
fn hosts() {
    for (input, want) in [
        ("api.example.com", "api.example.com"),
        ("API.Example.com.", "api.example.com"),
        ("api.example.com:8080", "api.example.com"),
        ("api.example.com.:443", "api.example.com"),
        (
            "Svc_1-a.ns.svc.cluster.local",
            "svc_1-a.ns.svc.cluster.local",
        ),
        ("10.0.0.1:80", "10.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]", "::1"),
        ("[::1]:8080", "::1"),
        ("[2001:DB8:0:0::1]:443", "2001:db8::1"),
        ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1"),
    ] {
        assert_eq!(host(input), Ok(Cow::Borrowed(want)), "{input:?}");
    }
    for borrowed in ["a.b", "a.b.", "a.b:1", "[::1]:1"] {
        assert!(
            matches!(host(borrowed), Ok(Cow::Borrowed(_))),
            "{borrowed:?}"
        );
    }
    assert!(matches!(host("A.b"), Ok(Cow::Owned(_))));
}

#[test]
fn host_errors() {
    use HostError::*;
    for (input, want) in [
        ("", Empty),
        (".", Empty),
        (":80", Empty),
        ("user@host", UserInfo),
        ("a@b:80", UserInfo),
        ("a b", InvalidChar(' ')),
        ("a\tb", InvalidChar('\t')),
        ("a\0", InvalidChar('\0')),
        ("h\u{e9}.com", InvalidChar('\u{e9}')),
        ("a/b", InvalidChar('/')),
        ("a*b", InvalidChar('*')),
        ("a%2eb", InvalidChar('%')),
        ("a..b", EmptyLabel),
        (".a", EmptyLabel),
        ("a..", EmptyLabel),
        ("a:", InvalidPort),
        ("a:x", InvalidPort),
        ("a:65536", InvalidPort),
        ("a:000080", InvalidPort),
        ("a:1:2", InvalidPort),
        ("a: 1", InvalidPort),
        ("::1", InvalidPort),
        ("[::1", InvalidIpv6),
        ("[::1]x", InvalidPort),
        ("[zz]", InvalidIpv6),
        ("[10.0.0.1]", InvalidIpv6),
        ("[fe80::1%eth0]", InvalidIpv6),
    ] {
        assert_eq!(host(input), Err(want), "{input:?}");
    }
}
