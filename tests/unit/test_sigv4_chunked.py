"""aws-chunked bodies decode to exactly what was sent, or are refused."""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import Authorization, ChunkedDecoder, Scope, Verified, derive_signing_key

# The example of AWS's "Signature Calculation: Transfer Payload in Multiple Chunks".
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
PAYLOAD = b"a" * 66560


def aws_example() -> Verified:
    auth = Authorization(
        scope=Scope("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3"),
        signed_headers=("host",),
        signature=SEED,
        amz_date="20130524T000000Z",
        timestamp=datetime(2013, 5, 24, tzinfo=UTC),
        presigned=False,
        expires=None,
        session_token=None,
        content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )
    return Verified(derive_signing_key(SECRET, "20130524", "us-east-1", "s3"), SEED, auth)


def signed_body(signatures: tuple[str, ...] = CHUNK_SIGNATURES, data: bytes = PAYLOAD) -> bytes:
    first, second = data[:65536], data[65536:]
    return (
        b"10000;chunk-signature="
        + signatures[0].encode()
        + b"\r\n"
        + first
        + b"\r\n"
        + b"400;chunk-signature="
        + signatures[1].encode()
        + b"\r\n"
        + second
        + b"\r\n"
        + b"0;chunk-signature="
        + signatures[2].encode()
        + b"\r\n\r\n"
    )


def decode(decoder: ChunkedDecoder, body: bytes, step: int = 8192) -> bytes:
    out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
    decoder.finish()
    return out


def signed_decoder() -> ChunkedDecoder:
    return ChunkedDecoder(
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", verified=aws_example(), decoded_length=66560
    )


def test_the_aws_documentation_example_verifies_chunk_by_chunk() -> None:
    assert decode(signed_decoder(), signed_body()) == PAYLOAD


def test_a_chunk_is_released_only_after_its_signature_verifies() -> None:
    decoder = signed_decoder()
    body = signed_body()
    assert decoder.feed(body[:65000]) == b""  # first chunk incomplete: nothing released
    assert len(decoder.feed(body[65000:66000])) == 65536


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_forged_chunk_signature_is_refused(which: int) -> None:
    forged = list(CHUNK_SIGNATURES)
    forged[which] = forged[which][:-1] + ("0" if forged[which][-1] != "0" else "1")
    with pytest.raises(Refused) as info:
        decode(signed_decoder(), signed_body(tuple(forged)))
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_changed_data_is_refused() -> None:
    with pytest.raises(Refused) as info:
        decode(signed_decoder(), signed_body(data=b"b" + PAYLOAD[1:]))
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_a_truncated_body_is_refused() -> None:
    with pytest.raises(Refused) as info:
        decode(signed_decoder(), signed_body()[:-40])
    assert info.value.reason is Reason.INCOMPLETE_BODY


def botocore_encoded(data: bytes, checksum: type, name: str, chunk: int = 1000) -> bytes:
    return AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum, checksum_name=name, chunk_size=chunk
    ).read()


@pytest.mark.parametrize(
    ("checksum", "name"),
    [
        (Crc32Checksum, "x-amz-checksum-crc32"),
        (CrtCrc32cChecksum, "x-amz-checksum-crc32c"),
        (Sha256Checksum, "x-amz-checksum-sha256"),
    ],
)
def test_botocores_unsigned_trailer_bodies_decode(checksum: type, name: str) -> None:
    data = bytes(range(256)) * 40
    body = botocore_encoded(data, checksum, name)
    decoder = ChunkedDecoder(
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        verified=None,
        trailer_names=[name],
        decoded_length=len(data),
    )
    assert decode(decoder, body, step=777) == data


def test_a_wrong_checksum_trailer_is_refused() -> None:
    data = b"hello world" * 100
    body = botocore_encoded(data, Crc32Checksum, "x-amz-checksum-crc32")
    wrong = body.replace(body[body.index(b"crc32:") + 6 : -4], b"AAAAAA==")
    decoder = ChunkedDecoder(
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        verified=None,
        trailer_names=["x-amz-checksum-crc32"],
        decoded_length=len(data),
    )
    with pytest.raises(Refused) as info:
        decode(decoder, wrong)
    assert info.value.reason is Reason.BAD_DIGEST
    assert zlib.crc32(data) != 0


def test_a_length_that_disagrees_with_the_header_is_refused() -> None:
    data = b"x" * 5000
    body = botocore_encoded(data, Crc32Checksum, "x-amz-checksum-crc32")
    decoder = ChunkedDecoder(
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        verified=None,
        trailer_names=["x-amz-checksum-crc32"],
        decoded_length=4999,
    )
    with pytest.raises(Refused) as info:
        decode(decoder, body)
    assert info.value.reason is Reason.INCOMPLETE_BODY


@settings(max_examples=50)
@given(cuts=st.lists(st.integers(min_value=1, max_value=66823), max_size=12))
def test_any_split_of_the_stream_decodes_the_same(cuts: list[int]) -> None:
    body = signed_body()
    decoder = signed_decoder()
    out = b""
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(body[start:cut])
        start = cut
    out += decoder.feed(body[start:])
    decoder.finish()
    assert out == PAYLOAD
