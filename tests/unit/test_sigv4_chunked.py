"""aws-chunked bodies decode to exactly what was sent, or are refused."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    BaseChecksum,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import (
    Authorization,
    ChunkedDecoder,
    Scope,
    Verified,
    derive_signing_key,
    is_streaming,
)

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

# The examples of AWS's "Signature Calculation: Transfer Payload in Multiple Chunks" and
# "Signature calculations for trailing headers": 66560 bytes of 'a' in 64 KiB chunks.
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PAYLOAD = b"a" * 66560
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNK_SIGNATURES = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
TRAILER = b"x-amz-checksum-crc32c:sOO8/Q=="
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def aws_example(seed: str = SEED, mode: str = SIGNED) -> Verified:
    auth = Authorization(
        scope=Scope("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3"),
        signed_headers=("host",),
        signature=seed,
        amz_date="20130524T000000Z",
        timestamp=datetime(2013, 5, 24, tzinfo=UTC),
        presigned=False,
        expires=None,
        session_token=None,
        content_sha256=mode,
    )
    return Verified(derive_signing_key(SECRET, "20130524", "us-east-1", "s3"), seed, auth)


def signed_body(
    signatures: tuple[str, ...] = CHUNK_SIGNATURES,
    data: bytes = PAYLOAD,
    trailer: bytes = b"",
) -> bytes:
    first, second = data[:65536], data[65536:]
    return (
        b"10000;chunk-signature=%s\r\n%s\r\n" % (signatures[0].encode(), first)
        + b"400;chunk-signature=%s\r\n%s\r\n" % (signatures[1].encode(), second)
        + b"0;chunk-signature=%s\r\n" % signatures[2].encode()
        + trailer
        + b"\r\n"
    )


def trailer_body(
    signatures: tuple[str, ...] = TRAILER_CHUNK_SIGNATURES,
    trailer: bytes = TRAILER,
    trailer_signature: str = TRAILER_SIGNATURE,
) -> bytes:
    lines = trailer + b"\r\nx-amz-trailer-signature:" + trailer_signature.encode() + b"\r\n"
    return signed_body(signatures, trailer=lines)


def decode(decoder: ChunkedDecoder, body: bytes, step: int = 8192) -> bytes:
    out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
    decoder.finish()
    return out


def signed_decoder() -> ChunkedDecoder:
    return ChunkedDecoder(SIGNED, verified=aws_example(), decoded_length=len(PAYLOAD))


def trailer_decoder() -> ChunkedDecoder:
    return ChunkedDecoder(
        SIGNED_TRAILER,
        verified=aws_example(TRAILER_SEED, SIGNED_TRAILER),
        trailer_names=["x-amz-checksum-crc32c"],
        decoded_length=len(PAYLOAD),
    )


def refusal(decoder: ChunkedDecoder, body: bytes, step: int = 8192) -> Refused:
    with pytest.raises(Refused) as info:
        decode(decoder, body, step)
    return info.value


def test_streaming_modes_are_recognised() -> None:
    assert all(is_streaming(mode) for mode in (SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER))
    assert not any(is_streaming(v) for v in (None, "UNSIGNED-PAYLOAD", "a" * 64, "streaming"))


def test_the_aws_documentation_example_verifies_chunk_by_chunk() -> None:
    assert decode(signed_decoder(), signed_body()) == PAYLOAD


def test_the_aws_trailer_example_verifies_chunks_and_trailer() -> None:
    decoder = trailer_decoder()
    assert decode(decoder, trailer_body()) == PAYLOAD
    assert decoder.finish() == {"x-amz-checksum-crc32c": "sOO8/Q=="}


def test_a_chunk_is_released_only_after_its_signature_verifies() -> None:
    decoder = signed_decoder()
    body = signed_body()
    header = len(b"10000;chunk-signature=") + 64 + 2
    assert decoder.feed(body[: header + 65536]) == b""  # data complete, CRLF not yet seen
    assert decoder.feed(body[header + 65536 : 66000]) == PAYLOAD[:65536]
    assert decoder.feed(body[66000:]) == PAYLOAD[65536:]
    assert decoder.finish() == {}


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_forged_chunk_signature_is_refused(which: int) -> None:
    for body_of, signatures, decoder_of in (
        (signed_body, CHUNK_SIGNATURES, signed_decoder),
        (trailer_body, TRAILER_CHUNK_SIGNATURES, trailer_decoder),
    ):
        forged = list(signatures)
        forged[which] = forged[which][:-1] + ("0" if forged[which][-1] != "0" else "1")
        assert refusal(decoder_of(), body_of(tuple(forged))).reason is Reason.BAD_SIGNATURE


def test_a_forged_trailer_or_trailer_signature_is_refused() -> None:
    forged = TRAILER_SIGNATURE[:-1] + "0"
    assert refusal(trailer_decoder(), trailer_body(trailer_signature=forged)).reason is (
        Reason.BAD_SIGNATURE
    )
    changed = b"x-amz-checksum-crc32c:AAAAAA=="
    assert refusal(trailer_decoder(), trailer_body(trailer=changed)).reason is (
        Reason.BAD_SIGNATURE
    )


def test_a_signed_trailer_needs_its_signature() -> None:
    body = signed_body(TRAILER_CHUNK_SIGNATURES, trailer=TRAILER + b"\r\n")
    assert refusal(trailer_decoder(), body).reason is Reason.INCOMPLETE_BODY


@pytest.mark.parametrize("position", [0, 4095, 65535, 65536, 66559])
def test_changed_data_is_refused(position: int) -> None:
    data = bytearray(PAYLOAD)
    data[position] ^= 1
    assert refusal(signed_decoder(), signed_body(data=bytes(data))).reason is (Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("cut", [1, 40, 90, 65624, len(signed_body()) - 2, len(signed_body()) - 1])
def test_a_truncated_body_is_refused(cut: int) -> None:
    assert refusal(signed_decoder(), signed_body()[:cut]).reason is Reason.INCOMPLETE_BODY


def test_an_empty_body_is_refused() -> None:
    assert refusal(signed_decoder(), b"").reason is Reason.INCOMPLETE_BODY


def test_a_non_ascii_chunk_signature_is_refused_not_crashed() -> None:
    body = b"400;chunk-signature=" + "é".encode() * 32 + b"\r\n" + b"a" * 1024 + b"\r\n"
    assert refusal(signed_decoder(), body).reason is Reason.INCOMPLETE_BODY


def test_nothing_is_accepted_after_a_refusal() -> None:
    decoder = signed_decoder()
    with pytest.raises(Refused):
        decoder.feed(b"zz;chunk-signature=\r\n")
    with pytest.raises(Refused):
        decoder.feed(signed_body())
    with pytest.raises(Refused):
        decoder.finish()


def botocore_encoded(data: bytes, checksum: type[BaseChecksum], name: str, chunk: int) -> bytes:
    """The body exactly as botocore sends it with STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum, checksum_name=name, chunk_size=chunk
    )
    return wrapper.read()


