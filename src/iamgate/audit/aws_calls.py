"""The audit record of one AWS API call, filled in as the call goes through the gateway.

A call refused before it is decided becomes one `aws.call` event. A call that is decided
has its `aws.call` event made durable before it is forwarded; how it ended (status, bytes,
the upstream's request id, a refusal on the way) follows as its `aws.call.outcome`, never as
a second call. The fields are what CloudTrail users search by: the access key, account, IAM
role, service, operation and IAM action, resource, the decision and the rule that made it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from iamgate.access.minting import issues_credentials
from iamgate.audit.events import AuditEvent, EventType, summarize_params
from iamgate.aws.operations import Identified
from iamgate.identity.credentials import Claims
from iamgate.sigv4 import Authorization


@dataclass(slots=True)
class CallRecord:
    """What is known about one request so far."""

    request_id: str
    started: float  # perf_counter seconds, for the latency
    source_ip: str | None
    user_agent: str | None
    auth: Authorization | None = None
    claims: Claims | None = None
    identified: Identified | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    status: int = 0
    aws_request_id: str | None = None
    error_code: str | None = None
    decision: str = "allowed"
    recorded: bool = False  # the call's own event has left for the store
    reason: str | None = None
    gateway_role: str | None = None
    rule: str | None = None
    unsigned_as: str | None = None  # the signing name an unsigned request's shape names
    # A web identity exchange (answered by the gateway): the token's issuer and subject,
    # the binding, the credential issued, and the job's claims once the token verified.
    web_identity: dict[str, object] | None = None
    job: tuple[tuple[str, str], ...] = ()

    @classmethod
    def begin(cls, source_ip: str | None, user_agent: str | None) -> CallRecord:
        return cls(secrets.token_hex(8).upper(), time.perf_counter(), source_ip, user_agent)

    def call_event(self) -> AuditEvent:
        """The call as decided, to be made durable before it is forwarded. From then on what
        follows is its outcome (even if waiting for the store times out)."""
        self.recorded = True
        return self._event(EventType.AWS_CALL, self._call_fields())

    def closing_event(self) -> AuditEvent:
        """How the call ended: its outcome, or the whole call if it was never recorded."""
        outcome: dict[str, object] = {
            "status": self.status,
            "aws_request_id": self.aws_request_id,
            "error_code": self.error_code,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
        if self.recorded:
            fields = {"request_id": self.request_id, **outcome, "reason": self.reason}
            return self._event(EventType.AWS_CALL_OUTCOME, fields)
        return self._event(EventType.AWS_CALL, {**self._call_fields(), **outcome})

    def _call_fields(self) -> dict[str, object]:
        identified, auth, claims = self.identified, self.auth, self.claims
        op = identified.operation if identified else None
        return {
            "request_id": self.request_id,
            # As CloudTrail records it: what a leaked key did, known or not, is searchable.
            "access_key_id": auth.scope.access_key_id if auth else None,
            "account_id": claims.account_id if claims else None,
            "aws_role": claims.aws_role if claims else None,
            "service": op.service if op else (auth.scope.service if auth else None),
            "region": auth.scope.region if auth else None,
            "operation": op.name if op else None,
            "action": op.iam_action if op else None,
            "resource": identified.resource if identified else None,
            "decision": self.decision,
            "gateway_role": self.gateway_role,
            "rule": self.rule,
            "reason": self.reason,
            "params": summarize_params(identified.params) if identified else {},
            "issues_credentials": bool(op and issues_credentials(op.iam_action)),
            **self._job_fields(),
        }

    def _job_fields(self) -> dict[str, object]:
        """Which job made the call, for a bot's: the claims of the token it exchanged
        (carried in its credential), searchable as `fields.job`; and the exchange itself."""
        job = self.claims.job if self.claims is not None and self.claims.job else self.job
        fields: dict[str, object] = {}
        if job:
            fields["job"] = dict(job)
        if self.claims is not None and self.claims.binding is not None:
            fields["binding"] = self.claims.binding
        if self.web_identity is not None:
            fields["web_identity"] = self.web_identity
        return fields

    def _event(self, kind: EventType, fields: dict[str, object]) -> AuditEvent:
        return AuditEvent(
            kind,
            principal=self.claims.principal if self.claims else None,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
            fields=fields,
        )
