"""The one error of the control plane, and its kinds.

Every use case in `iamgate.control` (and the console sign-in in `iamgate.aws.federation`)
refuses with `ControlError`; each front end renders it once, by its kind:

    ControlError
    ├── kind INVALID          the input cannot be read or breaks a rule      (API 400)
    ├── kind UNAUTHENTICATED  no live login session                          (API 401)
    ├── kind FORBIDDEN        the caller may not do this                     (API 403)
    ├── kind NOT_FOUND        no such user, session, account...              (API 404)
    ├── kind CONFLICT         the state forbids it (last administrator...)   (API 409)
    ├── kind GONE             it was, and is no more (a spent enrolment link) (API 410)
    ├── kind TOO_LARGE        the request is bigger than the API takes       (API 413)
    └── kind UPSTREAM         AWS (STS, the federation endpoint) failed      (API 502)

Subclasses add what one use case's caller needs (`control.enrolment.LinkDead.why`).
The JSON API answers `{"error": code, "message": message}` with the kind's status
(`iamgate.web.errors`), the pages show the message on a page or above a form, the CLI prints
the message and exits 1. `code` is the stable word a script matches (`NoSuchUser`);
`message` is for people. (`iamgate.refusals.Refused` is another thing: an AWS call refused,
answered in AWS's own error shape.)
"""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not found"
    CONFLICT = "conflict"
    GONE = "gone"
    TOO_LARGE = "too large"
    THROTTLED = "throttled"
    UPSTREAM = "upstream"


class ControlError(Exception):
    """A use case refused or failed: its kind, a stable code and a message for people."""

    def __init__(
        self, kind: Kind, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind, self.code, self.message = kind, code, message
        self.retry_after = retry_after  # seconds, with THROTTLED


def invalid(message: str, code: str = "BadRequest") -> ControlError:
    return ControlError(Kind.INVALID, code, message)


def not_found(code: str, message: str) -> ControlError:
    return ControlError(Kind.NOT_FOUND, code, message)


def forbidden(message: str, code: str = "AccessDenied") -> ControlError:
    return ControlError(Kind.FORBIDDEN, code, message)


def conflict(code: str, message: str) -> ControlError:
    return ControlError(Kind.CONFLICT, code, message)


def throttled(message: str, retry_after: int, code: str = "Throttled") -> ControlError:
    return ControlError(Kind.THROTTLED, code, message, retry_after=retry_after)
