//! Lexical checks and escaping shared by the XML and JSON code.

use super::error::{Error, ErrorKind};
use super::schema::Primitive;
use super::Limits;

/// The text of a document, checked against the size limit and for UTF-8, without a leading
/// byte-order mark; with the byte offset of that text in the input (for error positions).
pub(crate) fn document_text<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(&'a str, usize), Error> {
    if input.len() > limits.max_input_bytes {
        return Err(Error::new(
            ErrorKind::InputTooLarge {
                size: input.len(),
                limit: limits.max_input_bytes,
            },
            String::new(),
            0,
        ));
    }
    let (input, base) = match input.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, 3),
        None => (input, 0),
    };
    let text = std::str::from_utf8(input)
        .map_err(|e| Error::new(ErrorKind::NotUtf8, String::new(), base + e.valid_up_to()))?;
    Ok((text, base))
}

/// Longest element or resource name accepted.
pub(crate) const MAX_NAME_LEN: usize = 128;

/// Whether `s` is a FHIR element name (`[a-z][A-Za-z0-9]*`).
pub(crate) fn is_element_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(u8::is_ascii_alphanumeric)
}

/// Whether `s` is a FHIR resource type name (`[A-Z][A-Za-z0-9]*`).
pub(crate) fn is_resource_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_uppercase()
        && b[1..].iter().all(u8::is_ascii_alphanumeric)
}

/// The first index at or after `from` whose byte is flagged, or `b.len()`. Checks 32-byte,
/// then 8-byte chunks without branching first, so the common all-clear case vectorises.
#[inline(always)]
pub(crate) fn position(b: &[u8], from: usize, flag: impl Fn(u8) -> bool + Copy) -> usize {
    const CHUNK: usize = 32;
    let mut i = from;
    while i + CHUNK <= b.len() {
        if b[i..i + CHUNK].iter().fold(false, |acc, &c| acc | flag(c)) {
            break;
        }
        i += CHUNK;
    }
    // Short text (most of it) and tails: 8 bytes at a time; then the last 8 bytes at once
    // (overlapping what was checked), and one by one only when one of them is flagged.
    while i + 8 <= b.len() {
        if b[i..i + 8].iter().fold(false, |acc, &c| acc | flag(c)) {
            break;
        }
        i += 8;
    }
    if i < b.len() && b.len() >= 8 && i + 8 > b.len() {
        let last = &b[b.len() - 8..];
        if !last.iter().fold(false, |acc, &c| acc | flag(c)) {
            return b.len();
        }
    }
    while i < b.len() && !flag(b[i]) {
        i += 1;
    }
    i
}

#[inline(always)]
fn maybe_forbidden(c: u8) -> bool {
    ((c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r')) | (c == 0xEF)
}

/// The first character XML 1.0 cannot carry: C0 controls other than tab, LF and CR, and the
/// non-characters U+FFFE and U+FFFF. Returns its byte offset and code point.
pub(crate) fn find_forbidden(s: &str) -> Option<(usize, u32)> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        i = position(b, i, maybe_forbidden);
        let c = *b.get(i)?;
        if c != 0xEF {
            return Some((i, c as u32));
        }
        if b.get(i + 1) == Some(&0xBF) && b.get(i + 2).is_some_and(|&x| x >= 0xBE) {
            return Some((i, 0xFFC0 | (b[i + 2] & 0x3F) as u32));
        }
        i += 1;
    }
}

/// Whether `c` is a character XML 1.0 can carry.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether `s` is a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), which is
/// also the lexical form of FHIR decimal.
pub(crate) fn is_json_number(s: &str) -> bool {
    number_end(s.as_bytes(), 0) == Some(s.len())
}

/// Where the JSON number starting at `i` ends, if one starts there.
pub(crate) fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            return None;
        }
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            return None;
        }
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
    }
    Some(i)
}

