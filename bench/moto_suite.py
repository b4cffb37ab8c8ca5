"""Fidelity: moto's own test modules, directly against moto and through an iamgate gateway.

    .venv/bin/python bench/moto_suite.py [--services sts,sqs,...] [--out moto-suite-report]
                                         [--workers 2] [--service-timeout 2400]

moto's tests (those of the installed moto version, fetched once into a cache: the sdist
from PyPI, else a shallow clone of github.com/getmoto/moto at that tag; nothing of it is
kept in this repository) run in moto's server mode, as moto's CI runs them:
`TEST_SERVER_MODE=true`, every boto3 client pointed at `TEST_SERVER_MODE_ENDPOINT`.

- direct: the endpoint is a moto server;
- gateway: the endpoint is `iamgate serve` in front of another moto server. The tests hold
  credentials issued by that gateway for a role that may do everything in account
  123456789012 (moto's default account, which the tests expect), so only fidelity is
  measured, not policy. moto's control calls (`/moto-api/reset` and the like), which a
  gateway refuses by design, go to moto directly (bench/moto_suite_plugin.py).

The two runs go side by side (one pytest process each, one service after another). The
services whose tests moto's CI runs in parallel without resets (ec2, sqs, awslambda) run
the same way here, with `--workers` pytest-xdist workers. Tests that need Docker are
skipped in both runs unless a Docker daemon answers. The report (`report.md`,
`report.json` in `--out`) gives per service passed/failed/errors/skipped for both runs and
every test that passes directly but not through the gateway, grouped by its error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from iamgate.access.minting import ISSUES_CREDENTIALS
from iamgate.identity.credentials import mint_credentials
from iamgate.sandbox import MotoServer
from iamgate.store.database import load_keyring, open_engine

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
SERVICES = ("sts", "sqs", "kms", "logs", "sns", "iam", "awslambda", "dynamodb", "rds", "s3", "ec2")
# What moto's Makefile runs with `pytest -n` and MOTO_CALL_RESET_API=false in server mode.
PARALLEL = {"ec2", "sqs", "awslambda"}
ACCOUNT = "123456789012"  # moto's default account: the one its tests assert on
ROLE = "Admin"
PRINCIPAL = "moto-suite"
# Plugins moto's test suite needs beyond what iamgate's environment holds; installed into
# the cache with --target, never into the environment itself.
PIP = (sys.executable, "-m", "pip")
MOTO_GIT = "https://github.com/getmoto/moto.git"
TEST_DEPS = ("freezegun", "pytest-xdist", "execnet", "pytest-timeout")


def say(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", flush=True)


# -- moto's tests ----------------------------------------------------------------------


def fetch_tests(version: str, cache: Path) -> Path:
    """A directory holding moto's `tests/` package for `version` (fetched once)."""
    root = cache / f"moto-{version}"
    if (root / "tests" / "__init__.py").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        if not _tests_from_sdist(version, Path(scratch), root):
            _tests_from_git(version, Path(scratch), root)
    return root


