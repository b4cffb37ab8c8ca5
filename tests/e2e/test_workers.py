"""`iamgate serve --workers 2`: two whole gateways on one port, as replicas on one store.

Real clients (the aws CLI and boto3) reach both workers through the one port; every call is
audited once, on the chain of the worker that served it (two chains), and the trail
verifies, on SQLite and on PostgreSQL. A stop (SIGTERM from a supervisor, Ctrl-C from a terminal) stops every worker,
each after storing its audit log (its server.stopped is in the store).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from botocore.config import Config as BotoConfig
from harness import (
    BIN,
    GatewayProcess,
    audited_calls,
    clean_env,
    creds_env,
    gateway_creds,
    run_aws,
)
from postgres import fresh_database
from sqlalchemy import create_engine, select

from iamgate.sandbox import Sandbox
from iamgate.store.tables import audit_events

pytestmark = pytest.mark.e2e
PROD = "111111111111"


@pytest.fixture(params=["sqlite", "postgresql"])
def workers(
    request: pytest.FixtureRequest, sandbox: Sandbox, tmp_path: Path
) -> Iterator[GatewayProcess]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database()) if request.param == "postgresql" else None
        gw = GatewayProcess(sandbox, tmp_path / "gateway", storage_url=url, args=("--workers", "2"))
        gw.start()
        try:
            yield gw
        finally:
            gw.stop()


def worker_pids(gw: GatewayProcess, count: int = 2, wait: float = 60) -> list[int]:
    """The supervisor's worker processes (not the workers' audit writers)."""
    assert gw.process is not None
    supervisor = psutil.Process(gw.process.pid)
    deadline = time.monotonic() + wait
    while True:
        found = [p.pid for p in supervisor.children() if "iamgate.audit.process" not in p.cmdline()]
        if len(found) == count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def chains_of(gw: GatewayProcess, event_type: str, principal: str | None = None) -> Counter[str]:
    """How many events of a type (by a principal) each chain holds."""
    query = select(audit_events.c.chain).where(audit_events.c.type == event_type)
    if principal is not None:
        query = query.where(audit_events.c.principal == principal)
    engine = create_engine(gw.state_url)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    engine.dispose()
    return Counter(row.chain for row in rows)


def stopped_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(pid) and _running(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def iamgate(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iamgate"), *args, "--config", str(gw.config_path)],
        env=clean_env(gw.directory),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_both_workers_serve_real_clients_and_sigterm_stops_all(
    workers: GatewayProcess,
) -> None:
    gw = workers
    pids = worker_pids(gw)
    assert len(pids) == 2, pids
    gw.wait_until_ready()
    mark = f"iamgate-test/{uuid.uuid4().hex}"
    creds = gw.issue("loader", PROD, "ReadOnly")

    # The aws CLI: each run is a new connection, which the kernel gives to either worker.
    env = creds_env(clean_env(gw.directory), gateway_creds(creds))
    env["AWS_SDK_UA_APP_ID"] = mark.replace("/", "-")
    for _ in range(3):
        done = run_aws(["sts", "get-caller-identity"], env=env, endpoint_url=gw.url)
        assert done.returncode == 0, done.stderr
        assert done.json()["Account"] == PROD

    # boto3: 12 clients, each on its own connection, 10 calls each.
    answered: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        config = BotoConfig(retries={"total_max_attempts": 1}, user_agent_extra=mark)
        client = gw.client("sts", creds, config)
        try:
            for _ in range(10):
                answered.append(client.get_caller_identity()["ResponseMetadata"]["RequestId"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    events = audited_calls(gw.state_url, principal="loader", limit=10_000)
    boto3_calls = [e for e in events if mark in (e.get("user_agent") or "")]
    cli_calls = [e for e in events if mark.replace("/", "-") in (e.get("user_agent") or "")]
    assert Counter(str(e["fields"].get("aws_request_id")) for e in boto3_calls) == Counter(answered)
    assert len(cli_calls) == 3
    served = chains_of(gw, "aws.call", "loader")
    assert len(served) == 2, served  # both workers served, each on its own chain
    assert sum(served.values()) == len(answered) + 3
    verified = iamgate(gw, "audit", "verify")
    assert verified.returncode == 0, verified.stderr + verified.stdout

    assert gw.process is not None
    gw.process.send_signal(signal.SIGTERM)
    assert gw.process.wait(timeout=30) == 0
    assert stopped_within(pids, 10)
    # Each worker stored its log before it exited: a server.stopped on each chain.
    assert chains_of(gw, "server.stopped") == Counter(dict.fromkeys(served, 1))
    assert iamgate(gw, "audit", "verify").returncode == 0


def test_ctrl_c_stops_every_worker(workers: GatewayProcess) -> None:
    gw = workers
    pids = worker_pids(gw)
    assert len(pids) == 2, pids
    assert gw.process is not None
    started = chains_of(gw, "server.started")
    deadline = time.monotonic() + 60
    while len(started) < 2 and time.monotonic() < deadline:  # both have begun to serve
        time.sleep(0.2)
        started = chains_of(gw, "server.started")
    assert len(started) == 2, started
    # A terminal's Ctrl-C goes to its foreground process group: the supervisor's.
    os.killpg(os.getpgid(gw.process.pid), signal.SIGINT)
    assert gw.process.wait(timeout=30) == 0
    assert stopped_within(pids, 10)
    assert chains_of(gw, "server.stopped") == Counter(dict.fromkeys(started, 1))