def unsigned_decoder(name: str, length: int | None) -> ChunkedDecoder:
    return ChunkedDecoder(
        UNSIGNED_TRAILER, verified=None, trailer_names=[name], decoded_length=length
    )


CHECKSUMS: list[tuple[type[BaseChecksum], str]] = [
    (Crc32Checksum, "x-amz-checksum-crc32"),
    (CrtCrc32cChecksum, "x-amz-checksum-crc32c"),
    (CrtCrc64NvmeChecksum, "x-amz-checksum-crc64nvme"),
    (Sha1Checksum, "x-amz-checksum-sha1"),
    (Sha256Checksum, "x-amz-checksum-sha256"),
]


@pytest.mark.parametrize(("checksum", "name"), CHECKSUMS)
def test_botocores_unsigned_trailer_bodies_decode(checksum: type[BaseChecksum], name: str) -> None:
    data = bytes(range(256)) * 40
    body = botocore_encoded(data, checksum, name, chunk=1000)
    decoder = unsigned_decoder(name, len(data))
    assert decode(decoder, body, step=777) == data
    assert set(decoder.finish()) == {name}


@pytest.mark.parametrize(("checksum", "name"), CHECKSUMS)
def test_a_wrong_checksum_trailer_is_refused(checksum: type[BaseChecksum], name: str) -> None:
    data = b"hello world" * 100
    body = botocore_encoded(data, checksum, name, chunk=300)
    value_at = body.rindex(name.encode() + b":") + len(name) + 1
    wrong = body[:value_at] + b"A" + body[value_at + 1 :]
    if wrong == body:
        wrong = body[:value_at] + b"B" + body[value_at + 1 :]
    assert refusal(unsigned_decoder(name, len(data)), wrong).reason is Reason.BAD_DIGEST


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_changed_unsigned_data_fails_its_checksum(where: str) -> None:
    data = b"hello world" * 100
    body = bytearray(botocore_encoded(data, Crc32Checksum, "x-amz-checksum-crc32", chunk=300))
    position = {
        "first": body.index(b"hello"),
        "middle": body.index(b"hello", 700),
        "last": body.rindex(b"\r\n0\r\n") - 1,
    }[where]
    body[position] ^= 1
    refused = refusal(unsigned_decoder("x-amz-checksum-crc32", len(data)), bytes(body))
    assert refused.reason is Reason.BAD_DIGEST


