//! An ORU^R01 for people: the patient, then each test with its results as rows (test, value,
//! units, reference range, flag) and notes, and the PDFs the result carries in OBX type ED.
//! Used by the letter a receiver without a results system reads (by email or in a drop
//! folder).

use super::{parse_oru, OruSummary};

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub test: String,
    pub value: String,
    pub units: String,
    pub range: String,
    pub flag: String,
}

/// One test (OBR) and its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub name: String,
    pub status: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// A PDF the result carries (OBX type ED, Base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    pub title: String,
    pub bytes: Vec<u8>,
}

/// The readable content of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub patient: String,
    pub nhs_number: Option<String>,
    pub date_of_birth: String,
    pub tests: Vec<Test>,
    pub pdfs: Vec<Embedded>,
}

fn coded_name(code: &str, text: &str) -> String {
    if text.trim().is_empty() {
        code.trim().to_string()
    } else {
        text.trim().to_string()
    }
}

/// `YYYYMMDD` as `DD/MM/YYYY` (as UK readers expect); anything else as it is.
fn uk_date(ts: &str) -> String {
    let d: String = ts.chars().take(8).collect();
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}/{}/{}", &d[6..8], &d[4..6], &d[0..4])
    } else {
        ts.to_string()
    }
}

/// The report of an ORU^R01, or `None` when `payload` is not one.
pub fn report(payload: &[u8]) -> Option<Report> {
    let oru: OruSummary = parse_oru(payload).ok()?;
    let p = &oru.patient;
    let mut tests = Vec::new();
    let mut pdfs = Vec::new();
    for r in &oru.results {
        let mut rows = Vec::new();
        let mut notes: Vec<String> = r
            .notes
            .iter()
            .filter(|n| !n.trim().is_empty())
            .cloned()
            .collect();
        for o in &r.observations {
            let test = coded_name(&o.identifier.code, &o.identifier.text);
            if let Some(e) = &o.encapsulated {
                if e.data_subtype.eq_ignore_ascii_case("PDF") {
                    let data: String = e.data.chars().filter(|c| !c.is_whitespace()).collect();
                    if let Ok(bytes) = crate::itk3::base64_decode(&data) {
                        pdfs.push(Embedded { title: test, bytes });
                        continue;
                    }
                }
            }
            rows.push(Row {
                test,
                value: o.value.trim().to_string(),
                units: o.units.trim().to_string(),
                range: o.reference_range.trim().to_string(),
                flag: o.abnormal_flags.join(" ").trim().to_string(),
            });
            notes.extend(o.notes.iter().filter(|n| !n.trim().is_empty()).map(|n| {
                format!(
                    "{}: {}",
                    coded_name(&o.identifier.code, &o.identifier.text),
                    n
                )
            }));
        }
        tests.push(Test {
            name: coded_name(&r.service.code, &r.service.text),
            status: r.result_status.clone(),
            rows,
            notes,
        });
    }
    Some(Report {
        patient: p.name.to_string(),
        nhs_number: p.nhs_number.as_ref().map(|n| n.to_string()),
        date_of_birth: uk_date(&p.date_of_birth),
        tests,
        pdfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_becomes_rows() {
        let oru = "MSH|^~\\&|LAB|RX1|GP|A81001|20261125093000||ORU^R01|C1|P|2.4\r\
PID|||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
OBR|1|||UE^Urea and electrolytes\r\
OBX|1|NM|K^Potassium||5.9|mmol/L|3.5-5.3|H|||F\r\
NTE|1||Repeat\r\
OBX|2|ED|PDF^Report||^AP^PDF^Base64^JVBERi0xLjQK||||||F\r";
        let r = report(oru.as_bytes()).unwrap();
        assert_eq!(r.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(r.date_of_birth, "01/01/1970");
        assert_eq!(r.tests[0].name, "Urea and electrolytes");
        assert_eq!(
            r.tests[0].rows[0],
            Row {
                test: "Potassium".into(),
                value: "5.9".into(),
                units: "mmol/L".into(),
                range: "3.5-5.3".into(),
                flag: "H".into()
            }
        );
        assert_eq!(r.tests[0].notes, vec!["Potassium: Repeat".to_string()]);
        assert_eq!(r.pdfs[0].bytes, b"%PDF-1.4\n");
        assert!(report(b"not hl7").is_none());
    }
}
