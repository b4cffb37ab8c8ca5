"""A new user's first hour with `iamgate demo`: what it prints works in a new shell, a second
demo or a smoke run beside it leaves it alone, and its people keep their passwords."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import BIN, clean_env, free_port

pytestmark = pytest.mark.e2e

READY = "Ctrl-C stops the demo."
PERSON = re.compile(r"^  (admin|dana|carl) +(\S+) +([A-Z2-7]{32})$")


@dataclass
class RunningDemo:
    """`iamgate demo` as `make demo` runs it, in its own directory and on its own port."""

    directory: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)

    def start(self, timeout: float = 300) -> str:
        self.lines = []
        self.process = subprocess.Popen(
            [str(BIN / "iamgate"), "demo", "--port", str(self.port), "--dir", str(self.directory)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(READY in line for line in self.lines):
                return "".join(self.lines)
            if self.process.poll() is not None:
                reader.join(5)
                raise AssertionError("the demo exited:\n" + "".join(self.lines))
            time.sleep(0.2)
        raise AssertionError("the demo did not get ready:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self) -> None:
        """Ctrl-C, as a person stops it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def people_of(printed: str) -> dict[str, tuple[str, str]]:
    return {
        m.group(1): (m.group(2), m.group(3))
        for m in (PERSON.match(line) for line in printed.splitlines())
        if m
    }


def printed_commands(printed: str) -> list[tuple[str, bool]]:
    """Each `  $ command`, and whether the line after it says it is refused."""
    lines = printed.splitlines()
    return [
        (line[len("  $ ") :], not (i + 1 < len(lines) and lines[i + 1].endswith("(refused)")))
        for i, line in enumerate(lines)
        if line.startswith("  $ ")
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningDemo, str]]:
    tmp = tmp_path_factory.mktemp("demo")
    running = RunningDemo(tmp / "demo", clean_env(tmp))
    try:
        printed = running.start()
        yield running, printed
    finally:
        running.stop()


