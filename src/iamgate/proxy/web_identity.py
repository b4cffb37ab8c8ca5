"""sts:AssumeRoleWithWebIdentity, answered by the gateway and never forwarded.

A CI job's OIDC token is verified against a trusted issuer's keys and mapped to a bot by a
binding (`identity.bindings`); the bot's gateway roles must reach the account and IAM role
its RoleArn names (`identity.bots`). The answer is STS's own reply with gateway credentials,
which leave only once the exchange's record is durable, as a forwarded call's answer does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web

from iamgate.audit.aws_calls import CallRecord
from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditLog
from iamgate.aws.upstream_credentials import aws_session_name
from iamgate.aws.web_identity import (
    InvalidCall,
    IssuedSession,
    WebIdentityCall,
    read_call,
    render_reply,
)
from iamgate.config import (
    BotConfig,
    Config,
    Configured,
    LiveConfig,
    OidcIssuerConfig,
    RoleConfig,
    live,
)
from iamgate.identity.bindings import BindingRefused, bind
from iamgate.identity.bots import NotGranted, Trust, bot_principal, grant_for, job_claims
from iamgate.identity.credentials import Claims, KeyRing, mint_credentials
from iamgate.identity.jwks import KeySets
from iamgate.identity.oidc import (
    IssuerUnreachable,
    TokenRefused,
    UnknownKey,
    token_issuer,
    verify_token,
)
from iamgate.refusals import Reason, Refused

EXCHANGE = "sts:AssumeRoleWithWebIdentity"  # answered by the gateway once issuers are trusted
TIME = "%Y-%m-%dT%H:%M:%SZ"


class WebIdentityExchange(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        keyring: KeyRing,
        audit: AuditLog,
        *,
        roles: Callable[[], Mapping[str, RoleConfig]],
        bot: Callable[[str], BotConfig | None],
        clock: Callable[[], datetime],
        record_forwarding: Callable[[CallRecord], Awaitable[object]],
        record_issue: Callable[[Claims], None] | None = None,
    ) -> None:
        """`record_forwarding` makes the exchange's record durable before its answer;
        `record_issue` stores the credential (blocking) so `audit search --key` finds it."""
        self.live = live(config)
        self.keyring = keyring
        self.audit = audit
        self._roles = roles
        self._bot = bot
        self._clock = clock
        self._record_forwarding = record_forwarding
        self._record_issue = record_issue
        self._trust_memory: tuple[Config, Trust] | None = None
        self._key_sets: tuple[list[OidcIssuerConfig], KeySets] | None = None
        self._oidc_session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._oidc_session is not None:
            await self._oidc_session.close()

    def trust(self) -> Trust:
        """The issuers and bindings in force, remembered until a reload replaces them."""
        config = self.config
        if self._trust_memory is None or self._trust_memory[0] is not config:
            self._trust_memory = (config, Trust.of(config))
        return self._trust_memory[1]

    def answers(self, call: CallRecord, refused: Refused) -> bool:
        return (
            refused.reason is Reason.WEB_IDENTITY_UNCONFIGURED
            and call.identified is not None
            and call.identified.operation.iam_action == EXCHANGE
            and self.trust().configured
        )

    def _issuer_keys(self) -> KeySets:
        """One key cache per set of issuers: a reload that changes them starts a new one."""
        issuers = self.config.oidc.issuers
        if self._key_sets is None or self._key_sets[0] != issuers:
            if self._oidc_session is None:
                self._oidc_session = aiohttp.ClientSession()
            jwks = self.trust().jwks_urls
            self._key_sets = (issuers, KeySets(self._oidc_session, jwks_urls=jwks))
        return self._key_sets[1]

    async def exchange(self, call: CallRecord) -> web.Response:
        assert call.identified is not None
        try:
            asked = read_call({k: str(v) for k, v in call.identified.params.items()})
        except InvalidCall as exc:
            raise Refused(Reason.WEB_IDENTITY_INVALID_CALL, exc.message) from None
        token = await self._verified_token(call, asked)
        trust = self.trust()
        issuer = str(token["iss"])
        try:
            binding = bind(token, issuer, trust.bindings)
        except BindingRefused as exc:
            raise Refused(Reason.WEB_IDENTITY_DENIED, f"iamgate: {exc.message}") from None
        _noted(call, binding=binding.name, bot=binding.bot)
        duration = (
            None if asked.duration_seconds is None else timedelta(seconds=asked.duration_seconds)
        )
        try:
            grant = grant_for(
                self.config,
                self._roles(),
                binding,
                asked.account_id,
                asked.role_name,
                duration,
                self._bot,
            )
        except NotGranted as exc:
            raise Refused(Reason.WEB_IDENTITY_DENIED, f"iamgate: {exc.message}") from None
        principal = bot_principal(grant.bot.name)
        creds = mint_credentials(
            self.keyring,
            principal=principal,
            kind="bot",
            account_id=grant.account.id,
            aws_role=grant.aws_role,
            gateway_roles=tuple(r.name for r in grant.gateway_roles),
            now=self._clock(),
            ttl=grant.ttl,
            binding=binding.name,
            job=call.job,
        )
        if self._record_issue is not None:
            await asyncio.to_thread(self._record_issue, creds.claims)
        call.claims = creds.claims
        call.gateway_role = ", ".join(r.name for r in grant.gateway_roles)
        call.rule = f"binding {binding.name}"
        _noted(call, issued_access_key_id=creds.access_key_id)
        self.audit.append(self._issued_event(call, creds.claims, issuer))
        await self._record_forwarding(call)  # credentials leave only once this is durable
        body = render_reply(
            asked,
            IssuedSession(
                access_key_id=creds.access_key_id,
                secret_access_key=creds.secret_access_key,
                session_token=creds.session_token,
                expiration=creds.claims.expires_at,
                source_identity=aws_session_name(principal),
                subject=str(token.get("sub", "")),
                audience=_audience(token, trust.issuers[issuer].audiences),
                provider=issuer,
            ),
            call.request_id,
        )
        call.status = 200
        call.bytes_out = len(body)
        return web.Response(
            status=200,
            body=body,
            headers={"Content-Type": "text/xml", "x-amzn-RequestId": call.request_id},
        )

    async def _verified_token(self, call: CallRecord, asked: WebIdentityCall) -> dict[str, object]:
        """The token's claims, checked with its issuer's keys (fetched again, at most once a
        minute per issuer, when it names a key not held: the issuer rotated its keys)."""
        trust = self.trust()
        try:
            issuer_url = token_issuer(asked.token)
            _noted(call, issuer=issuer_url[:256])
            trusted = trust.issuers.get(issuer_url)
            if trusted is None:
                raise TokenRefused(f"iamgate trusts no OIDC issuer {issuer_url[:256]!r}")
            keys = self._issuer_keys()
            now = self._clock()
            try:
                claims = verify_token(asked.token, trusted, await keys.current(issuer_url), now=now)
            except UnknownKey:
                fresh = await keys.refreshed(issuer_url)
                claims = verify_token(asked.token, trusted, fresh, now=now)
        except TokenRefused as exc:
            if isinstance(exc, IssuerUnreachable):
                reason = Reason.WEB_IDENTITY_ISSUER_UNREACHABLE
            elif exc.code == "ExpiredTokenException":
                reason = Reason.WEB_IDENTITY_EXPIRED_TOKEN
            else:
                reason = Reason.WEB_IDENTITY_INVALID_TOKEN
            raise Refused(reason, f"iamgate: {exc.message}") from None
        call.job = job_claims(claims)
        _noted(call, subject=str(claims.get("sub", ""))[:256])
        return claims

    def _issued_event(self, call: CallRecord, claims: Claims, issuer: str) -> AuditEvent:
        """`credentials.issued`, as for any credential: what a key did starts from here."""
        return AuditEvent(
            EventType.CREDENTIALS_ISSUED,
            principal=claims.principal,
            source_ip=call.source_ip,
            user_agent=call.user_agent,
            fields={
                "account_id": claims.account_id,
                "aws_role": claims.aws_role,
                "access_key_id": claims.access_key_id,
                "expires_at": claims.expires_at.astimezone(UTC).strftime(TIME),
                "gateway_roles": list(claims.gateway_roles),
                "login_session": None,
                "issued_by": "web-identity",
                "issuer": issuer,
                "binding": claims.binding,
                "request_id": call.request_id,
                "job": dict(claims.job),
            },
        )

    # -- helpers --------------------------------------------------------------------------


def _noted(call: CallRecord, **facts: object) -> None:
    """Facts of a web identity exchange, for its record, as they become known."""
    call.web_identity = {**(call.web_identity or {}), **facts}


def _audience(token: Mapping[str, object], trusted: tuple[str, ...]) -> str:
    """The audience of the token that the gateway accepted it for."""
    aud = token.get("aud")
    values = aud if isinstance(aud, list) else [aud]
    return next((str(a) for a in values if a in trusted), str(trusted[0]))
