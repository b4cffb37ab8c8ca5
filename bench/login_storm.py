"""Whether logins starve the proxy: a gateway's proxy latency alone, and while 16 people
log in at the same instant (each login checks an argon2id hash, ~0.2 s of CPU).

    .venv/bin/python bench/login_storm.py [--rounds 5] [--logins 16]

One run on 127.0.0.1: the fast upstream of bench/proxy.py, `iamgate serve` as its own
process, people enrolled in its store. Each round measures signed sts:GetCallerIdentity
calls one at a time, first alone, then while `--logins` logins (all correct, so each does the
full check) are sent at once; the ratio of the two p50s is taken within the round. To compare
with an earlier tree, run the same command with PYTHONPATH=<that tree>/src.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from botocore.credentials import Credentials
from proxy import (
    ACCOUNT,
    BIN,
    Signed,
    bench_config,
    free_port,
    gateway_env,
    pct,
    sign,
    wait_for_port,
    wait_until_ready,
)

from iamgate.identity.credentials import mint_credentials
from iamgate.identity.passwords import hash_password
from iamgate.identity.totp import code_at, new_totp_secret
from iamgate.store.database import load_keyring, open_engine
from iamgate.store.users import put_user

PASSWORD = "correct horse battery staple"


async def calls_until(
    session: aiohttp.ClientSession, signed: Signed, done: asyncio.Future[Any] | int
) -> list[float]:
    """Latencies (ms) of calls made one at a time: `done` calls, or until `done` completes."""
    latencies: list[float] = []
    while (len(latencies) < done) if isinstance(done, int) else not done.done():
        started = time.perf_counter()
        async with session.post(signed.url, data=signed.body, headers=signed.headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"status {r.status}: {await r.text()}")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def log_in(
    session: aiohttp.ClientSession, base: str, name: str, secret: str
) -> tuple[int, float]:
    started = time.perf_counter()
    body = {"user": name, "password": PASSWORD, "otp": code_at(secret, datetime.now(UTC))}
    async with session.post(f"{base}/api/v1/login", json=body) as r:
        await r.read()
        return r.status, time.perf_counter() - started


async def rounds(
    base: str, signed: Signed, people: list[tuple[str, str]], per_round: int, calls: int
) -> None:
    ratios, quiet_all, storm_all, slowest = [], [], [], []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as proxy, aiohttp.ClientSession() as logins:
        await calls_until(proxy, signed, 100)  # connections open, upstream role cached
        for round_ in range(len(people) // per_round):
            quiet = await calls_until(proxy, signed, calls)
            batch = people[round_ * per_round : (round_ + 1) * per_round]
            storm = asyncio.gather(*(log_in(logins, base, n, s) for n, s in batch))
            during = await calls_until(proxy, signed, storm)
            answers = await storm
            for status, _ in answers:
                statuses[status] = statuses.get(status, 0) + 1
            slowest.append(max(seconds for _, seconds in answers))
            ratios.append(statistics.median(during) / statistics.median(quiet))
            quiet_all += quiet
            storm_all += during
            print(
                f"round {round_ + 1}: p50 alone {statistics.median(quiet):.3f} ms, during "
                f"{per_round} logins {statistics.median(during):.3f} ms ({len(during)} calls); "
                f"slowest login {slowest[-1]:.2f} s"
            )
    print(
        f"\nproxy p50 alone {pct(quiet_all, 50):.3f} ms, p99 {pct(quiet_all, 99):.3f} ms; "
        f"during {per_round} logins at once p50 {pct(storm_all, 50):.3f} ms, "
        f"p99 {pct(storm_all, 99):.3f} ms"
    )
    print(
        f"p50 during/alone, median of rounds: {statistics.median(ratios):.2f}x "
        f"(rounds {min(ratios):.2f}x to {max(ratios):.2f}x; goal < 2x)"
    )
    print(f"login answers: {dict(sorted(statuses.items()))}; slowest {max(slowest):.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--logins", type=int, default=16, help="at once, per round")
    parser.add_argument("--calls", type=int, default=300, help="proxied calls alone, per round")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="iamgate-bench-logins-"))
    storage_url = f"sqlite:///{work / 'state.db'}"
    upstream_port, gateway_port = free_port(), free_port()
    proxy_script = Path(__file__).with_name("proxy.py")
    upstream = subprocess.Popen(
        [sys.executable, str(proxy_script), "--serve-upstream", str(upstream_port)]
    )
    gateway: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port(upstream_port)
        config = bench_config(gateway_port, upstream_port, storage_url)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        env = gateway_env()
        gateway = subprocess.Popen(
            [str(BIN / "iamgate"), "serve", "--config", str(work / "config.yaml")], env=env
        )
        wait_for_port(gateway_port)
        wait_until_ready(gateway_port)
        engine = open_engine(storage_url)
        # Each person logs in once, with a code of their own: codes work once per person.
        password_hash = hash_password(PASSWORD)
        people = [(f"person{i:03d}", new_totp_secret()) for i in range(args.rounds * args.logins)]
        for name, secret in people:
            put_user(engine, name, password_hash=password_hash, totp_secret=secret)
        minted = mint_credentials(
            load_keyring(engine),
            principal="bench",
            kind="bot",
            account_id=ACCOUNT,
            aws_role="Bench",
            gateway_roles=(),
            now=datetime.now(UTC),
        )
        creds = Credentials(minted.access_key_id, minted.secret_access_key, minted.session_token)
        base = f"http://127.0.0.1:{gateway_port}"
        print(
            f"signed sts:GetCallerIdentity through the gateway, one at a time; "
            f"{args.logins} correct logins at once per round; {os.cpu_count()} cores"
        )
        asyncio.run(rounds(base, sign(base, creds), people, args.logins, args.calls))
        return 0
    finally:
        for proc in (gateway, upstream):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
