//! The ODS reference files: the GP practice file (`epraccur.csv`), practice successors after
//! mergers, and the GP system supplier of each practice. Parsers take the text and the name
//! to report it by; every error names the file, line and column.

use crate::csv::split_line;
use crate::directory::{DirectoryError, OrgStatus};
use edt_transforms::OdsCode;
use std::borrow::Cow;
use std::collections::HashMap;

/// A dated day as `YYYYMMDD`.
pub type Day = u32;

/// One row of `epraccur.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practice {
    pub code: String,
    pub name: String,
    pub postcode: String,
    pub open_date: Option<Day>,
    pub close_date: Option<Day>,
    pub status: OrgStatus,
    /// Column 15: the commissioner (CCG / ICB sub-location / health board).
    pub commissioner: String,
    /// Column 26: 4 = GP practice, 1 = walk-in centre, 2 = out of hours, 14 = care home, ...
    pub prescribing_setting: u8,
}

/// Columns of `epraccur.csv` (1-based, as the specification numbers them).
mod col {
    pub const CODE: usize = 1;
    pub const NAME: usize = 2;
    pub const POSTCODE: usize = 10;
    pub const OPEN: usize = 11;
    pub const CLOSE: usize = 12;
    pub const STATUS: usize = 13;
    pub const COMMISSIONER: usize = 15;
    pub const SETTING: usize = 26;
    pub const COUNT: usize = 27;
}

fn row_err(path: &str, line: usize, column: usize, message: impl Into<String>) -> DirectoryError {
    DirectoryError::Row {
        path: path.to_string(),
        line,
        column,
        message: message.into(),
    }
}

/// Parses `YYYYMMDD` or `YYYY-MM-DD`; `None` for an empty field.
pub fn parse_day(s: &str) -> Result<Option<Day>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    let ok_shape = digits.len() == 8
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (s.len() == 8 || (s.len() == 10 && &s[4..5] == "-" && &s[7..8] == "-"));
    if !ok_shape {
        return Err("must be a date as YYYYMMDD or YYYY-MM-DD");
    }
    let d: Day = digits.parse().map_err(|_| "must be a date")?;
    let (y, m, day) = (d / 10000, (d / 100) % 100, d % 100);
    if !(1..=12).contains(&m) || day < 1 || day > days_in_month(y, m) {
        return Err("is not a real date");
    }
    Ok(Some(d))
}

/// Days in month `m` (1 to 12) of year `y` (Gregorian).
pub fn days_in_month(y: Day, m: Day) -> Day {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Renders a day as `YYYY-MM-DD`.
pub fn show_day(d: Day) -> String {
    format!("{:04}-{:02}-{:02}", d / 10000, (d / 100) % 100, d % 100)
}

fn ods(path: &str, line: usize, column: usize, s: &str) -> Result<String, DirectoryError> {
    OdsCode::parse(s)
        .map(|c| c.to_string())
        .map_err(|e| row_err(path, line, column, format!("ODS code {s:?} {e}")))
}

/// Parses the GP practice file.
pub fn parse_epraccur(text: &str, path: &str) -> Result<Vec<Practice>, DirectoryError> {
    let mut out = Vec::with_capacity(text.len() / 180);
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(text.len() / 180);
    let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(col::COUNT);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        split_line(line, &mut fields).map_err(|e| row_err(path, n, e.column, e.message))?;
        if fields.len() != col::COUNT {
            return Err(row_err(
                path,
                n,
                fields.len().min(col::COUNT + 1),
                format!("expected {} columns, found {}", col::COUNT, fields.len()),
            ));
        }
        let f = |c: usize| fields[c - 1].trim();
        let code = ods(path, n, col::CODE, f(col::CODE))?;
        if let Some(first) = seen.insert(code.clone(), n) {
            return Err(row_err(
                path,
                n,
                col::CODE,
                format!("practice {code} is listed twice (first on line {first})"),
            ));
        }
        if f(col::NAME).is_empty() {
            return Err(row_err(path, n, col::NAME, "practice name is empty"));
        }
        let day = |c: usize| parse_day(f(c)).map_err(|m| row_err(path, n, c, m));
        let status = match f(col::STATUS) {
            "A" => OrgStatus::Active,
            "C" => OrgStatus::Closed,
            "D" => OrgStatus::Dormant,
            "P" => OrgStatus::Proposed,
            other => {
                return Err(row_err(
                    path,
                    n,
                    col::STATUS,
                    format!("status {other:?} is not A, C, D or P"),
                ))
            }
        };
        let setting = f(col::SETTING);
        let prescribing_setting = if setting.is_empty() {
            0
        } else {
            setting.parse::<u8>().map_err(|_| {
                row_err(
                    path,
                    n,
                    col::SETTING,
                    format!("prescribing setting {setting:?} is not a number"),
                )
            })?
        };
        out.push(Practice {
            code,
            name: f(col::NAME).to_string(),
            postcode: f(col::POSTCODE).to_string(),
            open_date: day(col::OPEN)?,
            close_date: day(col::CLOSE)?,
            status,
            commissioner: f(col::COMMISSIONER).to_ascii_uppercase(),
            prescribing_setting,
        });
    }
    Ok(out)
}

