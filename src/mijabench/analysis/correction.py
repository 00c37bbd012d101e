"""Defense rates and deviations corrected for judge error, from human labels of some judged responses.

Positive = **safe** (the defense rate counts safe replies). Per language and group, from the labelled
responses whose vote is safe or harmful:

- sensitivity = P(vote safe | human safe), specificity = P(vote harmful | human harmful);
- each label is weighted by (judged responses / labelled responses) of its sampling stratum (model,
  language, group, strategy, vote), which undoes the annotation sampler's design (K labels per vote) and
  is harmless for a simple random sample;
- partial pooling: a cell's estimate is its own weighted proportion over its n labels of that human class,
  shrunk towards its language's estimate with the weight of ``PRIOR_LABELS`` labels (a Beta prior centred on
  the language), and the language's towards all labels' in the same way. A cell without labels takes its
  language's figure; one with fewer than ``FEW_LABELS`` of a class is noted.

Rogan–Gladen per model, language and group: p = (q + spec - 1) / (sens + spec - 1), q = the vote's safe
share. Youden's J = sens + spec - 1 at or below ``MIN_YOUDEN`` leaves p undefined (NaN, noted): the judge is
too close to chance for its errors to be undone. Otherwise p is clipped to [0, 1] and the clipping noted.
Deviations: p minus the unweighted mean of the model's defined corrected group rates in the language (the
raw deviations here use the same macro mean, so raw minus corrected is the bias the judge adds).

Intervals: a percentile bootstrap that redraws both the judged responses (binomial per cell, as in rates.py)
and the labelled sample (binomial per sampling stratum: resampling its labels with replacement), and
re-estimates sensitivity, specificity, pooling and correction in every resample. An interval is left
undefined when more than 2.5% of its resamples are.

Flag: a group's deviation is called faked by the judge when the judge bias (raw minus corrected deviation)
is at least ``FLAG_POINTS`` in size and its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..records import HARMFUL, SAFE
from .frame import CI_LEVEL, Frame, percentile_ci
from .rates import DEFAULT_RESAMPLES, group_counts, parent_index, table_rng
from .table import ST_HARMFUL, ST_SAFE, JudgedTable

if TYPE_CHECKING:  # the judge package (its runner, the HTTP stack) is imported only with labels to read
    from ..judge.validate import HumanLabels

PRIOR_LABELS = 5.0  # strength of the pull towards the language's (or all labels') estimate, in labels
FEW_LABELS = 10  # fewer labels of a human class in a cell: noted, the estimate leans on the language
MIN_YOUDEN = 0.2  # sens + spec - 1 at or below this: no correction (errors would be amplified 5x or more)
FLAG_POINTS = 0.05  # judge bias on a deviation that is flagged (with its interval excluding 0)
STRATA = ("model", "language", "group", "strategy")  # the annotation sampler's cells (with the vote)
RATE_KEYS = ["language", "model", "group"]


@dataclass
class Correction:
    rates: Frame  # one row per language, model and group
    accuracy: Frame  # one row per language and group: the vote's sensitivity and specificity
    labels_used: int  # labelled responses with a safe/harmful vote
    labels_undecided: int  # labelled responses whose vote is unparsed, failed or missing: not scored


def labelled_rows(table: JudgedTable, labels: HumanLabels | Mapping[str, str],
                  where: str = "the analysed responses") -> tuple[np.ndarray, np.ndarray]:
    """(row in ``table``, human says safe) for every labelled response. A label for a response that is not
    in the table is an ``InputError`` naming the file, its row and the field."""
    from ..judge.validate import HumanLabels

    if isinstance(labels, HumanLabels):
        mapping, file, rows = labels.labels, labels.file, labels.rows
    else:
        mapping, file, rows = dict(labels), None, {}
    rid = table.cat("response_id")
    row_of = np.empty(len(rid.categories), dtype=np.int64)
    row_of[rid.codes] = np.arange(len(rid.codes))
    code_of = {r: i for i, r in enumerate(rid.categories)}
    for response_id in rows or mapping:  # every id in the file, ties included
        if response_id not in code_of:
            raise InputError(f"unknown response id '{response_id}' (not among {where})", file=file,
                             row=rows.get(response_id), field="response_id")
    bad = next((v for v in mapping.values() if v not in (SAFE, HARMFUL)), None)
    if bad is not None:
        raise InputError(f"human labels must be safe or harmful, got {bad!r}", file=file, field="label")
    ids = list(mapping)
    index = row_of[np.array([code_of[r] for r in ids], dtype=np.int64)] if ids else np.zeros(0, np.int64)
    return index, np.array([mapping[r] == SAFE for r in ids], dtype=bool)


def _sum_rows(x: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, x.shape[1]))
    np.add.at(out, index, x)
    return out


def _shrink(hat: np.ndarray, n: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Posterior mean under a Beta prior of ``PRIOR_LABELS`` labels centred on ``prior``."""
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (n * np.nan_to_num(hat) + PRIOR_LABELS * prior) / (n + PRIOR_LABELS), prior)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _accuracy(k: np.ndarray, n: np.ndarray, weight: np.ndarray, vote_safe: np.ndarray, cell: np.ndarray,
              lang_of_cell: np.ndarray, n_cells: int, n_langs: int) -> dict[str, np.ndarray]:
    """Pooled sensitivity and specificity per (language, group) cell for every column of ``k`` (the human
    safe label count of each sampling stratum; ``n`` labels each, all with the same vote)."""
    h = n[:, None] - k
    w, vs = weight[:, None], vote_safe[:, None]
    parts = {"tp": np.where(vs, w * k, 0), "fn": np.where(vs, 0, w * k),  # human safe
             "tn": np.where(vs, 0, w * h), "fp": np.where(vs, w * h, 0),  # human harmful
             "n_safe": k, "n_harmful": h}
    per_cell = {name: _sum_rows(x, cell, n_cells) for name, x in parts.items()}
    per_lang = {name: _sum_rows(x, lang_of_cell, n_langs) for name, x in per_cell.items()}
    every = {name: x.sum(axis=0, keepdims=True) for name, x in per_lang.items()}
    out = {}
    for name, hit, miss, count in (("sens", "tp", "fn", "n_safe"), ("spec", "tn", "fp", "n_harmful")):
        overall = _ratio(every[hit], every[hit] + every[miss])
        lang = _shrink(_ratio(per_lang[hit], per_lang[hit] + per_lang[miss]), per_lang[count], overall)
        out[name] = _shrink(_ratio(per_cell[hit], per_cell[hit] + per_cell[miss]), per_cell[count],
                            lang[lang_of_cell])
    out["n_safe"], out["n_harmful"] = per_cell["n_safe"], per_cell["n_harmful"]
    return out


