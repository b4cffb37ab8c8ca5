"""Bots in the configuration: trusted issuers, bindings, and what a bound job gets. Errors
name the file, line and key; a binding that would trust every job of an issuer is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iamgate.config import BotConfig, ConfigError, LiveConfig, parse_config
from iamgate.identity.bindings import bind
from iamgate.identity.bots import (
    NotGranted,
    Trust,
    bot_name,
    bot_principal,
    grant_for,
    job_claims,
    still_bound,
)
from iamgate.identity.credentials import KeyRing, ServerKey, mint_credentials, open_credentials

GITHUB = "https://token.actions.githubusercontent.com"
GOOD = f"""
aws:
  accounts:
    - {{name: prod, id: "111111111111"}}
    - {{name: ci, id: "222222222222"}}
roles:
  - name: ci-runner
    allow: {{accounts: {{name: [ci]}}, aws_roles: [CIRunner]}}
    max_session_ttl: 2h
  - name: reader
    allow: {{accounts: {{name: [ci]}}, aws_roles: [ReadOnly]}}
bots:
  - {{name: infra-deploy, roles: [ci-runner]}}
oidc:
  issuers:
    - url: {GITHUB}
      audience: https://iamgate.example
  bindings:
    - name: ci-main
      bot: infra-deploy
      claims:
        repository: acme/infra
        ref: [refs/heads/main, "refs/tags/v*"]
        repository_id: 690123456
    - name: no-prs
      deny: true
      claims: {{event_name: pull_request_target}}
