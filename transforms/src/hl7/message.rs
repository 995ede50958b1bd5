//! The message model, the parser and the renderer.

use super::encoding::{Encoding, EncodingError};
use super::mllp;
use std::borrow::Cow;

/// Why bytes are not an HL7 v2 message (or why a built message is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hl7Error {
    /// Nothing but framing or whitespace.
    #[error("message is empty")]
    Empty,
    /// Over [`Limits::max_bytes`].
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The bytes are not UTF-8.
    #[error("message is not valid UTF-8 (first bad byte at offset {offset}); transcode it (see MSH-18) before parsing")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The first segment is not MSH (batches starting FHS or BHS are not supported).
    #[error("first segment must be MSH, found {found:?}")]
    MissingMsh {
        /// The start of what was found (at most 16 characters).
        found: String,
    },
    /// MSH-1 or MSH-2 is unusable.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// A segment name is not three upper-case letters or digits.
    #[error("segment {index}: invalid segment name {found:?} (expected 3 upper-case letters or digits, the first a letter)")]
    SegmentName {
        /// 1-based position of the segment in the message.
        index: usize,
        /// The start of the segment (at most 16 characters).
        found: String,
    },
    /// Over [`Limits::max_segments`].
    #[error("message has more than {limit} segments")]
    TooManySegments {
        /// The limit in force.
        limit: usize,
    },
    /// Over [`Limits::max_fields`].
    #[error("segment {index} ({name}): {count} fields, over the limit of {limit}")]
    TooManyFields {
        /// 1-based position of the segment in the message.
        index: usize,
        /// The segment name.
        name: String,
        /// Fields found.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A builder was asked to set a field that cannot be set.
    #[error("{segment}-{field}: {reason}")]
    Field {
        /// The segment name.
        segment: String,
        /// The field number.
        field: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// A builder was used out of order.
    #[error("message builder: {0}")]
    Builder(&'static str),
}

/// Bounds applied while parsing untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes (MLLP framing included).
    pub max_bytes: usize,
    /// Most segments in one message.
    pub max_segments: usize,
    /// Most fields in one segment (for MSH, counting MSH-2 onwards).
    pub max_fields: usize,
}

impl Limits {
    /// 10 MiB, 10,000 segments, 1,000 fields per segment.
    pub const DEFAULT: Limits = Limits {
        max_bytes: 10 * 1024 * 1024,
        max_segments: 10_000,
        max_fields: 1_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One segment as stored: its name and where its fields sit in [`Message::fields`].
///
/// For header segments (MSH, BHS, FHS) the separator in position 1 is not stored, so the
/// first stored field is the encoding characters (MSH-2) and stored field `n - 2` is MSH-n.
/// For every other segment stored field `n - 1` is field n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Segment {
    pub(crate) name: [u8; 3],
    pub(crate) start: usize,
    pub(crate) end: usize,
}

pub(crate) fn is_header(name: &[u8; 3]) -> bool {
    matches!(name, b"MSH" | b"BHS" | b"FHS")
}

pub(crate) fn valid_segment_name(name: &[u8]) -> bool {
    name.len() == 3
        && name[0].is_ascii_uppercase()
        && name[1..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A parsed (or built) HL7 v2 message.
///
/// It may borrow from the text it was parsed from; [`Message::into_owned`] detaches it. Fields
/// are kept in encoded form and decoded on access, so `render` reproduces every segment,
/// including unknown Z-segments and trailing empty fields, and
/// `Message::parse(&m.render()) == Ok(m)`.
///
/// Numbering follows HL7: fields, repetitions, components and subcomponents count from 1, and
/// MSH-1 is the field separator itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message<'a> {
    encoding: Encoding,
    /// Every segment's fields, in encoded form, one after another.
    fields: Vec<Cow<'a, str>>,
    /// Never empty; the first is MSH.
    segments: Vec<Segment>,
}

impl<'a> Message<'a> {
    /// Parses a message with the default [`Limits`].
    ///
    /// Segments may end in CR, LF or CR LF; blank lines, a leading byte-order mark and MLLP
    /// framing (`0x0B … 0x1C 0x0D`) are ignored.
    pub fn parse(input: &'a str) -> Result<Self, Hl7Error> {
        Self::parse_with_limits(input, &Limits::DEFAULT)
    }

    /// Parses UTF-8 (or ASCII) bytes with the default [`Limits`].
    pub fn parse_bytes(input: &'a [u8]) -> Result<Self, Hl7Error> {
        Self::parse_bytes_with_limits(input, &Limits::DEFAULT)
    }

    /// Parses UTF-8 (or ASCII) bytes within `limits`.
    pub fn parse_bytes_with_limits(input: &'a [u8], limits: &Limits) -> Result<Self, Hl7Error> {
        if input.len() > limits.max_bytes {
            return Err(Hl7Error::TooLarge {
                size: input.len(),
                limit: limits.max_bytes,
            });
        }
        let text = std::str::from_utf8(input).map_err(|e| Hl7Error::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        Self::parse_with_limits(text, limits)
    }

    /// Parses a message within `limits`.
    pub fn parse_with_limits(input: &'a str, limits: &Limits) -> Result<Self, Hl7Error> {
        if input.len() > limits.max_bytes {
            return Err(Hl7Error::TooLarge {
                size: input.len(),
                limit: limits.max_bytes,
            });
        }
        let text = strip_envelope(input);
        if text.trim().is_empty() {
            return Err(Hl7Error::Empty);
        }
        if !text.starts_with("MSH") {
            return Err(Hl7Error::MissingMsh {
                found: text.chars().take(16).collect(),
            });
        }
        let field = text[3..].chars().next().unwrap_or('\r');
        if !field.is_ascii() || !field.is_ascii_punctuation() {
            return Err(EncodingError::FieldSeparator(field).into());
        }
        let after = &text[4..];
        let msh2_end = after.find([field, '\r', '\n']).unwrap_or(after.len());
        let encoding = Encoding::from_msh(field, &after[..msh2_end])?;
        let sep = encoding.field_byte();

        let bytes = text.as_bytes();
        let n = bytes.len();
        // ORU text has a field every 3 to 8 bytes and a segment every 60 or so; larger
        // messages grow the vectors as needed.
        let mut fields = Vec::with_capacity((n / 4 + 16).min(4096));
        let mut segments = Vec::with_capacity((n / 48 + 2).min(512));
        let is_eol = |b: u8| b == b'\r' || b == b'\n';
        let mut i = 0;
        while i < n {
            if is_eol(bytes[i]) {
                i += 1;
                continue;
            }
            let index = segments.len() + 1;
            let named = n - i >= 3
                && valid_segment_name(&bytes[i..i + 3])
                && (i + 3 == n || bytes[i + 3] == sep || is_eol(bytes[i + 3]));
            if !named {
                let end = bytes[i..]
                    .iter()
                    .position(|&b| is_eol(b))
                    .map_or(n, |p| i + p);
                let line = &text[i..end];
                if line.trim().is_empty() {
                    i = end;
                    continue;
                }
                return Err(Hl7Error::SegmentName {
                    index,
                    found: line.chars().take(16).collect(),
                });
            }
            if segments.len() == limits.max_segments {
                return Err(Hl7Error::TooManySegments {
                    limit: limits.max_segments,
                });
            }
            let name = [bytes[i], bytes[i + 1], bytes[i + 2]];
            let start = fields.len();
            let mut j = i + 3;
            if j < n && bytes[j] == sep {
                j += 1;
                loop {
                    let len = find_delimiter(&bytes[j..], sep);
                    if fields.len() - start == limits.max_fields {
                        let line = &bytes[j..];
                        let end = line.iter().position(|&b| is_eol(b)).unwrap_or(line.len());
                        let extra = line[..end].iter().filter(|&&b| b == sep).count();
                        return Err(Hl7Error::TooManyFields {
                            index,
                            name: String::from_utf8_lossy(&name).into_owned(),
                            count: limits.max_fields + extra + 1,
                            limit: limits.max_fields,
                        });
                    }
                    fields.push(Cow::Borrowed(&text[j..j + len]));
                    j += len;
                    if j == n || bytes[j] != sep {
                        break;
                    }
                    j += 1;
                }
            }
            segments.push(Segment {
                name,
                start,
                end: fields.len(),
            });
            i = j;
        }
        Ok(Self {
            encoding,
            fields,
            segments,
        })
    }

    /// Assembles a message from parts already checked by the builder.
    pub(crate) fn from_parts(
        encoding: Encoding,
        fields: Vec<Cow<'a, str>>,
        segments: Vec<Segment>,
    ) -> Self {
        Self {
            encoding,
            fields,
            segments,
        }
    }

    /// The delimiters read from MSH-1 and MSH-2.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// Number of segments, MSH included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn segment_ref<'m>(&'m self, index: usize, segment: &'m Segment) -> SegmentRef<'m> {
        let fields: &'m [Cow<'m, str>] = &self.fields;
        SegmentRef {
            name: &segment.name,
            fields: fields.get(segment.start..segment.end).unwrap_or(&[]),
            encoding: &self.encoding,
            index,
        }
    }

    /// The message header.
    pub fn msh(&self) -> SegmentRef<'_> {
        self.get(0).unwrap_or(SegmentRef {
            name: b"MSH",
            fields: &[],
            encoding: &self.encoding,
            index: 0,
        })
    }

    /// The segment at `index` (0-based position in the message; MSH is 0).
    pub fn get(&self, index: usize) -> Option<SegmentRef<'_>> {
        let segment = self.segments.get(index)?;
        Some(self.segment_ref(index, segment))
    }

    /// Every segment, in order.
    pub fn iter(&self) -> impl Iterator<Item = SegmentRef<'_>> + '_ {
        self.segments
            .iter()
            .enumerate()
            .map(move |(index, segment)| self.segment_ref(index, segment))
    }

    /// The segments named `name` (e.g. `"OBX"`), in order.
    pub fn segments<'m>(&'m self, name: &str) -> impl Iterator<Item = SegmentRef<'m>> + 'm {
        let key: Option<[u8; 3]> = name.as_bytes().try_into().ok();
        self.segments
            .iter()
            .enumerate()
            .filter(move |(_, s)| Some(s.name) == key)
            .map(move |(index, segment)| self.segment_ref(index, segment))
    }

    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<SegmentRef<'_>> {
        self.segments(name).next()
    }

    /// Renders the message: segments in order, each ended by a carriage return.
    pub fn render(&self) -> String {
        let size = self.segments.len() * 4 + self.fields.iter().map(|f| f.len() + 1).sum::<usize>();
        let mut out = String::with_capacity(size);
        self.render_into(&mut out);
        out
    }

    /// Appends the rendered message to `out`.
    pub fn render_into(&self, out: &mut String) {
        let sep = self.encoding.field();
        for segment in &self.segments {
            out.extend(segment.name.iter().map(|&b| char::from(b)));
            for field in self.fields.get(segment.start..segment.end).unwrap_or(&[]) {
                out.push(sep);
                out.push_str(field);
            }
            out.push('\r');
        }
    }

    /// Renders the message inside MLLP framing (`0x0B … 0x1C 0x0D`).
    pub fn render_mllp(&self) -> Vec<u8> {
        mllp::frame(self.render().as_bytes())
    }

    /// A copy that owns all its text.
    pub fn into_owned(self) -> Message<'static> {
        Message {
            encoding: self.encoding,
            fields: self
                .fields
                .into_iter()
                .map(|f| Cow::Owned(f.into_owned()))
                .collect(),
            segments: self.segments,
        }
    }
}

