"""Login decisions: factors, single-use codes, lockout after five failures."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from iamgate.identity.login import LOCKOUT, LoginError, UserRecord, decide_login
from iamgate.identity.passwords import hash_password, verify_password
from iamgate.identity.totp import code_at, matching_step, new_totp_secret

NOW = datetime(2026, 11, 24, 12, 0, 10, tzinfo=UTC)
SECRET = new_totp_secret()


@pytest.fixture(scope="module")
def dana() -> UserRecord:
    return UserRecord("dana", hash_password("correct horse"), SECRET, 0, None, None)


def test_both_factors_log_in(dana: UserRecord) -> None:
    outcome = decide_login(dana, "correct horse", code_at(SECRET, NOW), NOW)
    assert outcome.ok and outcome.failed_logins == 0 and outcome.totp_step is not None


def test_clock_drift_of_one_step_either_way(dana: UserRecord) -> None:
    for drift in (-30, 30):
        assert decide_login(
            dana, "correct horse", code_at(SECRET, NOW + timedelta(seconds=drift)), NOW
        ).ok
    assert matching_step(SECRET, code_at(SECRET, NOW + timedelta(seconds=90)), NOW) is None


def test_each_error(dana: UserRecord) -> None:
    code = code_at(SECRET, NOW)
    assert decide_login(None, "x", code, NOW).error is LoginError.BAD_CREDENTIALS
    assert decide_login(dana, "wrong", code, NOW).error is LoginError.BAD_CREDENTIALS
    assert (
        decide_login(dana, "correct horse", "123456" if code != "123456" else "654321", NOW).error
        is LoginError.BAD_CODE
    )
    used = decide_login(dana, "correct horse", code, NOW)
    again = decide_login(replace(dana, last_totp_step=used.totp_step), "correct horse", code, NOW)
    assert again.error is LoginError.REUSED_CODE


def test_the_fifth_failure_locks_for_thirty_minutes(dana: UserRecord) -> None:
    user = dana
    for attempt in range(1, 6):
        outcome = decide_login(user, "wrong", "000000", NOW)
        assert outcome.failed_logins == attempt
        user = replace(user, failed_logins=outcome.failed_logins, locked_until=outcome.locked_until)
    assert user.locked_until == NOW + LOCKOUT
    sixth = decide_login(user, "correct horse", code_at(SECRET, NOW), NOW)
    assert sixth.error is LoginError.LOCKED
    later = decide_login(
        user, "correct horse", code_at(SECRET, NOW + LOCKOUT), NOW + LOCKOUT + timedelta(seconds=1)
    )
    assert later.ok


def test_unknown_users_cost_a_full_password_check() -> None:
    assert verify_password(None, "anything") is False
    assert verify_password(hash_password("pw-pw-pw-pw"), "pw-pw-pw-pw") is True


def test_the_per_address_rate_limit_counts_failures_only() -> None:
    from iamgate.web.logins import RateLimiter

    limiter = RateLimiter(limit=3, window=60)
    assert all(limiter.allows("127.0.0.1") for _ in range(100))  # logins that succeed
    allowed = []
    for _ in range(4):
        allowed.append(limiter.allows("127.0.0.1"))
        limiter.failed("127.0.0.1")
    assert allowed == [True, True, True, False]
    assert limiter.allows("::1")  # another address has its own budget


def test_failures_leave_the_window() -> None:
    from iamgate.web.logins import RateLimiter

    limiter = RateLimiter(limit=1, window=0.05)
    limiter.failed("127.0.0.1")
    assert not limiter.allows("127.0.0.1")
    time.sleep(0.06)
    assert limiter.allows("127.0.0.1")
