//! Mail transport: a letter (plain text and HTML from the document, the document attached)
//! submitted to the configured relay, NHSmail-style: STARTTLS or implicit TLS, AUTH, From the
//! account address, `[secure]` in the subject for domains outside the secure boundary, and a
//! Message-ID naming the delivery. 250 is `sent`; 4xx and connection trouble are retried;
//! 5xx fails the delivery with the server's text. The mail itself is built by
//! `compose`, as notices to senders are.

pub mod compose;

use super::{SendError, Sent};
use crate::config::{RelayConfig, RelaySecurity};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// A connection pool to the relay, built once from the config.
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    config: RelayConfig,
}

impl Relay {
    pub fn new(config: &RelayConfig) -> anyhow::Result<Self> {
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut b = TlsParameters::builder(config.host.clone());
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| anyhow::anyhow!("smtp.relay.ca_file {}: {e}", ca.display()))?;
                b = b
                    .add_root_certificate(Certificate::from_pem(&pem).map_err(|e| {
                        anyhow::anyhow!("smtp.relay.ca_file {}: {e}", ca.display())
                    })?);
            }
            Ok(b.build_rustls()?)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(Duration::from_secs(config.timeout_secs)))
            .tls(match config.security {
                RelaySecurity::Starttls => Tls::Required(tls()?),
                RelaySecurity::Tls => Tls::Wrapper(tls()?),
                RelaySecurity::None => Tls::None,
            });
        if let (Some(u), Some(p)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            config: config.clone(),
        })
    }

    /// The account address mail comes from.
    pub fn from(&self) -> &str {
        &self.config.from
    }

    /// Whether mail to `address` (or `Name <address>`) must be marked `[secure]` to be
    /// encrypted.
    pub fn needs_secure_tag(&self, address: &str) -> bool {
        let address = address
            .rsplit_once('<')
            .map_or(address, |(_, a)| a.trim_end().trim_end_matches('>'));
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.trim().to_ascii_lowercase())
            .unwrap_or_default();
        !self.config.secure_domains.iter().any(|s| {
            let s = s.to_ascii_lowercase();
            domain == s || domain.ends_with(&format!(".{s}"))
        })
    }

    /// Submits one RFC 5322 message to `to` (an address, or `Name <address>`). Returns the
    /// relay's reply on 250.
    pub async fn submit(&self, to: &str, message: &[u8]) -> Result<String, SendError> {
        let from =
            compose::mailbox(&self.config.from, "smtp.relay.from").map_err(SendError::Permanent)?;
        let to = compose::mailbox(to, "the recipient address").map_err(SendError::Permanent)?;
        let envelope = Envelope::new(Some(from.email), vec![to.email])
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        match self.transport.send_raw(&envelope, message).await {
            Ok(response) => Ok(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!(
                "the relay {} refused the mail: {e}",
                self.config.host
            ))),
            Err(e) => Err(SendError::Transient(format!(
                "the relay {}:{} could not take the mail now: {e}",
                self.config.host, self.config.port
            ))),
        }
    }
}

/// Mails delivery `d`'s document to `address` as a letter.
pub async fn send(
    relay: Option<&Relay>,
    domain: &str,
    d: &crate::track::DeliveryRecord,
    meta: &edt_transforms::DocumentMeta,
    payload: &[u8],
    address: &str,
) -> Result<Sent, SendError> {
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
        },
    )
    .map_err(SendError::Permanent)?;
    let reply = relay.submit(address, &letter).await?;
    Ok(Sent {
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