/// Length of the run before the first field separator, CR or LF.
///
/// Eight bytes at a time: in each word, a byte equal to one of the three is flagged (the
/// lowest flag is always a true match), and the first flagged byte ends the run.
fn find_delimiter(bytes: &[u8], sep: u8) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has = |word: u64, b: u8| {
        let x = word ^ (LOW * u64::from(b));
        x.wrapping_sub(LOW) & !x & HIGH
    };
    let mut offset = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = has(word, sep) | has(word, b'\r') | has(word, b'\n');
        if found != 0 {
            return offset + (found.trailing_zeros() / 8) as usize;
        }
        offset += 8;
    }
    let stop = |b: u8| b == sep || b == b'\r' || b == b'\n';
    offset
        + bytes[offset..]
            .iter()
            .position(|&b| stop(b))
            .unwrap_or(bytes.len() - offset)
}

/// Removes a byte-order mark and MLLP framing.
fn strip_envelope(input: &str) -> &str {
    let s = input.strip_prefix('\u{feff}').unwrap_or(input);
    let trimmed = s.trim_start_matches([' ', '\t', '\r', '\n']);
    match trimmed.strip_prefix('\u{b}') {
        Some(body) => {
            let body = body.trim_end_matches(['\r', '\n']);
            let body = body.strip_suffix('\u{1c}').unwrap_or(body);
            body.trim_start_matches([' ', '\t', '\r', '\n'])
        }
        None => trimmed,
    }
}

