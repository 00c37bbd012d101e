"""The report's plots as SVG (``svg.Canvas``): the deviation heatmaps, defense rates with their 95% CIs, the
spread between groups and the scaling lines. Each function returns the SVG document as bytes; the report
writes them to ``plots/*.svg`` and embeds them as images (an SVG shown through ``<img>`` runs no script)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..analysis import Analysis, Frame
from .html import MIDDLE, NEGATIVE, POSITIVE, diverging, hex_colour
from .svg import (
    SERIES,
    Canvas,
    ValueAxis,
    error_bar,
    legend,
    legend_size,
    nice_ticks,
    rotated_extent,
    text_width,
    tick_label,
    value_grid,
)

__all__ = ["all_plots", "disparity_plot", "heatmap", "model_strategy", "rate_bars", "scaling_plot"]

SIZE = 11.0  # labels and ticks, px
TITLE_SIZE = 13.0
PERCENT_TICKS = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]


def _title(canvas: Canvas, centre: float, text: str) -> None:
    canvas.text(centre, 20, text, TITLE_SIZE, anchor="middle")


def _centred(centre: float, text: str, size: float = TITLE_SIZE) -> tuple[float, float]:
    """(centre, right edge) for a title centred on ``centre`` but kept inside the left edge."""
    half = text_width(text, size) / 2 + 10
    centre = max(centre, half)
    return centre, centre + half


def heatmap(dev: Frame, language: str, models: list[str], groups: list[str], limit: float) -> bytes:
    """Model x group deviation (percentage points) from the model's mean, numbers in the cells, coloured as
    the page's heatmap table; cells whose CI excludes 0 are hatched and their number carries a *."""
    grid = np.full((len(models), len(groups)), np.nan)
    sig = np.zeros(grid.shape, dtype=bool)
    mi, gi = {m: i for i, m in enumerate(models)}, {g: j for j, g in enumerate(groups)}
    for r in dev.rows():
        if r["language"] == language and r["model"] in mi and r["group"] in gi:
            grid[mi[r["model"]], gi[r["group"]]] = 100 * r["deviation"]
            sig[mi[r["model"]], gi[r["group"]]] = bool(r.get("significant", False))
    title = f"Defense-rate deviation by group ({language}); hatched *: 95% CI excludes 0"
    cell_w = 58.0
    # a floor on the grid's height keeps a one-model heatmap's colour bar readable
    cell_h = max(26.0, 170.0 / max(len(models), 1))
    grid_w, grid_h = cell_w * len(groups), cell_h * len(models)
    cos45 = math.sqrt(0.5)
    left = 14 + max((text_width(m, SIZE) for m in models), default=0.0)
    # a rotated group label reaches left of its column: the first ones may reach past the models' labels
    left = max([left] + [text_width(g, SIZE) * cos45 - (j + 0.5) * cell_w + 8 for j, g in enumerate(groups)])
    top = 40.0
    bottom = top + grid_h + 12 + max((rotated_extent(g, SIZE, 45) for g in groups), default=0.0)
    limit_pts = 100 * limit
    ticks = nice_ticks(-limit_pts, limit_pts, 7)
    bar_x = left + grid_w + 18
    bar_w = 16.0
    right = bar_x + bar_w + 10 + max((text_width(tick_label(t), SIZE) for t in ticks), default=0.0) + 24
    centre, title_right = _centred(left + grid_w / 2, title)
    canvas = Canvas(max(right, title_right), bottom + 8, title)
    _title(canvas, centre, title)
    hatch = canvas.hatch("hatch", "#00000066") if sig.any() else ""
    for i, model in enumerate(models):
        y = top + i * cell_h
        canvas.text(left - 8, y + cell_h / 2, model, SIZE, anchor="end")
        for j in range(len(groups)):
            x, value = left + j * cell_w, grid[i, j]
            if not math.isfinite(value):
                canvas.rect(x, y, cell_w, cell_h, "#ffffff", stroke="#eeeeee")
                continue
            background, foreground = diverging(value, limit_pts)
            canvas.rect(x, y, cell_w, cell_h, background, stroke="#ffffff")
            if sig[i, j]:
                canvas.rect(x, y, cell_w, cell_h, hatch)
            canvas.text(x + cell_w / 2, y + cell_h / 2, f"{value:+.1f}{'*' if sig[i, j] else ''}", 10.0,
                        anchor="middle", bold=bool(sig[i, j]), fill=foreground)
    for j, group in enumerate(groups):
        x, y = left + (j + 0.5) * cell_w, top + grid_h + 8
        canvas.text(x, y, group, SIZE, anchor="end", rotate=-45)
    # the colour bar: +limit at the top, as the cells' scale
    stops = [(0.0, hex_colour(POSITIVE)), (0.5, hex_colour(MIDDLE)), (1.0, hex_colour(NEGATIVE))]
    fill = canvas.gradient("scale", stops)
    canvas.rect(bar_x, top, bar_w, grid_h, fill, stroke="#999999")
    axis = ValueAxis(-limit_pts, limit_pts, top + grid_h, top)
    for tick in ticks:
        y = axis.at(tick)
        canvas.line(bar_x + bar_w, y, bar_x + bar_w + 4, y)
        canvas.text(bar_x + bar_w + 7, y, tick_label(tick), SIZE)
    canvas.text(right - 8, top + grid_h / 2, "deviation (pts)", SIZE, anchor="middle", rotate=90)
    return canvas.svg()


