"""Authorization decisions: explicit deny wins, default deny, and the rule is named."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from iamgate.access.decisions import Reach, decide, decide_among
from iamgate.access.levels import access_levels
from iamgate.access.patterns import matches
from iamgate.config import AccountConfig, RoleConfig

PROD = AccountConfig(name="acme-prod", id="111111111111", labels={"env": "prod"})
CI = AccountConfig(name="acme-ci", id="222222222222", labels={"env": "ci"})

DATA_SCIENTIST = RoleConfig.model_validate(
    {
        "name": "data-scientist",
        "allow": {
            "accounts": {"env": ["prod", "staging"]},
            "aws_roles": ["ReadOnly"],
            "access_levels": ["read", "list"],
        },
        "deny": {"actions": ["rds:Delete*"]},
    }
)
CI_RUNNER = RoleConfig.model_validate(
    {
        "name": "ci-runner",
        "allow": {
            "accounts": {"name": ["acme-ci"]},
            "aws_roles": ["CIRunner"],
            "actions": ["ec2:*", "s3:*"],
            "regions": ["us-*"],
        },
        "guardrails": [
            {"action": "ec2:RunInstances", "max": {"MaxCount": 10}},
            {"action": "ec2:RunInstances", "allowed": {"InstanceType": ["t3.*", "m5.large"]}},
            {"action": "s3:PutObject", "denied": {"ACL": ["public-*"]}},
        ],
    }
)


def run(
    roles: list[RoleConfig],
    account: AccountConfig,
    aws_role: str,
    action: str,
    params: dict[str, Any] | None = None,
    region: str = "us-east-1",
    ambiguous: str | None = None,
) -> tuple[bool, str]:
    d = decide(roles, account, aws_role, action, region, params or {}, ambiguous=ambiguous)
    return d.allowed, d.rule


def test_read_only_view_by_access_level() -> None:
    assert run([DATA_SCIENTIST], PROD, "ReadOnly", "rds:DescribeDBInstances")[0]
    assert run([DATA_SCIENTIST], PROD, "ReadOnly", "s3:GetObject")[0]
    allowed, rule = run([DATA_SCIENTIST], PROD, "ReadOnly", "s3:PutObject")
    assert not allowed and rule == "role data-scientist does not allow s3:PutObject"
    # "Tagging, Write": not read-only, though it sounds harmless
    assert not run([DATA_SCIENTIST], PROD, "ReadOnly", "s3:PutObjectTagging")[0]


def test_explicit_deny_wins_and_is_named() -> None:
    everything = RoleConfig.model_validate(
        {"name": "admin", "allow": {"accounts": {"env": ["prod"]}, "aws_roles": ["*"]}}
    )
    allowed, rule = run([everything, DATA_SCIENTIST], PROD, "ReadOnly", "rds:DeleteDBInstance")
    assert not allowed
    assert rule == "role data-scientist denies rds:DeleteDBInstance (deny rds:Delete*)"
    assert run([everything], PROD, "ReadOnly", "rds:DeleteDBInstance")[0]


def test_default_deny() -> None:
    assert run([], PROD, "ReadOnly", "sts:GetCallerIdentity") == (
        False,
        "no role of yours allows ReadOnly in account acme-prod (111111111111)",
    )
    assert not run([DATA_SCIENTIST], CI, "ReadOnly", "s3:ListBucket")[0]
    assert not run([DATA_SCIENTIST], PROD, "Admin", "s3:ListBucket")[0]
    unknown = "s3:NoSuchActionEver"  # unknown to IAM's data: no access level, so no
    assert not run([DATA_SCIENTIST], PROD, "ReadOnly", unknown)[0]


def test_actions_are_case_insensitive_iam_globs() -> None:
    assert matches("ec2:Describe*", "EC2:describeinstances")
    assert matches("s3:Get?bject", "s3:GetObject")
    assert not matches("s3:Get?bject", "s3:GetObjectAcl")
    assert run([CI_RUNNER], CI, "CIRunner", "EC2:describeInstances")[0]


def test_guardrails_name_the_limit() -> None:
    ok = {"MaxCount": "10", "MinCount": "10", "InstanceType": "t3.micro"}
    assert run([CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", ok)[0]
    allowed, rule = run([CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", {**ok, "MaxCount": "1000"})
    assert not allowed
    assert (
        rule
        == "role ci-runner guardrail on ec2:RunInstances: MaxCount=1000 is above the limit of 10"
    )
    allowed, rule = run(
        [CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", {**ok, "InstanceType": "p5.48xlarge"}
    )
    assert not allowed and "InstanceType=p5.48xlarge is not one of the allowed values" in rule
    assert not run([CI_RUNNER], CI, "CIRunner", "s3:PutObject", {"ACL": "public-read"})[0]
    assert run([CI_RUNNER], CI, "CIRunner", "s3:PutObject", {"ACL": "private"})[0]


def test_guardrails_refuse_what_they_cannot_read() -> None:
    for unreadable in ("ten", "1e3", "0x10", "NaN", "Infinity", "1_000", " 9", True, None):
        params = {"MaxCount": unreadable}
        allowed, rule = run([CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", params)
        assert not allowed and "not a plain decimal number" in rule, unreadable
    assert run([CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", {"MaxCount": "10"})[0]
    assert run([CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", {"MaxCount": 10})[0]
    allowed, rule = run(
        [CI_RUNNER],
        CI,
        "CIRunner",
        "ec2:RunInstances",
        {"MaxCount": "1"},
        ambiguous="the parameter MaxCount appears twice",
    )
    assert not allowed and "ambiguous: the parameter MaxCount appears twice" in rule
    # No guardrail on the action: ambiguity does not matter.
    assert run([CI_RUNNER], CI, "CIRunner", "ec2:DescribeInstances", ambiguous="x")[0]


def test_regions() -> None:
    assert run([CI_RUNNER], CI, "CIRunner", "s3:ListBucket", region="us-west-2")[0]
    allowed, rule = run([CI_RUNNER], CI, "CIRunner", "s3:ListBucket", region="eu-west-1")
    assert not allowed and rule == "role ci-runner does not allow region eu-west-1"


def test_access_levels_come_from_iam_data() -> None:
    assert access_levels("rds:DeleteDBInstance") == {"write"}
    assert access_levels("s3:ListBucket") == {"list"}
    assert access_levels("iam:AttachRolePolicy") == {"permissions", "write"}
    assert access_levels("nosuch:Thing") == frozenset()


@given(st.integers(min_value=0, max_value=10_000))
def test_max_count_guardrail_is_exact(n: int) -> None:
    allowed, _ = run(
        [CI_RUNNER],
        CI,
        "CIRunner",
        "ec2:RunInstances",
        {"MaxCount": str(n), "InstanceType": "t3.small"},
    )
    assert allowed == (n <= 10)


@given(
    min_count=st.one_of(st.none(), st.integers(0, 2000)),
    max_count=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_a_maximum_count_bounds_the_minimum_too(
    min_count: int | None, max_count: int | None
) -> None:
    """AWS launches at least MinCount: a guardrail on MaxCount holds however the two are
    given (MinCount above the limit with MaxCount absent, or lower)."""
    params = {
        name: str(value)
        for name, value in (("MinCount", min_count), ("MaxCount", max_count))
        if value is not None
    }
    allowed, rule = run([CI_RUNNER], CI, "CIRunner", "ec2:RunInstances", params)
    launched_at_most = max(int(v) for v in params.values()) if params else 0
    assert allowed == (launched_at_most <= 10), (params, rule)


def test_credential_minting_sts_calls_are_never_allowed() -> None:
    everything = RoleConfig.model_validate(
        {
            "name": "admin",
            "allow": {"accounts": {"name": ["acme-ci"]}, "aws_roles": ["*"], "actions": ["sts:*"]},
        }
    )
    for action in ("sts:AssumeRole", "sts:GetSessionToken", "sts:assumerolewithwebidentity"):
        allowed, rule = run([everything], CI, "Admin", action)
        assert not allowed and "credentials are issued by iamgate" in rule
    assert run([everything], CI, "Admin", "sts:GetCallerIdentity")[0]


def test_credential_issuing_actions_need_a_role_that_names_them() -> None:
    def role(actions: list[str] | None = None, levels: list[str] | None = None) -> RoleConfig:
        allow: dict[str, Any] = {"accounts": {"name": ["acme-ci"]}, "aws_roles": ["Admin"]}
        if actions is not None:
            allow["actions"] = actions
        if levels is not None:
            allow["access_levels"] = levels
        return RoleConfig.model_validate({"name": "r", "allow": allow})

    for action in ("ecr:GetAuthorizationToken", "iam:CreateAccessKey", "sso:GetRoleCredentials"):
        for broad in (role(), role(["*"]), role([action.split(":")[0] + ":*"])):
            allowed, rule = run([broad], CI, "Admin", action)
            assert not allowed and "issues credentials" in rule and "by name" in rule
        allowed, rule = run([role([action])], CI, "Admin", action)
        assert allowed and "by name" in rule
    reader = role(levels=["read", "list", "write"])
    assert not run([reader], CI, "Admin", "ecr:GetAuthorizationToken")[0]
    assert run([reader], CI, "Admin", "ecr:DescribeRepositories")[0]


_ROLES = {
    role.name: role
    for role in (
        DATA_SCIENTIST,
        CI_RUNNER,
        RoleConfig.model_validate(
            {
                "name": "prod-admin",
                "allow": {"accounts": {"name": ["acme-prod"]}, "aws_roles": ["Admin*"]},
                "deny": {"actions": ["rds:Delete*", "iam:*"]},
            }
        ),
        RoleConfig.model_validate(
            {
                "name": "everywhere-reader",
                "allow": {
                    "accounts": {"env": ["prod", "ci"]},
                    "aws_roles": ["ReadOnly", "CIRunner"],
                    "actions": ["s3:Get*", "sts:GetCallerIdentity"],
                },
            }
        ),
    )
}


@given(
    held=st.lists(st.sampled_from([*_ROLES, "no-such-role"]), max_size=6),
    account=st.sampled_from([PROD, CI]),
    aws_role=st.sampled_from(["ReadOnly", "CIRunner", "AdminFull", "Other"]),
    action=st.sampled_from(
        [
            "s3:GetObject",
            "s3:PutObject",
            "rds:DeleteDBInstance",
            "iam:CreateUser",
            "ec2:RunInstances",
            "sts:GetCallerIdentity",
            "sts:AssumeRole",
        ]
    ),
    max_count=st.integers(min_value=1, max_value=20),
)
def test_remembered_reach_decides_as_scanning_every_role(
    held: list[str], account: AccountConfig, aws_role: str, action: str, max_count: int
) -> None:
    """The index a user with many roles relies on never changes a decision: the same as
    scanning every role held, asked twice (the second answer comes from memory)."""
    reach = Reach(_ROLES, size=2)
    names = tuple(held)
    params = {"MaxCount": max_count}
    scanned = decide(
        [_ROLES[n] for n in names if n in _ROLES], account, aws_role, action, "us-east-1", params
    )
    for _ in range(2):
        reaching = reach.of(names, account, aws_role)
        assert decide_among(reaching, account, aws_role, action, "us-east-1", params) == scanned


def test_a_change_of_roles_held_is_seen_at_once() -> None:
    reach = Reach(_ROLES)
    assert reach.of(("data-scientist",), PROD, "ReadOnly") == (DATA_SCIENTIST,)
    assert reach.of(("ci-runner",), PROD, "ReadOnly") == ()
    assert reach.of(("ci-runner", "data-scientist"), PROD, "ReadOnly") == (DATA_SCIENTIST,)
