"""The `mijabench` command with every sub-command: a thin layer that parses arguments, calls the library
and prints. Every sub-command lives in its own module (``commands.COMMANDS``); a MijaError becomes one line
on stderr and exit code 2 (``commands.run``). The installed command starts in ``launch``, which loads only
the sub-command it runs."""

from __future__ import annotations

from .commands import build_cli, print_error, run

__all__ = ["app", "cli", "print_error"]

cli = build_cli()


def app() -> None:
    """Entry point with every sub-command registered (``python -m mijabench.cli.main``)."""
    run(cli)


if __name__ == "__main__":
    app()
