//! An HL7 v2 ORU^R01 as a FHIR R4 pathology test report bundle, following NHS England's
//! Pathology FHIR Implementation Guide ("How to Construct Bundles", Test Report Bundles,
//! v0.3.1): a `document` Bundle whose first entry is the Composition (Composition-eu-lab),
//! then the UK Core resources it is built from.
//!
//! | FHIR | from the ORU |
//! |---|---|
//! | Composition `date`, `status`, `section` (one per OBR: title and code from OBR-4, entry the test group) | MSH-7; final when every OBR-25 is; OBR-4 |
//! | Patient `identifier` (NHS number, `https://fhir.nhs.uk/Id/nhs-number`; other ids with their type and assigning authority), `name`, `birthDate`, `gender`, `generalPractitioner` | PID-3, PID-5, PID-7, PID-8 (HL7 table 0001), PD1-3 / PV1-3 |
//! | Organization: performing laboratory (ODS code of the sender), registered practice (ODS code, name), requesting organisation | the sender bound to MSH-4; PD1-3 / PV1-3; ORC-21 |
//! | Practitioner (requester) | OBR-16, else ORC-12 (a `G` + 7 digit code as a GMP number) |
//! | ServiceRequest (where OBR-2 or an ORC is sent) `identifier` (placer, PLAC), `status` (ORC-5), `intent` order, `code`, `authoredOn`, `requester` | OBR-2, ORC-5, OBR-4, ORC-9, OBR-16 / ORC-12 / ORC-21 |
//! | Specimen (from SPM, else OBR-15) `identifier`, `type`, `collection.collectedDateTime`, `receivedTime`, `request` | SPM-2, SPM-4 / OBR-15.1, SPM-17 / OBR-7, SPM-18 |
//! | DiagnosticReport `identifier` (filler, FILL), `basedOn`, `status`, `category` (v2 table 0074), `code`, `effectiveDateTime`, `issued`, `performer`, `specimen`, `result` (test groups), `presentedForm` (PDF) | OBR-3, OBR-25, OBR-24, OBR-4, OBR-7, OBR-22, OBX type ED |
//! | Observation, test group: `status`, `category` laboratory, `code`, `effectiveDateTime`, `hasMember`, `note` | OBR-25, OBR-4, OBR-7, the OBR's OBX, its NTE |
//! | Observation, test result: `status`, `code` (with the alternate code), `value[x]` (NM/SN quantity with unit and comparator, CE/CWE concept, text), `interpretation` (table 0078 as v3 ObservationInterpretation), `referenceRange` (low/high when `a-b`, and the text), `effectiveDateTime`, `note` | OBX-11, OBX-3, OBX-5 / OBX-2 / OBX-6, OBX-8, OBX-7, OBX-14, NTE |
//!
//! Codes keep their systems: LN as LOINC, SCT/SNM/SNOMED as SNOMED CT, UCUM units as UCUM; a
//! local code keeps its code and text without a system. Nothing is invented: a field the ORU
//! lacks is left out. Times without an offset are, as HL7 v2 says, the sender's local time:
//! UK time (GMT, or BST between the last Sundays of March and October).

use super::*;
use crate::hl7::{Message, OruError, OruSummary, SegmentRef};
use std::borrow::Cow;

const GMP_NUMBER: &str = "https://fhir.hl7.org.uk/Id/gmp-number";

/// What the bundle is made for: ids are derived from `seed` (the delivery), so the same
/// delivery gives the same bundle.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub seed: &'a str,
    /// RFC 3339: `Bundle.timestamp`.
    pub timestamp: &'a str,
    /// The performing laboratory's ODS code (the sender).
    pub sender_ods: &'a str,
}

/// Why an ORU cannot become a report bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathologyError {
    #[error(transparent)]
    Oru(#[from] OruError),
}

/// `n` in decimal, written into `buf`.
fn digits(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

fn some(s: impl AsRef<str>) -> Option<Text> {
    some_str(s.as_ref()).map(Text::copy)
}

/// `s` trimmed, unless that leaves nothing (or HL7's `""`, a deleted value).
fn some_str(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty() && t != "\"\"").then_some(t)
}

/// The FHIR system of an HL7 v2 coding system name (table 0396), when it has one.
pub fn system_of(name: &str) -> Option<&'static str> {
    let name = name.trim();
    let is = |names: &[&str]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
    if is(&["LN", "LOINC"]) {
        Some(systems::LOINC)
    } else if is(&["SCT", "SNM", "SNOMED", "SNOMEDCT", "SNOMED-CT", "SCTID"]) {
        Some(systems::SNOMED)
    } else if is(&["UCUM"]) {
        Some(systems::UCUM)
    } else {
        None
    }
}

/// A CE/CWE field repetition as a CodeableConcept (primary and alternate codes), `None` when
/// empty.
fn concept(seg: SegmentRef<'_>, n: usize) -> Option<CodeableConcept> {
    let c = Concept::read(seg, n)?;
    let coding: Vec<Coding> = c
        .codings()
        .map(|(system, code, display)| Coding {
            system: system.map(Text::fixed),
            code: Some(Text::copy(code)),
            display: display.map(Text::copy),
        })
        .collect();
    let cc = CodeableConcept {
        coding: Fixed::Owned(coding),
        text: c.text().map(Text::copy),
    };
    (!cc.coding.is_empty() || cc.text.is_some()).then_some(cc)
}

/// A CE/CWE field repetition as read: code, text and system, then the alternate three.
struct Concept<'m>([Cow<'m, str>; 6]);

