//! Reading ITK3 message Bundles.

use super::codes::{document_type_for, RecipientType, ResponseCode, SnomedCode};
use super::{base64, entry_path, parse, Format, ItkError};
use crate::fhir::{systems, Element};
use crate::model::DocumentType;
use crate::nhs::NhsNumber;
use crate::ods::OdsCode;

/// The handling keys of the `Extension-ITK-MessageHandling-2` extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    /// `InfAckRequested`: the sender wants an infrastructure acknowledgement.
    pub inf_ack_requested: bool,
    /// `BusAckRequested`: the sender wants a business acknowledgement.
    pub bus_ack_requested: bool,
    /// `RecipientType`: for action or for information.
    pub recipient_type: RecipientType,
    /// `MessageDefinition`: the MessageDefinition reference.
    pub message_definition: String,
    /// `SenderReference`: the sender's own reference (at most 255 characters), `None` by
    /// default, echoed in responses.
    pub sender_reference: String,
    /// `LocalExtension`, when it carries a primitive value (GP Connect: the use case, e.g.
    /// `SendDocument-ConsultationSummary`).
    pub local_extension: Option<String>,
    /// `Priority` (routine, urgent, asap, stat), carried by some older payloads.
    pub priority: Option<String>,
}

impl Handling {
    /// The handling keys a sender of this message definition would normally use: both
    /// acknowledgements requested, for action, SenderReference `None`, no local extension.
    pub fn new(message_definition: impl Into<String>) -> Self {
        Self {
            inf_ack_requested: true,
            bus_ack_requested: true,
            recipient_type: RecipientType::ForAction,
            message_definition: message_definition.into(),
            sender_reference: "None".to_string(),
            local_extension: None,
            priority: None,
        }
    }
}

/// A `Binary` in the document Bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The Binary's logical id.
    pub id: Option<String>,
    /// `Binary.contentType`.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    /// Lower-case hex SHA-256 of the decoded content.
    pub sha256: String,
}

impl Attachment {
    /// Whether GP suppliers are expected to accept this content type (pdf, doc, docx, rtf,
    /// html, txt, xml, jpeg, png, tiff); others would draw a 20005 from a GP system.
    pub fn is_gp_supported(&self) -> bool {
        let base = self
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            base.as_str(),
            "application/pdf"
                | "application/msword"
                | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                | "application/rtf"
                | "text/rtf"
                | "text/html"
                | "text/plain"
                | "text/xml"
                | "application/xml"
                | "image/jpeg"
                | "image/png"
                | "image/tiff"
        )
    }
}

/// What [`read_message`] found in an ITK3 message.
#[derive(Debug, Clone, PartialEq)]
pub struct ItkMessage {
    /// The message `Bundle.id`.
    pub bundle_id: Option<String>,
    /// The message `Bundle.identifier.value`.
    pub bundle_identifier: Option<String>,
    /// `MessageHeader.id`, the id responses refer to.
    pub message_id: String,
    /// `MessageHeader.event.code`, e.g. `ITK007C`.
    pub event: String,
    /// The document type the event carries, where known.
    pub document_type: Option<DocumentType>,
    /// `MessageHeader.timestamp`.
    pub timestamp: String,
    /// `MessageHeader.source.endpoint` (the sender's MESH mailbox).
    pub source_endpoint: Option<String>,
    /// ODS code of the sender Organization; `None` when the sender is a Practitioner.
    pub sender_ods: Option<OdsCode>,
    /// ODS codes of the receiver Organizations (`receiver` and `destination.receiver`).
    pub receiver_ods: Vec<OdsCode>,
    /// The handling keys.
    pub handling: Handling,
    /// The focus: the document Bundle, exactly as carried.
    pub document: Element,
    /// The document `Bundle.id`.
    pub document_bundle_id: Option<String>,
    /// The document `Bundle.identifier.value` (duplicates of it draw 20008).
    pub document_identifier: Option<String>,
    /// `Composition.identifier.value`.
    pub composition_identifier: Option<String>,
    /// The SNOMED CT coding of `Composition.type` (display empty when not given).
    pub composition_type: Option<SnomedCode>,
    /// `Composition.title`.
    pub title: Option<String>,
    /// The target of `Composition.relatesTo` with code `replaces`: its `targetIdentifier.value`
    /// or else its `targetReference.reference`.
    pub replaces: Option<String>,
    /// The patient's NHS number as carried. With the default [`ReadOptions`] it has passed
    /// Modulus 11; in lenient mode an invalid one is kept and reported in `warnings`.
    pub nhs_number: Option<String>,
    /// The document's Binary attachments, in Bundle order.
    pub attachments: Vec<Attachment>,
    /// Problems tolerated in lenient mode, each as the error strict mode would have returned.
    pub warnings: Vec<ItkError>,
}

