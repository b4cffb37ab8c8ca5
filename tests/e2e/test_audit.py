"""The audit trail with real processes: searched, tamper-evident, durable, and complete."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import (
    BIN,
    GatewayProcess,
    MotoRecorder,
    audited_calls,
    clean_env,
    creds_env,
    gateway_creds,
    run_aws,
)

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e
PROD, CI = "111111111111", "222222222222"


def iamgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iamgate"), *args],
        env=clean_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sts_client(gw: GatewayProcess, user: str, account: str, role: str, mark: str = "") -> Any:
    """A client that makes each call once (no retries); `mark` in its User-Agent finds its
    own audit records in the store the session's tests share."""
    config = BotoConfig(
        retries={"total_max_attempts": 1}, read_timeout=30, user_agent_extra=mark or None
    )
    return gw.client("sts", gw.issue(user, account, role), config)


def test_search_shows_danas_refused_delete(gateway: GatewayProcess, home: Path) -> None:
    env = creds_env(clean_env(home), gateway_creds(gateway.issue("dana", PROD, "ReadOnly")))
    run_aws(
        [
            "rds",
            "delete-db-instance",
            "--db-instance-identifier",
            "acme-prod-db",
            "--skip-final-snapshot",
        ],
        env=env,
        endpoint_url=gateway.url,
    )
    config = ["--config", str(gateway.config_path)]
    found = iamgate(
        "audit",
        "search",
        *config,
        "--principal",
        "dana",
        "--decision",
        "denied",
        "--json",
        cwd=home,
    )
    assert found.returncode == 0, found.stderr
    events = [json.loads(line) for line in found.stdout.splitlines()]
    delete = next(e for e in events if e["fields"]["action"] == "rds:DeleteDBInstance")
    assert delete["fields"]["account_id"] == PROD and delete["fields"]["aws_role"] == "ReadOnly"
    assert delete["fields"]["rule"] == (
        "role data-scientist denies rds:DeleteDBInstance (deny rds:Delete*)"
    )
    table = iamgate(
        "audit",
        "search",
        *config,
        "--principal",
        "dana",
        "--decision",
        "denied",
        "--action",
        "rds:Delete*",
        cwd=home,
    )
    assert "rds:DeleteDBInstance" in table.stdout and "acme-prod" in table.stdout
    assert "deny rds:Delete*" in table.stdout


def test_the_trail_names_the_configuration_in_force(gateway: GatewayProcess) -> None:
    (loaded,) = audited_calls(gateway.state_url, type="config.loaded", wait=0)[:1]
    fields = loaded["fields"]
    assert fields["path"] == str(gateway.config_path.resolve())
    assert fields["sha256"] == hashlib.sha256(gateway.config_path.read_bytes()).hexdigest()
    assert "data-scientist" in fields["roles"] and fields["accounts"] == 3
    started = audited_calls(gateway.state_url, type="server.started", wait=0)
    assert started and started[0]["fields"]["url"] == gateway.url


def _copy_store(gw: GatewayProcess, directory: Path) -> Path:
    """A consistent copy of the live store, and a config that points at it."""
    copy = directory / "copy.db"
    source = sqlite3.connect(str(gw.directory / "state.db"))
    target = sqlite3.connect(str(copy))
    source.backup(target)
    source.close()
    target.close()
    config = yaml.safe_load(gw.config_path.read_text())
    config["storage"]["url"] = f"sqlite:///{copy}"
    (directory / "copy.yaml").write_text(yaml.safe_dump(config))
    return copy


