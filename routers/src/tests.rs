//! Routing decisions against the real national practice file.

use crate::*;
use edt_transforms::DocumentType;
use proptest::prelude::*;
use std::sync::OnceLock;

const ODS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ods");

fn practices() -> (String, String) {
    let p = format!("{ODS_DIR}/epraccur.csv");
    let t = std::fs::read_to_string(&p).expect("deploy/ods/epraccur.csv");
    (p, t)
}

fn suppliers() -> (String, String) {
    let p = format!("{ODS_DIR}/ods-to-supplier.csv");
    let t = std::fs::read_to_string(&p).expect("deploy/ods/ods-to-supplier.csv");
    (p, t)
}

const RULES: &str = r#"
[senders.RX1]
[endpoints.a81001]
kind = "file"
path = "drop/A81001"
[endpoints.lab]
kind = "file"
path = "drop/lab"
[endpoints.k00]
kind = "file"
path = "drop/00K"
[endpoints.emis]
kind = "file"
path = "drop/emis"
[endpoints.all]
kind = "file"
path = "drop/all"
[endpoints.community]
kind = "file"
path = "drop/community"
[endpoints.pds]
kind = "file"
path = "drop/pds"

[organisations.RYX]
name = "Community Trust"
endpoint = "community"

[[rules]]
name = "A81001 folder"
ods = "A81001"
endpoint = "a81001"
[[rules]]
name = "00K results to the lab"
commissioner = "00K"
document_types = ["order-result"]
endpoint = "lab"
format = "hl7v2"
[[rules]]
name = "00K practices"
commissioner = "00K"
endpoint = "k00"
format = "itk3"
[[rules]]
name = "EMIS practices"
supplier = "EMIS"
endpoint = "emis"
format = "gp-connect"
[[rules]]
name = "everyone else"
endpoint = "all"

[[copies]]
name = "00M discharges to community"
commissioner = "00M"
document_types = ["discharge-summary"]
to = "RYX"

[unknown_gp]
endpoint = "pds"
"#;

fn directory_with(extra: &str, successors: Option<&str>) -> Directory {
    let sources = Sources {
        practices: Some(practices()),
        successors: successors.map(|s| ("successors.csv".to_string(), s.to_string())),
        suppliers: Some(suppliers()),
    };
    Directory::from_parts(&format!("{RULES}\n{extra}"), "directory.toml", &sources)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn directory() -> &'static Directory {
    static D: OnceLock<Directory> = OnceLock::new();
    D.get_or_init(|| directory_with("", None))
}

fn resolve_in(d: &Directory, to: &[&str], t: DocumentType) -> Resolution {
    let recipients: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    d.resolve(&RouteRequest {
        sender_ods: "RX1",
        recipients: &recipients,
        document_type: t,
        today: 20260101,
    })
}

fn endpoints(r: &Resolution) -> Vec<(&str, &str, &str, &str)> {
    r.routes
        .iter()
        .map(|x| {
            (
                x.recipient_ods.as_str(),
                x.endpoint.id.as_str(),
                x.format.as_str(),
                x.recipient_type.code(),
            )
        })
        .collect()
}

#[test]
fn the_real_practice_file_loads_with_its_statuses() {
    let (path, text) = practices();
    let rows = ods::parse_epraccur(&text, &path).unwrap();
    assert_eq!(rows.len(), 14_303);
    let count = |s| rows.iter().filter(|p| p.status == s).count();
    assert_eq!(
        (
            count(OrgStatus::Active),
            count(OrgStatus::Closed),
            count(OrgStatus::Dormant),
            count(OrgStatus::Proposed)
        ),
        (11_482, 2_427, 389, 5)
    );
    let d = directory();
    let a = d.organisation("A81003").unwrap();
    assert_eq!(
        (a.status, a.close_date, a.commissioner.as_str()),
        (OrgStatus::Closed, Some(20171031), "00K")
    );
    assert_eq!(d.supplier("A81001"), Some("TPP"));
    assert_eq!(d.organisation_count(), 14_304, "the practices plus RYX");
}

