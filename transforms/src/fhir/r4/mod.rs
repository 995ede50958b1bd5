//! FHIR R4 (4.0.1) in JSON: typed resources for what the hub writes for results systems (the
//! pathology test report bundle, which [`pathology`] writes straight from the ORU), and a
//! reader that puts R4 input through the same hostile-input checks as STU3
//! ([`super::Limits`]: size, depth, element count, string length; [`super::parse_json_with`])
//! before it is read into the types.
//!
//! Only the elements the hub writes are modelled; every optional element is left out of the
//! JSON when empty, so what is written says only what the source said. A bundle the hub
//! writes reads into these types and writes back ([`to_json`]) byte for byte: a property
//! test holds the writer to that, so it writes nothing the model does not know.

pub mod pathology;
mod ser;

use serde::{Deserialize, Serialize};

/// Text in a resource. Fixed text (systems, profiles, codes) is borrowed rather than copied
/// into every resource that names it; short text (codes, units, values, names) is held in
/// place; the rest is shared.
#[derive(Clone)]
pub struct Text(Held);

#[derive(Clone)]
enum Held {
    /// Fixed text that JSON takes as it stands (see [`Text::fixed`]).
    Fixed(&'static str),
    /// In place, or shared.
    Str(smol_str::SmolStr),
}

/// The scheme of the URLs of resources in a bundle.
pub const URN_UUID: &str = "urn:uuid:";

// As small as a borrowed `str` and its tag: resources hold many.
const _: () = assert!(std::mem::size_of::<Text>() == 24);

impl Default for Text {
    fn default() -> Self {
        Text::fixed("")
    }
}

impl Text {
    /// Fixed text, borrowed. It is written to JSON as it stands, so it must hold nothing
    /// JSON escapes (no control characters, quotes or backslashes): fixed text is the
    /// hub's own systems, profiles and codes.
    pub const fn fixed(s: &'static str) -> Self {
        debug_assert!(ser::plain(s), "fixed text needs escaping");
        Text(Held::Fixed(s))
    }

    /// A copy of `s`: in place when short, else shared from here on.
    pub fn copy(s: &str) -> Self {
        Text(Held::Str(smol_str::SmolStr::new(s)))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Held::Fixed(s) => s,
            Held::Str(s) => s.as_str(),
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Text::fixed(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Held::Str(s.into()))
    }
}

impl FromIterator<char> for Text {
    fn from_iter<I: IntoIterator<Item = char>>(iter: I) -> Self {
        Text::from(iter.into_iter().collect::<String>())
    }
}

/// Text is equal by what it says, however it is held.
impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Held::Fixed(text) => s.serialize_newtype_struct(ser::PLAIN, text),
            _ => s.serialize_str(self.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

/// Profiles and systems named in what the hub writes.
pub mod systems {
    pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
    pub const ODS_ORGANIZATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    pub const SNOMED: &str = "http://snomed.info/sct";
    pub const LOINC: &str = "http://loinc.org";
    pub const UCUM: &str = "http://unitsofmeasure.org";
    pub const OBSERVATION_CATEGORY: &str =
        "http://terminology.hl7.org/CodeSystem/observation-category";
    pub const INTERPRETATION: &str =
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    pub const V2_DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
    pub const V2_IDENTIFIER_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
    pub const RFC4122: &str = "urn:ietf:rfc:3986";
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "<[Text]>::is_empty")]
    pub profile: Fixed<Text>,
}

impl Meta {
    pub fn is_empty(&self) -> bool {
        self.profile.is_empty()
    }
}

/// A list that is often the same fixed list (a category, a code's codings): borrowed then,
/// so it costs nothing per resource.
pub type Fixed<T> = std::borrow::Cow<'static, [T]>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "<[Coding]>::is_empty")]
    pub coding: Fixed<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigner: Option<Box<Reference>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Box<Identifier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<Text>,
}

impl Coding {
    /// A fixed code of a fixed system.
    pub const fn fixed(system: &'static str, code: &'static str, display: &'static str) -> Self {
        Coding {
            system: Some(Text::fixed(system)),
            code: Some(Text::fixed(code)),
            display: Some(Text::fixed(display)),
        }
    }
}

