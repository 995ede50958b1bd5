//! Writing ITK3 message Bundles and GP Connect Send Document messages.

use sha2::{Digest, Sha256};

use super::codes::{
    composition_type_for, event_display, event_for, RecipientType, EVENT_SEND_DOCUMENT,
    ITK_PRIORITY_SYSTEM,
};
use super::message::Handling;
use super::{base64, CARECONNECT_PROFILE_BASE, PROFILE_BASE, UUID_SYSTEM};
use crate::fhir::{systems, Element};
use crate::model::DocumentType;
use crate::nhs::NhsNumber;
use crate::ods::OdsCode;

/// What [`render_message`] needs besides the document: ids, time, parties and handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageParams {
    /// The message `Bundle.id` (a fresh UUID).
    pub bundle_id: String,
    /// The message `Bundle.identifier.value` (a fresh UUID).
    pub bundle_identifier: String,
    /// `MessageHeader.id` (a fresh UUID, the id responses refer to).
    pub message_id: String,
    /// `MessageHeader.timestamp`, a FHIR instant.
    pub timestamp: String,
    /// Chooses the event code (see [`event_for`]).
    pub document_type: DocumentType,
    /// The sender Organization's ODS code.
    pub sender_ods: OdsCode,
    /// The receiver Organization's ODS code; `None` where the transport routes (GP Connect).
    pub receiver_ods: Option<OdsCode>,
    /// `MessageHeader.source.endpoint`, the sender's MESH mailbox (`source` is 1..1 in
    /// STU3, and GP Connect names the mailbox that sends).
    pub source_endpoint: String,
    /// The handling keys.
    pub handling: Handling,
}

