"""The web UI: server-rendered pages from the gateway's own aiohttp app, no build step.

Every page reads who is looking from the browser session and renders only what that person
may see; every form carries a CSRF token and is refused from another origin. The pages call
the same store, audit and access code as the JSON API and the CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import shlex
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from sqlalchemy import Engine, select

from iamgate.access.decisions import account_selected
from iamgate.access.reach import reachable_accounts
from iamgate.access.requests import OPEN, requestable_for
from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.search import KeyIssue, Page, key_issues, search_page
from iamgate.audit.writer import AuditSink
from iamgate.aws import console as console_rules
from iamgate.aws.federation import ConsoleFederation
from iamgate.aws.profiles import PROFILE_PREFIX, profiles_block
from iamgate.config import (
    BOT_NAME_PATTERN,
    USER_NAME_PATTERN,
    Config,
    Configured,
    LiveConfig,
    RoleConfig,
    live,
)
from iamgate.control.audit_queries import EVENT_GROUPS, AuditQuery, read, scoped
from iamgate.control.bots import Bots
from iamgate.control.callers import Caller, caller_of
from iamgate.control.console import sign_in
from iamgate.control.enrolment import EnrolmentRefused, Enrolments, Link, LinkDead
from iamgate.control.errors import ControlError, Kind, forbidden, not_found
from iamgate.control.logins import Client, Logins
from iamgate.control.requests import Requests, ask_of, request_data
from iamgate.control.users import Actor, Admin, Enrolment
from iamgate.store.login_sessions import LoginSession
from iamgate.store.revocations import revoke
from iamgate.store.tables import login_sessions, revocations
from iamgate.store.users import get_user
from iamgate.web import browser
from iamgate.web.errors import status_of
from iamgate.web.sessions import BrowserSessions

HERE = Path(__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
AUDIT_PAGE_SIZE = 50
ENROL_CSRF_COOKIE = "iamgate-enrol-csrf"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
RESOURCE_PARAM = re.compile(r"(Identifier|Name|Id|Arn|Url|Bucket|Key)s?$")
# Fields an audit row shows in a column of its own, not in the details of an event.
ROW_FIELDS = frozenset(
    {"account_id", "aws_role", "decision", "status", "rule", "reason", "error_code"}
    | {"access_key_id", "resource", "region", "request_id", "params", "outcome_recorded"}
)
# Destructive actions on a user: the button's words and what the confirmation step says.
CONFIRMATIONS: dict[str, tuple[str, str]] = {
    "lock": (
        "Lock {name}",
        "{name} can no longer log in, and every session and credential {name} holds stops "
        "working on its next call. Unlock undoes the lock, not the revocations.",
    ),
    "reset": (
        "Reset password and TOTP of {name}",
        "{name} gets a new password and TOTP secret, shown once on the next page; every "
        "session and credential {name} holds ends now.",
    ),
    "reset-totp": (
        "Reset TOTP of {name}",
        "{name} keeps the password and gets a new TOTP secret, shown once on the next page; "
        "every session and credential {name} holds ends now.",
    ),
    "revoke": (
        "Revoke sessions of {name}",
        "Every login session of {name} ends now, with the credentials issued under them. "
        "{name} may log in again.",
    ),
}


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a browser session, as of this request."""

    user: str
    session: LoginSession
    roles: tuple[RoleConfig, ...]
    administer: bool
    csrf: str

    @property
    def time_left(self) -> str:
        """What is left of the session at most (idleness ends it sooner), in minutes."""
        end = min(self.session.expires_at, self.session.created_at + browser.ABSOLUTE_TIMEOUT)
        minutes = max(0, int((end - datetime.now(UTC)).total_seconds()) // 60)
        return human_duration(timedelta(minutes=minutes)) if minutes else "under a minute"

    @property
    def caller(self) -> Caller:
        return Caller(self.session, self.roles, self.administer)


# A refusal's page title, by its kind; a forged or stale form is "Refused".
# The Bots page's changes, each confirmed by a second click: (button, what it does).
BOT_CONFIRMATIONS: dict[str, tuple[str, str]] = {
    "revoke": (
        "Revoke credentials of bot {name}",
        "Every gateway credential the jobs of bot:{name} hold, and every session of a machine "
        "joined as it, stops working on its next call, "
        "on every replica. Jobs may exchange a token again: remove the bot, or its binding in "
        "the configuration, to stop that.",
    ),
    "remove": (
        "Remove bot {name}",
        "bot:{name} is removed: every credential its jobs hold stops working on its next call, "
        "and tokens its bindings map to it are refused until it is added again.",
    ),
}

TITLES = {Kind.FORBIDDEN: "Not allowed", Kind.NOT_FOUND: "Not found"}


def _forged(message: str) -> ControlError:
    return forbidden(message, code="Forbidden")


class Redirect(Exception):
    """Go elsewhere first (to log in, usually)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _page_of(request: web.Request) -> str:
    """The page whose form posts to this address."""
    if request.path.startswith("/admin/bots"):
        return "/admin/bots"
    if request.path.startswith("/requests"):
        return "/requests"
    return "/admin/users" if request.path.startswith("/admin/") else "/access"


def ended_why(engine: Engine, token: str) -> str | None:
    """Why a browser's login session no longer opens: `revoked`, `locked`, or None (expired
    or unknown). Told only to the holder of the session's secret."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(login_sessions).where(login_sessions.c.id == parts[1])).first()
    digest = hashlib.sha256(parts[2].encode()).hexdigest()
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        return None
    user = get_user(engine, row.user)
    locked_until = user.record.locked_until if user is not None else None
    if locked_until is not None and locked_until > datetime.now(UTC):
        return "locked"
    if row.revoked_at is None:
        return None
    with engine.connect() as conn:
        by = conn.execute(
            select(revocations.c.by)
            .where(
                ((revocations.c.kind == "login") & (revocations.c.subject == row.id))
                | ((revocations.c.kind == "user") & (revocations.c.subject == row.user))
            )
            .order_by(revocations.c.id.desc())
            .limit(1)
        ).scalar()
    return None if by == "timeout" else "revoked"


