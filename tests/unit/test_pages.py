"""What the pages show, computed from data: CLI set-up commands and audit rows."""

from __future__ import annotations

from datetime import timedelta

from iamgate.audit.search import KeyIssue, key_matches
from iamgate.aws.profiles import profiles_block
from iamgate.web.pages import (
    audit_row,
    cli_setup,
    human_duration,
    one_time_code,
    requests_signature,
)


def test_cli_setup_is_exactly_what_profiles_sync_writes() -> None:
    setup = cli_setup("https://gate:8443", "dana", "acme-prod", "ReadOnly", "eu-west-1")
    access = {"accounts": [{"name": "acme-prod", "roles": [{"aws_role": "ReadOnly"}]}]}
    block, names = profiles_block(access, "https://gate:8443", "iamgate", "eu-west-1", False)
    assert setup["profile"] in block and names == [setup["profile_name"]]
    assert setup["profile"].startswith("[profile iamgate-acme-prod-ReadOnly]\nregion = eu-west-1")
    assert setup["login"] == "iamgate login https://gate:8443 --user dana"
    assert setup["try"] == "aws --profile iamgate-acme-prod-ReadOnly sts get-caller-identity"
    assert setup["env"] == 'eval "$(iamgate env --account acme-prod --role ReadOnly)"'


def test_cli_setup_quotes_what_a_shell_would_split() -> None:
    setup = cli_setup("http://127.0.0.1:8080", "o'neil", "acme-prod", "Read Only", "us-east-1")
    assert setup["login"] == "iamgate login http://127.0.0.1:8080 --user 'o'\"'\"'neil'"
    assert "--role 'Read Only'" in setup["aws"]


def test_an_audit_row_names_the_account_and_the_rule() -> None:
    event = {
        "id": "e1",
        "time": "2026-11-25T02:35:13.123456Z",
        "principal": "dana",
        "fields": {
            "account_id": "111111111111",
            "aws_role": "ReadOnly",
            "action": "rds:DeleteDBInstance",
            "decision": "denied",
            "status": 403,
            "rule": "role data-scientist denies rds:DeleteDBInstance (deny rds:Delete*)",
        },
    }
    row = audit_row(event, {"111111111111": "acme-prod"})
    assert row["time"] == "2026-11-25 02:35:13" and row["account"] == "acme-prod"
    assert row["reason"].startswith("role data-scientist denies") and row["id"] == "e1"
    assert audit_row({"fields": {"account_id": "999"}}, {})["account"] == "999"


def test_durations_read_as_the_config_writes_them() -> None:
    assert human_duration(timedelta(hours=1)) == "1h"
    assert human_duration(timedelta(minutes=90)) == "1h30m"
    assert human_duration(timedelta(seconds=45)) == "45s"
    assert human_duration(timedelta(0)) == "0s"


def test_a_pasted_code_is_six_digits() -> None:
    assert one_time_code("123 456") == "123456"
    assert one_time_code(" 123-456\t") == "123456"
    assert one_time_code("123\u00a0456") == "123456"


def test_an_audit_row_shows_key_resource_region_and_source() -> None:
    issue = KeyIssue(
        "ASIAAAAAAAAAAAAAAAAB",
        "dana",
        "111111111111",
        "ReadOnly",
        "2026-11-25T01:00:00.000000Z",
        "2026-11-25T02:00:00.000000Z",
        None,
    )
    event = {
        "id": "e2",
        "type": "aws.call",
        "time": "2026-11-25T02:35:13.123456Z",
        "principal": None,
        "source_ip": "127.0.0.1",
        "fields": {
            "access_key_id": "ASIAAAAAAAAAAAAAAAAB",
            "region": "eu-west-1",
            "action": "rds:DeleteDBInstance",
            "params": {"DBInstanceIdentifier": "prod-db", "SkipFinalSnapshot": True},
        },
    }
    row = audit_row(event, {"111111111111": "acme-prod"}, {issue.access_key_id: issue})
    assert row["access_key"] == "ASIAAAAAAAAAAAAAAAAB" and row["key_note"].startswith("expired")
    assert row["principal"] == "(dana's key)" and row["account"] == "acme-prod"
    assert row["resource"] == "DBInstanceIdentifier=prod-db"
    assert row["region"] == "eu-west-1" and row["source_ip"] == "127.0.0.1"
    unknown = audit_row(event, {}, {})
    assert unknown["key_note"] == "not issued by this gateway" and unknown["principal"] == ""


def test_other_events_show_what_they_are_about() -> None:
    event = {
        "type": "user.changed",
        "principal": "loader",
        "fields": {"user": "carl", "change": "locked"},
    }
    row = audit_row(event, {})
    assert row["action"] == "user.changed" and row["detail"] == "user: carl; change: locked"


def test_a_keys_calls_are_those_it_names_or_its_holder_made_in_its_lifetime() -> None:
    issue = KeyIssue(
        "ASIAAAAAAAAAAAAAAAAB",
        "dana",
        "111111111111",
        "ReadOnly",
        "2026-11-25T01:00:00.000000Z",
        "2026-11-25T02:00:00.000000Z",
        None,
    )
    key = issue.access_key_id
    call = {
        "type": "aws.call",
        "time": "2026-11-25T01:30:00.000000Z",
        "principal": "dana",
        "fields": {"account_id": "111111111111", "aws_role": "ReadOnly"},
    }
    assert key_matches(call, key, issue) is None  # the key's, as far as the log tells
    assert key_matches({**call, "time": "2026-11-25T02:30:00.000000Z"}, key, issue) is False
    assert key_matches({**call, "principal": "carl"}, key, issue) is False
    named = {**call, "fields": {"access_key_id": key}}
    assert key_matches(named, key, None) is True
    assert key_matches(named, "ASIAAAAAAAAAAAAAAAAC", issue) is False


def test_the_requests_signature_changes_with_a_state_or_a_review_only() -> None:
    """requests.js computes the same from the API's list, and reloads when they differ."""
    one = {"id": "rq-b", "state": "pending", "reviews": [{"reviewer": "lee"}], "role": "x"}
    two = {"id": "rq-a", "state": "active", "reviews": [], "role": "y"}
    assert requests_signature([one, two]) == "rq-a:active:0,rq-b:pending:1"
    assert requests_signature([two, one]) == requests_signature([one, two])
    assert requests_signature([two, dict(one, reviews=[])]) != requests_signature([one, two])
