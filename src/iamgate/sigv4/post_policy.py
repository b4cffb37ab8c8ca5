"""S3 POST-policy uploads (browser forms, boto3's `generate_presigned_post`), checked as S3 does.

A browser form carries no Authorization header: the form's `policy` field (base64 JSON) is
what is signed, with the SigV4 signing key of the credential named in `x-amz-credential`,
and the policy's conditions bound every other field and the file's size. So the signature
proves who wrote the policy, and the policy is what limits the upload; both are checked
here, before the gateway identifies the upload as `s3:PutObject` on the key it resolves to.
A Signature Version 2 form (`AWSAccessKeyId`, `signature`: HMAC-SHA1 of the same policy
with the secret) takes the same path; only reading and checking the signature differ.

Pure code: the form arrives already read (`PostForm`), and every failure is a `Refused`
with S3's own code and wording ("Invalid according to Policy: ..."), so browsers' and SDKs'
users see what S3 would have said.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.authorization import (
    ALGORITHM,
    Authorization,
    Scope,
    _parse_scope,
    _parse_time,
)
from iamgate.sigv4.canonical import derive_signing_key
from iamgate.sigv4.sigv2 import REGION as SIGV2_REGION
from iamgate.sigv4.sigv2 import decode_signature
from iamgate.sigv4.sigv2 import signature_of as sigv2_signature_of
from iamgate.sigv4.verify import BAD_SIGNATURE_MESSAGE, signature_of

# The fields S3 does not ask a policy to name (its POST documentation, "Conditions"): the
# SigV4 signature, or SigV2's key id and signature (a form carries one kind, never both:
# `post_authorization`), the file and the policy.
EXEMPT_FIELDS = frozenset({"x-amz-signature", "awsaccesskeyid", "signature", "file", "policy"})
EXEMPT_PREFIX = "x-ignore-"
FILENAME_VARIABLE = "${filename}"
_REQUIRED_AUTH = ("x-amz-credential", "x-amz-date", "x-amz-signature")
_POLICY_DENIED = "Invalid according to Policy: "


@dataclass(frozen=True, slots=True)
class PostForm:
    """A POST upload as read: its text fields in order (names as sent), and the file."""

    fields: tuple[tuple[str, str], ...]
    file: bytes
    filename: str | None = None
    file_content_type: str | None = None

    def get(self, name: str) -> str | None:
        """A field by name, case-insensitively as S3 reads them."""
        lower = name.lower()
        return next((value for key, value in self.fields if key.lower() == lower), None)


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part of a multipart form as the parser read it."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def post_form(parts: Iterable[FormPart]) -> PostForm:
    """The parts up to the file (S3 ignores what follows it) as a form: each field once,
    as UTF-8 text, and exactly one file, the part named `file`."""
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    for part in parts:
        if part.name.lower() in seen:
            raise _invalid_argument(f"iamgate: the form field '{part.name}' appears twice")
        seen.add(part.name.lower())
        if part.name.lower() == "file":
            return PostForm(tuple(fields), part.data, part.filename, part.content_type)
        try:
            fields.append((part.name, part.data.decode("utf-8")))
        except UnicodeDecodeError:
            raise Refused(
                Reason.MALFORMED_POST, f"The form field '{part.name}' is not UTF-8 text."
            ) from None
    raise _invalid_argument("POST requires exactly one file upload per request.")


@dataclass(frozen=True, slots=True)
class Condition:
    """One policy condition: `eq` or `starts-with` on a field, or the file size's range."""

    kind: Literal["eq", "starts-with", "content-length-range"]
    field: str = ""  # lower case, no "$"
    value: str = ""
    low: int = 0
    high: int = 0

    def spelled(self) -> str:
        """As S3 quotes a failed condition back."""
        if self.kind == "content-length-range":
            return f'["content-length-range", {self.low}, {self.high}]'
        return f'["{self.kind}", "${self.field}", {json.dumps(self.value)}]'


@dataclass(frozen=True, slots=True)
class Policy:
    expiration: datetime
    conditions: tuple[Condition, ...]


def _invalid_argument(message: str) -> Refused:
    return Refused(Reason.INVALID_ARGUMENT, message)


def _invalid_policy(message: str) -> Refused:
    return Refused(Reason.INVALID_POLICY, f"Invalid Policy: {message}")


def _denied(message: str) -> Refused:
    return Refused(Reason.ACCESS_DENIED, _POLICY_DENIED + message)


