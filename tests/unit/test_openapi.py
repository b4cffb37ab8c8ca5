"""The OpenAPI document and the API's routes describe the same API, both ways."""

from __future__ import annotations

from typing import Any, cast

from iamgate.config import Config
from iamgate.web.api import Api
from iamgate.web.openapi import openapi_document


def _api() -> Api:
    unused = cast(Any, None)  # the route table needs none of the I/O parts
    return Api(Config(), unused, unused, unused, unused, unused, unused)


def test_every_route_is_documented_and_every_documented_path_is_routed() -> None:
    document = openapi_document("http://127.0.0.1:8080")
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {
        (route.method, route.pattern.pattern.replace("(?P<", "{").replace(">[^/]+)", "}")[1:-1])
        for route in _api().routes
    }
    assert routed == documented


def test_the_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    validate(cast(Any, openapi_document("http://127.0.0.1:8080")))


def test_errors_are_documented_as_json_with_a_code_and_message() -> None:
    document = openapi_document("http://127.0.0.1:8080")
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]
    for item in document["paths"].values():
        for method, operation in item.items():
            if method == "parameters" or operation.get("security") == []:
                continue
            assert "401" in operation["responses"], (method, operation["summary"])
