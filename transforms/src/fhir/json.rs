//! FHIR JSON: a parser that keeps numbers as their text (so `1.50` stays `1.50`) and builds the
//! [`Element`] tree directly, and a writer.

use std::borrow::Cow;
use std::collections::HashMap;

use super::error::{Error, ErrorKind};
use super::lex;
use super::schema::{self, Ctx, JsonKind, Resolved, Type};
use super::xml::{check_xhtml_fragment, Budget};
use super::{Element, Kind, Limits, Name};

/// Parses a FHIR JSON resource with [`Limits::default`].
pub fn parse_json(input: &[u8]) -> Result<Element, Error> {
    parse_json_with(input, &Limits::default())
}

/// Parses a FHIR JSON resource.
///
/// Known primitives must have their JSON type (boolean, number or string); numbers keep their
/// exact text. `fhir_comments` members are dropped. Duplicate members are an error.
pub fn parse_json_with(input: &[u8], limits: &Limits) -> Result<Element, Error> {
    let (s, base) = lex::document_text(input, limits)?;
    let mut p = Parser {
        s,
        b: s.as_bytes(),
        pos: 0,
        base,
        limits,
        max_depth: limits.depth(),
        elements: 0,
        path: Vec::with_capacity(16),
        ahead: Lookahead::default(),
    };
    p.root()
}

struct Seg<'a> {
    name: Cow<'a, str>,
    index: Option<usize>,
}

struct Parser<'a, 'l> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    base: usize,
    limits: &'l Limits,
    max_depth: usize,
    elements: usize,
    path: Vec<Seg<'a>>,
    ahead: Lookahead,
}

/// What the `resourceType` look-ahead has learnt.
#[derive(Default)]
struct Lookahead {
    /// The last object scanned completely, as a byte range.
    scanned: Option<(usize, usize)>,
    /// Objects inside that range with a `resourceType` string: object start → string start.
    found: HashMap<usize, usize>,
}

/// How the members of a JSON object map to an element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A resource: `resourceType` names it; `id` is a child element.
    Resource,
    /// An element: `id` is its attribute; `url` too for an extension.
    Element { extension: bool },
    /// A `_name` companion of a primitive: `id` attribute and extensions.
    Companion,
}

const HAS_VALUE: u8 = 1;
const HAS_COMPANION: u8 = 2;
const NOT_PRIMITIVE: u8 = 4;

struct Group<'a> {
    name: Cow<'a, str>,
    start: usize,
    len: usize,
    values: bool,
    companions: bool,
}

/// Children of an object being read, grouped by member name so `name` and `_name` line up.
#[derive(Default)]
struct Builder<'a> {
    children: Vec<Element>,
    present: Vec<u8>,
    groups: Vec<Group<'a>>,
    index: HashMap<Cow<'a, str>, usize>,
}

impl<'a> Builder<'a> {
    const LINEAR: usize = 16;

    fn find(&self, name: &str) -> Option<usize> {
        if self.groups.len() <= Self::LINEAR {
            self.groups.iter().position(|g| g.name == name)
        } else {
            self.index.get(name).copied()
        }
    }

    fn add(&mut self, g: Group<'a>) {
        self.groups.push(g);
        if self.groups.len() == Self::LINEAR + 1 {
            for (i, g) in self.groups.iter().enumerate() {
                self.index.insert(g.name.clone(), i);
            }
        } else if self.groups.len() > Self::LINEAR + 1 {
            let i = self.groups.len() - 1;
            self.index.insert(self.groups[i].name.clone(), i);
        }
    }
}

fn expected(ty: Option<Type>) -> &'static str {
    match ty {
        Some(Type::Primitive(p)) => match p.json_kind() {
            JsonKind::Boolean => "a JSON boolean",
            JsonKind::Number => "a JSON number",
            JsonKind::String => "a JSON string",
        },
        Some(Type::Complex(_)) => "a JSON object",
        Some(Type::Resource) => "a resource object",
        Some(Type::Xhtml) => "an XHTML string",
        None => "a JSON value",
    }
}

fn is_extension_name(name: &str) -> bool {
    name == "extension" || name == "modifierExtension"
}

