//! The directory: the national practice file, successors, suppliers, and the hub's own TOML
//! file of senders, endpoints, organisations and routing rules.
//!
//! ```toml
//! practices = "epraccur.csv"          # ODS GP practice file (optional)
//! successors = "successors.csv"       # old code, new code, effective date (optional)
//! suppliers = "ods-to-supplier.csv"   # practice -> GP system supplier (optional)
//!
//! [senders.RX1]
//! name = "Example Acute Trust"
//!
//! [endpoints.a81001-drop]
//! kind = "file"
//! path = "drop/A81001"
//!
//! [organisations.RYX]                 # organisations not in the practice file
//! name = "Community Trust"
//! endpoint = "community-drop"         # shorthand for a rule on this ODS code
//!
//! [[rules]]                           # most specific wins: ods > commissioner > supplier > any
//! name = "results to the lab system"
//! commissioner = "00K"                # or ods = "A81001", or supplier = "EMIS", or none
//! document_types = ["order-result"]   # optional; a rule naming types beats one that does not
//! endpoint = "lab-drop"               # or hold = "why"
//! format = "hl7v2"                    # receiver format; default "original"
//!
//! [[copies]]                          # copy to another organisation, For Information
//! commissioner = "06N"
//! document_types = ["discharge-summary"]
//! to = "RYX"
//!
//! [unknown_gp]                        # documents for V81999 (GP not known)
//! hold = "trace with PDS and route by hand"   # or endpoint = "..."
//! ```
//!
//! `default_endpoint = "x"` at the top level is shorthand for a rule matching everything.
//! Loading checks every reference; a file that does not load changes nothing.

use crate::ods::{self, show_day, Day, Successor};
use crate::{RecipientType, Resolution, Route, RouteRequest, Step, Unroutable};
use edt_transforms::ods::UNKNOWN_GP;
use edt_transforms::{DocumentType, OdsCode};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a directory was refused. A refused directory never replaces a loaded one.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {what} {code:?}: {message}")]
    Invalid {
        path: String,
        what: &'static str,
        code: String,
        message: String,
    },
    #[error("{path} line {line}, column {column}: {message}")]
    Row {
        path: String,
        line: usize,
        column: usize,
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
    /// A mailbox: the document is mailed as a letter with the original attached, through the
    /// hub's SMTP relay (`[smtp.relay]` in the hub config).
    Email { address: String },
    /// A MESH mailbox. Without `mailbox`, MESH's endpoint lookup finds the recipient's
    /// mailbox for the workflow; without `workflow`, the workflow follows the document type.
    Mesh {
        #[serde(default)]
        mailbox: Option<String>,
        #[serde(default)]
        workflow: Option<String>,
    },
    /// The receiver pulls its documents over gRPC (`ReceiverDelivery`), authenticating with a
    /// bearer token whose SHA-256 (hex) is given here.
    Grpc { token_sha256: String },
    /// A results system that takes HL7 v2 over MLLP at `address` (`HOST:PORT`): the delivery
    /// is `sent` on its `AA`/`CA`, `rejected` on `AE`/`AR`, and retried when it does not
    /// answer within `timeout_secs` (default 30).
    Mllp {
        address: String,
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
}

/// A delivery endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub kind: EndpointKind,
}

/// The format a receiver can file: the one definition, from the document model.
pub use edt_transforms::ReceiverFormat as Format;

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

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Closed => "closed",
            Self::Dormant => "dormant",
            Self::Proposed => "proposed",
        }
    }
}

/// Where the directory learnt of an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgSource {
    PracticeFile,
    DirectoryFile,
}

/// An organisation that can receive documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub code: String,
    pub name: String,
    pub status: OrgStatus,
    pub open_date: Option<Day>,
    pub close_date: Option<Day>,
    pub commissioner: String,
    pub prescribing_setting: u8,
    pub postcode: String,
    pub source: OrgSource,
}

