"""Which requests the server hands the gateway as S3 browser-form uploads, not the web UI."""

from __future__ import annotations

import pytest

from iamgate.server import is_aws_request

FORM = {"Content-Type": "multipart/form-data; boundary=----x"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "aws"),
    [
        ("POST", "/uploads", FORM, True),  # path-style: POST /bucket
        ("POST", "/uploads/", FORM, True),
        ("POST", "/login", FORM, True),  # a bucket may be called login; the page posts urlencoded
        ("POST", "/", FORM, True),  # virtual-hosted: POST / on bucket.gateway
        ("POST", "/uploads/key", FORM, False),  # an object path: not a form target
        ("POST", "/api/v1/users", FORM, False),
        ("PUT", "/uploads", FORM, False),
        ("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, False),
        ("POST", "/uploads", {"Content-Type": "text/plain; note=multipart/form-data"}, False),
    ],
)
def test_form_uploads_go_to_the_gateway(
    method: str, path: str, headers: dict[str, str], aws: bool
) -> None:
    assert is_aws_request(method, path, headers, "") is aws
