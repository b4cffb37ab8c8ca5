"""S3 POST-policy uploads, the pure pieces: the form, the signature, the policy's conditions,
and the form the gateway writes upstream. botocore's own `S3SigV4PostAuth` signs the forms
under test, so the verification is checked against AWS's SDK, not against itself."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import urllib3
from botocore.auth import S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from iamgate.aws.post_form import MAX_FIELD_BYTES, MAX_PARTS, parse_post_form
from iamgate.aws.post_upload import (
    encode_form,
    forwarded_fields,
    identification_headers,
    upstream_fields,
)
from iamgate.aws.upstream_credentials import AwsCredentials
from iamgate.refusals import Reason, Refused
from iamgate.sigv4.post_policy import (
    PostForm,
    check_policy,
    object_key,
    post_authorization,
    read_policy,
    verify_post_signature,
)

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SECRET = "gateway-derived-secret"
KEY_ID = "ASIAEXAMPLEEXAMPLE00"


def _signed_fields(
    conditions: list[Any],
    fields: dict[str, str] | None = None,
    *,
    secret: str = SECRET,
    region: str = "eu-west-1",
    expiration: str = "2026-12-02T09:00:00Z",
) -> dict[str, str]:
    """What boto3's generate_presigned_post hands a browser, signed by botocore."""
    request = AWSRequest(method="POST", url="https://bucket.s3.amazonaws.com/")
    request.context["s3-presign-post-fields"] = dict(fields or {})
    request.context["s3-presign-post-policy"] = {
        "expiration": expiration,
        "conditions": list(conditions),
    }
    S3SigV4PostAuth(Credentials(KEY_ID, secret, "token"), "s3", region).add_auth(request)
    signed: dict[str, str] = request.context["s3-presign-post-fields"]
    return signed


def _form(fields: dict[str, str], file: bytes = b"data", filename: str = "a.txt") -> PostForm:
    return PostForm(tuple(fields.items()), file, filename, "text/plain")


def _refusal(call: Any, *args: Any, **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as refused:
        call(*args, **kwargs)
    return refused.value


# -- the signature ------------------------------------------------------------------------


def test_a_botocore_signed_policy_verifies_and_names_its_credential() -> None:
    form = _form({"key": "k", **_signed_fields([{"key": "k"}])})
    auth = post_authorization(form)
    assert auth.scope.access_key_id == KEY_ID
    assert (auth.scope.region, auth.scope.service) == ("eu-west-1", "s3")
    assert auth.session_token == "token"
    verify_post_signature(auth, form, SECRET)


def test_another_secret_or_another_policy_does_not_verify() -> None:
    fields = _signed_fields([{"key": "k"}])
    auth = post_authorization(_form(fields))
    assert _refusal(verify_post_signature, auth, _form(fields), "other").reason is (
        Reason.BAD_SIGNATURE
    )
    other = _form({**fields, "policy": _signed_fields([{"key": "other"}])["policy"]})
    assert _refusal(verify_post_signature, auth, other, SECRET).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"x-amz-algorithm": "AWS4-HMAC-SHA1"}, Reason.INVALID_ARGUMENT),
        ({"AWSAccessKeyId": "AKIA"}, Reason.INVALID_ARGUMENT),
        ({"x-amz-credential": f"{KEY_ID}/20261202/eu-west-1/ec2/aws4_request"}, None),
        ({"x-amz-credential": f"{KEY_ID}/20261201/eu-west-1/s3/aws4_request"}, None),
        ({"x-amz-signature": ""}, Reason.INVALID_ARGUMENT),
    ],
)
def test_auth_fields_are_read_strictly(change: dict[str, str], reason: Reason | None) -> None:
    fields = _signed_fields([])
    fields["x-amz-date"] = "20261202T080000Z"
    fields.update(change)
    refused = _refusal(post_authorization, _form(fields))
    assert refused.reason is (reason or Reason.MALFORMED_SCOPE)


def test_a_form_without_a_policy_is_anonymous() -> None:
    refused = _refusal(post_authorization, _form({"key": "k"}))
    assert refused.reason is Reason.MISSING_AUTH


# -- the policy ---------------------------------------------------------------------------


def _policy(conditions: list[Any], expiration: str = "2026-12-02T09:00:00.000Z") -> str:
    document = {"expiration": expiration, "conditions": conditions}
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    "policy",
    [
        "not base64!",
        base64.b64encode(b"[1, 2]").decode(),
        _policy([["between", "$key", "a"]]),
        _policy([["starts-with", "key", "a"]]),
        _policy([["content-length-range", 10, 1]]),
        _policy([["content-length-range", "a", 1]]),
        _policy([{"key": 1}]),
        _policy([], expiration="tomorrow"),
        _policy([], expiration="2026-12-02T09:00:00"),
    ],
)
def test_unreadable_policies_are_refused(policy: str) -> None:
    assert _refusal(read_policy, policy).reason is Reason.INVALID_POLICY