impl<'m> Concept<'m> {
    fn read(seg: SegmentRef<'m>, n: usize) -> Option<Self> {
        let rep = seg.field(n)?.repetition(1)?;
        let mut c: [Cow<'m, str>; 6] = Default::default();
        for (slot, component) in c.iter_mut().zip(rep.components()) {
            *slot = component.text();
        }
        Some(Concept(c))
    }

    /// The codings: (system, code, display), primary first.
    fn codings(&self) -> impl Iterator<Item = (Option<&'static str>, &str, Option<&str>)> {
        (0..2).filter_map(move |k| {
            let c = &self.0[3 * k..3 * k + 3];
            some_str(&c[0]).map(|code| (system_of(&c[2]), code, some_str(&c[1])))
        })
    }

    /// The text: the primary's, else the alternate's.
    fn text(&self) -> Option<&str> {
        some_str(&self.0[1]).or_else(|| some_str(&self.0[4]))
    }

    fn is_empty(&self) -> bool {
        self.codings().next().is_none() && self.text().is_none()
    }

    /// Writes the CodeableConcept [`concept`] makes of it.
    fn write(&self, out: &mut String) {
        let mut cc = ser::Obj::open(out);
        cc.array("coding", self.codings(), |out, (system, code, display)| {
            let mut coding = ser::Obj::open(out);
            if let Some(system) = system {
                coding.plain("system", system);
            }
            coding.value("code", code);
            coding.some("display", display.as_ref());
            coding.close();
        });
        cc.some("text", self.text().as_ref());
        cc.close();
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week, 0 = Sunday.
fn weekday(y: i64, m: i64, d: i64) -> i64 {
    let t = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if m < 3 { y - 1 } else { y };
    (y + y / 4 - y / 100 + y / 400 + t[(m - 1) as usize] + d).rem_euclid(7)
}

fn last_sunday(y: i64, m: i64) -> i64 {
    let last = days_in(y, m);
    last - weekday(y, m, last)
}

/// True when a UK local time falls in British Summer Time.
fn is_bst(y: i64, m: i64, d: i64, h: i64) -> bool {
    match m {
        4..=9 => true,
        3 => {
            let s = last_sunday(y, 3);
            d > s || (d == s && h >= 1)
        }
        10 => {
            let s = last_sunday(y, 10);
            d < s || (d == s && h < 1)
        }
        _ => false,
    }
}

/// How many digits a (trimmed) HL7 v2 timestamp starts with, and its year, month and day
/// (1 when not given); `None` when that is not a date.
fn date_of(ts: &str) -> Option<(usize, i64, i64, i64)> {
    let digits = ts.bytes().take_while(u8::is_ascii_digit).count();
    if ![4, 6, 8, 10, 12, 14].contains(&digits) {
        return None;
    }
    let n = |a: usize, b: usize| ts[a..b].parse::<i64>().ok();
    let y = n(0, 4)?;
    let mo = if digits >= 6 { n(4, 6)? } else { 1 };
    let d = if digits >= 8 { n(6, 8)? } else { 1 };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in(y, mo) || y < 1 {
        return None;
    }
    Some((digits, y, mo, d))
}

/// An HL7 v2 timestamp (`YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`) as a FHIR dateTime; with a
/// time and no offset, UK local time. `None` when it is not a timestamp.
pub fn date_time(ts: &str) -> Option<String> {
    let ts = ts.trim();
    let (digits, y, mo, d) = date_of(ts)?;
    let n = |a: usize, b: usize| ts[a..b].parse::<i64>().ok();
    let mut rest = &ts[digits..];
    let mut fraction = "";
    if digits == 14 {
        if let Some(f) = rest.strip_prefix('.') {
            let k = f.bytes().take_while(u8::is_ascii_digit).count();
            if k == 0 {
                return None;
            }
            fraction = &rest[..k + 1];
            rest = &f[k..];
        }
    }
    let zone = match rest.as_bytes() {
        [] => None,
        [b'+' | b'-', z @ ..] if z.len() == 4 && z.iter().all(u8::is_ascii_digit) => Some(rest),
        _ => return None,
    };
    // The last two digits of a number (the year is written as two pairs).
    let two = |out: &mut String, v: i64| {
        out.push(char::from(b'0' + (v / 10 % 10) as u8));
        out.push(char::from(b'0' + (v % 10) as u8));
    };
    let mut out = String::with_capacity(32);
    two(&mut out, y / 100);
    two(&mut out, y % 100);
    if digits >= 6 {
        out.push('-');
        two(&mut out, mo);
    }
    if digits >= 8 {
        out.push('-');
        two(&mut out, d);
    }
    if digits <= 8 {
        return Some(out);
    }
    let h = n(8, 10)?;
    let mi = if digits >= 12 { n(10, 12)? } else { 0 };
    let s = if digits >= 14 { n(12, 14)? } else { 0 };
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    out.push('T');
    two(&mut out, h);
    out.push(':');
    two(&mut out, mi);
    out.push(':');
    two(&mut out, s);
    out.push_str(fraction);
    match zone {
        Some(z) => {
            out.push_str(&z[..3]);
            out.push(':');
            out.push_str(&z[3..5]);
        }
        None if is_bst(y, mo, d, h) => out.push_str("+01:00"),
        None => out.push_str("+00:00"),
    }
    Some(out)
}

/// An HL7 v2 timestamp with at least seconds as a FHIR instant.
fn instant(ts: &str) -> Option<String> {
    let digits = ts.trim().bytes().take_while(u8::is_ascii_digit).count();
    (digits >= 14).then(|| date_time(ts)).flatten()
}

/// OBX-11 / OBR-25 (HL7 tables 0085 / 0123) as an Observation status.
fn observation_status(code: &str) -> &'static str {
    match code.trim() {
        "F" | "U" => "final",
        "C" => "corrected",
        "P" | "R" | "S" | "A" => "preliminary",
        "I" | "O" => "registered",
        "X" => "cancelled",
        "D" | "W" => "entered-in-error",
        _ => "unknown",
    }
}

/// OBR-25 (HL7 table 0123) as a DiagnosticReport status.
fn report_status(code: &str) -> &'static str {
    match code.trim() {
        "F" => "final",
        "C" => "corrected",
        "P" | "R" => "preliminary",
        "A" => "partial",
        "I" | "O" | "S" => "registered",
        "X" => "cancelled",
        _ => "unknown",
    }
}

/// ORC-5 (HL7 table 0038) as a ServiceRequest status.
fn request_status(code: &str) -> &'static str {
    match code.trim() {
        "CM" => "completed",
        "A" | "IP" | "SC" => "active",
        "CA" | "DC" => "revoked",
        "HD" => "on-hold",
        _ => "unknown",
    }
}

/// Each OBX-8 code that is a v3 ObservationInterpretation code as it stands, with its
/// interpretation (fixed, so an abnormal flag costs no copies).
macro_rules! interpretations {
    ($(($code:literal, $display:literal)),* $(,)?) => {
        &[$(($code, CodeableConcept {
            coding: Fixed::Borrowed({
                const CODING: &[Coding] =
                    &[Coding::fixed(systems::INTERPRETATION, $code, $display)];
                CODING
            }),
            text: None,
        })),*]
    };
}

/// OBX-8 (HL7 table 0078) codes that are v3 ObservationInterpretation codes as they stand.
const INTERPRETATIONS: &[(&str, CodeableConcept)] = interpretations![
    ("L", "Low"),
    ("H", "High"),
    ("LL", "Critical low"),
    ("HH", "Critical high"),
    ("LU", "Significantly low"),
    ("HU", "Significantly high"),
    ("N", "Normal"),
    ("A", "Abnormal"),
    ("AA", "Critical abnormal"),
    ("<", "Off scale low"),
    (">", "Off scale high"),
    ("S", "Susceptible"),
    ("R", "Resistant"),
    ("I", "Intermediate"),
    ("MS", "moderately susceptible"),
    ("VS", "very susceptible"),
    ("POS", "Positive"),
    ("NEG", "Negative"),
    ("IND", "Indeterminate"),
    ("DET", "Detected"),
    ("ND", "Not detected"),
    ("U", "Significant change up"),
    ("D", "Significant change down"),
    ("B", "Better"),
    ("W", "Worse"),
];

fn interpretation(flag: &str) -> Option<CodeableConcept> {
    let flag = some(flag)?;
    Some(match INTERPRETATIONS.iter().find(|(c, _)| flag == *c) {
        Some((_, fixed)) => fixed.clone(),
        None => CodeableConcept {
            coding: Fixed::Borrowed(&[]),
            text: Some(flag),
        },
    })
}

/// A FHIR decimal from text, when it is one.
fn decimal(text: &str) -> Option<serde_json::Number> {
    let t = text.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let body = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !ok {
        return None;
    }
    // Leading zeros are not FHIR decimals: "007.5" is 7.5. Whole numbers that fit 64 bits
    // stay integers; the rest are read (correctly rounded) as doubles, as JSON readers do.
    let negative = t.starts_with('-');
    if frac.is_empty() {
        if let Ok(n) = int.parse::<u64>() {
            if !negative {
                return Some(n.into());
            }
            // As a JSON reader takes "-0" and what does not fit an i64: as a double.
            let i = (n as i64).wrapping_neg();
            return match i >= 0 {
                true => serde_json::Number::from_f64(-(n as f64)),
                false => Some(i.into()),
            };
        }
    }
    let v: f64 = t.parse().ok()?;
    serde_json::Number::from_f64(v)
}

