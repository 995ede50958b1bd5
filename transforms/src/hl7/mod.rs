//! HL7 v2 messages: parse, render, acknowledge.
//!
//! * [`Message`] parses ER7 text (segments ended by CR, LF or CR LF; MLLP framing and a
//!   byte-order mark are stripped) into segments whose fields stay encoded until read, so
//!   parsing borrows from the input and `Message::parse(&m.render()) == Ok(m)`. Delimiters
//!   come from MSH-1 and MSH-2 (4 characters, or 5 with the v2.7 truncation character).
//!   [`Limits`] bound size, segments and fields for untrusted input; no input panics.
//! * [`SegmentRef`], [`Field`], [`Repetition`], [`Component`], [`Subcomponent`] read the
//!   hierarchy with HL7 numbering (1-based; MSH-1 is the field separator). Text is decoded
//!   by [`Encoding::unescape`] and encoded by [`Encoding::escape`].
//! * [`MessageBuilder`] makes new messages; [`build_ack`] and [`parse_ack`] handle
//!   MSH + MSA (+ ERR) acknowledgements; [`mllp`] frames messages for TCP.
//! * [`OruSummary`] checks an ORU^R01 and extracts the patient (NHS number from PID-3),
//!   the recipient practice and the results; [`OruError`] names the failing field and maps
//!   to `AR`/`AE` and to ITK3 response codes.

mod ack;
pub mod batch;
mod builder;
mod encoding;
mod message;
pub mod mllp;
mod oru;
pub mod report;

pub use ack::{
    build_ack, build_unreadable_ack, hl7_error_description, parse_ack, AckCode, AckError,
    AckRequest, AckSummary, ErrorDetail, ErrorLocation, ErrorSeverity,
};
pub use builder::MessageBuilder;
pub use encoding::{Encoding, EncodingError};
pub use message::{
    Component, Field, FieldValue, Hl7Error, Limits, Message, Repetition, SegmentRef, Subcomponent,
};
pub use oru::{
    parse_oru, parse_oru_with_limits, CodedValue, EncapsulatedData, Observation, OrderResult,
    OruError, OruSummary, Patient, PatientIdentifier, PersonName, Recipient, RecipientSource,
};
