"""The `mijabench` command's entry point. It reads the sub-command's name before anything else is
imported, and registers only that sub-command (``commands.build_cli``): its module's libraries are all a
command loads."""

from __future__ import annotations

import sys


def app() -> None:
    """Console entry point (``mijabench``, ``python -m mijabench``)."""
    args = sys.argv[1:]
    name = args[0] if args else None
    from .commands import COMMANDS, build_cli, run

    # no known sub-command (`mijabench`, `--help`, a typo): the whole command lists or suggests them
    run(build_cli(only=name if name in COMMANDS else None))
