//! FHIR XML: a pull parser over quick-xml building the [`Element`] tree, and a writer.

use std::fmt::Write as _;

use quick_xml::escape::EscapeError;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use quick_xml::XmlVersion;

use super::error::{Error, ErrorKind};
use super::lex;
use super::schema::{self, Ctx, Type};
use super::{Element, Kind, Limits, Name, FHIR_NS, XHTML_NS};

const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const EMPTY_DIV: &str = "<div xmlns=\"http://www.w3.org/1999/xhtml\"></div>";

/// Parses a FHIR XML resource with [`Limits::default`].
pub fn parse_xml(input: &[u8]) -> Result<Element, Error> {
    parse_xml_with(input, &Limits::default())
}

/// Parses a FHIR XML resource.
///
/// The root must be a resource in the `http://hl7.org/fhir` namespace. Comments, processing
/// instructions and whitespace between elements are dropped; any other text is an error.
/// `xsi:` attributes (such as `xsi:schemaLocation`) are ignored.
pub fn parse_xml_with(input: &[u8], limits: &Limits) -> Result<Element, Error> {
    let (text, base) = lex::document_text(input, limits)?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().trim_text(false);
    let mut parser = Parser {
        reader,
        text,
        limits,
        max_depth: limits.depth(),
        base,
        stack: Vec::with_capacity(16),
        ns: Vec::new(),
        elements: 0,
        root: None,
        started: false,
    };
    parser.run()
}

/// An element being read.
struct Frame {
    elem: Element,
    /// How this element's children are resolved.
    ctx: Ctx,
    /// Whether the element repeats, so its path segment carries an index.
    repeats: bool,
    /// Whether the element is a resource slot that must hold exactly one resource.
    slot: bool,
    /// Length of the namespace stack before this element's declarations.
    ns_len: usize,
}

struct NsDecl {
    prefix: Box<str>,
    uri: Box<str>,
}

struct Parser<'a, 'l> {
    reader: Reader<&'a [u8]>,
    text: &'a str,
    limits: &'l Limits,
    max_depth: usize,
    base: usize,
    stack: Vec<Frame>,
    ns: Vec<NsDecl>,
    elements: usize,
    root: Option<Element>,
    started: bool,
}

/// The attributes FHIR uses, read from a start tag.
#[derive(Default)]
struct FhirAttrs<'e> {
    id: Option<std::borrow::Cow<'e, str>>,
    value: Option<std::borrow::Cow<'e, str>>,
    url: Option<std::borrow::Cow<'e, str>>,
    /// The first attribute FHIR does not use.
    other: Option<&'e str>,
    /// Prefixed attributes, checked once the tag's namespace declarations are known.
    prefixed: Vec<&'e str>,
}

