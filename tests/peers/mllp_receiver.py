"""A results system that takes HL7 v2 over MLLP, for the end-to-end tests: python-hl7's own
asyncio MLLP server (hl7.mllp) and its acknowledgement builder (Message.create_ack).

    python mllp_receiver.py --port P --out DIR --answers AA,AE,none,AA

Each message received is written to DIR/<n>.hl7 and answered by the next entry of --answers
(the last one repeats): an acknowledgement code (AE and AR carry an ERR segment whose text
names PID-3), or `none` to say nothing and close the connection. Prints `listening` once
bound, then one JSON line per message: {"n", "control_id", "answer"}.
"""

import argparse
import asyncio
import json
import os
import sys

import hl7
from hl7.mllp import start_hl7_server


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--answers", default="AA")
    a = p.parse_args()
    answers = a.answers.split(",")
    count = 0

    async def handle(reader, writer):
        nonlocal count
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                n = count
                count += 1
                with open(os.path.join(a.out, f"{n}.hl7"), "w", newline="") as f:
                    f.write(str(message))
                answer = answers[min(n, len(answers) - 1)]
                control_id = str(message.segment("MSH")(10))
                print(json.dumps({"n": n, "control_id": control_id, "answer": answer}), flush=True)
                if answer == "none":
                    writer.close()
                    return
                ack = message.create_ack(answer)
                text = str(ack)
                if answer in ("AE", "AR", "CE", "CR"):
                    text += "\rERR||PID^1^3|101^Required field missing^HL70357|E||||Patient not known to this practice"
                writer.writemessage(hl7.parse(text))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    server = await start_hl7_server(handle, host="127.0.0.1", port=a.port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
