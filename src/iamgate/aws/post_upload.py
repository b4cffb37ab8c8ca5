"""The upstream side of an S3 POST-policy upload: which fields cross, and a new policy.

The client's policy is signed with a gateway credential the upstream has never heard of, so
the gateway writes the upstream a form of its own: the fields it read (the key already
resolved), each pinned by an `eq` condition, the file's exact size pinned by
`content-length-range`, a short expiry, and botocore's `S3SigV4PostAuth` signature with the
assumed role's credentials. The upstream can then execute nothing but what was authorized.

A field S3 reads but the gateway does not know (`tagging`...) is
refused rather than forwarded unread.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import urllib3
from botocore.auth import S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from iamgate.aws.upstream_credentials import AwsCredentials
from iamgate.refusals import Reason, Refused
from iamgate.sigv4.post_policy import EXEMPT_PREFIX, PostForm

UPSTREAM_POLICY_LIFETIME = timedelta(minutes=5)
# The client's own signature and credential: replaced, never forwarded.
_AUTH_FIELDS = frozenset(
    {
        "policy",
        "awsaccesskeyid",
        "signature",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-signature",
        "x-amz-security-token",
    }
)
# Fields that shape the upload and its answer, not the identity or the target.
_CONTROL_FIELDS = frozenset({"success_action_status", "success_action_redirect", "redirect"})
# Fields S3 reads as the PutObject header of the same name (`acl` as x-amz-acl), so
# identification and guardrails see them as they see a PUT's headers.
_HEADER_FIELDS = {
    "acl": "x-amz-acl",
    "cache-control": "cache-control",
    "content-type": "content-type",
    "content-disposition": "content-disposition",
    "content-encoding": "content-encoding",
    "expires": "expires",
}


def forwarded_fields(form: PostForm, key: str) -> list[tuple[str, str]]:
    """The fields the upstream form carries, `key` first and resolved; the client's
    authentication and `x-ignore-` fields stay behind; any other field is refused."""
    fields = [("key", key)]
    for name, value in form.fields:
        lower = name.lower()
        if lower == "key" or lower in _AUTH_FIELDS or lower.startswith(EXEMPT_PREFIX):
            continue
        if lower in _CONTROL_FIELDS or lower in _HEADER_FIELDS or lower.startswith("x-amz-"):
            fields.append((name, value))
            continue
        raise Refused(
            Reason.INVALID_ARGUMENT,
            f"iamgate: the form field '{name}' is not one it forwards in a POST upload",
        )
    return fields


def identification_headers(fields: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The forwarded fields as the headers of the PutObject they amount to."""
    headers: dict[str, str] = {}
    for name, value in fields:
        lower = name.lower()
        if lower in _HEADER_FIELDS:
            headers[_HEADER_FIELDS[lower]] = value
        elif lower.startswith("x-amz-"):
            headers[lower] = value
    return headers


def upstream_fields(
    fields: Sequence[tuple[str, str]],
    *,
    bucket: str,
    size: int,
    credentials: AwsCredentials,
    region: str,
    now: datetime,
) -> list[tuple[str, str]]:
    """`fields`, then the new policy and its signature (botocore's S3SigV4PostAuth) with the
    upstream credentials: every field and the bucket pinned, and the size exactly."""
    conditions: list[Any] = [{"bucket": bucket}]
    conditions += [{name: value} for name, value in fields]
    conditions.append(["content-length-range", size, size])
    expiration = (now + UPSTREAM_POLICY_LIFETIME).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    request = AWSRequest(method="POST", url="https://s3.amazonaws.com/")
    request.context["s3-presign-post-fields"] = {}
    request.context["s3-presign-post-policy"] = {
        "expiration": expiration,
        "conditions": conditions,
    }
    creds = Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    S3SigV4PostAuth(creds, "s3", region).add_auth(request)
    signed: dict[str, str] = request.context["s3-presign-post-fields"]
    return [*fields, *signed.items()]


def encode_form(fields: Sequence[tuple[str, str]], form: PostForm) -> tuple[bytes, str]:
    """(body, Content-Type) of the upstream form: the fields, then the file, last as S3
    requires."""
    file_part = (form.filename or "file", form.file, form.file_content_type)
    if file_part[2] is None:
        file_part = (file_part[0], file_part[1], "application/octet-stream")
    parts: list[tuple[str, Any]] = [*fields, ("file", file_part)]
    return urllib3.encode_multipart_formdata(parts)
