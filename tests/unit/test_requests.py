"""Access requests, the pure rules: the `requestable:` block, who may ask and review,
stages combined with AND (one person in one stage only), per-account approval, the state
machine and the grant's effect."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iamgate.access.requests import (
    OPEN,
    TRANSITIONS,
    Ask,
    Call,
    EndedBy,
    Grant,
    Person,
    Request,
    RequestRefused,
    Review,
    State,
    _assign,
    approved_accounts,
    check_ask,
    check_review,
    decide_granted,
    due,
    grant_window,
    granted_roles,
    hint_for,
    parse_selector,
    request_hint,
    stages_of,
    transition,
)
from iamgate.config import Config, ConfigError, parse_config

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

CONFIG_TEXT = """\
aws:
  accounts:
    - {name: prod-eu, id: "111111111111", labels: {env: prod, region: eu}}
    - {name: prod-us, id: "222222222222", labels: {env: prod, region: us}}
    - {name: dev, id: "333333333333", labels: {env: dev}}
roles:
  - name: data-scientist
    allow: {accounts: {env: [prod]}, aws_roles: [ReadOnly], access_levels: [read, list]}
    deny: {actions: ["rds:Delete*"]}
  - name: team-lead
  - name: security
  - name: eu-security
  - name: prod-admin
    allow: {accounts: {env: [prod]}, aws_roles: [ReadOnly, Admin]}
    requestable:
      requesters: [data-scientist, user:olga]
      stages:
        - {approve: 1, from: team-lead}
        - {approve: 1, from: [security, {role: eu-security, accounts: {region: [eu]}}]}
      max_duration: 4h
      default_duration: 2h
      pending_lifetime: 48h
      reason: {required: true, prompt: "Which incident?"}
      ticket: "INC-[0-9]+"
  - name: dev-admin
    allow: {accounts: {env: [dev]}, aws_roles: [Admin]}
    requestable: {reviewers: [user:sam], reason: optional}
