"""AWS IAM join's checks of a machine's signed sts:GetCallerIdentity, and ARN patterns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from iamgate.config import BotConfig
from iamgate.identity.aws_join import (
    BODY,
    CONTENT_TYPE,
    SERVER_ID_HEADER,
    JoinRefused,
    caller_identity,
    check_signed_request,
    matching_pattern,
)

STS = "https://sts.amazonaws.com"
GATEWAY = "https://iamgate.example.com"


def signed(
    body: str = BODY, server_id: str | None = GATEWAY, service: str = "sts"
) -> dict[str, str]:
    headers = {"Content-Type": CONTENT_TYPE}
    if server_id is not None:
        headers[SERVER_ID_HEADER] = server_id
    request = AWSRequest("POST", STS + "/", data=body, headers=headers)
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret", "token"), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def check(headers: dict[str, str], body: str = BODY, now: datetime | None = None) -> dict[str, str]:
    return check_signed_request(
        headers, body, server_id=GATEWAY, sts_endpoint=STS, now=now or datetime.now(UTC)
    )


def reason(headers: dict[str, str], body: str = BODY, now: datetime | None = None) -> str:
    with pytest.raises(JoinRefused) as refused:
        check(headers, body, now)
    return refused.value.reason


def test_a_request_for_this_gateway_is_sent_with_only_what_was_signed() -> None:
    sent = check(signed() | {"X-Other": "dropped"})
    assert set(sent) == {
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "content-type",
        SERVER_ID_HEADER,
    }


def test_refusals() -> None:
    assert reason(signed(server_id="https://other.example")) == "aws-wrong-server"
    unsigned = signed(server_id=None) | {SERVER_ID_HEADER: GATEWAY}
    assert reason(unsigned) == "aws-server-id-unsigned"
    other_action = "Action=GetSessionToken&Version=2011-06-15"
    assert reason(signed(other_action), other_action) == "aws-not-get-caller-identity"
    assert reason(signed(service="iam")) == "aws-malformed"
    assert reason({"Authorization": "nonsense"}) == "aws-malformed"
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert reason(signed(), now=later) == "aws-stale"
    assert check(signed(), now=datetime.now(UTC) + timedelta(minutes=14))


def test_sts_answer_and_patterns() -> None:
    arn = "arn:aws:sts::111111111111:assumed-role/Backup/i-0abc"
    answer = f"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AROA:i-0abc</UserId>
      <Account>111111111111</Account></GetCallerIdentityResult></GetCallerIdentityResponse>"""
    identity = caller_identity(answer.encode())
    assert (identity.arn, identity.account) == (arn, "111111111111")
    with pytest.raises(JoinRefused):
        caller_identity(b"<Error/>")
    role = "arn:aws:iam::111111111111:role/Backup"
    assert matching_pattern([role], arn) == role
    assert matching_pattern(["arn:aws:iam::111111111111:role/Back"], arn) is None
    assert matching_pattern(["arn:aws:iam::222222222222:role/Backup"], arn) is None
    glob = "arn:aws:sts::111111111111:assumed-role/Backup/i-*"
    assert matching_pattern([glob], arn) == glob
    assert matching_pattern([glob], arn.replace("i-0abc", "job")) is None


def test_a_pattern_must_name_its_account() -> None:
    BotConfig(name="b", aws_join=["arn:aws:iam::111111111111:role/Backup"])
    for loose in ("arn:aws:iam::*:role/Backup", "*", "arn:aws:sts::1111:assumed-role/x/y"):
        with pytest.raises(ValueError, match="12-digit account"):
            BotConfig(name="b", aws_join=[loose])
