"""What the gateway costs: latency and throughput direct vs through it, and upload memory.

    .venv/bin/python bench/proxy.py [--requests 500] [--rounds 20] [--concurrency 1,16,64]
                                    [--call sts|s3-get] [--before REV] [--workers N]
                                    [--upload-mib 1024]

Everything runs on 127.0.0.1 in one run: a fast local upstream (a tiny aiohttp server that
answers STS and S3 like AWS, so the upstream's own cost is near zero and the gateway's
shows), a bare aiohttp reverse proxy in front of it (the reference: what any Python proxy
on this machine costs, with no verification, no re-signing and no audit), `iamgate serve`
as its own process twice (durable audit, and audit off), with `--before REV` a third
gateway run from that commit's source (durable audit, a store of its own), with
`--workers N` one more that runs N worker processes, and an aiohttp load generator. Once
the gateways say they are ready, the same pre-signed requests go directly to the upstream,
through the bare proxy and through each gateway, in rounds that rotate the order; the
report gives medians, the CPU each serving process (and its children: audit writers,
workers) spent per request, and ratios taken within each round (the gateway's CPU per call
to the bare proxy's; after to before; N workers to one). Then a 1 GiB S3 upload streams
through the gateway while its resident memory is sampled.

With more cores, run `--workers` with their number and compare its throughput with one
worker's at 64 at a time or more (the load generator is one process: give it a core).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BIN = Path(sys.executable).parent
ACCOUNT = "111111111111"

ASSUME_ROLE_XML = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>ASIAUPSTREAMBENCH000</AccessKeyId>
<SecretAccessKey>upstream-secret</SecretAccessKey><SessionToken>upstream-token</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROA:bench</AssumedRoleId>
<Arn>arn:aws:sts::111111111111:assumed-role/Bench/bench</Arn></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""

IDENTITY_XML = """<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:sts::111111111111:assumed-role/Bench/bench</Arn>
<UserId>AROA:bench</UserId><Account>111111111111</Account></GetCallerIdentityResult>
<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>"""


OBJECT = bytes(range(256)) * 4  # the 1 KiB object of --call s3-get


def run_upstream(port: int) -> None:
    """The fast upstream: answers without work, so only the gateway's cost remains."""

    async def handle(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(
                body=OBJECT,
                content_type="application/octet-stream",
                headers={"ETag": '"bench"', "x-amz-request-id": "bench"},
            )
        if request.method == "PUT":
            size = 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
            return web.Response(headers={"ETag": f'"{size}"', "x-amz-request-id": "bench"})
        body = await request.read()
        xml = ASSUME_ROLE_XML if b"Action=AssumeRole" in body else IDENTITY_XML
        return web.Response(
            text=xml, content_type="text/xml", headers={"x-amzn-RequestId": "bench"}
        )

    app = web.Application(client_max_size=1024**3 * 2)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# Hop-by-hop headers, and those aiohttp sets itself from the body it sends.
_NOT_FORWARDED = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}
)


