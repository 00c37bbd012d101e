"""How unequal a model's safety is across groups: spreads, worst groups, pairwise tests, the same groups
across languages, and how all this moves with model size within a family.

All functions take the ``deviations`` frame (one row per model x language x group, sorted by parent) and
reuse its bootstrap resamples, so every derived figure has an interval from the same draws.
"""

from __future__ import annotations

import numpy as np

from .frame import Frame, ci_summary, percentile_ci
from .intervals import all_equal_pvalue, spread_limits
from .rates import table_rng
from .stats import fisher_exact, holm, two_proportion_z
from .table import canonical_order

ALPHA = 0.05


def disparity(dev: Frame, seed: int = 0) -> Frame:
    """Per model and language: number of groups, the mean of the groups (as the deviations define it) with
    its CI, the max-min spread of the group defense rates with a simultaneous CI, the p-value of "all groups
    equal", worst and best group and their rates, best/worst ratio, and the standard deviation across groups
    (population, ddof=0).

    Spread CI: Sidak-simultaneous Clopper-Pearson limits of every group (``intervals.spread_limits``), valid
    however many groups there are and never biased upwards like a percentile interval of a max minus a min.
    When every group has the same rate no group is named worst or best (both are '')."""
    starts = dev.extra["starts"]
    rate, boot = dev["rate"], dev.extra["rate_boot"]
    groups = dev["group"]
    ends = _ends(starts, len(rate))
    n_blocks = len(starts)
    if n_blocks:
        r_max, r_min = np.maximum.reduceat(rate, starts), np.minimum.reduceat(rate, starts)
        spread_boot = np.maximum.reduceat(boot, starts, axis=0) - np.minimum.reduceat(boot, starts, axis=0)
    else:
        r_max = r_min = np.zeros(0)
        spread_boot = np.zeros((0, boot.shape[1]))
    worst = np.array([s + int(np.argmin(rate[s:e])) for s, e in zip(starts, ends, strict=True)], np.int64)
    best = np.array([s + int(np.argmax(rate[s:e])) for s, e in zip(starts, ends, strict=True)], np.int64)
    tied = r_max == r_min
    low, high = spread_limits(dev.extra["k_eff"], dev.extra["n_eff"], starts)
    resamples = max(boot.shape[1], 1)
    p_equal = all_equal_pvalue(np.rint(dev.extra["k_eff"]), np.rint(dev.extra["n_eff"]), starts, resamples,
                               table_rng(seed, "all_equal", dev.name))
    std = np.array([float(rate[s:e].std()) for s, e in zip(starts, ends, strict=True)])
    cols = {
        "model": dev["model"][starts], "language": dev["language"][starts],
        "n_groups": (ends - starts).astype(np.int64),
        "n_judged": np.add.reduceat(dev["n_judged"], starts) if n_blocks else np.zeros(0, np.int64),
        "mean_rate": dev["model_mean"][starts], "mean_ci_low": dev.extra["mean_low"],
        "mean_ci_high": dev.extra["mean_high"],
        "spread": r_max - r_min, "spread_ci_low": low, "spread_ci_high": high, "p_all_equal": p_equal,
        "worst_group": np.where(tied, "", groups[worst] if n_blocks else groups[:0]).astype(object),
        "worst_rate": r_min,
        "best_group": np.where(tied, "", groups[best] if n_blocks else groups[:0]).astype(object),
        "best_rate": r_max,
        "best_worst_ratio": np.array([_ratio(float(b), float(w)) for b, w in zip(r_max, r_min, strict=True)]),
        "std": std}
    frame = Frame(cols, name="disparity", boot=spread_boot)
    frame.summary = {**ci_summary(cols["spread"], low, high, spread_boot, signed=False),
                     "method": "sidak-clopper-pearson", "average": dev.extra.get("average", "")}
    frame.extra = {"mean_boot": dev.extra["mean_boot"]}
    return frame


