"""The report's "corrected for judge error" section (only when human labels were given): the vote's
sensitivity and specificity per language and group, and the corrected rates and deviations beside the raw
ones. Kept apart from page.py so the section stays one block."""

from __future__ import annotations

from ..analysis import Analysis
from ..analysis.correction import FLAG_POINTS, MIN_YOUDEN, PRIOR_LABELS
from .html import Markup, ci, join, pct, pts, table, tag

ANCHOR, TITLE = "corrected", "Defense rates corrected for judge error"


def nav(entries: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The page's navigation with this section's link after the intervals' (or last)."""
    anchors = [anchor for anchor, _ in entries]
    at = anchors.index("intervals") + 1 if "intervals" in anchors else len(entries)
    return (*entries[:at], (ANCHOR, "Corrected"), *entries[at:])


def _p(text: str) -> Markup:
    return tag("p", text, class_="note")


def section(a: Analysis) -> Markup:
    """The whole ``<section>``, or nothing when the analysis has no corrected rates."""
    from .page import display  # page imports this module

    rates, accuracy = a.tables.get("corrected_rates"), a.tables.get("judge_accuracy")
    if rates is None or accuracy is None:
        return Markup("")
    flagged = [r for r in rates.rows() if r["flagged"]]
    explain = _p(
        "Human labels of a sample of the judged responses give the vote's sensitivity (safe replies it "
        "calls safe) and specificity (harmful replies it calls harmful) per language and group; each label "
        "is weighted by its sampling stratum, and a cell with few labels is pulled towards its language's "
        f"figure (a prior worth {PRIOR_LABELS:g} labels). Corrected rate (Rogan-Gladen): (raw rate + "
        "specificity - 1) / (sensitivity + specificity - 1), clipped to [0, 1]; undefined when the "
        f"denominator is at most {MIN_YOUDEN:g}. Deviations here are from the unweighted mean of the "
        "model's group rates, raw and corrected alike; judge bias = raw minus corrected deviation. "
        "Intervals: 95% bootstrap that redraws the judged responses and the labelled sample. Flagged: a "
        f"judge bias of at least {pts(FLAG_POINTS, signed=False)} pts with its interval excluding 0, i.e. "
        "the raw deviation is the judge's doing, not the model's.")
    if any("budgeted:" in str(r["note"]) for r in rates.rows()):
        explain = join([explain, _p(
            "Budgeted audit: the intervals here stay valid under the stopping rule. Each "
            "is the range of the corrected rate over the staged 97.5% interval of the raw rate and a 97.5% "
            "exact box for the judge's sensitivity and specificity from the labels (Clopper-Pearson on the "
            "human-safe share of each vote's labels); deviations bound each group's box at 95% / G "
            "(Bonferroni over the model's G groups). They are conservative; the judge-bias test is not "
            "run (docs/statistics.md).")])
    summary = _p(f"{len(flagged)} of {len(rates)} group cells flagged." if flagged else
                 f"No group cell flagged ({len(rates)} cells).")
    acc_rows = [[display("language", r["language"]), display("group", r["group"]),
                 f"{r['n_labels_safe']:,} / {r['n_labels_harmful']:,}",
                 f"{pct(r['sensitivity'])} {ci(r['sens_ci_low'], r['sens_ci_high'])}",
                 f"{pct(r['specificity'])} {ci(r['spec_ci_low'], r['spec_ci_high'])}",
                 "–" if r["youden"] != r["youden"] else f"{r['youden']:.2f}",
                 "yes" if r["few_labels"] else ""] for r in accuracy.rows()]
    rate_rows = [[display("language", r["language"]), display("group", r["group"]), r["model"],
                  f"{r['n_labels']:,}", pct(r["sensitivity"]), pct(r["specificity"]), pct(r["raw_rate"]),
                  pct(r["corrected_rate"]), ci(r["ci_low"], r["ci_high"]), pts(r["raw_deviation"]),
                  pts(r["corrected_deviation"]), ci(r["deviation_ci_low"], r["deviation_ci_high"], True),
                  pts(r["judge_bias"]), "yes" if r["flagged"] else "", r["note"]] for r in rates.rows()]
    body = join([
        explain, summary,
        table(["language", "group", "model", "labels", "sensitivity", "specificity", "raw rate",
               "corrected rate", "95% CI", "raw deviation (pts)", "corrected deviation (pts)", "95% CI",
               "judge bias (pts)", "flagged", "note"], rate_rows, id="corrected-table"),
        tag("details", join([tag("summary", "The vote against human labels, per language and group"),
                             table(["language", "group", "labels safe / harmful", "sensitivity (95% CI)",
                                    "specificity (95% CI)", "Youden J", "few labels"], acc_rows,
                                   id="judge-accuracy-table")])),
    ])
    return tag("section", join([tag("h2", TITLE), body]), id=ANCHOR)
