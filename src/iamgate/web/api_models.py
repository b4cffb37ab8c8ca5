"""What each `/api/v1` call takes and answers, as pydantic models: stated once, here.

A request body is validated by its model before the handler sees it; an answer is built
as its model; the OpenAPI document (`iamgate.web.openapi`) is generated from the same
models, so a limit such as `ttl_seconds` ≥ 60 or `limit` ≤ 1000 is written in one place
(the control plane's constant) and the document cannot drift from the code. The audit
query's model only describes: the control plane reads the audit filters
(`control.audit_queries`), with the sentences the pages and the CLI also show.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from iamgate.access.requests import MAX_REASON, MAX_TICKET
from iamgate.audit.events import EventType
from iamgate.config import BOT_NAME_PATTERN, USER_NAME
from iamgate.control.audit_queries import MAX_PAGE
from iamgate.control.bots import MAX_DESCRIPTION
from iamgate.control.credentials import DEFAULT_TTL_SECONDS, MIN_TTL

MIN_PASSWORD = 12

Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Text = Annotated[str, Field(min_length=1)]
Password = Annotated[
    str,
    Field(
        min_length=MIN_PASSWORD,
        description="the administrator's choice; without it, the gateway generates one",
    ),
]


class Request(BaseModel):
    """A JSON body: unknown keys are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore", strict=True)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -------------------------------------------------------------------------------


class LoginRequest(Request):
    user: Text
    password: Text
    otp: Text


class JoinRequest(Request):
    """A machine's one-time join token (`iamgate bots token`), for its bot's session."""

    token: Text


class AwsJoinRequest(Request):
    """A machine's sts:GetCallerIdentity, signed for the gateway's STS endpoint and naming
    the gateway (`AwsJoinTarget`), unsent: the gateway sends it and maps the ARN to `bot`."""

    bot: Text
    headers: dict[str, Annotated[str, Field(max_length=8192)]] = Field(max_length=32)
    body: Annotated[str, Field(max_length=1024)]


class JoinTokenRequest(Request):
    ttl_seconds: Annotated[StrictInt, Field(ge=60, le=7 * 24 * 3600)] = 1800


class CredentialsRequest(Request):
    account: Text
    role: Text
    ttl_seconds: Annotated[StrictInt, Field(ge=int(MIN_TTL.total_seconds()))] = DEFAULT_TTL_SECONDS


class ConsoleRequest(Request):
    account: Text
    role: Text
    region: str | None = None
    destination: str | None = None


class NewUser(Request):
    name: Annotated[str, Field(pattern=USER_NAME.pattern)]
    roles: list[str] = []
    password: Password | None = None


class Reset(Request):
    password: Password | None = None


class Roles(Request):
    roles: list[str]


class NewBot(Request):
    name: Annotated[str, Field(pattern=f"^{BOT_NAME_PATTERN}$")]
    roles: list[str] = []
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] = ""


class AuditFilters(BaseModel):
    """The query of `GET /api/v1/audit` (read by `control.audit_queries.read`)."""

    principal: str | None = Field(
        None, description="whose calls (administrators only; others see their own)"
    )
    account: str | None = Field(None, description="account name or id")
    role: str | None = Field(None, description="IAM role")
    service: str | None = Field(None, description="e.g. s3")
    action: str | None = Field(None, description="IAM action glob, e.g. rds:Delete*")
    decision: Literal["allowed", "denied", "error"] | None = Field(
        None, description="gateway decision"
    )
    status: int | None = Field(None, description="HTTP status from AWS")
    since: Time | None = Field(None, description="at or after (the newest time a live view has)")
    until: Time | None = Field(None, description="at or before")
    before: str | None = Field(
        None,
        description="a cursor (the `next` of the previous page) or a time (the events "
        "strictly before it)",
    )
    type: EventType | None = Field(None, description="default aws.call")
    limit: int | None = Field(None, ge=1, le=MAX_PAGE, description="page size")
    claim: str | None = Field(
        None, description="a CI job's token claim, NAME=VALUE, e.g. repository=acme/infra"
    )


