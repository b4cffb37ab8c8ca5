"""Why the gateway refuses a request, independent of how each AWS protocol spells it.

Core code (SigV4, credentials, access) raises `Refused` with one of these reasons; the edge
(`iamgate.aws.errors`) turns it into the status and error code that the service's own
clients expect (`InvalidAccessKeyId` for S3, `InvalidClientTokenId` for query services,
`UnrecognizedClientException` for JSON services, and so on).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Reason(enum.Enum):
    MISSING_AUTH = "missing-auth"  # no Authorization header and no presigned query
    MALFORMED_AUTH = "malformed-auth"  # unparsable Authorization / presigned parameters
    MALFORMED_SCOPE = "malformed-scope"  # credential scope wrong (date, terminator, ...)
    UNSIGNED_HEADER = "unsigned-header"  # host or an x-amz-* header not signed
    UNKNOWN_KEY = "unknown-key"  # access key id not minted by this gateway
    BAD_TOKEN = "bad-token"  # session token missing, forged, or for another key
    BAD_SIGNATURE = "bad-signature"  # signature does not match
    EXPIRED_CREDENTIAL = "expired-credential"  # gateway credential past its expiry
    REVOKED_CREDENTIAL = "revoked-credential"  # session revoked
    SKEWED_CLOCK = "skewed-clock"  # X-Amz-Date too far from now
    PRESIGN_EXPIRED = "presign-expired"  # presigned URL past X-Amz-Expires
    BODY_HASH_MISMATCH = "body-hash-mismatch"  # x-amz-content-sha256 does not match the body
    BAD_DIGEST = "bad-digest"  # a checksum trailer / Content-MD5 does not match
    INCOMPLETE_BODY = "incomplete-body"  # aws-chunked body truncated or malformed
    MISSING_CONTENT_SHA256 = "missing-content-sha256"  # S3 header auth without the header
    ACCESS_DENIED = "access-denied"  # authorization said no
    UNKNOWN_OPERATION = "unknown-operation"  # the request matches no operation of the service
    # another parser could read the request as another operation, target or value: the
    # operation named twice, a parameter given twice, a body that cannot be read, ...
    AMBIGUOUS_REQUEST = "ambiguous-request"
    UNKNOWN_ACCOUNT = "unknown-account"  # credential names an account not configured
    UPSTREAM_UNAVAILABLE = "upstream-unavailable"  # AssumeRole or the upstream failed
    AUDIT_UNAVAILABLE = "audit-unavailable"  # fail closed: the audit store cannot be written
    THROTTLED = "throttled"  # the caller holds its share of the gateway (calls, buffered bytes)
    REQUEST_TIMEOUT = "request-timeout"  # the client stopped sending its body
    # S3 POST-policy uploads (browser forms): the form, its fields and its policy.
    MALFORMED_POST = "malformed-post"  # not well-formed multipart/form-data
    INVALID_ARGUMENT = "invalid-argument"  # a field missing, repeated or of a wrong value
    INVALID_POLICY = "invalid-policy"  # the policy document cannot be read
    ENTITY_TOO_LARGE = "entity-too-large"  # the file is above the policy's size range
    ENTITY_TOO_SMALL = "entity-too-small"  # the file is below the policy's size range
    INTERNAL = "internal"
    # sts:AssumeRoleWithWebIdentity / AssumeRoleWithSAML: unsigned by design in AWS, but this
    # gateway trusts no SAML provider, or no OIDC issuer (`oidc.issuers`).
    WEB_IDENTITY_UNCONFIGURED = "web-identity-unconfigured"
    # sts:AssumeRoleWithWebIdentity, answered by the gateway: the call's parameters are not
    # STS's; the token is not one it accepts; the token has expired; the token is good but
    # no binding maps it to a bot that may have the role asked for.
    WEB_IDENTITY_INVALID_CALL = "web-identity-invalid-call"
    WEB_IDENTITY_INVALID_TOKEN = "web-identity-invalid-token"
    WEB_IDENTITY_EXPIRED_TOKEN = "web-identity-expired-token"
    WEB_IDENTITY_DENIED = "web-identity-denied"
    WEB_IDENTITY_ISSUER_UNREACHABLE = "web-identity-issuer-unreachable"  # its keys, that is


class Refused(Exception):
    """A request the gateway will not forward; `message` is safe to show the client.
    `details` are further elements of the error as the service itself gives them (S3's
    `<Expires>` and `<ServerTime>` for an expired presigned URL), safe to show as well."""

    def __init__(
        self, reason: Reason, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details: Mapping[str, str] = details or {}
