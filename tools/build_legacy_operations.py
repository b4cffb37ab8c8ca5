"""Builds src/iamgate/aws/data/legacy_operations.json.gz: the routes of operations that
older botocore releases know and the installed one does not route the same way.

A client's SDK is often older than the gateway's botocore (the AWS CLI v1 pins its own), and
a request its models build must still be identified. Shipping several botocore releases'
models whole would cost ~100 MiB; the index needs only what identifies a request, so for each
release (newest first) this keeps the operations whose request is not one the installed
models already describe (a service dropped since, an operation renamed or removed, a REST
path or method changed, a signing name, target prefix or protocol changed), trimmed to:
metadata (protocols, signing name, endpoint prefix, API version, target prefix, JSON
version), each operation's method and request URI, and its input's top-level members with
their locations and types. The IAM action is derived at load time by the same rules as for
current operations (`iam_action_for`), so the two cannot drift apart.

Usage (downloads the wheels with pip unless --wheels names a directory holding them):

    .venv/bin/python tools/build_legacy_operations.py [--wheels DIR] [--versions 1.23.54,...]

The output is deterministic for a given set of wheels and installed botocore. Models are
botocore's (Apache-2.0); the data file carries their notice.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import create_loader

# About one release every six months from 2022 on, oldest first.
RELEASES = (
    "1.23.54",  # 2022-02
    "1.27.20",  # 2022-06
    "1.29.40",  # 2022-12
    "1.31.0",  # 2023-07
    "1.33.13",  # 2023-12
    "1.34.140",  # 2024-07
    "1.35.99",  # 2025-01
    "1.39.3",  # 2025-07
    "1.42.30",  # 2026-01
    "1.43.60",  # 2026-06
)

OUTPUT = Path(__file__).resolve().parent.parent / "src/iamgate/aws/data/legacy_operations.json.gz"

NOTICE = (
    "Derived from the service models of botocore (https://github.com/boto/botocore), "
    "Copyright Amazon.com, Inc. or its affiliates, licensed under the Apache License 2.0 "
    "(http://www.apache.org/licenses/LICENSE-2.0). Trimmed to what identifies a request."
)

_META_KEYS = (
    "protocol",
    "protocols",
    "signingName",
    "endpointPrefix",
    "apiVersion",
    "targetPrefix",
    "jsonVersion",
    "awsQueryCompatible",
)
_MEMBER_KEYS = ("location", "locationName", "queryName")

Fingerprint = tuple[Any, ...]


def download(versions: Iterable[str], into: Path) -> None:
    for version in versions:
        if not list(into.glob(f"botocore-{version}-*.whl")):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--dest",
                    str(into),
                    f"botocore=={version}",
                ],
                check=True,
            )


def wheel_models(wheel: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service, model) for the newest API version of each service in a botocore wheel,
    as botocore's loader would pick it."""
    with zipfile.ZipFile(wheel) as archive:
        latest: dict[str, tuple[str, str]] = {}
        for name in archive.namelist():
            match = re.fullmatch(r"botocore/data/([^/]+)/([^/]+)/service-2\.json(\.gz)?", name)
            if match and (match[1] not in latest or match[2] > latest[match[1]][0]):
                latest[match[1]] = (match[2], name)
        for service in sorted(latest):
            raw = archive.read(latest[service][1])
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            yield service, json.loads(raw)


def installed_models() -> Iterator[tuple[str, dict[str, Any]]]:
    loader = create_loader()
    for service in loader.list_available_services("service-2"):
        yield service, loader.load_service_model(service, "service-2")


def protocols(meta: Mapping[str, Any]) -> list[str]:
    return list(meta.get("protocols") or [meta["protocol"]])


def signing_name(meta: Mapping[str, Any]) -> str:
    return str(meta.get("signingName") or meta["endpointPrefix"])


def fingerprints(model: Mapping[str, Any], name: str) -> set[Fingerprint]:
    """What identifies the operation's requests, one per protocol the model lists; the same
    reading as iamgate.aws.operations (Action, X-Amz-Target, CBOR path, REST template)."""
    meta = model["metadata"]
    signing = signing_name(meta)
    op = model["operations"][name]
    found: set[Fingerprint] = set()
    for protocol in protocols(meta):
        if protocol in ("query", "ec2"):
            found.add((signing, "form", name))
        elif protocol == "json":
            found.add((signing, "json", f"{meta.get('targetPrefix')}.{name}"))
        elif protocol == "smithy-rpc-v2-cbor":
            found.add((signing, "cbor", meta.get("targetPrefix"), name))
        elif protocol in ("rest-json", "rest-xml"):
            found.add((signing, "rest", *rest_route(model, op)))
    return found


