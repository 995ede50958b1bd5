//! Routing: which endpoint each recipient of a document gets, and why.
//!
//! The [`Directory`] is plain data: the national GP practice file, successors, GP system
//! suppliers, and the hub's TOML of senders, endpoints, organisations and rules.
//! [`Directory::resolve`] is a pure function from a document's routing metadata to one
//! [`Route`] per deliverable recipient, an [`Unroutable`] per recipient that cannot be reached,
//! and a trace of every decision ([`Directory::explain`] turns it into sentences). The hub
//! loads files and swaps directories; nothing here does I/O beyond reading files it is given.
#![forbid(unsafe_code)]

mod csv;
pub mod directory;
pub mod ods;

pub use directory::{
    Action, CopyRule, Directory, DirectoryError, Endpoint, EndpointKind, Format, OrgSource,
    OrgStatus, Organisation, Rule, Selector, Sender, Sources,
};

use edt_transforms::DocumentType;
use std::sync::Arc;

/// What routing needs to know about a document.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    pub sender_ods: &'a str,
    pub recipients: &'a [String],
    pub document_type: DocumentType,
    /// Today as `YYYYMMDD`, for successors that take effect on a date.
    pub today: ods::Day,
}

/// Whether a recipient is to act on the document or is copied for information (ITK3
/// RecipientType FA / FI): the one definition, from the document model.
pub use edt_transforms::itk3::RecipientType;

/// One deliverable recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The organisation that receives it (a successor, when the requested one merged).
    pub recipient_ods: String,
    pub endpoint: Arc<Endpoint>,
    pub format: Format,
    pub recipient_type: RecipientType,
    /// The rule that chose the endpoint (index into [`Directory::rules`]).
    pub rule: Option<usize>,
}

/// A recipient that cannot be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    pub recipient_ods: String,
    pub reason: String,
}

/// One decision taken while resolving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Duplicate {
        ods: String,
    },
    UnknownGp {
        held: bool,
    },
    Successor {
        from: String,
        to: String,
        effective: ods::Day,
    },
    Inactive {
        ods: String,
        status: OrgStatus,
    },
    RuleSkipped {
        ods: String,
        rule: usize,
        document_type: DocumentType,
    },
    RuleOutranked {
        ods: String,
        rule: usize,
        by: usize,
    },
    RuleChosen {
        ods: String,
        rule: usize,
    },
    NoRule {
        ods: String,
    },
    Copy {
        from: String,
        rule: usize,
        to: String,
    },
    CopySkipped {
        rule: usize,
        to: String,
    },
}

/// The outcome of [`Directory::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub routes: Vec<Route>,
    pub unroutable: Vec<Unroutable>,
    /// Every decision, in the order taken.
    pub trace: Vec<Step>,
}

#[cfg(test)]
mod tests;
