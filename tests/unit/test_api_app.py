"""The JSON API's sub-application in-process, mounted as the server mounts it: its one
authentication and CSRF middleware and its one error middleware, against a real SQLite store.

The e2e suite drives the API through the CLI and schemathesis; this proves, in milliseconds,
the answers no handler writes: 404 and 405 in the API's JSON, 401 and 403 before any
handler, a cookie call refused from another origin or without its CSRF token, and a body
its model refuses as a 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

from iamgate.config import Config, RoleConfig
from iamgate.store.database import open_engine
from iamgate.store.login_sessions import create_login_session
from iamgate.store.users import put_user
from iamgate.web import browser
from iamgate.web.api import PREFIX, Api, no_such_endpoint
from iamgate.web.sessions import BrowserSessions

KEY = b"k" * 32
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    put_user(engine, "dana")  # no gateway roles: a user, not an administrator
    put_user(engine, "ada", roles=["admin"])
    return engine


def _session(engine: Engine, kind: str, user: str = "dana") -> str:
    token, _, _ = create_login_session(
        engine, user, ttl=timedelta(hours=1), source_ip=None, user_agent=None, kind=kind
    )
    return token


def _server(engine: Engine) -> tuple[web.Application, Api]:
    """As `iamgate.server.build_app` mounts it (the parts the answers here need)."""
    unused = cast(Any, None)
    sessions = BrowserSessions(engine, tls=False, csrf_key=KEY)
    config = Config(roles=[RoleConfig(name="admin", administer=True)])
    api = Api(config, engine, unused, unused, sessions, unused, unused)
    app = web.Application()
    app.add_subapp(PREFIX, api.application())
    app.router.add_route("*", "/{tail:.*}", no_such_endpoint)
    return app, api


def _run(engine: Engine, test: Callable[[Client, Api], Awaitable[None]]) -> None:
    async def run() -> None:
        app, api = _server(engine)
        async with TestClient(TestServer(app)) as client:
            await test(client, api)

    asyncio.run(run())


async def _answer(
    client: Client, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    async with client.request(method, path, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, dict(response.headers), body


def test_what_no_route_takes_is_the_apis_json_404_or_405(engine: Engine) -> None:
    async def test(client: Client, _api: Api) -> None:
        for path in ("/api/v1/nothing-here", "/api/v1/", "/api/v1", "/api/v1/users/a/b"):
            status, _, body = await _answer(client, "GET", path)
            assert (status, body) == (
                404,
                {"error": "NotFound", "message": f"no such endpoint: GET {path}"},
            )
        status, _, body = await _answer(client, "POST", "/elsewhere")  # outside the API too
        assert status == 404 and body["error"] == "NotFound"
        status, headers, body = await _answer(client, "DELETE", "/api/v1/users")
        assert (status, headers["Allow"], body["error"]) == (405, "GET, POST", "MethodNotAllowed")
        assert body["message"] == "DELETE is not allowed on /api/v1/users"
        status, headers, _ = await _answer(client, "HEAD", "/api/v1/health")
        assert (status, headers["Allow"]) == (405, "GET")
        status, _, body = await _answer(client, "GET", "/api/v1/health")
        assert (status, body["status"]) == (200, "ready")

    _run(engine, test)


def test_who_may_call_is_checked_before_any_handler(engine: Engine) -> None:
    bearer = _session(engine, "cli")

    async def test(client: Client, _api: Api) -> None:
        for headers in ({}, {"Authorization": "Bearer iglogin1.nope.nope"}):
            status, _, body = await _answer(client, "GET", "/api/v1/me", headers=headers)
            assert (status, body["error"]) == (401, "Unauthorized")
        me = {"Authorization": f"Bearer {bearer}"}
        status, _, body = await _answer(client, "GET", "/api/v1/me", headers=me)
        assert status == 200 and body["user"] == "dana" and body["administer"] is False
        status, _, body = await _answer(client, "GET", "/api/v1/users", headers=me)
        assert (status, body["error"]) == (403, "AccessDenied")
        # A CLI session is a bearer token, never a cookie.
        cookie = {"Cookie": f"{browser.session_cookie_name(False)}={bearer}"}
        status, _, _ = await _answer(client, "GET", "/api/v1/me", headers=cookie)
        assert status == 401

    _run(engine, test)


def test_a_body_or_query_its_model_refuses_is_a_400_saying_what_is_wrong(engine: Engine) -> None:
    admin = {"Authorization": f"Bearer {_session(engine, 'cli', 'ada')}"}

    async def test(client: Client, _api: Api) -> None:
        status, _, body = await _answer(client, "POST", "/api/v1/login", json={"user": "dana"})
        assert (status, body["error"]) == (400, "BadRequest")
        assert "password: Field required" in body["message"]
        status, _, body = await _answer(client, "POST", "/api/v1/login", data=b"[]")
        assert (status, body["message"]) == (400, "a JSON object is expected")
        path = "/api/v1/sessions?all=maybe"
        status, _, body = await _answer(client, "GET", path, headers=admin)
        assert (status, body["error"]) == (400, "BadRequest")
        assert body["message"].startswith("all: Input should be 'true' or 'false'")
        for path in ("/api/v1/requests?to_review=maybe", "/api/v1/requests/not-an-id"):
            status, _, body = await _answer(client, "GET", path, headers=admin)
            assert (status, body["error"]) == (400, "BadRequest"), path

    _run(engine, test)


def test_a_cookie_call_that_changes_something_must_be_our_pages(engine: Engine) -> None:
    web_session = _session(engine, "web")
    cookie = {"Cookie": f"{browser.session_cookie_name(False)}={web_session}"}

    async def test(client: Client, api: Api) -> None:
        ours = cookie | {"Origin": api.config.server.url}
        status, _, body = await _answer(client, "GET", "/api/v1/me", headers=cookie)
        assert status == 200 and body["user"] == "dana"  # reading needs no token
        status, _, body = await _answer(client, "POST", "/api/v1/credentials", headers=ours)
        assert (status, body) == (
            403,
            {"error": "Forbidden", "message": "the X-CSRF-Token header is missing or wrong"},
        )
        session = await api.sessions.open({browser.session_cookie_name(False): web_session})
        assert session[0] is not None
        token = {"X-CSRF-Token": api.sessions.csrf(session[0])}
        foreign = cookie | token | {"Origin": "https://evil.example.com"}
        status, _, body = await _answer(client, "POST", "/api/v1/credentials", headers=foreign)
        assert (status, body["message"]) == (403, "a cross-origin request was refused")
        status, _, body = await _answer(
            client, "POST", "/api/v1/credentials", headers=ours | token, json={}
        )
        assert (status, body["error"]) == (400, "BadRequest")  # past the check, to the body

    _run(engine, test)


def test_a_fault_of_ours_is_the_apis_json_500_and_a_bad_body_the_callers_400(
    engine: Engine,
) -> None:
    """A handler that fails (here: the login use case is missing) answers in the API's JSON
    with no traceback; a body the request model refuses stays the caller's 400."""

    async def test(client: Client, _api: Api) -> None:
        body = {"user": "dana", "password": "p" * 12, "otp": "123456"}
        status, _, fault = await _answer(client, "POST", "/api/v1/login", json=body)
        assert status == 500 and fault["error"] == "InternalError", fault
        assert "Traceback" not in str(fault)
        status, _, bad = await _answer(client, "POST", "/api/v1/login", json={"user": "dana"})
        assert status == 400, bad

    _run(engine, test)
