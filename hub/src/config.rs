//! Configuration: a TOML file (`edthub serve --config FILE`), overridden by command-line flags.
//! Every field has a safe default, so `edthub serve` with no file runs a complete hub on the
//! embedded bus with a sample directory and drop folders under the data directory.
//!
//! The doc comments on these structs are the reference for the file; `deploy/edthub.toml`
//! shows every setting.

use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the node keeps its database (and, with no directory file, the sample directory and
    /// drop folders). Default `./edthub-data`.
    pub data_dir: PathBuf,
    /// gRPC listener (submission, tracking, admin, health, reflection), as `HOST:PORT` with an
    /// IP address or a host name (`localhost:50051`, `[::1]:50051`). Default
    /// `127.0.0.1:50051`; port 0 picks a free port.
    pub grpc_addr: ListenAddr,
    /// HTTP listener for `/healthz`, `/readyz` and `/metrics` (`HOST:PORT`). Default
    /// `127.0.0.1:9090`.
    pub http_addr: ListenAddr,
    /// The directory file (TOML). Relative paths inside it are resolved against its folder.
    /// Default: `<data_dir>/directory.toml`, created with sample content when missing.
    pub directory: Option<PathBuf>,
    /// This node's name, reported in stats and logs. Default: the host name, else "edthub".
    pub node: Option<String>,
    /// How often the directory's files are checked for changes (then reloaded), in
    /// milliseconds. Default 2000.
    pub directory_check_ms: u64,
    /// Memory for the database's cache of records, in MiB. Default 32. (The database also
    /// keeps a table of its pages in memory, which grows with the number of records stored:
    /// about 125 MB per million messages, 123 bytes each as measured.)
    pub cache_mb: u64,
    /// Longest a shutdown (SIGTERM, Ctrl-C) may take, in seconds: past it the process logs
    /// what it was still waiting for and exits, so that a stuck delivery or database cannot
    /// keep the node (and its database lock) alive. Default 30.
    pub shutdown_timeout_secs: u64,
    /// Bearer token the Admin service requires (`EDTHUB_TOKEN` on the CLI side). When unset,
    /// the admin API is open to whoever can reach the gRPC port.
    pub admin_token: Option<String>,
    /// Which bus carries work between stages: "embedded" (default: queues in this node's own
    /// database, no broker) or "amqp" (RabbitMQ, see `[amqp]`).
    pub bus: BusKind,
    pub amqp: AmqpConfig,
    pub limits: Limits,
    pub delivery: DeliveryConfig,
    pub acks: AckConfig,
    pub smtp: SmtpConfig,
    pub mllp: MllpConfig,
    pub mesh: MeshConfig,
    pub tls: TlsConfig,
    pub retention: RetentionConfig,
    pub console: ConsoleConfig,
    /// Who may call the gRPC API. Empty (the default): no identities are checked, except the
    /// Admin service's `admin_token` when set. With any identity configured, every call needs
    /// a bearer token naming one.
    pub identities: Vec<IdentityConfig>,
}

/// An address to listen on: `HOST:PORT`, where the host is an IP address (IPv6 in brackets,
/// `[::1]:50051`) or a name (`localhost`, `edthub.trust.nhs.uk`) resolved when the listener is
/// bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    host: String,
    port: u16,
}

