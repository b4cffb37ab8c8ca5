"""The tables of the state store."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

server_keys = Table(
    "server_keys",
    metadata,
    Column("kid", String(16), primary_key=True),
    Column("secret", LargeBinary(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The audit log: one hash chain per writer (a gateway process or an admin command), each
# event stored whole in `body` (what the hash covers) with searchable copies beside it.
audit_events = Table(
    "audit_events",
    metadata,
    Column("chain", String(32), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("id", String(32), nullable=False),
    Column("time", String(32), nullable=False),
    Column("type", String(32), nullable=False),
    Column("principal", String(128)),
    Column("account_id", String(12)),
    Column("aws_role", String(128)),
    Column("service", String(64)),
    Column("action", String(192)),
    Column("decision", String(16)),
    Column("status", Integer),
    Column("request_id", String(64), index=True),
    Column("body", Text, nullable=False),
    # Search-only copies (`iamgate.audit.search`), not part of what a record says: the key
    # the call was signed with, and, on an outcome, where its call is in the search order.
    Column("access_key_id", String(128)),
    Column("call_time", String(32)),
    Column("call_chain", String(32)),
    Column("call_seq", BigInteger),
)

# Search reads newest first on (time, chain, seq), which orders every event of every chain
# and is unique: each filter has an index that leads with the event type and that value,
# then that order, so a page is an index range read backwards, never a sort of the table.
_ORDER = ("time", "chain", "seq")
for _name, _columns in (
    ("type", ()),
    ("principal", ("principal",)),
    ("account", ("account_id",)),
    ("role", ("aws_role",)),
    ("service", ("service",)),
    ("action", ("action",)),
    ("decision", ("decision",)),
    ("status", ("status",)),
    ("key", ("access_key_id",)),
):
    Index(f"ix_audit_events_by_{_name}", *(audit_events.c[c] for c in ("type", *_columns, *_ORDER)))
# An outcome's status, in its call's place in the order: a status filter reads this.
Index(
    "ix_audit_events_outcome_status",
    *(audit_events.c[c] for c in ("type", "status", "call_time", "call_chain", "call_seq")),
)


users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("totp_secret", String(64), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True)),
    Column("last_totp_step", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The gateway roles a user holds: one row each, gone with the user.
user_roles = Table(
    "user_roles",
    metadata,
    Column(
        "user",
        String(64),
        ForeignKey("users.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(64), primary_key=True),
)

login_sessions = Table(
    "login_sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),  # sha256 of the bearer secret
    Column("user", String(64), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("source_ip", String(64)),
    Column("user_agent", Text),
    # "cli" (bearer token) or "web" (browser cookie, which also ends after a quiet spell)
    Column("kind", String(8), nullable=False, default="cli"),
    Column("last_seen_at", DateTime(timezone=True)),
)

issued_credentials = Table(
    "issued_credentials",
    metadata,
    Column("session_id", String(32), primary_key=True),  # the access key id without ASIA
    Column("principal", String(128), nullable=False, index=True),
    Column("login_session", String(32), index=True),
    Column("account_id", String(12), nullable=False),
    Column("aws_role", String(128), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Append-only: every replica follows it by id, so a revocation reaches all of them.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # credential | login | user
    Column("subject", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("by", String(128)),
)

# One-time enrolment links (`iamgate.identity.enrolment`): the secret is stored only as its
# SHA-256; the TOTP secret waits here until the link is redeemed, then moves to `users`.
enrolment_links = Table(
    "enrolment_links",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("user", String(64), nullable=False, index=True),
    Column("totp_secret", String(64), nullable=False),
    Column("created_by", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

# Just-in-time access requests (`iamgate.access.requests`). A request changes state only by
# a conditional UPDATE on its `version`, so that two replicas reviewing it at the same
# instant make one change, never two.
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("requester", String(64), nullable=False, index=True),
    Column("role", String(64), nullable=False),
    Column("accounts", Text, nullable=False),  # account ids, comma-separated
    Column("actions", Text, nullable=False, default=""),  # a narrower scope, comma-separated
    Column("duration_seconds", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("ticket", String(128)),
    Column("start_at", DateTime(timezone=True)),  # the asked-for start
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("pending_until", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("ended_by", String(16)),
    Column("approved_accounts", Text, nullable=False, default=""),
    Column("starts_at", DateTime(timezone=True)),  # the grant's window, once approved
    Column("ends_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One review per person per request: the primary key says so to every replica.
request_reviews = Table(
    "request_reviews",
    metadata,
    Column("request_id", String(16), primary_key=True),
    Column("reviewer", String(64), primary_key=True),
    Column("approve", Integer, nullable=False),  # 1 approve, 0 deny
    Column("accounts", Text, nullable=False),
    Column("scope", Text, nullable=False),  # JSON: account id -> the stages counted in
    Column("reason", Text, nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# What the gateway applies: every replica reads the open grants by short polling, never per
# call. `ended_at` is set when the grant ends early (dropped, revoked).
access_grants = Table(
    "access_grants",
    metadata,
    Column("request_id", String(16), primary_key=True),
    Column("user", String(64), nullable=False, index=True),
    Column("role", String(64), nullable=False),
    Column("accounts", Text, nullable=False),
    Column("actions", Text, nullable=False, default=""),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False, index=True),
    Column("ended_at", DateTime(timezone=True)),
)

# Bots added by administrators (`iamgate bots add`, the API, the Bots page); the
# configuration's `bots:` are not stored here: they stay the configuration's.
bots = Table(
    "bots",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128)),
)

# The gateway roles a stored bot holds: one row each, gone with the bot.
bot_roles = Table(
    "bot_roles",
    metadata,
    Column(
        "bot",
        String(64),
        ForeignKey("bots.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(64), primary_key=True),
)

# The notifications outbox: written in the same transaction as the request's change it
# tells of, delivered afterwards by whichever replica claims a row (`claimed_until`), tried
# again with backoff (`due_at`), kept as the delivery log.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(16), nullable=False, index=True),
    Column("event", String(32), nullable=False),
    Column("channel", String(16), nullable=False),  # webhook | smtp
    Column("target", Text, nullable=False),  # the webhook's url, or the e-mail address
    Column("recipients", Text, nullable=False, default=""),  # user names, comma-separated
    Column("body", Text, nullable=False),  # JSON: exactly what is sent (and signed)
    Column("state", String(16), nullable=False),  # pending | delivered | failed | skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", DateTime(timezone=True), nullable=False, index=True),
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
)
