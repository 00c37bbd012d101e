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


def test_a_command_run_by_name_is_the_same_command():
    """`mijabench NAME` registers only NAME (``cli.launch``): its help, with every sub-command's, is the
    same as in the whole command, and the whole command lists exactly the names the launcher knows."""
    from mijabench.cli.commands import COMMANDS, build_cli

    runner = CliRunner()
    full_root = typer.main.get_command(cli)
    assert sorted(full_root.commands) == sorted(COMMANDS)
    for name in COMMANDS:
        one = build_cli(only=name)
        assert list(typer.main.get_command(one).commands) == [name]
        for path, _ in _commands(full_root.commands[name], (name,)):
            whole = runner.invoke(cli, [*path, "--help"], terminal_width=200)
            alone = runner.invoke(one, [*path, "--help"], terminal_width=200)
            assert alone.exit_code == whole.exit_code == 0, (path, alone.output)
            assert alone.output == whole.output, path


def test_the_launcher_loads_only_the_command_it_runs(tmp_path):
    """`python -m mijabench groups` imports neither the analysis nor the judge runner; an unknown name
    gets the whole command's suggestion."""
    import subprocess
    import sys

    code = ("import runpy, sys; sys.argv = ['mijabench', 'groups']; runpy.run_module('mijabench', "
            "run_name='__main__')\n")
    probe = tmp_path / "probe.py"
    probe.write_text("import atexit, sys\natexit.register(lambda: print(sorted(m for m in ('scipy', "
                     "'mijabench.analysis', 'mijabench.judge.runner') if m in sys.modules)))\n" + code)
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "16 demographic groups" in done.stdout and done.stdout.strip().endswith("[]")
    typo = subprocess.run([sys.executable, "-m", "mijabench", "reprt"], capture_output=True, text=True,
                          timeout=120)
    assert typo.returncode == 2 and "Did you mean 'report'?" in typo.stderr
