"""The AWS SigV4 test suite: every case verifies, in header and query form, with the same
canonical request and string to sign as the suite's files, and any change to a signed part
of the request makes verification fail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
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

# The suite, with its Apache-2.0 LICENSE and NOTICE, is kept in the repository.
SUITE = Path(__file__).resolve().parents[1] / "conformance" / "sigv4"
CASES = sorted(p.name for p in SUITE.iterdir() if (p / "context.json").exists())
FORMS = ("header", "query")
# Changing these presigned parameters changes what the signature claims, not what it covers.
AUTH_PARAMS = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature"}
)


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def parse_raw(text: bytes) -> RawRequest:
    """An HTTP/1.1 request as the suite writes it: request line, headers (a line starting
    with white space continues the previous header's value; a name may repeat), a blank
    line, then the body."""
    head, _, body = text.replace(b"\r\n", b"\n").partition(b"\n\n")
    request_line, *header_lines = head.decode("utf-8").split("\n")
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.rpartition(" ")
    assert version.startswith("HTTP/"), request_line
    path, _, query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        if line[:1] in (" ", "\t"):
            assert headers, "a continuation line needs a header to continue"
            name, value = headers[-1]
            headers[-1] = (name, f"{value}\n{line}")
        elif line:
            name, colon, value = line.partition(":")
            assert colon, line
            headers.append((name, value))
    return RawRequest(method, path, query, tuple(headers), body)


@dataclass(frozen=True)
class Case:
    name: str
    secret: str
    now: datetime
    s3_style: bool
    omits_token: bool

    def file(self, name: str) -> bytes:
        return (SUITE / self.name / name).read_bytes()

    def request(self, form: str) -> RawRequest:
        return parse_raw(self.file(f"{form}-signed-request.txt"))


def load(name: str) -> Case:
    context = json.loads((SUITE / name / "context.json").read_text())
    return Case(
        name=name,
        secret=context["credentials"]["secret_access_key"],
        now=datetime.fromisoformat(context["timestamp"].replace("Z", "+00:00")),
        s3_style=not context["normalize"],
        omits_token=bool(context.get("omit_session_token")),
    )


def verify(case: Case, request: RawRequest) -> None:
    """What the gateway does: parse, verify, and check a signed body hash against the body."""
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
    if auth.content_sha256 is not None and is_sha256_hex(auth.content_sha256):
        check_payload_sha256(hashlib.sha256(request.body).hexdigest(), auth.content_sha256)


def test_the_suite_is_found_in_the_repository() -> None:
    assert SUITE.is_dir(), SUITE
    assert len(CASES) == 38, CASES


def test_the_parser_keeps_continuation_lines_and_duplicate_names() -> None:
    multiline = load("get-header-value-multiline").request("header")
    assert ("My-Header1", "value1\n  value2\n     value3") in multiline.headers
    duplicate = load("get-header-key-duplicate").request("header")
    assert [v for k, v in duplicate.headers if k == "My-Header1"] == ["value2", "value2", "value1"]
    form = load("post-x-www-form-urlencoded").request("header")
    assert (form.method, form.path, form.query, form.body) == ("POST", "/", "", b"Param1=value1")
    spaced = load("get-space-unnormalized").request("header")
    assert spaced.path == "/example space/"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", CASES)
def test_signed_request_verifies_with_the_suites_canonical_request(name: str, form: str) -> None:
    case = load(name)
    request = case.request(form)
    auth = parse_authorization(request.method, request.path, request.query, request.headers)
    assert auth.presigned is (form == "query")
    canonical = canonical_request(
        auth,
        request.method,
        request.path,
        request.query,
        request.headers,
        payload_hash_for(auth, request.body),
        s3_style=case.s3_style,
        token_signed=not (case.omits_token and form == "query"),
    )
    assert canonical == case.file(f"{form}-canonical-request.txt").decode()
    assert string_to_sign(auth, canonical) == case.file(f"{form}-string-to-sign.txt").decode()
    assert auth.signature == case.file(f"{form}-signature.txt").decode().strip()
    verify(case, request)


def _later_second(amz_date: str) -> str:
    """Another valid X-Amz-Date of the same day, so only the signature can object."""
    return amz_date[:14] + ("1" if amz_date[14] != "1" else "2") + amz_date[15:]


def _changed_value(name: str, value: str) -> str:
    """A different value that still parses, so only the signature can object."""
    if name.lower() == "x-amz-date":
        return _later_second(value)
    if value.isdigit():
        return value[:-1] + ("1" if value[-1] != "1" else "2")
    return value + "x"


def tampered(
    request: RawRequest, *, token_signed: bool
) -> Iterator[tuple[str, RawRequest, frozenset[Reason]]]:
    """Each signed part changed in turn, with the refusals that change may earn."""
    bad = frozenset({Reason.BAD_SIGNATURE})
    yield "method", replace(request, method="PATCH"), bad
    yield "path", replace(request, path=request.path.rstrip("/") + "/other"), bad
    extra = "&" if request.query else ""
    yield "added query", replace(request, query=f"{request.query}{extra}a=b"), bad
    params = request.query.split("&") if request.query else []
    for i, param in enumerate(params):
        key, _, value = param.partition("=")
        if key == "X-Amz-Signature" or (key == "X-Amz-Security-Token" and not token_signed):
            continue
        changed = [*params[:i], f"{key}={_changed_value(key, value)}", *params[i + 1 :]]
        reasons = bad
        if key in AUTH_PARAMS:
            reasons = bad | {Reason.MALFORMED_AUTH, Reason.MALFORMED_SCOPE, Reason.UNSIGNED_HEADER}
        yield f"query {key}", replace(request, query="&".join(changed)), reasons
    auth = parse_authorization(request.method, request.path, request.query, request.headers)
    for i, (name, value) in enumerate(request.headers):
        if name.lower() in auth.signed_headers:
            headers = list(request.headers)
            headers[i] = (name, _changed_value(name, value))
            yield f"header {name} #{i}", replace(request, headers=tuple(headers)), bad
    for signed in auth.signed_headers:
        positions = [i for i, (k, _) in enumerate(request.headers) if k.lower() == signed]
        values = [request.headers[i][1] for i in positions]
        if len(set(values)) > 1:
            headers = list(request.headers)
            for i, value in zip(positions, reversed(values), strict=True):
                headers[i] = (headers[i][0], value)
            yield f"order of {signed}", replace(request, headers=tuple(headers)), bad
    body_signed_in_header = auth.content_sha256 is not None and is_sha256_hex(auth.content_sha256)
    body_reasons = frozenset({Reason.BODY_HASH_MISMATCH}) if body_signed_in_header else bad
    yield "body", replace(request, body=request.body + b"x"), body_reasons


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", CASES)
def test_any_change_to_a_signed_part_is_refused(name: str, form: str) -> None:
    case = load(name)
    changes = list(tampered(case.request(form), token_signed=not case.omits_token))
    assert len(changes) >= 5
    for what, changed, reasons in changes:
        with pytest.raises(Refused) as info:
            verify(case, changed)
        assert info.value.reason in reasons, what


@pytest.mark.parametrize("form", FORMS)
def test_a_token_added_after_signing_is_the_only_unsigned_part(form: str) -> None:
    """post-sts-header-after: the signer added the session token after signing, so it is
    not covered (the gateway binds it to the access key); a signed token is covered."""
    after = load("post-sts-header-after")
    request = after.request(form)
    if form == "header":
        swapped = replace(
            request,
            headers=tuple(
                (k, "other" if k == "X-Amz-Security-Token" else v) for k, v in request.headers
            ),
        )
    else:
        swapped = replace(
            request,
            query="&".join(
                "X-Amz-Security-Token=other" if p.startswith("X-Amz-Security-Token=") else p
                for p in request.query.split("&")
            ),
        )
    verify(after, swapped)
    signed = load("get-vanilla-with-session-token")
    request = signed.request(form)
    with pytest.raises(Refused) as info:
        if form == "header":
            verify(
                signed,
                replace(
                    request,
                    headers=tuple(
                        (k, v + "0" if k == "X-Amz-Security-Token" else v)
                        for k, v in request.headers
                    ),
                ),
            )
        else:
            verify(
                signed,
                replace(
                    request, query=request.query.replace("&X-Amz-Signature", "0&X-Amz-Signature")
                ),
            )
    assert info.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", CASES)
def test_changes_the_canonical_form_absorbs_still_verify(name: str, form: str) -> None:
    """Header names in any case, values with extra white space, different names in another
    order (a repeated name keeps its order: that order is signed)."""
    case = load(name)
    request = case.request(form)
    reordered = sorted(request.headers, key=lambda kv: kv[0].lower(), reverse=True)
    headers = tuple((k.upper(), f"  {v.replace(' ', '   ')}\t") for k, v in reordered)
    verify(case, replace(request, headers=headers))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", CASES)
def test_a_wrong_secret_is_refused(name: str, form: str) -> None:
    case = load(name)
    with pytest.raises(Refused) as info:
        verify(replace(case, secret=case.secret[:-1] + "!"), case.request(form))
    assert info.value.reason is Reason.BAD_SIGNATURE
    assert case.secret not in info.value.message