impl<'a> Parser<'a, '_> {
    fn run(&mut self) -> Result<Element, Error> {
        loop {
            let pos = self.reader.buffer_position() as usize;
            let event = match self.reader.read_event() {
                Ok(ev) => ev,
                Err(e) => return Err(self.quick_err(e, None)),
            };
            let first = !self.started;
            self.started = true;
            match event {
                Event::Start(e) => self.start(&e, false, pos)?,
                Event::Empty(e) => self.start(&e, true, pos)?,
                Event::End(_) => self.end()?,
                Event::Text(t) => {
                    if !t.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
                        return Err(self.err(ErrorKind::Text, None));
                    }
                }
                Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(self.err(ErrorKind::Text, None));
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::Decl(d) => {
                    if !first {
                        return Err(self.err(
                            ErrorKind::Document("the XML declaration must come first"),
                            None,
                        ));
                    }
                    if let Some(Ok(enc)) = d.encoding() {
                        if !enc.eq_ignore_ascii_case("utf-8") {
                            return Err(self.err(ErrorKind::Encoding(lex::clip(&enc)), None));
                        }
                    }
                }
                Event::DocType(_) => return Err(self.err(ErrorKind::Doctype, None)),
                Event::Eof => break,
            }
        }
        if !self.stack.is_empty() {
            return Err(self.err(ErrorKind::Xml("unexpected end of input".into()), None));
        }
        self.root
            .take()
            .ok_or_else(|| self.err(ErrorKind::Document("no root element"), None))
    }

    fn offset(&self) -> usize {
        self.base + self.reader.buffer_position() as usize
    }

    /// The FHIR path of the open elements, plus `pending` (an element not yet pushed).
    fn path(&self, pending: Option<(&str, bool)>) -> String {
        let mut p = String::new();
        for (i, f) in self.stack.iter().enumerate() {
            let parent = i.checked_sub(1).map(|j| &self.stack[j].elem);
            push_segment(&mut p, parent, &f.elem.name, f.repeats);
        }
        if let Some((name, repeats)) = pending {
            push_segment(&mut p, self.stack.last().map(|f| &f.elem), name, repeats);
        }
        p
    }

    fn err(&self, kind: ErrorKind, pending: Option<(&str, bool)>) -> Error {
        Error::new(kind, self.path(pending), self.offset())
    }

    fn quick_err(&self, e: quick_xml::Error, pending: Option<(&str, bool)>) -> Error {
        let kind = match e {
            quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                ErrorKind::Entity(lex::clip(&name))
            }
            other => ErrorKind::Xml(other.to_string()),
        };
        Error::new(
            kind,
            self.path(pending),
            self.base + self.reader.error_position() as usize,
        )
    }

    fn count_element(&mut self, name: &str) -> Result<(), Error> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self.err(
                ErrorKind::TooManyElements {
                    limit: self.limits.max_elements,
                },
                Some((name, false)),
            ));
        }
        Ok(())
    }

    /// Reads the attributes of a start tag, pushing its namespace declarations.
    fn attributes<'e>(
        &mut self,
        e: &'e BytesStart<'a>,
        name: &str,
    ) -> Result<FhirAttrs<'e>, Error> {
        let mut attrs = FhirAttrs::default();
        for (count, attr) in e.attributes().enumerate() {
            let attr =
                attr.map_err(|err| self.err(ErrorKind::Xml(err.to_string()), Some((name, false))))?;
            if count >= self.limits.max_attributes {
                return Err(self.err(
                    ErrorKind::TooManyAttributes {
                        limit: self.limits.max_attributes,
                    },
                    Some((name, false)),
                ));
            }
            let Attribute { key, value: _ } = &attr;
            let key: &'e str = key.into_inner();
            let value =
                normalized(&attr).map_err(|err| self.quick_err(err, Some((name, false))))?;
            if key == "xmlns" {
                self.ns.push(NsDecl {
                    prefix: "".into(),
                    uri: value.into(),
                });
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                self.ns.push(NsDecl {
                    prefix: prefix.into(),
                    uri: value.into(),
                });
            } else {
                match key {
                    "id" => attrs.id = Some(value),
                    "value" => attrs.value = Some(value),
                    "url" => attrs.url = Some(value),
                    _ if key.contains(':') => attrs.prefixed.push(key),
                    _ => {
                        attrs.other.get_or_insert(key);
                    }
                }
            }
        }
        Ok(attrs)
    }

    /// The namespace a prefix (`""` for the default namespace) is bound to.
    fn resolve(&self, prefix: &str) -> Option<&str> {
        self.ns
            .iter()
            .rev()
            .find(|d| &*d.prefix == prefix)
            .map(|d| &*d.uri)
            .filter(|uri| !uri.is_empty())
    }

    fn start(&mut self, e: &BytesStart<'a>, empty: bool, tag_start: usize) -> Result<(), Error> {
        let qname: &str = e.name().into_inner();
        if self.root.is_some() {
            return Err(self.err(ErrorKind::Document("content after the root element"), None));
        }
        if self.stack.len() + 1 > self.max_depth {
            return Err(self.err(
                ErrorKind::TooDeep {
                    limit: self.max_depth,
                },
                Some((qname, false)),
            ));
        }
        self.count_element(qname)?;
        let ns_len = self.ns.len();
        let mut attrs = self.attributes(e, qname)?;
        let (prefix, local) = match qname.split_once(':') {
            Some((p, l)) => (p, l),
            None => ("", qname),
        };
        match self.resolve(prefix) {
            Some(FHIR_NS) => {}
            Some(XHTML_NS) => return self.xhtml(empty, tag_start, prefix, local, ns_len),
            other => {
                return Err(self.err(
                    ErrorKind::Namespace {
                        name: lex::clip(qname),
                        namespace: other.unwrap_or("(none)").to_owned(),
                        expected: FHIR_NS,
                    },
                    None,
                ))
            }
        }
        for key in std::mem::take(&mut attrs.prefixed) {
            let p = key.split_once(':').map_or("", |(p, _)| p);
            if self.resolve(p) != Some(XSI_NS) {
                attrs.other.get_or_insert(key);
            }
        }
        if let Some(other) = attrs.other {
            return Err(self.err(ErrorKind::Attribute(lex::clip(other)), Some((local, false))));
        }

        let parent = self.stack.last();
        let frame = if lex::is_resource_name(local) {
            if let Some(p) = parent {
                if !matches!(p.ctx, Ctx::Slot | Ctx::Unknown) {
                    return Err(self.err(
                        ErrorKind::Unexpected {
                            expected: "an element (resources only go in resource slots)",
                            found: local.to_owned(),
                        },
                        None,
                    ));
                }
            }
            for (attr, present) in [
                ("id", attrs.id.is_some()),
                ("value", attrs.value.is_some()),
                ("url", attrs.url.is_some()),
            ] {
                if present {
                    return Err(self.err(ErrorKind::Attribute(attr.into()), Some((local, false))));
                }
            }
            let name: Name = match schema::resource(local) {
                Some(def) => def.name.into(),
                None => local.to_owned().into(),
            };
            Frame {
                elem: Element::resource(name),
                ctx: Ctx::resource(local),
                repeats: false,
                slot: false,
                ns_len,
            }
        } else if lex::is_element_name(local) {
            let Some(parent) = parent else {
                return Err(self.err(
                    ErrorKind::Unexpected {
                        expected: "a resource as the root element",
                        found: local.to_owned(),
                    },
                    None,
                ));
            };
            if matches!(parent.ctx, Ctx::Slot) {
                return Err(self.err(
                    ErrorKind::Unexpected {
                        expected: "a resource",
                        found: local.to_owned(),
                    },
                    None,
                ));
            }
            let parent_is_resource = parent.elem.kind == Kind::Resource;
            let parent_is_extension = is_extension_name(&parent.elem.name);
            let resolved = schema::child(parent.ctx, local);
            let repeats = resolved.is_some_and(|r| r.repeats);
            let pending = Some((local, repeats));
            match local {
                "div" => {
                    return Err(self.err(
                        ErrorKind::Namespace {
                            name: "div".into(),
                            namespace: FHIR_NS.into(),
                            expected: XHTML_NS,
                        },
                        pending,
                    ))
                }
                "resourceType" => {
                    return Err(self.err(ErrorKind::InvalidName(local.into()), pending))
                }
                "id" if !parent_is_resource => {
                    return Err(self.err(
                        ErrorKind::Unexpected {
                            expected: "`id` as an attribute of its parent",
                            found: "an `id` element".into(),
                        },
                        pending,
                    ))
                }
                "url" if parent_is_extension => {
                    return Err(self.err(
                        ErrorKind::Unexpected {
                            expected: "`url` as an attribute of the extension",
                            found: "a `url` element".into(),
                        },
                        pending,
                    ))
                }
                _ => {}
            }
            let ty = resolved.map(|r| r.ty);
            if attrs.url.is_some() && !is_extension_name(local) {
                return Err(self.err(ErrorKind::Attribute("url".into()), pending));
            }
            let limits = self.limits;
            let check = |v: &str, what: &'static str, limit: usize| -> Result<(), ErrorKind> {
                if v.len() > limit {
                    return Err(ErrorKind::TooLong {
                        what,
                        len: v.len(),
                        limit,
                    });
                }
                if let Some((_, c)) = lex::find_forbidden(v) {
                    return Err(ErrorKind::ForbiddenChar(c));
                }
                Ok(())
            };
            for v in [&attrs.id, &attrs.url].into_iter().flatten() {
                check(v, "attribute value", limits.max_value_len)
                    .map_err(|k| self.err(k, pending))?;
            }
            if let Some(v) = &attrs.value {
                let result = match ty {
                    Some(Type::Primitive(p)) => {
                        let (what, limit) = if p == schema::Primitive::Base64Binary {
                            ("base64 value", limits.max_base64_len)
                        } else {
                            ("value", limits.max_value_len)
                        };
                        check(v, what, limit).and_then(|()| lex::check_primitive(p, v))
                    }
                    Some(_) => Err(ErrorKind::Attribute("value".into())),
                    None => check(v, "value", limits.max_value_len),
                };
                result.map_err(|k| self.err(k, pending))?;
            }
            let name: Name = match resolved {
                Some(r) => r.name.into(),
                None => local.to_owned().into(),
            };
            Frame {
                elem: Element {
                    name,
                    kind: Kind::Element,
                    id: attrs.id.map(Into::into),
                    url: attrs.url.map(Into::into),
                    value: attrs.value.map(Into::into),
                    children: Vec::new(),
                },
                ctx: Ctx::of(ty),
                repeats,
                slot: matches!(ty, Some(Type::Resource)),
                ns_len,
            }
        } else {
            return Err(self.err(ErrorKind::InvalidName(lex::clip(local)), None));
        };
        if empty {
            self.finish(frame)
        } else {
            self.stack.push(frame);
            Ok(())
        }
    }

    fn end(&mut self) -> Result<(), Error> {
        match self.stack.pop() {
            Some(frame) => self.finish(frame),
            None => Err(self.err(ErrorKind::Xml("unmatched end tag".into()), None)),
        }
    }

    /// Checks a completed element and attaches it to its parent.
    fn finish(&mut self, frame: Frame) -> Result<(), Error> {
        let e = &frame.elem;
        let holds_resource = e.children.iter().any(|c| c.kind == Kind::Resource);
        if frame.slot || holds_resource {
            let ok = holds_resource
                && e.children.len() == 1
                && e.id.is_none()
                && e.value.is_none()
                && e.url.is_none();
            if !ok {
                return Err(self.err(
                    ErrorKind::Slot(e.name.to_string()),
                    Some((&e.name, frame.repeats)),
                ));
            }
        }
        self.ns.truncate(frame.ns_len);
        match self.stack.last_mut() {
            Some(parent) => parent.elem.children.push(frame.elem),
            None => self.root = Some(frame.elem),
        }
        Ok(())
    }

    /// Reads a narrative `div` whose start tag was just read and keeps its text verbatim.
    fn xhtml(
        &mut self,
        empty: bool,
        tag_start: usize,
        prefix: &str,
        local: &str,
        ns_len: usize,
    ) -> Result<(), Error> {
        let pending = Some((local, false));
        if local != "div" {
            return Err(self.err(
                ErrorKind::Namespace {
                    name: lex::clip(local),
                    namespace: XHTML_NS.into(),
                    expected: "http://hl7.org/fhir (only the narrative div is XHTML)",
                },
                pending,
            ));
        }
        let own_default = self.ns[ns_len..]
            .iter()
            .any(|d| d.prefix.is_empty() && &*d.uri == XHTML_NS);
        if !prefix.is_empty() || !own_default {
            return Err(self.err(
                ErrorKind::Xhtml(format!(
                    "the div must declare xmlns=\"{XHTML_NS}\" on itself, without a prefix"
                )),
                pending,
            ));
        }
        match self.stack.last() {
            None => {
                return Err(self.err(
                    ErrorKind::Unexpected {
                        expected: "a resource as the root element",
                        found: "div".into(),
                    },
                    None,
                ))
            }
            Some(p) if matches!(p.ctx, Ctx::Slot) => {
                return Err(self.err(
                    ErrorKind::Unexpected {
                        expected: "a resource",
                        found: "div".into(),
                    },
                    None,
                ))
            }
            Some(_) => {}
        }
        let end = if empty {
            self.reader.buffer_position() as usize
        } else {
            let mut budget = Budget {
                depth_left: self.max_depth - self.stack.len() - 1,
                depth_limit: self.max_depth,
                elements: &mut self.elements,
                max_elements: self.limits.max_elements,
                max_attributes: self.limits.max_attributes,
                max_len: self.limits.max_xhtml_len,
            };
            match skip_xhtml(&mut self.reader, tag_start, &mut budget) {
                Ok(end) => end,
                Err(kind) => return Err(self.err(kind, pending)),
            }
        };
        let raw = &self.text[tag_start..end];
        if raw.len() > self.limits.max_xhtml_len {
            return Err(self.err(
                ErrorKind::TooLong {
                    what: "narrative div",
                    len: raw.len(),
                    limit: self.limits.max_xhtml_len,
                },
                pending,
            ));
        }
        if let Some((_, c)) = lex::find_forbidden(raw) {
            return Err(self.err(ErrorKind::ForbiddenChar(c), pending));
        }
        self.ns.truncate(ns_len);
        let div = Element::xhtml(raw);
        if let Some(parent) = self.stack.last_mut() {
            parent.elem.children.push(div);
        }
        Ok(())
    }
}

