"""Audit events as plain data, so that what is recorded is decided in one pure place.

Every security-relevant thing becomes one event: who (principal, source address, user
agent), when, what type, and the fields of that type. Secrets never enter an event:
parameters of API calls pass through `summarize_params`, which bounds and redacts them.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from iamgate.audit.chain import canonical_bytes


class EventType(enum.StrEnum):
    AWS_CALL = "aws.call"  # allowed (and about to be forwarded) or denied
    AWS_CALL_OUTCOME = "aws.call.outcome"  # what the upstream answered
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_LOCKED = "login.locked"
    LOGOUT = "logout"
    CREDENTIALS_ISSUED = "credentials.issued"
    SESSION_REVOKED = "session.revoked"
    USER_CHANGED = "user.changed"
    CONSOLE_SIGNIN = "console.signin"
    REQUEST_CREATED = "request.created"
    REQUEST_APPROVED = "request.approved"
    REQUEST_DENIED = "request.denied"
    REQUEST_EXPIRED = "request.expired"
    CONFIG_LOADED = "config.loaded"  # at start, and after each reload
    CONFIG_REJECTED = "config.rejected"  # a reload refused: the configuration in force stays
    SERVER_STARTED = "server.started"
    SERVER_STOPPED = "server.stopped"
    WEB_REFUSED = "web.refused"  # a browser request refused: forged form, no session


def new_event_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    type: EventType
    principal: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=new_event_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": format_time(self.time),
            "type": str(self.type),
            "principal": self.principal,
            "source_ip": self.source_ip,
            "user_agent": (self.user_agent or "")[:256] or None,
            "fields": dict(self.fields),
        }


def encode(event: AuditEvent) -> bytes:
    """The event as it is stored and hashed: fixed at the moment it is recorded."""
    return canonical_bytes(event.as_dict())


def format_time(moment: datetime) -> str:
    """Fixed-width UTC with microseconds, so that the text sorts as the times do."""
    t = moment if moment.utcoffset() == _ZERO else moment.astimezone(UTC)
    return (
        f"{t.year:04}-{t.month:02}-{t.day:02}T{t.hour:02}:{t.minute:02}:{t.second:02}"
        f".{t.microsecond:06}Z"
    )


_ZERO = timedelta(0)
_SECRET_NAME = re.compile(
    r"password|passwd|secret|token|credential|privatekey|private_key|plaintext|"
    r"authorization|signature|sessionkey|accesskey",
    re.IGNORECASE,
)
MAX_PARAMS = 40
MAX_VALUE = 200


def summarize_params(params: Mapping[str, object]) -> dict[str, object]:
    """A bounded, redacted copy: enough to know what a call asked for, never a secret."""
    out: dict[str, object] = {}
    for index, key in enumerate(sorted(params)):
        if index == MAX_PARAMS:
            out["…"] = f"{len(params) - MAX_PARAMS} more"
            break
        value = params[key]
        if _SECRET_NAME.search(key):
            out[key] = "[redacted]"
        elif isinstance(value, bool | int | float) or value is None:
            out[key] = value
        else:
            text = value if isinstance(value, str) else repr(value)
            out[key] = text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"
    return out
