"""The gateway's answer to `sts:AssumeRoleWithWebIdentity`, as the SDKs read it."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.session
import pytest
from botocore.parsers import QueryParser
from hypothesis import given
from hypothesis import strategies as st

from iamgate.aws.web_identity import InvalidCall, IssuedSession, read_call, render_reply

ARN = "arn:aws:iam::222222222222:role/CIRunner"
CALL = {"RoleArn": ARN, "RoleSessionName": "botocore-session-1", "WebIdentityToken": "eyJ..."}


OUTPUT = (
    botocore.session.get_session()
    .get_service_model("sts")
    .operation_model("AssumeRoleWithWebIdentity")
    .output_shape
)


def _parse(body: bytes) -> dict[str, object]:
    """What boto3 makes of the reply: botocore's own parser and STS's own output shape."""
    assert OUTPUT is not None
    response = {"body": body, "headers": {}, "status_code": 200}
    parsed: dict[str, object] = QueryParser().parse(response, OUTPUT)
    return parsed


def test_the_call_names_account_role_and_session() -> None:
    call = read_call({**CALL, "DurationSeconds": "3600"})
    assert (call.account_id, call.role_name, call.session_name) == (
        "222222222222",
        "CIRunner",
        "botocore-session-1",
    )
    assert call.duration_seconds == 3600
    path = read_call({**CALL, "RoleArn": "arn:aws:iam::222222222222:role/ci/jobs/Deployer"})
    assert path.role_name == "Deployer"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"RoleArn": ""}, "Value null at 'roleArn'"),
        ({"WebIdentityToken": ""}, "Value null at 'webIdentityToken'"),
        ({"RoleArn": "arn:aws:iam::22:role/X"}, "is invalid"),
        ({"RoleArn": "arn:aws:sts::222222222222:assumed-role/X/y"}, "is invalid"),
        ({"RoleSessionName": "a"}, "roleSessionName"),
        ({"RoleSessionName": "has space"}, "roleSessionName"),
        ({"DurationSeconds": "899"}, "between 900 and 43200"),
        ({"DurationSeconds": "1e4"}, "durationSeconds"),
    ],
)
def test_what_sts_rejects_is_rejected_in_its_words(change: dict[str, str], said: str) -> None:
    with pytest.raises(InvalidCall) as invalid:
        read_call({**CALL, **change})
    assert said in invalid.value.message


@given(
    session=st.from_regex(r"[A-Za-z0-9_+=,.@-]{2,64}", fullmatch=True),
    subject=st.text(min_size=1, max_size=200),
)
def test_the_sdk_reads_credentials_and_identity_from_the_reply(session: str, subject: str) -> None:
    call = read_call({**CALL, "RoleSessionName": session})
    issued = IssuedSession(
        access_key_id="ASIAGATEWAYEXAMPLE01",
        secret_access_key="secret/with+chars<&>",
        session_token="token&<>\"'",
        expiration=datetime(2026, 12, 2, 13, 0, tzinfo=UTC),
        source_identity="bot:deployer",
        subject=subject,
        audience="http://127.0.0.1:8080",
        provider="http://127.0.0.1:9999",
    )
    parsed = _parse(render_reply(call, issued, "REQ1"))
    creds = parsed["Credentials"]
    assert isinstance(creds, dict)
    assert creds["AccessKeyId"] == "ASIAGATEWAYEXAMPLE01"
    assert creds["SecretAccessKey"] == "secret/with+chars<&>"
    assert creds["SessionToken"] == "token&<>\"'"
    assert creds["Expiration"] == datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    user = parsed["AssumedRoleUser"]
    assert isinstance(user, dict)
    assert user["Arn"] == f"arn:aws:sts::222222222222:assumed-role/CIRunner/{session}"
    assert parsed["SourceIdentity"] == "bot:deployer"
    # What XML can carry of the token's subject, as the token gave it (XML reads a lone CR
    # as a line end, and cannot carry control characters at all).
    kept = "".join(c for c in subject if c in "\t\n\r" or " " <= c <= "\ud7ff" or c >= "\ue000")
    kept = (
        kept.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "").replace("\uffff", "")
    )
    assert parsed["SubjectFromWebIdentityToken"] == kept