impl Reference {
    pub fn to(full_url: impl Into<Text>) -> Self {
        Self {
            reference: Some(full_url.into()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HumanName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suffix: Vec<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub text: Text,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub general_practitioner: Vec<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Practitioner {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: Text,
    pub intent: Text,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept>,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authored_on: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specimen: Vec<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecimenCollection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected_date_time: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Specimen {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<CodeableConcept>,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_time: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<SpecimenCollection>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub based_on: Vec<Reference>,
    pub status: Text,
    #[serde(default, skip_serializing_if = "<[CodeableConcept]>::is_empty")]
    pub category: Fixed<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_string: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specimen: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_range: Vec<ReferenceRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has_member: Vec<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticReport {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub based_on: Vec<Reference>,
    pub status: Text,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specimen: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub result: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presented_form: Vec<Attachment>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Composition {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    pub status: Text,
    pub r#type: CodeableConcept,
    pub subject: Reference,
    pub date: Text,
    pub author: Vec<Reference>,
    pub title: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custodian: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub section: Vec<Section>,
}

/// Any resource the pathology bundle holds. Boxed: resources are large (an Observation is
/// most of a kilobyte), and a bundle's list of entries is then moved as pointers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    Composition(Box<Composition>),
    Patient(Box<Patient>),
    Organization(Box<Organization>),
    Practitioner(Box<Practitioner>),
    ServiceRequest(Box<ServiceRequest>),
    Specimen(Box<Specimen>),
    Observation(Box<Observation>),
    DiagnosticReport(Box<DiagnosticReport>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub full_url: Text,
    pub resource: Resource,
}

/// A Bundle (`resourceType` is written by [`to_json`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    pub identifier: Identifier,
    pub r#type: Text,
    pub timestamp: Text,
    pub entry: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(tag = "resourceType")]
enum Root {
    Bundle(Bundle),
}

#[derive(Serialize)]
#[serde(tag = "resourceType")]
enum RootRef<'a> {
    Bundle(&'a Bundle),
}

/// The bundle as FHIR JSON.
pub fn to_json(bundle: &Bundle) -> String {
    // About 1 KB a resource: one allocation for most bundles instead of a dozen regrowths.
    let mut out = String::with_capacity(1024 * (bundle.entry.len() + 1));
    ser::write(&mut out, &RootRef::Bundle(bundle)).expect("a bundle holds only what JSON can");
    out
}

/// Why R4 JSON could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The input broke a limit or is not well-formed JSON (shared with STU3).
    #[error(transparent)]
    Limits(#[from] super::Error),
    /// Well-formed, but not a bundle of the resources modelled here.
    #[error("not a FHIR R4 pathology bundle: {0}")]
    Shape(String),
}

/// Reads a bundle written by [`to_json`], within `limits` (the same checks as STU3 input).
pub fn read_bundle(input: &[u8], limits: &super::Limits) -> Result<Bundle, ReadError> {
    super::parse_json_with(input, limits)?;
    match serde_json::from_slice::<Root>(input) {
        Ok(Root::Bundle(b)) => Ok(b),
        Err(e) => Err(ReadError::Shape(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser_json(t: &Text) -> String {
        let mut out = String::new();
        ser::write(&mut out, t).unwrap();
        out
    }

    #[test]
    fn text_is_what_it_says_however_held() {
        let id = "0195d1a4-0000-7000-8000-000000000001";
        let fixed_id = Text::fixed(id);
        assert_eq!(fixed_id, Text::copy(id));
        let state = std::hash::RandomState::new();
        use std::hash::BuildHasher;
        assert_eq!(state.hash_one(&fixed_id), state.hash_one(Text::copy(id)));
        for s in [
            "",
            "F",
            "mmol/L",
            "exactly twenty-three ch",
            "a longer text than fits in place",
        ] {
            assert_eq!(Text::copy(s).as_str(), s);
            assert_eq!(Text::from(s.to_string()), Text::copy(s));
        }
        assert_eq!(Text::default().as_str(), "");
        // Fixed text is written as it stands, the same as any serializer writes it.
        let fixed = Text::fixed(systems::SNOMED);
        assert_eq!(ser_json(&fixed), serde_json::to_string(&fixed).unwrap());
        assert_eq!(ser_json(&fixed), "\"http://snomed.info/sct\"");
        assert!(ser::plain("urn:uuid:0195 Laboratory é"));
        for needs_escaping in ["a\"b", "a\\b", "line\nbreak", "\u{1}"] {
            assert!(!ser::plain(needs_escaping), "{needs_escaping:?}");
            let copied = Text::copy(needs_escaping);
            assert_eq!(
                ser_json(&copied),
                serde_json::to_string(needs_escaping).unwrap()
            );
        }
        assert_eq!(
            serde_json::to_string(&fixed_id).unwrap(),
            serde_json::to_string(id).unwrap()
        );
    }
}