#[test]
fn most_specific_rule_wins_and_the_trace_says_why() {
    let d = directory();
    // A81001 (00K, TPP): its own rule beats the commissioner rules.
    let r = resolve_in(d, &["A81001"], DocumentType::DischargeSummary);
    assert_eq!(endpoints(&r), [("A81001", "a81001", "original", "FA")]);
    let why = d.explain(&r).join("\n");
    assert!(why.contains("matched rule \"A81001 folder\""), "{why}");
    assert!(
        why.contains("skipped rule \"00K results to the lab\"")
            && why.contains("not for discharge-summary"),
        "{why}"
    );
    assert!(why.contains("skipped rule \"00K practices\""), "{why}");
    // A81002 (00K): results go to the lab as HL7 v2, letters to the 00K endpoint as ITK3.
    let r = resolve_in(d, &["A81002"], DocumentType::OrderResult);
    assert_eq!(endpoints(&r), [("A81002", "lab", "hl7v2", "FA")]);
    let r = resolve_in(d, &["A81002"], DocumentType::OutpatientLetter);
    assert_eq!(endpoints(&r), [("A81002", "k00", "itk3", "FA")]);
}

#[test]
fn supplier_and_default_rules() {
    let d = directory();
    let emis = ods::parse_suppliers(&suppliers().1, "s")
        .unwrap()
        .into_iter()
        .find(|(code, s)| {
            s == "EMIS"
                && d.organisation(code)
                    .is_some_and(|o| o.status == OrgStatus::Active && o.commissioner != "00K")
        })
        .map(|(c, _)| c)
        .unwrap();
    let r = resolve_in(d, &[&emis], DocumentType::DischargeSummary);
    assert_eq!(endpoints(&r), [(emis.as_str(), "emis", "gp-connect", "FA")]);
    // A practice with no supplier entry and no commissioner rule falls to the catch-all.
    let (path, text) = practices();
    let other = ods::parse_epraccur(&text, &path)
        .unwrap()
        .into_iter()
        .find(|p| {
            p.status == OrgStatus::Active
                && p.commissioner != "00K"
                && d.supplier(&p.code).is_none()
        })
        .expect("an active practice with no supplier")
        .code;
    let other = other.as_str();
    let r = resolve_in(d, &[other], DocumentType::DischargeSummary);
    assert_eq!(endpoints(&r)[0].1, "all");
}

#[test]
fn closed_dormant_proposed_and_unknown_are_unroutable_with_reasons() {
    let d = directory();
    let r = resolve_in(d, &["A81003", "Z99999"], DocumentType::DischargeSummary);
    assert!(r.routes.is_empty());
    assert_eq!(
        r.unroutable[0].reason,
        "A81003 is closed since 2017-10-31 and has no successor"
    );
    assert_eq!(r.unroutable[1].reason, "not in the directory");
    for status in [OrgStatus::Dormant, OrgStatus::Proposed] {
        let (path, text) = practices();
        let code = ods::parse_epraccur(&text, &path)
            .unwrap()
            .into_iter()
            .find(|p| p.status == status)
            .unwrap()
            .code;
        let r = resolve_in(d, &[&code], DocumentType::DischargeSummary);
        assert!(
            r.unroutable[0].reason.contains(status.as_str()),
            "{:?}",
            r.unroutable
        );
    }
}

#[test]
fn successors_reroute_from_their_effective_date_and_chains_resolve() {
    let d = directory_with(
        "",
        Some("old,new,effective\nA81003,A81004,2017-11-01\nA81008,A81003,20180201\n"),
    );
    let r = resolve_in(&d, &["A81008"], DocumentType::OrderResult);
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].recipient_ods, "A81004");
    let why = d.explain(&r).join("\n");
    assert!(
        why.contains("A81008: merged into A81003 on 2018-02-01"),
        "{why}"
    );
    assert!(
        why.contains("A81003: merged into A81004 on 2017-11-01"),
        "{why}"
    );
    // Before the merger takes effect the old practice is used (and is closed).
    let before = d.resolve(&RouteRequest {
        sender_ods: "RX1",
        recipients: &["A81003".to_string()],
        document_type: DocumentType::DischargeSummary,
        today: 20171015,
    });
    assert!(before.routes.is_empty());
    // Two requested codes that lead to one practice give one delivery.
    let r = resolve_in(&d, &["A81003", "A81004"], DocumentType::OrderResult);
    assert_eq!(r.routes.len(), 1);
}

