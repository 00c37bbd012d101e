"""The report's SVG plots: the numbers and marks they draw are the analysis's, bars and error bars are to
scale, data text is escaped and laid out inside the picture, and a secret in a model name never reaches a
plot file."""

from __future__ import annotations

import math
import re
from xml.etree import ElementTree

import numpy as np
import pytest

from mijabench.analysis import Frame
from mijabench.report import html, plots, svg

NS = "{http://www.w3.org/2000/svg}"
CELL_W = 58.0  # heatmap cell width (plots.heatmap)


def _parse(data: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(data)
    assert root.tag == f"{NS}svg"
    return root


def _all(root, tag: str) -> list[ElementTree.Element]:
    return list(root.iter(f"{NS}{tag}"))


def _f(element, name: str) -> float:
    return float(element.get(name))


def _deviations(models, groups, values, significant) -> Frame:
    cells = [(m, g) for m in models for g in groups]
    rows = [(m, g, v, s) for (m, g), v, s in zip(cells, values, significant, strict=True)]
    return Frame({"model": np.array([r[0] for r in rows], dtype=object),
                  "language": np.array(["en"] * len(rows), dtype=object),
                  "group": np.array([r[1] for r in rows], dtype=object),
                  "deviation": np.array([r[2] for r in rows], dtype=np.float64),
                  "significant": np.array([r[3] for r in rows], dtype=bool)}, "deviations")


def test_heatmap_cells_carry_the_deviations_colours_and_marks():
    models, groups = ["m-a", "m-b"], ["women", "black", "muslim"]
    values = [0.031, -0.12, np.nan, 0.0, 0.064, -0.02]
    significant = [True, True, False, False, False, True]
    limit = 0.08
    dev = _deviations(models, groups, values, significant)
    root = _parse(plots.heatmap(dev, "en", models, groups, limit))
    numbers = [t for t in _all(root, "text") if t.get("font-size") == "10"]
    expected = [f"{100 * v:+.1f}{'*' if s else ''}" for v, s in zip(values, significant, strict=True)
                if math.isfinite(v)]
    assert [t.text for t in numbers] == expected
    assert [t.get("font-weight") == "bold" for t in numbers] == [s for v, s in zip(values, significant,
                                                                                     strict=True)
                                                                  if math.isfinite(v)]
    rects = _all(root, "rect")
    hatched = [r for r in rects if r.get("fill") == "url(#hatch)"]
    assert len(hatched) == sum(s for v, s in zip(values, significant, strict=True) if math.isfinite(v))
    # every finite cell has the page table's colour for its value (-12 points is past the limit: full red)
    cells = [r for r in rects if _f(r, "width") == CELL_W and r.get("fill") != "url(#hatch)"]
    assert len(cells) == len(values)
    fills = [c.get("fill") for c in cells]
    for fill, value in zip(fills, values, strict=True):
        if math.isfinite(value):
            assert fill == html.diverging(100 * value, 100 * limit)[0]
        else:
            assert fill == "#ffffff"  # no cell colour for a missing deviation
    assert fills[1] == "#{:02x}{:02x}{:02x}".format(*html.NEGATIVE)
    # the cell numbers sit in their cells, row by row
    xs = sorted({round(_f(t, "x")) for t in numbers})
    assert len(xs) == 3 and xs[1] - xs[0] == CELL_W
    labels = {t.text for t in _all(root, "text")}
    assert set(models) | set(groups) <= labels and "deviation (pts)" in labels


def _bars(root, fill: str) -> list[ElementTree.Element]:
    return [r for r in _all(root, "rect") if r.get("fill") == fill]


@pytest.mark.parametrize("horizontal", [False, True])
def test_bars_and_error_bars_are_drawn_to_scale(horizontal):
    rate = np.array([0.25, 0.5, np.nan, 1.0])
    low, high = rate - 0.1, np.minimum(rate + 0.05, 1.0)
    frame = Frame({"strategy": np.array(["a", "b", "c", "d"], dtype=object), "rate": rate, "ci_low": low,
                   "ci_high": high}, "by_strategy")
    root = _parse(plots.rate_bars(frame, "strategy", "title", horizontal=horizontal))
    bars = _bars(root, "#4a78a8")
    assert len(bars) == 3  # no bar for the missing rate
    length = [_f(b, "width" if horizontal else "height") for b in bars]
    finite = rate[np.isfinite(rate)]
    assert np.allclose(np.array(length) / length[-1], finite / finite[-1])  # proportional, from 0
    # each bar's error bar spans its interval, on the same scale
    scale = length[-1] / 1.0
    spans = [line for line in _all(root, "line") if line.get("stroke") == "#222222"
             and (line.get("x1") == line.get("x2")) != horizontal]
    measured = sorted(abs(_f(s, "x2" if horizontal else "y2") - _f(s, "x1" if horizontal else "y1"))
                      for s in spans)
    assert np.allclose(measured, sorted((high - low)[np.isfinite(rate)] * scale), atol=0.02)


def test_grouped_bars_have_one_colour_per_strategy_and_a_legend():
    models, strategies = ["m-a", "m-b", "m-c"], ["persona_assignment", "chain_of_thought"]
    rows = [(m, s) for m in models for s in strategies]
    rate = np.linspace(0.1, 0.9, len(rows))
    frame = Frame({"model": np.array([m for m, _ in rows], dtype=object),
                   "strategy": np.array([s for _, s in rows], dtype=object), "rate": rate,
                   "ci_low": rate - 0.05, "ci_high": rate + 0.05}, "by_model_strategy")
    root = _parse(plots.model_strategy(frame))
    texts = [t.text for t in _all(root, "text")]
    for i, strategy in enumerate(strategies):
        colour = svg.SERIES[i]
        bars = [b for b in _bars(root, colour) if _f(b, "width") != _f(b, "height")]  # not the swatch
        assert len(bars) == len(models)
        heights = [_f(b, "height") for b in sorted(bars, key=lambda b: _f(b, "x"))]
        assert np.allclose(np.array(heights) / 240.0, rate[i::len(strategies)])  # the plot is 240 px high
        assert strategy in texts


def _text_box(t: ElementTree.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a text element by the layout's own width estimate and rotation."""
    size = _f(t, "font-size")
    width = svg.text_width(t.text or "", size)
    x, y = _f(t, "x"), _f(t, "y")
    start = {"start": 0.0, "middle": -width / 2, "end": -width}[t.get("text-anchor")]
    corners = [(start, -size / 2), (start + width, -size / 2), (start, size / 2), (start + width, size / 2)]
    angle = 0.0
    if t.get("transform"):
        angle = math.radians(float(re.match(r"rotate\(([-\d.]+)", t.get("transform")).group(1)))
    cos, sin = math.cos(angle), math.sin(angle)
    points = [(x + cx * cos - cy * sin, y + cx * sin + cy * cos) for cx, cy in corners]
    return (min(p[0] for p in points), min(p[1] for p in points), max(p[0] for p in points),
            max(p[1] for p in points))


HOSTILE = '<script>alert("x")</script> & a model with a rather long name'


def test_data_text_is_escaped_and_every_label_lies_inside_the_picture():
    models = ["m", HOSTILE]
    groups = ["a-group-with-a-long-name", "b", "c", "d"]
    dev = _deviations(models, groups, [0.01 * i for i in range(8)], [False] * 8)
    rate = np.array([0.3, 0.7])
    disp = Frame({"model": np.array(models, dtype=object), "language": np.array(["en", "pt"], dtype=object),
                  "spread": rate, "spread_ci_low": rate - 0.1, "spread_ci_high": rate + 0.2}, "disparity")
    bars = Frame({"scenario_category": np.array([HOSTILE, "x"], dtype=object), "rate": rate,
                  "ci_low": rate - 0.1, "ci_high": rate + 0.1}, "by_scenario_category")
    drawn = [plots.heatmap(dev, "en", models, groups, 0.05), plots.disparity_plot(disp),
             plots.rate_bars(bars, "scenario_category", "title", horizontal=False),
             plots.rate_bars(bars, "scenario_category", "title", horizontal=True)]
    for data in drawn:
        assert b"<script" not in data
        root = _parse(data)
        assert not _all(root, "script")
        width, height = _f(root, "width"), _f(root, "height")
        texts = _all(root, "text")
        assert any(HOSTILE in (t.text or "") for t in texts)  # shown literally
        for t in texts:
            left, top, right, bottom = _text_box(t)
            assert left >= 0 and top >= 0 and right <= width and bottom <= height, (t.text, width, height)


def test_scaling_plot_draws_a_line_per_family_and_language():
    rows = [("llama", "en", "small", 0.10, 0.60), ("llama", "en", "large", 0.20, 0.70),
            ("qwen", "en", "small", 0.05, 0.50), ("qwen", "en", "medium", np.nan, 0.55),
            ("qwen", "en", "large", 0.15, 0.40)]
    cols = list(zip(*rows, strict=True))
    spread = np.array(cols[3], dtype=np.float64)
    scale = Frame({"family": np.array(cols[0], dtype=object), "language": np.array(cols[1], dtype=object),
                   "size_class": np.array(cols[2], dtype=object), "mean_spread": spread,
                   "spread_ci_low": spread - 0.02, "spread_ci_high": spread + 0.03,
                   "mean_rate": np.array(cols[4], dtype=np.float64)}, "scaling")
    root = _parse(plots.scaling_plot(scale, ["small", "medium", "large"]))
    lines = _all(root, "polyline")
    assert len(lines) == 4  # spread and rate, for each family
    points = [len(p.get("points").split()) for p in lines]
    assert points == [2, 2, 2, 3]  # the missing spread leaves its point out of the line, not the rate's
    assert len(_all(root, "circle")) == sum(points)
    labels = [t.text for t in _all(root, "text")]
    assert "llama (en)" in labels and "qwen (en)" in labels
    assert labels.index("small") < labels.index("medium") < labels.index("large")  # in the size order


@pytest.mark.parametrize("low, high", [(0, 100), (-6.7, 6.7), (0, 1), (0, 23.5), (-0.3, 0.3), (0, 1e-3),
                                       (12, 13)])
def test_ticks_are_round_and_cover_the_range(low, high):
    ticks = svg.nice_ticks(low, high, 6)
    assert 3 <= len(ticks) <= 11
    step = ticks[1] - ticks[0]
    assert np.allclose(np.diff(ticks), step)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert ticks[0] >= low - 1e-9 and ticks[-1] <= high + 1e-9
    assert ticks[0] - step < low + 1e-9 and ticks[-1] + step > high - 1e-9  # no room for another tick


def test_a_secret_in_a_model_name_never_reaches_a_plot(store, tmp_path, monkeypatch):
    from mijabench.report import write_report
    from test_analysis import put_rows

    secret = "sk-plot-secret-4711"
    rows = [(f"model-{secret}" if i % 2 else "model-b", "en", group, "persona_assignment", outcome, "")
            for i in range(2) for group in ("women", "black") for outcome in ("safe", "harmful", "safe")]
    put_rows(store, rows)  # stored before the key was known as one: only the report's scrubber stands
    monkeypatch.setenv("PLOT_TEST_API_KEY", secret)
    result = write_report(store, tmp_path / "out", resamples=50)
    assert result.plots and all(p.suffix == ".svg" for p in result.plots.values())
    for path in result.plots.values():
        assert secret not in path.read_text()
    heatmap = result.plots["heatmap_en"].read_text()
    assert "model-***" in heatmap and "model-b" in heatmap