fn is_extension_name(name: &str) -> bool {
    name == "extension" || name == "modifierExtension"
}

fn push_segment(p: &mut String, parent: Option<&Element>, name: &str, repeats: bool) {
    if !p.is_empty() {
        p.push('.');
    }
    p.push_str(name);
    if let Some(parent) = parent {
        let index = parent.children.iter().filter(|c| c.name == *name).count();
        if repeats || index > 0 {
            let _ = write!(p, "[{index}]");
        }
    }
}

/// What the content of a narrative `div` may still use.
pub(crate) struct Budget<'c> {
    /// Nesting levels left below the div.
    pub depth_left: usize,
    /// The configured depth limit, for the error.
    pub depth_limit: usize,
    /// Elements counted so far in the document.
    pub elements: &'c mut usize,
    /// Most elements in the document.
    pub max_elements: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Longest div, in bytes.
    pub max_len: usize,
}

impl Budget<'_> {
    fn element(&mut self, e: &BytesStart) -> Result<(), ErrorKind> {
        *self.elements += 1;
        if *self.elements > self.max_elements {
            return Err(ErrorKind::TooManyElements {
                limit: self.max_elements,
            });
        }
        xhtml_attributes(e, self.max_attributes).map(|_| ())
    }
}

/// Checks the attributes of an XHTML start tag; returns whether it declares the XHTML
/// namespace as its default namespace.
fn xhtml_attributes(e: &BytesStart, max_attributes: usize) -> Result<bool, ErrorKind> {
    let mut default_xhtml = false;
    for (count, attr) in e.attributes().enumerate() {
        let attr = attr.map_err(|err| ErrorKind::Xml(err.to_string()))?;
        if count >= max_attributes {
            return Err(ErrorKind::TooManyAttributes {
                limit: max_attributes,
            });
        }
        let value = normalized(&attr).map_err(escape_kind)?;
        if let Some((_, c)) = lex::find_forbidden(&value) {
            return Err(ErrorKind::ForbiddenChar(c));
        }
        if attr.key.into_inner() == "xmlns" && value == XHTML_NS {
            default_xhtml = true;
        }
    }
    Ok(default_xhtml)
}