/// How strictly [`read_message_with`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOptions {
    /// Keep an NHS number that fails validation (reporting it in [`ItkMessage::warnings`])
    /// instead of rejecting the message. Off by default.
    pub lenient_nhs_number: bool,
    /// Leave the Binary contents undecoded and [`ItkMessage::attachments`] empty: for a
    /// message already read in full once (at ingest) and now only re-addressed.
    pub skip_attachments: bool,
    /// Check the Binary contents (content type, base64) as a full read does, but keep none of
    /// them: [`ItkMessage::attachments`] stays empty. For a read that needs only what the
    /// message says about itself (ingest), without decoding and hashing large documents.
    pub check_attachments_only: bool,
}

/// Reads an ITK3 message, rejecting any NHS number that fails Modulus 11.
pub fn read_message(bytes: &[u8], format: Format) -> Result<ItkMessage, ItkError> {
    read_message_with(bytes, format, ReadOptions::default())
}

/// Reads an ITK3 message with the given options.
pub fn read_message_with(
    bytes: &[u8],
    format: Format,
    options: ReadOptions,
) -> Result<ItkMessage, ItkError> {
    read_message_element(&parse(bytes, format)?, options)
}

/// The decoded content of a `Binary` resource, if it has valid base64 content.
pub fn binary_content(binary: &Element) -> Option<Vec<u8>> {
    base64::decode(binary.child_value("content")?).ok()
}

const HEADER: &str = "Bundle.entry[0].resource.MessageHeader";

/// Checks that `root` is a Bundle of the given type and returns its MessageHeader.
pub(crate) fn message_header(root: &Element) -> Result<&Element, ItkError> {
    if root.name != "Bundle" || !root.is_resource() {
        return Err(ItkError::new(
            root.name.to_string(),
            "expected an ITK3 message Bundle",
            ResponseCode::HeaderValidationFailure,
        ));
    }
    match root.child_value("type") {
        Some("message") => {}
        Some(other) => {
            return Err(ItkError::new(
                "Bundle.type",
                format!("expected `message`, found `{other}`"),
                ResponseCode::HeaderValidationFailure,
            ))
        }
        None => {
            return Err(ItkError::missing(
                "Bundle.type",
                ResponseCode::HeaderValidationFailure,
            ))
        }
    }
    let first = root
        .children_named("entry")
        .next()
        .and_then(|e| e.child("resource"))
        .and_then(Element::as_slot);
    match first {
        Some(h) if h.name == "MessageHeader" => Ok(h),
        Some(other) => Err(ItkError::new(
            "Bundle.entry[0].resource",
            format!("expected MessageHeader first, found {}", other.name),
            ResponseCode::HeaderValidationFailure,
        )),
        None => Err(ItkError::missing(
            HEADER,
            ResponseCode::HeaderValidationFailure,
        )),
    }
}

/// A required primitive child of the header.
fn header_value<'a>(header: &'a Element, path: &str) -> Result<&'a str, ItkError> {
    header
        .get(&format!("MessageHeader.{path}"))
        .and_then(Element::value)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ItkError::missing(
                format!("{HEADER}.{path}"),
                ResponseCode::HeaderValidationFailure,
            )
        })
}

/// The event code, checked against the ITK-MessageEvent-2 system when one is given.
pub(crate) fn read_event(header: &Element) -> Result<&str, ItkError> {
    let event = header.child("event").ok_or_else(|| {
        ItkError::missing(
            format!("{HEADER}.event"),
            ResponseCode::HeaderValidationFailure,
        )
    })?;
    if let Some(system) = event.child_value("system") {
        if system != systems::ITK_MESSAGE_EVENT {
            return Err(ItkError::new(
                format!("{HEADER}.event.system"),
                format!("expected {}, found `{system}`", systems::ITK_MESSAGE_EVENT),
                ResponseCode::HeaderValidationFailure,
            ));
        }
    }
    header_value(header, "event.code")
}

