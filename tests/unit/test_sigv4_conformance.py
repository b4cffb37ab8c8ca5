"""The AWS SigV4 test suite: every case verifies, in header and query form, and any change to
a signed part of the request makes verification fail."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import (
    canonical_request,
    check_payload_sha256,
    is_sha256_hex,
    parse_authorization,
    payload_hash_for,
    string_to_sign,
    verify_signature,
)

SUITE = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "sigv4"
CASES = sorted(p.name for p in SUITE.iterdir() if (p / "context.json").exists())


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def parse_raw(text: bytes) -> RawRequest:
    head, _, body = text.partition(b"\n\n")
    lines = head.decode("utf-8").split("\n")
    request_line = lines[0]
    method, _, rest = request_line.partition(" ")
    target = rest.rsplit(" HTTP/", 1)[0]
    path, _, query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value}\n{line}")
        elif line:
            name, _, value = line.partition(":")
            headers.append((name, value))
    return RawRequest(method, path, query, tuple(headers), body)


@dataclass(frozen=True)
class Case:
    name: str
    secret: str
    token: str | None
    now: datetime
    s3_style: bool
    omits_token: bool

    def file(self, name: str) -> bytes:
        return (SUITE / self.name / name).read_bytes()


def load(name: str) -> Case:
    context = json.loads((SUITE / name / "context.json").read_text())
    return Case(
        name=name,
        secret=context["credentials"]["secret_access_key"],
        token=context["credentials"].get("token"),
        now=datetime.fromisoformat(context["timestamp"].replace("Z", "+00:00")),
        s3_style=not context["normalize"],
        omits_token=bool(context.get("omit_session_token")),
    )


def verify(case: Case, request: RawRequest) -> None:
    auth = parse_authorization(request.method, request.path, request.query, request.headers)
    verify_signature(
        auth,
        request.method,
        request.path,
        request.query,
        request.headers,
        case.secret,
        payload_hash_for(auth, request.body),
        now=case.now,
        s3_style=case.s3_style,
    )
    if is_sha256_hex(auth.content_sha256):
        assert auth.content_sha256 is not None
        check_payload_sha256(hashlib.sha256(request.body).hexdigest(), auth.content_sha256)


def test_the_suite_is_there() -> None:
    assert len(CASES) >= 30, SUITE


@pytest.mark.parametrize("form", ["header", "query"])
@pytest.mark.parametrize("name", CASES)
def test_signed_request_verifies_with_the_same_canonical_request(name: str, form: str) -> None:
    case = load(name)
    request = parse_raw(case.file(f"{form}-signed-request.txt"))
    auth = parse_authorization(request.method, request.path, request.query, request.headers)
    canonical = canonical_request(
        auth,
        request.method,
        request.path,
        request.query,
        request.headers,
        payload_hash_for(auth, request.body),
        s3_style=case.s3_style,
        token_signed=not case.omits_token,
    )
    assert canonical == case.file(f"{form}-canonical-request.txt").decode()
    assert string_to_sign(auth, canonical) == case.file(f"{form}-string-to-sign.txt").decode()
    assert auth.signature == case.file(f"{form}-signature.txt").decode().strip()
    verify(case, request)


def tampered(request: RawRequest) -> list[tuple[str, RawRequest]]:
    out = [
        ("method", replace(request, method="DELETE" if request.method != "DELETE" else "GET")),
        ("path", replace(request, path=request.path.rstrip("/") + "/other")),
        ("query", replace(request, query=(request.query + "&" if request.query else "") + "a=b")),
        ("body", replace(request, body=request.body + b"x")),
    ]
    auth = parse_authorization(request.method, request.path, request.query, request.headers)
    for signed in auth.signed_headers:
        headers = tuple((k, v + "x") if k.lower() == signed else (k, v) for k, v in request.headers)
        out.append((f"header {signed}", replace(request, headers=headers)))
    if request.query:
        first, _, rest = request.query.partition("&")
        key, _, value = first.partition("=")
        if not key.startswith("X-Amz-Signature"):
            out.append(
                ("query value", replace(request, query=f"{key}={value}z&{rest}".rstrip("&")))
            )
    return out


@pytest.mark.parametrize("form", ["header", "query"])
@pytest.mark.parametrize("name", CASES)
def test_any_change_to_a_signed_part_is_refused(name: str, form: str) -> None:
    case = load(name)
    request = parse_raw(case.file(f"{form}-signed-request.txt"))
    for what, changed in tampered(request):
        with pytest.raises(Refused) as info:
            verify(case, changed)
        assert info.value.reason in (
            Reason.BAD_SIGNATURE,
            Reason.MALFORMED_SCOPE,
            Reason.MALFORMED_AUTH,
            Reason.BODY_HASH_MISMATCH,
        ), what


@pytest.mark.parametrize("name", CASES)
def test_a_wrong_secret_is_refused(name: str) -> None:
    case = load(name)
    request = parse_raw(case.file("header-signed-request.txt"))
    with pytest.raises(Refused) as info:
        verify(replace(case, secret=case.secret[:-1] + "!"), request)
    assert info.value.reason is Reason.BAD_SIGNATURE
