"""Every command's --help shows every word of its help strings: brackets (``mijabench[ray]``,
``[default: ...]``) are text, not Rich markup."""

from __future__ import annotations

import inspect

import typer
from typer.testing import CliRunner

from mijabench.cli.main import cli


def _commands(command, path: tuple[str, ...] = ()):
    yield path, command
    if hasattr(command, "commands"):  # a group (typer's vendored click has its own Group class)
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_help_string_is_shown_whole():
    root = typer.main.get_command(cli)
    runner = CliRunner()
    checked = 0
    for path, command in _commands(root):
        # wide enough that no line is wrapped (a wrap may break a word at its hyphen)
        result = runner.invoke(cli, [*path, "--help"], terminal_width=2000, max_content_width=2000)
        assert result.exit_code == 0, (path, result.output)
        shown = _words(result.output)
        expected = [p.help for p in command.params if getattr(p, "help", None)]
        if command.help:
            # click shows a docstring paragraph by paragraph; each one's words must all be there
            expected += [para for para in inspect.cleandoc(command.help).split("\n\n") if para.strip()]
        for text in expected:
            assert _words(text) in shown, (path, text)
            checked += 1
    assert checked > 150  # every command of the tree was rendered, not just the top level


def test_bracketed_words_survive():
    runner = CliRunner()
    cases = {("run",): "needs mijabench[ray]).", ("audit",): "Report folder [default: WORKSPACE/report].",
             ("annotate", "serve"): "Sample to label [default: the newest].",
             ("align", "evaluate"): "Evaluation folder [default: ADAPTER/evaluation]."}
    for path, words in cases.items():
        result = runner.invoke(cli, [*path, "--help"], terminal_width=100)
        assert words in _words(result.output), (path, result.output)
