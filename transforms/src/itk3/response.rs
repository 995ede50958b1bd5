//! ITK3 responses (event ITK008M): infrastructure and business acknowledgements.

use super::codes::{
    event_display, RecipientType, ResponseCode, ResponseKind, EVENT_RESPONSE,
    MESSAGE_DEFINITION_RESPONSE, UNREADABLE_ORIGINAL,
};
use super::message::{message_header, read_event, read_handling, Handling, ItkMessage};
use super::render::{
    coding, derived_uuid, entry, handling_extension, header_organization, message_bundle,
    meta_profile, reference, urn,
};
use super::{parse, Format, ItkError, PROFILE_BASE};
use crate::fhir::{systems, Element};
use crate::ods::OdsCode;

/// The message a response answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseTo {
    /// The original `MessageHeader.id`; `None` when it could not be read, which is sent as
    /// `UNREADABLE-IN-ORIGINAL-MESSAGE`.
    pub message_id: Option<String>,
    /// The original `SenderReference`, echoed; `None` is sent as `None`.
    pub sender_reference: Option<String>,
}

impl From<&ItkMessage> for ResponseTo {
    fn from(m: &ItkMessage) -> Self {
        Self {
            message_id: Some(m.message_id.clone()),
            sender_reference: Some(m.handling.sender_reference.clone()),
        }
    }
}

/// Ids, time and sender of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseParams {
    /// The response `Bundle.id`.
    pub bundle_id: String,
    /// The response `Bundle.identifier.value`.
    pub bundle_identifier: String,
    /// The response `MessageHeader.id`.
    pub message_id: String,
    /// `MessageHeader.timestamp`: when the response was made.
    pub timestamp: String,
    /// The responding Organization's ODS code.
    pub sender_ods: OdsCode,
    /// The responder's MESH mailbox.
    pub source_endpoint: Option<String>,
    /// `OperationOutcome.issue.diagnostics`: detail for a negative response. It must not
    /// carry patient-identifiable data.
    pub diagnostics: Option<String>,
}

/// Builds an ITK3 response: MessageHeader (event ITK008M, both acknowledgement flags false,
/// RecipientType FI, the response MessageDefinition, the original SenderReference echoed,
/// `response.identifier` = the original message id, `response.code` `ok` or `fatal-error`,
/// `response.details` → the OperationOutcome), the responder's header Organization, and an
/// ITK-Response-OperationOutcome-1 whose one issue carries the ITK-ResponseCodes-1 code.
pub fn render_response(to: &ResponseTo, code: ResponseCode, params: &ResponseParams) -> Element {
    let sender_id = derived_uuid(&params.message_id, "sender");
    let outcome_id = derived_uuid(&params.message_id, "outcome");
    let handling = Handling {
        inf_ack_requested: false,
        bus_ack_requested: false,
        recipient_type: RecipientType::ForInformation,
        message_definition: MESSAGE_DEFINITION_RESPONSE.to_string(),
        sender_reference: to
            .sender_reference
            .clone()
            .unwrap_or_else(|| "None".to_string()),
        local_extension: None,
        priority: None,
    };
    let mut header = Element::resource("MessageHeader")
        .with(Element::primitive("id", params.message_id.as_str()))
        .with(meta_profile(format!("{PROFILE_BASE}ITK-MessageHeader-2")))
        .with(handling_extension(&handling))
        .with(coding(
            "event",
            systems::ITK_MESSAGE_EVENT,
            EVENT_RESPONSE,
            event_display(EVENT_RESPONSE).unwrap_or(EVENT_RESPONSE),
        ))
        .with(reference("sender", &urn(&sender_id)))
        .with(Element::primitive("timestamp", params.timestamp.as_str()));
    if let Some(endpoint) = &params.source_endpoint {
        header.push(Element::new("source").with(Element::primitive("endpoint", endpoint.as_str())));
    }
    header.push(
        Element::new("response")
            .with(Element::primitive(
                "identifier",
                to.message_id.as_deref().unwrap_or(UNREADABLE_ORIGINAL),
            ))
            .with(Element::primitive("code", code.response_type()))
            .with(reference("details", &urn(&outcome_id))),
    );

    let mut issue = Element::new("issue")
        .with(Element::primitive("severity", code.issue_severity()))
        .with(Element::primitive("code", code.issue_code()))
        .with(Element::new("details").with(coding(
            "coding",
            systems::ITK_RESPONSE_CODES,
            &code.code().to_string(),
            code.display(),
        )));
    if let Some(d) = &params.diagnostics {
        issue.push(Element::primitive("diagnostics", d.as_str()));
    }
    let outcome = Element::resource("OperationOutcome")
        .with(Element::primitive("id", outcome_id.as_str()))
        .with(meta_profile(format!(
            "{PROFILE_BASE}ITK-Response-OperationOutcome-1"
        )))
        .with(issue);

    message_bundle(
        &params.bundle_id,
        &params.bundle_identifier,
        &params.message_id,
        header,
        vec![
            entry(
                &urn(&sender_id),
                header_organization(&sender_id, &params.sender_ods),
            ),
            entry(&urn(&outcome_id), outcome),
        ],
    )
}

