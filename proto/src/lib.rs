//! The gRPC contract of the hub: package `edt.hub.v1`.
//!
//! Generated at build time from `proto/edt/hub/v1/*.proto`; see `build.rs`.
#![forbid(unsafe_code)]

/// Package `edt.hub.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("edt.hub.v1");

    /// Encoded `FileDescriptorSet` for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/edt_hub_v1_descriptor.bin"));
}

pub use prost_types::Timestamp;
