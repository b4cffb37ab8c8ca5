"""Just-in-time access, end to end: the real gateway process in front of moto, the real
`aws` CLI with dana's one profile, and `iamgate request …` as each person logged in.

dana's `aws rds delete-db-instance` is refused with the command that asks for the role that
would allow it; she asks for prod-admin over a label selector; a team lead approves one of
the two accounts, security approves; the same profile now deletes in that account (and not
in the other); she drops the request and her next call is refused within a second. Her own
review is refused (403) and audited, and the trail holds every step.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, GatewayProcess, clean_env, run_aws
from people import Person, enrol, iamgate, login
from sqlalchemy import create_engine

from iamgate.audit.events import EventType
from iamgate.audit.search import Filters, search
from iamgate.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("databases_restored")]

REQUEST_ROLES: list[dict[str, Any]] = [
    {"name": "team-lead"},
    {"name": "security"},
    {
        "name": "prod-admin",
        "allow": {"accounts": {"env": ["prod"]}, "aws_roles": ["ReadOnly", "Admin"]},
        "requestable": {
            "requesters": ["data-scientist"],
            "stages": [{"approve": 1, "from": "team-lead"}, {"approve": 1, "from": "security"}],
            "max_duration": "2h",
            "default_duration": "1h",
            "reason": {"required": True, "prompt": "Which incident?"},
        },
    },
]


REQUEST_EVENTS = tuple(str(t) for t in EventType if t.startswith("request."))


@pytest.fixture(scope="module")
def jit_gateway(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        sandbox, tmp_path_factory.mktemp("jit-gateway"), extra={"roles": REQUEST_ROLES}
    )
    gw.start()
    yield gw
    gw.stop()


def _database(sandbox: Sandbox, account: str) -> str:
    """A database of this test's own in `account` (the sandbox is the session's)."""
    name = f"jit-{secrets.token_hex(3)}"
    sandbox.client(account, "rds").create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
    )
    return name


def _profile_env(person: Person, gateway: GatewayProcess, tmp_path: Path) -> dict[str, str]:
    """dana's one profile for acme-prod/ReadOnly, written by `iamgate profiles sync`."""
    aws_config = tmp_path / f"aws-config-{person.name}"
    synced = iamgate(person.env, "profiles", "sync", "--config-file", str(aws_config))
    assert synced.returncode == 0, synced.stderr
    return dict(person.env, AWS_CONFIG_FILE=str(aws_config))


def _delete(env: dict[str, str], name: str, profile: str, mark: str) -> Any:
    return run_aws(
        [
            "rds",
            "delete-db-instance",
            "--db-instance-identifier",
            name,
            "--skip-final-snapshot",
            "--profile",
            profile,
        ],
        env=dict(env, AWS_EXECUTION_ENV=mark),  # in the User-Agent: this call's own record
    )


def _request(person: Person, *args: str) -> Any:
    done = iamgate(person.env, "request", *args)
    assert done.returncode == 0, done.stderr
    return done


