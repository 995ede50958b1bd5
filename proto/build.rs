//! Compiles `edt/hub/v1/*.proto` with `protox` (pure Rust, no system `protoc`) and generates the
//! tonic client and server code from the resulting descriptor set. The encoded descriptor set is
//! also written to `OUT_DIR` so the hub can serve gRPC reflection.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=edt");
    let protos = ["edt/hub/v1/hub.proto"];
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("edt_hub_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
