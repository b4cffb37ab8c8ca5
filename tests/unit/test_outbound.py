"""What crosses the gateway to the upstream, and how it is re-encoded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from iamgate.aws.upstream_credentials import AwsCredentials
from iamgate.proxy.outbound import (
    _botocore_signed,
    canonical_path,
    canonical_query,
    forwarded_headers,
    sign_upstream,
)


def test_only_signed_or_harmless_headers_cross() -> None:
    headers = [
        ("Host", "127.0.0.1:8080"),
        ("Authorization", "AWS4-HMAC-SHA256 ..."),
        ("X-Amz-Date", "20261124T000000Z"),
        ("X-Amz-Security-Token", "iamgate1...."),
        ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ("X-Amz-Meta-Owner", "dana"),
        ("X-Amz-Acl", "public-read"),  # not signed: must not be slipped in
        ("x-moto-account-id", "111111111111"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "5"),
        ("Content-Encoding", "aws-chunked,gzip"),
        ("Range", "bytes=0-10"),
        ("User-Agent", "aws-cli/1.46"),
    ]
    signed = ("host", "x-amz-date", "x-amz-meta-owner", "x-moto-account-id", "content-type")
    out = forwarded_headers(headers, signed)
    assert out == [
        ("X-Amz-Meta-Owner", "dana"),
        ("Content-Type", "text/plain"),
        ("Content-Encoding", "gzip"),
        ("Range", "bytes=0-10"),
        ("User-Agent", "aws-cli/1.46"),
    ]


def test_presigning_is_removed_and_the_rest_re_encoded() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F1&X-Amz-Signature=ff"
        "&prefix=a+b%20c&uploads&list-type=2&X-Amz-Security-Token=t"
    )
    assert canonical_query(query) == "prefix=a%20b%20c&uploads&list-type=2"


def test_paths_keep_their_meaning() -> None:
    assert canonical_path("/bucket/with%20space/%E2%98%83+plus") == (
        "/bucket/with%20space/%E2%98%83%2Bplus"
    )
    assert canonical_path("") == "/"
    assert canonical_path("/a//b/./c") == "/a//b/./c"


@given(st.text(min_size=1, max_size=40))
def test_re_encoding_is_stable(key: str) -> None:
    from urllib.parse import quote

    once = canonical_path("/b/" + quote(key, safe="/"))
    assert canonical_path(once) == once


# The lean upstream signer against botocore's own (the reference it replaces on the hot
# path): the same headers, in the same order, with the same signature, on generated requests.

_NOW = datetime(2026, 12, 2, 12, 34, 56, tzinfo=UTC)
_NAMES = st.sampled_from(
    [
        "Content-Type",
        "X-Amz-Target",
        "x-amz-meta-owner",
        "X-Amz-Meta-Owner",
        "Range",
        "User-Agent",
        "Expect",
        "Content-MD5",
        "X-Amz-Content-SHA256",
        "X-Amz-Security-Token",
        "X-Amz-Date",
        "Authorization",
        "Host",
        "x-amzn-query-mode",
        "traceparent",
    ]
)
_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.text(st.sampled_from(" \ta,b"), max_size=8),  # whitespace to trim and fold
)
_QUERY = st.lists(
    st.tuples(
        st.sampled_from(["prefix", "list-type", "uploads", "Action", "a", "b"]),
        st.text(st.sampled_from("ab%20+~-_.=&"), max_size=6),
    ),
    max_size=4,
).map(lambda pairs: "&".join(f"{k}={quote(v, safe='-_.~')}" if v else k for k, v in pairs))
_PATHS = st.sampled_from(["", "/", "/bucket/key", "/b//a/./k/../x", "/b/with%20space", "/a/b/"])
_HOSTS = st.sampled_from(
    [
        "https://s3.us-east-1.amazonaws.com",
        "https://sts.amazonaws.com:443",
        "http://127.0.0.1:5000",
        "http://LOCALHOST:80",
        "http://[::1]:9000",
        "https://[fd00::1]",
    ]
)


def _both(**request: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with mock.patch("botocore.auth.get_current_datetime", lambda: _NOW.replace(tzinfo=None)):
        return sign_upstream(**request, now=_NOW), _botocore_signed(**request)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]),
    base=_HOSTS,
    path=_PATHS,
    query=_QUERY,
    headers=st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
    body=st.one_of(st.none(), st.binary(max_size=64)),
    payload_hash=st.one_of(st.none(), st.just("UNSIGNED-PAYLOAD"), st.just("ab" * 32)),
    token=st.sampled_from(["", "upstream-token"]),
    s3=st.booleans(),
)
def test_the_lean_signer_signs_as_botocore_does(
    method: str,
    base: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    payload_hash: str | None,
    token: str,
    s3: bool,
) -> None:
    url = base + path + (f"?{query}" if query else "")
    lean, reference = _both(
        method=method,
        url=url,
        headers=headers,
        body=body,
        payload_hash=payload_hash,
        credentials=AwsCredentials("ASIAUPSTREAM", "secret/key+1", token, _NOW),
        signing_name="s3" if s3 else "sts",
        region="eu-west-1",
        s3=s3,
    )
    assert lean == reference


def test_what_the_lean_signer_does_not_mirror_is_signed_by_botocore() -> None:
    # A Date header (botocore signs a new one) and a value that is not ASCII.
    for headers in ([("Date", "Wed, 02 Dec 2026 12:00:00 GMT")], [("x-amz-meta-n", "café")]):
        lean, reference = _both(
            method="GET",
            url="https://s3.us-east-1.amazonaws.com/b/k",
            headers=headers,
            body=None,
            payload_hash="UNSIGNED-PAYLOAD",
            credentials=AwsCredentials("ASIAUPSTREAM", "secret", "token", _NOW),
            signing_name="s3",
            region="us-east-1",
            s3=True,
        )
        assert lean == reference
