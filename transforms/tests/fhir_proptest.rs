//! Property tests: trees generated from the type table (plus unknown elements) convert
//! losslessly between XML and JSON, and arbitrary or mangled input never panics.

use edt_transforms::fhir::schema::{self, Primitive, Shape, Type, TypeDef};
use edt_transforms::fhir::{
    parse_json, parse_xml, to_json, to_json_pretty, to_xml, to_xml_pretty, Element,
};
use proptest::prelude::*;

/// A small deterministic generator (xorshift) so trees can be built from the schema table.
struct Gen {
    state: u64,
    /// Elements still allowed, to keep trees small.
    budget: usize,
}

const PALETTE: &[&str] = &[
    "a",
    "Z",
    "0",
    " ",
    "&",
    "<",
    ">",
    "\"",
    "'",
    "\n",
    "\t",
    "\r",
    "é",
    "€",
    "😀",
    "\\",
    "/",
    "]]>",
    "&amp;",
    "x y",
    "NHS",
    "9989453456",
    "-",
    ".",
    ":",
];

impl Gen {
    fn new(seed: u64, budget: usize) -> Self {
        Self {
            state: seed | 1,
            budget,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn take(&mut self) -> bool {
        if self.budget == 0 {
            false
        } else {
            self.budget -= 1;
            true
        }
    }

    fn text(&mut self) -> String {
        let n = self.below(6);
        (0..n).map(|_| PALETTE[self.below(PALETTE.len())]).collect()
    }

    fn ident(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let n = 1 + self.below(6);
        (0..n)
            .map(|_| CHARS[self.below(CHARS.len())] as char)
            .collect()
    }

    fn decimal(&mut self) -> String {
        let mut s = String::new();
        if self.chance(30) {
            s.push('-');
        }
        if self.chance(30) {
            s.push('0');
        } else {
            s.push_str(&(1 + self.below(99_999)).to_string());
        }
        if self.chance(60) {
            s.push('.');
            s.push_str(&self.below(1000).to_string());
            if self.chance(50) {
                s.push('0'); // trailing zero: precision must survive
            }
        }
        if self.chance(15) {
            s.push_str(["e", "E"][self.below(2)]);
            if self.chance(50) {
                s.push_str(["+", "-"][self.below(2)]);
            }
            s.push_str(&self.below(20).to_string());
        }
        s
    }

    fn primitive(&mut self, p: Primitive) -> String {
        match p {
            Primitive::Boolean => ["true", "false"][self.below(2)].to_string(),
            Primitive::Integer => (self.next() as i32).to_string(),
            Primitive::UnsignedInt => ((self.next() as u32) >> 1).to_string(),
            Primitive::PositiveInt => (1 + ((self.next() as u32) >> 2)).to_string(),
            Primitive::Decimal => self.decimal(),
            Primitive::Base64Binary => {
                ["", "QQ==", "SGVsbG8=", "JVBERi0xLjcNCiW1tbW1"][self.below(4)].to_string()
            }
            _ => self.text(),
        }
    }

    fn xhtml(&mut self) -> String {
        let inner = match self.below(4) {
            0 => String::new(),
            1 => "<p>A &amp; B &lt; C &#8364; &#x1F600;</p>".to_string(),
            2 => "<table><tr><td class=\"c\">1</td></tr></table><br/>".to_string(),
            _ => "\n  <p>line</p>\r\n <!-- note --> <![CDATA[x<y]]>".to_string(),
        };
        format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>")
    }

    fn resource(&mut self, depth: usize) -> Element {
        let defs = schema::resources();
        let (name, def): (String, &'static TypeDef) = if self.chance(10) {
            ("ZzCustom".to_string(), schema::domain_resource())
        } else {
            let d = defs[self.below(defs.len())];
            (d.name.to_string(), d)
        };
        let mut e = Element::resource(name);
        self.fill(&mut e, def, depth, true);
        e
    }

    /// Adds children for the elements of `def` (some of them), extensions and unknowns.
    fn fill(&mut self, e: &mut Element, def: &'static TypeDef, depth: usize, resource: bool) {
        if !resource && self.chance(15) && self.take() {
            let ext = self.extension(depth + 1, "extension");
            e.push(ext);
        }
        let elements: Vec<_> = def.all_elements().collect();
        for el in elements {
            if !self.chance(35) {
                continue;
            }
            let (name, ty) = match el.shape {
                Shape::Single(ty) => (el.name, ty),
                Shape::Choice(choices) => {
                    let c = choices[self.below(choices.len())];
                    (c.name, c.ty)
                }
            };
            let count = if el.repeats { 1 + self.below(3) } else { 1 };
            for _ in 0..count {
                if let Some(child) = self.element(name, ty, depth + 1) {
                    e.push(child);
                }
            }
        }
        if self.chance(15) {
            self.unknowns(e, depth + 1);
        }
    }

    fn unknowns(&mut self, e: &mut Element, depth: usize) {
        let name = format!("zz{}", self.ident());
        let count = 1 + self.below(3);
        for _ in 0..count {
            if !self.take() {
                return;
            }
            let mut u = Element::new(name.clone());
            match self.below(4) {
                0 => u.value = Some(self.text().into()),
                1 => {
                    u.value = Some(self.text().into());
                    u.id = Some(self.ident().into());
                }
                2 if depth < 12 => {
                    if self.chance(50) {
                        u.id = Some(self.ident().into());
                    }
                    self.unknowns(&mut u, depth + 1);
                }
                _ if depth < 10 && self.chance(30) => {
                    let r = self.resource(depth + 1);
                    u.push(r);
                }
                _ => {}
            }
            e.push(u);
        }
    }

    fn extension(&mut self, depth: usize, name: &'static str) -> Element {
        let mut ext = Element::extension(format!("https://example.org/{}", self.ident()));
        ext.name = name.into();
        if depth < 12 && self.chance(30) {
            for _ in 0..1 + self.below(2) {
                if self.take() {
                    let sub = self.extension(depth + 1, "extension");
                    ext.push(sub);
                }
            }
        } else if let Some(ed) = schema::extension().all_elements().next() {
            if let Shape::Choice(choices) = ed.shape {
                let c = choices[self.below(choices.len())];
                if let Some(v) = self.element(c.name, c.ty, depth + 1) {
                    ext.push(v);
                }
            }
        }
        ext
    }

    fn element(&mut self, name: &'static str, ty: Type, depth: usize) -> Option<Element> {
        if !self.take() || depth > 14 {
            return None;
        }
        match ty {
            Type::Primitive(p) => {
                let mut e = Element::new(name);
                if self.chance(85) {
                    e.value = Some(self.primitive(p).into());
                }
                if self.chance(10) {
                    e.id = Some(self.ident().into());
                }
                if e.value.is_none() || self.chance(10) {
                    let ext = self.extension(depth + 1, "extension");
                    e.push(ext);
                }
                Some(e)
            }
            Type::Complex(def) => {
                if name == "extension" || name == "modifierExtension" {
                    return Some(self.extension(depth, name));
                }
                let mut e = Element::new(name);
                if self.chance(10) {
                    e.id = Some(self.ident().into());
                }
                if depth < 12 {
                    self.fill(&mut e, def, depth, false);
                }
                Some(e)
            }
            Type::Resource => {
                if depth > 8 {
                    return None;
                }
                Some(Element::slot(name, self.resource(depth + 1)))
            }
            Type::Xhtml => Some(Element::xhtml(self.xhtml())),
        }
    }
}

fn tree(seed: u64) -> Element {
    Gen::new(seed, 150).resource(1)
}

fn mutate(input: &[u8], seed: u64) -> Vec<u8> {
    let mut g = Gen::new(seed, 0);
    let mut out = input.to_vec();
    for _ in 0..1 + g.below(4) {
        if out.is_empty() {
            break;
        }
        let at = g.below(out.len());
        match g.below(4) {
            0 => out[at] = g.next() as u8,
            1 => {
                out.remove(at);
            }
            2 => out.insert(at, b"<>\"&;{}[],:/_ax0"[g.below(16)]),
            _ => {
                let end = (at + g.below(16)).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
        }
    }
    out
}

/// What the fuzz targets check: whatever parses converts and re-parses consistently.
fn check_consistent(t: &Element) {
    let xml = to_xml(t);
    let from_xml = parse_xml(xml.as_bytes()).expect("written XML parses");
    assert_eq!(&from_xml, t);
    let json = to_json(t);
    let from_json = parse_json(json.as_bytes()).expect("written JSON parses");
    assert_eq!(to_json(&from_json), json);
    assert_eq!(parse_xml(to_xml(&from_json).as_bytes()).unwrap(), from_json);
}

const KEYS: &[&str] = &[
    "resourceType",
    "id",
    "_id",
    "url",
    "_url",
    "_resourceType",
    "div",
    "_div",
    "extension",
    "_extension",
    "modifierExtension",
    "resource",
    "_resource",
    "contained",
    "entry",
    "value",
    "_value",
    "valueString",
    "_valueString",
    "valueBoolean",
    "valueDecimal",
    "given",
    "_given",
    "name",
    "_name",
    "family",
    "zz",
    "_zz",
    "fhir_comments",
    "text",
    "status",
    "active",
    "_active",
    "coding",
    "code",
    "section",
    "birthDate",
    "_birthDate",
    "content",
    "data",
    "parameter",
    "part",
    "outcome",
    "response",
    "Bad",
    "a-b",
];
const SCALARS: &[&str] = &[
    "\"x\"",
    "\"\"",
    "\"true\"",
    "\"1.50\"",
    "0",
    "1.50",
    "-2",
    "1e3",
    "2147483648",
    "true",
    "false",
    "null",
    "\"QQ==\"",
    "\"a\\u0001\"",
    "\"\\ud83d\\ude00\"",
    "\"<&>\"",
    "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x &amp; y</div>\"",
    "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\"/>\"",
    "\"<div>x</div>\"",
];
const RESOURCE_TYPES: &[&str] = &[
    "Patient",
    "Bundle",
    "ZzThing",
    "Composition",
    "Parameters",
    "Binary",
];

fn random_json(g: &mut Gen, depth: usize, out: &mut String) {
    let pick = if depth > 5 { g.below(2) } else { g.below(6) };
    match pick {
        0 | 1 => out.push_str(SCALARS[g.below(SCALARS.len())]),
        2 => {
            out.push('[');
            for i in 0..g.below(4) {
                if i > 0 {
                    out.push(',');
                }
                random_json(g, depth + 1, out);
            }
            out.push(']');
        }
        3 => random_resource_json(g, depth + 1, out),
        _ => random_object_json(g, depth + 1, out, None),
    }
}

fn random_object_json(g: &mut Gen, depth: usize, out: &mut String, resource_type: Option<&str>) {
    out.push('{');
    let n = g.below(5);
    let rt_at = resource_type.map(|_| g.below(n + 1));
    let mut first = true;
    for i in 0..=n {
        if rt_at == Some(i) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                "\"resourceType\":\"{}\"",
                resource_type.unwrap_or("")
            ));
        }
        if i == n {
            break;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&format!("\"{}\":", KEYS[g.below(KEYS.len())]));
        random_json(g, depth, out);
    }
    out.push('}');
}

