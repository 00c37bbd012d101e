"""Seeds and benchmarks from the Hugging Face hub, through `datasets` (imported only when a hub source is
used).

Opening a dataset and mapping its rows are separate steps: ``open_dataset`` talks to the hub (or reads a
copy saved with ``Dataset.save_to_disk``), and the mapping functions take any ``datasets.Dataset`` or
iterable of dicts. The same mapping code therefore runs on the hub and on small local copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MijaError
from ..records import BenchmarkItem, Seed
from .benchmark import PUBLISHED_LAYOUT, iter_items
from .filters import parse_filters
from .seedmap import LoadStats, SeedColumns, iter_seeds
from .tables import rows_of


@dataclass(frozen=True)
class HubSeedSource:
    """A seed dataset on the hub and how its columns map onto a Seed."""

    repo: str
    config: str | None
    split: str
    columns: SeedColumns
    keep: tuple[str, ...]  # filters that select the hateful rows


TOXIGEN = HubSeedSource("toxigen/toxigen-data", "train", "train",
                        SeedColumns(text="generation", group="group", language="en"), ("prompt_label == 1",))
TOXSYN = HubSeedSource("ToxSyn/ToxSyn-PT", None, "train",
                       SeedColumns(text="text", group="group", language="pt"), ("is_toxic == 1",))
HUB_SEED_SOURCES = {"toxigen": TOXIGEN, "toxsyn": TOXSYN}
BENCHMARK_REPO = "AKCIT/mijabench"
ALIGN_REPO = "AKCIT/mijabench_align"


def _datasets():
    try:
        import datasets
    except ImportError:
        raise MijaError("hub sources need the `datasets` package: pip install 'mijabench[hub]'") from None
    return datasets


SEEDS_OFFLINE_HINT = "or pass a local copy with --from-disk DIR or a local file with --source FILE"
# `bench build --seeds toxigen` has neither option: its seeds come from a file, or from `seeds build`
BENCH_SEEDS_OFFLINE_HINT = ("or pass a local seed file with --seeds FILE (`mijabench seeds build "
                            "--source FILE or --from-disk DIR` writes one)")
BENCHMARK_OFFLINE_HINT = "or pass a local copy of the benchmark (JSONL/CSV/Parquet) with --prompts-from FILE"


def open_dataset(repo: str, config: str | None = None, split: str | None = "train", *,
                 offline_hint: str = SEEDS_OFFLINE_HINT,
                 from_disk: str | Path | None = None) -> Any:
    """Load ``repo`` from the hub, or from ``from_disk`` (a folder written by ``save_to_disk``). Returns a
    ``datasets.Dataset``; a ``DatasetDict`` is narrowed to ``split``."""
    datasets = _datasets()
    if from_disk is not None:
        try:
            data = datasets.load_from_disk(str(from_disk))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise MijaError(f"{from_disk}: not a dataset folder written by save_to_disk ({exc})") from None
    else:
        try:
            data = datasets.load_dataset(repo, config, split=split)
        except Exception as exc:  # any failure to fetch becomes one actionable line
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise MijaError(
                f"could not reach the Hugging Face hub for '{repo}' ({reason}); check the network and, "
                f"for gated datasets such as ToxiGen, HF_TOKEN; {offline_hint}") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise MijaError(f"{from_disk or repo}: no split '{split}' (splits: {', '.join(data)})")
        data = data[split]
    return data


# -- mapping (any Dataset or iterable of dicts) ------------------------------------------------------------
def seeds_from_dataset(data: Iterable[dict[str, Any]], spec: HubSeedSource, *,
                       language: str | None = None, where: Iterable[str] = (),
                       stats: LoadStats | None = None) -> list[Seed]:
    """Map a seed dataset with ``spec``'s columns, keeping only the rows ``spec.keep`` selects plus any
    extra ``where`` filters. ``language`` may only confirm the source's own language."""
    columns = spec.columns
    if language and language != columns.language:
        raise MijaError(f"{spec.repo} holds '{columns.language}' seeds; it cannot give --language {language}")
    filters = parse_filters([*spec.keep, *where])
    origin = f"{spec.repo}[{spec.split}]"
    return list(iter_seeds(rows_of(data, origin), columns, filters, source_name=spec.repo, stats=stats))


def items_from_dataset(data: Iterable[dict[str, Any]], repo: str = BENCHMARK_REPO,
                       split: str = "train") -> Iterator[BenchmarkItem]:
    """Map the published benchmark or the alignment corpus (same columns, the corpus may add response and
    label columns, which are kept in provenance) onto BenchmarkItem records. To load the corpus's responses
    and verdicts as records, use ``sources.importer.import_corpus`` (`mijabench import`)."""
    source = rows_of(data, f"{repo}[{split}]")
    return iter_items(source, PUBLISHED_LAYOUT, dataset=repo)


# -- the named sources -------------------------------------------------------------------------------------
def load_hub_seeds(name: str, *, language: str | None = None, where: Iterable[str] = (),
                   from_disk: str | Path | None = None, stats: LoadStats | None = None,
                   offline_hint: str = SEEDS_OFFLINE_HINT) -> list[Seed]:
    """Seeds of a named hub source ('toxigen' or 'toxsyn'); ``offline_hint`` ends the error when the hub
    cannot be reached (the options of the command that asked)."""
    if name not in HUB_SEED_SOURCES:
        raise MijaError(f"unknown hub source '{name}' (known: {', '.join(HUB_SEED_SOURCES)})")
    spec = HUB_SEED_SOURCES[name]
    data = open_dataset(spec.repo, spec.config, spec.split, from_disk=from_disk, offline_hint=offline_hint)
    return seeds_from_dataset(data, spec, language=language, where=where, stats=stats)


def load_hub_benchmark(repo: str = BENCHMARK_REPO, split: str = "train", *,
                       from_disk: str | Path | None = None) -> list[BenchmarkItem]:
    """The published benchmark (or, with ``repo=ALIGN_REPO``, the alignment corpus) as BenchmarkItems."""
    data = open_dataset(repo, None, split, from_disk=from_disk, offline_hint=BENCHMARK_OFFLINE_HINT)
    return list(items_from_dataset(data, repo, split))
