//! Generates the tonic/prost code for package genfleet.v1 from proto/.
//! protox parses the .proto files in Rust, so no system protoc is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "genfleet/v1/jobs.proto",
    "genfleet/v1/worker.proto",
    "genfleet/v1/raft.proto",
    "genfleet/v1/state.proto",
    "genfleet/v1/cluster.proto",
    "genfleet/v1/queues.proto",
    "genfleet/v1/nodes.proto",
    "genfleet/v1/tenants.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let descriptors = protox::compile(PROTOS, [&root])?;
    // JSON for `-o json|yaml`: serde impls that follow the proto3 JSON
    // mapping (enums by name), with the .proto's snake_case field names
    // as the REST API uses them.
    let encoded = prost::Message::encode_to_vec(&descriptors);
    // For server reflection (grpcurl): the public schema, as compiled.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("genfleet_descriptor.bin"), &encoded)?;
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        .build(&[".genfleet.v1"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
