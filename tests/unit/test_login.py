"""Login decisions: factors, single-use codes, one answer for every failure, and throttling
per (user name, address) and per address instead of a lock anyone could set off."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iamgate.audit.events import AuditEvent, EventType
from iamgate.control.hashing import LOW_PRIORITY, HashingPool
from iamgate.control.logins import (
    Backoffs,
    Client,
    LoginResult,
    Logins,
    RateLimiter,
    Throttle,
)
from iamgate.identity import login as login_module
from iamgate.identity.login import (
    FORGET_AFTER,
    Backoff,
    LoginError,
    Refusal,
    UserRecord,
    address_key,
    decide_login,
    wait_after,
)
from iamgate.identity.passwords import hash_password, verify_password
from iamgate.identity.totp import code_at, matching_step, new_totp_secret
from iamgate.store.database import open_engine
from iamgate.store.users import get_user, put_user, set_lock

NOW = datetime(2026, 11, 24, 12, 0, 10, tzinfo=UTC)
SECRET = new_totp_secret()
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def dana() -> UserRecord:
    return UserRecord("dana", hash_password(PASSWORD), SECRET, 0, None, None)


def other_code(code: str) -> str:
    return "123456" if code != "123456" else "654321"


def test_both_factors_log_in(dana: UserRecord) -> None:
    outcome = decide_login(dana, PASSWORD, code_at(SECRET, NOW), NOW)
    assert outcome.ok and outcome.error is None and outcome.totp_step is not None


def test_clock_drift_of_one_step_either_way(dana: UserRecord) -> None:
    for drift in (-30, 30):
        assert decide_login(dana, PASSWORD, code_at(SECRET, NOW + timedelta(seconds=drift)), NOW).ok
    assert matching_step(SECRET, code_at(SECRET, NOW + timedelta(seconds=90)), NOW) is None


def test_every_failure_gets_one_answer_and_the_audit_log_the_real_reason(
    dana: UserRecord,
) -> None:
    code = code_at(SECRET, NOW)
    used = decide_login(dana, PASSWORD, code, NOW).totp_step
    locked = replace(dana, locked_until=NOW + timedelta(days=365))
    cases = {
        Refusal.UNKNOWN_USER: decide_login(None, PASSWORD, code, NOW),
        Refusal.NOT_ENROLLED: decide_login(replace(dana, password_hash=""), PASSWORD, code, NOW),
        Refusal.BAD_PASSWORD: decide_login(dana, "wrong", code, NOW),
        # The wrong-code answer does not confirm the password:
        Refusal.BAD_CODE: decide_login(dana, PASSWORD, other_code(code), NOW),
        Refusal.REUSED_CODE: decide_login(replace(dana, last_totp_step=used), PASSWORD, code, NOW),
    }
    for reason, outcome in cases.items():
        assert not outcome.ok and outcome.refusal is reason
        assert outcome.error is LoginError.BAD_CREDENTIALS and outcome.error.status == 401
    # A locked account answers a wrong password or a wrong code exactly the same way...
    for password, attempt in ((PASSWORD, other_code(code)), ("wrong", code)):
        outcome = decide_login(locked, password, attempt, NOW)
        assert outcome.error is LoginError.BAD_CREDENTIALS and outcome.locked
    # ...and says it is locked only to someone holding both factors; the code is not spent.
    both = decide_login(locked, PASSWORD, code, NOW)
    assert both.refusal is Refusal.LOCKED and both.error is LoginError.LOCKED
    assert both.error.status == 423 and both.totp_step is None
    unlocked_later = decide_login(locked, PASSWORD, code, NOW + timedelta(days=366))
    assert not unlocked_later.ok  # that code is stale by then; a fresh one works:
    later = NOW + timedelta(days=366)
    assert decide_login(locked, PASSWORD, code_at(SECRET, later), later).ok


def test_unknown_names_cost_a_full_password_check(
    dana: UserRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert verify_password(None, "anything") is False
    assert verify_password(hash_password("pw-pw-pw-pw"), "pw-pw-pw-pw") is True
    checked: list[str | None] = []

    def verify(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return verify_password(stored, password)

    monkeypatch.setattr(login_module, "verify_password", verify)
    code = code_at(SECRET, NOW)
    decide_login(None, PASSWORD, code, NOW)
    decide_login(replace(dana, password_hash=""), PASSWORD, code, NOW)
    decide_login(replace(dana, locked_until=NOW + timedelta(hours=1)), "wrong", code, NOW)
    assert checked == [None, None, dana.password_hash]  # None: the dummy hash

    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(7):  # alternately, so that the machine's load weighs on both alike
        for user, seconds in zip((dana, None), times, strict=True):
            start = time.perf_counter()
            decide_login(user, "wrong", code, NOW)
            seconds.append(time.perf_counter() - start)
    known, unknown = (statistics.median(seconds) for seconds in times)
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_failures_from_one_address_wait_longer_and_longer() -> None:
    assert [wait_after(n) for n in range(5)] == [0, 0, 0, 0, 0]
    assert [wait_after(n) for n in range(5, 10)] == [30, 60, 120, 240, 480]
    assert wait_after(10) == wait_after(10_000) == 900  # 15 minutes at most

    backoff = Backoff()
    for second in range(5):
        assert backoff.retry_after(float(second)) == 0
        backoff = backoff.failed(float(second))
    assert backoff.failures == 5 and backoff.retry_after(4.0) == 30
    assert backoff.retry_after(20.0) == 14 and backoff.retry_after(34.0) == 0
    backoff = backoff.failed(34.0)
    assert backoff.retry_after(34.0) == 60
    # A day without failures, and the count starts again.
    quiet = 34.0 + FORGET_AFTER
    assert backoff.forgotten(quiet) and backoff.failed(quiet).failures == 1


def test_addresses_are_throttled_by_host() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "?" and address_key("fe80::1%eth0") == "fe80::/64"


def test_the_per_address_rate_limit_counts_failures_only() -> None:
    limiter = RateLimiter(limit=3, window=60)
    assert all(limiter.allows("127.0.0.1") for _ in range(100))  # logins that succeed
    allowed = []
    for _ in range(4):
        allowed.append(limiter.allows("127.0.0.1"))
        limiter.failed("127.0.0.1")
    assert allowed == [True, True, True, False]
    assert limiter.allows("::1")  # another address has its own budget


def test_failures_leave_the_window() -> None:
    limiter = RateLimiter(limit=1, window=0.05)
    limiter.failed("127.0.0.1")
    assert not limiter.allows("127.0.0.1")
    time.sleep(0.06)
    assert limiter.allows("127.0.0.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_address_limit_says_when_and_forgives_successes() -> None:
    clock = Clock()
    limiter = RateLimiter(limit=2, window=300, clock=clock)
    first = limiter.failed("a")
    clock.now += 100
    second = limiter.failed("a")
    assert limiter.retry_after("a") == 200  # when the first failure leaves the window
    limiter.forgive("a", second)  # that attempt succeeded after all
    assert limiter.retry_after("a") == 0
    limiter.forgive("a", first)
    assert limiter.allows("a")


def test_a_pair_throttle_is_per_name_and_address_and_a_success_clears_it() -> None:
    clock = Clock()
    throttle = Throttle(RateLimiter(clock=clock), Backoffs(clock=clock))
    for _ in range(5):
        assert throttle.refusal("dana", "10.0.0.2") is None
        throttle.begin("dana", "10.0.0.2")
    assert throttle.refusal("dana", "10.0.0.2") == (Refusal.THROTTLED, 30)
    # The same name from the owner's own address, and another name from there, may try.
    assert throttle.refusal("dana", "10.0.0.1") is None
    assert throttle.refusal("carl", "10.0.0.2") is None
    clock.now += 30
    assert throttle.refusal("dana", "10.0.0.2") is None
    stamp, _ = throttle.begin("dana", "10.0.0.2")
    throttle.succeeded("dana", "10.0.0.2", stamp)
    assert throttle.backoffs.retry_after("dana", "10.0.0.2") == 0
    # Names spread across one address: the address limit (failures only) stops them.
    for n in range(15):
        throttle.begin(f"name-{n}", "10.0.0.2")
    refused = throttle.refusal("anyone", "10.0.0.2")
    assert refused is not None and refused[0] is Refusal.ADDRESS_THROTTLED
    assert 0 < refused[1] <= 300


def test_pairs_kept_in_memory_are_bounded() -> None:
    backoffs = Backoffs(clock=Clock(), max_tracked=3)
    for n in range(5):
        for _ in range(5):
            backoffs.failed(f"u{n}", "a")
    assert [backoffs.retry_after(f"u{n}", "a") for n in range(5)] == [0, 0, 30, 30, 30]


class Events:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def append(self, event: AuditEvent) -> None:
        self.events.append(event)


def test_logins_answer_alike_for_real_and_unknown_names_and_audit_why(tmp_path: Path) -> None:
    """The whole path on a real store: what the client sees, and what the audit log says."""
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    put_user(engine, "dana", password_hash=hash_password(PASSWORD), totp_secret=SECRET)
    audit = Events()
    clock = Clock()
    logins = Logins(engine, audit, Throttle(RateLimiter(clock=clock), Backoffs(clock=clock)))
    attacker, home = Client("192.0.2.66", "curl"), Client("192.0.2.10", "iamgate")

    async def attempts(
        name: str, client: Client, n: int
    ) -> list[tuple[int, LoginError | None, int | None]]:
        results = []
        for _ in range(n):
            result = await logins.log_in(name, "guess", "000000", client)
            results.append((result.status, result.error, result.retry_after))
        return results

    async def scenario() -> None:
        real = await attempts("dana", attacker, 7)
        unknown = await attempts("nobody", attacker, 7)
        assert real == unknown
        assert real[:5] == [(401, LoginError.BAD_CREDENTIALS, None)] * 5
        assert real[5:] == [(429, LoginError.RATE_LIMITED, 30)] * 2
        # The owner, from home, is not slowed down and logs in.
        code = code_at(SECRET, datetime.now(UTC))
        ok = await logins.log_in("dana", PASSWORD, code, home)
        assert ok.ok and ok.token
        # A reused code answers like a wrong password.
        again = await logins.log_in("dana", PASSWORD, code, home)
        assert (again.status, again.error) == (401, LoginError.BAD_CREDENTIALS)
        # Attempts sent all at once cannot all slip past the throttle while being checked.
        burst = await asyncio.gather(
            *(
                logins.log_in("carl", "guess", "000000", Client("192.0.2.77", None))
                for _ in range(9)
            )
        )
        assert sorted(r.status for r in burst) == [401] * 5 + [429] * 4
        await asyncio.sleep(0.2)  # the failure counter is written after the answer

    asyncio.run(scenario())
    row = get_user(engine, "dana")
    assert row is not None and row.record.failed_logins == 1  # since the success: the reuse
    assert row.record.locked_until is None  # failures never lock

    failed = [e for e in audit.events if e.type is EventType.LOGIN_FAILED]
    reasons = [(e.principal, e.fields["reason"]) for e in failed[:14]]
    assert reasons == (
        [("dana", "bad_password")] * 5
        + [("dana", "throttled")] * 2
        + [("nobody", "unknown_user")] * 5
        + [("nobody", "throttled")] * 2
    )
    assert failed[4].fields["throttled_for"] == 30 and failed[4].fields["failures"] == 5
    assert failed[5].fields["answer"] == "RATE_LIMITED" and failed[5].source_ip == "192.0.2.66"
    assert failed[14].fields["reason"] == "reused_code" and failed[14].principal == "dana"
    succeeded = [e for e in audit.events if e.type is EventType.LOGIN_SUCCEEDED]
    assert [e.principal for e in succeeded] == ["dana"]


def test_an_administrators_lock_answers_like_a_wrong_password(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    put_user(engine, "gina", password_hash=hash_password(PASSWORD), totp_secret=SECRET)
    set_lock(engine, "gina", datetime.now(UTC) + timedelta(days=365))
    audit = Events()
    logins = Logins(engine, audit)
    client = Client("192.0.2.10", None)

    async def scenario() -> None:
        code = code_at(SECRET, datetime.now(UTC))
        wrong_password = await logins.log_in("gina", "guess", code, client)
        unknown = await logins.log_in("nobody", "guess", code, client)
        wrong_code = await logins.log_in("gina", PASSWORD, other_code(code), client)
        assert wrong_password.error is unknown.error is wrong_code.error
        assert wrong_password.status == 401
        both = await logins.log_in("gina", PASSWORD, code, client)
        assert (both.status, both.error) == (423, LoginError.LOCKED)

    asyncio.run(scenario())
    fields = [e.fields for e in audit.events if e.principal == "gina"]
    assert [(f["reason"], f.get("locked")) for f in fields] == [
        ("bad_password", True),
        ("bad_code", True),
        ("locked", True),
    ]


def test_names_no_store_can_hold_are_refused_like_unknown_names(tmp_path: Path) -> None:
    """A lone surrogate, a NUL or an over-long name never reaches the store (PostgreSQL
    refuses NUL, any store refuses a surrogate): one answer, one audit event."""
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    audit = Events()
    logins = Logins(engine, audit, Throttle(RateLimiter(clock=Clock()), Backoffs(clock=Clock())))
    names = ["\udc80dana", "da\x00na", "d" * 65, "nobody"]

    async def scenario() -> list[tuple[int, LoginError | None]]:
        answers = []
        for name in names:
            result = await logins.log_in(name, "guess", "000000", Client("192.0.2.5", None))
            answers.append((result.status, result.error))
        return answers

    assert asyncio.run(scenario()) == [(401, LoginError.BAD_CREDENTIALS)] * 4
    failed = [e for e in audit.events if e.type is EventType.LOGIN_FAILED]
    assert [e.fields["reason"] for e in failed] == ["unknown_user"] * 4


def test_logins_past_the_hashing_queue_are_answered_at_once_with_429(tmp_path: Path) -> None:
    """A flood of logins queues at most `max_waiting` password checks; the rest are told
    when to come back (Retry-After) without a check, and each is audited as `busy`."""
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    put_user(engine, "dana", password_hash=hash_password(PASSWORD), totp_secret=SECRET)
    audit = Events()
    release = threading.Event()
    hashing = HashingPool(workers=1, max_waiting=1)
    logins = Logins(engine, audit, hashing=hashing)

    async def scenario() -> list[LoginResult]:
        # The one hashing thread is held, and one check waits behind it: the queue is full.
        held = asyncio.ensure_future(hashing.run(release.wait))
        waiting = asyncio.ensure_future(hashing.run(lambda: None))
        await asyncio.sleep(0.05)
        code = code_at(SECRET, datetime.now(UTC))
        turned_away = [
            await logins.log_in(name, PASSWORD, code, Client("192.0.2.20", None))
            for name in ("dana", "nobody")
        ]
        release.set()
        await asyncio.gather(held, waiting)
        heard = await logins.log_in("dana", PASSWORD, code, Client("192.0.2.20", None))
        return [*turned_away, heard]

    try:
        dana, nobody, heard = asyncio.run(scenario())
    finally:
        hashing.close()
    for busy in (dana, nobody):
        assert (busy.status, busy.error) == (429, LoginError.BUSY)
        assert busy.retry_after is not None and busy.retry_after >= 1
    assert heard.ok, heard.error  # nothing was counted against dana's name or address
    refused = [e for e in audit.events if e.type is EventType.LOGIN_FAILED]
    assert [(e.principal, e.fields["reason"]) for e in refused] == [
        ("dana", "busy"),
        ("nobody", "busy"),
    ]


def test_password_checks_run_on_low_priority_threads_of_their_own() -> None:
    """The proxy's threads keep the CPU while hashes are computed."""
    hashing = HashingPool(workers=1)

    def where() -> tuple[str, int]:
        me = threading.current_thread()
        return me.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    try:
        name, priority = asyncio.run(hashing.run(where))
    finally:
        hashing.close()
    assert name.startswith("iamgate-hashing")
    assert priority == LOW_PRIORITY
