"""Which AWS operation a request is, and which IAM action it needs, from botocore's models.

Authorization is only as good as this answer, so it comes from the same service models
the SDKs use to build requests, for every protocol: `Action=` for query and ec2, the
`X-Amz-Target` header for json, the `/service/S/operation/O` path for smithy-rpc-v2-cbor,
and method + URI template (+ required query keys and headers) for rest-json and rest-xml.
The index is built once; a lookup is a dictionary hit or a short scan of precompiled
templates.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from botocore.loaders import Loader, create_loader

# Signing names whose IAM service prefix differs (from IAM's service authorization data).
IAM_PREFIX = {
    "monitoring": "cloudwatch",
    "cloudcontrolapi": "cloudformation",
    "iotdata": "iot",
    "iot-jobs-data": "iotjobsdata",
    "mturk-requester": "mturk",
    "tagging": "tag",
    "awsssoportal": "sso",
    "IoTSecuredTunneling": "iot",
    "abuse": "abuse-signal",
}

# Operations whose IAM action is not named after them.
IAM_ACTION = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "CopyObject"): "s3:PutObject",
    ("s3", "UploadPartCopy"): "s3:PutObject",
    ("s3", "ListParts"): "s3:ListMultipartUploadParts",
    ("s3", "ListMultipartUploads"): "s3:ListBucketMultipartUploads",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListBuckets"): "s3:ListAllMyBuckets",
    ("s3", "ListDirectoryBuckets"): "s3express:ListAllMyDirectoryBuckets",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "DeleteBucketCors"): "s3:PutBucketCORS",
    ("s3", "GetBucketCors"): "s3:GetBucketCORS",
    ("s3", "PutBucketCors"): "s3:PutBucketCORS",
    ("s3", "DeleteBucketLifecycle"): "s3:PutLifecycleConfiguration",
    ("s3", "GetBucketLifecycleConfiguration"): "s3:GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "s3:PutLifecycleConfiguration",
    ("s3", "GetBucketLifecycle"): "s3:GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "s3:PutLifecycleConfiguration",
    ("s3", "DeleteBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("s3", "PutBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "DeleteBucketReplication"): "s3:PutReplicationConfiguration",
    ("s3", "GetBucketReplication"): "s3:GetReplicationConfiguration",
    ("s3", "PutBucketReplication"): "s3:PutReplicationConfiguration",
    ("s3", "DeleteBucketWebsite"): "s3:DeleteBucketWebsite",
    ("s3", "DeleteBucketTagging"): "s3:PutBucketTagging",
    ("s3", "DeleteObjectTagging"): "s3:DeleteObjectTagging",
    ("s3", "GetObjectAttributes"): "s3:GetObjectAttributes",
    ("s3", "GetBucketNotificationConfiguration"): "s3:GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "s3:PutBucketNotification",
    ("s3", "GetBucketNotification"): "s3:GetBucketNotification",
    ("s3", "PutBucketNotification"): "s3:PutBucketNotification",
    ("s3", "DeletePublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("s3", "PutPublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "DeleteBucketOwnershipControls"): "s3:PutBucketOwnershipControls",
    ("s3", "GetBucketPolicyStatus"): "s3:GetBucketPolicyStatus",
    ("s3", "DeleteBucketAnalyticsConfiguration"): "s3:PutAnalyticsConfiguration",
    ("s3", "GetBucketAnalyticsConfiguration"): "s3:GetAnalyticsConfiguration",
    ("s3", "ListBucketAnalyticsConfigurations"): "s3:GetAnalyticsConfiguration",
    ("s3", "PutBucketAnalyticsConfiguration"): "s3:PutAnalyticsConfiguration",
    ("s3", "DeleteBucketInventoryConfiguration"): "s3:PutInventoryConfiguration",
    ("s3", "GetBucketInventoryConfiguration"): "s3:GetInventoryConfiguration",
    ("s3", "ListBucketInventoryConfigurations"): "s3:GetInventoryConfiguration",
    ("s3", "PutBucketInventoryConfiguration"): "s3:PutInventoryConfiguration",
    ("s3", "DeleteBucketMetricsConfiguration"): "s3:PutMetricsConfiguration",
    ("s3", "GetBucketMetricsConfiguration"): "s3:GetMetricsConfiguration",
    ("s3", "ListBucketMetricsConfigurations"): "s3:GetMetricsConfiguration",
    ("s3", "PutBucketMetricsConfiguration"): "s3:PutMetricsConfiguration",
    ("s3", "DeleteBucketIntelligentTieringConfiguration"): "s3:PutIntelligentTieringConfiguration",
    ("s3", "GetBucketIntelligentTieringConfiguration"): "s3:GetIntelligentTieringConfiguration",
    ("s3", "ListBucketIntelligentTieringConfigurations"): "s3:GetIntelligentTieringConfiguration",
    ("s3", "PutBucketIntelligentTieringConfiguration"): "s3:PutIntelligentTieringConfiguration",
    ("s3", "GetBucketAccelerateConfiguration"): "s3:GetAccelerateConfiguration",
    ("s3", "PutBucketAccelerateConfiguration"): "s3:PutAccelerateConfiguration",
    ("s3", "GetBucketRequestPayment"): "s3:GetBucketRequestPayment",
    ("s3", "GetBucketLogging"): "s3:GetBucketLogging",
    ("s3", "PutBucketLogging"): "s3:PutBucketLogging",
    ("s3", "GetObjectLockConfiguration"): "s3:GetBucketObjectLockConfiguration",
    ("s3", "PutObjectLockConfiguration"): "s3:PutBucketObjectLockConfiguration",
    ("s3", "GetObjectLegalHold"): "s3:GetObjectLegalHold",
    ("s3", "RestoreObject"): "s3:RestoreObject",
    ("s3", "SelectObjectContent"): "s3:GetObject",
    ("s3", "WriteGetObjectResponse"): "s3-object-lambda:WriteGetObjectResponse",
    ("s3", "CreateSession"): "s3express:CreateSession",
    ("s3", "RenameObject"): "s3express:RenameObject",
    ("s3", "UpdateObjectEncryption"): "s3:PutObject",
    ("s3", "GetBucketMetadataTableConfiguration"): "s3:GetBucketMetadataTableConfiguration",
    ("s3", "GetBucketAbac"): "s3:GetBucketABAC",
    ("s3", "PutBucketAbac"): "s3:PutBucketABAC",
    ("s3", "GetBucketMetadataConfiguration"): "s3:GetBucketMetadataTableConfiguration",
    ("s3", "CreateBucketMetadataConfiguration"): "s3:CreateBucketMetadataTableConfiguration",
    ("s3", "DeleteBucketMetadataConfiguration"): "s3:DeleteBucketMetadataTableConfiguration",
    ("s3", "UpdateBucketMetadataInventoryTableConfiguration"): (
        "s3:UpdateBucketMetadataInventoryTableConfiguration"
    ),
    ("s3", "UpdateBucketMetadataJournalTableConfiguration"): (
        "s3:UpdateBucketMetadataJournalTableConfiguration"
    ),
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "lambda:InvokeFunction",
    ("lambda", "InvokeAsync"): "lambda:InvokeAsync",
    ("lambda", "ListVersionsByFunction"): "lambda:ListVersionsByFunction",
    ("lambda", "GetFunctionConfiguration"): "lambda:GetFunctionConfiguration",
    ("lambda", "ListFunctions"): "lambda:ListFunctions",
    ("lambda", "GetLayerVersionByArn"): "lambda:GetLayerVersion",
    ("kms", "ReEncrypt"): "kms:ReEncryptFrom",
    # A batch is authorized as its single-item action.
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("dynamodb", "TransactGetItems"): "dynamodb:GetItem",
    ("sqs", "GetQueueUrl"): "sqs:GetQueueUrl",
    ("sts", "GetCallerIdentity"): "sts:GetCallerIdentity",
}


_MODEL_CACHE_KEYS = frozenset({"load_service_model", "load_data", "load_data_with_path"})


@dataclass(frozen=True, slots=True)
class Operation:
    service: str
    name: str
    protocol: str
    iam_action: str


@dataclass(frozen=True, slots=True)
class Identified:
    operation: Operation
    params: Mapping[str, object]
    resource: str | None
    # Why the parameters cannot be read with certainty (a key given twice, a compressed or
    # unparsable body): guardrails refuse rather than guess.
    ambiguous: str | None = None


@dataclass(frozen=True, slots=True)
class _Binding:
    """Where the input members of a REST operation travel on the wire."""

    uri: tuple[tuple[str, str], ...] = ()  # (label, member)
    query: tuple[tuple[str, str], ...] = ()  # (query key, member)
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case header, member)
    has_payload_member: bool = False


@dataclass(frozen=True, slots=True)
class _Template:
    operation: Operation
    path: re.Pattern[str]
    labels: tuple[str, ...]
    query_values: tuple[tuple[str, str | None], ...]  # required key, exact value or None
    required_headers: tuple[str, ...]
    binding: _Binding
    specificity: tuple[int, ...]


@dataclass
class _Service:
    name: str
    protocols: tuple[str, ...]
    signing_name: str
    endpoint_prefix: str
    target_prefix: str | None
    query_compatible: bool
    json_version: str | None


@dataclass
class _SigningIndex:
    """Everything for one signing name: several botocore services may share it."""

    services: list[_Service] = field(default_factory=list)
    actions: dict[str, Operation] = field(default_factory=dict)  # query/ec2 Action
    targets: dict[str, Operation] = field(default_factory=dict)  # json X-Amz-Target
    cbor: dict[str, Operation] = field(default_factory=dict)  # cbor operation name
    rest: dict[str, list[_Template]] = field(default_factory=lambda: defaultdict(list))


def iam_action_for(service: str, signing_name: str, operation: str) -> str:
    explicit = IAM_ACTION.get((service, operation))
    if explicit is not None:
        return explicit
    return f"{IAM_PREFIX.get(signing_name, signing_name)}:{operation}"


def _compile_path(path_template: str) -> tuple[re.Pattern[str], tuple[str, ...], int]:
    """A URI template as a regex over the decoded path; also its literal length."""
    pattern = ""
    labels: list[str] = []
    literal = 0
    for piece in re.split(r"(\{[^}]+\})", path_template):
        if piece.startswith("{") and piece.endswith("}"):
            name = piece[1:-1]
            greedy = name.endswith("+")
            labels.append(name.rstrip("+"))
            pattern += "(.+)" if greedy else "([^/]+)"
        else:
            pattern += re.escape(piece)
            literal += len(piece)
    # A trailing slash is the same resource (`/bucket` and `/bucket/`).
    return re.compile("^" + pattern.rstrip("/") + "/?$"), tuple(labels), literal


def _rest_template(
    service: _Service, model: Mapping[str, Any], name: str, op: Mapping[str, Any], protocol: str
) -> _Template:
    http = op.get("http", {})
    request_uri: str = http.get("requestUri", "/")
    path_part, _, query_part = request_uri.partition("?")
    query_values: list[tuple[str, str | None]] = []
    for item in filter(None, query_part.split("&")):
        key, eq, value = item.partition("=")
        if key == "x-id":  # botocore adds it, other clients do not: never required
            continue
        query_values.append((key, value if eq else None))
    shapes = model["shapes"]
    input_shape = shapes.get(op.get("input", {}).get("shape", ""), {})
    required = set(input_shape.get("required", ()))
    uri: list[tuple[str, str]] = []
    query: list[tuple[str, str]] = []
    headers: list[tuple[str, str]] = []
    required_headers: list[str] = []
    has_payload = "payload" in input_shape
    for member, spec in input_shape.get("members", {}).items():
        location = spec.get("location")
        wire = spec.get("locationName", member)
        if location == "uri":
            uri.append((wire, member))
        elif location == "querystring":
            query.append((wire, member))
            if member in required and all(wire != k for k, _ in query_values):
                query_values.append((wire, None))
        elif location == "header":
            headers.append((wire.lower(), member))
            if member in required:
                required_headers.append(wire.lower())
    regex, labels, literal = _compile_path(path_part)
    operation = Operation(
        service.name, name, protocol, iam_action_for(service.name, service.signing_name, name)
    )
    return _Template(
        operation=operation,
        path=regex,
        labels=labels,
        query_values=tuple(query_values),
        required_headers=tuple(required_headers),
        binding=_Binding(tuple(uri), tuple(query), tuple(headers), has_payload),
        specificity=(
            len(query_values) + len(required_headers),
            literal,
            -sum(1 for label in labels if label),
        ),
    )


class OperationIndex:
    def __init__(self) -> None:
        self._by_signing: dict[str, _SigningIndex] = {}
        self._services: dict[str, _Service] = {}

    @classmethod
    def build(
        cls, services: Iterable[str] | None = None, *, loader: Loader | None = None
    ) -> OperationIndex:
        loader = loader or create_loader()
        names = (
            list(services) if services is not None else loader.list_available_services("service-2")
        )
        index = cls()
        for name in names:
            index._add(name, loader.load_service_model(name, "service-2"))
            # botocore's loader keeps every model it loads; the index needs none of them
            # once compiled, and holding all ~450 at once would cost hundreds of MiB.
            cache: dict[tuple[Any, ...], Any] = getattr(loader, "_cache", {})
            for key in [k for k in cache if k[0] in _MODEL_CACHE_KEYS]:
                del cache[key]
        for signing in index._by_signing.values():
            for templates in signing.rest.values():
                templates.sort(key=lambda t: t.specificity, reverse=True)
        return index

    def _add(self, name: str, model: Mapping[str, Any]) -> None:
        meta = model["metadata"]
        protocols = tuple(meta.get("protocols") or (meta["protocol"],))
        service = _Service(
            name=name,
            protocols=protocols,
            signing_name=meta.get("signingName") or meta["endpointPrefix"],
            endpoint_prefix=meta["endpointPrefix"],
            target_prefix=meta.get("targetPrefix"),
            query_compatible="awsQueryCompatible" in meta,
            json_version=meta.get("jsonVersion"),
        )
        self._services[name] = service
        signing = self._by_signing.setdefault(service.signing_name, _SigningIndex())
        # The service named like its signing name wins shared lookups (rds over neptune).
        if name == service.signing_name:
            signing.services.insert(0, service)
        else:
            signing.services.append(service)
        preferred = name == service.signing_name
        for op_name, op in model["operations"].items():
            action = iam_action_for(name, service.signing_name, op_name)
            for protocol in protocols:
                operation = Operation(name, op_name, protocol, action)
                if protocol in ("query", "ec2"):
                    if preferred or op_name not in signing.actions:
                        signing.actions[op_name] = operation
                elif protocol == "json" and service.target_prefix:
                    signing.targets[f"{service.target_prefix}.{op_name}"] = operation
                elif protocol == "smithy-rpc-v2-cbor":
                    signing.cbor[op_name] = operation
                elif protocol in ("rest-json", "rest-xml"):
                    method = op.get("http", {}).get("method", "POST").upper()
                    signing.rest[method].append(
                        _rest_template(service, model, op_name, op, protocol)
                    )

    # -- queries --------------------------------------------------------------------------

    def services_for(self, signing_name: str) -> tuple[str, ...]:
        signing = self._by_signing.get(signing_name)
        return tuple(s.name for s in signing.services) if signing else ()

    def protocol_for(self, signing_name: str) -> str:
        signing = self._by_signing.get(signing_name)
        if not signing:
            return "json" if signing_name not in ("s3", "sts", "iam") else "query"
        return signing.services[0].protocols[0]

    def query_compatible(self, service: str) -> bool:
        known = self._services.get(service)
        return bool(known and known.query_compatible)

    def json_version(self, service: str) -> str:
        known = self._services.get(service)
        return (known.json_version if known else None) or "1.0"

    def endpoint_prefix(self, service: str) -> str:
        known = self._services.get(service)
        return known.endpoint_prefix if known else service

    def identify(
        self,
        signing_name: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        virtual_bucket: str | None = None,
    ) -> Identified | None:
        signing = self._by_signing.get(signing_name)
        if signing is None:
            return None
        lower = {k.lower(): v for k, v in headers.items()}
        encoding = lower.get("content-encoding", "").replace("aws-chunked", "").strip(", ")
        compressed = f"the body is {encoding}-encoded" if encoding else None
        target = lower.get("x-amz-target")
        if target is not None:
            op = signing.targets.get(target.strip())
            if op is None:
                return None
            params, ambiguous = _json_params(None if compressed else body)
            return Identified(op, params, None, compressed or ambiguous)
        if signing.cbor and path.startswith("/service/") and "/operation/" in path:
            op = signing.cbor.get(path.rsplit("/", 1)[-1])
            return Identified(op, {}, None, "CBOR parameters are not read") if op else None
        if signing.actions:
            form, ambiguous = _form_params(query, lower, None if compressed else body)
            action = form.get("Action")
            if isinstance(action, str):
                op = signing.actions.get(action)
                if op is not None:
                    return Identified(op, form, None, compressed or ambiguous)
                if not signing.rest:
                    return None
        templates = signing.rest.get(method.upper())
        if not templates:
            return None
        full_path = (
            f"/{virtual_bucket}{path if path.startswith('/') else '/' + path}"
            if (virtual_bucket)
            else path
        )
        query_map: dict[str, str] = {}
        for key, value in query:
            query_map.setdefault(key, value)
        for template in templates:
            match = template.path.match(full_path or "/")
            if match is None:
                continue
            if any(
                key not in query_map or (value is not None and query_map[key] != value)
                for key, value in template.query_values
            ):
                continue
            if any(h not in lower for h in template.required_headers):
                continue
            params, ambiguous = _rest_params(template, match, query, lower, body)
            return Identified(
                template.operation,
                params,
                _resource(template.operation, params),
                compressed or ambiguous,
            )
        return None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _json_params(body: bytes | None) -> tuple[dict[str, object], str | None]:
    if not body:
        return {}, None
    try:
        parsed = json.loads(body, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as dup:
        return {}, f"the JSON key {dup} appears twice"
    except (ValueError, UnicodeDecodeError):
        return {}, "the body is not valid JSON"
    return (parsed, None) if isinstance(parsed, dict) else ({}, "the body is not a JSON object")


def _form_params(
    query: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes | None
) -> tuple[dict[str, object], str | None]:
    pairs = list(query)
    if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
        try:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return dict(pairs), "the form body is not UTF-8"
    params: dict[str, object] = {}
    ambiguous = None
    for key, value in pairs:
        if key in params and ambiguous is None:
            ambiguous = f"the parameter {key} appears twice"
        params.setdefault(key, value)
    return params, ambiguous


def _rest_params(
    template: _Template,
    match: re.Match[str],
    pairs: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes | None,
) -> tuple[dict[str, object], str | None]:
    labels = dict(zip(template.labels, match.groups(), strict=True))
    binding = template.binding
    params: dict[str, object] = {}
    ambiguous = None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query and ambiguous is None:
            ambiguous = f"the query parameter {key} appears twice"
        query.setdefault(key, value)
    if template.operation.protocol == "rest-json" and not binding.has_payload_member:
        body_params, body_ambiguous = _json_params(body)
        params.update(body_params)
        ambiguous = ambiguous or body_ambiguous
    for label, member in binding.uri:
        if label in labels:
            params[member] = labels[label]
    for key, member in binding.query:
        if key in query:
            params[member] = query[key]
    for header, member in binding.headers:
        if header in headers:
            params[member] = headers[header]
    return params, ambiguous


def _resource(operation: Operation, params: Mapping[str, object]) -> str | None:
    if operation.service != "s3":
        return None
    bucket, key = params.get("Bucket"), params.get("Key")
    if isinstance(bucket, str) and isinstance(key, str):
        return f"arn:aws:s3:::{bucket}/{key}"
    if isinstance(bucket, str):
        return f"arn:aws:s3:::{bucket}"
    return None


def quote_label(value: str) -> str:
    return quote(value, safe="")
