//! Sources of user config for the [`crate::index`]:
//!
//! - [`local`]: a directory of YAML, validated and hot-reloaded (local mode);
//! - [`kube`]: kube-runtime watchers on a cluster's API server, with Pods and
//!   EndpointSlices translated into `WorkloadEntries`, sent as
//!   [`kube::RegistryEvent`]s (`Apply`/`Delete`, and `Synced` once every watcher has
//!   listed).

pub mod kube;
pub mod local;