def _api(gateway: GatewayProcess, person: Person, method: str, path: str, body: Any) -> Any:
    token = json.loads((Path(person.env["IAMGATE_HOME"]) / "session.json").read_text())["token"]
    request = urllib.request.Request(
        gateway.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _trail(gateway: GatewayProcess, request_id: str) -> list[tuple[str, str, str]]:
    engine = create_engine(gateway.state_url)
    try:
        events = search(engine, Filters(types=REQUEST_EVENTS, limit=200))
    finally:
        engine.dispose()
    mine = [e for e in events if e["fields"].get("request_id") == request_id]
    return [(e["type"], e["principal"], e["fields"].get("state", "")) for e in reversed(mine)]


def _aws_records(gateway: GatewayProcess, mark: str) -> list[dict[str, Any]]:
    engine = create_engine(gateway.state_url)
    try:
        deadline = time.monotonic() + 15
        while True:
            events = search(engine, Filters(principal="dana", action="rds:DeleteDBInstance"))
            mine = [e for e in events if mark in (e.get("user_agent") or "")]
            if mine or time.monotonic() > deadline:
                return mine
            time.sleep(0.2)
    finally:
        engine.dispose()


def test_dana_asks_two_stages_approve_her_same_profile_deletes_until_she_drops(
    jit_gateway: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    gw = jit_gateway
    people = {
        name: enrol(gw, tmp_path, name, roles=roles)
        for name, roles in (("dana", ""), ("lee", "team-lead"), ("sec", "security"))
    }
    for person in people.values():
        assert login(gw, person).returncode == 0
    dana, lee, sec = people["dana"], people["lee"], people["sec"]
    prod = sandbox.account("acme-prod").id
    globex = sandbox.account("customer-globex").id
    doomed, spared = _database(sandbox, prod), _database(sandbox, globex)
    env = _profile_env(dana, gw, tmp_path)
    offered = json.loads(iamgate(dana.env, "ls", "--json").stdout)["requestable"]
    assert [(o["role"], o["max_duration"], o["prompt"]) for o in offered] == [
        ("prod-admin", "2h", "Which incident?")
    ]
    assert "may request" in iamgate(dana.env, "ls").stdout
    profile, other = "iamgate-acme-prod-ReadOnly", "iamgate-customer-globex-ReadOnly"

    # 1. refused, and the refusal says how to ask
    refused = _delete(env, doomed, profile, "jit-refused")
    assert refused.returncode != 0
    assert "iamgate: role data-scientist denies rds:DeleteDBInstance" in refused.stderr
    assert (
        "role prod-admin would allow it: iamgate request create --role prod-admin "
        "--account acme-prod --duration 1h --reason '...'"
    ) in refused.stderr

    # 2. she asks, over a label selector (two accounts)
    created = _request(
        dana, "create", "--role", "prod-admin", "--accounts", "env=prod",
        "--duration", "30m", "--reason", "INC-7: remove the broken replica", "--json",
    )  # fmt: skip
    asked = json.loads(created.stdout)
    request_id = asked["id"]
    assert asked["state"] == "pending"
    assert [a["name"] for a in asked["accounts"]] == ["acme-prod", "customer-globex"]
    assert asked["stages"] == ["1 of team-lead", "1 of security"]

    # 3. reviewing her own request is refused: 403, audited
    status, reply = _api(
        gw, dana, "POST", f"/api/v1/requests/{request_id}/approve", {"reason": "me"}
    )
    assert status == 403 and "cannot review their own request" in reply["message"]
    own = iamgate(dana.env, "request", "approve", request_id, "--reason", "me")
    assert own.returncode != 0 and "cannot review their own request" in own.stderr

    # 4. the team lead sees it to review and approves acme-prod only; security approves
    to_review = json.loads(_request(lee, "ls", "--to-review", "--json").stdout)
    assert request_id in [r["id"] for r in to_review]
    first = _request(
        lee, "approve", request_id, "--account", "acme-prod", "--reason", "go", "--json"
    )
    assert json.loads(first.stdout)["state"] == "pending"
    second = json.loads(_request(sec, "approve", request_id, "--reason", "ok", "--json").stdout)
    assert second["state"] == "approved"
    assert [(a["name"], a["approved"]) for a in second["accounts"]] == [
        ("acme-prod", True),
        ("customer-globex", False),
    ]

    # 5. her same profile now deletes in acme-prod (within a poll), and not in globex
    deadline = time.monotonic() + 5
    while True:
        deleted = _delete(env, doomed, profile, "jit-granted")
        if deleted.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.json()["DBInstance"]["DBInstanceIdentifier"] == doomed
    (granted,) = _aws_records(gw, "jit-granted")[:1]
    assert granted["fields"]["decision"] == "allowed"
    assert f"granted by request {request_id}" in granted["fields"]["rule"]
    elsewhere = _delete(env, spared, other, "jit-elsewhere")
    assert elsewhere.returncode != 0 and "denies rds:DeleteDBInstance" in elsewhere.stderr

    # 6. she drops it: her next call is refused within a second
    keep = _database(sandbox, prod)
    dropped = json.loads(_request(dana, "drop", request_id, "--reason", "done", "--json").stdout)
    assert (dropped["state"], dropped["ended_by"]) == ("ended", "dropped")
    dropped_at = time.monotonic()
    after = _delete(env, keep, profile, "jit-after-drop")  # the next call, at once
    assert after.returncode != 0, "a call after the drop was allowed"
    assert "denies rds:DeleteDBInstance" in after.stderr
    assert time.monotonic() - dropped_at < 5  # the aws CLI's own start-up is most of it
    (after_record,) = _aws_records(gw, "jit-after-drop")[:1]
    assert after_record["fields"]["decision"] == "denied"

    # 7. the audit trail shows every step, with actor, reason and rule
    deadline = time.monotonic() + 10
    expected = [
        ("request.created", "dana", "pending"),
        ("request.refused", "dana", "pending"),
        ("request.refused", "dana", "pending"),
        ("request.reviewed", "lee", "pending"),
        ("request.reviewed", "sec", "approved"),
        ("request.approved", "sec", "approved"),
        ("request.activated", "iamgate", "active"),
        ("request.ended", "dana", "ended"),
    ]
    while _trail(gw, request_id) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _trail(gw, request_id) == expected


def test_on_the_gateway_host_requests_are_made_and_reviewed_with_config_and_as(
    tmp_path: Path,
) -> None:
    """`--config F --as USER`: the same use cases straight on the store; `--wait` returns
    once the last stage approves."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps(
            {
                "storage": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "aws": {"accounts": [{"name": "acme-prod", "id": "111111111111"}]},
                "roles": [{"name": "data-scientist"}, *REQUEST_ROLES],
                "users": [
                    {"name": "dana", "roles": ["data-scientist"]},
                    {"name": "lee", "roles": ["team-lead"]},
                    {"name": "sec", "roles": ["security"]},
                ],
            }
        ).replace('"env": ["prod"]', '"name": ["acme-prod"]')
    )
    env = clean_env(tmp_path)
    host = ["--config", str(config)]
    # The store is made once, before two commands use it at the same time.
    assert iamgate(env, "request", "ls", *host, "--as", "dana").returncode == 0
    waiting = subprocess.Popen(
        [str(BIN / "iamgate"), "request", "create", "--role", "prod-admin",
         "--account", "acme-prod", "--reason", "INC-9", "--wait", "--json", *host,
         "--as", "dana"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            listed = iamgate(env, "request", "ls", "--to-review", "--json", *host, "--as", "lee")
            found = json.loads(listed.stdout) if listed.returncode == 0 else []
            time.sleep(0.3)
        assert waiting.poll() is None, waiting.communicate()
        (pending,) = found
        assert pending["requester"] == "dana" and pending["may_review"]
        refused = iamgate(env, "request", "approve", pending["id"], "--reason", "x", *host,
                          "--as", "dana")  # fmt: skip
        assert refused.returncode == 1 and "cannot review their own" in refused.stderr
        for reviewer in ("lee", "sec"):
            done = iamgate(env, "request", "approve", pending["id"], "--reason", "ok", *host,
                           "--as", reviewer)  # fmt: skip
            assert done.returncode == 0, done.stderr
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert json.loads(out)["state"] == "approved"
    shown = iamgate(env, "request", "show", pending["id"], *host, "--as", "sec")
    assert "approve by lee" in shown.stdout and "approve by sec" in shown.stdout
    outsider = iamgate(env, "request", "show", pending["id"], *host, "--as", "nobody")
    assert outsider.returncode == 1 and "no user 'nobody'" in outsider.stderr
    no_as = iamgate(env, "request", "ls", *host)
    assert no_as.returncode == 2 and "--as USER" in no_as.stderr
