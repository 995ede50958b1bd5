//! Just enough CSV for the ODS files: comma-separated, fields optionally in double quotes,
//! `""` for a quote inside a quoted field. One record per line.

/// Why a line is not a CSV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based column where the problem is.
    pub column: usize,
    pub message: &'static str,
}

/// Splits one line into fields, appending them to `out` (cleared first).
pub fn split_line<'a>(
    line: &'a str,
    out: &mut Vec<std::borrow::Cow<'a, str>>,
) -> Result<(), CsvError> {
    use std::borrow::Cow;
    out.clear();
    let line = line.strip_suffix('\r').unwrap_or(line);
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        let column = out.len() + 1;
        if bytes.get(i) == Some(&b'"') {
            // Quoted field.
            let start = i + 1;
            let mut j = start;
            let mut has_escaped = false;
            loop {
                match bytes.get(j) {
                    None => {
                        return Err(CsvError {
                            column,
                            message: "unterminated quoted field",
                        })
                    }
                    Some(b'"') if bytes.get(j + 1) == Some(&b'"') => {
                        has_escaped = true;
                        j += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => j += 1,
                }
            }
            let raw = &line[start..j];
            out.push(if has_escaped {
                Cow::Owned(raw.replace("\"\"", "\""))
            } else {
                Cow::Borrowed(raw)
            });
            i = j + 1;
            match bytes.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => {
                    return Err(CsvError {
                        column,
                        message: "unexpected character after a closing quote",
                    })
                }
            }
        } else {
            let end = line[i..].find(',').map(|p| i + p);
            match end {
                Some(e) => {
                    out.push(Cow::Borrowed(&line[i..e]));
                    i = e + 1;
                }
                None => {
                    out.push(Cow::Borrowed(&line[i..]));
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(s: &str) -> Result<Vec<String>, CsvError> {
        let mut v = Vec::new();
        split_line(s, &mut v)?;
        Ok(v.into_iter().map(|c| c.into_owned()).collect())
    }

    #[test]
    fn quoted_and_plain_fields() {
        assert_eq!(
            split(r#""A81001","X, Y","","Q""Z""#).unwrap(),
            ["A81001", "X, Y", "", "Q\"Z"]
        );
        assert_eq!(split("a,b,,c\r").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(split("").unwrap(), [""]);
        assert_eq!(split(r#""a",b"#).unwrap(), ["a", "b"]);
        assert_eq!(split(r#""open"#).unwrap_err().column, 1);
        assert_eq!(split(r#"a,"b"c"#).unwrap_err().column, 2);
    }

    proptest! {
        #[test]
        fn quoting_round_trips(fields in proptest::collection::vec("[^\r\n]{0,12}", 1..8)) {
            let line = fields
                .iter()
                .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(",");
            prop_assert_eq!(split(&line).unwrap(), fields);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = split(&s);
        }
    }
}