def _is_sigv2(form: PostForm) -> bool:
    """A Signature Version 2 form (boto3's default `generate_presigned_post` where SigV2 is
    the default): `AWSAccessKeyId` and `signature` instead of the x-amz-* fields."""
    return form.get("AWSAccessKeyId") is not None or form.get("signature") is not None


def post_authorization(form: PostForm) -> Authorization:
    """The form's credential and signature as an `Authorization`, so the credential is
    opened and the call recorded as for any signed request; SigV4 or SigV2, never a mix."""
    if form.get("policy") is None:
        raise Refused(Reason.MISSING_AUTH, "iamgate: a POST upload must carry a signed policy")
    return _sigv2_authorization(form) if _is_sigv2(form) else _sigv4_authorization(form)


def _sigv2_authorization(form: PostForm) -> Authorization:
    """SigV2 signs nothing but the policy: no date, no region, no scope. The policy's
    expiration bounds the form's life (`check_policy`); the region is the one SigV2 is
    sent to upstream, as for SigV2 presigned URLs."""
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-signature"):
        if form.get(name) is not None:
            raise _invalid_argument(
                f"Bucket POST must not mix Signature Version 2 (AWSAccessKeyId, signature) "
                f"with Signature Version 4 fields ('{name}')."
            )
    for name in ("AWSAccessKeyId", "signature"):
        if not form.get(name):
            raise _invalid_argument(f"Bucket POST must contain a field named '{name}'.")
    return Authorization(
        scope=Scope(form.get("AWSAccessKeyId") or "", "", SIGV2_REGION, "s3"),
        signed_headers=(),
        signature=form.get("signature") or "",
        amz_date="",
        timestamp=datetime.fromtimestamp(0, UTC),  # unsigned: never read for a form
        presigned=False,
        expires=None,
        session_token=form.get("x-amz-security-token"),
        content_sha256=None,
    )


def _sigv4_authorization(form: PostForm) -> Authorization:
    algorithm = form.get("x-amz-algorithm")
    if algorithm != ALGORITHM:
        raise _invalid_argument(
            f"Bucket POST must contain a field named 'x-amz-algorithm' of value {ALGORITHM}"
        )
    for name in _REQUIRED_AUTH:
        if not form.get(name):
            raise _invalid_argument(f"Bucket POST must contain a field named '{name}'.")
    amz_date = form.get("x-amz-date") or ""
    timestamp = _parse_time(amz_date)
    scope = _parse_scope(form.get("x-amz-credential") or "", amz_date)
    if scope.service != "s3":
        raise Refused(
            Reason.MALFORMED_SCOPE,
            f"Credential should be scoped to correct service: 's3', not '{scope.service}'.",
        )
    return Authorization(
        scope=scope,
        signed_headers=(),
        signature=form.get("x-amz-signature") or "",
        amz_date=amz_date,
        timestamp=timestamp,
        presigned=False,
        expires=None,
        session_token=form.get("x-amz-security-token"),
        content_sha256=None,
    )


def verify_post_signature(auth: Authorization, form: PostForm, secret_access_key: str) -> None:
    """The signature is an HMAC of the base64 policy itself, compared in constant time:
    SigV2's HMAC-SHA1 with the secret (botocore's HmacV1PostAuth), or SigV4's HMAC-SHA256
    with the credential's signing key for its scope (S3SigV4PostAuth)."""
    policy_b64 = form.get("policy") or ""
    if _is_sigv2(form):
        expected = sigv2_signature_of(secret_access_key, policy_b64)
        if not hmac.compare_digest(expected, decode_signature(auth.signature)):
            raise Refused(Reason.BAD_SIGNATURE, BAD_SIGNATURE_MESSAGE)
        return
    scope: Scope = auth.scope
    key = derive_signing_key(secret_access_key, scope.date, scope.region, scope.service)
    expected_v4 = signature_of(key, policy_b64)
    if not hmac.compare_digest(expected_v4.encode(), auth.signature.encode("utf-8", "replace")):
        raise Refused(Reason.BAD_SIGNATURE, BAD_SIGNATURE_MESSAGE)


def read_policy(policy_b64: str) -> Policy:
    """The policy document, strictly: what cannot be read is refused, never half-applied."""
    try:
        document = json.loads(base64.b64decode(policy_b64.encode("ascii"), validate=True))
    except (binascii.Error, UnicodeError, ValueError):
        raise _invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid_policy("Invalid JSON.")
    expiration = document.get("expiration")
    if not isinstance(expiration, str):
        raise _invalid_policy("Policy missing expiration.")
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise _invalid_policy("Policy missing conditions.")
    unknown = set(document) - {"expiration", "conditions"}
    if unknown:
        raise _invalid_policy(f"Unexpected policy element: {sorted(unknown)[0]}")
    parsed = tuple(c for item in conditions for c in _conditions(item))
    return Policy(_expiration(expiration), parsed)