/// An organisation allowed to submit documents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    #[serde(default)]
    pub name: String,
    /// The sender's own MESH mailbox: named as `MessageHeader.source.endpoint` in the ITK3
    /// messages the hub sends for it (the hub's `mesh.mailbox` when unset).
    #[serde(default)]
    pub mesh_mailbox: Option<String>,
}

/// Which recipients a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Ods(String),
    Commissioner(String),
    Supplier(String),
    Any,
}

impl Selector {
    fn rank(&self) -> u8 {
        match self {
            Self::Ods(_) => 3,
            Self::Commissioner(_) => 2,
            Self::Supplier(_) => 1,
            Self::Any => 0,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Ods(c) => format!("ODS {c}"),
            Self::Commissioner(c) => format!("commissioner {c}"),
            Self::Supplier(s) => format!("supplier {s}"),
            Self::Any => "any organisation".into(),
        }
    }
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Deliver {
        endpoint: Arc<Endpoint>,
        format: Format,
    },
    Hold(String),
}

/// A routing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub selector: Selector,
    pub document_types: Option<Vec<DocumentType>>,
    pub action: Action,
}

impl Rule {
    fn applies_to(&self, t: DocumentType) -> bool {
        self.document_types
            .as_ref()
            .is_none_or(|ts| ts.contains(&t))
    }

    fn score(&self) -> u8 {
        self.selector.rank() * 2 + u8::from(self.document_types.is_some())
    }

    /// One line describing the rule.
    pub fn describe(&self) -> String {
        let types = match &self.document_types {
            Some(ts) => ts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
            None => "all document types".into(),
        };
        let action = match &self.action {
            Action::Deliver { endpoint, format } => {
                format!("endpoint {} as {}", endpoint.id, format.as_str())
            }
            Action::Hold(why) => format!("hold: {why}"),
        };
        format!(
            "rule {:?} ({}, {types}) -> {action}",
            self.name,
            self.selector.describe()
        )
    }
}

/// A copy rule: documents for matching organisations also go to `to`, For Information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRule {
    pub name: String,
    pub selector: Selector,
    pub document_types: Option<Vec<DocumentType>>,
    pub to: String,
}

/// What happens to documents for the unknown-GP code `V81999`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownGp {
    Hold(String),
    Deliver {
        endpoint: Arc<Endpoint>,
        format: Format,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgEntry {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    status: Option<OrgStatus>,
    #[serde(default)]
    commissioner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ods: Option<String>,
    #[serde(default)]
    commissioner: Option<String>,
    #[serde(default)]
    supplier: Option<String>,
    #[serde(default)]
    document_types: Option<Vec<DocumentType>>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    hold: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyEntry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ods: Option<String>,
    #[serde(default)]
    commissioner: Option<String>,
    #[serde(default)]
    supplier: Option<String>,
    #[serde(default)]
    document_types: Option<Vec<DocumentType>>,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnknownGpEntry {
    #[serde(default)]
    hold: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    format: Option<Format>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    practices: Option<String>,
    #[serde(default)]
    successors: Option<String>,
    #[serde(default)]
    suppliers: Option<String>,
    #[serde(default)]
    default_endpoint: Option<String>,
    #[serde(default)]
    endpoints: BTreeMap<String, EndpointKind>,
    #[serde(default)]
    organisations: BTreeMap<String, OrgEntry>,
    #[serde(default)]
    senders: BTreeMap<String, Sender>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
    #[serde(default)]
    copies: Vec<CopyEntry>,
    #[serde(default)]
    unknown_gp: Option<UnknownGpEntry>,
}

/// The texts a directory is built from: the TOML file and the files it names.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub practices: Option<(String, String)>,
    pub successors: Option<(String, String)>,
    pub suppliers: Option<(String, String)>,
}

/// A loaded, checked directory.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    endpoints: BTreeMap<String, Arc<Endpoint>>,
    organisations: HashMap<String, Organisation>,
    senders: BTreeMap<String, Sender>,
    successors: HashMap<String, Successor>,
    suppliers: HashMap<String, String>,
    rules: Vec<Rule>,
    by_ods: HashMap<String, Vec<usize>>,
    by_commissioner: HashMap<String, Vec<usize>>,
    by_supplier: HashMap<String, Vec<usize>>,
    any: Vec<usize>,
    copies: Vec<CopyRule>,
    unknown_gp: Option<UnknownGp>,
    files: Vec<PathBuf>,
}

