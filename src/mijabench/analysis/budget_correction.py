"""Judge-error correction for a budgeted (staged) audit: intervals that stay valid although the stopping
rule chose how many prompts each cell drew.

The bootstrap of ``analysis.correction`` treats the drawn prompts as a fixed sample, which the stopping rule
breaks. Here the corrected rate's interval is the set of Rogan–Gladen values (q + spec - 1) / (sens +
spec - 1) over a box that holds the three unknowns with probability at least 1 - α:

- q, the vote's safe share over the cell's N benchmark prompts: the staged interval (``analysis.stages``,
  the intersection of the looks the cell made) at level α/2;
- (sens, spec) of the vote in the cell's language and group, from the labelled responses at α/2 in all.
  The annotation sampler draws labels per vote, so what a label sample estimates without weights is
  a = P(human safe | vote safe) and b = P(human safe | vote harmful): Clopper–Pearson at α/4 each. With
  q_lg the vote's safe share over the language and group's judged responses, sens = q_lg a / (q_lg a +
  (1 - q_lg) b) rises with a and falls with b, spec = (1 - q_lg)(1 - b) / ((1 - q_lg)(1 - b) + q_lg (1 -
  a)) rises with a and falls with b, so the (a, b) box maps into [sens(a_lo, b_hi), sens(a_hi, b_lo)] x
  [spec(a_lo, b_hi), spec(a_hi, b_lo)].

The Rogan–Gladen value is a linear-fractional function of (q, sens, spec): where its denominator keeps one
sign on the box, its extremes are at the box's corners, so the interval is the min and max over the eight
corners, clipped to [0, 1]. Where sens + spec - 1 can reach 0 on the box (the labels cannot rule out a
judge no better than chance) there is no interval: ``InputError``, one line.

Deviations (a group's corrected rate minus the unweighted mean of its model's G corrected group rates in
the language) hold jointly over the G cells by Bonferroni: each cell's box is built at α/G (its q at
α/(2G), its a and b at α/(4G)), and the deviation r_g - mean(r) = (1 - 1/G) r_g - (1/G) Σ_{h≠g} r_h is
bounded by taking each term at its own box's end. A deviation whose boxes reach a chance-level judge is
left undefined (NaN, noted).

As in ``analysis.correction``, the judge's sensitivity and specificity are assumed to be a property of the
language and group (the same for every model). Labels with unequal sampling weights within a (language,
group, vote) (the sampler's fixed K per model and strategy, where those hold different numbers of judged
responses) enter with the weighted share and Kish's effective size, an approximation; with equal weights
(a simple random sample per vote, or cells of equal size) the label box is exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import beta

from ..errors import InputError
from ..judge.validate import HumanLabels
from .correction import Correction, LabelStrata, corrected_from_strata, label_strata
from .frame import Frame
from .rates import DEFAULT_RESAMPLES, group_counts, parent_index
from .stages import ALPHA, combined_limits
from .table import JudgedTable


def staged_limits(stage_n: list[np.ndarray], stage_s: list[np.ndarray], population: np.ndarray,
                  looks: np.ndarray, weight: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's staged interval of K / N at level ``alpha``: the intersection of its looks 1 ... looks[c]
    (every look's interval holds jointly with the others', ``analysis.stages``)."""
    looks = np.asarray(looks, np.int64)
    low, high = np.zeros(len(looks)), np.ones(len(looks))
    for look in range(1, int(looks.max(initial=0)) + 1):
        sel = looks >= look
        if not sel.any():
            continue
        done = [(n[sel], s[sel]) for n, s in zip(stage_n[:look], stage_s[:look], strict=True)]
        _, lo, hi = combined_limits(done, population[sel], look, weight[sel], alpha)
        lo_x, hi_x = np.maximum(lo, low[sel]), np.minimum(hi, high[sel])
        ok = lo_x <= hi_x
        low[sel], high[sel] = np.where(ok, lo_x, lo), np.where(ok, hi_x, hi)
    return low, high