/// What [`read_response`] found in an ITK3 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItkResponse {
    /// The response's own `MessageHeader.id`.
    pub message_id: String,
    /// `response.identifier`: the acknowledged message's id, or
    /// `UNREADABLE-IN-ORIGINAL-MESSAGE`.
    pub original_message_id: String,
    /// The ITK3 response code from the OperationOutcome.
    pub code: ResponseCode,
    /// Infrastructure or business acknowledgement.
    pub kind: ResponseKind,
    /// Whether the code reports success (20013, 30001, 30004).
    pub positive: bool,
    /// `response.code` as sent (`ok`, `fatal-error`, ...).
    pub response_type: Option<String>,
    /// The code's display as sent, or else its standard meaning.
    pub text: String,
    /// `OperationOutcome.issue.diagnostics`.
    pub diagnostics: Option<String>,
    /// The echoed `SenderReference`, if the handling keys carry one.
    pub sender_reference: Option<String>,
    /// `MessageHeader.timestamp`.
    pub timestamp: Option<String>,
}

/// Reads an ITK3 response.
pub fn read_response(bytes: &[u8], format: Format) -> Result<ItkResponse, ItkError> {
    read_response_element(&parse(bytes, format)?)
}

const HEADER: &str = "Bundle.entry[0].resource.MessageHeader";

/// Reads an ITK3 response from an already parsed tree. Only the handling flags are required
/// of the handling keys; the others default as a response need not carry them.
pub fn read_response_element(root: &Element) -> Result<ItkResponse, ItkError> {
    let header = message_header(root)?;
    let message_id = header
        .resource_id()
        .ok_or_else(|| {
            ItkError::missing(
                format!("{HEADER}.id"),
                ResponseCode::HeaderValidationFailure,
            )
        })?
        .to_string();
    let event = read_event(header)?;
    if event != EVENT_RESPONSE {
        return Err(ItkError::new(
            format!("{HEADER}.event.code"),
            format!("expected {EVENT_RESPONSE}, found `{event}`"),
            ResponseCode::MessageDefinitionError,
        ));
    }
    let sender_reference = read_handling(header, true)
        .ok()
        .map(|h| h.sender_reference)
        .filter(|_| {
            header
                .find_extension(systems::ITK_MESSAGE_HANDLING)
                .and_then(|e| e.find_extension("SenderReference"))
                .is_some()
        });
    let response = header.child("response").ok_or_else(|| {
        ItkError::missing(
            format!("{HEADER}.response"),
            ResponseCode::HeaderValidationFailure,
        )
    })?;
    let original_message_id = response
        .child_value("identifier")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ItkError::missing(
                format!("{HEADER}.response.identifier"),
                ResponseCode::HeaderValidationFailure,
            )
        })?
        .to_string();

    let outcome = response
        .get("response.details")
        .and_then(Element::reference)
        .and_then(|r| root.resolve_reference(r))
        .filter(|r| r.name == "OperationOutcome")
        .or_else(|| root.first_resource("OperationOutcome"))
        .ok_or_else(|| {
            ItkError::missing(
                "Bundle.entry.resource.OperationOutcome",
                ResponseCode::PayloadValidationFailure,
            )
        })?;
    let outcome_path = super::entry_path("Bundle", root, outcome);
    let found = outcome
        .children_named("issue")
        .enumerate()
        .find_map(|(i, issue)| {
            issue
                .get("issue.details")
                .and_then(|d| {
                    d.codings()
                        .find(|c| c.system == Some(systems::ITK_RESPONSE_CODES))
                })
                .map(|c| (i, issue, c))
        });
    let Some((i, issue, coding)) = found else {
        return Err(ItkError::missing(
            format!("{outcome_path}.issue.details.coding"),
            ResponseCode::PayloadValidationFailure,
        ));
    };
    let raw = coding.code.unwrap_or("");
    let code = ResponseCode::parse(raw).ok_or_else(|| {
        ItkError::new(
            format!("{outcome_path}.issue[{i}].details.coding.code"),
            format!("`{raw}` is not an ITK3 response code"),
            ResponseCode::PayloadValidationFailure,
        )
    })?;

    Ok(ItkResponse {
        message_id,
        original_message_id,
        code,
        kind: code.kind(),
        positive: code.is_positive(),
        response_type: response.child_value("code").map(str::to_string),
        text: coding.display.unwrap_or(code.display()).to_string(),
        diagnostics: issue.child_value("diagnostics").map(str::to_string),
        sender_reference,
        timestamp: header.child_value("timestamp").map(str::to_string),
    })
}
