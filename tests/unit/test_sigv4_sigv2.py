"""SigV2 presigned S3 URLs: verified against URLs that botocore's own HmacV1QueryAuth makes
(the signer boto3 and the AWS CLI v1 use by default in us-east-1) and AWS's documented
example; anything the signature does not cover is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.sigv2 import (
    SUB_RESOURCES,
    QueryV2,
    is_presigned_v2,
    parse_query_v2,
    verify_query_v2,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = Credentials("ASIAEXAMPLEEXAMPLE00", SECRET, "iamgate1.token+with/odd=chars")
EXPIRES = 1_900_000_000
BEFORE = datetime.fromtimestamp(EXPIRES - 60, UTC)
Wire = tuple[str, str, str, list[tuple[str, str]]]


class _FixedExpiry(HmacV1QueryAuth):
    """botocore's signer with the expiry fixed, so a vector does not depend on the clock."""

    def _get_date(self) -> str:
        return str(EXPIRES)


def presigned(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    virtual_bucket: str | None = None,
    creds: Credentials = CREDS,
) -> Wire:
    """A URL as botocore presigns it, and the request of whoever follows it: the same
    Content-Type / Content-MD5 headers, no x-amz-* header (those went into the query)."""
    host = f"{virtual_bucket}.gw.example" if virtual_bucket else "gw.example"
    request = AWSRequest(
        method=method, url=f"https://{host}{path}" + (f"?{query}" if query else "")
    )
    for name, value in (headers or {}).items():
        request.headers[name] = value
    if virtual_bucket:
        request.auth_path = f"/{virtual_bucket}{path}"
    _FixedExpiry(creds).add_auth(request)
    parts = urlsplit(str(request.url))
    sent = [
        (name, value)
        for name, value in (headers or {}).items()
        if name.lower() in ("content-type", "content-md5")
    ]
    return method, parts.path, parts.query, [("Host", host), *sent]


def check(
    wire: Wire,
    *,
    now: datetime = BEFORE,
    secret: str = SECRET,
    virtual_bucket: str | None = None,
) -> QueryV2:
    method, path, query, headers = wire
    assert is_presigned_v2(query, headers)
    parsed = parse_query_v2(method, query, headers)
    verify_query_v2(parsed, method, path, secret, virtual_bucket=virtual_bucket, now=now)
    return parsed


def refusal(wire: Wire, **kwargs: object) -> Refused:
    with pytest.raises(Refused) as info:
        check(wire, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_awss_documented_example_verifies() -> None:
    """The S3 developer guide's query-string example (no session token; the guide has since
    renamed its bucket, but this signature is for the original `johnsmith`)."""
    query = (
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
        "&Expires=1175139620"
    )
    wire: Wire = ("GET", "/photos/puppy.jpg", query, [("Host", "johnsmith.gw")])
    now = datetime(2007, 3, 29, tzinfo=UTC)
    parsed = check(wire, now=now, virtual_bucket="johnsmith")
    assert parsed.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert parsed.session_token is None
    with pytest.raises(Refused):
        check(wire, now=now, virtual_bucket="otherbucket")


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("GET", "/bucket/report.csv", "", {}),
        ("HEAD", "/bucket/report.csv", "", {}),
        ("PUT", "/bucket/up/load.bin", "", {"Content-Type": "text/plain"}),
        ("PUT", "/bucket/up/load.bin", "", {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}),
        ("GET", "/bucket/k%20y/%C3%BC%2Bc.txt", "versionId=3%2Fx", {}),
        (
            "GET",
            "/bucket/key",
            "response-content-disposition=attachment%3B%20filename%3D%22a%20b.txt%22"
            "&response-content-type=text%2Fplain",
            {},
        ),
        ("PUT", "/bucket/key", "partNumber=2&uploadId=abc", {}),
        ("PUT", "/bucket/key", "", {"x-amz-acl": "public-read", "x-amz-meta-a": " v "}),
        ("GET", "/bucket/key", "acl", {}),
    ],
)
def test_urls_botocore_presigns_verify(
    method: str, path: str, query: str, headers: dict[str, str]
) -> None:
    parsed = check(presigned(method, path, query=query, headers=headers))
    assert parsed.session_token == CREDS.token
    assert parsed.access_key_id == CREDS.access_key
    auth = parsed.authorization()
    assert (auth.scope.service, auth.scope.region, auth.presigned) == ("s3", "us-east-1", True)


def test_virtual_hosted_urls_sign_the_bucket() -> None:
    wire = presigned("GET", "/key", virtual_bucket="my-bucket")
    check(wire, virtual_bucket="my-bucket")
    assert refusal(wire, virtual_bucket="other-bucket").reason is Reason.BAD_SIGNATURE
    assert refusal(wire).reason is Reason.BAD_SIGNATURE  # the same URL, path-style


def test_the_wrong_secret_or_a_changed_request_is_refused() -> None:
    method, path, query, headers = presigned("PUT", "/bucket/key", headers={"Content-Type": "a/b"})
    assert refusal((method, path, query, headers), secret="x" + SECRET).reason is (
        Reason.BAD_SIGNATURE
    )
    for changed in (
        ("GET", path, query, headers),
        (method, "/bucket/other", query, headers),
        (method, "/other/key", query, headers),
        (method, path, query, [("Host", "gw.example"), ("Content-Type", "text/html")]),
        (method, path, query, [("Host", "gw.example")]),
        (method, path, query.replace(f"Expires={EXPIRES}", f"Expires={EXPIRES + 1}"), headers),
        (method, path, query + "&versionId=1", headers),
        (method, path, query + "&x-amz-acl=public-read", headers),
        (method, path, query, [*headers, ("x-amz-acl", "public-read")]),
    ):
        assert refusal(changed).reason is Reason.BAD_SIGNATURE, changed


