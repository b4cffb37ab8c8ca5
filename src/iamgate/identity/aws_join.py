"""AWS IAM join: a server already in AWS proves which IAM identity it runs as, with no
secret of iamgate's, and becomes the bot that identity is bound to.

The machine signs an `sts:GetCallerIdentity` request with its own credentials (an instance
profile, a task role...) and hands it to the gateway unsent; the gateway sends it to STS,
which answers with the ARN those credentials belong to, and maps the ARN to a bot by the
bot's `aws_join` patterns. The signed request names this gateway in the
`X-Iamgate-Server-ID` header, which must be among the signed headers: STS then refuses the
request if the header is changed, so a request made for one gateway cannot be replayed
to another one (which would read a different server id). A signature older or newer than
STS's own 15 minutes is refused before it is sent.

Pure checks here; the gateway's use case (`control.joins`) sends the request.
"""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from iamgate.refusals import Refused
from iamgate.sigv4.authorization import parse_authorization

SERVER_ID_HEADER = "X-Iamgate-Server-ID"
BODY = "Action=GetCallerIdentity&Version=2011-06-15"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
MAX_SKEW = timedelta(minutes=15)  # as STS allows a signature's time
# The headers forwarded to STS: what a GetCallerIdentity signature may cover, nothing else.
FORWARDED = ("authorization", "x-amz-date", "x-amz-security-token", "content-type")
# A bot's aws_join pattern: an STS caller ARN (globs allowed after the account), or an IAM
# role's ARN, which stands for any session of the role.
_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(.+)$")


class JoinRefused(Exception):
    """Why a signed request is not one the gateway sends, or not one that joins."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    arn: str
    account: str
    user_id: str


def check_signed_request(
    headers: Mapping[str, str], body: str, *, server_id: str, sts_endpoint: str, now: datetime
) -> dict[str, str]:
    """The headers to send STS for a machine's signed GetCallerIdentity, once it is one:
    exactly that call, for this gateway (its id among the signed headers) and for the STS
    endpoint the gateway uses, signed within 15 minutes of now."""
    if body != BODY:
        raise JoinRefused("aws-not-get-caller-identity", f"the signed body must be {BODY!r}")
    lowered = {name.lower(): value for name, value in headers.items()}
    host = urlsplit(sts_endpoint).netloc
    try:
        signed = parse_authorization("POST", "/", "", [("host", host), *lowered.items()])
    except Refused as refused:
        raise JoinRefused("aws-malformed", f"the signed request is malformed: {refused}") from None
    if signed.scope.service != "sts":
        raise JoinRefused("aws-malformed", "the request must be signed for the sts service")
    if SERVER_ID_HEADER.lower() not in signed.signed_headers or "host" not in signed.signed_headers:
        raise JoinRefused(
            "aws-server-id-unsigned",
            f"{SERVER_ID_HEADER} and Host must be among the signed headers",
        )
    named = lowered.get(SERVER_ID_HEADER.lower())
    if named != server_id:
        raise JoinRefused(
            "aws-wrong-server",
            f"the request names the gateway {named!r}; this gateway is {server_id!r}",
        )
    if abs(now - signed.timestamp) > MAX_SKEW:
        raise JoinRefused("aws-stale", "the request was signed more than 15 minutes from now")
    out = {name: lowered[name] for name in FORWARDED if name in lowered}
    out[SERVER_ID_HEADER] = server_id
    return out


def caller_identity(xml: bytes) -> CallerIdentity:
    """STS's GetCallerIdentity answer, read."""
    try:
        root = ET.fromstring(xml)  # noqa: S314 - STS's answer, from the configured endpoint
    except ET.ParseError:
        raise JoinRefused("aws-sts-unreadable", "STS's answer could not be read") from None
    found: dict[str, str] = {}
    for element in root.iter():
        tag = element.tag.rpartition("}")[2]
        if tag in ("Arn", "Account", "UserId") and element.text:
            found[tag] = element.text.strip()
    if "Arn" not in found or "Account" not in found:
        raise JoinRefused("aws-sts-unreadable", "STS's answer names no ARN")
    return CallerIdentity(found["Arn"], found["Account"], found.get("UserId", ""))


def matching_pattern(patterns: Sequence[str], arn: str) -> str | None:
    """The first pattern the caller's ARN matches (case-sensitive globs)."""
    for pattern in patterns:
        role = _ROLE_ARN.match(pattern)
        glob = (
            f"arn:{role.group(1)}:sts::{role.group(2)}:assumed-role/{role.group(3)}/*"
            if role
            else pattern
        )
        if fnmatch.fnmatchcase(arn, glob):
            return pattern
    return None
