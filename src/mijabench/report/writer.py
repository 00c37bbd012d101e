"""``write_report``: the judged store in, a folder out: ``report.html`` (self-contained), ``tables/*.csv`` and
``tables/*.parquet`` for every table, ``plots/*.svg`` for every plot.

Each file is written under a temporary name and renamed, so an interrupted report never leaves a
half-written file. Every string written passes through the secret scrubber as a last line of defence (the
store already keeps secrets out).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ..analysis import DEFAULT_RESAMPLES, Analysis, Frame, analyze, load_judged
from ..analysis.correction import Correction, corrected_rates
from ..analysis.table import DEFAULT_EMPTY_RULE, JudgedTable
from ..errors import MijaError
from ..judge.validate import HumanLabels, load_human_labels
from ..paths import check_output
from ..store import Store
from ..store.secrets import scrub_text, secret_values
from ..taxonomy import load_taxonomy
from . import context, page, plots

MIN_HEATMAP_LIMIT = 0.05  # the colour scale spans at least +-5 points, so noise is not painted dark


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    tables: dict[str, list[Path]] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    analysis: Analysis | None = None
    banners: list[str] = field(default_factory=list)
    correction: Correction | None = None  # with labels: rates corrected for judge error


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _scrubbed(frame: Frame, secrets: list[str]) -> Frame:
    if not secrets:
        return frame
    cols = {k: (np.asarray([scrub_text(str(v), secrets) if v is not None else None for v in col.tolist()],
                           dtype=object) if col.dtype == object else col) for k, col in frame.columns.items()}
    return Frame(cols, frame.name)


def _csv_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(frame: Frame, path: Path) -> None:
    """Plain CSV with a header row; missing values empty (Python's csv: no pyarrow start-up cost)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(frame.names)
        cols = [col.tolist() for col in frame.columns.values()]
        writer.writerows([_csv_value(v) for v in row] for row in zip(*cols, strict=True))


def write_tables(analysis: Analysis, folder: Path) -> dict[str, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    secrets = secret_values()
    written = {}
    for name, frame in analysis.tables.items():
        frame = _scrubbed(frame, secrets)
        paths = [folder / f"{name}.csv", folder / f"{name}.parquet"]
        tmp_csv, tmp_pq = (p.with_name(p.name + ".part") for p in paths)
        write_csv(frame, tmp_csv)
        pq.write_table(frame.to_arrow(), tmp_pq)
        os.replace(tmp_csv, paths[0])
        os.replace(tmp_pq, paths[1])
        written[name] = paths
    return written


def heatmap_limit(analysis: Analysis | dict[str, Frame]) -> float:
    dev = analysis["deviations"]["deviation"]
    finite = np.abs(dev[np.isfinite(dev)])
    return max(MIN_HEATMAP_LIMIT, float(finite.max()) if finite.size else 0.0)


def _plot_layout(tables: Analysis | dict[str, Frame]
                 ) -> tuple[list[str], dict[str, list[str]], float, list[str]]:
    """What the plots are drawn with besides the tables: the models in order, each language's groups in
    order, the heatmaps' colour limit, the size classes in order."""
    tax = load_taxonomy()
    dev = tables["deviations"]
    languages = [lang for lang in tax.languages if lang in set(dev["language"].tolist())]
    models_order = list(dict.fromkeys(tables["by_model"]["model"].tolist()))
    return (models_order, {lang: page.group_order(dev, lang) for lang in languages}, heatmap_limit(tables),
            [sc.id for sc in tax.size_classes])


def _analysed(store: Store, *, judges: list[str] | None, bench: str | None, models: list[str] | None,
              resamples: int, seed: int, average: str, empty_as: str, allow_even_vote: bool,
              labels: HumanLabels | str | Path | None, snapshot: bool
              ) -> tuple[JudgedTable, Analysis, Correction | None]:
    """The judged table, its analysis and, with human labels, the rates corrected for judge error."""
    table = load_judged(store, judges=judges, bench=bench, models=models, empty_as=empty_as,
                        allow_even_vote=allow_even_vote, snapshot=snapshot)
    judges = list(table.meta["voters"].names)
    if not len(table):
        where = f" for benchmark '{bench}'" if bench else ""
        raise MijaError(f"nothing to report: no stored responses{where}")
    analysis = analyze(table, resamples=resamples, seed=seed, average=average)
    if analysis.counts["judged"] == 0:
        raise MijaError(f"nothing to report: none of the {len(table):,} responses has a safe/harmful verdict "
                        "yet (run `mijabench judge` first)")
    correction = None
    if labels is not None:  # checked before the first write: a bad label file leaves nothing behind
        if not isinstance(labels, HumanLabels):
            labels = load_human_labels(labels)
        where = f"the {len(table):,} responses analysed from {store.path}"
        from ..audit.budgeted import load_record, record_path
        plan = load_record(store)
        if plan is None:
            correction = corrected_rates(table, labels, resamples=resamples, seed=seed, where=where)
        else:  # a budgeted audit: intervals valid under its stopping rule (analysis.budget_correction)
            if sorted(plan["voters"]) != sorted(judges):
                raise MijaError(f"the budgeted audit recorded in {record_path(store)} voted with "
                                f"{', '.join(plan['voters'])}; report its corrected rates with the same "
                                "--judge (or delete the record if the workspace now holds a full audit)")
            from ..analysis.budget_correction import budgeted_correction
            plan["path"] = str(record_path(store))
            correction = budgeted_correction(table, labels, plan, resamples=resamples, seed=seed, where=where)
        analysis.tables["corrected_rates"] = correction.rates
        analysis.tables["judge_accuracy"] = correction.accuracy
    return table, analysis, correction


def write_report(store: Store, out_dir: str | Path, *, judges: list[str] | None = None,
                 bench: str | None = None, models: list[str] | None = None,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 average: str = "groups", examples_per_cell: int = 2, demo: bool | None = None,
                 title: str = "mijabench: demographic safety report", empty_as: str = DEFAULT_EMPTY_RULE,
                 allow_even_vote: bool = False,
                 labels: HumanLabels | str | Path | None = None, budget: Any = None,
                 snapshot: bool = False) -> ReportResult:
    """Analyse the store's judged responses and write the report folder. ``judges`` are the voters (see
    ``analysis.voters``); ``empty_as`` is how empty replies count (``analysis.table.EMPTY_RULES``). ``demo``
    forces the demo banner on (True) or off (False); None detects it from the seeds, items and runs.
    ``labels`` (human labels, as `judge validate` reads them) adds the rates corrected for judge error; a
    label for a response outside the analysed selection is an input error raised before anything is
    written. ``snapshot``: keep the judged table beside the store and read it from there while the store is
    unchanged (``analysis.snapshot``)."""
    if resamples < 1:
        raise MijaError(f"--resamples must be at least 1, got {resamples}")
    check_output(out_dir, folder=True)
    try:
        table, analysis, correction = _analysed(
            store, judges=judges, bench=bench, models=models, resamples=resamples, seed=seed, average=average,
            empty_as=empty_as, allow_even_vote=allow_even_vote, labels=labels, snapshot=snapshot)
    except Exception:
        store.wait_checked()  # a damaged file explains a failure better than the query that met it
        raise
    store.wait_checked()  # a damage check the command runs aside (Store's check_aside) passed: now write
    voters = table.meta["voters"]
    judges = list(voters.names)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    table_paths = write_tables(analysis, out / "tables")
    banners = context.banners(store, table, demo)
    judge_list = context.judges_used(store, judges, table)
    examples = context.pick_examples(store, table, examples_per_cell, seed, judges)
    runs, targets = context.provenance(store), context.targets(store, table)
    models_order, groups_by_language, limit, size_order = _plot_layout(analysis)
    used_models = set(models_order)
    models_used = [m for m in store.models() if m["name"] in used_models]
    # the plots carry model and group names as text: scrubbed like every other file the report writes
    secrets = secret_values()
    svgs = {name: scrub_text(data.decode("utf-8"), secrets).encode("utf-8")
            for name, data in plots.all_plots(analysis, models_order, groups_by_language, limit,
                                              size_order).items()}
    plot_paths = {}
    for name, data in svgs.items():
        plot_paths[name] = out / "plots" / f"{name}.svg"
        _write_bytes(plot_paths[name], data)
    subtitle = (f"{len(table):,} responses from {len(models_order)} models; vote: {voters.describe()}; "
                f"benchmark: {bench or 'all items'}; "
                f"{resamples:,} draws for derived intervals and tests, seed {seed}; generated "
                f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    html = page.render(page.PageInput(
        analysis=analysis, plots=svgs, examples=examples, banners=banners, runs=runs, judges=judge_list,
        targets=targets, models=models_used, title=title, subtitle=subtitle, heatmap_limit=limit,
        budget=budget))
    html_path = out / "report.html"
    _write_bytes(html_path, scrub_text(html).encode("utf-8"))
    return ReportResult(out, html_path, table_paths, plot_paths, analysis, banners, correction)
