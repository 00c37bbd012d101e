"""Which benchmark items an Inspect run of MiJaBench covers: where they come from and the task's filters.

A benchmark is named the way `mijabench run --bench` and `audit` name it: a JSONL/CSV/Parquet file, a
benchmark in a workspace, or a dataset on the Hugging Face hub (``AKCIT/mijabench``, the published one).
Nothing here imports Inspect.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import MijaError
from ...records import BenchmarkItem
from ...sources.seedmap import normalise_language
from ...taxonomy import load_taxonomy

PUBLISHED = "AKCIT/mijabench"


def load_items(benchmark: str, workspace: str | Path | None = None, split: str = "train"
               ) -> tuple[str, str, list[BenchmarkItem]]:
    """(name, location, items) of ``benchmark``: a file if one exists at that path, else a benchmark of that
    name in the workspace, else (a name with a slash) a hub dataset."""
    path = Path(benchmark)
    if path.is_file():
        from ...sources import load_benchmark_file
        return path.stem, str(path.resolve()), load_benchmark_file(path)
    from ...store.core import DB_NAME, workspace_path
    ws = workspace_path(workspace)
    known: list[str] = []
    db = ws if ws.suffix in (".sqlite", ".db") else ws / DB_NAME
    if db.is_file():
        from ...store import Store
        with Store(ws, create=False) as store:
            known = list(store.benches())
            if benchmark in known:
                return benchmark, f"{store.path}#{benchmark}", store.items(benchmark)
    if "/" in benchmark and not path.exists():
        from ...sources.hub import load_hub_benchmark
        return benchmark.rsplit("/", 1)[-1], f"hf:{benchmark}[{split}]", load_hub_benchmark(benchmark, split)
    raise MijaError(f"benchmark '{benchmark}': no such file, no benchmark of that name in {db} "
                    f"(benchmarks: {', '.join(known) or 'none'}), and not a hub dataset id (OWNER/NAME)")


def names(value: str | Iterable[str] | None) -> list[str]:
    """A task parameter given as 'a,b' (the command line) or as a list (Python, YAML)."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def select_items(items: list[BenchmarkItem], *, language: str | None = None, groups: Any = None,
                 strategies: Any = None, per_cell: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    """The items of ``language``, ``groups`` and ``strategies`` (published names and aliases accepted), then
    at most ``per_cell`` per (language, group, strategy) cell, drawn as `audit --sample-per-cell` draws."""
    tax = load_taxonomy()
    language = normalise_language(language, field="language") if language else None
    wanted_groups = {tax.check_group(g, field="groups") for g in names(groups)}
    wanted_strategies = {tax.check_strategy(s, field="strategies") for s in names(strategies)}
    kept = [i for i in items if (language is None or i.language == language)
            and (not wanted_groups or i.group in wanted_groups)
            and (not wanted_strategies or i.strategy in wanted_strategies)]
    if per_cell is not None:
        if int(per_cell) < 1:
            raise MijaError(f"per_cell must be at least 1, got {per_cell}")
        from ...audit.pipeline import stratified_sample
        kept = stratified_sample(kept, int(per_cell), seed=int(seed))
    if not kept:
        raise MijaError("no benchmark item matches the task's language, groups and strategies")
    return kept


def sample_metadata(item: BenchmarkItem, bench: str) -> dict[str, Any]:
    """What each Inspect sample carries: enough to rebuild the item exactly when its log is imported.
    ``pair_id`` is the counterfactual family (twins share it; empty for ordinary items)."""
    return {"item_id": item.id, "bench": bench, "language": item.language, "group": item.group,
            "strategy": item.strategy, "scenario_category": item.scenario_category,
            "scenario_text": item.scenario_text, "seed_text": item.seed_text, "seed_id": item.seed_id,
            "pair_id": item.pair_id}
