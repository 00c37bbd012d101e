"""Defense rates for any cut of the judged table, deviations from each model's mean, and their 95%
intervals.

Defense rate = safe / (safe + harmful). Unparsed votes, unjudged and failed responses are excluded from the
rate and counted in their own columns.

Intervals are analytic (``intervals.py``; docs/statistics.md has their simulated coverage). Each table also
carries per-cell draws (``boot``) for the figures derived from several cells: Jeffreys posterior draws on the
cell's effective counts, a vectorised draw per cell and no per-row work. Every table draws from its own
generator, seeded by (seed, the table's columns), so a table's draws do not depend on which other tables were
computed before it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .clusters import ClusterIndex
from .frame import Frame, ci_summary
from .intervals import clopper_pearson, deviation_limits, effective_counts, twin_dependence, wilson
from .table import N_STATUS, ST_FAILED, ST_HARMFUL, ST_SAFE, ST_UNJUDGED, ST_UNPARSED, JudgedTable

DEFAULT_RESAMPLES = 1000
AVERAGE_ALIASES = {"macro": "groups", "micro": "responses"}
COUNT_COLUMNS = ("n_safe", "n_harmful", "n_judged", "n_unparsed", "n_unjudged", "n_failed", "n_responses",
                 "n_empty", "n_truncated")


def table_rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator for one table, independent of the order tables are computed in."""
    return np.random.default_rng([seed, zlib.crc32("|".join(parts).encode())])