/// An attribute's value after XML attribute-value normalisation (references resolved, literal
/// whitespace characters turned into spaces). Values with nothing to normalise are borrowed.
fn normalized<'e>(attr: &Attribute<'e>) -> Result<std::borrow::Cow<'e, str>, quick_xml::Error> {
    #[inline(always)]
    fn needs_work(c: u8) -> bool {
        (c == b'&') | (c == b'\t') | (c == b'\n') | (c == b'\r')
    }
    let raw = attr.value.as_bytes();
    if lex::position(raw, 0, needs_work) == raw.len() {
        Ok(attr.value.clone())
    } else {
        attr.normalized_value(XmlVersion::Implicit1_0)
    }
}

fn escape_kind(e: quick_xml::Error) -> ErrorKind {
    match e {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            ErrorKind::Entity(lex::clip(&name))
        }
        other => ErrorKind::Xml(other.to_string()),
    }
}

/// Reads the content of an XHTML element whose start tag (at byte `start`) was just read, up
/// to and including its end tag, checking it against the budget. Returns the byte position
/// after the end tag.
pub(crate) fn skip_xhtml(
    reader: &mut Reader<&[u8]>,
    start: usize,
    budget: &mut Budget,
) -> Result<usize, ErrorKind> {
    let mut depth = 1usize;
    loop {
        let event = reader.read_event().map_err(escape_kind)?;
        let pos = reader.buffer_position() as usize;
        if pos - start > budget.max_len {
            return Err(ErrorKind::TooLong {
                what: "narrative div",
                len: pos - start,
                limit: budget.max_len,
            });
        }
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth > budget.depth_left + 1 {
                    return Err(ErrorKind::TooDeep {
                        limit: budget.depth_limit,
                    });
                }
                budget.element(&e)?;
            }
            Event::Empty(e) => budget.element(&e)?,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(pos);
                }
            }
            Event::GeneralRef(r) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if lex::is_xml_char(c) => {}
                        Ok(Some(c)) => return Err(ErrorKind::ForbiddenChar(c as u32)),
                        _ => return Err(ErrorKind::Entity(lex::clip(&r))),
                    }
                } else if !matches!(&*r, "lt" | "gt" | "amp" | "apos" | "quot") {
                    return Err(ErrorKind::Entity(lex::clip(&r)));
                }
            }
            Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(ErrorKind::Doctype),
            Event::Decl(_) => {
                return Err(ErrorKind::Xhtml(
                    "XML declaration inside the narrative".into(),
                ))
            }
            Event::Eof => return Err(ErrorKind::Xml("unexpected end of input".into())),
        }
    }
}