fn handling_path(key: &str) -> String {
    format!(
        "{HEADER}.extension('{}').extension('{key}')",
        systems::ITK_MESSAGE_HANDLING
    )
}

/// The value[x] of a handling key, if the key is present.
fn handling_value<'a>(ext: &'a Element, key: &str) -> Option<&'a Element> {
    ext.find_extension(key)
        .map(|k| k.extension_value().unwrap_or(k))
}

fn handling_bool(ext: &Element, key: &str, code: ResponseCode) -> Result<bool, ItkError> {
    let path = format!("{}.valueBoolean", handling_path(key));
    match handling_value(ext, key) {
        Some(v) if v.name == "valueBoolean" => v
            .as_bool()
            .ok_or_else(|| ItkError::new(path, "not a boolean", code)),
        Some(v) => Err(ItkError::new(
            path,
            format!("expected valueBoolean, found {}", v.name),
            code,
        )),
        None => Err(ItkError::missing(path, code)),
    }
}

/// Reads the handling extension. `lenient` lets the keys a response need not carry
/// (MessageDefinition, SenderReference, RecipientType) default instead of failing.
pub(crate) fn read_handling(header: &Element, lenient: bool) -> Result<Handling, ItkError> {
    let ext = header
        .find_extension(systems::ITK_MESSAGE_HANDLING)
        .ok_or_else(|| {
            ItkError::missing(
                format!("{HEADER}.extension('{}')", systems::ITK_MESSAGE_HANDLING),
                ResponseCode::HandlingSpecificationError,
            )
        })?;
    let inf_ack_requested = handling_bool(
        ext,
        "InfAckRequested",
        ResponseCode::InfrastructureResponseValueError,
    )?;
    let bus_ack_requested = handling_bool(
        ext,
        "BusAckRequested",
        ResponseCode::BusinessResponseValueError,
    )?;

    let rt_path = format!("{}.valueCoding", handling_path("RecipientType"));
    let recipient_type = match handling_value(ext, "RecipientType") {
        Some(v) => {
            let coding = v.as_coding();
            if coding
                .system
                .is_some_and(|s| s != systems::ITK_RECIPIENT_TYPE)
            {
                return Err(ItkError::new(
                    format!("{rt_path}.system"),
                    format!("expected {}", systems::ITK_RECIPIENT_TYPE),
                    ResponseCode::RecipientTypeError,
                ));
            }
            match coding.code {
                Some(c) => RecipientType::from_code(c).ok_or_else(|| {
                    ItkError::new(
                        format!("{rt_path}.code"),
                        format!("expected FA or FI, found `{c}`"),
                        ResponseCode::RecipientTypeError,
                    )
                })?,
                None => {
                    return Err(ItkError::missing(
                        format!("{rt_path}.code"),
                        ResponseCode::RecipientTypeError,
                    ))
                }
            }
        }
        None if lenient => RecipientType::ForInformation,
        None => return Err(ItkError::missing(rt_path, ResponseCode::RecipientTypeError)),
    };

    let md_path = format!(
        "{}.valueReference.reference",
        handling_path("MessageDefinition")
    );
    let message_definition = match handling_value(ext, "MessageDefinition")
        .and_then(Element::reference)
        .filter(|r| !r.trim().is_empty())
    {
        Some(r) => r.to_string(),
        None if lenient => String::new(),
        None => {
            return Err(ItkError::missing(
                md_path,
                ResponseCode::MessageDefinitionError,
            ))
        }
    };

    let sr_path = format!("{}.valueString", handling_path("SenderReference"));
    let sender_reference = match handling_value(ext, "SenderReference").and_then(Element::value) {
        Some(s) if s.trim().is_empty() => {
            return Err(ItkError::new(
                sr_path,
                "empty",
                ResponseCode::SenderReferenceError,
            ))
        }
        Some(s) if s.chars().count() > 255 => {
            return Err(ItkError::new(
                sr_path,
                format!("{} characters, at most 255 allowed", s.chars().count()),
                ResponseCode::SenderReferenceError,
            ))
        }
        Some(s) => s.to_string(),
        None if lenient => "None".to_string(),
        None => {
            return Err(ItkError::missing(
                sr_path,
                ResponseCode::SenderReferenceError,
            ))
        }
    };

    let local_extension = handling_value(ext, "LocalExtension")
        .and_then(Element::value)
        .map(str::to_string);

    let priority = match handling_value(ext, "Priority") {
        Some(v) => {
            let code = v.as_coding().code.or(v.value()).unwrap_or("");
            if !matches!(code, "routine" | "urgent" | "asap" | "stat") {
                return Err(ItkError::new(
                    format!("{}.valueCoding.code", handling_path("Priority")),
                    format!("expected routine, urgent, asap or stat, found `{code}`"),
                    ResponseCode::PriorityValueError,
                ));
            }
            Some(code.to_string())
        }
        None => None,
    };

    Ok(Handling {
        inf_ack_requested,
        bus_ack_requested,
        recipient_type,
        message_definition,
        sender_reference,
        local_extension,
        priority,
    })
}