Series = tuple[str, str, np.ndarray, np.ndarray, np.ndarray]  # label, colour, values, CI lows, CI highs


def _bars(labels: Sequence[str], series: Sequence[Series], title: str, axis_title: str, ticks: list[float],
          horizontal: bool, show_legend: bool = False) -> bytes:
    """Bars per category (one per series, side by side) with their CIs as error bars, on a value axis
    from ``ticks[0]`` to ``ticks[-1]``. Missing values draw no bar."""
    n, k = len(labels), max(len(series), 1)
    entries = [(name, colour) for name, colour, *_ in series]
    legend_w = legend_size(entries)[0] + 24 if show_legend else 0.0
    if horizontal:
        slot = max(24.0, 12.0 * k + 8)
        left = 14 + max((text_width(t, SIZE) for t in labels), default=0.0)
        top, plot_w = 40.0, 440.0
        plot_h = slot * n
        box_right, bottom = left + plot_w, top + plot_h + 2.6 * SIZE + 18
        axis = ValueAxis(ticks[0], ticks[-1], left, box_right)
    else:
        slot = max(62.0, 16.0 * k + 20)
        plot_h, top = 240.0, 40.0
        left = 30 + 2 * SIZE + max((text_width(tick_label(t), SIZE) for t in ticks), default=0.0)
        # the first rotated labels reach left of their slot
        left = max([left] + [text_width(t, SIZE) * math.cos(math.radians(30)) - (i + 0.5) * slot + 8
                             for i, t in enumerate(labels)])
        plot_w = slot * n
        box_right = left + plot_w
        bottom = top + plot_h + 12 + max((rotated_extent(t, SIZE, 30) for t in labels), default=0.0)
        axis = ValueAxis(ticks[0], ticks[-1], top + plot_h, top)
    centre, title_right = _centred((left + box_right) / 2, title)
    canvas = Canvas(max(box_right + 20 + legend_w, title_right), bottom + 8, title)
    _title(canvas, centre, title)
    if horizontal:
        value_grid(canvas, axis, ticks, (top, top + plot_h), False, axis_title, SIZE)
    else:
        value_grid(canvas, axis, ticks, (left, box_right), True, axis_title, SIZE)
    thick = 0.8 * slot / k
    for i, label in enumerate(labels):
        start = (top if horizontal else left) + i * slot
        if horizontal:
            canvas.text(left - 8, start + slot / 2, label, SIZE, anchor="end")
        else:
            canvas.text(start + slot / 2, top + plot_h + 8, label, SIZE, anchor="end", rotate=-30)
        for s, (_, colour, values, lows, highs) in enumerate(series):
            value = float(values[i])
            if not math.isfinite(value):
                continue
            at = start + 0.1 * slot + (s + 0.5) * thick
            base, end = axis.at(max(ticks[0], 0.0)), axis.at(value)
            if horizontal:
                canvas.rect(base, at - thick / 2, end - base, thick, colour)
            else:
                canvas.rect(at - thick / 2, end, thick, base - end, colour)
            error_bar(canvas, at, axis.at(float(lows[i])) if math.isfinite(lows[i]) else math.nan,
                      axis.at(float(highs[i])) if math.isfinite(highs[i]) else math.nan,
                      min(4.0, thick / 3), vertical=not horizontal)
    if show_legend:
        legend(canvas, box_right + 20, top + 8, entries)
    return canvas.svg()


