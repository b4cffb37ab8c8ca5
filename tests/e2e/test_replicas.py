"""Several `iamgate serve` replicas on one PostgreSQL store, as the design scales out.

Credentials verify on any replica without shared state but the keys; a revocation made
through one reaches the others on their next poll; each replica keeps its own audit chain,
and together they hold exactly one event per call, all of which verify.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import BIN, GatewayProcess, audited_calls, clean_env
from postgres import fresh_database
from sqlalchemy import create_engine, text

from iamgate.identity.credentials import GatewayCredentials
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e
PROD = "111111111111"


@pytest.fixture
def replicas(sandbox: Sandbox, tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    with fresh_database() as url:
        gateways = [
            GatewayProcess(sandbox, tmp_path / f"replica-{n}", storage_url=url) for n in range(2)
        ]
        # Started together: on first start they race to make the schema, keys and users.
        starters = [threading.Thread(target=gw.start) for gw in gateways]
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join()
        try:
            assert all(gw.process is not None and gw.process.poll() is None for gw in gateways)
            yield gateways
        finally:
            for gw in gateways:
                gw.stop()


def sts(gw: GatewayProcess, creds: GatewayCredentials) -> Any:
    return gw.client("sts", creds, BotoConfig(retries={"total_max_attempts": 1}))


def iamgate(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iamgate"), *args, "--config", str(gw.config_path)],
        env=clean_env(gw.directory),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_credential_works_on_every_replica_until_one_revokes_it(
    replicas: list[GatewayProcess],
) -> None:
    first, second = replicas
    creds = first.issue("dana", PROD, "ReadOnly")
    for gw in replicas:
        assert sts(gw, creds).get_caller_identity()["Account"] == PROD
    revoked = iamgate(first, "sessions", "revoke", "--user", "dana")
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1.2)  # one directory poll
    with pytest.raises(ClientError) as refused:
        sts(second, creds).get_caller_identity()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert "iamgate revoked it" in refused.value.response["Error"]["Message"]


def test_each_replica_keeps_its_own_chain_and_every_call_is_audited_once(
    replicas: list[GatewayProcess],
) -> None:
    threads, per_thread = 8, 25
    errors: list[BaseException] = []

    def work(gw: GatewayProcess) -> None:
        client = sts(gw, gw.issue("loader", PROD, "ReadOnly"))
        try:
            for _ in range(per_thread):
                client.get_caller_identity()
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(replicas[n % 2],)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    events = audited_calls(replicas[0].state_url, principal="loader", limit=10_000)
    assert len(events) == threads * per_thread
    assert all(e["fields"]["status"] == 200 for e in events)
    engine = create_engine(replicas[0].state_url)
    with engine.connect() as conn:
        chains = conn.execute(
            text(
                "SELECT count(DISTINCT chain) FROM audit_events "
                "WHERE type = 'aws.call' AND principal = 'loader'"
            )
        ).scalar()
    engine.dispose()
    assert chains == 2  # one per replica
    verified = iamgate(replicas[1], "audit", "verify")
    assert verified.returncode == 0, verified.stderr + verified.stdout
