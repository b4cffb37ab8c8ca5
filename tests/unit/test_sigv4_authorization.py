"""Parsing the authorization: what is accepted, and that everything else is a `Refused` with
the reason the client will be told."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import Authorization, Scope, parse_authorization

SIGNATURE = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
CREDENTIAL = "AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request"
DATE = "20150830T123600Z"
SIGNED = "host;x-amz-date"


def header_auth(
    *,
    credential: str = CREDENTIAL,
    signed: str = "host;x-amz-date",
    signature: str = SIGNATURE,
    date: str = DATE,
    extra: tuple[tuple[str, str], ...] = (),
) -> list[tuple[str, str]]:
    value = (
        f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={signature}"
    )
    return [("Host", "ec2.example"), ("X-Amz-Date", date), ("Authorization", value), *extra]


def presigned_query(**overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "Action": "DescribeInstances",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": CREDENTIAL.replace("/", "%2F"),
        "X-Amz-Date": DATE,
        "X-Amz-Expires": "300",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": SIGNATURE,
    }
    params.update(overrides)
    return "&".join(f"{k}={v}" for k, v in params.items() if v is not None)


def refusal(query: str, headers: list[tuple[str, str]]) -> Refused:
    with pytest.raises(Refused) as info:
        parse_authorization("GET", "/", query, headers)
    return info.value


def test_header_authorization_is_read() -> None:
    token = ("X-Amz-Security-Token", "token")
    sha = ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    auth = parse_authorization(
        "GET",
        "/",
        "",
        header_auth(signed="host;x-amz-content-sha256;x-amz-date", extra=(token, sha)),
    )
    assert auth == Authorization(
        scope=Scope("AKIDEXAMPLE", "20150830", "us-east-1", "ec2"),
        signed_headers=("host", "x-amz-content-sha256", "x-amz-date"),
        signature=SIGNATURE,
        amz_date=DATE,
        timestamp=datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
        presigned=False,
        expires=None,
        session_token="token",
        content_sha256="UNSIGNED-PAYLOAD",
    )
    assert auth.scope.as_string() == "20150830/us-east-1/ec2/aws4_request"


def test_a_presigned_query_is_read() -> None:
    auth = parse_authorization(
        "GET", "/", presigned_query(**{"X-Amz-Security-Token": "a%2Bb"}), [("Host", "x")]
    )
    assert auth.presigned
    assert auth.expires == 300
    assert auth.session_token == "a+b"
    assert auth.signed_headers == ("host",)
    assert auth.scope == Scope("AKIDEXAMPLE", "20150830", "us-east-1", "ec2")


def test_no_authorization_at_all_is_missing_auth() -> None:
    assert refusal("Action=DescribeInstances", [("Host", "x")]).reason is Reason.MISSING_AUTH


def test_host_must_be_signed() -> None:
    refused = refusal("", header_auth(signed="x-amz-date"))
    assert refused.reason is Reason.UNSIGNED_HEADER
    refused = refusal(presigned_query(**{"X-Amz-SignedHeaders": "x-amz-date"}), [("Host", "x")])
    assert refused.reason is Reason.UNSIGNED_HEADER


def test_the_scope_date_must_be_the_date_of_x_amz_date() -> None:
    refused = refusal("", header_auth(credential="AKIDEXAMPLE/20150831/us-east-1/ec2/aws4_request"))
    assert refused.reason is Reason.MALFORMED_SCOPE
    refused = refusal(presigned_query(**{"X-Amz-Date": "20150829T235959Z"}), [("Host", "x")])
    assert refused.reason is Reason.MALFORMED_SCOPE


@pytest.mark.parametrize(
    "credential",
    [
        "AKIDEXAMPLE/20150830/us-east-1/ec2",
        "AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request/more",
        "AKIDEXAMPLE/20150830/us-east-1/ec2/aws3_request",
        "AKIDEXAMPLE/20150830//ec2/aws4_request",
        "/20150830/us-east-1/ec2/aws4_request",
    ],
)
def test_a_malformed_scope_is_refused(credential: str) -> None:
    assert refusal("", header_auth(credential=credential)).reason is Reason.MALFORMED_SCOPE


def test_every_x_amz_header_must_be_signed_in_header_auth() -> None:
    refused = refusal("", header_auth(extra=(("X-Amz-Meta-Colour", "blue"),)))
    assert refused.reason is Reason.UNSIGNED_HEADER
    assert "x-amz-meta-colour" in refused.message
    # Signed, it is fine; an unsigned non-x-amz header is fine too.
    parse_authorization(
        "GET",
        "/",
        "",
        header_auth(
            signed="host;x-amz-date;x-amz-meta-colour",
            extra=(("X-Amz-Meta-Colour", "blue"), ("User-Agent", "aws-cli")),
        ),
    )


def test_a_session_token_may_be_added_after_signing() -> None:
    """As the suite's post-sts-header-after signs it: the token is bound to the key later."""
    auth = parse_authorization("GET", "/", "", header_auth(extra=(("X-Amz-Security-Token", "t"),)))
    assert auth.session_token == "t"