def _expiration(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid_policy(f"Invalid 'expiration' value: '{text}'") from None
    if moment.tzinfo is None:
        raise _invalid_policy(f"Invalid 'expiration' value: '{text}' (no time zone)")
    return moment


def _conditions(item: object) -> list[Condition]:
    if isinstance(item, dict):
        if not item:
            raise _invalid_policy("Invalid simple condition: empty object")
        out = []
        for name, value in item.items():
            if not isinstance(value, str):
                raise _invalid_policy(f"Invalid simple condition value for {name}")
            out.append(Condition("eq", name.lower().removeprefix("$"), value))
        return out
    if not isinstance(item, list) or len(item) != 3:
        raise _invalid_policy("Invalid condition: each must be an object or three elements")
    operator = item[0].lower() if isinstance(item[0], str) else None
    if operator == "content-length-range":
        low, high = (_size(v) for v in item[1:])
        if low > high:
            raise _invalid_policy("Invalid content-length-range: minimum above maximum")
        return [Condition("content-length-range", low=low, high=high)]
    if operator not in ("eq", "starts-with"):
        raise _invalid_policy(f"Invalid condition operator: {json.dumps(item[0])}")
    name, value = item[1], item[2]
    if not isinstance(name, str) or not name.startswith("$") or not isinstance(value, str):
        raise _invalid_policy(f"Invalid {operator} condition: {json.dumps(item)}")
    kind: Literal["eq", "starts-with"] = "eq" if operator == "eq" else "starts-with"
    return [Condition(kind, name[1:].lower(), value)]


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _invalid_policy("Invalid content-length-range: bounds must be integers")
    try:
        size = int(value)
    except ValueError:
        raise _invalid_policy("Invalid content-length-range: bounds must be integers") from None
    if size < 0:
        raise _invalid_policy("Invalid content-length-range: bounds must not be negative")
    return size


def check_policy(policy: Policy, form: PostForm, bucket: str, *, now: datetime) -> None:
    """As S3 checks a POST: not expired; every condition holds for the form (`$bucket` is
    the bucket addressed, the file's size for content-length-range); and every field but
    the exempt ones is named by some condition."""
    if now >= policy.expiration:
        raise _denied("Policy expired.")
    values = {name.lower(): value for name, value in form.fields}
    values["bucket"] = bucket
    for condition in policy.conditions:
        _check(condition, values, len(form.file))
    named = {c.field for c in policy.conditions if c.kind != "content-length-range"}
    extra = [
        name
        for name, _ in form.fields
        if name.lower() not in named
        and name.lower() not in EXEMPT_FIELDS
        and not name.lower().startswith(EXEMPT_PREFIX)
    ]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")


def _check(condition: Condition, values: Mapping[str, str], size: int) -> None:
    if condition.kind == "content-length-range":
        if size > condition.high:
            raise Refused(
                Reason.ENTITY_TOO_LARGE, "Your proposed upload exceeds the maximum allowed size"
            )
        if size < condition.low:
            raise Refused(
                Reason.ENTITY_TOO_SMALL,
                "Your proposed upload is smaller than the minimum allowed size",
            )
        return
    value = values.get(condition.field)
    if value is None or not _holds(condition, value):
        raise _denied(f"Policy Condition failed: {condition.spelled()}")


def _holds(condition: Condition, value: str) -> bool:
    if condition.kind == "eq":
        return value == condition.value
    if condition.field == "content-type" and "," in value:
        # S3: each type of a comma-separated Content-Type must match the prefix.
        return all(part.strip().startswith(condition.value) for part in value.split(","))
    return value.startswith(condition.value)


def object_key(form: PostForm) -> str:
    """The key the upload is stored under: S3 replaces `${filename}` in the `key` field by
    the name of the uploaded file. The policy is checked on the field as sent; this key is
    what is authorized and what the upstream is told."""
    key = form.get("key")
    if key is None:
        raise _invalid_argument(
            "Bucket POST must contain a field named 'key'.  If it is specified, please check "
            "the order of the fields."
        )
    if FILENAME_VARIABLE in key:
        key = key.replace(FILENAME_VARIABLE, form.filename or "")
    if not key:
        raise _invalid_argument("User key must have a length greater than 0.")
    return key