/// A segment of a [`Message`], with the message's delimiters to decode it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentRef<'m> {
    name: &'m [u8; 3],
    fields: &'m [Cow<'m, str>],
    encoding: &'m Encoding,
    index: usize,
}

impl<'m> SegmentRef<'m> {
    /// The three-character segment name.
    pub fn name(&self) -> &'m str {
        std::str::from_utf8(self.name).unwrap_or("")
    }

    /// Position of the segment in the message (0-based; MSH is 0).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The message's delimiters.
    pub fn encoding(&self) -> &'m Encoding {
        self.encoding
    }

    /// The highest field number present (trailing empty fields count).
    pub fn field_count(&self) -> usize {
        if is_header(self.name) {
            self.fields.len() + 1
        } else {
            self.fields.len()
        }
    }

    /// Field `n` in encoded form. For MSH, field 1 is the field separator and field 2 the
    /// encoding characters.
    pub fn raw(&self, n: usize) -> Option<&'m str> {
        if n == 0 {
            return None;
        }
        let fields = self.fields;
        if is_header(self.name) {
            match n {
                1 => Some(self.encoding.msh1()),
                _ => fields.get(n - 2).map(|f| f.as_ref()),
            }
        } else {
            fields.get(n - 1).map(|f| f.as_ref())
        }
    }

    /// Field `n`, or `None` when the segment has fewer fields. MSH-1 and MSH-2 are returned
    /// as literal text, never split or decoded.
    pub fn field(&self, n: usize) -> Option<Field<'m>> {
        let raw = self.raw(n)?;
        let literal = is_header(self.name) && n <= 2;
        Some(Field(Part {
            raw,
            encoding: (!literal).then_some(self.encoding),
        }))
    }

    /// The decoded text of field `n`, repetition `rep`, component `comp` (all 1-based); when
    /// the component has subcomponents, its first subcomponent. `None` when absent.
    pub fn component(&self, n: usize, rep: usize, comp: usize) -> Option<Cow<'m, str>> {
        Some(self.field(n)?.repetition(rep)?.component(comp)?.text())
    }

    /// The decoded text of one subcomponent (all numbers 1-based). `None` when absent.
    pub fn subcomponent(
        &self,
        n: usize,
        rep: usize,
        comp: usize,
        sub: usize,
    ) -> Option<Cow<'m, str>> {
        Some(
            self.field(n)?
                .repetition(rep)?
                .component(comp)?
                .subcomponent(sub)?
                .text(),
        )
    }

    /// The decoded first subcomponent of the first component of the first repetition of field
    /// `n`; empty when absent. For simple fields (MSH-10, PID-8) this is the whole value.
    pub fn text(&self, n: usize) -> Cow<'m, str> {
        self.field(n).map(|f| f.text()).unwrap_or(Cow::Borrowed(""))
    }

    /// The repetitions of field `n` (none when the field is absent).
    pub fn repetitions(&self, n: usize) -> impl Iterator<Item = Repetition<'m>> + 'm {
        self.field(n).into_iter().flat_map(|f| f.repetitions())
    }
}

