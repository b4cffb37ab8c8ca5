"""Actions that hand out credentials which work without the gateway.

Everything else iamgate allows is a call that passes through it, is checked and audited;
these return keys, passwords or tokens that reach AWS (or a registry, a database, a host)
directly. STS's own minting operations are never forwarded: the gateway is the one place
that issues AWS credentials to people. The others are refused unless a gateway role names
the action itself (no wildcard, no access level), and such a call is audited as credential
issuance. The list is reviewed: each entry says what it gives.
"""

from __future__ import annotations

from collections.abc import Iterable

# Never forwarded, whatever a role says: these mint AWS credentials around the gateway.
STS_MINTING: dict[str, str] = {
    "sts:AssumeRole": "temporary AWS credentials for a role",
    "sts:AssumeRoleWithSAML": "temporary AWS credentials for a SAML assertion",
    "sts:AssumeRoleWithWebIdentity": "temporary AWS credentials for an OIDC token",
    "sts:AssumeRoot": "temporary root credentials of a member account",
    "sts:GetFederationToken": "temporary AWS credentials for a federated user",
    "sts:GetSessionToken": "temporary AWS credentials for the caller",
}

# Allowed only when a gateway role names the action exactly.
ISSUES_CREDENTIALS: dict[str, str] = {
    "sts:GetWebIdentityToken": "a signed identity token that other systems trust",
    "iam:CreateAccessKey": "a long-lived AWS access key",
    "iam:UpdateAccessKey": "re-activates a long-lived AWS access key",
    "iam:CreateLoginProfile": "a console password",
    "iam:UpdateLoginProfile": "a new console password",
    "iam:CreateServiceSpecificCredential": "a password for CodeCommit, Keyspaces or Bedrock",
    "iam:ResetServiceSpecificCredential": "a new service-specific password",
    "iam:UploadSSHPublicKey": "SSH access to CodeCommit",
    "iam:UploadSigningCertificate": "an X.509 signing certificate for the user",
    "ecr:GetAuthorizationToken": "a 12-hour Docker registry password",
    "ecr-public:GetAuthorizationToken": "a public registry token",
    "codeartifact:GetAuthorizationToken": "a package repository token",
    "cognito-identity:GetCredentialsForIdentity": "temporary AWS credentials for an identity",
    "cognito-identity:GetOpenIdToken": "an OIDC token trusted by AssumeRoleWithWebIdentity",
    "cognito-identity:GetOpenIdTokenForDeveloperIdentity": "an OIDC token (developer identity)",
    "sso:GetRoleCredentials": "temporary AWS credentials from IAM Identity Center",
    "sso-oauth:CreateToken": "an IAM Identity Center access token",
    "redshift:GetClusterCredentials": "a temporary database password",
    "redshift:GetClusterCredentialsWithIAM": "a temporary database password",
    "redshift-serverless:GetCredentials": "a temporary database password",
    "ec2:GetPasswordData": "a Windows instance's administrator password",
    "ec2:CreateKeyPair": "the private key of a new SSH key pair",
    "ec2-instance-connect:SendSSHPublicKey": "SSH access to an instance",
    "ec2-instance-connect:SendSerialConsoleSSHPublicKey": "serial console access",
    "lightsail:GetInstanceAccessDetails": "SSH or RDP credentials for an instance",
    "lightsail:CreateKeyPair": "the private key of a new key pair",
    "lightsail:DownloadDefaultKeyPair": "the private key of the default key pair",
    "lightsail:GetRelationalDatabaseMasterUserPassword": "a database master password",
    "gamelift:GetInstanceAccess": "credentials for a fleet instance",
    "gamelift:GetComputeAccess": "temporary AWS credentials for a compute resource",
    "iot:CreateKeysAndCertificate": "a device certificate and its private key",
}

_LOWER = {action.lower(): action for action in (*STS_MINTING, *ISSUES_CREDENTIALS)}


def never_forwarded(action: str) -> bool:
    return _LOWER.get(action.lower()) in STS_MINTING


def issues_credentials(action: str) -> bool:
    return _LOWER.get(action.lower()) is not None


def named_explicitly(patterns: Iterable[str], action: str) -> bool:
    """A credential-issuing action is allowed only by its own name, never by a wildcard."""
    return any(pattern.lower() == action.lower() for pattern in patterns)
