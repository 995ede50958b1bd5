//! The answer to one HL7 v2 message received over MLLP: who sent it (MSH-3/MSH-4 against
//! `mllp.senders`), what it is (an ORU^R01, read and checked by `edt_transforms::hl7`), and
//! the acknowledgement, given only once the result is durable:
//!
//! | Outcome | MSA-1 (MSH-15 set: enhanced mode) | ERR |
//! |---|---|---|
//! | stored (or a resend of one stored: the same answer again) | `AA` (`CA`) | none |
//! | content error (PID, OBR/OBX, NHS number, no recipient, directory refuses it) | `AE` (`CE`) | segment, field, HL7 table 0357 code, text |
//! | not processed: unreadable, not ORU^R01, unsupported version, unknown sender, MSH-10 reused for another result, the hub cannot store now | `AR` (`CR`) | as above |
//!
//! With MSH-15 (accept acknowledgement type) `NE` nothing is sent back, with `ER` only errors,
//! with `SU` only successes; `AL` (or any other value) always answers.

use crate::hub::Hub;
use crate::ingest::{submit, Submission, SubmitError};
use crate::track::{now_ms, Channel};
use edt_transforms::hl7::{
    build_ack, build_unreadable_ack, AckCode, AckRequest, ErrorDetail, ErrorLocation,
    ErrorSeverity, Message, OruError, OruSummary,
};
use edt_transforms::DocumentType;
use uuid::Uuid;

/// The content type results received over MLLP are stored with.
pub const CONTENT_TYPE: &str = "application/hl7-v2";

/// What the hub says to one message: the acknowledgement (ER7, segments ended by CR), or
/// nothing when MSH-15 asks for none in this case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: AckCode,
    pub ack: Option<String>,
    /// The message the result was stored as (new or original).
    pub message_id: Option<Uuid>,
}

/// `text` cut to at most `max` characters (MSA-3 is ST 80, ERR-8 TX 199 in HL7 v2.5), with
/// `...` where it was cut.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// HL7 timestamp (`YYYYMMDDHHMMSS`) of a time in milliseconds since the epoch.
pub fn hl7_time(ms: u64) -> String {
    crate::track::rfc3339(ms)
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect()
}

fn location(segment: &str, field: Option<usize>) -> ErrorLocation {
    ErrorLocation {
        segment: segment.into(),
        sequence: 1,
        field,
        repetition: None,
        component: None,
    }
}

fn error(code: &str, at: Option<ErrorLocation>, text: String) -> ErrorDetail {
    ErrorDetail {
        location: at,
        code: code.into(),
        severity: ErrorSeverity::Error,
        text: fit(&text, 199),
    }
}

/// The commit (enhanced mode) code for an application code.
fn commit(code: AckCode) -> AckCode {
    match code {
        AckCode::ApplicationAccept => AckCode::CommitAccept,
        AckCode::ApplicationError => AckCode::CommitError,
        AckCode::ApplicationReject => AckCode::CommitReject,
        c => c,
    }
}

/// How a refusal from `submit` is answered: which code, where, which HL7 error.
fn refusal(e: &SubmitError) -> (AckCode, ErrorDetail) {
    match e {
        SubmitError::Invalid { field, rule } => {
            let text = format!("{field}: {rule}");
            match *field {
                "local_id" => (
                    AckCode::ApplicationReject,
                    error(
                        "205",
                        Some(location("MSH", Some(10))),
                        format!(
                            "MSH-10: this facility already sent another result with this \
                             control id (message {}); a corrected result needs a new MSH-10",
                            e.reused_local_id()
                                .map(|u| u.to_string())
                                .unwrap_or_default()
                        ),
                    ),
                ),
                "sender_ods" => (
                    AckCode::ApplicationReject,
                    error("103", Some(location("MSH", Some(4))), text),
                ),
                "recipient_ods" => (
                    AckCode::ApplicationError,
                    error("103", Some(location("PD1", Some(3))), text),
                ),
                "nhs_number" => (
                    AckCode::ApplicationError,
                    error("102", Some(location("PID", Some(3))), text),
                ),
                _ => (AckCode::ApplicationError, error("207", None, text)),
            }
        }
        SubmitError::Unavailable(why) | SubmitError::DiskFull(why) | SubmitError::Backlog(why) => (
            AckCode::ApplicationReject,
            error(
                "207",
                None,
                format!("the hub cannot store results now: {why}"),
            ),
        ),
        SubmitError::Store(s) => (
            AckCode::ApplicationReject,
            error(
                "207",
                None,
                format!("the hub cannot store results now ({s}); nothing was stored, send again"),
            ),
        ),
    }
}