/// A piece of encoded text and the delimiters to split it; `None` for literal text (MSH-1,
/// MSH-2).
#[derive(Debug, Clone, Copy)]
struct Part<'m> {
    raw: &'m str,
    encoding: Option<&'m Encoding>,
}

impl<'m> Part<'m> {
    /// Splits at the delimiter chosen by `pick`. Literal text is never split: a carriage
    /// return cannot occur inside a segment, so splitting on it yields the whole text.
    fn split(self, pick: fn(&Encoding) -> char) -> impl Iterator<Item = Part<'m>> + 'm {
        let sep = self.encoding.map_or('\r', pick);
        let encoding = self.encoding;
        self.raw.split(sep).map(move |raw| Part { raw, encoding })
    }

    /// Piece `n` (1-based) when split at the delimiter chosen by `pick`.
    fn nth(self, pick: fn(&Encoding) -> char, n: usize) -> Option<Part<'m>> {
        let index = n.checked_sub(1)?;
        let Some(encoding) = self.encoding else {
            return (index == 0).then_some(self);
        };
        let sep = pick(encoding) as u8;
        let mut start = 0;
        let mut seen = 0;
        for (i, &b) in self.raw.as_bytes().iter().enumerate() {
            if b == sep {
                if seen == index {
                    return Some(self.with(&self.raw[start..i]));
                }
                seen += 1;
                start = i + 1;
            }
        }
        (seen == index).then(|| self.with(&self.raw[start..]))
    }

    /// The text before the first repetition, component or subcomponent delimiter.
    fn first_leaf(self) -> Part<'m> {
        let Some(e) = self.encoding else {
            return self;
        };
        let stops = [
            e.repetition() as u8,
            e.component() as u8,
            e.subcomponent() as u8,
        ];
        match self.raw.bytes().position(|b| stops.contains(&b)) {
            Some(end) => self.with(&self.raw[..end]),
            None => self,
        }
    }

    fn with(self, raw: &'m str) -> Part<'m> {
        Part {
            raw,
            encoding: self.encoding,
        }
    }

    fn text(self) -> Cow<'m, str> {
        match self.encoding {
            Some(e) => e.unescape(self.raw),
            None => Cow::Borrowed(self.raw),
        }
    }
}

