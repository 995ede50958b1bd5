//! FHIR STU3 documents in XML and JSON.
//!
//! A resource is held as a generic [`Element`] tree that keeps everything the input carried
//! except comments and insignificant whitespace. Both [`parse_xml`] and [`parse_json`] produce
//! the same tree for the same resource, and [`to_xml`] / [`to_json`] write it back, so
//! XML → tree → JSON → tree → XML gives back the tree it started from.
//!
//! # The tree
//!
//! * A resource is an [`Element`] of [`Kind::Resource`] named by its resource type. Its `id` is
//!   an ordinary child element, as in the XML.
//! * An element holding an inline resource (`Bundle.entry.resource`, `contained`,
//!   `Parameters.parameter.resource`, ...) is an ordinary element whose only child is that
//!   resource, matching the XML `<resource><Patient>...</Patient></resource>`.
//! * A primitive keeps its lexical `value` (so `1.50` stays `1.50`), its `id` attribute and its
//!   `extension` children.
//! * `Extension.url` is kept in [`Element::url`]; `extension` and `modifierExtension` are
//!   ordinary children.
//! * The narrative `div` is an element of [`Kind::Xhtml`] whose value is the XHTML text, from
//!   `<div` to `</div>`, exactly as it appeared, with its `xmlns="http://www.w3.org/1999/xhtml"`.
//!
//! # Cardinality and types
//!
//! JSON needs to know which elements repeat (always arrays) and which primitives are numbers or
//! booleans. [`schema`] holds that for the resources and datatypes used by ITK3 and Transfer of
//! Care. The rules for anything outside the table:
//!
//! * An element not in the table is written as a single JSON value when it occurs once among
//!   its siblings and as an array when it occurs more than once. A JSON array of one item for
//!   such an element therefore comes back as a single value after a round trip.
//! * Its primitive value is written as a JSON string, since its type is unknown. A JSON number
//!   or boolean read for it keeps its text (`1.5`, `true`) and is written back as a string.
//! * A known single-valued element that occurs more than once is written as an array, and a
//!   JSON array is accepted for it, so nothing is lost; cardinality is not validated here.
//! * Same-named siblings that are not adjacent in XML are gathered at the first one's position
//!   in JSON (JSON has one member per name).
//! * Resources of a type not in the table use the DomainResource elements (`id`, `meta`,
//!   `text`, `contained`, ...); the rest follow the rules above.
//!
//! # Hostile input
//!
//! Both parsers enforce [`Limits`]. DTDs are rejected outright, so entity expansion cannot
//! happen; only the five predefined entities and character references are accepted. Errors
//! carry the FHIR path of the element being read, e.g.
//! `Bundle.entry[2].resource.Composition.section[1].code`.

mod error;
mod json;
mod lex;
mod nav;
pub mod r4;
pub mod schema;
mod xml;

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

pub use error::{Error, ErrorKind};
pub use json::{parse_json, parse_json_with, to_json, to_json_pretty};
pub use nav::{systems, Coding};
pub use xml::{parse_xml, parse_xml_with, to_xml, to_xml_pretty};

/// The FHIR XML namespace.
pub const FHIR_NS: &str = "http://hl7.org/fhir";
/// The XHTML namespace of the narrative `div`.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// Limits the parsers enforce against hostile or broken input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_input_bytes: usize,
    /// Deepest element nesting (the root resource is depth 1; XHTML inside a `div` counts).
    /// Values above 1024 are treated as 1024.
    pub max_depth: usize,
    /// Most elements in one document (XHTML elements inside a `div` count).
    pub max_elements: usize,
    /// Most attributes on one XML element (namespace declarations count).
    pub max_attributes: usize,
    /// Longest primitive value (attribute value or JSON string), in bytes.
    pub max_value_len: usize,
    /// Longest base64Binary value (`Binary.content`, `Attachment.data`, ...), in bytes.
    pub max_base64_len: usize,
    /// Longest narrative `div`, in bytes.
    pub max_xhtml_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 32 * 1024 * 1024,
            max_depth: 64,
            max_elements: 250_000,
            max_attributes: 16,
            max_value_len: 1024 * 1024,
            max_base64_len: 24 * 1024 * 1024,
            max_xhtml_len: 4 * 1024 * 1024,
        }
    }
}

