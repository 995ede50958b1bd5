//! Rendering for a receiver: the document a delivery gives its receiver, in its route's
//! format (`edt_transforms::render`), headed with the sending mailbox the directory or the
//! hub's MESH settings name. Used by ingest (to refuse at once what can never be rendered)
//! and by delivery (to render once, before the transport).

use crate::hub::Hub;
use crate::track::{DeliveryRecord, MessageRecord};

/// The MESH mailbox that ITK3 messages sent for `sender_ods` name as their source: the
/// sender's own (`mesh_mailbox` in the directory), else the hub's (`mesh.mailbox`).
pub fn source_mailbox(hub: &Hub, sender_ods: &str) -> Option<String> {
    hub.directory
        .get()
        .directory
        .sender(sender_ods)
        .and_then(|s| s.mesh_mailbox.clone())
        .or_else(|| Some(hub.config.mesh.mailbox.clone()))
        .filter(|m| !m.trim().is_empty())
}

/// The document delivery `d` gives its receiver, in the delivery's format.
pub fn render_for(
    hub: &Hub,
    d: &DeliveryRecord,
    m: &MessageRecord,
    payload: &[u8],
) -> Result<edt_transforms::render::Rendered, String> {
    let id = d.id.to_string();
    let created_at = crate::track::rfc3339(d.created_ms);
    let source = source_mailbox(hub, &m.sender_ods);
    edt_transforms::render::render(
        d.format.unwrap_or_default(),
        &m.meta(),
        payload,
        &edt_transforms::render::Delivery {
            id: &id,
            recipient_ods: &d.recipient_ods,
            recipient_type: d.recipient_type,
            created_at: &created_at,
            source_endpoint: source.as_deref(),
        },
    )
    .map_err(|e| e.to_string())
}