/// A UUID-shaped id derived from `seed` and `label` by SHA-256, so a renderer can name the
/// extra resources it adds without a random source. Version nibble 8 (custom), RFC 4122
/// variant.
pub(crate) fn derived_uuid(seed: &str, label: &str) -> String {
    let digest = Sha256::digest(format!("{seed}\n{label}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub(crate) fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

pub(crate) fn entry(full_url: &str, resource: Element) -> Element {
    Element::new("entry")
        .with(Element::primitive("fullUrl", full_url))
        .with(Element::slot("resource", resource))
}

pub(crate) fn meta_profile(profile: String) -> Element {
    Element::new("meta").with(Element::primitive("profile", profile))
}

pub(crate) fn reference(name: &'static str, target: &str) -> Element {
    Element::new(name).with(Element::primitive("reference", target))
}

pub(crate) fn coding(name: &'static str, system: &str, code: &str, display: &str) -> Element {
    Element::new(name)
        .with(Element::primitive("system", system))
        .with(Element::primitive("code", code))
        .with(Element::primitive("display", display))
}

fn identifier(system: &str, value: &str) -> Element {
    Element::new("identifier")
        .with(Element::primitive("system", system))
        .with(Element::primitive("value", value))
}

/// A CareConnect-ITK-Header-Organization-1 with an ODS code.
pub(crate) fn header_organization(id: &str, ods: &OdsCode) -> Element {
    Element::resource("Organization")
        .with(Element::primitive("id", id))
        .with(meta_profile(format!(
            "{PROFILE_BASE}CareConnect-ITK-Header-Organization-1"
        )))
        .with(identifier(systems::ODS_ORGANIZATION_CODE, ods.as_str()))
}

/// The `Extension-ITK-MessageHandling-2` extension for these keys.
pub(crate) fn handling_extension(h: &Handling) -> Element {
    let bool_key = |key: &str, v: bool| {
        Element::extension(key).with(Element::primitive(
            "valueBoolean",
            if v { "true" } else { "false" },
        ))
    };
    let rt: RecipientType = h.recipient_type;
    let mut ext = Element::extension(systems::ITK_MESSAGE_HANDLING)
        .with(bool_key("BusAckRequested", h.bus_ack_requested))
        .with(bool_key("InfAckRequested", h.inf_ack_requested))
        .with(Element::extension("RecipientType").with(coding(
            "valueCoding",
            systems::ITK_RECIPIENT_TYPE,
            rt.code(),
            rt.display(),
        )));
    if let Some(p) = &h.priority {
        ext.push(
            Element::extension("Priority").with(
                Element::new("valueCoding")
                    .with(Element::primitive("system", ITK_PRIORITY_SYSTEM))
                    .with(Element::primitive("code", p.as_str())),
            ),
        );
    }
    ext.push(
        Element::extension("MessageDefinition")
            .with(reference("valueReference", &h.message_definition)),
    );
    ext.push(
        Element::extension("SenderReference").with(Element::primitive(
            "valueString",
            h.sender_reference.as_str(),
        )),
    );
    // ITK3 carries all six keys; `None` where the sender named no local use, as for
    // SenderReference.
    ext.push(
        Element::extension("LocalExtension").with(Element::primitive(
            "valueString",
            h.local_extension.as_deref().unwrap_or("None"),
        )),
    );
    ext
}

/// The message Bundle around a MessageHeader, with its header entries and payload entries.
pub(crate) fn message_bundle(
    bundle_id: &str,
    bundle_identifier: &str,
    header_id: &str,
    header: Element,
    rest: Vec<Element>,
) -> Element {
    let mut bundle = Element::resource("Bundle")
        .with(Element::primitive("id", bundle_id))
        .with(meta_profile(format!("{PROFILE_BASE}ITK-Message-Bundle-1")))
        .with(identifier(UUID_SYSTEM, bundle_identifier))
        .with(Element::primitive("type", "message"))
        .with(entry(&urn(header_id), header));
    bundle.children.extend(rest);
    bundle
}

/// Wraps a document Bundle in an ITK3 message Bundle: MessageHeader (event from the document
/// type, handling keys, sender, optional receiver and source endpoint, focus on the
/// document), a header Organization for the sender and one for the receiver, and the
/// document Bundle unchanged.
///
/// The header Organizations get ids derived from the message id. The document entry's
/// `fullUrl` is `urn:uuid:` + the document `Bundle.id` (derived from the message id when the
/// document has none).
pub fn render_message(doc: &Element, params: MessageParams) -> Element {
    render_with_event(doc, &params, event_for(params.document_type))
}

/// Puts a fresh message header (ids, timestamp, handling, parties from `params`) on the
/// document Bundle of a GP Connect Send Document (ITK007C), the document itself unchanged:
/// each receiver gets its own message id, so its responses find their delivery. As GP Connect
/// requires, both acknowledgements are requested and the header names no receiver.
pub fn reheader_send_document(doc: &Element, mut params: MessageParams) -> Element {
    params.receiver_ods = None;
    params.handling.inf_ack_requested = true;
    params.handling.bus_ack_requested = true;
    params
        .handling
        .local_extension
        .get_or_insert_with(|| SEND_DOCUMENT_GENERIC.to_string());
    render_with_event(doc, &params, EVENT_SEND_DOCUMENT)
}

/// The GP Connect `LocalExtension` use case for a document that is not a consultation summary.
pub const SEND_DOCUMENT_GENERIC: &str = "SendDocument-Generic";

fn render_with_event(doc: &Element, p: &MessageParams, event: &str) -> Element {
    let sender_id = derived_uuid(&p.message_id, "sender");
    let receiver_id = derived_uuid(&p.message_id, "receiver");
    let doc_url = urn(&doc
        .resource_id()
        .map(str::to_string)
        .unwrap_or_else(|| derived_uuid(&p.message_id, "document")));

    let mut header = Element::resource("MessageHeader")
        .with(Element::primitive("id", p.message_id.as_str()))
        .with(meta_profile(format!("{PROFILE_BASE}ITK-MessageHeader-2")))
        .with(handling_extension(&p.handling))
        .with(coding(
            "event",
            systems::ITK_MESSAGE_EVENT,
            event,
            event_display(event).unwrap_or(event),
        ));
    if p.receiver_ods.is_some() {
        header.push(reference("receiver", &urn(&receiver_id)));
    }
    header.push(reference("sender", &urn(&sender_id)));
    header.push(Element::primitive("timestamp", p.timestamp.as_str()));
    header.push(
        Element::new("source").with(Element::primitive("endpoint", p.source_endpoint.as_str())),
    );
    header.push(reference("focus", &doc_url));

    let mut rest = vec![entry(
        &urn(&sender_id),
        header_organization(&sender_id, &p.sender_ods),
    )];
    if let Some(ods) = &p.receiver_ods {
        rest.push(entry(
            &urn(&receiver_id),
            header_organization(&receiver_id, ods),
        ));
    }
    rest.push(entry(&doc_url, doc.clone()));
    message_bundle(
        &p.bundle_id,
        &p.bundle_identifier,
        &p.message_id,
        header,
        rest,
    )
}

/// What [`render_send_document`] needs to build the document around the attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendDocumentMeta {
    /// The message parameters. The event is always ITK007C; `document_type` chooses the
    /// Composition type when [`SendDocumentMeta::composition_type`] is `None`. Both
    /// acknowledgements are always requested and `receiver_ods` is ignored, as GP Connect
    /// requires (MESH does the routing, so the header names no receiver).
    pub message: MessageParams,
    /// The document `Bundle.id` (a fresh UUID per instance). The Composition, Patient,
    /// Organization and Binary ids are derived from it.
    pub document_bundle_id: String,
    /// The document `Bundle.identifier.value`.
    pub document_identifier: String,
    /// `Composition.identifier.value`, shared by every version of the composition.
    pub composition_identifier: String,
    /// `Composition.type`; `None` uses [`composition_type_for`] the document type.
    pub composition_type: Option<super::codes::SnomedCode>,
    /// `Composition.title`, also the narrative and the attachment section title.
    pub title: String,
    /// `Composition.date`, the authoring date (a FHIR dateTime).
    pub date: String,
    /// The patient's NHS number.
    pub nhs_number: NhsNumber,
    /// The sending organisation's name, if wanted on its Organization.
    pub sender_name: Option<String>,
    /// The document identifier this one replaces (`relatesTo.code = replaces`).
    pub replaces: Option<String>,
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Builds a GP Connect Send Document (ITK007C) message carrying `content` as one
/// ITK-Attachment-Binary-1: a document Bundle with a CareConnect Composition (status final,
/// confidentiality N, one section whose entry is the Binary), the Patient with its NHS
/// number, the sender Organization (author and custodian) and the Binary, wrapped by
/// [`render_message`]'s message Bundle.
pub fn render_send_document(content: &[u8], content_type: &str, meta: SendDocumentMeta) -> Element {
    let seed = meta.document_bundle_id.as_str();
    let composition_id = derived_uuid(seed, "composition");
    let patient_id = derived_uuid(seed, "patient");
    let org_id = derived_uuid(seed, "organization");
    let binary_id = derived_uuid(seed, "binary");
    let ctype = meta
        .composition_type
        .clone()
        .unwrap_or_else(|| composition_type_for(meta.message.document_type));

    let mut composition = Element::resource("Composition")
        .with(Element::primitive("id", composition_id.as_str()))
        .with(meta_profile(format!(
            "{CARECONNECT_PROFILE_BASE}CareConnect-Composition-1"
        )))
        .with(
            Element::new("text")
                .with(Element::primitive("status", "generated"))
                .with(Element::xhtml(format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{}</p></div>",
                    xml_escape(&meta.title)
                ))),
        )
        .with(identifier(UUID_SYSTEM, &meta.composition_identifier))
        .with(Element::primitive("status", "final"))
        .with(Element::new("type").with(coding(
            "coding",
            systems::SNOMED_CT,
            &ctype.code,
            &ctype.display,
        )))
        .with(reference("subject", &urn(&patient_id)))
        .with(Element::primitive("date", meta.date.as_str()))
        .with(reference("author", &urn(&org_id)))
        .with(Element::primitive("title", meta.title.as_str()))
        .with(Element::primitive("confidentiality", "N"))
        .with(reference("custodian", &urn(&org_id)));
    if let Some(target) = &meta.replaces {
        composition.push(
            Element::new("relatesTo")
                .with(Element::primitive("code", "replaces"))
                .with(
                    Element::new("targetIdentifier")
                        .with(Element::primitive("system", UUID_SYSTEM))
                        .with(Element::primitive("value", target.as_str())),
                ),
        );
    }
    composition.push(
        Element::new("section")
            .with(Element::primitive("title", meta.title.as_str()))
            .with(reference("entry", &urn(&binary_id))),
    );

    let patient = Element::resource("Patient")
        .with(Element::primitive("id", patient_id.as_str()))
        .with(meta_profile(format!(
            "{CARECONNECT_PROFILE_BASE}CareConnect-Patient-1"
        )))
        .with(identifier(systems::NHS_NUMBER, meta.nhs_number.as_str()));

    let mut organization = Element::resource("Organization")
        .with(Element::primitive("id", org_id.as_str()))
        .with(meta_profile(format!(
            "{CARECONNECT_PROFILE_BASE}CareConnect-Organization-1"
        )))
        .with(identifier(
            systems::ODS_ORGANIZATION_CODE,
            meta.message.sender_ods.as_str(),
        ));
    if let Some(name) = &meta.sender_name {
        organization.push(Element::primitive("name", name.as_str()));
    }

    let binary = Element::resource("Binary")
        .with(Element::primitive("id", binary_id.as_str()))
        .with(meta_profile(format!(
            "{PROFILE_BASE}ITK-Attachment-Binary-1"
        )))
        .with(Element::primitive("contentType", content_type))
        .with(Element::primitive("content", base64::encode(content)));

    let document = Element::resource("Bundle")
        .with(Element::primitive("id", seed))
        .with(
            Element::new("meta")
                .with(Element::primitive(
                    "lastUpdated",
                    meta.message.timestamp.as_str(),
                ))
                .with(Element::primitive(
                    "profile",
                    format!("{PROFILE_BASE}ITK-Document-Bundle-1"),
                )),
        )
        .with(identifier(UUID_SYSTEM, &meta.document_identifier))
        .with(Element::primitive("type", "document"))
        .with(entry(&urn(&composition_id), composition))
        .with(entry(&urn(&patient_id), patient))
        .with(entry(&urn(&org_id), organization))
        .with(entry(&urn(&binary_id), binary));

    reheader_send_document(&document, meta.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuids_are_stable_and_shaped() {
        let a = derived_uuid("x", "sender");
        assert_eq!(a, derived_uuid("x", "sender"));
        assert_ne!(a, derived_uuid("x", "receiver"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}
