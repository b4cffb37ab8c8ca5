"""A revocation is in force when the command that made it returns, not a poll later.

The gateway here reads the store every 5 s, ten times slower than by default, so that a
call sent right after a revocation would still pass if the command returned before the
gateway had read it: on the gateway host the CLI waits until the gateway's health answer
says it has read the store since; through the API, the replica re-reads before answering.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import GatewayProcess, run_aws
from people import Person, enrol, iamgate, login

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture
def slow_gateway(sandbox: Sandbox, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(sandbox, tmp_path / "gw", server={"directory_poll": "5s"})
    gw.start()
    yield gw
    gw.stop()


def _minted(person: Person) -> dict[str, str]:
    """`person`'s environment with fresh gateway credentials for customer-globex."""
    minted = iamgate(
        person.env, "credentials", "--account", "customer-globex", "--role", "ReadOnly"
    )
    assert minted.returncode == 0, minted.stderr
    creds = json.loads(minted.stdout)
    return dict(person.env) | {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


def _call(gateway: GatewayProcess, env: dict[str, str]) -> tuple[int, str]:
    done = run_aws(["sts", "get-caller-identity"], env=env, endpoint_url=gateway.url)
    return done.returncode, done.stdout + done.stderr


def test_a_revocation_is_in_force_when_its_command_returns(
    slow_gateway: GatewayProcess, tmp_path: Path
) -> None:
    gateway = slow_gateway
    rita = enrol(gateway, tmp_path, "rita", roles="contractor")
    boss = enrol(gateway, tmp_path, "boss", roles="admin")
    assert login(gateway, rita).returncode == 0
    assert login(gateway, boss).returncode == 0

    # On the gateway host, straight in the store.
    env = _minted(rita)
    assert _call(gateway, env)[0] == 0
    revoked = iamgate(
        boss.env, "sessions", "revoke", "--user", "rita", "--config", str(gateway.config_path)
    )
    assert revoked.returncode == 0 and "warning" not in revoked.stderr, revoked.stderr
    status, said = _call(gateway, env)
    assert status != 0 and "iamgate revoked it" in said, said

    # Through the API, as the administrator logged in: the replica re-reads before answering.
    assert login(gateway, rita).returncode == 0
    env = _minted(rita)
    assert _call(gateway, env)[0] == 0
    remote = iamgate(boss.env, "sessions", "revoke", "--user", "rita")
    assert remote.returncode == 0, remote.stderr
    status, said = _call(gateway, env)
    assert status != 0 and "iamgate revoked it" in said, said
