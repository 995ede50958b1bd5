"""A GP system's side of MESH for the end-to-end tests, using NHS England's own client
(PyPI Mesh-Client) against the MESH sandbox.

    python mesh_gp.py --url U --mailbox M --key K receive --out DIR
        downloads every inbox message (chunks joined), writes each body to DIR/<id>,
        acknowledges it, and prints a JSON list of what it got
    python mesh_gp.py --url U --mailbox M --key K send --to MBX --workflow W FILE...
        sends each file, printing a JSON list of the MESH message ids
"""

import argparse
import json
import os

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
        else:
            ids = []
            for name in a.files:
                with open(name, "rb") as f:
                    ids.append(client.send_message(a.to, f.read(), workflow_id=a.workflow, subject="ITK3 response"))
            print(json.dumps(ids))


if __name__ == "__main__":
    main()
