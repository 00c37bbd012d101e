"""The report's section on a budgeted audit: the stopping rule, its target, the calls saved and each cell's
n and staged interval, with the cells the budget stopped before their target marked."""

from __future__ import annotations

from typing import Any

from .html import Markup, ci, join, pct, table, tag


def section(audit: Any) -> Markup:
    """Empty for a full audit; ``audit`` is an ``audit.budgeted.BudgetedAudit``."""
    if audit is None:
        return Markup("")
    r = audit.result
    rows = audit.rows()
    stopped = sum(1 for row in rows if row["stopped_by"] == "budget")
    rule = []
    if r.target is not None:
        rule.append("stop a cell once the full width of its 95% interval, and of its group's deviation, is "
                    f"at most {100 * r.target:g} points")
    if r.budget is not None:
        rule.append(f"spend at most {r.budget:,} target-model calls, the last ones on the widest cells")
    cells_by = ", ".join(("model", "language", "group", *audit.by))
    intro = (f"Budgeted audit: {'; '.join(rule)}. Cells ({cells_by}) draw their prompts in a random order "
             f"(seed {audit.seed}) in stages: a pilot, a stage sized from it, and top-ups only where that "
             f"fell short. {r.calls:,} of the full design's {r.full_calls:,} target-model calls were made "
             f"({pct(r.saved)} saved; judge calls scale the same way). The intervals below combine the "
             f"stages' exact p-values with group-sequential boundaries, so they hold at whichever stage "
             f"each cell stopped (docs/statistics.md); the intervals elsewhere in this report, except "
             f"those corrected for judge error, treat the drawn prompts as a fixed sample.")
    warn = (f"{stopped:,} of {len(rows):,} cells were stopped by the budget before reaching the target; "
            "they are marked 'budget' below." if stopped and r.target is not None else "")
    names = ["model", "language", "group", *audit.by]
    body = [[*(row[k] for k in names), f"{row['n']:,}", pct(row["rate"]), ci(row["low"], row["high"]),
             ci(row["dev_low"], row["dev_high"], as_points=True),
             tag("strong", "budget") if row["stopped_by"] == "budget" else row["stopped_by"]]
            for row in rows]
    parts = [tag("p", intro, class_="note")]
    if warn:
        parts.append(tag("p", warn, class_="banner"))
    parts.append(table([*names, "n", "rate", "95% interval", "deviation interval", "stopped by"], body,
                       id="budget-cells"))
    return tag("section", join([tag("h2", "Budgeted audit"), *parts]), id="budget")
