"""Entry point of the `iamgate` command.

This module stays light: `iamgate credentials` for a cached credential (the AWS CLI's
`credential_process`, run before every `aws` command) is answered by `iamgate.cli.fast`
with the standard library alone; everything else loads the full command line from
`iamgate.cli.commands`.
"""

from __future__ import annotations

import sys

from iamgate.cli.fast import serve_cached


def main() -> None:
    if serve_cached(sys.argv[1:]):
        return
    from iamgate.cli.commands import cli

    cli()


def __getattr__(name: str) -> object:
    if name == "cli":
        from iamgate.cli.commands import cli

        return cli
    raise AttributeError(name)