/// Checks that `s` is exactly one well-formed `<div xmlns="http://www.w3.org/1999/xhtml">`
/// element, as the JSON form of a narrative must be before it is copied into XML. The div
/// itself has already been counted and depth-checked by the caller; its content is checked
/// against `budget`. On error, also returns the byte offset within `s`.
pub(crate) fn check_xhtml_fragment(s: &str, budget: &mut Budget) -> Result<(), (ErrorKind, usize)> {
    let mut reader = Reader::from_str(s);
    reader.config_mut().check_end_names = true;
    let at = |r: &Reader<&[u8]>| r.buffer_position() as usize;
    let first = reader
        .read_event()
        .map_err(|e| (escape_kind(e), reader.error_position() as usize))?;
    let (e, empty) = match first {
        Event::Start(e) => (e, false),
        Event::Empty(e) => (e, true),
        _ => {
            return Err((
                ErrorKind::Xhtml(format!(
                    "the narrative must start with <div xmlns=\"{XHTML_NS}\">"
                )),
                0,
            ))
        }
    };
    if e.name().into_inner() != "div" {
        return Err((
            ErrorKind::Xhtml("the narrative's root element must be `div`".into()),
            0,
        ));
    }
    if !xhtml_attributes(&e, budget.max_attributes).map_err(|k| (k, 0))? {
        return Err((
            ErrorKind::Xhtml(format!("the div must declare xmlns=\"{XHTML_NS}\"")),
            0,
        ));
    }
    if !empty {
        skip_xhtml(&mut reader, 0, budget).map_err(|k| (k, at(&reader)))?;
    }
    if at(&reader) != s.len() {
        return Err((
            ErrorKind::Xhtml("content after the closing </div>".into()),
            at(&reader),
        ));
    }
    Ok(())
}

