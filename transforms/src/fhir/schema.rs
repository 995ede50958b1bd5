//! What the converters know about FHIR STU3 structure: for each element of the resources and
//! datatypes in scope, whether it repeats (max cardinality `*`) and what type it has.
//!
//! The table only drives the JSON shape (arrays, numbers, booleans, `_element` companions) and
//! the size limit for base64 content. Elements missing from the table are still carried; see
//! the module documentation of [`crate::fhir`] for how they are written.
//!
//! `extension` and `modifierExtension` are known everywhere (repeating, type Extension), so they
//! are not listed in each definition.

use std::fmt;

/// A FHIR STU3 primitive datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    /// `true` or `false`; a JSON boolean.
    Boolean,
    /// A signed 32-bit integer; a JSON number.
    Integer,
    /// A non-negative 32-bit integer; a JSON number.
    UnsignedInt,
    /// A positive 32-bit integer; a JSON number.
    PositiveInt,
    /// A decimal written with its original precision; a JSON number.
    Decimal,
    /// Base64-encoded bytes; limited by [`super::Limits::max_base64_len`].
    Base64Binary,
    /// A Unicode string.
    String,
    /// A code from a value set.
    Code,
    /// A resource or element id.
    Id,
    /// A URI.
    Uri,
    /// An OID URI (`urn:oid:...`).
    Oid,
    /// Markdown text.
    Markdown,
    /// A date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
    Date,
    /// A date and optional time.
    DateTime,
    /// An instant with time zone.
    Instant,
    /// A time of day.
    Time,
}

/// How a primitive value is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// A JSON string.
    String,
    /// A JSON number, written with the exact lexical form of the value.
    Number,
    /// A JSON `true` or `false`.
    Boolean,
}

impl Primitive {
    /// The FHIR name of the type, e.g. `dateTime`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::UnsignedInt => "unsignedInt",
            Self::PositiveInt => "positiveInt",
            Self::Decimal => "decimal",
            Self::Base64Binary => "base64Binary",
            Self::String => "string",
            Self::Code => "code",
            Self::Id => "id",
            Self::Uri => "uri",
            Self::Oid => "oid",
            Self::Markdown => "markdown",
            Self::Date => "date",
            Self::DateTime => "dateTime",
            Self::Instant => "instant",
            Self::Time => "time",
        }
    }

    /// How values of this type are written in JSON.
    pub fn json_kind(self) -> JsonKind {
        match self {
            Self::Boolean => JsonKind::Boolean,
            Self::Integer | Self::UnsignedInt | Self::PositiveInt | Self::Decimal => {
                JsonKind::Number
            }
            _ => JsonKind::String,
        }
    }
}

/// The type of an element.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    /// A primitive: a `value` attribute in XML, a JSON scalar.
    Primitive(Primitive),
    /// A datatype or backbone element with child elements.
    Complex(&'static TypeDef),
    /// A slot holding one inline resource (`Bundle.entry.resource`, `contained`, ...).
    Resource,
    /// The XHTML narrative `div`.
    Xhtml,
}

impl Type {
    /// The primitive type, if this is one.
    pub fn primitive(self) -> Option<Primitive> {
        match self {
            Self::Primitive(p) => Some(p),
            _ => None,
        }
    }
}

/// One concrete form of a choice element, e.g. `valueString` of `value[x]`.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    /// The full element name, e.g. `valueString`.
    pub name: &'static str,
    /// The type this name carries.
    pub ty: Type,
}

/// The type or types an element may have.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One type; the element name is the definition name.
    Single(Type),
    /// A choice `name[x]`: each allowed type has its own element name.
    Choice(&'static [Choice]),
}

/// One element of a resource, datatype or backbone element.
#[derive(Debug, Clone, Copy)]
pub struct ElementDef {
    /// The element name (for a choice, the name without `[x]`, e.g. `value`).
    pub name: &'static str,
    /// The element's type or types.
    pub shape: Shape,
    /// Whether the maximum cardinality is `*`.
    pub repeats: bool,
}

/// The elements of a resource, datatype or backbone element.
pub struct TypeDef {
    /// A resource type, datatype name or backbone path such as `Bundle.entry`.
    pub name: &'static str,
    /// Inherited elements (Resource, DomainResource), looked up after [`Self::elements`].
    pub base: Option<&'static TypeDef>,
    /// The elements defined here, in STU3 definition order.
    pub elements: &'static [ElementDef],
}

impl fmt::Debug for TypeDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypeDef({})", self.name)
    }
}

/// What is known about one named child element.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// The element name as a static string from the table.
    pub name: &'static str,
    /// The element's type.
    pub ty: Type,
    /// Whether the maximum cardinality is `*`.
    pub repeats: bool,
}

impl TypeDef {
    /// All elements, own first, then inherited.
    pub fn all_elements(&self) -> impl Iterator<Item = &'static ElementDef> + '_ {
        let mut chain = Vec::new();
        let mut def: Option<&TypeDef> = Some(self);
        while let Some(d) = def {
            chain.push(d.elements);
            def = d.base;
        }
        chain.into_iter().flat_map(|els| els.iter())
    }

    /// Looks up a child element by its concrete name (choice names like `valueString`
    /// included). `extension`, `modifierExtension` and `div` are not listed in definitions:
    /// the converters know them in every context.
    pub fn lookup(&self, name: &str) -> Option<Resolved> {
        let mut def: Option<&TypeDef> = Some(self);
        while let Some(d) = def {
            for el in d.elements {
                match el.shape {
                    Shape::Single(ty) => {
                        if el.name == name {
                            return Some(Resolved {
                                name: el.name,
                                ty,
                                repeats: el.repeats,
                            });
                        }
                    }
                    Shape::Choice(choices) => {
                        if name.len() > el.name.len() && name.starts_with(el.name) {
                            if let Some(c) = choices.iter().find(|c| c.name == name) {
                                return Some(Resolved {
                                    name: c.name,
                                    ty: c.ty,
                                    repeats: el.repeats,
                                });
                            }
                        }
                    }
                }
            }
            def = d.base;
        }
        None
    }
}

/// The definition of a resource type in scope.
pub fn resource(name: &str) -> Option<&'static TypeDef> {
    RESOURCES.iter().copied().find(|d| d.name == name)
}

/// The definition of a complex datatype in scope (e.g. `Identifier`, `Extension`).
pub fn datatype(name: &str) -> Option<&'static TypeDef> {
    DATATYPES.iter().copied().find(|d| d.name == name)
}

