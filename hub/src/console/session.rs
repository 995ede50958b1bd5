//! Who is using the console: sign-in with the identities the gRPC API knows (a bearer token,
//! or a client certificate vouched for by the TLS front), sessions held in memory behind an
//! HttpOnly, SameSite=Strict cookie (Secure under TLS), and a CSRF token for every POST.
//!
//! Without identities the hub is open, as its gRPC API is: `admin_token` (when set) signs in
//! as ops, and with neither, anyone who reaches the (loopback) listener is ops.

use crate::auth::Caller;
use crate::config::{Config, Role};
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie.
pub const COOKIE: &str = "edthub_console";
/// The cookie that carries the sign-in form's CSRF token before there is a session.
pub const SIGN_IN_COOKIE: &str = "edthub_console_signin";
/// Sessions held at most; the least recently used go first.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in person and what they may see and do.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
    /// The hub checks no identities: the actor is recorded as plain `ops`, as over gRPC.
    pub open: bool,
}

impl Viewer {
    /// Replays, cancels and reloads.
    pub fn may_act(&self) -> bool {
        self.caller.has(Role::Ops)
    }

    /// Every message, the overview and every practice.
    pub fn reads_all(&self) -> bool {
        self.caller.has(Role::Ops) || self.caller.has(Role::Auditor)
    }

    /// The original document, as the admin API's GetDocument allows.
    pub fn may_download(&self) -> bool {
        self.reads_all()
    }

    /// A message sent as one of its codes (submitters) or to one (receivers).
    pub fn may_see(&self, sender: &str, recipients: &[&str]) -> bool {
        self.reads_all()
            || (self.caller.has(Role::Submitter) && self.caller.acts_for(sender))
            || (self.caller.has(Role::Receiver)
                && recipients.iter().any(|r| self.caller.acts_for(r)))
    }

    /// One delivery of a message it may see: a receiver sees only its own practices'.
    pub fn may_see_delivery(&self, sender: &str, recipient: &str) -> bool {
        self.reads_all()
            || (self.caller.has(Role::Submitter) && self.caller.acts_for(sender))
            || self.caller.acts_for(recipient)
    }

    /// A practice's page: everyone who reads all, and receivers for their own.
    pub fn may_see_practice(&self, ods: &str) -> bool {
        self.reads_all() || (self.caller.has(Role::Receiver) && self.caller.acts_for(ods))
    }

    /// The actor recorded in timelines and logs: as the admin API records it.
    pub fn actor(&self) -> String {
        if self.open {
            "ops".to_string()
        } else {
            format!("ops:{}", self.caller.name)
        }
    }