/// Reads, checks, stores and acknowledges one message (`text`, segments ended by CR).
pub async fn answer(hub: &Hub, text: &str) -> Answer {
    let cfg = &hub.config.mllp;
    let now = now_ms();
    let limits = edt_transforms::hl7::Limits {
        max_bytes: cfg.max_message_bytes.saturating_add(16),
        ..Default::default()
    };
    let message = match Message::parse_bytes_with_limits(text.as_bytes(), &limits) {
        Ok(m) => m,
        Err(e) => {
            let e = OruError::Unreadable(e);
            let mut req = AckRequest::for_error(&e, &Uuid::now_v7().to_string(), &hl7_time(now));
            req.text = fit(&req.text, 80);
            for d in &mut req.errors {
                d.text = fit(&d.text, 199);
            }
            let ack = build_unreadable_ack(&req, &cfg.application, &cfg.facility)
                .map(|m| m.render())
                .ok();
            metrics::counter!("edthub_mllp_answers_total", "code" => "AR").increment(1);
            return Answer {
                code: AckCode::ApplicationReject,
                ack,
                message_id: None,
            };
        }
    };
    let msh = message.msh();
    let accept_type = msh.text(15).trim().to_ascii_uppercase();
    let enhanced = !accept_type.is_empty();
    let application = msh.component(3, 1, 1).unwrap_or_default().into_owned();
    let facility = msh.component(4, 1, 1).unwrap_or_default().into_owned();

    let (code, errors, text_out, stored, received_ms) =
        match decide(hub, &message, text, &application, &facility).await {
            Ok((id, received)) => (
                AckCode::ApplicationAccept,
                vec![],
                String::new(),
                Some(id),
                received,
            ),
            Err((code, mut detail)) => {
                detail.text = fit(&detail.text, 199);
                let t = fit(&detail.text, 80);
                (code, vec![detail], t, None, now)
            }
        };
    let sent_code = if enhanced { commit(code) } else { code };
    metrics::counter!("edthub_mllp_answers_total", "code" => sent_code.as_str()).increment(1);
    let wanted = match accept_type.as_str() {
        "NE" => false,
        "ER" => code != AckCode::ApplicationAccept,
        "SU" => code == AckCode::ApplicationAccept,
        _ => true,
    };
    if !wanted {
        return Answer {
            code: sent_code,
            ack: None,
            message_id: stored,
        };
    }
    // The acknowledgement of a stored result is named after the message it was stored as and
    // timed when it was received, so a resend gets the very same answer.
    let control_id = stored.map_or_else(|| Uuid::now_v7().to_string(), |id| id.to_string());
    let request = AckRequest {
        code: sent_code,
        control_id,
        timestamp: hl7_time(received_ms),
        text: text_out,
        errors,
    };
    let ack = build_ack(&message, &request).map(|m| m.render()).ok();
    Answer {
        code: sent_code,
        ack,
        message_id: stored,
    }
}

/// Checks the message and stores it: the stored message and when it was received, or the
/// code and error to answer with.
async fn decide(
    hub: &Hub,
    message: &Message<'_>,
    text: &str,
    application: &str,
    facility: &str,
) -> Result<(Uuid, u64), (AckCode, ErrorDetail)> {
    let cfg = &hub.config.mllp;
    // What it is comes first (an ADT from anyone is not taken), then who sent it.
    let summary = OruSummary::from_message(message);
    if let Err(e @ (OruError::MessageType { .. } | OruError::Version { .. })) = &summary {
        return Err((e.ack_code(), e.error_detail()));
    }
    let Some(sender) = cfg.sender(application, facility) else {
        return Err((
            AckCode::ApplicationReject,
            error(
                "103",
                Some(location("MSH", Some(4))),
                format!(
                    "MSH-3/MSH-4: sending application {application:?} at facility \
                     {facility:?} is not allowed to send results to this hub (mllp.senders)"
                ),
            ),
        ));
    };
    let sender_ods = sender.sender_ods.trim().to_ascii_uppercase();
    let summary = summary.map_err(|e| (e.ack_code(), e.error_detail()))?;
    // The practice the result names, else where the facility's results go.
    let recipient = summary
        .recipient
        .as_ref()
        .map(|r| r.ods_code.to_string())
        .or_else(|| {
            sender
                .recipient
                .as_ref()
                .map(|r| r.trim().to_ascii_uppercase())
        });
    let Some(recipient) = recipient else {
        return Err((
            AckCode::ApplicationError,
            error(
                "101",
                Some(location("PD1", Some(3))),
                "PD1-3: no recipient practice: give the patient's GP practice ODS code in \
                 PD1-3 (XON-10 or XON-3) or PV1-3 (or set the facility's recipient in \
                 mllp.senders)"
                    .into(),
            ),
        ));
    };
    let title = summary
        .results
        .iter()
        .map(|r| {
            if r.service.text.is_empty() {
                r.service.code.clone()
            } else {
                r.service.text.clone()
            }
        })
        .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
        .collect::<Vec<_>>()
        .join(", ");
    let sub = Submission {
        sender_ods,
        recipients: vec![recipient],
        document_type: DocumentType::OrderResult,
        content_type: CONTENT_TYPE.into(),
        payload: text.as_bytes().to_vec(),
        local_id: local_id(facility, &summary.control_id),
        nhs_number: summary.patient.nhs_number.as_ref().map(|n| n.to_string()),
        file_name: None,
        title: (!title.is_empty()).then(|| title.chars().take(200).collect()),
        channel: Channel::Mllp,
        reply_to: None,
    };
    let actor = format!("mllp:{facility}");
    match submit(hub, sub, &actor).await {
        Ok(receipt) => Ok((receipt.message_id, receipt.received_ms)),
        Err(e) => Err(refusal(&e)),
    }
}

/// The local id a result is stored under: the facility and its MSH-10, so a resend from the
/// same facility is the same document, and another facility's MSH-10 is not.
pub fn local_id(facility: &str, control_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect()
    };
    format!(
        "{}/{}",
        clean(facility).to_ascii_uppercase(),
        clean(control_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_times_are_digits_only() {
        assert_eq!(hl7_time(0), "19700101000000");
    }

    #[test]
    fn local_ids_name_the_facility() {
        assert_eq!(local_id(" rx1 ", "CTRL-1"), "RX1/CTRL-1");
    }

    #[test]
    fn enhanced_mode_codes() {
        assert_eq!(commit(AckCode::ApplicationAccept), AckCode::CommitAccept);
        assert_eq!(commit(AckCode::ApplicationError), AckCode::CommitError);
        assert_eq!(commit(AckCode::ApplicationReject), AckCode::CommitReject);
    }
}
