"""Where password hashes are computed: a few low-priority threads, and a bounded queue.

An argon2id check costs ~0.2 s of CPU on several cores (the hash's lanes are threads), and
a login is the one thing anyone may send without credentials. Run on the event loop's
default executor, sixteen logins at once took every core from the proxy for seconds. So
the checks get their own threads, as many as half the cores, at a low CPU priority
(the hash's lane threads inherit it), and at most `max_waiting` may queue: past that a
login is answered at once with 429 and the seconds after which it would be heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

LOW_PRIORITY = 10  # nice(1)'s: a tenth of a default thread's share when both want the CPU
MAX_WAITING = 64
FIRST_GUESS_SECONDS = 0.25  # one check, until one has been timed


class HashingBusy(Exception):
    """Too many checks queued; `retry_after` is when this one could start, in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"{retry_after} s")
        self.retry_after = retry_after


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) // 2)


def _lower_priority() -> None:
    """Linux schedules each thread on its own: this one, and the lanes it starts, yield
    the CPU to the proxy's threads."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)


class HashingPool:
    def __init__(self, workers: int | None = None, max_waiting: int = MAX_WAITING):
        self.workers = workers or default_workers()
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(
            self.workers, thread_name_prefix="iamgate-hashing", initializer=_lower_priority
        )
        self._queued = 0  # started or waiting; only touched on the event loop
        self._seconds = FIRST_GUESS_SECONDS  # a moving average of one check's time

    def check_room(self) -> None:
        """HashingBusy if too many checks wait already: ask before starting a login's work,
        so that a login turned away has cost nothing. A few logins may pass between the
        question and `run`; the bound is approximate by that many."""
        if self._queued >= self.workers + self.max_waiting:
            ahead = self._queued - self.workers + 1
            raise HashingBusy(max(1, math.ceil(ahead * self._seconds / self.workers)))

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`work(*args, **kwargs)` on a hashing thread, after the checks queued before it."""
        self._queued += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._timed, work, args, kwargs)
        finally:
            self._queued -= 1

    def _timed(
        self, work: Callable[..., T], args: tuple[object, ...], kwargs: dict[str, object]
    ) -> T:
        started = time.monotonic()
        try:
            return work(*args, **kwargs)
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
