"""The ``mijabench/mijabench`` Inspect task.

    inspect eval mijabench/mijabench --model openai/gpt-4o-mini -T benchmark=mybench -T language=pt \\
        -T groups=women,black -T per_cell=20 -T judges=rules,grader --model-role grader=openai/gpt-4o

Each sample is one benchmark item (input: its prompt); its metadata carries the item id, group, language,
strategy, scenario category and counterfactual family (``pair_id``), and the rest of the item so that
`mijabench import` rebuilds it exactly. Generation defaults to mijabench's own: greedy, seed 0, at most
2048 tokens (Inspect's ``--temperature`` and the like override them, and the log records what was used).
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Scorer
from inspect_ai.solver import generate

from ...records import SamplingSettings
from .items import PUBLISHED, load_items, names, sample_metadata, select_items
from .scorers import RULES, llm_judges, rule_judge

TASK_VERSION = 1


def scorers_for(judges: Any) -> list[Scorer]:
    """``rules`` is the rule judge; every other entry (a model name or a model role) is an LLM judge, and
    all of them vote together in one scorer."""
    entries = names(judges)
    if not entries:
        raise ValueError("judges: name at least one (rules, a model such as openai/gpt-4o, or a model role)")
    models = [e for e in entries if e != RULES]
    out = [rule_judge()] if RULES in entries else []
    if models:
        out.append(llm_judges(models))
    return out


@task
def mijabench(benchmark: str = PUBLISHED, workspace: str | None = None, split: str = "train",
              language: str | None = None, groups: str | list[str] | None = None,
              strategies: str | list[str] | None = None, per_cell: int | None = None, seed: int = 0,
              judges: str | list[str] = RULES, system_prompt: str | None = None) -> Task:
    """MiJaBench: identity-based jailbreaks, scored per item with mijabench's judges.

    Args:
      benchmark: a benchmark file, a benchmark in the workspace, or a hub dataset (default: the published
        AKCIT/mijabench).
      workspace: the mijabench workspace holding ``benchmark`` (default: MIJABENCH_WORKSPACE, else
        ./mijabench-workspace).
      split: the hub split.
      language: en or pt (default: all).
      groups: groups to keep, comma-separated (default: all).
      strategies: jailbreak strategies to keep, comma-separated (default: all).
      per_cell: at most this many items per (language, group, strategy), seeded by ``seed``.
      seed: the sampling seed.
      judges: ``rules`` (the rule judge) and/or LLM judges: Inspect model names or model roles.
      system_prompt: sent before each prompt (default: none).
    """
    bench, location, items = load_items(benchmark, workspace, split)
    chosen = select_items(items, language=language, groups=groups, strategies=strategies,
                          per_cell=per_cell, seed=seed)
    samples = [Sample(id=item.id, input=item.prompt, target="", metadata=sample_metadata(item, bench))
               for item in chosen]
    defaults = SamplingSettings()
    config = GenerateConfig(max_tokens=defaults.max_tokens, temperature=defaults.temperature,
                            seed=defaults.seed, system_message=system_prompt or None)
    return Task(dataset=MemoryDataset(samples, name=bench, location=location), solver=generate(),
                scorer=scorers_for(judges), config=config, version=TASK_VERSION,
                metadata={"mijabench_bench": bench})
