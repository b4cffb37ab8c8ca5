"""Which AWS operation a request is, and which IAM action it needs, from botocore's models.

Authorization is only as good as this answer, so it comes from the same service models
the SDKs use to build requests, for every protocol: `Action=` for query and ec2, the
`X-Amz-Target` header for json, the `/service/S/operation/O` path for smithy-rpc-v2-cbor,
and method + URI template (+ required query keys and headers) for rest-json and rest-xml.

Loading every model costs seconds (it is mostly JSON parsing of ~450 files, ec2's alone
is megabytes), so `build()` reads only each model's `metadata` object (tens of ms for all
services) and compiles the operations of a signing name the first time a request for it
arrives, under a lock; `preload()` compiles ahead of time for a predictable first request.
Once compiled, a lookup is a dictionary hit (query, json, cbor) or a scan of the few REST
templates that share the request's first path segment and query keys.

A client's SDK may be older than the installed botocore (the AWS CLI v1 pins its own): the
routes that older releases had and the installed models no longer describe (services since
dropped, REST paths or signing names since changed) ship as trimmed models in
`data/legacy_operations.json.gz` (built by tools/build_legacy_operations.py). They are
consulted only for a request the current models identify as nothing, so a legacy route never
shadows a current operation, and among themselves they are matched by the same rules.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Self
from urllib.parse import parse_qsl, quote, unquote

from botocore.loaders import Loader, create_loader
from botocore.utils import PRIORITY_ORDERED_SUPPORTED_PROTOCOLS

from iamgate.refusals import Reason, Refused

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

# Signing names of no botocore service, or asked before anything matched: what their
# clients most likely speak, so an early refusal still parses.
_FALLBACK_PROTOCOL = {"s3": "rest-xml", "s3-outposts": "rest-xml", "ec2": "ec2"}
_QUERY_SIGNING_NAMES = frozenset(
    {"sts", "iam", "rds", "sns", "elasticache", "cloudformation", "autoscaling", "redshift"}
)

# Signing names read as S3 only when nothing else matches an unsigned request.
_S3_SIGNING_NAMES = frozenset({"s3", "s3-outposts", "s3express", "s3-object-lambda"})

LEGACY_DATA = "legacy_operations.json.gz"

_MODEL_CACHE_KEYS = frozenset({"load_service_model", "load_data", "load_data_with_path"})
_METADATA_HEAD = 65536  # botocore writes `metadata` first; it is a few hundred bytes


@dataclass(frozen=True, slots=True)
class Operation:
    service: str
    name: str
    protocol: str
    iam_action: str

    def __reduce__(self) -> tuple[Any, ...]:
        return _positional(self)


@dataclass(frozen=True, slots=True)
class Identified:
    operation: Operation
    # As the upstream will read them. For the RPC protocols (query, ec2, json, cbor) they
    # are exactly what is forwarded: the upstream request is rebuilt from them.
    params: Mapping[str, object]
    resource: str | None
    # Why the parameters cannot be vouched for (a compressed body of a REST call, or a
    # parameter the operation does not take): guardrails refuse rather than guess.
    ambiguous: str | None = None


def _refuse(message: str) -> Refused:
    return Refused(Reason.AMBIGUOUS_REQUEST, f"iamgate: {message}")


@dataclass(frozen=True, slots=True)
class _Binding:
    """Where the input members of a REST operation travel on the wire."""

    uri: tuple[tuple[str, str], ...] = ()  # (label, member)
    query: tuple[tuple[str, str, bool], ...] = ()  # (query key, member, is a list)
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case header, member)
    # The member the whole body is, if any, and whether it is a JSON structure (a blob or
    # string payload such as Lambda's Invoke Payload is the caller's data, not parameters).
    payload: str | None = None
    payload_is_structure: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        return _positional(self)


class _PathPattern:
    """A URI template's regex, compiled when first matched: an index holds ~10,000 of them
    and a gateway matches against a few, so compiling all (at start-up, or when the index
    is read back from its cache, which stores the source alone) would cost seconds."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled: re.Pattern[str] | None = None

    def match(self, path: str) -> re.Match[str] | None:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self.source, re.DOTALL)
        return compiled.match(path)

    def __reduce__(self) -> tuple[type[_PathPattern], tuple[str]]:
        return _PathPattern, (self.source,)


