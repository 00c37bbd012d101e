"""A small SVG canvas for the report's plots: shapes and text written as markup, no drawing library.

The plots are a few hundred rectangles, lines and labels; as SVG text they take milliseconds, where
matplotlib's layout and rasterising took 2.3 s of CPU at paper scale (most of a report read from its
snapshot). Text is laid out from an estimate of its width (``text_width``), generous for sans-serif fonts,
so labels are not clipped; every piece of data text is XML-escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
EM_PER_CHAR = 0.62  # a sans-serif character's advance is about 0.55 em on average: a little more, to be safe
TEXT = "#222222"
AXIS = "#555555"
GRID = "#e3e3e3"
# matplotlib's default colour cycle (tab10): the series of grouped bars and lines
SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def text_width(text: str, size: float) -> float:
    return len(text) * size * EM_PER_CHAR


def rotated_extent(text: str, size: float, degrees: float) -> float:
    """How far a label rotated by ``degrees`` reaches away from its axis (the vertical extent)."""
    angle = math.radians(abs(degrees))
    return text_width(text, size) * math.sin(angle) + size * math.cos(angle)


def fmt(value: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [low, high], about
    ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    ticks = []
    k = first
    while k * step <= high + step * 1e-9:
        ticks.append(round(k * step, 10))
        k += 1
    return ticks


def tick_label(value: float) -> str:
    return fmt(value).replace("-", "\u2212")  # a typographic minus


def _attrs(attrs: dict) -> str:
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = fmt(value)
        parts.append(f' {key.rstrip("_").replace("_", "-")}="{escape(str(value), quote=True)}"')
    return "".join(parts)


class Canvas:
    """Elements appended in drawing order (later ones on top); ``svg()`` gives the document."""

    def __init__(self, width: float, height: float, title: str = ""):
        self.width, self.height = math.ceil(width), math.ceil(height)
        self.title = title
        self.defs: list[str] = []
        self.parts: list[str] = []

    def element(self, name: str, **attrs) -> None:
        self.parts.append(f"<{name}{_attrs(attrs)}/>")

    def rect(self, x: float, y: float, width: float, height: float, fill: str, **attrs) -> None:
        if width < 0:
            x, width = x + width, -width
        if height < 0:
            y, height = y + height, -height
        self.element("rect", x=float(x), y=float(y), width=float(width), height=float(height), fill=fill,
                     **attrs)

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = AXIS, width: float = 1.0,
             **attrs) -> None:
        self.element("line", x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), stroke=stroke,
                     stroke_width=float(width), **attrs)

    def polyline(self, points: Sequence[tuple[float, float]], stroke: str, width: float = 1.6) -> None:
        if len(points) > 1:
            self.element("polyline", points=" ".join(f"{fmt(x)},{fmt(y)}" for x, y in points), fill="none",
                         stroke=stroke, stroke_width=float(width))

    def circle(self, x: float, y: float, radius: float, fill: str) -> None:
        self.element("circle", cx=float(x), cy=float(y), r=float(radius), fill=fill)

    def text(self, x: float, y: float, text: str, size: float = 11.0, anchor: str = "start",
             rotate: float = 0.0, bold: bool = False, fill: str = TEXT) -> None:
        """``text`` (escaped) with its vertical middle at ``y``; ``rotate`` degrees about (x, y)."""
        attrs = {"x": float(x), "y": float(y), "font_size": float(size), "text_anchor": anchor,
                 "dominant_baseline": "central", "fill": fill, "font_weight": "bold" if bold else None,
                 "transform": f"rotate({fmt(rotate)} {fmt(x)} {fmt(y)})" if rotate else None}
        self.parts.append(f"<text{_attrs(attrs)}>{escape(str(text), quote=False)}</text>")

    def hatch(self, name: str, stroke: str) -> str:
        """A pattern of diagonal lines, as a fill reference."""
        self.defs.append(f'<pattern id="{name}" width="6" height="6" patternUnits="userSpaceOnUse" '
                         f'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="{stroke}" '
                         'stroke-width="1.5"/></pattern>')
        return f"url(#{name})"

    def gradient(self, name: str, stops: Sequence[tuple[float, str]]) -> str:
        """A vertical gradient from the top (offset 0) to the bottom (offset 1), as a fill reference."""
        inner = "".join(f'<stop offset="{fmt(o)}" stop-color="{c}"/>' for o, c in stops)
        self.defs.append(f'<linearGradient id="{name}" x1="0" y1="0" x2="0" y2="1">{inner}</linearGradient>')
        return f"url(#{name})"

    def svg(self) -> bytes:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" font-family="{FONT}">')
        title = f"<title>{escape(self.title, quote=False)}</title>" if self.title else ""
        defs = f"<defs>{''.join(self.defs)}</defs>" if self.defs else ""
        background = f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>'
        return "".join((head, title, defs, background, *self.parts, "</svg>")).encode("utf-8")


class ValueAxis:
    """A linear scale from data values to pixels along one side of a plotting box: ``start`` is the pixel
    of ``low`` and ``end`` that of ``high`` (for a vertical axis, ``start`` is the box's bottom)."""

    def __init__(self, low: float, high: float, start: float, end: float):
        self.low, self.high, self.start, self.end = low, high, start, end

    def at(self, value: float) -> float:
        value = min(max(value, self.low), self.high)
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def value_grid(canvas: Canvas, axis: ValueAxis, ticks: Sequence[float], across: tuple[float, float],
               vertical: bool, title: str, size: float = 11.0) -> None:
    """Grid lines across the box at ``ticks``, their labels outside it and the axis title. ``across``: the
    box's extent on the other axis (left, right for a vertical axis; top, bottom for a horizontal one)."""
    a, b = across
    for tick in ticks:
        p = axis.at(tick)
        if vertical:
            canvas.line(a, p, b, p, GRID)
            canvas.text(a - 6, p, tick_label(tick), size, anchor="end")
        else:
            canvas.line(p, a, p, b, GRID)
            canvas.text(p, b + 6 + size / 2, tick_label(tick), size, anchor="middle")
    if vertical:
        widest = max((text_width(tick_label(t), size) for t in ticks), default=0.0)
        x = a - 12 - widest - size / 2
        canvas.text(x, (axis.start + axis.end) / 2, title, size, anchor="middle", rotate=-90)
        canvas.line(a, axis.start, a, axis.end, AXIS)
    else:
        canvas.text((axis.start + axis.end) / 2, b + 12 + 1.8 * size, title, size, anchor="middle")
        canvas.line(axis.start, b, axis.end, b, AXIS)


def error_bar(canvas: Canvas, at: float, low: float, high: float, cap: float, vertical: bool) -> None:
    """A line from ``low`` to ``high`` (pixels on the value axis) at ``at``, with caps of half-width
    ``cap``. Nothing where either end is missing."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    if vertical:
        canvas.line(at, low, at, high, "#222222", 1.1)
        for end in (low, high):
            canvas.line(at - cap, end, at + cap, end, "#222222", 1.1)
    else:
        canvas.line(low, at, high, at, "#222222", 1.1)
        for end in (low, high):
            canvas.line(end, at - cap, end, at + cap, "#222222", 1.1)


def legend(canvas: Canvas, x: float, y: float, entries: Sequence[tuple[str, str]],
           size: float = 10.0) -> None:
    """Colour swatches with their labels, one per line, from (x, y) down."""
    for i, (label, colour) in enumerate(entries):
        row = y + i * (size + 7)
        canvas.rect(x, row - size / 2, size, size, colour)
        canvas.text(x + size + 5, row, label, size)


def legend_size(entries: Sequence[tuple[str, str]], size: float = 10.0) -> tuple[float, float]:
    width = max((text_width(label, size) for label, _ in entries), default=0.0) + size + 5
    return width, len(entries) * (size + 7)