class SessionFilters(BaseModel):
    """The query of `GET /api/v1/sessions`, read by this model."""

    user: str | None = Field(None, description="only this user's")
    all: Literal["true", "false"] | None = Field(
        None, description="also expired and revoked sessions"
    )


class AccessKeyPath(BaseModel):
    access_key: Annotated[str, Field(pattern=r"^ASIA.{16}$")]


# -- answers --------------------------------------------------------------------------------


class Error(Answer):
    error: str
    message: str


class Health(Answer):
    status: Literal["ready", "starting"]
    directory_as_of: Time | None = Field(
        None,
        description="When this replica last began reading users, revocations and grants: "
        "every change committed before then is in force here (`iamgate sessions revoke` and "
        "the other changes made on the gateway host wait for it)",
    )


class LoginSession(Answer):
    user: str
    token: str
    session: str
    expires_at: Time


class AwsJoinTarget(Answer):
    server_id: str  # the X-Iamgate-Server-ID header to sign
    sts_endpoint: str  # where the gateway sends the request: sign for its host
    region: str  # the signing region


class JoinToken(Answer):
    bot: str
    token: str  # shown once: redeem it with `iamgate join URL --token …`
    token_id: str
    expires_at: Time


class Me(Answer):
    user: str
    roles: list[str]
    administer: bool
    session: str
    expires_at: Time


class ReachableRole(Answer):
    aws_role: str
    gateway_role: str
    allows: str


class ReachableAccount(Answer):
    name: str
    id: str
    labels: dict[str, str]
    roles: list[ReachableRole]


class RequestableRole(Answer):
    """A gateway role I may ask for (`iamgate request create`), with its limits."""

    role: str
    accounts: list[str]
    aws_roles: list[str]
    max_duration: str
    default_duration: str
    pending_lifetime: str
    reason_required: bool
    prompt: str
    ticket: str | None
    stages: int


class Access(Answer):
    user: str
    accounts: list[ReachableAccount]
    requestable: list[RequestableRole] = Field([], description="roles I may request")


class Credentials(Answer):
    """What the AWS CLI's credential_process expects."""

    Version: Literal[1]
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: Time


class ConsoleSignin(Answer):
    url: str
    expires_at: Time
    role_chaining: bool
    note: str | None


class Event(BaseModel):
    """An audit event as the trail holds it; kinds add their own keys."""

    model_config = ConfigDict(extra="allow")
    id: str
    time: Time
    type: str
    principal: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    fields: dict[str, Any]


class AuditPage(Answer):
    events: list[Event]
    next: str | None = Field(
        description="a cursor: pass as `before` for the next (older) page, which holds each "
        "event once; null after the last page"
    )


class User(Answer):
    name: str
    roles: list[str]
    locked: bool
    locked_until: Time | None
    enrolled: bool
    failed_logins: int
    created_at: Time | None
    active_sessions: int


class Users(Answer):
    users: list[User]


class Enrolment(Answer):
    """Shown once: the new password and TOTP secret."""

    user: str
    password: str | None
    totp_secret: str
    otpauth_uri: str


class RevokedUser(Answer):
    user: str
    revoked_sessions: int


class BotBinding(Answer):
    """A binding of the gateway's configuration that maps tokens to the bot."""

    name: str
    issuer: str | None
    claims: dict[str, list[str]]


class BotCredential(Answer):
    """Gateway credentials one of the bot's jobs got by an exchange."""

    access_key_id: str
    account_id: str
    aws_role: str
    issued_at: Time
    expires_at: Time


class BotSession(Answer):
    """A renewable session of a machine that joined as the bot (join token, AWS IAM join)."""

    id: str
    kind: str
    created_at: Time
    expires_at: Time


class Bot(Answer):
    name: str
    principal: str = Field(description="as credentials and the audit trail name it: bot:NAME")
    roles: list[str]
    source: Literal["config", "store"] = Field(
        description="config: a bootstrap bot, whose roles the configuration sets"
    )
    description: str
    created_at: Time | None
    bindings: list[BotBinding]
    last_exchange: BotCredential | None
    last_binding: str | None = Field(description="the binding of the last exchange")
    last_job: dict[str, str] = Field(
        description="the job claims of the last exchange (repository, run_id, ref, ...)"
    )
    live_credentials: list[BotCredential]
    live_sessions: list[BotSession]


