"""Which unsigned requests that no web page matched are anonymous AWS calls (server.py)."""

from __future__ import annotations

import pytest

from iamgate.server import anonymous_aws_shape

BROWSER_PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
BROWSER_ICON = {"Accept": "image/avif,image/webp,*/*", "Sec-Fetch-Dest": "image"}
CURL = {"Accept": "*/*"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "unrouted", "aws"),
    [
        ("GET", "/bucket/key", {}, True, True),  # boto3 UNSIGNED: no Accept
        ("GET", "/bucket/key", CURL, True, True),
        ("GET", "/bucket", {"Sec-Fetch-Dest": "empty"}, True, True),  # fetch() from a page
        ("PUT", "/bucket/key", {}, True, True),
        ("HEAD", "/bucket/key", BROWSER_PAGE, True, True),
        ("DELETE", "/bucket/key", {}, True, True),
        ("POST", "/bucket", {}, True, True),
        ("GET", "/bucket/key", BROWSER_PAGE, True, False),  # a mistyped address: the 404 page
        ("GET", "/favicon.ico", BROWSER_ICON, True, False),
        ("GET", "/login", CURL, False, False),  # a page of the web UI
        ("PUT", "/api/v1/users/x/roles", {}, True, False),  # the JSON API's own
        ("GET", "/api", {}, True, False),
        ("HEAD", "/", {}, True, False),
        ("OPTIONS", "/bucket/key", {}, True, False),
        ("PATCH", "/bucket/key", {}, True, False),
    ],
)
def test_the_shape_rule(
    method: str, path: str, headers: dict[str, str], unrouted: bool, aws: bool
) -> None:
    assert anonymous_aws_shape(method, path, headers, unrouted=unrouted) is aws
