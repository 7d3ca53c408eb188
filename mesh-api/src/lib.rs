//! `mesh-api`: the contracts every other mesh crate is built on.
//!
//! - [`config`]: the configuration model users write — our CRDs
//!   (`networking.mesh.dev`, `security.mesh.dev`), Kubernetes `v1` Services and Gateway API
//!   routes — with a loader for multi-document YAML and semantic validation whose
//!   diagnostics name file, document, field path and fix.
//! - [`duration`]: the duration syntax used in config (`200ms`, `1.5s`, `1m30s`).
//! - [`model`]: the domain types the proxy runs on (services, endpoints, routes, clusters,
//!   policies) and [`model::ProxyConfig`], the indexed per-proxy snapshot.
//! - [`spiffe`]: SPIFFE workload identities, `spiffe://<td>/ns/<ns>/sa/<sa>`.

pub mod model;
pub mod spiffe;
