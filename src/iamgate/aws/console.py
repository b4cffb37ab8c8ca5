"""Console sign-in URLs, as AWS's custom identity broker flow builds them (pure).

The flow: credentials from sts:AssumeRole (with the gateway role's session policy, so the
console shows the same read-only view as the CLI) go to the partition's federation endpoint
(`Action=getSigninToken`), and the token it returns goes into a `Action=login` URL that the
browser follows to the console. See AWS's "Enable custom identity broker access to the AWS
console". Everything here is a function of data; `federation.py` does the calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlencode, urlsplit

from iamgate.aws.upstream_credentials import AwsCredentials

SIGNIN_HOSTS = {
    "aws": "signin.aws.amazon.com",
    "aws-us-gov": "signin.amazonaws-us-gov.com",
    "aws-cn": "signin.amazonaws.cn",
}
CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-us-gov": "console.amazonaws-us-gov.com",
    "aws-cn": "console.amazonaws.cn",
}
# SessionDuration, per AWS: 900 s to 43,200 s for AssumeRole credentials.
MIN_SESSION = timedelta(minutes=15)
MAX_SESSION = timedelta(hours=12)
ROLE_CHAINING_LIMIT = timedelta(hours=1)
ROLE_CHAINING_NOTE = (
    "The gateway's own AWS identity is a role, so this sign-in is role chaining: AWS limits "
    "the console session to 1 hour, whatever iamgate asks for."
)


class ConsoleInputError(ValueError):
    """A region or deep link that the console sign-in must not take."""


def federation_endpoint(partition: str, override: str | None = None) -> str:
    if override:
        return override
    return f"https://{SIGNIN_HOSTS[partition]}/federation"


def console_home(partition: str, region: str) -> str:
    """The console's home page for a region, on the partition's own console host."""
    host = CONSOLE_HOSTS[partition]
    if partition == "aws":
        host = f"{region}.{host}"
    return f"https://{host}/console/home?{urlencode({'region': region})}"


def valid_region(region: str) -> bool:
    parts = region.split("-")
    return 3 <= len(parts) <= 5 and parts[-1].isdigit() and all(p.isalnum() for p in parts)


def destination(partition: str, region: str, deep_link: str | None = None) -> str:
    """Where the console opens: its home for the region, or a deep link on its own host.

    A deep link anywhere else is refused: the sign-in must not become an open redirect that
    carries a fresh console session to someone else's page.
    """
    if not valid_region(region):
        raise ConsoleInputError(f"not an AWS region: {region!r}")
    if not deep_link:
        return console_home(partition, region)
    parts = urlsplit(deep_link)
    host = (parts.hostname or "").lower()
    console_host = CONSOLE_HOSTS[partition]
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or parts.port is not None
        or not (host == console_host or host.endswith("." + console_host))
        or any(c in deep_link for c in "\r\n\t\\ ")
    ):
        raise ConsoleInputError(
            f"a console deep link must be an https URL on {console_host} or a subdomain of it"
        )
    return deep_link


@dataclass(frozen=True, slots=True)
class SessionLength:
    """SessionDuration to ask for (None: leave it out) and what the person should know."""

    seconds: int | None
    role_chaining: bool
    note: str | None


def session_length(requested: timedelta, *, role_chaining: bool) -> SessionLength:
    if role_chaining:
        # AWS refuses SessionDuration for role-chained credentials; the session gets 1 hour.
        return SessionLength(None, True, ROLE_CHAINING_NOTE)
    bounded = min(max(requested, MIN_SESSION), MAX_SESSION)
    note = None
    if bounded != requested:
        note = f"AWS allows console sessions of 15 minutes to 12 hours; using {bounded}."
    return SessionLength(int(bounded.total_seconds()), False, note)


def signin_token_url(endpoint: str, credentials: AwsCredentials, length: SessionLength) -> str:
    session = json.dumps(
        {
            "sessionId": credentials.access_key_id,
            "sessionKey": credentials.secret_access_key,
            "sessionToken": credentials.session_token,
        },
        separators=(",", ":"),
    )
    params = {"Action": "getSigninToken"}
    if length.seconds is not None:
        params["SessionDuration"] = str(length.seconds)
    params["Session"] = session
    return f"{endpoint}?{urlencode(params, quote_via=quote)}"


def login_url(endpoint: str, *, issuer: str, destination: str, signin_token: str) -> str:
    params = {
        "Action": "login",
        "Issuer": issuer,
        "Destination": destination,
        "SigninToken": signin_token,
    }
    return f"{endpoint}?{urlencode(params, quote_via=quote)}"


def is_role_chaining(caller_arn: str) -> bool:
    """Whether the gateway's own identity (sts:GetCallerIdentity) is an assumed role."""
    return ":assumed-role/" in caller_arn