def new_shell(home: Path) -> dict[str, str]:
    """A new terminal with nothing of iamgate's: no venv on PATH, no AWS variables."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


def test_every_printed_command_works_in_a_new_shell(
    demo: tuple[RunningDemo, str], tmp_path: Path
) -> None:
    running, printed = demo
    commands = printed_commands(printed)
    ready, *rest = commands
    assert ready[0].startswith("source ")
    people = people_of(printed)
    assert set(people) == {"admin", "dana", "carl"}
    # every story is in what a person is told to type
    text = "\n".join(c for c, _ in rest)
    assert "rds delete-db-instance" in text and "--count 1000" in text  # stories 1 and 2
    assert "sessions revoke --user carl" in text  # story 3
    assert "--account customer-globex" in text  # story 4
    assert "ci-job aws" in text  # the CI job's story
    env = new_shell(tmp_path)
    outputs = []
    for command, works in rest:
        given = None
        login = re.search(r"^iamgate login \S+ --user (\w+)$", command)
        if login:
            code = subprocess.run(
                ["bash", "-c", f"{ready[0]} && demo-code {login.group(1)}"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert re.fullmatch(r"\d{6}", code), code
            given = f"{people[login.group(1)][0]}\n{code}\n"
        done = subprocess.run(
            ["bash", "-c", f"{ready[0]} && {command}"],
            env=env,
            input=given,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            start_new_session=True,  # no terminal: the password prompt reads standard input
        )
        out = done.stdout + done.stderr
        assert "ModuleNotFoundError" not in out and "command not found" not in out, command
        assert (done.returncode == 0) == works, f"$ {command}\n{out}"
        outputs.append((command, out))
    by_command = dict(outputs)  # the last output of a command run twice
    assert "assumed-role/ReadOnly/dana" in outputs[0][1]
    ls = next(out for c, out in outputs if c == "iamgate ls")
    assert "acme-prod" in ls and "customer-globex" not in ls  # story 4: only roles meant for it
    carls = [out for c, out in outputs if "iamgate-customer-globex-ReadOnly s3 ls" in c]
    assert "customer-globex-data" in carls[0]
    assert "iamgate revoked it" in carls[1]  # story 3: revoked means his next call fails
    assert "revoked 1 session of carl" in next(o for c, o in by_command.items() if "revoke" in c)
    # the CI job: its token exchanged at the gateway, 10 instances and not 1000, its run's
    # calls in the audit trail
    job = [out for c, out in outputs if c.startswith("ci-job aws")]
    assert "assumed-role/CIRunner/bot=ci-deploy" in job[0]
    assert len(json.loads(job[1])) == 10
    assert "MaxCount=1000 is above the limit of 10" in job[2]
    trail = next(out for c, out in outputs if "audit search --claim run_id=" in c)
    assert "bot:ci-deploy" in trail and "binding infra-main" in trail
    # login and profiles sync used the AWS config file the demo exports
    synced = (running.directory / "aws-config").read_text()
    assert "[profile iamgate-customer-globex-ReadOnly]" in synced
    assert "[profile dana-prod]" in synced
    assert not (tmp_path / ".aws").exists() and not (tmp_path / ".iamgate").exists()


PRINTED_VARIABLE = re.compile(r"^  export (AWS_[A-Z_]+)=(\S+)$")


def test_the_four_printed_variables_are_all_a_job_needs(
    demo: tuple[RunningDemo, str], tmp_path: Path
) -> None:
    """As a GitHub Actions job: no AWS config, no key, no iamgate; the aws CLI alone."""
    _, printed = demo
    variables = {
        m.group(1): shlex.split(m.group(2))[0]
        for m in (PRINTED_VARIABLE.match(line) for line in printed.splitlines())
        if m
    }
    assert set(variables) == {
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
    }
    assert variables["AWS_ROLE_ARN"] == "arn:aws:iam::222222222222:role/CIRunner"
    done = subprocess.run(
        [str(BIN / "aws"), "sts", "get-caller-identity", "--query", "Arn", "--output", "text"],
        env=new_shell(tmp_path) | variables,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "arn:aws:sts::222222222222:assumed-role/CIRunner/bot=ci-deploy"


def _state(directory: Path) -> dict[str, bytes]:
    names = ("config.yaml", "aws-config", "people.json", "env.sh")
    return {name: (directory / name).read_bytes() for name in names}


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as response:
        return bool(response.status == 200)


def test_a_second_demo_in_the_same_directory_is_refused(
    demo: tuple[RunningDemo, str], tmp_path: Path
) -> None:
    running, _ = demo
    before = _state(running.directory)
    done = subprocess.run(
        [str(BIN / "iamgate"), "demo", "--port", str(free_port()), "--dir", str(running.directory)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"another iamgate demo is running from {running.directory}" in done.stderr
    assert f"pid {running.process.pid if running.process else ''}" in done.stderr
    elsewhere = subprocess.run(
        [str(BIN / "iamgate"), "demo", "--port", str(running.port), "--dir", str(tmp_path / "d")],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert elsewhere.returncode == 2, elsewhere.stdout + elsewhere.stderr
    assert f"127.0.0.1:{running.port} is in use" in elsewhere.stderr
    assert _state(running.directory) == before
    assert _healthy(running.url)


def test_smoke_beside_a_running_demo_leaves_it_alone(
    demo: tuple[RunningDemo, str], tmp_path: Path
) -> None:
    running, _ = demo
    before = _state(running.directory)
    done = subprocess.run(
        [
            str(BIN / "iamgate"),
            "demo",
            "--smoke",
            "--port",
            str(running.port),
            "--dir",
            str(running.directory),
        ],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leaving it alone, this smoke run uses" in done.stdout
    assert "demo: 18 of 18 commands behaved as designed" in done.stdout
    assert _state(running.directory) == before
    assert running.process is not None and running.process.poll() is None
    assert _healthy(running.url)


def test_people_keep_their_passwords_across_a_restart(tmp_path: Path) -> None:
    running = RunningDemo(tmp_path / "demo", clean_env(tmp_path))
    try:
        first = running.start()
        assert "new at this start: admin, dana, carl" in first
        running.stop()
        second = running.start()
        assert people_of(second) == people_of(first)
        assert "(the same as at the last start)" in second
        running.stop()
        # an administrator gave dana another password meanwhile: the demo says so
        reset = subprocess.run(
            [
                *(str(BIN / "iamgate"), "users", "reset", "dana", "--password-stdin"),
                *("--config", str(running.directory / "config.yaml")),
            ],
            env=clean_env(tmp_path),
            input="another-password-of-dana\n",
            capture_output=True,
            text=True,
            check=False,
        )
        assert reset.returncode == 0, reset.stdout + reset.stderr
        third = running.start()
    finally:
        running.stop()
    assert "new at this start: dana; the others are as before" in third
    assert people_of(third)["carl"] == people_of(first)["carl"]
    assert people_of(third)["dana"] != people_of(first)["dana"]