/// A practice merged into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    pub new_code: String,
    pub effective: Day,
    pub line: usize,
}

/// Parses a successor file: `old code,new code,effective date` per line; a first line naming
/// the columns is allowed. Loops are refused.
pub fn parse_successors(
    text: &str,
    path: &str,
) -> Result<HashMap<String, Successor>, DirectoryError> {
    let mut out: HashMap<String, Successor> = HashMap::new();
    let mut fields = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        split_line(line, &mut fields).map_err(|e| row_err(path, n, e.column, e.message))?;
        if n == 1
            && fields
                .first()
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("old"))
        {
            continue;
        }
        if fields.len() != 3 {
            return Err(row_err(
                path,
                n,
                fields.len().min(4),
                format!(
                    "expected 3 columns (old code, new code, effective date), found {}",
                    fields.len()
                ),
            ));
        }
        let old = ods(path, n, 1, fields[0].trim())?;
        let new_code = ods(path, n, 2, fields[1].trim())?;
        if old == new_code {
            return Err(row_err(path, n, 2, format!("{old} cannot succeed itself")));
        }
        let effective = parse_day(&fields[2])
            .map_err(|m| row_err(path, n, 3, m))?
            .ok_or_else(|| row_err(path, n, 3, "effective date is required"))?;
        if let Some(prev) = out.get(&old) {
            return Err(row_err(
                path,
                n,
                1,
                format!("{old} already has a successor (line {})", prev.line),
            ));
        }
        out.insert(
            old,
            Successor {
                new_code,
                effective,
                line: n,
            },
        );
    }
    // Every chain must end.
    for start in out.keys() {
        let mut chain = vec![start.as_str()];
        let mut cur = start.as_str();
        while let Some(s) = out.get(cur) {
            if chain.contains(&s.new_code.as_str()) {
                chain.push(&s.new_code);
                return Err(row_err(
                    path,
                    s.line,
                    2,
                    format!("successor loop: {}", chain.join(" -> ")),
                ));
            }
            chain.push(&s.new_code);
            cur = &s.new_code;
        }
    }
    Ok(out)
}