"""


def config() -> Config:
    return parse_config(CONFIG_TEXT, source="gateway.yaml")


DANA = Person("dana", frozenset({"data-scientist"}))
LEE = Person("lee", frozenset({"team-lead"}))
SEC = Person("sec", frozenset({"security"}))
EU = Person("eu", frozenset({"eu-security"}))
BOTH = Person("both", frozenset({"team-lead", "security"}))
SAM = Person("sam", frozenset())


def _ask(**fields: Any) -> Ask:
    base: dict[str, Any] = {"role": "prod-admin", "selector": {"env": ["prod"]}, "reason": "x"}
    return Ask(**(base | fields))


def test_the_requestable_block_reads_with_its_defaults() -> None:
    role = next(r for r in config().roles if r.name == "prod-admin")
    assert role.requestable is not None
    stages = role.requestable.approval_stages
    assert [s.approve for s in stages] == [1, 1]
    assert stages[1].reviewers[1].role == "eu-security"
    assert role.requestable.pending_lifetime == timedelta(hours=48)
    assert role.requestable.duration == timedelta(hours=2)
    dev = next(r for r in config().roles if r.name == "dev-admin").requestable
    assert dev is not None
    assert dev.reviewers[0].user == "sam" and not dev.reason.required
    assert dev.pending_lifetime == timedelta(hours=24)  # independent of max_session_ttl
    assert len(dev.approval_stages) == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("from: team-lead}", "from: team-leed}"),
            "gateway.yaml:18: roles[4].requestable.stages[0].from[0]: unknown gateway role 'team-leed'",
        ),
        (
            ("requesters: [data-scientist,", "requesters: [data-scientists,"),
            "gateway.yaml:16: roles[4].requestable.requesters[0]: unknown gateway role",
        ),
        (
            ("default_duration: 2h", "default_duration: 5h"),
            "gateway.yaml:15: roles[4].requestable: Value error, default_duration is longer",
        ),
        (
            ('ticket: "INC-[0-9]+"', 'ticket: "INC-[0-9+"'),
            "gateway.yaml:24: roles[4].requestable.ticket: Value error, not a regular expression",
        ),
        (
            ("{reviewers: [user:sam], reason: optional}", "{max_duration: 1h}"),
            "gateway.yaml:27: roles[5].requestable: Value error, a requestable role needs reviewers",
        ),
        (
            ("{approve: 1, from: team-lead}", "{approve: 0, from: team-lead}"),
            "gateway.yaml:18: roles[4].requestable.stages[0].approve: Input should be greater",
        ),
    ],
)
def test_errors_name_file_line_and_key(change: tuple[str, str], expected: str) -> None:
    assert change[0] in CONFIG_TEXT
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG_TEXT.replace(*change), source="gateway.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_a_request_over_a_label_selector_resolves_its_accounts() -> None:
    request = check_ask(config(), DANA, _ask(reason="INC-1"), now=NOW, request_id="r1")
    assert request.accounts == ("111111111111", "222222222222")
    assert request.duration == timedelta(hours=2)  # the default
    assert request.pending_until == NOW + timedelta(hours=48)
    assert request.state is State.PENDING
    named = check_ask(
        config(), DANA, _ask(selector=None, accounts=("prod-us",)), now=NOW, request_id="r2"
    )
    assert named.accounts == ("222222222222",)


@pytest.mark.parametrize(
    ("person", "fields", "message"),
    [
        (SAM, {}, "sam may not request role prod-admin"),
        (DANA, {"role": "data-scientist"}, "cannot be requested"),
        (DANA, {"role": "nope"}, "no gateway role 'nope'"),
        (DANA, {"duration": timedelta(hours=5)}, "at most 4h"),
        (DANA, {"reason": " "}, "needs a reason: Which incident?"),
        (DANA, {"ticket": "JIRA-1"}, "does not match"),
        (DANA, {"selector": {"env": ["dev"]}}, "no account that role prod-admin reaches"),
        (DANA, {"selector": None, "accounts": ("dev",)}, "does not reach account dev"),
        (DANA, {"selector": None}, "name accounts"),
        (DANA, {"actions": ("rds delete",)}, "not an IAM action"),
        (DANA, {"start": NOW - timedelta(hours=1)}, "in the past"),
    ],
)
def test_asking_breaks_no_rule(person: Person, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestRefused, match=message) as info:
        check_ask(config(), person, _ask(**fields), now=NOW, request_id="r1")
    assert info.value.forbidden == (person is SAM)


def test_a_user_named_as_requester_may_ask() -> None:
    olga = Person("olga", frozenset())
    assert check_ask(config(), olga, _ask(), now=NOW, request_id="r").requester == "olga"


def test_label_selectors_are_read_as_people_write_them() -> None:
    assert parse_selector("env=prod, region=eu|us") == {"env": ["prod"], "region": ["eu", "us"]}
    for bad in ("", "env", "=prod", "env="):
        with pytest.raises(RequestRefused):
            parse_selector(bad)


def _review(
    request: Request, reviews: list[Review], person: Person, *, approve: bool = True, **kw: Any
) -> tuple[Review, Any]:
    cfg = config()
    role = next(r for r in cfg.roles if r.name == request.role)
    assert role.requestable is not None
    accounts = [a for a in cfg.aws.accounts if a.id in request.accounts]
    return check_review(
        role.requestable, request, reviews, person, accounts, approve=approve, now=NOW, **kw
    )


def test_two_stages_are_combined_with_and() -> None:
    request = check_ask(config(), DANA, _ask(), now=NOW, request_id="r1")
    first, verdict = _review(request, [], LEE)
    assert verdict.state is State.PENDING
    _, verdict = _review(request, [first], SEC)
    assert verdict.state is State.APPROVED
    assert verdict.approved == request.accounts


def test_one_person_counts_in_one_stage_only() -> None:
    request = check_ask(config(), DANA, _ask(), now=NOW, request_id="r1")
    review, verdict = _review(request, [], BOTH)
    assert verdict.state is State.PENDING  # BOTH is in both stages, counts in one
    _, verdict = _review(request, [review], SEC)
    assert verdict.state is State.APPROVED  # BOTH moves to team-lead's stage


def test_any_deny_ends_the_request() -> None:
    request = check_ask(config(), DANA, _ask(), now=NOW, request_id="r1")
    first, _ = _review(request, [], LEE)
    _, verdict = _review(request, [first], SEC, approve=False)
    assert verdict.state is State.DENIED


def test_the_requester_never_reviews_their_own_request() -> None:
    lead = Person("dana", frozenset({"data-scientist", "team-lead"}))
    request = check_ask(config(), lead, _ask(), now=NOW, request_id="r1")
    with pytest.raises(RequestRefused, match="cannot review their own") as info:
        _review(request, [], lead)
    assert info.value.forbidden


def test_a_reviewer_outside_their_scope_reviews_nothing() -> None:
    request = check_ask(config(), DANA, _ask(selector={"region": ["us"]}), now=NOW, request_id="r1")
    with pytest.raises(RequestRefused, match="not a reviewer") as info:
        _review(request, [], EU)
    assert info.value.forbidden
    with pytest.raises(RequestRefused, match="not a reviewer"):
        _review(request, [], Person("kim", frozenset({"data-scientist"})))


def test_approval_per_account_over_a_label_selector() -> None:
    request = check_ask(config(), DANA, _ask(), now=NOW, request_id="r1")
    eu, us = request.accounts
    first, verdict = _review(request, [], LEE)  # team lead: both accounts
    assert verdict.counts == (eu, us)
    # eu-security's scope is the eu account: approving it approves that account only.
    _, verdict = _review(request, [first], EU)
    assert verdict.state is State.APPROVED and verdict.approved == (eu,)
    # asking to approve an account outside the scope is refused
    with pytest.raises(RequestRefused, match="may not review account") as info:
        _review(request, [first], EU, only=(us,))
    assert info.value.forbidden
    # a reviewer may approve fewer accounts than their scope
    _, verdict = _review(request, [first], SEC, only=(us,))
    assert verdict.approved == (us,)


def test_a_review_needs_a_pending_request_and_one_review_per_person() -> None:
    request = check_ask(config(), DANA, _ask(), now=NOW, request_id="r1")
    first, _ = _review(request, [], LEE)
    with pytest.raises(RequestRefused, match="already reviewed") as info:
        _review(request, [first], LEE)
    assert info.value.conflict
    late = Request(**{**_fields(request), "pending_until": NOW})
    with pytest.raises(RequestRefused, match="expired"):
        _review(late, [], LEE)
    done = Request(**{**_fields(request), "state": State.DENIED})
    with pytest.raises(RequestRefused, match="is denied"):
        _review(done, [], LEE)


def _fields(request: Request) -> dict[str, Any]:
    return {f: getattr(request, f) for f in Request.__dataclass_fields__}


def test_the_state_machine() -> None:
    assert transition(State.PENDING, State.APPROVED) is State.APPROVED
    for state, following in TRANSITIONS.items():
        for to in State:
            if to in following:
                assert transition(state, to) is to
            else:
                with pytest.raises(RequestRefused):
                    transition(state, to)
    assert {s for s, following in TRANSITIONS.items() if following} == OPEN


def test_time_moves_requests_on() -> None:
    request = check_ask(config(), DANA, _ask(), now=NOW, request_id="r1")
    assert due(request, NOW) is None
    assert due(request, request.pending_until) == (State.EXPIRED, None)
    start, end = grant_window(request, NOW + timedelta(minutes=5))
    approved = Request(
        **{**_fields(request), "state": State.APPROVED, "starts_at": start, "ends_at": end}
    )
    assert due(approved, start) == (State.ACTIVE, None)
    assert due(approved, end) == (State.ENDED, EndedBy.EXPIRED)
    later = Request(**{**_fields(request), "start": NOW + timedelta(hours=3)})
    assert grant_window(later, NOW + timedelta(minutes=5))[0] == NOW + timedelta(hours=3)


def test_a_grant_applies_to_its_accounts_actions_and_window() -> None:
    cfg = config()
    roles = {r.name: r for r in cfg.roles}
    prod_eu = cfg.aws.accounts[0]
    grant = Grant(
        "r1", "dana", "prod-admin", frozenset({prod_eu.id}), NOW, NOW + timedelta(hours=1)
    )
    assert granted_roles([grant], roles, prod_eu, "Admin", "rds:DeleteDBInstance", NOW)
    assert not granted_roles([grant], roles, prod_eu, "Other", "rds:DeleteDBInstance", NOW)
    assert not granted_roles([grant], roles, cfg.aws.accounts[1], "Admin", "s3:GetObject", NOW)
    assert not granted_roles([grant], roles, prod_eu, "Admin", "s3:GetObject", grant.ends_at)
    narrow = Grant(**_grant(grant))
    assert granted_roles([narrow], roles, prod_eu, "Admin", "rds:DeleteDBInstance", NOW)
    assert not granted_roles([narrow], roles, prod_eu, "Admin", "s3:PutObject", NOW)


def _grant(grant: Grant) -> dict[str, Any]:
    fields = {f: getattr(grant, f) for f in Grant.__dataclass_fields__}
    return fields | {"actions": ("rds:Delete*",)}


def test_a_refusal_names_the_requestable_role_and_its_command() -> None:
    cfg = config()
    prod_eu = cfg.aws.accounts[0]
    hint = request_hint(cfg.roles, DANA, prod_eu, "ReadOnly", lambda role: True)
    assert hint is not None and hint.role == "prod-admin"
    assert hint.command == (
        "iamgate request create --role prod-admin --account prod-eu --duration 2h --reason '...'"
    )
    assert request_hint(cfg.roles, SAM, prod_eu, "ReadOnly", lambda role: True) is None
    assert request_hint(cfg.roles, DANA, prod_eu, "ReadOnly", lambda role: False) is None


# -- stages as a matching: against every assignment, by brute force -----------------------


def _brute(needs: list[int], candidates: dict[str, frozenset[int]]) -> bool:
    people = sorted(candidates)
    for choice in itertools.product(*[[None, *sorted(candidates[p])] for p in people]):
        counts = [sum(1 for c in choice if c == i) for i in range(len(needs))]
        if all(c >= n for c, n in zip(counts, needs, strict=True)):
            return True
    return False


@given(
    needs=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    candidates=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.frozensets(st.integers(0, 2)),
        max_size=6,
    ),
)
def test_stages_are_filled_exactly_when_some_assignment_fills_them(
    needs: list[int], candidates: dict[str, frozenset[int]]
) -> None:
    candidates = {
        p: frozenset(s for s in stages if s < len(needs)) for p, stages in candidates.items()
    }
    assert _assign(needs, candidates) == _brute(needs, candidates)


@given(
    reviews=st.lists(
        st.tuples(
            st.sampled_from(["lee", "sec", "eu", "both", "sam"]),
            st.booleans(),
            st.frozensets(st.sampled_from(["111111111111", "222222222222"])),
        ),
        max_size=6,
        unique_by=lambda r: r[0],
    )
)
def test_approved_accounts_need_every_stage_and_grow_with_approvals(
    reviews: list[tuple[str, bool, frozenset[str]]],
) -> None:
    cfg = config()
    role = next(r for r in cfg.roles if r.name == "prod-admin")
    assert role.requestable is not None
    stages = role.requestable.approval_stages
    people = {p.name: p for p in (LEE, SEC, EU, BOTH, SAM)}
    made = [
        Review(
            who,
            approve,
            accounts,
            {a.id: stages_of(role.requestable, people[who], a) for a in cfg.aws.accounts},
        )
        for who, approve, accounts in reviews
    ]
    accounts = ("111111111111", "222222222222")
    approved = approved_accounts(stages, accounts, made)
    for account in approved:
        # every stage has an approver of its own for the account
        approvers = [r for r in made if r.approve and account in r.accounts]
        assert len(approvers) >= len(stages)
    # one more approval never takes an account away
    extra = Review("x", True, frozenset(accounts), {a: frozenset({0, 1}) for a in accounts})
    assert set(approved) <= set(approved_accounts(stages, accounts, [*made, extra]))
    # denials count for nothing towards approval
    assert approved == approved_accounts(stages, accounts, [r for r in made if r.approve])


def test_a_grant_decides_on_its_own_and_a_refusal_points_to_the_request() -> None:
    cfg = config()
    roles = {r.name: r for r in cfg.roles}
    prod_eu = cfg.aws.accounts[0]
    delete = Call(prod_eu, "ReadOnly", "rds:DeleteDBInstance", "us-east-1", {})
    standing = delete.decide([roles["data-scientist"]])
    assert not standing.allowed and "denies rds:DeleteDBInstance" in standing.rule
    grant = Grant("rq-1", "dana", "prod-admin", frozenset({prod_eu.id}), NOW, NOW + timedelta(1))
    granted = decide_granted([grant], roles, delete, NOW)
    assert granted is not None
    decision, used = granted
    assert decision.allowed and decision.role == "prod-admin"
    assert "granted by request rq-1" in decision.rule
    assert [r.name for r in used] == ["prod-admin"]
    assert decide_granted([grant], roles, delete, grant.ends_at) is None  # run out
    other = Call(cfg.aws.accounts[1], "ReadOnly", "rds:DeleteDBInstance", "us-east-1", {})
    assert decide_granted([grant], roles, other, NOW) is None  # not an approved account
    hint = hint_for(cfg.roles, DANA, delete)
    assert hint is not None and hint.role == "prod-admin"
    assert hint_for(cfg.roles, DANA, Call(prod_eu, "Nope", "s3:GetObject", "", {})) is None
