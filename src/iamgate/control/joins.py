"""Machines with no OIDC join as their bot with a one-time token; no HTTP here.

An administrator makes a token for a bot (`iamgate bots token BOT --ttl 30m`); the machine
redeems it once (`iamgate join URL --token …`, the API's `POST /api/v1/join`) for a session
of the bot, as a person's login is theirs: `iamgate credentials`, `env`, `aws` and
`profiles sync` then work for the bot as for a person, with the bot's gateway roles as the
configuration has them now. The token is stored hashed, shown once and never logged; of
redemptions at the same instant, on any replicas, exactly one succeeds (the store's
conditional UPDATE). Making, redeeming and refusing a token are audit events; a refusal
names its real reason in the trail and answers the machine alike for every reason but
expiry (so a guesser learns nothing of which tokens exist).
"""

from __future__ import annotations

import math
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.aws.endpoints import resolve_upstream
from iamgate.config import Config, Configured, LiveConfig, live
from iamgate.control.errors import ControlError, Kind, forbidden, invalid, not_found, throttled
from iamgate.control.logins import Client, RateLimiter
from iamgate.control.users import Actor
from iamgate.identity.aws_join import (
    CONTENT_TYPE,
    JoinRefused,
    caller_identity,
    check_signed_request,
    matching_pattern,
)
from iamgate.identity.bots import bot_name, bot_principal
from iamgate.identity.login import address_key
from iamgate.store.bots import get_bot
from iamgate.store.login_sessions import (
    JOIN_SESSION_KIND,
    LoginSession,
    create_join_token,
    create_login_session,
    redeem_join_token,
    renew_join_session,
)

MIN_TOKEN_TTL = timedelta(minutes=1)
MAX_TOKEN_TTL = timedelta(days=7)
# A joined machine's session: a person's is 12 h; a server is joined for longer, and ends
# with its bot's revocation (`sessions revoke --bot`) or its session's (`sessions revoke ID`).
JOIN_SESSION_TTL = timedelta(days=30)
STS_TIMEOUT = 10.0  # seconds, for STS's answer to a machine's GetCallerIdentity


@dataclass(frozen=True, slots=True)
class AwsJoinTarget:
    """What a machine signs its GetCallerIdentity for: this gateway's id, and the STS
    endpoint and region the gateway sends it to."""

    server_id: str
    sts_endpoint: str
    region: str


@dataclass(frozen=True, slots=True)
class JoinToken:
    bot: str
    token: str  # shown once
    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Joined:
    principal: str
    token: str  # the session's bearer token
    session_id: str
    expires_at: datetime


