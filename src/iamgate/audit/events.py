"""Audit events as plain data, so that what is recorded is decided in one pure place.

Every security-relevant thing becomes one event: who (principal, source address, user
agent), when, what type, and the fields of that type. Secrets never enter an event:
parameters of API calls pass through `summarize_params`, which bounds and redacts them.

Whatever the gateway hands over, what is recorded is bounded, so that one record can never
stop the audit log (which is fail-closed, so stopping it would stop the gateway):

- the principal and the fields that become searchable columns (`account_id`, `aws_role`,
  `service`, `action`, `decision`, `request_id`) are cut to their column's width
  (`COLUMN_WIDTHS`) and lose NUL characters, which PostgreSQL text cannot hold; a value of
  another type there is written as text, and a `status` outside a 32-bit integer as text;
- the source address to MAX_SOURCE_IP characters and the user agent to MAX_USER_AGENT;
- an event whose JSON is at most MAX_WHOLE_EVENT bytes keeps its `fields` whole (the
  common case, and one quick pass); in a larger one, or one that JSON cannot carry as it is
  (an object of another type, a lone surrogate, an integer beyond 64 bits, nesting deeper
  than orjson's 254 levels), `fields` are bounded piece by piece: each string to MAX_TEXT
  characters, each key to MAX_KEY, each list or mapping to MAX_ITEMS entries and
  MAX_DEPTH levels, and all of them together to MAX_FIELDS_TEXT characters and MAX_NODES
  values; an integer beyond 64 bits is written as text, and any other object as its str()
  (as JSON's default=str always did);
- lone surrogates (undecodable bytes of a header, say) become U+FFFD;
- a cut string ends in "…", a cut list or mapping in a "… N more" entry; the body names
  what was cut in `truncated` and what was otherwise changed in `altered` (paths such as
  "principal" or "fields.params.Name"), each present only when not empty;
- and `encode` never raises: if an event still cannot be encoded within MAX_EVENT_BYTES, a
  stand-in with its id, time, type and principal and no fields is recorded instead.

A record the store refuses all the same is stored as `quarantined(...)` in its place (see
`iamgate.audit.appender`), so that the chain goes on and still verifies.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

import orjson

from iamgate.audit.chain import CANONICAL, canonical_bytes


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
    BOT_CHANGED = "bot.changed"  # a stored bot added, its roles set, or removed
    ENROLMENT_CREATED = "enrolment.created"  # a one-time enrolment link handed out
    ENROLMENT_REDEEMED = "enrolment.redeemed"  # its user set a password and TOTP with it
    CONSOLE_SIGNIN = "console.signin"
    # A machine with no OIDC joins as its bot with a one-time token (`iamgate.control.joins`).
    JOIN_TOKEN_CREATED = "join.token.created"
    JOIN_SUCCEEDED = "join.succeeded"  # a token redeemed: the bot's session began
    JOIN_REFUSED = "join.refused"  # unknown, used, revoked or expired token; no such bot
    # Just-in-time access requests (`iamgate.control.requests`): every change of state.
    REQUEST_CREATED = "request.created"
    REQUEST_REVIEWED = "request.reviewed"  # one reviewer's approval or denial
    REQUEST_APPROVED = "request.approved"  # every stage approved: the grant is made
    REQUEST_DENIED = "request.denied"
    REQUEST_EXPIRED = "request.expired"  # unreviewed within its pending lifetime
    REQUEST_CANCELLED = "request.cancelled"  # by its requester, while pending
    REQUEST_ACTIVATED = "request.activated"  # its grant's start has come
    REQUEST_ENDED = "request.ended"  # expired, dropped or revoked: the next call is refused
    REQUEST_REFUSED = "request.refused"  # a review or revocation by someone who may not
    CONFIG_LOADED = "config.loaded"  # at start, and after each reload
    CONFIG_REJECTED = "config.rejected"  # a reload refused: the configuration in force stays
    SERVER_STARTED = "server.started"
    SERVER_STOPPED = "server.stopped"
    WEB_REFUSED = "web.refused"  # a browser request refused: forged form, no session
    # stored in place of a record the store refused: its id, type, number and the error
    AUDIT_QUARANTINED = "audit.quarantined"


# The widths of the audit log's searchable columns (`iamgate.store.tables.audit_events`):
# what becomes a column is cut to fit it.
COLUMN_WIDTHS: Mapping[str, int] = {
    "principal": 128,
    "account_id": 12,
    "aws_role": 128,
    "service": 64,
    "action": 192,
    "decision": 16,
    "request_id": 64,
}
_FIELD_COLUMNS = tuple((k, v) for k, v in COLUMN_WIDTHS.items() if k != "principal")
MAX_ID = 32  # the `id` and `type` columns
MAX_TYPE = 32
MAX_SOURCE_IP = 64  # as `login_sessions.source_ip`
MAX_USER_AGENT = 256
MAX_TEXT = 4096  # one string in `fields`
MAX_KEY = 128  # one key in `fields`
MAX_ITEMS = 100  # entries of one list or mapping in `fields`
MAX_DEPTH = 8  # levels of lists and mappings in `fields`
MAX_FIELDS_TEXT = 64 * 1024  # characters of every string and key in `fields` together
MAX_NODES = 2000  # values in `fields` together
MAX_WHOLE_EVENT = 8 * 1024  # an event this small as JSON keeps its fields whole
MAX_NOTES = 32  # paths named in `truncated` or `altered`; then "…"
MAX_NOTE = 64  # characters of one part of such a path
MAX_EVENT_BYTES = 1024 * 1024  # an encoded event, at most (the wire takes 16 MiB)
STATUS_RANGE = (-(2**31), 2**31 - 1)  # the `status` column is a 32-bit integer
_JSON_INTS = (-(2**63), 2**64 - 1)  # what orjson encodes as a number
_SURROGATE = re.compile("[\ud800-\udfff]")


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
        """The event as it is recorded: every field bounded (see the module's description)."""
        return self._bounded()[0]

    def _bounded(self) -> tuple[dict[str, Any], bytes | None]:
        """The bounded event, and its canonical JSON when that was made on the way."""
        if type(self.fields) is dict:
            # The common case: fields of plain JSON values, small. One orjson pass (which
            # refuses whatever needs more than JSON, or a walk) tells and encodes at once.
            body, bounds = self._head()
            body["fields"] = bounds.columns(dict(self.fields))
            bounds.annotate(body)
            try:
                encoded = orjson.dumps(body, option=CANONICAL)
            except Exception:  # orjson.JSONEncodeError: this one needs the walk
                encoded = b""
            if 0 < len(encoded) <= MAX_WHOLE_EVENT:
                return body, encoded
        body, bounds = self._head()
        body["fields"] = bounds.columns(bounds.fields(self.fields))
        bounds.annotate(body)
        return body, None

    def _head(self) -> tuple[dict[str, Any], _Bounds]:
        bounds = _Bounds()
        body: dict[str, Any] = {
            "id": bounds.column(_safe_str(self.id), MAX_ID, "id"),  # never empty in the store
            "time": format_time(self.time),
            "type": (
                str(self.type)
                if type(self.type) is EventType
                else bounds.column(_safe_str(self.type), MAX_TYPE, "type")
            ),
            "principal": bounds.column(self.principal, COLUMN_WIDTHS["principal"], "principal"),
            "source_ip": bounds.scalar(self.source_ip, MAX_SOURCE_IP, "source_ip"),
            "user_agent": bounds.scalar(self.user_agent or None, MAX_USER_AGENT, "user_agent"),
        }
        return body, bounds


def encode(event: AuditEvent) -> bytes:
    """The event as it is stored and hashed: fixed at the moment it is recorded.

    Never raises, and never longer than MAX_EVENT_BYTES: an event that cannot be encoded
    within bounds is recorded as a stand-in with its id, time, type and principal.
    """
    problem = "too large"
    try:
        body, encoded = event._bounded()
        if encoded is None:
            encoded = canonical_bytes(body)
        if len(encoded) <= MAX_EVENT_BYTES:
            return encoded
    except Exception as exc:
        problem = type(exc).__name__
    return canonical_bytes(_stand_in(event, problem))


def _stand_in(event: AuditEvent, problem: str) -> dict[str, Any]:
    bounds = _Bounds()
    try:
        moment = format_time(event.time)
    except Exception:
        moment = format_time(datetime.now(UTC))
    return {
        "id": bounds.column(_safe_str(event.id), MAX_ID, "id"),
        "time": moment,
        "type": bounds.column(_safe_str(event.type), MAX_TYPE, "type"),
        "principal": bounds.column(
            None if event.principal is None else _safe_str(event.principal),
            COLUMN_WIDTHS["principal"],
            "principal",
        ),
        "source_ip": None,
        "user_agent": None,
        "fields": {"…": f"not recorded: {problem}"[:MAX_KEY]},
        "truncated": ["fields"]
        + [name for name in ("source_ip", "user_agent") if getattr(event, name) is not None],
    }


def quarantined(body: bytes, seq: int, error: str) -> bytes:
    """What is stored, as event `seq` of a chain, in place of a record the store refused.

    It says that the record existed and why it is not there: the original's id, type and
    time when they can be read, its size and SHA-256, and the class of the store's error.
    Plain ASCII, so that any store takes it.
    """
    original: dict[str, Any] = {}
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict):
            original = parsed
    except Exception:  # noqa: S110 - what cannot be read is simply not carried over
        pass

    def ascii_of(value: object, limit: int) -> str | None:
        if not isinstance(value, str):
            return None
        text = value.encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "")
        return text if len(text) <= limit else text[: limit - 1] + "~"

    event = AuditEvent(
        EventType.AUDIT_QUARANTINED,
        fields={
            "seq": seq,
            "event_id": ascii_of(original.get("id"), MAX_ID),
            "event_type": ascii_of(original.get("type"), MAX_TYPE),
            "event_time": ascii_of(original.get("time"), MAX_ID),
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "error": ascii_of(error, 128),
        },
    )
    return encode(event)


