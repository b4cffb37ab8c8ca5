"""One-time enrolment links in the state store (`iamgate.identity.enrolment` decides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, select, update

from iamgate.identity.enrolment import LinkState, LinkToken, hash_matches, new_link_token
from iamgate.store.database import aware
from iamgate.store.tables import enrolment_links, users


class _NotRedeemed(Exception):
    pass


def create_link(
    engine: Engine,
    user: str,
    totp_secret: str,
    *,
    ttl: timedelta,
    by: str | None,
    now: datetime | None = None,
) -> tuple[LinkToken, datetime]:
    """A new link for `user`, who has no password or TOTP until it is redeemed; any earlier
    unused link of theirs is spent at once."""
    now = now or datetime.now(UTC)
    token = new_link_token()
    with engine.begin() as conn:
        conn.execute(
            update(enrolment_links)
            .where(enrolment_links.c.user == user, enrolment_links.c.used_at.is_(None))
            .values(used_at=now)
        )
        conn.execute(
            update(users)
            .where(users.c.name == user)
            .values(password_hash="", totp_secret="", last_totp_step=None)
        )
        conn.execute(
            insert(enrolment_links).values(
                id=token.id,
                secret_hash=token.secret_hash,
                user=user,
                totp_secret=totp_secret,
                created_by=by,
                created_at=now,
                expires_at=now + ttl,
            )
        )
    return token, now + ttl


def link_state(engine: Engine, token: LinkToken) -> LinkState | None:
    """The link this token opens, used or not; None for an unknown or forged token."""
    with engine.connect() as conn:
        row = conn.execute(select(enrolment_links).where(enrolment_links.c.id == token.id)).first()
    if row is None or not hash_matches(row.secret_hash, token):
        return None
    return LinkState(
        row.user, row.totp_secret, aware(row.expires_at) or datetime.now(UTC), aware(row.used_at)
    )


def redeem_link(
    engine: Engine,
    token: LinkToken,
    *,
    password_hash: str,
    totp_secret: str,
    totp_step: int,
    now: datetime,
) -> bool:
    """Spend the link and give its user the password and TOTP secret, in one transaction;
    False if the link was spent (or expired) first, by a racing request too."""
    try:
        with engine.begin() as conn:
            _redeem(conn, token, password_hash, totp_secret, totp_step, now)
    except _NotRedeemed:
        return False
    return True


def _redeem(
    conn: Connection,
    token: LinkToken,
    password_hash: str,
    totp_secret: str,
    totp_step: int,
    now: datetime,
) -> None:
    spent = conn.execute(
        update(enrolment_links)
        .where(
            enrolment_links.c.id == token.id,
            enrolment_links.c.secret_hash == token.secret_hash,
            enrolment_links.c.used_at.is_(None),
            enrolment_links.c.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if not spent:
        raise _NotRedeemed
    user = conn.execute(
        select(enrolment_links.c.user).where(enrolment_links.c.id == token.id)
    ).scalar_one()
    changed = conn.execute(
        update(users)
        .where(users.c.name == user)
        .values(
            password_hash=password_hash,
            totp_secret=totp_secret,
            last_totp_step=totp_step,  # the code typed to confirm is used
            failed_logins=0,
        )
    ).rowcount
    if not changed:  # the user was removed meanwhile: roll back, the link stays unspent
        raise _NotRedeemed