/// The unit of OBX-6: text (or code), with UCUM's system and code when OBX-6.3 says UCUM.
fn unit(seg: SegmentRef<'_>) -> Quantity {
    let rep = seg.field(6).and_then(|f| f.repetition(1));
    let t = |c: usize| rep.map(|r| r.text(c)).unwrap_or_default();
    let (code, text, system) = (t(1), t(2), t(3));
    let ucum = system_of(&system) == Some(systems::UCUM);
    Quantity {
        unit: some(&text).or_else(|| some(&code)),
        system: (ucum && some(&code).is_some()).then_some(Text::fixed(systems::UCUM)),
        code: if ucum { some(&code) } else { None },
        ..Default::default()
    }
}

/// `value` in `unit` (see [`unit`]).
fn amount(value: serde_json::Number, unit: &Quantity) -> Quantity {
    Quantity {
        value: Some(value),
        ..unit.clone()
    }
}

fn reference_range(text: &str, unit: &Quantity) -> Option<ReferenceRange> {
    let text = some(text)?;
    let bound = |v: &str| decimal(v).map(|value| amount(value, unit));
    let mut range = ReferenceRange {
        text: Some(text.clone()),
        ..Default::default()
    };
    // `a-b` (a negative low bound starts with '-': split at the first '-' after a digit).
    let split = text
        .char_indices()
        .skip(1)
        .find(|&(i, c)| c == '-' && text[..i].ends_with(|p: char| p.is_ascii_digit()));
    if let Some((i, _)) = split {
        if let (Some(low), Some(high)) = (bound(&text[..i]), bound(&text[i + 1..])) {
            range.low = Some(low);
            range.high = Some(high);
        }
    }
    Some(range)
}

/// What OBX-2 says OBX-5 holds, as far as the value written depends on it.
#[derive(Clone, Copy, PartialEq)]
enum ValueKind {
    /// NM: a number.
    Numeric,
    /// SN: a comparator and a number (or a ratio or range, written as text).
    Structured,
    /// CE, CWE, CNE: a code.
    Coded,
    /// ST, TX, FT: text, each repetition a line.
    Text,
    Other,
}

impl ValueKind {
    fn of(obx2: &str) -> Self {
        let is = |names: &[&str]| names.iter().any(|n| obx2.trim().eq_ignore_ascii_case(n));
        if is(&["NM"]) {
            ValueKind::Numeric
        } else if is(&["SN"]) {
            ValueKind::Structured
        } else if is(&["CE", "CWE", "CNE"]) {
            ValueKind::Coded
        } else if is(&["ST", "TX", "FT"]) {
            ValueKind::Text
        } else {
            ValueKind::Other
        }
    }
}

/// OBX-5 as an Observation value, by OBX-2; `unit` is OBX-6 (see [`unit`]).
fn value(seg: SegmentRef<'_>, unit: &Quantity) -> Option<Value> {
    let kind = ValueKind::of(&seg.text(2));
    if kind == ValueKind::Numeric {
        // The usual result, one number: read without assembling the text.
        let e = seg.encoding();
        let one = |f: &crate::hl7::Field<'_>| {
            !f.raw()
                .contains([e.repetition(), e.component(), e.subcomponent()])
        };
        if let Some(field) = seg.field(5).filter(one) {
            let text = field.text();
            if text.trim().is_empty() {
                return None;
            }
            if let Some(v) = decimal(&text) {
                return Some(Value::Quantity(amount(v, unit)));
            }
        }
    }
    value_assembled(seg, unit, kind)
}

/// [`value`] for any OBX-5: each repetition's components assembled into text first.
fn value_assembled(seg: SegmentRef<'_>, unit: &Quantity, kind: ValueKind) -> Option<Value> {
    let sep = if kind == ValueKind::Structured {
        ""
    } else {
        "^"
    };
    let texts: Vec<String> = seg
        .repetitions(5)
        .map(|r| {
            let mut text = String::new();
            for (i, c) in r.components().enumerate() {
                if i > 0 {
                    text.push_str(sep);
                }
                text.push_str(&c.text());
            }
            text
        })
        .filter(|t| !t.trim().is_empty())
        .collect();
    if texts.is_empty() {
        return None;
    }
    match kind {
        ValueKind::Numeric => {
            if let Some(v) = decimal(&texts[0]) {
                return Some(Value::Quantity(amount(v, unit)));
            }
        }
        ValueKind::Structured => {
            let rep = seg.field(5).and_then(|f| f.repetition(1));
            let c = |n: usize| rep.map(|r| r.text(n).into_owned()).unwrap_or_default();
            let (comparator, num, sep, num2) = (c(1), c(2), c(3), c(4));
            let comparator = comparator.trim();
            let comparator_ok = matches!(comparator, "" | "<" | "<=" | ">=" | ">" | "=");
            if comparator_ok && some(&sep).is_none() && some(&num2).is_none() {
                if let Some(v) = decimal(&num) {
                    return Some(Value::Quantity(Quantity {
                        comparator: (!matches!(comparator, "" | "="))
                            .then(|| Text::copy(comparator)),
                        ..amount(v, unit)
                    }));
                }
            }
        }
        ValueKind::Coded => {
            if let Some(cc) = concept(seg, 5) {
                return Some(Value::Concept(cc));
            }
        }
        ValueKind::Text | ValueKind::Other => {}
    }
    let joined = match kind {
        ValueKind::Structured => texts.join(" "),
        ValueKind::Text => seg
            .repetitions(5)
            .map(|r| seg.encoding().unescape(r.raw()).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => texts.join("\n"),
    };
    some(&joined).map(|_| Value::Text(Text::copy(joined.trim_end())))
}

/// An Observation's `value[x]`.
#[derive(Debug, PartialEq)]
enum Value {
    Quantity(Quantity),
    Concept(CodeableConcept),
    Text(Text),
}

fn ods_identifier(code: &str) -> Identifier {
    Identifier {
        system: Some(Text::fixed(systems::ODS_ORGANIZATION)),
        value: Some(Text::copy(code)),
        ..Default::default()
    }
}

/// An XCN field repetition (id^family^given^middle^suffix^prefix) as a Practitioner's
/// identifier and name (its id is given where it is written).
fn practitioner(seg: SegmentRef<'_>, n: usize) -> Option<Practitioner> {
    let rep = seg.field(n)?.repetition(1)?;
    let t = |c: usize| some(rep.text(c));
    let mut p = Practitioner::default();
    if let Some(code) = t(1) {
        let gmp = code.len() == 8
            && code.starts_with('G')
            && code[1..].bytes().all(|b| b.is_ascii_digit());
        p.identifier.push(Identifier {
            system: gmp.then_some(Text::fixed(GMP_NUMBER)),
            value: Some(code),
            ..Default::default()
        });
    }
    let name = HumanName {
        family: t(2),
        given: [t(3), t(4)].into_iter().flatten().collect(),
        prefix: t(6).into_iter().collect(),
        suffix: t(5).into_iter().collect(),
    };
    if name != HumanName::default() {
        p.name.push(name);
    }
    (!p.identifier.is_empty() || !p.name.is_empty()).then_some(p)
}

/// One OBR with what follows it.
struct Order<'m> {
    obr: SegmentRef<'m>,
    orc: Option<SegmentRef<'m>>,
    notes: Vec<Cow<'m, str>>,
    results: Vec<(SegmentRef<'m>, Vec<Cow<'m, str>>)>,
    specimens: Vec<SegmentRef<'m>>,
}

