"""Whatever botocore signs, the gateway verifies; whatever is changed, it refuses."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.compat import quote
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import parse_authorization, payload_hash_for, verify_signature

CREDS = Credentials("ASIAEXAMPLEEXAMPLE00", "secret/Key+example", "session-token")

segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=12
)
s3_key = st.lists(segment, min_size=1, max_size=4).map("/".join).filter(lambda k: k.strip("/"))
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10)
values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
query = st.lists(st.tuples(names, values), max_size=4)
headers = st.dictionaries(names.map(lambda n: f"x-amz-meta-{n}"), values.map(str.strip), max_size=3)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"])
bodies = st.binary(max_size=200)


def wire(request: AWSRequest) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    pairs = [(k, str(v)) for k, v in prepared.headers.items()]
    pairs.append(("host", parts.netloc))
    body = prepared.body or b""
    return (
        prepared.method,
        parts.path or "/",
        parts.query,
        pairs,
        body if isinstance(body, bytes) else str(body).encode(),
    )


def verify_wire(
    method: str, path: str, query_string: str, pairs: list[tuple[str, str]], body: bytes
) -> None:
    auth = parse_authorization(method, path, query_string, pairs)
    verify_signature(
        auth,
        method,
        path,
        query_string,
        pairs,
        CREDS.secret_key,
        payload_hash_for(auth, body),
        now=datetime.now(UTC),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(method=methods, key=s3_key, params=query, extra=headers, body=bodies, presign=st.booleans())
def test_s3_requests_signed_by_botocore_verify(
    method: str,
    key: str,
    params: list[tuple[str, str]],
    extra: dict[str, str],
    body: bytes,
    presign: bool,
) -> None:
    url = "http://127.0.0.1:8080/bucket/" + quote(key, safe="/~")
    if presign:  # presigned URLs are followed by browsers and curl: GET, no body
        method, body = "GET", b""
    request = AWSRequest(
        method=method, url=url, params=cast(Any, params), headers=dict(extra), data=body
    )
    if presign:
        S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=300).add_auth(request)
    else:
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    method_, path, query_string, pairs, sent = wire(request)
    verify_wire(method_, path, query_string, pairs, sent)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    service=st.sampled_from(["ec2", "dynamodb", "lambda", "sts"]),
    method=methods,
    path=st.lists(segment, max_size=3).map(lambda p: "/" + "/".join(quote(s, safe="") for s in p)),
    params=query,
    extra=headers,
    body=bodies,
    presign=st.booleans(),
)
def test_other_services_signed_by_botocore_verify(
    service: str,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    extra: dict[str, str],
    body: bytes,
    presign: bool,
) -> None:
    if presign:
        method, body = "GET", b""
    request = AWSRequest(
        method=method,
        url="http://127.0.0.1:8080" + path,
        params=cast(Any, params),
        headers=dict(extra),
        data=body,
    )
    if presign:
        SigV4QueryAuth(CREDS, service, "eu-west-1", expires=300).add_auth(request)
    else:
        SigV4Auth(CREDS, service, "eu-west-1").add_auth(request)
    verify_wire(*wire(request))


@settings(max_examples=60)
@given(position=st.integers(min_value=0, max_value=63), data=st.data())
def test_any_change_to_the_signature_is_refused(position: int, data: st.DataObject) -> None:
    request = AWSRequest(
        method="POST", url="http://127.0.0.1:8080/", data=b"Action=GetCallerIdentity"
    )
    SigV4Auth(CREDS, "sts", "us-east-1").add_auth(request)
    method, path, query_string, pairs, body = wire(request)
    auth_header = dict(pairs)["Authorization"]
    signature = auth_header[-64:]
    replacement = data.draw(
        st.sampled_from([c for c in "0123456789abcdef" if c != signature[position]])
    )
    forged = signature[:position] + replacement + signature[position + 1 :]
    pairs = [(k, auth_header[:-64] + forged if k == "Authorization" else v) for k, v in pairs]
    with pytest.raises(Refused) as info:
        verify_wire(method, path, query_string, pairs, body)
    assert info.value.reason is Reason.BAD_SIGNATURE


@given(st.text(max_size=300))
def test_garbage_authorization_only_ever_raises_refused(text: str) -> None:
    with contextlib.suppress(Refused):
        parse_authorization("GET", "/", "", [("Authorization", text), ("Host", "x")])


@given(st.text(max_size=300))
def test_garbage_presigned_query_only_ever_raises_refused(text: str) -> None:
    with contextlib.suppress(Refused):
        parse_authorization("GET", "/", "X-Amz-Algorithm=AWS4-HMAC-SHA256&" + text, [("Host", "x")])