class Joins(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        engine: Engine,
        audit: AuditSink,
        failures: RateLimiter | None = None,
    ) -> None:
        self.live = live(config)
        self.engine = engine
        self.audit = audit
        # Joining is unauthenticated, and an AWS join costs a call to STS: past 20 failed
        # joins in 5 minutes an address is told to wait, before anything is looked up or
        # sent (per replica, as the login throttles are).
        self.failures = failures or RateLimiter()
        self._failures_lock = threading.Lock()

    def _admit(self, client: Client, via: str, principal: str | None = None) -> str:
        """The address's key, or a 429 (audited) if it failed too often lately."""
        address = address_key(client.source_ip)
        with self._failures_lock:
            wait = self.failures.retry_after(address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            self.audit.append(
                AuditEvent(
                    EventType.JOIN_REFUSED,
                    principal=principal,
                    source_ip=client.source_ip,
                    user_agent=client.user_agent,
                    fields={"reason": "throttled", "via": via, "retry_after": seconds},
                )
            )
            raise throttled(f"too many failed joins; try again in {seconds} s", seconds)
        return address

    def _failed(self, address: str) -> None:
        with self._failures_lock:
            self.failures.failed(address)

    def _exists(self, bot: str) -> bool:
        """In the configuration, or added to the store (`iamgate bots add`)."""
        return self.config.bot_named(bot) is not None or get_bot(self.engine, bot) is not None

    def make_token(self, bot: str, ttl: timedelta, *, by: Actor) -> JoinToken:
        """Blocking (the store): call it in a thread from async code."""
        if not self._exists(bot):
            raise not_found(
                "NoSuchBot",
                f"no bot named {bot!r} (see bots: in the configuration, or iamgate bots add)",
            )
        if not MIN_TOKEN_TTL <= ttl <= MAX_TOKEN_TTL:
            raise invalid("a join token's ttl must be between 1m and 7d", code="InvalidTtl")
        token, token_id, expires = create_join_token(
            self.engine, bot_principal(bot), ttl=ttl, created_by=by.name
        )
        self.audit.append(
            AuditEvent(
                EventType.JOIN_TOKEN_CREATED,
                principal=by.name,
                source_ip=by.source_ip,
                user_agent=by.user_agent,
                fields={"bot": bot, "join_token": token_id, "expires_at": _stamp(expires)},
            )
        )
        return JoinToken(bot, token, token_id, expires)

    def redeem(self, token: str, client: Client) -> Joined:
        """Blocking (the store): call it in a thread from async code."""

        address = self._admit(client, "token")

        def configured(principal: str) -> bool:
            name = bot_name(principal)
            return name is not None and self._exists(name)

        done = redeem_join_token(
            self.engine,
            token,
            ttl=JOIN_SESSION_TTL,
            source_ip=client.source_ip,
            user_agent=client.user_agent,
            may_join=configured,
        )
        if done.refusal is not None or done.login_token is None:
            self._failed(address)
            self.audit.append(
                AuditEvent(
                    EventType.JOIN_REFUSED,
                    principal=done.principal,
                    source_ip=client.source_ip,
                    user_agent=client.user_agent,
                    fields={"reason": done.refusal, "join_token": done.token_id},
                )
            )
            if done.refusal == "expired":
                raise ControlError(
                    Kind.UNAUTHENTICATED, "ExpiredToken", "the join token has expired"
                )
            raise ControlError(
                Kind.UNAUTHENTICATED,
                "InvalidToken",
                "the join token is not valid: unknown, already used or revoked",
            )
        assert done.principal and done.session_id and done.expires_at
        self.audit.append(
            AuditEvent(
                EventType.JOIN_SUCCEEDED,
                principal=done.principal,
                source_ip=client.source_ip,
                user_agent=client.user_agent,
                fields={
                    "join_token": done.token_id,
                    "login_session": done.session_id,
                    "via": "token",
                },
            )
        )
        return Joined(done.principal, done.login_token, done.session_id, done.expires_at)

    def renew(self, session: LoginSession, client: Client) -> Joined:
        """A joined machine's session, renewed before it ends (`iamgate join --renew`, from
        cron or a timer): another 30 days from now, under a new secret. A person's login is
        not renewed this way; they log in again. Blocking: call it in a thread."""
        if session.kind != JOIN_SESSION_KIND or bot_name(session.user) is None:
            raise invalid(
                "only a joined machine's session is renewed; a person logs in again",
                code="NotAJoinedSession",
            )
        renewed = renew_join_session(
            self.engine,
            session.id,
            ttl=JOIN_SESSION_TTL,
            source_ip=client.source_ip,
            user_agent=client.user_agent,
        )
        if renewed is None:
            raise ControlError(
                Kind.UNAUTHENTICATED, "Unauthorized", "the session ended: join again"
            )
        token, session_id, expires = renewed
        self.audit.append(
            AuditEvent(
                EventType.JOIN_SUCCEEDED,
                principal=session.user,
                source_ip=client.source_ip,
                user_agent=client.user_agent,
                fields={"login_session": session_id, "via": "renewal", "renewed": session.id},
            )
        )
        return Joined(session.user, token, session_id, expires)

    # -- AWS IAM join ----------------------------------------------------------------------

    def aws_target(self) -> AwsJoinTarget:
        upstream = self.config.aws.upstream
        sts = resolve_upstream("sts", upstream.region, override=upstream.endpoint_url)
        return AwsJoinTarget(self.config.server.url, sts.base_url, sts.signing_region)

    def join_aws(self, bot: str, headers: Mapping[str, str], body: str, client: Client) -> Joined:
        """A machine's signed GetCallerIdentity, sent to STS: the bot's session if the
        ARN STS names matches one of the bot's `aws_join` patterns. Blocking (STS, the
        store): call it in a thread from async code."""
        address = self._admit(client, "aws", bot_principal(bot))
        target = self.aws_target()
        identity = None
        try:
            configured = self.config.bot_named(bot)
            if configured is None:
                raise JoinRefused(
                    "no-such-bot",
                    f"no bot named {bot!r} joins by AWS IAM (its aws_join is in the "
                    "configuration's bots)",
                )
            forwarded = check_signed_request(
                headers,
                body,
                server_id=target.server_id,
                sts_endpoint=target.sts_endpoint,
                now=datetime.now(UTC),
            )
            identity = caller_identity(_send_to_sts(target.sts_endpoint, forwarded, body))
            pattern = matching_pattern(configured.aws_join, identity.arn)
            if pattern is None:
                raise JoinRefused(
                    "aws-no-match",
                    f"{identity.arn} may not join as bot {bot} (it matches none of its aws_join)",
                )
        except JoinRefused as refused:
            self._failed(address)
            self.audit.append(
                AuditEvent(
                    EventType.JOIN_REFUSED,
                    principal=bot_principal(bot),
                    source_ip=client.source_ip,
                    user_agent=client.user_agent,
                    fields={"reason": refused.reason, "via": "aws"}
                    | ({"arn": identity.arn} if identity is not None else {}),
                )
            )
            if refused.reason == "aws-no-match":
                raise forbidden(refused.message) from None
            raise ControlError(
                Kind.UNAUTHENTICATED, "InvalidClientTokenId", refused.message
            ) from None
        principal = bot_principal(bot)
        token, session_id, expires = create_login_session(
            self.engine,
            principal,
            ttl=JOIN_SESSION_TTL,
            source_ip=client.source_ip,
            user_agent=client.user_agent,
            kind=JOIN_SESSION_KIND,
        )
        self.audit.append(
            AuditEvent(
                EventType.JOIN_SUCCEEDED,
                principal=principal,
                source_ip=client.source_ip,
                user_agent=client.user_agent,
                fields={
                    "login_session": session_id,
                    "via": "aws",
                    "arn": identity.arn,
                    "account_id": identity.account,
                    "pattern": pattern,
                },
            )
        )
        return Joined(principal, token, session_id, expires)


def _send_to_sts(endpoint: str, headers: Mapping[str, str], body: str) -> bytes:
    """The machine's signed request, as it signed it, to the STS endpoint it signed for."""
    request = urllib.request.Request(  # noqa: S310 - the configured endpoint, http(s)
        endpoint.rstrip("/") + "/",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": CONTENT_TYPE, **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=STS_TIMEOUT) as answer:  # noqa: S310
            return bytes(answer.read())
    except urllib.error.HTTPError as error:
        detail = error.read()[:2000].decode(errors="replace")
        code = detail.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in detail else ""
        raise JoinRefused(
            "aws-sts-refused", f"STS refused the signed request{f' ({code})' if code else ''}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise JoinRefused("aws-sts-unreachable", f"STS could not be reached: {error}") from None


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
