//! Rendering a registry for a scrape, in the format the scraper asked for.
//!
//! `prometheus_client` encodes OpenMetrics 1.0 text: counters are described without their
//! `_total` suffix (`# TYPE mesh_requests counter` above `mesh_requests_total{…} 1`) and the
//! exposition ends with `# EOF`. Prometheus asks for OpenMetrics in its `Accept` header and
//! gets exactly that. Everything else (curl, `promtool check metrics`, older scrapers) gets
//! the Prometheus text format 0.0.4, converted here: counter descriptors are renamed to
//! their sample names (`# TYPE mesh_requests_total counter`) and `# EOF` / `# UNIT` lines are
//! dropped. Samples are the same bytes in both formats.

use std::{fmt::Write as _, sync::Arc};

use prometheus_client::{encoding::text, registry::Registry};

/// An exposition format for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus prefers).
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format to answer a request with `Accept` header `accept`: OpenMetrics when the
    /// client lists `application/openmetrics-text`, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|a| {
            a.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The response `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// A registry shared by the servers that expose it (port 15020 `/metrics`, the admin
/// server's `/stats/prometheus`). Cheap to clone. Metrics are registered before sharing;
/// their values change through the handles registered (e.g. [`super::Metrics`]).
#[derive(Debug, Clone)]
pub struct SharedRegistry {
    registry: Arc<Registry>,
}

impl SharedRegistry {
    /// Shares `registry`.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
        }
    }

    /// Shares a registry that is already shared.
    pub fn from_arc(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Encodes every metric in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String fails only if a metric's encoder fails, which ours do not; the
        // output so far is still served rather than nothing.
        if let Err(e) = text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed; the exposition is incomplete");
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("# EOF\n");
        }
        match format {
            Format::OpenMetrics => out,
            Format::Text => openmetrics_to_text(&out),
        }
    }

    /// Encodes every metric in the format `accept` asks for; returns the format (for the
    /// `Content-Type`) and the body.
    pub fn render(&self, accept: Option<&str>) -> (Format, String) {
        let format = Format::negotiate(accept);
        (format, self.encode(format))
    }
}

impl From<Registry> for SharedRegistry {
    fn from(registry: Registry) -> Self {
        Self::new(registry)
    }
}

impl From<Arc<Registry>> for SharedRegistry {
    fn from(registry: Arc<Registry>) -> Self {
        Self::from_arc(registry)
    }
}

/// Converts an OpenMetrics text exposition into the Prometheus text format 0.0.4.
pub(super) fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // A `# HELP` line waits for the `# TYPE` line after it, which tells whether the family
    // is a counter (whose name then gets `_total`).
    let mut help: Option<(&str, &str)> = None;
    let flush_help = |out: &mut String, help: &mut Option<(&str, &str)>, total: bool| {
        if let Some((name, text)) = help.take() {
            let suffix = if total { "_total" } else { "" };
            let _ = writeln!(out, "# HELP {name}{suffix} {text}");
        }
    };
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, &mut help, false);
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = kind == "counter" && !name.ends_with("_total");
            let help_matches = help.is_some_and(|(h, _)| h == name);
            flush_help(&mut out, &mut help, counter && help_matches);
            let (name, kind) = match kind {
                "counter" if counter => (format!("{name}_total"), "counter"),
                // Prometheus 0.0.4 knows no `info`, `stateset`, `gaugehistogram` types.
                "counter" | "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if line == "# EOF" || line.starts_with("# UNIT ") {
            flush_help(&mut out, &mut help, false);
        } else {
            flush_help(&mut out, &mut help, false);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush_help(&mut out, &mut help, false);
    out
}
