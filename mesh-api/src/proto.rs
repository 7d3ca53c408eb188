//! The gRPC API: `mesh.discovery.v1` (config streaming from mesh-control to proxies) and
//! `mesh.identity.v1` (workload certificates), generated from `mesh-api/proto/` by
//! `cargo xtask codegen` and committed under `src/proto/gen/`.
//!
//! The generated messages are wire types only. The proxy and control plane work with
//! [`crate::model`] types and convert at the boundary: `TryFrom<proto::X> for model::X`
//! validates (errors name the resource and field, e.g.
//! `invalid route table "reviews:9080": http[2].action.forward.backends[0].cluster.port:
//! 70000 is out of range, expected a port number (0..=65535)`) and
//! `From<&model::X> for proto::X` cannot fail. Conversions of whole resources also run the
//! model's [`validate`](crate::model::ResourceType::validate), so a converted resource is
//! always valid.
//!
//! Only tonic's `codegen` surface is used: clients and servers are generated, transports
//! come from the crates that dial or serve.

/// `mesh.discovery.v1`: the discovery stream. Generated; see the `.proto` for the protocol.
pub mod discovery {
    /// Version 1 of the discovery API.
    pub mod v1 {
        #![allow(
            missing_docs,
            unreachable_pub,
            clippy::all,
            clippy::pedantic,
            rustdoc::all,
            reason = "generated code"
        )]
        include!("proto/gen/mesh.discovery.v1.rs");
    }
}

/// `mesh.identity.v1`: certificate issuance. Generated; see the `.proto` for details.
pub mod identity {
    /// Version 1 of the identity API.
    pub mod v1 {
        #![allow(
            missing_docs,
            unreachable_pub,
            clippy::all,
            clippy::pedantic,
            rustdoc::all,
            reason = "generated code"
        )]
        include!("proto/gen/mesh.identity.v1.rs");
    }
}

mod convert;

/// The encoded `FileDescriptorSet` of both APIs and their imports (without source
/// comments), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("proto/gen/file_descriptor_set.bin");
