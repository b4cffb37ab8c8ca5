"""AssumeRole credentials for the upstream call, cached and fetched once per key at a time.

Every request needs credentials in the target account. Calling STS per request would be
slow and would hit STS throttling, so credentials are cached per (role, session name,
external id, session policy) until five minutes before they expire, and concurrent requests
for the same key wait on the single call in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from iamgate.access.session_policy import SessionPolicy
from iamgate.config import AccountConfig
from iamgate.refusals import Reason, Refused

REFRESH_BEFORE_EXPIRY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class RoleKey:
    role_arn: str
    session_name: str
    source_identity: str
    external_id: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    duration_seconds: int | None = 3600  # None: STS's default, as role chaining needs


def role_key(
    account: AccountConfig,
    aws_role: str,
    principal: str,
    policy: SessionPolicy,
    *,
    duration_seconds: int | None = 3600,
) -> RoleKey:
    """The AssumeRole of a principal into an account's IAM role: the session is named after
    the principal, who is also its source identity (so CloudTrail names the person), under
    the session policy of their gateway roles. The proxy and the console ask alike."""
    name = aws_session_name(principal)
    return RoleKey(
        role_arn=f"arn:{account.partition}:iam::{account.id}:role/{aws_role}",
        session_name=name,
        source_identity=name,
        external_id=account.external_id,
        policy=policy.policy,
        policy_arns=policy.policy_arns,
        duration_seconds=duration_seconds,
    )


def aws_session_name(principal: str) -> str:
    """The principal as AWS's session names and source identities may spell it
    ([\\w+=,.@-]): a bot `bot:NAME` is `bot=NAME`, which no user's name can be."""
    return principal.replace(":", "=", 1)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime


AssumeRole = Callable[[RoleKey], AwsCredentials]


def botocore_assume_role(endpoint_url: str | None, region: str) -> AssumeRole:
    """sts:AssumeRole with the gateway's own credentials from botocore's default chain."""
    session = botocore.session.get_session()
    client: Any = session.create_client(
        "sts",
        region_name=region,
        endpoint_url=endpoint_url,
        config=BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5),
    )

    def assume(key: RoleKey) -> AwsCredentials:
        params: dict[str, object] = {
            "RoleArn": key.role_arn,
            "RoleSessionName": key.session_name,
            "SourceIdentity": key.source_identity,
        }
        if key.duration_seconds is not None:
            params["DurationSeconds"] = key.duration_seconds
        if key.external_id:
            params["ExternalId"] = key.external_id
        if key.policy:
            params["Policy"] = key.policy
        if key.policy_arns:
            params["PolicyArns"] = [{"arn": arn} for arn in key.policy_arns]
        creds = client.assume_role(**params)["Credentials"]
        expiration = creds["Expiration"]
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        return AwsCredentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], expiration
        )

    return assume


class UpstreamCredentialCache:
    def __init__(self, assume_role: AssumeRole, *, clock: Callable[[], datetime] | None = None):
        self._assume_role = assume_role
        self._clock = clock or (lambda: datetime.now(UTC))
        self._cache: dict[RoleKey, AwsCredentials] = {}
        self._in_flight: dict[RoleKey, asyncio.Future[AwsCredentials]] = {}
        self.sts_calls = 0

    async def get(self, key: RoleKey) -> AwsCredentials:
        cached = self._cache.get(key)
        if cached is not None and cached.expiration - self._clock() > REFRESH_BEFORE_EXPIRY:
            return cached
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[AwsCredentials] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            self.sts_calls += 1
            creds = await asyncio.to_thread(self._assume_role, key)
        except (ClientError, BotoCoreError) as exc:
            refusal = Refused(
                Reason.UPSTREAM_UNAVAILABLE,
                f"iamgate could not assume {key.role_arn}: {describe(exc)}",
            )
            future.set_exception(refusal)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise refusal from None
        finally:
            self._in_flight.pop(key, None)
        self._cache[key] = creds
        future.set_result(creds)
        return creds


def describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return type(exc).__name__
