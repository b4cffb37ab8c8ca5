"""Just-in-time access requests: who may ask, who may review, when a request is approved,
and what an approved request lets its requester do. Pure: the store keeps requests and
reviews, the control plane calls these to decide, the gateway asks `Grant.covers`.

A request's life:

    pending ──approve (every stage, for some accounts)──▶ approved ──start──▶ active
       │                                                      │                 │
       ├─deny (any one)──▶ denied                             └──────┬──────────┘
       ├─pending lifetime over──▶ expired                            ▼
       └─requester cancels──▶ cancelled                   ended (expired | dropped | revoked)

Approval stages combine with AND: each needs `approve` different people from its reviewers,
and one person counts in one stage only (an assignment of approvers to stages, found as a
bipartite matching), per account: a reviewer may approve some of the request's accounts,
and a reviewer's scope (`accounts:` of their reviewer entry) limits which accounts their
approval counts for. The request is approved as soon as every stage holds for at least one
account; the grant is for exactly those accounts. The requester never reviews their own
request, and a person outside every stage's scope reviews nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iamgate.access.decisions import (
    Decision,
    Levels,
    account_selected,
    decide_among,
    role_reaches,
)
from iamgate.access.levels import access_levels
from iamgate.access.patterns import matches_any
from iamgate.config import (
    AccountConfig,
    AccountSelector,
    ApprovalStage,
    Config,
    Requestable,
    ReviewerRef,
    RoleConfig,
    parse_duration,
)


class State(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # approved, its start still to come
    ACTIVE = "active"
    DENIED = "denied"
    EXPIRED = "expired"  # never reviewed in its pending lifetime
    CANCELLED = "cancelled"
    ENDED = "ended"  # after being approved: see `Request.ended_by`


class EndedBy(enum.StrEnum):
    EXPIRED = "expired"  # its duration ran out
    DROPPED = "dropped"  # by the requester
    REVOKED = "revoked"  # by a reviewer or an administrator


# Which state may follow which: every change of state goes through `transition`.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PENDING: frozenset({State.APPROVED, State.DENIED, State.EXPIRED, State.CANCELLED}),
    State.APPROVED: frozenset({State.ACTIVE, State.ENDED}),
    State.ACTIVE: frozenset({State.ENDED}),
    State.DENIED: frozenset(),
    State.EXPIRED: frozenset(),
    State.CANCELLED: frozenset(),
    State.ENDED: frozenset(),
}
OPEN = frozenset({State.PENDING, State.APPROVED, State.ACTIVE})
MAX_REASON = 2000
MAX_TICKET = 128
MAX_ACTIONS = 50


class RequestRefused(Exception):
    """A request or a review that breaks a rule. `forbidden`: the person may not do it at
    all (403); otherwise the input or the state is wrong."""

    def __init__(self, message: str, *, forbidden: bool = False, conflict: bool = False) -> None:
        super().__init__(message)
        self.message, self.forbidden, self.conflict = message, forbidden, conflict


def transition(state: State, to: State) -> State:
    if to not in TRANSITIONS[state]:
        raise RequestRefused(f"a request that is {state} cannot become {to}", conflict=True)
    return to


@dataclass(frozen=True, slots=True)
class Person:
    """Someone acting on a request: a user and the gateway roles they hold now."""

    name: str
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Review:
    reviewer: str
    approve: bool
    accounts: frozenset[str]  # account ids the review is for (a deny ends the request)
    # For each of those accounts, the stages the reviewer counted in when they reviewed
    # (a later change of their roles does not move an approval given).
    scope: Mapping[str, frozenset[int]] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    requester: str
    role: str
    accounts: tuple[str, ...]  # account ids, resolved when asked for
    duration: timedelta
    reason: str
    created_at: datetime
    pending_until: datetime
    start: datetime | None = None  # asked-for start; None: as soon as approved
    actions: tuple[str, ...] = ()  # a narrower scope: only these IAM actions
    ticket: str | None = None
    state: State = State.PENDING
    ended_by: EndedBy | None = None
    approved_accounts: tuple[str, ...] = ()
    starts_at: datetime | None = None  # of the grant, once approved
    ends_at: datetime | None = None
    version: int = 0


# -- who may ask, who may review ----------------------------------------------------------


def _names(person: Person, ref_names: Iterable[str]) -> bool:
    return any(
        (name.removeprefix("user:") == person.name)
        if name.startswith("user:")
        else (name in person.roles)
        for name in ref_names
    )


def may_request(requestable: Requestable, person: Person) -> bool:
    return not requestable.requesters or _names(person, requestable.requesters)


def _ref_counts(ref: ReviewerRef, person: Person, account: AccountConfig) -> bool:
    if ref.user is not None and ref.user != person.name:
        return False
    if ref.role is not None and ref.role not in person.roles:
        return False
    return ref.accounts is None or account_selected(ref.accounts, account)


def stages_of(requestable: Requestable, person: Person, account: AccountConfig) -> frozenset[int]:
    """The stages whose reviewers include `person` for `account`."""
    return frozenset(
        i
        for i, stage in enumerate(requestable.approval_stages)
        if any(_ref_counts(ref, person, account) for ref in stage.reviewers)
    )


def reviewable(
    requestable: Requestable, person: Person, accounts: Sequence[AccountConfig]
) -> dict[str, frozenset[int]]:
    """For each of `accounts` the person's review may count for, the stages it counts in."""
    scopes = {a.id: stages_of(requestable, person, a) for a in accounts}
    return {account: stages for account, stages in scopes.items() if stages}


