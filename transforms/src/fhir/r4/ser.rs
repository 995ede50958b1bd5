//! A compact JSON writer for the R4 resources: the same text `serde_json` writes for them
//! (a property test holds the two to the same bytes), with less work per member. Field names
//! are written as they stand (they are Rust identifiers); strings go through the escaper the
//! STU3 writer uses, which copies runs that need no escaping in one go.
//!
//! Only what the resources use is supported: structs, internally tagged enums, sequences,
//! options, strings and numbers. Anything else is an error, never a panic.

use serde::ser::{self, Serialize};

use crate::fhir::lex::escape_json;

/// Why a value could not be written (a value of a kind no resource holds).
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

fn unsupported(what: &str) -> Error {
    Error(format!("a FHIR resource holds no {what}"))
}

/// Appends `value` as compact JSON to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut String, value: &T) -> Result<(), Error> {
    value.serialize(Writer { out, plain: false })
}

/// The name of a newtype holding a string that needs no escaping (see [`plain`]): written
/// as it stands here, and as the string it holds by any other serializer.
pub(super) const PLAIN: &str = "$edthub::plain";

/// True when JSON takes `s` as it stands: no control characters, quotes or backslashes.
pub(super) const fn plain(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x20 || b[i] == b'"' || b[i] == b'\\' {
            return false;
        }
        i += 1;
    }
    true
}

struct Writer<'o> {
    out: &'o mut String,
    /// The string written next needs no escaping.
    plain: bool,
}

/// An open object or array: whether a member has been written yet.
pub struct Compound<'o> {
    out: &'o mut String,
    first: bool,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(',');
        }
    }
}

impl Writer<'_> {
    fn integer(self, v: impl std::fmt::Display) -> Result<(), Error> {
        use std::fmt::Write;
        write!(self.out, "{v}").map_err(|_| unsupported("unwritable integer"))
    }
}

impl<'o> ser::Serializer for Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'o>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = Compound<'o>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.integer(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        // Decimals are rare (result values and ranges): serde_json writes them, so they read
        // back as the same number.
        let mut buf = [0u8; 40];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        serde_json::to_writer(&mut cursor, &v).map_err(|e| Error(e.to_string()))?;
        let n = cursor.position() as usize;
        self.out
            .push_str(std::str::from_utf8(&buf[..n]).map_err(|e| Error(e.to_string()))?);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        escape_json(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        if self.plain {
            debug_assert!(plain(v));
            self.out.push('"');
            self.out.push_str(v);
            self.out.push('"');
        } else {
            escape_json(self.out, v);
        }
        Ok(())
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(unsupported("bytes"))
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Error> {
        self.serialize_str(v)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(Writer {
            out: self.out,
            plain: name == PLAIN,
        })
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(unsupported("externally tagged enum"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'o>, Error> {
        self.out.push('[');
        Ok(Compound {
            out: self.out,
            first: true,
        })
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(unsupported("tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(unsupported("tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported("tuple variant"))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unsupported("map"))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'o>, Error> {
        self.out.push('{');
        Ok(Compound {
            out: self.out,
            first: true,
        })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported("struct variant"))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(Writer {
            out: &mut *self.out,
            plain: false,
        })
    }

    fn end(self) -> Result<(), Error> {
        self.out.push(']');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.comma();
        // Field names are Rust identifiers (or their camelCase renames): nothing to escape.
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        value.serialize(Writer {
            out: &mut *self.out,
            plain: false,
        })
    }

    fn end(self) -> Result<(), Error> {
        self.out.push('}');
        Ok(())
    }
}

/// A JSON object written member by member, straight into the output (for what is written
/// without being built as a resource first). Keys are the hub's own (plain ASCII).
pub(super) struct Obj<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Obj<'o> {
    /// Opens an object.
    pub(super) fn open(out: &'o mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    /// Carries on an object whose first members are already written.
    pub(super) fn resume(out: &'o mut String) -> Self {
        Obj { out, first: false }
    }

    /// Writes `"key":` (after a comma when needed) and gives the output for its value.
    pub(super) fn key(&mut self, key: &str) -> &mut String {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// A string that JSON takes as it stands (the hub's ids, URLs and codes).
    pub(super) fn plain(&mut self, key: &str, value: &str) {
        debug_assert!(plain(value), "{value:?} needs escaping");
        let out = self.key(key);
        out.push('"');
        out.push_str(value);
        out.push('"');
    }

    /// Any value the resources hold.
    pub(super) fn value<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let out = self.key(key);
        write(out, value).expect("resource values are what JSON can hold");
    }

    /// A value when there is one.
    pub(super) fn some<T: Serialize>(&mut self, key: &str, value: Option<&T>) {
        if let Some(v) = value {
            self.value(key, v);
        }
    }

    /// A list, left out when empty.
    pub(super) fn list<T: Serialize>(&mut self, key: &str, items: &[T]) {
        if !items.is_empty() {
            self.value(key, items);
        }
    }

    /// A Reference to a resource of the bundle by its URL.
    pub(super) fn reference(&mut self, key: &str, url: &str) {
        let out = self.key(key);
        reference(out, url);
    }

    /// A list of References by URL, left out when empty.
    pub(super) fn references<'u>(&mut self, key: &str, urls: impl IntoIterator<Item = &'u str>) {
        self.array(key, urls, reference);
    }

    /// A list whose items `write` writes, left out when empty.
    pub(super) fn array<I: IntoIterator>(
        &mut self,
        key: &str,
        items: I,
        mut write: impl FnMut(&mut String, I::Item),
    ) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        let out = self.key(key);
        out.push('[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write(out, item);
        }
        out.push(']');
    }

    /// The output, to write a member's value in place.
    pub(super) fn out(&mut self) -> &mut String {
        self.out
    }

    /// Ends the object, giving back the output.
    pub(super) fn close(self) -> &'o mut String {
        self.out.push('}');
        self.out
    }
}

/// `{"reference":"URL"}`.
pub(super) fn reference(out: &mut String, url: &str) {
    debug_assert!(plain(url), "{url:?} needs escaping");
    out.push_str("{\"reference\":\"");
    out.push_str(url);
    out.push_str("\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours<T: Serialize>(v: &T) -> String {
        let mut out = String::new();
        write(&mut out, v).unwrap();
        out
    }

    #[test]
    fn what_no_resource_holds_is_an_error() {
        let mut out = String::new();
        assert!(write(&mut out, &std::collections::BTreeMap::from([(1, 2)])).is_err());
        assert!(write(&mut out, &(1, 2)).is_err());
    }

    proptest::proptest! {
        /// Any text and number is written as serde_json writes it.
        #[test]
        fn strings_and_numbers_as_serde_json_writes_them(
            s in "\\PC*|[\\x00-\\x7f]{0,40}",
            i in proptest::num::i64::ANY,
            u in proptest::num::u64::ANY,
            f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        ) {
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Sample<'a> {
                text: &'a str,
                list: Vec<&'a str>,
                int: i64,
                unsigned: u64,
                float: f64,
                #[serde(skip_serializing_if = "Option::is_none")]
                absent: Option<&'a str>,
                present: Option<serde_json::Number>,
                flag: bool,
            }
            let v = Sample {
                text: &s,
                list: vec![&s, "a\"b\\c\n"],
                int: i,
                unsigned: u,
                float: f,
                absent: None,
                present: serde_json::Number::from_f64(f),
                flag: true,
            };
            proptest::prop_assert_eq!(ours(&v), serde_json::to_string(&v).unwrap());
        }
    }
}