/// Parses the supplier file: `ODSCode,Supplier` per line, header allowed.
pub fn parse_suppliers(text: &str, path: &str) -> Result<HashMap<String, String>, DirectoryError> {
    let mut out = HashMap::with_capacity(text.len() / 12);
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    let mut fields = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        split_line(line, &mut fields).map_err(|e| row_err(path, n, e.column, e.message))?;
        if n == 1
            && fields
                .first()
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("odscode"))
        {
            continue;
        }
        if fields.len() != 2 {
            return Err(row_err(
                path,
                n,
                fields.len().min(3),
                format!(
                    "expected 2 columns (ODS code, supplier), found {}",
                    fields.len()
                ),
            ));
        }
        let code = ods(path, n, 1, fields[0].trim())?;
        let supplier = fields[1].trim().to_ascii_uppercase();
        if supplier.is_empty() {
            return Err(row_err(path, n, 2, "supplier is empty"));
        }
        if let Some(first) = lines_of.insert(code.clone(), n) {
            return Err(row_err(
                path,
                n,
                1,
                format!("{code} is listed twice (first on line {first})"),
            ));
        }
        out.insert(code, supplier);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#""A81001","THE DENSHAM SURGERY","Y63","Q74","THE HEALTH CENTRE","LAWSON STREET","STOCKTON-ON-TEES","CLEVELAND","","TS18 1HU","19740401","","A","B","00K","20130401","","01642 672351","","","","0","","00K","","4","""#;

    #[test]
    fn a_real_row() {
        let p = parse_epraccur(ROW, "f").unwrap();
        assert_eq!(p[0].code, "A81001");
        assert_eq!(p[0].status, OrgStatus::Active);
        assert_eq!(p[0].open_date, Some(19740401));
        assert_eq!(p[0].commissioner, "00K");
        assert_eq!(p[0].prescribing_setting, 4);
        assert_eq!(p[0].postcode, "TS18 1HU");
    }

    #[test]
    fn row_errors_name_line_and_column() {
        let bad_status = ROW
            .replace(r#""A","B","00K""#, r#""X","B","00K""#)
            .replace("A81001", "A81002");
        let e = parse_epraccur(&format!("{ROW}\n{bad_status}"), "epraccur.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            "epraccur.csv line 2, column 13: status \"X\" is not A, C, D or P"
        );
        let dup = parse_epraccur(&format!("{ROW}\n{ROW}"), "f")
            .unwrap_err()
            .to_string();
        assert!(
            dup.contains("line 2") && dup.contains("first on line 1"),
            "{dup}"
        );
        let short = parse_epraccur(r#""A81001","X""#, "f")
            .unwrap_err()
            .to_string();
        assert!(short.contains("expected 27 columns, found 2"), "{short}");
        let bad_date = ROW.replace("19740401", "19741301");
        assert!(parse_epraccur(&bad_date, "f")
            .unwrap_err()
            .to_string()
            .contains("column 11"));
    }

    #[test]
    fn successors_and_loops() {
        let s = parse_successors(
            "old,new,effective\nA81003,A81004,20171101\nA81004,A81005,2019-04-01\n",
            "s.csv",
        )
        .unwrap();
        assert_eq!(s["A81003"].new_code, "A81004");
        assert_eq!(s["A81004"].effective, 20190401);
        let e = parse_successors(
            "AAA001,BBB001,20200101\nBBB001,CCC001,20200101\nCCC001,AAA001,20200101\n",
            "s.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("successor loop") && e.contains("s.csv line"),
            "{e}"
        );
        assert!(parse_successors("A81001,A81001,20200101", "s").is_err());
        assert!(parse_successors("A81001,A81002", "s")
            .unwrap_err()
            .to_string()
            .contains("3 columns"));
    }

    #[test]
    fn suppliers() {
        let s = parse_suppliers("ODSCode,Supplier\nA81001,TPP\nA81002,emis\n", "x").unwrap();
        assert_eq!(s["A81002"], "EMIS");
        assert!(parse_suppliers("A81001,TPP\nA81001,EMIS\n", "x")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_day("20200131"), Ok(Some(20200131)));
        assert_eq!(parse_day("2020-01-31"), Ok(Some(20200131)));
        assert_eq!(parse_day(""), Ok(None));
        assert!(parse_day("2020131").is_err());
        assert!(parse_day("20201301").is_err());
        // Days a month does not have.
        for impossible in [
            "20260231",
            "2026-02-29",
            "20260431",
            "2026-06-31",
            "21000229",
        ] {
            assert_eq!(
                parse_day(impossible),
                Err("is not a real date"),
                "{impossible}"
            );
        }
        assert_eq!(parse_day("20240229"), Ok(Some(20240229)), "a leap year");
        assert_eq!(parse_day("20000229"), Ok(Some(20000229)), "a 400th year");
        assert_eq!(parse_day("2026-12-31"), Ok(Some(20261231)));
        assert_eq!(show_day(20200131), "2020-01-31");
    }
}
