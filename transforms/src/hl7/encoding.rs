//! Delimiters (MSH-1, MSH-2) and escape sequences.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a set of delimiters is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// MSH-1 is not a printable ASCII punctuation character.
    #[error("MSH-1: field separator {0:?} must be a printable ASCII punctuation character")]
    FieldSeparator(char),
    /// MSH-2 has the wrong length.
    #[error("MSH-2: encoding characters {found:?} must be 4 characters (component, repetition, escape, subcomponent) or 5 (plus truncation)")]
    Length {
        /// MSH-2 as found (at most 16 characters of it).
        found: String,
    },
    /// An MSH-2 character is not printable ASCII punctuation.
    #[error("MSH-2: encoding character {found:?} must be a printable ASCII punctuation character")]
    Character {
        /// The offending character.
        found: char,
    },
    /// Two delimiters are the same character.
    #[error("MSH-2: delimiter {found:?} is used twice (MSH-1 and MSH-2 must all differ)")]
    Duplicate {
        /// The repeated character.
        found: char,
    },
}

/// The delimiters of one message: the field separator (MSH-1) and the encoding characters
/// (MSH-2: component, repetition, escape, subcomponent and, from v2.7, truncation).
///
/// All delimiters are distinct printable ASCII punctuation characters, so splitting at them
/// never cuts a UTF-8 sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encoding {
    /// Field, component, repetition, escape, subcomponent, truncation (unused when `len` is 5).
    chars: [u8; 6],
    /// 5 without a truncation character, 6 with one.
    len: u8,
}

impl Default for Encoding {
    fn default() -> Self {
        Self::STANDARD
    }
}

fn is_delimiter_char(b: u8) -> bool {
    b.is_ascii_punctuation()
}

impl Encoding {
    /// The usual `|^~\&`.
    pub const STANDARD: Encoding = Encoding {
        chars: *b"|^~\\&\0",
        len: 5,
    };

    /// Builds an encoding from the field separator and the text of MSH-2 (4 or 5 characters).
    pub fn from_msh(field: char, msh2: &str) -> Result<Self, EncodingError> {
        if !field.is_ascii() || !is_delimiter_char(field as u8) {
            return Err(EncodingError::FieldSeparator(field));
        }
        let bytes = msh2.as_bytes();
        if !(4..=5).contains(&bytes.len()) || !msh2.is_ascii() {
            if let Some(c) = msh2.chars().find(|c| !c.is_ascii()) {
                if msh2.chars().count() <= 5 {
                    return Err(EncodingError::Character { found: c });
                }
            }
            return Err(EncodingError::Length {
                found: msh2.chars().take(16).collect(),
            });
        }
        let mut chars = [0u8; 6];
        chars[0] = field as u8;
        chars[1..=bytes.len()].copy_from_slice(bytes);
        let len = bytes.len() + 1;
        for (i, &b) in chars[..len].iter().enumerate() {
            if !is_delimiter_char(b) {
                return Err(EncodingError::Character {
                    found: char::from(b),
                });
            }
            if chars[..i].contains(&b) {
                return Err(EncodingError::Duplicate {
                    found: char::from(b),
                });
            }
        }
        if len == 5 {
            chars[5] = 0;
        }
        Ok(Self {
            chars,
            len: len as u8,
        })
    }

    /// Builds an encoding from explicit delimiters.
    pub fn new(
        field: char,
        component: char,
        repetition: char,
        escape: char,
        subcomponent: char,
        truncation: Option<char>,
    ) -> Result<Self, EncodingError> {
        let mut msh2 = String::with_capacity(5);
        msh2.extend([component, repetition, escape, subcomponent]);
        msh2.extend(truncation);
        Self::from_msh(field, &msh2)
    }

    /// The field separator (MSH-1).
    pub fn field(&self) -> char {
        char::from(self.chars[0])
    }

    /// The component separator.
    pub fn component(&self) -> char {
        char::from(self.chars[1])
    }

    /// The repetition separator.
    pub fn repetition(&self) -> char {
        char::from(self.chars[2])
    }

    /// The escape character.
    pub fn escape_char(&self) -> char {
        char::from(self.chars[3])
    }

