"""Examples at the foot of a command's --help."""

from __future__ import annotations


def examples(*lines: str) -> str:
    """An epilog of example command lines, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
