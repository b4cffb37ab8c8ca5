"""The JSON API against a real gateway: administration flows, and schemathesis against its
own OpenAPI document, as an administrator and as a plain user, finding no server error."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from harness import BIN, GatewayProcess, clean_env
from people import PASSWORD, Person, enrol

from iamgate.sandbox import Sandbox
from iamgate.sandbox.federation import FederationStandIn

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_gateway(
    sandbox: Sandbox, federation: FederationStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        sandbox, tmp_path_factory.mktemp("api-gateway"), federation_url=federation.url
    )
    gw.start()
    yield gw
    gw.stop()


def call(
    gw: GatewayProcess, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        gw.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def token_for(gw: GatewayProcess, person: Person, password: str = PASSWORD) -> str:
    status, reply = call(
        gw, "POST", "/api/v1/login", None,
        {"user": person.name, "password": password, "otp": person.code()},
    )  # fmt: skip
    assert status == 200, reply
    return str(reply["token"])


@pytest.fixture(scope="module")
def tokens(api_gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("api-people")
    return {
        name: token_for(api_gateway, enrol(api_gateway, home, name)) for name in ("loader", "dana")
    }


def test_administration_through_the_api(
    api_gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    admin, dana = tokens["loader"], tokens["dana"]
    assert call(api_gateway, "GET", "/api/v1/me", dana)[1]["administer"] is False
    assert call(api_gateway, "GET", "/api/v1/me", admin)[1]["administer"] is True
    status, refused = call(api_gateway, "GET", "/api/v1/users", dana)
    assert status == 403 and refused["error"] == "AccessDenied"

    status, enrolment = call(
        api_gateway, "POST", "/api/v1/users", admin, {"name": "frank", "roles": ["contractor"]}
    )
    assert status == 201 and enrolment["otpauth_uri"].startswith("otpauth://totp/")
    frank = Person("frank", enrolment["totp_secret"], {})
    frank_token = token_for(api_gateway, frank, enrolment["password"])
    access = call(api_gateway, "GET", "/api/v1/access", frank_token)[1]
    assert [a["name"] for a in access["accounts"]] == ["customer-globex"]
    status, creds = call(
        api_gateway, "POST", "/api/v1/credentials", frank_token,
        {"account": "customer-globex", "role": "ReadOnly"},
    )  # fmt: skip
    assert status == 200 and creds["AccessKeyId"].startswith("ASIA")

    assert call(api_gateway, "POST", "/api/v1/users", admin, {"name": "frank"})[0] == 409
    assert call(api_gateway, "POST", "/api/v1/users/frank/lock", admin)[0] == 204
    assert call(api_gateway, "GET", "/api/v1/access", frank_token)[0] == 401  # sessions ended
    assert call(api_gateway, "GET", "/api/v1/users/frank", admin)[1]["locked"] is True
    assert call(api_gateway, "POST", "/api/v1/users/frank/unlock", admin)[0] == 204
    status, again = call(api_gateway, "POST", "/api/v1/users/frank/reset", admin)
    assert status == 200 and again["password"] != enrolment["password"]
    assert (
        call(api_gateway, "PUT", "/api/v1/users/frank/roles", admin, {"roles": ["nope"]})[0] == 400
    )
    assert call(api_gateway, "DELETE", "/api/v1/users/frank", admin)[0] == 204
    assert call(api_gateway, "GET", "/api/v1/users/frank", admin)[0] == 404

    sessions = call(api_gateway, "GET", "/api/v1/sessions?user=dana", admin)[1]["sessions"]
    assert len(sessions) == 1 and sessions[0]["kind"] == "cli"
    roles = call(api_gateway, "GET", "/api/v1/roles", admin)[1]["roles"]
    assert {r["name"] for r in roles} >= {"data-scientist", "admin"}
    accounts = call(api_gateway, "GET", "/api/v1/accounts", admin)[1]["accounts"]
    assert "external_id" not in accounts[0]


def test_audit_pages_for_admins_and_for_oneself(
    api_gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    admin, dana = tokens["loader"], tokens["dana"]
    status, refused = call(api_gateway, "GET", "/api/v1/audit?principal=loader", dana)
    assert status == 403 and refused["error"] == "AccessDenied"
    every = call(api_gateway, "GET", "/api/v1/audit?type=user.changed&limit=1000", admin)[1]
    ids = [e["id"] for e in every["events"]]
    assert len(ids) >= 3 and every["next"] is None
    size = (len(ids) + 1) // 2  # two pages
    page = f"/api/v1/audit?type=user.changed&limit={size}"
    first = call(api_gateway, "GET", page, admin)[1]
    second = call(api_gateway, "GET", page + "&before=" + quote(first["next"]), admin)[1]
    assert [e["id"] for e in first["events"] + second["events"]] == ids  # once each, newest first
    times = [e["time"] for e in first["events"] + second["events"]]
    assert times == sorted(times, reverse=True)
    last_time = first["events"][-1]["time"]  # a time, as before cursors: strictly earlier
    earlier = call(api_gateway, "GET", page + "&before=" + quote(last_time), admin)[1]
    assert earlier["events"] and all(e["time"] < last_time for e in earlier["events"])
    assert call(api_gateway, "GET", "/api/v1/audit?limit=0", admin)[0] == 400
    assert call(api_gateway, "GET", "/api/v1/audit?since=yesterday", admin)[0] == 400


def test_a_cookie_is_not_a_bearer_token_and_unsafe_cookie_calls_need_csrf(
    api_gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    request = urllib.request.Request(
        api_gateway.url + "/api/v1/users/dana/lock",
        data=b"",
        method="POST",
        headers={"Cookie": "iamgate-session=" + tokens["loader"], "Origin": api_gateway.url},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401  # a CLI session is not accepted from a cookie


@pytest.mark.parametrize("who", ["dana", "loader"])
def test_schemathesis_finds_no_server_error(
    api_gateway: GatewayProcess, tokens: dict[str, str], who: str, tmp_path: Path
) -> None:
    """The real schemathesis CLI, with every check, as dana and as an administrator.

    Values seen in responses are not fed back into requests: the administrator's run would
    otherwise lock or reset the very users (itself included) whose sessions it runs with.
    """
    config = tmp_path / "schemathesis.toml"
    # Invalid data may also be refused as too large (413): every body is bounded, and a
    # generated string with no maxLength of its own can pass the bound.
    rejected = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429"]
    config.write_text(
        "".join(
            f"[phases.{phase}.extra-data-sources]\nresponses = false\n"
            for phase in ("examples", "coverage", "fuzzing")
        )
        + f"[checks.negative_data_rejection]\nexpected-statuses = {rejected!r}\n".replace("'", '"')
    )
    run = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{api_gateway.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {tokens[who]}",
            "--checks",
            "all",
            # A well-formed request can still be wrong (an unknown role, a user who exists):
            # those get a 400 or 409 with a reason, which this check would call a failure.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "20",
            "--seed",
            "1",
            "--exclude-path",
            "/api/v1/logout",  # it would end the session the run uses
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=clean_env(tmp_path),
        check=False,
    )
    (tmp_path.parent / f"schemathesis-{who}.txt").write_text(run.stdout)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_health_says_starting_until_the_service_models_are_compiled(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAMGATE_CACHE_DIR", "off")  # a first start: models to compile
    gw = GatewayProcess(sandbox, tmp_path / "starting")
    gw.start()  # returns as soon as the port answers; compiling takes seconds more
    try:
        seen = [call(gw, "GET", "/api/v1/health", None)]
        deadline = time.monotonic() + 60
        while seen[-1][0] == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            seen.append(call(gw, "GET", "/api/v1/health", None))
    finally:
        gw.stop()
    (first, starting), (last, ready) = seen[0], seen[-1]
    assert (first, starting["status"]) == (503, "starting")  # a load balancer waits
    assert (last, ready["status"]) == (200, "ready")
    # when the replica last read users and revocations: it does at start, before models
    assert datetime.fromisoformat(ready["directory_as_of"]) <= datetime.now(UTC)
