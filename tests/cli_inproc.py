"""Run the `mijabench` console entry point in this process (much faster than a subprocess per case) and
build a small judged workspace for command-line tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mijabench.backends.registry import ModelConfig
from mijabench.backends.scripted import ScriptedBackend
from mijabench.judge import judge_responses
from mijabench.records import BenchmarkItem
from mijabench.run.generate import run_items
from mijabench.store import Store

GROUPS = ("women", "black", "jewish")


def invoke(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``mijabench ARGS`` through ``mijabench.cli.main.app``, the entry point
    that prints errors, so its one-line error printer is under test too."""
    from mijabench.cli.main import app

    monkeypatch.setattr(sys, "argv", ["mijabench", *args])
    monkeypatch.delenv("MIJABENCH_WORKSPACE", raising=False)
    capsys.readouterr()
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def make_items(n: int = 12, groups: tuple[str, ...] = GROUPS, prompt: str = "prompt") -> list[BenchmarkItem]:
    """``n`` English items, groups in turn, prompts "``prompt`` 0", "``prompt`` 1", ..."""
    return [BenchmarkItem(language="en", group=groups[i % len(groups)], seed_text=f"seed {i}",
                          scenario_category="history", scenario_text="a market",
                          strategy="persona_assignment", prompt=f"{prompt} {i}") for i in range(n)]


def build_workspace(folder: Path) -> Path:
    """Benchmark 'b' (12 items), two scripted models (one refuses some prompts) and rule-judge verdicts."""
    with Store(folder) as store:
        configs = [ModelConfig(spec="scripted:a", name="scripted:a"),
                   ModelConfig(spec="scripted:b", name="scripted:b")]
        backends = {"scripted:a": ScriptedBackend(name="scripted:a", refuse_on=("1", "3")),
                    "scripted:b": ScriptedBackend(name="scripted:b", refuse_on=("2",))}
        run_items(store, make_items(), configs, bench="b", backends=backends, progress=False)
        judge_responses(store, ["rules:refusal-v1"], progress=None)
        path = store.path
    assert not path.with_name(path.name + "-wal").exists()  # closed cleanly: one file holds everything
    return path


def copy_workspace(template: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / template.name)
    return folder


def labels_from_votes(store, path, flip: int = 3) -> dict[str, str]:
    """Human labels for every drawn response: the vote, except ``flip`` responses per vote and group where
    the human disagrees (a judge with a few errors)."""
    import json

    from mijabench.analysis import load_judged
    from mijabench.analysis.table import ST_HARMFUL, ST_SAFE
    table = load_judged(store)
    rid, group, status = table.cat("response_id"), table.cat("group"), table.status
    seen: dict[tuple[str, int], int] = {}
    labels = {}
    for r, g, st in zip(rid.values(), group.values(), status, strict=True):
        if st not in (ST_SAFE, ST_HARMFUL):
            continue
        key = (g, int(st))
        seen[key] = seen.get(key, 0) + 1
        safe = (st == ST_SAFE) != (seen[key] <= flip)
        labels[r] = "safe" if safe else "harmful"
    path.write_text("".join(json.dumps({"response_id": r, "label": lab}) + "\n" for r, lab in labels.items()),
                    encoding="utf-8")
    return labels