def test_a_length_that_disagrees_with_the_header_is_refused() -> None:
    data = b"x" * 5000
    body = botocore_encoded(data, Crc32Checksum, "x-amz-checksum-crc32", chunk=1000)
    for declared in (4999, 5001):
        decoder = unsigned_decoder("x-amz-checksum-crc32", declared)
        assert refusal(decoder, body).reason is Reason.INCOMPLETE_BODY


UNSIGNED_FRAMINGS = {
    "size with 0x": b"0x3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
    "size with +": b"+3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
    "size with _": b"0_3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
    "size with space": b" 3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
    "empty size": b"\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
    "data without CRLF": b"3\r\nabcX\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
    "data after the end": b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\nmore",
    "missing trailer": b"3\r\nabc\r\n0\r\n\r\n",
    "unannounced trailer": (
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-meta-a:b\r\n\r\n"
    ),
    "repeated trailer": (
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n"
    ),
    "trailer signature without signing": (
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-trailer-signature:"
        + b"0" * 64
        + b"\r\n\r\n"
    ),
    "trailer without colon": b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32\r\n\r\n",
    "non-ASCII trailer": b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:\xc3\xa9\r\n\r\n",
    "no final blank line": b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n",
    "line too long": b"3;" + b"x" * 5000 + b"\r\nabc\r\n0\r\n\r\n",
}


def test_the_framing_sample_is_valid_as_written() -> None:
    good = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n"
    assert decode(unsigned_decoder("x-amz-checksum-crc32", 3), good) == b"abc"


@pytest.mark.parametrize("body", UNSIGNED_FRAMINGS.values(), ids=UNSIGNED_FRAMINGS.keys())
@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_malformed_framing_is_refused(body: bytes, step: int) -> None:
    refused = refusal(unsigned_decoder("x-amz-checksum-crc32", None), body, step)
    assert refused.reason is Reason.INCOMPLETE_BODY


def test_trailers_are_refused_where_the_mode_has_none() -> None:
    body = signed_body(trailer=TRAILER + b"\r\n")
    assert refusal(signed_decoder(), body).reason is Reason.INCOMPLETE_BODY
    with pytest.raises(Refused) as info:
        ChunkedDecoder(SIGNED, verified=aws_example(), trailer_names=["x-amz-checksum-crc32"])
    assert info.value.reason is Reason.INCOMPLETE_BODY


def test_an_unknown_checksum_trailer_is_refused_up_front() -> None:
    with pytest.raises(Refused) as info:
        unsigned_decoder("x-amz-checksum-md5", None)
    assert info.value.reason is Reason.INCOMPLETE_BODY


def test_modes_and_signing_context_must_agree() -> None:
    with pytest.raises(ValueError, match="aws-chunked"):
        ChunkedDecoder("UNSIGNED-PAYLOAD", verified=None)
    with pytest.raises(ValueError, match="signature"):
        ChunkedDecoder(SIGNED, verified=None)


@settings(max_examples=50)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(trailer_body()) - 1), max_size=12))
def test_any_split_of_a_signed_stream_decodes_the_same(cuts: list[int]) -> None:
    body = trailer_body()
    decoder = trailer_decoder()
    out = b""
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(body[start:cut])
        start = cut
    out += decoder.feed(body[start:])
    assert decoder.finish() == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert out == PAYLOAD


@settings(max_examples=50)
@given(
    data=st.binary(max_size=3000),
    chunk=st.integers(min_value=1, max_value=1024),
    which=st.sampled_from(CHECKSUMS),
    split=st.data(),
)
def test_any_split_of_a_botocore_stream_decodes_the_same(
    data: bytes,
    chunk: int,
    which: tuple[type[BaseChecksum], str],
    split: st.DataObject,
) -> None:
    checksum, name = which
    body = botocore_encoded(data, checksum, name, chunk)
    cuts = split.draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=10))
    decoder = unsigned_decoder(name, len(data))
    out = b""
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(body[start:cut])
        start = cut
    out += decoder.feed(body[start:])
    decoder.finish()
    assert out == data


@given(garbage=st.binary(max_size=300), signed=st.booleans())
def test_arbitrary_bytes_only_ever_raise_refused(garbage: bytes, signed: bool) -> None:
    decoder = signed_decoder() if signed else unsigned_decoder("x-amz-checksum-crc32", None)
    with contextlib.suppress(Refused):
        decoder.feed(garbage)
        decoder.finish()


@given(
    prefix=st.sampled_from([b"3\r\nabc\r\n", b"400;chunk-signature=", b"0\r\n", b""]),
    garbage=st.binary(max_size=100),
)
def test_arbitrary_framing_only_ever_raises_refused(prefix: bytes, garbage: bytes) -> None:
    for decoder in (
        signed_decoder(),
        trailer_decoder(),
        unsigned_decoder("x-amz-checksum-sha1", 9),
    ):
        with contextlib.suppress(Refused):
            decoder.feed(prefix + garbage)
            decoder.finish()
