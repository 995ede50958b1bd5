//! Notices to mail senders: when a delivery of a mailed document ends `failed`, `rejected` or
//! `unroutable`, the hub mails the envelope sender what, to whom, why and the message id.
//!
//! At most once per delivery outcome: the notice is claimed in the message's timeline
//! (`notice`) and flushed before it is sent; a send that fails is recorded (`notice-failed`)
//! so a later sweep tries again. The store's change feed drives it; a sweep every minute
//! catches anything the feed missed (a restart, a lagging receiver).

use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::track::{AuditEvent, Channel, DeliveryRecord, DeliveryState, MessageRecord};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const OUTCOMES: [DeliveryState; 3] = [
    DeliveryState::Failed,
    DeliveryState::Rejected,
    DeliveryState::Unroutable,
];
const SWEEP: Duration = Duration::from_secs(60);

/// Runs the notifier until `shutdown` fires. Does nothing useful without a relay.
pub fn spawn(hub: Arc<Hub>, mut shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = hub.store.changes();
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = sweep.tick() => sweep_all(&hub).await,
                changed = changes.recv() => match changed {
                    Ok(id) => check_message(&hub, id, false).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => sweep_all(&hub).await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    })
}

async fn sweep_all(hub: &Hub) {
    let now = crate::track::now_ms();
    let mut seen = std::collections::HashSet::new();
    for state in OUTCOMES {
        let Ok(ids) = hub.store.deliveries_in_state(state, now, 10_000) else {
            continue;
        };
        for d in ids {
            if let Ok(Some(d)) = hub.store.delivery(d) {
                if seen.insert(d.message_id) {
                    check_message(hub, d.message_id, true).await;
                }
            }
        }
    }
}

/// Sends whatever notices message `id` is owed. A notice that could not be sent is tried
/// again only by the sweep (`retry_failed`), not on every change, so a relay that is down is
/// not hammered.
async fn check_message(hub: &Hub, id: Uuid, retry_failed: bool) {
    let Ok(Some(m)) = hub.store.message(id) else {
        return;
    };
    let Some(reply_to) = m.reply_to.clone() else {
        return;
    };
    if m.channel != Channel::Smtp {
        return;
    }
    let Ok(deliveries) = hub.store.deliveries_of(id) else {
        return;
    };
    let owed: Vec<DeliveryRecord> = deliveries
        .into_iter()
        .filter(|d| d.is_current() && OUTCOMES.contains(&d.state))
        .collect();
    if owed.is_empty() {
        return;
    }
    let Ok(timeline) = hub.store.audit_of(id) else {
        return;
    };
    for d in owed {
        // The latest notice event for this delivery and outcome decides.
        let last = timeline.iter().rev().find(|e| {
            e.delivery_id == Some(d.id) && e.to == Some(d.state) && e.event.starts_with("notice")
        });
        match last.map(|e| e.event.as_str()) {
            Some("notice") | Some("notice-undeliverable") => continue,
            Some("notice-failed") if !retry_failed => continue,
            _ => {}
        }
        let Some(relay) = hub.relay.as_ref() else {
            tracing::warn!(message = %id, delivery = %d.id, "a notice is owed to the sender but no SMTP relay is configured");
            return;
        };
        let claim = event(&m, &d, "notice", format!("notice to the sender {reply_to}"));
        if hub.store.audit(claim).is_err() || hub.store.flush().await.is_err() {
            return;
        }
        // Err((why, last)): a final failure (the relay refuses the notice, the address is
        // unusable) is not tried again.
        let result = match notice(hub, &m, &d, &reply_to) {
            Ok(bytes) => relay.submit(&reply_to, &bytes).await.map_err(|e| match e {
                crate::deliver::SendError::Transient(s) => (s, false),
                crate::deliver::SendError::Permanent(s) => (s, true),
            }),
            Err(e) => Err((e, true)),
        };
        match result {
            Ok(_) => {
                metrics::counter!("edthub_smtp_notices_total", "outcome" => "sent").increment(1);
                tracing::info!(message = %id, delivery = %d.id, state = d.state.as_str(), "notice mailed to the sender");
            }
            Err((e, last)) => {
                metrics::counter!("edthub_smtp_notices_total", "outcome" => "failed").increment(1);
                tracing::warn!(message = %id, delivery = %d.id, error = %e, last, "notice could not be mailed");
                let name = if last {
                    "notice-undeliverable"
                } else {
                    "notice-failed"
                };
                let _ = hub.store.audit(event(
                    &m,
                    &d,
                    name,
                    format!("notice to {reply_to} not sent: {e}"),
                ));
            }
        }
    }
}

fn event(m: &MessageRecord, d: &DeliveryRecord, name: &str, reason: String) -> AuditEvent {
    AuditEvent {
        at_ms: crate::track::now_ms(),
        message_id: m.id,
        delivery_id: Some(d.id),
        event: name.to_string(),
        from: None,
        to: Some(d.state),
        actor: "hub".to_string(),
        reason,
    }
}