/// Writes a resource as compact FHIR XML (no XML declaration).
pub fn to_xml(root: &Element) -> String {
    let mut w = XmlWriter {
        out: String::with_capacity(4096),
        pretty: false,
    };
    w.element(root, 0, true);
    w.out
}

/// Writes a resource as indented FHIR XML (no XML declaration). Narrative `div`s are copied
/// verbatim.
pub fn to_xml_pretty(root: &Element) -> String {
    let mut w = XmlWriter {
        out: String::with_capacity(4096),
        pretty: true,
    };
    w.element(root, 0, true);
    w.out.push('\n');
    w.out
}

struct XmlWriter {
    out: String,
    pretty: bool,
}

impl XmlWriter {
    fn indent(&mut self, depth: usize) {
        if self.pretty && (depth > 0 || !self.out.is_empty()) {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn element(&mut self, e: &Element, depth: usize, root: bool) {
        self.indent(depth);
        if e.kind == Kind::Xhtml {
            self.out.push_str(e.value.as_deref().unwrap_or(EMPTY_DIV));
            return;
        }
        self.out.push('<');
        self.out.push_str(&e.name);
        if root {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(FHIR_NS);
            self.out.push('"');
        }
        for (key, value) in [("id", &e.id), ("url", &e.url), ("value", &e.value)] {
            if let Some(v) = value {
                self.out.push(' ');
                self.out.push_str(key);
                self.out.push_str("=\"");
                lex::escape_attr(&mut self.out, v);
                self.out.push('"');
            }
        }
        if e.children.is_empty() {
            self.out.push_str("/>");
            return;
        }
        self.out.push('>');
        for c in &e.children {
            self.element(c, depth + 1, false);
        }
        self.indent(depth);
        self.out.push_str("</");
        self.out.push_str(&e.name);
        self.out.push('>');
    }
}