def test_an_expired_policy_is_refused_as_s3_says() -> None:
    policy = read_policy(_policy([{"key": "k"}], expiration="2026-12-02T07:59:59Z"))
    refused = _refusal(check_policy, policy, _form({"key": "k"}), "b", now=NOW)
    assert (refused.reason, refused.message) == (
        Reason.ACCESS_DENIED,
        "Invalid according to Policy: Policy expired.",
    )


@given(value=st.text(max_size=20), prefix=st.text(max_size=5))
def test_starts_with_holds_exactly_for_values_with_the_prefix(value: str, prefix: str) -> None:
    policy = read_policy(_policy([["starts-with", "$key", prefix]]))
    form = _form({"key": value})
    if value.startswith(prefix):
        check_policy(policy, form, "b", now=NOW)
    else:
        refused = _refusal(check_policy, policy, form, "b", now=NOW)
        assert refused.reason is Reason.ACCESS_DENIED
        assert refused.message.startswith("Invalid according to Policy: Policy Condition failed")


@given(
    value=st.text(max_size=10),
    wanted=st.text(max_size=10),
    form_name=st.sampled_from(["acl", "ACL", "Acl"]),
)
def test_eq_is_exact_and_field_names_are_case_blind(
    value: str, wanted: str, form_name: str
) -> None:
    for condition in ({"acl": wanted}, ["eq", "$acl", wanted], {"$ACL": wanted}):
        policy = read_policy(_policy([condition]))
        form = _form({form_name: value})
        if value == wanted:
            check_policy(policy, form, "b", now=NOW)
        else:
            assert _refusal(check_policy, policy, form, "b", now=NOW).reason is (
                Reason.ACCESS_DENIED
            )


@given(low=st.integers(0, 50), span=st.integers(0, 50), size=st.integers(0, 120))
def test_content_length_range_bounds_the_file_size(low: int, span: int, size: int) -> None:
    policy = read_policy(_policy([["content-length-range", low, low + span]]))
    form = _form({}, file=b"x" * size)
    if size > low + span:
        assert _refusal(check_policy, policy, form, "b", now=NOW).reason is (
            Reason.ENTITY_TOO_LARGE
        )
    elif size < low:
        assert _refusal(check_policy, policy, form, "b", now=NOW).reason is (
            Reason.ENTITY_TOO_SMALL
        )
    else:
        check_policy(policy, form, "b", now=NOW)


@given(
    names=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True), unique=True, max_size=6),
    covered=st.sets(st.integers(0, 5)),
)
def test_every_field_but_the_exempt_ones_needs_a_condition(
    names: list[str], covered: set[int]
) -> None:
    named = [n for i, n in enumerate(names) if i in covered]
    policy = read_policy(_policy([["starts-with", f"${n}", ""] for n in named]))
    fields = {n: "v" for n in names}
    fields |= {"policy": "p", "x-amz-signature": "s", "x-ignore-me": "i"}
    extra = [
        n
        for n in names
        if n not in named
        and n not in {"policy", "x-amz-signature", "file"}
        and not n.startswith("x-ignore-")
    ]
    if extra:
        refused = _refusal(check_policy, policy, _form(fields), "b", now=NOW)
        assert (
            refused.message
            == f"Invalid according to Policy: Extra input fields: {', '.join(extra)}"
        )
    else:
        check_policy(policy, _form(fields), "b", now=NOW)


def test_the_bucket_condition_is_the_bucket_posted_to() -> None:
    policy = read_policy(_policy([{"bucket": "mine"}, {"key": "k"}]))
    check_policy(policy, _form({"key": "k"}), "mine", now=NOW)
    refused = _refusal(check_policy, policy, _form({"key": "k"}), "theirs", now=NOW)
    assert refused.message.endswith('["eq", "$bucket", "mine"]')


def test_a_condition_on_a_missing_field_fails() -> None:
    policy = read_policy(_policy([["starts-with", "$content-type", ""]]))
    assert _refusal(check_policy, policy, _form({}), "b", now=NOW).reason is Reason.ACCESS_DENIED


def test_each_content_type_of_a_list_must_have_the_prefix() -> None:
    policy = read_policy(_policy([["starts-with", "$Content-Type", "image/"]]))
    check_policy(policy, _form({"Content-Type": "image/png, image/gif"}), "b", now=NOW)
    form = _form({"Content-Type": "image/png, text/html"})
    assert _refusal(check_policy, policy, form, "b", now=NOW).reason is Reason.ACCESS_DENIED


def test_filename_is_substituted_in_the_key() -> None:
    assert object_key(_form({"key": "up/${filename}"}, filename="cat.png")) == "up/cat.png"
    assert object_key(_form({"key": "fixed"}, filename="cat.png")) == "fixed"
    assert _refusal(object_key, _form({})).reason is Reason.INVALID_ARGUMENT
    assert _refusal(object_key, _form({"key": "${filename}"}, filename="")).reason is (
        Reason.INVALID_ARGUMENT
    )


