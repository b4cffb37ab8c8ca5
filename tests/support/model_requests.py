"""A representative request for each operation of a botocore service model, built from the
model alone (method, request URI with its labels filled, required query keys and headers, the
X-Amz-Target header, the form's Action): what any SDK built from that model sends, whatever
its values, for comparing the gateway's operation index with another release's models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel
from botocore.utils import PRIORITY_ORDERED_SUPPORTED_PROTOCOLS


@dataclass(frozen=True, eq=False)  # hashed by identity: one per operation
class ModelRequest:
    service: str
    operation: str
    signing_name: str
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None


def cli_data_path() -> Path:
    """The models the AWS CLI v1 in this environment uses: the botocore it bundles
    (awscli/botocore/data), or the installed botocore's when it bundles none."""
    spec = find_spec("awscli")
    assert spec is not None and spec.origin is not None, "the awscli package is not installed"
    bundled = Path(spec.origin).parent / "botocore" / "data"
    if bundled.is_dir():
        return bundled
    spec = find_spec("botocore")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data"


def service_models(data: Path) -> Iterator[ServiceModel]:
    loader = Loader(extra_search_paths=[str(data)], include_default_search_paths=False)
    for name in loader.list_available_services("service-2"):
        yield ServiceModel(loader.load_service_model(name, "service-2"), name)


def protocol(model: ServiceModel) -> str:
    listed = model.metadata.get("protocols") or [model.metadata["protocol"]]
    return next((p for p in PRIORITY_ORDERED_SUPPORTED_PROTOCOLS if p in listed), listed[0])


def request_for(model: ServiceModel, name: str) -> ModelRequest:
    op = model.operation_model(name)
    spoken = protocol(model)
    signing = model.signing_name or model.endpoint_prefix
    form = "application/x-www-form-urlencoded; charset=utf-8"
    if spoken in ("query", "ec2"):
        body = f"Action={name}&Version={model.api_version}".encode()
        return ModelRequest(
            model.service_name, name, signing, "POST", "/", [], {"content-type": form}, body
        )
    if spoken == "json":
        target = {"x-amz-target": f"{model.metadata['targetPrefix']}.{name}"}
        return ModelRequest(model.service_name, name, signing, "POST", "/", [], target, b"{}")
    if spoken == "smithy-rpc-v2-cbor":
        path = f"/service/{model.metadata['targetPrefix']}/operation/{name}"
        cbor = {"smithy-protocol": "rpc-v2-cbor"}
        return ModelRequest(model.service_name, name, signing, "POST", path, [], cbor, None)
    return _rest_request(model, op, signing, spoken)


def _rest_request(
    model: ServiceModel, op: OperationModel, signing: str, spoken: str
) -> ModelRequest:
    uri = op.http.get("requestUri", "/")
    path, _, query_part = uri.partition("?")
    path = re.sub(r"\{[^}]+\+\}", "a/b", path)
    path = re.sub(r"\{[^}]+\}", "v1", path)
    query = [
        (key, value)
        for key, _, value in (item.partition("=") for item in query_part.split("&") if item)
    ]
    headers: dict[str, str] = {}
    shape = op.input_shape
    if shape is not None:
        for member in shape.required_members:
            spec = shape.members[member].serialization
            wire = spec.get("name", member)
            if spec.get("location") == "querystring" and all(k != wire for k, _ in query):
                query.append((wire, "v1"))
            elif spec.get("location") == "header":
                headers[wire.lower()] = "v1"
    method = op.http.get("method", "POST").upper()
    body = b"{}" if spoken == "rest-json" and method not in ("GET", "HEAD", "DELETE") else None
    return ModelRequest(model.service_name, op.name, signing, method, path, query, headers, body)
