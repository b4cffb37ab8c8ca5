"""How long `iamgate serve` takes to be ready, with and without the operation index's cache.

    .venv/bin/python bench/startup.py [--accounts 10000] [--roles 10000] [--rounds 3]

Ready is `/api/v1/health` answering 200: the configuration parsed, the store opened, every
botocore model compiled into the operation index. Each round starts the gateway three
times on the same big configuration (bench/config_scale.py's: N accounts, N roles, a user
holding 1,000 of them), one after the other, timing from the process's start to the first
200: without a cache (IAMGATE_CACHE_DIR=off, as before the cache), with an empty cache
directory (the first start: it compiles, then stores the index), and with that directory
again (every later start). Medians over the rounds, and each round's figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml
from config_scale import generate
from proxy import BIN, cpu_seconds, free_port


def ready_after(config: Path, port: int, cache: str, timeout: float = 300) -> tuple[float, float]:
    """Seconds from starting `iamgate serve` until its health check answers 200, and the
    CPU seconds it (and its audit writer) spent until then: on a busy machine the wall
    clock says more about the neighbours than about the gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": "gateway", "AWS_SECRET_ACCESS_KEY": "gateway"}
    env["IAMGATE_CACHE_DIR"] = cache
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "iamgate"), "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.monotonic() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                    return time.monotonic() - started, cpu_seconds(psutil.Process(process.pid))
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the gateway never became ready")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--roles", type=int, default=10_000)
    parser.add_argument("--held", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="iamgate-startup-"))
    port = free_port()
    config = yaml.safe_load(generate(args.accounts, args.roles, args.held))
    config["server"] = {"listen": f"127.0.0.1:{port}"}
    config["storage"] = {"url": f"sqlite:///{work / 'state.db'}"}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    print(
        f"{args.accounts:,} accounts, {args.roles:,} roles, a user holding {args.held:,}; "
        f"seconds from start to /api/v1/health 200"
    )
    labels = ("no cache", "first start", "cached")
    wall: dict[str, list[float]] = {label: [] for label in labels}
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    for round_ in range(args.rounds):
        cache = work / f"cache-{round_}"
        for label, directory in zip(labels, ("off", str(cache), str(cache)), strict=True):
            took, spent = ready_after(path, port, directory)
            wall[label].append(took)
            cpu[label].append(spent)
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{x} {wall[x][-1]:.2f} s ({cpu[x][-1]:.2f} s CPU)" for x in labels),
            flush=True,
        )
    print(
        "median: "
        + ", ".join(
            f"{x} {statistics.median(wall[x]):.2f} s ({statistics.median(cpu[x]):.2f} s CPU)"
            for x in labels
        )
    )
    ratios = [c / n for c, n in zip(wall["cached"], wall["no cache"], strict=True)]
    spread = f"rounds {min(ratios):.2f}x to {max(ratios):.2f}x"
    print(f"cached/no cache, wall clock: {statistics.median(ratios):.2f}x ({spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
