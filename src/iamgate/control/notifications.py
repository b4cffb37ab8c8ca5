"""Notifications of access requests: who hears of what, written into the outbox with the
change itself, then delivered by webhook and e-mail in the background.

Why an outbox: a notification is written in the same transaction as the change it tells of,
so there is none for a change that lost its race and none lost for a change that won,
whatever happens to the process afterwards; and the change never waits on a receiver. One
replica at a time delivers a row (it claims it with a conditional UPDATE); a failure is
tried again after 1s, 2s, 4s … (at most `retry_max_interval` apart) until `max_attempts`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import smtplib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiohttp
from sqlalchemy import Engine

from iamgate.access.requests import Person, Request, State, duration_text, reviewable
from iamgate.config import Config, LiveConfig, SmtpConfig, WebhookConfig, live
from iamgate.store.notifications import Delivery, Outbound, claim_due, finish
from iamgate.store.requests import load_request
from iamgate.store.users import list_users

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Iamgate-Signature"

# What each event says, to whom it goes being decided by the use cases.
SUBJECTS = {
    "request.created": "{requester} asks for {role} ({duration})",
    "request.reminder": "Reminder: {requester}'s request for {role} is waiting for review",
    "request.handled": "{requester}'s request for {role} was already handled by {actor}",
    "request.approved": "Your request for {role} was approved",
    "request.denied": "Your request for {role} was denied",
    "request.expired": "Your request for {role} expired",
    "request.ended": "Your access as {role} has ended",
    "request.revoked": "Your access as {role} was revoked by {actor}",
}


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: `sha256=<hex HMAC-SHA256 of the body>`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request_page(config: Config, request_id: str) -> str:
    return f"{config.server.url}/requests/{request_id}"


def reviewers_of(config: Config, engine: Engine, request: Request) -> list[str]:
    """Who may review the request now (in scope for one of its accounts), not its requester."""
    role = next((r for r in config.roles if r.name == request.role), None)
    if role is None or role.requestable is None:
        return []
    defined = {r.name for r in config.roles}
    accounts = [a for a in (config.aws.account_by_id(i) for i in request.accounts) if a]
    found = []
    for user in list_users(engine):
        name = user.record.name
        person = Person(name, frozenset(r for r in user.roles if r in defined))
        if name != request.requester and reviewable(role.requestable, person, accounts):
            found.append(name)
    return sorted(found)


def compose(
    config: Config,
    event: str,
    request: Request,
    recipients: Sequence[str],
    *,
    actor: str,
    now: datetime,
    due_at: datetime | None = None,
    reason: str = "",
) -> list[Outbound]:
    """The outbox rows for one event: one per webhook (naming every recipient), one e-mail
    per recipient. None when nothing is configured or nobody is to hear of it."""
    settings = config.notifications
    if not recipients or (not settings.webhooks and settings.smtp is None):
        return []
    url = request_page(config, request.id)
    words = {
        "requester": request.requester,
        "role": request.role,
        "duration": duration_text(request.duration),
        "actor": actor,
    }
    subject = SUBJECTS[event].format(**words)
    accounts = [
        f"{a.name} ({a.id})" if a else i
        for i, a in ((i, config.aws.account_by_id(i)) for i in request.accounts)
    ]
    text = "\n".join(
        [
            subject + ".",
            "",
            f"Request:   {request.id}",
            f"Requester: {request.requester}",
            f"Role:      {request.role}",
            f"Accounts:  {', '.join(accounts)}",
            f"Duration:  {duration_text(request.duration)}",
            f"Reason:    {request.reason}",
            *([f"By:        {actor}"] if actor != request.requester else []),
            *([f"Why:       {reason}"] if reason else []),
            "",
            f"Open the request: {url}",
        ]
    )
    payload: dict[str, object] = {
        "event": event,
        "request_id": request.id,
        "requester": request.requester,
        "role": request.role,
        "accounts": list(request.accounts),
        "duration": duration_text(request.duration),
        "reason": request.reason,
        "actor": actor,
        "why": reason,
        "recipients": list(recipients),
        "url": url,
        "subject": subject,
        "text": text,
        "at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "id": secrets.token_hex(8),  # lets a receiver drop a delivery it has seen
    }
    when = due_at or now
    rows = [
        Outbound(request.id, event, "webhook", hook.url, tuple(recipients), _json(payload), when)
        for hook in settings.webhooks
    ]
    if settings.smtp is not None:
        for user in recipients:
            address = settings.smtp.to.format(user=user)
            one = payload | {"recipients": [user], "to": address}
            rows.append(Outbound(request.id, event, "smtp", address, (user,), _json(one), when))
    return rows


def _json(payload: dict[str, object]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


# -- delivery ------------------------------------------------------------------------------


def _read_secret(env: str | None, file: Path | None) -> str | None:
    if env is not None:
        return os.environ.get(env)
    if file is not None:
        return file.read_text().strip()
    return None


def backoff(attempts: int, cap: timedelta) -> timedelta:
    """After the n-th failed attempt: 1s, 2s, 4s … at most `cap`."""
    return min(timedelta(seconds=2 ** min(attempts, 30)), cap)


class Deliverer:
    """Delivers what is due in the outbox, from this replica, one claimed row at a time."""

    def __init__(
        self,
        config: Config | LiveConfig,
        engine: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.live = live(config)
        self.engine = engine
        self.replica = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def config(self) -> Config:
        return self.live.config

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """Deliver every row due now; the number attempted."""
        claimed = await asyncio.to_thread(claim_due, self.engine, self.replica, self._clock())
        await asyncio.gather(*(self._one(session, d) for d in claimed))
        return len(claimed)

    async def _one(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        settings = self.config.notifications
        if delivery.event == "request.reminder" and not await asyncio.to_thread(
            self._still_pending, delivery.request_id
        ):
            await asyncio.to_thread(
                finish, self.engine, delivery, state="skipped", now=self._clock()
            )
            return
        try:
            if delivery.channel == "webhook":
                await self._post(session, delivery)
            else:
                await asyncio.to_thread(self._mail, delivery)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            attempts = delivery.attempts + 1
            now = self._clock()
            if attempts >= settings.max_attempts:
                log.warning("notification %s failed for good: %s", delivery.id, error)
                await asyncio.to_thread(
                    finish, self.engine, delivery, state="failed", now=now, error=error
                )
            else:
                retry_at = now + backoff(attempts - 1, settings.retry_max_interval)
                await asyncio.to_thread(
                    finish,
                    self.engine,
                    delivery,
                    state="pending",
                    now=now,
                    error=error,
                    retry_at=retry_at,
                )
            return
        await asyncio.to_thread(finish, self.engine, delivery, state="delivered", now=self._clock())

    def _still_pending(self, request_id: str) -> bool:
        stored = load_request(self.engine, request_id)
        return stored is not None and stored.request.state is State.PENDING

    def _webhook(self, url: str) -> WebhookConfig:
        for hook in self.config.notifications.webhooks:
            if hook.url == url:
                return hook
        raise LookupError("this webhook is no longer configured")

    async def _post(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        hook = self._webhook(delivery.target)
        secret = _read_secret(hook.secret_env, hook.secret_file)
        if not secret:
            raise LookupError("the webhook's secret is not set")
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret.encode(), body),
            "User-Agent": "iamgate-notifications",
        }
        timeout = aiohttp.ClientTimeout(total=10)
        async with session.post(delivery.target, data=body, headers=headers, timeout=timeout) as r:
            if not 200 <= r.status < 300:
                raise OSError(f"the webhook answered HTTP {r.status}")

    def _mail(self, delivery: Delivery) -> None:
        smtp = self.config.notifications.smtp
        if smtp is None:
            raise LookupError("SMTP is no longer configured")
        send_mail(smtp, json.loads(delivery.body))


def send_mail(smtp: SmtpConfig, payload: dict[str, object]) -> None:
    message = EmailMessage()
    message["From"] = smtp.from_
    message["To"] = str(payload["to"])
    message["Subject"] = str(payload["subject"])
    message["X-Iamgate-Request"] = str(payload["request_id"])
    message.set_content(str(payload["text"]))
    timeout = smtp.timeout.total_seconds()
    with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
        if smtp.starttls:
            client.starttls()
        password = _read_secret(smtp.password_env, smtp.password_file)
        if smtp.username and password:
            client.login(smtp.username, password)
        client.send_message(message)


def log_data(deliveries: Iterable[Delivery]) -> list[dict[str, object]]:
    """The delivery log as plain data (no secrets: they are never stored)."""

    def stamp(value: datetime | None) -> str | None:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return [
        {
            "id": d.id,
            "request_id": d.request_id,
            "event": d.event,
            "channel": d.channel,
            "target": d.target,
            "recipients": list(d.recipients),
            "state": d.state,
            "attempts": d.attempts,
            "due_at": stamp(d.due_at),
            "delivered_at": stamp(d.delivered_at),
            "last_error": d.last_error,
            "created_at": stamp(d.created_at),
        }
        for d in deliveries
    ]