/// One field of a segment.
#[derive(Debug, Clone, Copy)]
pub struct Field<'m>(Part<'m>);

impl<'m> Field<'m> {
    /// The field in encoded form.
    pub fn raw(&self) -> &'m str {
        self.0.raw
    }

    /// True when the field is empty.
    pub fn is_empty(&self) -> bool {
        self.0.raw.is_empty()
    }

    /// The repetitions (at least one, possibly empty).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'m>> + 'm {
        self.0.split(Encoding::repetition).map(Repetition)
    }

    /// Repetition `r` (1-based).
    pub fn repetition(&self, r: usize) -> Option<Repetition<'m>> {
        self.0.nth(Encoding::repetition, r).map(Repetition)
    }

    /// The decoded first subcomponent of the first component of the first repetition.
    pub fn text(&self) -> Cow<'m, str> {
        self.0.first_leaf().text()
    }

    /// The whole field, decoded into repetitions, components and subcomponents.
    pub fn to_value(&self) -> FieldValue {
        FieldValue(
            self.repetitions()
                .map(|r| {
                    r.components()
                        .map(|c| c.subcomponents().map(|s| s.text().into_owned()).collect())
                        .collect()
                })
                .collect(),
        )
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Repetition<'m>(Part<'m>);

impl<'m> Repetition<'m> {
    /// The repetition in encoded form.
    pub fn raw(&self) -> &'m str {
        self.0.raw
    }

    /// The components (at least one, possibly empty).
    pub fn components(&self) -> impl Iterator<Item = Component<'m>> + 'm {
        self.0.split(Encoding::component).map(Component)
    }

    /// Component `c` (1-based).
    pub fn component(&self, c: usize) -> Option<Component<'m>> {
        self.0.nth(Encoding::component, c).map(Component)
    }

    /// The decoded first subcomponent of component `c`; empty when absent.
    pub fn text(&self, c: usize) -> Cow<'m, str> {
        self.component(c)
            .map(|c| c.text())
            .unwrap_or(Cow::Borrowed(""))
    }
}

/// One component of a repetition.
#[derive(Debug, Clone, Copy)]
pub struct Component<'m>(Part<'m>);

impl<'m> Component<'m> {
    /// The component in encoded form.
    pub fn raw(&self) -> &'m str {
        self.0.raw
    }

    /// The subcomponents (at least one, possibly empty).
    pub fn subcomponents(&self) -> impl Iterator<Item = Subcomponent<'m>> + 'm {
        self.0.split(Encoding::subcomponent).map(Subcomponent)
    }

    /// Subcomponent `s` (1-based).
    pub fn subcomponent(&self, s: usize) -> Option<Subcomponent<'m>> {
        self.0.nth(Encoding::subcomponent, s).map(Subcomponent)
    }

    /// The decoded first subcomponent (the whole value when there are no subcomponents).
    pub fn text(&self) -> Cow<'m, str> {
        self.subcomponent(1)
            .map(|s| s.text())
            .unwrap_or(Cow::Borrowed(""))
    }
}

/// One subcomponent: the leaf of the model.
#[derive(Debug, Clone, Copy)]
pub struct Subcomponent<'m>(Part<'m>);