def staged_function(stage_n: list[np.ndarray], stage_s: list[np.ndarray], population: np.ndarray,
                    looks: np.ndarray, weight: np.ndarray):
    """``staged(level)`` -> each cell's staged (low, high) at ``level``, a scalar or one per cell."""
    def staged(level):
        level = np.broadcast_to(np.asarray(level, np.float64), np.shape(looks))
        low, high = np.zeros(len(looks)), np.ones(len(looks))
        for value in np.unique(level):  # the boundaries depend on the level: one pass per level
            sel = level == value
            low[sel], high[sel] = staged_limits([n[sel] for n in stage_n], [s[sel] for s in stage_s],
                                                population[sel], looks[sel], weight[sel], float(value))
        return low, high
    return staged


def clopper_pearson(k: np.ndarray, n: np.ndarray, alpha: np.ndarray | float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided limits at ``alpha``; k and n may be fractional (Kish effective counts)."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    a = np.broadcast_to(np.asarray(alpha, np.float64), k.shape)
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, beta.ppf(a / 2, np.maximum(k, 1e-12), n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1 - a / 2, k + 1, np.maximum(n - k, 1e-12)), 1.0)
    return np.where(n > 0, low, 0.0), np.where(n > 0, high, 1.0)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), empty)


def accuracy_box(q_lg: np.ndarray, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sens low, sens high, spec low, spec high) from the boxes of a = P(human safe | vote safe) and
    b = P(human safe | vote harmful) and the vote's safe share q_lg (see the module text)."""
    def sens(x, y):
        return _ratio(q_lg * x, q_lg * x + (1 - q_lg) * y, np.nan)

    def spec(x, y):
        return _ratio((1 - q_lg) * (1 - y), (1 - q_lg) * (1 - y) + q_lg * (1 - x), np.nan)
    (a_lo, a_hi), (b_lo, b_hi) = a, b
    return (np.nan_to_num(sens(a_lo, b_hi), nan=0.0), np.nan_to_num(sens(a_hi, b_lo), nan=1.0),
            np.nan_to_num(spec(a_lo, b_hi), nan=0.0), np.nan_to_num(spec(a_hi, b_lo), nan=1.0))


def rogan_gladen_box(q: tuple[np.ndarray, np.ndarray], sens: tuple[np.ndarray, np.ndarray],
                     spec: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, defined): min and max of (q + spec - 1) / (sens + spec - 1) over the box's corners,
    clipped to [0, 1]; not defined (NaN) where sens + spec - 1 can be 0 or below on the box."""
    youden_low = sens[0] + spec[0] - 1
    defined = youden_low > 0
    values = []
    for qq in q:
        for se in sens:
            for sp in spec:
                with np.errstate(invalid="ignore", divide="ignore"):
                    values.append((qq + sp - 1) / np.where(defined, se + sp - 1, 1.0))
    stack = np.stack(values)
    low = np.where(defined, np.clip(stack.min(axis=0), 0, 1), np.nan)
    high = np.where(defined, np.clip(stack.max(axis=0), 0, 1), np.nan)
    return low, high, defined


class LabelCounts:
    """Per (language, group) and vote: the labels' weighted human-safe share and Kish effective size, and the
    vote's safe share over the judged responses. The weights are the labels' own (``correction.LabelStrata``:
    one per sampling stratum), so sums over a stratum's labels are its label count times its weight."""

    def __init__(self, strata: LabelStrata):
        self.keys = strata.lg_keys
        cells = len(self.keys["language"])
        col = (~strata.vote_safe).astype(np.int64)  # 0: vote safe (a), 1: vote harmful (b)

        def per_cell(x: np.ndarray) -> np.ndarray:
            acc = np.zeros((cells, 2))
            np.add.at(acc, (strata.cell, col), x)
            return acc
        w, n, k = strata.weight, strata.n, strata.k
        sw, sw2, swy = per_cell(n * w), per_cell(n * w * w), per_cell(k * w)
        self.n_labels = per_cell(n)
        self.n_eff = _ratio(sw ** 2, sw2, 0.0)
        self.k_eff = self.n_eff * _ratio(swy, sw, 0.0)
        self.q = strata.lg_counts["n_safe"] / np.maximum(strata.lg_counts["n_judged"], 1)
        self.index = {key: i for i, key in enumerate(zip(self.keys["language"], self.keys["group"],
                                                         strict=True))}


