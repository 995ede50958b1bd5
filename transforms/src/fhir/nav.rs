//! Reading values out of a tree: paths, extensions, codings, identifiers, Bundle entries.

use super::{Element, Kind};

/// Code systems, identifier systems and extension URLs used by ITK3 and GP Connect.
pub mod systems {
    /// NHS number identifier system.
    pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
    /// ODS organisation code identifier system.
    pub const ODS_ORGANIZATION_CODE: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    /// SDS user id identifier system.
    pub const SDS_USER_ID: &str = "https://fhir.nhs.uk/Id/sds-user-id";
    /// SNOMED CT.
    pub const SNOMED_CT: &str = "http://snomed.info/sct";
    /// ITK3 message events (`MessageHeader.event`).
    pub const ITK_MESSAGE_EVENT: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2";
    /// ITK3 response codes (`OperationOutcome.issue.details`).
    pub const ITK_RESPONSE_CODES: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1";
    /// ITK3 recipient types (`RecipientType` handling key).
    pub const ITK_RECIPIENT_TYPE: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1";
    /// The ITK3 message handling extension on `MessageHeader`.
    pub const ITK_MESSAGE_HANDLING: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2";
    /// The CareConnect NHS number verification status extension on `Patient.identifier`.
    pub const NHS_NUMBER_VERIFICATION_STATUS: &str =
        "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-NHSNumberVerificationStatus-1";
}

/// The parts of a Coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coding<'a> {
    /// `Coding.system`.
    pub system: Option<&'a str>,
    /// `Coding.code`.
    pub code: Option<&'a str>,
    /// `Coding.display`.
    pub display: Option<&'a str>,
}

/// One step of a path: a name and an optional index among same-named siblings.
fn parse_segment(seg: &str) -> Option<(&str, Option<usize>)> {
    match seg.strip_suffix(']') {
        Some(rest) => {
            let (name, idx) = rest.split_once('[')?;
            Some((name, Some(idx.parse().ok()?)))
        }
        None => Some((seg, None)),
    }
}