impl ListenAddr {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket addresses the host name stands for (one, for an IP address).
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let found: Vec<_> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} has no addresses", self.host),
            ));
        }
        Ok(found)
    }

    /// Only this machine can reach it: every address the host stands for is a loopback one.
    /// A name that does not resolve is not taken to be local.
    pub fn is_loopback(&self) -> bool {
        self.resolve()
            .is_ok_and(|a| a.iter().all(|a| a.ip().is_loopback()))
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> Self {
        Self {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a.into());
        }
        let bad = |why: &str| format!("{s:?} is not HOST:PORT ({why}), e.g. localhost:50051");
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number up to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-')
            })
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_ok {
            return Err(bad("the host is neither an IP address nor a host name"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How long document bytes are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Payload bytes (the original; rendered documents are made from it) are purged this many
    /// days after receipt once every delivery is final; metadata and the timeline stay. 0
    /// (the default): kept for ever. `edthub purge` runs it by hand.
    pub payload_days: u64,
}

/// TLS for the gRPC listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain and private key. Both, or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate it issued (mutual
    /// TLS).
    pub client_ca: Option<PathBuf>,
    /// The hub is behind a proxy that terminates TLS: allow plain listeners on addresses other
    /// than loopback. Without it (and without `cert`) the hub refuses to start on them.
    pub behind_proxy: bool,
}

/// The ops console, served on the HTTP listener under `/console/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve it. Default true. On an HTTP address other than loopback it needs
    /// `tls.behind_proxy = true` (a proxy terminating TLS in front of the hub), as gRPC does.
    pub enabled: bool,
    /// How long a sign-in lasts without use, in minutes. Default 480 (a shift).
    pub session_minutes: u64,
    /// The other nodes of a cluster, as base URLs of their HTTP listeners
    /// (`http://hub-b:9090`): the overview shows each one's `/readyz`.
    pub peers: Vec<String>,
    /// With `tls.behind_proxy`: the request header in which the proxy passes the client
    /// certificate it verified, as URL-encoded PEM (nginx: `proxy_set_header
    /// X-Client-Cert $ssl_client_escaped_cert;`). The console then signs in the identity whose
    /// `cert_sha256` names it. The proxy must remove the header from what clients send.
    pub client_cert_header: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_minutes: 480,
            peers: Vec::new(),
            client_cert_header: None,
        }
    }
}

/// A caller of the gRPC API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Recorded as the actor of what it does.
    pub name: String,
    /// SHA-256 (hex) of its bearer token: `printf %s "$TOKEN" | sha256sum`.
    #[serde(default)]
    pub token_sha256: String,
    /// Or: SHA-256 (hex) of its TLS client certificate (DER), with `tls.client_ca` set:
    /// `openssl x509 -in client.crt -outform DER | sha256sum`.
    #[serde(default)]
    pub cert_sha256: String,
    pub roles: Vec<Role>,
    /// ODS codes it acts for: the senders a submitter may submit as, the recipients a receiver
    /// may pull and acknowledge.
    #[serde(default)]
    pub ods: Vec<String>,
}

/// What an identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submit documents as its own ODS codes, and track them.
    Submitter,
    /// Pull and acknowledge documents for its own ODS codes.
    Receiver,
    /// Every admin call: list, show, replay, cancel, reload, MESH poll.
    Ops,
    /// The read-only admin calls.
    Auditor,
}

/// MESH: the hub's own mailbox, which sends to practices' mailboxes and receives their ITK3
/// responses and MESH's reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Base URL of the MESH API, e.g. `https://msg.intspineservices.nhs.uk` (integration) or
    /// `https://mesh-sync.spineservices.nhs.uk` (live). Unset: MESH is off.
    pub url: Option<String>,
    /// The hub's mailbox id.
    pub mailbox: String,
    /// The mailbox password.
    pub password: String,
    /// The environment's shared secret for the NHSMESH authorization header.
    pub shared_key: String,
    /// Extra CA certificate (PEM) to trust for the MESH server.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS, as MESH requires in live use.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// How often the inbox is read, in milliseconds. Default 300000 (5 minutes, the
    /// standard's fastest polling); `edthub mesh poll` reads it at once.
    pub poll_ms: u64,
    /// Documents larger than this are sent in chunks of this size (each gzipped). Default
    /// 20 MiB (MESH takes at most 100 MB per request).
    pub chunk_bytes: usize,
    /// Seconds allowed for one MESH request. Default 120.
    pub timeout_secs: u64,
    /// Workflow id per document type (`discharge-summary`, ...) and for GP Connect Send
    /// Document (`gp-connect`), overriding the standard ones. A route's endpoint may name its
    /// own.
    pub workflows: std::collections::BTreeMap<String, String>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            url: None,
            mailbox: String::new(),
            password: String::new(),
            shared_key: String::new(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            poll_ms: 300_000,
            chunk_bytes: 20 * 1024 * 1024,
            timeout_secs: 120,
            workflows: Default::default(),
        }
    }
}