def run_bare_proxy(port: int, upstream_port: int) -> None:
    """The reference: a pass-through reverse proxy in aiohttp on uvloop, as the gateway
    runs, with a pooled upstream session and nothing else (no verification, no re-signing,
    no audit). What is left of the gateway's cost over it is the gateway's own."""
    import uvloop

    upstream = f"http://127.0.0.1:{upstream_port}"
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def handle(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        body = await request.read()
        async with request.app[session_key].request(
            request.method,
            upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
            return web.Response(status=answer.status, body=payload, headers=kept)

    async def serve() -> None:
        app = web.Application(client_max_size=1024**3 * 2)
        app.router.add_route("*", "/{tail:.*}", handle)
        connector = aiohttp.TCPConnector(limit=256)
        app[session_key] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        try:
            await asyncio.Event().wait()
        finally:
            await app[session_key].close()
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@dataclass(frozen=True)
class Signed:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def sign(
    base_url: str, creds: Credentials, *, call: str = "sts", s3_put_size: int | None = None
) -> Signed:
    if call == "s3-get" and s3_put_size is None:
        body = b""
        request = AWSRequest(
            method="GET",
            url=base_url + "/bench-bucket/object-1k",
            headers={"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()},
        )
        SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    elif s3_put_size is None:
        body = b"Action=GetCallerIdentity&Version=2011-06-15"
        request = AWSRequest(
            method="POST",
            url=base_url + "/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        SigV4Auth(creds, "sts", "us-east-1").add_auth(request)
    else:
        body = b""
        request = AWSRequest(
            method="PUT",
            url=base_url + "/bench-bucket/big.bin",
            headers={
                "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
                "Content-Length": str(s3_put_size),
            },
        )
        SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return Signed(prepared.method, prepared.url, dict(prepared.headers.items()), body)


async def load(signed: Signed, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) of `requests` calls at `concurrency`."""
    latencies: list[float] = []
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with session.request(
                    signed.method, signed.url, data=signed.body, headers=signed.headers
                ) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"status {r.status}: {await r.text()}")
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return requests / elapsed, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def upload(signed: Signed, size: int) -> float:
    chunk = os.urandom(1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            sent += len(piece)
            yield piece

    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.put(signed.url, data=body(), headers=signed.headers) as r,
    ):
        text = await r.text()
        if r.status != 200:
            raise RuntimeError(f"upload failed: {r.status} {text}")
        received = int(r.headers["ETag"].strip('"'))  # the upstream reports what it got
        if received != size:
            raise RuntimeError(f"the upstream received {received} bytes of {size}")
    return time.perf_counter() - started


def bench_config(gateway_port: int, upstream_port: int, storage_url: str) -> dict[str, Any]:
    """The benches' gateway: one account on the fast upstream, one role, one user."""
    return {
        "server": {"listen": f"127.0.0.1:{gateway_port}"},
        "storage": {"url": storage_url},
        "aws": {
            "upstream": {"endpoint_url": f"http://127.0.0.1:{upstream_port}"},
            "accounts": [{"name": "bench", "id": ACCOUNT}],
        },
        "roles": [
            {"name": "bench", "allow": {"accounts": {"name": ["bench"]}, "aws_roles": ["Bench"]}}
        ],
        "users": [{"name": "bench", "roles": ["bench"]}],
    }


def gateway_env() -> dict[str, str]:
    """This environment without AWS's variables but for the gateway's own (unused upstream)
    keys: the fast upstream checks no signature."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {"AWS_ACCESS_KEY_ID": "gateway", "AWS_SECRET_ACCESS_KEY": "gateway"}


def wait_until_ready(port: int, timeout: float = 120) -> None:
    """Until the gateway says it is ready: every service model compiled, nothing warming up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the gateway on {port} never became ready")


@dataclass
class Series:
    """One configuration's measurements over the rounds."""

    rps: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # the measured process's, per request


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU of the process and its children (the gateway's audit writer)."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def measure(
    targets: dict[str, tuple[Signed, psutil.Process]],
    *,
    requests: int,
    concurrency: int,
    rounds: int,
) -> dict[str, Series]:
    """Every target once per round, in an order that rotates, so drift hits all alike."""
    series = {label: Series() for label in targets}
    labels = list(targets)
    for round_ in range(rounds):
        for label in labels[round_ % len(labels) :] + labels[: round_ % len(labels)]:
            signed, process = targets[label]
            before = cpu_seconds(process)
            rps, latencies = asyncio.run(load(signed, requests, concurrency))
            used = cpu_seconds(process) - before
            series[label].rps.append(rps)
            series[label].latencies.extend(latencies)
            series[label].cpu_us.append(used / requests * 1e6)
    return series


def per_round(a: list[float], b: list[float]) -> list[float]:
    """a/b within each round (the runs of one round are seconds apart): a machine that slows
    for a while slows both sides of a ratio."""
    return [x / y for x, y in zip(a, b, strict=True)]


def ratio(label: str, values: list[float], note: str = "") -> None:
    print(
        f"{label}: {statistics.median(values):.2f}x "
        f"(rounds {min(values):.2f}x to {max(values):.2f}x){note}"
    )


def report(series: dict[str, Series], concurrency: int) -> None:
    print(f"\n{concurrency} at a time, median of {len(next(iter(series.values())).rps)} rounds")
    print(f"{'':12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU µs/req':>12}")
    for label, s in series.items():
        print(
            f"{label:12}{statistics.median(s.rps):10.0f}{pct(s.latencies, 50):10.3f}"
            f"{pct(s.latencies, 99):10.3f}{statistics.median(s.cpu_us):12.0f}"
        )
    direct, bare = series["direct"], series["bare proxy"]
    gateway, quiet = series["gateway"], series["no audit"]
    ratio("throughput, gateway/direct", per_round(gateway.rps, direct.rps))
    ratio("throughput, gateway/bare proxy", per_round(gateway.rps, bare.rps))
    ratio(
        "CPU per call, gateway/bare proxy",
        per_round(gateway.cpu_us, bare.cpu_us),
        " (issue 16's goal: at most 2x)",
    )
    ratio("CPU per call, no audit/bare proxy", per_round(quiet.cpu_us, bare.cpu_us))
    audited = per_round(gateway.rps, quiet.rps)
    ratio(
        "throughput, durable audit/no audit",
        audited,
        f"; durable audit costs {max(0.0, 1 - statistics.median(audited)) * 100:.0f}%",
    )
    base = pct(bare.latencies, 50)
    print(
        f"added latency at p50 over the bare proxy: {pct(gateway.latencies, 50) - base:.3f} ms; "
        f"without audit {pct(quiet.latencies, 50) - base:.3f} ms "
        f"(the bare proxy adds {base - pct(direct.latencies, 50):.3f} ms to direct)"
    )
    workers = [label for label in series if label.endswith(" workers")]
    if workers:
        ratio(f"throughput, {workers[0]}/1 worker", per_round(series[workers[0]].rps, gateway.rps))
        ratio(
            f"CPU per call, {workers[0]}/1 worker",
            per_round(series[workers[0]].cpu_us, gateway.cpu_us),
        )
    if "before" in series:
        before = series["before"]
        ratio("throughput, after/before", per_round(gateway.rps, before.rps))
        ratio("CPU per call, after/before", per_round(gateway.cpu_us, before.cpu_us))
        print(
            f"p50 after - before: {pct(gateway.latencies, 50) - pct(before.latencies, 50):+.3f} ms"
        )


_MINT = """
import json, sys
from datetime import UTC, datetime
from iamgate.identity.credentials import mint_credentials
from iamgate.store.database import load_keyring, open_engine
minted = mint_credentials(
    load_keyring(open_engine(sys.argv[1])), principal="bench", kind="bot",
    account_id=sys.argv[2], aws_role="Bench", gateway_roles=(), now=datetime.now(UTC),
)
print(json.dumps([minted.access_key_id, minted.secret_access_key, minted.session_token]))
"""


def mint(storage_url: str, env: dict[str, str]) -> Credentials:
    """Gateway credentials for the bench's bot, minted by the code `env` imports (so a
    `--before` gateway gets its own revision's token)."""
    out = subprocess.run(
        [sys.executable, "-c", _MINT, storage_url, ACCOUNT],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    key, secret, token = json.loads(out.strip().splitlines()[-1])
    return Credentials(key, secret, token)


def source_of(rev: str, work: Path) -> tuple[str, Path]:
    """(short commit, its src folder): the revision's source tree, from git, in `work`."""
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", commit, "src"], check=True, capture_output=True
    ).stdout
    target = work / f"before-{commit}"
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return commit, target / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="per configuration and round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--concurrency",
        type=lambda v: [int(c) for c in v.split(",")],
        default=[1, 16, 64],
        help="comma-separated levels (default 1,16,64)",
    )
    parser.add_argument("--upload-mib", type=int, default=1024, help="0: no upload")
    parser.add_argument(
        "--call",
        choices=("sts", "s3-get"),
        default="sts",
        help="the call measured: sts:GetCallerIdentity (default) or a 1 KiB s3:GetObject",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also run the gateway of this git revision (e.g. 29abe0f), from its source, in "
        "the same rounds, and report after/before",
    )
    parser.add_argument(
        "--storage-url",
        help="the gateways' store, e.g. an empty PostgreSQL database (default: SQLite in a "
        "temporary folder)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also run `iamgate serve --workers N` (durable audit) and report its throughput "
        "next to one worker's (issue 16: every core)",
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-proxy", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        run_upstream(args.serve_upstream)
        return 0
    if args.serve_bare_proxy:
        run_bare_proxy(*args.serve_bare_proxy)
        return 0

    work = Path(tempfile.mkdtemp(prefix="iamgate-bench-"))
    storage_url = args.storage_url or f"sqlite:///{work / 'state.db'}"
    upstream_port, bare_port = free_port(), free_port()
    gateway_port, quiet_port, before_port = free_port(), free_port(), free_port()
    workers_port = free_port()
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(label: str, command: list[str], env: dict[str, str] | None = None) -> None:
        processes[label] = subprocess.Popen(command, env=env)

    start("direct", [sys.executable, __file__, "--serve-upstream", str(upstream_port)])
    start(
        "bare proxy",
        [sys.executable, __file__, "--serve-bare-proxy", str(bare_port), str(upstream_port)],
    )
    try:
        wait_for_port(upstream_port)
        wait_for_port(bare_port)
        config = bench_config(gateway_port, upstream_port, storage_url)
        # One principal on one address sends up to 64 calls at a time: room enough that
        # the per-caller shares never refuse one of them.
        config["server"] |= {
            "max_calls_per_principal": 256,
            "max_unauthenticated_per_address": 1024,
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        env = gateway_env()
        serve = [str(BIN / "iamgate"), "serve", "--config"]
        start("gateway", [*serve, str(work / "config.yaml")], env)
        wait_for_port(gateway_port)
        # The same gateway with audit off, sharing keys and users: what durability costs.
        quiet_config = config | {"audit": {"enabled": False}}
        quiet_config["server"] = config["server"] | {"listen": f"127.0.0.1:{quiet_port}"}
        (work / "quiet.yaml").write_text(yaml.safe_dump(quiet_config))
        start("no audit", [*serve, str(work / "quiet.yaml")], env)
        before_env: dict[str, str] | None = None
        if args.before:
            # The earlier revision's own source and a store of its own (its schema may be
            # older): the same configuration, the same venv, the same upstream.
            commit, source = source_of(args.before, work)
            before_env = env | {"PYTHONPATH": str(source)}
            before_config = config | {
                "storage": {"url": f"sqlite:///{work / 'before.db'}"},
                "server": config["server"] | {"listen": f"127.0.0.1:{before_port}"},
            }
            (work / "before.yaml").write_text(yaml.safe_dump(before_config))
            start("before", [*serve, str(work / "before.yaml")], before_env)
            print(f"before: {commit}, from {source}", flush=True)
        workers = f"{args.workers} workers"
        if args.workers > 1:
            workers_config = config | {
                "server": config["server"] | {"listen": f"127.0.0.1:{workers_port}"}
            }
            (work / "workers.yaml").write_text(yaml.safe_dump(workers_config))
            start(
                workers, [*serve, str(work / "workers.yaml"), "--workers", str(args.workers)], env
            )
        for port in (gateway_port, quiet_port) + ((before_port,) if args.before else ()):
            wait_until_ready(port)
        if args.workers > 1:
            for _ in range(args.workers * 10):  # each worker answers, whichever is asked
                wait_until_ready(workers_port)
        gw_creds = mint(storage_url, env)
        up_creds = Credentials("ASIAUPSTREAMBENCH000", "upstream-secret", "upstream-token")
        urls = {
            "direct": (upstream_port, up_creds),
            "bare proxy": (bare_port, up_creds),
            "gateway": (gateway_port, gw_creds),
            "no audit": (quiet_port, gw_creds),
        }
        if before_env is not None:
            urls["before"] = (before_port, mint(f"sqlite:///{work / 'before.db'}", before_env))
        if args.workers > 1:
            urls[workers] = (workers_port, gw_creds)
        targets = {
            label: (
                sign(f"http://127.0.0.1:{port}", creds, call=args.call),
                psutil.Process(processes[label].pid),
            )
            for label, (port, creds) in urls.items()
        }
        for signed, _ in targets.values():  # AssumeRole cached, connections open
            asyncio.run(load(signed, 200, 4))
        measured = "a 1 KiB s3:GetObject" if args.call == "s3-get" else "sts:GetCallerIdentity"
        print(
            f"{measured}, {args.requests} requests per configuration and round, all in one "
            "run; CPU is the serving process's and its children's (the upstream's for direct, "
            "the bare proxy's alone, the gateway's with its audit writer)"
        )
        for concurrency in args.concurrency:
            report(
                measure(
                    targets,
                    requests=args.requests,
                    concurrency=concurrency,
                    rounds=args.rounds,
                ),
                concurrency,
            )
        if args.upload_mib <= 0:
            return 0
        gateway = processes["gateway"]

        size = args.upload_mib * 1024 * 1024
        process = psutil.Process(gateway.pid)
        before = process.memory_info().rss
        peak = before
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        elapsed = asyncio.run(
            upload(sign(f"http://127.0.0.1:{gateway_port}", gw_creds, s3_put_size=size), size)
        )
        stop.set()
        sampler.join()
        print(
            f"\n{args.upload_mib} MiB S3 upload through the gateway: {elapsed:.1f} s "
            f"({args.upload_mib / elapsed:.0f} MiB/s)"
        )
        print(
            f"gateway RSS: {before / 2**20:.1f} MiB before, peak {peak / 2**20:.1f} MiB during "
            f"(+{(peak - before) / 2**20:.1f} MiB)"
        )
        return 0
    finally:
        for proc in reversed(processes.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
