//! Routing: which endpoint each recipient of a document gets, and why.
//!
//! The [`Directory`] is plain data (organisations, senders, endpoints). [`Directory::resolve`]
//! is a pure function from a document's routing metadata to one [`Route`] per deliverable
//! recipient, an [`Unroutable`] per recipient that cannot be reached, and a human-readable
//! trace of every decision. The hub loads the file and swaps directories; nothing here does I/O
//! beyond reading a file it is given.
#![forbid(unsafe_code)]

pub mod directory;

pub use directory::{
    Directory, DirectoryError, Endpoint, EndpointKind, OrgStatus, Organisation, Sender,
};

use edt_transforms::DocumentType;

/// What routing needs to know about a document.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    pub sender_ods: &'a str,
    pub recipients: &'a [String],
    pub document_type: DocumentType,
}

/// Whether a recipient is to act on the document or is copied for information (ITK3
/// RecipientType FA / FI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RecipientType {
    #[serde(rename = "FA")]
    ForAction,
    #[serde(rename = "FI")]
    ForInformation,
}

impl RecipientType {
    pub fn code(self) -> &'static str {
        match self {
            Self::ForAction => "FA",
            Self::ForInformation => "FI",
        }
    }
}

/// One deliverable recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub recipient_ods: String,
    pub endpoint: Endpoint,
    pub recipient_type: RecipientType,
}

/// A recipient that cannot be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    pub recipient_ods: String,
    pub reason: String,
}

/// The outcome of [`Directory::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub routes: Vec<Route>,
    pub unroutable: Vec<Unroutable>,
    /// One line per decision, in the order they were taken.
    pub trace: Vec<String>,
}
