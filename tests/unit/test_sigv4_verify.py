"""Verification beyond the signature itself: the clock, presigned expiry, the payload hash,
the signing key, and the canonical forms of paths and queries."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import (
    Authorization,
    derive_signing_key,
    parse_authorization,
    payload_hash_for,
    verify_signature,
)
from iamgate.sigv4.canonical import canonical_path, canonical_query

CREDS = Credentials("AKIDEXAMPLEEXAMPLE00", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
Wire = tuple[str, str, str, list[tuple[str, str]], bytes]


def signed(service: str, *, presign: bool = False, expires: int = 300) -> Wire:
    """A request signed now by botocore, as it arrives on the wire."""
    request = AWSRequest(method="GET", url="https://gateway.example/some/path?Action=List")
    signer: SigV4Auth
    if presign:
        query_cls = S3SigV4QueryAuth if service == "s3" else SigV4QueryAuth
        signer = query_cls(CREDS, service, "us-east-1", expires=expires)
    else:
        header_cls = S3SigV4Auth if service == "s3" else SigV4Auth
        signer = header_cls(CREDS, service, "us-east-1")
    signer.add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = [(k, str(v)) for k, v in prepared.headers.items()] + [("Host", parts.netloc)]
    return prepared.method, parts.path, parts.query, headers, b""


def verify_at(wire: Wire, delta: timedelta, *, secret: str = CREDS.secret_key) -> Authorization:
    method, path, query, headers, body = wire
    auth = parse_authorization(method, path, query, headers)
    verify_signature(
        auth,
        method,
        path,
        query,
        headers,
        secret,
        payload_hash_for(auth, body),
        now=auth.timestamp + delta,
    )
    return auth


def refused_at(wire: Wire, delta: timedelta, *, secret: str = CREDS.secret_key) -> Refused:
    with pytest.raises(Refused) as info:
        verify_at(wire, delta, secret=secret)
    assert CREDS.secret_key not in info.value.message
    return info.value


@pytest.mark.parametrize("sign", [1, -1])
def test_header_auth_allows_five_minutes_of_skew_outside_s3(sign: int) -> None:
    wire = signed("ec2")
    verify_at(wire, sign * timedelta(minutes=4, seconds=59))
    verify_at(wire, sign * timedelta(minutes=5))
    refused = refused_at(wire, sign * timedelta(minutes=5, seconds=1))
    assert refused.reason is Reason.SKEWED_CLOCK
    expected = "Signature expired" if sign > 0 else "Signature not yet current"
    assert refused.message.startswith(expected)


@pytest.mark.parametrize("sign", [1, -1])
def test_s3_allows_fifteen_minutes_of_skew(sign: int) -> None:
    wire = signed("s3")
    verify_at(wire, sign * timedelta(minutes=14))
    verify_at(wire, sign * timedelta(minutes=15))
    assert refused_at(wire, sign * timedelta(minutes=15, seconds=1)).reason is (Reason.SKEWED_CLOCK)


def test_the_signature_is_reported_before_the_clock() -> None:
    refused = refused_at(signed("ec2"), timedelta(hours=1), secret="not the secret")
    assert refused.reason is Reason.BAD_SIGNATURE
    assert refused.message == (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


@pytest.mark.parametrize("service", ["s3", "sts"])
def test_a_presigned_url_expires_after_x_amz_expires(service: str) -> None:
    wire = signed(service, presign=True, expires=600)
    assert verify_at(wire, timedelta(seconds=600)).expires == 600
    verify_at(wire, timedelta(minutes=-15))  # a client clock a little ahead is tolerated
    assert refused_at(wire, timedelta(seconds=601)).reason is Reason.PRESIGN_EXPIRED
    assert refused_at(wire, timedelta(minutes=-15, seconds=-1)).reason is Reason.SKEWED_CLOCK


def test_a_week_long_presigned_url_is_valid_for_a_week() -> None:
    wire = signed("s3", presign=True, expires=604800)
    verify_at(wire, timedelta(days=7))
    assert refused_at(wire, timedelta(days=7, seconds=1)).reason is Reason.PRESIGN_EXPIRED


def test_the_signing_key_is_the_aws_documentation_example() -> None:
    """docs.aws.amazon.com, "Create a signature for an AWS API request" (IAM example)."""
    key = derive_signing_key(CREDS.secret_key, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_the_signing_key_is_cached_per_credential_and_scope() -> None:
    derive_signing_key("cache-test-secret", "20240101", "eu-west-1", "ec2")
    hits = derive_signing_key.cache_info().hits
    again = derive_signing_key("cache-test-secret", "20240101", "eu-west-1", "ec2")
    assert derive_signing_key.cache_info().hits == hits + 1
    assert again != derive_signing_key("cache-test-secret", "20240101", "eu-west-1", "s3")


def _auth(service: str, *, presigned: bool = False, sha: str | None = None) -> Authorization:
    method, path, query, headers, _ = signed("ec2")
    auth = parse_authorization(method, path, query, headers)
    return replace(
        auth,
        scope=replace(auth.scope, service=service),
        presigned=presigned,
        content_sha256=sha,
    )


def test_payload_hash_for_s3_is_what_the_header_declares() -> None:
    assert payload_hash_for(_auth("s3", sha="UNSIGNED-PAYLOAD"), None) == "UNSIGNED-PAYLOAD"
    assert payload_hash_for(_auth("s3express", sha="a" * 64), b"x") == "a" * 64
    assert payload_hash_for(_auth("s3", presigned=True), None) == "UNSIGNED-PAYLOAD"
    with pytest.raises(Refused) as info:
        payload_hash_for(_auth("s3-object-lambda"), b"body")
    assert info.value.reason is Reason.MISSING_CONTENT_SHA256


def test_payload_hash_for_other_services_is_the_body_hash() -> None:
    assert payload_hash_for(_auth("ec2"), b"") == hashlib.sha256(b"").hexdigest()
    assert payload_hash_for(_auth("sts"), b"Action=X") == hashlib.sha256(b"Action=X").hexdigest()
    assert payload_hash_for(_auth("sts", sha="b" * 64), None) == "b" * 64
    with pytest.raises(ValueError, match="body"):
        payload_hash_for(_auth("ec2"), None)


@pytest.mark.parametrize(
    ("raw", "s3", "normal"),
    [
        ("", "/", "/"),
        ("/", "/", "/"),
        ("/bucket/a%2Bb%20c", "/bucket/a%2Bb%20c", "/bucket/a%252Bb%2520c"),
        ("/bucket/a+b c", "/bucket/a%2Bb%20c", "/bucket/a%2Bb%20c"),
        ("/bucket/k%3Fv", "/bucket/k%3Fv", "/bucket/k%253Fv"),
        ("/bucket/%7e%2d%41", "/bucket/~-A", "/bucket/%257e%252d%2541"),
        ("/bucket/%E1%88%B4", "/bucket/%E1%88%B4", "/bucket/%25E1%2588%25B4"),
        ("/bucket/ሴ", "/bucket/%E1%88%B4", "/bucket/%E1%88%B4"),
        ("/bucket//./../k", "/bucket//./../k", "/k"),
        ("/a/./b/../c//d/", "/a/./b/../c//d/", "/a/c/d/"),
        ("/..", "/..", "/"),
        ("/bucket/%FF", "/bucket/%FF", "/bucket/%25FF"),  # not U+FFFD's %EF%BF%BD
    ],
)
def test_canonical_paths(raw: str, s3: str, normal: str) -> None:
    assert canonical_path(raw, s3_style=True) == s3
    assert canonical_path(raw, s3_style=False) == normal


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=10&a=1", "a=1&a=10&a=2"),
        ("flag", "flag="),
        ("k=", "k="),
        ("prefix=a+b", "prefix=a%20b"),  # botocore sends a space as '+'
        ("prefix=a%2Bb", "prefix=a%2Bb"),  # and a plus as %2B
        ("k=%7e%2F", "k=~%2F"),
        ("k=%FF", "k=%FF"),
        ("k=a=b", "k=a%3Db"),
        ("&&k=v&", "k=v"),
        ("B=1&a=1&_=1", "B=1&_=1&a=1"),
    ],
)
def test_canonical_queries(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


def test_presigned_canonical_queries_leave_out_the_signature() -> None:
    query = "X-Amz-Signature=abc&a=1"
    assert canonical_query(query, drop=frozenset({"X-Amz-Signature"})) == "a=1"


def test_an_expired_presigned_url_is_answered_with_s3s_own_details() -> None:
    """AWS's answer: AccessDenied, "Request has expired", X-Amz-Expires, Expires and
    ServerTime; decided after the signature, against the gateway's clock."""
    wire = signed("s3", presign=True, expires=0)
    refused = refused_at(wire, timedelta(seconds=1))
    assert refused.reason is Reason.PRESIGN_EXPIRED
    assert refused.message == "Request has expired"
    auth = parse_authorization(wire[0], wire[1], wire[2], wire[3])
    assert refused.details == {
        "X-Amz-Expires": "0",
        "Expires": auth.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ServerTime": (auth.timestamp + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert refused_at(wire, timedelta(seconds=1), secret="x").reason is Reason.BAD_SIGNATURE
