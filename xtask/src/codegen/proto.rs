//! The protobuf generator: `mesh-api/proto/**/*.proto` → `mesh-api/src/proto/gen/`.
//!
//! Compiles with the pure-Rust `protox` (no system `protoc`), then generates prost messages
//! and tonic client and server stubs without transport code (`mesh-api` depends on tonic's
//! `codegen` feature only), plus the encoded file descriptor set for gRPC reflection.

use std::{fs, path::Path};

use anyhow::{Context as _, Result};

use super::Generated;

/// Where the `.proto` files live, relative to the workspace root (the include path).
pub(crate) const PROTO_DIR: &str = "mesh-api/proto";

/// Where generated Rust goes, relative to the workspace root.
pub(crate) const OUT_DIR: &str = "mesh-api/src/proto/gen";

/// The files compiled, relative to [`PROTO_DIR`].
pub(crate) const FILES: &[&str] = &[
    "mesh/discovery/v1/discovery.proto",
    "mesh/identity/v1/identity.proto",
];

/// The encoded `FileDescriptorSet` (imports included, source info left out).
pub(crate) const DESCRIPTOR_SET: &str = "file_descriptor_set.bin";

/// Generates the protobuf code from the sources under `root`.
pub(crate) fn generate(root: &Path) -> Result<Generated> {
    let include = root.join(PROTO_DIR);
    let fds = protox::compile(FILES, [&include]).context("compiling .proto files")?;

    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        // Deterministic iteration and encoding order for maps.
        .btree_map(".")
        .out_dir(tmp.path())
        .compile_fds(fds)
        .context("generating Rust from the descriptors")?;

    let mut out = Generated::default();
    out.own_dir(OUT_DIR);
    for entry in fs::read_dir(tmp.path())? {
        let entry = entry?;
        let name = entry.file_name();
        let contents = fs::read(entry.path())?;
        out.add(Path::new(OUT_DIR).join(name), contents);
    }

    let mut compiler = protox::Compiler::new([&include])?;
    compiler.include_imports(true).include_source_info(false);
    for f in FILES {
        compiler.open_file(f)?;
    }
    out.add(
        Path::new(OUT_DIR).join(DESCRIPTOR_SET),
        compiler.encode_file_descriptor_set(),
    );
    out.sort();
    Ok(out)
}