impl<'m> Subcomponent<'m> {
    /// The subcomponent in encoded form.
    pub fn raw(&self) -> &'m str {
        self.0.raw
    }

    /// The decoded text (escape sequences resolved).
    pub fn text(&self) -> Cow<'m, str> {
        self.0.text()
    }
}

/// A field's value in decoded form: repetitions of components of subcomponents.
///
/// Encoding joins each level with its delimiter, so an empty level and a level holding one
/// empty string render alike; [`Field::to_value`] always yields at least one entry per level.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldValue(pub Vec<Vec<Vec<String>>>);

impl FieldValue {
    /// A single text value.
    pub fn text(text: &str) -> Self {
        Self(vec![vec![vec![text.to_string()]]])
    }

    /// One repetition made of these components.
    pub fn components(components: &[&str]) -> Self {
        Self(vec![components
            .iter()
            .map(|c| vec![c.to_string()])
            .collect()])
    }

    /// Appends the encoded form to `out`.
    pub fn encode_into(&self, encoding: &Encoding, out: &mut String) {
        for (r, rep) in self.0.iter().enumerate() {
            if r > 0 {
                out.push(encoding.repetition());
            }
            for (c, comp) in rep.iter().enumerate() {
                if c > 0 {
                    out.push(encoding.component());
                }
                for (s, sub) in comp.iter().enumerate() {
                    if s > 0 {
                        out.push(encoding.subcomponent());
                    }
                    encoding.escape_into(sub, out);
                }
            }
        }
    }

