//! A MESH API client (v2): NHSMESH authorization, handshake, send (chunked and gzipped when
//! large), inbox listing, download (with chunks), acknowledge, tracking and endpoint lookup.

use crate::config::MeshConfig;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::time::Duration;

const ACCEPT: &str = "application/vnd.mesh.v2+json";

use super::SendError;

/// The `Authorization` header value for one request (MESH API specification, "MESH
/// Authorization header"): `NHSMESH mailbox:nonce:count:timestamp:hmac`.
pub fn authorization(
    shared_key: &str,
    mailbox: &str,
    password: &str,
    nonce: &str,
    nonce_count: u32,
    timestamp: &str,
) -> String {
    let mailbox = mailbox.to_ascii_uppercase();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(shared_key.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{mailbox}:{nonce}:{nonce_count}:{password}:{timestamp}").as_bytes());
    let hash = hex::encode(mac.finalize().into_bytes());
    format!("NHSMESH {mailbox}:{nonce}:{nonce_count}:{timestamp}:{hash}")
}

/// A message waiting in the inbox, as downloaded.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub id: String,
    /// `DATA` or `REPORT`.
    pub message_type: String,
    pub from: String,
    pub workflow: String,
    pub local_id: String,
    /// For reports: the message they are about.
    pub linked_message_id: String,
    pub status_success: String,
    pub status_code: String,
    pub status_description: String,
    pub body: Vec<u8>,
}

/// What to send.
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub workflow: &'a str,
    pub subject: &'a str,
    pub local_id: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

pub struct MeshClient {
    http: reqwest::Client,
    base: String,
    config: MeshConfig,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, SendError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| SendError::Permanent(format!("a gzipped chunk does not decompress: {e}")))?;
    Ok(out)
}

