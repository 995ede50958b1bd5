//! The directory file (TOML): endpoints, organisations that receive documents, and the senders
//! allowed to submit.
//!
//! ```toml
//! [senders.RX1]
//! name = "Example Acute Trust"
//!
//! [endpoints.a81001-drop]
//! kind = "file"
//! path = "drop/A81001"          # relative paths are resolved by the hub
//!
//! [organisations.A81001]
//! name = "Example Practice"
//! endpoint = "a81001-drop"
//! status = "active"             # active | closed | dormant | proposed
//! ```
//!
//! `default_endpoint` (top level) names the endpoint for known, active organisations that have
//! none of their own. Loading checks every reference, so a directory that loads can route.

use crate::{RecipientType, Resolution, Route, RouteRequest, Unroutable};
use edt_transforms::OdsCode;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Why a directory file was refused. A refused file never replaces a loaded one.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read directory file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("directory file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("directory file {path}: {what} {code:?}: {message}")]
    Invalid {
        path: String,
        what: &'static str,
        code: String,
        message: String,
    },
}

/// How an endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EndpointKind {
    /// A folder: the document and its index file are written there; acknowledgements are read
    /// from its `acks/` subfolder.
    File { path: String },
}

/// A delivery endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub kind: EndpointKind,
}

/// An organisation's status, as in the ODS files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrgStatus {
    #[default]
    Active,
    Closed,
    Dormant,
    Proposed,
}

/// An organisation that can receive documents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub status: OrgStatus,
}

/// An organisation allowed to submit documents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    default_endpoint: Option<String>,
    #[serde(default)]
    endpoints: BTreeMap<String, EndpointKind>,
    #[serde(default)]
    organisations: BTreeMap<String, Organisation>,
    #[serde(default)]
    senders: BTreeMap<String, Sender>,
}

/// A loaded, checked directory.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    endpoints: BTreeMap<String, Endpoint>,
    organisations: BTreeMap<String, Organisation>,
    senders: BTreeMap<String, Sender>,
    default_endpoint: Option<String>,
}

impl Directory {
    /// Reads and checks a directory file.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks directory TOML; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, DirectoryError> {
        let file: DirectoryFile = toml::from_str(text).map_err(|e| DirectoryError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |what, code: &str, message: String| DirectoryError::Invalid {
            path: origin.to_string(),
            what,
            code: code.to_string(),
            message,
        };
        let endpoints: BTreeMap<String, Endpoint> = file
            .endpoints
            .into_iter()
            .map(|(id, kind)| (id.clone(), Endpoint { id, kind }))
            .collect();
        if let Some(d) = &file.default_endpoint {
            if !endpoints.contains_key(d) {
                return Err(invalid(
                    "default_endpoint",
                    d,
                    "names no endpoint in [endpoints]".into(),
                ));
            }
        }
        let mut organisations = BTreeMap::new();
        for (code, org) in file.organisations {
            let ods = OdsCode::parse(&code)
                .map_err(|e| invalid("organisation", &code, format!("ODS code {e}")))?;
            if let Some(ep) = &org.endpoint {
                if !endpoints.contains_key(ep) {
                    return Err(invalid(
                        "organisation",
                        &code,
                        format!("endpoint {ep:?} is not defined in [endpoints]"),
                    ));
                }
            }
            if organisations.insert(ods.to_string(), org).is_some() {
                return Err(invalid("organisation", &code, "is listed twice".into()));
            }
        }
        let mut senders = BTreeMap::new();
        for (code, s) in file.senders {
            let ods = OdsCode::parse(&code)
                .map_err(|e| invalid("sender", &code, format!("ODS code {e}")))?;
            senders.insert(ods.to_string(), s);
        }
        Ok(Self {
            endpoints,
            organisations,
            senders,
            default_endpoint: file.default_endpoint,
        })
    }

    pub fn sender(&self, ods: &str) -> Option<&Sender> {
        self.senders.get(ods)
    }

