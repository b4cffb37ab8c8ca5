"""Whatever botocore signs, the gateway verifies; whatever is changed, it refuses."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import (
    check_payload_sha256,
    is_sha256_hex,
    parse_authorization,
    payload_hash_for,
    verify_signature,
)

CREDS = Credentials("ASIAEXAMPLEEXAMPLE00", "secret/Key+example", "session-token")
Wire = tuple[str, str, str, list[tuple[str, str]], bytes]

_TEXT = st.characters(blacklist_categories=("Cs", "Cc"))
# Path segments, with the awkward ones drawn often: empty ('//'), dot segments, spaces, '+',
# '?', '%', '%20' as literal text, and UTF-8.
segment = st.one_of(
    st.sampled_from(["", ".", "..", " ", "+", "?", "%", "%20", "a b", "ሴ", "~", "=&"]),
    st.text(alphabet=_TEXT, max_size=12),
)
s3_key = st.lists(segment, min_size=1, max_size=5).map("/".join).filter(lambda k: k.strip("/"))
param_keys = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10),
    st.text(alphabet=_TEXT, min_size=1, max_size=10),
).filter(lambda k: not k.startswith("X-Amz-"))
values = st.text(alphabet=_TEXT, max_size=20)
query = st.lists(st.tuples(param_keys, values), max_size=4)
header_names = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).map(
        lambda n: f"x-amz-meta-{n}"
    ),
    st.sampled_from(["Content-Type", "X-Custom", "Cache-Control", "x-amz-meta-Dup"]),
)
# Repeated names are allowed: botocore signs every value, joined with ','.
headers = st.lists(st.tuples(header_names, values), max_size=5)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"])
bodies = st.binary(max_size=200)


def build(
    method: str, url: str, params: list[tuple[str, str]], extra: list[tuple[str, str]], body: bytes
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, params=cast(Any, params), data=body)
    for name, value in extra:
        request.headers.add_header(name, value)
    return request


def wire(request: AWSRequest) -> Wire:
    """What arrives: the prepared URL and body, and every header botocore signed, repeated
    names included (botocore's own prepared headers keep only the last of a name)."""
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    pairs = [(k, str(v)) for k, v in request.headers.items()]
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
    if auth.content_sha256 is not None and is_sha256_hex(auth.content_sha256):
        check_payload_sha256(hashlib.sha256(body).hexdigest(), auth.content_sha256)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(method=methods, key=s3_key, params=query, extra=headers, body=bodies, presign=st.booleans())
def test_s3_requests_signed_by_botocore_verify(
    method: str,
    key: str,
    params: list[tuple[str, str]],
    extra: list[tuple[str, str]],
    body: bytes,
    presign: bool,
) -> None:
    # The key encoded once, as botocore's serializer does; '//' and dot segments are kept.
    url = "http://127.0.0.1:8080/bucket/" + quote(key, safe="/~")
    if presign:  # presigned URLs are followed by browsers and curl: GET, no body
        method, body = "GET", b""
    request = build(method, url, params, extra, body)
    if presign:
        S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=300).add_auth(request)
    else:
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    method_, path, query_string, pairs, sent = wire(request)
    assert path.endswith(quote(key, safe="/~"))
    verify_wire(method_, path, query_string, pairs, sent)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    service=st.sampled_from(["ec2", "dynamodb", "lambda", "sts", "execute-api"]),
    method=methods,
    path=st.lists(segment, max_size=4).map(lambda p: "/" + "/".join(quote(s, safe="") for s in p)),
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
    extra: list[tuple[str, str]],
    body: bytes,
    presign: bool,
) -> None:
    if presign:
        method, body = "GET", b""
    request = build(method, "http://127.0.0.1:8080" + path, params, extra, body)
    if presign:
        SigV4QueryAuth(CREDS, service, "eu-west-1", expires=300).add_auth(request)
    else:
        SigV4Auth(CREDS, service, "eu-west-1").add_auth(request)
    verify_wire(*wire(request))


@settings(max_examples=100)
@given(position=st.integers(min_value=0, max_value=63), data=st.data(), presign=st.booleans())
def test_any_change_to_the_signature_is_refused(
    position: int, data: st.DataObject, presign: bool
) -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1:8080/bucket/key?list-type=2")
    if presign:
        S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=300).add_auth(request)
    else:
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    method, path, query_string, pairs, body = wire(request)
    auth = parse_authorization(method, path, query_string, pairs)
    signature = auth.signature
    replacement = data.draw(
        st.sampled_from([c for c in "0123456789abcdef" if c != signature[position]])
    )
    forged = signature[:position] + replacement + signature[position + 1 :]
    if presign:
        query_string = query_string.replace(signature, forged)
    else:
        pairs = [(k, v.replace(signature, forged)) for k, v in pairs]
    with pytest.raises(Refused) as info:
        verify_wire(method, path, query_string, pairs, body)
    assert info.value.reason is Reason.BAD_SIGNATURE


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(key=s3_key, other=s3_key)
def test_a_signature_for_one_s3_key_does_not_verify_another(key: str, other: str) -> None:
    """Distinct keys never share a canonical path, however they are spelled."""
    request = AWSRequest(method="GET", url="http://127.0.0.1:8080/bucket/" + quote(key, safe="/~"))
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    method, _, query_string, pairs, body = wire(request)
    moved = "/bucket/" + quote(other, safe="/~")
    if other == key:
        verify_wire(method, moved, query_string, pairs, body)
    else:
        with pytest.raises(Refused) as info:
            verify_wire(method, moved, query_string, pairs, body)
        assert info.value.reason is Reason.BAD_SIGNATURE
