"""A GP system's side of MESH for the end-to-end tests, using NHS England's own client
(PyPI Mesh-Client) against the MESH sandbox.

    python mesh_gp.py --url U --mailbox M --key K receive --out DIR
        downloads every inbox message (chunks joined), writes each body to DIR/<id>,
        acknowledges it, and prints a JSON list of what it got
    python mesh_gp.py --url U --mailbox M --key K send --to MBX --workflow W FILE...
        sends each file, printing a JSON list of the MESH message ids
    python mesh_gp.py --url U --mailbox M --key K respond --out DIR --codes 20013,30001
        what a GP system does with ITK3 messages: downloads each, validates it with
        validate.py (FHIR STU3 and the ITK3 rules), acknowledges it at MESH, and answers the
        mailbox that sent it on the message's workflow + "_ACK" with one ITK3 response per
        code, built from NHS Digital's Toolkit Workbench response template; prints a JSON
        list of what it got and answered, and exits 1 if a message was not valid
"""

import argparse
import datetime
import json
import os
import sys
import uuid

from mesh_client import MeshClient


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--mailbox", required=True)
    p.add_argument("--password", default="password")
    p.add_argument("--key", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive")
    r.add_argument("--out", required=True)
    s = sub.add_parser("send")
    s.add_argument("--to", required=True)
    s.add_argument("--workflow", required=True)
    s.add_argument("files", nargs="+")
    q = sub.add_parser("respond")
    q.add_argument("--out", required=True)
    q.add_argument("--codes", required=True)
    a = p.parse_args()

    with MeshClient(a.url, a.mailbox, a.password, shared_key=a.key.encode(), max_retries=0) as client:
        client.handshake()
        if a.cmd == "receive":
            got = []
            for message_id in client.list_messages():
                message = client.retrieve_message(message_id)
                body = message.read()
                path = os.path.join(a.out, message_id)
                with open(path, "wb") as f:
                    f.write(body)
                got.append(
                    {
                        "id": message_id,
                        "workflow": message.mex_header("workflowid"),
                        "from": message.mex_header("from"),
                        "local_id": message.mex_header("localid"),
                        "file_name": message.mex_header("filename"),
                        "message_type": message.mex_header("messagetype"),
                        "size": len(body),
                        "file": path,
                    }
                )
                message.acknowledge()
            print(json.dumps(got))
        elif a.cmd == "respond":
            respond(client, a)
        else:
            ids = []
            for name in a.files:
                with open(name, "rb") as f:
                    ids.append(client.send_message(a.to, f.read(), workflow_id=a.workflow, subject="ITK3 response"))
            print(json.dumps(ids))


TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "itk3-response-template.xml")
POSITIVE = {"20013": "Success", "30001": "Patient known here", "30004": "Patient known here and recently deceased"}
NEGATIVE = {"30002": "Patient not known here", "30003": "Patient no longer at this clinical setting",
            "20009": "Payload validation failure"}


def itk3_response(original_id, code, handling_extra):
    """An ITK3 response (ITK008M) to `original_id` with `code`, from the TKW template."""
    with open(TEMPLATE, encoding="utf-8") as f:
        xml = f.read()
    xml = xml[xml.index("<Bundle"):]  # the template's own comment is about the test harness
    ok = code in POSITIVE
    text = POSITIVE.get(code) or NEGATIVE.get(code, "error")
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for k, v in {
        "__IAID_BUNDLE_UUID__": str(uuid.uuid4()),
        "__IA_BUNDLE_UUID__": str(uuid.uuid4()),
        "__IA_MESSAGE_HEADER_UUID__": str(uuid.uuid4()),
        "__SENDER_UUID__": str(uuid.uuid4()),
        "__IA_OPERATION_OUTCOME_UUID__": str(uuid.uuid4()),
        "__TIMESTAMP__": stamp,
        "__REQUEST_UUID__": original_id,
        "__RESPONSE_CODE__": "ok" if ok else "fatal-error",
        "__ISSUE_SEVERITY__": "information" if ok else "fatal",
        "__ISSUE_CODE__": "informational" if ok else "processing",
        "__PRIORITY_BLOCK__": handling_extra,
    }.items():
        xml = xml.replace(k, v)
    xml = xml.replace('<code value="30001"/>\n\t\t\t\t\t\t\t<display value="errortext"/>',
                      f'<code value="{code}"/>\n\t\t\t\t\t\t\t<display value="{text}"/>')
    if not ok:
        xml = xml.replace("</details>\n\t\t\t\t</issue>",
                          f'</details>\n\t\t\t\t\t<diagnostics value="{text} (GP system)"/>\n\t\t\t\t</issue>')
    # The receiver's header asks for no acknowledgement of its own.
    xml = xml.replace('<extension url="InfAckRequested">\n\t\t\t\t\t\t<valueBoolean value="true"/>',
                      '<extension url="InfAckRequested">\n\t\t\t\t\t\t<valueBoolean value="false"/>')
    assert f'value="{code}"' in xml and original_id in xml, "template changed"
    return xml.encode("utf-8")


def respond(client, a):
    sys.path.insert(0, os.path.dirname(__file__))
    import validate

    codes = [c for c in a.codes.split(",") if c]
    got, invalid = [], False
    for message_id in client.list_messages():
        message = client.retrieve_message(message_id)
        body = message.read()
        path = os.path.join(a.out, message_id)
        with open(path, "wb") as f:
            f.write(body)
        errors, info = validate.validate_itk3(body)
        invalid |= bool(errors)
        workflow = message.mex_header("workflowid")
        sender = message.mex_header("from")
        message.acknowledge()
        answered = []
        if not errors:
            extra = (
                '<extension url="MessageDefinition"><valueReference><reference '
                'value="https://fhir.nhs.uk/STU3/MessageDefinition/ITK-Response-MessageDefinition-1"/>'
                '</valueReference></extension>'
                '<extension url="SenderReference"><valueString value="None"/></extension>'
                '<extension url="LocalExtension"><valueString value="None"/></extension>\n'
            )
            for code in codes:
                answered.append(
                    client.send_message(sender, itk3_response(info["message_id"], code, extra),
                                        workflow_id=workflow + "_ACK", subject="ITK3 response")
                )
        got.append({"id": message_id, "workflow": workflow, "from": sender, "file": path,
                    "errors": errors, "answered": answered, **info})
    print(json.dumps(got))
    if invalid:
        sys.exit(1)


if __name__ == "__main__":
    main()