/// The resource types whose elements are known.
pub fn resources() -> &'static [&'static TypeDef] {
    RESOURCES
}

/// The complex datatypes whose elements are known.
pub fn datatypes() -> &'static [&'static TypeDef] {
    DATATYPES
}

/// The elements every resource type has (those of DomainResource), used for resource types
/// that are not in the table.
pub fn domain_resource() -> &'static TypeDef {
    &DOMAIN_RESOURCE
}

/// The Extension datatype.
pub fn extension() -> &'static TypeDef {
    &EXTENSION
}

/// The context in which child element names are resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ctx {
    /// Children of a known resource, datatype or backbone element.
    Def(&'static TypeDef),
    /// Children of a primitive (its extensions).
    Prim,
    /// A resource slot: the only child is a resource.
    Slot,
    /// Children of an element that is not in the table.
    Unknown,
}

impl Ctx {
    /// The context for the children of a resource.
    pub(crate) fn resource(name: &str) -> Ctx {
        Ctx::Def(resource(name).unwrap_or(&DOMAIN_RESOURCE))
    }

    /// The context for the children of an element of type `ty` (`None` = unknown).
    pub(crate) fn of(ty: Option<Type>) -> Ctx {
        match ty {
            Some(Type::Complex(d)) => Ctx::Def(d),
            Some(Type::Primitive(_)) => Ctx::Prim,
            Some(Type::Resource) => Ctx::Slot,
            Some(Type::Xhtml) | None => Ctx::Unknown,
        }
    }
}