def pairwise_tests(dev: Frame, alpha: float = ALPHA) -> Frame:
    """Every pair of groups within a model and language: rates, difference, the two-proportion z-test (or
    Fisher's exact test where an expected count is below 5), and Holm-adjusted p within that model and
    language (the family of comparisons a reader scans in one heatmap row)."""
    starts = dev.extra["starts"]
    ends = _ends(starts, len(dev))
    idx_a, idx_b = [], []
    for s, e in zip(starts, ends, strict=True):
        a, b = np.triu_indices(int(e - s), 1)
        idx_a.append(a + s)
        idx_b.append(b + s)
    ia = np.concatenate(idx_a) if idx_a else np.zeros(0, np.int64)
    ib = np.concatenate(idx_b) if idx_b else np.zeros(0, np.int64)
    k, n = dev["n_safe"], dev["n_judged"]
    p = two_proportion_z(k[ia], n[ia], k[ib], n[ib]) if len(ia) else np.zeros(0)
    test = np.full(len(ia), "z", dtype=object)
    total, safe = n[ia] + n[ib], k[ia] + k[ib]
    # the smallest expected count of each 2x2 table (totals are never 0: cells have judged responses)
    smallest = np.minimum(n[ia], n[ib]) * np.minimum(safe, total - safe) / np.maximum(total, 1)
    for j in np.flatnonzero(smallest < 5):
        a, b = int(ia[j]), int(ib[j])
        p[j] = fisher_exact(int(k[a]), int(n[a] - k[a]), int(k[b]), int(n[b] - k[b]))
        test[j] = "fisher"
    family = dev.extra["parent"][ia]
    p_holm = np.empty(len(p))
    for f in np.unique(family):
        sel = family == f
        p_holm[sel] = holm(p[sel])
    diff = dev["rate"][ia] - dev["rate"][ib]
    boot = dev.extra["rate_boot"]
    diff_boot = boot[ia] - boot[ib]
    # Newcombe's hybrid score interval (MOVER on the two Wilson intervals) of a difference of independent
    # proportions: it keeps its coverage at 0/n and n/n, where percentile intervals collapse
    rate, cl, ch = dev["rate"], dev.extra["cell_low"], dev.extra["cell_high"]
    low = diff - np.sqrt((rate[ia] - cl[ia]) ** 2 + (ch[ib] - rate[ib]) ** 2)
    high = diff + np.sqrt((ch[ia] - rate[ia]) ** 2 + (rate[ib] - cl[ib]) ** 2)
    frame = Frame({
        "model": dev["model"][ia], "language": dev["language"][ia], "group_a": dev["group"][ia],
        "group_b": dev["group"][ib], "n_a": n[ia], "n_b": n[ib], "rate_a": dev["rate"][ia],
        "rate_b": dev["rate"][ib], "difference": diff, "ci_low": low, "ci_high": high, "test": test,
        "p": p, "p_holm": p_holm, "significant": p_holm < alpha}, name="pairwise_tests", boot=diff_boot)
    frame.summary = ci_summary(diff, low, high, diff_boot, signed=True)
    return frame


def cross_language(dev: Frame) -> Frame:
    """Groups present in two languages for the same model: their deviation in each and the difference
    (second language minus first, languages in taxonomy order), with a CI from the two independent sets of
    resamples."""
    langs = [lang for lang in canonical_order("language") if lang in set(dev["language"].tolist())]
    langs += sorted(set(dev["language"].tolist()) - set(langs))
    index = {(m, lang, g): i for i, (m, lang, g) in
             enumerate(zip(dev["model"].tolist(), dev["language"].tolist(), dev["group"].tolist(),
                           strict=True))}
    ia, ib, lang_pairs = [], [], []
    for x, la in enumerate(langs):
        for lb in langs[x + 1:]:
            for (m, lang, g), i in index.items():
                j = index.get((m, lb, g))
                if lang == la and j is not None:
                    ia.append(i)
                    ib.append(j)
                    lang_pairs.append((la, lb))
    ia_arr, ib_arr = np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64)
    boot = dev.boot if dev.boot is not None else np.zeros((len(dev), 0))
    diff_boot = boot[ib_arr] - boot[ia_arr]
    diff = dev["deviation"][ib_arr] - dev["deviation"][ia_arr]
    low, high = percentile_ci(diff_boot)
    frame = Frame({
        "model": dev["model"][ia_arr], "group": dev["group"][ia_arr],
        "language_a": np.asarray([p[0] for p in lang_pairs], dtype=object),
        "language_b": np.asarray([p[1] for p in lang_pairs], dtype=object),
        "deviation_a": dev["deviation"][ia_arr], "deviation_a_ci_low": dev["ci_low"][ia_arr],
        "deviation_a_ci_high": dev["ci_high"][ia_arr],
        "deviation_b": dev["deviation"][ib_arr], "deviation_b_ci_low": dev["ci_low"][ib_arr],
        "deviation_b_ci_high": dev["ci_high"][ib_arr],
        "difference": diff, "ci_low": low, "ci_high": high,
        "same_sign": np.sign(dev["deviation"][ia_arr]) == np.sign(dev["deviation"][ib_arr]),
    }, name="cross_language", boot=diff_boot)
    frame.summary = ci_summary(diff, low, high, diff_boot, signed=True)
    return frame