def _percent(frame: Frame, name: str) -> np.ndarray:
    return 100 * np.asarray(frame[name], dtype=np.float64)


def rate_bars(frame: Frame, key: str, title: str, horizontal: bool = False) -> bytes:
    """Defense rate per category of ``key`` with 95% CI error bars."""
    labels = [str(v) for v in frame[key].tolist()]
    series = [("defense rate", "#4a78a8", _percent(frame, "rate"), _percent(frame, "ci_low"),
               _percent(frame, "ci_high"))]
    return _bars(labels, series, title, "defense rate (%)", PERCENT_TICKS, horizontal)


def model_strategy(frame: Frame) -> bytes:
    """Grouped bars: defense rate per model, one bar per strategy, with CIs."""
    models = list(dict.fromkeys(str(m) for m in frame["model"].tolist()))
    strategies = list(dict.fromkeys(str(s) for s in frame["strategy"].tolist()))
    model_of = [str(m) for m in frame["model"].tolist()]
    strategy_of = [str(s) for s in frame["strategy"].tolist()]
    series = []
    for s_i, strategy in enumerate(strategies):
        values = [np.full(len(models), np.nan) for _ in range(3)]
        for row, (model, name) in enumerate(zip(model_of, strategy_of, strict=True)):
            if name == strategy:
                for column, out in zip(("rate", "ci_low", "ci_high"), values, strict=True):
                    out[models.index(model)] = 100 * float(frame[column][row])
        series.append((strategy, SERIES[s_i % len(SERIES)], *values))
    return _bars(models, series, "Defense rate by model and strategy", "defense rate (%)", PERCENT_TICKS,
                 horizontal=False, show_legend=True)


def _upper_ticks(*columns: np.ndarray) -> list[float]:
    """Ticks from 0 to a round value over every finite value of ``columns``."""
    finite = np.concatenate([c[np.isfinite(c)] for c in columns]) if columns else np.zeros(0)
    top = max(float(finite.max()) if finite.size else 0.0, 1.0)
    ticks = nice_ticks(0.0, top, 6)
    if ticks[-1] < top:
        ticks.append(ticks[-1] + (ticks[1] - ticks[0]))
    return ticks


def disparity_plot(disp: Frame) -> bytes:
    """Max-min spread between groups per model and language, with CIs."""
    labels = [f"{m} ({lang})" for m, lang in zip(disp["model"].tolist(), disp["language"].tolist(),
                                                  strict=True)]
    spread, low, high = (_percent(disp, c) for c in ("spread", "spread_ci_low", "spread_ci_high"))
    series = [("spread", "#b2182b", spread, low, high)]
    return _bars(labels, series, "Disparity between groups", "max - min defense rate between groups (pts)",
                 _upper_ticks(spread, high), horizontal=True)


