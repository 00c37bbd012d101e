"""The balance report of a benchmark: items per language x group x strategy x scenario category, and what
the builds dropped and why (from the events they logged)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..store import Store

CELL = ("language", "group", "strategy", "scenario_category")


@dataclass
class BalanceReport:
    bench: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per non-empty cell, with "items"
    dropped: Counter = field(default_factory=Counter)  # reason -> dropped outputs (every attempt)
    gave_up: Counter = field(default_factory=Counter)  # last reason -> seeds given up
    rewriters: Counter = field(default_factory=Counter)  # "template" or model name -> items
    pairs: int = 0  # counterfactual pair ids
    truncated: int = 0  # items kept although cut at the token limit (builds with keep_truncated)

    @property
    def total(self) -> int:
        return sum(r["items"] for r in self.rows)

    def counts(self, *by: str, language: str | None = None) -> Counter:
        """Items summed over the cells, keyed by the ``by`` fields (e.g. "group", "strategy")."""
        out: Counter = Counter()
        for r in self.rows:
            if language is None or r["language"] == language:
                out[tuple(r[f] for f in by) if len(by) > 1 else r[by[0]]] += r["items"]
        return out

    def pivot(self, row: str, col: str, language: str | None = None) -> tuple[list, list, list[list[int]]]:
        """(row labels, column labels, counts) for a two-way table such as group x strategy."""
        counts = self.counts(row, col, language=language)
        rows = sorted({k[0] for k in counts})
        cols = sorted({k[1] for k in counts})
        return rows, cols, [[counts.get((r, c), 0) for c in cols] for r in rows]

    def spread(self, *by: str, language: str) -> tuple[int, int]:
        """(fewest, most) items over the cells of ``by`` in one language: equal numbers mean balance."""
        values = list(self.counts(*by, language=language).values())
        return (min(values), max(values)) if values else (0, 0)

    @property
    def languages(self) -> list[str]:
        return sorted({r["language"] for r in self.rows})


def balance_report(store: Store, bench: str) -> BalanceReport:
    report = BalanceReport(bench)
    cells: Counter = Counter()
    pairs = set()
    for item in store.items(bench):
        cells[(item.language, item.group, item.strategy, item.scenario_category)] += 1
        report.rewriters[item.provenance.get("rewriter_model") or item.provenance.get("rewriter")
                          or item.provenance.get("dataset") or "unknown"] += 1
        if item.pair_id:
            pairs.add(item.pair_id)
        report.truncated += bool(item.provenance.get("truncated"))
    report.rows = [dict(zip(CELL, key, strict=True), items=n) for key, n in sorted(cells.items())]
    report.pairs = len(pairs)
    for event in store.events(stage="bench"):
        detail = event["detail"]
        if detail.get("bench") != bench:
            continue
        if event["kind"] == "dropped":
            report.dropped[detail.get("reason") or "unknown"] += 1
        elif event["kind"] == "gave_up":
            reasons = detail.get("reasons") or ["unknown"]
            report.gave_up[reasons[-1]] += 1
    return report
