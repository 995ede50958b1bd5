//! Mail transport: a letter (plain text and HTML from the document, the document attached)
//! submitted to the configured relay, NHSmail-style: STARTTLS or implicit TLS, AUTH, From the
//! account address, `[secure]` in the subject for domains outside the secure boundary, and a
//! Message-ID naming the delivery. 250 is `sent`; 4xx and connection trouble are retried;
//! 5xx fails the delivery with the server's text. The mail itself is built by
//! `clients::compose`, as notices to senders are; the relay client is `clients::relay`.

use super::{SendError, Sent};
use crate::clients::compose;
use crate::clients::relay::Relay;

/// A mailbox reached through the hub's SMTP relay.
pub struct Mail<'a> {
    pub relay: Option<&'a Relay>,
    /// The hub's mail domain (Message-IDs).
    pub domain: &'a str,
    pub address: String,
}

impl super::Transport for Mail<'_> {
    fn send<'a>(
        &'a self,
        d: &'a crate::track::DeliveryRecord,
        _m: &'a crate::track::MessageRecord,
        doc: super::Document,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(send(
            self.relay,
            self.domain,
            d,
            doc.meta,
            doc.bytes,
            &self.address,
        ))
    }
}

/// Mails delivery `d`'s document to `address` as a letter.
pub async fn send(
    relay: Option<&Relay>,
    domain: &str,
    d: &crate::track::DeliveryRecord,
    meta: edt_transforms::DocumentMeta,
    payload: Vec<u8>,
    address: &str,
) -> Result<Sent, SendError> {
    let (meta, payload) = (&meta, payload.as_slice());
    let Some(relay) = relay else {
        return Err(SendError::Transient(
            "no SMTP relay is configured ([smtp.relay] in the hub config)".into(),
        ));
    };
    let title = meta
        .title
        .clone()
        .unwrap_or_else(|| meta.document_type.to_string());
    let message_id = format!("<{}@{domain}>", d.id);
    let (text, html) = edt_transforms::email::bodies(meta, payload);
    let file_name = edt_transforms::email::file_name_of(meta);
    let extra = edt_transforms::email::extra_attachments(meta, payload);
    let letter = compose::build(
        &compose::Headers {
            from: relay.from(),
            to: address,
            subject: &title,
            secure: relay.needs_secure_tag(address),
            message_id: &message_id,
            date_ms: d.created_ms,
            in_reply_to: None,
        },
        compose::Content::Letter {
            text,
            html,
            file_name: &file_name,
            content_type: &meta.content_type,
            bytes: payload,
            extra: &extra,
        },
    )
    .map_err(SendError::Permanent)?;
    let reply = relay.submit(address, &letter).await?;
    Ok(Sent {
        refused: None,
        transport_id: message_id.clone(),
        detail: format!(
            "mailed to {address} as {message_id} ({} bytes); relay said {reply}",
            letter.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RelayConfig, RelaySecurity};

    // The relay's connection pool runs on the runtime.
    #[tokio::test]
    async fn secure_tag_outside_the_secure_domains() {
        let relay = Relay::new(&RelayConfig {
            host: "127.0.0.1".into(),
            port: 25,
            security: RelaySecurity::None,
            username: None,
            password: None,
            from: "hub@nhs.net".into(),
            ca_file: None,
            secure_domains: vec!["nhs.net".into()],
            timeout_secs: 5,
        })
        .unwrap();
        assert!(!relay.needs_secure_tag("gp.a81001@nhs.net"));
        assert!(!relay.needs_secure_tag("x@mail.NHS.NET"));
        assert!(relay.needs_secure_tag("care-home@example.org"));
        assert!(relay.needs_secure_tag("x@fakenhs.net"));
        assert!(!relay.needs_secure_tag("Dr Zoë <gp@nhs.net>"));
        assert!(relay.needs_secure_tag("Surgery <x@example.org>"));
    }
}