fn random_resource_json(g: &mut Gen, depth: usize, out: &mut String) {
    let rt = RESOURCE_TYPES[g.below(RESOURCE_TYPES.len())];
    random_object_json(g, depth, out, Some(rt));
}

const XML_NAMES: &[&str] = &[
    "Patient",
    "Bundle",
    "ZzThing",
    "entry",
    "resource",
    "id",
    "url",
    "extension",
    "modifierExtension",
    "valueString",
    "valueBoolean",
    "given",
    "name",
    "zz",
    "text",
    "contained",
    "active",
    "value",
    "section",
    "code",
    "Composition",
    "resourceType",
    "f:zz",
    "a-b",
];
const XML_ATTRS: &[&str] = &[
    " id=\"i\"",
    " value=\"v\"",
    " value=\"true\"",
    " value=\"1.50\"",
    " url=\"u\"",
    " xmlns=\"http://hl7.org/fhir\"",
    " xmlns=\"http://example.org\"",
    " xmlns:f=\"http://hl7.org/fhir\"",
    " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"t\"",
    " other=\"o\"",
    " value=\"a&amp;&#10;b\"",
    " value=\"&#1;\"",
];
const XML_BITS: &[&str] = &[
    "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>",
    "<div xmlns=\"http://www.w3.org/1999/xhtml\"/>",
    "<div>x</div>",
    "<!-- c -->",
    " \n ",
    "text",
    "<![CDATA[x]]>",
    "&amp;",
    "<?pi x?>",
];