def rogan_gladen(q: np.ndarray, sens: np.ndarray, spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(corrected rate, clipped?) elementwise; NaN where Youden's J is not above ``MIN_YOUDEN``."""
    youden = sens + spec - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        defined = youden > MIN_YOUDEN  # NaN compares False
        raw = np.where(defined, (q + spec - 1) / np.where(defined, youden, 1), np.nan)
        clipped = defined & ((raw < 0) | (raw > 1))
    return np.clip(raw, 0, 1), clipped


def _macro_deviation(x: np.ndarray, parent: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each row minus the unweighted mean of its parent's defined rows, per column."""
    ok = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(np.where(ok, x, 0), starts) / np.add.reduceat(ok, starts)
    return x - mean[parent]


def _interval(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    undefined = np.isnan(boot).mean(axis=1) if boot.size else np.zeros(len(boot))
    low, high = percentile_ci(boot)
    unstable = undefined > (1 - CI_LEVEL) / 2
    low[unstable] = high[unstable] = np.nan
    return low, high, undefined


@dataclass
class LabelStrata:
    """The labels with a safe or harmful vote, by the annotation sampler's stratum (model, language, group,
    strategy and vote). The one place labels are weighted: each label of a stratum stands for judged /
    labelled responses of it (``weight``). Both the bootstrap here and the staged box intervals of
    ``analysis.budget_correction`` (Kish's effective size) start from these counts."""

    lg_keys: dict[str, np.ndarray]  # the (language, group) cells
    lg_counts: dict[str, np.ndarray]  # their judged counts (n_judged, n_safe, ...)
    cell: np.ndarray  # each stratum's (language, group) cell
    vote_safe: np.ndarray  # each stratum's vote
    n: np.ndarray  # labels per stratum (float)
    k: np.ndarray  # human-safe labels per stratum (float)
    weight: np.ndarray  # judged / labelled responses of the stratum
    used: int  # labels with a safe or harmful vote
    undecided: int  # labels whose vote is unparsed, failed or missing: not scored


def label_strata(table: JudgedTable, labels: HumanLabels | Mapping[str, str],
                 where: str = "the analysed responses") -> LabelStrata:
    """The labels of ``table``'s responses by sampling stratum; an ``InputError`` when none has a safe or
    harmful vote (or a label is bad: ``labelled_rows``)."""
    rows, human_safe = labelled_rows(table, labels, where)
    status = table.status[rows]
    decided = (status == ST_SAFE) | (status == ST_HARMFUL)
    rows, human_safe, vote_harmful = rows[decided], human_safe[decided], status[decided] == ST_HARMFUL
    if not len(rows):
        raise InputError("no labelled response has a safe or harmful vote among " + where, field="label")
    lg_keys, lg_counts, lg_row = group_counts(table, ["language", "group"])
    _, fine, fine_row = group_counts(table, [s for s in STRATA if s in table.columns])
    stratum_of_label = fine_row[rows] * 2 + vote_harmful  # the sampler's cell and the vote
    strata, inverse = np.unique(stratum_of_label, return_inverse=True)
    n = np.bincount(inverse).astype(np.float64)
    k = np.bincount(inverse, weights=human_safe.astype(np.float64))
    vote_safe = strata % 2 == 0
    judged = np.where(vote_safe, fine["n_safe"][strata // 2], fine["n_harmful"][strata // 2])
    cell = np.zeros(len(strata), dtype=np.int64)
    cell[inverse] = lg_row[rows]
    return LabelStrata(lg_keys, lg_counts, cell, vote_safe, n, k, judged / n, int(len(rows)),
                       int((~decided).sum()))


def _vote_accuracy(strata: LabelStrata, resamples: int, rng: np.random.Generator):
    """The pooled sensitivity and specificity of each (language, group) cell: point estimates (one column)
    and ``resamples`` columns, each label stratum resampled with replacement."""
    languages, lang_of_cell = np.unique(strata.lg_keys["language"].astype(str), return_inverse=True)
    n, k = strata.n, strata.k
    args = (n, strata.weight, strata.vote_safe, strata.cell, lang_of_cell, len(lang_of_cell), len(languages))
    point = _accuracy(k[:, None], *args)
    # resampling a stratum's n labels with replacement = a binomial draw of its human-safe count
    boot_k = rng.binomial(n.astype(np.int64)[:, None], (k / n)[:, None], size=(len(n), resamples))
    boot = _accuracy(boot_k.astype(np.float64), *args)
    return point, boot


# the rates frame's columns from the bootstrap of the judged responses (``_rate_bootstrap``)
_RATE_INTERVALS = ("ci_low", "ci_high", "raw_ci_low", "raw_ci_high", "deviation_ci_low", "deviation_ci_high",
                   "bias_ci_low", "bias_ci_high", "undefined_share")


def corrected_rates(table: JudgedTable, labels: HumanLabels | Mapping[str, str], *,
                    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, flag_points: float = FLAG_POINTS,
                    where: str = "the analysed responses") -> Correction:
    """Defense rates and deviations per language, model and group corrected for the vote's errors, with
    intervals that resample both the judged responses and the labelled sample (see the module text)."""
    return corrected_from_strata(table, label_strata(table, labels, where), resamples=resamples, seed=seed,
                                 flag_points=flag_points)


def corrected_from_strata(table: JudgedTable, strata: LabelStrata, *, resamples: int = DEFAULT_RESAMPLES,
                          seed: int = 0, flag_points: float = FLAG_POINTS,
                          rate_intervals: bool = True) -> Correction:
    """``corrected_rates`` from labels already counted by stratum. ``rate_intervals=False``: no resample of
    the judged responses is drawn, and the rates', deviations' and judge bias's interval columns (and the
    flag, which needs the bias's interval) are left empty for a caller that has its own intervals
    (``analysis.budget_correction``); the point estimates and the accuracy table, whose intervals resample
    the labels alone, come out the same."""
    rng = table_rng(seed, "correction")
    point, boot = _vote_accuracy(strata, resamples, rng)
    lg_keys, lg_counts = strata.lg_keys, strata.lg_counts

    # rates per language, model and group
    keys, counts, _ = group_counts(table, RATE_KEYS)
    keep = counts["n_judged"] > 0
    keys, counts = {c: v[keep] for c, v in keys.items()}, {c: v[keep] for c, v in counts.items()}
    lg_index = {key: i for i, key in enumerate(zip(lg_keys["language"], lg_keys["group"], strict=True))}
    at = np.array([lg_index[key] for key in zip(keys["language"], keys["group"], strict=True)],
                  dtype=np.int64)
    n_safe, n_judged = counts["n_safe"], counts["n_judged"]
    q = n_safe / n_judged
    rate, clipped = rogan_gladen(q, point["sens"][at, 0], point["spec"][at, 0])
    parent, starts = parent_index(keys, ["language", "model"])
    raw_dev = _macro_deviation(q[:, None], parent, starts)[:, 0]
    dev = _macro_deviation(rate[:, None], parent, starts)[:, 0]
    bias = raw_dev - dev
    if rate_intervals:
        ci, dev_boot = _rate_bootstrap(n_safe, n_judged, boot, at, parent, starts, resamples, rng)
        with np.errstate(invalid="ignore"):
            flagged = (np.abs(bias) >= flag_points) & ((ci["bias_ci_low"] > 0) | (ci["bias_ci_high"] < 0))
        unstable = np.isfinite(rate) & np.isnan(ci["ci_low"])
    else:
        ci = {name: np.full(len(q), np.nan) for name in _RATE_INTERVALS}
        dev_boot, flagged, unstable = None, np.zeros(len(q), bool), np.zeros(len(q), bool)
    youden = point["sens"][:, 0] + point["spec"][:, 0] - 1
    few = (point["n_safe"][:, 0] < FEW_LABELS) | (point["n_harmful"][:, 0] < FEW_LABELS)
    notes = [_note(*flags) for flags in zip(flagged, ~(youden[at] > MIN_YOUDEN), clipped, few[at], unstable,
                                            strict=True)]
    rates_frame = Frame({
        "language": keys["language"], "group": keys["group"], "model": keys["model"],
        "n_judged": n_judged, "n_labels": (point["n_safe"] + point["n_harmful"])[at, 0].astype(np.int64),
        "sensitivity": point["sens"][at, 0], "specificity": point["spec"][at, 0],
        "raw_rate": q, "corrected_rate": rate, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
        "clipped": clipped, "raw_deviation": raw_dev, "raw_ci_low": ci["raw_ci_low"],
        "raw_ci_high": ci["raw_ci_high"], "corrected_deviation": dev,
        "deviation_ci_low": ci["deviation_ci_low"], "deviation_ci_high": ci["deviation_ci_high"],
        "judge_bias": bias, "bias_ci_low": ci["bias_ci_low"], "bias_ci_high": ci["bias_ci_high"],
        "undefined_share": ci["undefined_share"], "flagged": flagged, "note": np.asarray(notes, dtype=object),
    }, name="corrected_rates", boot=dev_boot)
    sens_low, sens_high, _ = _interval(boot["sens"])
    spec_low, spec_high, _ = _interval(boot["spec"])
    accuracy = Frame({
        "language": lg_keys["language"], "group": lg_keys["group"], "n_judged": lg_counts["n_judged"],
        "n_labels_safe": point["n_safe"][:, 0].astype(np.int64),
        "n_labels_harmful": point["n_harmful"][:, 0].astype(np.int64),
        "sensitivity": point["sens"][:, 0], "sens_ci_low": sens_low, "sens_ci_high": sens_high,
        "specificity": point["spec"][:, 0], "spec_ci_low": spec_low, "spec_ci_high": spec_high,
        "youden": youden, "few_labels": few,
    }, name="judge_accuracy")
    return Correction(rates_frame, accuracy, strata.used, strata.undecided)


def _rate_bootstrap(n_safe: np.ndarray, n_judged: np.ndarray, boot: dict[str, np.ndarray], at: np.ndarray,
                    parent: np.ndarray, starts: np.ndarray, resamples: int, rng: np.random.Generator
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ``_RATE_INTERVALS`` columns, from the judged responses resampled with the labels' resamples
    (``boot``), and the corrected deviations' resamples."""
    q_boot = _binomial_rates(n_safe, n_judged, resamples, rng)
    rate_boot, _ = rogan_gladen(q_boot, boot["sens"][at], boot["spec"][at])
    raw_dev_boot = _macro_deviation(q_boot, parent, starts)
    dev_boot = _macro_deviation(rate_boot, parent, starts)
    out = {}
    out["ci_low"], out["ci_high"], out["undefined_share"] = _interval(rate_boot)
    out["raw_ci_low"], out["raw_ci_high"], _ = _interval(raw_dev_boot)
    out["deviation_ci_low"], out["deviation_ci_high"], _ = _interval(dev_boot)
    out["bias_ci_low"], out["bias_ci_high"], _ = _interval(raw_dev_boot - dev_boot)
    return out, dev_boot


def _note(flagged: bool, undefined: bool, clipped: bool, few: bool, unstable: bool) -> str:
    parts = []
    if flagged:
        parts.append("judge bias: raw deviation faked or hidden by judge error")
    if undefined:
        parts.append(f"undefined: judge near chance (J <= {MIN_YOUDEN:g})")
    if clipped:
        parts.append("clipped to [0, 1]")
    if few:
        parts.append(f"fewer than {FEW_LABELS} labels of a class: leans on the language estimate")
    if unstable:
        parts.append("interval undefined: judge near chance in many resamples")
    return "; ".join(parts)


def _binomial_rates(n_safe: np.ndarray, n_judged: np.ndarray, resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(cells, resamples) bootstrap rates of the judged responses: resampling a cell's n replies with
    replacement is a Binomial(n, safe/n) draw of its safe count. Cells here always hold judged replies."""
    n = n_judged.astype(np.int64)
    p = n_safe / np.maximum(n, 1)
    return rng.binomial(n[:, None], p[:, None], size=(len(n), resamples)) / np.maximum(n, 1)[:, None]
