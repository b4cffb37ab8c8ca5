"""One reading of an audit search, for the JSON API, the Audit page and the CLI: what each
filter becomes, the sentence for each that cannot be read, and whose events one may see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iamgate.audit.events import EventType
from iamgate.audit.search import cursor_of
from iamgate.config import Config, RoleConfig
from iamgate.control.audit_queries import AuditQuery, read, scoped
from iamgate.control.callers import Caller
from iamgate.control.errors import ControlError, Kind
from iamgate.store.login_sessions import LoginSession

CONFIG = Config.model_validate({"aws": {"accounts": [{"name": "acme-prod", "id": "111111111111"}]}})


def _caller(user: str, administer: bool) -> Caller:
    now = datetime.now(UTC)
    session = LoginSession("s1", user, now, now + timedelta(hours=1), None)
    return Caller(session, (RoleConfig(name="r", administer=administer),), administer)


def test_filters_read_as_people_type_them() -> None:
    found = read(
        CONFIG,
        AuditQuery.of(
            {
                "account": "acme-prod",
                "status": "403",
                "decision": "denied",
                "type": "logins",
                "key": " asia0123456789abcdef ",
                "action": "rds:Delete*",
                "since": "2026-11-25T00:00:00Z",
                "limit": "20",
                "unknown": "ignored",
            }
        ),
    )
    assert found.problems == ()
    f = found.filters
    assert (f.account_id, f.status, f.decision, f.limit) == ("111111111111", 403, "denied", 20)
    assert EventType.LOGIN_FAILED in f.types and EventType.AWS_CALL not in f.types
    assert f.access_key_id == "ASIA0123456789ABCDEF"
    assert f.since == "2026-11-25T00:00:00Z" and f.action == "rds:Delete*"
    assert read(CONFIG, AuditQuery(account="222222222222")).filters.account_id == "222222222222"
    assert read(CONFIG, AuditQuery(type="aws.call")).filters.types == (EventType.AWS_CALL,)
    default = read(CONFIG, AuditQuery(), default_limit=50).filters
    assert (default.types, default.limit) == ((EventType.AWS_CALL,), 50)


def test_each_unreadable_filter_gets_its_sentence_and_the_api_refuses_them_all() -> None:
    found = read(
        CONFIG,
        AuditQuery(
            account="nowhere",
            status="abc",
            decision="maybe",
            type="nope",
            key="NOPE",
            action="not an action",
            until="yesterday",
            limit="1001",
        ),
    )
    assert found.problems == (
        "No account is named 'nowhere'.",
        "Status 'abc' is not an HTTP status such as 403.",
        "Decision 'maybe' is not allowed, denied or error.",
        "No such kind of event: 'nope'.",
        "'NOPE' is not an access key id such as ASIA…, 16 to 128 letters.",
        "Action 'not an action' is not an IAM action such as rds:Delete*.",
        "Limit '1001' is not a whole number from 1 to 1000.",
        "Until 'yesterday' is not a time such as 2026-11-25T00:00:00Z.",
    )
    assert found.filters.account_id is None and found.filters.status is None
    with pytest.raises(ControlError) as refused:
        found.or_refuse()
    assert refused.value.kind is Kind.INVALID
    assert refused.value.message == " ".join(found.problems)
    assert read(CONFIG, AuditQuery(status="99")).problems  # not an HTTP status
    assert read(CONFIG, AuditQuery(status="4\u00b2", limit="\u00b9")).problems == (
        "Status '4\u00b2' is not an HTTP status such as 403.",
        "Limit '\u00b9' is not a whole number from 1 to 1000.",
    )


def test_a_blank_time_is_no_filter_in_a_form_and_a_mistake_in_the_api() -> None:
    assert read(CONFIG, AuditQuery(since="", until=" ")).problems == ()
    assert read(CONFIG, AuditQuery(until=""), blank_is_none=False).problems == (
        "Until is empty: leave it out, or give a time.",
    )


def test_before_is_the_cursor_of_the_page_before_or_a_time() -> None:
    cursor = cursor_of(("2026-11-25T10:00:00.000001Z", "ab12", 7))
    assert read(CONFIG, AuditQuery(before=f" {cursor} ")).filters.before == cursor
    time = read(CONFIG, AuditQuery(before="2026-11-25T10:00:00Z")).filters
    assert time.before == "2026-11-25T10:00:00Z"
    assert read(CONFIG, AuditQuery(before="soon~ab12~7")).problems == (
        "Before 'soon' is not a time such as 2026-11-25T00:00:00Z.",
    )
    assert read(CONFIG, AuditQuery(before="2026~ab12~x")).problems == (
        "Before '2026~ab12~x' is not a time such as 2026-11-25T00:00:00Z.",
    )


def test_an_administrator_searches_anyone_and_anyone_else_themselves() -> None:
    asked = read(CONFIG, AuditQuery(principal="dana")).filters
    assert scoped(asked, _caller("rita", administer=True)).principal == "dana"
    assert scoped(asked, _caller("dana", administer=False)).principal == "dana"
    own = read(CONFIG, AuditQuery()).filters
    assert scoped(own, _caller("erin", administer=False)).principal == "erin"
    assert scoped(own, _caller("rita", administer=True)).principal is None
    with pytest.raises(ControlError) as refused:
        scoped(asked, _caller("erin", administer=False))
    assert refused.value.kind is Kind.FORBIDDEN


def test_a_job_claim_reads_as_name_equals_value() -> None:
    found = read(CONFIG, AuditQuery(claim="workflow_ref=acme/infra/.github/x.yml@refs/heads/main"))
    assert found.problems == ()
    assert found.filters.job == (("workflow_ref", "acme/infra/.github/x.yml@refs/heads/main"),)
    assert read(CONFIG, AuditQuery(claim=" run_id=42 ")).filters.job == (("run_id", "42"),)
    for typed in ("run_id", "=42", "run id=42", "run_id="):
        assert read(CONFIG, AuditQuery(claim=typed)).problems[0].startswith("Claim ")
