"""The fast path of `iamgate credentials`: serve a cached credential with the standard library.

The AWS CLI runs `credential_process` before every command, so a credential that is still
cached must cost little more than starting Python. This module is checked before click,
rich, pydantic or botocore are imported, and it imports nothing but the standard library.
Anything it is not sure of (another command, an option it does not know, no session, no
cache, a credential within five minutes of expiry) falls through to the full command.

Set IAMGATE_NO_FAST_PATH=1 to always take the full command (the benchmark compares both).
"""

from __future__ import annotations

import os
import sys
import time

REFRESH_BEFORE_SECONDS = 5 * 60
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def home_dir() -> str:
    """~/.iamgate, or IAMGATE_HOME (pathlib is left out: it costs milliseconds to import)."""
    return os.environ.get("IAMGATE_HOME") or os.path.join(os.path.expanduser("~"), ".iamgate")


def cache_file(account: str, role: str) -> str:
    return os.path.join(home_dir(), "cache", f"{account}__{role}.json")


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def epoch_seconds(stamp: str) -> int:
    """`YYYY-MM-DDTHH:MM:SSZ` (UTC) as seconds since the epoch; ValueError otherwise.

    Written out because time.strptime and calendar import half the standard library."""
    if (
        len(stamp) != 20
        or stamp[4] + stamp[7] + stamp[10] + stamp[13] + stamp[16] + stamp[19] != "--T::Z"
    ):
        raise ValueError(f"not a UTC time stamp: {stamp!r}")
    year, month, day = int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10])
    hour, minute, second = int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not a UTC time stamp: {stamp!r}")
    return ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second


def seconds_left(stamp: str, now: float | None = None) -> float:
    """Seconds from now until `stamp` (YYYY-MM-DDTHH:MM:SSZ, UTC)."""
    return epoch_seconds(stamp) - (time.time() if now is None else now)


def _account_and_role(argv: list[str]) -> tuple[str, str] | None:
    """ACCOUNT and ROLE of exactly `credentials --account A --role R` (either order, `=` or
    not); None for anything else."""
    if not argv or argv[0] != "credentials":
        return None
    found: dict[str, str] = {}
    rest = argv[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        name, eq, value = arg.partition("=")
        if name not in ("--account", "--role") or name in found:
            return None
        if not eq:
            if i + 1 >= len(rest):
                return None
            value = rest[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None
        found[name] = value
        i += 1
    if set(found) != {"--account", "--role"}:
        return None
    return found["--account"], found["--role"]


def cached_credentials(argv: list[str]) -> str | None:
    """The cached credential_process JSON for this command line, if it may be served as is."""
    if os.environ.get("IAMGATE_NO_FAST_PATH"):
        return None
    target = _account_and_role(argv)
    if target is None:
        return None
    try:
        if not os.path.isfile(os.path.join(home_dir(), "session.json")):
            return None
        with open(cache_file(*target), encoding="utf-8") as f:
            text = f.read().strip()
        expiration = _expiration(text)
        if expiration is None or seconds_left(expiration) <= REFRESH_BEFORE_SECONDS:
            return None
    except (OSError, ValueError):
        return None
    return text


def _expiration(text: str) -> str | None:
    """The Expiration of a cache file iamgate wrote (`json.dump` of the gateway's answer).

    Read first without the json module, whose import (with re) costs more than the rest of
    this path; a file in any other layout is parsed with json."""
    key = '"Expiration": "'
    start = text.find(key)
    if (
        text.startswith('{"Version": 1,')
        and text.endswith("}")
        and "\n" not in text
        and start >= 0
        and text.find(key, start + 1) < 0
        and text[start + len(key) + 20 : start + len(key) + 21] == '"'
    ):
        return text[start + len(key) : start + len(key) + 20]
    import json

    creds = json.loads(text)
    if not isinstance(creds, dict) or creds.get("Version") != 1:
        return None
    expiration = creds.get("Expiration")
    return expiration if isinstance(expiration, str) else None


def serve_cached(argv: list[str]) -> bool:
    """Print the cached credential and return True, or return False to run the full CLI."""
    out = cached_credentials(argv)
    if out is None:
        return False
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return True
