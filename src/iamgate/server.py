"""Assembling a running gateway from a configuration: store, keys, index, proxy, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditLog
from iamgate.aws.federation import ConsoleFederation, botocore_caller_arn
from iamgate.aws.index_cache import cache_dir, load_or_build
from iamgate.aws.operations import OperationIndex
from iamgate.aws.post_form import is_form_upload
from iamgate.aws.upstream_credentials import UpstreamCredentialCache, botocore_assume_role
from iamgate.config import (
    Config,
    ConfigError,
    ConfigSource,
    LiveConfig,
    load_config_with_source,
)
from iamgate.connections import GuardedRunner
from iamgate.control.logins import Logins
from iamgate.control.notifications import Deliverer
from iamgate.control.requests import Requests
from iamgate.control.users import Admin
from iamgate.identity.credentials import KeyRing
from iamgate.proxy.gateway import MAX_BUFFERED_BODY, Gateway
from iamgate.store.database import load_keyring, open_engine
from iamgate.store.directory import Directory
from iamgate.store.issued_credentials import record_issued
from iamgate.store.requests import Grants
from iamgate.store.users import sync_bootstrap_users
from iamgate.web.api import MAX_BODY, PREFIX, Api, body_too_large, no_such_endpoint
from iamgate.web.pages import Pages
from iamgate.web.sessions import BrowserSessions

log = logging.getLogger(__name__)
T = TypeVar("T")
SHUTDOWN_SECONDS = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Runtime:
    live: LiveConfig
    engine: Engine
    keyring: KeyRing
    gateway: Gateway
    audit: AuditLog
    console: ConsoleFederation
    config_source: ConfigSource | None = None
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reload at a time

    @property
    def config(self) -> Config:
        return self.live.config


def build_runtime(
    config: Config,
    *,
    index: OperationIndex | None = None,
    source: ConfigSource | None = None,
) -> Runtime:
    live = LiveConfig(config)
    engine = open_engine(config.storage.url)
    keyring = load_keyring(engine)
    upstream = config.aws.upstream
    assume_role = botocore_assume_role(upstream.endpoint_url, upstream.region)
    cache = UpstreamCredentialCache(assume_role)
    audit = AuditLog(engine, enabled=config.audit.enabled)
    sync_bootstrap_users(engine, config.users)
    gateway = Gateway(
        live,
        keyring,
        index or load_or_build(cache_dir()),
        cache,
        audit,
        Directory(engine),
        grants=Grants(engine),
        record_issue=functools.partial(record_issued, engine),
    )
    console = ConsoleFederation(
        live, assume_role, audit, botocore_caller_arn(upstream.endpoint_url, upstream.region)
    )
    return Runtime(live, engine, keyring, gateway, audit, console, source)


async def reload_config(runtime: Runtime) -> bool:
    """Take on the configuration file's roles, users and accounts (SIGHUP), or keep the
    configuration in force and say why, in the log and the audit trail."""
    async with runtime.reloading:
        return await _reload(runtime)


async def _reload(runtime: Runtime) -> bool:
    source = runtime.config_source
    if source is None:
        log.warning("configuration not reloaded: this gateway was not started from a file")
        return False
    try:
        config, new_source = await asyncio.to_thread(load_config_with_source, Path(source.path))
        runtime.live.check(config)
        await asyncio.to_thread(sync_bootstrap_users, runtime.engine, config.users)
    except (ConfigError, SQLAlchemyError) as exc:
        log.error("configuration not reloaded, the one in force stays: %s", exc)
        runtime.audit.append(
            AuditEvent(
                EventType.CONFIG_REJECTED,
                fields={"path": source.path, "error": str(exc).splitlines()[0][:1000]},
            )
        )
        return False
    runtime.live.replace(config)
    runtime.config_source = new_source
    await runtime.gateway.refresh_directory()  # users' roles, at once
    runtime.audit.append(config_loaded(config, new_source, reloaded=True))
    log.warning("configuration reloaded from %s", source.path)
    return True


def build_app(runtime: Runtime) -> web.Application:
    gateway = runtime.gateway

    @web.middleware
    async def aws_calls_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A SigV4-signed request is an AWS call whatever its path: a bucket may be "login".
        if is_aws_request(
            request.method, request.path, request.headers, request.query_string
        ) or is_anonymous_aws_request(request):
            return await gateway.handle(request)
        # The rest (the login API, the JSON API, the pages) takes small bodies only: the
        # proxy's MAX_BUFFERED_BODY is for AWS calls, and logging in is unauthenticated.
        if declares_too_large_a_body(request):
            return body_too_large_for(request)
        changes = request.method not in ("GET", "HEAD", "OPTIONS")
        try:
            small = request.clone(client_max_size=MAX_BODY) if request.can_read_body else request
            response = await handler(small)
        except web.HTTPRequestEntityTooLarge:  # a body of no declared length went over
            return body_too_large_for(request)
        except web.HTTPException as raised:  # a page's redirect after a change, say
            if changes and raised.status < 400:
                await in_force_here()
            raise
        if changes and response.status < 400:
            await in_force_here()
        return response

    async def in_force_here() -> None:
        """A change made here (a revocation, a user's roles, a grant) is in force for the
        next call to this replica before the answer leaves; on the others, within a poll."""
        try:
            await gateway.refresh_directory()
        except Exception:  # the change is stored; the next poll applies it
            log.exception("could not refresh users and revocations")

    app = web.Application(client_max_size=MAX_BUFFERED_BODY, middlewares=[aws_calls_first])

    async def on_startup(_: web.Application) -> None:
        await runtime.audit.start()
        await gateway.start()
        runtime.audit.append(config_loaded(runtime.config, runtime.config_source))
        runtime.audit.append(
            AuditEvent(EventType.SERVER_STARTED, fields={"url": runtime.config.server.url})
        )

    async def on_cleanup(_: web.Application) -> None:
        runtime.audit.append(AuditEvent(EventType.SERVER_STOPPED))
        await gateway.close()
        await runtime.console.close()
        await runtime.audit.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.cleanup_ctx.append(request_sweeper(runtime))
    app.cleanup_ctx.append(notification_sender(runtime))
    logins = Logins(runtime.engine, runtime.audit)
    sessions = BrowserSessions(
        runtime.engine,
        tls=runtime.config.server.tls is not None,
        csrf_key=runtime.keyring.current.subkey("web-csrf"),
    )
    admin = Admin(runtime.live, runtime.engine, runtime.audit)
    api = Api(
        runtime.live,
        runtime.engine,
        runtime.keyring,
        logins,
        sessions,
        admin,
        runtime.console,
        ready=lambda: gateway.ready,
        directory_as_of=lambda: gateway.directory_as_of,
    )
    pages = Pages(
        runtime.live,
        runtime.engine,
        runtime.audit,
        logins,
        sessions,
        admin,
        runtime.console,
    )

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if is_aws_request(
            request.method, request.path, request.headers, request.query_string
        ) or is_anonymous_aws_request(request):
            return await gateway.expect(request)
        if declares_too_large_a_body(request):
            return body_too_large_for(request)  # instead of 100 Continue
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    pages.add_routes(app.router, expect)
    app.add_subapp(PREFIX, api.application(expect))
    app.router.add_route("*", "/{tail:.*}", no_such_endpoint, expect_handler=expect)
    return app


REQUEST_SWEEP_SECONDS = 1.0


def request_sweeper(
    runtime: Runtime,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Access requests change state with the clock (pending ones expire, approved ones start
    and run out): every replica sweeps, and each change is made, and audited, once. A grant's
    window is enforced per call from the clock, whatever the sweep's pace."""
    requests = Requests(runtime.live, runtime.engine, runtime.audit)

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(REQUEST_SWEEP_SECONDS)
            try:
                await asyncio.to_thread(requests.sweep)
            except Exception:
                log.exception("could not sweep access requests")

    async def sweeping(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep_forever())
        yield
        task.cancel()

    return sweeping


NOTIFICATION_POLL_SECONDS = 1.0


def notification_sender(
    runtime: Runtime,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Delivers the notifications outbox in the background: every replica polls, each row is
    delivered by the one replica that claims it, and a receiver that is down delays no
    change of state (the change was committed before its notifications are sent)."""
    deliverer = Deliverer(runtime.live, runtime.engine)

    async def deliver_forever() -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    settings = runtime.config.notifications
                    if not settings.webhooks and settings.smtp is None:
                        await asyncio.sleep(NOTIFICATION_POLL_SECONDS)  # nothing to send with
                    elif not await deliverer.deliver_due(session):
                        await asyncio.sleep(NOTIFICATION_POLL_SECONDS)
                except Exception:
                    log.exception("could not deliver notifications")
                    await asyncio.sleep(NOTIFICATION_POLL_SECONDS)

    async def delivering(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(deliver_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return delivering


def config_loaded(
    config: Config, source: ConfigSource | None, *, reloaded: bool = False
) -> AuditEvent:
    """Which configuration this server enforces, so the trail shows when it changed."""
    return AuditEvent(
        EventType.CONFIG_LOADED,
        fields={
            "path": source.path if source else None,
            "sha256": source.sha256 if source else None,
            "reloaded": reloaded,
            "accounts": len(config.aws.accounts),
            "roles": [role.name for role in config.roles],
            "users": len(config.users),
            "bots": [bot.name for bot in config.bots],
            "oidc_issuers": [issuer.url for issuer in config.oidc.issuers],
            "oidc_bindings": [binding.name for binding in config.oidc.bindings],
            "audit_enabled": config.audit.enabled,
        },
    )


def declares_too_large_a_body(request: web.Request) -> bool:
    """A request that is not an AWS call, with a Content-Length over MAX_BODY."""
    length = request.content_length
    return length is not None and length > MAX_BODY


_TOO_LARGE_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Request too large</title>"
    f"<h1>Request too large</h1><p>A form sent to iamgate may be at most {MAX_BODY // 1024} "
    "KiB. Go back and send less.</p></html>"
)


def body_too_large_for(request: web.Request) -> web.Response:
    """413: JSON for the API (and the CLI), a page for a browser."""
    if request.path.startswith("/api/"):
        return body_too_large()
    return web.Response(
        status=413,
        text=_TOO_LARGE_PAGE,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        },
    )


def is_aws_request(method: str, path: str, headers: Mapping[str, str], query: str) -> bool:
    """Signed as AWS signs, or shaped as an AWS call (an X-Amz-Target, an AWS JSON body, an
    Action, a query-protocol form posted to /, an S3 POST-policy form posted to a bucket):
    such a request is answered in AWS's own protocol (an unsigned one with
    MissingAuthenticationToken), never by the web API."""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("AWS") or "X-Amz-" in query or "AWSAccessKeyId=" in query:
        return True
    if "X-Amz-Target" in headers or "x-amz-json" in headers.get("Content-Type", ""):
        return True
    if query and any(key == "Action" for key, _ in parse_qsl(query, keep_blank_values=True)):
        return True
    if is_form_upload(method, headers.get("Content-Type", "")):
        # S3's browser-form (POST policy) upload: to /bucket, or to / on a bucket's host.
        return len([segment for segment in path.split("/") if segment]) <= 1
    form = "x-www-form-urlencoded" in headers.get("Content-Type", "")
    return method == "POST" and path == "/" and form


# The web's catch-all routes (the pages' 404 page, the JSON API's 404s) name their match
# `tail`: a request they caught matched no page of the web UI.
_CATCH_ALL = "tail"
_AWS_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})


def is_anonymous_aws_request(request: web.Request) -> bool:
    """An unsigned request that only a catch-all route matched, shaped as an anonymous
    AWS call: see `anonymous_aws_shape`."""
    unrouted = _CATCH_ALL in request.match_info
    return anonymous_aws_shape(request.method, request.path, request.headers, unrouted=unrouted)


def anonymous_aws_shape(
    method: str, path: str, headers: Mapping[str, str], *, unrouted: bool
) -> bool:
    """Whether a request with no signature is an anonymous AWS call (S3's path-style
    `GET /bucket/key`, `GET /bucket?list-type=2`, `PUT /bucket/key`, as boto3 with UNSIGNED
    or curl send them), to be refused in the service's protocol (S3's AccessDenied 403)
    rather than by the web UI's 404. The web UI shares the port, so the rule is, in order:

    1. a route of the web UI (a page, /static/..., /) or anything under /api/ is the web's,
       whatever else it looks like: a bucket named like a page is reached signed;
    2. a method other than GET, HEAD, PUT, POST or DELETE is the web's;
    3. HEAD, PUT, POST and DELETE are AWS's: a browser navigates with GET and posts its forms
       to the pages' own routes;
    4. a GET is AWS's unless a browser loads it as a page or a resource of one: it asks
       for HTML (`Accept: text/html`, as every navigation does) or names what it loads
       (`Sec-Fetch-Dest` other than `empty`: the /favicon.ico browsers ask for). curl
       (`*/*`) and the SDKs (no Accept) get S3's XML; a mistyped address in a browser
       still gets the 404 page.
    """
    if not unrouted or path in ("/", "/api") or path.startswith("/api/"):
        return False
    if method not in _AWS_METHODS:
        return False
    if method != "GET":
        return True
    loads = headers.get("Sec-Fetch-Dest", "empty").strip().lower() != "empty"
    return not loads and "text/html" not in headers.get("Accept", "")


def ssl_context(config: Config) -> ssl.SSLContext | None:
    tls = config.server.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


@asynccontextmanager
async def serving(runtime: Runtime, *, reuse_port: bool = False) -> AsyncIterator[web.AppRunner]:
    """The gateway listening on its configured address until the block ends; `reuse_port`:
    one of several workers on that address (SO_REUSEPORT, see `iamgate.workers`)."""
    server = runtime.config.server
    # Bodies reach the gateway as the client signed them: the server never decompresses.
    # A request head must arrive within its deadline, an idle connection closes (connections.py).
    runner = GuardedRunner(
        build_app(runtime),
        head_timeout=server.request_head_timeout.total_seconds(),
        idle_timeout=server.idle_timeout.total_seconds(),
        access_log=None,
        handle_signals=False,
        auto_decompress=False,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        server.host,
        server.port,
        ssl_context=ssl_context(runtime.config),
        backlog=1024,
        shutdown_timeout=SHUTDOWN_SECONDS,
        reuse_port=reuse_port or None,
    )
    await site.start()
    try:
        yield runner
    finally:
        await runner.cleanup()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop where it is available: the proxy is loop-bound."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main)
    return uvloop.run(main)


async def until_stopped(reloading: Runtime | None = None, *, worker: bool = False) -> None:
    """Until SIGTERM or SIGINT: a stop from systemd, a container runtime or Ctrl-C; with
    `reloading`, SIGHUP (`systemctl reload`) reloads its configuration meanwhile.

    Leaving `serving` then stops taking connections, lets calls in flight finish (up to
    SHUTDOWN_SECONDS), records server.stopped and stores every audit event before exit.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        assert reloading is not None
        task = asyncio.ensure_future(reload_config(reloading))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    handled = [signal.SIGTERM, signal.SIGINT]
    for signum in handled:
        loop.add_signal_handler(signum, stop.set)
    if reloading is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
        handled.append(signal.SIGHUP)
    try:
        await stop.wait()
        if reloads:
            await asyncio.gather(*reloads, return_exceptions=True)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
            if worker:
                signal.signal(signum, signal.SIG_IGN)


async def serve_forever(
    runtime: Runtime, ready: asyncio.Event | None = None, *, worker: bool = False
) -> None:
    """`worker`: one of `iamgate serve --workers N`'s processes (`iamgate.workers`)."""
    async with serving(runtime, reuse_port=worker):
        log.info("iamgate listening on %s", runtime.config.server.url)
        if ready is not None:
            ready.set()
        announcer = asyncio.create_task(_announce_ready(runtime))
        try:
            await until_stopped(reloading=runtime, worker=worker)
        finally:
            announcer.cancel()


async def _announce_ready(runtime: Runtime) -> None:
    """Say on stderr when the gateway is ready, as `iamgate serve` says where it listens."""
    started = time.monotonic()
    print(
        "iamgate: compiling AWS service models; /api/v1/health answers 503 until they are ready",
        file=sys.stderr,
        flush=True,
    )
    while not runtime.gateway.ready:  # noqa: ASYNC110 - a property, with no event to await
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    print(
        f"iamgate ready in {elapsed:.0f} s: /api/v1/health answers 200", file=sys.stderr, flush=True
    )
