//! The protobuf generators: `mesh-api/proto/**/*.proto` → `mesh-api/src/proto/gen/`
//! ([`generate`]) and the Online Boutique's `examples/online-boutique/proto/` →
//! `examples/online-boutique/src/proto/gen/` ([`boutique`]).
//!
//! Both compile with the pure-Rust `protox` (no system `protoc`), then generate prost
//! messages and tonic client and server stubs without transport code (the crates depend on
//! tonic's `codegen` feature only). mesh-api also gets the encoded file descriptor set for
//! gRPC reflection.

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

/// The Online Boutique's `.proto` files (the include path), relative to the workspace root.
pub(crate) const BOUTIQUE_PROTO_DIR: &str = "examples/online-boutique/proto";

/// Where the Online Boutique's generated Rust goes, relative to the workspace root.
pub(crate) const BOUTIQUE_OUT_DIR: &str = "examples/online-boutique/src/proto/gen";

/// The Online Boutique's files, relative to [`BOUTIQUE_PROTO_DIR`]: the upstream
/// `hipstershop` API and the standard gRPC health checking protocol.
pub(crate) const BOUTIQUE_FILES: &[&str] = &["demo.proto", "grpc/health/v1/health.proto"];

/// Generates mesh-api's protobuf code from the sources under `root`.
pub(crate) fn generate(root: &Path) -> Result<Generated> {
    let include = root.join(PROTO_DIR);
    let mut out = rust(&include, FILES, OUT_DIR)?;

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

/// Generates the Online Boutique's protobuf code from the sources under `root`.
pub(crate) fn boutique(root: &Path) -> Result<Generated> {
    let mut out = rust(
        &root.join(BOUTIQUE_PROTO_DIR),
        BOUTIQUE_FILES,
        BOUTIQUE_OUT_DIR,
    )?;
    out.sort();
    Ok(out)
}

/// Compiles `files` (relative to the include directory `include`) into prost messages and
/// tonic stubs placed in `out_dir` (relative to the workspace root), which the result owns.
fn rust(include: &Path, files: &[&str], out_dir: &str) -> Result<Generated> {
    let fds = protox::compile(files, [include]).context("compiling .proto files")?;

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
    out.own_dir(out_dir);
    for entry in fs::read_dir(tmp.path())? {
        let entry = entry?;
        let name = entry.file_name();
        let contents = fs::read(entry.path())?;
        out.add(Path::new(out_dir).join(name), contents);
    }
    Ok(out)
}
