"""The Python API: one workspace, the pipeline's verbs as methods (docs/python-api.md).

``Workspace`` is a thin layer over the library functions the command line calls (``build_benchmark``,
``run_items``, ``judge_responses``, ``write_report``, ``compare``, ``import_corpus``, ``export_all``): each
method opens the workspace's store, calls one of them and closes it again, so a method is the command of
the same name, with the same checks, resume and results, minus the printing. What it returns is the
library's own result object (``BuildReport``, ``RunStats`` per model, ``JudgeRun``, ``ReportResult``,
``Comparison``, ``ImportResult``, the exported files).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MijaError
from .store import Store, workspace_path

if TYPE_CHECKING:  # the stages are imported when a method runs: `import mijabench` stays light
    from .analysis import Analysis, JudgedTable
    from .analysis.compare import Comparison
    from .backends.base import Backend
    from .backends.registry import ModelConfig
    from .bench import BuildReport
    from .judge import JudgeRun
    from .records import BenchmarkItem, Scenario, Seed
    from .report import ReportResult
    from .run import RunStats
    from .sources import ImportResult

RULE_JUDGE = "rules:refusal-v1"  # == judge.RULES_JUDGE, spelled out so this module imports nothing heavy


class Workspace:
    """A workspace folder and its store. ``Workspace()`` is ``$MIJABENCH_WORKSPACE`` or
    ``./mijabench-workspace``, as on the command line; nothing is created until a method writes."""

    def __init__(self, path: str | Path | None = None):
        self.path = workspace_path(path)

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    @contextmanager
    def store(self, *, create: bool = False) -> Iterator[Store]:
        """The open store, for reading records directly (``store.items(bench)``, ``store.responses()``...).
        Without ``create`` a missing workspace is an error rather than a new empty one."""
        with Store(self.path, create=create) as store:
            yield store

    def build(self, bench: str, seeds: str | Path | Sequence[Seed] = "demo", *,
              rewriter: str | ModelConfig = "offline", scenarios: str | Sequence[Scenario] = "builtin",
              language: str | None = None, strategies: str | dict[str, float] = "uniform",
              rng_seed: int = 0, counterfactual: bool = False, **options: Any) -> BuildReport:
        """``mijabench bench build``: one attack prompt per seed, stored as benchmark ``bench``.

        ``seeds``: ``"demo"``, a seed file (JSONL/CSV/Parquet), ``"toxigen"``/``"toxsyn"`` (the hub) or Seed
        records; ``language`` keeps one language. ``rewriter``: ``"offline"`` (no model), a model
        string or a ModelConfig. ``scenarios``: ``"builtin"``, ``"store"`` (built by ``mijabench scenarios
        build``) or Scenario records. ``options`` go to ``bench.build_benchmark`` (max_attempts,
        dedup_threshold, max_words, keep_truncated, concurrency, policy, backend, ...)."""
        from .bench import OFFLINE_REWRITER, build_benchmark
        from .bench.datafiles import check_scenario_pool, scenario_pool

        seed_list = _seeds(seeds, language)
        if rewriter == "offline":
            rewriter = OFFLINE_REWRITER
        elif isinstance(rewriter, str):
            from .backends.registry import parse_model
            rewriter = parse_model(rewriter)
        languages = {s.language for s in seed_list}
        if not bench or not bench.strip():  # these before the workspace is created
            raise MijaError("a benchmark needs a name")
        if isinstance(scenarios, str):
            check_scenario_pool(scenarios)
        with self.store(create=True) as store:
            pool = (scenario_pool(scenarios, store, languages) if isinstance(scenarios, str)
                    else list(scenarios))
            return build_benchmark(store, seed_list, pool, rewriter, bench=bench, rng_seed=rng_seed,
                                   strategies=strategies, counterfactual=counterfactual, **options)

    def run(self, bench: str, models: str | ModelConfig | Sequence[str | ModelConfig], *,
            items: Sequence[BenchmarkItem] | None = None, backends: dict[str, Backend] | None = None,
            concurrency: int | None = None, progress: bool | str = False,
            allow_model_change: bool = False, **settings: Any) -> dict[str, RunStats]:
        """``mijabench run``: every item of benchmark ``bench`` (or the given ``items``, stored under that
        name) to every model; resumable. ``models``: model strings, YAML files or ModelConfigs; ``settings``
        override their sampling settings (max_tokens, temperature, top_p, seed, system_prompt).
        ``backends`` supplies ready Backend objects by model name. Returns RunStats per model name."""
        from .run import run_items

        configs = [_model(m, settings) for m in ([models] if isinstance(models, str | Path) or
                                                   not isinstance(models, Sequence) else models)]
        if items is not None and not items:  # before the workspace is created
            raise MijaError(f"benchmark '{bench}' has no items")
        with self.store(create=items is not None) as store:
            if items is None:
                if bench not in store.benches():
                    known = ", ".join(store.benches()) or "none yet"
                    raise MijaError(f"no benchmark '{bench}' in {store.path} (benchmarks: {known})")
                items = store.items(bench)
            if not items:
                raise MijaError(f"benchmark '{bench}' has no items")
            return run_items(store, items, configs, concurrency=concurrency, bench=bench, backends=backends,
                             progress=progress, allow_model_change=allow_model_change)

    def judge(self, judges: str | Sequence[Any] = (RULE_JUDGE,), *, bench: str | None = None,
              models: Sequence[str] | None = None, **options: Any) -> JudgeRun:
        """``mijabench judge``: every answered response not yet judged by each judge. ``judges``: judge
        strings (``rules:refusal-v1``, a model string, a plugin's ``NAME:TARGET``), ModelConfigs or
        Backends; ``models`` limits it to responses of those target models. ``options`` go to
        ``judge.judge_responses`` (concurrency, max_tokens, policy, keep_stale)."""
        from .judge import judge_responses

        judges = [judges] if isinstance(judges, str) else list(judges)
        with self.store() as store:
            return judge_responses(store, judges, bench=bench, target_models=models, **options)

    def report(self, out: str | Path, *, judges: Sequence[str] | None = None, bench: str | None = None,
               models: Sequence[str] | None = None, **options: Any) -> ReportResult:
        """``mijabench report``: the HTML report, tables and plots in folder ``out``. ``judges`` are the
        voters (required when the store holds verdicts of several judges). ``options`` go to
        ``report.write_report`` (resamples, seed, average, examples_per_cell, empty_as, labels, ...)."""
        from .paths import check_output
        from .report import write_report

        check_output(out, folder=True)  # before anything is read, as the command does
        with self.store() as store:
            return write_report(store, out, judges=_names(judges), bench=bench, models=_names(models),
                                **options)

    def compare(self, a: str, b: str, *, judges: Sequence[str] | None = None, threshold: float = 10.0,
                **options: Any) -> Comparison:
        """``mijabench compare``: group by group, paired on shared prompts, a (baseline) against b (model
        names or run ids). ``result.failures`` lists what fails the gate (``result.exit_code`` is 1 then).
        ``options`` go to ``analysis.compare.compare`` (bench, max_spread, resamples, seed, empty_as)."""
        from .analysis.compare import compare

        with self.store() as store:
            return compare(store, a, b, judges=_names(judges), threshold=threshold, **options)

    def import_corpus(self, source: str | Path, **options: Any) -> ImportResult:
        """``mijabench import``: a judged corpus (the published layouts, a generic table, a store export, or
        with ``hub=True`` a hub dataset) as items, responses and verdicts. Everything is read and checked
        before the workspace is touched. ``options`` are those of ``sources.prepare_import`` (bench,
        columns, language, judge_prefix, default_judge, split, config, from_disk)."""
        from .sources import prepare_import, write_import

        prepared = prepare_import(source, **options)
        with self.store(create=True) as store:
            return write_import(store, prepared)

    def export(self, out: str | Path, fmt: str = "parquet") -> list[Path]:
        """``mijabench store export``: every table as Parquet (or ``fmt="jsonl"``) in folder ``out``; what
        ``import_corpus`` reads back."""
        from .store import export_all

        with self.store() as store:
            return export_all(store, out, fmt)

    def judged(self, *, judges: Sequence[str] | None = None, bench: str | None = None,
               models: Sequence[str] | None = None, **options: Any) -> JudgedTable:
        """One row per stored response with its item's fields and the vote of ``judges`` (the table every
        analysis reads). ``options`` go to ``analysis.load_judged`` (empty_as, allow_even_vote)."""
        from .analysis import load_judged

        with self.store() as store:
            return load_judged(store, judges=_names(judges), bench=bench, models=_names(models), **options)

    def analyze(self, *, judges: Sequence[str] | None = None, bench: str | None = None,
                models: Sequence[str] | None = None, resamples: int = 1000, seed: int = 0,
                average: str = "groups") -> Analysis:
        """The figures of the report without writing it: ``analysis.rates["group"]`` and so on."""
        from .analysis import analyze

        return analyze(self.judged(judges=judges, bench=bench, models=models), resamples=resamples, seed=seed,
                       average=average)


def _names(values: Sequence[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    return [values] if isinstance(values, str) else list(values)


def _model(model: str | Path | ModelConfig, settings: dict[str, Any]) -> ModelConfig:
    from .backends.registry import parse_model, with_settings

    if isinstance(model, str | Path):
        return parse_model(str(model), **settings)
    return with_settings(model, **settings)


def _seeds(seeds: str | Path | Sequence[Seed], language: str | None) -> list[Seed]:
    from .sources import load_source

    if isinstance(seeds, str | Path):  # "demo", a hub source or a file: what `seeds build --source` reads
        return load_source(str(seeds), language=language)
    return [s for s in seeds if language is None or s.language == language]