# -- reading the form ---------------------------------------------------------------------


@given(
    fields=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True).filter(
            lambda n: n.lower() != "file"
        ),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
        max_size=8,
    ).filter(lambda d: len({k.lower() for k in d}) == len(d)),
    data=st.binary(max_size=200),
)
def test_a_form_reads_back_as_it_was_encoded(fields: dict[str, str], data: bytes) -> None:
    body, content_type = urllib3.encode_multipart_formdata(
        [*fields.items(), ("file", ("name.bin", data, "application/x-thing"))]
    )
    form = parse_post_form(body, content_type)
    assert dict(form.fields) == fields
    assert (form.file, form.filename, form.file_content_type) == (
        data,
        "name.bin",
        "application/x-thing",
    )


def _encoded(parts: list[tuple[str, Any]]) -> tuple[bytes, str]:
    return urllib3.encode_multipart_formdata(parts)


@pytest.mark.parametrize(
    ("body_and_type", "reason"),
    [
        (
            (
                b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1',
                "multipart/form-data; boundary=x",
            ),
            Reason.MALFORMED_POST,
        ),
        ((b"", "multipart/form-data"), Reason.MALFORMED_POST),
        (_encoded([("key", "k")]), Reason.INVALID_ARGUMENT),  # no file
        (_encoded([("key", "k"), ("KEY", "j"), ("file", ("f", b""))]), Reason.INVALID_ARGUMENT),
        (
            _encoded([("key", "k" * (MAX_FIELD_BYTES + 1)), ("file", ("f", b""))]),
            Reason.INVALID_ARGUMENT,
        ),
        (_encoded([(f"f{i}", "v") for i in range(MAX_PARTS + 1)]), Reason.MALFORMED_POST),
        (_encoded([("key", b"\xff\xfe"), ("file", ("f", b""))]), Reason.MALFORMED_POST),
    ],
)
def test_forms_that_cannot_be_read_are_refused(
    body_and_type: tuple[bytes, str], reason: Reason
) -> None:
    assert _refusal(parse_post_form, *body_and_type).reason is reason


def test_what_follows_the_file_is_ignored_as_s3_does() -> None:
    form = parse_post_form(*_encoded([("key", "k"), ("file", ("f", b"1")), ("acl", "public")]))
    assert form.fields == (("key", "k"),)


# -- the upstream form --------------------------------------------------------------------


def test_the_upstream_form_carries_the_read_fields_and_a_policy_pinning_them() -> None:
    client = _form(
        {
            "key": "up/${filename}",
            "acl": "private",
            "x-amz-meta-a": "1",
            "x-ignore-note": "n",
            **_signed_fields([]),
        },
        file=b"12345",
        filename="f.txt",
    )
    fields = forwarded_fields(client, object_key(client))
    assert fields == [("key", "up/f.txt"), ("acl", "private"), ("x-amz-meta-a", "1")]
    assert identification_headers(fields) == {"x-amz-acl": "private", "x-amz-meta-a": "1"}
    upstream = AwsCredentials("ASIAUPSTREAM", "upstream-secret", "upstream-token", NOW)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signed = dict(
            upstream_fields(
                fields, bucket="b", size=5, credentials=upstream, region="eu-west-1", now=NOW
            )
        )
    assert signed["x-amz-credential"] == "ASIAUPSTREAM/20261202/eu-west-1/s3/aws4_request"
    assert signed["x-amz-security-token"] == "upstream-token"
    auth = post_authorization(_form(signed))
    verify_post_signature(auth, _form(signed), "upstream-secret")
    policy = read_policy(signed["policy"])
    assert policy.expiration == NOW + timedelta(minutes=5)
    form = PostForm(tuple(signed.items()), b"12345")
    check_policy(policy, form, "b", now=NOW)  # the upstream accepts exactly this form
    for other in (PostForm(tuple(signed.items()), b"123456"),):
        assert _refusal(check_policy, policy, other, "b", now=NOW).reason is (
            Reason.ENTITY_TOO_LARGE
        )
    assert _refusal(check_policy, policy, form, "other-bucket", now=NOW).reason is (
        Reason.ACCESS_DENIED
    )
    body, content_type = encode_form(list(signed.items()), _form({}, b"12345", "f.txt"))
    sent = parse_post_form(body, content_type)
    assert sent.get("key") == "up/f.txt" and sent.file == b"12345"


def test_a_field_the_gateway_does_not_forward_is_refused() -> None:
    client = _form({"key": "k", "tagging": "<Tagging/>"})
    assert _refusal(forwarded_fields, client, "k").reason is Reason.INVALID_ARGUMENT
