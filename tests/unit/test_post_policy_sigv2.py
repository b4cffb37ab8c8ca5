"""Signature Version 2 POST-policy forms (boto3's default `generate_presigned_post` where
SigV2 is the default): botocore's own `HmacV1PostAuth` signs the forms under test, so the
gateway's verification is checked against AWS's SDK, not against itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.auth import HmacV1PostAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from iamgate.aws.post_upload import forwarded_fields
from iamgate.refusals import Reason, Refused
from iamgate.sigv4.post_policy import (
    PostForm,
    check_policy,
    post_authorization,
    read_policy,
    verify_post_signature,
)

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SECRET = "gateway-derived-secret"
KEY_ID = "ASIAEXAMPLEEXAMPLE00"
TOKEN = "session-token"


def _v2_fields(
    conditions: list[Any], *, secret: str = SECRET, token: str | None = TOKEN
) -> dict[str, str]:
    """What boto3's generate_presigned_post hands a browser with SigV2, signed by botocore."""
    request = AWSRequest(method="POST", url="https://bucket.s3.amazonaws.com/")
    request.context["s3-presign-post-fields"] = {"key": "in/a.txt"}
    request.context["s3-presign-post-policy"] = {
        "expiration": "2026-12-02T09:00:00Z",
        "conditions": [{"bucket": "b"}, {"key": "in/a.txt"}, *conditions],
    }
    HmacV1PostAuth(Credentials(KEY_ID, secret, token)).add_auth(request)
    signed: dict[str, str] = request.context["s3-presign-post-fields"]
    return signed


def _form(fields: dict[str, str], file: bytes = b"data") -> PostForm:
    return PostForm(tuple(fields.items()), file, "a.txt", "text/plain")


def _refusal(call: Any, *args: Any, **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as refused:
        call(*args, **kwargs)
    return refused.value


def test_a_botocore_sigv2_form_verifies_names_its_credential_and_passes_its_policy() -> None:
    fields = _v2_fields([])
    assert {"AWSAccessKeyId", "signature", "policy", "x-amz-security-token"} <= set(fields)
    form = _form(fields)
    auth = post_authorization(form)
    assert (auth.scope.access_key_id, auth.session_token) == (KEY_ID, TOKEN)
    assert (auth.scope.region, auth.scope.service) == ("us-east-1", "s3")
    verify_post_signature(auth, form, SECRET)
    # AWSAccessKeyId and signature need no condition; the token is pinned by botocore.
    check_policy(read_policy(fields["policy"]), form, "b", now=NOW)
    assert forwarded_fields(form, "in/a.txt") == [("key", "in/a.txt")]


def test_long_term_credentials_sign_without_a_token() -> None:
    form = _form(_v2_fields([], token=None))
    auth = post_authorization(form)
    assert auth.session_token is None
    verify_post_signature(auth, form, SECRET)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: {**f, "signature": _v2_fields([], secret="other")["signature"]},
        lambda f: {**f, "policy": _v2_fields([{"acl": "public-read"}])["policy"]},
        lambda f: {**f, "signature": f["signature"][:-2]},
        lambda f: {**f, "signature": "not base64!"},
    ],
    ids=["another-secret", "another-policy", "truncated", "garbage"],
)
def test_a_tampered_form_is_refused_as_a_bad_signature(tamper: Any) -> None:
    form = _form(tamper(_v2_fields([])))
    auth = post_authorization(form)
    assert _refusal(verify_post_signature, auth, form, SECRET).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"x-amz-signature": "ab"}, Reason.INVALID_ARGUMENT),  # SigV2 and SigV4 mixed
        ({"x-amz-algorithm": "AWS4-HMAC-SHA256"}, Reason.INVALID_ARGUMENT),
        ({"x-amz-credential": f"{KEY_ID}/20261202/us-east-1/s3/aws4_request"}, None),
        ({"signature": ""}, Reason.INVALID_ARGUMENT),
        ({"AWSAccessKeyId": ""}, Reason.INVALID_ARGUMENT),
    ],
)
def test_auth_fields_are_read_strictly(change: dict[str, str], reason: Reason | None) -> None:
    refused = _refusal(post_authorization, _form({**_v2_fields([]), **change}))
    assert refused.reason is (reason or Reason.INVALID_ARGUMENT)


def test_the_policy_still_binds_every_other_field() -> None:
    fields = {**_v2_fields([]), "acl": "public-read"}
    form = _form(fields)
    verify_post_signature(post_authorization(form), form, SECRET)
    refused = _refusal(check_policy, read_policy(fields["policy"]), form, "b", now=NOW)
    assert refused.reason is Reason.ACCESS_DENIED
    assert "Extra input fields: acl" in str(refused)
