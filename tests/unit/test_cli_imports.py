"""The CLI is a front end of the control plane (`iamgate.control`), beside the web UI and the
JSON API, not built on them: nothing in `iamgate.cli` imports `iamgate.web`, directly or
through what it imports. Only `iamgate serve` and `iamgate demo` start the gateway, web UI
included (`iamgate.server`, `iamgate.demo`), and they import it when they run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import iamgate

SRC = Path(iamgate.__file__).parent
CLI = SRC / "cli"
# The commands that run the gateway itself, web UI included.
STARTS_THE_GATEWAY = {"iamgate.server", "iamgate.demo"}


def _imports(path: Path, package: str) -> set[str]:
    """Every module an `import` in the file names, at any depth (function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _source(name: str) -> Path | None:
    """The file of module `name` under src/iamgate, found without importing anything."""
    base = SRC.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None  # a name imported from a module, not a module


def _iamgate_graph(start: set[str]) -> dict[str, str]:
    """Each iamgate module reached from `start`, with the module that first imported it."""
    reached: dict[str, str] = {}
    queue = [(name, "") for name in sorted(start)]
    while queue:
        name, by = queue.pop()
        if name in reached or not (name == "iamgate" or name.startswith("iamgate.")):
            continue
        path = _source(name)
        if path is None:
            continue
        reached[name] = by
        if name in STARTS_THE_GATEWAY:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parts = name.split(".")
        queue += [(".".join(parts[:i]), name) for i in range(1, len(parts))]
        queue += [(n, name) for n in _imports(path, package)]
    return reached


def test_no_cli_module_imports_the_web_package() -> None:
    modules = {f"iamgate.cli.{p.stem}" for p in CLI.glob("*.py") if p.stem != "__init__"}
    graph = _iamgate_graph(modules)
    assert "iamgate.control.users" in graph, "the CLI administers through the control plane"
    web = {m: by for m, by in graph.items() if m == "iamgate.web" or m.startswith("iamgate.web.")}
    assert web == {}, f"iamgate.cli reaches iamgate.web: {web}"


def test_loading_every_command_loads_no_web_module() -> None:
    """What really happens when the CLI starts: `iamgate --help` loads every command."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from iamgate.cli.commands import cli\n"
        "import iamgate.cli.admin, iamgate.cli.audit, iamgate.cli.people\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('iamgate.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = ast.literal_eval(done.stdout.strip())
    assert "iamgate.cli.admin" in loaded
    assert [m for m in loaded if m.startswith("iamgate.web")] == []