fn resolve_relative(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read(path: &Path) -> Result<String, DirectoryError> {
    std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Directory {
    /// Reads and checks a directory file and the files it names (relative to its folder).
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = read(path)?;
        let origin = path.display().to_string();
        let file = parse_file(&text, &origin)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![path.to_path_buf()];
        let mut load_named =
            |name: &Option<String>| -> Result<Option<(String, String)>, DirectoryError> {
                match name {
                    None => Ok(None),
                    Some(n) => {
                        let p = resolve_relative(base, n);
                        let t = read(&p)?;
                        files.push(p.clone());
                        Ok(Some((p.display().to_string(), t)))
                    }
                }
            };
        let sources = Sources {
            practices: load_named(&file.practices)?,
            successors: load_named(&file.successors)?,
            suppliers: load_named(&file.suppliers)?,
        };
        let mut d = build(file, &sources, &origin)?;
        d.files = files;
        Ok(d)
    }

    /// Parses and checks directory TOML with the named files' texts given; `origin` names the
    /// TOML in errors.
    pub fn from_parts(
        toml_text: &str,
        origin: &str,
        sources: &Sources,
    ) -> Result<Self, DirectoryError> {
        build(parse_file(toml_text, origin)?, sources, origin)
    }

    /// Parses directory TOML that names no other files.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, DirectoryError> {
        Self::from_parts(text, origin, &Sources::default())
    }

    /// Every file this directory was loaded from (to notice changes).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// How many senders are registered.
    pub fn sender_count(&self) -> usize {
        self.senders.len()
    }

    pub fn sender(&self, ods: &str) -> Option<&Sender> {
        self.senders.get(ods)
    }

    pub fn organisation(&self, ods: &str) -> Option<&Organisation> {
        self.organisations.get(ods)
    }

    pub fn organisation_count(&self) -> usize {
        self.organisations.len()
    }

    pub fn supplier(&self, ods: &str) -> Option<&str> {
        self.suppliers.get(ods).map(String::as_str)
    }

    pub fn successor(&self, ods: &str) -> Option<&Successor> {
        self.successors.get(ods)
    }

    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id).map(|e| e.as_ref())
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values().map(|e| e.as_ref())
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn copies(&self) -> &[CopyRule] {
        &self.copies
    }

    /// Rules that could apply to an organisation (any document type), most specific first.
    pub fn rules_for(&self, ods: &str) -> Vec<&Rule> {
        let mut idx = self.candidates(ods);
        idx.sort_by_key(|i| (std::cmp::Reverse(self.rules[*i].score()), *i));
        idx.into_iter().map(|i| &self.rules[i]).collect()
    }

    fn candidates(&self, ods: &str) -> Vec<usize> {
        let org = self.organisations.get(ods);
        let mut out: Vec<usize> = Vec::new();
        if let Some(v) = self.by_ods.get(ods) {
            out.extend(v);
        }
        if let Some(v) = org.and_then(|o| self.by_commissioner.get(&o.commissioner)) {
            out.extend(v);
        }
        if let Some(v) = self
            .suppliers
            .get(ods)
            .and_then(|s| self.by_supplier.get(s))
        {
            out.extend(v);
        }
        out.extend(&self.any);
        out
    }

    /// Follows successors in force on `today` from `ods`, recording each hop.
    fn current_code<'a>(&'a self, ods: &'a str, today: Day, trace: &mut Vec<Step>) -> &'a str {
        let mut cur = ods;
        for _ in 0..64 {
            match self.successors.get(cur) {
                Some(s) if s.effective <= today => {
                    trace.push(Step::Successor {
                        from: cur.to_string(),
                        to: s.new_code.clone(),
                        effective: s.effective,
                    });
                    cur = &s.new_code;
                }
                _ => break,
            }
        }
        cur
    }

    /// Routes one organisation (after successors), or says why not.
    fn route_one(
        &self,
        requested: &str,
        doc: DocumentType,
        today: Day,
        recipient_type: RecipientType,
        out: &mut Resolution,
    ) -> Option<String> {
        if requested == UNKNOWN_GP {
            return match &self.unknown_gp {
                Some(UnknownGp::Deliver { endpoint, format }) => {
                    out.trace.push(Step::UnknownGp { held: false });
                    out.routes.push(Route {
                        recipient_ods: requested.to_string(),
                        endpoint: endpoint.clone(),
                        format: *format,
                        recipient_type,
                        rule: None,
                    });
                    Some(requested.to_string())
                }
                Some(UnknownGp::Hold(why)) => {
                    out.trace.push(Step::UnknownGp { held: true });
                    self.unroutable(
                        out,
                        requested,
                        format!("unknown GP ({UNKNOWN_GP}): held for manual routing: {why}"),
                    );
                    None
                }
                None => {
                    out.trace.push(Step::UnknownGp { held: true });
                    self.unroutable(out, requested, format!("unknown GP ({UNKNOWN_GP}): held for manual routing (no [unknown_gp] rule)"));
                    None
                }
            };
        }
        let code = self.current_code(requested, today, &mut out.trace);
        let Some(org) = self.organisations.get(code) else {
            let why = if code == requested {
                "not in the directory".to_string()
            } else {
                format!("successor {code} of {requested} is not in the directory")
            };
            self.unroutable(out, requested, why);
            return None;
        };
        if org.status != OrgStatus::Active {
            let when = match (org.status, org.close_date, org.open_date) {
                (OrgStatus::Closed, Some(d), _) => format!(" since {}", show_day(d)),
                (OrgStatus::Proposed, _, Some(d)) => format!(", opening {}", show_day(d)),
                _ => String::new(),
            };
            out.trace.push(Step::Inactive {
                ods: code.to_string(),
                status: org.status,
            });
            self.unroutable(
                out,
                requested,
                format!(
                    "{code} is {}{when} and has no successor",
                    org.status.as_str()
                ),
            );
            return None;
        }
        let mut best: Option<usize> = None;
        for i in self.candidates(code) {
            let r = &self.rules[i];
            if !r.applies_to(doc) {
                out.trace.push(Step::RuleSkipped {
                    ods: code.to_string(),
                    rule: i,
                    document_type: doc,
                });
                continue;
            }
            match best {
                Some(b)
                    if (self.rules[b].score(), std::cmp::Reverse(b))
                        >= (r.score(), std::cmp::Reverse(i)) =>
                {
                    out.trace.push(Step::RuleOutranked {
                        ods: code.to_string(),
                        rule: i,
                        by: b,
                    });
                }
                Some(b) => {
                    out.trace.push(Step::RuleOutranked {
                        ods: code.to_string(),
                        rule: b,
                        by: i,
                    });
                    best = Some(i);
                }
                None => best = Some(i),
            }
        }
        let Some(b) = best else {
            out.trace.push(Step::NoRule {
                ods: code.to_string(),
            });
            self.unroutable(
                out,
                requested,
                format!("no rule routes {doc} for {code} (commissioner {}, supplier {}) and there is no default", 
                    if org.commissioner.is_empty() { "none" } else { &org.commissioner },
                    self.suppliers.get(code).map(String::as_str).unwrap_or("unknown")),
            );
            return None;
        };
        out.trace.push(Step::RuleChosen {
            ods: code.to_string(),
            rule: b,
        });
        match &self.rules[b].action {
            Action::Deliver { endpoint, format } => {
                out.routes.push(Route {
                    recipient_ods: code.to_string(),
                    endpoint: endpoint.clone(),
                    format: *format,
                    recipient_type,
                    rule: Some(b),
                });
                Some(code.to_string())
            }
            Action::Hold(why) => {
                self.unroutable(
                    out,
                    requested,
                    format!("held by rule {:?}: {why}", self.rules[b].name),
                );
                None
            }
        }
    }

    fn unroutable(&self, out: &mut Resolution, ods: &str, reason: String) {
        out.unroutable.push(Unroutable {
            recipient_ods: ods.to_string(),
            reason,
        });
    }

    /// Decides, for each distinct recipient, the endpoint it is delivered to or why it cannot
    /// be, then adds copies For Information. Pure: same directory and request, same answer.
    pub fn resolve(&self, req: &RouteRequest<'_>) -> Resolution {
        let mut out = Resolution::default();
        let mut reached: Vec<String> = Vec::with_capacity(req.recipients.len());
        let mut requested: Vec<std::borrow::Cow<'_, str>> =
            Vec::with_capacity(req.recipients.len());
        for raw in req.recipients {
            let trimmed = raw.trim();
            let ods: std::borrow::Cow<'_, str> = if trimmed.bytes().any(|b| b.is_ascii_lowercase())
            {
                trimmed.to_ascii_uppercase().into()
            } else {
                trimmed.into()
            };
            if requested.contains(&ods) {
                out.trace.push(Step::Duplicate {
                    ods: ods.into_owned(),
                });
                continue;
            }
            if let Some(code) = self.route_one(
                &ods,
                req.document_type,
                req.today,
                RecipientType::ForAction,
                &mut out,
            ) {
                if reached.contains(&code) {
                    // Two requested codes led to the same practice (a successor).
                    out.routes.pop();
                    out.trace.push(Step::Duplicate { ods: code });
                } else {
                    reached.push(code);
                }
            }
            requested.push(ods);
        }
        if self.copies.is_empty() {
            return out;
        }
        let primaries = reached.clone();
        for code in &primaries {
            let org = self.organisations.get(code);
            for (i, c) in self.copies.iter().enumerate() {
                let matches = match &c.selector {
                    Selector::Ods(o) => o == code,
                    Selector::Commissioner(x) => org.is_some_and(|o| &o.commissioner == x),
                    Selector::Supplier(s) => self.suppliers.get(code) == Some(s),
                    Selector::Any => true,
                };
                if !matches
                    || !c
                        .document_types
                        .as_ref()
                        .is_none_or(|t| t.contains(&req.document_type))
                {
                    continue;
                }
                if reached.contains(&c.to) {
                    out.trace.push(Step::CopySkipped {
                        rule: i,
                        to: c.to.clone(),
                    });
                    continue;
                }
                out.trace.push(Step::Copy {
                    from: code.clone(),
                    rule: i,
                    to: c.to.clone(),
                });
                if let Some(reached_code) = self.route_one(
                    &c.to,
                    req.document_type,
                    req.today,
                    RecipientType::ForInformation,
                    &mut out,
                ) {
                    reached.push(reached_code);
                }
            }
        }
        out
    }

    /// The trace as sentences.
    pub fn explain(&self, res: &Resolution) -> Vec<String> {
        res.trace
            .iter()
            .map(|s| self.describe(s))
            .chain(
                res.unroutable
                    .iter()
                    .map(|u| format!("{}: unroutable: {}", u.recipient_ods, u.reason)),
            )
            .collect()
    }

    /// Why `recipient` got the route it got: the steps that chose it (its rule, the merger
    /// that led to it, the copy rule that added it, the unknown-GP endpoint), as sentences
    /// joined by `; `, or `routed` when none applies.
    pub fn why_routed(&self, res: &Resolution, recipient: &str) -> String {
        let lines: Vec<String> = res
            .trace
            .iter()
            .filter(|s| match s {
                Step::RuleChosen { ods, .. } => ods == recipient,
                Step::Successor { to, .. } => to == recipient,
                Step::Copy { to, .. } => to == recipient,
                Step::UnknownGp { held: false } => recipient == UNKNOWN_GP,
                _ => false,
            })
            .map(|s| self.describe(s))
            .collect();
        if lines.is_empty() {
            "routed".to_string()
        } else {
            lines.join("; ")
        }
    }

    /// One step of the trace as a sentence.
    pub fn describe(&self, step: &Step) -> String {
        match step {
            Step::Duplicate { ods } => format!("{ods}: already a recipient; one delivery"),
            Step::UnknownGp { held: true } => {
                format!("{UNKNOWN_GP}: the patient's GP is not known; held for manual routing")
            }
            Step::UnknownGp { held: false } => format!(
                "{UNKNOWN_GP}: the patient's GP is not known; sent to the unknown-GP endpoint"
            ),
            Step::Successor {
                from,
                to,
                effective,
            } => {
                format!(
                    "{from}: merged into {to} on {}; routing to {to}",
                    show_day(*effective)
                )
            }
            Step::Inactive { ods, status } => {
                format!("{ods}: {} in the directory", status.as_str())
            }
            Step::RuleSkipped {
                ods,
                rule,
                document_type,
            } => format!(
                "{ods}: skipped {}: not for {document_type}",
                self.rules[*rule].describe()
            ),
            Step::RuleOutranked { ods, rule, by } => format!(
                "{ods}: skipped {}: {:?} is more specific or earlier",
                self.rules[*rule].describe(),
                self.rules[*by].name
            ),
            Step::RuleChosen { ods, rule } => {
                format!("{ods}: matched {}", self.rules[*rule].describe())
            }
            Step::NoRule { ods } => format!("{ods}: no rule applies"),
            Step::Copy { from, rule, to } => format!(
                "{from}: copy rule {:?} adds {to} (For Information)",
                self.copies[*rule].name
            ),
            Step::CopySkipped { rule, to } => format!(
                "copy rule {:?}: {to} is already a recipient",
                self.copies[*rule].name
            ),
        }
    }
}