def rest_route(model: Mapping[str, Any], op: Mapping[str, Any]) -> tuple[Any, ...]:
    http = op.get("http", {})
    path, _, query = str(http.get("requestUri", "/")).partition("?")
    path = re.sub(r"\{[^}]*\+\}", "{+}", path)
    path = re.sub(r"\{[^}+]*\}", "{}", path).rstrip("/")
    keys = {item for item in query.split("&") if item and not item.startswith("x-id=")}
    shape = model["shapes"].get(op.get("input", {}).get("shape", ""), {})
    required = set(shape.get("required", ()))
    headers = set()
    for member, spec in shape.get("members", {}).items():
        wire = spec.get("locationName", member)
        if member in required and spec.get("location") == "querystring":
            if not any(k.partition("=")[0] == wire for k in keys):
                keys.add(wire)
        elif member in required and spec.get("location") == "header":
            headers.add(wire.lower())
    return (http.get("method", "POST").upper(), path, tuple(sorted(keys)), tuple(sorted(headers)))


def trimmed_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    kept = {key: meta[key] for key in _META_KEYS if key in meta}
    if "awsQueryCompatible" in kept:
        kept["awsQueryCompatible"] = {}
    return kept


def trimmed_operation(
    model: Mapping[str, Any], name: str, shapes: dict[str, Any]
) -> dict[str, Any]:
    """The operation with its input inlined as `<op>` and its members' types as `<op>.<m>`,
    so operations taken from different releases never share (and clash on) a shape name."""
    op = model["operations"][name]
    trimmed: dict[str, Any] = {}
    if "http" in op:
        trimmed["http"] = {k: op["http"][k] for k in ("method", "requestUri") if k in op["http"]}
    if op.get("deprecated"):
        trimmed["deprecated"] = True
    source = model["shapes"].get(op.get("input", {}).get("shape", ""))
    if source is None:
        return trimmed
    members: dict[str, Any] = {}
    for member, spec in source.get("members", {}).items():
        kept = {key: spec[key] for key in _MEMBER_KEYS if key in spec}
        target = model["shapes"].get(spec.get("shape", ""), {})
        kind: dict[str, Any] = {"type": target.get("type", "string")}
        if target.get("type") == "list" and target.get("flattened"):
            kind["flattened"] = True
            if "locationName" in target.get("member", {}):
                kind["member"] = {"locationName": target["member"]["locationName"]}
        shapes[f"{name}.{member}"] = kind
        members[member] = {"shape": f"{name}.{member}", **kept}
    shape: dict[str, Any] = {"type": "structure", "members": members}
    required = [m for m in source.get("required", ()) if m in members]
    if required:
        shape["required"] = required
    if "payload" in source:
        shape["payload"] = source["payload"]
    shapes[name] = shape
    trimmed["input"] = {"shape": name}
    return trimmed


def build(wheels: Iterable[Path]) -> tuple[dict[str, Any], dict[str, int]]:
    known: set[Fingerprint] = set()
    for _, model in installed_models():
        for name in model["operations"]:
            known |= fingerprints(model, name)
    # (service, metadata as JSON) -> variants, each holding an operation name at most once
    variants: dict[tuple[str, str], list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    for wheel in wheels:
        added = 0
        for service, model in wheel_models(wheel):
            meta = trimmed_metadata(model["metadata"])
            key = (service, json.dumps(meta, sort_keys=True))
            for name in sorted(model["operations"]):
                prints = fingerprints(model, name)
                if prints <= known:
                    continue
                known |= prints
                group = variants.setdefault(key, [])
                variant = next((v for v in group if name not in v["operations"]), None)
                if variant is None:
                    variant = {"service": service, "metadata": meta, "operations": {}}
                    variant["shapes"] = {}
                    group.append(variant)
                variant["operations"][name] = trimmed_operation(model, name, variant["shapes"])
                added += 1
        counts[wheel.name] = added
    by_signing: dict[str, list[dict[str, Any]]] = {}
    for (_, _), group in sorted(variants.items()):
        for variant in group:
            by_signing.setdefault(signing_name(variant["metadata"]), []).append(variant)
    return {"notice": NOTICE, "botocore": botocore.__version__, "signing": by_signing}, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", type=Path, help="directory of botocore wheels (kept)")
    parser.add_argument("--versions", default=",".join(RELEASES))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    versions = [v for v in args.versions.split(",") if v]
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.wheels or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        download(versions, directory)
        # Newest first: each route an operation has had is kept once, as its newest release
        # describes it.
        wheels = [next(directory.glob(f"botocore-{v}-*.whl")) for v in reversed(versions)]
        data, counts = build(wheels)
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    operations = sum(len(v["operations"]) for g in data["signing"].values() for v in g)
    for wheel, added in counts.items():
        print(
            f"{wheel}: {added} operations routed differently from botocore {botocore.__version__}"
        )
    print(f"{operations} operations, {len(text)} bytes JSON, {args.output.stat().st_size} gzipped")


if __name__ == "__main__":
    main()