    /// The encoded form.
    pub fn encode(&self, encoding: &Encoding) -> String {
        let mut out = String::new();
        self.encode_into(encoding, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INRSTAR: &str =
        include_str!("../../tests/data/hl7v2/hl7v2-oru-r01-uk-inrstar-testscript.hl7");
    const PYHL7: &str = include_str!("../../tests/data/hl7v2/hl7v2-oru-r01-python-hl7-sample.hl7");

    proptest::proptest! {
        #[test]
        fn delimiters_are_found_where_they_are(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'|'),
                    proptest::strategy::Just(b'#'),
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    0u8..=255,
                ],
                0..40,
            ),
            sep in proptest::prop_oneof![proptest::strategy::Just(b'|'), proptest::strategy::Just(b'#')],
        ) {
            let expected = bytes
                .iter()
                .position(|&b| b == sep || b == b'\r' || b == b'\n')
                .unwrap_or(bytes.len());
            proptest::prop_assert_eq!(find_delimiter(&bytes, sep), expected);
        }
    }

    #[test]
    fn samples_render_byte_for_byte() {
        for sample in [INRSTAR, PYHL7] {
            let m = Message::parse(sample).unwrap();
            assert_eq!(m.render(), sample);
            assert_eq!(Message::parse(&m.render()).unwrap(), m);
        }
    }

    #[test]
    fn field_numbering() {
        let m = Message::parse(INRSTAR).unwrap();
        let msh = m.msh();
        assert_eq!(msh.raw(1), Some("|"));
        assert_eq!(msh.raw(2), Some("^~\\&"));
        assert_eq!(msh.text(2), "^~\\&");
        assert_eq!(msh.text(3), "iLABTP");
        assert_eq!(msh.text(7), "202401151030");
        assert_eq!(msh.component(9, 1, 2).as_deref(), Some("R01"));
        assert_eq!(msh.text(10), "32081737");
        assert_eq!(msh.raw(0), None);
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.index(), 1);
        assert_eq!(pid.component(3, 3, 1).as_deref(), Some("9999999999"));
        assert_eq!(pid.component(3, 3, 4).as_deref(), Some("NHS"));
        assert_eq!(pid.component(3, 4, 1), None);
        assert_eq!(pid.component(3, 1, 6), None);
        assert_eq!(pid.component(3, 0, 1), None);
        assert_eq!(pid.repetitions(3).count(), 3);
        assert_eq!(pid.text(5), "SMITH");
        assert_eq!(m.segments("OBX").count(), 2);
        assert_eq!(m.segments("NTE").count(), 2);
        assert_eq!(m.iter().count(), m.segment_count());
    }

    #[test]
    fn line_endings_framing_and_bom() {
        let crlf = "MSH|^~\\&|A|B\r\nPID|1||x\r\n\r\nZAB|1\n";
        let m = Message::parse(crlf).unwrap();
        assert_eq!(m.render(), "MSH|^~\\&|A|B\rPID|1||x\rZAB|1\r");
        let framed = format!("\u{b}{}\u{1c}\r", m.render());
        assert_eq!(Message::parse(&framed).unwrap(), m);
        let bom = format!("\u{feff}{}", m.render());
        assert_eq!(Message::parse(&bom).unwrap(), m);
        assert_eq!(Message::parse_bytes(&m.render_mllp()).unwrap(), m);
    }

    #[test]
    fn trailing_empty_fields_and_bare_segments_survive() {
        let s = "MSH|^~\\&|||||\rNTE\rNTE|\rZZ1|a||\r";
        let m = Message::parse(s).unwrap();
        assert_eq!(m.render(), s);
        assert_eq!(m.get(1).unwrap().field_count(), 0);
        assert_eq!(m.get(2).unwrap().field_count(), 1);
        assert_eq!(m.get(3).unwrap().field_count(), 3);
        assert_eq!(m.msh().field_count(), 7);
    }

    #[test]
    fn decoded_access() {
        let m = Message::parse("MSH|^~\\&|A\rOBX|1|TX|X^Y&Z||a\\S\\b\\.br\\c~second^part\\T\\x\r")
            .unwrap();
        let obx = m.segment("OBX").unwrap();
        assert_eq!(obx.text(5), "a^b\nc");
        assert_eq!(obx.component(5, 2, 2).as_deref(), Some("part&x"));
        assert_eq!(obx.component(3, 1, 2).as_deref(), Some("Y"));
        assert_eq!(obx.subcomponent(3, 1, 2, 2).as_deref(), Some("Z"));
        assert_eq!(
            obx.field(5).unwrap().to_value(),
            FieldValue(vec![
                vec![vec!["a^b\nc".into()]],
                vec![vec!["second".into()], vec!["part&x".into()]],
            ])
        );
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(Message::parse(""), Err(Hl7Error::Empty));
        assert_eq!(Message::parse("\u{b}\u{1c}\r"), Err(Hl7Error::Empty));
        assert!(matches!(
            Message::parse("PID|1"),
            Err(Hl7Error::MissingMsh { .. })
        ));
        assert_eq!(
            Message::parse("MSH|^~\\&\rPID|1\rpid|2").unwrap_err().to_string(),
            "segment 3: invalid segment name \"pid|2\" (expected 3 upper-case letters or digits, the first a letter)"
        );
        assert!(matches!(
            Message::parse("MSH|^~\\&\rPIDX|1"),
            Err(Hl7Error::SegmentName { index: 2, .. })
        ));
        assert_eq!(
            Message::parse("MSH|^~|A").unwrap_err().to_string(),
            "MSH-2: encoding characters \"^~\" must be 4 characters (component, repetition, escape, subcomponent) or 5 (plus truncation)"
        );
        assert_eq!(
            Message::parse("MSHA^~\\&").unwrap_err().to_string(),
            "MSH-1: field separator 'A' must be a printable ASCII punctuation character"
        );
        assert_eq!(
            Message::parse("MSH|^~\\&#|A")
                .unwrap()
                .encoding()
                .truncation(),
            Some('#')
        );
        assert_eq!(
            Message::parse_bytes(b"MSH|^~\\&|\xff"),
            Err(Hl7Error::NotUtf8 { offset: 9 })
        );
        let limits = Limits {
            max_bytes: 40,
            max_segments: 2,
            max_fields: 3,
        };
        assert_eq!(
            Message::parse_with_limits(&"x".repeat(41), &limits),
            Err(Hl7Error::TooLarge {
                size: 41,
                limit: 40
            })
        );
        assert_eq!(
            Message::parse_with_limits("MSH|^~\\&\rA01\rA02", &limits),
            Err(Hl7Error::TooManySegments { limit: 2 })
        );
        assert_eq!(
            Message::parse_with_limits("MSH|^~\\&\rA01|1|2|3|4", &limits)
                .unwrap_err()
                .to_string(),
            "segment 2 (A01): 4 fields, over the limit of 3"
        );
    }

    #[test]
    fn into_owned_is_equal() {
        let text = String::from(INRSTAR);
        let owned = Message::parse(&text).unwrap().into_owned();
        drop(text);
        assert_eq!(owned, Message::parse(INRSTAR).unwrap());
    }
}
