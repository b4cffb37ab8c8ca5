"""Inbound SigV4: parse, canonicalize and verify requests exactly as AWS does (pure code)."""

from iamgate.sigv4.authorization import Authorization, Scope, parse_authorization, query_params
from iamgate.sigv4.canonical import (
    canonical_request,
    derive_signing_key,
    payload_hash_for,
    string_to_sign,
)
from iamgate.sigv4.chunked import ChunkedDecoder, is_streaming
from iamgate.sigv4.verify import (
    Verified,
    check_payload_sha256,
    is_sha256_hex,
    verify_signature,
)

__all__ = [
    "Authorization",
    "ChunkedDecoder",
    "Scope",
    "Verified",
    "canonical_request",
    "check_payload_sha256",
    "derive_signing_key",
    "is_sha256_hex",
    "is_streaming",
    "parse_authorization",
    "payload_hash_for",
    "query_params",
    "string_to_sign",
    "verify_signature",
]