fn random_xml(g: &mut Gen, depth: usize, out: &mut String) {
    if depth > 6 || g.chance(15) {
        out.push_str(XML_BITS[g.below(XML_BITS.len())]);
        return;
    }
    let name = XML_NAMES[g.below(XML_NAMES.len())];
    out.push('<');
    out.push_str(name);
    for _ in 0..g.below(3) {
        out.push_str(XML_ATTRS[g.below(XML_ATTRS.len())]);
    }
    let n = g.below(4);
    if n == 0 && g.chance(50) {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for _ in 0..n {
        random_xml(g, depth + 1, out);
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn generated_trees_survive_json(seed in any::<u64>()) {
        let t = tree(seed);
        let json = to_json(&t);
        prop_assert_eq!(&parse_json(json.as_bytes()).unwrap(), &t, "{}", json);
        prop_assert_eq!(&parse_json(to_json_pretty(&t).as_bytes()).unwrap(), &t);
    }

    #[test]
    fn generated_trees_survive_xml(seed in any::<u64>()) {
        let t = tree(seed);
        let xml = to_xml(&t);
        prop_assert_eq!(&parse_xml(xml.as_bytes()).unwrap(), &t, "{}", xml);
        prop_assert_eq!(&parse_xml(to_xml_pretty(&t).as_bytes()).unwrap(), &t);
    }

    #[test]
    fn xml_json_xml_is_lossless(seed in any::<u64>()) {
        let xml = to_xml(&tree(seed));
        let via_json = parse_json(to_json(&parse_xml(xml.as_bytes()).unwrap()).as_bytes()).unwrap();
        prop_assert_eq!(to_xml(&via_json), xml);
    }

    #[test]
    fn json_xml_json_is_lossless(seed in any::<u64>()) {
        let json = to_json(&tree(seed));
        let via_xml = parse_xml(to_xml(&parse_json(json.as_bytes()).unwrap()).as_bytes()).unwrap();
        prop_assert_eq!(to_json(&via_xml), json);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(t) = parse_xml(&bytes) {
            check_consistent(&t);
        }
        if let Ok(t) = parse_json(&bytes) {
            check_consistent(&t);
        }
    }

    #[test]
    fn random_json_from_fhir_vocabulary_is_consistent(seed in any::<u64>()) {
        let mut g = Gen::new(seed, 0);
        let mut json = String::new();
        random_resource_json(&mut g, 0, &mut json);
        if let Ok(t) = parse_json(json.as_bytes()) {
            check_consistent(&t);
        }
    }

    #[test]
    fn random_xml_from_fhir_vocabulary_is_consistent(seed in any::<u64>()) {
        let mut g = Gen::new(seed, 0);
        let root = RESOURCE_TYPES[g.below(RESOURCE_TYPES.len())];
        let mut xml = format!("<{root} xmlns=\"http://hl7.org/fhir\">");
        for _ in 0..g.below(5) {
            random_xml(&mut g, 1, &mut xml);
        }
        xml.push_str(&format!("</{root}>"));
        if let Ok(t) = parse_xml(xml.as_bytes()) {
            check_consistent(&t);
        }
    }

    #[test]
    fn mangled_documents_never_panic(seed in any::<u64>(), damage in any::<u64>()) {
        let t = tree(seed);
        for input in [to_xml(&t).into_bytes(), to_json(&t).into_bytes()] {
            let bad = mutate(&input, damage);
            if let Ok(t) = parse_xml(&bad) {
                check_consistent(&t);
            }
            if let Ok(t) = parse_json(&bad) {
                check_consistent(&t);
            }
        }
    }
}

#[test]
fn generator_covers_the_interesting_cases() {
    // Over many seeds the generator must produce the shapes the properties are about.
    let mut saw = [false; 6];
    for seed in 0..400 {
        let json = to_json(&tree(seed));
        saw[0] |= json.contains("\"_");
        saw[1] |= json.contains("null");
        saw[2] |= json.contains("\"div\"");
        saw[3] |= json.contains("\"zz");
        saw[4] |= json.contains(":true") || json.contains(":false");
        saw[5] |= json.contains("\"resource\":{\"resourceType\"");
    }
    assert_eq!(saw, [true; 6]);
}