    pub fn organisation(&self, ods: &str) -> Option<&Organisation> {
        self.organisations.get(ods)
    }

    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id)
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// Decides, for each distinct recipient, the endpoint it is delivered to or why it cannot
    /// be. Recipients keep their order; repeats are dropped (and traced).
    pub fn resolve(&self, req: &RouteRequest<'_>) -> Resolution {
        let mut out = Resolution::default();
        let mut seen = BTreeSet::new();
        for raw in req.recipients {
            let ods = raw.trim().to_ascii_uppercase();
            if !seen.insert(ods.clone()) {
                out.trace
                    .push(format!("{ods}: listed more than once; one delivery"));
                continue;
            }
            let mut unroutable = |reason: String| {
                out.trace.push(format!("{ods}: unroutable: {reason}"));
                out.unroutable.push(Unroutable {
                    recipient_ods: ods.clone(),
                    reason,
                });
            };
            let Some(org) = self.organisations.get(&ods) else {
                unroutable("not in the directory".to_string());
                continue;
            };
            match org.status {
                OrgStatus::Active => {}
                OrgStatus::Closed | OrgStatus::Dormant | OrgStatus::Proposed => {
                    let s = match org.status {
                        OrgStatus::Closed => "closed",
                        OrgStatus::Dormant => "dormant",
                        _ => "proposed (not yet open)",
                    };
                    unroutable(format!("organisation is {s} and has no successor"));
                    continue;
                }
            }
            let (endpoint_id, why) = match (&org.endpoint, &self.default_endpoint) {
                (Some(e), _) => (e, "its own endpoint"),
                (None, Some(d)) => (d, "the default endpoint"),
                (None, None) => {
                    unroutable(
                        "organisation has no endpoint and the directory has no default_endpoint"
                            .to_string(),
                    );
                    continue;
                }
            };
            let endpoint = self.endpoints[endpoint_id].clone();
            out.trace.push(format!(
                "{ods}: {} -> endpoint {endpoint_id} ({why}), For Action, {} from {}",
                if org.name.is_empty() {
                    "active"
                } else {
                    &org.name
                },
                req.document_type,
                req.sender_ods
            ));
            out.routes.push(Route {
                recipient_ods: ods,
                endpoint,
                recipient_type: RecipientType::ForAction,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edt_transforms::DocumentType;

    const SAMPLE: &str = r#"
default_endpoint = "shared"
[senders.RX1]
name = "Trust"
[endpoints.a-drop]
kind = "file"
path = "drop/A81001"
[endpoints.shared]
kind = "file"
path = "drop/shared"
[organisations.A81001]
name = "Practice One"
endpoint = "a-drop"
[organisations.a81002]
[organisations.A81003]
status = "closed"
endpoint = "a-drop"
"#;

    fn resolve(d: &Directory, to: &[&str]) -> Resolution {
        let recipients: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        d.resolve(&RouteRequest {
            sender_ods: "RX1",
            recipients: &recipients,
            document_type: DocumentType::DischargeSummary,
        })
    }

    #[test]
    fn routes_known_default_closed_unknown_and_repeats() {
        let d = Directory::from_toml(SAMPLE, "t").unwrap();
        let r = resolve(&d, &["A81001", "A81002", "A81003", "Z99999", "a81001"]);
        assert_eq!(r.routes.len(), 2);
        assert_eq!(r.routes[0].endpoint.id, "a-drop");
        assert_eq!(r.routes[1].recipient_ods, "A81002");
        assert_eq!(r.routes[1].endpoint.id, "shared");
        assert_eq!(r.unroutable.len(), 2);
        assert!(
            r.unroutable[0].reason.contains("closed"),
            "{:?}",
            r.unroutable
        );
        assert_eq!(r.unroutable[1].reason, "not in the directory");
        assert_eq!(r.trace.len(), 5);
        assert!(r.trace[4].contains("more than once"));
        assert!(d.sender("RX1").is_some());
        assert!(d.sender("RX2").is_none());
    }

    #[test]
    fn bad_references_are_refused_with_names() {
        let e = Directory::from_toml("[organisations.A81001]\nendpoint = \"nope\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.toml") && e.contains("A81001") && e.contains("nope"),
            "{e}"
        );
        let e = Directory::from_toml("[organisations.\"A8-1\"]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("A8-1"), "{e}");
        let e = Directory::from_toml("[endpoints.x]\nkind = \"ftp\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp") || e.contains("kind"), "{e}");
        let e = Directory::from_toml("default_endpoint = \"x\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_endpoint"), "{e}");
    }

    #[test]
    fn no_endpoint_and_no_default_is_unroutable() {
        let d = Directory::from_toml("[organisations.A81001]\n", "t").unwrap();
        let r = resolve(&d, &["A81001"]);
        assert!(r.routes.is_empty());
        assert!(r.unroutable[0].reason.contains("no endpoint"));
    }
}