impl MeshConfig {
    /// The workflow for a document of `document_type` sent in `format`.
    pub fn workflow(&self, document_type: &str, format: &str) -> Option<String> {
        let key = if format == "gp-connect" {
            "gp-connect"
        } else {
            document_type
        };
        if let Some(w) = self.workflows.get(key) {
            return Some(w.clone());
        }
        Some(
            match key {
                "discharge-summary" => "TOC_FHIR_IP_DISCH",
                "emergency-care-discharge" => "TOC_FHIR_EC_DISCH",
                "mental-health-discharge" => "TOC_FHIR_MH_DISCH",
                "outpatient-letter" => "TOC_FHIR_OP_ATTEN",
                "gp-connect" | "generic-document" => "GPFED_CONSULT_REPORT",
                _ => return None,
            }
            .to_string(),
        )
    }
}

/// SMTP: the listener senders mail documents to, and the relay the hub mails letters and
/// notices through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Listen address for inbound mail (`--smtp-addr`), `HOST:PORT` with an IP address or a
    /// host name. Unset (the default): no listener. Port 0 picks a free port.
    pub listen: Option<ListenAddr>,
    /// The hub's mail domain: documents for a practice are mailed to `<ODS code>@<domain>`;
    /// mail for any other domain is refused (the hub is never a relay). Default
    /// `edthub.localhost`.
    pub domain: String,
    /// Largest message accepted, in bytes (advertised with SIZE). Default 25 MiB.
    pub max_message_bytes: usize,
    /// Concurrent connections; past that, new ones get `421` and are closed. Default 100.
    pub max_connections: usize,
    /// Most recipients on one message. Default 50.
    pub max_recipients: usize,
    /// Refuse MAIL until the client has used STARTTLS. Default false.
    pub require_tls: bool,
    /// Refuse MAIL until the client has authenticated (AUTH is offered only after STARTTLS).
    /// Default false: the envelope sender must then be one of `senders`.
    pub require_auth: bool,
    /// PEM certificate chain and private key for STARTTLS. STARTTLS is offered only when both
    /// are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for a command line. Default 300 (RFC 5321 section 4.5.3.2).
    pub command_timeout_secs: u64,
    /// Seconds to wait for each chunk of message data. Default 180.
    pub data_timeout_secs: u64,
    /// Longest a whole session may last, in seconds. Default 1800.
    pub session_timeout_secs: u64,
    /// Accounts that may authenticate, each bound to the sender ODS code it submits as.
    pub users: Vec<SmtpUser>,
    /// Envelope sender addresses (`MAIL FROM`) accepted without authentication, each bound to
    /// a sender ODS code. Matched case-insensitively.
    pub senders: Vec<SmtpSender>,
    /// Where letters and failure notices are sent. Unset: mail endpoints fail (retried) and no
    /// notices are sent.
    pub relay: Option<RelayConfig>,
}

/// An SMTP account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpUser {
    pub username: String,
    /// The password as an Argon2id PHC string (`$argon2id$v=19$...`), printed by
    /// `printf %s "$PASSWORD" | edthub hash-password`.
    pub password_hash: Option<String>,
    /// Deprecated: the unsalted SHA-256 of the password, in hex. Still accepted in this
    /// release, with a warning at start-up; replace it with `password_hash`.
    pub password_sha256: Option<String>,
    /// The sender ODS code this account submits as.
    pub sender_ods: String,
}

impl SmtpUser {
    /// The stored password, checked: exactly one of `password_hash` (Argon2id) and the
    /// deprecated `password_sha256`.
    pub fn password(&self) -> Result<crate::password::Stored<'_>, String> {
        use crate::password::{check_phc, Stored};
        match (&self.password_hash, &self.password_sha256) {
            (Some(phc), None) => {
                check_phc(phc).map_err(|e| {
                    format!(
                        "smtp.users {:?}: password_hash {e} (make one with `edthub hash-password`)",
                        self.username
                    )
                })?;
                Ok(Stored::Argon2(phc))
            }
            (None, Some(hex)) => {
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "smtp.users {:?}: password_sha256 must be 64 hex digits",
                        self.username
                    ));
                }
                Ok(Stored::Sha256(hex))
            }
            _ => Err(format!(
                "smtp.users {:?}: give password_hash (from `edthub hash-password`); the old \
                 password_sha256 is accepted instead of it, not with it",
                self.username
            )),
        }
    }
}

