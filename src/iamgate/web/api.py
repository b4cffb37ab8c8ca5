"""The JSON API behind the CLI and the web UI: `/api/v1/…`, described at `/api/v1/openapi.json`.

The routes are aiohttp's, on a sub-application mounted at `/api/v1` (`Api.application`);
each carries an `Operation` (`iamgate.web.openapi`) that writes its part of the document.
A caller is a login session: `Authorization: Bearer iglogin1.…` (the CLI), or the browser's
session cookie (the web UI's scripts), which for a state-changing call must also carry the
page's CSRF token in `X-CSRF-Token` and come from our own origin. Who may call a route is
part of its `Operation` (`who`): one middleware checks it, before the handler, which reads
the caller from the request; the same field writes the document's security and 401/403.
Every refusal is JSON, `{"error": Code, "message": …}`, with the HTTP status a client
expects, rendered by one middleware (`Api.errors`, by `iamgate.web.errors`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from iamgate.access.reach import reachable_accounts
from iamgate.access.requests import Person, requestable_for
from iamgate.audit.search import search_page
from iamgate.aws.federation import ConsoleFederation
from iamgate.config import Config, Configured, LiveConfig, live
from iamgate.control.audit_queries import AuditQuery, read, scoped
from iamgate.control.bots import Bots, BotSummary
from iamgate.control.callers import Caller, caller_of, require_administrator
from iamgate.control.console import sign_in
from iamgate.control.credentials import Credentials, CredentialsRequest, account_named
from iamgate.control.errors import ControlError, Kind, forbidden, invalid
from iamgate.control.joins import Joins
from iamgate.control.logins import Client, Logins
from iamgate.control.notifications import log_data
from iamgate.control.requests import Requests, ask_of, request_data
from iamgate.control.users import (
    Actor,
    Admin,
    Enrolment,
    UserSummary,
    no_such_user,
    session_state,
)
from iamgate.identity.bots import bot_principal
from iamgate.identity.credentials import KeyRing
from iamgate.store.bots import Issued
from iamgate.store.login_sessions import LoginSession, open_login_session
from iamgate.store.notifications import delivery_log
from iamgate.store.users import get_user
from iamgate.web import api_models as m
from iamgate.web import browser
from iamgate.web.errors import json_error, json_refusal
from iamgate.web.openapi import Answer, Operation, Who, openapi_document
from iamgate.web.sessions import BrowserSessions

log = logging.getLogger(__name__)
TIME = "%Y-%m-%dT%H:%M:%SZ"
# The largest body the JSON API, the login API and the pages take: they need a few
# kilobytes, and login is unauthenticated. (The proxy's own limit is for AWS calls.)
MAX_BODY = 64 * 1024
PREFIX = "/api/v1"  # where `Api.application` is mounted
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
Body = TypeVar("Body", bound=BaseModel)
SESSION = web.RequestKey("session", LoginSession)  # set by `Api.authenticated`
CALLER = web.RequestKey("caller", Caller)


_error = json_error


def _log_in_first() -> ControlError:
    return ControlError(
        Kind.UNAUTHENTICATED, "Unauthorized", "log in first: iamgate login URL --user U"
    )


# What a cookie call that is not our own page's is told (`browser.forgery`).
FORGERIES = {
    browser.Forgery.CROSS_ORIGIN: "a cross-origin request was refused",
    browser.Forgery.BAD_TOKEN: "the X-CSRF-Token header is missing or wrong",
}


_TOO_LARGE = f"iamgate: a request body here may be at most {MAX_BODY} bytes"


def body_too_large() -> web.Response:
    """The answer to a request with a body over MAX_BODY."""
    return _error(413, "RequestTooLarge", _TOO_LARGE)


def _ok(answer: BaseModel, status: int = 200) -> web.Response:
    data = answer.model_dump(mode="json", exclude_unset=True)
    response = web.json_response(data, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def no_such_endpoint(request: web.Request) -> web.StreamResponse:
    """A request no page and no route of the API takes, in the API's JSON."""
    return _error(404, "NotFound", f"no such endpoint: {request.method} {request.path}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # under PREFIX: /users/{name}
    handler: Handler
    operation: Operation  # who may call it, and what the OpenAPI document says of it

    @property
    def template(self) -> str:
        return PREFIX + self.path


def _json(model: type[BaseModel], description: str = "") -> dict[int, Answer]:
    return {200: Answer(description, model)}


DONE = {204: Answer("done")}


def _enrolment(e: Enrolment) -> m.Enrolment:
    return m.Enrolment(
        user=e.user, password=e.password, totp_secret=e.totp_secret, otpauth_uri=e.otpauth_uri
    )


def _time(value: datetime | None) -> str | None:
    return _stamp(value) if value else None


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME)


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
        directory_as_of: Callable[[], datetime | None] = lambda: None,
    ) -> None:
        self.live = live(config)
        self.ready = ready
        self.directory_as_of = directory_as_of
        self.engine = engine
        self.keyring = keyring
        self.logins = logins
        self.sessions = sessions
        self.admin = admin
        self.console = console
        ops = Operation
        self.routes = [
            Route(
                "GET",
                "/openapi.json",
                self.openapi,
                ops("This document", {200: Answer("OpenAPI 3.1")}, who="anyone"),
            ),
            Route(
                "GET",
                "/health",
                self.health,
                ops(
                    "Readiness, for a load balancer: ready once every service model is compiled",
                    {
                        200: Answer("ready for AWS calls", m.Health),
                        503: Answer("still starting", m.Health),
                    },
                    who="anyone",
                ),
            ),
            Route(
                "POST",
                "/login",
                self.login,
                ops(
                    "Log in with password and one-time code",
                    _json(m.LoginSession, "a login session (bearer token)"),
                    body=m.LoginRequest,
                    who="anyone",
                    errors=(400, 401, 423, 429),
                ),
            ),
            Route(
                "POST",
                "/join",
                self.join,
                ops(
                    "A machine joins as its bot: a one-time join token for the bot's session",
                    _json(m.LoginSession, "the bot's session (bearer token)"),
                    body=m.JoinRequest,
                    who="anyone",
                    errors=(400, 401, 429),
                ),
            ),
            Route(
                "POST",
                "/join/renew",
                self.join_renew,
                ops(
                    "A joined machine's session, renewed for 30 days under a new token",
                    _json(m.LoginSession, "the renewed session (bearer token)"),
                    who="session",
                    errors=(400, 401),
                ),
            ),
            Route(
                "GET",
                "/join/aws",
                self.aws_join_target,
                ops(
                    "What a server signs its sts:GetCallerIdentity for, to join by AWS IAM",
                    _json(m.AwsJoinTarget),
                    who="anyone",
                ),
            ),
            Route(
                "POST",
                "/join/aws",
                self.aws_join,
                ops(
                    "A server joins as a bot by AWS IAM: its signed sts:GetCallerIdentity",
                    _json(m.LoginSession, "the bot's session (bearer token)"),
                    body=m.AwsJoinRequest,
                    who="anyone",
                    errors=(400, 401, 403, 429),
                ),
            ),
            Route(
                "POST",
                "/bots/{name}/join-tokens",
                self.join_token,
                ops(
                    "A one-time join token for the bot (shown once)",
                    _json(m.JoinToken, "the token"),
                    body=m.JoinTokenRequest,
                    body_required=False,
                    who="administrator",
                    errors=(400, 404),
                ),
            ),
            Route(
                "POST",
                "/logout",
                self.logout,
                ops("End this login session", DONE, who="session", errors=(403,)),
            ),
            Route("GET", "/me", self.me, ops("Who I am", _json(m.Me, "me"))),
            Route(
                "GET",
                "/access",
                self.access,
                ops("Accounts and IAM roles I may use", _json(m.Access)),
            ),
            Route(
                "POST",
                "/credentials",
                self.credentials,
                ops(
                    "Short-lived gateway credentials for an account and IAM role",
                    _json(m.Credentials, "credential_process JSON"),
                    body=m.CredentialsRequest,
                    errors=(400, 401, 403, 404),
                ),
            ),
            Route(
                "POST",
                "/console",
                self.console_signin,
                ops(
                    "A console sign-in URL (secret: it signs in whoever opens it, within 15 min)",
                    _json(m.ConsoleSignin, "the sign-in URL"),
                    body=m.ConsoleRequest,
                    errors=(400, 401, 403, 404, 502),
                ),
            ),
            Route(
                "GET",
                "/audit",
                self.audit_events,
                ops(
                    "Audit events, newest first",
                    _json(m.AuditPage, "a page of events"),
                    query=m.AuditFilters,
                    errors=(400, 401, 403),
                ),
            ),
            Route(
                "GET",
                "/users",
                self.list_users,
                ops("Users", _json(m.Users), who="administrator"),
            ),
            Route(
                "POST",
                "/users",
                self.add_user,
                ops(
                    "Add a user; the answer holds their first password and TOTP secret",
                    {201: Answer("shown once", m.Enrolment)},
                    body=m.NewUser,
                    who="administrator",
                    errors=(400, 409),
                ),
            ),
            Route(
                "GET",
                "/users/{name}",
                self.get_user,
                ops("One user", _json(m.User), who="administrator", errors=(404,)),
            ),
            Route(
                "DELETE",
                "/users/{name}",
                self.remove_user,
                ops(
                    "Remove a user and revoke all they hold",
                    DONE,
                    who="administrator",
                    errors=(404, 409),
                ),
            ),
            Route(
                "POST",
                "/users/{name}/lock",
                self.lock_user,
                ops(
                    "Lock the user; everything they hold stops working",
                    DONE,
                    who="administrator",
                    errors=(404,),
                ),
            ),
            Route(
                "POST",
                "/users/{name}/unlock",
                self.unlock_user,
                ops("Unlock the user", DONE, who="administrator", errors=(404,)),
            ),
            Route(
                "POST",
                "/users/{name}/reset",
                self.reset_user,
                ops(
                    "A new password (the body's, else generated) and TOTP secret; sessions end",
                    _json(m.Enrolment, "shown once"),
                    body=m.Reset,
                    body_required=False,
                    who="administrator",
                    errors=(400, 404),
                ),
            ),
            Route(
                "POST",
                "/users/{name}/reset-totp",
                self.reset_totp,
                ops(
                    "A new TOTP secret only; the password stays, the user's sessions end",
                    _json(m.Enrolment, "shown once; password is null"),
                    who="administrator",
                    errors=(404,),
                ),
            ),
            Route(
                "PUT",
                "/users/{name}/roles",
                self.set_roles,
                ops(
                    "Set the user's gateway roles",
                    DONE,
                    body=m.Roles,
                    who="administrator",
                    errors=(400, 404, 409),
                ),
            ),
            Route(
                "DELETE",
                "/users/{name}/sessions",
                self.revoke_user,
                ops(
                    "Revoke every login session and gateway credential the user holds now",
                    _json(m.RevokedUser, "how many login sessions were in force"),
                    who="administrator",
                    errors=(404,),
                ),
            ),
            Route(
                "GET",
                "/sessions",
                self.list_sessions,
                ops(
                    "Login sessions in force (with all=true, ended ones too)",
                    _json(m.Sessions),
                    query=m.SessionFilters,
                    who="administrator",
                    errors=(400,),
                ),
            ),
            Route(
                "DELETE",
                "/sessions/{id}",
                self.revoke_session,
                ops("Revoke a login session", DONE, who="administrator", errors=(404,)),
            ),
            Route(
                "DELETE",
                "/credentials/{access_key}",
                self.revoke_credential,
                ops(
                    "Revoke one gateway credential (ASIA…)",
                    DONE,
                    path=m.AccessKeyPath,
                    who="administrator",
                    errors=(400,),
                ),
            ),
            Route(
                "GET",
                "/roles",
                self.list_roles,
                ops("Gateway roles (read-only)", _json(m.GatewayRoles), who="administrator"),
            ),
            Route(
                "GET",
                "/accounts",
                self.list_accounts,
                ops("AWS accounts (read-only)", _json(m.Accounts), who="administrator"),
            ),
            *self._request_routes(),
            *self._bot_routes(),
            Route(
                "GET",
                "/notifications",
                self.notification_log,
                Operation(
                    "The delivery log of access-request notifications (webhooks, e-mail)",
                    _json(m.NotificationLog),
                    query=m.NotificationFilters,
                    who="administrator",
                    errors=(400,),
                ),
            ),
        ]
        self.document = openapi_document(
            self.config.server.url, ((r.method, r.template, r.operation) for r in self.routes)
        )
        self._who: dict[web.AbstractRoute, Who] = {}  # of every app `application` made

    @functools.cached_property
    def requests(self) -> Requests:
        return Requests(self.live, self.engine, self.admin.audit)

    @functools.cached_property
    def bots(self) -> Bots:
        return Bots(self.live, self.engine, self.admin.audit)

    @functools.cached_property
    def joins(self) -> Joins:
        return Joins(self.live, self.engine, self.admin.audit)

    @functools.cached_property
    def issuer(self) -> Credentials:
        return Credentials(self.engine, self.keyring, self.admin.audit)

    def application(self, expect: ExpectHandler | None = None) -> web.Application:
        """The API's routes, for `app.add_subapp(PREFIX, …)`; `expect` answers `Expect:
        100-continue` (the server's, which lets an AWS call through to the gateway's)."""
        app = web.Application(middlewares=[self.errors, self.authenticated])
        for r in self.routes:
            route = app.router.add_route(r.method, r.path, r.handler, expect_handler=expect)
            self._who[route] = r.operation.who
        for path in ("", "/{tail:.*}"):  # PREFIX itself, and anything under it
            route = app.router.add_route("*", path, self.unrouted, expect_handler=expect)
            self._who[route] = "anyone"
        return app

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every refusal of the API, as the JSON the document describes: the one place."""
        try:
            return await handler(request)
        except ControlError as error:
            return json_refusal(error)
        except web.HTTPMethodNotAllowed as error:
            message = f"{request.method} is not allowed on {request.path}"
            response = _error(405, "MethodNotAllowed", message)
            response.headers["Allow"] = ", ".join(sorted(error.allowed_methods))
            return response
        except web.HTTPNotFound:
            return await no_such_endpoint(request)
        except web.HTTPException:
            raise
        except Exception:  # a fault of ours, an answer model our data does not fit included
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, "InternalError", "the gateway failed to answer; it is logged")

    async def unrouted(self, request: web.Request) -> web.StreamResponse:
        """405 when the path has other methods, else 404.

        A route, not the router's own answer, so that a request with `Expect` here gets the
        server's `expect` too (an AWS call to a bucket named `api` is let through by the
        gateway's check, as everywhere else); the router is asked which methods it has.
        """
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is not request.match_info.route.resource:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    # -- who is calling ---------------------------------------------------------------------

    @web.middleware
    async def authenticated(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The one check of who calls, before any handler: the handler reads the login
        session (`SESSION`) or the caller with their roles (`CALLER`) from the request."""
        who = self._who.get(request.match_info.route)
        if who is None:  # not a route of ours: nothing is served unchecked
            raise web.HTTPNotFound()
        if who != "anyone":
            session = request[SESSION] = await self._session(request)
            if who != "session":
                caller = await asyncio.to_thread(
                    caller_of, self.roles, self.engine, session, self.config
                )
                admin = who == "administrator"
                request[CALLER] = require_administrator(caller) if admin else caller
        return await handler(request)

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
        # A cookie rides along by itself: a call that changes something must be our page's.
        forged = browser.forgery(
            request.method,
            request.headers,
            self.config.server.url,
            expected=self.sessions.csrf(session),
            presented=request.headers.get("X-CSRF-Token"),
        )
        if forged is not None:
            raise forbidden(FORGERIES[forged], code="Forbidden")
        return session

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

    async def _parsed(self, request: web.Request, model: type[Body]) -> Body:
        """The body as its model (`iamgate.web.api_models`); `errors` says what is wrong."""
        return _read(model, await self._body(request))

    # -- everyone ---------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.document)

    async def health(self, request: web.Request) -> web.StreamResponse:
        as_of = self.directory_as_of()
        # To the microsecond: a command on the gateway host compares it with its own clock.
        stamp = None if as_of is None else as_of.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if self.ready():
            return _ok(m.Health(status="ready", directory_as_of=stamp))
        return _ok(m.Health(status="starting", directory_as_of=stamp), status=503)

    async def login(self, request: web.Request) -> web.StreamResponse:
        body = await self._parsed(request, m.LoginRequest)
        client = Client(request.remote, request.headers.get("User-Agent"))
        result = await self.logins.log_in(body.user, body.password, body.otp, client)
        if not (result.ok and result.token and result.session_id and result.expires_at):
            assert result.error is not None
            refused = _error(result.status, result.error.name, result.error.value)
            if result.retry_after is not None:
                refused.headers["Retry-After"] = str(result.retry_after)
            return refused
        return _ok(
            m.LoginSession(
                user=body.user,
                token=result.token,
                session=result.session_id,
                expires_at=_stamp(result.expires_at),
            )
        )

    async def join(self, request: web.Request) -> web.StreamResponse:
        body = await self._parsed(request, m.JoinRequest)
        client = Client(request.remote, request.headers.get("User-Agent"))
        joined = await asyncio.to_thread(self.joins.redeem, body.token, client)
        return _ok(
            m.LoginSession(
                user=joined.principal,
                token=joined.token,
                session=joined.session_id,
                expires_at=_stamp(joined.expires_at),
            )
        )

    async def join_renew(self, request: web.Request) -> web.StreamResponse:
        client = Client(request.remote, request.headers.get("User-Agent"))
        joined = await asyncio.to_thread(self.joins.renew, request[SESSION], client)
        return _ok(
            m.LoginSession(
                user=joined.principal,
                token=joined.token,
                session=joined.session_id,
                expires_at=_stamp(joined.expires_at),
            )
        )

    async def aws_join_target(self, request: web.Request) -> web.StreamResponse:
        target = self.joins.aws_target()
        return _ok(
            m.AwsJoinTarget(
                server_id=target.server_id, sts_endpoint=target.sts_endpoint, region=target.region
            )
        )

    async def aws_join(self, request: web.Request) -> web.StreamResponse:
        body = await self._parsed(request, m.AwsJoinRequest)
        client = Client(request.remote, request.headers.get("User-Agent"))
        joined = await asyncio.to_thread(
            self.joins.join_aws, body.bot, body.headers, body.body, client
        )
        return _ok(
            m.LoginSession(
                user=joined.principal,
                token=joined.token,
                session=joined.session_id,
                expires_at=_stamp(joined.expires_at),
            )
        )

    async def join_token(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        body = (
            await self._parsed(request, m.JoinTokenRequest)
            if request.body_exists
            else m.JoinTokenRequest()
        )
        made = await asyncio.to_thread(
            self.joins.make_token,
            request.match_info["name"],
            timedelta(seconds=body.ttl_seconds),
            by=self._actor(request, caller),
        )
        return _ok(
            m.JoinToken(
                bot=made.bot,
                token=made.token,
                token_id=made.token_id,
                expires_at=_stamp(made.expires_at),
            )
        )

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION]
        client = Client(request.remote, request.headers.get("User-Agent"))
        await self.logins.log_out(session.user, session.id, client)
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        return _ok(
            m.Me(
                user=caller.user,
                roles=[r.name for r in caller.roles],
                administer=caller.administer,
                session=caller.session.id,
                expires_at=_stamp(caller.session.expires_at),
            )
        )

    async def access(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        accounts = reachable_accounts(self.config, caller.roles)
        person = Person(caller.user, frozenset(r.name for r in caller.roles))
        requestable = requestable_for(self.config, person)
        return _ok(
            m.Access.model_validate(
                {"user": caller.user, "accounts": accounts, "requestable": requestable}
            )
        )

    async def credentials(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        body = await self._parsed(request, m.CredentialsRequest)
        creds = await asyncio.to_thread(
            self.issuer.for_caller,
            self.config,
            caller,
            CredentialsRequest(body.account, body.role, body.ttl_seconds),
            self._actor(request, caller),
        )
        return _ok(m.Credentials.model_validate(creds.credential_process_json()))

    async def console_signin(self, request: web.Request) -> web.StreamResponse:
        """A console sign-in URL for the CLI (`iamgate console`); the browser gets a redirect."""
        caller = request[CALLER]
        body = await self._parsed(request, m.ConsoleRequest)
        signin = await sign_in(
            self.console,
            caller,
            account_named(self.config, body.account),
            body.role,
            region=body.region or None,
            destination=body.destination or None,
            by=self._actor(request, caller),
        )
        return _ok(
            m.ConsoleSignin(
                url=signin.url,
                expires_at=_stamp(signin.expires_at),
                role_chaining=signin.role_chaining,
                note=signin.note,
            )
        )

    async def audit_events(self, request: web.Request) -> web.StreamResponse:
        """AWS calls, newest first: one's own, or anyone's for an administrator.

        Pages go back with `before` (the `next` of the previous page) and forward, for live
        views, with `since` (the newest time already shown).
        """
        caller = request[CALLER]
        q = request.query
        repeated = sorted({k for k in q if len(q.getall(k)) > 1})
        if repeated:
            raise invalid(f"repeated parameters: {', '.join(repeated)}")
        asked = AuditQuery.of(q)
        found = read(self.config, replace(asked, key=None), blank_is_none=False)
        filters = scoped(found.or_refuse(), caller)
        page = await asyncio.to_thread(search_page, self.engine, filters)
        return _ok(m.AuditPage.model_validate({"events": page.events, "next": page.next}))

    # -- administrators ---------------------------------------------------------------------

    async def list_users(self, request: web.Request) -> web.StreamResponse:
        users = await asyncio.to_thread(self.admin.users)
        return _ok(m.Users(users=[_user_json(u) for u in users]))

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        users = await asyncio.to_thread(self.admin.users)
        found = [u for u in users if u.name == request.match_info["name"]]
        if not found:
            raise no_such_user(request.match_info["name"])
        return _ok(_user_json(found[0]))

    async def add_user(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        body = await self._parsed(request, m.NewUser)
        enrolment = await asyncio.to_thread(
            self.admin.add_user,
            body.name,
            body.roles,
            by=self._actor(request, caller),
            password=body.password,
        )
        return _ok(_enrolment(enrolment), status=201)

    async def remove_user(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        await asyncio.to_thread(
            self.admin.remove, request.match_info["name"], by=self._actor(request, caller)
        )
        return web.Response(status=204)

    async def lock_user(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        await asyncio.to_thread(
            self.admin.lock,
            request.match_info["name"],
            by=self._actor(request, caller),
            confirmed_self=request.query.get("confirm") == "self",
        )
        return web.Response(status=204)

    async def unlock_user(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        await asyncio.to_thread(
            self.admin.unlock, request.match_info["name"], by=self._actor(request, caller)
        )
        return web.Response(status=204)

    async def reset_user(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        reset = await self._parsed(request, m.Reset) if request.body_exists else m.Reset()
        password = reset.password
        enrolment = await asyncio.to_thread(
            self.admin.reset,
            request.match_info["name"],
            by=self._actor(request, caller),
            password=password,
        )
        return _ok(_enrolment(enrolment))

    async def reset_totp(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        enrolment = await asyncio.to_thread(
            self.admin.reset_totp, request.match_info["name"], by=self._actor(request, caller)
        )
        return _ok(_enrolment(enrolment))

    async def set_roles(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        body = await self._parsed(request, m.Roles)
        await asyncio.to_thread(
            self.admin.set_roles,
            request.match_info["name"],
            body.roles,
            by=self._actor(request, caller),
            confirmed_self=request.query.get("confirm") == "self",
        )
        return web.Response(status=204)

    async def list_sessions(self, request: web.Request) -> web.StreamResponse:
        query = _read(m.SessionFilters, dict(request.query))
        user = query.user or None
        if query.all == "true":
            sessions = await asyncio.to_thread(self.admin.all_sessions, user)
        else:
            sessions = await asyncio.to_thread(self.admin.sessions, user)
        now = datetime.now(UTC)
        return _ok(
            m.Sessions.model_validate(
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
        )

    async def revoke_session(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        await asyncio.to_thread(
            self.admin.revoke_session, request.match_info["id"], by=self._actor(request, caller)
        )
        return web.Response(status=204)

    async def revoke_user(self, request: web.Request) -> web.StreamResponse:
        """Everything the user holds stops working (`iamgate sessions revoke --user`)."""
        caller = request[CALLER]
        name = request.match_info["name"]
        if await asyncio.to_thread(get_user, self.engine, name) is None:
            raise no_such_user(name)
        active = len(await asyncio.to_thread(self.admin.sessions, name))
        await asyncio.to_thread(self.admin.revoke_user, name, by=self._actor(request, caller))
        return _ok(m.RevokedUser(user=name, revoked_sessions=active))

    async def revoke_credential(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        await asyncio.to_thread(
            self.admin.revoke_credential,
            request.match_info["access_key"],
            by=self._actor(request, caller),
        )
        return web.Response(status=204)

    async def list_roles(self, request: web.Request) -> web.StreamResponse:
        roles = [json.loads(r.model_dump_json()) for r in self.config.roles]
        return _ok(m.GatewayRoles.model_validate({"roles": roles}))

    async def list_accounts(self, request: web.Request) -> web.StreamResponse:
        return _ok(
            m.Accounts(
                accounts=[
                    m.Account(
                        name=a.name,
                        id=a.id,
                        labels=a.labels,
                        partition=a.partition,
                        external_id_set=a.external_id is not None,
                    )
                    for a in self.config.aws.accounts
                ]
            )
        )

    # -- bots (`iamgate.control.bots`) ------------------------------------------------------

    def _bot_routes(self) -> list[Route]:
        ops = Operation
        return [
            Route(
                "GET",
                "/bots",
                self.list_bots,
                ops(
                    "Bots: the configuration's and the stored, with their bindings, gateway "
                    "roles, last exchange and live credentials",
                    _json(m.Bots),
                    who="administrator",
                ),
            ),
            Route(
                "POST",
                "/bots",
                self.add_bot,
                ops(
                    "Add a bot (its bindings are the configuration's: oidc.bindings)",
                    {201: Answer("the bot", m.Bot)},
                    body=m.NewBot,
                    who="administrator",
                    errors=(400, 409),
                ),
            ),
            Route(
                "GET",
                "/bots/{name}",
                self.get_bot,
                ops("One bot", _json(m.Bot), who="administrator", errors=(404,)),
            ),
            Route(
                "DELETE",
                "/bots/{name}",
                self.remove_bot,
                ops(
                    "Remove a stored bot; every credential its jobs hold stops working",
                    DONE,
                    who="administrator",
                    errors=(404, 409),
                ),
            ),
            Route(
                "PUT",
                "/bots/{name}/roles",
                self.set_bot_roles,
                ops(
                    "Set a stored bot's gateway roles",
                    DONE,
                    body=m.Roles,
                    who="administrator",
                    errors=(400, 404, 409),
                ),
            ),
            Route(
                "DELETE",
                "/bots/{name}/sessions",
                self.revoke_bot,
                ops(
                    "Revoke every gateway credential the bot's jobs hold now",
                    _json(m.RevokedBot, "how many were live"),
                    who="administrator",
                    errors=(404,),
                ),
            ),
        ]

    async def notification_log(self, request: web.Request) -> web.StreamResponse:
        asked = _read(m.NotificationFilters, dict(request.query))
        found = await asyncio.to_thread(
            delivery_log, self.engine, request_id=asked.request, limit=asked.limit
        )
        rows = [m.NotificationDelivery.model_validate(d) for d in log_data(found)]
        return _ok(m.NotificationLog(deliveries=rows))

    async def list_bots(self, request: web.Request) -> web.StreamResponse:
        found = await asyncio.to_thread(self.bots.bots)
        return _ok(m.Bots(bots=[_bot_json(b) for b in found]))

    async def get_bot(self, request: web.Request) -> web.StreamResponse:
        found = await asyncio.to_thread(self.bots.bot, request.match_info["name"])
        return _ok(_bot_json(found))

    async def add_bot(self, request: web.Request) -> web.StreamResponse:
        body = await self._parsed(request, m.NewBot)
        added = await asyncio.to_thread(
            self.bots.add,
            body.name,
            body.roles,
            by=self._actor(request, request[CALLER]),
            description=body.description,
        )
        return _ok(_bot_json(added), status=201)

    async def remove_bot(self, request: web.Request) -> web.StreamResponse:
        actor = self._actor(request, request[CALLER])
        await asyncio.to_thread(self.bots.remove, request.match_info["name"], by=actor)
        return web.Response(status=204)

    async def set_bot_roles(self, request: web.Request) -> web.StreamResponse:
        body = await self._parsed(request, m.Roles)
        actor = self._actor(request, request[CALLER])
        await asyncio.to_thread(
            self.bots.set_roles, request.match_info["name"], body.roles, by=actor
        )
        return web.Response(status=204)

    async def revoke_bot(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        actor = self._actor(request, request[CALLER])
        live_ones = await asyncio.to_thread(self.bots.revoke, name, by=actor)
        return _ok(m.RevokedBot(bot=name, revoked_credentials=live_ones))

    # -- access requests (`iamgate.control.requests`) ---------------------------------------

    def _request_routes(self) -> list[Route]:
        ops = Operation
        path, review, ending = m.RequestPath, m.RequestReview, m.RequestEnding
        acting = (400, 403, 404, 409)
        one = _json(m.AccessRequest, "the request, as it is now")
        return [
            Route(
                "GET",
                "/requests",
                self.list_requests,
                ops(
                    "Access requests I may see: mine, those I review, or (administrators) all",
                    _json(m.AccessRequests, "newest first"),
                    query=m.RequestFilters,
                    errors=(400,),
                ),
            ),
            Route(
                "POST",
                "/requests",
                self.create_request,
                ops(
                    "Ask for a requestable gateway role, for some accounts, for a time",
                    {201: Answer("the request, pending", m.AccessRequest)},
                    body=m.NewAccessRequest,
                    errors=(400, 403, 404),
                ),
            ),
            Route(
                "GET",
                "/requests/{id}",
                self.show_request,
                ops("One access request", one, path=path, errors=(400, 404)),
            ),
            Route(
                "POST",
                "/requests/{id}/approve",
                self.approve_request,
                ops(
                    "Approve (for some accounts, or every one in my scope)",
                    one,
                    body=review,
                    path=path,
                    errors=acting,
                ),
            ),
            Route(
                "POST",
                "/requests/{id}/deny",
                self.deny_request,
                ops("Deny: any deny ends the request", one, body=review, path=path, errors=acting),
            ),
            Route(
                "POST",
                "/requests/{id}/drop",
                self.drop_request,
                ops(
                    "End my own request: cancel it, or end its grant at once",
                    one,
                    body=ending,
                    body_required=False,
                    path=path,
                    errors=acting,
                ),
            ),
            Route(
                "POST",
                "/requests/{id}/revoke",
                self.revoke_request,
                ops(
                    "End a grant I reviewed (administrators: any)",
                    one,
                    body=ending,
                    body_required=False,
                    path=path,
                    errors=acting,
                ),
            ),
        ]

    def _request_id(self, request: web.Request) -> str:
        return _read(m.RequestPath, {"id": request.match_info["id"]}).id

    async def _request_answer(
        self, request_id: str, actor: Actor, status: int = 200
    ) -> web.StreamResponse:
        view = await asyncio.to_thread(self.requests.show, request_id, by=actor)
        return _ok(m.AccessRequest.model_validate(request_data(view)), status=status)

    async def list_requests(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        asked = _read(m.RequestFilters, dict(request.query))
        views = await asyncio.to_thread(
            self.requests.list,
            by=self._actor(request, caller),
            mine=asked.mine == "true",
            to_review=asked.to_review == "true",
        )
        found = [m.AccessRequest.model_validate(request_data(v)) for v in views]
        return _ok(m.AccessRequests(requests=found))

    async def create_request(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        body = await self._parsed(request, m.NewAccessRequest)
        actor = self._actor(request, caller)
        made = await asyncio.to_thread(self.requests.create, ask_of(**body.model_dump()), by=actor)
        return await self._request_answer(made.id, actor, status=201)

    async def show_request(self, request: web.Request) -> web.StreamResponse:
        return await self._request_answer(
            self._request_id(request), self._actor(request, request[CALLER])
        )

    async def _review(self, request: web.Request, *, approve: bool) -> web.StreamResponse:
        actor = self._actor(request, request[CALLER])
        request_id = self._request_id(request)
        body = await self._parsed(request, m.RequestReview)
        await asyncio.to_thread(
            self.requests.review,
            request_id,
            approve=approve,
            reason=body.reason,
            by=actor,
            accounts=body.accounts,
        )
        return await self._request_answer(request_id, actor)

    async def approve_request(self, request: web.Request) -> web.StreamResponse:
        return await self._review(request, approve=True)

    async def deny_request(self, request: web.Request) -> web.StreamResponse:
        return await self._review(request, approve=False)

    async def _end(self, request: web.Request, *, revoke: bool) -> web.StreamResponse:
        actor = self._actor(request, request[CALLER])
        request_id = self._request_id(request)
        ending = (
            await self._parsed(request, m.RequestEnding)
            if request.body_exists
            else m.RequestEnding()
        )
        end = self.requests.revoke if revoke else self.requests.drop
        await asyncio.to_thread(end, request_id, by=actor, reason=ending.reason)
        return await self._request_answer(request_id, actor)

    async def drop_request(self, request: web.Request) -> web.StreamResponse:
        return await self._end(request, revoke=False)

    async def revoke_request(self, request: web.Request) -> web.StreamResponse:
        return await self._end(request, revoke=True)


def _open_bearer(engine: Engine, token: str, now: datetime) -> LoginSession | None:
    """A CLI's login session; a browser's stays in its cookie, with its idle timeout."""
    session = open_login_session(engine, token, now)
    return session if session is not None and session.kind != "web" else None


def _user_json(u: UserSummary) -> m.User:
    return m.User(
        name=u.name,
        roles=list(u.roles),
        locked=u.locked,
        locked_until=_time(u.locked_until) if u.locked else None,
        enrolled=u.has_password,
        failed_logins=u.failed_logins,
        created_at=_time(u.created_at),
        active_sessions=u.active_sessions,
    )


def _bot_json(b: BotSummary) -> m.Bot:
    def credential(c: Issued) -> m.BotCredential:
        return m.BotCredential(
            access_key_id=c.access_key_id,
            account_id=c.account_id,
            aws_role=c.aws_role,
            issued_at=_stamp(c.issued_at),
            expires_at=_stamp(c.expires_at),
        )

    return m.Bot(
        name=b.name,
        principal=bot_principal(b.name),
        roles=list(b.roles),
        source="config" if b.source == "config" else "store",
        description=b.description,
        created_at=_time(b.created_at),
        bindings=[m.BotBinding(name=x.name, issuer=x.issuer, claims=x.claims) for x in b.bindings],
        last_exchange=credential(b.last_exchange) if b.last_exchange else None,
        last_binding=b.last_binding,
        last_job=b.last_job,
        live_credentials=[credential(c) for c in b.live],
        live_sessions=[
            m.BotSession(
                id=x.id,
                kind=x.kind,
                created_at=_stamp(x.created_at),
                expires_at=_stamp(x.expires_at),
            )
            for x in b.sessions
        ],
    )


def _read(model: type[Body], given: object) -> Body:
    """A request's body or query as its model; what it does not take is the caller's 400
    (an answer model that does not take our data is our 500)."""
    try:
        return model.model_validate(given)
    except ValidationError as error:
        raise invalid(_problems(error)) from None


def _problems(error: ValidationError) -> str:
    """Pydantic's findings as one line: where, and what is wrong there."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'the body'}: {e['msg']}"
        for e in error.errors()
    )
