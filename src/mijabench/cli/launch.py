"""The `mijabench` command's entry point. It reads the command's name before the CLI and its libraries are
imported (over half a second on one CPU), so that `mijabench report` can start its drawing helper first:
the helper then imports matplotlib on the other CPU meanwhile (``report.drawing.prefork``)."""

from __future__ import annotations

import sys

HELP_FLAGS = {"--help", "-h"}


def app() -> None:
    """Console entry point (``mijabench``, ``python -m mijabench``)."""
    args = sys.argv[1:]
    if args[:1] == ["report"] and not HELP_FLAGS & set(args):
        from ..report import drawing

        drawing.prefork()
    from .main import app as run

    run()