def _client(request: web.Request) -> Client:
    return Client(request.remote, request.headers.get("User-Agent"))


class Pages(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        engine: Engine,
        audit: AuditSink,
        logins: Logins,
        sessions: BrowserSessions,
        admin: Admin,
        console: ConsoleFederation,
    ) -> None:
        self.live = live(config)
        self.engine = engine
        self.audit = audit
        self.logins = logins
        self.sessions = sessions
        self.admin = admin
        self.enrolments = Enrolments(engine, audit, admin)
        self.bots = Bots(self.live, engine, audit)
        self.requests = Requests(self.live, engine, audit)
        self.console_federation = console
        self.tls = self.config.server.tls is not None
        self.cookie = sessions.cookie
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["duration"] = human_duration

    def csp(self) -> str:
        """Where forms may lead: our pages, and the console sign-in a form redirects to
        (its host follows the partitions of the accounts configured now)."""
        return "; ".join(
            [
                "default-src 'none'",
                "style-src 'self'",
                "script-src 'self'",
                "img-src 'self' data:",
                "connect-src 'self'",
                "form-action 'self' " + " ".join(self.console_federation.form_targets()),
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ]
        )

    def add_routes(self, router: web.UrlDispatcher, expect: ExpectHandler) -> None:
        for method, path, handler in (
            ("GET", "/", self.home),
            ("GET", "/login", self.login_form),
            ("POST", "/login", self.login),
            ("POST", "/logout", self.logout),
            ("GET", "/access", self.access),
            ("GET", "/audit", self.audit_log),
            ("GET", "/admin/roles", self.admin_roles),
            ("GET", "/admin/users", self.admin_users),
            ("POST", "/admin/users", self.add_user),
            ("POST", "/admin/users/{name}/{action}", self.change_user),
            ("POST", "/admin/sessions/{id}/revoke", self.revoke_session),
            ("GET", "/admin/bots", self.admin_bots),
            ("POST", "/admin/bots", self.add_bot),
            ("POST", "/admin/bots/{name}/{action}", self.change_bot),
            ("GET", "/requests", self.requests_page),
            ("GET", "/requests/{id}", self.request_page),
            ("POST", "/requests", self.create_request),
            ("POST", "/requests/{id}/{action}", self.change_request),
            ("GET", "/enrol/{token}", self.enrol_form),
            ("POST", "/enrol/{token}", self.enrol),
            ("POST", "/console", self.console),
            ("GET", "/console", self.elsewhere),
            ("GET", "/logout", self.elsewhere),
            ("GET", "/admin/users/{name}/{action}", self.elsewhere),
            ("GET", "/admin/sessions/{id}/revoke", self.elsewhere),
            ("GET", "/admin/bots/{name}/{action}", self.elsewhere),
            ("GET", "/requests/{id}/{action}", self.elsewhere),
            ("GET", "/static/{name}", self.static),
            # Any other address a browser asks for, outside the JSON API: a page, not JSON.
            ("GET", r"/{tail:(?!api(?:/|$)).*}", self.not_found),
        ):
            router.add_route(method, path, self._guarded(handler), expect_handler=expect)

    # -- plumbing ---------------------------------------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                response = await handler(request)
            except Redirect as go:
                response = redirect(go.location)
            except ControlError as error:
                response = self._refused(request, error)
            self._secure(response)
            return response

        return run

    def _refused(
        self, request: web.Request, error: ControlError, title: str | None = None
    ) -> web.Response:
        """A refused request, as a page of its own, audited as `web.refused`."""
        status = status_of(error)
        self._record(
            request,
            EventType.WEB_REFUSED,
            None,
            path=request.path,
            status=status,
            reason=error.message,
        )
        if title is None:
            title = "Refused" if error.code == "Forbidden" else TITLES.get(error.kind, "Refused")
        return self._page("refused.html", None, status=status, title=title, message=error.message)

    def _secure(self, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", self.csp())
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cache-Control", "no-store")
        if self.tls:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")

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

    def _page(
        self, template: str, viewer: Viewer | None, *, status: int = 200, **context: Any
    ) -> web.Response:
        html = self.templates.get_template(template).render(
            viewer=viewer, gateway_url=self.config.server.url, **context
        )
        return web.Response(text=html, status=status, content_type="text/html")

    async def _viewer(self, request: web.Request) -> tuple[Viewer | None, str | None]:
        """The signed-in person, or why there is none (shown on the login page)."""
        session, why = await self.sessions.open(request.cookies)
        if session is None:
            if why == "expired":
                token = request.cookies.get(self.cookie.name, "")
                why = await asyncio.to_thread(ended_why, self.engine, token) or why
            return None, why
        caller = await asyncio.to_thread(caller_of, self.roles, self.engine, session)
        viewer = Viewer(
            caller.user, session, caller.roles, caller.administer, self.sessions.csrf(session)
        )
        return viewer, None

    async def _require(self, request: web.Request) -> Viewer:
        viewer, why = await self._viewer(request)
        if viewer is None:
            # A form posted from an ended session: after login, back to the page it was on.
            back = request.path_qs if request.method in ("GET", "HEAD") else _page_of(request)
            query = {"next": back} | ({"why": why} if why else {})
            raise Redirect("/login?" + urlencode(query))
        return viewer

    async def _form(self, request: web.Request, viewer: Viewer) -> Mapping[str, str]:
        """A posted form, once it is shown to come from our own page in this session."""
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        self._own(
            request,
            viewer.csrf,
            fields.get("csrf"),
            foreign="This form was sent from another site.",
            stale="This form has expired. Go back, reload and retry.",
        )
        return fields

    def _own(
        self,
        request: web.Request,
        expected: str | None,
        presented: str | None,
        *,
        foreign: str,
        stale: str,
    ) -> None:
        """Refuse a form that is not our own page's (`browser.forgery`), in the form's words."""
        why = browser.forgery(
            request.method,
            request.headers,
            self.config.server.url,
            expected=expected,
            presented=presented,
        )
        if why is browser.Forgery.CROSS_ORIGIN:
            raise _forged(foreign)
        if why is not None:
            raise _forged(stale)

    def _set_session_cookie(self, response: web.StreamResponse, token: str) -> None:
        c = self.cookie
        response.set_cookie(
            c.name,
            token,
            path=c.path,
            secure=c.secure,
            httponly=c.httponly,
            samesite=c.samesite,
            max_age=int(browser.ABSOLUTE_TIMEOUT.total_seconds()),
        )

    # -- pages ------------------------------------------------------------------------------

    async def elsewhere(self, request: web.Request) -> web.StreamResponse:
        """A form's address opened as a page (after a re-login, a bookmark): its page."""
        return redirect(_page_of(request))

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        viewer, _ = await self._viewer(request)
        return self._page(
            "refused.html",
            viewer,
            status=404,
            nav="",
            title="Page not found",
            message=f"There is no page at {request.path}.",
        )

    async def home(self, request: web.Request) -> web.StreamResponse:
        viewer, _ = await self._viewer(request)
        return redirect("/access" if viewer else "/login")

    async def login_form(
        self,
        request: web.Request,
        *,
        error: str | None = None,
        status: int = 200,
        user: str | None = None,
        target: str | None = None,
    ) -> web.StreamResponse:
        viewer, why = await self._viewer(request)
        target = browser.safe_next(target or request.query.get("next"))
        if viewer is not None and error is None:
            return redirect(target)
        notice = {
            "idle": browser.SessionState.IDLE.value,
            "expired": browser.SessionState.EXPIRED.value,
            "logout": "You have logged out.",
            "revoked": "Your session was ended by an administrator or from another window; "
            "log in again.",
            "locked": "Your account is locked. Ask an iamgate administrator to unlock it.",
            "enrolled": "You are enrolled. Log in with your new password and the next code "
            "from your authenticator app.",
        }.get(request.query.get("why") or why or "")
        csrf = browser.new_login_csrf()
        response = self._page(
            "login.html",
            None,
            status=status,
            csrf=csrf,
            next=target,
            error=error,
            notice=notice if error is None else None,
            user=user if user is not None else request.query.get("user", ""),
        )
        response.set_cookie(
            browser.LOGIN_CSRF_COOKIE,
            csrf,
            path="/login",
            secure=self.tls,
            httponly=True,
            samesite="Strict",
            max_age=3600,
        )
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        self._own(
            request,
            request.cookies.get(browser.LOGIN_CSRF_COOKIE),
            fields.get("csrf"),
            foreign="This login form was sent from another site.",
            stale="The login form expired. Reload the page and retry.",
        )
        name = fields.get("user", "").strip()
        result = await self.logins.log_in(
            name,
            fields.get("password", ""),
            one_time_code(fields.get("otp", "")),
            _client(request),
            kind="web",
        )
        if not result.ok or result.token is None:
            assert result.error is not None
            error = result.error.value
            if (wait := result.retry_after) is not None:
                when = f"{wait} seconds" if wait < 120 else f"{-(-wait // 60)} minutes"
                error = f"{error.partition(';')[0]}; try again in {when}"
            error = error[:1].upper() + error[1:] + "."
            refused = await self.login_form(
                request, error=error, status=result.status, user=name, target=fields.get("next")
            )
            if result.retry_after is not None:
                refused.headers["Retry-After"] = str(result.retry_after)
            return refused
        # A session that was open in this browser ends: each login gets a new session id.
        previous, _ = await self._viewer(request)
        if previous is not None:
            await asyncio.to_thread(revoke, self.engine, "login", previous.session.id, by=name)
        response = redirect(browser.safe_next(fields.get("next")))
        self._set_session_cookie(response, result.token)
        response.del_cookie(browser.LOGIN_CSRF_COOKIE, path="/login")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._require(request)
        await self._form(request, viewer)
        await self.logins.log_out(viewer.user, viewer.session.id, _client(request))
        response = redirect("/login?why=logout")
        response.del_cookie(self.cookie.name, path="/")
        return response

    async def access(
        self,
        request: web.Request,
        *,
        status: int = 200,
        error: str | None = None,
        asked: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        viewer = await self._require(request)
        accounts = reachable_accounts(self.config, viewer.roles)
        for account in accounts:
            for entry in account["roles"]:
                entry["setup"] = cli_setup(
                    self.config.server.url,
                    viewer.user,
                    account["name"],
                    entry["aws_role"],
                    self.config.aws.upstream.region,
                )
                entry["pattern"] = any(c in entry["aws_role"] for c in "*?")
        try:
            chaining = await self.console_federation.role_chaining()
        except ControlError:
            chaining = None
        settings = self.config.aws.console
        console_note = (
            console_rules.ROLE_CHAINING_NOTE
            if chaining
            else f"Console sessions last {human_duration(settings.session_duration)}."
        )
        return self._page(
            "access.html",
            viewer,
            status=status,
            accounts=accounts,
            nav="access",
            console_note=console_note,
            requestable=await self._requestable(viewer),
            request_error=error,
            asked=asked or {},
        )

    async def audit_log(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._require(request)
        q = request.query
        names = {a.id: a.name for a in self.config.aws.accounts}
        asked = AuditQuery.of(q)
        if not viewer.administer:
            asked = replace(asked, principal=None)  # their own events, whatever is asked
        found = read(self.config, replace(asked, limit=None), default_limit=AUDIT_PAGE_SIZE)
        filters, errors = scoped(found.filters, viewer.caller), list(found.problems)
        typed = (q.get("type") or "").strip() or "aws"
        group = typed if typed in EVENT_GROUPS or typed in set(EventType) else "aws"
        key = filters.access_key_id
        page = (
            Page([], None) if errors else await asyncio.to_thread(search_page, self.engine, filters)
        )
        events = page.events
        keys = {
            str(e["fields"]["access_key_id"]) for e in events if e["fields"].get("access_key_id")
        }
        issues = await asyncio.to_thread(key_issues, self.engine, keys | ({key} if key else set()))
        rows = [audit_row(e, names, issues) for e in events]
        older = None
        if page.next:  # each row on one page only, even among rows stamped the same microsecond
            older = "/audit?" + urlencode(
                {k: v for k, v in q.items() if k != "before" and v} | {"before": page.next}
            )
        # Live updates follow the newest page of API calls only; an older page stays as it is.
        api_filters = {
            "principal": filters.principal if viewer.administer else None,
            "account": filters.account_id,
            "role": filters.aws_role,
            "service": filters.service,
            "action": filters.action,
            "decision": filters.decision,
            "status": filters.status,
        }
        shown = {k for k, v in q.items() if v and k not in ("before", "type")}
        return self._page(
            "audit.html",
            viewer,
            status=400 if errors else 200,
            nav="audit",
            rows=rows,
            errors=errors,
            query=dict(q),
            group=group,
            groups=[(k, v[0]) for k, v in EVENT_GROUPS.items()],
            accounts=self.config.aws.accounts,
            older=older,
            filtered=bool(shown) or group != "aws",
            key=key_summary(key, issues.get(key), names) if key else None,
            live=not (filters.until or filters.before or errors or key or group != "aws"),
            newest=events[0]["time"] if events else datetime.now(UTC).strftime(TIME_FORMAT),
            api_filters=urlencode({k: v for k, v in api_filters.items() if v is not None}),
            account_names=json.dumps(names),
        )

    async def admin_roles(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._administrator(request)
        accounts = self.config.aws.accounts
        return self._page(
            "roles.html",
            viewer,
            nav="roles",
            roles=self.config.roles,
            accounts=accounts,
            matches={
                r.name: [a.name for a in accounts if account_selected(r.allow.accounts, a)]
                for r in self.config.roles
            },
        )

    # -- administration ---------------------------------------------------------------------

    async def _administrator(self, request: web.Request) -> Viewer:
        viewer = await self._require(request)
        if not viewer.administer:
            raise forbidden("Only iamgate administrators see this page.")
        return viewer

    def _actor(self, request: web.Request, viewer: Viewer) -> Actor:
        return Actor(viewer.user, request.remote, request.headers.get("User-Agent"))

    async def _users_page(
        self,
        viewer: Viewer,
        *,
        status: int = 200,
        message: str | None = None,
        error: str | None = None,
        enrolment: Enrolment | None = None,
        link: Link | None = None,
    ) -> web.Response:
        users = await asyncio.to_thread(self.admin.users)
        sessions = await asyncio.to_thread(self.admin.sessions, None)
        return self._page(
            "users.html",
            viewer,
            status=status,
            nav="users",
            users=users,
            sessions=sessions,
            roles=self.config.roles,
            message=message,
            error=error,
            enrolment=enrolment,
            link=link,
            user_name_pattern=USER_NAME_PATTERN,
        )

    async def admin_users(self, request: web.Request) -> web.StreamResponse:
        return await self._users_page(await self._administrator(request))

    async def add_user(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._administrator(request)
        form = await self._form(request, viewer)
        multi = await request.post()
        roles = [r for r in multi.getall("roles", []) if isinstance(r, str)]
        name = form.get("name", "").strip()
        try:
            link = await asyncio.to_thread(
                self.enrolments.add_user,
                name,
                roles,
                by=self._actor(request, viewer),
                gateway_url=self.config.server.url,
            )
        except ControlError as error:
            return await self._users_page(viewer, status=status_of(error), error=str(error))
        return await self._users_page(viewer, message=f"Added {name}.", link=link)

    # -- enrolment by a one-time link ---------------------------------------------------------

    def _enrol_page(
        self,
        request: web.Request,
        *,
        status: int = 200,
        error: str | None = None,
    ) -> web.Response:
        """The link's page: the TOTP secret as a QR code and as text, and the form."""
        opened = self.enrolments.open(request.match_info["token"])
        csrf = browser.new_login_csrf()
        response = self._page(
            "enrol.html",
            None,
            status=status,
            opened=opened,
            csrf=csrf,
            error=error,
            action=request.path,
        )
        response.set_cookie(
            ENROL_CSRF_COOKIE,
            csrf,
            path="/enrol/",
            secure=self.tls,
            httponly=True,
            samesite="Strict",
            max_age=3600,
        )
        # The address holds the link's secret; the page's Referrer-Policy (same-origin) and
        # CSP (no other origin at all) keep it from leaving for another site.
        return response

    def _dead_link(self, request: web.Request, dead: LinkDead) -> web.Response:
        self._record(
            request, EventType.WEB_REFUSED, None, path="/enrol/…", status=410, reason=str(dead)
        )
        response = self._page(
            "refused.html",
            None,
            status=410,
            nav="",
            title="Enrolment link not usable",
            message=str(dead),
        )
        return response

    async def enrol_form(self, request: web.Request) -> web.StreamResponse:
        try:
            return await asyncio.to_thread(self._enrol_page, request)
        except LinkDead as dead:
            return self._dead_link(request, dead)

    async def enrol(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        self._own(
            request,
            request.cookies.get(ENROL_CSRF_COOKIE),
            fields.get("csrf"),
            foreign="This enrolment form was sent from another site.",
            stale="This form has expired. Reload the page and retry.",
        )
        client = Actor("", request.remote, request.headers.get("User-Agent"))
        try:
            user = await asyncio.to_thread(
                self.enrolments.redeem,
                request.match_info["token"],
                fields.get("password", ""),
                fields.get("password2", ""),
                one_time_code(fields.get("otp", "")),
                client=client,
            )
        except EnrolmentRefused as refused:
            try:
                return await asyncio.to_thread(
                    self._enrol_page, request, status=400, error=str(refused)
                )
            except LinkDead as dead:
                return self._dead_link(request, dead)
        except LinkDead as dead:
            return self._dead_link(request, dead)
        response = redirect("/login?" + urlencode({"why": "enrolled", "user": user}))
        response.del_cookie(ENROL_CSRF_COOKIE, path="/enrol/")
        return response

    async def _confirm(
        self, request: web.Request, viewer: Viewer, name: str, action: str
    ) -> web.Response:
        """The step before a destructive change: what it does, one more click, or Cancel."""
        what = CONFIRMATIONS[action]
        warning = None
        self_check = None
        if action == "lock":
            try:
                await asyncio.to_thread(
                    self.admin.check_admin_loss,
                    name,
                    by=self._actor(request, viewer),
                    change="lock",
                    confirmed_self=True,
                )
            except ControlError as error:
                return await self._users_page(viewer, status=status_of(error), error=str(error))
            if name == viewer.user:
                warning = "This is you: you will be logged out and unable to log in again."
                self_check = "Yes, lock my own account"
        elif action in ("reset", "reset-totp", "revoke") and name == viewer.user:
            warning = "This is you: your own session ends too."
        return self._page(
            "confirm.html",
            viewer,
            nav="users",
            title=what[0].format(name=name) + "?",
            message=what[1].format(name=name),
            button=what[0].format(name=name),
            action=f"/admin/users/{quote(name, safe='')}/{action}",
            cancel="/admin/users",
            warning=warning,
            self_check=self_check,
        )

    async def change_user(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._administrator(request)
        form = await self._form(request, viewer)
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in CONFIRMATIONS and action != "unlock":
            raise not_found("NotFound", f"There is no action {action!r} on users.")
        if action in CONFIRMATIONS and form.get("confirmed") != "yes":
            return await self._confirm(request, viewer, name, action)
        actor = self._actor(request, viewer)
        enrolment = None
        try:
            if action == "lock":
                await asyncio.to_thread(
                    self.admin.lock,
                    name,
                    by=actor,
                    confirmed_self=form.get("confirmed_self") == "yes",
                )
                message = f"Locked {name}: their sessions and credentials no longer work."
            elif action == "unlock":
                await asyncio.to_thread(self.admin.unlock, name, by=actor)
                message = f"Unlocked {name}."
            elif action == "reset":
                enrolment = await asyncio.to_thread(self.admin.reset, name, by=actor)
                message = f"Reset {name}'s password and TOTP; their sessions have ended."
            elif action == "reset-totp":
                enrolment = await asyncio.to_thread(self.admin.reset_totp, name, by=actor)
                message = f"Reset {name}'s TOTP; their password stays, their sessions have ended."
            else:  # revoke
                mine = await asyncio.to_thread(self.admin.sessions, name)
                for session in mine:
                    await asyncio.to_thread(self.admin.revoke_session, session.id, by=actor)
                message = f"Revoked {len(mine)} session(s) of {name}."
        except ControlError as error:
            return await self._users_page(viewer, status=status_of(error), error=str(error))
        if name == viewer.user and action != "unlock":
            # Their own session has just ended: say so on the login page.
            return redirect(
                "/login?" + urlencode({"why": "locked" if action == "lock" else "revoked"})
            )
        return await self._users_page(viewer, message=message, enrolment=enrolment)

    async def revoke_session(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._administrator(request)
        form = await self._form(request, viewer)
        session_id = request.match_info["id"]
        if form.get("confirmed") != "yes":
            known = {s.id: s for s in await asyncio.to_thread(self.admin.sessions, None)}
            session = known.get(session_id)
            owner = session.user if session else "someone"
            return self._page(
                "confirm.html",
                viewer,
                nav="users",
                title=f"Revoke this session of {owner}?",
                message=f"The login session {session_id} of {owner} ends now, with every "
                "credential issued under it.",
                button="Revoke session",
                action=f"/admin/sessions/{quote(session_id, safe='')}/revoke",
                cancel="/admin/users",
                warning="This is your own session: you will be logged out."
                if session_id == viewer.session.id
                else None,
                self_check=None,
            )
        try:
            await asyncio.to_thread(
                self.admin.revoke_session, session_id, by=self._actor(request, viewer)
            )
        except ControlError as error:
            return await self._users_page(viewer, status=status_of(error), error=str(error))
        if session_id == viewer.session.id:
            return redirect("/login?why=revoked")
        return await self._users_page(viewer, message=f"Revoked session {session_id}.")

    # -- bots -------------------------------------------------------------------------------

    async def _bots_page(
        self,
        viewer: Viewer,
        *,
        status: int = 200,
        message: str | None = None,
        error: str | None = None,
    ) -> web.Response:
        bots = await asyncio.to_thread(self.bots.bots)
        return self._page(
            "bots.html",
            viewer,
            status=status,
            nav="bots",
            bots=bots,
            roles=self.config.roles,
            accounts={a.id: a.name for a in self.config.aws.accounts},
            message=message,
            error=error,
            bot_name_pattern=BOT_NAME_PATTERN,
        )

    async def admin_bots(self, request: web.Request) -> web.StreamResponse:
        return await self._bots_page(await self._administrator(request))

    async def add_bot(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._administrator(request)
        form = await self._form(request, viewer)
        multi = await request.post()
        roles = [r for r in multi.getall("roles", []) if isinstance(r, str)]
        name = form.get("name", "").strip()
        try:
            added = await asyncio.to_thread(
                self.bots.add,
                name,
                roles,
                by=self._actor(request, viewer),
                description=form.get("description", "").strip(),
            )
        except ControlError as error:
            return await self._bots_page(viewer, status=status_of(error), error=str(error))
        note = "" if added.bindings else " No binding maps tokens to it yet (oidc.bindings)."
        return await self._bots_page(viewer, message=f"Added bot {name}.{note}")

    async def change_bot(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._administrator(request)
        form = await self._form(request, viewer)
        name, action = request.match_info["name"], request.match_info["action"]
        what = BOT_CONFIRMATIONS.get(action)
        if what is None:
            raise not_found("NotFound", f"There is no action {action!r} on bots.")
        if form.get("confirmed") != "yes":
            return self._page(
                "confirm.html",
                viewer,
                nav="bots",
                title=what[0].format(name=name) + "?",
                message=what[1].format(name=name),
                button=what[0].format(name=name),
                action=f"/admin/bots/{quote(name, safe='')}/{action}",
                cancel="/admin/bots",
                warning=None,
                self_check=None,
            )
        actor = self._actor(request, viewer)
        try:
            if action == "revoke":
                live = await asyncio.to_thread(self.bots.revoke, name, by=actor)
                message = (
                    f"Revoked {live} live credential(s) of bot {name}, and the sessions of "
                    "machines joined as it."
                )
            else:
                await asyncio.to_thread(self.bots.remove, name, by=actor)
                message = f"Removed bot {name}; its credentials no longer work."
        except ControlError as error:
            return await self._bots_page(viewer, status=status_of(error), error=str(error))
        return await self._bots_page(viewer, message=message)

    # -- access requests (`iamgate.control.requests`) -----------------------------------------

    async def _requestable(self, viewer: Viewer) -> list[dict[str, object]]:
        """The roles this person may ask for, with their limits and prompts (My access)."""
        person = await asyncio.to_thread(self.requests.person, viewer.user)
        return requestable_for(self.config, person)

    async def _requests_page(
        self,
        viewer: Viewer,
        actor: Actor,
        *,
        status: int = 200,
        message: str | None = None,
        error: str | None = None,
    ) -> web.Response:
        """Mine (still open), to review, and the rest I may see: each once."""
        mine = await asyncio.to_thread(self.requests.list, by=actor, mine=True)
        to_review = await asyncio.to_thread(self.requests.list, by=actor, to_review=True)
        seen = await asyncio.to_thread(self.requests.list, by=actor)
        open_ids = {v.request.id for v in mine if v.request.state in OPEN}
        review_ids = {v.request.id for v in to_review}
        history = [v for v in seen if v.request.id not in open_ids | review_ids]
        return self._page(
            "requests.html",
            viewer,
            status=status,
            nav="requests",
            mine=[request_data(v) for v in mine if v.request.id in open_ids],
            to_review=[request_data(v) for v in to_review],
            history=[request_data(v) for v in history],
            signature=requests_signature(request_data(v) for v in seen),
            message=message,
            error=error,
        )

    async def requests_page(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._require(request)
        made = request.query.get("made")
        message = f"Request {made} is waiting for its reviewers." if made else None
        return await self._requests_page(viewer, self._actor(request, viewer), message=message)

    async def request_page(self, request: web.Request) -> web.StreamResponse:
        """A request's own address, as notifications link to it: the Requests page, at it
        (shown there if this person may see it; the page says nothing of others')."""
        await self._require(request)
        return redirect("/requests#request-" + quote(request.match_info["id"], safe=""))

    async def create_request(self, request: web.Request) -> web.StreamResponse:
        """Ask for a requestable role from My access; the rules are the use case's."""
        viewer = await self._require(request)
        form = await self._form(request, viewer)
        multi = await request.post()
        accounts = [a for a in multi.getall("accounts", []) if isinstance(a, str) and a]
        try:
            ask = ask_of(
                role=form.get("role", ""),
                accounts=accounts,
                selector=form.get("selector", "").strip() or None,
                duration=form.get("duration", "").strip() or None,
                reason=form.get("reason", "").strip(),
                start=form.get("start", "").strip() or None,
                actions=form.get("actions", "").replace(",", " ").split(),
                ticket=form.get("ticket", "").strip() or None,
            )
            made = await asyncio.to_thread(
                self.requests.create, ask, by=self._actor(request, viewer)
            )
        except ControlError as error:
            return await self.access(request, status=status_of(error), error=str(error), asked=form)
        return redirect("/requests?" + urlencode({"made": made.id}))

    async def change_request(self, request: web.Request) -> web.StreamResponse:
        """Approve (some accounts, or all in my scope), deny, drop my own, or revoke."""
        viewer = await self._require(request)
        form = await self._form(request, viewer)
        request_id, action = request.match_info["id"], request.match_info["action"]
        actor = self._actor(request, viewer)
        reason = form.get("reason", "").strip()
        try:
            if action in ("approve", "deny"):
                multi = await request.post()
                accounts = [a for a in multi.getall("accounts", []) if isinstance(a, str) and a]
                done = await asyncio.to_thread(
                    self.requests.review,
                    request_id,
                    approve=action == "approve",
                    reason=reason,
                    by=actor,
                    accounts=accounts if action == "approve" else (),
                )
                verb = "Approved" if action == "approve" else "Denied"
                message = f"{verb} request {request_id}: it is now {done.state}."
            elif action == "drop":
                done = await asyncio.to_thread(
                    self.requests.drop, request_id, by=actor, reason=reason
                )
                message = (
                    f"Cancelled request {request_id}."
                    if done.state == "cancelled"
                    else f"Dropped request {request_id}: its access no longer works."
                )
            elif action == "revoke":
                done = await asyncio.to_thread(
                    self.requests.revoke, request_id, by=actor, reason=reason
                )
                message = f"Revoked request {request_id}: its access no longer works."
            else:
                raise not_found("NotFound", f"There is no action {action!r} on requests.")
        except ControlError as error:
            return await self._requests_page(
                viewer, actor, status=status_of(error), error=str(error)
            )
        return await self._requests_page(viewer, actor, message=message)

    # -- the AWS console ----------------------------------------------------------------------

    async def console(self, request: web.Request) -> web.StreamResponse:
        """Sign in to the AWS console: a form post from My access, answered with a redirect."""
        viewer = await self._require(request)
        form = await self._form(request, viewer)
        account = self.config.aws.account_named(form.get("account", ""))
        aws_role = form.get("role", "")
        try:
            if account is None:
                raise not_found("NoSuchAccount", "no such account")
            signin = await sign_in(
                self.console_federation,
                viewer.caller,
                account,
                aws_role,
                region=form.get("region") or None,
                destination=form.get("destination") or None,
                by=self._actor(request, viewer),
            )
        except ControlError as error:
            if error.kind in (Kind.NOT_FOUND, Kind.FORBIDDEN):
                raise forbidden(
                    f"No role of yours allows {aws_role or 'that role'} in "
                    f"{form.get('account') or 'that account'}."
                ) from None
            return self._refused(request, error, title="Console sign-in failed")
        return web.Response(
            status=302,
            headers={
                "Location": signin.url,
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = HERE / "static" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        response = web.FileResponse(path)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


def requests_signature(requests: Iterable[Mapping[str, Any]]) -> str:
    """What the Requests page shows, in short: requests.js reloads the page once the API's
    list says otherwise (a new request, a new state, a new review)."""
    return ",".join(
        sorted(f"{r['id']}:{r['state']}:{len(cast(list[Any], r['reviews']))}" for r in requests)
    )


def one_time_code(typed: str) -> str:
    """A code as people paste it: `123 456`, `123-456`, with spaces around: six digits."""
    return "".join(c for c in typed if c not in " -\t\u00a0\u2009\u202f").strip()


def human_duration(value: timedelta) -> str:
    """1h, 90m, 1h30m, 45s: as the configuration file writes durations."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts) or "0s"


def audit_row(
    event: Mapping[str, Any],
    account_names: Mapping[str, str],
    issues: Mapping[str, KeyIssue] | None = None,
) -> dict[str, Any]:
    f = event.get("fields", {})
    kind = str(event.get("type") or EventType.AWS_CALL)
    account_id = f.get("account_id") or ""
    key = f.get("access_key_id") or f.get("access_key_inferred") or ""
    issue = (issues or {}).get(key) if key else None
    principal = event.get("principal") or ""
    key_note = ""
    if key:
        if f.get("access_key_inferred"):
            key_note = "by the key's holder, account, role and lifetime"
        elif issue is None:
            key_note = "not issued by this gateway"
        elif str(event.get("time", "")) > issue.expires_at:
            key_note = f"expired {issue.expires_at[:19].replace('T', ' ')}"
        if issue is not None and not principal:
            principal = f"({issue.principal}'s key)"
        if issue is not None and not account_id:
            account_id = issue.account_id
    if kind == str(EventType.AWS_CALL):
        action = f.get("action") or f.get("operation") or ""
        detail = ""
    else:
        action = kind
        detail = "; ".join(
            f"{k}: {v}"
            for k, v in f.items()
            if k not in ROW_FIELDS and isinstance(v, str | int | float | bool) and v != ""
        )[:240]
    return {
        "time": str(event.get("time", ""))[:19].replace("T", " "),
        "type": kind,
        "principal": principal,
        "account": account_names.get(account_id, account_id),
        "role": f.get("aws_role") or "",
        "action": action,
        "detail": detail,
        "decision": f.get("decision") or "",
        "status": f.get("status") or "",
        "reason": f.get("rule") or f.get("reason") or f.get("error_code") or "",
        "access_key": key,
        "key_note": key_note,
        "resource": f.get("resource") or named_resources(f.get("params")),
        "region": f.get("region") or "",
        "source_ip": event.get("source_ip") or "",
        "request_id": f.get("request_id") or "",
        "id": event.get("id") or "",
    }


def named_resources(params: object) -> str:
    """What a call names, when the gateway records no ARN for it: `DBInstanceIdentifier=db`."""
    if not isinstance(params, Mapping):
        return ""
    named = [
        f"{k}={v}"
        for k, v in params.items()
        if isinstance(k, str) and RESOURCE_PARAM.search(k) and isinstance(v, str) and v
    ]
    return ", ".join(named[:3])


def key_summary(
    key: str, issue: KeyIssue | None, account_names: Mapping[str, str]
) -> dict[str, str]:
    """What is known of an access key searched for: the answer's first line."""
    if issue is None:
        return {
            "key": key,
            "text": "This gateway never issued this key: the rows below are calls made with "
            "it, as the gateway recorded them.",
        }
    expired = issue.expires_at < datetime.now(UTC).strftime(TIME_FORMAT)
    return {
        "key": key,
        "text": f"Issued to {issue.principal} for "
        f"{account_names.get(issue.account_id, issue.account_id)} / {issue.aws_role} at "
        f"{issue.issued_at[:19].replace('T', ' ')} UTC; "
        f"{'expired' if expired else 'expires'} {issue.expires_at[:19].replace('T', ' ')} UTC.",
    }


def cli_setup(url: str, user: str, account: str, role: str, region: str) -> dict[str, str]:
    """The exact commands and profile for one (account, IAM role), as `profiles sync` writes."""
    access = {"accounts": [{"name": account, "roles": [{"aws_role": role}]}]}
    block, _ = profiles_block(access, url, "iamgate", region, with_plugin=False)
    profile_lines = block.splitlines()[1:-1]  # without the BEGIN / END marks
    target = ["--account", account, "--role", role]
    return {
        "login": shlex.join(["iamgate", "login", url, "--user", user]),
        "sync": "iamgate profiles sync",
        "profile_name": f"{PROFILE_PREFIX}{account}-{role}",
        "profile": "\n".join(profile_lines).rstrip(),
        "try": shlex.join(
            ["aws", "--profile", f"{PROFILE_PREFIX}{account}-{role}", "sts", "get-caller-identity"]
        ),
        "aws": shlex.join(["iamgate", "aws", *target, "--", "sts", "get-caller-identity"]),
        "env": f'eval "$({shlex.join(["iamgate", "env", *target])})"',
        "console": shlex.join(["iamgate", "console", *target, "--open"]),
    }