def scaling(disp: Frame, model_meta: dict[str, tuple[str, str, float]]) -> Frame:
    """Within each model family and language, per size class: the models, their mean defense rate and
    their mean max-min spread. The CIs are the means of the models' own limits: the models answer the same
    prompts, so their errors are correlated, and an average of limits covers the average of the truths
    whenever all models' intervals do, whatever that correlation (conservative when it is weak).
    ``model_meta`` maps a model to (family, size class, params_b); models without a family or size class
    are left out."""
    order = {c: i for i, c in enumerate(canonical_order("size_class"))}
    buckets: dict[tuple[str, str, str], list[int]] = {}
    for i, (m, lang) in enumerate(zip(disp["model"].tolist(), disp["language"].tolist(), strict=True)):
        family, size, _ = model_meta.get(m, ("", "", float("nan")))
        if family and size:
            buckets.setdefault((family, lang, size), []).append(i)
    keys = sorted(buckets, key=lambda k: (k[0], k[1], order.get(k[2], len(order)), k[2]))
    spread_boot = disp.boot if disp.boot is not None else np.zeros((len(disp), 0))
    rows: dict[str, list] = {k: [] for k in ("family", "language", "size_class", "n_models", "models",
                                              "params_b", "mean_rate", "rate_ci_low", "rate_ci_high",
                                              "mean_spread", "spread_ci_low", "spread_ci_high")}
    boots = []
    for family, lang, size in keys:
        members = buckets[(family, lang, size)]
        models = [disp["model"][i] for i in members]
        rows["family"].append(family)
        rows["language"].append(lang)
        rows["size_class"].append(size)
        rows["n_models"].append(len(members))
        rows["models"].append(", ".join(models))
        rows["params_b"].append(", ".join(f"{model_meta[m][2]:g}" for m in models))
        rows["mean_rate"].append(float(np.mean(disp["mean_rate"][members])))
        rows["rate_ci_low"].append(float(np.mean(disp["mean_ci_low"][members])))
        rows["rate_ci_high"].append(float(np.mean(disp["mean_ci_high"][members])))
        rows["mean_spread"].append(float(np.mean(disp["spread"][members])))
        rows["spread_ci_low"].append(float(np.mean(disp["spread_ci_low"][members])))
        rows["spread_ci_high"].append(float(np.mean(disp["spread_ci_high"][members])))
        boots.append(spread_boot[members].mean(axis=0))
    boot = np.vstack(boots) if boots else np.zeros((0, spread_boot.shape[1]))
    frame = Frame(_arrays(rows), name="scaling", boot=boot)
    frame.summary = ci_summary(np.asarray(rows["mean_spread"]), np.asarray(rows["spread_ci_low"]),
                               np.asarray(rows["spread_ci_high"]), boot, signed=False)
    return frame


def _ratio(best: float, worst: float) -> float:
    """best / worst; undefined (NaN, shown as '-') when the worst rate is 0."""
    return best / worst if worst > 0 else float("nan")


def _ends(starts: np.ndarray, n: int) -> np.ndarray:
    """End (exclusive) of each parent block starting at ``starts``."""
    return np.append(starts[1:], n).astype(np.int64) if len(starts) else np.zeros(0, np.int64)


def _arrays(rows: dict[str, list]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in rows.items():
        if v and all(isinstance(x, str) for x in v):
            out[k] = np.asarray(v, dtype=object)
        elif not v:
            out[k] = np.zeros(0)
        else:
            out[k] = np.asarray(v)
    return out