/// Resolves a child element name in a context. `None` means the element is not known there.
pub(crate) fn child(ctx: Ctx, name: &str) -> Option<Resolved> {
    match name {
        "extension" => {
            return Some(Resolved {
                name: "extension",
                ty: Type::Complex(&EXTENSION),
                repeats: true,
            })
        }
        "modifierExtension" => {
            return Some(Resolved {
                name: "modifierExtension",
                ty: Type::Complex(&EXTENSION),
                repeats: true,
            })
        }
        "div" => {
            return Some(Resolved {
                name: "div",
                ty: Type::Xhtml,
                repeats: false,
            })
        }
        _ => {}
    }
    match ctx {
        Ctx::Def(d) => d.lookup(name),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

const fn one(name: &'static str, ty: Type) -> ElementDef {
    ElementDef {
        name,
        shape: Shape::Single(ty),
        repeats: false,
    }
}

const fn many(name: &'static str, ty: Type) -> ElementDef {
    ElementDef {
        name,
        shape: Shape::Single(ty),
        repeats: true,
    }
}

const fn choice(name: &'static str, choices: &'static [Choice]) -> ElementDef {
    ElementDef {
        name,
        shape: Shape::Choice(choices),
        repeats: false,
    }
}

macro_rules! cx {
    ($def:ident) => {
        Type::Complex(&$def)
    };
}

macro_rules! choices {
    ($prefix:literal: $($suffix:ident => $ty:expr),* $(,)?) => {
        &[$(Choice { name: concat!($prefix, stringify!($suffix)), ty: $ty }),*]
    };
}

macro_rules! def {
    ($name:ident, $label:literal, [$($el:expr),* $(,)?]) => {
        static $name: TypeDef = TypeDef { name: $label, base: None, elements: &[$($el),*] };
    };
    ($name:ident, $label:literal, $base:ident, [$($el:expr),* $(,)?]) => {
        static $name: TypeDef = TypeDef { name: $label, base: Some(&$base), elements: &[$($el),*] };
    };
}

const BOOLEAN: Type = Type::Primitive(Primitive::Boolean);
const INTEGER: Type = Type::Primitive(Primitive::Integer);
const UNSIGNED_INT: Type = Type::Primitive(Primitive::UnsignedInt);
const POSITIVE_INT: Type = Type::Primitive(Primitive::PositiveInt);
const DECIMAL: Type = Type::Primitive(Primitive::Decimal);
const BASE64: Type = Type::Primitive(Primitive::Base64Binary);
const STRING: Type = Type::Primitive(Primitive::String);
const CODE: Type = Type::Primitive(Primitive::Code);
const ID: Type = Type::Primitive(Primitive::Id);
const URI: Type = Type::Primitive(Primitive::Uri);
const MARKDOWN: Type = Type::Primitive(Primitive::Markdown);
const DATE: Type = Type::Primitive(Primitive::Date);
const DATE_TIME: Type = Type::Primitive(Primitive::DateTime);
const INSTANT: Type = Type::Primitive(Primitive::Instant);
const TIME: Type = Type::Primitive(Primitive::Time);
const OID: Type = Type::Primitive(Primitive::Oid);

static RESOURCES: &[&TypeDef] = &[
    &BUNDLE,
    &MESSAGE_HEADER,
    &COMPOSITION,
    &PATIENT,
    &ORGANIZATION,
    &PRACTITIONER,
    &PRACTITIONER_ROLE,
    &ENCOUNTER,
    &BINARY,
    &DOCUMENT_REFERENCE,
    &OPERATION_OUTCOME,
    &LOCATION,
    &DEVICE,
    &CONDITION,
    &ALLERGY_INTOLERANCE,
    &MEDICATION_STATEMENT,
    &MEDICATION,
    &OBSERVATION,
    &PROCEDURE,
    &LIST,
    &PARAMETERS,
];

static DATATYPES: &[&TypeDef] = &[
    &EXTENSION,
    &IDENTIFIER,
    &CODEABLE_CONCEPT,
    &CODING,
    &HUMAN_NAME,
    &ADDRESS,
    &CONTACT_POINT,
    &REFERENCE,
    &PERIOD,
    &META,
    &NARRATIVE,
    &ATTACHMENT,
    &QUANTITY,
    &AGE,
    &COUNT,
    &DISTANCE,
    &DURATION,
    &MONEY,
    &SIMPLE_QUANTITY,
    &RANGE,
    &RATIO,
    &ANNOTATION,
    &SAMPLED_DATA,
    &SIGNATURE,
    &TIMING,
    &DOSAGE,
];

// Every type an Extension value (and a Parameters value) may have in STU3.
static VALUE_ANY: &[Choice] = choices!("value":
    Base64Binary => BASE64,
    Boolean => BOOLEAN,
    Code => CODE,
    Date => DATE,
    DateTime => DATE_TIME,
    Decimal => DECIMAL,
    Id => ID,
    Instant => INSTANT,
    Integer => INTEGER,
    Markdown => MARKDOWN,
    Oid => OID,
    PositiveInt => POSITIVE_INT,
    String => STRING,
    Time => TIME,
    UnsignedInt => UNSIGNED_INT,
    Uri => URI,
    Address => cx!(ADDRESS),
    Age => cx!(AGE),
    Annotation => cx!(ANNOTATION),
    Attachment => cx!(ATTACHMENT),
    CodeableConcept => cx!(CODEABLE_CONCEPT),
    Coding => cx!(CODING),
    ContactPoint => cx!(CONTACT_POINT),
    Count => cx!(COUNT),
    Distance => cx!(DISTANCE),
    Duration => cx!(DURATION),
    HumanName => cx!(HUMAN_NAME),
    Identifier => cx!(IDENTIFIER),
    Money => cx!(MONEY),
    Period => cx!(PERIOD),
    Quantity => cx!(QUANTITY),
    Range => cx!(RANGE),
    Ratio => cx!(RATIO),
    Reference => cx!(REFERENCE),
    SampledData => cx!(SAMPLED_DATA),
    Signature => cx!(SIGNATURE),
    Timing => cx!(TIMING),
    Meta => cx!(META),
);

// --- Datatypes ---

def!(EXTENSION, "Extension", [choice("value", VALUE_ANY)]);

def!(
    IDENTIFIER,
    "Identifier",
    [
        one("use", CODE),
        one("type", cx!(CODEABLE_CONCEPT)),
        one("system", URI),
        one("value", STRING),
        one("period", cx!(PERIOD)),
        one("assigner", cx!(REFERENCE)),
    ]
);

def!(
    CODEABLE_CONCEPT,
    "CodeableConcept",
    [many("coding", cx!(CODING)), one("text", STRING)]
);

def!(
    CODING,
    "Coding",
    [
        one("system", URI),
        one("version", STRING),
        one("code", CODE),
        one("display", STRING),
        one("userSelected", BOOLEAN),
    ]
);

def!(
    HUMAN_NAME,
    "HumanName",
    [
        one("use", CODE),
        one("text", STRING),
        one("family", STRING),
        many("given", STRING),
        many("prefix", STRING),
        many("suffix", STRING),
        one("period", cx!(PERIOD)),
    ]
);

def!(
    ADDRESS,
    "Address",
    [
        one("use", CODE),
        one("type", CODE),
        one("text", STRING),
        many("line", STRING),
        one("city", STRING),
        one("district", STRING),
        one("state", STRING),
        one("postalCode", STRING),
        one("country", STRING),
        one("period", cx!(PERIOD)),
    ]
);

def!(
    CONTACT_POINT,
    "ContactPoint",
    [
        one("system", CODE),
        one("value", STRING),
        one("use", CODE),
        one("rank", POSITIVE_INT),
        one("period", cx!(PERIOD)),
    ]
);

def!(
    REFERENCE,
    "Reference",
    [
        one("reference", STRING),
        one("identifier", cx!(IDENTIFIER)),
        one("display", STRING),
    ]
);

def!(
    PERIOD,
    "Period",
    [one("start", DATE_TIME), one("end", DATE_TIME)]
);

def!(
    META,
    "Meta",
    [
        one("versionId", ID),
        one("lastUpdated", INSTANT),
        many("profile", URI),
        many("security", cx!(CODING)),
        many("tag", cx!(CODING)),
    ]
);

def!(
    NARRATIVE,
    "Narrative",
    [one("status", CODE), one("div", Type::Xhtml)]
);

def!(
    ATTACHMENT,
    "Attachment",
    [
        one("contentType", CODE),
        one("language", CODE),
        one("data", BASE64),
        one("url", URI),
        one("size", UNSIGNED_INT),
        one("hash", BASE64),
        one("title", STRING),
        one("creation", DATE_TIME),
    ]
);

macro_rules! quantity {
    ($name:ident, $label:literal) => {
        def!(
            $name,
            $label,
            [
                one("value", DECIMAL),
                one("comparator", CODE),
                one("unit", STRING),
                one("system", URI),
                one("code", CODE),
            ]
        );
    };
}

quantity!(QUANTITY, "Quantity");
quantity!(AGE, "Age");
quantity!(COUNT, "Count");
quantity!(DISTANCE, "Distance");
quantity!(DURATION, "Duration");
quantity!(MONEY, "Money");
quantity!(SIMPLE_QUANTITY, "SimpleQuantity");

def!(
    RANGE,
    "Range",
    [
        one("low", cx!(SIMPLE_QUANTITY)),
        one("high", cx!(SIMPLE_QUANTITY))
    ]
);

def!(
    RATIO,
    "Ratio",
    [
        one("numerator", cx!(QUANTITY)),
        one("denominator", cx!(QUANTITY))
    ]
);

def!(
    ANNOTATION,
    "Annotation",
    [
        choice(
            "author",
            choices!("author": Reference => cx!(REFERENCE), String => STRING)
        ),
        one("time", DATE_TIME),
        one("text", STRING),
    ]
);

def!(
    SAMPLED_DATA,
    "SampledData",
    [
        one("origin", cx!(SIMPLE_QUANTITY)),
        one("period", DECIMAL),
        one("factor", DECIMAL),
        one("lowerLimit", DECIMAL),
        one("upperLimit", DECIMAL),
        one("dimensions", POSITIVE_INT),
        one("data", STRING),
    ]
);

def!(
    SIGNATURE,
    "Signature",
    [
        many("type", cx!(CODING)),
        one("when", INSTANT),
        choice(
            "who",
            choices!("who": Uri => URI, Reference => cx!(REFERENCE))
        ),
        choice(
            "onBehalfOf",
            choices!("onBehalfOf": Uri => URI, Reference => cx!(REFERENCE))
        ),
        one("contentType", CODE),
        one("blob", BASE64),
    ]
);

def!(
    TIMING,
    "Timing",
    [
        many("event", DATE_TIME),
        one("repeat", cx!(TIMING_REPEAT)),
        one("code", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    TIMING_REPEAT,
    "Timing.repeat",
    [
        choice(
            "bounds",
            choices!("bounds":
                Duration => cx!(DURATION),
                Range => cx!(RANGE),
                Period => cx!(PERIOD),
            )
        ),
        one("count", INTEGER),
        one("countMax", INTEGER),
        one("duration", DECIMAL),
        one("durationMax", DECIMAL),
        one("durationUnit", CODE),
        one("frequency", INTEGER),
        one("frequencyMax", INTEGER),
        one("period", DECIMAL),
        one("periodMax", DECIMAL),
        one("periodUnit", CODE),
        many("dayOfWeek", CODE),
        many("timeOfDay", TIME),
        many("when", CODE),
        one("offset", UNSIGNED_INT),
    ]
);

def!(
    DOSAGE,
    "Dosage",
    [
        one("sequence", INTEGER),
        one("text", STRING),
        many("additionalInstruction", cx!(CODEABLE_CONCEPT)),
        one("patientInstruction", STRING),
        one("timing", cx!(TIMING)),
        choice(
            "asNeeded",
            choices!("asNeeded": Boolean => BOOLEAN, CodeableConcept => cx!(CODEABLE_CONCEPT))
        ),
        one("site", cx!(CODEABLE_CONCEPT)),
        one("route", cx!(CODEABLE_CONCEPT)),
        one("method", cx!(CODEABLE_CONCEPT)),
        choice(
            "dose",
            choices!("dose": Range => cx!(RANGE), Quantity => cx!(SIMPLE_QUANTITY))
        ),
        one("maxDosePerPeriod", cx!(RATIO)),
        one("maxDosePerAdministration", cx!(SIMPLE_QUANTITY)),
        one("maxDosePerLifetime", cx!(SIMPLE_QUANTITY)),
        choice(
            "rate",
            choices!("rate":
                Ratio => cx!(RATIO),
                Range => cx!(RANGE),
                Quantity => cx!(SIMPLE_QUANTITY),
            )
        ),
    ]
);

// --- Resource bases ---

def!(
    RESOURCE,
    "Resource",
    [
        one("id", ID),
        one("meta", cx!(META)),
        one("implicitRules", URI),
        one("language", CODE),
    ]
);

def!(
    DOMAIN_RESOURCE,
    "DomainResource",
    RESOURCE,
    [
        one("text", cx!(NARRATIVE)),
        many("contained", Type::Resource),
    ]
);

// --- Bundle ---

def!(
    BUNDLE,
    "Bundle",
    RESOURCE,
    [
        one("identifier", cx!(IDENTIFIER)),
        one("type", CODE),
        one("total", UNSIGNED_INT),
        many("link", cx!(BUNDLE_LINK)),
        many("entry", cx!(BUNDLE_ENTRY)),
        one("signature", cx!(SIGNATURE)),
    ]
);

def!(
    BUNDLE_LINK,
    "Bundle.link",
    [one("relation", STRING), one("url", URI)]
);

def!(
    BUNDLE_ENTRY,
    "Bundle.entry",
    [
        many("link", cx!(BUNDLE_LINK)),
        one("fullUrl", URI),
        one("resource", Type::Resource),
        one("search", cx!(BUNDLE_ENTRY_SEARCH)),
        one("request", cx!(BUNDLE_ENTRY_REQUEST)),
        one("response", cx!(BUNDLE_ENTRY_RESPONSE)),
    ]
);

def!(
    BUNDLE_ENTRY_SEARCH,
    "Bundle.entry.search",
    [one("mode", CODE), one("score", DECIMAL)]
);

def!(
    BUNDLE_ENTRY_REQUEST,
    "Bundle.entry.request",
    [
        one("method", CODE),
        one("url", URI),
        one("ifNoneMatch", STRING),
        one("ifModifiedSince", INSTANT),
        one("ifMatch", STRING),
        one("ifNoneExist", STRING),
    ]
);

def!(
    BUNDLE_ENTRY_RESPONSE,
    "Bundle.entry.response",
    [
        one("status", STRING),
        one("location", URI),
        one("etag", STRING),
        one("lastModified", INSTANT),
        one("outcome", Type::Resource),
    ]
);

// --- MessageHeader ---

def!(
    MESSAGE_HEADER,
    "MessageHeader",
    DOMAIN_RESOURCE,
    [
        one("event", cx!(CODING)),
        many("destination", cx!(MESSAGE_HEADER_DESTINATION)),
        one("sender", cx!(REFERENCE)),
        one("timestamp", INSTANT),
        one("enterer", cx!(REFERENCE)),
        one("author", cx!(REFERENCE)),
        one("source", cx!(MESSAGE_HEADER_SOURCE)),
        one("receiver", cx!(REFERENCE)),
        one("responsible", cx!(REFERENCE)),
        one("reason", cx!(CODEABLE_CONCEPT)),
        one("response", cx!(MESSAGE_HEADER_RESPONSE)),
        many("focus", cx!(REFERENCE)),
    ]
);

def!(
    MESSAGE_HEADER_DESTINATION,
    "MessageHeader.destination",
    [
        one("name", STRING),
        one("target", cx!(REFERENCE)),
        one("endpoint", URI),
    ]
);

def!(
    MESSAGE_HEADER_SOURCE,
    "MessageHeader.source",
    [
        one("name", STRING),
        one("software", STRING),
        one("version", STRING),
        one("contact", cx!(CONTACT_POINT)),
        one("endpoint", URI),
    ]
);

def!(
    MESSAGE_HEADER_RESPONSE,
    "MessageHeader.response",
    [
        one("identifier", ID),
        one("code", CODE),
        one("details", cx!(REFERENCE)),
    ]
);

// --- Composition ---

def!(
    COMPOSITION,
    "Composition",
    DOMAIN_RESOURCE,
    [
        one("identifier", cx!(IDENTIFIER)),
        one("status", CODE),
        one("type", cx!(CODEABLE_CONCEPT)),
        one("class", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        one("encounter", cx!(REFERENCE)),
        one("date", DATE_TIME),
        many("author", cx!(REFERENCE)),
        one("title", STRING),
        one("confidentiality", CODE),
        many("attester", cx!(COMPOSITION_ATTESTER)),
        one("custodian", cx!(REFERENCE)),
        many("relatesTo", cx!(COMPOSITION_RELATES_TO)),
        many("event", cx!(COMPOSITION_EVENT)),
        many("section", cx!(COMPOSITION_SECTION)),
    ]
);

def!(
    COMPOSITION_ATTESTER,
    "Composition.attester",
    [
        many("mode", CODE),
        one("time", DATE_TIME),
        one("party", cx!(REFERENCE)),
    ]
);

def!(
    COMPOSITION_RELATES_TO,
    "Composition.relatesTo",
    [
        one("code", CODE),
        choice(
            "target",
            choices!("target": Identifier => cx!(IDENTIFIER), Reference => cx!(REFERENCE))
        ),
    ]
);

def!(
    COMPOSITION_EVENT,
    "Composition.event",
    [
        many("code", cx!(CODEABLE_CONCEPT)),
        one("period", cx!(PERIOD)),
        many("detail", cx!(REFERENCE)),
    ]
);

def!(
    COMPOSITION_SECTION,
    "Composition.section",
    [
        one("title", STRING),
        one("code", cx!(CODEABLE_CONCEPT)),
        one("text", cx!(NARRATIVE)),
        one("mode", CODE),
        one("orderedBy", cx!(CODEABLE_CONCEPT)),
        many("entry", cx!(REFERENCE)),
        one("emptyReason", cx!(CODEABLE_CONCEPT)),
        many("section", cx!(COMPOSITION_SECTION)),
    ]
);

// --- Patient ---

def!(
    PATIENT,
    "Patient",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("active", BOOLEAN),
        many("name", cx!(HUMAN_NAME)),
        many("telecom", cx!(CONTACT_POINT)),
        one("gender", CODE),
        one("birthDate", DATE),
        choice(
            "deceased",
            choices!("deceased": Boolean => BOOLEAN, DateTime => DATE_TIME)
        ),
        many("address", cx!(ADDRESS)),
        one("maritalStatus", cx!(CODEABLE_CONCEPT)),
        choice(
            "multipleBirth",
            choices!("multipleBirth": Boolean => BOOLEAN, Integer => INTEGER)
        ),
        many("photo", cx!(ATTACHMENT)),
        many("contact", cx!(PATIENT_CONTACT)),
        one("animal", cx!(PATIENT_ANIMAL)),
        many("communication", cx!(PATIENT_COMMUNICATION)),
        many("generalPractitioner", cx!(REFERENCE)),
        one("managingOrganization", cx!(REFERENCE)),
        many("link", cx!(PATIENT_LINK)),
    ]
);

def!(
    PATIENT_CONTACT,
    "Patient.contact",
    [
        many("relationship", cx!(CODEABLE_CONCEPT)),
        one("name", cx!(HUMAN_NAME)),
        many("telecom", cx!(CONTACT_POINT)),
        one("address", cx!(ADDRESS)),
        one("gender", CODE),
        one("organization", cx!(REFERENCE)),
        one("period", cx!(PERIOD)),
    ]
);

def!(
    PATIENT_ANIMAL,
    "Patient.animal",
    [
        one("species", cx!(CODEABLE_CONCEPT)),
        one("breed", cx!(CODEABLE_CONCEPT)),
        one("genderStatus", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    PATIENT_COMMUNICATION,
    "Patient.communication",
    [
        one("language", cx!(CODEABLE_CONCEPT)),
        one("preferred", BOOLEAN)
    ]
);

def!(
    PATIENT_LINK,
    "Patient.link",
    [one("other", cx!(REFERENCE)), one("type", CODE)]
);

// --- Organization ---

def!(
    ORGANIZATION,
    "Organization",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("active", BOOLEAN),
        many("type", cx!(CODEABLE_CONCEPT)),
        one("name", STRING),
        many("alias", STRING),
        many("telecom", cx!(CONTACT_POINT)),
        many("address", cx!(ADDRESS)),
        one("partOf", cx!(REFERENCE)),
        many("contact", cx!(ORGANIZATION_CONTACT)),
        many("endpoint", cx!(REFERENCE)),
    ]
);

def!(
    ORGANIZATION_CONTACT,
    "Organization.contact",
    [
        one("purpose", cx!(CODEABLE_CONCEPT)),
        one("name", cx!(HUMAN_NAME)),
        many("telecom", cx!(CONTACT_POINT)),
        one("address", cx!(ADDRESS)),
    ]
);

// --- Practitioner, PractitionerRole ---

def!(
    PRACTITIONER,
    "Practitioner",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("active", BOOLEAN),
        many("name", cx!(HUMAN_NAME)),
        many("telecom", cx!(CONTACT_POINT)),
        many("address", cx!(ADDRESS)),
        one("gender", CODE),
        one("birthDate", DATE),
        many("photo", cx!(ATTACHMENT)),
        many("qualification", cx!(PRACTITIONER_QUALIFICATION)),
        many("communication", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    PRACTITIONER_QUALIFICATION,
    "Practitioner.qualification",
    [
        many("identifier", cx!(IDENTIFIER)),
        one("code", cx!(CODEABLE_CONCEPT)),
        one("period", cx!(PERIOD)),
        one("issuer", cx!(REFERENCE)),
    ]
);

def!(
    PRACTITIONER_ROLE,
    "PractitionerRole",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("active", BOOLEAN),
        one("period", cx!(PERIOD)),
        one("practitioner", cx!(REFERENCE)),
        one("organization", cx!(REFERENCE)),
        many("code", cx!(CODEABLE_CONCEPT)),
        many("specialty", cx!(CODEABLE_CONCEPT)),
        many("location", cx!(REFERENCE)),
        many("healthcareService", cx!(REFERENCE)),
        many("telecom", cx!(CONTACT_POINT)),
        many("availableTime", cx!(PRACTITIONER_ROLE_AVAILABLE_TIME)),
        many("notAvailable", cx!(PRACTITIONER_ROLE_NOT_AVAILABLE)),
        one("availabilityExceptions", STRING),
        many("endpoint", cx!(REFERENCE)),
    ]
);

def!(
    PRACTITIONER_ROLE_AVAILABLE_TIME,
    "PractitionerRole.availableTime",
    [
        many("daysOfWeek", CODE),
        one("allDay", BOOLEAN),
        one("availableStartTime", TIME),
        one("availableEndTime", TIME),
    ]
);

def!(
    PRACTITIONER_ROLE_NOT_AVAILABLE,
    "PractitionerRole.notAvailable",
    [one("description", STRING), one("during", cx!(PERIOD))]
);

// --- Encounter ---

def!(
    ENCOUNTER,
    "Encounter",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("status", CODE),
        many("statusHistory", cx!(ENCOUNTER_STATUS_HISTORY)),
        one("class", cx!(CODING)),
        many("classHistory", cx!(ENCOUNTER_CLASS_HISTORY)),
        many("type", cx!(CODEABLE_CONCEPT)),
        one("priority", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        many("episodeOfCare", cx!(REFERENCE)),
        many("incomingReferral", cx!(REFERENCE)),
        many("participant", cx!(ENCOUNTER_PARTICIPANT)),
        one("appointment", cx!(REFERENCE)),
        one("period", cx!(PERIOD)),
        one("length", cx!(DURATION)),
        many("reason", cx!(CODEABLE_CONCEPT)),
        many("diagnosis", cx!(ENCOUNTER_DIAGNOSIS)),
        many("account", cx!(REFERENCE)),
        one("hospitalization", cx!(ENCOUNTER_HOSPITALIZATION)),
        many("location", cx!(ENCOUNTER_LOCATION)),
        one("serviceProvider", cx!(REFERENCE)),
        one("partOf", cx!(REFERENCE)),
    ]
);

def!(
    ENCOUNTER_STATUS_HISTORY,
    "Encounter.statusHistory",
    [one("status", CODE), one("period", cx!(PERIOD))]
);

def!(
    ENCOUNTER_CLASS_HISTORY,
    "Encounter.classHistory",
    [one("class", cx!(CODING)), one("period", cx!(PERIOD))]
);

def!(
    ENCOUNTER_PARTICIPANT,
    "Encounter.participant",
    [
        many("type", cx!(CODEABLE_CONCEPT)),
        one("period", cx!(PERIOD)),
        one("individual", cx!(REFERENCE)),
    ]
);

def!(
    ENCOUNTER_DIAGNOSIS,
    "Encounter.diagnosis",
    [
        one("condition", cx!(REFERENCE)),
        one("role", cx!(CODEABLE_CONCEPT)),
        one("rank", POSITIVE_INT),
    ]
);

def!(
    ENCOUNTER_HOSPITALIZATION,
    "Encounter.hospitalization",
    [
        one("preAdmissionIdentifier", cx!(IDENTIFIER)),
        one("origin", cx!(REFERENCE)),
        one("admitSource", cx!(CODEABLE_CONCEPT)),
        one("reAdmission", cx!(CODEABLE_CONCEPT)),
        many("dietPreference", cx!(CODEABLE_CONCEPT)),
        many("specialCourtesy", cx!(CODEABLE_CONCEPT)),
        many("specialArrangement", cx!(CODEABLE_CONCEPT)),
        one("destination", cx!(REFERENCE)),
        one("dischargeDisposition", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    ENCOUNTER_LOCATION,
    "Encounter.location",
    [
        one("location", cx!(REFERENCE)),
        one("status", CODE),
        one("period", cx!(PERIOD)),
    ]
);

// --- Binary ---

def!(
    BINARY,
    "Binary",
    RESOURCE,
    [
        one("contentType", CODE),
        one("securityContext", cx!(REFERENCE)),
        one("content", BASE64),
    ]
);

// --- DocumentReference ---

def!(
    DOCUMENT_REFERENCE,
    "DocumentReference",
    DOMAIN_RESOURCE,
    [
        one("masterIdentifier", cx!(IDENTIFIER)),
        many("identifier", cx!(IDENTIFIER)),
        one("status", CODE),
        one("docStatus", CODE),
        one("type", cx!(CODEABLE_CONCEPT)),
        one("class", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        one("created", DATE_TIME),
        one("indexed", INSTANT),
        many("author", cx!(REFERENCE)),
        one("authenticator", cx!(REFERENCE)),
        one("custodian", cx!(REFERENCE)),
        many("relatesTo", cx!(DOCUMENT_REFERENCE_RELATES_TO)),
        one("description", STRING),
        many("securityLabel", cx!(CODEABLE_CONCEPT)),
        many("content", cx!(DOCUMENT_REFERENCE_CONTENT)),
        one("context", cx!(DOCUMENT_REFERENCE_CONTEXT)),
    ]
);

def!(
    DOCUMENT_REFERENCE_RELATES_TO,
    "DocumentReference.relatesTo",
    [one("code", CODE), one("target", cx!(REFERENCE))]
);

def!(
    DOCUMENT_REFERENCE_CONTENT,
    "DocumentReference.content",
    [
        one("attachment", cx!(ATTACHMENT)),
        one("format", cx!(CODING))
    ]
);

def!(
    DOCUMENT_REFERENCE_CONTEXT,
    "DocumentReference.context",
    [
        one("encounter", cx!(REFERENCE)),
        many("event", cx!(CODEABLE_CONCEPT)),
        one("period", cx!(PERIOD)),
        one("facilityType", cx!(CODEABLE_CONCEPT)),
        one("practiceSetting", cx!(CODEABLE_CONCEPT)),
        one("sourcePatientInfo", cx!(REFERENCE)),
        many("related", cx!(DOCUMENT_REFERENCE_CONTEXT_RELATED)),
    ]
);

def!(
    DOCUMENT_REFERENCE_CONTEXT_RELATED,
    "DocumentReference.context.related",
    [
        one("identifier", cx!(IDENTIFIER)),
        one("ref", cx!(REFERENCE))
    ]
);

// --- OperationOutcome ---

def!(
    OPERATION_OUTCOME,
    "OperationOutcome",
    DOMAIN_RESOURCE,
    [many("issue", cx!(OPERATION_OUTCOME_ISSUE))]
);

def!(
    OPERATION_OUTCOME_ISSUE,
    "OperationOutcome.issue",
    [
        one("severity", CODE),
        one("code", CODE),
        one("details", cx!(CODEABLE_CONCEPT)),
        one("diagnostics", STRING),
        many("location", STRING),
        many("expression", STRING),
    ]
);

// --- Location ---

def!(
    LOCATION,
    "Location",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("status", CODE),
        one("operationalStatus", cx!(CODING)),
        one("name", STRING),
        many("alias", STRING),
        one("description", STRING),
        one("mode", CODE),
        one("type", cx!(CODEABLE_CONCEPT)),
        many("telecom", cx!(CONTACT_POINT)),
        one("address", cx!(ADDRESS)),
        one("physicalType", cx!(CODEABLE_CONCEPT)),
        one("position", cx!(LOCATION_POSITION)),
        one("managingOrganization", cx!(REFERENCE)),
        one("partOf", cx!(REFERENCE)),
        many("endpoint", cx!(REFERENCE)),
    ]
);

def!(
    LOCATION_POSITION,
    "Location.position",
    [
        one("longitude", DECIMAL),
        one("latitude", DECIMAL),
        one("altitude", DECIMAL),
    ]
);

// --- Device ---

def!(
    DEVICE,
    "Device",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("udi", cx!(DEVICE_UDI)),
        one("status", CODE),
        one("type", cx!(CODEABLE_CONCEPT)),
        one("lotNumber", STRING),
        one("manufacturer", STRING),
        one("manufactureDate", DATE_TIME),
        one("expirationDate", DATE_TIME),
        one("model", STRING),
        one("version", STRING),
        one("patient", cx!(REFERENCE)),
        one("owner", cx!(REFERENCE)),
        many("contact", cx!(CONTACT_POINT)),
        one("location", cx!(REFERENCE)),
        one("url", URI),
        many("note", cx!(ANNOTATION)),
        many("safety", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    DEVICE_UDI,
    "Device.udi",
    [
        one("deviceIdentifier", STRING),
        one("name", STRING),
        one("jurisdiction", URI),
        one("carrierHRF", STRING),
        one("carrierAIDC", BASE64),
        one("issuer", URI),
        one("entryType", CODE),
    ]
);

// --- Condition ---

def!(
    CONDITION,
    "Condition",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("clinicalStatus", CODE),
        one("verificationStatus", CODE),
        many("category", cx!(CODEABLE_CONCEPT)),
        one("severity", cx!(CODEABLE_CONCEPT)),
        one("code", cx!(CODEABLE_CONCEPT)),
        many("bodySite", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        one("context", cx!(REFERENCE)),
        choice(
            "onset",
            choices!("onset":
                DateTime => DATE_TIME,
                Age => cx!(AGE),
                Period => cx!(PERIOD),
                Range => cx!(RANGE),
                String => STRING,
            )
        ),
        choice(
            "abatement",
            choices!("abatement":
                DateTime => DATE_TIME,
                Age => cx!(AGE),
                Boolean => BOOLEAN,
                Period => cx!(PERIOD),
                Range => cx!(RANGE),
                String => STRING,
            )
        ),
        one("assertedDate", DATE_TIME),
        one("asserter", cx!(REFERENCE)),
        one("stage", cx!(CONDITION_STAGE)),
        many("evidence", cx!(CONDITION_EVIDENCE)),
        many("note", cx!(ANNOTATION)),
    ]
);

def!(
    CONDITION_STAGE,
    "Condition.stage",
    [
        one("summary", cx!(CODEABLE_CONCEPT)),
        many("assessment", cx!(REFERENCE)),
    ]
);

def!(
    CONDITION_EVIDENCE,
    "Condition.evidence",
    [
        many("code", cx!(CODEABLE_CONCEPT)),
        many("detail", cx!(REFERENCE)),
    ]
);

// --- AllergyIntolerance ---

def!(
    ALLERGY_INTOLERANCE,
    "AllergyIntolerance",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("clinicalStatus", CODE),
        one("verificationStatus", CODE),
        one("type", CODE),
        many("category", CODE),
        one("criticality", CODE),
        one("code", cx!(CODEABLE_CONCEPT)),
        one("patient", cx!(REFERENCE)),
        choice(
            "onset",
            choices!("onset":
                DateTime => DATE_TIME,
                Age => cx!(AGE),
                Period => cx!(PERIOD),
                Range => cx!(RANGE),
                String => STRING,
            )
        ),
        one("assertedDate", DATE_TIME),
        one("recorder", cx!(REFERENCE)),
        one("asserter", cx!(REFERENCE)),
        one("lastOccurrence", DATE_TIME),
        many("note", cx!(ANNOTATION)),
        many("reaction", cx!(ALLERGY_INTOLERANCE_REACTION)),
    ]
);

def!(
    ALLERGY_INTOLERANCE_REACTION,
    "AllergyIntolerance.reaction",
    [
        one("substance", cx!(CODEABLE_CONCEPT)),
        many("manifestation", cx!(CODEABLE_CONCEPT)),
        one("description", STRING),
        one("onset", DATE_TIME),
        one("severity", CODE),
        one("exposureRoute", cx!(CODEABLE_CONCEPT)),
        many("note", cx!(ANNOTATION)),
    ]
);

// --- MedicationStatement, Medication ---

def!(
    MEDICATION_STATEMENT,
    "MedicationStatement",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        many("basedOn", cx!(REFERENCE)),
        many("partOf", cx!(REFERENCE)),
        one("context", cx!(REFERENCE)),
        one("status", CODE),
        one("category", cx!(CODEABLE_CONCEPT)),
        choice(
            "medication",
            choices!("medication":
                CodeableConcept => cx!(CODEABLE_CONCEPT),
                Reference => cx!(REFERENCE),
            )
        ),
        choice(
            "effective",
            choices!("effective": DateTime => DATE_TIME, Period => cx!(PERIOD))
        ),
        one("dateAsserted", DATE_TIME),
        one("informationSource", cx!(REFERENCE)),
        one("subject", cx!(REFERENCE)),
        many("derivedFrom", cx!(REFERENCE)),
        one("taken", CODE),
        many("reasonNotTaken", cx!(CODEABLE_CONCEPT)),
        many("reasonCode", cx!(CODEABLE_CONCEPT)),
        many("reasonReference", cx!(REFERENCE)),
        many("note", cx!(ANNOTATION)),
        many("dosage", cx!(DOSAGE)),
    ]
);

def!(
    MEDICATION,
    "Medication",
    DOMAIN_RESOURCE,
    [
        one("code", cx!(CODEABLE_CONCEPT)),
        one("status", CODE),
        one("isBrand", BOOLEAN),
        one("isOverTheCounter", BOOLEAN),
        one("manufacturer", cx!(REFERENCE)),
        one("form", cx!(CODEABLE_CONCEPT)),
        many("ingredient", cx!(MEDICATION_INGREDIENT)),
        one("package", cx!(MEDICATION_PACKAGE)),
        many("image", cx!(ATTACHMENT)),
    ]
);

def!(
    MEDICATION_INGREDIENT,
    "Medication.ingredient",
    [
        choice(
            "item",
            choices!("item":
                CodeableConcept => cx!(CODEABLE_CONCEPT),
                Reference => cx!(REFERENCE),
            )
        ),
        one("isActive", BOOLEAN),
        one("amount", cx!(RATIO)),
    ]
);

def!(
    MEDICATION_PACKAGE,
    "Medication.package",
    [
        one("container", cx!(CODEABLE_CONCEPT)),
        many("content", cx!(MEDICATION_PACKAGE_CONTENT)),
        many("batch", cx!(MEDICATION_PACKAGE_BATCH)),
    ]
);

def!(
    MEDICATION_PACKAGE_CONTENT,
    "Medication.package.content",
    [
        choice(
            "item",
            choices!("item":
                CodeableConcept => cx!(CODEABLE_CONCEPT),
                Reference => cx!(REFERENCE),
            )
        ),
        one("amount", cx!(SIMPLE_QUANTITY)),
    ]
);

def!(
    MEDICATION_PACKAGE_BATCH,
    "Medication.package.batch",
    [one("lotNumber", STRING), one("expirationDate", DATE_TIME)]
);

// --- Observation ---

static OBSERVATION_VALUE: &[Choice] = choices!("value":
    Quantity => cx!(QUANTITY),
    CodeableConcept => cx!(CODEABLE_CONCEPT),
    String => STRING,
    Boolean => BOOLEAN,
    Range => cx!(RANGE),
    Ratio => cx!(RATIO),
    SampledData => cx!(SAMPLED_DATA),
    Attachment => cx!(ATTACHMENT),
    Time => TIME,
    DateTime => DATE_TIME,
    Period => cx!(PERIOD),
);

def!(
    OBSERVATION,
    "Observation",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        many("basedOn", cx!(REFERENCE)),
        one("status", CODE),
        many("category", cx!(CODEABLE_CONCEPT)),
        one("code", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        one("context", cx!(REFERENCE)),
        choice(
            "effective",
            choices!("effective": DateTime => DATE_TIME, Period => cx!(PERIOD))
        ),
        one("issued", INSTANT),
        many("performer", cx!(REFERENCE)),
        choice("value", OBSERVATION_VALUE),
        one("dataAbsentReason", cx!(CODEABLE_CONCEPT)),
        one("interpretation", cx!(CODEABLE_CONCEPT)),
        one("comment", STRING),
        one("bodySite", cx!(CODEABLE_CONCEPT)),
        one("method", cx!(CODEABLE_CONCEPT)),
        one("specimen", cx!(REFERENCE)),
        one("device", cx!(REFERENCE)),
        many("referenceRange", cx!(OBSERVATION_REFERENCE_RANGE)),
        many("related", cx!(OBSERVATION_RELATED)),
        many("component", cx!(OBSERVATION_COMPONENT)),
    ]
);

def!(
    OBSERVATION_REFERENCE_RANGE,
    "Observation.referenceRange",
    [
        one("low", cx!(SIMPLE_QUANTITY)),
        one("high", cx!(SIMPLE_QUANTITY)),
        one("type", cx!(CODEABLE_CONCEPT)),
        many("appliesTo", cx!(CODEABLE_CONCEPT)),
        one("age", cx!(RANGE)),
        one("text", STRING),
    ]
);

def!(
    OBSERVATION_RELATED,
    "Observation.related",
    [one("type", CODE), one("target", cx!(REFERENCE))]
);

def!(
    OBSERVATION_COMPONENT,
    "Observation.component",
    [
        one("code", cx!(CODEABLE_CONCEPT)),
        choice("value", OBSERVATION_VALUE),
        one("dataAbsentReason", cx!(CODEABLE_CONCEPT)),
        one("interpretation", cx!(CODEABLE_CONCEPT)),
        many("referenceRange", cx!(OBSERVATION_REFERENCE_RANGE)),
    ]
);

// --- Procedure ---

def!(
    PROCEDURE,
    "Procedure",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        many("definition", cx!(REFERENCE)),
        many("basedOn", cx!(REFERENCE)),
        many("partOf", cx!(REFERENCE)),
        one("status", CODE),
        one("notDone", BOOLEAN),
        one("notDoneReason", cx!(CODEABLE_CONCEPT)),
        one("category", cx!(CODEABLE_CONCEPT)),
        one("code", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        one("context", cx!(REFERENCE)),
        choice(
            "performed",
            choices!("performed": DateTime => DATE_TIME, Period => cx!(PERIOD))
        ),
        many("performer", cx!(PROCEDURE_PERFORMER)),
        one("location", cx!(REFERENCE)),
        many("reasonCode", cx!(CODEABLE_CONCEPT)),
        many("reasonReference", cx!(REFERENCE)),
        many("bodySite", cx!(CODEABLE_CONCEPT)),
        one("outcome", cx!(CODEABLE_CONCEPT)),
        many("report", cx!(REFERENCE)),
        many("complication", cx!(CODEABLE_CONCEPT)),
        many("complicationDetail", cx!(REFERENCE)),
        many("followUp", cx!(CODEABLE_CONCEPT)),
        many("note", cx!(ANNOTATION)),
        many("focalDevice", cx!(PROCEDURE_FOCAL_DEVICE)),
        many("usedReference", cx!(REFERENCE)),
        many("usedCode", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    PROCEDURE_PERFORMER,
    "Procedure.performer",
    [
        one("role", cx!(CODEABLE_CONCEPT)),
        one("actor", cx!(REFERENCE)),
        one("onBehalfOf", cx!(REFERENCE)),
    ]
);

def!(
    PROCEDURE_FOCAL_DEVICE,
    "Procedure.focalDevice",
    [
        one("action", cx!(CODEABLE_CONCEPT)),
        one("manipulated", cx!(REFERENCE)),
    ]
);

// --- List ---

def!(
    LIST,
    "List",
    DOMAIN_RESOURCE,
    [
        many("identifier", cx!(IDENTIFIER)),
        one("status", CODE),
        one("mode", CODE),
        one("title", STRING),
        one("code", cx!(CODEABLE_CONCEPT)),
        one("subject", cx!(REFERENCE)),
        one("encounter", cx!(REFERENCE)),
        one("date", DATE_TIME),
        one("source", cx!(REFERENCE)),
        one("orderedBy", cx!(CODEABLE_CONCEPT)),
        many("note", cx!(ANNOTATION)),
        many("entry", cx!(LIST_ENTRY)),
        one("emptyReason", cx!(CODEABLE_CONCEPT)),
    ]
);

def!(
    LIST_ENTRY,
    "List.entry",
    [
        one("flag", cx!(CODEABLE_CONCEPT)),
        one("deleted", BOOLEAN),
        one("date", DATE_TIME),
        one("item", cx!(REFERENCE)),
    ]
);

// --- Parameters ---

def!(
    PARAMETERS,
    "Parameters",
    RESOURCE,
    [many("parameter", cx!(PARAMETERS_PARAMETER))]
);

def!(
    PARAMETERS_PARAMETER,
    "Parameters.parameter",
    [
        one("name", STRING),
        choice("value", VALUE_ANY),
        one("resource", Type::Resource),
        many("part", cx!(PARAMETERS_PARAMETER)),
    ]
);
