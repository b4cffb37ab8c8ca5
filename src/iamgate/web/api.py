"""The JSON API for people and their CLI: log in, see what I may use, get credentials.

Authenticated by a login session (`Authorization: Bearer iglogin1.…`). Login is the one
unauthenticated call, so it carries the defenses: constant-work password checks, single-use
TOTP codes, account lockout and a per-address rate limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from iamgate.access.decisions import role_reaches
from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.search import Filters, search
from iamgate.audit.writer import AuditLog
from iamgate.aws.federation import ConsoleError, ConsoleFederation
from iamgate.config import Config, RoleConfig
from iamgate.identity.credentials import KeyRing, mint_credentials
from iamgate.identity.login import LoginError, decide_login
from iamgate.store.directory import (
    LoginSession,
    apply_login_outcome,
    create_login_session,
    get_user,
    open_login_session,
    record_issued,
    revoke,
)

LOGIN_SESSION_TTL = timedelta(hours=12)
RATE_WINDOW_SECONDS = 300
RATE_MAX_ATTEMPTS = 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class RateLimiter:
    """At most `limit` attempts per address in a sliding window (per replica)."""

    def __init__(self, limit: int = RATE_MAX_ATTEMPTS, window: float = RATE_WINDOW_SECONDS):
        self.limit, self.window = limit, window
        self._attempts: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, address: str) -> bool:
        now = time.monotonic()
        attempts = self._attempts[address]
        while attempts and attempts[0] < now - self.window:
            attempts.popleft()
        if len(attempts) >= self.limit:
            return False
        attempts.append(now)
        return True


class Api:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        keyring: KeyRing,
        audit: AuditLog,
        console: ConsoleFederation,
    ) -> None:
        self.config = config
        self.console = console
        self.audit = audit
        self.engine = engine
        self.keyring = keyring
        self.roles = {r.name: r for r in config.roles}
        self.rate = RateLimiter()
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/api/v1/login"): self.login,
            ("POST", "/api/v1/logout"): self.logout,
            ("GET", "/api/v1/access"): self.access,
            ("POST", "/api/v1/credentials"): self.credentials,
            ("GET", "/api/v1/audit"): self.audit_events,
            ("POST", "/api/v1/console"): self.console_signin,
        }

    def _record(
        self, request: web.Request, kind: EventType, principal: str | None, **fields: object
    ) -> None:
        self.audit.append(
            AuditEvent(
                kind,
                principal=principal,
                source_ip=request.remote,
                user_agent=request.headers.get("User-Agent"),
                fields=fields,
            )
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return _error(404, "NotFound", f"no such endpoint: {request.method} {request.path}")
        return await handler(request)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(
                text='{"error":"BadRequest","message":"JSON expected"}',
                content_type="application/json",
            ) from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(
                text='{"error":"BadRequest","message":"object expected"}',
                content_type="application/json",
            )
        return data

    async def _session(self, request: web.Request) -> LoginSession:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        session = None
        if scheme.lower() == "bearer" and token:
            session = await asyncio.to_thread(
                open_login_session, self.engine, token.strip(), datetime.now(UTC)
            )
        if session is None:
            raise web.HTTPUnauthorized(
                text=json.dumps(
                    {"error": "Unauthorized", "message": "log in first: iamgate login URL --user U"}
                ),
                content_type="application/json",
            )
        return session

    # -- endpoints ------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.rate.allow(request.remote or "?"):
            return _error(429, "RateLimited", LoginError.RATE_LIMITED.value)
        body = await self._body(request)
        name, password, code = (str(body.get(k, "")) for k in ("user", "password", "otp"))
        row = await asyncio.to_thread(get_user, self.engine, name)
        record = row.record if row is not None and row.has_password else None
        outcome = await asyncio.to_thread(decide_login, record, password, code, datetime.now(UTC))
        if record is not None and (outcome.ok or outcome.error is not LoginError.LOCKED):
            await asyncio.to_thread(apply_login_outcome, self.engine, name, outcome)
        if not outcome.ok:
            status = 423 if outcome.error is LoginError.LOCKED else 401
            assert outcome.error is not None
            locked_now = outcome.locked_until is not None
            kind = EventType.LOGIN_LOCKED if locked_now else EventType.LOGIN_FAILED
            self._record(
                request, kind, name, error=outcome.error.name, failed_logins=outcome.failed_logins
            )
            return _error(status, outcome.error.name, outcome.message())
        token, session_id, expires = await asyncio.to_thread(
            create_login_session,
            self.engine,
            name,
            ttl=LOGIN_SESSION_TTL,
            source_ip=request.remote,
            user_agent=request.headers.get("User-Agent"),
        )
        self._record(request, EventType.LOGIN_SUCCEEDED, name, login_session=session_id)
        return web.json_response(
            {
                "user": name,
                "token": token,
                "session": session_id,
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        await asyncio.to_thread(revoke, self.engine, "login", session.id, by=session.user)
        self._record(request, EventType.LOGOUT, session.user, login_session=session.id)
        return web.Response(status=204)

    def _my_roles(self, user: str) -> list[RoleConfig]:
        row = get_user(self.engine, user)
        return [self.roles[r] for r in (row.roles if row else ()) if r in self.roles]

    async def access(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        roles = await asyncio.to_thread(self._my_roles, session.user)
        accounts = []
        for account in self.config.aws.accounts:
            entries = [
                {"aws_role": pattern, "gateway_role": role.name, "allows": _describe(role)}
                for role in roles
                for pattern in role.allow.aws_roles
                if role_reaches(role, account, pattern)
            ]
            if entries:
                accounts.append(
                    {
                        "name": account.name,
                        "id": account.id,
                        "labels": account.labels,
                        "roles": entries,
                    }
                )
        return web.json_response({"user": session.user, "accounts": accounts})

    async def credentials(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        body = await self._body(request)
        account = self.config.aws.account_named(str(body.get("account", "")))
        aws_role = str(body.get("role", ""))
        if account is None:
            return _error(404, "NoSuchAccount", f"no account {body.get('account')!r}")
        roles = await asyncio.to_thread(self._my_roles, session.user)
        reaching = [r for r in roles if role_reaches(r, account, aws_role)]
        if not reaching:
            return _error(
                403,
                "AccessDenied",
                f"iamgate: no role of yours allows {aws_role} in account {account.name}",
            )
        now = datetime.now(UTC)
        ttl = min(
            timedelta(seconds=int(body.get("ttl_seconds", 3600))),
            max(r.max_session_ttl for r in reaching),
            session.expires_at - now,
        )
        if ttl < timedelta(minutes=1):
            return _error(401, "Unauthorized", "the login session is about to expire")
        creds = mint_credentials(
            self.keyring,
            principal=session.user,
            kind="user",
            account_id=account.id,
            aws_role=aws_role,
            gateway_roles=tuple(r.name for r in reaching),
            now=now,
            ttl=ttl,
            login_session=session.id,
        )
        await asyncio.to_thread(record_issued, self.engine, creds.claims)
        self._record(
            request,
            EventType.CREDENTIALS_ISSUED,
            session.user,
            account_id=account.id,
            aws_role=aws_role,
            access_key_id=creds.access_key_id,
            expires_at=creds.claims.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            gateway_roles=list(creds.claims.gateway_roles),
            login_session=session.id,
        )
        return web.json_response(creds.credential_process_json())

    async def audit_events(self, request: web.Request) -> web.StreamResponse:
        """The caller's own audit events (an administrators' view comes with the web UI)."""
        session = await self._session(request)
        q = request.query
        try:
            filters = Filters(
                principal=session.user,
                account_id=q.get("account"),
                aws_role=q.get("role"),
                service=q.get("service"),
                action=q.get("action"),
                decision=q.get("decision"),
                status=int(q["status"]) if "status" in q else None,
                since=q.get("since"),
                until=q.get("until"),
                type=q.get("type", str(EventType.AWS_CALL)),
                limit=min(int(q.get("limit", "100")), 1000),
            )
        except ValueError:
            return _error(400, "BadRequest", "status and limit must be numbers")
        events = await asyncio.to_thread(search, self.engine, filters)
        return web.json_response({"events": events})

    async def console_signin(self, request: web.Request) -> web.StreamResponse:
        """A console sign-in URL for the CLI (`iamgate console`); the browser gets a redirect."""
        session = await self._session(request)
        body = await self._body(request)
        account = self.config.aws.account_named(str(body.get("account", "")))
        if account is None:
            return _error(404, "NoSuchAccount", f"no account {body.get('account')!r}")
        aws_role = str(body.get("role", ""))
        roles = await asyncio.to_thread(self._my_roles, session.user)
        optional = {k: body.get(k) for k in ("region", "destination")}
        if any(v is not None and not isinstance(v, str) for v in optional.values()):
            return _error(400, "BadRequest", "region and destination must be strings")
        try:
            signin = await self.console.signin_url(
                user=session.user,
                gateway_roles=[r for r in roles if role_reaches(r, account, aws_role)],
                account=account,
                aws_role=aws_role,
                region=optional["region"] or None,
                destination=optional["destination"] or None,
                source_ip=request.remote,
                user_agent=request.headers.get("User-Agent"),
            )
        except ConsoleError as error:
            return _error(error.status, error.code, error.message)
        response = web.json_response(
            {
                "url": signin.url,
                "expires_at": signin.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "role_chaining": signin.role_chaining,
                "note": signin.note,
            }
        )
        response.headers["Cache-Control"] = "no-store"
        return response


def _describe(role: RoleConfig) -> str:
    allow = role.allow
    parts = []
    if allow.access_levels:
        parts.append("/".join(allow.access_levels))
    if allow.actions:
        parts.append(", ".join(allow.actions))
    if not parts:
        parts.append("all actions")
    if role.deny.actions:
        parts.append("except " + ", ".join(role.deny.actions))
    if role.guardrails:
        parts.append(f"{len(role.guardrails)} guardrail(s)")
    return "; ".join(parts)