/// Resolves a header reference (`sender`, `receiver`, ...) in the message Bundle.
fn resolve<'a>(
    root: &'a Element,
    reference_holder: &Element,
    path: &str,
) -> Result<&'a Element, ItkError> {
    let reference = reference_holder.reference().ok_or_else(|| {
        ItkError::missing(
            format!("{path}.reference"),
            ResponseCode::HeaderValidationFailure,
        )
    })?;
    root.resolve_reference(reference).ok_or_else(|| {
        ItkError::new(
            format!("{path}.reference"),
            format!("`{reference}` does not resolve to an entry"),
            ResponseCode::HeaderValidationFailure,
        )
    })
}

/// The ODS code of an Organization; `Ok(None)` for any other resource.
fn organization_ods(
    root: &Element,
    resource: &Element,
    code: ResponseCode,
) -> Result<Option<OdsCode>, ItkError> {
    if resource.name != "Organization" {
        return Ok(None);
    }
    let path = format!("{}.identifier", entry_path("Bundle", root, resource));
    let raw = resource
        .identifier_value(systems::ODS_ORGANIZATION_CODE)
        .ok_or_else(|| ItkError::new(&path, "no ODS organisation code", code))?;
    OdsCode::parse(raw)
        .map(Some)
        .map_err(|e| ItkError::new(format!("{path}.value"), format!("ODS code {e}"), code))
}

/// Reads an ITK3 message from an already parsed tree.
pub fn read_message_element(root: &Element, options: ReadOptions) -> Result<ItkMessage, ItkError> {
    let header = message_header(root)?;
    let message_id = header_value(header, "id")?.to_string();
    let handling = read_handling(header, false)?;
    let event = read_event(header)?.to_string();
    let timestamp = header_value(header, "timestamp")?.to_string();
    let source_endpoint = header
        .get_value("MessageHeader.source.endpoint")
        .map(str::to_string);

    let sender_el = header.child("sender").ok_or_else(|| {
        ItkError::missing(
            format!("{HEADER}.sender"),
            ResponseCode::HeaderValidationFailure,
        )
    })?;
    let sender = resolve(root, sender_el, &format!("{HEADER}.sender"))?;
    let sender_ods = organization_ods(root, sender, ResponseCode::UnrecognisedSender)?;

    let mut receiver_ods = Vec::new();
    let mut receivers: Vec<(&Element, String)> = header
        .children_named("receiver")
        .enumerate()
        .map(|(i, r)| (r, format!("{HEADER}.receiver[{i}]")))
        .collect();
    for (i, d) in header.children_named("destination").enumerate() {
        if let Some(r) = d.child("receiver") {
            receivers.push((r, format!("{HEADER}.destination[{i}].receiver")));
        }
    }
    for (r, path) in receivers {
        let org = resolve(root, r, &path)?;
        if let Some(ods) =
            organization_ods(root, org, ResponseCode::UnrecognisedRecipientOrganisation)?
        {
            receiver_ods.push(ods);
        }
    }

    let focus_el = header.child("focus").ok_or_else(|| {
        ItkError::missing(
            format!("{HEADER}.focus"),
            ResponseCode::HeaderValidationFailure,
        )
    })?;
    let document = resolve(root, focus_el, &format!("{HEADER}.focus"))?;
    let doc_path = entry_path("Bundle", root, document);
    if document.name != "Bundle" || document.child_value("type") != Some("document") {
        return Err(ItkError::new(
            doc_path,
            "focus is not a document Bundle",
            ResponseCode::PayloadValidationFailure,
        ));
    }

    let mut msg = ItkMessage {
        bundle_id: root.resource_id().map(str::to_string),
        bundle_identifier: root
            .get_value("Bundle.identifier.value")
            .map(str::to_string),
        document_type: document_type_for(&event),
        message_id,
        event,
        timestamp,
        source_endpoint,
        sender_ods,
        receiver_ods,
        handling,
        document: document.clone(),
        document_bundle_id: document.resource_id().map(str::to_string),
        document_identifier: document
            .get_value("Bundle.identifier.value")
            .map(str::to_string),
        composition_identifier: None,
        composition_type: None,
        title: None,
        replaces: None,
        nhs_number: None,
        attachments: Vec::new(),
        warnings: Vec::new(),
    };
    read_document(document, &doc_path, options, &mut msg)?;
    Ok(msg)
}