# -- asking --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """What a person asks for, as they typed it."""

    role: str
    accounts: tuple[str, ...] = ()  # names or ids
    selector: Mapping[str, Sequence[str]] | None = None  # labels, e.g. {"env": ["prod"]}
    duration: timedelta | None = None
    reason: str = ""
    start: datetime | None = None
    actions: tuple[str, ...] = ()
    ticket: str | None = None


def parse_selector(text: str) -> dict[str, list[str]]:
    """`env=prod,team=data` or `env=prod|staging` as an account label selector."""
    selector: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, values = part.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise RequestRefused(f"not a label selector: {part!r} (use forms like env=prod)")
        selector.setdefault(key.strip(), []).extend(v.strip() for v in values.split("|"))
    if not selector:
        raise RequestRefused("an empty label selector selects no account")
    return selector


def requested_role(config: Config, name: str) -> tuple[RoleConfig, Requestable]:
    role = next((r for r in config.roles if r.name == name), None)
    if role is None:
        raise RequestRefused(f"no gateway role {name!r}")
    if role.requestable is None:
        raise RequestRefused(f"gateway role {name} cannot be requested")
    return role, role.requestable


def resolve_accounts(config: Config, role: RoleConfig, ask: Ask) -> tuple[AccountConfig, ...]:
    """The accounts a request names, each one the role reaches; in configuration order."""
    if bool(ask.accounts) == (ask.selector is not None):
        raise RequestRefused("name accounts (--account) or a label selector (--accounts)")
    chosen: list[AccountConfig] = []
    if ask.selector is not None:
        selector = AccountSelector(labels={k: list(v) for k, v in ask.selector.items()})
        chosen = [a for a in config.aws.accounts if account_selected(selector, a)]
        chosen = [a for a in chosen if account_selected(role.allow.accounts, a)]
        if not chosen:
            raise RequestRefused(f"no account that role {role.name} reaches has those labels")
        return tuple(chosen)
    for name in ask.accounts:
        account = config.aws.account_named(name)
        if account is None:
            raise RequestRefused(f"no account {name!r}")
        if not account_selected(role.allow.accounts, account):
            raise RequestRefused(f"role {role.name} does not reach account {account.name}")
        if account not in chosen:
            chosen.append(account)
    return tuple(a for a in config.aws.accounts if a in chosen)


