"""`sts:AssumeRoleWithWebIdentity` as the gateway answers it: read the call, write STS's reply.

The AWS SDKs and CLI send this call unsigned when a job sets `AWS_WEB_IDENTITY_TOKEN_FILE` and
`AWS_ROLE_ARN`; the gateway answers it itself (never forwards it) with gateway credentials for
the account and IAM role the ARN names. The reply is STS's own XML, so every SDK parses it and
re-exchanges the token by itself when the credentials near expiry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

_ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-us-gov|aws-cn):iam::(?P<account>\d{12}):role/"
    r"(?:[\x21-\x7e]*/)?(?P<name>[\w+=,.@-]{1,64})$",
    re.ASCII,
)
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
# Characters XML 1.0 cannot carry at all, escaped or not: a claim holding one loses it.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MIN_DURATION = 900
MAX_DURATION = 43200
_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


class InvalidCall(Exception):
    """A parameter STS itself would reject (`ValidationError`), in STS's words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class WebIdentityCall:
    partition: str
    account_id: str
    role_name: str
    session_name: str
    token: str
    duration_seconds: int | None


def read_call(params: Mapping[str, str]) -> WebIdentityCall:
    """The call's parameters, validated as STS validates them."""
    role_arn = params.get("RoleArn", "")
    token = params.get("WebIdentityToken", "")
    session_name = params.get("RoleSessionName", "")
    for name, value in (("roleArn", role_arn), ("webIdentityToken", token)):
        if not value:
            raise InvalidCall(
                f"1 validation error detected: Value null at '{name}' failed to satisfy "
                "constraint: Member must not be null"
            )
    match = _ROLE_ARN.match(role_arn)
    if match is None:
        raise InvalidCall(f"{role_arn[:2048]} is invalid")
    if not _SESSION_NAME.match(session_name):
        raise InvalidCall(
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* "
            "and have length between 2 and 64"
        )
    duration: int | None = None
    if "DurationSeconds" in params:
        text = params["DurationSeconds"]
        if not text.isdigit() or not MIN_DURATION <= int(text) <= MAX_DURATION:
            raise InvalidCall(
                f"1 validation error detected: Value '{text[:20]}' at 'durationSeconds' failed "
                f"to satisfy constraint: Member must have value between {MIN_DURATION} and "
                f"{MAX_DURATION}"
            )
        duration = int(text)
    return WebIdentityCall(
        partition=match["partition"],
        account_id=match["account"],
        role_name=match["name"],
        session_name=session_name,
        token=token,
        duration_seconds=duration,
    )


@dataclass(frozen=True, slots=True)
class IssuedSession:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    source_identity: str  # the bot, as every call of the session is attributed
    subject: str  # the token's `sub`
    audience: str
    provider: str  # the token's issuer


def render_reply(call: WebIdentityCall, issued: IssuedSession, request_id: str) -> bytes:
    """STS's reply: credentials, the assumed-role user, and what the token said."""
    arn = (
        f"arn:{call.partition}:sts::{call.account_id}:assumed-role/"
        f"{call.role_name}/{call.session_name}"
    )
    expiration = issued.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {
        "SubjectFromWebIdentityToken": issued.subject,
        "Audience": issued.audience,
        "Provider": issued.provider,
        "SourceIdentity": issued.source_identity,
    }
    told = "".join(f"<{name}>{_text(value)}</{name}>" for name, value in fields.items())
    return (
        f'<AssumeRoleWithWebIdentityResponse xmlns="{_NAMESPACE}">'
        "<AssumeRoleWithWebIdentityResult>"
        f"{told}"
        "<AssumedRoleUser>"
        f"<Arn>{escape(arn)}</Arn>"
        f"<AssumedRoleId>{escape(issued.access_key_id)}:{escape(call.session_name)}</AssumedRoleId>"
        "</AssumedRoleUser>"
        "<Credentials>"
        f"<AccessKeyId>{escape(issued.access_key_id)}</AccessKeyId>"
        f"<SecretAccessKey>{escape(issued.secret_access_key)}</SecretAccessKey>"
        f"<SessionToken>{escape(issued.session_token)}</SessionToken>"
        f"<Expiration>{expiration}</Expiration>"
        "</Credentials>"
        "</AssumeRoleWithWebIdentityResult>"
        f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>"
        "</AssumeRoleWithWebIdentityResponse>"
    ).encode()


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("", value))