/// The notice itself: plain text, replying to the sender's own mail where its Message-ID is
/// known, built like letters (`compose`): `[secure]` in the subject outside the secure
/// domains. It names the document only by its type, size and the sender's reference: never
/// the title or file name (often the patient's name), the NHS number or the patient, and any
/// of those a receiver's reason quotes is blanked out.
fn notice(hub: &Hub, m: &MessageRecord, d: &DeliveryRecord, to: &str) -> Result<Vec<u8>, String> {
    let relay = hub.relay.as_ref().ok_or("no relay")?;
    let domain = &hub.config.smtp.domain;
    let loaded = hub.directory.get();
    let practice = loaded
        .directory
        .organisation(&d.recipient_ods)
        .map(|o| format!("{} ({})", d.recipient_ods, o.name))
        .unwrap_or_else(|| d.recipient_ods.clone());
    let why = match (d.state, &d.ack_code, &d.ack_reason, &d.last_error) {
        (DeliveryState::Rejected, code, reason, _) => format!(
            "the receiver rejected it{}{}",
            code.as_deref()
                .map(|c| format!(" with code {c}"))
                .unwrap_or_default(),
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (_, _, _, Some(e)) => e.clone(),
        _ => "no reason was recorded".to_string(),
    };
    let why = without_patient(m, &why);
    let text = format!(
        "The hub could not deliver a document you sent.\n\n\
         Document:    {} ({} bytes)\n\
         Your ref:    {}\n\
         To:          {practice}\n\
         Outcome:     {}\n\
         Why:         {why}\n\
         Message id:  {}\n\
         Delivery id: {}\n\n\
         Quote the message id when you contact the hub's operators; they can correct the \
         routing and replay the delivery.\n",
        m.document_type,
        m.payload_size,
        without_patient(m, &m.local_id),
        d.state.as_str(),
        m.id,
        d.id,
    );
    let subject = format!(
        "Not delivered ({}): {} to {}",
        d.state.as_str(),
        m.document_type,
        d.recipient_ods
    );
    let message_id = format!("<notice-{}-{}@{domain}>", d.id, d.state.as_str());
    // A Message-ID used as the local id lets the sender's mail client thread the notice.
    let mail_id = m.local_id.split('#').next().unwrap_or("");
    let in_reply_to = (mail_id.contains('@') && !mail_id.contains(char::is_whitespace))
        .then(|| format!("<{}>", mail_id.trim_matches(['<', '>'])));
    crate::clients::compose::build(
        &crate::clients::compose::Headers {
            from: relay.from(),
            to,
            subject: &subject,
            secure: relay.needs_secure_tag(to),
            message_id: &message_id,
            date_ms: crate::track::now_ms(),
            in_reply_to: in_reply_to.as_deref(),
        },
        crate::clients::compose::Content::Notice { text },
    )
}

/// `text` with the message's patient-identifying values (title, file name, NHS number, with
/// or without spaces) and any other ten-digit number blanked out.
fn without_patient(m: &MessageRecord, text: &str) -> String {
    let mut out = text.to_string();
    let mut known: Vec<String> = [&m.title, &m.file_name]
        .into_iter()
        .flatten()
        .filter(|v| v.trim().len() >= 3)
        .cloned()
        .collect();
    if let Some(n) = &m.nhs_number {
        let digits: String = n.chars().filter(char::is_ascii_digit).collect();
        if digits.len() == 10 {
            known.push(format!(
                "{} {} {}",
                &digits[..3],
                &digits[3..6],
                &digits[6..]
            ));
            known.push(digits);
        }
        known.push(n.clone());
    }
    for v in known {
        out = out.replace(&v, "[removed]");
    }
    // Any run of ten digits (an NHS number the receiver quoted).
    let mut result = String::with_capacity(out.len());
    let chars: Vec<char> = out.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_digit()) {
            let run = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if run == 10 {
                result.push_str("[removed]");
                i += run;
                continue;
            }
        }
        result.push(chars[i]);
        i += 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_identifiers_are_blanked() {
        let m = MessageRecord {
            title: Some("Discharge summary for Zoë Müller".into()),
            file_name: Some("Muller Zoe.pdf".into()),
            nhs_number: Some("9434765919".into()),
            ..crate::store::conformance::sample("RX1", "EPR-1", &["A81001"]).message
        };
        let why = "the receiver rejected it: patient 943 476 5919 (Discharge summary for Zoë \
                   Müller, Muller Zoe.pdf) not registered; also 4010232137";
        let clean = without_patient(&m, why);
        for gone in ["943 476 5919", "Zoë", "Muller Zoe", "4010232137"] {
            assert!(!clean.contains(gone), "{gone} in {clean}");
        }
        assert!(clean.contains("not registered"), "{clean}");
        assert_eq!(without_patient(&m, "EPR-12345"), "EPR-12345");
    }
}
