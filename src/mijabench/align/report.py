"""The evaluation as one self-contained HTML page and as plain terminal lines. Every text that came from a
model, a prompt or a file is escaped."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

CONTENT_WARNING = ("Content warning: the prompts and responses below are offensive by design; they were "
                   "written to test model safety towards demographic groups.")
EXAMPLE_CHARS = 600

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.flag{background:#fde2e1;border:2px solid #c0392b;padding:1em}
.ok{background:#e6f4ea;border:1px solid #2e7d32;padding:1em}.warn{color:#8a5a00}
.held{background:#fff6dd}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em;margin:0}
"""


def pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%"


def cell_text(cell: dict[str, Any]) -> str:
    if cell.get("rate") is None:
        return "n/a"
    return f"{pct(cell['rate'])} [{pct(cell['ci_low'])}, {pct(cell['ci_high'])}] n={cell['n']}"


def change_text(change: float | None) -> str:
    return "n/a" if change is None else f"{100 * change:+.1f} pts"


def terminal_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as plain lines (the CLI prints them; they hold no model text)."""
    lines = [summary["flags"]["verdict"], "", "defense rate (before -> after):"]
    for row in summary["pooled"]:
        lines.append(f"  {row['subset']:<30} {cell_text(row['before'])} -> {cell_text(row['after'])} "
                     f"({change_text(row['change'])}, McNemar p={row['mcnemar_p']:.3g})")
    lines.append("per group:")
    for row in summary["groups"]:
        tag = "seen" if row["seen"] else "HELD-OUT"
        lines.append(f"  {row['group']:<16} {tag:<8} {cell_text(row['before'])} -> {cell_text(row['after'])}")
    lines.append("per strategy:")
    for row in summary["strategies"]:
        tag = "seen" if row["seen"] else "HELD-OUT"
        lines.append(f"  {row['strategy']:<24} {tag:<8} {cell_text(row['before'])} -> "
                     f"{cell_text(row['after'])}")
    over = summary["over_refusal"]
    lines.append(f"over-refusal on benign controls: {cell_text(over['all']['before'])} -> "
                 f"{cell_text(over['all']['after'])}" + ("  DOUBLED" if over["all"]["doubled"] else ""))
    for row in over["groups"]:
        mark = "  DOUBLED" if row["doubled"] else ""
        lines.append(f"  {row['group']:<16} {cell_text(row['before'])} -> {cell_text(row['after'])}{mark}")
    for name, m in (summary.get("margins") or {}).items():
        if m.get("pairs"):
            lines.append(f"preference margin on {name} pairs: mean {m['mean']:+.3f}, "
                         f"{pct(m['share_positive'])} positive (n={m['pairs']})")
    return lines


def write_report(summary: dict[str, Any], examples: list[dict[str, Any]], path: str | Path) -> Path:
    flags = summary["flags"]
    banner_class = "flag" if flags["safer_but_over_refusing"] else "ok"
    split = summary.get("split") or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mijabench alignment evaluation</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Alignment re-audit: before and after DPO</h1>",
        f"<p class='warn'>{escape(CONTENT_WARNING)}</p>",
        f"<div class='{banner_class}'><strong>{escape(flags['verdict'])}</strong></div>",
        "<p>Base: <code>" + escape(str(summary.get("base", ""))) + "</code>; trained weights: <code>"
        + escape(str(summary.get("weights", ""))) + "</code>; split: " + escape(str(split.get("split", "")))
        + "; held-out groups: " + escape(", ".join(split.get("holdout_groups") or []) or "none")
        + "; held-out strategies: " + escape(", ".join(split.get("holdout_strategies") or []) or "none")
        + "; judges: " + escape(", ".join(summary.get("judges") or [])) + ".</p>",
        "<p>Defense rate = safe / judged, with 95% bootstrap intervals. Over-refusal = share of benign "
        "requests about the same groups that the rule judge reads as a refusal.</p>",
        "<h2>Defense rate, pooled</h2>",
        _table(["subset", "before", "after", "change", "better / worse", "McNemar p"],
               [[r["subset"], cell_text(r["before"]), cell_text(r["after"]), change_text(r["change"]),
                 f"{r['better']} / {r['worse']}", f"{r['mcnemar_p']:.3g}"] for r in summary["pooled"]]),
        "<h2>Defense rate per group</h2>",
        _table(["group", "in training", "before", "after", "change"],
               [[r["group"], "yes" if r["seen"] else "held out", cell_text(r["before"]),
                 cell_text(r["after"]), change_text(r["change"])] for r in summary["groups"]],
               held=[not r["seen"] for r in summary["groups"]]),
        "<h2>Defense rate per strategy</h2>",
        _table(["strategy", "in training", "before", "after", "change"],
               [[r["strategy"], "yes" if r["seen"] else "held out", cell_text(r["before"]),
                 cell_text(r["after"]), change_text(r["change"])] for r in summary["strategies"]],
               held=[not r["seen"] for r in summary["strategies"]]),
        "<h2>Over-refusal on benign controls</h2>",
        _table(["group", "before", "after", "change", "doubled"],
               [["all groups", cell_text(summary["over_refusal"]["all"]["before"]),
                 cell_text(summary["over_refusal"]["all"]["after"]),
                 change_text(summary["over_refusal"]["all"]["change"]),
                 "YES" if summary["over_refusal"]["all"]["doubled"] else "no"]]
               + [[r["group"], cell_text(r["before"]), cell_text(r["after"]), change_text(r["change"]),
                   "YES" if r["doubled"] else "no"] for r in summary["over_refusal"]["groups"]]),
    ]
    margins = summary.get("margins") or {}
    if margins:
        parts.append("<h2>Preference margins (policy minus reference)</h2>")
        parts.append(_table(["pairs", "n", "mean", "median", "share positive"],
                            [[name, str(m["pairs"]), _num(m["mean"]), _num(m["median"]),
                              pct(m["share_positive"])] for name, m in margins.items()]))
    if examples:
        parts.append("<h2>Examples (held-out prompts)</h2>")
        for ex in examples:
            parts.append(
                f"<h3>{escape(ex['group'])} / {escape(ex['strategy'])}</h3>"
                f"<p>Prompt</p><pre>{escape(_short(ex['prompt']))}</pre>"
                f"<p>Before ({escape(ex['before_label'])})</p><pre>{escape(_short(ex['before']))}</pre>"
                f"<p>After ({escape(ex['after_label'])})</p><pre>{escape(_short(ex['after']))}</pre>")
    parts.append("</body></html>")
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path


def _table(header: list[str], rows: list[list[str]], held: list[bool] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        css = " class='held'" if held and held[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _short(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " [...]"


def _num(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"
