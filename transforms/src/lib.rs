//! The document model and the pure functions around it: identifiers (NHS number, ODS code),
//! document types, and the renderers for each receiver format.
//!
//! Nothing here does I/O or needs a runtime, so every function can be tested exhaustively and
//! fuzzed. The hub calls these; they never call the hub.
#![forbid(unsafe_code)]

pub mod content;
pub mod email;
pub mod extract;
pub mod fhir;
pub mod hl7;
pub mod index;
pub mod itk3;
pub mod model;
pub mod nhs;
pub mod ods;
pub mod render;
pub mod samples;

pub use model::{DocumentMeta, DocumentType, ReceiverFormat};
pub use nhs::{NhsNumber, NhsNumberError};
pub use ods::{OdsCode, OdsCodeError};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
