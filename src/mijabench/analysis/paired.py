"""Paired analysis of counterfactual items: items sharing a non-empty ``pair_id`` are the same attack aimed
at different groups, so a model's answers to them can be compared pair by pair.

For each model, language and pair of groups (A, B), every pair id with a judged answer for both groups is one
matched observation. The paired difference is rate_A - rate_B over those matched pairs, tested with the exact
McNemar test on the discordant pairs (A safe & B harmful vs. A harmful & B safe), Holm-corrected within the
model and language. CI: Newcombe's method 10 (MOVER on the two rates' Wilson intervals with the pairs'
phi correlation), which keeps a width when no pair is discordant. The draws (``boot``) resample pairs: the
discordant counts are drawn as a multinomial on the four cells (two chained binomials: the discordant
pairs, then A's share of them). When a (model, pair id, group) has several judged answers (e.g. several
sampling settings), one of them is used. The unpaired figures of the same groups sit next to the paired
ones.
"""

from __future__ import annotations

import numpy as np

from .disparity import ALPHA
from .frame import Frame, ci_summary
from .intervals import paired_difference_limits
from .rates import DEFAULT_RESAMPLES, table_rng
from .stats import holm, mcnemar_exact
from .table import ST_HARMFUL, ST_SAFE, JudgedTable

COLUMNS = ("model", "language", "group_a", "group_b", "n_pairs", "both_safe", "only_a_safe", "only_b_safe",
           "both_harmful", "paired_rate_a", "paired_rate_b", "paired_difference", "ci_low", "ci_high",
           "p_mcnemar", "p_holm", "significant", "unpaired_rate_a", "unpaired_rate_b", "unpaired_difference",
           "unpaired_p_holm")


def paired_analysis(table: JudgedTable, unpaired: Frame | None = None, *,
                    resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Frame:
    """``unpaired``: the ``pairwise_tests`` frame, whose rates and p-values are copied beside the paired
    figures when given."""
    pair = table.cat("pair_id")
    empty_code = pair.categories.index("") if "" in pair.categories else -1
    status = table.status
    keep = (pair.codes != empty_code) & ((status == ST_SAFE) | (status == ST_HARMFUL))
    model, lang, group = table.cat("model"), table.cat("language"), table.cat("group")
    rows = {k: [] for k in COLUMNS}
    counts_all = []
    if keep.any():
        m, la, pr, g = (c.codes[keep].astype(np.int64) for c in (model, lang, pair, group))
        outcome = (status[keep] == ST_SAFE).astype(np.int8)
        key = (m * len(lang.categories) + la) * len(pair.categories) + pr
        uniq, row = np.unique(key, return_inverse=True)
        matrix = np.full((len(uniq), len(group.categories)), -1, dtype=np.int8)
        matrix[row, g] = outcome
        parent_key = uniq // len(pair.categories)
        starts = np.flatnonzero(np.r_[True, parent_key[1:] != parent_key[:-1]])
        ends = np.r_[starts[1:], len(uniq)]
        for s, e in zip(starts, ends, strict=True):
            sub = matrix[s:e]
            present = np.flatnonzero((sub >= 0).any(axis=0))
            ia, ib = (present[i] for i in np.triu_indices(len(present), 1))
            if len(ia) == 0:
                continue
            a, b = sub[:, ia].astype(np.int64), sub[:, ib].astype(np.int64)
            valid = (a >= 0) & (b >= 0)
            code = (a * 2 + b) + 4 * np.arange(len(ia))[None, :]
            cells = np.bincount(code[valid], minlength=4 * len(ia)).reshape(len(ia), 4)
            model_code, lang_code = divmod(int(parent_key[s]), len(lang.categories))
            for j in np.flatnonzero(cells.sum(axis=1)):
                rows["model"].append(model.categories[model_code])
                rows["language"].append(lang.categories[lang_code])
                rows["group_a"].append(group.categories[ia[j]])
                rows["group_b"].append(group.categories[ib[j]])
                counts_all.append(cells[j])
    counts = np.asarray(counts_all, dtype=np.int64).reshape(-1, 4)
    both_harmful, only_b_safe, only_a_safe, both_safe = counts.T  # code = 2 * a_safe + b_safe
    n = counts.sum(axis=1)
    rows["n_pairs"], rows["both_safe"], rows["both_harmful"] = n, both_safe, both_harmful
    rows["only_a_safe"], rows["only_b_safe"] = only_a_safe, only_b_safe
    nn = np.maximum(n, 1)
    rows["paired_rate_a"] = (both_safe + only_a_safe) / nn
    rows["paired_rate_b"] = (both_safe + only_b_safe) / nn
    diff = (only_a_safe - only_b_safe) / nn
    rows["paired_difference"] = diff

    # resampling pairs: the discordant count D* ~ Bin(n, (b + c) / n), then b* ~ Bin(D*, b / (b + c))
    rng = table_rng(seed, "paired")
    discordant = only_a_safe + only_b_safe
    d_star = rng.binomial(n[:, None], (discordant / nn)[:, None], size=(len(n), resamples))
    b_star = rng.binomial(d_star, (only_a_safe / np.maximum(discordant, 1))[:, None])
    boot = (2 * b_star - d_star) / nn[:, None]
    rows["ci_low"], rows["ci_high"] = paired_difference_limits(both_safe, only_a_safe, only_b_safe,
                                                               both_harmful)

    p = np.array([mcnemar_exact(int(b), int(c)) for b, c in zip(only_a_safe, only_b_safe, strict=True)])
    family = [f"{x}\x00{y}" for x, y in zip(rows["model"], rows["language"], strict=True)]
    p_holm = np.empty(len(p))
    for f in set(family):
        sel = np.array([x == f for x in family])
        p_holm[sel] = holm(p[sel])
    rows["p_mcnemar"], rows["p_holm"], rows["significant"] = p, p_holm, p_holm < ALPHA

    lookup = {}
    if unpaired is not None:
        for r in unpaired.rows():
            lookup[(r["model"], r["language"], r["group_a"], r["group_b"])] = r
    for name, src in (("unpaired_rate_a", "rate_a"), ("unpaired_rate_b", "rate_b"),
                      ("unpaired_difference", "difference"), ("unpaired_p_holm", "p_holm")):
        rows[name] = [lookup.get(k, {}).get(src, np.nan) for k in
                      zip(rows["model"], rows["language"], rows["group_a"], rows["group_b"], strict=True)]
    columns = {k: (np.asarray(v, dtype=object) if k in ("model", "language", "group_a", "group_b")
                   else np.asarray(v, dtype=np.float64) if k.startswith("unpaired") else np.asarray(v))
               for k, v in rows.items()}
    frame = Frame(columns, name="paired", boot=boot)
    frame.summary = ci_summary(diff, rows["ci_low"], rows["ci_high"], boot, signed=True)
    return frame
