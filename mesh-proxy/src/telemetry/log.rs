//! The process-wide `tracing` subscriber and the handle that changes its filter at run time.
//!
//! Diagnostics go to stderr (human-readable or JSON lines); stdout is left to the access log
//! ([`super::access_log`]). The filter is an [`EnvFilter`] behind a reload layer, so the admin
//! server's `POST /logging` can turn on `debug` for one module without a restart.

use std::env;

use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer, Registry, layer::SubscriberExt as _, reload, util::SubscriberInitExt as _,
};

use super::Error;

/// The environment variable holding the proxy's tracing filter (DESIGN.md "proxy env").
pub const LOG_ENV: &str = "MESH_LOG";

/// Reads and replaces the filter of the subscriber built by [`init_tracing`] or
/// [`subscriber`]. Cheap to clone; every clone controls the same subscriber.
#[derive(Clone, Debug)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

// === impl LogHandle ===

impl LogHandle {
    /// Wraps a reload handle of a filter installed directly on a [`Registry`].
    pub fn from_handle(handle: reload::Handle<EnvFilter, Registry>) -> Self {
        Self { handle }
    }

    /// The underlying reload handle.
    pub fn inner(&self) -> &reload::Handle<EnvFilter, Registry> {
        &self.handle
    }

    /// The current filter, normalized (`mesh_proxy=debug,info`).
    pub fn current(&self) -> Result<String, Error> {
        self.handle
            .with_current(ToString::to_string)
            .map_err(Error::SubscriberGone)
    }

    /// Replaces the filter with `filter` (e.g. `debug` or `mesh_proxy=trace,info`) and returns
    /// it normalized. An invalid filter leaves the current one in place.
    pub fn set(&self, filter: &str) -> Result<String, Error> {
        let new = parse_filter(filter)?;
        let shown = new.to_string();
        self.handle.reload(new).map_err(Error::SubscriberGone)?;
        Ok(shown)
    }
}

/// Parses a filter strictly: an unknown level or a malformed directive is an error rather
/// than silently ignored.
pub(crate) fn parse_filter(filter: &str) -> Result<EnvFilter, Error> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|source| Error::InvalidFilter {
            filter: filter.to_owned(),
            source,
        })
}

/// Builds a subscriber (filter `filter`, text or JSON lines on stderr) without installing it,
/// and the handle that changes its filter. Tests use it with
/// `tracing::subscriber::set_default`; [`init_tracing`] installs it globally.
pub fn subscriber(
    filter: &str,
    json: bool,
) -> Result<(impl Subscriber + Send + Sync + 'static, LogHandle), Error> {
    let (filter, handle) = reload::Layer::new(parse_filter(filter)?);
    let base = Registry::default().with(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let fmt: Box<dyn Layer<_> + Send + Sync> = if json {
        Box::new(fmt.json().flatten_event(true).with_ansi(false))
    } else {
        Box::new(fmt.with_ansi(false))
    };
    Ok((base.with(fmt), LogHandle::from_handle(handle)))
}

/// Installs the process-wide subscriber: the filter is `MESH_LOG` when set and not empty,
/// else `default_filter`; `json` selects JSON lines over text. Returns the handle the admin
/// server uses for `/logging`.
///
/// Fails (never panics) when the filter is invalid or a global subscriber is already
/// installed — e.g. when called a second time in one test binary.
pub fn init_tracing(default_filter: &str, json: bool) -> Result<LogHandle, Error> {
    let from_env = match env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        Ok(_) | Err(env::VarError::NotPresent) => None,
        Err(e @ env::VarError::NotUnicode(_)) => {
            return Err(Error::InvalidEnvFilter(e.into()));
        }
    };
    let filter = from_env.as_deref().unwrap_or(default_filter);
    let (subscriber, handle) = subscriber(filter, json)?;
    subscriber.try_init().map_err(Error::AlreadyInstalled)?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_reads_and_changes_the_filter() {
        let (sub, handle) = subscriber("info", false).unwrap();
        let _guard = tracing::subscriber::set_default(sub);
        assert_eq!(handle.current().unwrap(), "info");
        assert!(!tracing::enabled!(tracing::Level::DEBUG));

        let shown = handle.set("mesh_proxy=trace,warn").unwrap();
        assert!(shown.contains("mesh_proxy=trace"), "{shown}");
        assert!(shown.contains("warn"), "{shown}");
        assert_eq!(handle.current().unwrap(), shown);
        assert!(tracing::enabled!(tracing::Level::TRACE));
    }

    #[test]
    fn invalid_filters_are_rejected_and_keep_the_old_one() {
        let (sub, handle) = subscriber("info", false).unwrap();
        let _guard = tracing::subscriber::set_default(sub);
        for bad in ["mesh_proxy=loud", "[{"] {
            let err = handle.set(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidFilter { .. }), "{bad}: {err}");
            assert!(err.to_string().starts_with("invalid log filter"), "{err}");
        }
        assert_eq!(handle.current().unwrap(), "info");
        assert!(subscriber("nope=nope", true).is_err());
    }

    #[test]
    fn handle_of_a_dropped_subscriber_reports_it() {
        let (sub, handle) = subscriber("info", true).unwrap();
        drop(sub);
        assert!(matches!(handle.current(), Err(Error::SubscriberGone(_))));
        assert!(matches!(handle.set("debug"), Err(Error::SubscriberGone(_))));
    }

    #[test]
    fn second_global_install_fails_without_panicking() {
        // Whichever call comes first may succeed (or fail if another test in this binary
        // installed one); the second one must fail cleanly.
        let _ = init_tracing("warn", false);
        let err = init_tracing("warn", true).unwrap_err();
        assert!(matches!(err, Error::AlreadyInstalled(_)), "{err}");
    }
}
