//! Building messages field by field.

use super::encoding::Encoding;
use super::message::{is_header, valid_segment_name, FieldValue, Hl7Error, Message, Segment};
use std::borrow::Cow;

/// Builds a [`Message`] segment by segment. The first segment must be MSH; its MSH-1 and MSH-2
/// come from the encoding. Text is escaped as it is added.
///
/// The first mistake (bad segment name, field 0, MSH-1/MSH-2, a raw value containing a field
/// separator or line break) is remembered and returned by [`MessageBuilder::build`].
///
/// ```
/// use edt_transforms::hl7::MessageBuilder;
/// let msg = MessageBuilder::new()
///     .segment("MSH")
///     .text(3, "EDTHUB")
///     .components(9, &["ACK", "R01", "ACK"])
///     .text(10, "A1")
///     .segment("MSA")
///     .text(1, "AA")
///     .text(2, "32081737")
///     .build()
///     .unwrap();
/// assert_eq!(msg.render(), "MSH|^~\\&|EDTHUB||||||ACK^R01^ACK|A1\rMSA|AA|32081737\r");
/// ```
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    encoding: Encoding,
    fields: Vec<Cow<'static, str>>,
    segments: Vec<Segment>,
    error: Option<Hl7Error>,
}

impl Default for MessageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageBuilder {
    /// A builder using `|^~\&`.
    pub fn new() -> Self {
        Self::with_encoding(Encoding::STANDARD)
    }

    /// A builder using the given delimiters.
    pub fn with_encoding(encoding: Encoding) -> Self {
        Self {
            encoding,
            fields: Vec::new(),
            segments: Vec::new(),
            error: None,
        }
    }

    /// The delimiters in use.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn fail(mut self, error: Hl7Error) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// Starts a new segment named `name` (three upper-case letters or digits).
    pub fn segment(mut self, name: &str) -> Self {
        if self.error.is_some() {
            return self;
        }
        let index = self.segments.len() + 1;
        let bytes = name.as_bytes();
        if !valid_segment_name(bytes) {
            return self.fail(Hl7Error::SegmentName {
                index,
                found: name.chars().take(16).collect(),
            });
        }
        let name = [bytes[0], bytes[1], bytes[2]];
        if self.segments.is_empty() && &name != b"MSH" {
            return self.fail(Hl7Error::Builder("the first segment must be MSH"));
        }
        let start = self.fields.len();
        if is_header(&name) {
            self.fields
                .push(Cow::Owned(self.encoding.msh2().to_string()));
        }
        self.segments.push(Segment {
            name,
            start,
            end: self.fields.len(),
        });
        self
    }

    /// Sets field `n` of the current segment to its encoded form.
    fn set(mut self, n: usize, encoded: String) -> Self {
        if self.error.is_some() {
            return self;
        }
        let Some(segment) = self.segments.last_mut() else {
            return self.fail(Hl7Error::Builder(
                "a field was set before any segment was started",
            ));
        };
        let header = is_header(&segment.name);
        let first = if header { 3 } else { 1 };
        if n < first {
            let name = String::from_utf8_lossy(&segment.name).into_owned();
            let reason = if header {
                "fields 1 and 2 of a header segment come from the encoding"
            } else {
                "fields are numbered from 1"
            };
            return self.fail(Hl7Error::Field {
                segment: name,
                field: n,
                reason,
            });
        }
        let slot = segment.start + if header { n - 2 } else { n - 1 };
        if segment.end <= slot {
            segment.end = slot + 1;
            self.fields.resize(slot + 1, Cow::Borrowed(""));
        }
        self.fields[slot] = Cow::Owned(encoded);
        self
    }

    /// Sets field `n` to one text value (escaped as needed).
    pub fn text(self, n: usize, text: &str) -> Self {
        let encoded = self.encoding.escape(text).into_owned();
        self.set(n, encoded)
    }

