"""A search of the audit trail as people ask for it, read and checked once.

The JSON API (`GET /api/v1/audit`), the Audit page and `iamgate audit search --config` take
the same filters, typed as text (a query string, a form, options). `read` turns them into
`audit.search.Filters` and says, in one sentence each, what cannot be read: the API answers
400 with the sentences, the page shows them above its form, the CLI prints them. Who may
see whose events is `scoped`: an administrator anyone's, anyone else their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from iamgate.audit.events import EventType
from iamgate.audit.search import CURSOR_MARK, Filters, is_cursor
from iamgate.config import Config
from iamgate.control.callers import Caller
from iamgate.control.errors import forbidden, invalid

MAX_PAGE = 1000
DECISIONS = ("allowed", "denied", "error")
ACCOUNT_ID = re.compile(r"[0-9]{12}")
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
ACCESS_KEY = re.compile(r"[A-Z0-9]{16,128}")
IAM_PATTERN = re.compile(r"[A-Za-z0-9*?-]+(:[A-Za-z0-9*?-]*)?")
CLAIM = re.compile(r"(?P<name>[A-Za-z0-9_.-]{1,64})=(?P<value>.{1,256})", re.DOTALL)
# What can be searched for, as a person would ask for it; any single event type, too.
EVENT_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aws": ("AWS API calls", (EventType.AWS_CALL,)),
    "logins": (
        "Logins and logouts",
        (
            EventType.LOGIN_SUCCEEDED,
            EventType.LOGIN_FAILED,
            EventType.LOGIN_LOCKED,
            EventType.LOGOUT,
        ),
    ),
    "credentials": ("Credentials issued", (EventType.CREDENTIALS_ISSUED,)),
    "revocations": ("Revocations", (EventType.SESSION_REVOKED,)),
    "users": (
        "Users: adds, locks, resets",
        (
            EventType.USER_CHANGED,
            EventType.BOT_CHANGED,
            EventType.ENROLMENT_CREATED,
            EventType.ENROLMENT_REDEEMED,
        ),
    ),
    "console": ("Console sign-ins", (EventType.CONSOLE_SIGNIN,)),
    "config": (
        "Configuration, start and stop",
        (
            EventType.CONFIG_LOADED,
            EventType.CONFIG_REJECTED,
            EventType.SERVER_STARTED,
            EventType.SERVER_STOPPED,
        ),
    ),
    "refused": ("Refused pages", (EventType.WEB_REFUSED,)),
    "all": ("Every event", tuple(t for t in EventType if t is not EventType.AWS_CALL_OUTCOME)),
}


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The filters as typed; empty text is no filter. `type` is an event type (`aws.call`)
    or a group of them (`logins`, see EVENT_GROUPS)."""

    principal: str | None = None
    account: str | None = None
    role: str | None = None
    service: str | None = None
    action: str | None = None
    decision: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    before: str | None = None
    type: str | None = None
    key: str | None = None
    limit: str | None = None
    claim: str | None = None  # a CI job's token claim, NAME=VALUE (repository=acme/infra)

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> AuditQuery:
        """From a query string or a form: the fields named as above, others ignored."""
        return cls(**{k: fields.get(k) for k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Read:
    filters: Filters
    problems: tuple[str, ...]  # one sentence per filter that could not be read

    def or_refuse(self) -> Filters:
        if self.problems:
            raise invalid(" ".join(self.problems))
        return self.filters


def _text(value: str | None) -> str | None:
    return (value or "").strip() or None


def _before(typed: str | None, problems: list[str], blank_is_none: bool) -> str | None:
    """A cursor (the `next` of the page before: each event exactly once) or a time."""
    raw = _text(typed)
    if raw and is_cursor(raw):
        time = raw.partition(CURSOR_MARK)[0]
        return raw if _time("before", time, problems, blank_is_none) else None
    return _time("before", typed, problems, blank_is_none)


def _time(name: str, typed: str | None, problems: list[str], blank_is_none: bool) -> str | None:
    value = _text(typed)
    if value is None:
        if typed is not None and not blank_is_none:
            problems.append(f"{name.capitalize()} is empty: leave it out, or give a time.")
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.append(
            f"{name.capitalize()} {value!r} is not a time such as 2026-11-25T00:00:00Z."
        )
        return None
    return value


def read(
    config: Config,
    query: AuditQuery,
    *,
    default_limit: int = 100,
    default_type: str = "aws",
    blank_is_none: bool = True,
) -> Read:
    """The filters, and a sentence for each that cannot be read. A form sends its empty
    fields, meaning no filter (`blank_is_none`); a JSON API client that sends an empty time
    means something it did not say, and is told so."""
    problems: list[str] = []
    account_id = _text(query.account)
    if account_id is not None:
        named = config.aws.account_named(account_id)
        if named is not None:
            account_id = named.id
        elif not ACCOUNT_ID.fullmatch(account_id):
            problems.append(f"No account is named {account_id!r}.")
            account_id = None
    status = None
    if (typed := _text(query.status)) is not None:
        status = int(typed) if WHOLE_NUMBER.fullmatch(typed) else None
        if status is None or not 100 <= status <= 599:
            problems.append(f"Status {typed!r} is not an HTTP status such as 403.")
            status = None
    decision = _text(query.decision)
    if decision is not None and decision not in DECISIONS:
        problems.append(f"Decision {decision!r} is not allowed, denied or error.")
        decision = None
    kind = _text(query.type) or default_type
    if kind in EVENT_GROUPS:
        types = EVENT_GROUPS[kind][1]
    elif kind in set(EventType):
        types = (kind,)
    else:
        problems.append(f"No such kind of event: {kind!r}.")
        types = EVENT_GROUPS[default_type][1] if default_type in EVENT_GROUPS else ()
    key = (_text(query.key) or "").upper() or None
    if key is not None and not ACCESS_KEY.fullmatch(key):
        problems.append(f"{key!r} is not an access key id such as ASIA…, 16 to 128 letters.")
        key = None
    action = _text(query.action)
    if action is not None and not IAM_PATTERN.fullmatch(action):
        problems.append(f"Action {action!r} is not an IAM action such as rds:Delete*.")
        action = None
    job: tuple[tuple[str, str], ...] = ()
    if (typed := _text(query.claim)) is not None:
        claim = CLAIM.fullmatch(typed)
        if claim is None:
            problems.append(f"Claim {typed[:80]!r} is not NAME=VALUE, e.g. run_id=9876543210.")
        else:
            job = ((claim["name"], claim["value"]),)
    limit = default_limit
    if (typed := _text(query.limit)) is not None:
        limit = int(typed) if WHOLE_NUMBER.fullmatch(typed) else 0
        if not 1 <= limit <= MAX_PAGE:
            problems.append(f"Limit {typed!r} is not a whole number from 1 to {MAX_PAGE}.")
            limit = default_limit
    filters = Filters(
        principal=_text(query.principal),
        account_id=account_id,
        aws_role=_text(query.role),
        service=_text(query.service),
        action=action,
        decision=decision,
        status=status,
        since=_time("since", query.since, problems, blank_is_none),
        until=_time("until", query.until, problems, blank_is_none),
        before=_before(query.before, problems, blank_is_none),
        types=types,
        access_key_id=key,
        limit=limit,
        job=job,
    )
    return Read(filters, tuple(problems))


def scoped(filters: Filters, caller: Caller) -> Filters:
    """An administrator searches anyone's events; anyone else their own only."""
    if caller.administer:
        return filters
    if filters.principal not in (None, caller.user):
        raise forbidden("you may see your own events only")
    return replace(filters, principal=caller.user)