@dataclass(frozen=True, slots=True)
class _Template:
    operation: Operation
    path: _PathPattern
    labels: tuple[str, ...]
    query_values: tuple[tuple[str, str | None], ...]  # required key, exact value or None
    required_headers: tuple[str, ...]
    x_id: str | None  # botocore's `?x-id=Op` marker: a tie-breaker, never required
    binding: _Binding
    first_segment: str | None  # literal first path segment, None when it holds a label
    specificity: tuple[int, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        return _positional(self)


def _positional(instance: Any) -> tuple[Any, ...]:
    """Pickled as a call with its fields in order: the index's cache holds tens of thousands
    of these, and dataclasses' own state for slotted classes is read back field by field,
    at ~20 µs each."""
    return type(instance), tuple(getattr(instance, name) for name in instance.__slots__)


@dataclass(frozen=True, slots=True)
class _Service:
    """A service as its metadata describes it: enough to route and render errors."""

    name: str
    protocols: tuple[str, ...]  # as listed by the model
    protocol: str  # the one botocore itself speaks (its priority order)
    signing_name: str
    endpoint_prefix: str
    api_version: str
    target_prefix: str | None
    query_compatible: bool
    json_version: str | None


@dataclass
class _RestIndex:
    """One method's templates, best first, and where to find candidates among them."""

    templates: list[_Template] = field(default_factory=list)
    # (literal first segment or None, anchoring required query key or None) -> positions
    buckets: dict[tuple[str | None, str | None], list[int]] = field(default_factory=dict)


@dataclass
class _SigningIndex:
    """Everything for one signing name: several botocore services may share it."""

    services: tuple[_Service, ...]
    actions: dict[str, list[Operation]] = field(default_factory=dict)  # query/ec2 Action
    targets: dict[str, Operation] = field(default_factory=dict)  # json X-Amz-Target
    cbor: dict[tuple[str, str], Operation] = field(default_factory=dict)  # (prefix, op)
    rest: dict[str, _RestIndex] = field(default_factory=dict)  # method -> templates
    # The top-level parameter names each operation takes, as its protocol spells them.
    inputs: dict[Operation, frozenset[str]] = field(default_factory=dict)
    # Query keys that select a REST operation (S3's sub-resources: ?tagging, ?versioning).
    selectors: frozenset[str] = frozenset()
    api_versions: dict[str, str] = field(default_factory=dict)  # service -> its API version
    # Routes of older botocore releases that the current models lack: tried only when the
    # current ones identify nothing.
    legacy: _SigningIndex | None = None

    def speaks(self, kind: str) -> bool:
        """Whether this signing name's current or legacy models have `kind` (an attribute:
        actions, targets, cbor) at all."""
        return bool(getattr(self, kind)) or bool(self.legacy and getattr(self.legacy, kind))


def iam_action_for(service: str, signing_name: str, operation: str) -> str:
    explicit = IAM_ACTION.get((service, operation))
    if explicit is not None:
        return explicit
    return f"{IAM_PREFIX.get(signing_name, signing_name)}:{operation}"


def _resolved_protocol(meta: Mapping[str, Any]) -> str:
    """The protocol botocore picks for the service, i.e. what `aws` and boto3 send."""
    listed = meta.get("protocols") or ()
    for protocol in PRIORITY_ORDERED_SUPPORTED_PROTOCOLS:
        if protocol in listed:
            return protocol
    return str(meta["protocol"])


def _service_from_metadata(name: str, meta: Mapping[str, Any]) -> _Service:
    return _Service(
        name=name,
        protocols=tuple(meta.get("protocols") or (meta["protocol"],)),
        protocol=_resolved_protocol(meta),
        signing_name=meta.get("signingName") or meta["endpointPrefix"],
        endpoint_prefix=meta["endpointPrefix"],
        api_version=meta.get("apiVersion", ""),
        target_prefix=meta.get("targetPrefix"),
        query_compatible="awsQueryCompatible" in meta,
        json_version=meta.get("jsonVersion"),
    )


def _read_metadata(loader: Loader, name: str) -> Mapping[str, Any]:
    """The `metadata` object of a service model without parsing the whole model."""
    version = loader.determine_latest_version(name, "service-2")
    for base in loader.search_paths:
        for suffix, opener in ((".json", open), (".json.gz", gzip.open)):
            path = f"{base}/{name}/{version}/service-2{suffix}"
            try:
                with opener(path, "rb") as handle:
                    head = handle.read(_METADATA_HEAD).decode("utf-8", "replace")
            except OSError:
                continue
            start = head.find("{", head.find('"metadata"'))
            try:
                meta, _ = json.JSONDecoder().raw_decode(head, start)
            except ValueError:
                break  # not where expected: read it the slow, certain way
            if isinstance(meta, dict) and "endpointPrefix" in meta and "protocol" in meta:
                return meta
            break
    model = loader.load_service_model(name, "service-2")
    _forget_models(loader)
    return dict(model["metadata"])


LegacyModels = Mapping[str, Sequence[tuple[_Service, Mapping[str, Any]]]]


def load_legacy(
    services: Iterable[str] | None = None, data: Mapping[str, Any] | None = None
) -> LegacyModels:
    """Legacy models by signing name (only those of `services` if given): the shipped ones,
    or `data` in the same form ({"signing": {name: [{service, metadata, operations,
    shapes}]}})."""
    wanted = None if services is None else set(services)
    if data is None:
        raw = files("iamgate.aws").joinpath("data", LEGACY_DATA).read_bytes()
        data = json.loads(gzip.decompress(raw))
    by_signing: dict[str, list[tuple[_Service, Mapping[str, Any]]]] = {}
    for signing_name, variants in data["signing"].items():
        for variant in variants:
            if wanted is None or variant["service"] in wanted:
                service = _service_from_metadata(variant["service"], variant["metadata"])
                by_signing.setdefault(signing_name, []).append((service, variant))
    return by_signing


def _forget_models(loader: Loader) -> None:
    """botocore's loader keeps every model it loads; the index needs none of them once
    compiled, and holding all ~450 at once would cost hundreds of MiB."""
    cache: dict[tuple[Any, ...], Any] = getattr(loader, "_cache", {})
    for key in [k for k in cache if k[0] in _MODEL_CACHE_KEYS]:
        del cache[key]


def _compile_path(path_template: str) -> tuple[_PathPattern, tuple[str, ...], int]:
    """A URI template as a regex over the path; also its literal length."""
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
    return _PathPattern("^" + pattern.rstrip("/") + "/?$"), tuple(labels), literal


def _rest_template(
    model: Mapping[str, Any], op: Mapping[str, Any], operation: Operation
) -> _Template:
    http = op.get("http", {})
    request_uri: str = http.get("requestUri", "/")
    path_part, _, query_part = request_uri.partition("?")
    query_values: list[tuple[str, str | None]] = []
    x_id = None
    for item in filter(None, query_part.split("&")):
        key, eq, value = item.partition("=")
        if key == "x-id":  # botocore may add it, other clients do not: never required
            x_id = value
            continue
        query_values.append((key, value if eq else None))
    shapes = model["shapes"]
    input_shape = shapes.get(op.get("input", {}).get("shape", ""), {})
    required = set(input_shape.get("required", ()))
    uri: list[tuple[str, str]] = []
    query: list[tuple[str, str, bool]] = []
    headers: list[tuple[str, str]] = []
    required_headers: list[str] = []
    payload = input_shape.get("payload")
    payload_is_structure = False
    for member, spec in input_shape.get("members", {}).items():
        location = spec.get("location")
        wire = spec.get("locationName", member)
        member_type = shapes.get(spec.get("shape", ""), {}).get("type")
        if member == payload:
            payload_is_structure = member_type == "structure"
        if location == "uri":
            uri.append((wire, member))
        elif location == "querystring":
            query.append((wire, member, member_type == "list"))
            if member in required and all(wire != k for k, _ in query_values):
                query_values.append((wire, None))
        elif location == "header":
            headers.append((wire.lower(), member))
            if member in required:
                required_headers.append(wire.lower())
    regex, labels, literal = _compile_path(path_part)
    first = path_part[1:].partition("/")[0]
    return _Template(
        operation=operation,
        path=regex,
        labels=labels,
        query_values=tuple(query_values),
        required_headers=tuple(required_headers),
        x_id=x_id,
        binding=_Binding(tuple(uri), tuple(query), tuple(headers), payload, payload_is_structure),
        first_segment=None if "{" in first else first,
        specificity=(
            len(query_values) + len(required_headers),
            literal,
            -sum(1 for label in labels if label),
            # A deprecated operation that shares its request with its successor
            # (GetBucketLifecycle, GetBucketNotification) yields to it.
            0 if op.get("deprecated") else 1,
        ),
    )


def _input_names(model: Mapping[str, Any], op: Mapping[str, Any], protocol: str) -> frozenset[str]:
    """The top-level parameter names of an operation's input as `protocol` puts them on the
    wire (botocore's serializers' rules), so a name in another spelling is seen as unknown."""
    shapes = model["shapes"]
    members = shapes.get(op.get("input", {}).get("shape", ""), {}).get("members", {})
    names: set[str] = set()
    for member, spec in members.items():
        wire = spec.get("locationName")
        if protocol == "ec2":
            names.add(spec.get("queryName") or (wire[0].upper() + wire[1:] if wire else member))
        elif protocol in ("rest-json", "rest-xml"):
            names.add(member)  # REST parameters are read by binding, into member names
            if "location" not in spec:
                names.add(wire or member)
        else:
            names.add(wire or member)
            shape = shapes.get(spec.get("shape", ""), {})
            if protocol == "query" and shape.get("flattened") and shape.get("type") == "list":
                names.add(shape.get("member", {}).get("locationName") or wire or member)
    return frozenset(names)


def _index_rest(templates: list[_Template]) -> _RestIndex:
    # Stable: among equally specific templates the model's order (and the service named
    # like the signing name, which is added first) wins.
    ordered = sorted(templates, key=lambda t: t.specificity, reverse=True)
    buckets: dict[tuple[str | None, str | None], list[int]] = defaultdict(list)
    for position, template in enumerate(ordered):
        # Any one required key will do as the anchor: a request lacking it cannot match.
        anchor = template.query_values[0][0] if template.query_values else None
        buckets[(template.first_segment, anchor)].append(position)
    return _RestIndex(ordered, dict(buckets))


def _compile(
    services: tuple[_Service, ...],
    models: Iterable[tuple[_Service, Mapping[str, Any]]],
    iam_signing: Mapping[str, str] | None = None,
) -> _SigningIndex:
    """`iam_signing` names, by service, the signing name its IAM actions are named after
    when it is not the one its requests are signed with (IoT's old models signed as
    execute-api; its actions are still iot:*)."""
    signing = _SigningIndex(services)
    rest: dict[str, list[_Template]] = defaultdict(list)
    for service, model in models:
        signing.api_versions.setdefault(service.name, service.api_version)
        iam_name = (iam_signing or {}).get(service.name, service.signing_name)
        for op_name, op in model["operations"].items():
            action = iam_action_for(service.name, iam_name, op_name)
            for protocol in service.protocols:
                operation = Operation(service.name, op_name, protocol, action)
                signing.inputs[operation] = _input_names(model, op, protocol)
                if protocol in ("query", "ec2"):
                    signing.actions.setdefault(op_name, []).append(operation)
                elif protocol == "json" and service.target_prefix:
                    signing.targets[f"{service.target_prefix}.{op_name}"] = operation
                elif protocol == "smithy-rpc-v2-cbor" and service.target_prefix:
                    signing.cbor[(service.target_prefix, op_name)] = operation
                elif protocol in ("rest-json", "rest-xml"):
                    method = op.get("http", {}).get("method", "POST").upper()
                    rest[method].append(_rest_template(model, op, operation))
    signing.rest = {method: _index_rest(templates) for method, templates in rest.items()}
    signing.selectors = frozenset(
        key for templates in rest.values() for t in templates for key, _ in t.query_values
    )
    return signing


class OperationIndex:
    """Signing name -> botocore services -> operations, compiled on first use."""

    def __init__(
        self, loader: Loader, services: Iterable[_Service], legacy: LegacyModels | None = None
    ) -> None:
        self._loader = loader
        self._services: dict[str, _Service] = {s.name: s for s in services}
        self._legacy = dict(legacy or {})
        # Metadata of services only older releases have (answers errors in their protocol).
        self._legacy_services: dict[str, _Service] = {}
        for variants in self._legacy.values():
            for service, _ in variants:
                if service.name not in self._services:
                    self._legacy_services.setdefault(service.name, service)
        by_signing: dict[str, list[_Service]] = defaultdict(list)
        for service in self._services.values():
            by_signing[service.signing_name].append(service)
        # The service named like its signing name wins shared lookups (rds over neptune).
        self._by_signing: dict[str, tuple[_Service, ...]] = {
            signing: tuple(
                sorted(group, key=lambda s: (s.name != signing, s.name != s.endpoint_prefix))
            )
            for signing, group in by_signing.items()
        }
        self._compiled: dict[str, _SigningIndex] = {}
        self._lock = threading.Lock()

    # Pickled without botocore's loader and the lock (iamgate.aws.index_cache stores a
    # compiled index); a new loader compiles whatever the stored index had not compiled.

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = dict(self.__dict__)
            state["_compiled"] = dict(self._compiled)
        del state["_loader"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._loader = create_loader()
        self._lock = threading.Lock()

    @property
    def complete(self) -> bool:
        """Whether every signing name is compiled (preload has nothing left to do)."""
        return all(name in self._compiled for name in (*self._by_signing, *self._legacy))

    @classmethod
    def build(
        cls,
        services: Iterable[str] | None = None,
        *,
        loader: Loader | None = None,
        legacy: bool | LegacyModels = True,
    ) -> Self:
        """Reads each service's metadata (and the legacy routes: the shipped ones, none, or
        those given) now; operations are compiled on first use."""
        loader = loader or create_loader()
        names = (
            list(services) if services is not None else loader.list_available_services("service-2")
        )
        return cls(
            loader,
            [_service_from_metadata(name, _read_metadata(loader, name)) for name in names],
            legacy
            if not isinstance(legacy, bool)
            else load_legacy(None if services is None else names)
            if legacy
            else None,
        )

    def preload(self, signing_names: Iterable[str] | None = None) -> None:
        """Compile now (all signing names by default) so no request waits for a model."""
        everything = {*self._by_signing, *self._legacy}
        for signing_name in everything if signing_names is None else signing_names:
            self._signing(signing_name)

    def _signing(self, signing_name: str) -> _SigningIndex | None:
        compiled = self._compiled.get(signing_name)
        if compiled is not None:
            return compiled
        services = self._by_signing.get(signing_name)
        legacy = self._legacy.get(signing_name)
        if services is None and legacy is None:
            return None
        with self._lock:
            compiled = self._compiled.get(signing_name)
            if compiled is None:
                compiled = _compile(services or (), self._current_models(services or ()))
                if legacy:
                    compiled.legacy = _compile(
                        tuple(s for s, _ in legacy),
                        legacy,
                        {name: s.signing_name for name, s in self._services.items()},
                    )
                    compiled.legacy.selectors |= compiled.selectors
                self._compiled[signing_name] = compiled
        return compiled

    def _current_models(
        self, services: Iterable[_Service]
    ) -> Iterator[tuple[_Service, Mapping[str, Any]]]:
        for service in services:
            model = self._loader.load_service_model(service.name, "service-2")
            _forget_models(self._loader)
            yield service, model

    # -- metadata: answered without compiling anything ----------------------------------

    def services_for(self, signing_name: str) -> tuple[str, ...]:
        return tuple(s.name for s in self._by_signing.get(signing_name, ()))

    def _service(self, name: str) -> _Service | None:
        return self._services.get(name) or self._legacy_services.get(name)

    def protocol_for(
        self,
        signing_name: str,
        *,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """The protocol to answer in when no operation matched (the request may not even
        have been authenticated). The request's own shape decides when it says something
        (an X-Amz-Target header is json, `/service/S/operation/O` is CBOR, a form body is
        query); otherwise the protocol botocore speaks to the service named like the
        signing name, e.g. `json` for SQS and CloudWatch, whose models list others too."""
        services = self._by_signing.get(signing_name) or tuple(
            service for service, _ in self._legacy.get(signing_name, ())
        )
        if not services:
            if signing_name in _FALLBACK_PROTOCOL:
                return _FALLBACK_PROTOCOL[signing_name]
            return "query" if signing_name in _QUERY_SIGNING_NAMES else "json"
        # What older clients speak counts too: a form posted to SQS is an old SDK's query call.
        spoken = {p for s in services for p in s.protocols}
        spoken |= {p for s, _ in self._legacy.get(signing_name, ()) for p in s.protocols}
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        if "x-amz-target" in lower and "json" in spoken:
            return "json"
        if (
            lower.get("smithy-protocol") == "rpc-v2-cbor" or _cbor_path(path or "") is not None
        ) and "smithy-rpc-v2-cbor" in spoken:
            return "smithy-rpc-v2-cbor"
        if "x-www-form-urlencoded" in lower.get("content-type", ""):
            for form in ("query", "ec2"):
                if form in spoken:
                    return form
        return services[0].protocol

    def query_compatible(self, service: str) -> bool:
        known = self._service(service)
        return bool(known and known.query_compatible)

    def json_version(self, service: str) -> str:
        known = self._service(service)
        return (known.json_version if known else None) or "1.0"

    def endpoint_prefix(self, service: str) -> str:
        known = self._service(service)
        return known.endpoint_prefix if known else service

    # -- identification -------------------------------------------------------------------

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
        raw_path: str | None = None,
    ) -> Identified | None:
        """The operation a request is, or None when it is none the models describe.

        `query` and `headers` must be exactly what will be forwarded (no presigning, no
        unsigned headers, each header once), so nothing the upstream reads escapes this
        reading. A request another parser could read as another operation (`Action` beside
        `X-Amz-Target`, a parameter given twice, two S3 sub-resources) raises `Refused`.

        `path` is percent-decoded. Pass `raw_path` (as sent) too where possible: REST labels
        are then matched before decoding, so an encoded `/` inside a label (`a%2Fversions`)
        cannot make the request look like a different operation than AWS will execute.
        """
        signing = self._signing(signing_name)
        if signing is None:
            return None
        lower = {k.lower(): v for k, v in headers.items()}
        encoding = lower.get("content-encoding", "").replace("aws-chunked", "").strip(", ")
        compressed = f"the body is {encoding}-encoded" if encoding else None
        target = lower.get("x-amz-target")
        form = _form_pairs(query, lower, body)
        actions = [value for key, value in form if key.lower() == "action"]
        # The request's shape picks one reading (json, cbor, query, REST) for current and
        # legacy models alike; legacy ones are asked only when the current ones know nothing.
        cbor = _cbor_path(path) if signing.speaks("cbor") else None
        for models in (signing, signing.legacy):
            if models is None:
                continue
            if target is not None:
                found = self._identify_json(
                    models,
                    target,
                    actions,
                    path,
                    query,
                    body,
                    compressed,
                    signing.speaks("targets"),
                )
            elif cbor is not None:
                found = self._identify_cbor(models, cbor, actions, query, body, compressed)
            elif actions and signing.speaks("actions"):
                found = self._identify_query(models, actions, form, path, lower, body, compressed)
            else:
                found = self._identify_rest(
                    models, method, path, raw_path, query, lower, body, virtual_bucket, compressed
                )
            if found is not None:
                return found
        return None

    def identify_unsigned(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        raw_path: str | None = None,
        virtual_bucket: str | None = None,
    ) -> tuple[str, Identified] | None:
        """(signing name, operation) of a request that carries no signature, hence no
        credential scope naming its service: so it can be refused in that service's own
        protocol and its record can say what was attempted.

        Its shape decides, among the signing names compiled so far (all, once preloaded:
        an unsigned request never compiles anything): an X-Amz-Target names a JSON
        operation, `/service/S/operation/O` a CBOR one, an Action (with the Version, when
        given, of the service's API) a query or EC2 one; otherwise a REST route of a service
        other than S3 whose first path segment is a literal of its model (Lambda's
        `/2015-03-31/...`, Route 53's `/2013-04-01/...`); anything else is read as S3
        (path-style, or virtual-hosted when `virtual_bucket` is given).
        """
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            form = _form_pairs(query, lower, body)
        except Refused:
            form = list(query)
        named = {key.lower(): value for key, value in reversed(form)}
        action, version = named.get("action"), named.get("version")
        target, cbor = lower.get("x-amz-target"), _cbor_path(path)
        full = raw_path if raw_path is not None else path
        first = unquote(full.lstrip("/").partition("/")[0])
        keys = (None, *dict(query))

        def shaped(signing: _SigningIndex) -> bool:
            return reads(signing) or (signing.legacy is not None and reads(signing.legacy))

        def reads(signing: _SigningIndex) -> bool:
            if target is not None:
                return target in signing.targets
            if cbor is not None:
                return cbor in signing.cbor
            if action is not None:
                versions = {s.api_version for s in signing.services}
                return action in signing.actions and (version is None or version in versions)
            rest = signing.rest.get(method.upper())
            return rest is not None and any((first, key) in rest.buckets for key in keys)

        rpc = target is not None or cbor is not None or action is not None
        candidates = [
            name
            for name, signing in list(self._compiled.items())
            if name not in _S3_SIGNING_NAMES and shaped(signing)
        ]
        if not rpc and "s3" in self._compiled:
            candidates.append("s3")
        for name in candidates:
            try:
                found = self.identify(
                    name,
                    method,
                    path,
                    query,
                    headers,
                    body,
                    virtual_bucket=virtual_bucket if name == "s3" else None,
                    raw_path=raw_path,
                )
            except Refused:
                continue
            if found is not None:
                return name, found
        return None

    def _identify_json(
        self,
        signing: _SigningIndex,
        target: str,
        actions: Sequence[str],
        path: str,
        query: Sequence[tuple[str, str]],
        body: bytes | None,
        compressed: str | None,
        speaks_json: bool,
    ) -> Identified | None:
        if not speaks_json:
            also = f", beside Action={actions[0]}" if actions else ""
            raise _refuse(f"X-Amz-Target {target} is not part of this service's protocol{also}")
        if actions:
            raise _refuse(
                f"the request names its operation twice: X-Amz-Target {target} and "
                f"Action={actions[0]}"
            )
        if path != "/" or query:
            raise _refuse("a JSON-protocol call is a POST to / with no query string")
        op = signing.targets.get(target.strip())
        return _read_rpc(signing, op, _json_params, body, compressed)

    def _identify_cbor(
        self,
        signing: _SigningIndex,
        cbor: tuple[str, str],
        actions: Sequence[str],
        query: Sequence[tuple[str, str]],
        body: bytes | None,
        compressed: str | None,
    ) -> Identified | None:
        if actions or query:
            raise _refuse("a CBOR-protocol call carries no query string and no Action")
        return _read_rpc(signing, signing.cbor.get(cbor), _cbor_params, body, compressed)

    def _identify_query(
        self,
        signing: _SigningIndex,
        actions: Sequence[str],
        form: Sequence[tuple[str, str]],
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        compressed: str | None,
    ) -> Identified | None:
        if len(actions) > 1:
            raise _refuse(
                "the request names its operation twice: "
                + " and ".join(f"Action={a}" for a in actions)
            )
        named = f"Action={actions[0]}: "
        if path != "/":
            raise _refuse(f"{named}a query-protocol call goes to /; QueueUrl and such name targets")
        if compressed:
            raise _refuse(f"{named}{compressed}, which iamgate cannot read")
        if body and "x-www-form-urlencoded" not in headers.get("content-type", ""):
            raise _refuse(f"{named}the body of a query-protocol call must be a form")
        params: dict[str, object] = {}
        spelled: dict[str, str] = {}
        for key, value in form:
            seen = spelled.setdefault(key.lower(), key)
            if key in params or seen != key:
                raise _refuse(
                    f"{named}the parameter {key} is given twice"
                    + ("" if seen == key else f" (also as {seen})")
                )
            params[key] = value
        if "Action" not in params:
            given = next(name for name, _ in form if name.lower() == "action")
            raise _refuse(f"the operation is named by Action, not {given}={actions[0]}")
        candidates = signing.actions.get(actions[0])
        if candidates is None:
            return None
        version = params.get("Version")
        op = next(
            (c for c in candidates if signing.api_versions.get(c.service) == version),
            candidates[0],
        )
        top = {key.partition(".")[0] for key in params if key not in ("Action", "Version")}
        return Identified(op, params, None, _unknown(signing, op, top))

    def _identify_rest(
        self,
        signing: _SigningIndex,
        method: str,
        path: str,
        raw_path: str | None,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        virtual_bucket: str | None,
        compressed: str | None,
    ) -> Identified | None:
        rest = signing.rest.get(method.upper())
        if rest is None:
            return None
        encoded = raw_path is not None
        full_path = raw_path if raw_path is not None else path
        if not full_path.startswith("/"):
            full_path = "/" + full_path
        if virtual_bucket:
            full_path = (
                f"/{quote(virtual_bucket, safe='') if encoded else virtual_bucket}{full_path}"
            )
        first = full_path[1:].partition("/")[0]
        if encoded:
            first = unquote(first)
        query_map: dict[str, str] = {}
        for key, value in query:
            query_map.setdefault(key, value)
        positions: list[int] = []
        buckets = rest.buckets
        for segment in (first, None):
            for anchor in (None, *query_map):
                found = buckets.get((segment, anchor))
                if found:
                    positions += found
        positions.sort()
        x_id = query_map.get("x-id")
        lacking: list[tuple[_Template, re.Match[str]]] = []
        for position in positions:
            template = rest.templates[position]
            if x_id is not None and template.x_id is not None and template.x_id != x_id:
                continue
            if any(
                key not in query_map or (value is not None and query_map[key] != value)
                for key, value in template.query_values
            ):
                continue
            match = template.path.match(full_path)
            if match is None:
                continue
            if any(h not in headers for h in template.required_headers):
                lacking.append((template, match))
                continue
            if lacking and not _same_selectors(template, lacking[0][0]):
                template, match = _named_by_selectors(lacking)
            _check_selectors(signing, template, query)
            labels = match.groups()
            if encoded:
                labels = tuple(unquote(label) for label in labels)
            params = _rest_params(template, labels, query, headers)
            ambiguous = compressed
            if template.operation.protocol == "rest-json" and not compressed:
                ambiguous = _rest_json_body(template, body, params)
            return Identified(
                template.operation,
                params,
                _resource(template.operation, params),
                ambiguous or _unknown(signing, template.operation, params),
            )
        if lacking:
            template, match = _named_by_selectors(lacking)
            _check_selectors(signing, template, query)
            labels = match.groups()
            if encoded:
                labels = tuple(unquote(label) for label in labels)
            params = _rest_params(template, labels, query, headers)
            return Identified(
                template.operation,
                params,
                _resource(template.operation, params),
                compressed or _unknown(signing, template.operation, params),
            )
        return None


def _selectors(template: _Template) -> frozenset[tuple[str, str | None]]:
    return frozenset(template.query_values)


def _same_selectors(template: _Template, other: _Template) -> bool:
    """Whether `template` is told from `other` by headers alone (CopyObject and PutObject,
    UploadPartCopy and UploadPart): only then may a missing header decide between them."""
    return _selectors(template) >= _selectors(other)


def _named_by_selectors(
    lacking: Sequence[tuple[_Template, re.Match[str]]],
) -> tuple[_Template, re.Match[str]]:
    """The most specific template the request matches but for a required header, when no
    template with its selectors matches whole. S3 routes by method, path and sub-resource
    (`?attributes`) and answers a missing header with its own error, so a missing header
    must not turn the request into a less specific operation the upstream will not
    execute. Two such operations on the same selectors, told apart only by headers the
    request lacks, are ambiguous."""
    first = lacking[0]
    for other, _ in lacking[1:]:
        if _selectors(other) == _selectors(first[0]) and other.operation != first[0].operation:
            raise _refuse(
                f"the request lacks the headers that tell {first[0].operation.name} from "
                f"{other.operation.name}"
            )
    return first


def _read_rpc(
    signing: _SigningIndex,
    op: Operation | None,
    parse: Callable[[bytes | None], tuple[dict[str, object], str | None]],
    body: bytes | None,
    compressed: str | None,
) -> Identified | None:
    """An RPC call's parameters, read strictly: its upstream request is rebuilt from them,
    so a body that cannot be read cannot be forwarded."""
    if op is None:
        return None
    if compressed:
        raise _refuse(f"{op.name}: {compressed}, which iamgate cannot read")
    params, error = parse(body)
    if error is not None:
        raise _refuse(f"{op.name}: {error}")
    return Identified(op, params, None, _unknown(signing, op, params))


def _check_selectors(
    signing: _SigningIndex, template: _Template, query: Sequence[tuple[str, str]]
) -> None:
    """A REST request may name only the sub-resources of the operation it is: with two
    (`?tagging&versioning`) the upstream's own order, not ours, would decide."""
    allowed = {key for key, _ in template.query_values}
    lists = {key for key, _, is_list in template.binding.query if is_list}
    allowed |= {key for key, _, _ in template.binding.query}
    seen: set[str] = set()
    for key, _ in query:
        if key == "Action" and key not in allowed:
            raise _refuse(f"{template.operation.name} takes no Action parameter")
        if key in signing.selectors and key not in allowed:
            raise _refuse(
                f"the query names another operation than {template.operation.name} "
                f"(the sub-resource {key})"
            )
        if key in seen and key in allowed and key not in lists:
            raise _refuse(f"the query parameter {key} is given twice")
        seen.add(key)


def _unknown(signing: _SigningIndex, operation: Operation, names: Iterable[str]) -> str | None:
    known = signing.inputs.get(operation, frozenset())
    for name in names:
        if name not in known:
            return f"{name} is not a parameter of {operation.name}"
    return None


def _form_pairs(
    query: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes | None
) -> list[tuple[str, str]]:
    """The query's pairs and, for a form body, the body's: where query protocols read."""
    pairs = list(query)
    if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("the form body is not UTF-8") from None
        pairs += parse_qsl(text, keep_blank_values=True)
    return pairs


def _cbor_path(path: str) -> tuple[str, str] | None:
    """(service, operation) of a smithy-rpc-v2-cbor path `/service/S/operation/O`."""
    if not path.startswith("/service/"):
        return None
    parts = path.split("/")
    if len(parts) != 5 or parts[3] != "operation":
        return None
    return parts[2], parts[4]


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_params(body: bytes | None) -> tuple[dict[str, object], str | None]:
    """Strict JSON: a duplicate key or NaN/Infinity (which other parsers read otherwise, or
    not at all) is an error, not a value."""
    if not body:
        return {}, None
    try:
        parsed = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as dup:
        return {}, f"the JSON key {dup} appears twice"
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}, "the body is not valid JSON"
    return (parsed, None) if isinstance(parsed, dict) else ({}, "the body is not a JSON object")


def _cbor_params(body: bytes | None) -> tuple[dict[str, object], str | None]:
    if not body:
        return {}, None
    try:
        value, end = _CborReader(body).item(0, 0)
    except _DuplicateKey as dup:
        return {}, f"the CBOR key {dup} appears twice"
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return {}, "the body is not valid CBOR"
    if end != len(body):
        return {}, "the body has bytes after its CBOR value"
    return (value, None) if isinstance(value, dict) else ({}, "the body is not a CBOR map")


class _CborReader:
    """Just enough CBOR (RFC 8949) to read request parameters, strictly: a duplicate map
    key is an error, as in JSON, since AWS and the gateway might each take a different one."""

    _MAX_DEPTH = 64

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _argument(self, info: int, at: int) -> tuple[int | None, int]:
        if info < 24:
            return info, at
        if info == 31:
            return None, at  # indefinite length
        size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
        if size is None or at + size > len(self.data):
            raise ValueError("bad CBOR argument")
        return int.from_bytes(self.data[at : at + size], "big"), at + size

    def item(self, at: int, depth: int) -> tuple[object, int]:
        if depth > self._MAX_DEPTH:
            raise ValueError("CBOR nested too deeply")
        initial = self.data[at]
        major, info = initial >> 5, initial & 0x1F
        at += 1
        if major == 7:
            return self._simple(info, at)
        count, at = self._argument(info, at)
        if major == 0:
            return count, at
        if major == 1:
            return -1 - (count or 0), at
        if major in (2, 3):
            return self._string(major, count, at)
        if major == 4:
            items: list[object] = []
            while count is None or len(items) < count:
                if count is None and self.data[at] == 0xFF:
                    return items, at + 1
                value, at = self.item(at, depth + 1)
                items.append(value)
            return items, at
        if major == 5:
            mapping: dict[str, object] = {}
            read = 0
            while count is None or read < count:
                if count is None and self.data[at] == 0xFF:
                    return mapping, at + 1
                key, at = self.item(at, depth + 1)
                if not isinstance(key, str):
                    raise ValueError("CBOR map key is not text")
                if key in mapping:
                    raise _DuplicateKey(key)
                mapping[key], at = self.item(at, depth + 1)
                read += 1
            return mapping, at
        return self.item(at, depth + 1)  # major 6: a tag (e.g. 1, epoch time) on the value

    def _string(self, major: int, count: int | None, at: int) -> tuple[object, int]:
        if count is None:
            chunks = bytearray()
            while self.data[at] != 0xFF:
                chunk, at = self.item(at, self._MAX_DEPTH)
                if not isinstance(chunk, bytes | str):
                    raise ValueError("bad CBOR string chunk")
                chunks += chunk.encode() if isinstance(chunk, str) else chunk
            raw, at = bytes(chunks), at + 1
        else:
            if at + count > len(self.data):
                raise ValueError("CBOR string past the end")
            raw, at = self.data[at : at + count], at + count
        return (raw.decode("utf-8") if major == 3 else raw), at

    def _simple(self, info: int, at: int) -> tuple[object, int]:
        if info in (20, 21):
            return info == 21, at
        if info in (22, 23):
            return None, at
        formats = {25: (">e", 2), 26: (">f", 4), 27: (">d", 8)}
        if info in formats:
            fmt, size = formats[info]
            return struct.unpack(fmt, self.data[at : at + size])[0], at + size
        raise ValueError("unsupported CBOR simple value")


def _rest_params(
    template: _Template,
    labels: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
) -> dict[str, object]:
    """The parameters bound to the URI, the query and the headers."""
    binding = template.binding
    params: dict[str, object] = {}
    by_label = dict(zip(template.labels, labels, strict=True))
    for label, member in binding.uri:
        if label in by_label:
            params[member] = by_label[label]
    values: dict[str, list[str]] = defaultdict(list)
    for key, value in pairs:
        values[key].append(value)
    for key, member, is_list in binding.query:
        given = values.get(key)
        if given:
            params[member] = list(given) if is_list else given[0]
    for header, member in binding.headers:
        if header in headers:
            params[member] = headers[header]
    return params


def _rest_json_body(
    template: _Template, body: bytes | None, params: dict[str, object]
) -> str | None:
    """Adds what a rest-json body says to `params`; why it cannot be read, if it cannot."""
    binding = template.binding
    if binding.payload is None:
        body_params, ambiguous = _json_params(body)
        params.update({k: v for k, v in body_params.items() if k not in params})
        return ambiguous
    if binding.payload_is_structure and body:
        body_params, ambiguous = _json_params(body)
        params[binding.payload] = body_params
        return ambiguous
    return None


def _resource(operation: Operation, params: Mapping[str, object]) -> str | None:
    if operation.service != "s3":
        return None
    bucket, key = params.get("Bucket"), params.get("Key")
    if isinstance(bucket, str) and isinstance(key, str):
        return f"arn:aws:s3:::{bucket}/{key}"
    if isinstance(bucket, str):
        return f"arn:aws:s3:::{bucket}"
    return None
