"""Console sign-in for a caller: the gateway roles of theirs that reach the IAM role, handed
to the federation (`iamgate.aws.federation`), which refuses when none does, assumes the role
and audits `console.signin`. The JSON API answers with the URL, the pages with a redirect.
"""

from __future__ import annotations

from iamgate.access.decisions import role_reaches
from iamgate.aws.federation import ConsoleFederation, ConsoleSignin
from iamgate.config import AccountConfig
from iamgate.control.callers import Caller
from iamgate.control.users import Actor


async def sign_in(
    federation: ConsoleFederation,
    caller: Caller,
    account: AccountConfig,
    aws_role: str,
    *,
    region: str | None,
    destination: str | None,
    by: Actor,
) -> ConsoleSignin:
    return await federation.signin_url(
        user=caller.user,
        gateway_roles=[r for r in caller.roles if role_reaches(r, account, aws_role)],
        account=account,
        aws_role=aws_role,
        region=region,
        destination=destination,
        source_ip=by.source_ip,
        user_agent=by.user_agent,
    )
