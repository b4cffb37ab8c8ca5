"""`iamgate serve --workers N`: N gateways on one port, one process each, so every core serves.

A gateway is one Python process, and its event loop is its ceiling: one core. Workers are
the way past it that changes nothing in the gateway. Each is a whole gateway, as a replica
behind a load balancer is (its own event loop, audit writer process and audit chain,
directory poll and upstream connections), on one shared store; the kernel spreads the
connections over them (SO_REUSEPORT). A credential verifies on any worker (the keys are in
the store), a revocation reaches every worker on its next poll, and each worker's audit
chain verifies on its own, as replicas' do. What is per replica is per worker too: the
per-caller shares of calls in flight and the login throttles.

What replicas starting together would race for on a first start (the schema, the first
server key) is done once, here, before the workers are forked. The supervisor then only
forwards signals: SIGTERM or SIGINT (Ctrl-C; the workers have a process group of their own,
so the terminal's signal reaches the supervisor alone) as one SIGTERM to each worker, which
stores its audit log and exits; SIGHUP to each, which reloads its configuration. If a worker
exits on its own, the supervisor stops the others and exits with that worker's status, so
that whatever supervises it (systemd, a container runtime) restarts the whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from iamgate.config import Config
from iamgate.store.database import load_keyring, open_engine
from iamgate.store.users import sync_bootstrap_users

log = logging.getLogger(__name__)
_STOPS = (signal.SIGTERM, signal.SIGINT)
_FORWARDED = (*_STOPS, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def prepare_store(config: Config) -> None:
    """The schema migrated, the first server key made and the configured users stored, once,
    before N workers start on the store together."""
    engine = open_engine(config.storage.url)
    try:
        load_keyring(engine)
        sync_bootstrap_users(engine, config.users)
    finally:
        engine.dispose()


def supervise(workers: int, serve: Callable[[], None]) -> int:
    """Fork `workers` processes that each run `serve` (a whole gateway) until stopped; the
    exit status: 0 when stopped by a signal and every worker stored its log and exited."""
    supervisor = Supervisor()
    signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)  # no signal between fork and setup
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                _run_worker(serve, os.getppid())
            supervisor.alive.add(pid)
        for signum in _FORWARDED:
            signal.signal(signum, supervisor.forward)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    log.info("iamgate: %d workers, pids %s", workers, sorted(supervisor.alive))
    return supervisor.wait()


class Supervisor:
    def __init__(self) -> None:
        self.alive: set[int] = set()
        self.stopping = False
        self.status = 0

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._send(signal.SIGHUP)
        elif not self.stopping:  # one stop per worker: a second would be a second Ctrl-C
            self.stopping = True
            self._send(signal.SIGTERM)

    def _send(self, signum: int) -> None:
        for pid in self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def wait(self) -> int:
        while self.alive:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in self.alive:
                continue
            self.alive.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if not self.stopping:
                log.error("iamgate: worker %d exited (%d); stopping the others", pid, code)
                print(
                    f"iamgate: worker {pid} exited ({code}); stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                self.stopping = True
                self._send(signal.SIGTERM)
                self.status = code or 1
            elif code != 0 and self.status == 0:
                self.status = code
        return self.status


def _run_worker(serve: Callable[[], None], supervisor: int) -> None:
    """In the forked child: a gateway until stopped, then exit (never back to the caller)."""
    code = 1
    try:
        os.setpgid(0, 0)  # the terminal's Ctrl-C goes to the supervisor, which forwards one stop
        for signum in _FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        _stop_with(supervisor)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        serve()
        code = 0
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        log.exception("iamgate worker %d failed", os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _stop_with(supervisor: int) -> None:
    """Linux: a SIGTERM when the supervisor dies (even by SIGKILL), so that no worker serves
    on without it; elsewhere workers outlive a killed supervisor."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before prctl took effect
        os._exit(0)