/// The deepest nesting any limit may allow; keeps the recursive writers within the stack.
pub(crate) const HARD_MAX_DEPTH: usize = 1024;

impl Limits {
    pub(crate) fn depth(&self) -> usize {
        self.max_depth.min(HARD_MAX_DEPTH)
    }
}

/// An element or resource name. Names known to [`schema`] are shared static strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Cow<'static, str>);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Name {
    fn from(s: &'static str) -> Self {
        Name(Cow::Borrowed(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Cow::Owned(s))
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an [`Element`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An ordinary element: primitive, datatype, backbone element or resource slot.
    Element,
    /// A resource; the name is its resource type.
    Resource,
    /// A narrative `div`; the value is the raw XHTML text.
    Xhtml,
}

/// One node of a FHIR resource tree. See the [module documentation](self) for the mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Element name, or resource type for a [`Kind::Resource`].
    pub name: Name,
    /// What this node is.
    pub kind: Kind,
    /// The `id` attribute of an element (a resource's id is a child element instead).
    pub id: Option<Box<str>>,
    /// `Extension.url` on `extension` and `modifierExtension` elements.
    pub url: Option<Box<str>>,
    /// A primitive's lexical value, or the XHTML text of a [`Kind::Xhtml`] node.
    pub value: Option<Box<str>>,
    /// Child elements in document order, extensions included.
    pub children: Vec<Element>,
}

impl Element {
    /// An empty element.
    pub fn new(name: impl Into<Name>) -> Self {
        Self {
            name: name.into(),
            kind: Kind::Element,
            id: None,
            url: None,
            value: None,
            children: Vec::new(),
        }
    }

    /// An empty resource of the given type.
    pub fn resource(resource_type: impl Into<Name>) -> Self {
        Self {
            kind: Kind::Resource,
            ..Self::new(resource_type)
        }
    }

    /// A primitive element with a value.
    pub fn primitive(name: impl Into<Name>, value: impl Into<Box<str>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::new(name)
        }
    }

    /// An element holding one inline resource, e.g. `Bundle.entry.resource`.
    pub fn slot(name: impl Into<Name>, resource: Element) -> Self {
        Self {
            children: vec![resource],
            ..Self::new(name)
        }
    }

    /// An `extension` element with the given url.
    pub fn extension(url: impl Into<Box<str>>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::new("extension")
        }
    }

    /// A narrative `div` holding raw XHTML, which must be a well-formed `div` element in the
    /// XHTML namespace (the writers copy it verbatim).
    pub fn xhtml(xhtml: impl Into<Box<str>>) -> Self {
        Self {
            kind: Kind::Xhtml,
            value: Some(xhtml.into()),
            ..Self::new("div")
        }
    }

    /// Adds a child and returns `self`, for building trees.
    pub fn with(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    /// Sets the `id` attribute and returns `self`.
    pub fn with_id(mut self, id: impl Into<Box<str>>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Appends a child.
    pub fn push(&mut self, child: Element) {
        self.children.push(child);
    }

    /// Whether this is a resource.
    pub fn is_resource(&self) -> bool {
        self.kind == Kind::Resource
    }

    /// The inline resource held by a slot element such as `Bundle.entry.resource`.
    pub fn as_slot(&self) -> Option<&Element> {
        match self.children.as_slice() {
            [only] if only.kind == Kind::Resource => Some(only),
            _ => None,
        }
    }
}

/// Converts FHIR XML to FHIR JSON with default limits.
pub fn xml_to_json(xml: &[u8]) -> Result<String, Error> {
    Ok(to_json(&parse_xml(xml)?))
}

/// Converts FHIR JSON to FHIR XML with default limits.
pub fn json_to_xml(json: &[u8]) -> Result<String, Error> {
    Ok(to_xml(&parse_json(json)?))
}