    /// Sets field `n` to one repetition made of these components (each escaped).
    pub fn components(self, n: usize, components: &[&str]) -> Self {
        let mut encoded = String::new();
        for (i, c) in components.iter().enumerate() {
            if i > 0 {
                encoded.push(self.encoding.component());
            }
            self.encoding.escape_into(c, &mut encoded);
        }
        self.set(n, encoded)
    }

    /// Sets field `n` to a structured value.
    pub fn value(self, n: usize, value: &FieldValue) -> Self {
        let encoded = value.encode(&self.encoding);
        self.set(n, encoded)
    }

    /// Sets field `n` to text that is already encoded. It must not contain the field
    /// separator or a line break.
    pub fn raw(self, n: usize, raw: &str) -> Self {
        if raw.contains([self.encoding.field(), '\r', '\n']) {
            let segment = self
                .segments
                .last()
                .map(|s| String::from_utf8_lossy(&s.name).into_owned())
                .unwrap_or_default();
            return self.fail(Hl7Error::Field {
                segment,
                field: n,
                reason: "encoded value contains the field separator or a line break",
            });
        }
        self.set(n, raw.to_string())
    }

    /// The message, or the first mistake made while building it.
    pub fn build(self) -> Result<Message<'static>, Hl7Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.segments.is_empty() {
            return Err(Hl7Error::Builder("a message needs an MSH segment"));
        }
        Ok(Message::from_parts(
            self.encoding,
            self.fields,
            self.segments,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_round_trips() {
        let m = MessageBuilder::new()
            .segment("MSH")
            .text(3, "LAB|ONE")
            .text(10, "X1")
            .segment("OBX")
            .text(5, "a^b\nc")
            .value(
                6,
                &FieldValue(vec![
                    vec![vec!["u".into(), "v".into()], vec!["w".into()]],
                    vec![vec!["~".into()]],
                ]),
            )
            .raw(7, "1^2")
            .segment("ZZZ")
            .build()
            .unwrap();
        let rendered = m.render();
        assert_eq!(
            rendered,
            "MSH|^~\\&|LAB\\F\\ONE|||||||X1\rOBX|||||a\\S\\b\\.br\\c|u&v^w~\\R\\|1^2\rZZZ\r"
        );
        let back = Message::parse(&rendered).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.msh().text(3), "LAB|ONE");
        assert_eq!(back.segment("OBX").unwrap().text(5), "a^b\nc");
    }

    #[test]
    fn mistakes_are_reported() {
        assert_eq!(
            MessageBuilder::new().build(),
            Err(Hl7Error::Builder("a message needs an MSH segment"))
        );
        assert_eq!(
            MessageBuilder::new().segment("PID").build(),
            Err(Hl7Error::Builder("the first segment must be MSH"))
        );
        assert!(matches!(
            MessageBuilder::new().segment("MSH").segment("pid").build(),
            Err(Hl7Error::SegmentName { index: 2, .. })
        ));
        assert_eq!(
            MessageBuilder::new()
                .segment("MSH")
                .text(2, "x")
                .build()
                .unwrap_err()
                .to_string(),
            "MSH-2: fields 1 and 2 of a header segment come from the encoding"
        );
        assert!(MessageBuilder::new()
            .segment("MSH")
            .segment("PID")
            .text(0, "x")
            .build()
            .is_err());
        assert!(MessageBuilder::new()
            .segment("MSH")
            .raw(3, "a|b")
            .build()
            .is_err());
        assert!(MessageBuilder::new().text(1, "x").build().is_err());
    }

    #[test]
    fn other_encodings() {
        let enc = Encoding::new('!', '@', '$', '%', '*', Some('+')).unwrap();
        let m = MessageBuilder::with_encoding(enc)
            .segment("MSH")
            .components(3, &["A!B", "C"])
            .build()
            .unwrap();
        assert_eq!(m.render(), "MSH!@$%*+!A%F%B@C\r");
        let rendered = m.render();
        let back = Message::parse(&rendered).unwrap();
        assert_eq!(back, m);
        assert_eq!(*back.encoding(), enc);
        assert_eq!(back.msh().component(3, 1, 1).as_deref(), Some("A!B"));
    }
}
