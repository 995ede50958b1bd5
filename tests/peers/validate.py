"""Checks what the hub writes for a receiver with parsers this project did not write.

    python validate.py itk3 FILE...    FHIR STU3 (fhir.resources' STU3 models: every resource,
                                       cardinality and datatype) plus the ITK3 / GP Connect
                                       header rules a receiving system applies
    python validate.py hl7v2 FILE...   HL7 v2 with hl7apy at STRICT validation (structure of
                                       the message type, required fields, datatypes)
    python validate.py fhir-pathology FILE...
                                       FHIR R4 JSON: FHIR.js (npm `fhir`, fhir_r4_check.js) against
                                       the R4 core definitions, fhir.resources' R4B models (the
                                       resources used here are the same in R4 and R4B), the R4
                                       datetime and document Bundle rules, and the test report
                                       bundle rules of NHS England's Pathology FHIR
                                       Implementation Guide

Prints one JSON object per file ({"file", "ok", "errors", ...}) and exits 1 if any file fails.
The ITK3 rules are written from the published specifications (ITK3 Messaging Distribution,
GP Connect Messaging 1.6), not from the hub's own reader.
"""

import json
import re
import sys

FHIR_NS = "http://hl7.org/fhir"
NS = {"f": FHIR_NS}
EVENT_SYSTEM = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2"
HANDLING_URL = "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2"
RECIPIENT_TYPE_SYSTEM = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
HANDLING_KEYS = [
    "BusAckRequested",
    "InfAckRequested",
    "RecipientType",
    "MessageDefinition",
    "SenderReference",
    "LocalExtension",
]
EVENTS = {
    "ITK003D": "eDischarge",
    "ITK004D": "Mental Health eDischarge",
    "ITK005D": "Emergency Care eDischarge",
    "ITK006D": "Outpatient Letter",
    "ITK007C": "GP Connect Send Document",
    "ITK008M": "Response",
    "ITK012M": "National Pathology",
}
# FHIR STU3 MessageHeader element order (XML is order-sensitive).
MESSAGE_HEADER_ORDER = [
    "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "event", "destination", "receiver", "sender", "timestamp",
    "enterer", "author", "source", "responsible", "reason", "response", "focus",
]
BUNDLE_ORDER = [
    "id", "meta", "implicitRules", "language", "identifier", "type", "total", "link",
    "entry", "signature",
]


def local(tag):
    return tag.split("}", 1)[1] if "}" in tag else tag


def value(el, path):
    found = el.find(path, NS)
    return None if found is None else found.get("value")