impl Element {
    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == *name)
    }

    /// The first child with this name, mutably.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find(|c| c.name == *name)
    }

    /// All children with this name, in order.
    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element> + 's {
        self.children.iter().filter(move |c| c.name == *name)
    }

    /// The primitive value.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// The value of the first child with this name, e.g. `coding.child_value("code")`.
    pub fn child_value(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(Element::value)
    }

    /// The primitive value read as a FHIR boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        }
    }

    /// Follows a dotted path whose first segment is this element's own name, e.g.
    /// `bundle.get("Bundle.entry[1].resource.Composition.type")`. A segment without an index
    /// takes the first match. Inline resources appear under their slot with their type name.
    pub fn get(&self, path: &str) -> Option<&Element> {
        let mut segs = path.split('.');
        if segs.next()? != &*self.name {
            return None;
        }
        let mut cur = self;
        for seg in segs {
            let (name, idx) = parse_segment(seg)?;
            cur = cur
                .children
                .iter()
                .filter(|c| c.name == *name)
                .nth(idx.unwrap_or(0))?;
        }
        Some(cur)
    }

    /// The value at a path (see [`Element::get`]).
    pub fn get_value(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Element::value)
    }

    /// Every element a path reaches: a segment without an index takes all matches, e.g.
    /// `bundle.select("Bundle.entry.resource.Patient")` lists every Patient entry.
    pub fn select(&self, path: &str) -> Vec<&Element> {
        let mut segs = path.split('.');
        if segs.next() != Some(&*self.name) {
            return Vec::new();
        }
        let mut cur: Vec<&Element> = vec![self];
        for seg in segs {
            let Some((name, idx)) = parse_segment(seg) else {
                return Vec::new();
            };
            let mut next = Vec::new();
            for e in cur {
                let mut named = e.children.iter().filter(|c| c.name == *name);
                match idx {
                    Some(i) => next.extend(named.nth(i)),
                    None => next.extend(named),
                }
            }
            cur = next;
        }
        cur
    }

    /// The `extension` children.
    pub fn extensions(&self) -> impl Iterator<Item = &Element> + '_ {
        self.children_named("extension")
    }

    /// The first `extension` (or `modifierExtension`) child with this url.
    pub fn find_extension(&self, url: &str) -> Option<&Element> {
        self.children.iter().find(|c| {
            (c.name == "extension" || c.name == "modifierExtension")
                && c.url.as_deref() == Some(url)
        })
    }

    /// The `value[x]` child of an extension (e.g. `valueBoolean`).
    pub fn extension_value(&self) -> Option<&Element> {
        self.children.iter().find(|c| {
            c.name
                .strip_prefix("value")
                .is_some_and(|rest| rest.starts_with(|ch: char| ch.is_ascii_uppercase()))
        })
    }

    /// This element read as a Coding (its `system`, `code` and `display` children).
    pub fn as_coding(&self) -> Coding<'_> {
        Coding {
            system: self.child_value("system"),
            code: self.child_value("code"),
            display: self.child_value("display"),
        }
    }

    /// The codings of a CodeableConcept.
    pub fn codings(&self) -> impl Iterator<Item = Coding<'_>> + '_ {
        self.children_named("coding").map(Element::as_coding)
    }

    /// The code from `system` in a CodeableConcept, or in a Coding if this is one.
    pub fn code_in(&self, system: &str) -> Option<&str> {
        let own = self.as_coding();
        if own.system == Some(system) {
            return own.code;
        }
        self.codings()
            .find(|c| c.system == Some(system))
            .and_then(|c| c.code)
    }

    /// The value of the first `identifier` child with this system, e.g. a Patient's NHS
    /// number with [`systems::NHS_NUMBER`].
    pub fn identifier_value(&self, system: &str) -> Option<&str> {
        self.children_named("identifier")
            .find(|i| i.child_value("system") == Some(system))
            .and_then(|i| i.child_value("value"))
    }

    /// `Reference.reference`.
    pub fn reference(&self) -> Option<&str> {
        self.child_value("reference")
    }

    /// A resource's logical id (its `id` child).
    pub fn resource_id(&self) -> Option<&str> {
        if self.kind == Kind::Resource {
            self.child_value("id")
        } else {
            None
        }
    }

    /// The resources in a Bundle's entries, in order.
    pub fn entry_resources(&self) -> impl Iterator<Item = &Element> + '_ {
        self.children_named("entry")
            .filter_map(|e| e.child("resource").and_then(Element::as_slot))
    }

    /// The resources of one type in a Bundle's entries (not nested Bundles).
    pub fn resources_of_type<'s>(
        &'s self,
        resource_type: &'s str,
    ) -> impl Iterator<Item = &'s Element> + 's {
        self.entry_resources()
            .filter(move |r| r.name == *resource_type)
    }

    /// The first resource of one type in a Bundle's entries.
    pub fn first_resource(&self, resource_type: &str) -> Option<&Element> {
        self.entry_resources().find(|r| r.name == *resource_type)
    }

    /// Every resource below this element, depth first: Bundle entries (nested Bundles
    /// included), `contained` resources, and so on.
    pub fn descendant_resources(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            if e.kind == Kind::Resource {
                out.push(e);
            }
            stack.extend(e.children.iter().rev());
        }
        out
    }

    /// Resolves a reference against a Bundle's entries: an entry whose `fullUrl` equals it
    /// (e.g. `urn:uuid:...`), or whose resource matches a relative `Type/id` reference.
    pub fn resolve_reference(&self, reference: &str) -> Option<&Element> {
        let by_url = self.children_named("entry").find_map(|entry| {
            (entry.child_value("fullUrl") == Some(reference))
                .then(|| entry.child("resource").and_then(Element::as_slot))
                .flatten()
        });
        if by_url.is_some() {
            return by_url;
        }
        let (ty, id) = reference.split_once('/')?;
        self.entry_resources()
            .find(|r| r.name == *ty && r.resource_id() == Some(id))
    }
}