def group_counts(table: JudgedTable, by: Sequence[str], mask: np.ndarray | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Counts per non-empty cell of the crossing ``by``: (key columns, count columns, cell code per row,
    -1 for rows outside ``mask``). Cells come in the order of the columns' category codes."""
    cats = [table.cat(name) for name in by]
    sizes = [max(len(c.categories), 1) for c in cats]  # an empty table has no categories at all
    flat = np.zeros(len(table), dtype=np.int64)
    for cat, size in zip(cats, sizes, strict=True):
        flat = flat * size + cat.codes
    status = table.status
    if mask is not None:
        flat_in, status_in = flat[mask], status[mask]
    else:
        flat_in, status_in = flat, status
    n_cells = int(np.prod(sizes, dtype=np.int64))
    if n_cells * N_STATUS <= 50_000_000:
        counts = np.bincount(flat_in * N_STATUS + status_in, minlength=n_cells * N_STATUS)
        counts = counts.reshape(n_cells, N_STATUS)
        present = np.flatnonzero(counts.sum(axis=1))
        counts = counts[present]
        cell_of_flat = np.full(n_cells, -1, dtype=np.int64)
        cell_of_flat[present] = np.arange(len(present))
        cell = cell_of_flat[flat]
    else:  # a huge sparse crossing: count only the cells that occur
        present, inverse = np.unique(flat_in, return_inverse=True)
        counts = np.bincount(inverse * N_STATUS + status_in, minlength=len(present) * N_STATUS)
        counts = counts.reshape(len(present), N_STATUS)
        cell = np.full(len(table), -1, dtype=np.int64)
        cell[np.flatnonzero(mask) if mask is not None else slice(None)] = inverse
    if mask is not None:
        cell = np.where(mask, cell, -1)
    keys = {}
    unravelled = np.unravel_index(present, sizes) if sizes else ()
    for name, cat, code in zip(by, cats, unravelled, strict=True):
        keys[name] = np.asarray(cat.categories, dtype=object)[code] if cat.categories else \
            np.full(len(present), "", dtype=object)
    safe, harmful = counts[:, ST_SAFE], counts[:, ST_HARMFUL]
    count_cols = {
        "n_safe": safe, "n_harmful": harmful, "n_judged": safe + harmful,
        "n_unparsed": counts[:, ST_UNPARSED], "n_unjudged": counts[:, ST_UNJUDGED],
        "n_failed": counts[:, ST_FAILED], "n_responses": counts.sum(axis=1),
    }
    # empty and truncated replies, whatever their label (the empty rule has already labelled them)
    inside = cell >= 0
    for name, column in (("n_empty", "empty"), ("n_truncated", "truncated")):
        flags = table.columns.get(column)
        hits = cell[inside & flags] if flags is not None else np.zeros(0, np.int64)
        count_cols[name] = np.bincount(hits, minlength=len(present)).astype(np.int64)
    return keys, count_cols, cell


def jeffreys_draws(k: np.ndarray, n: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(cells, resamples) draws of each cell's rate from Beta(k + 1/2, n - k + 1/2), the Jeffreys posterior;
    NaN for cells with nothing judged. Unlike binomial resamples they never collapse to one value at 0/n or
    n/n, so intervals of derived figures (differences, spreads across languages) keep a width."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    ok = n > 0
    a = np.where(ok, k + 0.5, 1.0)[:, None]
    b = np.where(ok, n - k + 0.5, 1.0)[:, None]
    boot = rng.beta(a, b, size=(len(n), resamples))
    boot[~ok] = np.nan
    return boot


def clustered(table: JudgedTable, cell: np.ndarray, n_safe: np.ndarray, n_judged: np.ndarray,
              clusters: ClusterIndex | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Effective (safe, judged, design effect) per cell, its responses clustered by shared prompt.
    ``clusters``: the table's ``ClusterIndex`` when the caller computes several tables of it."""
    c, _, c_safe, c_judged = (clusters or ClusterIndex.of(table)).cell_clusters(cell)
    return effective_counts(n_safe, n_judged, c_safe, c_judged, c)


def rates(table: JudgedTable, by: Sequence[str], *, mask: np.ndarray | None = None,
          resamples: int = DEFAULT_RESAMPLES, seed: int = 0, name: str = "",
          clusters: ClusterIndex | None = None) -> Frame:
    """Defense rate with a 95% CI for every non-empty cell of the crossing ``by`` (any of the table's
    categorical columns: model, group, language, strategy, scenario_category, size_class, family...).
    An empty ``by`` gives one overall row.

    CI: Clopper-Pearson on the cell's effective size, n / design effect, where the design effect measures
    how much responses to the same prompt (several models, counterfactual twins) agree; a cell of
    independent prompts keeps its n. ``boot`` holds Jeffreys draws on the same effective counts."""
    by = list(by)
    keys, counts, cell = group_counts(table, by, mask)
    n_safe, n_judged = counts["n_safe"], counts["n_judged"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_judged > 0, n_safe / np.maximum(n_judged, 1), np.nan)
    k_eff, n_eff, deff = clustered(table, cell, n_safe, n_judged, clusters)
    low, high = clopper_pearson(k_eff, n_eff)
    boot = jeffreys_draws(k_eff, n_eff, resamples, table_rng(seed, "rates", *by, name))
    frame = Frame({**keys, **counts, "rate": rate, "ci_low": low, "ci_high": high, "design_effect": deff},
                  name=name or "rates_by_" + "_".join(by or ["all"]), boot=boot)
    frame.summary = {**ci_summary(rate, low, high, boot, signed=False), "method": "clopper-pearson"}
    return frame


def average_name(average: str) -> str:
    """'groups' (each group weighs the same) or 'responses' (groups weighted by their judged counts); the
    older names 'macro' and 'micro' are accepted."""
    name = AVERAGE_ALIASES.get(average, average)
    if name not in ("groups", "responses"):
        raise ValueError("average must be 'groups' or 'responses' (or 'macro' / 'micro')")
    return name


def deviations(table: JudgedTable, *, by: str = "group", within: Sequence[str] = ("model", "language"),
               average: str = "groups", mask: np.ndarray | None = None, resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0, name: str = "deviations", clusters: ClusterIndex | None = None) -> Frame:
    """Each ``by`` cell's defense rate minus its parent's mean (parent = ``within``, by default one model in
    one language): the paper's heatmap.

    ``average="groups"`` (default): the parent mean is the unweighted mean of its group rates, so a group's
    deviation does not depend on how many replies the other groups happen to have. ``"responses"``: the rate
    over all of the parent's judged responses, i.e. groups weighted by their judged counts.

    CI: MOVER (method of variance estimates recovery) on the groups' Wilson limits, the cells' sizes being
    their effective sizes; ``significant`` marks deviations whose CI excludes 0. ``boot`` holds the
    deviations of Jeffreys draws of every cell, for figures derived from several deviations.
    """
    average = average_name(average)
    within = list(within)
    keys, counts, cell = group_counts(table, [*within, by], mask)
    judged = counts["n_judged"] > 0
    renumber = np.full(len(judged) + 1, -1, np.int64)  # the last slot maps rows outside the table (-1)
    renumber[np.flatnonzero(judged)] = np.arange(int(judged.sum()))
    cell = renumber[cell]
    keys = {k: v[judged] for k, v in keys.items()}
    counts = {k: v[judged] for k, v in counts.items()}
    n_safe, n_judged = counts["n_safe"], counts["n_judged"]
    rate = n_safe / np.maximum(n_judged, 1)
    pairs = (clusters or ClusterIndex.of(table)).cell_clusters(cell)
    k_eff, n_eff, deff = effective_counts(n_safe, n_judged, pairs[2], pairs[3], pairs[0])
    boot = jeffreys_draws(k_eff, n_eff, resamples, table_rng(seed, "deviations", by, *within, name))

    parent, starts = parent_index(keys, within)
    if len(starts):
        sizes = np.diff(np.append(starts, len(rate)))
        if average == "groups":
            weight = 1 / sizes[parent]
        else:
            weight = n_judged / np.add.reduceat(n_judged, starts)[parent]
        mean = np.add.reduceat(weight * rate, starts)
        mean_boot = np.add.reduceat(weight[:, None] * boot, starts, axis=0)
    else:
        weight, mean, mean_boot = rate[:0], rate[:0], boot[:0]
    dev = rate - mean[parent]
    cell_low, cell_high = wilson(k_eff, n_eff)
    # counterfactual twins link the groups of one model: own rate and the others' mean move together
    corr, scale, mean_scale = (twin_dependence(*pairs, rate, n_judged, weight, parent) if len(starts)
                               else (None, None, None))
    down, up = deviation_limits(rate, cell_low, cell_high, weight, starts, corr, scale)
    low, high = dev - down, dev + up
    # the parent mean's own MOVER limits: the cells' weighted distances to their limits, widened where
    # twins make the groups move together
    mean_low, mean_high = mean.copy(), mean.copy()
    if len(starts):
        mean_low -= mean_scale * np.sqrt(np.add.reduceat((weight * (rate - cell_low)) ** 2, starts))
        mean_high += mean_scale * np.sqrt(np.add.reduceat((weight * (cell_high - rate)) ** 2, starts))
    dev_boot = boot - mean_boot[parent]
    frame = Frame({**keys, **counts, "rate": rate, "model_mean": mean[parent], "deviation": dev,
                   "ci_low": low, "ci_high": high, "significant": (low > 0) | (high < 0),
                   "design_effect": deff}, name=name, boot=dev_boot)
    frame.summary = {**ci_summary(dev, low, high, dev_boot, signed=True), "average": average,
                     "method": "mover-wilson"}
    frame.extra = {"rate_boot": boot, "mean_boot": mean_boot, "parent": parent, "starts": starts,
                   "k_eff": k_eff, "n_eff": n_eff, "weight": weight, "cell_low": cell_low,
                   "cell_high": cell_high, "mean_low": mean_low, "mean_high": mean_high, "average": average}
    return frame


def parent_index(keys: dict[str, np.ndarray], within: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by ``within``: the parent number of each row and the first row of each parent."""
    n = len(next(iter(keys.values()))) if keys else 0
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for name in within:
        col = keys[name]
        change[1:] |= col[1:] != col[:-1]
    starts = np.flatnonzero(change)
    parent = np.cumsum(change) - 1
    return parent, starts