impl<'a> Parser<'a, '_> {
    // --- errors and paths ---

    fn path_string(&self) -> String {
        let mut p = String::new();
        for seg in &self.path {
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(&seg.name);
            if let Some(i) = seg.index {
                p.push('[');
                p.push_str(&i.to_string());
                p.push(']');
            }
        }
        p
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(kind, self.path_string(), self.base + self.pos)
    }

    fn syntax(&self, msg: &str) -> Error {
        self.err(ErrorKind::Json(msg.to_owned()))
    }

    // --- lexing ---

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, msg: &str) -> Result<(), Error> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(msg))
        }
    }

    fn found(&mut self) -> &'static str {
        match self.peek() {
            Some(b'{') => "object",
            Some(b'[') => "array",
            Some(b'"') => "string",
            Some(b't' | b'f') => "boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "number",
            _ => "invalid token",
        }
    }

    fn literal(&mut self, lit: &str) -> Result<(), Error> {
        if self.b[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    fn number(&mut self) -> Result<&'a str, Error> {
        match lex::number_end(self.b, self.pos) {
            Some(end) => {
                let n = &self.s[self.pos..end];
                self.pos = end;
                Ok(n)
            }
            None => Err(self.syntax("invalid number")),
        }
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .b
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.syntax("truncated \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let x = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.syntax("invalid \\u escape"))?;
            v = v * 16 + x;
        }
        self.pos += 4;
        Ok(v)
    }

    /// Reads a string literal; the position is at its opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        self.pos += 1;
        let start = self.pos;
        self.plain_run()?;
        match self.b.get(self.pos) {
            None => return Err(self.syntax("unterminated string")),
            Some(b'"') => {
                let s = &self.s[start..self.pos];
                self.pos += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(_) => {}
        }
        let mut out = String::from(&self.s[start..self.pos]);
        loop {
            match self.b.get(self.pos) {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(_) => {
                    let c = self.escape()?;
                    out.push(c);
                    let run = self.pos;
                    self.plain_run()?;
                    out.push_str(&self.s[run..self.pos]);
                }
            }
        }
    }

    /// Reads one escape sequence; the position is at its backslash.
    fn escape(&mut self) -> Result<char, Error> {
        let esc_at = self.pos;
        self.pos += 1;
        let c = match self.b.get(self.pos) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if !self.b[self.pos..].starts_with(b"\\u") {
                        return Err(self.err(ErrorKind::ForbiddenChar(hi)));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.err(ErrorKind::ForbiddenChar(hi)));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                self.pos -= 1;
                char::from_u32(code).ok_or_else(|| self.err(ErrorKind::ForbiddenChar(code)))?
            }
            _ => return Err(self.syntax("invalid escape")),
        };
        self.pos += 1;
        if !lex::is_xml_char(c) {
            self.pos = esc_at;
            return Err(self.err(ErrorKind::ForbiddenChar(c as u32)));
        }
        Ok(c)
    }

    /// Advances over unescaped string content up to a quote, a backslash or the end,
    /// rejecting control characters and U+FFFE/U+FFFF.
    fn plain_run(&mut self) -> Result<(), Error> {
        #[inline(always)]
        fn stop(c: u8) -> bool {
            (c < 0x20) | (c == b'"') | (c == b'\\') | (c == 0xEF)
        }
        loop {
            self.pos = lex::position(self.b, self.pos, stop);
            match self.b.get(self.pos) {
                None | Some(b'"' | b'\\') => return Ok(()),
                Some(b'\t' | b'\n' | b'\r') => {
                    return Err(self.syntax("unescaped control character in a string"));
                }
                Some(&c) if c < 0x20 => {
                    return Err(self.err(ErrorKind::ForbiddenChar(c as u32)));
                }
                Some(_) => {
                    if self.b.get(self.pos + 1) == Some(&0xBF) {
                        if let Some(&x) = self.b.get(self.pos + 2) {
                            if x >= 0xBE {
                                return Err(
                                    self.err(ErrorKind::ForbiddenChar(0xFFC0 | (x & 0x3F) as u32))
                                );
                            }
                        }
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// Skips any JSON value. Objects passed over that have a `resourceType` string member are
    /// noted in the look-ahead, so later look-ups inside this value need no second scan.
    fn skip_value(&mut self, nesting: usize) -> Result<(), Error> {
        if nesting > self.max_depth * 2 + 8 {
            return Err(self.err(ErrorKind::TooDeep {
                limit: self.max_depth,
            }));
        }
        match self.peek() {
            Some(b'{') => {
                let object_at = self.pos;
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(self.syntax("expected a member name"));
                    }
                    let key = self.string()?;
                    self.expect(b':', "expected `:`")?;
                    if key == "resourceType" && self.peek() == Some(b'"') {
                        if self.ahead.found.len() >= self.limits.max_elements {
                            return Err(self.err(ErrorKind::TooManyElements {
                                limit: self.limits.max_elements,
                            }));
                        }
                        self.ahead.found.entry(object_at).or_insert(self.pos);
                    }
                    self.skip_value(nesting + 1)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.syntax("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(nesting + 1)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.syntax("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(self.syntax("expected a value")),
        }
    }

    /// Finds the `resourceType` of the object at the current position without moving.
    ///
    /// When it is the first member this is immediate. Otherwise the whole object is scanned
    /// once; every object inside it is noted at the same time, so the scan is never repeated
    /// for the objects nested in it and the look-ahead stays linear in the input.
    fn find_resource_type(&mut self) -> Result<Option<Cow<'a, str>>, Error> {
        let save = self.pos;
        let in_scanned = self
            .ahead
            .scanned
            .is_some_and(|(a, b)| a <= save && save < b);
        if !in_scanned {
            // Fast path: `resourceType` first.
            self.pos += 1;
            if self.peek() == Some(b'"') {
                let key = self.string()?;
                if key == "resourceType" {
                    self.expect(b':', "expected `:`")?;
                    if self.peek() != Some(b'"') {
                        let found = self.found();
                        return Err(self.err(ErrorKind::JsonType {
                            expected: "a resource type string",
                            found,
                        }));
                    }
                    let rt = self.string()?;
                    self.pos = save;
                    return Ok(Some(rt));
                }
            }
            self.pos = save;
            self.ahead.found.clear();
            self.skip_value(1)?;
            self.ahead.scanned = Some((save, self.pos));
        }
        let found = match self.ahead.found.get(&save) {
            Some(&at) => {
                self.pos = at;
                Some(self.string()?)
            }
            None => None,
        };
        self.pos = save;
        Ok(found)
    }

    // --- structure ---

    fn root(&mut self) -> Result<Element, Error> {
        if self.peek() != Some(b'{') {
            let found = self.found();
            return Err(self.err(ErrorKind::JsonType {
                expected: "a resource object",
                found,
            }));
        }
        let rt = self
            .find_resource_type()?
            .ok_or_else(|| self.err(ErrorKind::MissingResourceType))?;
        let e = self.resource(rt, 1)?;
        if self.peek().is_some() {
            return Err(self.syntax("content after the resource"));
        }
        Ok(e)
    }

    fn enter(&mut self, depth: usize) -> Result<(), Error> {
        if depth > self.max_depth {
            return Err(self.err(ErrorKind::TooDeep {
                limit: self.max_depth,
            }));
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self.err(ErrorKind::TooManyElements {
                limit: self.limits.max_elements,
            }));
        }
        Ok(())
    }

    /// Reads a resource object at `depth`; the position is at its `{`.
    fn resource(&mut self, rt: Cow<'a, str>, depth: usize) -> Result<Element, Error> {
        if !lex::is_resource_name(&rt) {
            return Err(self.err(ErrorKind::InvalidName(lex::clip(&rt))));
        }
        let name: Name = match schema::resource(&rt) {
            Some(d) => d.name.into(),
            None => rt.clone().into_owned().into(),
        };
        self.path.push(Seg {
            name: rt,
            index: None,
        });
        self.enter(depth)?;
        let ctx = Ctx::resource(&name);
        let mut e = Element::resource(name);
        self.object(&mut e, ctx, Mode::Resource, depth)?;
        self.path.pop();
        Ok(e)
    }

    /// Reads the members of an object into `e`, which is at `depth`.
    fn object(&mut self, e: &mut Element, ctx: Ctx, mode: Mode, depth: usize) -> Result<(), Error> {
        self.expect(b'{', "expected `{`")?;
        let mut b = Builder::default();
        let mut seen_type = false;
        let mut seen_id = false;
        let mut seen_url = false;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            e.children = b.children;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected a member name"));
            }
            let key = self.string()?;
            self.expect(b':', "expected `:`")?;
            match (&*key, mode) {
                ("resourceType", Mode::Resource) => {
                    if std::mem::replace(&mut seen_type, true) {
                        return Err(self.err(ErrorKind::DuplicateKey(key.into_owned())));
                    }
                    if self.peek() != Some(b'"') {
                        let found = self.found();
                        return Err(self.err(ErrorKind::JsonType {
                            expected: "a resource type string",
                            found,
                        }));
                    }
                    self.string()?;
                }
                ("resourceType", _) => {
                    return Err(self.err(ErrorKind::Unexpected {
                        expected: "element content (a resource is not allowed here)",
                        found: "resourceType".into(),
                    }))
                }
                ("id", Mode::Element { .. } | Mode::Companion) => {
                    if std::mem::replace(&mut seen_id, true) {
                        return Err(self.err(ErrorKind::DuplicateKey(key.into_owned())));
                    }
                    e.id = Some(self.attribute_string()?);
                }
                ("url", Mode::Element { extension: true }) => {
                    if std::mem::replace(&mut seen_url, true) {
                        return Err(self.err(ErrorKind::DuplicateKey(key.into_owned())));
                    }
                    e.url = Some(self.attribute_string()?);
                }
                ("_id", Mode::Element { .. } | Mode::Companion)
                | ("_url", Mode::Element { extension: true })
                | ("_resourceType", _) => {
                    return Err(self.err(ErrorKind::Unexpected {
                        expected: "a member that is not an attribute companion",
                        found: key.into_owned(),
                    }))
                }
                ("fhir_comments", _) => self.skip_value(1)?,
                _ => {
                    if let Some(base) = key.strip_prefix('_') {
                        let base = match &key {
                            Cow::Borrowed(k) => Cow::Borrowed(&k[1..]),
                            Cow::Owned(_) => Cow::Owned(base.to_owned()),
                        };
                        self.companion_member(&mut b, base, ctx, depth)?;
                    } else {
                        self.value_member(&mut b, key, ctx, depth)?;
                    }
                }
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.syntax("expected `,` or `}`")),
            }
        }
        for g in &b.groups {
            let bits = &b.present[g.start..g.start + g.len];
            if bits.iter().any(|&p| p & (HAS_VALUE | HAS_COMPANION) == 0) {
                return Err(self.err(ErrorKind::NullItem(g.name.to_string())));
            }
        }
        e.children = b.children;
        Ok(())
    }

    /// Reads a string that becomes an `id` or `url` attribute.
    fn attribute_string(&mut self) -> Result<Box<str>, Error> {
        if self.peek() != Some(b'"') {
            let found = self.found();
            return Err(self.err(ErrorKind::JsonType {
                expected: "a JSON string",
                found,
            }));
        }
        let s = self.string()?;
        if s.len() > self.limits.max_value_len {
            return Err(self.err(ErrorKind::TooLong {
                what: "attribute value",
                len: s.len(),
                limit: self.limits.max_value_len,
            }));
        }
        Ok(s.into())
    }

    fn check_name(&self, name: &str) -> Result<(), Error> {
        if lex::is_element_name(name) {
            Ok(())
        } else {
            Err(self.err(ErrorKind::InvalidName(lex::clip(name))))
        }
    }

    /// Reads the value (or array of values) of member `key` of an object at `depth`.
    fn value_member(
        &mut self,
        b: &mut Builder<'a>,
        key: Cow<'a, str>,
        ctx: Ctx,
        depth: usize,
    ) -> Result<(), Error> {
        self.check_name(&key)?;
        let resolved = schema::child(ctx, &key);
        let existing = b.find(&key);
        if let Some(g) = existing {
            if b.groups[g].values {
                return Err(self.err(ErrorKind::DuplicateKey(key.into_owned())));
            }
        }
        let array = self.peek() == Some(b'[');
        let mut count = 0;
        if array {
            self.pos += 1;
            if self.peek() == Some(b']') {
                self.pos += 1;
            } else {
                count = self.values(b, key.clone(), resolved, existing, depth)?;
            }
        } else {
            self.path.push(Seg {
                name: key.clone(),
                index: None,
            });
            self.one_value(b, &key, resolved, existing, 0, false, depth)?;
            self.path.pop();
            count = 1;
        }
        match existing {
            Some(g) => {
                let g = &mut b.groups[g];
                if g.len != count {
                    return Err(self.err(ErrorKind::CompanionLength {
                        name: key.into_owned(),
                        values: count,
                        companions: g.len,
                    }));
                }
                g.values = true;
            }
            None => {
                let start = b.children.len() - count;
                b.add(Group {
                    name: key,
                    start,
                    len: count,
                    values: true,
                    companions: false,
                });
            }
        }
        Ok(())
    }

    /// Reads the items of a value array (after `[`, which is not empty) up to `]`.
    fn values(
        &mut self,
        b: &mut Builder<'a>,
        key: Cow<'a, str>,
        resolved: Option<Resolved>,
        existing: Option<usize>,
        depth: usize,
    ) -> Result<usize, Error> {
        let mut i = 0;
        loop {
            self.path.push(Seg {
                name: key.clone(),
                index: Some(i),
            });
            self.one_value(b, &key, resolved, existing, i, true, depth)?;
            self.path.pop();
            i += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(i);
                }
                _ => return Err(self.syntax("expected `,` or `]`")),
            }
        }
    }

    /// Reads item `i` of member `key`, either as a new child or into the element its `_key`
    /// companion already created.
    #[allow(clippy::too_many_arguments)]
    fn one_value(
        &mut self,
        b: &mut Builder<'a>,
        key: &str,
        resolved: Option<Resolved>,
        existing: Option<usize>,
        i: usize,
        in_array: bool,
        depth: usize,
    ) -> Result<(), Error> {
        let ty = resolved.map(|r| r.ty);
        if let Some(g) = existing {
            let g = &b.groups[g];
            if i >= g.len {
                return Err(self.err(ErrorKind::CompanionLength {
                    name: key.to_owned(),
                    values: i + 1,
                    companions: g.len,
                }));
            }
            let at = g.start + i;
            match self.peek() {
                Some(b'n') if in_array => self.literal("null")?,
                Some(b'{' | b'[') => return Err(self.err(ErrorKind::Companion(key.to_owned()))),
                _ => {
                    let v = self.scalar(ty, depth + 1)?;
                    b.children[at].value = Some(v);
                    b.present[at] |= HAS_VALUE;
                }
            }
            return Ok(());
        }
        let name = || -> Name {
            match resolved {
                Some(r) => r.name.into(),
                None => key.to_owned().into(),
            }
        };
        let child_depth = depth + 1;
        match self.peek() {
            Some(b'{') => {
                let slot_rt = match ty {
                    Some(Type::Resource) | None => self.find_resource_type()?,
                    Some(Type::Complex(_)) => None,
                    Some(_) => {
                        return Err(self.err(ErrorKind::JsonType {
                            expected: expected(ty),
                            found: "object",
                        }))
                    }
                };
                self.enter(child_depth)?;
                let el = if let Some(rt) = slot_rt {
                    Element::slot(name(), self.resource(rt, child_depth + 1)?)
                } else if matches!(ty, Some(Type::Resource)) {
                    return Err(self.err(ErrorKind::MissingResourceType));
                } else {
                    let mut el = Element::new(name());
                    let mode = Mode::Element {
                        extension: is_extension_name(key),
                    };
                    self.object(&mut el, Ctx::of(ty), mode, child_depth)?;
                    el
                };
                b.children.push(el);
                b.present.push(HAS_VALUE | NOT_PRIMITIVE);
            }
            Some(b'[') => {
                return Err(self.err(ErrorKind::JsonType {
                    expected: expected(ty),
                    found: "array",
                }))
            }
            Some(b'n') if in_array => {
                self.literal("null")?;
                self.enter(child_depth)?;
                if matches!(ty, Some(Type::Complex(_) | Type::Resource | Type::Xhtml)) {
                    return Err(self.err(ErrorKind::JsonType {
                        expected: expected(ty),
                        found: "null",
                    }));
                }
                b.children.push(Element::new(name()));
                b.present.push(0);
            }
            _ => {
                self.enter(child_depth)?;
                let v = self.scalar(ty, child_depth)?;
                if matches!(ty, Some(Type::Xhtml)) {
                    b.children.push(Element::xhtml(v));
                    b.present.push(HAS_VALUE | NOT_PRIMITIVE);
                } else {
                    b.children.push(Element {
                        value: Some(v),
                        ..Element::new(name())
                    });
                    b.present.push(HAS_VALUE);
                }
            }
        }
        Ok(())
    }

    /// Reads a scalar for an element of type `ty` (at `depth`), checking its JSON type.
    fn scalar(&mut self, ty: Option<Type>, depth: usize) -> Result<Box<str>, Error> {
        let start = self.pos;
        let kind = ty.and_then(Type::primitive).map(|p| p.json_kind());
        let wrong = |p: &mut Self, found: &'static str| {
            p.pos = start;
            Err(p.err(ErrorKind::JsonType {
                expected: expected(ty),
                found,
            }))
        };
        if matches!(ty, Some(Type::Complex(_) | Type::Resource)) {
            let found = self.found();
            return wrong(self, found);
        }
        let untyped = ty.is_none();
        let value: Cow<'a, str> = match self.peek() {
            Some(b'"') => {
                if !(untyped || kind.is_none() || kind == Some(JsonKind::String)) {
                    return wrong(self, "string");
                }
                self.string()?
            }
            Some(c @ (b't' | b'f')) => {
                if !(untyped || kind == Some(JsonKind::Boolean)) {
                    return wrong(self, "boolean");
                }
                let lit = if c == b't' { "true" } else { "false" };
                self.literal(lit)?;
                Cow::Borrowed(lit)
            }
            Some(b'-' | b'0'..=b'9') => {
                if !(untyped || kind == Some(JsonKind::Number)) {
                    return wrong(self, "number");
                }
                Cow::Borrowed(self.number()?)
            }
            Some(b'n') => return wrong(self, "null"),
            _ => return Err(self.syntax("expected a value")),
        };
        let (what, limit) = match ty {
            Some(Type::Primitive(schema::Primitive::Base64Binary)) => {
                ("base64 value", self.limits.max_base64_len)
            }
            Some(Type::Xhtml) => ("narrative div", self.limits.max_xhtml_len),
            _ => ("value", self.limits.max_value_len),
        };
        if value.len() > limit {
            self.pos = start;
            return Err(self.err(ErrorKind::TooLong {
                what,
                len: value.len(),
                limit,
            }));
        }
        match ty {
            Some(Type::Primitive(p)) => {
                if let Err(k) = lex::check_primitive(p, &value) {
                    self.pos = start;
                    return Err(self.err(k));
                }
            }
            Some(Type::Xhtml) => {
                let mut budget = Budget {
                    depth_left: self.max_depth.saturating_sub(depth),
                    depth_limit: self.max_depth,
                    elements: &mut self.elements,
                    max_elements: self.limits.max_elements,
                    max_attributes: self.limits.max_attributes,
                    max_len: self.limits.max_xhtml_len,
                };
                if let Err((k, _)) = check_xhtml_fragment(&value, &mut budget) {
                    self.pos = start;
                    return Err(self.err(k));
                }
            }
            _ => {}
        }
        Ok(value.into())
    }

    /// Reads member `_key` (the companion of primitive `key`) of an object at `depth`.
    fn companion_member(
        &mut self,
        b: &mut Builder<'a>,
        key: Cow<'a, str>,
        ctx: Ctx,
        depth: usize,
    ) -> Result<(), Error> {
        self.check_name(&key)?;
        let resolved = schema::child(ctx, &key);
        let ty = resolved.map(|r| r.ty);
        if !matches!(ty, None | Some(Type::Primitive(_))) {
            return Err(self.err(ErrorKind::Companion(key.into_owned())));
        }
        let existing = b.find(&key);
        if let Some(g) = existing {
            if b.groups[g].companions {
                return Err(self.err(ErrorKind::DuplicateKey(format!("_{key}"))));
            }
        }
        let array = self.peek() == Some(b'[');
        let mut count = 0;
        let start = match existing {
            Some(g) => b.groups[g].start,
            None => b.children.len(),
        };
        if array {
            self.pos += 1;
            if self.peek() == Some(b']') {
                self.pos += 1;
            } else {
                loop {
                    self.path.push(Seg {
                        name: key.clone(),
                        index: Some(count),
                    });
                    self.one_companion(b, &key, resolved, existing, start, count, true, depth)?;
                    self.path.pop();
                    count += 1;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.syntax("expected `,` or `]`")),
                    }
                }
            }
        } else {
            self.path.push(Seg {
                name: key.clone(),
                index: None,
            });
            self.one_companion(b, &key, resolved, existing, start, 0, false, depth)?;
            self.path.pop();
            count = 1;
        }
        match existing {
            Some(g) => {
                let g = &mut b.groups[g];
                if g.len != count {
                    return Err(self.err(ErrorKind::CompanionLength {
                        name: key.into_owned(),
                        values: g.len,
                        companions: count,
                    }));
                }
                g.companions = true;
            }
            None => b.add(Group {
                name: key,
                start,
                len: count,
                values: false,
                companions: true,
            }),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn one_companion(
        &mut self,
        b: &mut Builder<'a>,
        key: &str,
        resolved: Option<Resolved>,
        existing: Option<usize>,
        start: usize,
        i: usize,
        in_array: bool,
        depth: usize,
    ) -> Result<(), Error> {
        let ty = resolved.map(|r| r.ty);
        let at = start + i;
        if let Some(g) = existing {
            if i >= b.groups[g].len {
                return Err(self.err(ErrorKind::CompanionLength {
                    name: key.to_owned(),
                    values: b.groups[g].len,
                    companions: i + 1,
                }));
            }
        } else {
            self.enter(depth + 1)?;
            let name: Name = match resolved {
                Some(r) => r.name.into(),
                None => key.to_owned().into(),
            };
            b.children.push(Element::new(name));
            b.present.push(0);
        }
        match self.peek() {
            Some(b'n') if in_array => self.literal("null"),
            Some(b'{') => {
                if b.present[at] & NOT_PRIMITIVE != 0 {
                    return Err(self.err(ErrorKind::Companion(key.to_owned())));
                }
                let mut el = std::mem::replace(&mut b.children[at], Element::new(""));
                let result = self.object(&mut el, Ctx::of(ty), Mode::Companion, depth + 1);
                b.children[at] = el;
                result?;
                b.present[at] |= HAS_COMPANION;
                Ok(())
            }
            _ => {
                let found = self.found();
                Err(self.err(ErrorKind::JsonType {
                    expected: "a JSON object (or null in an array)",
                    found,
                }))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes a resource as compact FHIR JSON.
pub fn to_json(root: &Element) -> String {
    let mut w = JsonWriter {
        out: String::with_capacity(4096),
        pretty: false,
    };
    w.root(root);
    w.out
}

/// Writes a resource as indented FHIR JSON.
pub fn to_json_pretty(root: &Element) -> String {
    let mut w = JsonWriter {
        out: String::with_capacity(4096),
        pretty: true,
    };
    w.root(root);
    w.out.push('\n');
    w.out
}

struct JsonWriter {
    out: String,
    pretty: bool,
}

/// How one item of a member is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A string holding the XHTML.
    Xhtml,
    /// A resource object.
    Slot,
    /// A scalar, with a `_name` companion if `companion`.
    Scalar { companion: bool },
    /// `null` in the values, the content in the `_name` companion.
    Null,
    /// An object.
    Object,
}

impl JsonWriter {
    fn newline(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn key(&mut self, first: &mut bool, depth: usize, prefix: &str, name: &str) {
        if !std::mem::replace(first, false) {
            self.out.push(',');
        }
        self.newline(depth);
        self.out.push('"');
        self.out.push_str(prefix);
        lex::escape_json_inner(&mut self.out, name);
        self.out.push_str(if self.pretty { "\": " } else { "\":" });
    }

    fn close(&mut self, c: char, depth: usize, empty: bool) {
        if !empty {
            self.newline(depth);
        }
        self.out.push(c);
    }

    fn root(&mut self, e: &Element) {
        match e.kind {
            Kind::Resource => self.resource(e, 0),
            _ => self.object(e, Ctx::Unknown, 0),
        }
    }

    fn resource(&mut self, e: &Element, depth: usize) {
        self.out.push('{');
        let mut first = true;
        self.key(&mut first, depth + 1, "", "resourceType");
        lex::escape_json(&mut self.out, &e.name);
        self.members(e, Ctx::resource(&e.name), depth + 1, &mut first);
        self.close('}', depth, first);
    }

    /// An element as an object: `id`, `url`, then its children.
    fn object(&mut self, e: &Element, ctx: Ctx, depth: usize) {
        self.out.push('{');
        let mut first = true;
        if let Some(id) = &e.id {
            self.key(&mut first, depth + 1, "", "id");
            lex::escape_json(&mut self.out, id);
        }
        if let Some(url) = &e.url {
            self.key(&mut first, depth + 1, "", "url");
            lex::escape_json(&mut self.out, url);
        }
        self.members(e, ctx, depth + 1, &mut first);
        self.close('}', depth, first);
    }

    fn members(&mut self, e: &Element, ctx: Ctx, depth: usize, first: &mut bool) {
        let children = &e.children;
        // Runs of same-named siblings; usually each name has one run.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, c) in children.iter().enumerate() {
            match runs.last_mut() {
                Some((start, len)) if children[*start].name == c.name => *len += 1,
                _ => runs.push((i, 1)),
            }
        }
        if runs_are_distinct(children, &runs) {
            for &(start, len) in &runs {
                let items = &children[start..start + len];
                self.member(&items[0].name, items.iter(), ctx, depth, first);
            }
        } else {
            let mut order: Vec<(&str, Vec<&Element>)> = Vec::new();
            let mut index: HashMap<&str, usize> = HashMap::new();
            for c in children {
                match index.get(&*c.name) {
                    Some(&g) => order[g].1.push(c),
                    None => {
                        index.insert(&c.name, order.len());
                        order.push((&c.name, vec![c]));
                    }
                }
            }
            for (name, items) in &order {
                self.member(name, items.iter().copied(), ctx, depth, first);
            }
        }
    }

    fn member<'e, I>(&mut self, name: &str, items: I, ctx: Ctx, depth: usize, first: &mut bool)
    where
        I: Iterator<Item = &'e Element> + Clone + ExactSizeIterator,
    {
        let resolved = schema::child(ctx, name);
        let ty = resolved.map(|r| r.ty);
        let array = resolved.is_some_and(|r| r.repeats) || items.len() > 1;
        let primitive = matches!(ty, Some(Type::Primitive(_)));
        let form = |e: &Element| -> Form {
            if e.kind == Kind::Xhtml {
                Form::Xhtml
            } else if e.value.is_some() {
                Form::Scalar {
                    companion: e.id.is_some() || !e.children.is_empty(),
                }
            } else if e.as_slot().is_some() && e.id.is_none() {
                Form::Slot
            } else if primitive {
                Form::Null
            } else {
                Form::Object
            }
        };
        let any_value = items.clone().any(|e| form(e) != Form::Null);
        let any_companion = items
            .clone()
            .any(|e| matches!(form(e), Form::Null | Form::Scalar { companion: true }));
        if any_value {
            self.key(first, depth, "", name);
            if array {
                self.out.push('[');
            }
            for (i, e) in items.clone().enumerate() {
                if array {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(depth + 1);
                }
                let d = depth + usize::from(array);
                match form(e) {
                    Form::Xhtml => {
                        lex::escape_json(&mut self.out, e.value.as_deref().unwrap_or(""))
                    }
                    Form::Slot => self.resource(&e.children[0], d),
                    Form::Scalar { .. } => self.scalar(e.value.as_deref().unwrap_or(""), ty),
                    Form::Null => self.out.push_str("null"),
                    Form::Object => self.object(e, Ctx::of(ty), d),
                }
            }
            if array {
                self.close(']', depth, false);
            }
        }
        if any_companion {
            self.key(first, depth, "_", name);
            if array {
                self.out.push('[');
            }
            for (i, e) in items.enumerate() {
                if array {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(depth + 1);
                }
                let d = depth + usize::from(array);
                match form(e) {
                    Form::Null | Form::Scalar { companion: true } => self.object(e, Ctx::of(ty), d),
                    _ => self.out.push_str("null"),
                }
            }
            if array {
                self.close(']', depth, false);
            }
        }
    }

    fn scalar(&mut self, v: &str, ty: Option<Type>) {
        if let Some(p) = ty.and_then(Type::primitive) {
            if p.json_kind() != JsonKind::String && lex::check_primitive(p, v).is_ok() {
                self.out.push_str(v);
                return;
            }
        }
        lex::escape_json(&mut self.out, v);
    }
}

/// Whether no two runs share a name.
fn runs_are_distinct(children: &[Element], runs: &[(usize, usize)]) -> bool {
    const LINEAR: usize = 24;
    if runs.len() <= LINEAR {
        runs.iter().enumerate().all(|(i, &(a, _))| {
            runs[..i]
                .iter()
                .all(|&(b, _)| children[a].name != children[b].name)
        })
    } else {
        let mut seen = std::collections::HashSet::with_capacity(runs.len());
        runs.iter().all(|&(a, _)| seen.insert(&*children[a].name))
    }
}