    /// The subcomponent separator.
    pub fn subcomponent(&self) -> char {
        char::from(self.chars[4])
    }

    /// The truncation character (five-character MSH-2 only).
    pub fn truncation(&self) -> Option<char> {
        (self.len == 6).then(|| char::from(self.chars[5]))
    }

    /// MSH-1 as text.
    pub fn msh1(&self) -> &str {
        std::str::from_utf8(&self.chars[..1]).unwrap_or("|")
    }

    /// MSH-2 as text.
    pub fn msh2(&self) -> &str {
        std::str::from_utf8(&self.chars[1..usize::from(self.len)]).unwrap_or("^~\\&")
    }

    pub(crate) fn field_byte(&self) -> u8 {
        self.chars[0]
    }

    /// Escapes `text` so it can stand as one subcomponent: delimiters become `\F\ \S\ \R\ \T\
    /// \E\` (and `\P\` for the truncation character), a line feed becomes `\.br\` (or
    /// `\X0A\` when `.` is a delimiter, as it would split `\.br\`), and a
    /// carriage return and the MLLP framing bytes 0x0B and 0x1C become `\X0D\`, `\X0B\`,
    /// `\X1C\`. Returns the input unchanged when nothing needs escaping.
    pub fn escape<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if !text.bytes().any(|b| self.escape_code(b).is_some()) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 8);
        self.escape_into(text, &mut out);
        Cow::Owned(out)
    }

    /// Appends the escaped form of `text` to `out` (see [`Encoding::escape`]).
    pub fn escape_into(&self, text: &str, out: &mut String) {
        let esc = self.escape_char();
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if let Some(code) = self.escape_code(b) {
                out.push_str(&text[start..i]);
                out.push(esc);
                out.push_str(code);
                out.push(esc);
                start = i + 1;
            }
        }
        out.push_str(&text[start..]);
    }

    fn escape_code(&self, b: u8) -> Option<&'static str> {
        match b {
            b'\n' if self.chars[..usize::from(self.len)].contains(&b'.') => Some("X0A"),
            b'\n' => Some(".br"),
            b'\r' => Some("X0D"),
            0x0B => Some("X0B"),
            0x1C => Some("X1C"),
            _ if b == self.chars[0] => Some("F"),
            _ if b == self.chars[1] => Some("S"),
            _ if b == self.chars[2] => Some("R"),
            _ if b == self.chars[3] => Some("E"),
            _ if b == self.chars[4] => Some("T"),
            _ if self.len == 6 && b == self.chars[5] => Some("P"),
            _ => None,
        }
    }

    /// Decodes the escape sequences in `raw`: `\F\ \S\ \R\ \T\ \E\ \P\` give the delimiter,
    /// `\.br\` a line feed, `\Xhh…\` the bytes `hh…` (as UTF-8 when valid, otherwise one
    /// character per byte, as ISO 8859-1). Other sequences, and an escape character with no
    /// closing one, are kept verbatim. Returns the input unchanged when it has no escape
    /// character.
    pub fn unescape<'r>(&self, raw: &'r str) -> Cow<'r, str> {
        let esc = self.escape_char();
        let escape = self.chars[3];
        if !raw.bytes().any(|b| b == escape) {
            return Cow::Borrowed(raw);
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(i) = rest.find(esc) {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let Some(j) = after.find(esc) else {
                out.push_str(&rest[i..]);
                return Cow::Owned(out);
            };
            let seq = &after[..j];
            if !self.decode_sequence(seq, &mut out) {
                out.push(esc);
                out.push_str(seq);
                out.push(esc);
            }
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    /// Appends the meaning of one escape sequence (without its escape characters) to `out`;
    /// false when the sequence is not understood.
    fn decode_sequence(&self, seq: &str, out: &mut String) -> bool {
        let c = match seq {
            "F" => self.field(),
            "S" => self.component(),
            "R" => self.repetition(),
            "E" => self.escape_char(),
            "T" => self.subcomponent(),
            "P" => match self.truncation() {
                Some(t) => t,
                None => return false,
            },
            ".br" => '\n',
            _ => return decode_hex(seq, out),
        };
        out.push(c);
        true
    }
}

/// `Xhh…` with an even, non-zero number of hex digits.
fn decode_hex(seq: &str, out: &mut String) -> bool {
    let Some(hex) = seq.strip_prefix('X') else {
        return false;
    };
    if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
        .collect();
    match std::str::from_utf8(&bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.extend(bytes.iter().map(|&b| char::from(b))),
    }
    true
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char(self.field())?;
        f.write_str(self.msh2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_delimiters() {
        let e = Encoding::STANDARD;
        assert_eq!(
            (
                e.field(),
                e.component(),
                e.repetition(),
                e.escape_char(),
                e.subcomponent()
            ),
            ('|', '^', '~', '\\', '&')
        );
        assert_eq!(e.truncation(), None);
        assert_eq!(e.msh1(), "|");
        assert_eq!(e.msh2(), "^~\\&");
        assert_eq!(Encoding::from_msh('|', "^~\\&").unwrap(), e);
    }

    #[test]
    fn five_character_form() {
        let e = Encoding::from_msh('|', "^~\\&#").unwrap();
        assert_eq!(e.truncation(), Some('#'));
        assert_eq!(e.msh2(), "^~\\&#");
        assert_eq!(e.escape("a#b"), "a\\P\\b");
        assert_eq!(e.unescape("a\\P\\b"), "a#b");
        assert_eq!(Encoding::STANDARD.escape("a#b"), "a#b");
        assert_eq!(Encoding::STANDARD.unescape("a\\P\\b"), "a\\P\\b");
    }

    #[test]
    fn bad_encodings() {
        assert_eq!(
            Encoding::from_msh('A', "^~\\&"),
            Err(EncodingError::FieldSeparator('A'))
        );
        assert!(matches!(
            Encoding::from_msh('|', "^~\\"),
            Err(EncodingError::Length { .. })
        ));
        assert!(matches!(
            Encoding::from_msh('|', "^~\\&#!"),
            Err(EncodingError::Length { .. })
        ));
        assert_eq!(
            Encoding::from_msh('|', "^~\\|"),
            Err(EncodingError::Duplicate { found: '|' })
        );
        assert_eq!(
            Encoding::from_msh('|', "^~ &"),
            Err(EncodingError::Character { found: ' ' })
        );
        assert_eq!(
            Encoding::from_msh('|', "^~é&"),
            Err(EncodingError::Character { found: 'é' })
        );
    }

    #[test]
    fn escapes_decode() {
        let e = Encoding::STANDARD;
        assert_eq!(
            e.unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"),
            "a|b^c&d~e\\f"
        );
        assert_eq!(e.unescape("line 1\\.br\\line 2"), "line 1\nline 2");
        assert_eq!(e.unescape("\\X0D0A\\"), "\r\n");
        assert_eq!(e.unescape("caf\\XC3A9\\"), "café");
        assert_eq!(e.unescape("caf\\XE9\\"), "café");
        assert_eq!(e.unescape("\\H\\bold\\N\\"), "\\H\\bold\\N\\");
        assert_eq!(e.unescape("\\X0\\ \\XZZ\\ \\X\\"), "\\X0\\ \\XZZ\\ \\X\\");
        assert_eq!(e.unescape("open \\F"), "open \\F");
        assert!(matches!(e.unescape("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn escapes_encode() {
        let e = Encoding::STANDARD;
        assert_eq!(e.escape("a|b^c&d~e\\f"), "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f");
        assert_eq!(e.escape("1\r\n2"), "1\\X0D\\\\.br\\2");
        assert_eq!(e.escape("\u{b}\u{1c}"), "\\X0B\\\\X1C\\");
        assert!(matches!(e.escape("plain é"), Cow::Borrowed("plain é")));
    }

    #[test]
    fn other_delimiters() {
        let e = Encoding::new('!', '@', '$', '%', '*', Some('+')).unwrap();
        assert_eq!(e.to_string(), "!@$%*+");
        let text = "|^~\\&# !@$%*+ \n";
        assert_eq!(e.unescape(&e.escape(text)), text);
        assert_eq!(e.escape("|^~\\&#"), "|^~\\&#");
        let dotted = Encoding::new('|', '.', '~', '\\', '&', None).unwrap();
        assert_eq!(dotted.escape("a\nb"), "a\\X0A\\b");
    }
}