def nhs_number_valid(n):
    if not re.fullmatch(r"\d{10}", n or ""):
        return False
    total = sum(int(d) * w for d, w in zip(n[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(n[9])


def check_order(el, order, what, errors):
    seen = [local(c.tag) for c in el if isinstance(c.tag, str)]
    ranks = [order.index(n) if n in order else -1 for n in seen]
    if -1 in ranks:
        errors.append(f"{what}: unknown element {seen[ranks.index(-1)]}")
    elif ranks != sorted(ranks):
        errors.append(f"{what}: elements out of FHIR STU3 order: {seen}")


def validate_itk3(data):
    from lxml import etree
    from fhir.resources.STU3.bundle import Bundle

    errors = []
    info = {}
    parser = etree.XMLParser(remove_comments=True, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        return [f"not well-formed XML: {e}"], info
    if root.tag != f"{{{FHIR_NS}}}Bundle":
        return [f"root element is {root.tag}, not a FHIR Bundle"], info
    # Every resource, its cardinalities and datatypes, by an independent FHIR STU3 model.
    try:
        Bundle.model_validate_xml(etree.tostring(root))
    except Exception as e:  # pydantic's ValidationError, or the XML loader's
        errors.append(f"FHIR STU3: {e}")
    check_order(root, BUNDLE_ORDER, "Bundle", errors)
    if value(root, "f:type") != "message":
        errors.append(f"Bundle.type is {value(root, 'f:type')!r}, not message")
    entries = root.findall("f:entry", NS)
    urls = {}
    for i, e in enumerate(entries):
        url = value(e, "f:fullUrl")
        res = e.find("f:resource/*", NS)
        if not url:
            errors.append(f"Bundle.entry[{i}] has no fullUrl")
        if res is None:
            errors.append(f"Bundle.entry[{i}] has no resource")
            continue
        urls[url] = res
    if not entries:
        return errors + ["the Bundle has no entries"], info
    header = entries[0].find("f:resource/f:MessageHeader", NS)
    if header is None:
        return errors + ["Bundle.entry[0] is not a MessageHeader"], info
    check_order(header, MESSAGE_HEADER_ORDER, "MessageHeader", errors)
    info["message_id"] = value(header, "f:id")
    event_system = value(header, "f:event/f:system")
    event = value(header, "f:event/f:code")
    info["event"] = event
    if event_system != EVENT_SYSTEM:
        errors.append(f"MessageHeader.event.system is {event_system!r}")
    if event not in EVENTS:
        errors.append(f"MessageHeader.event.code {event!r} is not an ITK3 event")
    endpoint = value(header, "f:source/f:endpoint")
    info["source_endpoint"] = endpoint
    if not endpoint:
        errors.append("MessageHeader.source.endpoint (the sender's MESH mailbox) is missing")
    if not value(header, "f:timestamp"):
        errors.append("MessageHeader.timestamp is missing")

    handling = [x for x in header.findall("f:extension", NS) if x.get("url") == HANDLING_URL]
    if len(handling) != 1:
        errors.append(f"{len(handling)} ITK message-handling extensions, not 1")
        keys = {}
    else:
        keys = {}
        for sub in handling[0].findall("f:extension", NS):
            keys.setdefault(sub.get("url"), []).append(sub)
        for k in HANDLING_KEYS:
            if len(keys.get(k, [])) != 1:
                errors.append(f"handling key {k} appears {len(keys.get(k, []))} times, not once")
        for k in ("BusAckRequested", "InfAckRequested"):
            for sub in keys.get(k, []):
                if value(sub, "f:valueBoolean") not in ("true", "false"):
                    errors.append(f"handling key {k} is not a valueBoolean")
        for sub in keys.get("RecipientType", []):
            if value(sub, "f:valueCoding/f:system") != RECIPIENT_TYPE_SYSTEM or value(
                sub, "f:valueCoding/f:code"
            ) not in ("FA", "FI"):
                errors.append("handling key RecipientType is not FA/FI from ITK-RecipientType-1")
        for sub in keys.get("MessageDefinition", []):
            if not value(sub, "f:valueReference/f:reference"):
                errors.append("handling key MessageDefinition has no valueReference.reference")
        for sub in keys.get("SenderReference", []):
            ref = value(sub, "f:valueString") or ""
            if not ref or len(ref) > 255:
                errors.append("handling key SenderReference must be 1..255 characters")

    def resolve(ref_el, what):
        ref = value(header, f"f:{ref_el}/f:reference")
        if not ref:
            errors.append(f"MessageHeader.{what} is missing")
            return None
        if ref not in urls:
            errors.append(f"MessageHeader.{what} {ref} resolves to no entry")
            return None
        return urls[ref]

    sender = resolve("sender", "sender")
    if sender is not None and event != "ITK008M":
        if sender.find("f:identifier", NS) is None or value(sender, "f:identifier/f:system") not in (
            ODS_SYSTEM,
            "https://fhir.nhs.uk/Id/sds-user-id",
        ):
            errors.append("the sender has no ODS identifier")
    focus = resolve("focus", "focus") if event != "ITK008M" else None

    receivers = header.findall("f:receiver", NS) + header.findall("f:destination", NS)
    if event == "ITK007C":
        # GP Connect Send Document (GPCM GE-268..279, GPCM-SD-001..032).
        if receivers:
            errors.append("GP Connect: MessageHeader.receiver/destination must not be present")
        for k in ("BusAckRequested", "InfAckRequested"):
            for sub in keys.get(k, []):
                if value(sub, "f:valueBoolean") != "true":
                    errors.append(f"GP Connect: {k} must be true")
        for sub in keys.get("MessageDefinition", []):
            ref = value(sub, "f:valueReference/f:reference") or ""
            if "ITK-GPConnectSendDocument-MessageDefinition" not in ref:
                errors.append(f"GP Connect: MessageDefinition is {ref!r}")
    elif event in ("ITK003D", "ITK004D", "ITK005D", "ITK006D"):
        for r in header.findall("f:receiver", NS):
            ref = value(r, "f:reference")
            if ref not in urls:
                errors.append(f"MessageHeader.receiver {ref} resolves to no entry")

    if focus is not None and event != "ITK008M":
        if local(focus.tag) != "Bundle" or value(focus, "f:type") != "document":
            errors.append("MessageHeader.focus is not a document Bundle")
        else:
            info["document_id"] = value(focus, "f:id")
            doc_entries = focus.findall("f:entry", NS)
            first = doc_entries[0].find("f:resource/*", NS) if doc_entries else None
            if first is None or local(first.tag) != "Composition":
                errors.append("the document Bundle does not start with a Composition")
            nhs = [
                value(i, "f:value")
                for p in focus.findall("f:entry/f:resource/f:Patient", NS)
                for i in p.findall("f:identifier", NS)
                if value(i, "f:system") == NHS_NUMBER_SYSTEM
            ]
            if not nhs:
                errors.append("the document's Patient has no NHS number")
            for n in nhs:
                if not nhs_number_valid(n):
                    errors.append(f"NHS number {n} fails Modulus 11")
            info["nhs_number"] = nhs[0] if nhs else None
    return errors, info


def validate_hl7v2(data):
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    import base64
    import binascii

    info = {}
    text = data.decode("utf-8")
    if "\n" in text:
        return ["segments must end with CR only"], info
    # hl7apy caps OBX-5 at 199 characters, which no embedded PDF fits in: an OBX of type ED
    # has its data checked here (five components, Base64, decodes) and is given to hl7apy
    # with the data shortened.
    errors = []
    segments = text.split("\r")
    for n, seg in enumerate(segments):
        f = seg.split("|")
        if f[0] == "OBX" and len(f) > 5 and f[2] == "ED":
            ed = f[5].split("^")
            if len(ed) != 5 or ed[3] != "Base64":
                errors.append(f"OBX {f[1]}: OBX-5 ED must be 5 components with Base64 encoding")
                continue
            try:
                base64.b64decode(ed[4], validate=True)
            except binascii.Error as e:
                errors.append(f"OBX {f[1]}: OBX-5.5 is not Base64: {e}")
            info.setdefault("embedded", []).append(ed[2])
            ed[4] = ed[4][:64]
            f[5] = "^".join(ed)
            segments[n] = "|".join(f)
    if errors:
        return errors, info
    text = "\r".join(segments)
    try:
        msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        msg.validate()
    except Exception as e:
        return [f"HL7 v2 (strict): {type(e).__name__}: {e}"], info
    info["message_type"] = msg.msh.msh_9.to_er7()
    info["version"] = msg.msh.msh_12.to_er7()
    info["control_id"] = msg.msh.msh_10.to_er7()
    return [], info


# FHIR R4 (4.0.1) primitive formats, from the specification's datatypes page.
R4_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]"
    r"|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3])"
    r":[0-5][0-9]|14:00)))?)?)?"
)
R4_DATE = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
)
R4_INSTANT = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
UK_CORE = "https://fhir.hl7.org.uk/StructureDefinition/"
PATHOLOGY_PROFILES = {
    "Composition": ["http://hl7.eu/fhir/laboratory/StructureDefinition/Composition-eu-lab"],
    "DiagnosticReport": [UK_CORE + "UKCore-DiagnosticReport-Lab"],
    "Observation": [UK_CORE + "UKCore-Observation-Lab"],
    "Patient": [UK_CORE + "UKCore-Patient"],
    "Organization": [UK_CORE + "UKCore-Organization"],
    "Practitioner": [UK_CORE + "UKCore-Practitioner"],
    "ServiceRequest": [UK_CORE + "UKCore-ServiceRequest-Lab"],
    "Specimen": [UK_CORE + "UKCore-Specimen"],
}
# Where each resource type keeps its dateTime / date / instant elements.
DATE_ELEMENTS = {
    "dateTime": ["effectiveDateTime", "authoredOn", "collectedDateTime", "receivedTime", "date"],
    "date": ["birthDate"],
    "instant": ["issued"],
}


def fhir_r4_core(data):
    """FHIR.js's verdict on one resource (errors only); fails loudly when it is missing."""
    import os
    import subprocess
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.isdir(os.path.join(here, "node_modules", "fhir")):
        return ["FHIR.js is not installed: run tests/run-all (npm install in tests/peers)"]
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(data)
        name = f.name
    try:
        out = subprocess.run(
            ["node", os.path.join(here, "fhir_r4_check.js"), name],
            capture_output=True,
            check=False,
        )
    finally:
        os.unlink(name)
    if out.returncode != 0 or not out.stdout.strip():
        return [f"FHIR.js failed: {out.stderr.decode(errors='replace')[:500]}"]
    verdict = json.loads(out.stdout.decode().splitlines()[0])
    return [f"FHIR R4 (FHIR.js) {e['location']}: {e['message']}" for e in verdict["errors"]]


def validate_fhir_pathology(data):
    from fhir.resources.R4B import get_fhir_model_class

    info = {}
    errors = []
    try:
        doc = json.loads(data)
    except ValueError as e:
        return [f"not JSON: {e}"], info
    errors += fhir_r4_core(data)
    try:
        get_fhir_model_class("Bundle").model_validate(doc)
    except Exception as e:
        errors.append(f"FHIR model: {e}")

    # ele-1: every element has a value or children; no empty strings, objects or arrays.
    def walk(v, path):
        if isinstance(v, dict):
            if not v:
                errors.append(f"{path}: empty object")
            for k, x in v.items():
                walk(x, f"{path}.{k}")
                if k in DATE_ELEMENTS["dateTime"] and isinstance(x, str) and not R4_DATETIME.fullmatch(x):
                    errors.append(f"{path}.{k}: {x!r} is not an R4 dateTime")
                if k in DATE_ELEMENTS["date"] and isinstance(x, str) and not R4_DATE.fullmatch(x):
                    errors.append(f"{path}.{k}: {x!r} is not an R4 date")
                if k in DATE_ELEMENTS["instant"] and isinstance(x, str) and not R4_INSTANT.fullmatch(x):
                    errors.append(f"{path}.{k}: {x!r} is not an R4 instant")
        elif isinstance(v, list):
            if not v:
                errors.append(f"{path}: empty array")
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")
        elif isinstance(v, str) and not v.strip():
            errors.append(f"{path}: empty string")

    walk(doc, "Bundle")
    if doc.get("resourceType") != "Bundle" or doc.get("type") != "document":
        errors.append("a test report is a Bundle of type document (IG v0.3.0 on)")
    ident = doc.get("identifier") or {}
    if not (ident.get("system") and ident.get("value")):
        errors.append("bdl-9: a document has Bundle.identifier with a system and a value")
    if not R4_INSTANT.fullmatch(doc.get("timestamp", "")):
        errors.append("bdl-10: a document has Bundle.timestamp (an instant)")
    entries = doc.get("entry") or []
    by_url = {}
    for i, e in enumerate(entries):
        url = e.get("fullUrl")
        if not url or url in by_url:
            errors.append(f"entry[{i}]: fullUrl missing or repeated (bdl-7)")
        by_url[url] = e.get("resource", {})
    types = [e.get("resource", {}).get("resourceType") for e in entries]
    if not types or types[0] != "Composition":
        errors.append("bdl-11: the first entry of a document is the Composition")
    info["resources"] = {t: types.count(t) for t in sorted(set(t for t in types if t))}

    # Every reference resolves inside the bundle.
    def refs(v, path):
        if isinstance(v, dict):
            if isinstance(v.get("reference"), str):
                yield path, v["reference"]
            for k, x in v.items():
                yield from refs(x, f"{path}.{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                yield from refs(x, f"{path}[{i}]")

    def target(ref, path, *allowed):
        res = by_url.get(ref)
        if res is None:
            errors.append(f"{path}: {ref} is not in the bundle")
            return None
        if allowed and res.get("resourceType") not in allowed:
            errors.append(f"{path}: {ref} is a {res.get('resourceType')}, expected {allowed}")
        return res

    for path, ref in refs(doc, "Bundle"):
        target(ref, path)

    for i, e in enumerate(entries):
        r = e.get("resource", {})
        t = r.get("resourceType")
        where = f"entry[{i}] {t}"
        profiles = (r.get("meta") or {}).get("profile") or []
        if t in PATHOLOGY_PROFILES and profiles != PATHOLOGY_PROFILES[t]:
            errors.append(f"{where}: meta.profile {profiles} is not {PATHOLOGY_PROFILES[t]}")
        if t in ("Composition", "DiagnosticReport", "Observation", "ServiceRequest", "Specimen"):
            subject = (r.get("subject") or {}).get("reference")
            if not subject or (by_url.get(subject) or {}).get("resourceType") != "Patient":
                errors.append(f"{where}: subject must be the Patient")
        if t == "Patient":
            for ident in r.get("identifier", []):
                if ident.get("system") == NHS_NUMBER_SYSTEM and not nhs_number_valid(ident.get("value")):
                    errors.append(f"{where}: NHS number {ident.get('value')} fails Modulus 11")
        if t == "Observation":
            cats = [c.get("code") for cc in r.get("category", []) for c in cc.get("coding", [])]
            if "laboratory" not in cats:
                errors.append(f"{where}: category laboratory is required")
            if not r.get("code"):
                errors.append(f"{where}: code is required")
            for m in r.get("hasMember", []):
                target(m.get("reference"), f"{where}.hasMember", "Observation")
            values = [k for k in r if k.startswith("value")]
            if len(values) > 1:
                errors.append(f"{where}: more than one value[x]: {values}")
            q = r.get("valueQuantity")
            if q and q.get("code") and not q.get("system"):
                errors.append(f"{where}: qty-3: a Quantity code needs its system")
        if t == "DiagnosticReport":
            for m in r.get("result", []):
                target(m.get("reference"), f"{where}.result", "Observation")
            for f in r.get("presentedForm", []):
                if f.get("data"):
                    import base64

                    try:
                        base64.b64decode(f["data"], validate=True)
                    except Exception as ex:
                        errors.append(f"{where}: presentedForm data is not Base64: {ex}")
    if "DiagnosticReport" not in info["resources"]:
        errors.append("a test report bundle holds a DiagnosticReport")
    return errors, info


def main():
    kind, files = sys.argv[1], sys.argv[2:]
    check = {
        "itk3": validate_itk3,
        "hl7v2": validate_hl7v2,
        "fhir-pathology": validate_fhir_pathology,
    }[kind]
    failed = False
    for name in files:
        with open(name, "rb") as f:
            errors, info = check(f.read())
        failed |= bool(errors)
        print(json.dumps({"file": name, "ok": not errors, "errors": errors, **info}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
