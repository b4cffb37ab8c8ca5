"""One sandbox and one gateway process for the end-to-end tests of the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import GatewayProcess
from playwright.sync_api import Browser, sync_playwright

from iamgate.sandbox import Sandbox
from iamgate.sandbox.federation import FederationStandIn

# Debian's Chromium, never Playwright's own download; without the background-networking
# flags it keeps trying to reach Google's hosts from a machine with no network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")  # Playwright's loop must be gone before asyncio tests run
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


@pytest.fixture(scope="session")
def federation(sandbox: Sandbox) -> Iterator[FederationStandIn]:
    with FederationStandIn(sandbox.endpoint_url) as standin:
        yield standin


@pytest.fixture(scope="session")
def gateway(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(sandbox, tmp_path_factory.mktemp("gateway"))
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def own_gateway(sandbox: Sandbox, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway for one test that stops, kills, locks or reconfigures it."""
    gw = GatewayProcess(sandbox, tmp_path / "gw")
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def databases_restored(sandbox: Sandbox) -> Iterator[None]:
    """For a module that creates databases of its own in the session's sandbox: they are
    deleted when it ends, so later modules find each account's databases as the estate made
    them (test_stories checks that acme-prod holds exactly acme-prod-db)."""

    def databases() -> dict[str, set[str]]:
        return {
            account.id: {
                d["DBInstanceIdentifier"]
                for d in sandbox.client(account.id, "rds").describe_db_instances()["DBInstances"]
            }
            for account in sandbox.accounts
        }

    before = databases()
    yield
    for account_id, names in databases().items():
        for name in sorted(names - before.get(account_id, set())):
            sandbox.client(account_id, "rds").delete_db_instance(
                DBInstanceIdentifier=name, SkipFinalSnapshot=True
            )
