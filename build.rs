//! Compiles the protos with protox (pure Rust: no system `protoc`) and generates tonic code.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/bth/gateway/v1/types.proto",
    "proto/bth/gateway/v1/admin.proto",
    "proto/bth/gateway/v1/catalog.proto",
    "proto/bth/gateway/v1/publishing.proto",
    "proto/bth/gateway/v1/sharing.proto",
    "proto/bth/gateway/v1/exchange.proto",
    "proto/bth/gateway/v1/oversight.proto",
    "proto/bth/gateway/v1/audit.proto",
    "proto/bth/gateway/v1/review.proto",
    "proto/bth/gateway/v1/monitoring.proto",
    "proto/bth/gateway/v1/reports.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by grpc.reflection so that grpcurl and friends need no .proto files.
    fs::write(out.join("bth_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // RowBatch travels pre-encoded: stored chunks are sent without per-row work
        // (see `wire`). Its wire format is exactly the one in types.proto.
        .extern_path(".bth.gateway.v1.RowBatch", "crate::wire::RowBatch")
        .compile_fds(fds)?;
    Ok(())
}
