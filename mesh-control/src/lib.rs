//! `mesh-control`: the mesh's control plane.
//!
//! Sources (Kubernetes watchers, or a directory of YAML in local mode) feed a synchronous
//! [`index`] that holds services, workloads, routes and policies and computes each proxy's
//! config ([`mesh_api::model::ProxyConfigSpec`]); the discovery server pushes it to proxies.
//! The certificate authority gives every proxy its SPIFFE identity, and both services are
//! served over TLS on one port.
//!
//! - [`index`]: the translation from user config (our CRDs, Kubernetes Services, Gateway
//!   API routes) to the domain model, per proxy; pure, no I/O.
//! - [`registry`]: where user config comes from; [`registry::local`] reads a directory of
//!   YAML, validates it, and keeps the last good set when an edit breaks it.
//! - [`discovery`]: the gRPC discovery service streaming each proxy its config.
//! - [`ca`]: the certificate authority: roots (self-signed or plug-in), signing, the trust
//!   bundle, root rotation; its storage is a directory or Kubernetes Secrets.
//! - [`identity`]: the gRPC identity service (`Certify`, `WatchTrustBundle`) and how callers
//!   authenticate (client certificates, local tokens, TokenReviews).
//! - [`grpc`]: the TLS server on port 15012 serving discovery and identity.
//! - [`debug`]: the debug and metrics HTTP server (port 15014) `meshctl proxy-status` reads.
//! - [`webhook`]: the sidecar-injection admission webhook (HTTPS, port 15017): AdmissionReview
//!   in, a JSONPatch made by [`mesh_api::inject`] out (not started by [`app`] yet).
//! - [`metrics`]: the control plane's Prometheus metrics.
//! - [`files`]: atomic, mode-safe writes of keys, tokens and bundles.
//! - [`app`]: the `mesh-control` server: options and wiring; [`cli`]: the command line and
//!   its maintenance subcommands (`ca rotate`, `ca issue`, `token`).

pub mod app;
pub mod ca;
pub mod cli;
pub mod debug;
pub mod discovery;
pub mod files;
pub mod grpc;
pub mod identity;
pub mod index;
pub mod metrics;
pub mod registry;
pub mod webhook;
