"""The `[profile …]` sections iamgate writes into `~/.aws/config`, and how it finds its own.

`iamgate profiles sync` rewrites only its marked block, so every byte of the user's own
configuration stays; the web UI shows the same section for one role as its CLI set-up.
"""

from __future__ import annotations

import shlex
from typing import Any

PROFILE_PREFIX = "iamgate-"
BEGIN_MARK = "# BEGIN iamgate: managed by `iamgate profiles sync`, edits here are replaced"
END_MARK = "# END iamgate"


def without_block(text: str) -> str:
    lines, inside = text.splitlines(keepends=True), False
    out: list[str] = []
    for line in lines:
        if line.strip() == BEGIN_MARK:
            inside = True
            if out and not out[-1].strip():
                out.pop()  # the blank line that sync put before its block
        elif line.strip() == END_MARK and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def profiles_block(
    access: dict[str, Any], url: str, exe: str, region: str, with_plugin: bool
) -> tuple[str, list[str]]:
    lines, names = [BEGIN_MARK], []
    if with_plugin:
        lines += ["[plugins]", "iamgate = iamgate.awscli_plugin", ""]
    for account in access["accounts"]:
        for role in account["roles"]:
            if any(c in role["aws_role"] for c in "*?"):
                continue  # a pattern, not a role one can assume by name
            name = f"{PROFILE_PREFIX}{account['name']}-{role['aws_role']}"
            if name in names:
                continue
            names.append(name)
            command = shlex.join(
                [exe, "credentials", "--account", account["name"], "--role", role["aws_role"]]
            )
            lines += [
                f"[profile {name}]",
                f"region = {region}",
                f"endpoint_url = {url}",
                f"credential_process = {command}",
                "s3 =",
                "    signature_version = s3v4",
                "",
            ]
    lines.append(END_MARK)
    return "\n".join(lines) + "\n", names
