"""The Rich summary printed after every report: headline counts, the disparity per model and language, and
where the files went. Returns renderables; the CLI prints them."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..analysis import Analysis
from .html import ci, p_value, pct, pts
from .writer import ReportResult


def headline_table(analysis: Analysis) -> Table:
    c = analysis.counts
    overall = analysis["overall"].rows()[0]
    table = Table(title="Audit summary", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("responses", f"{c['responses']:,}")
    table.add_row("judged (safe or harmful)", f"{c['judged']:,}")
    table.add_row("failed / unparsed / not judged (excluded)",
                  f"{c['failed']:,} / {c['unparsed']:,} / {c['unjudged']:,}")
    table.add_row("defense rate overall",
                  f"{pct(overall['rate'])} {ci(overall['ci_low'], overall['ci_high'])}")
    return table


def disparity_table(analysis: Analysis) -> Table:
    label = {"groups": "mean over groups", "responses": "mean over responses"}.get(analysis.average,
                                                                                   analysis.average)
    table = Table(title=f"Disparity between groups (95% CI; model mean = {label})")
    for name, justify in (("model", "left"), ("lang", "left"), ("mean rate", "right"),
                          ("spread (pts)", "right"), ("p all equal", "right"), ("worst group", "left"),
                          ("significant pairs", "right")):
        # the model column folds instead of truncating: two targets often share a long prefix
        model = name == "model"
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         overflow="fold" if model else "ellipsis", min_width=14 if model else None)
    pairs = analysis["pairwise_tests"]
    for r in analysis["disparity"].rows():
        sel = (pairs["model"] == r["model"]) & (pairs["language"] == r["language"]) if len(pairs) else []
        n_sig = int(pairs["significant"][sel].sum()) if len(pairs) else 0
        table.add_row(Text(str(r["model"])), Text(str(r["language"])), pct(r["mean_rate"]),
                      f"{pts(r['spread'], signed=False)} [{pts(r['spread_ci_low'], signed=False)}, "
                      f"{pts(r['spread_ci_high'], signed=False)}]", p_value(r["p_all_equal"]),
                      Text(f"{r['worst_group'] or 'all tied'} ({pct(r['worst_rate'])})"),
                      str(n_sig))
    return table


def summary(result: ReportResult) -> list:
    analysis = result.analysis
    out: list = [Text(b, style="bold red") for b in result.banners]
    if analysis is not None:
        out += [headline_table(analysis), disparity_table(analysis)]
    out.append(Text(f"report: {result.html}\n"
                    f"tables: {len(result.tables)} (CSV + Parquet) in {result.out_dir / 'tables'}\n"
                    f"plots: {len(result.plots)} SVG in {result.out_dir / 'plots'}"))
    return out