fn integer_in(s: &str, min: i64) -> bool {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let lexical_ok = match digits {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    lexical_ok
        && digits.len() <= 11
        && s.parse::<i64>()
            .is_ok_and(|n| n >= min && n <= i32::MAX as i64)
}

/// Whether `s` is base64 (the alphabet, `=` padding, and whitespace between groups).
fn is_base64(s: &str) -> bool {
    #[inline(always)]
    fn invalid(c: u8) -> bool {
        let letter = (c | 0x20).wrapping_sub(b'a') < 26;
        let digit = c.wrapping_sub(b'0') < 10;
        let other = (c == b'+') | (c == b'/') | (c == b'=') | (c == b' ');
        let ws = (c == b'\t') | (c == b'\n') | (c == b'\r');
        !(letter | digit | other | ws)
    }
    position(s.as_bytes(), 0, invalid) == s.len()
}

/// Checks the lexical form of a primitive whose JSON form is not a string, and base64.
pub(crate) fn check_primitive(p: Primitive, v: &str) -> Result<(), ErrorKind> {
    let ok = match p {
        Primitive::Boolean => v == "true" || v == "false",
        Primitive::Integer => integer_in(v, i32::MIN as i64),
        Primitive::UnsignedInt => integer_in(v, 0),
        Primitive::PositiveInt => integer_in(v, 1),
        Primitive::Decimal => is_json_number(v),
        Primitive::Base64Binary => is_base64(v),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ErrorKind::InvalidValue {
            ty: p.name(),
            value: clip(v),
        })
    }
}

/// A value shortened for an error message.
pub(crate) fn clip(v: &str) -> String {
    const MAX: usize = 64;
    if v.len() <= MAX {
        return v.to_owned();
    }
    let mut end = MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &v[..end])
}

/// Appends `s` escaped for a double-quoted XML attribute value. Tab, CR and LF become
/// character references so attribute-value normalisation keeps them; characters XML cannot
/// carry become U+FFFD.
pub(crate) fn escape_attr(out: &mut String, s: &str) {
    #[inline(always)]
    fn special(c: u8) -> bool {
        (c < 0x20) | (c == b'&') | (c == b'<') | (c == b'>') | (c == b'"') | (c == 0xEF)
    }
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        i = position(b, i, special);
        let Some(&c) = b.get(i) else { break };
        let (rep, len) = match c {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\n' => ("&#10;", 1),
            b'\r' => ("&#13;", 1),
            b'\t' => ("&#9;", 1),
            0xEF => {
                if b.get(i + 1) == Some(&0xBF) && b.get(i + 2).is_some_and(|&x| x >= 0xBE) {
                    ("\u{FFFD}", 3)
                } else {
                    i += 1;
                    continue;
                }
            }
            _ => ("\u{FFFD}", 1),
        };
        out.push_str(&s[start..i]);
        out.push_str(rep);
        i += len;
        start = i;
    }
    out.push_str(&s[start..]);
}

/// Appends `s` as a JSON string literal, quotes included.
pub(crate) fn escape_json(out: &mut String, s: &str) {
    out.push('"');
    escape_json_inner(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string literal.
pub(crate) fn escape_json_inner(out: &mut String, s: &str) {
    #[inline(always)]
    fn special(c: u8) -> bool {
        (c < 0x20) | (c == b'"') | (c == b'\\')
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        i = position(b, i, special);
        let Some(&c) = b.get(i) else { break };
        out.push_str(&s[start..i]);
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[(c >> 4) as usize]));
                out.push(char::from(HEX[(c & 0xF) as usize]));
            }
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_element_name("valueString"));
        assert!(!is_element_name("Value"));
        assert!(!is_element_name("_value"));
        assert!(!is_element_name("a-b"));
        assert!(is_resource_name("Bundle"));
        assert!(!is_resource_name("bundle"));
    }

    #[test]
    fn numbers() {
        for ok in ["0", "-0", "1.50", "1e10", "-2.5E-3", "123"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "01", "1.", ".5", "+1", "1e", "NaN", "1.5 "] {
            assert!(!is_json_number(bad), "{bad}");
        }
        assert!(check_primitive(Primitive::Integer, "-2147483648").is_ok());
        assert!(check_primitive(Primitive::Integer, "2147483648").is_err());
        assert!(check_primitive(Primitive::UnsignedInt, "-1").is_err());
        assert!(check_primitive(Primitive::PositiveInt, "0").is_err());
        assert!(check_primitive(Primitive::Integer, "007").is_err());
        assert!(check_primitive(Primitive::Boolean, "True").is_err());
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_attr(&mut s, "a&b<\"c\"\n\u{1}\u{FFFE}z");
        assert_eq!(s, "a&amp;b&lt;&quot;c&quot;&#10;\u{FFFD}\u{FFFD}z");
        let mut j = String::new();
        escape_json(&mut j, "q\"\\\n\u{1}é");
        assert_eq!(j, "\"q\\\"\\\\\\n\\u0001é\"");
    }

    #[test]
    fn forbidden() {
        assert_eq!(find_forbidden("ok\t\n\r"), None);
        assert_eq!(find_forbidden("a\u{1}"), Some((1, 1)));
        assert_eq!(find_forbidden("a\u{FFFF}"), Some((1, 0xFFFF)));
        assert_eq!(find_forbidden("\u{FFFD}"), None);
    }
}