/// The scope of a rule or copy rule: at most one of an ODS code, a commissioner, a supplier.
fn selector(
    ods: &Option<String>,
    commissioner: &Option<String>,
    supplier: &Option<String>,
) -> Result<Selector, String> {
    Ok(match (ods, commissioner, supplier) {
        (Some(o), None, None) => Selector::Ods(
            OdsCode::parse(o)
                .map_err(|e| format!("ODS code {o:?} {e}"))?
                .to_string(),
        ),
        (None, Some(c), None) => Selector::Commissioner(c.trim().to_ascii_uppercase()),
        (None, None, Some(s)) => Selector::Supplier(s.trim().to_ascii_uppercase()),
        (None, None, None) => Selector::Any,
        _ => return Err("give at most one of ods, commissioner, supplier".into()),
    })
}

fn parse_file(text: &str, origin: &str) -> Result<DirectoryFile, DirectoryError> {
    toml::from_str(text).map_err(|e| DirectoryError::Parse {
        path: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

fn build(
    file: DirectoryFile,
    sources: &Sources,
    origin: &str,
) -> Result<Directory, DirectoryError> {
    let invalid = |what, code: &str, message: String| DirectoryError::Invalid {
        path: origin.to_string(),
        what,
        code: code.to_string(),
        message,
    };
    let code_of = |what, s: &str| -> Result<String, DirectoryError> {
        OdsCode::parse(s)
            .map(|c| c.to_string())
            .map_err(|e| invalid(what, s, format!("ODS code {e}")))
    };
    let endpoints: BTreeMap<String, Arc<Endpoint>> = file
        .endpoints
        .into_iter()
        .map(|(id, kind)| (id.clone(), Arc::new(Endpoint { id, kind })))
        .collect();
    // Acknowledgements are matched to endpoints by folder: two endpoints must not share one.
    let mut folders: HashMap<&str, &str> = HashMap::new();
    for e in endpoints.values() {
        let path = match &e.kind {
            EndpointKind::File { path } => path,
            EndpointKind::Email { address } => {
                let usable = address
                    .rsplit_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                    && !address.contains(|c: char| c.is_whitespace() || c.is_control())
                    && !address.contains(['<', '>', ',']);
                if !usable {
                    return Err(invalid(
                        "endpoint",
                        &e.id,
                        format!("{address:?} is not a mail address (local@domain)"),
                    ));
                }
                continue;
            }
            EndpointKind::Mesh { .. } => continue,
            EndpointKind::Mllp { address, .. } => {
                let usable = address.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.trim_matches(['[', ']']).is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !usable {
                    return Err(invalid(
                        "endpoint",
                        &e.id,
                        format!("{address:?} is not HOST:PORT for an MLLP receiver"),
                    ));
                }
                continue;
            }
            EndpointKind::Grpc { token_sha256 } => {
                if token_sha256.len() != 64 || !token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(invalid(
                        "endpoint",
                        &e.id,
                        "token_sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)"
                            .to_string(),
                    ));
                }
                continue;
            }
        };
        let key = path.trim_end_matches('/');
        if let Some(other) = folders.insert(key, &e.id) {
            return Err(invalid(
                "endpoint",
                &e.id,
                format!("uses the same folder {path:?} as endpoint {other:?}; give each its own"),
            ));
        }
    }
    let endpoint = |what, owner: &str, id: &str| -> Result<Arc<Endpoint>, DirectoryError> {
        endpoints.get(id).cloned().ok_or_else(|| {
            invalid(
                what,
                owner,
                format!("endpoint {id:?} is not defined in [endpoints]"),
            )
        })
    };

    let mut organisations: HashMap<String, Organisation> = HashMap::new();
    if let Some((path, text)) = &sources.practices {
        for p in ods::parse_epraccur(text, path)? {
            organisations.insert(
                p.code.clone(),
                Organisation {
                    code: p.code,
                    name: p.name,
                    status: p.status,
                    open_date: p.open_date,
                    close_date: p.close_date,
                    commissioner: p.commissioner,
                    prescribing_setting: p.prescribing_setting,
                    postcode: p.postcode,
                    source: OrgSource::PracticeFile,
                },
            );
        }
    }
    let successors = match &sources.successors {
        Some((path, text)) => ods::parse_successors(text, path)?,
        None => HashMap::new(),
    };
    let suppliers = match &sources.suppliers {
        Some((path, text)) => ods::parse_suppliers(text, path)?,
        None => HashMap::new(),
    };

    let mut rules: Vec<Rule> = Vec::new();
    for (raw, o) in file.organisations {
        let code = code_of("organisation", &raw)?;
        let entry = organisations
            .entry(code.clone())
            .or_insert_with(|| Organisation {
                code: code.clone(),
                name: String::new(),
                status: OrgStatus::Active,
                open_date: None,
                close_date: None,
                commissioner: String::new(),
                prescribing_setting: 0,
                postcode: String::new(),
                source: OrgSource::DirectoryFile,
            });
        if !o.name.is_empty() {
            entry.name = o.name;
        }
        if let Some(s) = o.status {
            entry.status = s;
        }
        if let Some(c) = o.commissioner {
            entry.commissioner = c.to_ascii_uppercase();
        }
        if let Some(ep) = &o.endpoint {
            rules.push(Rule {
                name: format!("organisations.{code}"),
                selector: Selector::Ods(code.clone()),
                document_types: None,
                action: Action::Deliver {
                    endpoint: endpoint("organisation", &code, ep)?,
                    format: o.format.unwrap_or_default(),
                },
            });
        } else if o.format.is_some() {
            return Err(invalid(
                "organisation",
                &code,
                "format needs an endpoint".into(),
            ));
        }
    }
    for (n, r) in file.rules.into_iter().enumerate() {
        let name = r.name.clone().unwrap_or_else(|| format!("rules[{n}]"));
        let selector = selector(&r.ods, &r.commissioner, &r.supplier)
            .map_err(|m| invalid("rule", &name, m))?;
        if matches!(&r.document_types, Some(t) if t.is_empty()) {
            return Err(invalid(
                "rule",
                &name,
                "document_types is empty, so the rule can never match".into(),
            ));
        }
        let action = match (&r.endpoint, &r.hold) {
            (Some(e), None) => Action::Deliver {
                endpoint: endpoint("rule", &name, e)?,
                format: r.format.unwrap_or_default(),
            },
            (None, Some(h)) if r.format.is_none() => Action::Hold(h.clone()),
            _ => {
                return Err(invalid(
                    "rule",
                    &name,
                    "give either endpoint (with an optional format) or hold".into(),
                ))
            }
        };
        if let Selector::Supplier(s) = &selector {
            if sources.suppliers.is_some() && !suppliers.values().any(|v| v == s) {
                return Err(invalid("rule", &name, format!("supplier {s} appears nowhere in the supplier file, so the rule can never match")));
            }
        }
        if let Selector::Commissioner(c) = &selector {
            if !organisations.values().any(|o| &o.commissioner == c) {
                return Err(invalid(
                    "rule",
                    &name,
                    format!("no organisation has commissioner {c}, so the rule can never match"),
                ));
            }
        }
        rules.push(Rule {
            name,
            selector,
            document_types: r.document_types,
            action,
        });
    }
    if let Some(d) = &file.default_endpoint {
        rules.push(Rule {
            name: "default_endpoint".into(),
            selector: Selector::Any,
            document_types: None,
            action: Action::Deliver {
                endpoint: endpoint("default_endpoint", d, d)?,
                format: Format::Original,
            },
        });
    }
    // A rule that an earlier one with the same selector and types always beats can never match.
    for (i, r) in rules.iter().enumerate() {
        if let Some(j) = rules[..i]
            .iter()
            .position(|e| e.selector == r.selector && e.document_types == r.document_types)
        {
            return Err(invalid(
                "rule",
                &r.name,
                format!(
                    "can never match: rule {:?} has the same scope and comes first",
                    rules[j].name
                ),
            ));
        }
    }
    let mut by_ods: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_commissioner: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_supplier: HashMap<String, Vec<usize>> = HashMap::new();
    let mut any = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match &r.selector {
            Selector::Ods(o) => by_ods.entry(o.clone()).or_default().push(i),
            Selector::Commissioner(c) => by_commissioner.entry(c.clone()).or_default().push(i),
            Selector::Supplier(s) => by_supplier.entry(s.clone()).or_default().push(i),
            Selector::Any => any.push(i),
        }
    }
    let mut copies = Vec::new();
    for (n, c) in file.copies.into_iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| format!("copies[{n}]"));
        let selector = selector(&c.ods, &c.commissioner, &c.supplier)
            .map_err(|m| invalid("copy", &name, m))?;
        let to = code_of("copy", &c.to)?;
        if !organisations.contains_key(&to) {
            return Err(invalid(
                "copy",
                &name,
                format!("copies go to {to}, which is not in the directory"),
            ));
        }
        copies.push(CopyRule {
            name,
            selector,
            document_types: c.document_types,
            to,
        });
    }
    let unknown_gp = match file.unknown_gp {
        None => None,
        Some(u) => Some(match (u.endpoint, u.hold) {
            (Some(e), None) => UnknownGp::Deliver {
                endpoint: endpoint("unknown_gp", UNKNOWN_GP, &e)?,
                format: u.format.unwrap_or_default(),
            },
            (None, Some(h)) => UnknownGp::Hold(h),
            _ => {
                return Err(invalid(
                    "unknown_gp",
                    UNKNOWN_GP,
                    "give either endpoint or hold".into(),
                ))
            }
        }),
    };
    let mut senders = BTreeMap::new();
    for (code, s) in file.senders {
        senders.insert(code_of("sender", &code)?, s);
    }
    for old in successors.keys() {
        let new = &successors[old].new_code;
        if !organisations.contains_key(new) && !successors.contains_key(new) {
            return Err(DirectoryError::Row {
                path: sources
                    .successors
                    .as_ref()
                    .map(|s| s.0.clone())
                    .unwrap_or_default(),
                line: successors[old].line,
                column: 2,
                message: format!("successor {new} of {old} is not in the directory"),
            });
        }
    }
    Ok(Directory {
        endpoints,
        organisations,
        senders,
        successors,
        suppliers,
        rules,
        by_ods,
        by_commissioner,
        by_supplier,
        any,
        copies,
        unknown_gp,
        files: Vec::new(),
    })
}