Path = tuple[object, ...]  # where a value is in an event: ("fields", "params", "Name")


class _Bounds:
    """One event's budget as it is bounded, and the paths of what was cut or changed.

    This runs for every record on the gateway's event loop, so the common case (short
    strings, numbers, small dicts of exactly those types) takes the shortest way.
    """

    __slots__ = ("altered", "nodes_left", "text_left", "truncated")

    def __init__(self) -> None:
        self.text_left = MAX_FIELDS_TEXT
        self.nodes_left = MAX_NODES
        self.truncated: list[str] = []
        self.altered: list[str] = []

    @staticmethod
    def _note(notes: list[str], path: Path) -> None:
        if len(notes) > MAX_NOTES:
            return
        name = ".".join(str(part)[:MAX_NOTE] for part in path)[: MAX_NOTE * 2]
        if name in notes:
            return
        notes.append(name if len(notes) < MAX_NOTES else "…")

    def _cut(self, text: str, limit: int, path: Path) -> str:
        """`text` in at most `limit` characters, with no lone surrogate."""
        if len(text) > limit:
            text = text[: max(limit - 1, 0)] + "…"
            self._note(self.truncated, path)
        if not text.isascii() and _SURROGATE.search(text):
            text = _SURROGATE.sub("\ufffd", text)
            self._note(self.altered, path)
        return text

    def scalar(self, value: object, limit: int, path: str) -> str | None:
        """A top-level string of the event (None stays None)."""
        if value is None:
            return None
        if not isinstance(value, str):
            value = _safe_str(value)
            self._note(self.altered, (path,))
        return self._cut(value, limit, (path,))

    def column(self, value: object, limit: int, path: str) -> str | None:
        """A string that becomes a column: within its width, and without NUL."""
        if type(value) is str and len(value) <= limit and value.isascii() and "\x00" not in value:
            return value
        text = self.scalar(value, limit, path)
        if text is not None and "\x00" in text:
            text = text.replace("\x00", "\ufffd")
            self._note(self.altered, (path,))
        return text

    def fields(self, fields: object) -> dict[Any, Any]:
        """`fields` bounded piece by piece."""
        if isinstance(fields, Mapping):
            return self._mapping(fields, ("fields",), 0)
        self._note(self.altered, ("fields",))
        return {"…": self.value(fields, ("fields",), 1)}

    def columns(self, fields: dict[Any, Any]) -> dict[Any, Any]:
        """`fields` (a copy) with what becomes a column within its width."""
        for name, width in _FIELD_COLUMNS:
            value = fields.get(name)
            if value is None or (
                type(value) is str
                and len(value) <= width
                and value.isascii()
                and "\x00" not in value
            ):
                continue
            fields[name] = self.column(value, width, f"fields.{name}")
        status = fields.get("status")
        if (
            isinstance(status, int)
            and not isinstance(status, bool)
            and not STATUS_RANGE[0] <= status <= STATUS_RANGE[1]
        ):
            fields["status"] = str(status)  # within _JSON_INTS: at most 20 characters
            self._note(self.altered, ("fields", "status"))
        return fields

    def annotate(self, body: dict[str, Any]) -> None:
        if self.truncated:
            body["truncated"] = self.truncated
        if self.altered:
            body["altered"] = self.altered

    def value(self, value: object, path: Path, depth: int) -> object:
        """`value` bounded, as JSON will carry it."""
        self.nodes_left -= 1
        kind = type(value)
        if kind is str:
            text: str = value  # type: ignore[assignment]
            if len(text) <= 64 and self.text_left > 64 and text.isascii():
                self.text_left -= len(text)
                return text
            return self._text(text, path)
        if value is None or kind is bool or kind is float:
            return value
        if kind is int:
            number: int = value  # type: ignore[assignment]
            if _JSON_INTS[0] <= number <= _JSON_INTS[1]:
                return number
        if kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                self._note(self.truncated, path)
                return "…"
            if kind is dict:
                return self._mapping(value, path, depth)  # type: ignore[arg-type]
            return self._sequence(value, path, depth)  # type: ignore[arg-type]
        return self._other(value, path, depth)

    def _other(self, value: object, path: Path, depth: int) -> object:
        if isinstance(value, str):
            return self._text(value, path)
        if isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if _JSON_INTS[0] <= value <= _JSON_INTS[1]:
                return value
            self._note(self.altered, path)
            return self._text(_safe_str(value), path)
        if isinstance(value, datetime | date | time_of_day | uuid.UUID):
            return value  # short, and JSON-encoded as they always were
        if isinstance(value, enum.Enum):
            return self.value(value.value, path, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                self._note(self.truncated, path)
                return "…"
            if isinstance(value, Mapping):
                return self._mapping(value, path, depth)
            return self._sequence(value, path, depth)
        if isinstance(value, bytes | bytearray | memoryview):
            return self._text(repr(bytes(value[: MAX_TEXT + 1])), path)
        return self._text(_safe_str(value), path)  # as JSON's default=str always did

    def _text(self, text: str, path: Path) -> str:
        bounded = self._cut(text, max(min(MAX_TEXT, self.text_left), 1), path)
        self.text_left -= len(bounded)
        return bounded

    def _key(self, key: object, path: Path) -> object:
        if type(key) is str:
            name: str = key
            if len(name) <= 64 and self.text_left > 64 and name.isascii():
                self.text_left -= len(name)
                return name
        if isinstance(key, str):
            bounded = self._cut(key, max(min(MAX_KEY, self.text_left), 1), (*path, "…"))
            self.text_left -= len(bounded)
            return bounded
        if key is None or isinstance(key, bool | float):
            return key
        if isinstance(key, int) and _JSON_INTS[0] <= key <= _JSON_INTS[1]:
            return key
        self._note(self.altered, (*path, "…"))
        return self._cut(_safe_str(key), max(min(MAX_KEY, self.text_left), 1), (*path, "…"))

    def _mapping(self, value: Mapping[Any, Any], path: Path, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS or self.nodes_left <= 0 or self.text_left <= 0:
                out["…"] = f"{len(value) - index} more"
                self._note(self.truncated, path)
                break
            name = self._key(key, path)
            out[name] = self.value(item, (*path, name), depth + 1)
        return out

    def _sequence(self, value: list[Any] | tuple[Any, ...], path: Path, depth: int) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(value):
            if index >= MAX_ITEMS or self.nodes_left <= 0 or self.text_left <= 0:
                out.append(f"… {len(value) - index} more")
                self._note(self.truncated, path)
                break
            out.append(self.value(item, (*path, index), depth + 1))
        return out


def _safe_str(value: object) -> str:
    """str(value), or what it is when even that fails (a huge integer, a broken __str__)."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not _JSON_INTS[0] <= value <= _JSON_INTS[1]:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        return str(value)
    except Exception:
        return f"<a {type(value).__name__} that cannot be shown>"


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
