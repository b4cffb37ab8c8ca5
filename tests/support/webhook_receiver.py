"""A webhook receiver of its own process for the notification tests: aiohttp on 127.0.0.1,
checking each delivery's `X-Iamgate-Signature` against the shared secret.

    python webhook_receiver.py PORT SECRET_FILE OUT.jsonl

A delivery whose signature checks out is appended to OUT.jsonl and answered 204; any other
is answered 401 and recorded as {"bad_signature": …}, so the sender must try it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path

from aiohttp import web


def _append(out: Path, record: dict[str, object]) -> None:
    with out.open("a") as f:
        f.write(json.dumps(record) + "\n")


def main() -> None:
    port, secret, out = int(sys.argv[1]), Path(sys.argv[2]).read_text().strip(), Path(sys.argv[3])

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Iamgate-Signature", "")
        good = hmac.compare_digest(expected, given)
        record = json.loads(body) if good else {"bad_signature": given}
        _append(out, record)
        return web.Response(status=204 if good else 401)

    app = web.Application()
    app.router.add_post("/hook", receive)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("ready", flush=True))


if __name__ == "__main__":
    main()
