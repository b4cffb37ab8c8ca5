"""The gateway's request pipeline in-process, in front of a fake upstream that records.

End-to-end tests prove the real clients against moto; these prove, in milliseconds, what
the pipeline forwards, refuses and audits for requests no real client would send. The
gateway and the fake upstream run on an event loop in a thread of their own, on loopback
ports, and tests speak raw HTTP to them (duplicate headers, odd request targets and all).
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditLog, AuditUnavailable, DurableRecord
from iamgate.aws.operations import OperationIndex
from iamgate.aws.upstream_credentials import AwsCredentials, RoleKey, UpstreamCredentialCache
from iamgate.config import Config
from iamgate.connections import GuardedRunner
from iamgate.identity.credentials import GatewayCredentials, mint_credentials
from iamgate.proxy.gateway import Gateway, upstream_session
from iamgate.store.database import load_keyring, open_engine
from iamgate.store.directory import Directory
from iamgate.store.users import sync_bootstrap_users

PROD = "111111111111"
CI = "222222222222"

ROLES: list[dict[str, Any]] = [
    {
        "name": "data-scientist",
        "allow": {
            "accounts": {"env": ["prod"]},
            "aws_roles": ["ReadOnly"],
            "access_levels": ["read", "list"],
        },
        "deny": {"actions": ["rds:Delete*"]},
    },
    {
        "name": "ci-runner",
        "allow": {
            "accounts": {"name": ["acme-ci"]},
            "aws_roles": ["CIRunner"],
            "actions": [
                "ec2:*",
                "s3:*",
                "dynamodb:*",
                "sqs:List*",
                "ecr:*",
                "sts:*",
                "iam:*",
                "rds:*",
                "lambda:*",
                "cloudwatch:*",
            ],
        },
        "guardrails": [{"action": "ec2:RunInstances", "max": {"MaxCount": 10}}],
    },
]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class RecordingAudit(AuditLog):
    """The audit log with its writer replaced by a list: every event, in order. While
    `unavailable`, no record becomes durable (as when the store cannot be written)."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine, enabled=False)
        self.events: list[AuditEvent] = []
        self.unavailable = False

    def append(self, event: AuditEvent) -> None:
        self.events.append(event)

    def start_durable(self, event: AuditEvent) -> DurableRecord:
        self.events.append(event)
        if self.unavailable:
            failed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            failed.set_exception(AuditUnavailable("the store is not answering"))
            return DurableRecord(failed)
        return super().start_durable(event)


def _fake_answer(request: web.Request, body: bytes) -> web.Response:
    if "x-amz-json" in request.headers.get("Content-Type", ""):
        return web.json_response({}, content_type="application/x-amz-json-1.0")
    return web.Response(
        body=b"<Response><RequestId>r</RequestId></Response>", content_type="text/xml"
    )


@dataclass
class Pipeline:
    """A started gateway and its fake upstream; `received` is what reached the upstream."""

    url: str
    host: str
    port: int
    gateway: Gateway
    audit: RecordingAudit
    received: list[Received] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    stalled: asyncio.Event | None = None  # set: the upstream answers paths with /stall
    # (and it answers paths with /large with 64 MiB)
    sts: UpstreamSts | None = None  # the upstream's STS, which can be made to refuse

    def release_stalled(self) -> None:
        """Let the upstream answer the requests it holds (paths with `/stall`), and all
        that follow."""
        assert self.loop is not None and self.stalled is not None
        self.loop.call_soon_threadsafe(self.stalled.set)

    def issue(self, principal: str, account_id: str, role: str) -> GatewayCredentials:
        return mint_credentials(
            self.gateway.keyring,
            principal=principal,
            kind="user",
            account_id=account_id,
            aws_role=role,
            gateway_roles=(),
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        )

    def signed(
        self,
        creds: GatewayCredentials,
        service: str,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        region: str = "us-east-1",
    ) -> list[tuple[str, str]]:
        """The headers botocore's signer gives `method target` with `body`."""
        request = AWSRequest(
            method=method, url=self.url + target, data=body, headers=dict(headers or {})
        )
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
        signer(
            Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
            service,
            region,
        ).add_auth(request)
        return [(k, v) for k, v in request.headers.items()]

    def send(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes = b"",
    ) -> Answer:
        """Exactly these request line, headers (duplicates too) and body."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            names = {name.lower() for name, _ in headers}
            if "host" not in names:
                connection.putheader("Host", self.url.removeprefix("http://"))
            for name, value in headers:
                connection.putheader(name, value)
            if "content-length" not in names:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def calls(self, wait: float = 5.0) -> list[dict[str, Any]]:
        """The fields of each AWS-call record, outcome merged in, oldest first. A forwarded
        call's outcome is recorded after its last byte has gone: wait for it."""
        deadline = time.monotonic() + wait
        while True:
            records: dict[str, dict[str, Any]] = {}
            for event in list(self.audit.events):
                fields = dict(event.fields)
                request_id = str(fields["request_id"])
                if event.type is EventType.AWS_CALL:
                    records[request_id] = fields
                elif event.type is EventType.AWS_CALL_OUTCOME and request_id in records:
                    records[request_id].update(fields)
            if all("status" in r for r in records.values()) or time.monotonic() > deadline:
                return list(records.values())
            time.sleep(0.01)

    def reset(self) -> None:
        self.received.clear()
        self.audit.events.clear()


