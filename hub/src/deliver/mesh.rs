//! MESH transport: the delivery's document (in the route's format, ITK3 by default for
//! Transfer of Care) sent to the recipient's mailbox on the document type's workflow. 202 is
//! `sent` (MESH's message id is kept to match its reports); 4xx fails the delivery with MESH's
//! words; connection trouble and 5xx are retried.

use super::{SendError, Sent};
use crate::clients::mesh::MeshClient;
use crate::clients::mesh::Outgoing;
use crate::config::MeshConfig;
use crate::track::{DeliveryRecord, MessageRecord};

/// A MESH mailbox (or MESH's endpoint lookup), through the hub's MESH client.
pub struct Mesh<'a> {
    pub client: Option<&'a MeshClient>,
    pub settings: &'a MeshConfig,
    pub mailbox: Option<String>,
    pub workflow: Option<String>,
}

impl super::Transport for Mesh<'_> {
    fn send<'a>(
        &'a self,
        d: &'a DeliveryRecord,
        m: &'a MessageRecord,
        doc: super::Document,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(send(self, d, m, doc))
    }
}

async fn send(
    t: &Mesh<'_>,
    d: &DeliveryRecord,
    m: &MessageRecord,
    doc: super::Document,
) -> Result<Sent, SendError> {
    let Some(client) = t.client else {
        return Err(SendError::Transient(
            "MESH is not configured on this hub ([mesh] url, mailbox, password, shared_key)".into(),
        ));
    };
    let format = d.format.unwrap_or_default().as_str();
    let (meta, bytes) = (doc.meta, doc.bytes);
    // The workflow follows what is sent: a GP Connect Send Document goes on the GP Connect
    // workflow whatever the letter inside; an ITK3 message on its own event's workflow.
    let sent_event = edt_transforms::extract::fhir_format(&meta.content_type).and_then(|f| {
        let options = edt_transforms::itk3::ReadOptions {
            lenient_nhs_number: true,
            skip_attachments: true,
            ..Default::default()
        };
        edt_transforms::itk3::read_message_with(&bytes, f, options)
            .ok()
            .map(|msg| (msg.event, msg.document_type))
    });
    let (key_type, key_format) = match &sent_event {
        Some((event, _)) if event == edt_transforms::itk3::EVENT_SEND_DOCUMENT => {
            (m.document_type.as_str(), "gp-connect")
        }
        Some((_, Some(t))) => (t.as_str(), format),
        _ => (m.document_type.as_str(), format),
    };
    let workflow = match &t.workflow {
        Some(w) => w.to_string(),
        None => t.settings.workflow(key_type, key_format).ok_or_else(|| {
            SendError::Permanent(format!(
                "no MESH workflow for {} documents: name one on the endpoint or in mesh.workflows",
                m.document_type
            ))
        })?,
    };
    let to = match &t.mailbox {
        Some(mb) => mb.to_string(),
        None => client
            .lookup(&d.recipient_ods, &workflow)
            .await?
            .ok_or_else(|| {
                SendError::Permanent(format!(
                    "MESH endpoint lookup found no mailbox for {} on workflow {workflow}",
                    d.recipient_ods
                ))
            })?,
    };
    let id = d.id.to_string();
    let file_name = format!(
        "{id}.{}",
        edt_transforms::index::extension_for(&meta.content_type)
    );
    let chunks = bytes.len().div_ceil(t.settings.chunk_bytes.max(1)).max(1);
    let mesh_id = client
        .send(&Outgoing {
            to: &to,
            workflow: &workflow,
            // No patient details in MESH headers.
            subject: &format!("{} from {}", m.document_type, m.sender_ods),
            local_id: &id,
            file_name: &file_name,
            content_type: &meta.content_type,
            body: &bytes,
        })
        .await?;
    Ok(Sent {
        refused: None,
        transport_id: mesh_id.clone(),
        detail: format!(
            "sent to MESH mailbox {to} on workflow {workflow} as message {mesh_id} ({} bytes{})",
            bytes.len(),
            if chunks > 1 {
                format!(", {chunks} chunks")
            } else {
                String::new()
            }
        ),
    })
}