def test_presigned_requests_only_need_the_headers_they_list() -> None:
    auth = parse_authorization(
        "GET", "/", presigned_query(), [("Host", "x"), ("X-Amz-Meta-Colour", "blue")]
    )
    assert auth.signed_headers == ("host",)


def test_a_signed_header_must_be_present() -> None:
    refused = refusal("", header_auth(signed="host;range;x-amz-date"))
    assert refused.reason is Reason.MALFORMED_AUTH


def test_a_presigned_url_whose_signed_header_is_not_sent_does_not_match() -> None:
    """As S3 answers a HEAD presigned with ChecksumMode and followed without the header:
    403 SignatureDoesNotMatch, naming the header, not a 400."""
    query = presigned_query(**{"X-Amz-SignedHeaders": "host;x-amz-checksum-mode"})
    refused = refusal(query, [("Host", "x")])
    assert refused.reason is Reason.BAD_SIGNATURE
    assert "'x-amz-checksum-mode'" in refused.message


@pytest.mark.parametrize(
    ("expires", "reason"),
    [
        ("0", None),  # expired already: S3's "Request has expired", decided with the clock
        ("1", None),
        ("604800", None),
        ("604801", Reason.MALFORMED_AUTH),
        ("-5", Reason.MALFORMED_AUTH),
        ("%C2%B2", Reason.MALFORMED_AUTH),  # '²' is a digit to str.isdigit
        ("1_0", Reason.MALFORMED_AUTH),  # and int() reads this as 10
        ("9" * 5000, Reason.MALFORMED_AUTH),  # past int()'s digit limit
        (None, Reason.MALFORMED_AUTH),
    ],
)
def test_x_amz_expires_is_required_and_bounded(expires: str | None, reason: Reason | None) -> None:
    query = presigned_query(**{"X-Amz-Expires": expires})
    if reason is None:
        auth = parse_authorization("GET", "/", query, [("Host", "x")])
        assert auth.expires == int(str(expires))
    else:
        assert refusal(query, [("Host", "x")]).reason is reason


MALFORMED_HEADERS = [
    "",
    "AWS4-HMAC-SHA256",
    "AWS AKIDEXAMPLE:c2lnbmF0dXJl",  # SigV2
    "AWS4-HMAC-SHA512 Credential=a, SignedHeaders=host, Signature=b",
    f"aws4-hmac-sha256 Credential={CREDENTIAL}, SignedHeaders={SIGNED}, Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={SIGNED}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 SignedHeaders={SIGNED}, Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL} SignedHeaders={SIGNED} Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, Credential={CREDENTIAL}, SignedHeaders={SIGNED}, "
    f"Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={SIGNED}, Signature={SIGNATURE}, ",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={SIGNED}, Signature={SIGNATURE[:-1]}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={SIGNED}, Signature={SIGNATURE.upper()}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders=Host, Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders=host;;x, Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders=host;host, Signature={SIGNATURE}",
    f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders=, Signature={SIGNATURE}",
]


@pytest.mark.parametrize("value", MALFORMED_HEADERS)
def test_malformed_authorization_headers_are_malformed_auth(value: str) -> None:
    headers = [("Host", "x"), ("X-Amz-Date", DATE), ("Authorization", value)]
    assert refusal("", headers).reason is Reason.MALFORMED_AUTH


