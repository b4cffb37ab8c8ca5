"""The JSON API behind the CLI and the web UI: `/api/v1/…`, described at `/api/v1/openapi.json`.

A caller is a login session: `Authorization: Bearer iglogin1.…` (the CLI), or the browser's
session cookie (the web UI's scripts), which for a state-changing call must also carry the
page's CSRF token in `X-CSRF-Token` and come from our own origin. Every refusal is JSON,
`{"error": Code, "message": …}`, with the HTTP status a client expects.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from iamgate.access.reach import reachable_accounts
from iamgate.audit.search import search_page
from iamgate.aws.federation import ConsoleFederation
from iamgate.config import Config, Configured, LiveConfig, live
from iamgate.control.audit_queries import AuditQuery, read, scoped
from iamgate.control.callers import Caller, caller_of, require_administrator
from iamgate.control.console import sign_in
from iamgate.control.credentials import (
    DEFAULT_TTL_SECONDS,
    Credentials,
    CredentialsRequest,
    account_named,
)
from iamgate.control.errors import ControlError, Kind, forbidden, invalid
from iamgate.control.logins import Client, Logins
from iamgate.control.users import (
    Actor,
    Admin,
    Enrolment,
    UserSummary,
    no_such_user,
    session_state,
)
from iamgate.identity.credentials import KeyRing
from iamgate.store.directory import LoginSession, get_user, open_login_session
from iamgate.web import browser
from iamgate.web.errors import json_error, json_refusal
from iamgate.web.openapi import openapi_document
from iamgate.web.sessions import BrowserSessions

TIME = "%Y-%m-%dT%H:%M:%SZ"
MIN_PASSWORD = 12
# The largest body the JSON API, the login API and the pages take: they need a few
# kilobytes, and login is unauthenticated. (The proxy's own limit is for AWS calls.)
MAX_BODY = 64 * 1024
Handler = Callable[[web.Request, Mapping[str, str]], Awaitable[web.StreamResponse]]


_error = json_error


def _log_in_first() -> ControlError:
    return ControlError(
        Kind.UNAUTHENTICATED, "Unauthorized", "log in first: iamgate login URL --user U"
    )


def _forgery(message: str) -> ControlError:
    return forbidden(message, code="Forbidden")


_TOO_LARGE = f"iamgate: a request body here may be at most {MAX_BODY} bytes"


def body_too_large() -> web.Response:
    """The answer to a request with a body over MAX_BODY."""
    return _error(413, "RequestTooLarge", _TOO_LARGE)


def _ok(data: Any, status: int = 200) -> web.Response:
    response = web.json_response(data, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, template: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, re.compile(f"^{regex}$"), handler)


def _enrolment(e: Enrolment) -> dict[str, str | None]:
    return {
        "user": e.user,
        "password": e.password,
        "totp_secret": e.totp_secret,
        "otpauth_uri": e.otpauth_uri,
    }


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(TIME) if value else None


class Api(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        engine: Engine,
        keyring: KeyRing,
        logins: Logins,
        sessions: BrowserSessions,
        admin: Admin,
        console: ConsoleFederation,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.live = live(config)
        self.ready = ready
        self.engine = engine
        self.keyring = keyring
        self.logins = logins
        self.sessions = sessions
        self.admin = admin
        self.console = console
        self.document = openapi_document(self.config.server.url)
        self.routes = [
            _route("GET", "/api/v1/openapi.json", self.openapi),
            _route("GET", "/api/v1/health", self.health),
            _route("POST", "/api/v1/login", self.login),
            _route("POST", "/api/v1/logout", self.logout),
            _route("GET", "/api/v1/me", self.me),
            _route("GET", "/api/v1/access", self.access),
            _route("POST", "/api/v1/credentials", self.credentials),
            _route("POST", "/api/v1/console", self.console_signin),
            _route("GET", "/api/v1/audit", self.audit_events),
            _route("GET", "/api/v1/users", self.list_users),
            _route("POST", "/api/v1/users", self.add_user),
            _route("GET", "/api/v1/users/{name}", self.get_user),
            _route("DELETE", "/api/v1/users/{name}", self.remove_user),
            _route("POST", "/api/v1/users/{name}/lock", self.lock_user),
            _route("POST", "/api/v1/users/{name}/unlock", self.unlock_user),
            _route("POST", "/api/v1/users/{name}/reset", self.reset_user),
            _route("POST", "/api/v1/users/{name}/reset-totp", self.reset_totp),
            _route("PUT", "/api/v1/users/{name}/roles", self.set_roles),
            _route("DELETE", "/api/v1/users/{name}/sessions", self.revoke_user),
            _route("GET", "/api/v1/sessions", self.list_sessions),
            _route("DELETE", "/api/v1/sessions/{id}", self.revoke_session),
            _route("DELETE", "/api/v1/credentials/{access_key}", self.revoke_credential),
            _route("GET", "/api/v1/roles", self.list_roles),
            _route("GET", "/api/v1/accounts", self.list_accounts),
        ]

    @functools.cached_property
    def issuer(self) -> Credentials:
        return Credentials(self.engine, self.keyring, self.admin.audit)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        allowed = []
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            try:
                return await route.handler(request, match.groupdict())
            except ControlError as error:
                return json_refusal(error)
        if allowed:
            response = _error(405, "MethodNotAllowed", f"{request.method} is not allowed on {path}")
            response.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return response
        return _error(404, "NotFound", f"no such endpoint: {request.method} {path}")

    # -- who is calling ---------------------------------------------------------------------

    async def _caller(self, request: web.Request) -> Caller:
        session = await self._session(request)
        return await asyncio.to_thread(caller_of, self.roles, self.engine, session)

    async def _session(self, request: web.Request) -> LoginSession:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if header:
            session = None
            if scheme.lower() == "bearer" and token.strip():
                session = await asyncio.to_thread(
                    _open_bearer, self.engine, token.strip(), datetime.now(UTC)
                )
            if session is None:
                raise _log_in_first()
            return session
        session, _ = await self.sessions.open(request.cookies)
        if session is None:
            raise _log_in_first()
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # A cookie rides along by itself: prove the call comes from our own page.
            if not browser.same_origin(request.headers, self.config.server.url):
                raise _forgery("a cross-origin request was refused")
            if not browser.csrf_valid(
                self.sessions.csrf_key, session.id, request.headers.get("X-CSRF-Token")
            ):
                raise _forgery("the X-CSRF-Token header is missing or wrong")
        return session

    async def _administrator(self, request: web.Request) -> Caller:
        return require_administrator(await self._caller(request))

    def _actor(self, request: web.Request, caller: Caller) -> Actor:
        return Actor(caller.user, request.remote, request.headers.get("User-Agent"))

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ControlError(Kind.TOO_LARGE, "RequestTooLarge", _TOO_LARGE)
        try:
            data = await request.clone(client_max_size=MAX_BODY).json()
        except web.HTTPRequestEntityTooLarge:
            raise ControlError(Kind.TOO_LARGE, "RequestTooLarge", _TOO_LARGE) from None
        except ValueError:
            raise invalid("a JSON object is expected") from None
        if not isinstance(data, dict):
            raise invalid("a JSON object is expected")
        return data

    @staticmethod
    def _string(body: Mapping[str, Any], key: str, *, required: bool = True) -> str:
        value = body.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise invalid(f"{key} must be a non-empty string")
        return value

    @staticmethod
    def _names(body: Mapping[str, Any], key: str, *, required: bool = False) -> list[str]:
        if required and key not in body:
            raise invalid(f"{key} is required")
        value = body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid(f"{key} must be a list of strings")
        return value

    @staticmethod
    def _password(body: Mapping[str, Any]) -> str | None:
        """An administrator's chosen password (`iamgate users add/reset --password-stdin`);
        without one, the gateway generates it."""
        if "password" not in body:
            return None
        value = body["password"]
        if not isinstance(value, str) or len(value) < MIN_PASSWORD:
            raise invalid(
                f"password must be a string of at least {MIN_PASSWORD} characters",
            )
        return value

    # -- everyone ---------------------------------------------------------------------------

    async def openapi(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        return web.json_response(self.document)

    async def health(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        if self.ready():
            return _ok({"status": "ready"})
        return _ok({"status": "starting"}, status=503)

    async def login(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        body = await self._body(request)
        name, password, code = (self._string(body, k) for k in ("user", "password", "otp"))
        client = Client(request.remote, request.headers.get("User-Agent"))
        result = await self.logins.log_in(name, password, code, client)
        if not result.ok or result.token is None:
            assert result.error is not None
            refused = _error(result.status, result.error.name, result.error.value)
            if result.retry_after is not None:
                refused.headers["Retry-After"] = str(result.retry_after)
            return refused
        return _ok(
            {
                "user": name,
                "token": result.token,
                "session": result.session_id,
                "expires_at": _time(result.expires_at),
            }
        )

    async def logout(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        session = await self._session(request)
        client = Client(request.remote, request.headers.get("User-Agent"))
        await self.logins.log_out(session.user, session.id, client)
        return web.Response(status=204)

    async def me(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._caller(request)
        return _ok(
            {
                "user": caller.user,
                "roles": [r.name for r in caller.roles],
                "administer": caller.administer,
                "session": caller.session.id,
                "expires_at": _time(caller.session.expires_at),
            }
        )

    async def access(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._caller(request)
        return _ok({"user": caller.user, "accounts": reachable_accounts(self.config, caller.roles)})

    async def credentials(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._caller(request)
        body = await self._body(request)
        account, aws_role = self._string(body, "account"), self._string(body, "role")
        requested = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        if not isinstance(requested, int) or isinstance(requested, bool):
            raise invalid("ttl_seconds must be a whole number, at least 60")
        creds = await asyncio.to_thread(
            self.issuer.for_caller,
            self.config,
            caller,
            CredentialsRequest(account, aws_role, requested),
            self._actor(request, caller),
        )
        return _ok(creds.credential_process_json())

    async def console_signin(
        self, request: web.Request, _: Mapping[str, str]
    ) -> web.StreamResponse:
        """A console sign-in URL for the CLI (`iamgate console`); the browser gets a redirect."""
        caller = await self._caller(request)
        body = await self._body(request)
        account = account_named(self.config, self._string(body, "account"))
        aws_role = self._string(body, "role")
        region = self._string(body, "region", required=False)
        destination = self._string(body, "destination", required=False)
        signin = await sign_in(
            self.console,
            caller,
            account,
            aws_role,
            region=region or None,
            destination=destination or None,
            by=self._actor(request, caller),
        )
        return _ok(
            {
                "url": signin.url,
                "expires_at": _time(signin.expires_at),
                "role_chaining": signin.role_chaining,
                "note": signin.note,
            }
        )

    async def audit_events(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        """AWS calls, newest first: one's own, or anyone's for an administrator.

        Pages go back with `before` (the `next` of the previous page) and forward, for live
        views, with `since` (the newest time already shown).
        """
        caller = await self._caller(request)
        q = request.query
        repeated = sorted({k for k in q if len(q.getall(k)) > 1})
        if repeated:
            raise invalid(f"repeated parameters: {', '.join(repeated)}")
        asked = AuditQuery.of(q)
        found = read(self.config, replace(asked, key=None), blank_is_none=False)
        filters = scoped(found.or_refuse(), caller)
        page = await asyncio.to_thread(search_page, self.engine, filters)
        return _ok({"events": page.events, "next": page.next})

    # -- administrators ---------------------------------------------------------------------

    async def list_users(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        await self._administrator(request)
        users = await asyncio.to_thread(self.admin.users)
        return _ok({"users": [_user_json(u) for u in users]})

    async def get_user(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        await self._administrator(request)
        users = await asyncio.to_thread(self.admin.users)
        found = [u for u in users if u.name == p["name"]]
        if not found:
            raise no_such_user(p["name"])
        return _ok(_user_json(found[0]))

    async def add_user(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        body = await self._body(request)
        name, roles = self._string(body, "name"), self._names(body, "roles")
        enrolment = await asyncio.to_thread(
            self.admin.add_user,
            name,
            roles,
            by=self._actor(request, caller),
            password=self._password(body),
        )
        return _ok(_enrolment(enrolment), status=201)

    async def remove_user(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        await asyncio.to_thread(self.admin.remove, p["name"], by=self._actor(request, caller))
        return web.Response(status=204)

    async def lock_user(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        await asyncio.to_thread(
            self.admin.lock,
            p["name"],
            by=self._actor(request, caller),
            confirmed_self=request.query.get("confirm") == "self",
        )
        return web.Response(status=204)

    async def unlock_user(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        await asyncio.to_thread(self.admin.unlock, p["name"], by=self._actor(request, caller))
        return web.Response(status=204)

    async def reset_user(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        password = self._password(await self._body(request)) if request.body_exists else None
        enrolment = await asyncio.to_thread(
            self.admin.reset, p["name"], by=self._actor(request, caller), password=password
        )
        return _ok(_enrolment(enrolment))

    async def reset_totp(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        enrolment = await asyncio.to_thread(
            self.admin.reset_totp, p["name"], by=self._actor(request, caller)
        )
        return _ok(_enrolment(enrolment))

    async def set_roles(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        caller = await self._administrator(request)
        roles = self._names(await self._body(request), "roles", required=True)
        await asyncio.to_thread(
            self.admin.set_roles,
            p["name"],
            roles,
            by=self._actor(request, caller),
            confirmed_self=request.query.get("confirm") == "self",
        )
        return web.Response(status=204)

    async def list_sessions(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        await self._administrator(request)
        user = request.query.get("user") or None
        every = request.query.get("all", "false")
        if every not in ("true", "false"):
            raise invalid("all must be true or false")
        if every == "true":
            sessions = await asyncio.to_thread(self.admin.all_sessions, user)
        else:
            sessions = await asyncio.to_thread(self.admin.sessions, user)
        now = datetime.now(UTC)
        return _ok(
            {
                "sessions": [
                    {
                        "id": s.id,
                        "user": s.user,
                        "kind": s.kind,
                        "created_at": _time(s.created_at),
                        "last_seen_at": _time(s.last_seen_at),
                        "expires_at": _time(s.expires_at),
                        "revoked_at": _time(s.revoked_at),
                        "state": session_state(s, now),
                    }
                    for s in sessions
                ]
            }
        )

    async def revoke_session(
        self, request: web.Request, p: Mapping[str, str]
    ) -> web.StreamResponse:
        caller = await self._administrator(request)
        await asyncio.to_thread(self.admin.revoke_session, p["id"], by=self._actor(request, caller))
        return web.Response(status=204)

    async def revoke_user(self, request: web.Request, p: Mapping[str, str]) -> web.StreamResponse:
        """Everything the user holds stops working (`iamgate sessions revoke --user`)."""
        caller = await self._administrator(request)
        name = p["name"]
        if await asyncio.to_thread(get_user, self.engine, name) is None:
            raise no_such_user(name)
        active = len(await asyncio.to_thread(self.admin.sessions, name))
        await asyncio.to_thread(self.admin.revoke_user, name, by=self._actor(request, caller))
        return _ok({"user": name, "revoked_sessions": active})

    async def revoke_credential(
        self, request: web.Request, p: Mapping[str, str]
    ) -> web.StreamResponse:
        caller = await self._administrator(request)
        await asyncio.to_thread(
            self.admin.revoke_credential, p["access_key"], by=self._actor(request, caller)
        )
        return web.Response(status=204)

    async def list_roles(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        await self._administrator(request)
        return _ok({"roles": [json.loads(r.model_dump_json()) for r in self.config.roles]})

    async def list_accounts(self, request: web.Request, _: Mapping[str, str]) -> web.StreamResponse:
        await self._administrator(request)
        return _ok(
            {
                "accounts": [
                    {
                        "name": a.name,
                        "id": a.id,
                        "labels": a.labels,
                        "partition": a.partition,
                        "external_id_set": a.external_id is not None,
                    }
                    for a in self.config.aws.accounts
                ]
            }
        )


def _open_bearer(engine: Engine, token: str, now: datetime) -> LoginSession | None:
    """A CLI's login session; a browser's stays in its cookie, with its idle timeout."""
    session = open_login_session(engine, token, now)
    return session if session is not None and session.kind != "web" else None


def _user_json(u: UserSummary) -> dict[str, Any]:
    return {
        "name": u.name,
        "roles": list(u.roles),
        "locked": u.locked,
        "locked_until": _time(u.locked_until) if u.locked else None,
        "enrolled": u.has_password,
        "failed_logins": u.failed_logins,
        "created_at": _time(u.created_at),
        "active_sessions": u.active_sessions,
    }
