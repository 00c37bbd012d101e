"""HTML building blocks. Everything that comes from data goes through ``esc``; only ``Markup`` (HTML this
module or the page built itself) is inserted as is. No inline ``style`` attributes: colours are CSS classes,
so the page's Content-Security-Policy can allow exactly one style block, by hash, and no script at all.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

# Diverging colours for deviations: red = less safe than the model's mean, blue = safer (as the paper).
NEGATIVE, MIDDLE, POSITIVE = (0xB2, 0x18, 0x2B), (0xF7, 0xF7, 0xF7), (0x21, 0x66, 0xAC)


class Markup(str):
    """A string of trusted HTML, inserted without escaping."""


def esc(value: Any) -> str:
    if isinstance(value, Markup):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def tag(name: str, content: Any = "", **attrs: Any) -> Markup:
    """``<name attrs>content</name>``; attribute values are escaped, ``class_`` becomes ``class``."""
    rendered = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items()
                       if v is not None)
    return Markup(f"<{name}{rendered}>{esc(content)}</{name}>")


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, id: str | None = None,
          class_: str | None = "data", caption: str | None = None) -> Markup:
    head = join(tag("th", h, scope="col") for h in headers)
    body = join(tag("tr", join(c if isinstance(c, Markup) and c.startswith("<td") else
                                tag("td", c, class_="num" if _numeric(c) else None) for c in row))
                for row in rows)
    cap = tag("caption", caption) if caption else ""
    inner = tag("table", Markup(f"{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"), id=id,
                class_=class_)
    return tag("div", inner, class_="scroll")  # wide tables scroll sideways instead of overflowing


_NUMERIC = re.compile(r"^[\s+\-−–\[<∞]*[\d.,]*[\d–∞]")


def _numeric(value: Any) -> bool:
    """Numbers, percentages, intervals and p-values are right-aligned; text is not."""
    return isinstance(value, int | float) or bool(_NUMERIC.match(str(value)))


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def pts(x: float | None, digits: int = 1, signed: bool = True) -> str:
    """A difference of rates in percentage points."""
    if x is None or not math.isfinite(x):
        return "–"
    value = 100 * x
    if abs(value) < 0.5 * 10 ** -digits:
        value = 0.0
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def ci(low: float, high: float, as_points: bool = False) -> str:
    fmt = (lambda v: pts(v)) if as_points else (lambda v: pct(v))
    return f"[{fmt(low)}, {fmt(high)}]"


def number(x: Any) -> str:
    if isinstance(x, float):
        if not math.isfinite(x):
            return "∞" if x > 0 else "–"
        return f"{x:.3g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def p_value(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def diverging(value: float, limit: float) -> tuple[str, str]:
    """(background, text colour) for a deviation on a symmetric scale of ±``limit``."""
    t = 0.0 if not math.isfinite(value) or limit <= 0 else max(-1.0, min(1.0, value / limit))
    end = NEGATIVE if t < 0 else POSITIVE
    rgb = tuple(round(m + abs(t) * (e - m)) for m, e in zip(MIDDLE, end, strict=True))
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return hex_colour(rgb), "#000000" if luminance > 140 else "#ffffff"


def hex_colour(rgb: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


class ColourClasses:
    """Collects the distinct cell colours of the page as CSS classes (no inline styles)."""

    def __init__(self, prefix: str = "c"):
        self.prefix = prefix
        self.classes: dict[tuple[str, str], str] = {}

    def __call__(self, background: str, foreground: str) -> str:
        key = (background, foreground)
        if key not in self.classes:
            self.classes[key] = f"{self.prefix}{len(self.classes)}"
        return self.classes[key]

    def css(self) -> str:
        return "\n".join(f".{name}{{background:{bg};color:{fg}}}" for (bg, fg), name in self.classes.items())
