"""Everything the report shows, computed from one judged table: ``analyze(table)`` returns an ``Analysis``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .clusters import ClusterIndex
from .disparity import cross_language, disparity, pairwise_tests, scaling
from .frame import Frame
from .paired import paired_analysis
from .rates import DEFAULT_RESAMPLES, average_name, deviations, group_counts, rates
from .table import JudgedTable

# name -> the crossing of a plain rate table in the analysis
RATE_CUTS: dict[str, tuple[str, ...]] = {
    "overall": (),
    "by_model": ("model",),
    "by_language": ("language",),
    "by_model_language": ("model", "language"),
    "by_language_group": ("language", "group"),
    "by_strategy": ("strategy",),
    "by_model_strategy": ("model", "strategy"),
    "by_scenario_category": ("scenario_category",),
    "by_model_scenario_category": ("model", "scenario_category"),
    "by_size_class": ("size_class",),
    "by_family_size_class": ("family", "size_class"),
    "by_model_language_strategy": ("model", "language", "strategy"),
}


@dataclass
class Analysis:
    tables: dict[str, Frame]
    counts: dict[str, int]
    resamples: int
    seed: int
    average: str
    model_meta: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # the table's: voters, empty_as, targets (see analysis.table)

    def __getitem__(self, name: str) -> Frame:
        return self.tables[name]

    def ci_summary(self) -> Frame:
        """One row per table: its CI width figures and, for signed tables, zero-crossing and sign flips."""
        names, cols = [], {k: [] for k in ("cells", "mean_ci_width", "max_ci_width", "share_ci_crosses_zero",
                                           "sign_flip_share")}
        for name, frame in self.tables.items():
            if not frame.summary:
                continue
            names.append(name)
            for k in cols:
                value = frame.summary.get(k)
                cols[k].append(np.nan if value is None else value)
        return Frame({"table": np.asarray(names, dtype=object),
                      **{k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}}, name="ci_summary")


def analyze(table: JudgedTable, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
            average: str = "groups") -> Analysis:
    """Rates for every cut in ``RATE_CUTS``, the deviation heatmap data, disparity, pairwise and paired
    tests, the cross-language comparison and the scaling table, all with 95% CIs. ``average``: the model
    mean the deviations are taken from, "groups" (each group weighs the same) or "responses"."""
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    average = average_name(average)
    clusters = ClusterIndex.of(table)  # sorted once, shared by every table
    tables = {name: rates(table, cut, resamples=resamples, seed=seed, name=name, clusters=clusters)
              for name, cut in RATE_CUTS.items()}
    dev = deviations(table, average=average, resamples=resamples, seed=seed, clusters=clusters)
    disp = disparity(dev, seed=seed)
    meta = model_metadata(table)
    scale = scaling(disp, meta)
    tables["deviations"] = dev
    tables["disparity"] = disp
    pairs = pairwise_tests(dev)
    tables["pairwise_tests"] = pairs
    tables["paired"] = paired_analysis(table, pairs, resamples=resamples, seed=seed)
    tables["cross_language"] = cross_language(dev)
    tables["scaling"] = scale
    _, c, _ = group_counts(table, [])
    counts = {k.removeprefix("n_"): int(v[0]) if len(v) else 0 for k, v in c.items()}
    analysis = Analysis(tables, counts, resamples, seed, average, meta, dict(table.meta))
    tables["ci_summary"] = analysis.ci_summary()
    return analysis


def model_metadata(table: JudgedTable) -> dict[str, tuple[str, str, float]]:
    """model -> (family, size class, params_b), from the first row of each model."""
    model = table.cat("model")
    if not len(model):
        return {}
    _, first = np.unique(model.codes, return_index=True)
    fam, size = table.cat("family").take(first).values(), table.cat("size_class").take(first).values()
    params = table.values("params_b")[first]
    return {model.categories[model.codes[i]]: (f, s, float(p))
            for i, f, s, p in zip(first, fam, size, params, strict=True)}
