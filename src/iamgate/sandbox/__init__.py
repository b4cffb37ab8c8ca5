"""The embedded AWS of the demo and the tests: a real moto server with a seeded estate.

`moto_server` runs moto as a process of its own; `estate` seeds it with the accounts, roles
and resources the demo and the tests use (and says how moto decides an account);
`federation` stands in for the AWS console's federation endpoint, `oidc_issuer` for a CI
system's OIDC issuer.
"""

from iamgate.sandbox.estate import (
    GATEWAY_ACCOUNT,
    GATEWAY_USER,
    REGION,
    SANDBOX_ACCOUNTS,
    SANDBOX_AMI_ID,
    SANDBOX_ROLES,
    Sandbox,
    SandboxAccount,
)
from iamgate.sandbox.moto_server import MotoServer

__all__ = [
    "GATEWAY_ACCOUNT",
    "GATEWAY_USER",
    "REGION",
    "SANDBOX_ACCOUNTS",
    "SANDBOX_AMI_ID",
    "SANDBOX_ROLES",
    "MotoServer",
    "Sandbox",
    "SandboxAccount",
]
