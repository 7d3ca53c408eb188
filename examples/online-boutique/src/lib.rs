//! The Online Boutique demo services in Rust, wire-compatible with the upstream
//! `hipstershop` gRPC API of GoogleCloudPlatform/microservices-demo: same package,
//! services, methods, messages, ports and `*_SERVICE_ADDR` variables, so any of our services
//! can replace the upstream one (and the other way around). The mesh's local mode runs them
//! behind sidecars; the Kubernetes demo can run them or the upstream images.
//!
//! One module per service ([`productcatalog`], [`currency`], [`cart`],
//! [`recommendation`], [`shipping`], [`payment`], [`email`], [`checkout`], [`ad`]), each
//! with a `router` (or `Config` + `router`) that the `boutique` binary serves. Shared
//! plumbing: [`server`] (gRPC over hyper's HTTP/2 server, with [`health`] on every
//! server), [`client`] (outgoing gRPC, with `*_SERVICE_ADDR` resolution), [`trace`] (W3C
//! `traceparent` propagation from incoming to outgoing calls), [`money`] (exact `Money`
//! arithmetic) and [`proto`] (the generated API).
//!
//! On top of them, [`frontend`] serves the shop's HTML pages over HTTP/1.1 as upstream's
//! frontend does, calling the services above, and [`loadgen`] drives it with simulated
//! shoppers following upstream's Locust task mix.

pub mod ad;
pub mod cart;
pub mod checkout;
pub mod client;
pub mod currency;
pub mod email;
pub mod frontend;
pub mod health;
pub mod id;
pub mod loadgen;
pub mod money;
pub mod payment;
pub mod productcatalog;
pub mod proto;
pub mod recommendation;
pub mod server;
pub mod shipping;
pub mod trace;
