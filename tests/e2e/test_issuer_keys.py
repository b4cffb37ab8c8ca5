"""An issuer's signing keys, fetched from a real issuer process: discovery, rotation, and a
flood of made-up key ids that must not become a flood of fetches."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from issuer import RunningIssuer, running_issuer

from iamgate.identity.jwks import KeySets
from iamgate.identity.oidc import TokenRefused, TrustedIssuer, UnknownKey, verify_token

AUDIENCE = "http://127.0.0.1/iamgate"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIssuer]:
    with running_issuer(tmp_path_factory.mktemp("issuer")) as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _with_kid(token: str, kid: str) -> str:
    """The same token under a header naming another key."""
    header, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(header + "=="))
    renamed = base64.urlsafe_b64encode(json.dumps({**fields, "kid": kid}).encode()).rstrip(b"=")
    return ".".join((renamed.decode(), payload, signature))


async def _verify(key_sets: KeySets, trusted: TrustedIssuer, token: str) -> dict[str, object]:
    """As the exchange will: the keys held, and on an unknown key id one refetch."""
    now = datetime.now(UTC)
    try:
        return verify_token(token, trusted, await key_sets.current(trusted.url), now=now)
    except UnknownKey:
        return verify_token(token, trusted, await key_sets.refreshed(trusted.url), now=now)


def test_keys_by_discovery_verify_the_issuers_tokens(issuer: RunningIssuer) -> None:
    trusted = TrustedIssuer(issuer.url, audiences=(AUDIENCE,))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            key_sets = KeySets(session)
            claims = await _verify(key_sets, trusted, issuer.token(AUDIENCE))
            assert claims["repository"] == "acme/infra" and claims["iss"] == issuer.url
            assert key_sets.fetches == 1

    asyncio.run(scenario())


def test_a_rotated_key_works_after_one_refetch_and_a_flood_costs_one_fetch_a_minute(
    issuer: RunningIssuer,
) -> None:
    trusted = TrustedIssuer(issuer.url, audiences=(AUDIENCE,))
    clock = Clock()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            key_sets = KeySets(session, clock=clock)
            await _verify(key_sets, trusted, issuer.token(AUDIENCE))
            assert key_sets.fetches == 1

            issuer.rotate()
            rotated = issuer.token(AUDIENCE)
            # Within the minute of the last fetch, the new key is not fetched yet ...
            with pytest.raises(UnknownKey):
                await _verify(key_sets, trusted, rotated)
            assert key_sets.fetches == 1
            # ... and a minute later one refetch finds it.
            clock.now += 61
            assert (await _verify(key_sets, trusted, rotated))["sub"]
            assert key_sets.fetches == 2

            # Fifty tokens naming made-up keys, at once and in the next seconds: one fetch.
            clock.now += 61
            genuine = issuer.token(AUDIENCE)
            made_up = [_with_kid(genuine, f"made-up-{n}") for n in range(50)]
            results = await asyncio.gather(
                *(_verify(key_sets, trusted, t) for t in made_up), return_exceptions=True
            )
            assert all(isinstance(r, UnknownKey) for r in results)
            clock.now += 30
            with pytest.raises(UnknownKey):
                await _verify(key_sets, trusted, made_up[0])
            assert key_sets.fetches == 3

    asyncio.run(scenario())


def test_an_issuer_that_cannot_be_reached_refuses_the_token_clearly(tmp_path: Path) -> None:
    trusted = TrustedIssuer("http://127.0.0.1:9", audiences=(AUDIENCE,))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TokenRefused, match="could not be fetched"):
                await KeySets(session).current(trusted.url)

    asyncio.run(scenario())