/// An envelope sender allowed without authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSender {
    pub address: String,
    pub sender_ods: String,
}

/// The outbound relay (an NHSmail-style submission server).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub host: String,
    /// Default 587.
    #[serde(default = "default_relay_port")]
    pub port: u16,
    /// "starttls" (default; the connection must upgrade), "tls" (implicit TLS, port 465) or
    /// "none" (plain; for a relay on the same host only).
    #[serde(default)]
    pub security: RelaySecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The account address letters are sent from.
    pub from: String,
    /// Extra CA certificate (PEM) to trust for the relay, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Recipient domains inside the secure boundary. Mail to any other domain gets
    /// `[secure]` in its subject, which makes NHSmail encrypt it. Default `["nhs.net"]`.
    #[serde(default = "default_secure_domains")]
    pub secure_domains: Vec<String>,
    /// Seconds allowed for one submission. Default 60.
    #[serde(default = "default_relay_timeout")]
    pub timeout_secs: u64,
}

fn default_relay_port() -> u16 {
    587
}

fn default_secure_domains() -> Vec<String> {
    vec!["nhs.net".into()]
}

fn default_relay_timeout() -> u64 {
    60
}

/// How the relay connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelaySecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            domain: "edthub.localhost".into(),
            max_message_bytes: 25 * 1024 * 1024,
            max_connections: 100,
            max_recipients: 50,
            require_tls: false,
            require_auth: false,
            tls_cert: None,
            tls_key: None,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            session_timeout_secs: 1800,
            users: Vec::new(),
            senders: Vec::new(),
            relay: None,
        }
    }
}

/// The bus implementation.
/// HL7 v2 over MLLP: the listener laboratory and order-comms systems send results to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MllpConfig {
    /// Listen address (`--mllp-addr`), `HOST:PORT`. Unset (the default): no listener. Port 0
    /// picks a free port.
    pub listen: Option<ListenAddr>,
    /// Serve MLLP over TLS with the gRPC certificate (`tls.cert`, `tls.key`; with
    /// `tls.client_ca`, senders must present a certificate it issued). Default false.
    pub tls: bool,
    /// Largest message (one MLLP frame), in bytes. A larger one is answered `AR` and
    /// discarded. Default 4 MiB.
    pub max_message_bytes: usize,
    /// Concurrent connections; past that, a new one is answered with an `AR` saying so and
    /// closed. Default 50.
    pub max_connections: usize,
    /// Seconds a connection may wait with no message started before it is closed. Default 600.
    pub idle_timeout_secs: u64,
    /// Seconds a started message may take to arrive in full; past that it is answered `AR`
    /// and the connection closed. Default 30.
    pub read_timeout_secs: u64,
    /// The sending facilities allowed (MSH-4, with MSH-3 when given), each bound to the
    /// sender ODS code its results are submitted as. Anything else is answered `AR`.
    pub senders: Vec<MllpSender>,
    /// MSH-3 and MSH-4 of the hub's acknowledgements. Default `EDTHUB` and `EDTHUB`.
    pub application: String,
    pub facility: String,
}

impl Default for MllpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tls: false,
            max_message_bytes: 4 * 1024 * 1024,
            max_connections: 50,
            idle_timeout_secs: 600,
            read_timeout_secs: 30,
            senders: Vec::new(),
            application: "EDTHUB".into(),
            facility: "EDTHUB".into(),
        }
    }
}

/// A sending facility allowed to send results over MLLP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpSender {
    /// MSH-4 (its first component, the namespace id), matched case-insensitively.
    pub facility: String,
    /// MSH-3 (its first component); when set, it must match too.
    #[serde(default)]
    pub application: Option<String>,
    /// The sender ODS code the facility's results are submitted as.
    pub sender_ods: String,
    /// Where the facility's results go when they name no practice (PD1-3, PV1-3): an ODS code
    /// (`V81999` holds them for manual routing). Unset: such a result is answered `AE`.
    #[serde(default)]
    pub recipient: Option<String>,
}

