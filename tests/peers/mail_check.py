"""Reads mail the hub wrote with Python's own email package (a parser edthub did not write) and
prints what a mail client would show, as JSON, for the end-to-end tests to check.

    python mail_check.py FILE.eml
"""

import email
import email.policy
import hashlib
import json
import sys


def main():
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    defects = [f"{type(d).__name__}" for d in msg.defects]
    text, html, attachments = None, None, []
    for part in msg.walk():
        defects += [f"{type(d).__name__}" for d in part.defects]
        if part.is_multipart():
            continue
        if part.is_attachment():
            content = part.get_content()
            if isinstance(content, str):
                content = content.encode()
            attachments.append(
                {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )
        elif part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and html is None:
            html = part.get_content()

    def mailboxes(name):
        header = msg[name]
        if header is None:
            return []
        return [[a.display_name, a.addr_spec] for a in header.addresses]

    print(
        json.dumps(
            {
                "from": mailboxes("From"),
                "to": mailboxes("To"),
                "subject": str(msg["Subject"]),
                "message_id": str(msg["Message-ID"]),
                "in_reply_to": str(msg["In-Reply-To"]) if msg["In-Reply-To"] else None,
                "date": str(msg["Date"]),
                "defects": defects,
                "text": text,
                "html": html,
                "attachments": attachments,
            }
        )
    )


if __name__ == "__main__":
    main()
