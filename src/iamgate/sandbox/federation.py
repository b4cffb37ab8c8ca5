"""A stand-in for AWS's federation endpoint (signin.aws.amazon.com/federation), on loopback.

moto has no console sign-in, so the sandbox brings this: it checks a `getSigninToken` request
exactly as AWS documents it, proves the session credentials are real by asking the sandbox's
STS who they belong to, and answers `Action=login` with a page naming that identity, where
the real endpoint would open the console. Every request it saw is kept for the tests.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

SIGNIN_TOKEN_LIFETIME = 15 * 60  # AWS: a sign-in token must be used within 15 minutes
CONSOLE_HOST_SUFFIXES = (
    "console.aws.amazon.com",
    "console.amazonaws-us-gov.com",
    "console.amazonaws.cn",
)


@dataclass
class Signin:
    """A session the stand-in issued a token for, and whether a browser used it."""

    arn: str
    account: str
    access_key_id: str
    session_duration: int | None
    issued_at: float
    destination: str | None = None
    issuer: str | None = None
    used: bool = False


@dataclass
class FederationStandIn:
    sts_endpoint_url: str
    host: str = "127.0.0.1"
    port: int = 0
    tokens: dict[str, Signin] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)  # secrets masked
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/federation"

    @property
    def signins(self) -> list[Signin]:
        return [s for s in self.tokens.values() if s.used]

    # -- the endpoint ----------------------------------------------------------------------

    async def federation(self, request: web.Request) -> web.Response:
        query = request.query
        self.requests.append(
            {k: ("***" if k in ("Session", "SigninToken") else v) for k, v in query.items()}
        )
        if len(query.getall("Action", [])) != 1:
            return _bad("exactly one Action is required")
        action = query["Action"]
        if action == "getSigninToken":
            return await self.get_signin_token(request)
        if action == "login":
            return self.login(request)
        return _bad(f"unknown Action {action!r}")

    async def get_signin_token(self, request: web.Request) -> web.Response:
        query = request.query
        unknown = set(query) - {"Action", "Session", "SessionDuration"}
        if unknown:
            return _bad(f"unexpected parameters: {sorted(unknown)}")
        if any(len(query.getall(k)) != 1 for k in query):
            return _bad("a parameter is repeated")
        duration = None
        if "SessionDuration" in query:
            text = query["SessionDuration"]
            if not text.isdigit() or not 900 <= int(text) <= 43200:
                return _bad("SessionDuration must be 900 to 43200 seconds")
            duration = int(text)
        try:
            session = json.loads(query.get("Session", ""))
        except ValueError:
            return _bad("Session must be JSON")
        keys = ("sessionId", "sessionKey", "sessionToken")
        if not isinstance(session, dict) or sorted(session) != sorted(keys):
            return _bad(f"Session must hold exactly {', '.join(keys)}")
        if not all(isinstance(session[k], str) and session[k] for k in keys):
            return _bad("Session values must be non-empty strings")
        try:
            identity = await asyncio.to_thread(self._whoami, session)
        except (ClientError, BotoCoreError):
            return web.Response(status=400, text="the session credentials are not valid")
        if ":assumed-role/" not in identity["Arn"]:
            return _bad("console sign-in takes role session credentials")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Signin(
            identity["Arn"], identity["Account"], session["sessionId"], duration, time.time()
        )
        return web.json_response({"SigninToken": token})

    def login(self, request: web.Request) -> web.Response:
        query = request.query
        unknown = set(query) - {"Action", "Issuer", "Destination", "SigninToken"}
        if unknown:
            return _bad(f"unexpected parameters: {sorted(unknown)}")
        signin = self.tokens.get(query.get("SigninToken", ""))
        if signin is None or signin.used:
            return _bad("unknown or used SigninToken")
        if time.time() - signin.issued_at > SIGNIN_TOKEN_LIFETIME:
            return _bad("the SigninToken is older than 15 minutes")
        destination = urlsplit(query.get("Destination", ""))
        host = destination.hostname or ""
        if destination.scheme != "https" or not host.endswith(CONSOLE_HOST_SUFFIXES):
            return _bad("Destination must be an https console URL")
        issuer = urlsplit(query.get("Issuer", ""))
        if issuer.scheme not in ("http", "https") or not issuer.netloc:
            return _bad("Issuer must be the broker's URL")
        signin.used = True
        signin.destination = query["Destination"]
        signin.issuer = query["Issuer"]
        lasts = f"{signin.session_duration} s" if signin.session_duration else "1 hour (default)"
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>AWS console (sandbox)</title></head><body>
<h1>Signed in to the AWS console</h1>
<p>as <code id="arn">{html.escape(signin.arn)}</code></p>
<p>account <code id="account">{html.escape(signin.account)}</code></p>
<p>opening <code id="destination">{html.escape(signin.destination)}</code></p>
<p>session <span id="duration">{html.escape(lasts)}</span>,
issued by <code id="issuer">{html.escape(signin.issuer)}</code></p>
<p><small>The iamgate sandbox's stand-in for signin.aws.amazon.com.</small></p>
</body></html>"""
        return web.Response(text=page, content_type="text/html")

    def _whoami(self, session: dict[str, str]) -> dict[str, Any]:
        client: Any = botocore.session.get_session().create_client(
            "sts",
            region_name="us-east-1",
            endpoint_url=self.sts_endpoint_url,
            aws_access_key_id=session["sessionId"],
            aws_secret_access_key=session["sessionKey"],
            aws_session_token=session["sessionToken"],
        )
        return dict(client.get_caller_identity())

    # -- running it -------------------------------------------------------------------------

    def start(self) -> None:
        if not self.port:
            with socket.socket() as probe:
                probe.bind((self.host, 0))
                self.port = int(probe.getsockname()[1])
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/federation", self.federation)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="federation-stand-in", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the federation stand-in did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = self._loop = None

    def __enter__(self) -> FederationStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bad(reason: str) -> web.Response:
    return web.Response(status=400, text=reason)
