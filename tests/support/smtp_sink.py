"""An SMTP server of its own process for the notification tests (aiosmtpd on 127.0.0.1):
every message received is appended to OUT.jsonl as {from, to, subject, text}.

    python smtp_sink.py PORT OUT.jsonl
"""

from __future__ import annotations

import email
import email.policy
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out: Path) -> None:
        self.out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message["Subject"]),
            "text": body.get_content() if body is not None else "",
        }
        with self.out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"


def main() -> None:
    port, out = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    controller.stop()


if __name__ == "__main__":
    main()
