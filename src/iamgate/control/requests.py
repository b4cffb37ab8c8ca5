"""Just-in-time access requests as use cases: ask, review, cancel or drop, revoke, list,
and the changes the clock brings. The CLI on the gateway host, the JSON API and the gateway's
own sweeper all call these, so a change is the same change, audited the same way, whoever
makes it.

Every change of state is decided by the pure rules (`iamgate.access.requests`) on what the
store holds, then written only if the request is still as it was read (`store.requests`);
if another replica changed it first, the change is decided again on the new state. Every
transition, and every refusal to review, is an audit event naming actor, reason and rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.access.requests import (
    OPEN,
    Ask,
    EndedBy,
    Person,
    Request,
    RequestRefused,
    State,
    Verdict,
    check_ask,
    check_review,
    due,
    duration_text,
    grant_window,
    parse_selector,
    read_duration,
    requested_role,
    reviewable,
    transition,
)
from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.config import AccountConfig, Config, Configured, LiveConfig, Requestable, live
from iamgate.control.errors import ControlError, conflict, forbidden, invalid, not_found
from iamgate.control.notifications import compose, reviewers_of
from iamgate.control.users import Actor
from iamgate.store.notifications import Outbound
from iamgate.store.requests import (
    Stored,
    create_request,
    due_requests,
    list_requests,
    load_request,
    move_request,
    new_request_id,
    record_review,
)
from iamgate.store.users import get_user

# How often a review is decided again when other replicas keep changing the request first.
RETRIES = 20


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as a person may see it: with its accounts by name and what they may do."""

    stored: Stored
    accounts: tuple[AccountConfig, ...]
    approved: tuple[AccountConfig, ...]
    stages: tuple[str, ...]  # each stage in words
    may_review: bool
    may_drop: bool
    may_revoke: bool

    @property
    def request(self) -> Request:
        return self.stored.request


def _refused(exc: RequestRefused) -> ControlError:
    if exc.forbidden:
        return forbidden(exc.message, code="AccessDenied")
    if exc.conflict:
        return conflict("RequestConflict", exc.message)
    return invalid(exc.message, code="InvalidRequest")


def no_such_request(request_id: str) -> ControlError:
    return not_found("NoSuchRequest", f"no request {request_id!r}")


def _stage_words(requestable: Requestable) -> tuple[str, ...]:
    words = []
    for stage in requestable.approval_stages:
        names = [
            (f"user {r.user}" if r.user else str(r.role))
            + (" (scoped)" if r.accounts is not None else "")
            for r in stage.reviewers
        ]
        words.append(f"{stage.approve} of {' or '.join(names)}")
    return tuple(words)