def _line_panel(canvas: Canvas, left: float, top: float, width: float, height: float, classes: list[str],
                lines: list[tuple[str, list[int], np.ndarray, np.ndarray | None, np.ndarray | None]],
                ticks: list[float], axis_title: str) -> None:
    """One panel of ``scaling_plot``: a line per entry of ``lines`` (colour, class positions, values and,
    when given, CI lows and highs) over the size classes."""
    axis = ValueAxis(ticks[0], ticks[-1], top + height, top)
    value_grid(canvas, axis, ticks, (left, left + width), True, axis_title, SIZE)
    slot = width / max(len(classes), 1)
    for c, name in enumerate(classes):
        canvas.text(left + (c + 0.5) * slot, top + height + 6 + SIZE / 2, name, SIZE, anchor="middle")
    canvas.text(left + width / 2, top + height + 12 + 1.8 * SIZE, "size class", SIZE, anchor="middle")
    for colour, xs, values, lows, highs in lines:
        points = [(left + (x + 0.5) * slot, axis.at(float(v))) for x, v in zip(xs, values, strict=True)
                  if math.isfinite(v)]
        canvas.polyline(points, colour)
        for x, y in points:
            canvas.circle(x, y, 3.5, colour)
        if lows is not None and highs is not None:
            for x, lo, hi in zip(xs, lows, highs, strict=True):
                if math.isfinite(lo) and math.isfinite(hi):
                    error_bar(canvas, left + (x + 0.5) * slot, axis.at(lo), axis.at(hi), 3.0, vertical=True)


def scaling_plot(scale: Frame, size_order: list[str]) -> bytes:
    """Mean spread and mean defense rate by size class, one line per family and language."""
    present = set(str(c) for c in scale["size_class"].tolist())
    classes = [c for c in size_order if c in present]
    family, language = scale["family"].tolist(), scale["language"].tolist()
    size_class = [str(c) for c in scale["size_class"].tolist()]
    spread, low, high, rate = (_percent(scale, c) for c in ("mean_spread", "spread_ci_low", "spread_ci_high",
                                                             "mean_rate"))
    spreads, rates, entries = [], [], []
    for n, key in enumerate(dict.fromkeys(zip(family, language, strict=True))):
        rows = [i for i, k in enumerate(zip(family, language, strict=True)) if k == key and size_class[i] in
                classes]
        colour = SERIES[n % len(SERIES)]
        xs = [classes.index(size_class[i]) for i in rows]
        spreads.append((colour, xs, spread[rows], low[rows], high[rows]))
        rates.append((colour, xs, rate[rows], None, None))
        entries.append((f"{key[0]} ({key[1]})", colour))
    panel_w, panel_h, top = 300.0, 220.0, 44.0
    tick_w = 3 * SIZE * 0.62 + 30 + 2 * SIZE
    left_a = tick_w
    left_b = left_a + panel_w + tick_w + 10
    legend_w, legend_h = legend_size(entries)
    right = left_b + panel_w + 20 + legend_w + 12
    title = "Scaling within model families"
    centre, title_right = _centred(right / 2, title)
    canvas = Canvas(max(right, title_right), top + max(panel_h, legend_h) + 2.6 * SIZE + 20, title)
    _title(canvas, centre, title)
    _line_panel(canvas, left_a, top, panel_w, panel_h, classes, spreads, _upper_ticks(spread, high),
                "mean max-min spread (pts)")
    _line_panel(canvas, left_b, top, panel_w, panel_h, classes, rates, PERCENT_TICKS, "mean defense rate (%)")
    legend(canvas, left_b + panel_w + 20, top + 8, entries)
    return canvas.svg()


def all_plots(analysis: Analysis | dict[str, Frame], models: list[str],
              groups_by_language: dict[str, list[str]], limit: float, size_order: list[str]
              ) -> dict[str, bytes]:
    """Every plot the analysis has, by name, in a fixed order: the heatmap of each language, the rates by
    strategy, by model and strategy and by scenario category, then disparity and scaling when there are
    rows for them."""
    dev = analysis["deviations"]
    out = {f"heatmap_{lang}": heatmap(dev, lang, models, groups, limit)
           for lang, groups in groups_by_language.items()}
    out["strategy"] = rate_bars(analysis["by_strategy"], "strategy", "Defense rate by strategy")
    out["model_strategy"] = model_strategy(analysis["by_model_strategy"])
    out["scenario_category"] = rate_bars(analysis["by_scenario_category"], "scenario_category",
                                         "Defense rate by scenario category", horizontal=True)
    if len(analysis["disparity"]):
        out["disparity"] = disparity_plot(analysis["disparity"])
    if len(analysis["scaling"]):
        out["scaling"] = scaling_plot(analysis["scaling"], size_order)
    return out
