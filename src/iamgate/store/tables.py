"""The tables of the state store."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
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

api_calls = Table(
    "api_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("principal", String(128), index=True),
    Column("account_id", String(12)),
    Column("aws_role", String(128)),
    Column("service", String(64)),
    Column("region", String(32)),
    Column("operation", String(128)),
    Column("iam_action", String(192)),
    Column("resource", Text),
    Column("decision", String(16), nullable=False),
    Column("reason", Text),
    Column("gateway_role", String(64)),
    Column("status", Integer),
    Column("aws_request_id", String(128)),
    Column("error_code", String(128)),
    Column("latency_ms", Float),
    Column("bytes_in", BigInteger),
    Column("bytes_out", BigInteger),
    Column("source_ip", String(64)),
    Column("user_agent", Text),
)
