"""Every command and option says what it is for, and every command shows an example."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from iamgate.cli.commands import cli


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


ALL = list(_commands(cli))
LEAVES = [(path, command) for path, command in ALL if not isinstance(command, click.Group)]


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_and_option_has_help(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or "").strip(), f"iamgate {' '.join(path)} has no help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"iamgate {' '.join(path)} {param.opts[0]}"


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_shows_an_example(path: tuple[str, ...], command: click.Command) -> None:
    shown = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert shown.exit_code == 0, shown.output
    assert "Example" in shown.output, f"iamgate {' '.join(path)} --help shows no example"
    assert f"iamgate {' '.join(path)}" in shown.output.split("Example", 1)[1]


LISTINGS = [
    ("ls",),
    ("status",),
    ("env",),
    ("console",),
    ("users", "ls"),
    ("sessions", "ls"),
    ("audit", "search"),
    ("profiles", "sync"),
    ("config", "check"),
]


@pytest.mark.parametrize("path", LISTINGS, ids=[" ".join(p) for p in LISTINGS])
def test_commands_that_list_or_report_have_json(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert any("--json" in p.opts for p in command.params if isinstance(p, click.Option))
