"""Session policies say to AWS what the gateway roles say to the gateway."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.loaders import create_loader
from botocore.model import ServiceModel
from botocore.validate import ParamValidator

from iamgate.access.session_policy import (
    MAX_PACKED_POLICY,
    SessionPolicyError,
    session_policy_for,
)
from iamgate.config import RoleConfig


def role(**data: Any) -> RoleConfig:
    return RoleConfig.model_validate({"name": data.pop("name", "r"), **data})


DATA_SCIENTIST = role(
    name="data-scientist",
    allow={
        "accounts": {"env": ["prod"]},
        "aws_roles": ["ReadOnly"],
        "access_levels": ["read", "list"],
    },
    deny={"actions": ["rds:Delete*"]},
)
CI_RUNNER = role(
    name="ci-runner",
    allow={
        "accounts": {"name": ["ci"]},
        "aws_roles": ["CIRunner"],
        "actions": ["ec2:*", "s3:*"],
        "regions": ["eu-*"],
    },
)


def statements(policy: str | None) -> list[dict[str, Any]]:
    assert policy is not None
    parsed = json.loads(policy)
    assert parsed["Version"] == "2012-10-17"
    return list(parsed["Statement"])


def test_read_only_view_is_aws_read_only_access_minus_the_denies() -> None:
    sp = session_policy_for([DATA_SCIENTIST])
    assert sp.policy_arns == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)
    assert statements(sp.policy) == [{"Effect": "Deny", "Action": ["rds:Delete*"], "Resource": "*"}]


def test_listed_actions_with_a_region_condition() -> None:
    sp = session_policy_for([CI_RUNNER], partition="aws-us-gov")
    assert sp.policy_arns == ()
    assert statements(sp.policy) == [
        {
            "Effect": "Allow",
            "Action": ["ec2:*", "s3:*"],
            "Resource": "*",
            "Condition": {"StringLike": {"aws:RequestedRegion": ["eu-*"]}},
        }
    ]


def test_an_unrestricted_role_needs_no_policy_but_keeps_denies() -> None:
    admin = role(name="admin", allow={"accounts": {"env": ["prod"]}, "aws_roles": ["*"]})
    assert session_policy_for([admin]).unrestricted
    sp = session_policy_for([admin, DATA_SCIENTIST])
    assert sp.policy_arns == ()
    assert statements(sp.policy) == [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["rds:Delete*"], "Resource": "*"},
    ]


def test_roles_combine_as_the_gateway_combines_them() -> None:
    sp = session_policy_for([DATA_SCIENTIST, CI_RUNNER], partition="aws-cn")
    assert sp.policy_arns == ("arn:aws-cn:iam::aws:policy/ReadOnlyAccess",)
    effects = [s["Effect"] for s in statements(sp.policy)]
    assert effects == ["Allow", "Deny"]


def test_what_aws_would_refuse_is_refused_here() -> None:
    huge = role(
        name="huge",
        allow={
            "accounts": {"env": ["x"]},
            "aws_roles": ["R"],
            "actions": [f"ec2:Describe{i:04d}*" for i in range(200)],
        },
    )
    with pytest.raises(SessionPolicyError, match=f"at most {MAX_PACKED_POLICY}"):
        session_policy_for([huge])
    odd = role(
        name="odd",
        allow={"accounts": {"env": ["x"]}, "aws_roles": ["R"], "access_levels": ["tagging"]},
    )
    with pytest.raises(SessionPolicyError, match="no AWS managed policy"):
        session_policy_for([odd])


def test_botocore_accepts_it_as_assume_role_parameters() -> None:
    model = ServiceModel(create_loader().load_service_model("sts", "service-2"), "sts")
    shape = model.operation_model("AssumeRole").input_shape
    assert shape is not None
    for roles in ([DATA_SCIENTIST], [CI_RUNNER], [DATA_SCIENTIST, CI_RUNNER]):
        sp = session_policy_for(roles)
        params: dict[str, Any] = {
            "RoleArn": "arn:aws:iam::111111111111:role/ReadOnly",
            "RoleSessionName": "dana",
            "PolicyArns": [{"arn": a} for a in sp.policy_arns],
        }
        if sp.policy:
            params["Policy"] = sp.policy
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), report.generate_report()
