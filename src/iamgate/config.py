"""The gateway's YAML configuration: its model and its validation.

Errors must point a person at the exact place to fix, so the YAML is composed into nodes
first (which remember their line) and every validation error is reported as
`FILE:LINE: KEY.PATH: message`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from iamgate.config_hints import did_you_mean

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | int) -> timedelta:
    """Durations are written as people say them (`1h`, `90m`, `4h30m`, `3600`)."""
    if isinstance(text, int):
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"not a duration: {text!r} (use forms like 1h, 90m, 4h30m, 3600s)")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _read_duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str | int) else value


# Every duration in the file is read the same way; a field's own bounds are its own validator.
Duration = Annotated[
    timedelta,
    BeforeValidator(_read_duration),
    Field(description="a duration such as 1h or 90m"),
]
# A user's name, wherever one is checked: the file, the API, the pages' form (`pattern=`).
USER_NAME_PATTERN = "[a-z0-9][a-z0-9_.@-]{0,63}"
USER_NAME = re.compile(f"^{USER_NAME_PATTERN}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSConfig(_Model):
    cert: Path
    key: Path


MiB = 1024 * 1024


class ServerConfig(_Model):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    tls: TLSConfig | None = None
    # How much of the gateway one caller may hold (proxy/limits.py). A principal's AWS calls
    # in flight, from the moment its signature checks out until the answer has been sent.
    max_calls_per_principal: int = Field(default=64, ge=1)
    # Requests from one source address (an IPv6 /64) still being read or authenticated.
    max_unauthenticated_per_address: int = Field(default=64, ge=1)
    # Bytes of bodies read before their signature could be checked, across the gateway
    # (one address may hold at most 64 MiB of them).
    max_unverified_body_bytes: int = Field(default=256 * MiB, ge=64 * MiB)
    # Connections to the upstream, and how long a call waits for one to come free (and to
    # open it) before it is answered 503.
    upstream_connections: int = Field(default=512, ge=2)
    upstream_connect_timeout: Duration = timedelta(seconds=10)
    # A client has request_head_timeout to send a request head once it has begun it; an AWS
    # call's body, and its answer, may go body_timeout without a byte moving; a connection
    # with no request is closed after idle_timeout.
    request_head_timeout: Duration = timedelta(seconds=20)
    body_timeout: Duration = timedelta(seconds=20)
    idle_timeout: Duration = timedelta(seconds=75)
    # How often each replica reads users, revocations and grants from the state store.
    directory_poll: Duration = timedelta(milliseconds=500)

    @field_validator(
        "upstream_connect_timeout",
        "request_head_timeout",
        "body_timeout",
        "idle_timeout",
        "directory_poll",
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _no_principal_holds_the_upstream(self) -> ServerConfig:
        if self.max_calls_per_principal * 2 > self.upstream_connections:
            raise ValueError(
                "max_calls_per_principal may be at most half of upstream_connections, so "
                "that no one caller can hold every connection to AWS"
            )
        return self

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def url(self) -> str:
        """Where clients reach the gateway: the configured public URL or the listen address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = self.listen.rpartition(":")[0]
        return f"{scheme}://{host}:{self.port}"


class StorageConfig(_Model):
    url: str = "sqlite:///iamgate-state.db"


class AuditConfig(_Model):
    # Off only to measure what durable audit costs (bench/); a gateway in use keeps it on.
    enabled: bool = True


class UpstreamConfig(_Model):
    endpoint_url: str | None = None
    region: str = "us-east-1"  # the region of STS calls the gateway makes itself

    @field_validator("endpoint_url")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError("endpoint_url must be an http(s) URL with no path, or null")
        return value.rstrip("/") if value else value


class ConsoleConfig(_Model):
    # null: the partition's own sign-in endpoint (https://signin.aws.amazon.com/federation…)
    federation_url: str | None = None
    session_duration: Duration = timedelta(hours=1)
    # Whether the gateway's own identity is an IAM role (console sessions then last 1 hour);
    # null: ask sts:GetCallerIdentity once.
    role_chaining: bool | None = None
    region: str = "us-east-1"  # where the console opens when no region is asked for

    @field_validator("federation_url")
    @classmethod
    def _is_https_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s?#]+/[^\s?#]*$", value):
            raise ValueError("federation_url must be an http(s) URL with a path, e.g. …/federation")
        return value

    @field_validator("session_duration")
    @classmethod
    def _console_session(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=15) <= value <= timedelta(hours=12):
            raise ValueError("AWS allows console sessions of 15m to 12h")
        return value


class AccountConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    id: str = Field(pattern=r"^\d{12}$")
    labels: dict[str, str] = Field(default_factory=dict)
    external_id: str | None = Field(default=None, min_length=2, max_length=1224)
    partition: Literal["aws", "aws-us-gov", "aws-cn"] = "aws"


class AwsConfig(_Model):
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    accounts: list[AccountConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_accounts(self) -> AwsConfig:
        for attr in ("name", "id"):
            seen: set[str] = set()
            for account in self.accounts:
                value = getattr(account, attr)
                if value in seen:
                    raise ValueError(f"two accounts share the {attr} {value!r}")
                seen.add(value)
        return self

    # Indexed once: with thousands of accounts no call pays a scan to find its own.
    _by_id: dict[str, AccountConfig] = PrivateAttr(default_factory=dict)
    _by_name_or_id: dict[str, AccountConfig] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._by_id = {a.id: a for a in self.accounts}
        by_name_or_id: dict[str, AccountConfig] = {}
        for account in self.accounts:  # the first account listed wins, as a scan would find
            by_name_or_id.setdefault(account.name, account)
            by_name_or_id.setdefault(account.id, account)
        self._by_name_or_id = by_name_or_id

    def account_by_id(self, account_id: str) -> AccountConfig | None:
        return self._by_id.get(account_id)

    def account_named(self, name_or_id: str) -> AccountConfig | None:
        return self._by_name_or_id.get(name_or_id)


class AccountSelector(_Model):
    """Accounts by name, id or label values; a key maps to the values it may take."""

    name: list[str] = Field(default_factory=list)
    id: list[str] = Field(default_factory=list)
    labels: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _labels_inline(cls, data: Any) -> Any:
        # `{env: [prod]}` is shorthand for `{labels: {env: [prod]}}`.
        if isinstance(data, Mapping):
            known = {"name", "id", "labels"}
            inline = {k: v for k, v in data.items() if k not in known}
            rest = {k: v for k, v in data.items() if k in known}
            if inline:
                rest["labels"] = {**dict(rest.get("labels", {})), **inline}
            return rest
        return data


class AllowRule(_Model):
    accounts: AccountSelector = Field(default_factory=AccountSelector)
    aws_roles: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    access_levels: list[Literal["read", "list", "write", "tagging", "permissions"]] = Field(
        default_factory=list
    )
    regions: list[str] = Field(default_factory=list)


class DenyRule(_Model):
    actions: list[str] = Field(default_factory=list)


class Guardrail(_Model):
    action: str
    max: dict[str, int] = Field(default_factory=dict)
    min: dict[str, int] = Field(default_factory=dict)
    allowed: dict[str, list[str]] = Field(default_factory=dict)
    denied: dict[str, list[str]] = Field(default_factory=dict)


def _reviewer_shorthand(value: Any) -> Any:
    # `team-lead` names a gateway role, `user:alice` a user.
    if isinstance(value, str):
        kind, sep, name = value.partition(":")
        return {"user": name} if sep and kind == "user" else {"role": value}
    return value


class ReviewerRef(_Model):
    """Who counts as a reviewer: the holders of a gateway role, or one user; optionally only
    for the accounts `accounts` selects (none: every account the request names)."""

    role: str | None = None
    user: str | None = Field(default=None, pattern=USER_NAME.pattern)
    accounts: AccountSelector | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ReviewerRef:
        if (self.role is None) == (self.user is None):
            raise ValueError("a reviewer is a gateway role (role: R) or a user (user: U)")
        return self


Reviewer = Annotated[ReviewerRef, BeforeValidator(_reviewer_shorthand)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | Mapping) else value


class ApprovalStage(_Model):
    """`{approve: N, from: [...]}`: N different people of `from` must approve."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    approve: int = Field(default=1, ge=1, le=10)
    reviewers: Annotated[list[Reviewer], BeforeValidator(_one_or_many)] = Field(
        alias="from", min_length=1
    )


class ReasonRule(_Model):
    required: bool = True
    prompt: str = "Why do you need this access?"


def _reason_shorthand(value: Any) -> Any:
    if value in ("required", "optional"):
        return {"required": value == "required"}
    return value


class Requestable(_Model):
    """A gateway role people may ask for, for a time and a reason, approved by others in
    stages (all of them: AND). Checked by `iamgate.access.requests`."""

    # Who may ask: gateway roles, or `user:NAME`; empty: any user.
    requesters: list[str] = Field(default_factory=list)
    reviewers: Annotated[list[Reviewer], BeforeValidator(_one_or_many)] = Field(
        default_factory=list
    )
    # Empty: one stage, one approval from `reviewers`.
    stages: list[ApprovalStage] = Field(default_factory=list)
    max_duration: Duration = timedelta(hours=4)
    default_duration: Duration | None = None
    # How long a request may wait for its reviewers, whatever the role's session TTL.
    pending_lifetime: Duration = timedelta(hours=24)
    reason: Annotated[ReasonRule, BeforeValidator(_reason_shorthand)] = Field(
        default_factory=ReasonRule
    )
    ticket: str | None = None  # a regular expression a ticket reference must match

    @field_validator("ticket")
    @classmethod
    def _ticket_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("max_duration", "pending_lifetime", "default_duration")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _stages_and_defaults(self) -> Requestable:
        if not self.stages and not self.reviewers:
            raise ValueError("a requestable role needs reviewers (or stages)")
        if self.default_duration is not None and self.default_duration > self.max_duration:
            raise ValueError("default_duration is longer than max_duration")
        return self

    @property
    def approval_stages(self) -> tuple[ApprovalStage, ...]:
        if self.stages:
            return tuple(self.stages)
        return (ApprovalStage.model_validate({"approve": 1, "from": list(self.reviewers)}),)

    @property
    def duration(self) -> timedelta:
        """What a request without a duration asks for."""
        return self.default_duration or min(self.max_duration, timedelta(hours=1))


class RoleConfig(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    description: str = ""
    allow: AllowRule = Field(default_factory=AllowRule)
    deny: DenyRule = Field(default_factory=DenyRule)
    guardrails: list[Guardrail] = Field(default_factory=list)
    max_session_ttl: Duration = timedelta(hours=1)
    requestable: Requestable | None = None
    # Holders run iamgate itself from the web UI and API: users, sessions, everyone's audit.
    administer: bool = False


class UserConfig(_Model):
    name: str = Field(pattern=USER_NAME.pattern)
    roles: list[str] = Field(default_factory=list)


# A bot's name: as a user's, but short enough that `bot=NAME` is an AWS session name.
BOT_NAME_PATTERN = "[a-z0-9][a-z0-9_.@-]{0,59}"
# The algorithms a trusted issuer may sign with: asymmetric only (`identity.oidc`).
SigningAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


class BotConfig(_Model):
    """A CI job or machine: the principal `bot:NAME`, with gateway roles as a user has."""

    name: str = Field(pattern=f"^{BOT_NAME_PATTERN}$")
    roles: list[str] = Field(default_factory=list)
    description: str = ""
    # AWS IAM join (`identity.aws_join`): the IAM identities whose servers join as this bot,
    # as STS names a caller (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, globs after the
    # account) or an IAM role's ARN for any session of the role.
    aws_join: list[str] = Field(default_factory=list)

    @field_validator("aws_join")
    @classmethod
    def _pins_the_account(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not re.match(r"^arn:aws[a-z-]*:(sts|iam)::\d{12}:[A-Za-z-]+/\S+$", pattern):
                raise ValueError(
                    f"{pattern!r} must be an STS or IAM ARN naming its 12-digit account, e.g. "
                    "arn:aws:iam::111111111111:role/BackupServer or "
                    "arn:aws:sts::111111111111:assumed-role/BackupServer/i-*"
                )
        return patterns


def _listed(value: Any) -> Any:
    """`x` is shorthand for `[x]`; numbers and booleans are claims as JSON spells them."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, int):
            out.append(str(item))
        else:
            out.append(item)
    return out


ClaimValues = Annotated[list[str], BeforeValidator(_listed), Field(min_length=1)]


def _default_algorithms() -> list[SigningAlgorithm]:
    return ["RS256", "ES256"]


class OidcIssuerConfig(_Model):
    """An OIDC issuer whose tokens the gateway exchanges (GitHub Actions, GitLab, ...)."""

    url: str  # exactly as its tokens' `iss` claim gives it
    audience: ClaimValues  # what the tokens' `aud` must be (one of)
    jwks_url: str | None = None  # null: from the issuer's discovery document
    algorithms: list[SigningAlgorithm] = Field(default_factory=_default_algorithms, min_length=1)
    leeway: Duration = timedelta(seconds=60)

    @field_validator("url", "jwks_url")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
            raise ValueError(
                "must be an http(s) URL, e.g. https://token.actions.githubusercontent.com"
            )
        return value

    @field_validator("leeway")
    @classmethod
    def _small_leeway(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(minutes=5):
            raise ValueError("must be between 0s and 5m")
        return value


# Claims that say whose job a token is. An allow binding must pin one of them to a value
# with a literal start: `ref: refs/heads/main` alone would trust every repository on GitHub.
IDENTIFYING_CLAIMS = (
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "job_workflow_ref",
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
)


class BindingConfig(_Model):
    """Tokens whose claims all match (exactly or by glob) act as `bot`; a deny binding
    refuses them instead, whatever else matches."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    issuer: str | None = None  # null: the only issuer configured
    bot: str | None = None
    deny: bool = False
    claims: dict[str, ClaimValues] = Field(min_length=1)

    @model_validator(mode="after")
    def _bot_or_deny(self) -> BindingConfig:
        if self.deny and self.bot is not None:
            raise ValueError("a deny binding names no bot")
        if not self.deny and self.bot is None:
            raise ValueError("an allow binding names its bot (or is `deny: true`)")
        if not self.deny and not any(
            all(v and v[0] not in "*?" for v in values)
            for name, values in self.claims.items()
            if name in IDENTIFYING_CLAIMS
        ):
            raise ValueError(
                "an allow binding must pin whose jobs it trusts: one of "
                + ", ".join(IDENTIFYING_CLAIMS)
                + " with values that do not start with a wildcard"
            )
        return self


class OidcConfig(_Model):
    issuers: list[OidcIssuerConfig] = Field(default_factory=list)
    bindings: list[BindingConfig] = Field(default_factory=list)

    def issuer_of(self, binding: BindingConfig) -> str | None:
        """The issuer a binding is for: its own, or the only one configured."""
        if binding.issuer is not None:
            return binding.issuer
        return self.issuers[0].url if len(self.issuers) == 1 else None


class WebhookConfig(_Model):
    """An HTTP endpoint that receives every notification as JSON, signed with its secret
    (`X-Iamgate-Signature: sha256=<hex HMAC-SHA256 of the body>`). The secret is read from
    the environment or a file, never written in the configuration."""

    url: str
    secret_env: str | None = None
    secret_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError("a webhook url must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("a webhook needs exactly one of secret_env or secret_file")
        return self


class SmtpConfig(_Model):
    """An SMTP server for e-mails; `to` makes a user's address from their name."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    host: str
    port: int = Field(default=25, gt=0, lt=65536)
    from_: str = Field(alias="from")
    to: str = "{user}"  # e.g. "{user}@example.com"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    timeout: Duration = timedelta(seconds=10)

    @field_validator("to")
    @classmethod
    def _names_the_user(cls, value: str) -> str:
        if "{user}" not in value:
            raise ValueError("to must contain {user}, e.g. {user}@example.com")
        return value


class NotificationsConfig(_Model):
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    smtp: SmtpConfig | None = None
    # A failed delivery is tried again after 1s, 2s, 4s … at most this long apart,
    # until max_attempts.
    retry_max_interval: Duration = timedelta(minutes=5)
    max_attempts: int = Field(default=12, ge=1)


class Config(_Model):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    roles: list[RoleConfig] = Field(default_factory=list)
    users: list[UserConfig] = Field(default_factory=list)
    bots: list[BotConfig] = Field(default_factory=list)
    oidc: OidcConfig = Field(default_factory=OidcConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)

    _bots: dict[str, BotConfig] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._bots = {b.name: b for b in self.bots}

    def bot_named(self, name: str) -> BotConfig | None:
        return self._bots.get(name)

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        role_names = {r.name for r in self.roles}
        for user in self.users:
            for role in user.roles:
                if role not in role_names:
                    raise ValueError(f"user {user.name!r} has unknown role {role!r}")
        for i, defined in enumerate(self.roles):
            if defined.requestable is not None:
                at = ("roles", i, "requestable")
                _requestable_references(defined.requestable, role_names, at)
        return self


class Misplaced(ValueError):
    """A check across sections that knows the key at fault: the error names that key's line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _requestable_references(
    requestable: Requestable, role_names: set[str], at: tuple[str | int, ...]
) -> None:
    for i, name in enumerate(requestable.requesters):
        if not name.startswith("user:") and name not in role_names:
            raise Misplaced((*at, "requesters", i), f"unknown gateway role {name!r}")
    places: list[tuple[tuple[str | int, ...], ReviewerRef]] = [
        ((*at, "reviewers", i), ref) for i, ref in enumerate(requestable.reviewers)
    ]
    for s, stage in enumerate(requestable.stages):
        places += [((*at, "stages", s, "from", i), ref) for i, ref in enumerate(stage.reviewers)]
    for loc, ref in places:
        if ref.role is not None and ref.role not in role_names:
            raise Misplaced(loc, f"unknown gateway role {ref.role!r}")


Location = tuple[str | int, ...]


def reference_problems(config: Config) -> list[tuple[Location, str]]:
    """What a configuration names that it does not define, each at the key that names it:
    a bot's unknown role, a binding's unknown issuer, and a name given twice. A binding may
    name a bot the configuration does not define: one added to the state store (`iamgate
    bots add`); an exchange for a bot that exists in neither is refused, naming both."""
    problems: list[tuple[Location, str]] = []
    roles = {r.name for r in config.roles}
    seen: dict[str, set[str]] = {"bots": set(), "issuers": set(), "bindings": set()}

    def once(kind: str, name: str, where: Location) -> None:
        if name in seen[kind]:
            problems.append((where, f"{name!r} is defined twice"))
        seen[kind].add(name)

    for i, bot in enumerate(config.bots):
        once("bots", bot.name, ("bots", i, "name"))
        problems += [
            (("bots", i, "roles", j), f"bot {bot.name!r} has unknown role {role!r}")
            for j, role in enumerate(bot.roles)
            if role not in roles
        ]
    for i, issuer in enumerate(config.oidc.issuers):
        once("issuers", issuer.url, ("oidc", "issuers", i, "url"))
    issuers = {i.url for i in config.oidc.issuers}
    for i, binding in enumerate(config.oidc.bindings):
        here: Location = ("oidc", "bindings", i)
        once("bindings", binding.name, (*here, "name"))
        if binding.issuer is None and len(issuers) != 1:
            problems.append(
                (here, "name the binding's issuer: there is not exactly one under oidc.issuers")
            )
        elif binding.issuer is not None and binding.issuer not in issuers:
            problems.append(((*here, "issuer"), f"{binding.issuer!r} is not one of oidc.issuers"))
    return problems


class ConfigError(Exception):
    """A configuration that cannot be used; the message names file, line and key."""


# What a running gateway takes on when its configuration is reloaded (SIGHUP); every other
# setting is fixed for the life of the process and needs a restart.
RELOADABLE = ("roles", "users", "bots", "oidc", "aws.accounts")


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings `new` changes that a running gateway cannot take on."""
    changed = []
    for section in Config.model_fields:
        if section in RELOADABLE:
            continue
        if section == "aws":
            changed += [
                f"aws.{key}"
                for key in AwsConfig.model_fields
                if f"aws.{key}" not in RELOADABLE and getattr(old.aws, key) != getattr(new.aws, key)
            ]
        elif getattr(old, section) != getattr(new, section):
            changed.append(section)
    return changed


class LiveConfig:
    """The configuration in force. A reload replaces it whole, and components read it when
    they use it (never copy it at start), so a reload reaches all of them at once."""

    def __init__(self, config: Config) -> None:
        self._state = (config, {role.name: role for role in config.roles})

    @property
    def config(self) -> Config:
        return self._state[0]

    @property
    def roles(self) -> Mapping[str, RoleConfig]:
        return self._state[1]

    def check(self, config: Config) -> None:
        """Refuse a configuration that changes what only a restart can change."""
        changed = restart_only_changes(self.config, config)
        if changed:
            raise ConfigError(
                f"{', '.join(changed)} cannot change while the gateway runs: restart it "
                f"(a reload takes on {', '.join(RELOADABLE)})"
            )

    def replace(self, config: Config) -> None:
        self.check(config)
        self._state = (config, {role.name: role for role in config.roles})


def live(config: Config | LiveConfig) -> LiveConfig:
    return config if isinstance(config, LiveConfig) else LiveConfig(config)


class Configured:
    """A component that reads the configuration in force."""

    live: LiveConfig

    @property
    def config(self) -> Config:
        return self.live.config

    @property
    def roles(self) -> Mapping[str, RoleConfig]:
        return self.live.roles


# libyaml's parser where PyYAML was built with it (the wheels are): the same nodes and marks,
# several times faster than the pure-Python one on a configuration of thousands of accounts.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class _Located:
    value: Any
    lines: dict[tuple[str | int, ...], int]


def _compose(text: str, loader: type[yaml.SafeLoader] = _Loader) -> _Located:
    """Plain Python data plus the line of every key and item, from one YAML parse."""
    node = yaml.compose(text, Loader=loader)
    lines: dict[tuple[str | int, ...], int] = {}
    if node is None:
        return _Located({}, lines)
    scalars = yaml.SafeLoader("")  # one constructor for every scalar (resolved by its tag)

    def walk(n: yaml.Node, path: tuple[str | int, ...]) -> Any:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = key_node.value
                lines[(*path, key)] = key_node.start_mark.line + 1
                if key in out:
                    raise ConfigError(
                        f"{{file}}:{key_node.start_mark.line + 1}: "
                        f"{_dotted((*path, key))}: duplicate key"
                    )
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(n.value)]
        return scalars.construct_object(n, deep=True)

    try:
        return _Located(walk(node, ()), lines)
    finally:
        scalars.dispose()


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_of(lines: Mapping[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Validate a whole configuration text; raises ConfigError naming file, line and key."""
    try:
        try:
            located = _compose(text)
        except yaml.YAMLError:
            # The pure-Python parser places and words its errors better than libyaml's.
            located = _compose(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc.problem}") from None
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("{file}", source)) from None
    if not isinstance(located.value, dict):
        raise ConfigError(f"{source}:1: the configuration must be a mapping")
    try:
        config = Config.model_validate(located.value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, Misplaced):
                loc = cause.loc
                err["msg"] = str(cause)
            line = _line_of(located.lines, loc)
            hint = did_you_mean(Config, loc) if err["type"] == "extra_forbidden" else ""
            problems.append(f"{source}:{line}: {_dotted(loc)}: {err['msg']}{hint}")
        raise ConfigError("\n".join(problems)) from None
    unknown = reference_problems(config)
    if unknown:
        raise ConfigError(
            "\n".join(
                f"{source}:{_line_of(located.lines, loc)}: {_dotted(loc)}: {message}"
                for loc, message in unknown
            )
        )
    return config


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Which configuration is in force: its file and the SHA-256 of exactly what was read."""

    path: str
    sha256: str


def load_config(path: Path) -> Config:
    return load_config_with_source(path)[0]


def load_config_with_source(path: Path) -> tuple[Config, ConfigSource]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    config = parse_config(text, source=str(path))
    return config, ConfigSource(str(path.resolve()), hashlib.sha256(data).hexdigest())
