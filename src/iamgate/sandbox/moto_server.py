"""A moto server as a child process on a free 127.0.0.1 port, stopped with the interpreter
at the latest: the upstream AWS of the sandbox, speaking AWS's real wire protocols.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Servers still running when the interpreter exits (an exception or Ctrl-C that escaped
# every `with`): stopped by `atexit` rather than left behind.
_running: set[MotoServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


class MotoServer:
    """A real moto server child process on a free 127.0.0.1 port."""

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._fixed_port = port
        self.port = port or _free_port()
        self.log_path = log_path
        self.env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start and wait until moto answers HTTP.

        A port picked here can be taken by someone else before moto binds it; moto then
        exits at once, and another free port is tried.
        """
        if self._process is not None:
            raise RuntimeError("moto server already started")
        deadline = time.monotonic() + timeout
        for attempt in range(1 if self._fixed_port else 3):
            if attempt:
                self.port = _free_port()
            try:
                self._spawn()
                ready = self._wait_until_ready(deadline)
            except BaseException:
                self.stop()
                raise
            if ready:
                return
            exited = self._process is not None and self._process.poll() is not None
            self.stop()
            if not exited:
                raise RuntimeError(f"moto server did not answer within {timeout}s{self._hint()}")
        raise RuntimeError(f"moto server exited at start{self._hint()}")

    def _spawn(self) -> None:
        # Nothing of the machine's AWS or moto configuration reaches the server: an
        # inherited MOTO_ACCOUNT_ID alone would put every request in one account.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        # moto's request recorder writes beside its working directory unless told otherwise.
        self._scratch = Path(tempfile.mkdtemp(prefix="iamgate-moto-"))
        env["MOTO_RECORDER_FILEPATH"] = str(self._scratch / "recording.jsonl")
        env.update(self.env)
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        if self.log_path is None:
            self._process = self._popen(command, env, subprocess.DEVNULL)
        else:
            with self.log_path.open("ab") as log:  # the child keeps its own descriptor
                self._process = self._popen(command, env, log)
        _running.add(self)

    @staticmethod
    def _popen(command: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
        # A process group of its own: Ctrl-C in a terminal reaches only the parent, which
        # stops moto in order, and stop() signals moto together with any children.
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_until_ready(self, deadline: float) -> bool:
        """True once moto answers; False if it exited or the deadline passed."""
        assert self._process is not None
        url = f"{self.endpoint_url}/moto-api/config"  # small and constant, unlike data.json
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    response.read()
                    return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        return False

    def _hint(self) -> str:
        return f" (log: {self.log_path})" if self.log_path else " (pass log_path to see why)"

    def stop(self, timeout: float = 5) -> None:
        """Terminate the process group, kill it if it lingers; safe to call twice."""
        process, self._process = self._process, None
        _running.discard(self)
        try:
            self._end(process, timeout)
        finally:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None

    @staticmethod
    def _end(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                process.wait()
        else:
            process.wait()

    def reset(self) -> None:
        """Forget every resource in every account (moto's /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
