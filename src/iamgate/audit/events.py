"""Audit events as plain data, so that what is recorded is decided in one pure place."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

Decision = Literal["allowed", "denied", "error"]


@dataclass(frozen=True, slots=True)
class ApiCallEvent:
    """One AWS API call through the gateway, allowed or refused. Never holds a secret."""

    request_id: str
    time: datetime
    principal: str | None
    account_id: str | None
    aws_role: str | None
    service: str | None
    region: str | None
    operation: str | None
    iam_action: str | None
    resource: str | None
    decision: Decision
    reason: str | None
    gateway_role: str | None
    status: int
    aws_request_id: str | None
    error_code: str | None
    latency_ms: float
    bytes_in: int
    bytes_out: int
    source_ip: str | None
    user_agent: str | None

    def as_row(self) -> dict[str, object]:
        return asdict(self)
