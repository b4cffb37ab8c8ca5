"""AssumeRole is called once per key at a time, and again only near expiry."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from iamgate.aws.upstream_credentials import AwsCredentials, RoleKey, UpstreamCredentialCache
from iamgate.refusals import Reason, Refused

KEY = RoleKey("arn:aws:iam::111111111111:role/ReadOnly", "dana", "dana", "ext-1")


class FakeSts:
    """Counts calls; each one is slow enough for concurrent callers to pile up."""

    def __init__(self, lifetime: timedelta) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.lock = threading.Lock()

    def __call__(self, key: RoleKey) -> AwsCredentials:
        with self.lock:
            self.calls += 1
            n = self.calls
        threading.Event().wait(0.05)
        return AwsCredentials(f"ASIA{n}", "s", "t", datetime.now(UTC) + self.lifetime)


def test_concurrent_requests_share_one_sts_call() -> None:
    sts = FakeSts(timedelta(hours=1))
    cache = UpstreamCredentialCache(sts)

    async def many() -> set[str]:
        got = await asyncio.gather(*(cache.get(KEY) for _ in range(50)))
        return {c.access_key_id for c in got}

    assert asyncio.run(many()) == {"ASIA1"}
    assert sts.calls == 1


def test_refreshed_five_minutes_before_expiry() -> None:
    sts = FakeSts(timedelta(minutes=4))
    cache = UpstreamCredentialCache(sts)

    async def twice() -> tuple[str, str]:
        first = await cache.get(KEY)
        second = await cache.get(KEY)
        return first.access_key_id, second.access_key_id

    assert asyncio.run(twice()) == ("ASIA1", "ASIA2")


def test_other_keys_are_other_sessions() -> None:
    sts = FakeSts(timedelta(hours=1))
    cache = UpstreamCredentialCache(sts)
    other = RoleKey(KEY.role_arn, "carl", "carl", "ext-1")

    async def both() -> None:
        await asyncio.gather(cache.get(KEY), cache.get(other), cache.get(KEY))

    asyncio.run(both())
    assert sts.calls == 2


def test_sts_errors_become_clear_refusals() -> None:
    def denied(key: RoleKey) -> AwsCredentials:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not authorized to assume"}},
            "AssumeRole",
        )

    cache = UpstreamCredentialCache(denied)
    with pytest.raises(Refused) as info:
        asyncio.run(cache.get(KEY))
    assert info.value.reason is Reason.UPSTREAM_UNAVAILABLE
    assert "AccessDenied: not authorized to assume" in info.value.message