"""
TOKEN = {
    "iss": GITHUB,
    "sub": "repo:acme/infra:ref:refs/heads/main",
    "repository": "acme/infra",
    "repository_id": "690123456",
    "ref": "refs/heads/main",
    "run_id": "9876543210",
    "sha": "2b5c7a4e",
    "actor": "dana",
    "event_name": "push",
    "groups": ["admins"],
    "aud": "https://iamgate.example",
}


def test_bots_issuers_and_bindings_parse() -> None:
    config = parse_config(GOOD)
    trust = Trust.of(config)
    (issuer,) = trust.issuers.values()
    assert issuer.audiences == ("https://iamgate.example",)
    assert issuer.algorithms == ("RS256", "ES256") and issuer.leeway == timedelta(seconds=60)
    ci_main, no_prs = trust.bindings
    assert ci_main.issuer == GITHUB  # the only issuer, when the binding names none
    assert ci_main.claims["repository_id"] == ("690123456",)  # a number, as JSON spells it
    assert no_prs.deny and no_prs.bot is None
    assert bind(TOKEN, GITHUB, trust.bindings) is ci_main
    assert config.bot_named("infra-deploy") is not None and config.bot_named("x") is None


def _broken(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_broken("roles: [ci-runner]}", "roles: [nobody]}"), "<c>:13: bots[0].roles[0]: bot"),
        (
            _broken("      bot: infra-deploy\n", "      issuer: https://gitlab.example\n"),
            "oidc.bindings[0]: Value error, an allow binding names its bot",
        ),
        (
            _broken("name: ci-main\n", "name: ci-main\n      issuer: https://x.example\n"),
            "<c>:20: oidc.bindings[0].issuer: 'https://x.example' is not one of",
        ),
        (
            _broken("        repository: acme/infra\n", "").replace(
                "repository_id: 690123456", "environment: prod"
            ),
            "an allow binding must pin whose jobs it trusts",
        ),
        (
            _broken("repository: acme/infra", 'repository: "*/infra"').replace(
                "        repository_id: 690123456\n", ""
            ),
            "must pin whose jobs",
        ),
        (
            _broken("audience: https://iamgate.example", "audience: []"),
            "<c>:17: oidc.issuers[0].audience",
        ),
        (
            _broken("audience: https://iamgate.example", "audience: x\n      algorithms: [HS256]"),
            "<c>:18: oidc.issuers[0].algorithms[0]",
        ),
        (_broken("url: https://token", "url: token"), "<c>:16: oidc.issuers[0].url"),
        (_broken("deny: true", "deny: true\n      bot: infra-deploy"), "a deny binding names"),
        (
            _broken("name: no-prs", "name: ci-main"),
            "<c>:25: oidc.bindings[1].name: 'ci-main' is defined twice",
        ),
    ],
)
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="<c>")
    assert expected in str(info.value)


def test_bots_and_bindings_are_reloadable() -> None:
    live = LiveConfig(parse_config(GOOD))
    live.replace(parse_config(GOOD.replace("    - name: no-prs\n", "    - name: no-prs-2\n")))
    assert Trust.of(live.config).bindings[1].name == "no-prs-2"


def test_a_bound_job_gets_the_role_its_bot_may_use_for_at_most_its_ttl() -> None:
    config = parse_config(GOOD)
    roles = {r.name: r for r in config.roles}
    (binding, _) = Trust.of(config).bindings
    grant = grant_for(config, roles, binding, "222222222222", "CIRunner", None)
    assert grant.account.name == "ci" and [r.name for r in grant.gateway_roles] == ["ci-runner"]
    assert grant.ttl == timedelta(hours=1)  # STS's default
    long = grant_for(config, roles, binding, "222222222222", "CIRunner", timedelta(hours=12))
    assert long.ttl == timedelta(hours=2)  # the role's max_session_ttl
    with pytest.raises(NotGranted, match=r"bot `infra-deploy` \(binding `ci-main`\) may not"):
        grant_for(config, roles, binding, "111111111111", "CIRunner", None)
    with pytest.raises(NotGranted, match="account 333333333333 is not configured"):
        grant_for(config, roles, binding, "333333333333", "CIRunner", None)
    with pytest.raises(NotGranted, match=r"none of its gateway roles \(ci-runner\)"):
        grant_for(config, roles, binding, "222222222222", "ReadOnly", None)


def test_a_bots_credential_carries_its_binding_and_job_and_holds_while_they_do() -> None:
    config = parse_config(GOOD)
    ring = KeyRing({"k": ServerKey("k", b"s" * 32)}, "k")
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    job = job_claims(TOKEN)
    assert dict(job)["run_id"] == "9876543210" and "groups" not in dict(job)
    assert "aud" not in dict(job)  # only the job's claims travel
    creds = mint_credentials(
        ring,
        principal=bot_principal("infra-deploy"),
        kind="bot",
        account_id="222222222222",
        aws_role="CIRunner",
        gateway_roles=("ci-runner",),
        now=now,
        binding="ci-main",
        job=job,
    )
    claims, _ = open_credentials(ring, creds.access_key_id, creds.session_token, now=now)
    assert claims.binding == "ci-main" and dict(claims.job) == dict(job)
    assert bot_name(claims.principal) == "infra-deploy" and bot_name("dana") is None
    assert still_bound(config, claims) is None
    unbound = parse_config(GOOD.replace("name: ci-main", "name: ci-main-2"))
    assert (
        still_bound(unbound, claims)
        == "binding `ci-main` no longer maps tokens to bot `infra-deploy`"
    )
    gone = parse_config(
        GOOD.replace(
            "  - {name: infra-deploy, roles: [ci-runner]}\n", "  - {name: other}\n"
        ).replace("bot: infra-deploy", "bot: other")
    )
    assert still_bound(gone, claims) == "bot `infra-deploy` is no longer configured"


def test_a_binding_may_name_a_bot_the_store_holds() -> None:
    """`iamgate bots add` stores bots: a binding naming one is a valid configuration; the
    exchange finds the bot by the gateway's lookup (configuration, then store)."""
    config = parse_config(GOOD.replace("bot: infra-deploy", "bot: stored"))
    roles = {r.name: r for r in config.roles}
    (binding, _) = Trust.of(config).bindings
    with pytest.raises(NotGranted, match="names bot `stored`, which does not exist"):
        grant_for(config, roles, binding, "222222222222", "CIRunner", None)
    stored = {"stored": BotConfig(name="stored", roles=["ci-runner"])}
    grant = grant_for(config, roles, binding, "222222222222", "CIRunner", None, stored.get)
    assert grant.bot.name == "stored" and [r.name for r in grant.gateway_roles] == ["ci-runner"]
    ring = KeyRing({"k": ServerKey("k", b"s" * 32)}, "k")
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    creds = mint_credentials(
        ring,
        principal=bot_principal("stored"),
        kind="bot",
        account_id="222222222222",
        aws_role="CIRunner",
        gateway_roles=("ci-runner",),
        now=now,
        binding="ci-main",
    )
    claims, _ = open_credentials(ring, creds.access_key_id, creds.session_token, now=now)
    assert still_bound(config, claims, stored.get) is None
    assert still_bound(config, claims, lambda _: None) == "bot `stored` is no longer configured"


def test_a_persons_credential_stays_as_small_as_before() -> None:
    ring = KeyRing({"k": ServerKey("k", b"s" * 32)}, "k")
    creds = mint_credentials(
        ring,
        principal="dana",
        kind="user",
        account_id="111111111111",
        aws_role="ReadOnly",
        gateway_roles=(),
        now=datetime(2026, 12, 2, 12, tzinfo=UTC),
    )
    assert b"bnd" not in creds.claims.to_json() and b"job" not in creds.claims.to_json()


def test_the_examples_commented_bot_is_a_valid_configuration() -> None:
    """examples/gateway.yaml shows a bot and a binding in comments: uncommented, it serves."""
    example = Path(__file__).resolve().parents[2] / "examples" / "gateway.yaml"
    head, mark, tail = example.read_text().partition("# bots:")
    uncommented = "\n".join(line.removeprefix("# ") for line in (mark + tail).splitlines())
    config = parse_config(head + uncommented)
    (binding,) = Trust.of(config).bindings
    assert binding.bot == "infra-deploy" and binding.issuer.startswith("https://token.actions")
