//! Testbed end-to-end tests of the sidecar (tier 3 in DESIGN.md, "Tests, in tiers"): every
//! meshed pod is a network namespace of a `mesh-testbed` testbed with the real
//! `mesh-proxy init` capture rules and a real `mesh-proxy run` as uid/gid 1337, and the
//! traffic comes from and goes to real third-party programs — curl (HTTP/1.1 and h2c), Python
//! grpcio, redis-server and redis-cli, Python socket clients and servers, Prometheus — running
//! as an application uid inside the pods, so everything crosses real capture rules, both
//! sidecars and the bridge.
//!
//! What the in-process tests (`tests/proxy.rs`) show on loopback, these show with capture:
//!
//! - [`http`]: the 90/10 canary split over HTTP/1.1 and h2c, large bodies, concurrency,
//!   mirroring, config reloads;
//! - [`grpc`]: the split, server streaming and error statuses with grpcio;
//! - [`tcp`]: opaque TCP (Redis), a server-first protocol (a banner within 200 ms) and
//!   half-closes;
//! - [`resilience`]: retries, route timeouts, abort faults, outlier detection, drain on
//!   SIGTERM;
//! - [`prometheus`]: `promtool check metrics` and a real Prometheus scraping the sidecar;
//! - [`capture`]: loopback traffic is not captured; non-service addresses pass through;
//!   STRICT refuses plaintext from outside the mesh;
//! - [`control`]: config from `mesh-control` over the discovery stream, edited under
//!   steady traffic (splits, new backends, control-plane restarts, broken files, NACKs);
//! - [`routing`]: a pod calling its own service; endpoints without a sidecar; headless
//!   services reach the address dialed.
//!
//! [`harness`] builds the pods, writes each pod's proxy config ([`config`]), runs init and
//! the proxy, and runs clients; [`backend`] is the in-process HTTP/1.1 + h2c backend.
//! Python scripts and the proto live in `tests/fixtures/testbed/`.
//!
//! Each test needs root and the testbed tools (see `mesh_testbed::testbed_or_skip`) and some
//! third-party programs; when one is missing the test prints `SKIPPED: …` with the
//! `apt-get install` line, or fails under `MESH_E2E=require` (CI). Every wait has a deadline,
//! every client a bounded number of requests, and traffic stays inside the testbed.

#[path = "testbed/backend.rs"]
mod backend;
#[path = "testbed/capture.rs"]
mod capture;
#[path = "testbed/config.rs"]
mod config;
#[path = "testbed/control.rs"]
mod control;
#[path = "testbed/grpc.rs"]
mod grpc;
#[path = "testbed/harness.rs"]
mod harness;
#[path = "testbed/http.rs"]
mod http;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/pki.rs"]
mod pki;
#[path = "testbed/prometheus.rs"]
mod prometheus;
#[path = "testbed/resilience.rs"]
mod resilience;
#[path = "testbed/routing.rs"]
mod routing;
#[path = "testbed/tcp.rs"]
mod tcp;
#[path = "testbed/tracing.rs"]
mod tracing;