@pytest.mark.parametrize(
    "date",
    [
        "",
        "20150830",
        "20150830T1236Z",
        "20150830T123600",
        "20151330T123600Z",
        "20150830T246000Z",
        "2015083OT123600Z",
        "20150830T12+600Z",
        "2015-08-30T12:36:00Z",
    ],
)
def test_a_malformed_x_amz_date_is_malformed_auth(date: str) -> None:
    credential = f"AKIDEXAMPLE/{date[:8]}/us-east-1/ec2/aws4_request"
    assert refusal("", header_auth(date=date, credential=credential)).reason is (
        Reason.MALFORMED_AUTH
    )


def test_x_amz_date_is_required_for_header_auth() -> None:
    headers = [h for h in header_auth() if h[0] != "X-Amz-Date"]
    assert refusal("", headers).reason is Reason.MALFORMED_AUTH


@pytest.mark.parametrize("name", ["Authorization", "X-Amz-Date", "x-amz-content-sha256"])
def test_headers_that_decide_verification_may_not_repeat(name: str) -> None:
    headers = header_auth(signed="host;x-amz-content-sha256;x-amz-date")
    headers.append(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
    headers.append((name.upper(), dict((k.lower(), v) for k, v in headers)[name.lower()]))
    assert refusal("", headers).reason is Reason.MALFORMED_AUTH


def test_only_one_authentication_mechanism() -> None:
    assert refusal(presigned_query(), header_auth()).reason is Reason.MALFORMED_AUTH


@pytest.mark.parametrize(
    "query",
    [
        presigned_query(**{"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}),
        presigned_query(**{"X-Amz-Algorithm": None}),
        presigned_query(**{"X-Amz-Credential": None}),
        presigned_query(**{"X-Amz-Date": None}),
        presigned_query(**{"X-Amz-SignedHeaders": None}),
        presigned_query(**{"X-Amz-Signature": None}),
        presigned_query(**{"X-Amz-Signature": "zz"}),
        presigned_query() + "&X-Amz-Expires=300",
        "AWSAccessKeyId=AKIDEXAMPLE&Expires=1&Signature=abc",  # SigV2
    ],
)
def test_malformed_presigned_queries_are_malformed_auth(query: str) -> None:
    assert refusal(query, [("Host", "x")]).reason is Reason.MALFORMED_AUTH


# Fuzzing: nothing a client sends may come out as anything but Refused.

_FRAGMENTS = st.sampled_from(
    [
        "AWS4-HMAC-SHA256 ",
        "Credential=",
        CREDENTIAL,
        "SignedHeaders=",
        "host;x-amz-date",
        "Signature=",
        SIGNATURE,
        ", ",
        ",",
        "=",
        "/",
        ";",
        " ",
        "aws4_request",
        "20150830",
    ]
)
_AUTH_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=14).map("".join)
_HEADER_NAMES = st.sampled_from(
    ["Host", "X-Amz-Date", "x-amz-content-sha256", "X-Amz-Security-Token", "X-Amz-Meta-A", "Range"]
)


@given(
    authorization=_AUTH_TEXT,
    date=st.one_of(st.just(DATE), st.text(max_size=20)),
    extra=st.lists(st.tuples(_HEADER_NAMES, st.text(max_size=20)), max_size=4),
)
def test_fuzzed_authorization_headers_only_ever_raise_refused(
    authorization: str, date: str, extra: list[tuple[str, str]]
) -> None:
    headers = [("Host", "x"), ("X-Amz-Date", date), ("Authorization", authorization), *extra]
    with contextlib.suppress(Refused):
        parse_authorization("GET", "/", "", headers)


_QUERY_FRAGMENTS = st.sampled_from(
    [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        f"X-Amz-Credential={CREDENTIAL}",
        f"X-Amz-Date={DATE}",
        "X-Amz-Expires=",
        "X-Amz-SignedHeaders=host",
        f"X-Amz-Signature={SIGNATURE}",
        "X-Amz-Security-Token=",
        "%",
        "%FF",
        "+",
        "=",
    ]
)


@given(st.lists(st.one_of(_QUERY_FRAGMENTS, st.text(max_size=10)), max_size=10))
def test_fuzzed_presigned_queries_only_ever_raise_refused(parts: list[str]) -> None:
    with contextlib.suppress(Refused):
        parse_authorization("GET", "/", "&".join(parts), [("Host", "x")])


@given(st.text(max_size=300))
def test_arbitrary_authorization_text_only_ever_raises_refused(text: str) -> None:
    with contextlib.suppress(Refused):
        parse_authorization("GET", "/", "", [("Authorization", text), ("Host", "x")])