def test_an_expired_url_says_so_as_s3_does_after_the_signature() -> None:
    wire = presigned("GET", "/bucket/key")
    now = datetime.fromtimestamp(EXPIRES + 1, UTC)
    refused = refusal(wire, now=now)
    assert refused.reason is Reason.PRESIGN_EXPIRED
    assert refused.message == "Request has expired"
    assert refused.details == {
        "Expires": "2030-03-17T17:46:40Z",
        "ServerTime": "2030-03-17T17:46:41Z",
    }
    check(wire, now=datetime.fromtimestamp(EXPIRES, UTC))  # valid up to its second
    assert refusal(wire, now=now, secret="other").reason is Reason.BAD_SIGNATURE


def test_parameters_the_signature_does_not_cover_are_refused() -> None:
    method, _, query, headers = presigned("GET", "/bucket/")
    for extra in ("list-type=2", "prefix=secret", "attributes", "legal-hold", "x-id=GetObject"):
        with pytest.raises(Refused) as info:
            parse_query_v2(method, f"{query}&{extra}", headers)
        assert info.value.reason is Reason.UNSIGNED_HEADER
        assert "not covered" in info.value.message


@pytest.mark.parametrize("method", ["POST", "DELETE", "OPTIONS"])
def test_only_get_put_and_head(method: str) -> None:
    _, _, query, headers = presigned(method, "/bucket/key")
    with pytest.raises(Refused) as info:
        parse_query_v2(method, query, headers)
    assert info.value.reason is Reason.ACCESS_DENIED
    assert "GET, PUT and HEAD" in info.value.message


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: q + "&Signature=AAAAAAAAAAAAAAAAAAAAAAAAAAA%3D",
        lambda q: q + "&Expires=1",
        lambda q: q.replace("Expires=", "expires="),
        lambda q: q.replace("Expires=", "Expires=-"),
        lambda q: q + "&x-amz-security-token=other",
        lambda q: q + "&uploads&uploads",
        lambda q: q.replace("&Expires", "&Expires=1&X-Expires"),
    ],
)
def test_ambiguous_authentication_is_refused(tamper: object) -> None:
    method, _, query, headers = presigned("GET", "/bucket/key")
    assert callable(tamper)
    with pytest.raises(Refused) as info:
        parse_query_v2(method, tamper(query), headers)
    assert info.value.reason in (
        Reason.MALFORMED_AUTH,
        Reason.AMBIGUOUS_REQUEST,
        Reason.UNSIGNED_HEADER,
    )


def test_a_token_both_in_the_query_and_a_header_is_refused() -> None:
    method, _, query, headers = presigned("GET", "/bucket/key")
    with pytest.raises(Refused) as info:
        parse_query_v2(method, query, [*headers, ("X-Amz-Security-Token", "t")])
    assert info.value.reason is Reason.AMBIGUOUS_REQUEST


def test_sigv4_presigning_and_header_auth_are_not_sigv2() -> None:
    _, _, query, headers = presigned("GET", "/bucket/key")
    assert not is_presigned_v2(query + "&X-Amz-Signature=00", headers)
    assert not is_presigned_v2(query, [*headers, ("Authorization", "AWS a:b")])
    assert not is_presigned_v2("versionId=1", headers)
    query_api = "Action=DescribeRegions&AWSAccessKeyId=A&SignatureVersion=2&Signature=x"
    assert not is_presigned_v2(query_api, headers)  # EC2's SigV2: refused as before


def test_a_plus_left_unencoded_in_the_signature_still_verifies() -> None:
    """Base64 holds '+', which arrives as a space when a hand-made URL leaves it raw."""
    for n in range(40):
        method, path, query, headers = presigned("GET", f"/bucket/key{n}")
        signature = next(p for p in query.split("&") if p.startswith("Signature="))
        if "%2B" in signature:
            raw = query.replace(signature, signature.replace("%2B", "+"))
            check((method, path, raw, headers))
            return
    raise AssertionError("no signature with a '+' in 40 tries")


_key_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
)
_sub = st.dictionaries(st.sampled_from(sorted(SUB_RESOURCES)), st.none() | _key_text, max_size=3)
_amz = st.dictionaries(
    st.from_regex(r"x-amz-meta-[a-z0-9]{1,8}", fullmatch=True),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20),
    max_size=3,
)


def _query(subs: dict[str, str | None]) -> str:
    return "&".join(
        quote(k, safe="-_.~") if v is None else f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in subs.items()
    )


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "PUT", "HEAD"]),
    key=_key_text,
    subs=_sub,
    amz=_amz,
    content_type=st.none() | st.sampled_from(["text/plain", "application/octet-stream"]),
)
def test_any_url_botocore_presigns_verifies_and_any_other_key_does_not(
    method: str,
    key: str,
    subs: dict[str, str | None],
    amz: dict[str, str],
    content_type: str | None,
) -> None:
    headers = dict(amz)
    if content_type:
        headers["Content-Type"] = content_type
    path = "/bucket/" + quote(key, safe="/~")
    wire = presigned(method, path, query=_query(subs), headers=headers)
    check(wire)
    _, _, query, sent = wire
    other = path + "x"
    with pytest.raises(Refused) as info:
        check((method, other, query, sent))
    assert info.value.reason is Reason.BAD_SIGNATURE
