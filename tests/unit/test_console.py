"""Console sign-in URLs as AWS's custom identity broker flow documents them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iamgate.aws import console
from iamgate.aws.upstream_credentials import AwsCredentials

CREDS = AwsCredentials("ASIAEXAMPLE", "secret/with+chars", "token=/+", datetime.now(UTC))


def test_each_partition_signs_in_on_its_own_hosts() -> None:
    assert console.federation_endpoint("aws") == "https://signin.aws.amazon.com/federation"
    assert (
        console.federation_endpoint("aws-us-gov")
        == "https://signin.amazonaws-us-gov.com/federation"
    )
    assert console.federation_endpoint("aws-cn") == "https://signin.amazonaws.cn/federation"
    assert console.federation_endpoint("aws", "http://127.0.0.1:9/federation").startswith(
        "http://127.0.0.1:9/"
    )
    assert console.destination("aws", "eu-west-1") == (
        "https://eu-west-1.console.aws.amazon.com/console/home?region=eu-west-1"
    )
    assert console.destination("aws-us-gov", "us-gov-west-1") == (
        "https://console.amazonaws-us-gov.com/console/home?region=us-gov-west-1"
    )
    assert console.destination("aws-cn", "cn-north-1") == (
        "https://console.amazonaws.cn/console/home?region=cn-north-1"
    )


def test_deep_links_stay_on_the_console() -> None:
    link = "https://us-east-1.console.aws.amazon.com/rds/home?region=us-east-1#databases:"
    assert console.destination("aws", "us-east-1", link) == link
    for bad in (
        "https://evil.example/console.aws.amazon.com",
        "http://us-east-1.console.aws.amazon.com/",
        "https://console.aws.amazon.com.evil.example/",
        "https://user@console.aws.amazon.com/",
        "https://console.aws.amazon.com:8443/",
        "https://console.amazonaws.cn/",  # another partition's console
        "javascript:alert(1)",
    ):
        with pytest.raises(console.ConsoleInputError):
            console.destination("aws", "us-east-1", bad)
    with pytest.raises(console.ConsoleInputError):
        console.destination("aws", "us-east-1/../../x")


@given(st.text(max_size=80))
def test_any_accepted_destination_is_on_the_console_host(link: str) -> None:
    try:
        chosen = console.destination("aws", "us-east-1", link)
    except console.ConsoleInputError:
        return
    host = urlsplit(chosen).hostname or ""
    assert urlsplit(chosen).scheme == "https"
    assert host == "console.aws.amazon.com" or host.endswith(".console.aws.amazon.com")


def test_session_length_within_aws_limits_and_role_chaining() -> None:
    hour = timedelta(hours=1)
    assert console.session_length(hour, role_chaining=False).seconds == 3600
    assert console.session_length(24 * hour, role_chaining=False).seconds == 43200
    assert console.session_length(timedelta(minutes=1), role_chaining=False).seconds == 900
    assert console.session_length(timedelta(minutes=1), role_chaining=False).note
    chained = console.session_length(12 * hour, role_chaining=True)
    assert chained.seconds is None and chained.role_chaining
    assert chained.note is not None and "1 hour" in chained.note
    assert console.is_role_chaining("arn:aws:sts::1:assumed-role/GatewayRole/i-0abc")
    assert not console.is_role_chaining("arn:aws:iam::1:user/iamgate")


def test_the_signin_token_request_carries_the_session_json() -> None:
    url = console.signin_token_url(
        "https://signin.aws.amazon.com/federation",
        CREDS,
        console.session_length(timedelta(hours=2), role_chaining=False),
    )
    query = parse_qs(urlsplit(url).query, strict_parsing=True)
    assert query["Action"] == ["getSigninToken"] and query["SessionDuration"] == ["7200"]
    assert json.loads(query["Session"][0]) == {
        "sessionId": "ASIAEXAMPLE",
        "sessionKey": "secret/with+chars",
        "sessionToken": "token=/+",
    }
    chained = console.signin_token_url(
        "https://x/federation",
        CREDS,
        console.session_length(timedelta(hours=2), role_chaining=True),
    )
    assert "SessionDuration" not in parse_qs(urlsplit(chained).query)


def test_the_login_url() -> None:
    url = console.login_url(
        "https://signin.aws.amazon.com/federation",
        issuer="https://gate.example.com",
        destination="https://us-east-1.console.aws.amazon.com/console/home?region=us-east-1",
        signin_token="tok&en",
    )
    parts = urlsplit(url)
    assert parts.netloc == "signin.aws.amazon.com" and parts.path == "/federation"
    assert parse_qs(parts.query) == {
        "Action": ["login"],
        "Issuer": ["https://gate.example.com"],
        "Destination": ["https://us-east-1.console.aws.amazon.com/console/home?region=us-east-1"],
        "SigninToken": ["tok&en"],
    }


def _federation(caller_arn: str, chaining: bool | None = None) -> tuple[Any, list[str]]:
    from iamgate.aws.federation import ConsoleFederation
    from iamgate.config import parse_config

    config = parse_config(
        "aws:\n  console: {federation_url: 'http://127.0.0.1:9/federation'"
        + ("" if chaining is None else f", role_chaining: {str(chaining).lower()}")
        + "}\n  accounts: [{name: a, id: '111111111111'}]\n"
    )
    calls: list[str] = []

    def whoami() -> str:
        calls.append(caller_arn)
        return caller_arn

    return ConsoleFederation(config, cast(Any, None), cast(Any, None), whoami), calls


def test_role_chaining_is_learned_once_from_the_gateways_own_identity() -> None:
    import asyncio

    as_role, asked = _federation("arn:aws:sts::999999999999:assumed-role/iamgate/i-0abc")
    assert asyncio.run(as_role.role_chaining()) is True
    assert asyncio.run(as_role.role_chaining()) is True
    assert len(asked) == 1
    as_user, _ = _federation("arn:aws:iam::999999999999:user/iamgate")
    assert asyncio.run(as_user.role_chaining()) is False
    configured, asked = _federation("arn:aws:iam::999999999999:user/iamgate", chaining=True)
    assert asyncio.run(configured.role_chaining()) is True and asked == []
    assert as_user.form_targets() == ("http://127.0.0.1:9",)