    pub fn roles(&self) -> String {
        self.caller
            .roles
            .iter()
            .map(|r| format!("{r:?}").to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the console needs of a session.
#[derive(Debug, Clone)]
pub struct Session {
    pub viewer: Viewer,
    pub csrf: String,
    last_used: Instant,
}

/// Sessions by cookie value.
pub struct Sessions {
    idle: Duration,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session: (cookie value, session).
    pub fn start(&self, viewer: Viewer) -> (String, Session) {
        let id = random_token();
        let s = Session {
            viewer,
            csrf: random_token(),
            last_used: Instant::now(),
        };
        let mut map = self.map.lock().expect("sessions lock");
        let idle = self.idle;
        map.retain(|_, s| s.last_used.elapsed() < idle);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The session a request's cookie names, still in use.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut map = self.map.lock().expect("sessions lock");
        let s = map.get_mut(&id)?;
        if s.last_used.elapsed() >= self.idle {
            map.remove(&id);
            return None;
        }
        s.last_used = Instant::now();
        Some(s.clone())
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.map.lock().expect("sessions lock").remove(&id);
        }
    }
}

/// 32 random bytes from the system's cryptographic generator, as hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut b)
        .expect("the system's random number generator");
    hex::encode(b)
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for the console: HttpOnly, SameSite=Strict, Secure under TLS.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// Whether the browser reached the hub over TLS: through the TLS front, which says so in
/// `X-Forwarded-Proto` (believed only with `tls.behind_proxy`).
pub fn over_tls(config: &Config, headers: &HeaderMap) -> bool {
    config.tls.behind_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Whether two secrets are equal, in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && crate::auth::constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// Signs in with a token: an identity's, or with no identities the `admin_token` (or
/// nothing, on a hub with neither). `Err` says why not.
pub fn sign_in_with_token(config: &Config, token: &str) -> Result<Viewer, String> {
    let token = token.trim();
    if config.identities.is_empty() {
        return match &config.admin_token {
            Some(t) if !same_secret(token, t) => Err("the token is not valid".into()),
            _ => Ok(Viewer {
                caller: Caller {
                    name: "ops".into(),
                    roles: vec![Role::Ops],
                    ods: Vec::new(),
                },
                open: true,
            }),
        };
    }
    if token.is_empty() {
        return Err("give your token".into());
    }
    crate::auth::by_token(config, token)
        .map(|i| Viewer {
            caller: Caller::from(i),
            open: false,
        })
        .ok_or_else(|| "the token is not valid".into())
}

/// The client certificate the TLS front passed (URL-encoded PEM in
/// `console.client_cert_header`), as the SHA-256 of its DER.
pub fn forwarded_certificate(config: &Config, headers: &HeaderMap) -> Option<String> {
    let name = config.console.client_cert_header.as_deref()?;
    if !config.tls.behind_proxy {
        return None;
    }
    let raw = headers.get(name)?.to_str().ok()?;
    let pem = percent_decode(raw)?;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()?;
    (!der.is_empty()).then(|| edt_transforms::sha256_hex(&der))
}

/// Signs in with the certificate the TLS front vouched for.
pub fn sign_in_with_certificate(config: &Config, headers: &HeaderMap) -> Result<Viewer, String> {
    let Some(hash) = forwarded_certificate(config, headers) else {
        return Err("no client certificate came with the request".into());
    };
    crate::auth::by_certificate(config, &hash)
        .map(|i| Viewer {
            caller: Caller::from(i),
            open: false,
        })
        .ok_or_else(|| format!("the client certificate (SHA-256 {hash}) is not registered"))
}

/// `%XX` decoding (and `+` kept as it is, as in a header).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentityConfig;

    fn config() -> Config {
        Config {
            identities: vec![
                IdentityConfig {
                    name: "night-ops".into(),
                    token_sha256: edt_transforms::sha256_hex(b"tok-ops"),
                    cert_sha256: String::new(),
                    roles: vec![Role::Ops],
                    ods: vec![],
                },
                IdentityConfig {
                    name: "rx1".into(),
                    token_sha256: edt_transforms::sha256_hex(b"tok-rx1"),
                    cert_sha256: String::new(),
                    roles: vec![Role::Submitter],
                    ods: vec!["RX1".into()],
                },
            ],
            ..Config::default()
        }
    }

    #[test]
    fn tokens_sign_in_their_identities_and_nothing_else() {
        let c = config();
        let ops = sign_in_with_token(&c, " tok-ops ").unwrap();
        assert!(ops.may_act() && ops.reads_all());
        assert_eq!(ops.actor(), "ops:night-ops");
        let rx1 = sign_in_with_token(&c, "tok-rx1").unwrap();
        assert!(!rx1.may_act() && !rx1.reads_all());
        assert!(rx1.may_see("rx1", &[]) && !rx1.may_see("R1K", &["RX1"]));
        assert!(sign_in_with_token(&c, "nope").is_err());
        assert!(sign_in_with_token(&c, "").is_err());
        // An open hub: ops, as over gRPC; with an admin token, only that.
        let open = sign_in_with_token(&Config::default(), "").unwrap();
        assert!(open.may_act());
        assert_eq!(open.actor(), "ops");
        let guarded = Config {
            admin_token: Some("adm".into()),
            ..Config::default()
        };
        assert!(sign_in_with_token(&guarded, "x").is_err());
        assert!(sign_in_with_token(&guarded, "adm").is_ok());
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::new(Duration::from_secs(60));
        let (id, session) = s.start(sign_in_with_token(&config(), "tok-ops").unwrap());
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(s.get(&h).unwrap().csrf, session.csrf);
        s.end(&h);
        assert!(s.get(&h).is_none());
        let short = Sessions::new(Duration::ZERO);
        let (id, _) = short.start(session.viewer);
        h.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}={id}").parse().unwrap(),
        );
        assert!(short.get(&h).is_none(), "expired");
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 64);
    }

    #[test]
    fn certificates_come_only_through_a_proxy_that_is_configured() {
        let mut c = config();
        let mut h = HeaderMap::new();
        // "AQID" is the DER bytes 1 2 3.
        let pem = "-----BEGIN%20CERTIFICATE-----%0AAQID%0A-----END%20CERTIFICATE-----%0A";
        h.insert("x-client-cert", pem.parse().unwrap());
        assert_eq!(forwarded_certificate(&c, &h), None, "no header configured");
        c.console.client_cert_header = Some("x-client-cert".into());
        assert_eq!(forwarded_certificate(&c, &h), None, "not behind a proxy");
        c.tls.behind_proxy = true;
        let hash = edt_transforms::sha256_hex(&[1, 2, 3]);
        assert_eq!(forwarded_certificate(&c, &h), Some(hash.clone()));
        assert!(sign_in_with_certificate(&c, &h).is_err(), "not registered");
        c.identities[1].cert_sha256 = hash;
        assert_eq!(sign_in_with_certificate(&c, &h).unwrap().caller.name, "rx1");
    }
}
