"""Refusals as the errors each AWS service's own clients expect.

The same refusal is spelled differently by each protocol family (`InvalidAccessKeyId` in
S3, `InvalidClientTokenId` in query services, `UnrecognizedClientException` in JSON
services) and travels in a different shape (XML document, JSON `__type`, a header). Getting
both right is what makes `aws` and boto3 print a clear message instead of a parse error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

from iamgate.refusals import Reason

_S3 = "s3"
_QUERY = "query"
_JSON = "json"

# reason -> family -> (status, code)
_CODES: dict[Reason, dict[str, tuple[int, str]]] = {
    Reason.MISSING_AUTH: {
        _S3: (403, "AccessDenied"),
        _QUERY: (403, "MissingAuthenticationToken"),
        _JSON: (400, "MissingAuthenticationTokenException"),
    },
    Reason.MALFORMED_AUTH: {
        _S3: (400, "AuthorizationHeaderMalformed"),
        _QUERY: (400, "IncompleteSignature"),
        _JSON: (400, "IncompleteSignatureException"),
    },
    Reason.MALFORMED_SCOPE: {
        _S3: (400, "AuthorizationHeaderMalformed"),
        _QUERY: (400, "IncompleteSignature"),
        _JSON: (400, "IncompleteSignatureException"),
    },
    Reason.UNSIGNED_HEADER: {
        _S3: (403, "AccessDenied"),
        _QUERY: (403, "SignatureDoesNotMatch"),
        _JSON: (400, "InvalidSignatureException"),
    },
    Reason.UNKNOWN_KEY: {
        _S3: (403, "InvalidAccessKeyId"),
        _QUERY: (403, "InvalidClientTokenId"),
        _JSON: (400, "UnrecognizedClientException"),
    },
    Reason.BAD_TOKEN: {
        _S3: (400, "InvalidToken"),
        _QUERY: (403, "InvalidClientTokenId"),
        _JSON: (400, "UnrecognizedClientException"),
    },
    Reason.REVOKED_CREDENTIAL: {
        _S3: (400, "InvalidToken"),
        _QUERY: (403, "InvalidClientTokenId"),
        _JSON: (400, "UnrecognizedClientException"),
    },
    Reason.BAD_SIGNATURE: {
        _S3: (403, "SignatureDoesNotMatch"),
        _QUERY: (403, "SignatureDoesNotMatch"),
        _JSON: (400, "InvalidSignatureException"),
    },
    Reason.EXPIRED_CREDENTIAL: {
        _S3: (400, "ExpiredToken"),
        _QUERY: (403, "ExpiredToken"),
        _JSON: (400, "ExpiredTokenException"),
    },
    # botocore recognises these (with the "Signature expired" message) and corrects its clock.
    Reason.SKEWED_CLOCK: {
        _S3: (403, "RequestTimeTooSkewed"),
        _QUERY: (403, "SignatureDoesNotMatch"),
        _JSON: (400, "InvalidSignatureException"),
    },
    Reason.PRESIGN_EXPIRED: {
        _S3: (403, "AccessDenied"),
        _QUERY: (403, "AccessDenied"),
        _JSON: (400, "AccessDeniedException"),
    },
    Reason.BODY_HASH_MISMATCH: {
        _S3: (400, "XAmzContentSHA256Mismatch"),
        _QUERY: (400, "XAmzContentSHA256Mismatch"),
        _JSON: (400, "InvalidSignatureException"),
    },
    Reason.BAD_DIGEST: {
        _S3: (400, "BadDigest"),
        _QUERY: (400, "BadDigest"),
        _JSON: (400, "BadDigest"),
    },
    Reason.INCOMPLETE_BODY: {
        _S3: (400, "IncompleteBody"),
        _QUERY: (400, "IncompleteBody"),
        _JSON: (400, "SerializationException"),
    },
    Reason.MISSING_CONTENT_SHA256: {
        _S3: (400, "InvalidRequest"),
        _QUERY: (400, "InvalidRequest"),
        _JSON: (400, "InvalidRequest"),
    },
    Reason.ACCESS_DENIED: {
        _S3: (403, "AccessDenied"),
        _QUERY: (403, "AccessDenied"),
        _JSON: (400, "AccessDeniedException"),
    },
    Reason.UNKNOWN_OPERATION: {
        _S3: (400, "InvalidRequest"),
        _QUERY: (400, "InvalidAction"),
        _JSON: (400, "UnknownOperationException"),
    },
    Reason.AMBIGUOUS_REQUEST: {
        _S3: (400, "InvalidRequest"),
        _QUERY: (400, "InvalidParameterCombination"),
        _JSON: (400, "ValidationException"),
    },
    Reason.UNKNOWN_ACCOUNT: {
        _S3: (403, "AccessDenied"),
        _QUERY: (403, "AccessDenied"),
        _JSON: (400, "AccessDeniedException"),
    },
    Reason.UPSTREAM_UNAVAILABLE: {
        _S3: (503, "ServiceUnavailable"),
        _QUERY: (503, "ServiceUnavailable"),
        _JSON: (503, "ServiceUnavailable"),
    },
    Reason.AUDIT_UNAVAILABLE: {
        _S3: (503, "ServiceUnavailable"),
        _QUERY: (503, "ServiceUnavailable"),
        _JSON: (503, "ServiceUnavailable"),
    },
    # Both are retried by AWS's SDKs: throttling with backoff, RequestTimeout as transient.
    Reason.THROTTLED: {
        _S3: (503, "SlowDown"),
        _QUERY: (400, "Throttling"),
        _JSON: (400, "ThrottlingException"),
    },
    Reason.REQUEST_TIMEOUT: {
        _S3: (400, "RequestTimeout"),
        _QUERY: (400, "RequestTimeout"),
        _JSON: (400, "RequestTimeoutException"),
    },
    # S3 POST-policy uploads; other services never see a form, but every reason has a code.
    Reason.MALFORMED_POST: {
        _S3: (400, "MalformedPOSTRequest"),
        _QUERY: (400, "MalformedQueryString"),
        _JSON: (400, "SerializationException"),
    },
    Reason.INVALID_ARGUMENT: {
        _S3: (400, "InvalidArgument"),
        _QUERY: (400, "InvalidParameterValue"),
        _JSON: (400, "ValidationException"),
    },
    Reason.INVALID_POLICY: {
        _S3: (400, "InvalidPolicyDocument"),
        _QUERY: (400, "InvalidParameterValue"),
        _JSON: (400, "ValidationException"),
    },
    Reason.ENTITY_TOO_LARGE: {
        _S3: (400, "EntityTooLarge"),
        _QUERY: (400, "InvalidParameterValue"),
        _JSON: (400, "ValidationException"),
    },
    Reason.ENTITY_TOO_SMALL: {
        _S3: (400, "EntityTooSmall"),
        _QUERY: (400, "InvalidParameterValue"),
        _JSON: (400, "ValidationException"),
    },
    Reason.INTERNAL: {
        _S3: (500, "InternalError"),
        _QUERY: (500, "InternalFailure"),
        _JSON: (500, "InternalFailure"),
    },
    # What STS answers a web identity or SAML exchange for a provider the account does not
    # trust ("No OpenIDConnect provider found in your account for ...").
    Reason.WEB_IDENTITY_UNCONFIGURED: {
        _S3: (403, "AccessDenied"),
        _QUERY: (400, "InvalidIdentityToken"),
        _JSON: (400, "InvalidIdentityTokenException"),
    },
    # The exchange answered by the gateway, in STS's codes (its API reference).
    Reason.WEB_IDENTITY_INVALID_CALL: {
        _S3: (400, "InvalidArgument"),
        _QUERY: (400, "ValidationError"),
        _JSON: (400, "ValidationException"),
    },
    Reason.WEB_IDENTITY_INVALID_TOKEN: {
        _S3: (403, "AccessDenied"),
        _QUERY: (400, "InvalidIdentityToken"),
        _JSON: (400, "InvalidIdentityTokenException"),
    },
    Reason.WEB_IDENTITY_EXPIRED_TOKEN: {
        _S3: (400, "ExpiredToken"),
        _QUERY: (400, "ExpiredTokenException"),
        _JSON: (400, "ExpiredTokenException"),
    },
    Reason.WEB_IDENTITY_DENIED: {
        _S3: (403, "AccessDenied"),
        _QUERY: (403, "AccessDenied"),
        _JSON: (400, "AccessDeniedException"),
    },
    Reason.WEB_IDENTITY_ISSUER_UNREACHABLE: {
        _S3: (503, "ServiceUnavailable"),
        _QUERY: (400, "IDPCommunicationError"),
        _JSON: (400, "IDPCommunicationErrorException"),
    },
}

# EC2 has its own names for a few of these (its API reference, "Error codes"): AuthFailure
# (401) for credentials it cannot validate, RequestExpired for a request or temporary
# credential past its time, UnauthorizedOperation where others say AccessDenied,
# RequestLimitExceeded (503) for throttling.
_EC2 = {
    Reason.UNKNOWN_KEY: (401, "AuthFailure"),
    Reason.BAD_TOKEN: (401, "AuthFailure"),
    Reason.REVOKED_CREDENTIAL: (401, "AuthFailure"),
    Reason.BAD_SIGNATURE: (401, "AuthFailure"),
    Reason.UNSIGNED_HEADER: (401, "AuthFailure"),
    Reason.EXPIRED_CREDENTIAL: (400, "RequestExpired"),
    Reason.SKEWED_CLOCK: (400, "RequestExpired"),
    Reason.PRESIGN_EXPIRED: (400, "RequestExpired"),
    Reason.ACCESS_DENIED: (403, "UnauthorizedOperation"),
    Reason.UNKNOWN_ACCOUNT: (403, "UnauthorizedOperation"),
    Reason.THROTTLED: (503, "RequestLimitExceeded"),
    Reason.INTERNAL: (500, "InternalError"),
}

# awsJson services (DynamoDB, KMS) answer authentication failures with 400; the rest-json
# services behind AWS's HTTP front door (Lambda, ...) with 403, under the same codes.
_REST_JSON_FORBIDDEN = frozenset(
    {
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "AccessDeniedException",
    }
)

# Signing names whose rest-xml errors are S3's bare <Error> document with S3's codes
# (s3control signs as "s3"; S3 Tables and Vectors are rest-json and answer like JSON).
_S3_SIGNING_NAMES = frozenset({"s3", "s3-outposts", "s3express", "s3-object-lambda"})


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _is_s3(signing_name: str, protocol: str) -> bool:
    return signing_name in _S3_SIGNING_NAMES and protocol == "rest-xml"


def _family(signing_name: str, protocol: str) -> str:
    if _is_s3(signing_name, protocol):
        return _S3
    return _JSON if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor") else _QUERY


def error_code_for(reason: Reason, signing_name: str, protocol: str) -> tuple[int, str]:
    """(HTTP status, error code) as the service itself would answer the refusal."""
    if protocol == "ec2" and reason in _EC2:
        return _EC2[reason]
    status, code = _CODES[reason][_family(signing_name, protocol)]
    if protocol == "rest-json" and code in _REST_JSON_FORBIDDEN:
        return 403, code
    return status, code


# Characters XML 1.0 cannot carry even escaped; a message naming a caller-chosen value
# (a key, a role) must not turn the error document into one no client can parse.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", text))


_ELEMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


def _elements(details: Mapping[str, str] | None) -> str:
    """S3's extra error elements, in the order given; names are the gateway's own."""
    out = []
    for name, value in (details or {}).items():
        if not _ELEMENT_NAME.fullmatch(name):
            raise ValueError(f"not an XML element name: {name!r}")
        out.append(f"<{name}>{_xml_text(value)}</{name}>")
    return "".join(out)


def _cbor_text(text: str) -> bytes:
    raw = text.encode("utf-8", "replace")  # a lone surrogate cannot be UTF-8
    n = len(raw)
    if n < 24:
        head = bytes([0x60 | n])
    elif n < 256:
        head = bytes([0x78, n])
    elif n < 65536:
        head = bytes([0x79]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x7A]) + n.to_bytes(4, "big")
    return head + raw


def render_error(
    reason: Reason,
    message: str,
    *,
    signing_name: str,
    protocol: str,
    request_id: str,
    query_compatible: bool = False,
    head: bool = False,
    json_version: str = "1.0",
    details: Mapping[str, str] | None = None,
) -> ErrorResponse:
    """The refusal in the shape the service's clients parse, so `aws` and boto3 print
    `An error occurred (Code) when calling the Op operation: message` rather than a parse
    failure. HEAD answers carry no body, as S3's do; clients then go by the status.
    `details` are S3's extra elements (`<ServerTime>`...), written after the message."""
    status, code = error_code_for(reason, signing_name, protocol)
    msg, rid = _xml_text(message), _xml_text(request_id)
    headers: dict[str, str] = {}
    if _is_s3(signing_name, protocol):
        headers["x-amz-request-id"] = request_id
        headers["x-amz-id-2"] = request_id
        headers["Content-Type"] = "application/xml"
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{msg}</Message>{_elements(details)}<RequestId>{rid}</RequestId></Error>"
        ).encode()
    elif protocol == "ec2":
        headers["Content-Type"] = "text/xml;charset=UTF-8"
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}'
            f"</Code><Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID>"
            "</Response>"
        ).encode()
    elif protocol in ("query", "rest-xml"):
        headers["x-amzn-RequestId"] = request_id
        headers["Content-Type"] = "text/xml"
        fault = "Receiver" if status >= 500 else "Sender"
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{fault}</Type><Code>{code}</Code><Message>{msg}</Message></Error>"
            f"<RequestId>{rid}</RequestId></ErrorResponse>"
        ).encode()
    elif protocol == "smithy-rpc-v2-cbor":
        headers["x-amzn-RequestId"] = request_id
        headers["Content-Type"] = "application/cbor"
        headers["smithy-protocol"] = "rpc-v2-cbor"
        body = (
            bytes([0xA2])
            + _cbor_text("__type")
            + _cbor_text(code)
            + _cbor_text("message")
            + _cbor_text(message)
        )
    else:
        headers["x-amzn-RequestId"] = request_id
        headers["x-amzn-ErrorType"] = code
        if protocol == "json":
            headers["Content-Type"] = f"application/x-amz-json-{json_version}"
        else:
            headers["Content-Type"] = "application/json"
        body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
    if query_compatible:
        # Query-compatible JSON services report the legacy query code in this header.
        legacy = _CODES[reason][_QUERY][1]
        headers["x-amzn-query-error"] = f"{legacy};{'Receiver' if status >= 500 else 'Sender'}"
    return ErrorResponse(status, headers, b"" if head else body)