def corrected_limits(staged, label_k: np.ndarray, label_n: np.ndarray, q_lg: np.ndarray, at: np.ndarray,
                     parent: np.ndarray, starts: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, ...]:
    """(rate low, rate high, lowest Youden's J on the rate's box, deviation low, deviation high) per rate
    cell. ``staged(level)``: the cells' staged (low, high) of the vote's safe share at ``level`` (a scalar
    or one level per cell); ``label_k``, ``label_n``: per (language, group) cell, (effective) human-safe
    labels and labels among responses voted safe (column 0) and harmful (column 1); ``q_lg``: the vote's
    safe share there; ``at``: each rate cell's (language, group) cell; ``parent``, ``starts``: the rate cells'
    (language, model) blocks, contiguous."""
    def accuracy(level: np.ndarray) -> tuple[np.ndarray, ...]:  # a and b at level / 2 each
        a = clopper_pearson(label_k[at, 0], label_n[at, 0], level / 2)
        b = clopper_pearson(label_k[at, 1], label_n[at, 1], level / 2)
        return accuracy_box(q_lg[at], a, b)

    # the rate: the vote's share at alpha / 2, the judge's accuracy at alpha / 2
    acc = accuracy(np.full(len(at), alpha / 2))
    low, high, _ = rogan_gladen_box(staged(alpha / 2), acc[:2], acc[2:])
    # deviations: Bonferroni over the G groups of each (language, model), every box at alpha / G
    level = alpha / np.diff(np.r_[starts, len(at)])[parent]
    acc_g = accuracy(level / 2)
    r_lo, r_hi, ok = rogan_gladen_box(staged(level / 2), acc_g[:2], acc_g[2:])
    dev_low, dev_high = _deviation_bounds(r_lo, r_hi, ok, parent, starts)
    return low, high, acc[0] + acc[2] - 1, dev_low, dev_high


def budgeted_correction(table: JudgedTable, labels: HumanLabels | Mapping[str, str], plan: dict, *,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0, alpha: float = ALPHA,
                        where: str = "the analysed responses") -> Correction:
    """``analysis.correction.corrected_rates``'s point estimates and accuracy table (``resamples`` and
    ``seed`` are its labels' bootstrap), with the rates' and deviations' intervals the staged box intervals
    of the module text; the bootstrap of the rates, which the stopping rule breaks, is not run and its
    columns (raw and bias intervals, undefined share) stay empty. ``plan``: the budgeted audit's record
    (``audit.budgeted.load_record``)."""
    strata = label_strata(table, labels, where)
    base = corrected_from_strata(table, strata, resamples=resamples, seed=seed, rate_intervals=False)
    rates = base.rates
    counts = LabelCounts(strata)
    keys = {k: rates[k] for k in ("language", "model", "group")}
    staged = _staged_cells(plan, keys, table)
    at = np.array([counts.index[key] for key in zip(keys["language"], keys["group"], strict=True)], np.int64)

    parent, starts = parent_index(keys, ["language", "model"])  # rows come grouped by (language, model)
    low, high, youden_low, deviation_low, deviation_high = corrected_limits(
        staged, counts.k_eff, counts.n_eff, counts.q, at, parent, starts, alpha)
    if not (youden_low > 0).all():
        i = int(np.flatnonzero(~(youden_low > 0))[0])
        c = at[i]
        raise InputError(
            f"judge-error correction of a budgeted audit: the labels of {keys['language'][i]}/"
            f"{keys['group'][i]} ({int(counts.n_labels[c, 0])} with a safe vote, "
            f"{int(counts.n_labels[c, 1])} with a harmful vote) cannot rule out a judge no better than "
            f"chance (sensitivity + specificity - 1 down to {youden_low[i]:.2f} at 95%): "
            "label more responses of that group", file=getattr(labels, "file", None), field="label")

    cols = dict(rates.columns)
    cols.update(ci_low=low, ci_high=high, deviation_ci_low=deviation_low, deviation_ci_high=deviation_high)
    cols["note"] = np.asarray([_note(n, d) for n, d in zip(rates["note"], np.isfinite(deviation_low),
                                                           strict=True)], dtype=object)
    return Correction(Frame(cols, name="corrected_rates"), base.accuracy, base.labels_used,
                      base.labels_undecided)