def _config(upstream_url: str, public_url: str, state: Path, server: Mapping[str, Any]) -> Config:
    return Config.model_validate(
        {
            "server": {
                "listen": public_url.removeprefix("http://"),
                "public_url": public_url,
                **server,
            },
            "storage": {"url": f"sqlite:///{state}"},
            "aws": {
                "upstream": {"endpoint_url": upstream_url},
                "accounts": [
                    {"name": "acme-prod", "id": PROD, "labels": {"env": "prod"}},
                    {"name": "acme-ci", "id": CI, "labels": {"env": "ci"}},
                ],
            },
            "roles": ROLES,
            "users": [
                {"name": "dana", "roles": ["data-scientist"]},
                {"name": "ci-bot", "roles": ["ci-runner"]},
                {"name": "erin", "roles": ["ci-runner"]},
            ],
        }
    )


class UpstreamSts:
    """The upstream's STS as the pipeline sees it: credentials for any role, or, while
    `failing`, the error STS gives a gateway it does not trust."""

    def __init__(self) -> None:
        self.failing = False

    def __call__(self, key: RoleKey) -> AwsCredentials:
        if self.failing:
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "not authorized to assume"}},
                "AssumeRole",
            )
        return _static_credentials(key)


def _static_credentials(key: RoleKey) -> AwsCredentials:
    return AwsCredentials(
        access_key_id="ASIAUPSTREAMEXAMPLE0",
        secret_access_key="upstream-secret",
        session_token=f"upstream-token-for-{key.session_name}",
        expiration=datetime(2099, 1, 1, tzinfo=UTC),
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_pipeline(
    state_dir: Path, index: OperationIndex, *, server: Mapping[str, Any] | None = None
) -> Iterator[Pipeline]:
    """A pipeline on its own loop in a thread until the generator is closed; `server`
    adds to the `server:` section of its configuration (limits and timeouts)."""
    loop = asyncio.new_event_loop()
    received: list[Received] = []
    sts = UpstreamSts()
    started = threading.Event()
    stop = asyncio.Event()
    stalled = asyncio.Event()
    holder: dict[str, Any] = {}

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(
            Received(
                request.method,
                request.raw_path.partition("?")[0],
                request.raw_path.partition("?")[2],
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
                body,
            )
        )
        if "/stall" in request.path:
            await stalled.wait()
        if "/large" in request.path:  # an answer larger than any socket buffers
            return web.Response(body=b"L" * (64 * 1024 * 1024), content_type="text/plain")
        return _fake_answer(request, body)

    async def main() -> None:
        upstream_app = web.Application(client_max_size=1 << 30)
        upstream_app.router.add_route("*", "/{tail:.*}", record)
        upstream_runner = web.AppRunner(upstream_app, auto_decompress=False)
        await upstream_runner.setup()
        upstream_port = _free_port()
        await web.TCPSite(upstream_runner, "127.0.0.1", upstream_port).start()

        port = _free_port()
        public = f"http://localhost:{port}"
        config = _config(
            f"http://127.0.0.1:{upstream_port}", public, state_dir / "state.db", server or {}
        )
        session = upstream_session(config.server)
        engine = open_engine(config.storage.url)
        sync_bootstrap_users(engine, config.users)
        audit = RecordingAudit(engine)
        gateway = Gateway(
            config,
            load_keyring(engine),
            index,
            UpstreamCredentialCache(sts),
            audit,
            Directory(engine),
            session=session,  # the pipeline's upstream client is the harness's to close
        )
        await gateway.start()

        @web.middleware
        async def every_request(request: web.Request, handler: Any) -> web.StreamResponse:
            # As the server does: an AWS call is one whatever its target, even `host:port`.
            return await gateway.handle(request)

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[every_request])
        app.router.add_route("*", "/{tail:.*}", gateway.handle, expect_handler=gateway.expect)
        runner = GuardedRunner(  # as the server runs it
            app,
            head_timeout=config.server.request_head_timeout.total_seconds(),
            idle_timeout=config.server.idle_timeout.total_seconds(),
            auto_decompress=False,
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        holder["pipeline"] = Pipeline(
            public, "127.0.0.1", port, gateway, audit, received, loop, stalled, sts
        )
        started.set()
        await stop.wait()
        await runner.cleanup()
        await gateway.close()
        await session.close()
        await upstream_runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(60):
        raise RuntimeError("the in-process pipeline did not start")
    try:
        yield holder["pipeline"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