class Bots(Answer):
    bots: list[Bot]


class RevokedBot(Answer):
    bot: str
    revoked_credentials: int = Field(description="how many were live")


class Session(Answer):
    id: str
    user: str
    kind: Literal["cli", "web", "join", "token"] = Field(
        description="a person's login (cli, web), a machine joined as its bot (join), or a "
        "bot's one-time join token not yet redeemed (token)"
    )
    created_at: Time
    last_seen_at: Time | None
    expires_at: Time
    revoked_at: Time | None
    state: Literal["active", "expired", "revoked"]


class Sessions(Answer):
    sessions: list[Session]


class GatewayRole(BaseModel):
    """A gateway role as configured (`roles:` in the configuration file)."""

    model_config = ConfigDict(extra="allow")
    name: str
    allow: Any
    deny: Any
    guardrails: Any
    administer: bool


class GatewayRoles(Answer):
    roles: list[GatewayRole]


class Account(Answer):
    name: str
    id: str
    labels: dict[str, str]
    partition: str
    external_id_set: bool


class Accounts(Answer):
    accounts: list[Account]


# -- just-in-time access requests (`iamgate.control.requests`) -----------------------------


class NewAccessRequest(Request):
    role: Text
    accounts: list[str] = Field([], description="accounts by name or id; or give selector")
    selector: str | None = Field(None, description="accounts by label, e.g. env=prod")
    duration: str | None = Field(None, description="e.g. 2h; default: the role's")
    reason: Annotated[str, Field(max_length=MAX_REASON)] = ""
    start: str | None = Field(None, description="ISO 8601, or +30m from now; default: at once")
    actions: list[str] = Field([], description="only these IAM actions, e.g. rds:Delete*")
    ticket: str | None = Field(None, max_length=MAX_TICKET)


class RequestReview(Request):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON)]
    accounts: list[str] = Field(
        [], description="approve only these (names or ids); default: every one in your scope"
    )


class RequestEnding(Request):
    reason: Annotated[str, Field(max_length=MAX_REASON)] = ""


class RequestFilters(BaseModel):
    mine: Literal["true", "false"] | None = Field(None, description="only mine")
    to_review: Literal["true", "false"] | None = Field(
        None, description="only those waiting for my review"
    )


class RequestPath(BaseModel):
    id: Annotated[str, Field(pattern=r"^rq-[0-9a-f]{10}$")]


class RequestedAccount(Answer):
    name: str
    id: str
    approved: bool


class GivenReview(Answer):
    reviewer: str
    decision: Literal["approve", "deny"]
    accounts: list[str]
    reason: str
    at: Time | None


class AccessRequest(Answer):
    id: str
    state: Literal["pending", "approved", "active", "denied", "expired", "cancelled", "ended"]
    ended_by: Literal["expired", "dropped", "revoked"] | None
    requester: str
    role: str
    accounts: list[RequestedAccount]
    actions: list[str]
    duration: str
    reason: str
    ticket: str | None
    created_at: Time | None
    pending_until: Time | None
    start: Time | None
    starts_at: Time | None
    ends_at: Time | None
    stages: list[str]
    reviews: list[GivenReview]
    may_review: bool
    may_drop: bool
    may_revoke: bool


class AccessRequests(Answer):
    requests: list[AccessRequest]


class NotificationFilters(BaseModel):
    request: Annotated[str, Field(pattern=r"^rq-[0-9a-f]{10}$")] | None = Field(
        None, description="only this request's"
    )
    limit: Annotated[int, Field(ge=1, le=1000)] = Field(100, description="the newest this many")


class NotificationDelivery(Answer):
    id: int
    request_id: str
    event: str = Field(description="request.created, request.approved, request.reminder …")
    channel: Literal["webhook", "smtp"]
    target: str = Field(description="the webhook's URL or the e-mail address")
    recipients: list[str]
    state: Literal["pending", "delivered", "failed", "skipped"]
    attempts: int
    due_at: str | None
    delivered_at: str | None
    last_error: str | None
    created_at: str | None


class NotificationLog(Answer):
    deliveries: list[NotificationDelivery]
