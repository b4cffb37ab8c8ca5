"""People as the tests drive them: enrolled by an admin, logging in with password and TOTP."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness import BIN, GatewayProcess, clean_env

from iamgate.identity.totp import code_at

PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    name: str
    secret: str
    env: dict[str, str]
    last_step: int = 0

    def peek(self) -> str:
        """The next code, for an attempt refused before codes are checked."""
        step = max(int(time.time()) // 30, self.last_step + 1)
        return code_at(self.secret, datetime.fromtimestamp(step * 30, UTC))

    def code(self) -> str:
        """A code for a step not used yet: now, or the next one (accepted as ±1 step)."""
        step = int(time.time()) // 30
        if step <= self.last_step:
            step = self.last_step + 1
            if step > int(time.time()) // 30 + 1:
                time.sleep(30)
                return self.code()
        self.last_step = step
        return code_at(self.secret, datetime.fromtimestamp(step * 30, UTC))


def iamgate(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iamgate"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def enrol(gateway: GatewayProcess, tmp_path: Path, name: str, roles: str = "") -> Person:
    env = clean_env(tmp_path)
    env["IAMGATE_HOME"] = str(tmp_path / f"home-{name}")
    args = ["users", "add", name, "--config", str(gateway.config_path), "--password-stdin"]
    if roles:
        args += ["--roles", roles]
    added = iamgate(env, *args, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    secret = re.search(r"TOTP secret for \S+: ([A-Z2-7]+)", added.stdout)
    assert secret and "otpauth://totp/" in added.stdout
    return Person(name, secret.group(1), env)


def login(
    gateway: GatewayProcess, person: Person, password: str = PASSWORD, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    return iamgate(
        person.env,
        "login",
        gateway.url,
        "--user",
        person.name,
        "--password-stdin",
        "--otp",
        code or person.code(),
        stdin=password + "\n",
    )