impl MllpConfig {
    /// The allowed sender for a sending application and facility.
    pub fn sender(&self, application: &str, facility: &str) -> Option<&MllpSender> {
        self.senders.iter().find(|s| {
            s.facility.trim().eq_ignore_ascii_case(facility.trim())
                && s.application
                    .as_deref()
                    .is_none_or(|a| a.trim().eq_ignore_ascii_case(application.trim()))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    Embedded,
    Amqp,
}

/// RabbitMQ settings, used when `bus = "amqp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Broker URL. Default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// Prefix of every queue the hub declares. Default `edthub.`.
    pub queue_prefix: String,
    /// Unacknowledged work items per consumer. Default 128: at least `delivery.workers`, or
    /// some workers wait while the broker waits for acknowledgements.
    pub prefetch: u16,
    /// Work items the local outbox may hold while the broker is away; past that, submissions
    /// are refused with UNAVAILABLE (nothing is accepted that could not be kept). Default 100000.
    pub max_outbox: u64,
    /// Outbox relay tasks publishing to the broker, each waiting for its publisher confirm.
    /// Default 32 (with 4, a busy node's outbox fell thousands of items behind).
    pub relays: usize,
    /// Largest payload, in bytes, sent inside a work item on the shared queue (any node may
    /// deliver it). Larger documents are delivered by the node that received them. Default
    /// 8 MiB (RabbitMQ's own limit is higher; large messages slow every consumer).
    pub max_shared_payload: u64,
    /// Days every node remembers the other nodes' claims on senders' local ids, so that a
    /// sender who fails over to another node with the same local id gets the original receipt
    /// rather than a second message. Default 14.
    pub claim_days: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            queue_prefix: "edthub.".into(),
            prefetch: 128,
            max_outbox: 100_000,
            relays: 32,
            max_shared_payload: 8 * 1024 * 1024,
            claim_days: 14,
        }
    }
}

/// Limits on what a sender may submit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest payload accepted, in bytes. Default 20 MiB.
    pub max_payload_bytes: usize,
    /// Most recipients on one submission. Default 50.
    pub max_recipients: usize,
    /// Longest sender local id, in bytes. Default 255.
    pub max_local_id_len: usize,
    /// Free space kept on the data directory's disk, in MiB: a document that would leave less
    /// is refused (`UNAVAILABLE`, `451 4.3.1`) and `/readyz` says so, before the database
    /// itself runs out of space. Taken again as soon as space is freed. Default 256.
    pub min_free_disk_mb: u64,
    /// Most deliveries waiting for their transport (pending or retrying) before new documents
    /// are refused with `UNAVAILABLE` (`451 4.3.2` by mail) and a retry hint, so that a hub
    /// taking in more than it can deliver pushes back on its senders rather than building a
    /// backlog no SLA survives. 0: no limit. Default 100000.
    pub max_backlog: u64,
}

/// How deliveries are attempted and retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Attempts before a delivery is `failed`. Default 8.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles each attempt. Default 2000.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts, in milliseconds. Default 600000 (10 minutes).
    pub max_backoff_ms: u64,
    /// Concurrent delivery workers. Default 64: deliveries to files share each round of
    /// syncs, so more in flight means fewer syncs per document.
    pub workers: usize,
    /// Times a bus item may be handed out before it is dead-lettered. Default 20.
    pub max_bus_deliveries: u32,
}

/// How acknowledgements are collected and when silence becomes `overdue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AckConfig {
    /// How often drop folders' `acks/` subfolders are read, in milliseconds. Default 500.
    pub poll_ms: u64,
    /// A delivery sent this many seconds ago with no business acknowledgement (accepted or
    /// rejected) becomes `overdue`. Default 86400 (24 hours, the discharge summary standard).
    pub sla_secs: u64,
    /// A delivery sent this many seconds ago with no acknowledgement at all (not even an
    /// infrastructure one, such as ITK3 20013) becomes `overdue` sooner. 0 (the default): only
    /// `sla_secs` applies, as receivers that never send infrastructure acks would otherwise
    /// all be overdue.
    pub infrastructure_sla_secs: u64,
    /// How often the SLA is checked, in seconds. Default 30.
    pub sla_check_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("edthub-data"),
            grpc_addr: ListenAddr::from(SocketAddr::from(([127, 0, 0, 1], 50051))),
            http_addr: ListenAddr::from(SocketAddr::from(([127, 0, 0, 1], 9090))),
            directory: None,
            directory_check_ms: 2000,
            cache_mb: 32,
            shutdown_timeout_secs: 30,
            node: None,
            admin_token: None,
            bus: BusKind::Embedded,
            amqp: AmqpConfig::default(),
            limits: Limits::default(),
            delivery: DeliveryConfig::default(),
            acks: AckConfig::default(),
            smtp: SmtpConfig::default(),
            mllp: MllpConfig::default(),
            mesh: MeshConfig::default(),
            tls: TlsConfig::default(),
            retention: RetentionConfig::default(),
            console: ConsoleConfig::default(),
            identities: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 20 * 1024 * 1024,
            max_recipients: 50,
            max_local_id_len: 255,
            min_free_disk_mb: 256,
            max_backlog: 100_000,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 2000,
            max_backoff_ms: 600_000,
            workers: 64,
            max_bus_deliveries: 20,
        }
    }
}