fn note_text<'m>(seg: SegmentRef<'m>) -> Option<Cow<'m, str>> {
    let mut reps = seg.repetitions(3);
    if let (Some(only), None) = (reps.next(), reps.next()) {
        // One line (the usual case): no text assembled, nor copied.
        let text = seg.encoding().unescape(only.raw());
        some_str(&text)?;
        return Some(match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim_end()),
            Cow::Owned(mut t) => {
                t.truncate(t.trim_end().len());
                Cow::Owned(t)
            }
        });
    }
    let mut text = String::with_capacity(seg.raw(3).map_or(0, str::len));
    for (i, r) in seg.repetitions(3).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&seg.encoding().unescape(r.raw()));
    }
    let t = text.trim();
    if t.is_empty() || t == "\"\"" {
        return None;
    }
    text.truncate(text.trim_end().len());
    Some(Cow::Owned(text))
}

fn orders<'m>(message: &'m Message<'_>) -> Vec<Order<'m>> {
    let mut out: Vec<Order<'m>> = Vec::new();
    let mut orc = None;
    for seg in message.iter() {
        match seg.name() {
            "ORC" => orc = Some(seg),
            "OBR" => out.push(Order {
                obr: seg,
                orc: orc.take(),
                notes: vec![],
                results: vec![],
                specimens: vec![],
            }),
            "OBX" => {
                if let Some(o) = out.last_mut() {
                    o.results.push((seg, vec![]));
                }
            }
            "SPM" => {
                if let Some(o) = out.last_mut() {
                    o.specimens.push(seg);
                }
            }
            "NTE" => {
                if let (Some(o), Some(text)) = (out.last_mut(), note_text(seg)) {
                    match o.results.last_mut() {
                        Some((_, notes)) => notes.push(text),
                        None => o.notes.push(text),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// An Observation's category: laboratory.
const LABORATORY: &[CodeableConcept] = &[CodeableConcept {
    coding: Fixed::Borrowed(LABORATORY_CODING),
    text: None,
}];
const LABORATORY_CODING: &[Coding] = &[Coding::fixed(
    systems::OBSERVATION_CATEGORY,
    "laboratory",
    "Laboratory",
)];

/// The Composition's type.
const LABORATORY_REPORT: &[Coding] = &[
    Coding::fixed(systems::SNOMED, "4241000179101", "Laboratory report"),
    Coding::fixed(systems::LOINC, "11502-2", "Laboratory report"),
];

/// Identifier types (HL7 table 0203).
const FILLER: &[Coding] = &[Coding::fixed(
    systems::V2_IDENTIFIER_TYPE,
    "FILL",
    "Filler Identifier",
)];
const PLACER: &[Coding] = &[Coding::fixed(
    systems::V2_IDENTIFIER_TYPE,
    "PLAC",
    "Placer Identifier",
)];

fn identifier_of_type(r#type: &'static [Coding], value: Text) -> Identifier {
    Identifier {
        r#type: Some(CodeableConcept {
            coding: Fixed::Borrowed(r#type),
            text: None,
        }),
        value: Some(value),
        ..Default::default()
    }
}

/// The specimen type OBR-15 names (when there is no SPM).
fn specimen_source(obr: SegmentRef<'_>) -> Option<CodeableConcept> {
    let r = obr.field(15)?.repetition(1)?;
    let c = r.component(1)?;
    let s = |k: usize| {
        c.subcomponent(k)
            .map(|x| x.text().into_owned())
            .unwrap_or_default()
    };
    let (code, text, system) = (s(1), s(2), s(3));
    some(&code).or(some(&text)).map(|_| CodeableConcept {
        coding: some(&code)
            .map(|code| Coding {
                system: system_of(&system).map(Text::fixed),
                code: Some(code),
                display: some(&text),
            })
            .into_iter()
            .collect(),
        text: some(&text),
    })
}

/// An OBX of type ED (an embedded document, often the report as a PDF) as the report's
/// presented form; `None` when it holds no data.
fn attachment(obx: SegmentRef<'_>) -> Option<Attachment> {
    let rep = obx.field(5).and_then(|f| f.repetition(1));
    let c = |n: usize| rep.map(|r| r.text(n).into_owned()).unwrap_or_default();
    let (kind, sub, data) = (c(2), c(3), c(5));
    some(&data)?;
    let content_type = match (
        kind.to_ascii_uppercase().as_str(),
        sub.to_ascii_uppercase().as_str(),
    ) {
        (_, "PDF") => Some(Text::fixed("application/pdf")),
        ("AP" | "APPLICATION", s) if !s.is_empty() => Some(Text::from(format!(
            "application/{}",
            s.to_ascii_lowercase()
        ))),
        ("IM" | "IMAGE", s) if !s.is_empty() => {
            Some(Text::from(format!("image/{}", s.to_ascii_lowercase())))
        }
        ("TEXT", s) if !s.is_empty() => {
            Some(Text::from(format!("text/{}", s.to_ascii_lowercase())))
        }
        _ => None,
    };
    Some(Attachment {
        content_type,
        data: Some(data.chars().filter(|c| !c.is_whitespace()).collect()),
        title: concept(obx, 3).and_then(|c| c.text),
    })
}

/// `meta` naming the UK Core profile `$name`, as JSON.
macro_rules! uk_core_meta {
    ($name:literal) => {
        concat!(
            "{\"profile\":[\"https://fhir.hl7.org.uk/StructureDefinition/",
            $name,
            "\"]}"
        )
    };
}

/// A resource's id, derived from the seed and a label given in parts (see
/// [`crate::render::derived`]), held as its `urn:uuid:` URL.
struct Id(String);

impl Id {
    fn new(seed: &str, label: &[&str]) -> Self {
        let mut id = [0u8; 36];
        let mut url = String::with_capacity(URN_UUID.len() + id.len());
        url.push_str(URN_UUID);
        url.push_str(crate::render::derived_into(seed, label, &mut id));
        Id(url)
    }

    fn url(&self) -> &str {
        &self.0
    }

    fn id(&self) -> &str {
        &self.url()[URN_UUID.len()..]
    }
}

/// Opens a bundle entry (after a comma unless it is the first) for a resource of `kind`,
/// written up to its `meta`; [`close_entry`] ends it.
fn entry<'o>(out: &'o mut String, id: &Id, kind: &str, meta: &str) -> ser::Obj<'o> {
    if !out.ends_with('[') {
        out.push(',');
    }
    out.push_str("{\"fullUrl\":\"");
    out.push_str(id.url());
    out.push_str("\",\"resource\":{\"resourceType\":\"");
    out.push_str(kind);
    out.push_str("\",\"id\":\"");
    out.push_str(id.id());
    out.push_str("\",\"meta\":");
    out.push_str(meta);
    ser::Obj::resume(out)
}

fn close_entry(resource: ser::Obj<'_>) {
    resource.close().push('}');
}

/// An Organization entry known by its ODS code.
fn organization(out: &mut String, id: &Id, ods: &[Identifier], name: Option<&Text>) {
    let mut o = entry(
        out,
        id,
        "Organization",
        uk_core_meta!("UKCore-Organization"),
    );
    o.list("identifier", ods);
    o.some("name", name);
    close_entry(o);
}

/// Opens a laboratory Observation entry, written up to its category: `request` is what it
/// is based on, `status` OBX-11 (or OBR-25 for a test group).
fn observation<'o>(
    out: &'o mut String,
    id: &Id,
    request: Option<&Id>,
    status: &str,
) -> ser::Obj<'o> {
    let mut o = entry(
        out,
        id,
        "Observation",
        uk_core_meta!("UKCore-Observation-Lab"),
    );
    o.references("basedOn", request.map(Id::url));
    o.plain("status", observation_status(status));
    o.value("category", LABORATORY);
    o
}

/// A specimen, as the ORU gives it (an SPM, else OBR-15).
struct SpecimenParts {
    id: Id,
    identifier: Option<Text>,
    r#type: Option<CodeableConcept>,
    received: Option<String>,
    collected: Option<String>,
}

/// Writes the report bundle for `payload` (an ORU^R01) as FHIR JSON: each resource is
/// written as it is read, in the order the bundle lists them. What sums up every order (the
/// Composition and the DiagnosticReport) is written last and put first.
pub fn bundle_json(payload: &[u8], ctx: &Context<'_>) -> Result<String, PathologyError> {
    let message = Message::parse_bytes(payload).map_err(OruError::from)?;
    let summary = OruSummary::without_results(&message)?;
    let id = |label: &str| Id::new(ctx.seed, &[label]);
    // The entries after the report: about 8 bytes of JSON for each byte of the ORU.
    let mut rest = String::with_capacity(payload.len() * 8 + 2048);

    // The registered practice, then the patient.
    let performer = id("performer");
    let practice = summary.recipient.as_ref().map(|r| (id("practice"), r));
    if let Some((pid, r)) = &practice {
        let ods = [ods_identifier(r.ods_code.as_str())];
        organization(&mut rest, pid, &ods, some(&r.name).as_ref());
    }
    let p = &summary.patient;
    let patient = id("patient");
    let subject = patient.url();
    let mut identifiers = Vec::with_capacity(p.identifiers.len() + 1);
    if let Some(n) = &p.nhs_number {
        identifiers.push(Identifier {
            system: Some(Text::fixed(systems::NHS_NUMBER)),
            value: Some(Text::copy(n.as_str())),
            ..Default::default()
        });
    }
    for i in &p.identifiers {
        let nhs = i.identifier_type.eq_ignore_ascii_case("NH")
            || i.assigning_authority.eq_ignore_ascii_case("NHS");
        if nhs {
            continue;
        }
        identifiers.push(Identifier {
            r#type: some(&i.identifier_type).map(|t| CodeableConcept {
                coding: Fixed::Borrowed(&[]),
                text: Some(t),
            }),
            value: some(&i.id),
            assigner: some(&i.assigning_authority).map(|a| {
                Box::new(Reference {
                    display: Some(a),
                    ..Default::default()
                })
            }),
            ..Default::default()
        });
    }
    let name = HumanName {
        family: some(&p.name.family),
        given: [some(&p.name.given), some(&p.name.middle)]
            .into_iter()
            .flatten()
            .collect(),
        prefix: some(&p.name.prefix).into_iter().collect(),
        suffix: some(&p.name.suffix).into_iter().collect(),
    };
    let birth_date = date_time(&p.date_of_birth)
        .map(|d| d.chars().take(10).collect::<String>())
        .filter(|d| d.len() == 10);
    let gender = match p.sex.trim().to_ascii_uppercase().as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" | "N" => Some("other"),
        "U" => Some("unknown"),
        _ => None,
    };
    let mut o = entry(
        &mut rest,
        &patient,
        "Patient",
        uk_core_meta!("UKCore-Patient"),
    );
    o.list("identifier", &identifiers);
    if name != HumanName::default() {
        o.value("name", std::slice::from_ref(&name));
    }
    if let Some(g) = gender {
        o.plain("gender", g);
    }
    o.some("birthDate", birth_date.as_ref());
    o.references(
        "generalPractitioner",
        practice.as_ref().map(|(id, _)| id.url()),
    );
    close_entry(o);

    // What the report and the Composition sum up, order by order.
    let mut report_identifier = Vec::new();
    let mut based_on: Vec<Id> = Vec::new();
    let mut category: Vec<CodeableConcept> = Vec::new();
    let mut report_effective = None;
    let mut issued = None;
    let mut report_specimens: Vec<Id> = Vec::new();
    let mut presented_form = Vec::new();
    let mut sections: Vec<(Option<CodeableConcept>, Id)> = Vec::new();
    let mut mapped = Vec::new();

    for (oi, order) in orders(&message).into_iter().enumerate() {
        let obr = order.obr;
        let mut oi_digits = [0u8; 20];
        let oi_text = digits(oi, &mut oi_digits);
        let label_n = |what: &str, n: &str| Id::new(ctx.seed, &["obr", oi_text, "/", what, n]);
        let label = |what: &str| label_n(what, "");
        let code = concept(obr, 4);
        let effective = date_time(&obr.text(7));
        mapped.push(report_status(&obr.text(25)));
        if let Some(cat) = some(obr.text(24)) {
            let c = CodeableConcept {
                coding: Fixed::Owned(vec![Coding {
                    system: Some(Text::fixed(systems::V2_DIAGNOSTIC_SERVICE)),
                    code: Some(cat),
                    display: None,
                }]),
                text: None,
            };
            if !category.contains(&c) {
                category.push(c);
            }
        }
        if let Some(filler) = some(obr.component(3, 1, 1).unwrap_or_default()) {
            report_identifier.push(identifier_of_type(FILLER, filler));
        }
        if report_effective.is_none() {
            report_effective = effective.clone();
        }
        if issued.is_none() {
            issued = instant(&obr.text(22));
        }

        // Who asked: a practitioner (OBR-16, else ORC-12), an organisation (ORC-21).
        let requester = practitioner(obr, 16)
            .or_else(|| order.orc.and_then(|orc| practitioner(orc, 12)))
            .map(|p| (label("requester"), p));
        if let Some((rid, p)) = &requester {
            let mut o = entry(
                &mut rest,
                rid,
                "Practitioner",
                uk_core_meta!("UKCore-Practitioner"),
            );
            o.list("identifier", &p.identifier);
            o.list("name", &p.name);
            close_entry(o);
        }
        let requesting = order.orc.and_then(|orc| {
            let rep = orc.field(21)?.repetition(1)?;
            let name = some(rep.text(1));
            let code = some(rep.text(10)).or_else(|| some(rep.text(3)));
            (name.is_some() || code.is_some()).then(|| {
                let ods: Vec<Identifier> = code
                    .filter(|c| crate::OdsCode::parse(c).is_ok())
                    .map(|c| ods_identifier(&c))
                    .into_iter()
                    .collect();
                (label("requesting-organization"), ods, name)
            })
        });
        if let Some((oid, ods, name)) = &requesting {
            organization(&mut rest, oid, ods, name.as_ref());
        }
        let requester_url = requester
            .as_ref()
            .map(|(r, _)| r)
            .or(requesting.as_ref().map(|(o, _, _)| o));

        // The request, where the ORU carries one.
        let placer = some(obr.component(2, 1, 1).unwrap_or_default());
        let request = (placer.is_some() || order.orc.is_some()).then(|| label("request"));

        // The specimens: SPM segments, else OBR-15.
        let mut specimens = Vec::new();
        for (si, spm) in order.specimens.iter().enumerate() {
            specimens.push(SpecimenParts {
                id: label_n("specimen", digits(si, &mut [0; 20])),
                identifier: some(spm.component(2, 1, 1).unwrap_or_default()),
                r#type: concept(*spm, 4),
                received: date_time(&spm.text(18)),
                collected: spm.component(17, 1, 1).and_then(|t| date_time(&t)),
            });
        }
        if specimens.is_empty() {
            if let Some(kind) = specimen_source(obr) {
                specimens.push(SpecimenParts {
                    id: label("specimen0"),
                    identifier: None,
                    r#type: Some(kind),
                    received: None,
                    collected: effective.clone(),
                });
            }
        }
        if let Some(rid) = &request {
            let mut o = entry(
                &mut rest,
                rid,
                "ServiceRequest",
                uk_core_meta!("UKCore-ServiceRequest-Lab"),
            );
            if let Some(p) = &placer {
                o.list("identifier", &[identifier_of_type(PLACER, p.clone())]);
            }
            let status = order.orc.map(|o| o.text(5)).unwrap_or_default();
            o.plain("status", request_status(&status));
            o.plain("intent", "order");
            o.some("code", code.as_ref());
            o.reference("subject", subject);
            o.some(
                "authoredOn",
                order.orc.and_then(|o| date_time(&o.text(9))).as_ref(),
            );
            if let Some(r) = requester_url {
                o.reference("requester", r.url());
            }
            o.references("specimen", specimens.iter().map(|s| s.id.url()));
            close_entry(o);
        }
        for s in &specimens {
            let mut o = entry(
                &mut rest,
                &s.id,
                "Specimen",
                uk_core_meta!("UKCore-Specimen"),
            );
            if let Some(v) = &s.identifier {
                o.list(
                    "identifier",
                    &[Identifier {
                        value: Some(v.clone()),
                        ..Default::default()
                    }],
                );
            }
            o.some("type", s.r#type.as_ref());
            o.reference("subject", subject);
            o.some("receivedTime", s.received.as_ref());
            o.references("request", request.as_ref().map(Id::url));
            if let Some(c) = &s.collected {
                let mut collection = ser::Obj::open(o.key("collection"));
                collection.value("collectedDateTime", c);
                collection.close();
            }
            close_entry(o);
        }
        let specimen = specimens.first().map(|s| &s.id);

        // The results, then their test group.
        let group = label("group");
        let mut members = Vec::new();
        for (ri, (obx, notes)) in order.results.into_iter().enumerate() {
            if obx.text(2).trim().eq_ignore_ascii_case("ED") {
                presented_form.extend(attachment(obx));
                continue;
            }
            let oid = label_n("result", digits(ri, &mut [0; 20]));
            let u = unit(obx);
            let mut o = observation(&mut rest, &oid, request.as_ref(), &obx.text(11));
            match Concept::read(obx, 3).filter(|c| !c.is_empty()) {
                Some(c) => c.write(o.key("code")),
                None => o.key("code").push_str("{}"),
            }
            o.reference("subject", subject);
            o.some(
                "effectiveDateTime",
                date_time(&obx.text(14))
                    .or_else(|| effective.clone())
                    .as_ref(),
            );
            o.references("performer", [performer.url()]);
            match value(obx, &u) {
                Some(Value::Quantity(q)) => o.value("valueQuantity", &q),
                Some(Value::Concept(c)) => o.value("valueCodeableConcept", &c),
                Some(Value::Text(t)) => o.value("valueString", &t),
                None => {}
            }
            let flags: Vec<CodeableConcept> = obx
                .repetitions(8)
                .filter_map(|r| interpretation(&r.text(1)))
                .collect();
            o.list("interpretation", &flags);
            notes_of(&mut o, &notes);
            if let Some(s) = &specimen {
                o.reference("specimen", s.url());
            }
            if let Some(range) = reference_range(&obx.text(7), &u) {
                o.list("referenceRange", &[range]);
            }
            close_entry(o);
            members.push(oid);
        }
        let mut o = observation(&mut rest, &group, request.as_ref(), &obr.text(25));
        o.value("code", code.as_ref().unwrap_or(&CodeableConcept::default()));
        o.reference("subject", subject);
        o.some("effectiveDateTime", effective.as_ref());
        o.references("performer", [performer.url()]);
        notes_of(&mut o, &order.notes);
        if let Some(s) = &specimen {
            o.reference("specimen", s.url());
        }
        o.references("hasMember", members.iter().map(Id::url));
        close_entry(o);
        sections.push((code, group));
        based_on.extend(request);
        report_specimens.extend(specimens.into_iter().map(|s| s.id));
    }

    // The Composition, the performing laboratory and the report, before the rest.
    let report = id("report");
    let report_status = match mapped.as_slice() {
        [] => "unknown",
        [first, rest @ ..] if rest.iter().all(|s| s == first) => first,
        _ if mapped
            .iter()
            .any(|s| *s == "preliminary" || *s == "partial") =>
        {
            "partial"
        }
        _ => "final",
    };
    let final_all =
        !mapped.is_empty() && mapped.iter().all(|s| matches!(*s, "final" | "corrected"));
    let mut out = String::with_capacity(rest.len() + 2048 + 200 * sections.len());
    let mut bundle = ser::Obj::open(&mut out);
    bundle.plain("resourceType", "Bundle");
    bundle.plain("id", id("bundle").id());
    rfc4122_identifier(bundle.key("identifier"), &id("bundle-identifier"));
    bundle.plain("type", "document");
    bundle.value("timestamp", ctx.timestamp);
    bundle.key("entry").push('[');

    let composition = id("composition");
    let mut o = entry(
        bundle.out(),
        &composition,
        "Composition",
        "{\"profile\":[\"http://hl7.eu/fhir/laboratory/StructureDefinition/Composition-eu-lab\"]}",
    );
    rfc4122_identifier(o.key("identifier"), &id("composition-identifier"));
    o.plain("status", if final_all { "final" } else { "preliminary" });
    o.value(
        "type",
        &CodeableConcept {
            coding: Fixed::Borrowed(LABORATORY_REPORT),
            text: None,
        },
    );
    o.reference("subject", subject);
    match date_time(&summary.message_datetime) {
        Some(date) => o.value("date", &date),
        None => o.value("date", ctx.timestamp),
    }
    o.references("author", [performer.url()]);
    o.plain("title", "Laboratory report");
    o.reference("custodian", performer.url());
    o.array(
        "section",
        sections.iter().enumerate(),
        |out, (i, (code, group))| {
            let mut s = ser::Obj::open(out);
            s.some("title", code.as_ref().and_then(|c| c.text.as_ref()));
            s.some("code", code.as_ref());
            let first = (i == 0).then(|| report.url());
            s.references("entry", first.into_iter().chain([group.url()]));
            s.close();
        },
    );
    close_entry(o);

    let ods = [ods_identifier(ctx.sender_ods)];
    organization(bundle.out(), &performer, &ods, None);

    let mut o = entry(
        bundle.out(),
        &report,
        "DiagnosticReport",
        uk_core_meta!("UKCore-DiagnosticReport-Lab"),
    );
    o.list("identifier", &report_identifier);
    o.references("basedOn", based_on.iter().map(Id::url));
    o.plain("status", report_status);
    o.list("category", &category);
    let codes: Vec<&CodeableConcept> = sections.iter().filter_map(|(c, _)| c.as_ref()).collect();
    match codes.as_slice() {
        [one] => o.value("code", one),
        many => o.value(
            "code",
            &CodeableConcept {
                coding: Fixed::Borrowed(&[]),
                text: some(
                    many.iter()
                        .filter_map(|c| c.text.as_deref().or(c.coding.first()?.code.as_deref()))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            },
        ),
    }
    o.reference("subject", subject);
    o.some("effectiveDateTime", report_effective.as_ref());
    o.some("issued", issued.as_ref());
    o.references("performer", [performer.url()]);
    o.references("specimen", report_specimens.iter().map(Id::url));
    o.references("result", sections.iter().map(|(_, g)| g.url()));
    o.list("presentedForm", &presented_form);
    close_entry(o);

    let entries = bundle.out();
    entries.push_str(&rest);
    entries.push(']');
    bundle.close();
    Ok(out)
}

/// `{"system":"urn:ietf:rfc:3986","value":"urn:uuid:…"}`.
fn rfc4122_identifier(out: &mut String, id: &Id) {
    let mut o = ser::Obj::open(out);
    o.plain("system", systems::RFC4122);
    o.plain("value", id.url());
    o.close();
}

/// An Observation's notes, left out when there are none.
fn notes_of(o: &mut ser::Obj<'_>, notes: &[Cow<'_, str>]) {
    o.array("note", notes, |out, text| {
        let mut note = ser::Obj::open(out);
        note.value("text", text.as_ref());
        note.close();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The times as they were written with `format!` (the date read as the writer reads it).
    fn formatted(ts: &str) -> Option<String> {
        let ts = ts.trim();
        let (digits, y, mo, d) = date_of(ts)?;
        let n = |a: usize, b: usize| ts[a..b].parse::<i64>().ok();
        let mut rest = &ts[digits..];
        let mut fraction = String::new();
        if digits == 14 {
            if let Some(f) = rest.strip_prefix('.') {
                let k = f.bytes().take_while(u8::is_ascii_digit).count();
                if k == 0 {
                    return None;
                }
                fraction = format!(".{}", &f[..k]);
                rest = &f[k..];
            }
        }
        let zone = match rest.as_bytes() {
            [] => None,
            [b'+' | b'-', z @ ..] if z.len() == 4 && z.iter().all(u8::is_ascii_digit) => {
                Some(format!("{}{}:{}", &rest[..1], &rest[1..3], &rest[3..5]))
            }
            _ => return None,
        };
        if digits <= 8 {
            return Some(match digits {
                4 => format!("{y:04}"),
                6 => format!("{y:04}-{mo:02}"),
                _ => format!("{y:04}-{mo:02}-{d:02}"),
            });
        }
        let h = n(8, 10)?;
        let mi = if digits >= 12 { n(10, 12)? } else { 0 };
        let s = if digits >= 14 { n(12, 14)? } else { 0 };
        if h > 23 || mi > 59 || s > 59 {
            return None;
        }
        let zone = zone.unwrap_or_else(|| {
            if is_bst(y, mo, d, h) {
                "+01:00".into()
            } else {
                "+00:00".into()
            }
        });
        Some(format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{zone}"
        ))
    }

    proptest::proptest! {
        #[test]
        fn one_number_reads_as_assembled(field in "[0-9 .+\\-^~&\\\\EFS]{0,8}") {
            let text = format!("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rOBX|1|NM|X||{field}|mg\r");
            let m = Message::parse(&text).unwrap();
            let seg = m.segment("OBX").unwrap();
            let u = unit(seg);
            let quick = value(seg, &u);
            let assembled = value_assembled(seg, &u, ValueKind::Numeric);
            proptest::prop_assert_eq!(quick, assembled, "{:?}", field);
        }

        #[test]
        fn concepts_read_as_before(
            parts in proptest::collection::vec("(|LN|SCT|ucum|L|x| a b |\\\\T\\\\|q&r|\"\"|~)", 0..8)
        ) {
            let field = parts.join("^");
            let text = format!("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rOBX|1|CE|{field}\r");
            let m = Message::parse(&text).unwrap();
            let seg = m.segment("OBX").unwrap();
            // As it was read before: component by component.
            let before = (|| {
                let rep = seg.field(3)?.repetition(1)?;
                let t = |c: usize| rep.text(c);
                let mut coding = vec![];
                for (code, text, system) in [(t(1), t(2), t(3)), (t(4), t(5), t(6))] {
                    if some(&code).is_some() {
                        coding.push(Coding {
                            system: system_of(&system).map(Text::fixed),
                            code: some(&code),
                            display: some(&text),
                        });
                    }
                }
                let text = some(t(2)).or_else(|| some(t(5)));
                (!coding.is_empty() || text.is_some()).then_some(CodeableConcept {
                    coding: Fixed::Owned(coding),
                    text,
                })
            })();
            proptest::prop_assert_eq!(concept(seg, 3), before, "{:?}", field);
        }

        #[test]
        fn notes_read_as_before(parts in proptest::collection::vec("[ a-z\\\\\"E.~]{0,6}", 1..4)) {
            let field = parts.join("~");
            let text = format!("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rNTE|1||{field}\r");
            let m = Message::parse(&text).unwrap();
            let seg = m.segment("NTE").unwrap();
            let before = {
                let text = seg
                    .repetitions(3)
                    .map(|r| seg.encoding().unescape(r.raw()).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n");
                some(&text).map(|_| text.trim_end().to_string())
            };
            let now = note_text(seg);
            proptest::prop_assert_eq!(now.as_deref(), before.as_deref(), "{:?}", field);
        }

        #[test]
        fn times_are_written_as_before(
            digits in "[0-9]{0,15}",
            fraction in proptest::option::of("\\.[0-9]{0,5}"),
            zone in proptest::option::of("[+-][0-9]{3,5}"),
            pad in "[ ]{0,2}",
        ) {
            let ts = format!(
                "{pad}{digits}{}{}{pad}",
                fraction.unwrap_or_default(),
                zone.unwrap_or_default()
            );
            proptest::prop_assert_eq!(date_time(&ts), formatted(&ts), "{:?}", ts);
        }

        #[test]
        fn plausible_times_are_written_as_before(
            y in 1i64..=9999, mo in 0i64..=13, d in 0i64..=32, h in 0i64..=24, mi in 0i64..=60,
            s in 0i64..=60, len in proptest::sample::select(vec![4usize, 6, 8, 10, 12, 14]),
            fraction in proptest::option::of("\\.[0-9]{1,4}"),
            zone in proptest::option::of("[+-][0-9]{4}"),
        ) {
            let full = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
            let ts = format!(
                "{}{}{}",
                &full[..len],
                fraction.unwrap_or_default(),
                zone.unwrap_or_default()
            );
            proptest::prop_assert_eq!(date_time(&ts), formatted(&ts), "{:?}", ts);
        }
    }

    #[test]
    fn hl7_times_become_fhir_times_in_uk_local_time() {
        assert_eq!(date_time("2026").as_deref(), Some("2026"));
        assert_eq!(date_time("20261125").as_deref(), Some("2026-11-25"));
        assert_eq!(
            date_time("20261125093000").as_deref(),
            Some("2026-11-25T09:30:00+00:00")
        );
        assert_eq!(
            date_time("20260701093000").as_deref(),
            Some("2026-07-01T09:30:00+01:00")
        );
        // 2026: BST from Sunday 29 March to Sunday 25 October.
        assert_eq!(
            date_time("2026032900").as_deref(),
            Some("2026-03-29T00:00:00+00:00")
        );
        assert_eq!(
            date_time("2026032903").as_deref(),
            Some("2026-03-29T03:00:00+01:00")
        );
        assert_eq!(
            date_time("2026102503").as_deref(),
            Some("2026-10-25T03:00:00+00:00")
        );
        assert_eq!(
            date_time("20261125093000.25-0500").as_deref(),
            Some("2026-11-25T09:30:00.25-05:00")
        );
        assert_eq!(date_time("20261325"), None);
        assert_eq!(date_time("196203520"), None);
        assert_eq!(date_time(""), None);
    }

    /// Decimals as they were read before: through a canonical text and a JSON reader (the
    /// same up to 15 significant digits; beyond, the JSON reader's quick path may round
    /// differently).
    fn read_as_json(text: &str) -> Option<serde_json::Number> {
        let t = text.trim();
        let t = t.strip_prefix('+').unwrap_or(t);
        let body = t.strip_prefix('-').unwrap_or(t);
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let int = int.trim_start_matches('0');
        let mut canonical = String::from(if t.starts_with('-') { "-" } else { "" });
        canonical.push_str(if int.is_empty() { "0" } else { int });
        if !frac.is_empty() {
            canonical.push('.');
            canonical.push_str(frac);
        }
        serde_json::from_str(&canonical).ok()
    }

    proptest::proptest! {
        #[test]
        fn decimals_read_as_a_json_reader_reads_them(
            text in "[+-]?0{0,3}[0-9]{1,9}(\\.[0-9]{1,6})?|-?0|-?(9223372036854775808|18446744073709551615|18446744073709551616)",
        ) {
            proptest::prop_assert_eq!(decimal(&text), read_as_json(&text));
        }
    }

    #[test]
    fn decimals_and_ranges() {
        assert_eq!(decimal("10.0 ").unwrap().to_string(), "10.0");
        assert_eq!(decimal("007").unwrap().to_string(), "7");
        assert!(decimal("1.").is_none() && decimal("abc").is_none());
        // Beyond 15 significant digits, the nearest double (the JSON reader's quick path was
        // a digit out here).
        assert_eq!(
            decimal("70400000022022.4141").unwrap().as_f64(),
            "70400000022022.4141".parse::<f64>().ok()
        );
        let r = reference_range("133-146", &Quantity::default()).unwrap();
        assert_eq!(r.low.unwrap().value.unwrap().to_string(), "133");
        let r = reference_range("70_105", &Quantity::default()).unwrap();
        assert!(r.low.is_none() && r.text.as_deref() == Some("70_105"));
        let r = reference_range("-2-3", &Quantity::default()).unwrap();
        assert_eq!(r.low.unwrap().value.unwrap().to_string(), "-2");
    }
}

#[cfg(test)]
mod bundle_tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|RX1|GP|A81001|20261125093000||ORU^R01|CTRL-1|P|2.4\r\
PID|||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
PD1|||GP PRACTICE^^A81001\r\
OBR|1|||PT^Prothrombin Time|||20261125080000|||||||||||||||||F\r\
OBX|1|NM|INR^I.N.R.||2.5||2.0-3.0|N|||F\r";

    fn ctx() -> Context<'static> {
        Context {
            seed: "0190a0b0-0000-7000-8000-0000000000bb",
            timestamp: "2026-11-25T09:00:01Z",
            sender_ods: "RX1",
        }
    }

    #[test]
    fn written_bundles_read_back_within_the_shared_limits() {
        let json = bundle_json(ORU.as_bytes(), &ctx()).unwrap();
        // The typed model reads every element written, and writes the same bytes.
        let back = read_bundle(json.as_bytes(), &crate::fhir::Limits::default()).unwrap();
        assert_eq!(to_json(&back), json);
        assert!(matches!(back.entry[0].resource, Resource::Composition(_)));
        assert!(matches!(
            back.entry[2].resource,
            Resource::DiagnosticReport(_)
        ));
        let tight = crate::fhir::Limits {
            max_input_bytes: 100,
            ..Default::default()
        };
        assert!(matches!(
            read_bundle(json.as_bytes(), &tight),
            Err(ReadError::Limits(_))
        ));
        assert!(matches!(
            read_bundle(br#"{"resourceType":"Patient"}"#, &Default::default()),
            Err(ReadError::Shape(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_result_fields_give_a_bundle_or_an_error_never_a_panic(
            ts in "[0-9+.-]{0,22}",
            value in "\\PC{0,20}",
            kind in "(NM|SN|ST|TX|FT|CE|CWE|ED|DT|)",
            range in "\\PC{0,12}",
            flags in "[A-Z<>~]{0,6}",
            sex in "\\PC{0,2}",
            spm in "\\PC{0,30}",
            more in "[A-Za-z0-9 ^~&\\\\|\"-]{0,30}",
            status in "[FCPAIXSR ]?",
        ) {
            // A second order with what the first lacks: an ordering organisation, notes, an
            // embedded document, a coded result.
            let oru = format!(
                "MSH|^~\\&|LAB|RX1|GP|A81001|20261125093000||ORU^R01|C|P|2.5\r\
                 PID|||9434765919^^^NHS^NH~{more}||SMITH^JOHN||{ts}|{sex}\r\
                 PD1|||{more}^^^^^^^^^A81001\r\
                 ORC|RE|||CM||||{ts}\r\
                 OBR|1|P|F|X^Y|||{ts}||||||||{spm}|G1234567^DOC||||||{ts}||HM|F\r\
                 OBX|1|{kind}|A^B^LN^C^D^SCT||{value}|u^u^UCUM|{range}|{flags}|||F|||{ts}\r\
                 SPM|1|{spm}||{spm}|||||||||||||{ts}|{ts}\r\
                 ORC|RE|||{more}||||||||{more}|||||||||{more}\r\
                 NTE|1||{more}\r\
                 OBR|2||{more}|{more}|||{ts}||||||||{more}|||||||{ts}||{more}|{status}\r\
                 OBX|1|ED|PDF^Report||^{more}^PDF^Base64^{value}\r\
                 OBX|2|CE|{more}||{more}|{more}|{more}|{more}|||{status}\r\
                 NTE|1||{value}~{more}\r"
            );
            if let Ok(json) = bundle_json(oru.as_bytes(), &ctx()) {
                // Well-formed, and nothing the typed model lacks: serde_json writes the same
                // bytes for the bundle read from it.
                let b = read_bundle(json.as_bytes(), &Default::default());
                proptest::prop_assert!(b.is_ok(), "{:?}", b);
                let b = b.unwrap();
                proptest::prop_assert_eq!(
                    &json,
                    &serde_json::to_string(&RootRef::Bundle(&b)).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_message_that_is_not_a_result_is_refused() {
        let adt = ORU.replace("ORU^R01", "ADT^A01");
        assert!(bundle_json(adt.as_bytes(), &ctx()).is_err());
    }
}