def check_ask(
    config: Config, person: Person, ask: Ask, *, now: datetime, request_id: str
) -> Request:
    """A new pending request, or RequestRefused saying which rule it breaks."""
    role, requestable = requested_role(config, ask.role)
    if not may_request(requestable, person):
        raise RequestRefused(f"{person.name} may not request role {role.name}", forbidden=True)
    accounts = resolve_accounts(config, role, ask)
    duration = ask.duration if ask.duration is not None else requestable.duration
    if duration <= timedelta(0):
        raise RequestRefused("the duration must be longer than 0s")
    if duration > requestable.max_duration:
        raise RequestRefused(
            f"role {role.name} may be requested for at most {_span(requestable.max_duration)}"
        )
    reason = ask.reason.strip()
    if len(reason) > MAX_REASON or len(ask.ticket or "") > MAX_TICKET:
        raise RequestRefused(f"a reason has at most {MAX_REASON} characters, a ticket {MAX_TICKET}")
    if "\x00" in reason + (ask.ticket or ""):
        raise RequestRefused("a reason or ticket cannot hold NUL characters")
    if requestable.reason.required and not reason:
        raise RequestRefused(f"role {role.name} needs a reason: {requestable.reason.prompt}")
    ticket = (ask.ticket or "").strip() or None
    if (
        requestable.ticket is not None
        and ticket is not None
        and not re.fullmatch(requestable.ticket, ticket)
    ):
        raise RequestRefused(f"ticket {ticket!r} does not match {requestable.ticket}")
    if ask.start is not None and ask.start < now - timedelta(minutes=1):
        raise RequestRefused("the start is in the past")
    if ask.start is not None and ask.start > now + requestable.pending_lifetime + duration:
        raise RequestRefused("the start is further away than the request could wait")
    if len(ask.actions) > MAX_ACTIONS:
        raise RequestRefused(f"a request names at most {MAX_ACTIONS} actions")
    for action in ask.actions:
        if not re.fullmatch(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+", action):
            raise RequestRefused(f"not an IAM action: {action!r} (use forms like rds:Delete*)")
    return Request(
        id=request_id,
        requester=person.name,
        role=role.name,
        accounts=tuple(a.id for a in accounts),
        duration=duration,
        reason=reason,
        created_at=now,
        pending_until=now + requestable.pending_lifetime,
        start=ask.start,
        actions=tuple(dict.fromkeys(ask.actions)),
        ticket=ticket,
    )


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds or not any(parts) else "")
    return "".join(parts)


def duration_text(value: timedelta) -> str:
    return _span(value)


def read_duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise RequestRefused(str(exc)) from None
    except OverflowError:
        raise RequestRefused(f"not a duration one can ask for: {text!r}") from None


# -- reviewing -----------------------------------------------------------------------------


def _assign(stages: Sequence[int], candidates: Mapping[str, frozenset[int]]) -> bool:
    """Whether different people can fill every stage's quota (stage i needs stages[i]),
    each person counting in one stage they qualify for: a bipartite matching of people to
    stage slots (Kuhn's augmenting paths; a handful of reviewers, so small)."""
    slots = [i for i, need in enumerate(stages) for _ in range(need)]
    taken: dict[int, str] = {}  # slot -> person

    def place(person: str, seen: set[int]) -> bool:
        for slot, stage in enumerate(slots):
            if stage in candidates[person] and slot not in seen:
                seen.add(slot)
                if slot not in taken or place(taken[slot], seen):
                    taken[slot] = person
                    return True
        return False

    for person in sorted(candidates):
        place(person, set())
    return len(taken) == len(slots)


