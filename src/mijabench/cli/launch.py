"""The `mijabench` command's entry point. It reads the sub-command's name before anything else is
imported, and registers only that sub-command (``commands.build_cli``): its module's libraries are all a
command loads. `mijabench report` also starts its drawing helper first, so that matplotlib is imported on
the other CPU while the report's own libraries are (``report.drawing.prefork``)."""

from __future__ import annotations

import sys

HELP_FLAGS = {"--help", "-h"}


def app() -> None:
    """Console entry point (``mijabench``, ``python -m mijabench``)."""
    args = sys.argv[1:]
    name = args[0] if args else None
    if name == "report" and not HELP_FLAGS & set(args):
        from ..report import drawing

        drawing.prefork()
    from .commands import COMMANDS, build_cli, run

    # no known sub-command (`mijabench`, `--help`, a typo): the whole command lists or suggests them
    run(build_cli(only=name if name in COMMANDS else None))
