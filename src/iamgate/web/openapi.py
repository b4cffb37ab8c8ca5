"""The OpenAPI 3.1 description of `/api/v1`, generated from the API's routes and models.

Each route carries an `Operation`: its summary, who may call it, the pydantic models of its
body, query and answers, and the refusals it can give. This module only turns that into the document
(pydantic writes the JSON Schemas), so what the document says is what the code checks; a
unit test matches document and routes both ways, and schemathesis calls a real gateway with
what the document allows and checks every answer against it. (No library does this for
aiohttp's router without its own view classes and error shapes; it is eighty lines.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from iamgate.web.api_models import Error

JSON = "application/json"
REF = "#/components/schemas/{model}"
REASONS = {
    400: "the request is malformed",
    401: "no valid login session",
    403: "not allowed for this caller",
    404: "no such thing",
    405: "method not allowed on this path",
    409: "conflicts with what exists",
    413: "the body is larger than 64 KiB",
    423: "the account is locked",
    429: "too many attempts from this address",
    502: "AWS (STS or the federation endpoint) failed",
}


@dataclass(frozen=True, slots=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None  # None: no content


Who = Literal["anyone", "session", "user", "administrator"]  # who may call it


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    answers: dict[int, Answer]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None  # path parameters with more than "a string"
    who: Who = "user"  # anyone; a login session (to end it); its user; an administrator
    errors: tuple[int, ...] = ()  # besides 401 and 403 (from `who`) and 413 (from `body`)


Mode = Literal["validation", "serialization"]


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], Mode]]:
    models: dict[tuple[type[BaseModel], Mode], None] = {(Error, "serialization"): None}
    for op in operations:
        if op.body is not None:
            models[(op.body, "validation")] = None
        for answer in op.answers.values():
            if answer.model is not None:
                models[(answer.model, "serialization")] = None
    return list(models)


def _parameters(
    model: type[BaseModel] | None, where: str, names: Iterable[str] = ()
) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF) if model is not None else {}
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ())) | ({*names} if where == "path" else set())
    parameters = []
    for name in [*properties, *(n for n in names if n not in properties)]:
        field = dict(properties.get(name, {"type": "string"}))
        field.pop("title", None)
        description = field.pop("description", None)
        if name not in required and "anyOf" in field:  # optional: leave out, never null
            options = [s for s in field["anyOf"] if s.get("type") != "null"]
            field = options[0] | {k: v for k, v in field.items() if k != "anyOf"}
            field.pop("default", None)
        parameter = {"name": name, "in": where, "required": name in required, "schema": field}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


Names = dict[tuple[Any, Mode], dict[str, Any]]  # pydantic's: (model, mode) -> {"$ref": …}


def _content(model: type[BaseModel], names: Names) -> Any:
    mode: Mode = "serialization" if (model, "serialization") in names else "validation"
    return {JSON: {"schema": names[(model, mode)]}}


def _operation(op: Operation, template: str, names: Names) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, answer in op.answers.items():
        responses[str(status)] = {"description": answer.description}
        if answer.model is not None:
            responses[str(status)]["content"] = _content(answer.model, names)
    refusals = {401} if op.who != "anyone" else set()
    refusals |= {403} if op.who == "administrator" else set()
    refusals |= {413} if op.body is not None else set()  # every body is bounded (64 KiB)
    for status in sorted({*op.errors, *refusals}):
        responses[str(status)] = {"description": REASONS[status]} | {
            "content": _content(Error, names)
        }
    operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
    path_names = re.findall(r"\{(\w+)\}", template)
    parameters = _parameters(op.path, "path", path_names) + _parameters(op.query, "query")
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": _content(op.body, names),
        }
    if op.who == "anyone":
        operation["security"] = []
    return operation


def openapi_document(
    server_url: str, routes: Iterable[tuple[str, str, Operation]]
) -> dict[str, Any]:
    """The document for these (method, path template, operation) routes."""
    routes = list(routes)
    names, schemas = models_json_schema(_models(op for *_, op in routes), ref_template=REF)
    components: dict[str, Any] = dict(schemas.get("$defs", {}))
    for *_, op in routes:  # enums and the like a query parameter refers to
        for model in (op.query, op.path):
            if model is not None:
                components |= model.model_json_schema(ref_template=REF).get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for method, template, op in routes:
        paths.setdefault(template, {})[method.lower()] = _operation(op, template, names)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "iamgate",
            "version": "1",
            "description": "Short-lived, audited access to many AWS accounts. Errors are "
            '`{"error": Code, "message": text}`.',
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"session_cookie": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a login session token from POST /api/v1/login",
                },
                "session_cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "iamgate-session",
                    "description": "the web UI's session (`__Host-iamgate-session` over TLS); "
                    "unsafe methods also need the page's X-CSRF-Token header",
                },
            },
        },
    }
