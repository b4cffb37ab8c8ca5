"""Configuration errors point at the file, the line and the key to fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from iamgate.config import (
    ConfigError,
    LiveConfig,
    parse_config,
    parse_duration,
    restart_only_changes,
)

GOOD = """
server: {listen: "127.0.0.1:8080"}
aws:
  upstream: {endpoint_url: "http://127.0.0.1:5000"}
  accounts:
    - {name: prod, id: "111111111111", labels: {env: prod}, external_id: "x-123"}
    - {name: ci,   id: "222222222222", labels: {env: ci}}
roles:
  - name: data-scientist
    allow: {accounts: {env: [prod, staging]}, aws_roles: [ReadOnly], access_levels: [read, list]}
    deny:  {actions: ["rds:Delete*"]}
    max_session_ttl: 1h
  - name: ci-runner
    allow: {accounts: {name: [ci]}, aws_roles: [CIRunner], actions: ["ec2:*", "s3:*"]}
    guardrails:
      - {action: "ec2:RunInstances", max: {MaxCount: 10}}
users:
  - {name: dana, roles: [data-scientist]}
"""


def test_the_design_example_parses() -> None:
    config = parse_config(GOOD)
    assert config.server.url == "http://127.0.0.1:8080"
    assert config.aws.account_named("prod") is config.aws.account_by_id("111111111111")
    ds = config.roles[0]
    assert ds.allow.accounts.labels == {"env": ["prod", "staging"]}
    assert ds.max_session_ttl == timedelta(hours=1)
    assert config.roles[1].guardrails[0].max == {"MaxCount": 10}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('"222222222222"', '"2222"'), "<c>:7: aws.accounts[1].id"),
        (
            GOOD.replace("max_session_ttl: 1h", "max_session_ttl: soon"),
            "<c>:12: roles[0].max_session_ttl",
        ),
        (GOOD.replace("roles: [data-scientist]", "roles: [nobody]"), "unknown role 'nobody'"),
        (GOOD.replace('listen: "127.0.0.1:8080"', 'listen: "nowhere"'), "<c>:2: server.listen"),
        (
            GOOD.replace("aws_roles: [CIRunner]", "aws_rolez: [CIRunner]"),
            "<c>:14: roles[1].allow.aws_rolez",
        ),
        (GOOD + "server: {}\n", "<c>:19: server: duplicate key"),
        ("server: [unclosed", "<c>:1: invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="<c>")
    assert expected in str(info.value)


def test_durations() -> None:
    assert parse_duration("4h30m") == timedelta(hours=4, minutes=30)
    assert parse_duration(90) == timedelta(seconds=90)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("")


def test_a_reload_takes_on_roles_users_and_accounts_and_nothing_else() -> None:
    old = parse_config(GOOD, source="gateway.yaml")
    reloadable = GOOD.replace("rds:Delete*", "rds:*").replace("name: dana", "name: erin")
    reloadable = reloadable.replace(
        '    - {name: ci,   id: "222222222222", labels: {env: ci}}',
        '    - {name: ci,   id: "222222222222", labels: {env: ci}}\n'
        '    - {name: lab,  id: "333333333333"}',
    )
    new = parse_config(reloadable, source="gateway.yaml")
    assert restart_only_changes(old, new) == []
    live = LiveConfig(old)
    live.replace(new)
    assert live.config is new and live.roles["data-scientist"].deny.actions == ["rds:*"]

    moved = parse_config(
        reloadable.replace("127.0.0.1:8080", "127.0.0.1:9090").replace("5000", "5001"),
        source="gateway.yaml",
    )
    assert restart_only_changes(new, moved) == ["server", "aws.upstream"]
    with pytest.raises(ConfigError, match=r"server, aws.upstream cannot change while"):
        live.replace(moved)
    assert live.config is new  # the configuration in force stays


def test_an_unknown_key_names_the_key_it_is_closest_to() -> None:
    text = "roles:\n  - name: a\n    allow: {accounts: {name: [a]}}\n    deny: {action: [x]}\n"
    with pytest.raises(ConfigError) as error:
        parse_config(text, source="gateway.yaml")
    assert "gateway.yaml:4: roles[0].deny.action" in str(error.value)
    assert "did you mean 'actions'?" in str(error.value)
