"""A stock SMTP server (aiosmtpd) for the end-to-end tests: STARTTLS required, AUTH required
(after TLS), every accepted message written to OUT as N.eml with N.json (envelope, user).

RCPT addresses starting with "refuse" get 550, "busy" get 451, so tests can drive both
failure paths.

    python smtp_sink.py --port P --cert C --key K --user U --password W --out DIR
"""

import argparse
import asyncio
import json
import os
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("refuse"):
            return "550 5.1.1 Mailbox refused by the test relay"
        if local.startswith("busy"):
            return "451 4.3.0 Test relay busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.out, str(self.count))
        with open(base + ".json", "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "user": session.auth_data.login.decode()
                    if isinstance(session.auth_data, LoginPassword)
                    else None,
                    "tls": session.ssl is not None,
                },
                f,
            )
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == a.user
            and auth_data.password.decode() == a.password
        )
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    controller = Controller(
        Sink(a.out),
        hostname="127.0.0.1",
        port=a.port,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    print(f"ready {a.port}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
