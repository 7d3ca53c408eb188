//! `mesh-control`: the mesh's control plane.
//!
//! Sources (Kubernetes watchers, or a directory of YAML in local mode) feed a synchronous
//! [`index`] that holds services, workloads, routes and policies and computes each proxy's
//! config ([`mesh_api::model::ProxyConfigSpec`]); the discovery server pushes it to proxies.
//!
//! - [`index`]: the translation from user config (our CRDs, Kubernetes Services, Gateway
//!   API routes) to the domain model, per proxy; pure, no I/O.

pub mod index;