def approved_accounts(
    stages: Sequence[ApprovalStage], accounts: Sequence[str], reviews: Iterable[Review]
) -> tuple[str, ...]:
    """The accounts every stage has approved."""
    approvals = [r for r in reviews if r.approve]
    needs = [stage.approve for stage in stages]
    done = []
    for account in accounts:
        candidates = {
            r.reviewer: r.scope.get(account, frozenset())
            for r in approvals
            if account in r.accounts
        }
        if _assign(needs, {p: s for p, s in candidates.items() if s}):
            done.append(account)
    return tuple(done)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a review does: the request stays pending, or is approved (for these accounts)
    or denied. `counts` are the account ids the review counts for."""

    state: State
    counts: tuple[str, ...]
    approved: tuple[str, ...] = ()


def check_review(
    requestable: Requestable,
    request: Request,
    reviews: Sequence[Review],
    reviewer: Person,
    accounts: Sequence[AccountConfig],
    *,
    approve: bool,
    only: Sequence[str] = (),
    reason: str = "",
    now: datetime,
) -> tuple[Review, Verdict]:
    """Check a review against the rules and say what it does. `accounts` are the request's
    accounts; `reviews` the earlier ones; `only` account ids the reviewer approves (empty:
    every one in their scope)."""
    if reviewer.name == request.requester:
        raise RequestRefused("the requester cannot review their own request", forbidden=True)
    scope = reviewable(requestable, reviewer, accounts)
    if not scope:
        raise RequestRefused(
            f"{reviewer.name} is not a reviewer of role {request.role} for these accounts",
            forbidden=True,
        )
    if request.state is not State.PENDING:
        raise RequestRefused(f"request {request.id} is {request.state}", conflict=True)
    if now >= request.pending_until:
        raise RequestRefused(f"request {request.id} expired unreviewed", conflict=True)
    if any(r.reviewer == reviewer.name for r in reviews):
        raise RequestRefused(f"{reviewer.name} has already reviewed {request.id}", conflict=True)
    unknown = [a for a in only if a not in request.accounts]
    if unknown:
        raise RequestRefused(f"request {request.id} does not name account {unknown[0]}")
    outside = [a for a in only if a not in scope]
    if outside:
        raise RequestRefused(
            f"{reviewer.name} may not review account {outside[0]} of {request.id}",
            forbidden=True,
        )
    counts = tuple(a for a in request.accounts if a in scope and (not only or a in only))
    review = Review(
        reviewer.name, approve, frozenset(counts), {a: scope[a] for a in counts}, reason
    )
    if not approve:
        return review, Verdict(State.DENIED, counts)
    approved = approved_accounts(requestable.approval_stages, request.accounts, [*reviews, review])
    if approved:
        return review, Verdict(State.APPROVED, counts, approved)
    return review, Verdict(State.PENDING, counts)


def grant_window(request: Request, now: datetime) -> tuple[datetime, datetime]:
    """When an approved request's grant starts and ends: at its asked-for start (or now, if
    that has passed), for its duration."""
    start = max(now, request.start) if request.start is not None else now
    return start, start + request.duration


# -- time ----------------------------------------------------------------------------------


def due(request: Request, now: datetime) -> tuple[State, EndedBy | None] | None:
    """The change of state the clock has brought about, if any."""
    if request.state is State.PENDING and now >= request.pending_until:
        return State.EXPIRED, None
    ends, starts = request.ends_at, request.starts_at
    if request.state in (State.APPROVED, State.ACTIVE) and ends is not None and now >= ends:
        return State.ENDED, EndedBy.EXPIRED
    if request.state is State.APPROVED and starts is not None and now >= starts:
        return State.ACTIVE, None
    return None


# -- the effect ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """An approved request as the gateway applies it: `role` for `accounts`, from
    `starts_at` until `ends_at`, optionally only for `actions`."""

    request_id: str
    user: str
    role: str
    accounts: frozenset[str]
    starts_at: datetime
    ends_at: datetime
    actions: tuple[str, ...] = ()

    def live(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def covers(self, account_id: str, action: str, now: datetime) -> bool:
        return (
            self.live(now)
            and account_id in self.accounts
            and (not self.actions or matches_any(self.actions, action) is not None)
        )


def granted_roles(
    grants: Sequence[Grant],
    roles: Mapping[str, RoleConfig],
    account: AccountConfig,
    aws_role: str,
    action: str,
    now: datetime,
) -> list[tuple[RoleConfig, Grant]]:
    """The granted roles that apply to this call: live, for this account (and action, if the
    grant is narrowed), reaching the credential's IAM role."""
    found = []
    for grant in grants:
        role = roles.get(grant.role)
        if (
            role is not None
            and grant.covers(account.id, action, now)
            and role_reaches(role, account, aws_role)
        ):
            found.append((role, grant))
    return found


