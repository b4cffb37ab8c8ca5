"""The credentials the gateway has issued, recorded for the audit trail and for search.

Credentials verify without this table (they are signed); it says who was issued what, when,
and under which login session, so "what did this key do, and whose is it?" has an answer.
"""

from __future__ import annotations

from sqlalchemy import Engine, insert

from iamgate.identity.credentials import Claims
from iamgate.store.tables import issued_credentials


def record_issued(engine: Engine, claims: Claims) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(issued_credentials).values(
                session_id=claims.session_id,
                principal=claims.principal,
                login_session=claims.login_session,
                account_id=claims.account_id,
                aws_role=claims.aws_role,
                issued_at=claims.issued_at,
                expires_at=claims.expires_at,
            )
        )