impl Default for AckConfig {
    fn default() -> Self {
        Self {
            poll_ms: 500,
            sla_secs: 86_400,
            infrastructure_sla_secs: 0,
            sla_check_secs: 30,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(String, String),
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| {
            ConfigError::Parse(path.display().to_string(), e.to_string().trim_end().into())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "shutdown_timeout_secs must be at least 1".into(),
            ));
        }
        let d = &self.delivery;
        if d.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "delivery.max_attempts must be at least 1".into(),
            ));
        }
        if d.workers == 0 {
            return Err(ConfigError::Invalid(
                "delivery.workers must be at least 1".into(),
            ));
        }
        if d.initial_backoff_ms > d.max_backoff_ms {
            return Err(ConfigError::Invalid(
                "delivery.initial_backoff_ms must not exceed delivery.max_backoff_ms".into(),
            ));
        }
        if self.limits.max_payload_bytes == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_payload_bytes must be at least 1".into(),
            ));
        }
        if self.amqp.prefetch == 0 || self.amqp.relays == 0 {
            return Err(ConfigError::Invalid(
                "amqp.prefetch and amqp.relays must be at least 1".into(),
            ));
        }
        let tls = &self.tls;
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key must be given together".into(),
            ));
        }
        if tls.client_ca.is_some() && tls.cert.is_none() {
            return Err(ConfigError::Invalid(
                "tls.client_ca needs tls.cert and tls.key".into(),
            ));
        }
        if !self.grpc_addr.is_loopback() && tls.cert.is_none() && !tls.behind_proxy {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve gRPC on {} without TLS: set tls.cert and tls.key, or \
                 tls.behind_proxy = true when a proxy terminates TLS in front of the hub",
                self.grpc_addr
            )));
        }
        if let Some(addr) = &self.smtp.listen {
            if !addr.is_loopback() && self.smtp.tls_cert.is_none() && !tls.behind_proxy {
                return Err(ConfigError::Invalid(format!(
                    "refusing to serve SMTP on {addr} without STARTTLS: set smtp.tls_cert and \
                     smtp.tls_key, or tls.behind_proxy = true"
                )));
            }
        }
        if self.console.enabled && !self.http_addr.is_loopback() && !tls.behind_proxy {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve the console on {} over plain HTTP: set tls.behind_proxy = \
                 true when a proxy terminates TLS in front of the hub, or console.enabled = false",
                self.http_addr
            )));
        }
        if self.console.client_cert_header.is_some() && !tls.behind_proxy {
            return Err(ConfigError::Invalid(
                "console.client_cert_header needs tls.behind_proxy = true (only a proxy in \
                 front of the hub may vouch for a client certificate)"
                    .into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        for i in &self.identities {
            let token = !i.token_sha256.is_empty();
            let cert = !i.cert_sha256.is_empty();
            if (!token && !cert)
                || (token && !hex64(&i.token_sha256))
                || (cert && !hex64(&i.cert_sha256))
            {
                return Err(ConfigError::Invalid(format!(
                    "identities {:?}: needs token_sha256 or cert_sha256, each 64 hex digits",
                    i.name
                )));
            }
            if cert && tls.client_ca.is_none() && self.console.client_cert_header.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "identities {:?}: cert_sha256 needs tls.client_ca (client certificates)",
                    i.name
                )));
            }
            if i.roles.is_empty() || !names.insert(i.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "identities {:?}: needs a unique name and at least one role",
                    i.name
                )));
            }
        }
        let smtp = &self.smtp;
        if smtp.tls_cert.is_some() != smtp.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "smtp.tls_cert and smtp.tls_key must be given together".into(),
            ));
        }
        if smtp.listen.is_some() && smtp.require_auth && smtp.tls_cert.is_none() {
            return Err(ConfigError::Invalid(
                "smtp.require_auth needs smtp.tls_cert and smtp.tls_key: AUTH is offered only after STARTTLS".into(),
            ));
        }
        if smtp.listen.is_some() && smtp.require_tls && smtp.tls_cert.is_none() {
            return Err(ConfigError::Invalid(
                "smtp.require_tls needs smtp.tls_cert and smtp.tls_key".into(),
            ));
        }
        if smtp.domain.is_empty() || smtp.domain.contains(['@', ' ']) {
            return Err(ConfigError::Invalid(format!(
                "smtp.domain {:?} is not a mail domain",
                smtp.domain
            )));
        }
        for u in &smtp.users {
            u.password().map_err(ConfigError::Invalid)?;
        }
        if let Some(url) = &self.mesh.url {
            let m = &self.mesh;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "mesh.url {url:?} must start with https:// (or http:// for a local sandbox)"
                )));
            }
            if m.mailbox.is_empty() || m.password.is_empty() || m.shared_key.is_empty() {
                return Err(ConfigError::Invalid(
                    "mesh.mailbox, mesh.password and mesh.shared_key are needed with mesh.url"
                        .into(),
                ));
            }
            if m.client_cert.is_some() != m.client_key.is_some() {
                return Err(ConfigError::Invalid(
                    "mesh.client_cert and mesh.client_key must be given together".into(),
                ));
            }
            if m.chunk_bytes < 1024 || m.poll_ms == 0 {
                return Err(ConfigError::Invalid(
                    "mesh.chunk_bytes must be at least 1024 and mesh.poll_ms at least 1".into(),
                ));
            }
        }
        let mllp = &self.mllp;
        if let Some(addr) = &mllp.listen {
            if mllp.tls && tls.cert.is_none() {
                return Err(ConfigError::Invalid(
                    "mllp.tls needs tls.cert and tls.key (the gRPC certificate)".into(),
                ));
            }
            if !addr.is_loopback() && !mllp.tls && !tls.behind_proxy {
                return Err(ConfigError::Invalid(format!(
                    "refusing to serve MLLP on {addr} without TLS: set mllp.tls = true (with \
                     tls.cert and tls.key), or tls.behind_proxy = true"
                )));
            }
            if mllp.max_message_bytes < 64
                || mllp.max_connections == 0
                || mllp.idle_timeout_secs == 0
                || mllp.read_timeout_secs == 0
            {
                return Err(ConfigError::Invalid(
                    "mllp.max_message_bytes must be at least 64, and mllp.max_connections, \
                     mllp.idle_timeout_secs and mllp.read_timeout_secs at least 1"
                        .into(),
                ));
            }
        }
        for s in &mllp.senders {
            if s.facility.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "mllp.senders: facility (MSH-4) must not be empty".into(),
                ));
            }
            edt_transforms::OdsCode::parse(&s.sender_ods).map_err(|e| {
                ConfigError::Invalid(format!(
                    "mllp.senders {:?}: sender_ods {:?}: ODS code {e}",
                    s.facility, s.sender_ods
                ))
            })?;
            if let Some(r) = &s.recipient {
                edt_transforms::OdsCode::parse(r).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "mllp.senders {:?}: recipient {r:?}: ODS code {e}",
                        s.facility
                    ))
                })?;
            }
        }
        if self.acks.poll_ms == 0 {
            return Err(ConfigError::Invalid(
                "acks.poll_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The directory file in use.
    pub fn directory_path(&self) -> PathBuf {
        self.directory
            .clone()
            .unwrap_or_else(|| self.data_dir.join("directory.toml"))
    }

    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "edthub".into())
        })
    }
}

