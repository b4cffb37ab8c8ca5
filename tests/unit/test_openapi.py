"""The OpenAPI document is generated from the API's routes and models: every route is in
it, every documented operation is routed, the document is valid OpenAPI 3.1, and each limit
it states is the one the code enforces."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiohttp import web
from pydantic import ValidationError

from iamgate.config import Config
from iamgate.control.audit_queries import MAX_PAGE
from iamgate.control.credentials import MIN_TTL
from iamgate.web import api_models as m
from iamgate.web.api import PREFIX, Api


def _api() -> Api:
    unused = cast(Any, None)  # the route table needs none of the I/O parts
    return Api(Config(), unused, unused, unused, unused, unused, unused)


def _document() -> dict[str, Any]:
    return _api().document


def test_every_route_is_documented_and_every_documented_operation_is_routed() -> None:
    """Both ways, against the routes aiohttp's router holds once the API is mounted."""
    api = _api()
    documented = {
        (method.upper(), path) for path, item in api.document["paths"].items() for method in item
    }
    server = web.Application()
    server.add_subapp(PREFIX, api.application())
    routed: set[tuple[str, str]] = set()
    fallbacks: set[str] = set()
    for route in server.router.routes():
        assert route.resource is not None
        if route.method == "*":  # the API's own 404 and 405 for what no route takes
            fallbacks.add(route.resource.canonical)
        else:
            routed.add((route.method, route.resource.canonical))
    assert routed == documented
    assert fallbacks == {PREFIX, PREFIX + "/{tail}"}


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    document = _document()
    assert document["openapi"].startswith("3.1")
    validate(cast(Any, document), cls=OpenAPIV31SpecValidator)


def test_errors_are_documented_as_json_with_a_code_and_message() -> None:
    document = _document()
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message"}
    for item in document["paths"].values():
        for method, operation in item.items():
            if operation.get("security") == []:
                continue
            assert "401" in operation["responses"], (method, operation["summary"])


def test_the_limits_the_document_states_are_the_ones_the_code_enforces() -> None:
    document = _document()
    credentials = document["components"]["schemas"]["CredentialsRequest"]
    ttl = credentials["properties"]["ttl_seconds"]
    assert ttl["minimum"] == MIN_TTL.total_seconds() == 60
    with pytest.raises(ValidationError):
        m.CredentialsRequest.model_validate({"account": "a", "role": "r", "ttl_seconds": 59})
    with pytest.raises(ValidationError):  # a whole number, not a string or a boolean
        m.CredentialsRequest.model_validate({"account": "a", "role": "r", "ttl_seconds": True})
    audit = document["paths"]["/api/v1/audit"]["get"]["parameters"]
    limit = next(p for p in audit if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, MAX_PAGE) == (1, 1000)
    before = next(p for p in audit if p["name"] == "before")["schema"]
    assert before == {"type": "string"}  # a cursor or a time: no date-time format
    password = document["components"]["schemas"]["NewUser"]["properties"]["password"]
    assert password["anyOf"][0].items() >= {"type": "string", "minLength": m.MIN_PASSWORD}.items()
    key = document["paths"]["/api/v1/credentials/{access_key}"]["delete"]["parameters"][0]
    assert key["in"] == "path" and key["required"] and key["schema"]["pattern"]
