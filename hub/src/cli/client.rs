//! Connecting to a hub, and what its errors mean for the exit code.

use edt_proto::v1::{
    admin_client::AdminClient, document_submission_client::DocumentSubmissionClient,
    tracking_client::TrackingClient,
};
use tonic::codegen::InterceptedService;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// Adds the admin token (`EDTHUB_TOKEN`) and the operator's name (`USER`) to each call.
#[derive(Clone)]
pub struct Auth {
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    user: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Auth {
    fn from_env() -> Self {
        let token = std::env::var("EDTHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .and_then(|t| format!("Bearer {t}").parse().ok());
        let user = std::env::var("USER").ok().and_then(|u| u.parse().ok());
        Self { token, user }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        if let Some(u) = &self.user {
            req.metadata_mut().insert("x-edthub-user", u.clone());
        }
        Ok(req)
    }
}

pub type Admin = AdminClient<InterceptedService<Channel, Auth>>;

/// A hub that could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the hub at {addr}: {reason}")]
pub struct Unreachable {
    addr: String,
    reason: String,
}

fn normalise(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    let url = normalise(addr);
    let mut ep = Endpoint::from_shared(url.clone())
        .map_err(|e| anyhow::anyhow!("--hub {addr:?} is not a valid address: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if url.starts_with("https://") {
        ep = ep
            .tls_config(client_tls()?)
            .map_err(|e| anyhow::anyhow!("TLS for {url}: {e}"))?;
    }
    ep.connect().await.map_err(|e| {
        anyhow::Error::new(Unreachable {
            addr: url,
            reason: source_chain(&e),
        })
    })
}

/// TLS for `https://` hubs: the CA that signed the hub's certificate (`EDTHUB_CA`), and for
/// mutual TLS this client's certificate and key (`EDTHUB_CLIENT_CERT`, `EDTHUB_CLIENT_KEY`).
fn client_tls() -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |var: &str| -> anyhow::Result<Option<Vec<u8>>> {
        match std::env::var(var).ok().filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(p) => std::fs::read(&p)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{var}={p}: {e}")),
        }
    };
    let ca = read("EDTHUB_CA")?.ok_or_else(|| {
        anyhow::anyhow!(
            "an https:// hub needs EDTHUB_CA: the CA certificate (PEM) that signed the hub's"
        )
    })?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let (Some(cert), Some(key)) = (read("EDTHUB_CLIENT_CERT")?, read("EDTHUB_CLIENT_KEY")?) {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(tls)
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub async fn admin(addr: &str) -> anyhow::Result<Admin> {
    Ok(AdminClient::with_interceptor(
        channel(addr).await?,
        Auth::from_env(),
    ))
}

pub async fn tracking(
    addr: &str,
) -> anyhow::Result<TrackingClient<InterceptedService<Channel, Auth>>> {
    Ok(TrackingClient::with_interceptor(
        channel(addr).await?,
        Auth::from_env(),
    ))
}

pub async fn submission(
    addr: &str,
) -> anyhow::Result<DocumentSubmissionClient<InterceptedService<Channel, Auth>>> {
    Ok(
        DocumentSubmissionClient::with_interceptor(channel(addr).await?, Auth::from_env())
            .max_encoding_message_size(256 * 1024 * 1024),
    )
}

/// A gRPC error as a readable message.
pub fn status_error(s: Status) -> anyhow::Error {
    anyhow::Error::new(HubError(s))
}

#[derive(Debug, thiserror::Error)]
#[error("the hub said {}: {}", code_name(.0.code()), .0.message())]
pub struct HubError(pub Status);

fn code_name(c: Code) -> &'static str {
    match c {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::FailedPrecondition => "not possible now",
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission denied",
        Code::Unavailable => "unavailable",
        _ => "error",
    }
}

/// The exit code for an error (see the module docs of `cli`).
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Unreachable>().is_some() {
        return 3;
    }
    match e.downcast_ref::<HubError>().map(|h| h.0.code()) {
        Some(Code::Unavailable) | Some(Code::DeadlineExceeded) => 3,
        Some(Code::Unauthenticated) | Some(Code::PermissionDenied) => 4,
        _ => 1,
    }
}

pub use crate::track::parse_since;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(
            parse_since("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert_eq!(parse_since("90s", 100_000).unwrap(), 10_000);
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        assert!(parse_since("2 weeks", 0).is_err());
        assert!(parse_since("h", 0).is_err());
        assert_eq!(
            parse_since("2026-02-28", 0).unwrap(),
            1_772_236_800_000,
            "a day is its midnight, UTC"
        );
        assert_eq!(parse_since("2024-02-29", 0).unwrap(), 1_709_164_800_000);
        // Days that do not exist, alone or in a time.
        for (s, words) in [
            ("2026-02-31", "February 2026 has no day 31"),
            ("2026-02-29", "February 2026 has no day 29"),
            ("2026-04-31T09:00:00Z", "April 2026 has no day 31"),
            ("2026-13-01", "no month 13"),
            ("2026-00-10", "no month 0"),
            ("2026-01-00", "January 2026 has no day 0"),
        ] {
            let e = parse_since(s, 0).unwrap_err().to_string();
            assert!(e.contains(words), "{s}: {e}");
        }
        assert!(parse_since("2026-02-28T25:00:00Z", 0).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code_for(&status_error(Status::not_found("x"))), 1);
        assert_eq!(exit_code_for(&status_error(Status::unavailable("x"))), 3);
        assert_eq!(
            exit_code_for(&status_error(Status::unauthenticated("x"))),
            4
        );
        assert_eq!(exit_code_for(&anyhow::anyhow!("other")), 1);
    }
}
