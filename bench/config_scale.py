"""What a big configuration costs: parsing it, and deciding a call for a user holding many roles.

    .venv/bin/python bench/config_scale.py [--accounts 10000] [--roles 10000] [--held 1000]

Generates a configuration with N accounts (labelled by team and environment) and N gateway
roles (each allowing one team's accounts), and one user holding `--held` of those roles.
Reports the time to parse and validate the configuration, and the time per authorization
decision for that user, next to the same decision for a user holding one role (the reference
measured in the same run): the ratio says what holding many roles costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from iamgate.access.decisions import Reach, decide, decide_among, role_reaches
from iamgate.access.session_policy import session_policy_for
from iamgate.config import parse_config


def generate(accounts: int, roles: int, held: int) -> str:
    lines = ["aws:", "  accounts:"]
    for i in range(accounts):
        env = ("prod", "staging", "dev")[i % 3]
        lines.append(
            f'    - {{name: acct-{i:05d}, id: "{100000000000 + i}", '
            f"labels: {{team: t{i % 500:03d}, env: {env}}}}}"
        )
    lines.append("roles:")
    for i in range(roles):
        lines.append(
            f"  - {{name: role-{i:05d}, allow: {{accounts: {{team: [t{i % 500:03d}]}}, "
            f'aws_roles: [ReadOnly], actions: ["s3:Get*", "ec2:Describe*"]}}, '
            f'deny: {{actions: ["s3:GetObjectAcl"]}}}}'
        )
    held_roles = ", ".join(f"role-{i:05d}" for i in range(held))
    lines.append("users:")
    lines.append(f"  - {{name: many, roles: [{held_roles}]}}")
    lines.append("  - {name: one, roles: [role-00499]}")
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds per call over `repeat` calls, in batches so the clock's cost vanishes."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(100):
            fn()
        samples.append((time.perf_counter() - start) / 100)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--roles", type=int, default=10_000)
    parser.add_argument("--held", type=int, default=1_000)
    args = parser.parse_args()

    text = generate(args.accounts, args.roles, args.held)
    start = time.perf_counter()
    config = parse_config(text, source="generated.yaml")
    parsed = time.perf_counter() - start
    print(
        f"configuration: {args.accounts} accounts, {args.roles} roles, "
        f"{len(text) / 1e6:.1f} MB of YAML"
    )
    print(f"  parse and validate: {parsed:.2f} s")

    account = config.aws.account_named("acct-00499")
    assert account is not None
    roles = {r.name: r for r in config.roles}
    many = next(u for u in config.users if u.name == "many").roles
    held = {"1 role": ("role-00499",), f"{args.held} roles": tuple(many)}
    reach = Reach(roles)

    def scanning(names: tuple[str, ...]) -> Callable[[], object]:
        """The decision as made before roles were indexed: every held role, every call."""

        def call() -> object:
            current = [roles[n] for n in names if n in roles]
            decision = decide(current, account, "ReadOnly", "s3:GetObject", "us-east-1", {})
            reaching = [r for r in current if role_reaches(r, account, "ReadOnly")]
            return decision, session_policy_for(reaching)

        return call

    def indexed(names: tuple[str, ...]) -> Callable[[], object]:
        def call() -> object:
            reaching = reach.of(names, account, "ReadOnly")
            decision = decide_among(reaching, account, "ReadOnly", "s3:GetObject", "us-east-1", {})
            return decision, session_policy_for(reaching)

        return call

    results: dict[tuple[str, str], float] = {}
    for label, names in held.items():
        for how, make in (("scanning", scanning), ("indexed", indexed)):
            results[how, label] = timed(make(names), 21)
            print(f"  {how:8}, user holding {label:10}: {results[how, label] * 1e6:8.1f} µs")
    many_label = f"{args.held} roles"
    print(
        f"  holding {args.held} roles, indexed vs scanning: "
        f"{results['indexed', many_label] / results['scanning', many_label]:.3f}; "
        f"indexed, {args.held} roles vs 1 role: "
        f"{results['indexed', many_label] / results['indexed', '1 role']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