def _tests_from_sdist(version: str, scratch: Path, root: Path) -> bool:
    say(f"fetching moto {version}'s sdist from PyPI for its tests/")
    spec = f"moto=={version}"
    done = subprocess.run(
        [*PIP, "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(scratch), spec],
        check=False,
    )
    tarballs = list(scratch.glob("moto-*.tar.gz"))
    if done.returncode or not tarballs:
        return False
    prefix = f"moto-{version}/tests/"
    with tarfile.open(tarballs[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            return False
        # Only tests/: the sdist's own moto/ must not shadow the installed moto.
        tar.extractall(scratch, members=members, filter="data")
    shutil.move(str(scratch / f"moto-{version}"), root)
    return True


def _tests_from_git(version: str, scratch: Path, root: Path) -> None:
    say(f"no tests/ in the sdist: cloning github.com/getmoto/moto at {version}")
    clone = scratch / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", "--branch", version, MOTO_GIT, str(clone)],
        check=True,
    )
    root.mkdir()
    shutil.move(str(clone / "tests"), root / "tests")


def ensure_test_deps(cache: Path) -> Path:
    target = cache / "deps"
    if not (target / "xdist").exists():
        say(f"installing {', '.join(TEST_DEPS)} into {target}")
        subprocess.run(
            [*PIP, "install", "-q", "--no-deps", "--target", str(target), *TEST_DEPS],
            check=True,
        )
    return target


def docker_answers() -> bool:
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# -- the gateway -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_config(upstream: str, port: int, directory: Path) -> dict[str, Any]:
    return {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"url": f"sqlite:///{directory / 'state.db'}"},
        "aws": {
            "upstream": {"endpoint_url": upstream},
            "accounts": [{"name": "moto-default", "id": ACCOUNT}],
        },
        # Everything allowed: the run measures what the gateway passes on, not policy.
        "roles": [
            {
                "name": "everything",
                "allow": {
                    "accounts": {"name": ["moto-default"]},
                    "aws_roles": [ROLE],
                    # `*`, and by name what a wildcard never allows (keys, passwords);
                    # STS's own minting stays refused whatever a role says.
                    "actions": ["*", *sorted(ISSUES_CREDENTIALS)],
                },
                "max_session_ttl": "12h",
            }
        ],
        "users": [{"name": PRINCIPAL, "roles": ["everything"]}],
    }


@dataclass
class Gateway:
    upstream: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "config.yaml"
        config.write_text(yaml.safe_dump(gateway_config(self.upstream, self.port, self.directory)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        # The gateway's own principal: moto takes any key (it places an unknown one in
        # ACCOUNT) and lets it assume any role.
        env.update(
            AWS_ACCESS_KEY_ID="AKIAMOTOSUITEGATEWAY",
            AWS_SECRET_ACCESS_KEY="moto-suite-gateway-secret",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        with (self.directory / "gateway.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "iamgate"), "serve", "--config", str(config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: see {self.directory / 'gateway.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError("gateway did not become ready")

    def credentials(self, ttl: timedelta = timedelta(hours=12)) -> dict[str, str]:
        engine = open_engine(f"sqlite:///{self.directory / 'state.db'}")
        creds = mint_credentials(
            load_keyring(engine),
            principal=PRINCIPAL,
            kind="user",
            account_id=ACCOUNT,
            aws_role=ROLE,
            gateway_roles=(),
            now=datetime.now(UTC),
            ttl=ttl,
        )
        engine.dispose()
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
            "AWS_SESSION_TOKEN": creds.session_token,
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    tests: Path
    deps: Path
    out: Path
    workers: int
    test_timeout: int
    service_timeout: int
    docker: bool
    select: str | None


@dataclass
class ServiceRun:
    mode: str
    service: str
    wall_seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # nodeid -> (what, msg)
    rerun: dict[str, tuple[str, str]] = field(default_factory=dict)  # lost ones, run again


@contextmanager
def endpoint(mode: str, settings: Settings) -> Iterator[tuple[str, dict[str, str]]]:
    """The TEST_SERVER_MODE_ENDPOINT of a mode and what its tests' environment adds."""
    log = settings.out / mode / "moto.log"
    with MotoServer(log_path=log) as moto:
        if mode == "direct":
            yield moto.endpoint_url, {}
            return
        gateway = Gateway(moto.endpoint_url, settings.out / mode / "gateway")
        try:
            gateway.start()
            extra = {"MOTO_SUITE_MOTO_URL": moto.endpoint_url, **gateway.credentials()}
            yield gateway.url, extra
        finally:
            gateway.stop()


class Runs:
    """What both runs have done so far; the gateway run waits for the direct one to know
    which of its failures to try again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by: dict[tuple[str, str], ServiceRun] = {}
        self.direct_done = threading.Event()

    def add(self, run: ServiceRun) -> None:
        with self.lock:
            self.by[run.mode, run.service] = run


def lost_tests(direct: ServiceRun, through: ServiceRun, outcomes: str = "outcomes") -> list[str]:
    """Tests that pass directly and fail or err through the gateway."""
    theirs: dict[str, tuple[str, str]] = getattr(through, outcomes)
    return [
        nodeid
        for nodeid, (what, _) in sorted(direct.outcomes.items())
        if what == "passed" and theirs.get(nodeid, ("",))[0] in ("failed", "error")
    ]


def run_mode(mode: str, services: list[str], settings: Settings, runs: Runs) -> None:
    (settings.out / mode).mkdir(parents=True, exist_ok=True)
    try:
        with endpoint(mode, settings) as (url, extra):
            say(f"{mode}: tests go to {url}")
            for service in services:
                run = run_service(mode, service, url, extra, settings)
                runs.add(run)
                counts = Counter(what for what, _ in run.outcomes.values())
                say(
                    f"{mode} {service}: {dict(counts)} in {run.wall_seconds:.0f} s"
                    + (" (timed out)" if run.timed_out else "")
                )
            if mode == "gateway":
                rerun_lost(services, url, extra, settings, runs)
    finally:
        if mode == "direct":
            runs.direct_done.set()


def rerun_lost(
    services: list[str], url: str, extra: dict[str, str], settings: Settings, runs: Runs
) -> None:
    """Each test lost through the gateway once more, alone with moto's reset before it:
    moto's parallel suites share names (a queue called `test-queue`) across tests that
    race without resets, and a loss that does not repeat is not the gateway's."""
    runs.direct_done.wait()
    for service in services:
        direct, through = runs.by.get(("direct", service)), runs.by.get(("gateway", service))
        if direct is None or through is None:
            continue
        lost = lost_tests(direct, through)
        if lost:
            through.rerun = rerun(service, lost, url, extra, settings)
            passed = sum(1 for what, _ in through.rerun.values() if what == "passed")
            say(f"gateway {service}: {passed} of {len(lost)} lost tests pass when run again")


def rerun(
    service: str, nodeids: list[str], url: str, extra: dict[str, str], settings: Settings
) -> dict[str, tuple[str, str]]:
    """`nodeids` in one pytest process; a test that hangs it (a timeout that lands inside
    a lock) is recorded as hung and the rest go on in a new process."""
    (settings.out / "gateway" / f"{service}.rerun.jsonl").unlink(missing_ok=True)
    outcomes: dict[str, tuple[str, str]] = {}
    remaining = list(nodeids)
    while remaining:
        wall = settings.test_timeout + 60 + 15 * len(remaining)
        run = run_service("gateway", service, url, extra, settings, remaining, wall)
        outcomes.update(run.outcomes)
        stuck = next((n for n in remaining if n not in run.outcomes), None)
        if not run.timed_out or stuck is None:
            break
        outcomes[stuck] = ("failed", f"hung: the test process was stopped after {wall} s")
        remaining = [n for n in remaining if n not in outcomes]
    return outcomes


def test_env(url: str, extra: dict[str, str], parallel: bool, settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "TEST_"))}
    env.update(
        TEST_SERVER_MODE="true",
        TEST_SERVER_MODE_ENDPOINT=url,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=os.pathsep.join([str(settings.deps), str(HERE)]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if not settings.docker:
        env["TESTS_SKIP_REQUIRES_DOCKER"] = "true"
    if parallel:
        env["MOTO_CALL_RESET_API"] = "false"
    env.update(extra)
    return env


def run_service(
    mode: str,
    service: str,
    url: str,
    extra: dict[str, str],
    settings: Settings,
    nodeids: list[str] | None = None,
    wall: int | None = None,
) -> ServiceRun:
    """The service's test modules, or just `nodeids`, one after another with resets."""
    name = f"{service}.rerun" if nodeids else service
    results = settings.out / mode / f"{name}.jsonl"
    if nodeids is None:
        results.unlink(missing_ok=True)  # a rerun adds to what its earlier rounds wrote
    parallel = service in PARALLEL and nodeids is None
    env = test_env(url, extra, parallel, settings)
    env["MOTO_SUITE_RESULTS"] = str(results)
    command = [sys.executable, "-m", "pytest", *(nodeids or [f"tests/test_{service}"])]
    command += ["-q", "-p", "moto_suite_plugin", "-p", "no:cacheprovider", "-o", "addopts="]
    command += [f"--timeout={settings.test_timeout}", "-W", "ignore"]
    if parallel and settings.workers > 1:
        command += ["-n", str(settings.workers)]
    if settings.select and nodeids is None:
        command += ["-k", settings.select]
    run = ServiceRun(mode, service)
    started = time.monotonic()
    with (settings.out / mode / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=settings.tests,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            run.returncode = process.wait(timeout=wall or settings.service_timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    run.wall_seconds = time.monotonic() - started
    run.outcomes = read_outcomes(results)
    meta = {"wall_seconds": run.wall_seconds, "timed_out": run.timed_out}
    results.with_suffix(".meta.json").write_text(json.dumps(meta))
    return run


def load_runs(out: Path, services: list[str], modes: list[str]) -> list[ServiceRun]:
    """The runs recorded in `out` (for --report-only: a new report from an old run)."""
    runs = []
    for mode in modes:
        for service in services:
            results = out / mode / f"{service}.jsonl"
            if not results.exists():
                continue
            run = ServiceRun(mode, service, outcomes=read_outcomes(results))
            run.rerun = read_outcomes(out / mode / f"{service}.rerun.jsonl")
            meta = results.with_suffix(".meta.json")
            if meta.exists():
                recorded = json.loads(meta.read_text())
                run.wall_seconds, run.timed_out = recorded["wall_seconds"], recorded["timed_out"]
            runs.append(run)
    return runs


def read_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """nodeid -> (passed|failed|error|skipped, message), from the plugin's phase lines."""
    outcomes: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return outcomes
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        nodeid, when, outcome = record["nodeid"], record["when"], record["outcome"]
        previous = outcomes.get(nodeid)
        # A failed setup or teardown is an error, as pytest counts it.
        what = ("failed" if when == "call" else "error") if outcome == "failed" else outcome
        if previous is None or previous[0] in ("passed", "skipped"):
            outcomes[nodeid] = (what, record["message"])
    return outcomes


# -- the report ------------------------------------------------------------------------

_CLIENT_ERROR = re.compile(r"An error occurred \(([^)]*)\) when calling the (\w+) operation")


def cause(message: str) -> str:
    """A test's error, with the names and numbers that differ between tests taken out."""
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    found = _CLIENT_ERROR.search(first)
    if found:
        rest = first[found.end() :].lstrip(": ")
        return f"{found.group(1)}: {_generic(rest)}"
    return _generic(first)


def _generic(text: str) -> str:
    text = re.sub(r"'[^']{0,200}'", "'…'", text)
    text = re.sub(r"\b[0-9a-f]{8,}\b|\d+", "N", text)
    return text[:160]


def summarize(runs: list[ServiceRun]) -> dict[str, Any]:
    by = {(r.mode, r.service): r for r in runs}
    services = sorted({r.service for r in runs}, key=SERVICES.index)
    table = []
    lost: dict[str, list[dict[str, str]]] = defaultdict(list)
    flaky: list[str] = []
    gained: list[str] = []
    for service in services:
        row: dict[str, Any] = {"service": service}
        for mode in ("direct", "gateway"):
            run = by.get((mode, service))
            if run is None:
                continue
            counts = Counter(what for what, _ in run.outcomes.values())
            row[mode] = {
                **{k: counts.get(k, 0) for k in ("passed", "failed", "error", "skipped")},
                "wall_seconds": round(run.wall_seconds),
                "timed_out": run.timed_out,
            }
        direct, through = by.get(("direct", service)), by.get(("gateway", service))
        if direct is None or through is None:
            table.append(row)
            continue
        row["lost"] = row["flaky"] = 0
        for nodeid in lost_tests(direct, through):
            what, message = through.outcomes[nodeid]
            if through.rerun.get(nodeid, ("",))[0] == "passed":
                flaky.append(nodeid)
                row["flaky"] += 1
                continue
            row["lost"] += 1
            label = by_design(message)
            key = f"by design: {label}" if label else cause(message)
            lost[key].append({"test": nodeid, "outcome": what, "message": message[:600]})
        gained += [
            n
            for n, (w, _) in sorted(direct.outcomes.items())
            if w in ("failed", "error") and through.outcomes.get(n, ("",))[0] == "passed"
        ]
        row["not_run_through"] = sorted(set(direct.outcomes) - set(through.outcomes))
        table.append(row)
    ordered = dict(
        sorted(lost.items(), key=lambda kv: (not kv[0].startswith("by design"), -len(kv[1])))
    )
    return {"services": table, "lost_by_cause": ordered, "flaky": flaky, "gained": gained}


_SIGNED_AT = re.compile(r"Signature (?:expired|not yet current): (\d{8}T\d{6}Z)")
_BY_DESIGN = (
    (
        re.compile(r"is not available through the gateway; credentials are issued by iamgate"),
        "STS credential minting is never forwarded (credentials come from the gateway)",
    ),
    (
        re.compile(r"\(MissingAuthenticationToken\) when calling the AssumeRoleWith"),
        "unsigned STS credential minting (AssumeRoleWithSAML / AssumeRoleWithWebIdentity)",
    ),
    (
        # the gateway's words for a key it did not issue, whatever the protocol's error code
        re.compile(r"The AWS Access Key Id you provided does not exist in our records"),
        "a key the gateway did not issue (minted by moto for an IAM user or a role)",
    ),
    (
        re.compile(r"iamgate requires signed requests"),
        "an anonymous request (the gateway forwards no unsigned request, public-read included)",
    ),
)


def by_design(message: str) -> str | None:
    """The designed refusal this failure is, if its message says so unambiguously."""
    for pattern, label in _BY_DESIGN:
        if pattern.search(message):
            return label
    signed = _SIGNED_AT.search(message)
    if signed:
        at = datetime.strptime(signed.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - at) > timedelta(days=1):
            return "a signature dated by a frozen clock (freezegun), outside the 5-minute window"
    return None


def write_report(
    summary: dict[str, Any], out: Path, test_timeout: int, wall: float, version: str
) -> Path:
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    lines = [
        f"# moto {version} test modules: direct vs through iamgate",
        "",
        f"Wall time {wall / 60:.1f} min; per-test timeout {test_timeout} s. Columns: passed/failed/"
        "errors/skipped; lost: passes directly, fails through the gateway, and again when run "
        "alone; flaky: lost in the suite run, passes alone.",
        "",
        "| service | direct | through the gateway | lost | flaky | wall s (direct, gateway) |",
        "|---|---|---|---|---|---|",
    ]
    totals: Counter[str] = Counter()
    for row in summary["services"]:
        cells = []
        for mode in ("direct", "gateway"):
            c = row.get(mode)
            if c is None:
                cells.append("not run")
                continue
            totals.update({f"{mode}_{k}": c[k] for k in ("passed", "failed", "error", "skipped")})
            cells.append(
                f"{c['passed']}/{c['failed']}/{c['error']}/{c['skipped']}"
                + (" (timed out)" if c["timed_out"] else "")
            )
        walls = ", ".join(str(row[m]["wall_seconds"]) for m in ("direct", "gateway") if m in row)
        lost, flaky = row.get("lost", ""), row.get("flaky", "")
        lines.append(f"| {row['service']} | {cells[0]} | {cells[1]} | {lost} | {flaky} | {walls} |")
        totals["lost"] += int(lost or 0)
        totals["flaky"] += int(flaky or 0)
    d = [totals[f"direct_{k}"] for k in ("passed", "failed", "error", "skipped")]
    g = [totals[f"gateway_{k}"] for k in ("passed", "failed", "error", "skipped")]
    lines.append(
        f"| **all** | {'/'.join(map(str, d))} | {'/'.join(map(str, g))} | {totals['lost']} | "
        f"{totals['flaky']} | |"
    )
    compared = [r for r in summary["services"] if "direct" in r and "gateway" in r]
    if compared:
        base = sum(r["direct"]["passed"] for r in compared)
        kept = base - totals["lost"]
        designed = sum(
            len(t) for k, t in summary["lost_by_cause"].items() if k.startswith("by design")
        )
        lines += [
            "",
            f"Of the {base} tests that pass directly, {kept} ({100 * kept / max(base, 1):.1f}%) "
            f"pass through the gateway; of the {totals['lost']} lost, {designed} are refused "
            f"by design (recognised by their error) and {totals['lost'] - designed} need a look.",
        ]
    lines += ["", "## Passing directly, failing through the gateway, by error", ""]
    for reason, tests in summary["lost_by_cause"].items():
        lines.append(f"### {len(tests)} × {reason}")
        lines += [
            f"- `{t['test']}` ({t['outcome']}): {t['message'].splitlines()[0][:300]}" for t in tests
        ]
        lines.append("")
    for title, key in (
        ("Lost in the suite run, passing when run alone", "flaky"),
        ("Failing directly, passing through the gateway", "gained"),
    ):
        if summary[key]:
            lines += [f"## {title}", "", *[f"- `{t}`" for t in summary[key]], ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--modes", default="direct,gateway")
    parser.add_argument("--out", type=Path, default=Path("moto-suite-report"))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/iamgate-moto-suite")
    parser.add_argument("--tests", type=Path, help="a moto checkout holding tests/ (no fetch)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (ec2, sqs, lambda)")
    parser.add_argument("--test-timeout", type=int, default=120, help="seconds per test")
    parser.add_argument("--service-timeout", type=int, default=2400, help="seconds per module")
    parser.add_argument("-k", dest="select", help="pytest -k expression, for a quick look")
    parser.add_argument(
        "--report-only", action="store_true", help="write the report from what --out holds"
    )
    args = parser.parse_args()

    version = importlib.metadata.version("moto")
    started = time.monotonic()
    services = [s for s in args.services.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if args.report_only:
        out = args.out.resolve()
        recorded = load_runs(out, services, modes)
        wall = sum(r.wall_seconds for r in recorded if r.mode == "gateway")
        print(write_report(summarize(recorded), out, args.test_timeout, wall, version).read_text())
        return 0
    cache = args.cache.expanduser()
    settings = Settings(
        tests=(args.tests or fetch_tests(version, cache)).resolve(),
        deps=ensure_test_deps(cache).resolve(),
        out=args.out.resolve(),
        workers=args.workers,
        test_timeout=args.test_timeout,
        service_timeout=args.service_timeout,
        docker=docker_answers(),
        select=args.select,
    )
    settings.out.mkdir(parents=True, exist_ok=True)
    runs = Runs()
    if "direct" not in modes:
        runs.direct_done.set()
    threads = [threading.Thread(target=run_mode, args=(m, services, settings, runs)) for m in modes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    summary = summarize(list(runs.by.values()))
    report = write_report(summary, settings.out, settings.test_timeout, wall, version)
    say(f"done in {wall / 60:.1f} min: {report}")
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
