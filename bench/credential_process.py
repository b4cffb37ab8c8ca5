"""How long `iamgate credentials` takes with a warm cache, as a ratio to `python -c pass`.

The AWS CLI runs a profile's `credential_process` before every command, so a cached
credential should cost about what starting Python costs. This runs, in rotating order,
`python -c pass`, `iamgate credentials --account A --role R` with a cached credential, and
(with --full, the default) the same command with the fast path turned off
(IAMGATE_NO_FAST_PATH=1), which is what every call cost before the fast path. It reports the
median wall time of each and the ratios to `python -c pass`. No gateway is needed: the
credential is served from a throwaway ~/.iamgate (IAMGATE_HOME) with a far expiry.

    .venv/bin/python bench/credential_process.py [--runs 30] [--no-full]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _home(root: Path) -> None:
    (root / "cache").mkdir(parents=True)
    session = {
        "url": "http://127.0.0.1:9",
        "token": "iglogin1.bench.bench",
        "user": "bench",
        "session": "bench",
        "expires_at": "2099-01-01T00:00:00Z",
    }
    creds = {
        "Version": 1,
        "AccessKeyId": "ASIABENCHBENCHBENCH0",
        "SecretAccessKey": "bench-secret",
        "SessionToken": "iamgate1.bench",
        "Expiration": "2099-01-01T00:00:00Z",
    }
    (root / "session.json").write_text(json.dumps(session))
    (root / "cache" / "acme-prod__ReadOnly.json").write_text(json.dumps(creds))


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each (default 30)")
    parser.add_argument(
        "--no-full", dest="full", action="store_false", help="skip the fast path turned off"
    )
    args = parser.parse_args()
    iamgate = str(BIN / "iamgate")
    credentials = [iamgate, "credentials", "--account", "acme-prod", "--role", "ReadOnly"]
    with tempfile.TemporaryDirectory() as tmp:
        _home(Path(tmp))
        env = dict(os.environ, IAMGATE_HOME=tmp)
        env.pop("IAMGATE_NO_FAST_PATH", None)
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "iamgate credentials (cached)": (credentials, env),
        }
        if args.full:
            cases["same, fast path off"] = (credentials, dict(env, IAMGATE_NO_FAST_PATH="1"))
        for argv, case_env in cases.values():
            _time(argv, case_env)  # warm the page cache and bytecode
        samples: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for i in range(args.runs):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                samples[name].append(_time(*cases[name]))
    base = statistics.median(samples["python -c pass"])
    print(f"{args.runs} runs each, median wall time ({sys.executable}):")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:32} {median * 1000:8.1f} ms   {median / base:5.2f}x python -c pass")


if __name__ == "__main__":
    main()
