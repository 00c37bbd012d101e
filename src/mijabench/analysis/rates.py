"""Defense rates for any cut of the judged table, deviations from each model's mean, and their bootstrap
intervals.

Defense rate = safe / (safe + harmful). Unparsed votes, unjudged and failed responses are excluded from the
rate and counted in their own columns.

Bootstrap: resampling the n judged prompts of a cell with replacement and counting the safe ones is the same
as drawing the safe count from Binomial(n, safe/n), because each prompt's outcome is 0 or 1. So a cell's
1,000 resamples are 1,000 binomial draws on its counts: no per-row work, and the same seed gives the same
intervals. Every table draws from its own generator, seeded by (seed, the table's columns), so a table's
intervals do not depend on which other tables were computed before it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .frame import Frame, ci_summary, percentile_ci
from .table import N_STATUS, ST_FAILED, ST_HARMFUL, ST_SAFE, ST_UNJUDGED, ST_UNPARSED, JudgedTable

DEFAULT_RESAMPLES = 1000
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


def binomial_rates(n_safe: np.ndarray, n_judged: np.ndarray, resamples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(cells, resamples) bootstrap defense rates; NaN for cells with nothing judged."""
    n = n_judged.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, n_safe / np.maximum(n, 1), 0.0)
        draws = rng.binomial(n[:, None], p[:, None], size=(len(n), resamples))
        boot = draws / n[:, None]
    boot[n == 0] = np.nan
    return boot


def rates(table: JudgedTable, by: Sequence[str], *, mask: np.ndarray | None = None,
          resamples: int = DEFAULT_RESAMPLES, seed: int = 0, name: str = "") -> Frame:
    """Defense rate with a bootstrap 95% CI for every non-empty cell of the crossing ``by`` (any of the
    table's categorical columns: model, group, language, strategy, scenario_category, size_class, family...).
    An empty ``by`` gives one overall row."""
    by = list(by)
    keys, counts, _ = group_counts(table, by, mask)
    n_safe, n_judged = counts["n_safe"], counts["n_judged"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_judged > 0, n_safe / np.maximum(n_judged, 1), np.nan)
    boot = binomial_rates(n_safe, n_judged, resamples, table_rng(seed, "rates", *by, name))
    low, high = percentile_ci(boot)
    frame = Frame({**keys, **counts, "rate": rate, "ci_low": low, "ci_high": high},
                  name=name or "rates_by_" + "_".join(by or ["all"]), boot=boot)
    frame.summary = ci_summary(rate, low, high, boot, signed=False)
    return frame


def deviations(table: JudgedTable, *, by: str = "group", within: Sequence[str] = ("model", "language"),
               average: str = "micro", mask: np.ndarray | None = None, resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0, name: str = "deviations") -> Frame:
    """Each ``by`` cell's defense rate minus its parent's mean (parent = ``within``, by default one model in
    one language): the paper's heatmap.

    ``average="micro"`` (default): the parent mean is the rate over all of the parent's judged responses,
    i.e. groups weighted by their judged counts. ``"macro"``: the unweighted mean of the group rates.

    Bootstrap: every group cell is resampled on its own (binomial draws on its counts) and the parent mean of
    each resample is recomputed from those same resampled cells, so a group's deviation and its model's mean
    move together, as they do when the prompts are resampled.
    """
    if average not in ("micro", "macro"):
        raise ValueError("average must be 'micro' or 'macro'")
    within = list(within)
    keys, counts, _ = group_counts(table, [*within, by], mask)
    judged = counts["n_judged"] > 0
    keys = {k: v[judged] for k, v in keys.items()}
    counts = {k: v[judged] for k, v in counts.items()}
    n_safe, n_judged = counts["n_safe"], counts["n_judged"]
    rate = n_safe / np.maximum(n_judged, 1)
    boot = binomial_rates(n_safe, n_judged, resamples, table_rng(seed, "deviations", by, *within, name))

    parent, starts = parent_index(keys, within)
    if len(starts) == 0:
        mean, mean_boot = rate[:0], boot[:0]
    elif average == "micro":
        n_parent = np.add.reduceat(n_judged, starts)
        mean = np.add.reduceat(n_safe, starts) / n_parent
        mean_boot = np.add.reduceat(boot * n_judged[:, None], starts, axis=0) / n_parent[:, None]
    else:
        sizes = np.diff(np.append(starts, len(rate)))
        mean = np.add.reduceat(rate, starts) / sizes
        mean_boot = np.add.reduceat(boot, starts, axis=0) / sizes[:, None]
    dev = rate - mean[parent]
    dev_boot = boot - mean_boot[parent]
    low, high = percentile_ci(dev_boot)
    frame = Frame({**keys, **counts, "rate": rate, "model_mean": mean[parent], "deviation": dev,
                   "ci_low": low, "ci_high": high}, name=name, boot=dev_boot)
    frame.summary = {**ci_summary(dev, low, high, dev_boot, signed=True), "average": average}
    frame.extra = {"rate_boot": boot, "mean_boot": mean_boot, "parent": parent, "starts": starts}
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