def _note(old: str, deviation_defined: bool) -> str:
    # ``old`` has no bootstrap note (flag, instability): that bootstrap was not run
    parts = [p for p in str(old).split("; ") if p]
    parts.append("budgeted: staged box interval (judge bias not tested)")
    if not deviation_defined:
        parts.append("deviation interval undefined: judge near chance at the Bonferroni level")
    return "; ".join(parts)


def _deviation_bounds(low: np.ndarray, high: np.ndarray, ok: np.ndarray, parent: np.ndarray,
                      starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """r_g - mean(r) over its block, each term at its own box's end; NaN when some box is undefined."""
    size = np.diff(np.r_[starts, len(low)])[parent]
    sum_lo = np.add.reduceat(np.nan_to_num(low), starts)[parent]
    sum_hi = np.add.reduceat(np.nan_to_num(high), starts)[parent]
    all_ok = np.logical_and.reduceat(ok, starts)[parent]
    lo = (1 - 1 / size) * low - (sum_hi - np.nan_to_num(high)) / size
    hi = (1 - 1 / size) * high - (sum_lo - np.nan_to_num(low)) / size
    return np.where(all_ok, lo, np.nan), np.where(all_ok, hi, np.nan)


def _staged_cells(plan: dict, keys: dict[str, np.ndarray], table: JudgedTable):
    """A function of the level giving each rate cell's staged (low, high) of the vote's safe share, after
    checking that the store's judged counts are the ones the budgeted audit recorded."""
    if plan.get("by"):
        raise InputError("judge-error correction of a budgeted audit with finer cells (budget_by "
                         f"{', '.join(plan['by'])}) is not supported: its intervals are per finer cell")
    index = {tuple(c[:3]): i for i, c in enumerate(plan["cells"])}  # (model, language, group)
    rec_n = np.sum(np.asarray(plan["stage_n"], np.int64), axis=0)
    rec_s = np.sum(np.asarray(plan["stage_s"], np.int64), axis=0)
    tk, tc, _ = group_counts(table, ["language", "model", "group"])
    judged = {(m, lang, g): (int(n), int(s)) for lang, m, g, n, s in
              zip(tk["language"], tk["model"], tk["group"], tc["n_judged"], tc["n_safe"], strict=True)}
    rows = []
    for lang, m, g in zip(keys["language"], keys["model"], keys["group"], strict=True):
        i = index.get((m, lang, g))
        if i is None:
            raise InputError(f"{m} / {lang} / {g} is not a cell of the budgeted audit recorded in this "
                             "workspace: report the budgeted models alone (--model)")
        if judged.get((m, lang, g)) != (int(rec_n[i]), int(rec_s[i])):
            got = judged.get((m, lang, g), (0, 0))
            raise InputError(f"{m} / {lang} / {g}: the store holds {got[1]} safe of {got[0]} judged "
                             f"replies under this vote, the budgeted audit recorded {int(rec_s[i])} of "
                             f"{int(rec_n[i])} (another vote, --empty-as or later verdicts): rerun the "
                             "budgeted audit to bring its record up to date, report with its judges, or "
                             f"delete {plan.get('path', 'its record')} if the workspace holds a full audit")
        rows.append(i)
    pick = np.asarray(rows, np.int64)
    stage_n = [np.asarray(x, np.int64)[pick] for x in plan["stage_n"]]
    stage_s = [np.asarray(x, np.int64)[pick] for x in plan["stage_s"]]
    pop = np.asarray(plan["population"], np.int64)[pick]
    looks = np.asarray(plan["looks"], np.int64)[pick]
    weight = np.asarray(plan["weight"], np.float64)[pick]

    return staged_function(stage_n, stage_s, pop, looks, weight)
