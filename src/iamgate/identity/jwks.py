"""Trusted issuers' signing keys, fetched over HTTPS and kept until a token needs a new one.

An issuer publishes its keys (JWKS) at the `jwks_uri` of its discovery document. Keys rotate:
a token naming a key id we do not hold makes us fetch the set again, but at most once a
minute per issuer, so a flood of made-up key ids costs the issuer (and us) one fetch a minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from iamgate.identity.oidc import IssuerUnreachable, KeySet

REFETCH_INTERVAL = 60.0
MAX_DOCUMENT_BYTES = 256 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(slots=True)
class _Held:
    keys: KeySet | None = None
    fetched_at: float | None = None  # monotonic seconds of the last fetch, good or not
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeySets:
    """One issuer's keys per issuer URL; `jwks_urls` names the ones not found by discovery."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        jwks_urls: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = REFETCH_INTERVAL,
    ) -> None:
        self._session = session
        self._jwks_urls = dict(jwks_urls or {})
        self._clock = clock
        self._interval = interval
        self._held: dict[str, _Held] = {}
        self.fetches = 0  # how many times an issuer was asked, for tests and the status page

    async def current(self, issuer: str) -> KeySet:
        """The keys held, fetched first if none are."""
        held = self._held.setdefault(issuer, _Held())
        if held.keys is None:
            await self._fetch(issuer, held, force=False)
        if held.keys is None:
            raise IssuerUnreachable(f"the signing keys of {issuer} could not be fetched; try again")
        return held.keys

    async def refreshed(self, issuer: str) -> KeySet:
        """The keys after fetching them again, unless they were fetched within the interval:
        then the ones held (a token naming an unknown key must wait for the next minute)."""
        held = self._held.setdefault(issuer, _Held())
        await self._fetch(issuer, held, force=True)
        return await self.current(issuer)

    async def _fetch(self, issuer: str, held: _Held, *, force: bool) -> None:
        async with held.lock:  # concurrent tokens share one fetch
            now = self._clock()
            if held.keys is not None and not force:
                return
            if held.fetched_at is not None and now - held.fetched_at < self._interval:
                return
            held.fetched_at = now
            self.fetches += 1
            try:
                url = self._jwks_urls.get(issuer) or await self._discover(issuer)
                held.keys = KeySet.from_jwks(await self._get_json(url))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return  # the keys held stay; none held refuses the token

    async def _discover(self, issuer: str) -> str:
        document = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        jwks_uri = document.get("jwks_uri")
        if document.get("issuer") != issuer or not isinstance(jwks_uri, str):
            raise ValueError(f"the discovery document of {issuer} is not its own")
        return jwks_uri

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        async with self._session.get(url, timeout=_TIMEOUT, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"{url} answered {response.status}")
            body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError(f"{url} did not answer a JSON object")
            return document