#[test]
fn unknown_gp_is_never_dropped() {
    let d = directory();
    let r = resolve_in(d, &["V81999"], DocumentType::DischargeSummary);
    assert_eq!(endpoints(&r), [("V81999", "pds", "original", "FA")]);
    let held = Directory::from_toml("[unknown_gp]\nhold = \"trace with PDS\"\n", "t").unwrap();
    let r = resolve_in(&held, &["V81999"], DocumentType::DischargeSummary);
    assert!(
        r.unroutable[0].reason.contains("trace with PDS"),
        "{:?}",
        r.unroutable
    );
    let unset = Directory::from_toml("", "t").unwrap();
    let r = resolve_in(&unset, &["V81999"], DocumentType::DischargeSummary);
    assert!(r.unroutable[0].reason.contains("held for manual routing"));
}

#[test]
fn fan_out_and_copies_for_information() {
    let d = directory();
    // A81004 and A81005 are 00M: a discharge summary to both copies RYX once.
    let r = resolve_in(
        d,
        &["A81004", "A81005", "a81004"],
        DocumentType::DischargeSummary,
    );
    assert_eq!(
        endpoints(&r),
        [
            ("A81004", "all", "original", "FA"),
            ("A81005", "all", "original", "FA"),
            ("RYX", "community", "original", "FI")
        ]
    );
    let why = d.explain(&r).join("\n");
    assert!(
        why.contains("copy rule \"00M discharges to community\" adds RYX"),
        "{why}"
    );
    assert!(why.contains("RYX is already a recipient"), "{why}");
    // Not for other document types; and an explicit recipient is not copied twice.
    assert_eq!(
        resolve_in(d, &["A81004"], DocumentType::OrderResult)
            .routes
            .len(),
        1
    );
    let r = resolve_in(d, &["A81004", "RYX"], DocumentType::DischargeSummary);
    assert_eq!(r.routes.len(), 2);
    assert_eq!(r.routes[1].recipient_type, RecipientType::ForAction);
}