impl DeliveryConfig {
    /// Delay before the attempt after `attempts_made` failed ones: exponential from
    /// `initial_backoff_ms`, capped at `max_backoff_ms`, with "equal jitter" (half fixed, half
    /// random) so a folder coming back is not hit by every retry at once.
    pub fn backoff(&self, attempts_made: u32) -> Duration {
        let exp = attempts_made.saturating_sub(1).min(32);
        let base = self
            .initial_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_backoff_ms);
        let half = base / 2;
        Duration::from_millis(half + fastrand::u64(0..=half.max(1)).min(base - half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let d = DeliveryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..Default::default()
        };
        for _ in 0..200 {
            let b1 = d.backoff(1).as_millis() as u64;
            assert!((50..=100).contains(&b1), "{b1}");
            let b3 = d.backoff(3).as_millis() as u64;
            assert!((200..=400).contains(&b3), "{b3}");
            let b20 = d.backoff(20).as_millis() as u64;
            assert!((500..=1000).contains(&b20), "{b20}");
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| d.backoff(3)).collect();
        assert!(spread.len() > 5, "jitter varies the delay");
    }

    #[test]
    fn the_example_config_in_deploy_loads() {
        let c = Config::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/edthub.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.bus, BusKind::Embedded);
        assert_eq!(c.amqp.max_outbox, 100_000);
        assert_eq!(c.delivery.max_attempts, 8);
    }

    /// The example config shows every relay setting (commented out, as the relay is off by
    /// default), each one the hub knows.
    #[test]
    fn the_example_config_shows_every_relay_setting() {
        let text = include_str!("../../deploy/edthub.toml");
        let section: String = text
            .lines()
            .skip_while(|l| l.trim() != "# [smtp.relay]")
            .skip(1)
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let relay: RelayConfig = toml::from_str(&section).unwrap_or_else(|e| panic!("{e}"));
        assert!(relay.ca_file.is_some(), "ca_file is missing:\n{section}");
        assert!(relay.username.is_some() && relay.password.is_some());
        let keys: toml::Table = toml::from_str(&section).unwrap();
        for key in [
            "host",
            "port",
            "security",
            "username",
            "password",
            "from",
            "ca_file",
            "secure_domains",
            "timeout_secs",
        ] {
            assert!(
                keys.contains_key(key),
                "smtp.relay.{key} is missing:\n{section}"
            );
        }
    }

    #[test]
    fn listen_addresses_take_host_names() {
        let a: ListenAddr = "localhost:50051".parse().unwrap();
        assert_eq!(
            (a.host(), a.port(), a.to_string().as_str()),
            ("localhost", 50051, "localhost:50051")
        );
        assert!(a.is_loopback(), "localhost is this machine");
        assert!(a.resolve().unwrap().iter().all(|s| s.port() == 50051));
        let a: ListenAddr = "[::1]:0".parse().unwrap();
        assert_eq!(a.to_string(), "[::1]:0");
        assert!(a.is_loopback());
        let a: ListenAddr = "0.0.0.0:9090".parse().unwrap();
        assert!(!a.is_loopback());
        assert_eq!(a.to_string(), "0.0.0.0:9090");
        assert_eq!(
            "Hub-A.Trust.nhs.uk:25"
                .parse::<ListenAddr>()
                .unwrap()
                .host(),
            "hub-a.trust.nhs.uk"
        );
        for bad in [
            "localhost",
            "localhost:99999",
            ":50051",
            "a b:1",
            "-x.org:1",
            "x..org:1",
        ] {
            let e = bad.parse::<ListenAddr>().unwrap_err();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
        let c: Config =
            toml::from_str("grpc_addr = \"localhost:0\"\n[smtp]\nlisten = \"localhost:2525\"\n")
                .unwrap();
        c.validate().unwrap();
        assert_eq!(c.smtp.listen.unwrap().to_string(), "localhost:2525");
        let e = toml::from_str::<Config>("http_addr = \"localhost\"").unwrap_err();
        assert!(e.to_string().contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let e = toml::from_str::<Config>("grpc_adr = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("grpc_adr"), "{e}");
        let c: Config = toml::from_str("[delivery]\nmax_attempts = 0\n").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_attempts"));
        let c: Config = toml::from_str("[delivery]\nmax_attempts = 3\n").unwrap();
        assert_eq!(c.delivery.workers, 64, "unset fields keep defaults");
        c.validate().unwrap();
    }
}