fn read_document(
    doc: &Element,
    doc_path: &str,
    options: ReadOptions,
    msg: &mut ItkMessage,
) -> Result<(), ItkError> {
    let composition = doc.first_resource("Composition").ok_or_else(|| {
        ItkError::missing(
            format!("{doc_path}.entry.resource.Composition"),
            ResponseCode::PayloadValidationFailure,
        )
    })?;
    msg.composition_identifier = composition
        .get_value("Composition.identifier.value")
        .map(str::to_string);
    msg.title = composition.child_value("title").map(str::to_string);
    msg.composition_type = composition.child("type").and_then(|t| {
        t.codings()
            .find(|c| c.system == Some(systems::SNOMED_CT))
            .and_then(|c| Some(SnomedCode::new(c.code?, c.display.unwrap_or(""))))
    });
    msg.replaces = composition
        .children_named("relatesTo")
        .find(|r| r.child_value("code") == Some("replaces"))
        .and_then(|r| {
            r.get_value("relatesTo.targetIdentifier.value")
                .or_else(|| r.get_value("relatesTo.targetReference.reference"))
        })
        .map(str::to_string);

    let patient = composition
        .get("Composition.subject")
        .and_then(Element::reference)
        .and_then(|r| doc.resolve_reference(r))
        .filter(|p| p.name == "Patient")
        .or_else(|| doc.first_resource("Patient"));
    if let Some(patient) = patient {
        let found = patient
            .children_named("identifier")
            .enumerate()
            .find(|(_, i)| i.child_value("system") == Some(systems::NHS_NUMBER));
        if let Some((i, ident)) = found {
            let path = format!(
                "{}.identifier[{i}].value",
                entry_path(doc_path, doc, patient)
            );
            let raw = ident
                .child_value("value")
                .ok_or_else(|| ItkError::missing(&path, ResponseCode::PayloadValidationFailure))?;
            if let Err(e) = NhsNumber::parse(raw) {
                let err = ItkError::new(
                    path,
                    format!("NHS number `{raw}` is invalid: {e}"),
                    ResponseCode::PayloadValidationFailure,
                );
                if !options.lenient_nhs_number {
                    return Err(err);
                }
                msg.warnings.push(err);
            }
            msg.nhs_number = Some(raw.to_string());
        }
    }

    if options.skip_attachments {
        return Ok(());
    }
    for binary in doc.resources_of_type("Binary") {
        let path = entry_path(doc_path, doc, binary);
        let content_type = binary.child_value("contentType").ok_or_else(|| {
            ItkError::missing(
                format!("{path}.contentType"),
                ResponseCode::PayloadValidationFailure,
            )
        })?;
        let invalid = |e: base64::Base64Error| {
            ItkError::new(
                format!("{path}.content"),
                format!("invalid base64: {e}"),
                ResponseCode::PayloadValidationFailure,
            )
        };
        if options.check_attachments_only {
            if let Some(text) = binary.child_value("content") {
                base64::check(text).map_err(invalid)?;
            }
            continue;
        }
        let bytes = match binary.child_value("content") {
            Some(text) => base64::decode(text).map_err(invalid)?,
            None => Vec::new(),
        };
        msg.attachments.push(Attachment {
            id: binary.resource_id().map(str::to_string),
            content_type: content_type.to_string(),
            size: bytes.len(),
            sha256: crate::sha256_hex(&bytes),
        });
    }
    Ok(())
}
