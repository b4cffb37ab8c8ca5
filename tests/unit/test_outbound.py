"""What crosses the gateway to the upstream, and how it is re-encoded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iamgate.proxy.outbound import canonical_path, canonical_query, forwarded_headers


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