impl MeshClient {
    pub fn new(config: &MeshConfig) -> anyhow::Result<Self> {
        let base = config
            .url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("mesh.url is not set"))?
            .trim_end_matches('/')
            .to_string();
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("mesh.ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| anyhow::anyhow!("mesh.client_cert {}: {e}", cert.display()))?;
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| anyhow::anyhow!("mesh.client_key {}: {e}", key.display()))?,
            );
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(Self {
            http: b.build()?,
            base,
            config: config.clone(),
        })
    }

    pub fn mailbox(&self) -> &str {
        &self.config.mailbox
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/messageexchange/{}{path}",
            self.base,
            self.config.mailbox.to_ascii_uppercase()
        )
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let timestamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day][hour][minute]"
            ))
            .unwrap_or_default();
        let nonce = crate::track::new_id().to_string();
        self.http
            .request(method, url)
            .header(
                "authorization",
                authorization(
                    &self.config.shared_key,
                    &self.config.mailbox,
                    &self.config.password,
                    &nonce,
                    1,
                    &timestamp,
                ),
            )
            .header("accept", ACCEPT)
            .header(
                "mex-ClientVersion",
                concat!("edthub/", env!("CARGO_PKG_VERSION")),
            )
            .header("mex-OSName", std::env::consts::OS)
            .header("mex-OSVersion", "unknown")
    }

    /// Sends a request; a non-success status becomes an error carrying MESH's own words.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, SendError> {
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("MESH {what}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .map(|v| {
                let code = v["errorCode"].as_str().unwrap_or("");
                let text = v["errorDescription"]
                    .as_str()
                    .or(v["detail"].as_str())
                    .unwrap_or("");
                format!("code {code}: {text}")
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        let message = format!("MESH {what} refused ({status}) {detail}");
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SendError::Transient(message))
        } else {
            Err(SendError::Permanent(message))
        }
    }

    /// The handshake MESH asks for once a day.
    pub async fn handshake(&self) -> Result<(), SendError> {
        self.call(
            self.request(reqwest::Method::POST, self.url("")),
            "handshake",
        )
        .await?;
        Ok(())
    }

    /// Sends a message, in gzipped chunks of `chunk_bytes` when larger. Returns MESH's id.
    pub async fn send(&self, m: &Outgoing<'_>) -> Result<String, SendError> {
        let chunk = self.config.chunk_bytes.max(1);
        let chunks: Vec<&[u8]> = if m.body.len() > chunk {
            m.body.chunks(chunk).collect()
        } else {
            vec![m.body]
        };
        let total = chunks.len();
        let checksum = format!("SHA256:{}", edt_transforms::sha256_hex(m.body));
        let headers = |req: reqwest::RequestBuilder, k: usize| {
            let mut req = req
                .header("mex-To", m.to)
                .header("mex-WorkflowID", m.workflow)
                .header("mex-Subject", m.subject)
                .header("mex-LocalID", m.local_id)
                .header("mex-FileName", m.file_name)
                .header("mex-Content-Checksum", &checksum)
                .header("mex-Content-Type", m.content_type)
                .header("content-type", "application/octet-stream");
            if total > 1 {
                req = req
                    .header("mex-Chunk-Range", format!("{k}:{total}"))
                    .header("content-encoding", "gzip")
                    .header("mex-Content-Compressed", "Y");
            }
            req
        };
        let body = |c: &[u8]| if total > 1 { gzip(c) } else { c.to_vec() };
        let first = self
            .call(
                headers(self.request(reqwest::Method::POST, self.url("/outbox")), 1)
                    .body(body(chunks[0])),
                "send",
            )
            .await?;
        let v: serde_json::Value = first
            .json()
            .await
            .map_err(|e| SendError::Transient(format!("MESH send: unreadable reply: {e}")))?;
        let id = v["message_id"]
            .as_str()
            .or(v["messageID"].as_str())
            .ok_or_else(|| SendError::Transient(format!("MESH send: no message id in {v}")))?
            .to_string();
        for (k, c) in chunks.iter().enumerate().skip(1) {
            self.call(
                headers(
                    self.request(
                        reqwest::Method::POST,
                        self.url(&format!("/outbox/{id}/{}", k + 1)),
                    ),
                    k + 1,
                )
                .body(body(c)),
                "send chunk",
            )
            .await?;
        }
        Ok(id)
    }

    /// Ids of messages waiting in the inbox (every page).
    pub async fn inbox(&self) -> Result<Vec<String>, SendError> {
        let mut ids = Vec::new();
        let mut url = self.url("/inbox?max_results=500");
        loop {
            let v: serde_json::Value = self
                .call(self.request(reqwest::Method::GET, url.clone()), "inbox")
                .await?
                .json()
                .await
                .map_err(|e| SendError::Transient(format!("MESH inbox: unreadable reply: {e}")))?;
            ids.extend(
                v["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.as_str().map(str::to_string)),
            );
            match v["links"]["next"].as_str() {
                Some(next) if !next.is_empty() => {
                    url = if next.starts_with("http") {
                        next.to_string()
                    } else {
                        format!("{}{next}", self.base)
                    }
                }
                _ => break,
            }
        }
        Ok(ids)
    }

    /// Downloads a message and any further chunks.
    pub async fn download(&self, id: &str) -> Result<Downloaded, SendError> {
        let resp = self
            .call(
                self.request(reqwest::Method::GET, self.url(&format!("/inbox/{id}"))),
                "download",
            )
            .await?;
        let h = resp.headers().clone();
        let header = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let gzipped = header("content-encoding").eq_ignore_ascii_case("gzip");
        let total: usize = header("mex-Chunk-Range")
            .split_once(':')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(1);
        let first = resp
            .bytes()
            .await
            .map_err(|e| SendError::Transient(format!("MESH download: {e}")))?;
        let mut body = if gzipped {
            gunzip(&first)?
        } else {
            first.to_vec()
        };
        for k in 2..=total {
            let part = self
                .call(
                    self.request(reqwest::Method::GET, self.url(&format!("/inbox/{id}/{k}"))),
                    "download chunk",
                )
                .await?;
            let gz = part
                .headers()
                .get("content-encoding")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let bytes = part
                .bytes()
                .await
                .map_err(|e| SendError::Transient(format!("MESH download chunk: {e}")))?;
            body.extend(if gz { gunzip(&bytes)? } else { bytes.to_vec() });
        }
        Ok(Downloaded {
            id: id.to_string(),
            message_type: header("mex-MessageType"),
            from: header("mex-From"),
            workflow: header("mex-WorkflowID"),
            local_id: header("mex-LocalID"),
            linked_message_id: header("mex-LinkedMsgID"),
            status_success: header("mex-StatusSuccess"),
            status_code: header("mex-StatusCode"),
            status_description: header("mex-StatusDescription"),
            body,
        })
    }

    /// Acknowledges a downloaded message: it leaves the inbox.
    pub async fn acknowledge(&self, id: &str) -> Result<(), SendError> {
        self.call(
            self.request(
                reqwest::Method::PUT,
                self.url(&format!("/inbox/{id}/status/acknowledged")),
            ),
            "acknowledge",
        )
        .await?;
        Ok(())
    }

    /// What MESH knows of a sent message (status, status code and description, ...).
    pub async fn tracking(&self, id: &str) -> Result<serde_json::Value, SendError> {
        self.call(
            self.request(
                reqwest::Method::GET,
                self.url(&format!("/outbox/tracking?messageID={id}")),
            ),
            "tracking",
        )
        .await?
        .json()
        .await
        .map_err(|e| SendError::Transient(format!("MESH tracking: unreadable reply: {e}")))
    }

    /// The mailbox of `ods` for `workflow`, by MESH's endpoint lookup.
    pub async fn lookup(&self, ods: &str, workflow: &str) -> Result<Option<String>, SendError> {
        let url = format!(
            "{}/messageexchange/endpointlookup/{ods}/{workflow}",
            self.base
        );
        let v: serde_json::Value = self
            .call(self.request(reqwest::Method::GET, url), "endpoint lookup")
            .await?
            .json()
            .await
            .map_err(|e| SendError::Transient(format!("MESH lookup: unreadable reply: {e}")))?;
        Ok(v["results"].as_array().and_then(|r| {
            r.iter()
                .find_map(|x| x["mailbox_id"].as_str().or(x["address"].as_str()))
                .map(str::to_string)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_matches_the_specification() {
        // The expected hash was computed independently (Python's hmac, as the sandbox does).
        let h = authorization(
            "TestKey",
            "x26abc1",
            "password",
            "4b1ec3e8",
            1,
            "202611251305",
        );
        assert_eq!(
            h,
            "NHSMESH X26ABC1:4b1ec3e8:1:202611251305:\
             4fa176964bfdaec1fafc65d2f96f696384a22151cb096349b1aa67e9ed0fdafa"
        );
    }

    #[test]
    fn chunks_round_trip_through_gzip() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(gunzip(&gzip(&data)).unwrap(), data);
        assert!(gunzip(b"not gzip").is_err());
    }
}
