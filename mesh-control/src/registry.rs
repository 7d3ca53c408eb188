//! Sources of user config for the [`crate::index`]: today the local-files registry
//! ([`local`]); the Kubernetes watchers join here.

pub mod local;