#[test]
fn bad_directories_are_refused_with_their_location() {
    let bad = |toml: &str| {
        Directory::from_parts(
            toml,
            "directory.toml",
            &Sources {
                practices: Some(practices()),
                successors: None,
                suppliers: Some(suppliers()),
            },
        )
        .unwrap_err()
        .to_string()
    };
    let e = bad("[[rules]]\nendpoint = \"nowhere\"\n");
    assert!(e.contains("directory.toml") && e.contains("nowhere"), "{e}");
    let e = bad("[endpoints.x]\nkind = \"file\"\npath = \"x\"\n[[rules]]\nendpoint = \"x\"\n[[rules]]\nname = \"again\"\nendpoint = \"x\"\n");
    assert!(e.contains("again") && e.contains("can never match"), "{e}");
    let e = bad("[endpoints.x]\nkind = \"file\"\npath = \"x\"\n[[rules]]\ncommissioner = \"ZZZ\"\nendpoint = \"x\"\n");
    assert!(e.contains("no organisation has commissioner ZZZ"), "{e}");
    let e = bad("[endpoints.x]\nkind = \"file\"\npath = \"x\"\n[[rules]]\nsupplier = \"NOPE\"\nendpoint = \"x\"\n");
    assert!(e.contains("supplier NOPE"), "{e}");
    let e = bad("[endpoints.x]\nkind = \"file\"\npath = \"x\"\n[[rules]]\ndocument_types = []\nendpoint = \"x\"\n");
    assert!(e.contains("document_types is empty"), "{e}");
    let e = bad("[[copies]]\nto = \"QQQ999\"\n");
    assert!(
        e.contains("QQQ999") && e.contains("not in the directory"),
        "{e}"
    );
    let e = bad("[endpoints.x]\nkind = \"file\"\npath = \"x\"\n[[rules]]\nods = \"A81001\"\ncommissioner = \"00K\"\nendpoint = \"x\"\n");
    assert!(e.contains("at most one"), "{e}");
    let e = bad("[endpoints.x]\nkind = \"file\"\npath = \"drop/x\"\n[endpoints.y]\nkind = \"file\"\npath = \"drop/x/\"\n");
    assert!(e.contains("same folder"), "{e}");
    let e = bad("[endpoints.m]\nkind = \"email\"\naddress = \"Bob <bob@x.org>\"\n");
    assert!(e.contains("is not a mail address"), "{e}");
    let e = bad("bogus = 1\n");
    assert!(e.contains("bogus"), "{e}");
    let e = Directory::from_parts(
        "",
        "directory.toml",
        &Sources {
            practices: None,
            successors: Some(("s.csv".into(), "A81001,QQQ999,20200101\n".into())),
            suppliers: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("s.csv line 1") && e.contains("QQQ999"), "{e}");
}

#[test]
fn impossible_dates_in_the_practice_and_successor_files_are_refused() {
    let e = Directory::from_parts(
        "",
        "directory.toml",
        &Sources {
            practices: None,
            successors: Some(("s.csv".into(), "A81001,A81002,20260231\n".into())),
            suppliers: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("s.csv line 1") && e.contains("is not a real date"),
        "{e}"
    );
    // A practice opened on 31 February.
    let (_, text) = practices();
    let first = text.lines().next().unwrap();
    let date = first
        .split(',')
        .map(|f| f.trim_matches('"'))
        .find(|f| f.len() == 8 && f.bytes().all(|b| b.is_ascii_digit()))
        .expect("a dated practice");
    let line = first.replacen(date, "20260231", 1);
    let e = crate::ods::parse_epraccur(&line, "epraccur.csv")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("epraccur.csv line 1") && e.contains("is not a real date"),
        "{e}"
    );
}

fn any_doc_type() -> impl Strategy<Value = DocumentType> {
    proptest::sample::select(DocumentType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// resolve() never panics, and every distinct requested recipient ends as a route or a
    /// reason; copies only add For Information routes.
    #[test]
    fn every_recipient_gets_a_route_or_a_reason(
        picks in proptest::collection::vec(0usize..14_400, 0..6),
        junk in proptest::collection::vec("[A-Za-z0-9]{0,8}", 0..3),
        t in any_doc_type(),
        today in 19700101u32..20300101,
    ) {
        let d = directory();
        let (path, text) = practices();
        let codes: Vec<String> = {
            static ALL: OnceLock<Vec<String>> = OnceLock::new();
            ALL.get_or_init(|| ods::parse_epraccur(&text, &path).unwrap().into_iter().map(|p| p.code).collect()).clone()
        };
        let mut recipients: Vec<String> = picks.iter().map(|i| codes.get(*i).cloned().unwrap_or_else(|| "V81999".into())).collect();
        recipients.extend(junk);
        let r = d.resolve(&RouteRequest { sender_ods: "RX1", recipients: &recipients, document_type: t, today });
        let mut distinct: Vec<String> = recipients.iter().map(|s| s.trim().to_ascii_uppercase()).collect();
        distinct.sort();
        distinct.dedup();
        // This directory has no successors and its copy target is routable, so each distinct
        // recipient gives exactly one For Action route or one reason.
        let for_action = r.routes.iter().filter(|x| x.recipient_type == RecipientType::ForAction).count();
        prop_assert_eq!(for_action + r.unroutable.len(), distinct.len());
        for u in &r.unroutable {
            prop_assert!(!u.reason.is_empty());
        }
        let _ = d.explain(&r);
    }
}

#[test]
fn the_example_directory_in_deploy_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/directory.example.toml"
    ))
    .unwrap();
    let d = Directory::from_parts(
        &text,
        "deploy/directory.example.toml",
        &Sources {
            practices: Some(practices()),
            successors: Some(("successors.csv".into(), "old,new,effective\n".into())),
            suppliers: Some(suppliers()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = resolve_in(&d, &["A81002"], DocumentType::OrderResult);
    assert_eq!(endpoints(&r), [("A81002", "pathology-drop", "hl7v2", "FA")]);
}