class Requests(Configured):
    def __init__(
        self,
        config: Config | LiveConfig,
        engine: Engine,
        audit: AuditSink,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.live = live(config)
        self.engine = engine
        self.audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- who ----------------------------------------------------------------------------

    def person(self, name: str) -> Person:
        """The user with the gateway roles they hold now (defined ones only)."""
        row = get_user(self.engine, name)
        if row is None:
            raise not_found("NoSuchUser", f"no user {name!r}")
        return Person(name, frozenset(r for r in row.roles if r in self.roles))

    def _administers(self, person: Person) -> bool:
        return any(self.roles[r].administer for r in person.roles if r in self.roles)

    def _accounts(self, ids: Sequence[str]) -> tuple[AccountConfig, ...]:
        found = (self.config.aws.account_by_id(i) for i in ids)
        return tuple(a for a in found if a is not None)

    def _requestable(self, request: Request) -> Requestable | None:
        role = self.roles.get(request.role)
        return role.requestable if role is not None else None

    def _scope(self, request: Request, person: Person) -> dict[str, frozenset[int]]:
        requestable = self._requestable(request)
        if requestable is None or person.name == request.requester:
            return {}
        return reviewable(requestable, person, self._accounts(request.accounts))

    def _visible(self, stored: Stored, person: Person) -> bool:
        request = stored.request
        return (
            person.name == request.requester
            or bool(self._scope(request, person))
            or self._administers(person)
        )

    def view(self, stored: Stored, person: Person) -> RequestView:
        request = stored.request
        requestable = self._requestable(request)
        scope = self._scope(request, person)
        reviewed = any(r.reviewer == person.name for r in stored.reviews)
        return RequestView(
            stored,
            self._accounts(request.accounts),
            self._accounts(request.approved_accounts),
            _stage_words(requestable) if requestable else (),
            may_review=bool(scope) and request.state is State.PENDING and not reviewed,
            may_drop=person.name == request.requester and request.state in OPEN,
            may_revoke=(bool(scope) or self._administers(person))
            and request.state in (State.APPROVED, State.ACTIVE),
        )

    # -- audit --------------------------------------------------------------------------

    def _record(
        self,
        kind: EventType,
        by: Actor,
        request: Request,
        *,
        rule: str,
        reason: str = "",
        **fields: object,
    ) -> None:
        self.audit.append(
            AuditEvent(
                kind,
                principal=by.name,
                source_ip=by.source_ip,
                user_agent=by.user_agent,
                fields={
                    "request_id": request.id,
                    "requester": request.requester,
                    "gateway_role": request.role,
                    "accounts": list(request.accounts),
                    "rule": rule,
                    "reason": reason,
                    **fields,
                },
            )
        )

    # -- telling ------------------------------------------------------------------------

    def _tell(
        self,
        event: str,
        request: Request,
        recipients: Sequence[str],
        *,
        by: str,
        now: datetime,
        due_at: datetime | None = None,
        reason: str = "",
    ) -> list[Outbound]:
        """The notifications of a change, written by the store with the change itself."""
        return compose(
            self.config,
            event,
            request,
            recipients,
            actor=by,
            now=now,
            due_at=due_at,
            reason=reason,
        )

    def _outcome(
        self, request: Request, state: State, *, by: str, reason: str, now: datetime
    ) -> list[Outbound]:
        """A review that decided the request: its requester hears the outcome, the other
        reviewers that it was handled."""
        if state not in (State.APPROVED, State.DENIED):
            return []
        event = "request.approved" if state is State.APPROVED else "request.denied"
        others = [r for r in reviewers_of(self.config, self.engine, request) if r != by]
        return self._tell(
            event, request, [request.requester], by=by, now=now, reason=reason
        ) + self._tell("request.handled", request, others, by=by, now=now, reason=reason)

    # -- asking -------------------------------------------------------------------------

    def create(self, ask: Ask, *, by: Actor) -> Request:
        person = self.person(by.name)
        now = self._clock()
        try:
            request = check_ask(self.config, person, ask, now=now, request_id=new_request_id())
        except RequestRefused as exc:
            raise _refused(exc) from None
        role, requestable = requested_role(self.config, request.role)
        reviewers = reviewers_of(self.config, self.engine, request)
        outbound = self._tell("request.created", request, reviewers, by=by.name, now=now)
        outbound += self._tell(
            "request.reminder",
            request,
            reviewers,
            by=by.name,
            now=now,
            due_at=now + requestable.pending_lifetime / 2,
        )
        create_request(self.engine, request, outbound)
        self._record(
            EventType.REQUEST_CREATED,
            by,
            request,
            rule=(
                f"role {role.name} is requestable for at most "
                f"{duration_text(requestable.max_duration)}; needs "
                + " and ".join(_stage_words(requestable))
            ),
            reason=request.reason,
            duration=duration_text(request.duration),
            pending_until=request.pending_until.isoformat(),
            start=request.start.isoformat() if request.start else None,
            actions=list(request.actions),
            ticket=request.ticket,
            state=State.PENDING.value,
        )
        return request

    # -- reading ------------------------------------------------------------------------

    def _load(self, request_id: str) -> Stored:
        stored = load_request(self.engine, request_id)
        if stored is None:
            raise no_such_request(request_id)
        return stored

    def show(self, request_id: str, *, by: Actor) -> RequestView:
        """A request its requester, its reviewers (in scope) and administrators may see;
        to anyone else it does not exist."""
        person = self.person(by.name)
        stored = self._load(request_id)
        if not self._visible(stored, person):
            raise no_such_request(request_id)
        return self.view(stored, person)

    def list(
        self, *, by: Actor, mine: bool = False, to_review: bool = False, limit: int = 200
    ) -> list[RequestView]:
        """Mine, those waiting for my review, or (neither) every request I may see."""
        person = self.person(by.name)
        if mine:
            found = list_requests(self.engine, requester=person.name, limit=limit)
        elif to_review:
            found = list_requests(self.engine, states=[State.PENDING], limit=limit)
        else:
            found = list_requests(self.engine, limit=limit)
        views = [self.view(s, person) for s in found if self._visible(s, person)]
        return [v for v in views if v.may_review] if to_review else views

    # -- reviewing ----------------------------------------------------------------------

    def review(
        self,
        request_id: str,
        *,
        approve: bool,
        reason: str,
        by: Actor,
        accounts: Sequence[str] = (),
    ) -> Request:
        """Approve (for some of the request's accounts, or all in the reviewer's scope) or
        deny. A refusal to a person who may not review it is audited, then raised."""
        person = self.person(by.name)
        for _ in range(RETRIES):
            stored = self._load(request_id)
            request = stored.request
            requestable = self._requestable(request)
            if requestable is None:
                raise conflict("RequestConflict", f"role {request.role} is no longer requestable")
            if not self._visible(stored, person):
                # The request is not shown to this person, but a review of it is refused as
                # a review: 403, as the requester's own is (its id alone grants nothing).
                self._refuse(by, request, "not a reviewer of this request")
                raise forbidden("you do not review this request", code="AccessDenied")
            only = self._account_ids(accounts)
            now = self._clock()
            if request.state is State.PENDING and now >= request.pending_until:
                self._expire(request, now)
                continue
            try:
                review, verdict = check_review(
                    requestable,
                    request,
                    stored.reviews,
                    person,
                    self._accounts(request.accounts),
                    approve=approve,
                    only=only,
                    reason=reason.strip(),
                    now=now,
                )
            except RequestRefused as exc:
                if exc.forbidden:
                    self._refuse(by, request, exc.message)
                raise _refused(exc) from None
            window = grant_window(request, now) if verdict.state is State.APPROVED else None
            if record_review(
                self.engine,
                request,
                review,
                state=verdict.state,
                approved=verdict.approved,
                window=window,
                now=now,
                outbound=self._outcome(
                    request, verdict.state, by=person.name, reason=reason.strip(), now=now
                ),
            ):
                self._reviewed(by, request, requestable, verdict, reason.strip(), approve, window)
                return self._load(request_id).request
        raise conflict("RequestBusy", f"request {request_id} kept changing; try again")

    def _account_ids(self, accounts: Sequence[str]) -> tuple[str, ...]:
        ids = []
        for name in accounts:
            account = self.config.aws.account_named(name)
            if account is None:
                raise invalid(f"no account {name!r}", code="InvalidRequest")
            ids.append(account.id)
        return tuple(ids)

    def _refuse(self, by: Actor, request: Request, why: str) -> None:
        self._record(
            EventType.REQUEST_REFUSED,
            by,
            request,
            rule=why,
            decision="denied",
            state=request.state.value,
        )

    def _reviewed(
        self,
        by: Actor,
        request: Request,
        requestable: Requestable,
        verdict: Verdict,
        reason: str,
        approve: bool,
        window: tuple[datetime, datetime] | None,
    ) -> None:
        stages = " and ".join(_stage_words(requestable))
        self._record(
            EventType.REQUEST_REVIEWED,
            by,
            request,
            rule=f"stages: {stages}",
            reason=reason,
            review="approve" if approve else "deny",
            for_accounts=list(verdict.counts),
            state=verdict.state.value,
        )
        if verdict.state is State.APPROVED:
            assert window is not None
            self._record(
                EventType.REQUEST_APPROVED,
                by,
                request,
                rule=f"every stage approved ({stages}) for {', '.join(verdict.approved)}",
                reason=reason,
                approved_accounts=list(verdict.approved),
                starts_at=window[0].isoformat(),
                ends_at=window[1].isoformat(),
                state=State.APPROVED.value,
            )
        elif verdict.state is State.DENIED:
            self._record(
                EventType.REQUEST_DENIED,
                by,
                request,
                rule="any deny ends the request",
                reason=reason,
                state=State.DENIED.value,
            )

    # -- ending -------------------------------------------------------------------------

    def drop(self, request_id: str, *, by: Actor, reason: str = "") -> Request:
        """The requester ends their request: a pending one is cancelled, a granted one ends
        (dropped) and the next call is refused."""
        for _ in range(RETRIES):
            request = self._load(request_id).request
            if request.requester != by.name:
                person = self.person(by.name)
                if not self._visible(self._load(request_id), person):
                    raise no_such_request(request_id)
                raise forbidden("only the requester drops a request; reviewers revoke it")
            if request.state is State.PENDING:
                to, ended_by, kind = State.CANCELLED, None, EventType.REQUEST_CANCELLED
            elif request.state in (State.APPROVED, State.ACTIVE):
                to, ended_by, kind = State.ENDED, EndedBy.DROPPED, EventType.REQUEST_ENDED
            else:
                raise conflict("RequestConflict", f"request {request_id} is {request.state}")
            if move_request(self.engine, request, to, ended_by=ended_by, now=self._clock()):
                self._record(
                    kind,
                    by,
                    request,
                    rule="the requester may end their request at any time",
                    reason=reason,
                    state=to.value,
                    ended_by=ended_by.value if ended_by else None,
                )
                return self._load(request_id).request
        raise conflict("RequestBusy", f"request {request_id} kept changing; try again")

    def revoke(self, request_id: str, *, by: Actor, reason: str = "") -> Request:
        """A reviewer (in scope) or an administrator ends a granted request."""
        person = self.person(by.name)
        for _ in range(RETRIES):
            stored = self._load(request_id)
            request = stored.request
            if not self._visible(stored, person):
                raise no_such_request(request_id)
            view = self.view(stored, person)
            if not view.may_revoke:
                if request.state not in (State.APPROVED, State.ACTIVE):
                    raise conflict("RequestConflict", f"request {request_id} is {request.state}")
                self._refuse(by, request, "only its reviewers or an administrator revoke it")
                raise forbidden("only the request's reviewers or an administrator revoke it")
            now = self._clock()
            told = self._tell(
                "request.revoked",
                request,
                [request.requester],
                by=by.name,
                now=now,
                reason=reason,
            )
            if move_request(
                self.engine,
                request,
                State.ENDED,
                ended_by=EndedBy.REVOKED,
                now=now,
                outbound=told,
            ):
                self._record(
                    EventType.REQUEST_ENDED,
                    by,
                    request,
                    rule=(
                        "an administrator may revoke any grant"
                        if not self._scope(request, person)
                        else "a reviewer of the request may revoke its grant"
                    ),
                    reason=reason,
                    state=State.ENDED.value,
                    ended_by=EndedBy.REVOKED.value,
                )
                return self._load(request_id).request
        raise conflict("RequestBusy", f"request {request_id} kept changing; try again")

    # -- the clock ----------------------------------------------------------------------

    def _expire(self, request: Request, now: datetime) -> None:
        change = due(request, now)
        if change is not None:
            self._apply(request, change, now)

    def _apply(self, request: Request, change: tuple[State, EndedBy | None], now: datetime) -> None:
        to, ended_by = change
        transition(request.state, to)
        event = {State.EXPIRED: "request.expired", State.ENDED: "request.ended"}.get(to)
        told = (
            self._tell(event, request, [request.requester], by="iamgate", now=now) if event else []
        )
        if not move_request(self.engine, request, to, ended_by=ended_by, now=now, outbound=told):
            return  # another replica's sweep (or a person) changed it first
        if to is State.EXPIRED:
            requestable = self._requestable(request)
            lifetime = requestable.pending_lifetime if requestable else timedelta(0)
            kind, rule = (
                EventType.REQUEST_EXPIRED,
                f"unreviewed within its pending lifetime ({duration_text(lifetime)})",
            )
        elif to is State.ACTIVE:
            kind, rule = EventType.REQUEST_ACTIVATED, "its approved start has come"
        else:
            kind, rule = EventType.REQUEST_ENDED, f"its {duration_text(request.duration)} ran out"
        self._record(
            kind,
            Actor("iamgate"),
            request,
            rule=rule,
            state=to.value,
            ended_by=ended_by.value if ended_by else None,
        )

    def sweep(self) -> int:
        """Make the changes the clock has brought about (expire, start, end); each once,
        whichever replica sweeps first. The number of requests looked at."""
        now = self._clock()
        found = due_requests(self.engine, now)
        for request in found:
            self._expire(request, now)
        return len(found)


# -- as data, for the CLI, the JSON API and the pages ------------------------------------


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def request_data(view: RequestView) -> dict[str, object]:
    """A request as plain data: the accounts by name (with what was approved), the stages,
    the reviews, and what the person looking may do with it."""
    request = view.request
    names = {a.id: a.name for a in view.accounts}
    approved = set(request.approved_accounts)
    stored = view.stored
    return {
        "id": request.id,
        "state": request.state.value,
        "ended_by": request.ended_by.value if request.ended_by else None,
        "requester": request.requester,
        "role": request.role,
        "accounts": [
            {"name": a.name, "id": a.id, "approved": a.id in approved} for a in view.accounts
        ],
        "actions": list(request.actions),
        "duration": duration_text(request.duration),
        "reason": request.reason,
        "ticket": request.ticket,
        "created_at": _stamp(request.created_at),
        "pending_until": _stamp(request.pending_until),
        "start": _stamp(request.start),
        "starts_at": _stamp(request.starts_at),
        "ends_at": _stamp(request.ends_at),
        "stages": list(view.stages),
        "reviews": [
            {
                "reviewer": review.reviewer,
                "decision": "approve" if review.approve else "deny",
                "accounts": sorted(names.get(a, a) for a in review.accounts),
                "reason": review.reason,
                "at": _stamp(at),
            }
            for review, at in zip(stored.reviews, stored.reviewed_at, strict=False)
        ],
        "may_review": view.may_review,
        "may_drop": view.may_drop,
        "may_revoke": view.may_revoke,
    }


def ask_of(
    *,
    role: str,
    accounts: Sequence[str] = (),
    selector: str | None = None,
    duration: str | None = None,
    reason: str = "",
    start: str | None = None,
    actions: Sequence[str] = (),
    ticket: str | None = None,
    now: datetime | None = None,
) -> Ask:
    """What a person typed (the CLI's options, the API's fields) as an `Ask`: durations as
    `2h`, a start as ISO 8601 or `+30m` from now, a selector as `env=prod`."""
    try:
        when: datetime | None = None
        if start:
            if start.startswith("+"):
                when = (now or datetime.now(UTC)) + read_duration(start[1:])
            else:
                when = datetime.fromisoformat(start.replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
        return Ask(
            role=role,
            accounts=tuple(accounts),
            selector=parse_selector(selector) if selector else None,
            duration=read_duration(duration) if duration else None,
            reason=reason,
            start=when,
            actions=tuple(actions),
            ticket=ticket,
        )
    except RequestRefused as exc:
        raise _refused(exc) from None
    except (ValueError, OverflowError) as exc:
        raise invalid(f"not a start time: {start!r} ({exc})", code="InvalidRequest") from None
