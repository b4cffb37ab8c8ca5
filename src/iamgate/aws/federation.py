"""Console sign-in: AssumeRole, the federation endpoint's sign-in token, the login URL.

The sign-in URL is a bearer credential for a console session until it is used, so it is
handed to the person who asked and nowhere else: not to logs, not to the audit trail (which
records who signed in where, and until when), not to error messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from iamgate.access.session_policy import SessionPolicyError, session_policy_for
from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.aws import console
from iamgate.aws.upstream_credentials import AssumeRole, describe, role_key
from iamgate.config import AccountConfig, Config, Configured, LiveConfig, RoleConfig, live
from iamgate.control.errors import ControlError, Kind

log = logging.getLogger(__name__)
FEDERATION_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)


@dataclass(frozen=True, slots=True)
class ConsoleSignin:
    url: str
    expires_at: datetime
    role_chaining: bool
    note: str | None
    destination: str


def botocore_caller_arn(endpoint_url: str | None, region: str) -> Callable[[], str]:
    """The ARN of the gateway's own AWS identity, from botocore's default chain."""

    def caller_arn() -> str:
        client: Any = botocore.session.get_session().create_client(
            "sts", region_name=region, endpoint_url=endpoint_url
        )
        return str(client.get_caller_identity()["Arn"])

    return caller_arn


class ConsoleFederation(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        assume_role: AssumeRole,
        audit: AuditSink,
        caller_arn: Callable[[], str],
    ) -> None:
        self.live = live(config)
        self.settings = self.config.aws.console  # fixed for the process
        self.assume_role = assume_role
        self.audit = audit
        self._caller_arn = caller_arn
        self._role_chaining: bool | None = self.settings.role_chaining
        self._http: aiohttp.ClientSession | None = None

    def endpoint(self, partition: str) -> str:
        return console.federation_endpoint(partition, self.settings.federation_url)

    def form_targets(self) -> tuple[str, ...]:
        """Origins a browser may be sent to after posting the console form (for the CSP)."""
        endpoints = {self.endpoint(a.partition) for a in self.config.aws.accounts}
        return tuple(sorted({f"{urlsplit(e).scheme}://{urlsplit(e).netloc}" for e in endpoints}))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def role_chaining(self) -> bool:
        if self._role_chaining is None:
            try:
                arn = await asyncio.to_thread(self._caller_arn)
            except (ClientError, BotoCoreError) as exc:
                raise ControlError(
                    Kind.UPSTREAM,
                    "UpstreamUnavailable",
                    f"iamgate could not ask STS who it is: {exc}",
                ) from None
            self._role_chaining = console.is_role_chaining(arn)
        return self._role_chaining

    async def signin_url(
        self,
        *,
        user: str,
        gateway_roles: Sequence[RoleConfig],
        account: AccountConfig,
        aws_role: str,
        region: str | None,
        destination: str | None,
        source_ip: str | None,
        user_agent: str | None,
    ) -> ConsoleSignin:
        if not gateway_roles:
            raise ControlError(
                Kind.FORBIDDEN,
                "AccessDenied",
                f"iamgate: no role of yours allows {aws_role} in {account.name}",
            )
        region = region or self.settings.region
        try:
            target = console.destination(account.partition, region, destination)
            policy = session_policy_for(gateway_roles, partition=account.partition)
        except (console.ConsoleInputError, SessionPolicyError) as exc:
            raise ControlError(Kind.INVALID, "InvalidParameterValue", str(exc)) from None
        chaining = await self.role_chaining()
        length = console.session_length(self.settings.session_duration, role_chaining=chaining)
        try:
            # Fresh credentials, not the API cache's: a console session should not inherit
            # a cached session's last minutes.
            creds = await asyncio.to_thread(
                self.assume_role,
                role_key(
                    account, aws_role, user, policy, duration_seconds=None if chaining else 3600
                ),
            )
        except (ClientError, BotoCoreError) as exc:
            raise ControlError(
                Kind.UPSTREAM,
                "UpstreamUnavailable",
                f"iamgate could not assume {aws_role}: {describe(exc)}",
            ) from None
        endpoint = self.endpoint(account.partition)
        token = await self._signin_token(console.signin_token_url(endpoint, creds, length))
        now = datetime.now(UTC)
        lasts = (
            timedelta(seconds=length.seconds)
            if length.seconds is not None
            else console.ROLE_CHAINING_LIMIT
        )
        url = console.login_url(
            endpoint, issuer=self.config.server.url, destination=target, signin_token=token
        )
        self.audit.append(
            AuditEvent(
                EventType.CONSOLE_SIGNIN,
                principal=user,
                source_ip=source_ip,
                user_agent=user_agent,
                fields={
                    "account_id": account.id,
                    "aws_role": aws_role,
                    "region": region,
                    "destination_host": urlsplit(target).hostname,
                    "gateway_roles": [r.name for r in gateway_roles],
                    "policy_arns": list(policy.policy_arns),
                    "session_seconds": int(lasts.total_seconds()),
                    "role_chaining": chaining,
                },
            )
        )
        return ConsoleSignin(url, now + lasts, chaining, length.note, target)

    async def _signin_token(self, url: str) -> str:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=FEDERATION_TIMEOUT)
        try:
            async with self._http.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ControlError(
                        Kind.UPSTREAM,
                        "FederationFailed",
                        f"the AWS federation endpoint answered HTTP {response.status}",
                    )
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The exception's text may hold the URL, and the URL holds the credentials.
            log.warning("federation endpoint failed: %s", type(exc).__name__)
            raise ControlError(
                Kind.UPSTREAM,
                "FederationFailed",
                "the AWS federation endpoint could not be reached",
            ) from None
        token = body.get("SigninToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ControlError(
                Kind.UPSTREAM, "FederationFailed", "the federation endpoint gave no token"
            )
        return token