@dataclass(frozen=True, slots=True)
class Hint:
    role: str
    account: str
    command: str


def request_hint(
    roles: Iterable[RoleConfig],
    person: Person,
    account: AccountConfig,
    aws_role: str,
    allows: Callable[[RoleConfig], bool],
) -> Hint | None:
    """The first requestable role the person may ask for that would allow the call (per
    `allows`), with the command that asks for it."""
    for role in roles:
        requestable = role.requestable
        if requestable is None or role.name in person.roles:
            continue
        if not may_request(requestable, person) or not role_reaches(role, account, aws_role):
            continue
        if allows(role):
            command = (
                f"iamgate request create --role {role.name} --account {account.name} "
                f"--duration {_span(requestable.duration)} --reason '...'"
            )
            return Hint(role.name, account.name, command)
    return None


@dataclass(frozen=True, slots=True)
class Call:
    """What the gateway decides on, as `decide_among` takes it."""

    account: AccountConfig
    aws_role: str
    action: str
    region: str
    params: Mapping[str, object]
    ambiguous: str | None = None

    def decide(self, roles: Sequence[RoleConfig], levels: Levels = access_levels) -> Decision:
        return decide_among(
            roles,
            self.account,
            self.aws_role,
            self.action,
            self.region,
            self.params,
            levels=levels,
            ambiguous=self.ambiguous,
        )


def decide_granted(
    grants: Sequence[Grant], roles: Mapping[str, RoleConfig], call: Call, now: datetime
) -> tuple[Decision, tuple[RoleConfig, ...]] | None:
    """The decision of the person's live grants on a call their own roles refused, if a
    grant allows it. A grant is decided on its own: an approved request is reviewed
    authority for its role, so the denies of the roles held every day (a data scientist's
    `rds:Delete*`) do not take it back; the granted role's own denies still do."""
    found = granted_roles(grants, roles, call.account, call.aws_role, call.action, now)
    if not found:
        return None
    decision = call.decide([role for role, _ in found])
    if not decision.allowed:
        return None
    grant = next(g for role, g in found if role.name == decision.role)
    rule = f"{decision.rule}, granted by request {grant.request_id} until {grant.ends_at:%H:%M:%SZ}"
    return Decision(True, decision.role, rule), tuple(role for role, _ in found)


def hint_for(roles: Iterable[RoleConfig], person: Person, call: Call) -> Hint | None:
    """The requestable role that would allow a refused call, and how to ask for it."""
    return request_hint(
        roles, person, call.account, call.aws_role, lambda role: call.decide([role]).allowed
    )


def requestable_for(config: Config, person: Person) -> list[dict[str, object]]:
    """The roles the person may ask for, as `iamgate ls` and My access show them: the
    accounts each reaches, its limits and the prompt for a reason."""
    found: list[dict[str, object]] = []
    for role in config.roles:
        requestable = role.requestable
        if requestable is None or role.name in person.roles:
            continue
        if not may_request(requestable, person):
            continue
        accounts = [a.name for a in config.aws.accounts if account_selected(role.allow.accounts, a)]
        found.append(
            {
                "role": role.name,
                "accounts": accounts,
                "aws_roles": list(role.allow.aws_roles),
                "max_duration": _span(requestable.max_duration),
                "default_duration": _span(requestable.duration),
                "pending_lifetime": _span(requestable.pending_lifetime),
                "reason_required": requestable.reason.required,
                "prompt": requestable.reason.prompt,
                "ticket": requestable.ticket,
                "stages": len(requestable.approval_stages),
            }
        )
    return found
