//! The generated gRPC API: `hipstershop` (the Online Boutique services) and
//! `grpc.health.v1` (standard health checking), generated from `proto/` by
//! `cargo xtask codegen` and committed under `src/proto/gen/`.
//!
//! Only tonic's `codegen` surface is used: [`crate::server`] serves the generated servers
//! and [`crate::client`] provides the channel the generated clients call through.

/// `hipstershop`: the Online Boutique API. Generated; see `proto/demo.proto`.
pub mod hipstershop {
    #![allow(
        missing_docs,
        unreachable_pub,
        clippy::all,
        clippy::pedantic,
        rustdoc::all,
        reason = "generated code"
    )]
    include!("proto/gen/hipstershop.rs");
}

/// `grpc.health.v1`: the standard gRPC health checking protocol.
pub mod health {
    /// Version 1 of the health checking protocol. Generated.
    pub mod v1 {
        #![allow(
            missing_docs,
            unreachable_pub,
            clippy::all,
            clippy::pedantic,
            rustdoc::all,
            reason = "generated code"
        )]
        include!("proto/gen/grpc.health.v1.rs");
    }
}
