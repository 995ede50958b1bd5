//! The SMTP relay client (lettre): STARTTLS or implicit TLS, optional AUTH, the relay's CA
//! when it is not a public one. Letters (`deliver::smtp`) and notices to senders go out
//! through it.

use super::{compose, SendError};
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