def test_verify_names_edited_deleted_and_reordered_events(
    gateway: GatewayProcess, home: Path, tmp_path: Path
) -> None:
    client = sts_client(gateway, "dana", PROD, "ReadOnly")
    for _ in range(6):
        client.get_caller_identity()
    time.sleep(0.5)
    db = _copy_store(gateway, tmp_path)
    config = ["--config", str(tmp_path / "copy.yaml")]
    intact = iamgate("audit", "verify", *config, cwd=tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert "audit log intact" in intact.stdout

    conn = sqlite3.connect(str(db))
    chain, top = conn.execute(
        "SELECT chain, MAX(seq) FROM audit_events GROUP BY chain ORDER BY MAX(seq) DESC"
    ).fetchone()
    assert top >= 8

    def verify_after(*statements: str) -> str:
        for statement in statements:
            conn.execute(statement.replace("CHAIN", chain).replace("FIRST_CALL", str(call)))
        conn.commit()
        result = iamgate("audit", "verify", *config, cwd=tmp_path)
        assert result.returncode == 1
        return result.stderr

    (call,) = conn.execute(  # an API call's record, wherever other tests put it in the chain
        "SELECT MIN(seq) FROM audit_events WHERE chain=? AND type='aws.call'", (chain,)
    ).fetchone()
    original = conn.execute(
        "SELECT body FROM audit_events WHERE chain=? AND seq=?", (chain, call)
    ).fetchone()
    edited = verify_after(
        "UPDATE audit_events SET body=replace(body, 'aws.call', 'aws.calm') "
        "WHERE chain='CHAIN' AND seq=FIRST_CALL"
    )
    assert f"chain {chain}: event {call} edited" in edited
    conn.execute(
        "UPDATE audit_events SET body=? WHERE chain=? AND seq=?", (original[0], chain, call)
    )
    column = verify_after(
        "UPDATE audit_events SET principal='mallory' WHERE chain='CHAIN' AND seq=4"
    )
    assert f"chain {chain}: event 4 edited" in column
    conn.execute(
        "UPDATE audit_events SET principal=? WHERE chain=? AND seq=4",
        (_principal(conn, chain, 4), chain),
    )
    conn.commit()
    assert iamgate("audit", "verify", *config, cwd=tmp_path).returncode == 0
    deleted = verify_after("DELETE FROM audit_events WHERE chain='CHAIN' AND seq=5")
    assert f"chain {chain}: event 5 deleted" in deleted
    reordered = verify_after(
        "UPDATE audit_events SET seq = -6 WHERE chain='CHAIN' AND seq = 6",
        "UPDATE audit_events SET seq = 6 WHERE chain='CHAIN' AND seq = 7",
        "UPDATE audit_events SET seq = 7 WHERE chain='CHAIN' AND seq = -6",
    )
    assert f"chain {chain}: event 6" in reordered
    conn.close()


def _principal(conn: sqlite3.Connection, chain: str, seq: int) -> Any:
    body = conn.execute(
        "SELECT body FROM audit_events WHERE chain=? AND seq=?", (chain, seq)
    ).fetchone()[0]
    return json.loads(body)["principal"]


def test_an_anchored_head_catches_removal_from_the_end(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    sts_client(gateway, "dana", PROD, "ReadOnly").get_caller_identity()
    time.sleep(0.5)
    db = _copy_store(gateway, tmp_path)
    config = ["--config", str(tmp_path / "copy.yaml")]
    heads = tmp_path / "heads.json"
    exported = iamgate("audit", "export", *config, "--head-file", str(heads), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines and all({"chain", "seq", "hash", "type", "time"} <= set(e) for e in lines)
    assert not any(
        "SecretAccessKey" in line or "iamgate1." in line for line in exported.stdout.splitlines()
    )
    anchored = json.loads(heads.read_text())
    chain, head = max(anchored.items(), key=lambda item: item[1]["seq"])
    conn = sqlite3.connect(str(db))
    conn.execute("DELETE FROM audit_events WHERE chain=? AND seq=?", (chain, head["seq"]))
    conn.commit()
    conn.close()
    assert iamgate("audit", "verify", *config, cwd=tmp_path).returncode == 0  # undetectable...
    anchored_check = iamgate("audit", "verify", *config, "--head-file", str(heads), cwd=tmp_path)
    assert anchored_check.returncode == 1  # ...except against the anchored head
    assert f"event {head['seq']} deleted" in anchored_check.stderr


def test_an_unwritable_audit_store_fails_closed_and_recovers(
    own_gateway: GatewayProcess, sandbox: Sandbox
) -> None:
    client = sts_client(own_gateway, "dana", PROD, "ReadOnly")
    assert client.get_caller_identity()["Account"] == PROD
    recorder = MotoRecorder(sandbox.endpoint_url)
    lock = sqlite3.connect(str(own_gateway.directory / "state.db"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    recorder.start()
    try:
        with pytest.raises(ClientError) as info:
            client.get_caller_identity()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "audit log cannot be written" in info.value.response["Error"]["Message"]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert recorder.stop() == []  # nothing reached the upstream
    assert client.get_caller_identity()["Account"] == PROD  # recovered
    events = audited_calls(own_gateway.state_url, principal="dana")
    assert [e["fields"]["status"] for e in events if e["fields"]["status"] != 503] == [200, 200]
    refused = [e for e in events if e["fields"]["status"] == 503]
    assert all("audit-unavailable" in e["fields"]["reason"] for e in refused)


def test_concurrent_calls_are_each_audited_once(gateway: GatewayProcess, tmp_path: Path) -> None:
    """Every call of 16 clients at once has exactly one record, matched by the request id
    the client was answered with; other tests' calls by the same user are not this test's
    (the session's gateway is shared), so its records are found by their User-Agent."""
    threads, per_thread = 16, 20
    mark = f"iamgate-test/{uuid.uuid4().hex}"
    answered: list[dict[str, Any]] = []  # each call's ResponseMetadata
    errors: list[BaseException] = []

    def work() -> None:
        client = sts_client(gateway, "loader", CI, "ReadOnly", mark)
        try:
            for _ in range(per_thread):
                answered.append(client.get_caller_identity()["ResponseMetadata"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert len(answered) == threads * per_thread
    events = audited_calls(gateway.state_url, principal="loader", limit=10_000)
    mine = [e for e in events if mark in (e.get("user_agent") or "")]
    made = Counter(m["RequestId"] for m in answered)
    audited = Counter(str(e["fields"].get("aws_request_id")) for e in mine)
    assert audited == made, _miscounted(made, audited, mine)
    assert all(e["fields"]["status"] == 200 for e in mine)
    _copy_store(gateway, tmp_path)
    verified = iamgate("audit", "verify", "--config", str(tmp_path / "copy.yaml"), cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr


def _miscounted(made: Counter[str], audited: Counter[str], events: list[Any]) -> str:
    """The request ids answered and audited a different number of times, with the records."""
    wrong = {rid for rid in made.keys() | audited.keys() if made[rid] != audited[rid]}
    records = [
        {k: e["fields"].get(k) for k in ("request_id", "aws_request_id", "action", "status")}
        for e in events
        if str(e["fields"].get("aws_request_id")) in wrong
    ]
    return f"answered/audited: { {rid: (made[rid], audited[rid]) for rid in wrong} }; {records}"


def test_after_a_crash_a_call_without_outcome_shows_as_such(
    own_gateway: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.client(CI, "s3").put_object(
        Bucket="acme-ci-data", Key="big.bin", Body=os.urandom(32 * 1024 * 1024)
    )
    creds = own_gateway.issue("ci-bot", CI, "CIRunner")
    s3 = own_gateway.client("s3", creds, BotoConfig(retries={"total_max_attempts": 1}))
    body = s3.get_object(Bucket="acme-ci-data", Key="big.bin")["Body"]
    body.read(1024)  # the response is streaming: the call is in flight
    assert own_gateway.process is not None
    os.killpg(own_gateway.process.pid, signal.SIGKILL)
    own_gateway.process.wait()
    events = audited_calls(own_gateway.state_url, principal="ci-bot", action="s3:GetObject", wait=0)
    assert len(events) == 1
    assert events[0]["fields"]["decision"] == "allowed"
    assert events[0]["fields"]["outcome_recorded"] is False
    db = tmp_path / "copy"
    db.mkdir()
    _copy_store(own_gateway, db)
    verified = iamgate("audit", "verify", "--config", str(db / "copy.yaml"), cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr


def test_a_stopped_gateway_stores_every_event_and_its_stop(
    own_gateway: GatewayProcess, tmp_path: Path
) -> None:
    client = sts_client(own_gateway, "dana", PROD, "ReadOnly")
    for _ in range(5):
        client.get_caller_identity()
    assert own_gateway.process is not None
    own_gateway.process.send_signal(signal.SIGTERM)  # as systemd or a container runtime does
    assert own_gateway.process.wait(timeout=30) == 0
    calls = audited_calls(own_gateway.state_url, principal="dana", wait=0)
    assert len(calls) == 5 and all(c["fields"]["outcome_recorded"] for c in calls)
    (stopped,) = audited_calls(own_gateway.state_url, type="server.stopped", wait=0)
    assert stopped["time"] > calls[0]["time"]
    _copy_store(own_gateway, tmp_path)
    verified = iamgate("audit", "verify", "--config", str(tmp_path / "copy.yaml"), cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
