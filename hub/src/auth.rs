//! Who is calling the gRPC API, and what they may do. Identities (config `[[identities]]`) are
//! bearer tokens, kept only as SHA-256, each with roles and the ODS codes it acts for. A wrong
//! or missing token is `UNAUTHENTICATED`; the right token without the role or the ODS code is
//! `PERMISSION_DENIED`. Both are logged (target `audit`) and counted; what an identity does is
//! recorded with its name in the timeline.

use crate::config::{Config, IdentityConfig, Role};
use tonic::{Request, Status};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub roles: Vec<Role>,
    pub ods: Vec<String>,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn acts_for(&self, ods: &str) -> bool {
        self.ods.iter().any(|o| o.eq_ignore_ascii_case(ods))
    }
}

fn bearer<T>(req: &Request<T>) -> Option<&str> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

pub use crate::password::constant_time_eq;

/// Denies a call: logged for the audit trail and counted.
pub fn deny(status: Status, who: &str, what: &str) -> Status {
    let kind = match status.code() {
        tonic::Code::Unauthenticated => "unauthenticated",
        _ => "permission-denied",
    };
    metrics::counter!("edthub_auth_denied_total", "kind" => kind).increment(1);
    tracing::warn!(target: "audit", caller = who, call = what, outcome = kind, reason = status.message(), "call denied");
    status
}

/// The caller of `req`: `Ok(None)` when the hub checks no identities (none configured).
pub fn identify<T>(
    config: &Config,
    req: &Request<T>,
    what: &str,
) -> Result<Option<Caller>, Status> {
    if config.identities.is_empty() {
        return Ok(None);
    }
    // What is wrong when no identity matches: said plainly, as the caller can fix only that.
    let (found, unknown): (Option<&IdentityConfig>, String) = match bearer(req) {
        Some(token) => (
            by_token(config, token),
            "the bearer token is not valid".to_string(),
        ),
        // No token: the TLS client certificate, when the hub asks for one.
        None => {
            let certs = req.peer_certs();
            let Some(first) = certs.as_ref().and_then(|c| c.first()) else {
                return Err(deny(
                    Status::unauthenticated(
                        "this hub needs a bearer token (authorization: Bearer ...) or a client certificate",
                    ),
                    "(none)",
                    what,
                ));
            };
            let hash = edt_transforms::sha256_hex(first.as_ref());
            (
                by_certificate(config, &hash),
                unregistered_certificate(&hash),
            )
        }
    };
    match found {
        Some(i) => Ok(Some(Caller::from(i))),
        None => Err(deny(
            Status::unauthenticated(unknown),
            "(unknown caller)",
            what,
        )),
    }
}

/// The identity a bearer token names.
pub fn by_token<'a>(config: &'a Config, token: &str) -> Option<&'a IdentityConfig> {
    let hash = edt_transforms::sha256_hex(token.as_bytes());
    config.identities.iter().find(|i| {
        !i.token_sha256.is_empty()
            && constant_time_eq(
                i.token_sha256.to_ascii_lowercase().as_bytes(),
                hash.as_bytes(),
            )
    })
}

/// The identity a client certificate names, by the SHA-256 (hex) of its DER.
pub fn by_certificate<'a>(config: &'a Config, sha256: &str) -> Option<&'a IdentityConfig> {
    config.identities.iter().find(|i| {
        !i.cert_sha256.is_empty()
            && constant_time_eq(
                i.cert_sha256.to_ascii_lowercase().as_bytes(),
                sha256.as_bytes(),
            )
    })
}

impl From<&IdentityConfig> for Caller {
    fn from(i: &IdentityConfig) -> Self {
        Caller {
            name: i.name.clone(),
            roles: i.roles.clone(),
            ods: i.ods.clone(),
        }
    }
}

/// Why a caller with a client certificate no identity names, and no token, is refused.
fn unregistered_certificate(sha256: &str) -> String {
    format!(
        "no bearer token was sent, and the client certificate (SHA-256 {sha256}) is not \
         registered: the hub's identities name no such cert_sha256"
    )
}

/// Requires one of `roles` of a caller (anyone, when identities are not checked).
pub fn require(caller: &Option<Caller>, roles: &[Role], what: &str) -> Result<(), Status> {
    match caller {
        None => Ok(()),
        Some(c) if roles.iter().any(|r| c.has(*r)) => Ok(()),
        Some(c) => Err(deny(
            Status::permission_denied(format!(
                "{} may not {what} (needs the {} role)",
                c.name,
                roles
                    .iter()
                    .map(|r| format!("{r:?}").to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
            &c.name,
            what,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            identities: vec![IdentityConfig {
                name: "rx1-epr".into(),
                token_sha256: edt_transforms::sha256_hex(b"secret").to_ascii_uppercase(),
                cert_sha256: String::new(),
                roles: vec![Role::Submitter],
                ods: vec!["RX1".into()],
            }],
            ..Config::default()
        }
    }

    fn with(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_roles_and_bindings() {
        let c = config();
        assert!(identify(&Config::default(), &with(None), "x")
            .unwrap()
            .is_none());
        let e = identify(&c, &with(None), "x").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(
            e.message().contains("needs a bearer token"),
            "{}",
            e.message()
        );
        let e = identify(&c, &with(Some("wrong")), "x").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert_eq!(e.message(), "the bearer token is not valid");
        let who = identify(&c, &with(Some("secret")), "x").unwrap();
        let caller = who.clone().unwrap();
        assert!(caller.acts_for("rx1") && !caller.acts_for("RX2"));
        require(&who, &[Role::Submitter], "submit").unwrap();
        let e = require(&who, &[Role::Ops, Role::Auditor], "list messages").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("ops or auditor"), "{}", e.message());
        require(&None, &[Role::Ops], "anything").unwrap();
    }
}
