"""The control plane's one error (`iamgate.control.errors`), as the JSON API answers it.

One table from kind to HTTP status; the body is `{"error": code, "message": message}` as
the OpenAPI document describes. (The pages render the same error as a page, in
`iamgate.web.pages`; the CLI as a message and exit status 1.)
"""

from __future__ import annotations

from aiohttp import web

from iamgate.control.errors import ControlError, Kind

STATUS: dict[Kind, int] = {
    Kind.INVALID: 400,
    Kind.UNAUTHENTICATED: 401,
    Kind.FORBIDDEN: 403,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.GONE: 410,
    Kind.TOO_LARGE: 413,
    Kind.THROTTLED: 429,
    Kind.UPSTREAM: 502,
}


def status_of(error: ControlError) -> int:
    return STATUS[error.kind]


def json_error(status: int, code: str, message: str) -> web.Response:
    response = web.json_response({"error": code, "message": message}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def json_refusal(error: ControlError) -> web.Response:
    response = json_error(status_of(error), error.code, error.message)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response
