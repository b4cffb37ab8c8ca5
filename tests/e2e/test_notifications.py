"""Notifications of access requests, end to end: the real gateway process, a webhook
receiver of its own process that checks every signature, and an SMTP server (aiosmtpd) of
its own process.

The receiver is down when dana asks: her request is made at once, the webhook delivery is
retried (the delivery log says why) and arrives once the receiver is up. Reviewers get an
e-mail with a link to the request's page, dana hears of the approval and the revocation,
the first reviewer hears that the request was handled by the second, and a request nobody
reviews brings its reviewers a reminder at half its pending lifetime and dana its expiry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import GatewayProcess, clean_env, free_port
from people import Person, enrol, iamgate, login

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

SUPPORT = Path(__file__).parent.parent / "support"
ROLES: list[dict[str, Any]] = [
    {"name": "team-lead"},
    {"name": "security"},
    {
        "name": "prod-admin",
        "allow": {"accounts": {"env": ["prod"]}, "aws_roles": ["ReadOnly", "Admin"]},
        "requestable": {
            "requesters": ["data-scientist"],
            "stages": [{"approve": 1, "from": "team-lead"}, {"approve": 1, "from": "security"}],
            "max_duration": "2h",
        },
    },
    {
        "name": "quick-admin",
        "allow": {"accounts": {"env": ["prod"]}, "aws_roles": ["Admin"]},
        "requestable": {"reviewers": "team-lead", "pending_lifetime": "6s"},
    },
]


class Receiver:
    """A child process that writes what it receives, one JSON object a line."""

    def __init__(self, script: str, out: Path, *args: str) -> None:
        self.script, self.out, self.args = script, out, args
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SUPPORT / self.script), *self.args, str(self.out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def received(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.received() if wanted(r)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"nothing of the kind arrived; received: {self.received()}")


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Receiver]:
    sink = Receiver("smtp_sink.py", tmp_path / "mail.jsonl", str(free_port()))
    sink.start()
    yield sink
    sink.stop()


def _mail(mailbox: Receiver, user: str, subject: str) -> dict[str, Any]:
    found: dict[str, Any] = mailbox.wait_for(
        lambda m: m["to"] == [f"{user}@example.test"] and subject in m["subject"]
    )
    return found


def _api(gateway: GatewayProcess, person: Person, method: str, path: str, body: Any) -> Any:
    token = json.loads((Path(person.env["IAMGATE_HOME"]) / "session.json").read_text())["token"]
    request = urllib.request.Request(
        gateway.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _log(gw: GatewayProcess, request_id: str) -> list[dict[str, Any]]:
    env = clean_env(gw.directory)
    shown = iamgate(
        env, "notifications", "log", "--config", str(gw.config_path), "--request", request_id,
        "--json",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows: list[dict[str, Any]] = json.loads(shown.stdout)
    return rows


def test_webhook_and_mail_tell_each_person_and_a_receiver_down_delays_nothing(
    sandbox: Sandbox, tmp_path: Path, mailbox: Receiver
) -> None:
    secret = tmp_path / "webhook-secret"
    secret.write_text("whsec-not-a-real-one\n")
    hook_port = free_port()
    hook = Receiver("webhook_receiver.py", tmp_path / "hook.jsonl", str(hook_port), str(secret))
    assert mailbox.args
    gw = GatewayProcess(
        sandbox,
        tmp_path / "gateway",
        extra={
            "roles": ROLES,
            "notifications": {
                "webhooks": [
                    {"url": f"http://127.0.0.1:{hook_port}/hook", "secret_file": str(secret)}
                ],
                "smtp": {
                    "host": "127.0.0.1",
                    "port": int(mailbox.args[0]),
                    "from": "iamgate@example.test",
                    "to": "{user}@example.test",
                },
                "retry_max_interval": "1s",
            },
        },
    )
    gw.start()
    try:
        people: dict[str, Person] = {
            name: enrol(gw, tmp_path, name, roles=roles)
            for name, roles in (("dana", ""), ("lee", "team-lead"), ("sec", "security"),
                                ("ada", "admin"))
        }  # fmt: skip
        for person in people.values():
            assert login(gw, person).returncode == 0
        dana, lee, sec, ada = (people[n] for n in ("dana", "lee", "sec", "ada"))

        # 1. the webhook receiver is down: the request is made at once all the same
        began = time.monotonic()
        status, asked = _api(
            gw, dana, "POST", "/api/v1/requests",
            {"role": "prod-admin", "accounts": ["acme-prod"], "duration": "30m",
             "reason": "INC-8: rotate the replica"},
        )  # fmt: skip
        took = time.monotonic() - began
        assert status == 201, asked
        assert took < 2, f"asking took {took:.1f}s with the receiver down"
        request_id = asked["id"]
        page = f"{gw.url}/requests/{request_id}"

        # 2. both reviewers get an e-mail whose link opens the request's page
        for reviewer in ("lee", "sec"):
            mail = _mail(mailbox, reviewer, "dana asks for prod-admin (30m)")
            assert mail["from"] == "iamgate@example.test"
            assert f"Open the request: {page}" in mail["text"]
            assert "INC-8: rotate the replica" in mail["text"]
        # the link is a page: a person not signed in is sent to log in, and back to it
        with urllib.request.urlopen(page, timeout=10) as opened:
            assert opened.status == 200
            assert opened.url == f"{gw.url}/login?" + urllib.parse.urlencode(
                {"next": f"/requests/{request_id}"}
            )

        # 3. the webhook delivery failed and is retried; the log says why
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            (created,) = [
                r for r in _log(gw, request_id)
                if r["channel"] == "webhook" and r["event"] == "request.created"
            ]  # fmt: skip
            if created["attempts"] >= 2:
                break
            time.sleep(0.3)
        assert created["state"] == "pending" and created["attempts"] >= 2, created
        assert "connect" in (created["last_error"] or "").lower(), created
        assert created["target"] == f"http://127.0.0.1:{hook_port}/hook"

        # 4. the receiver comes up: the delivery arrives, signed with the shared secret
        hook.start()
        body = hook.wait_for(lambda r: r.get("event") == "request.created")
        assert body["request_id"] == request_id and body["url"] == page
        assert body["recipients"] == ["lee", "sec"]

        # 5. two reviews: dana hears it was approved, lee that sec handled it
        assert _api(gw, lee, "POST", f"/api/v1/requests/{request_id}/approve",
                    {"reason": "go"})[0] == 200  # fmt: skip
        assert _api(gw, sec, "POST", f"/api/v1/requests/{request_id}/approve",
                    {"reason": "ok"})[0] == 200  # fmt: skip
        approved = _mail(mailbox, "dana", "Your request for prod-admin was approved")
        assert f"Open the request: {page}" in approved["text"]
        handled = _mail(mailbox, "lee", "dana's request for prod-admin was already handled by sec")
        assert "Why:       ok" in handled["text"]
        hook.wait_for(lambda r: r.get("event") == "request.approved")
        hook.wait_for(lambda r: r.get("event") == "request.handled" and r["actor"] == "sec")

        # 6. sec revokes it: dana hears of it
        status, _ = _api(
            gw, sec, "POST", f"/api/v1/requests/{request_id}/revoke", {"reason": "done early"}
        )
        assert status == 200
        revoked = _mail(mailbox, "dana", "Your access as prod-admin was revoked by sec")
        assert "Why:       done early" in revoked["text"]

        # 7. every webhook delivery was signed right; the log (CLI and API) shows each one
        hook.wait_for(lambda r: r.get("event") == "request.revoked")
        assert not [r for r in hook.received() if "bad_signature" in r]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = _log(gw, request_id)
            if all(r["state"] == "delivered" for r in rows if r["event"] != "request.reminder"):
                break
            time.sleep(0.3)
        events = sorted((r["event"], r["channel"], r["state"]) for r in rows)
        assert ("request.created", "webhook", "delivered") in events
        assert ("request.revoked", "smtp", "delivered") in events
        assert ("request.reminder", "smtp", "pending") in events  # due in 12h, if still pending
        assert not [e for e in events if e[2] not in ("delivered",) and e[0] != "request.reminder"]
        table = iamgate(
            clean_env(gw.directory), "notifications", "log", "--config", str(gw.config_path)
        )
        assert table.returncode == 0 and "request.revoked" in table.stdout
        status, logged = _api(gw, ada, "GET", f"/api/v1/notifications?request={request_id}", None)
        assert status == 200
        assert {d["id"] for d in logged["deliveries"]} == {r["id"] for r in rows}
        assert _api(gw, dana, "GET", "/api/v1/notifications", None)[0] == 403

        # 8. nobody reviews: a reminder at half the pending lifetime, then the expiry
        status, quick = _api(
            gw, dana, "POST", "/api/v1/requests",
            {"role": "quick-admin", "accounts": ["acme-prod"], "reason": "INC-9"},
        )  # fmt: skip
        assert status == 201, quick
        asked_at = time.monotonic()
        reminder = _mail(mailbox, "lee", "Reminder: dana's request for quick-admin")
        assert time.monotonic() - asked_at > 2  # not before half of its 6s
        assert f"{gw.url}/requests/{quick['id']}" in reminder["text"]
        _mail(mailbox, "dana", "Your request for quick-admin expired")
    finally:
        hook.stop()
        gw.stop()
