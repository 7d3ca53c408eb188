//! Choosing the HTTP route for a request: VirtualService semantics.
//!
//! Routes are tried in order; the first one with a matching condition wins (a route without
//! conditions matches everything). Within a condition every set field must match:
//! path (`uri`, without the query), method, authority, scheme, headers (present, or
//! matching), `withoutHeaders` (none may match), query parameters, and the calling
//! workload's labels and namespace. Header names compare case-insensitively (they arrive
//! lower-cased from hyper); values and paths compare exactly.

use std::collections::BTreeMap;

use http::HeaderMap;
use mesh_api::model::{HttpMatch, HttpRoute, StringMatch};

/// The parts of a request routes look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path without the query.
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The authority (`Host`), as sent.
    pub authority: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// The calling workload, for `sourceLabels` and `sourceNamespace`.
#[derive(Debug, Clone, Copy)]
pub struct SourceView<'a> {
    /// The caller's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The caller's namespace.
    pub namespace: &'a str,
}

/// The route chosen for a request, and the condition that matched (if the route had any).
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    /// The route.
    pub route: &'a HttpRoute,
    /// The matching condition, for prefix rewrites.
    pub matched: Option<&'a HttpMatch>,
}

/// The first route that matches, if any.
pub fn select<'a>(
    routes: &'a [HttpRoute],
    req: &RequestView<'_>,
    src: &SourceView<'_>,
) -> Option<Selected<'a>> {
    routes.iter().find_map(|route| {
        if route.matches.is_empty() {
            return Some(Selected {
                route,
                matched: None,
            });
        }
        route
            .matches
            .iter()
            .find(|m| matches(m, req, src))
            .map(|m| Selected {
                route,
                matched: Some(m),
            })
    })
}

fn string(m: Option<&StringMatch>, value: &str) -> bool {
    m.is_none_or(|m| m.matches(value))
}

/// Whether one condition matches.
pub fn matches(m: &HttpMatch, req: &RequestView<'_>, src: &SourceView<'_>) -> bool {
    string(m.uri.as_ref(), req.path)
        && string(m.method.as_ref(), req.method)
        && string(m.authority.as_ref(), req.authority)
        && string(m.scheme.as_ref(), req.scheme)
        && m.headers.iter().all(|h| {
            let value = req
                .headers
                .get(h.name.as_str())
                .and_then(|v| v.to_str().ok());
            match (&h.value, value) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(sm), Some(v)) => sm.matches(v),
            }
        })
        && m.without_headers.iter().all(|h| {
            let value = req
                .headers
                .get(h.name.as_str())
                .and_then(|v| v.to_str().ok());
            match (&h.value, value) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(sm), Some(v)) => !sm.matches(v),
            }
        })
        && m.query_params.iter().all(|q| {
            let value = query_param(req.query, &q.name);
            match (&q.value, value) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(sm), Some(v)) => sm.matches(v),
            }
        })
        && m.source_labels
            .iter()
            .all(|(k, v)| src.labels.get(k) == Some(v))
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns == src.namespace)
}

/// The (raw, undecoded) value of the first `name` parameter in a query string.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::model::{HeaderMatch, HttpAction, Pattern, QueryParamMatch};

    fn route(name: &str, matches: Vec<HttpMatch>) -> HttpRoute {
        HttpRoute {
            name: name.into(),
            matches,
            action: HttpAction::DirectResponse(mesh_api::model::DirectResponse {
                status: 200,
                body: None,
            }),
        }
    }

    fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path,
            query,
            authority: "reviews:9080",
            scheme: "http",
            headers,
        }
    }

    const NO_LABELS: &BTreeMap<String, String> = &BTreeMap::new();

    fn src() -> SourceView<'static> {
        SourceView {
            labels: NO_LABELS,
            namespace: "default",
        }
    }

    #[test]
    fn first_matching_route_wins_and_catch_all_last() {
        let jason = HttpMatch {
            headers: vec![HeaderMatch {
                name: "end-user".into(),
                value: Some(StringMatch::Exact("jason".into())),
            }],
            ..HttpMatch::default()
        };
        let routes = vec![route("jason", vec![jason]), route("default", vec![])];
        let mut h = HeaderMap::new();
        assert_eq!(
            select(&routes, &view("/", None, &h), &src())
                .unwrap()
                .route
                .name,
            "default"
        );
        h.insert("end-user", "jason".parse().unwrap());
        let sel = select(&routes, &view("/", None, &h), &src()).unwrap();
        assert_eq!(sel.route.name, "jason");
        assert!(sel.matched.is_some());
    }

    #[test]
    fn uri_prefix_regex_and_query() {
        let m = HttpMatch {
            uri: Some(StringMatch::Prefix("/api".into())),
            query_params: vec![QueryParamMatch {
                name: "v".into(),
                value: Some(StringMatch::Regex(Pattern::new("[0-9]+").unwrap())),
            }],
            ..HttpMatch::default()
        };
        let routes = vec![route("api", vec![m])];
        let h = HeaderMap::new();
        assert!(select(&routes, &view("/api/x", Some("a=1&v=2"), &h), &src()).is_some());
        assert!(select(&routes, &view("/api/x", Some("v=x2"), &h), &src()).is_none());
        assert!(select(&routes, &view("/api/x", None, &h), &src()).is_none());
        assert!(select(&routes, &view("/other", Some("v=2"), &h), &src()).is_none());
    }

    #[test]
    fn without_headers_and_presence() {
        let m = HttpMatch {
            headers: vec![HeaderMatch {
                name: "x-canary".into(),
                value: None,
            }],
            without_headers: vec![HeaderMatch {
                name: "x-skip".into(),
                value: Some(StringMatch::Exact("1".into())),
            }],
            ..HttpMatch::default()
        };
        let routes = vec![route("canary", vec![m])];
        let mut h = HeaderMap::new();
        assert!(select(&routes, &view("/", None, &h), &src()).is_none());
        h.insert("x-canary", "".parse().unwrap());
        assert!(select(&routes, &view("/", None, &h), &src()).is_some());
        h.insert("x-skip", "1".parse().unwrap());
        assert!(select(&routes, &view("/", None, &h), &src()).is_none());
        h.insert("x-skip", "2".parse().unwrap());
        assert!(select(&routes, &view("/", None, &h), &src()).is_some());
    }

    #[test]
    fn source_labels_and_namespace() {
        let m = HttpMatch {
            source_labels: [("app".to_string(), "frontend".to_string())].into(),
            source_namespace: Some("shop".into()),
            ..HttpMatch::default()
        };
        let routes = vec![route("from-frontend", vec![m])];
        let h = HeaderMap::new();
        let labels: BTreeMap<String, String> = [("app".to_string(), "frontend".to_string())].into();
        let ok = SourceView {
            labels: &labels,
            namespace: "shop",
        };
        assert!(select(&routes, &view("/", None, &h), &ok).is_some());
        let other_ns = SourceView {
            labels: &labels,
            namespace: "default",
        };
        assert!(select(&routes, &view("/", None, &h), &other_ns).is_none());
        assert!(select(&routes, &view("/", None, &h), &src()).is_none());
    }
}
