"""Agreement between judges on nominal labels: Cohen's kappa for each pair, Krippendorff's alpha for all.

Only decided votes (safe/harmful) take part: an ``unparsed`` or failed verdict is a missing value, not a
third category, so a judge that often fails to answer is not rewarded or punished for agreeing on failures;
the counts of votes used are reported beside every figure. Both statistics are undefined (NaN) when chance
agreement is already complete, e.g. every vote is the same label.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..records import HARMFUL, SAFE
from ..store import Store
from .vote import votes_by_response

DECIDED = (SAFE, HARMFUL)


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters: ``first[i]`` and ``second[i]`` label the same unit i."""
    if len(first) != len(second):
        raise ValueError("cohen_kappa needs two label sequences of equal length")
    if not first:
        return math.nan
    categories = {c: i for i, c in enumerate(sorted(set(first) | set(second), key=str))}
    a = np.fromiter((categories[x] for x in first), dtype=np.int64, count=len(first))
    b = np.fromiter((categories[x] for x in second), dtype=np.int64, count=len(second))
    k = len(categories)
    table = np.bincount(a * k + b, minlength=k * k).reshape(k, k) / len(first)
    observed = np.trace(table)
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    if math.isclose(expected, 1.0):
        return math.nan
    return float((observed - expected) / (1.0 - expected))


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal data.

    ``units[u]`` holds the values the raters gave unit u, ``None`` where a rater gave none (a row of a
    reliability matrix with units as rows). Units with fewer than two values are not pairable and are left
    out, as the statistic defines."""
    values = sorted({v for row in units for v in row if v is not None}, key=str)
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)))
    for u, row in enumerate(units):
        for v in row:
            if v is not None:
                counts[u, index[v]] += 1
    m = counts.sum(axis=1)
    counts = counts[m >= 2]
    m = m[m >= 2]
    if counts.size == 0:
        return math.nan
    weights = 1.0 / (m - 1.0)
    # Coincidence matrix: o[c, k] = sum_u n_uc * (n_uk - [c == k]) / (m_u - 1).
    coincidences = (counts * weights[:, None]).T @ counts - np.diag((counts * weights[:, None]).sum(axis=0))
    n_c = coincidences.sum(axis=1)
    n = n_c.sum()
    expected_disagreement = n * n - float(n_c @ n_c)
    if expected_disagreement <= 0:
        return math.nan
    observed_disagreement = n - np.trace(coincidences)
    return float(1.0 - (n - 1.0) * observed_disagreement / expected_disagreement)


def agreement_report(votes: Mapping[str, Mapping[str, str]], judges: Sequence[str]) -> dict:
    """Pairwise kappa and overall alpha from ``{response_id: {judge: label}}``.

    Returns ``{"judges": [...], "pairs": [{"a", "b", "n", "agreement", "kappa"}], "alpha": float,
    "alpha_units": int, "responses": int}``; NaN where undefined."""
    decided = {rid: {j: lab for j, lab in by_judge.items() if j in judges and lab in DECIDED}
               for rid, by_judge in votes.items()}
    pairs = []
    for a, b in itertools.combinations(judges, 2):
        both = [(d[a], d[b]) for d in decided.values() if a in d and b in d]
        first, second = [x for x, _ in both], [y for _, y in both]
        agree = sum(x == y for x, y in both) / len(both) if both else math.nan
        pairs.append({"a": a, "b": b, "n": len(both), "agreement": agree,
                      "kappa": cohen_kappa(first, second) if both else math.nan})
    rows = [[d.get(j) for j in judges] for d in decided.values()]
    pairable = sum(1 for row in rows if sum(v is not None for v in row) >= 2)
    return {"judges": list(judges), "pairs": pairs,
            "alpha": krippendorff_alpha(rows) if len(judges) >= 2 else math.nan,
            "alpha_units": pairable, "responses": len(votes)}


def choose_judges(store: Store, judges: Sequence[str] | None = None) -> list[str]:
    """The chosen judges, checked against those with stored verdicts; all of those when None."""
    known = sorted(r[0] for r in store.query("SELECT DISTINCT judge FROM verdicts"))
    chosen = list(dict.fromkeys(judges)) if judges else known
    unknown = [j for j in chosen if j not in known]
    if unknown:
        raise InputError(f"no verdicts from judge(s) {', '.join(unknown)} "
                         f"(known: {', '.join(known) or 'none'})", field="--judge")
    return chosen


def judge_agreement(store: Store, judges: Sequence[str] | None = None) -> dict:
    """``agreement_report`` over the stored verdicts of the chosen judges (all judges when None)."""
    chosen = choose_judges(store, judges)
    return agreement_report(votes_by_response(store.verdicts(), set(chosen)), chosen)
