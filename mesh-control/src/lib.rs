//! `mesh-control`: the mesh's control plane.
//!
//! Sources (Kubernetes watchers, or a directory of YAML in local mode) feed a synchronous
//! [`index`] that holds services, workloads, routes and policies and computes each proxy's
//! config ([`mesh_api::model::ProxyConfigSpec`]); the discovery server pushes it to proxies.
//!
//! - [`index`]: the translation from user config (our CRDs, Kubernetes Services, Gateway
//!   API routes) to the domain model, per proxy; pure, no I/O.
//! - [`registry`]: where user config comes from; [`registry::local`] reads a directory of
//!   YAML, validates it, and keeps the last good set when an edit breaks it.
//! - [`discovery`]: the gRPC discovery server (port 15012) streaming each proxy its config.
//! - [`debug`]: the debug and metrics HTTP server (port 15014) `meshctl proxy-status` reads.
//! - [`metrics`]: the control plane's Prometheus metrics.
//! - [`app`]: the `mesh-control` process: options and wiring.

pub mod app;
pub mod debug;
pub mod discovery;
pub mod index;
pub mod metrics;
pub mod registry;
