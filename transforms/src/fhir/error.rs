//! Parse errors with the FHIR path where they happened.

use std::fmt;

/// Why FHIR input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is larger than [`super::Limits::max_input_bytes`].
    #[error("input of {size} bytes is over the {limit}-byte limit")]
    InputTooLarge { size: usize, limit: usize },
    /// Elements nest deeper than [`super::Limits::max_depth`].
    #[error("elements nest deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// More elements than [`super::Limits::max_elements`].
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    /// More attributes on one element than [`super::Limits::max_attributes`].
    #[error("more than {limit} attributes on one element")]
    TooManyAttributes { limit: usize },
    /// A value longer than its limit.
    #[error("{what} of {len} bytes is over the {limit}-byte limit")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    /// The input is not UTF-8.
    #[error("input is not valid UTF-8")]
    NotUtf8,
    /// A character XML cannot carry (control characters, U+FFFE, U+FFFF, lone surrogates).
    #[error("character U+{0:04X} is not allowed")]
    ForbiddenChar(u32),
    /// A document type declaration (DTD), which could declare entities.
    #[error("document type declarations (DOCTYPE) are not allowed")]
    Doctype,
    /// An entity reference other than the five predefined ones or a character reference.
    #[error("entity reference `&{0};` is not allowed: only &lt; &gt; &amp; &apos; &quot; and character references")]
    Entity(String),
    /// An XML declaration naming an encoding other than UTF-8.
    #[error("encoding `{0}` is not supported: FHIR XML must be UTF-8")]
    Encoding(String),
    /// XML that is not well-formed.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// JSON that is not well-formed.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// An element outside the FHIR namespace (or a `div` outside the XHTML one).
    #[error("element `{name}` is in namespace `{namespace}`, expected {expected}")]
    Namespace {
        name: String,
        namespace: String,
        expected: &'static str,
    },
    /// A name that is not a valid FHIR element or resource name.
    #[error("`{0}` is not a valid FHIR name")]
    InvalidName(String),
    /// A resource where an element is expected or the other way round.
    #[error("expected {expected}, found `{found}`")]
    Unexpected {
        expected: &'static str,
        found: String,
    },
    /// An attribute FHIR XML does not use in this place.
    #[error("attribute `{0}` is not allowed here")]
    Attribute(String),
    /// Non-whitespace text (or CDATA) in a FHIR element outside the narrative.
    #[error("text content is not allowed in FHIR elements (values go in the value attribute)")]
    Text,
    /// A primitive value that is not valid for its type.
    #[error("invalid {ty} value {value:?}")]
    InvalidValue { ty: &'static str, value: String },
    /// A JSON value of the wrong JSON type for the element.
    #[error("expected {expected}, found JSON {found}")]
    JsonType {
        expected: &'static str,
        found: &'static str,
    },
    /// A JSON object with the same member twice.
    #[error("duplicate JSON member `{0}`")]
    DuplicateKey(String),
    /// A JSON resource without `resourceType`.
    #[error("resource has no resourceType")]
    MissingResourceType,
    /// An element that must hold exactly one resource and nothing else does not.
    #[error("`{0}` must hold exactly one resource and nothing else")]
    Slot(String),
    /// `name` and `_name` arrays that do not line up.
    #[error("`{name}` has {values} values but `_{name}` has {companions} entries")]
    CompanionLength {
        name: String,
        values: usize,
        companions: usize,
    },
    /// A `null` in a primitive array with no matching `_name` entry, or the reverse.
    #[error("`{0}` has an item that is null in both the value and the `_` arrays")]
    NullItem(String),
    /// A `_name` companion for an element that is not a primitive.
    #[error("`_{0}` is only allowed for primitive values")]
    Companion(String),
    /// A malformed narrative `div`.
    #[error("invalid narrative: {0}")]
    Xhtml(String),
    /// The document has no root resource, or content after it.
    #[error("{0}")]
    Document(&'static str),
}

/// A parse error: what went wrong, where in the resource, and where in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at {} (byte {offset})", display_path(path))]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// FHIR path of the element being read, e.g. `Bundle.entry[2].resource.Composition.code`;
    /// empty when the error is outside the root resource.
    pub path: String,
    /// Byte offset in the input where the error was detected.
    pub offset: usize,
}

fn display_path(path: &str) -> impl fmt::Display + '_ {
    struct P<'a>(&'a str);
    impl fmt::Display for P<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0.is_empty() {
                f.write_str("document level")
            } else {
                write!(f, "`{}`", self.0)
            }
        }
    }
    P(path)
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, path: String, offset: usize) -> Self {
        Self { kind, path, offset }
    }
}
