"""PNG plots of the analysis, drawn with matplotlib's Agg canvas (no display, no pyplot global state).
Each function returns PNG bytes; the report writes them to files and embeds them as data URIs. Drawing is
most of a report's time at paper scale (text layout of the heatmaps' cell numbers), so ``start_plots`` draws
in other processes when two CPUs are there (``drawing``), while the report writes its tables."""

from __future__ import annotations

import io
import math

import numpy as np

from ..analysis import Analysis, Frame
from . import drawing
from .drawing import Drawing, Helper, Job, workers_available
from .html import MIDDLE, NEGATIVE, POSITIVE

__all__ = ["Drawing", "all_plots", "fork_helper", "start_plots", "workers_available"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(fig) -> bytes:
    """The figure as PNG, drawn once. ``savefig`` on a figure with a layout engine draws it twice: once with
    drawing switched off, only to run the layout, then for real. Here the layout runs first and the figure
    is drawn by the Agg canvas directly (the same pixels: the same layout, renderer and defaults)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")  # a place holder: drawing does not run the layout again
    buf = io.BytesIO()
    canvas.print_png(buf, metadata={"Software": None})
    return buf.getvalue()


def _label(text: object) -> str:
    """Data text for matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


def _cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "mija_diverging", [tuple(c / 255 for c in rgb) for rgb in (NEGATIVE, MIDDLE, POSITIVE)])


def heatmap(dev: Frame, language: str, models: list[str], groups: list[str], limit: float) -> bytes:
    """Model x group deviation (percentage points) from the model's mean, numbers in the cells; cells whose
    CI excludes 0 are hatched and their number carries a *."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    grid = np.full((len(models), len(groups)), np.nan)
    sig = np.zeros(grid.shape, dtype=bool)
    mi, gi = {m: i for i, m in enumerate(models)}, {g: j for j, g in enumerate(groups)}
    for r in dev.rows():
        if r["language"] == language and r["model"] in mi and r["group"] in gi:
            grid[mi[r["model"]], gi[r["group"]]] = 100 * r["deviation"]
            sig[mi[r["model"]], gi[r["group"]]] = bool(r.get("significant", False))
    # a floor on the height keeps a one-model heatmap's rotated labels, colour bar and ticks readable
    fig = _figure(1.6 + 0.75 * len(groups), max(3.2, 1.9 + 0.42 * len(models)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap=_cmap(), vmin=-100 * limit, vmax=100 * limit, aspect="auto")
    ax.set_xticks(range(len(groups)), [_label(g) for g in groups], rotation=45, ha="right")
    ax.set_yticks(range(len(models)), [_label(m) for m in models])
    # the cell numbers and hatches lie inside the axes, so the layout need not measure them (in_layout);
    # the hatches are one collection, not a patch per cell
    hatched = []
    for i in range(len(models)):
        for j in range(len(groups)):
            if math.isfinite(grid[i, j]):
                dark = abs(grid[i, j]) > 0.6 * 100 * limit
                mark = "*" if sig[i, j] else ""
                ax.text(j, i, f"{grid[i, j]:+.1f}{mark}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black", fontweight="bold" if mark else "normal",
                        in_layout=False)
                if sig[i, j]:
                    hatched.append(Rectangle((j - 0.5, i - 0.5), 1, 1))
    if hatched:
        ax.add_collection(PatchCollection(hatched, facecolor="none", hatch="///", linewidth=0,
                                          edgecolor="#00000055", in_layout=False), autolim=False)
    bar = fig.colorbar(image, ax=ax, label="deviation (pts)", fraction=0.05, aspect=12)
    bar.locator = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10])  # round ticks, not fractions of the limit
    bar.update_ticks()
    ax.set_title(f"Defense-rate deviation by group ({_label(language)}); hatched *: 95% CI excludes 0",
                 fontsize=10)
    return _png(fig)


def rate_bars(frame: Frame, key: str, title: str, horizontal: bool = False) -> bytes:
    """Defense rate per category of ``key`` with 95% CI error bars."""
    labels = [_label(v) for v in frame[key].tolist()]
    rate, low, high = 100 * frame["rate"], 100 * frame["ci_low"], 100 * frame["ci_high"]
    err = np.vstack([np.nan_to_num(rate - low), np.nan_to_num(high - rate)])
    fig = _figure(7, 1.2 + 0.3 * len(labels)) if horizontal else _figure(1.5 + 0.9 * len(labels), 3.6)
    ax = fig.add_subplot()
    pos = np.arange(len(labels))
    if horizontal:
        ax.barh(pos, rate, xerr=err, color="#4a78a8", capsize=2)
        ax.set_yticks(pos, labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("defense rate (%)")
    else:
        ax.bar(pos, rate, yerr=err, color="#4a78a8", capsize=3)
        ax.set_xticks(pos, labels, rotation=30, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("defense rate (%)")
    ax.set_title(title)
    return _png(fig)


def model_strategy(frame: Frame) -> bytes:
    """Grouped bars: defense rate per model, one bar per strategy, with CIs."""
    models = list(dict.fromkeys(frame["model"].tolist()))
    strategies = list(dict.fromkeys(frame["strategy"].tolist()))
    width = 0.8 / max(len(strategies), 1)
    fig = _figure(3.5 + 0.9 * len(models), 3.8)
    ax = fig.add_subplot()
    for s_i, strategy in enumerate(strategies):
        sel = frame["strategy"] == strategy
        offset = (s_i - (len(strategies) - 1) / 2) * width
        pos = np.array([models.index(m) for m in frame["model"][sel]]) + offset
        rate = 100 * frame["rate"][sel]
        err = np.vstack([np.nan_to_num(rate - 100 * frame["ci_low"][sel]),
                         np.nan_to_num(100 * frame["ci_high"][sel] - rate)])
        ax.bar(pos, rate, width, yerr=err, capsize=2, label=_label(strategy))
    ax.set_xticks(range(len(models)), [_label(m) for m in models], rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("defense rate (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Defense rate by model and strategy")
    return _png(fig)


def disparity_plot(disp: Frame) -> bytes:
    """Max-min spread between groups per model and language, with CIs."""
    labels = [_label(f"{m} ({lang})") for m, lang in zip(disp["model"], disp["language"], strict=True)]
    spread = 100 * disp["spread"]
    err = np.vstack([np.nan_to_num(spread - 100 * disp["spread_ci_low"]),
                     np.nan_to_num(100 * disp["spread_ci_high"] - spread)]).clip(min=0)
    fig = _figure(7, 1.2 + 0.3 * len(labels))
    ax = fig.add_subplot()
    pos = np.arange(len(labels))
    ax.barh(pos, spread, xerr=err, color="#b2182b", capsize=2)
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    ax.set_xlabel("max - min defense rate between groups (pts)")
    ax.set_title("Disparity between groups")
    return _png(fig)


def scaling_plot(scale: Frame, size_order: list[str]) -> bytes:
    """Mean spread and mean defense rate by size class, one line per family and language."""
    fig = _figure(9, 3.6)
    ax_spread, ax_rate = fig.subplots(1, 2)
    classes = [c for c in size_order if c in set(scale["size_class"].tolist())]
    for family, lang in dict.fromkeys(zip(scale["family"].tolist(), scale["language"].tolist(), strict=True)):
        sel = (scale["family"] == family) & (scale["language"] == lang)
        x = [classes.index(c) for c in scale["size_class"][sel]]
        label = _label(f"{family} ({lang})")
        spread = 100 * scale["mean_spread"][sel]
        err = np.vstack([np.nan_to_num(spread - 100 * scale["spread_ci_low"][sel]),
                         np.nan_to_num(100 * scale["spread_ci_high"][sel] - spread)]).clip(min=0)
        ax_spread.errorbar(x, spread, yerr=err, marker="o", capsize=3, label=label)
        ax_rate.plot(x, 100 * scale["mean_rate"][sel], marker="o", label=label)
    for ax, ylabel in ((ax_spread, "mean max-min spread (pts)"), (ax_rate, "mean defense rate (%)")):
        ax.set_xticks(range(len(classes)), [_label(c) for c in classes])
        ax.set_xlabel("size class")
        ax.set_ylabel(ylabel)
    ax_rate.set_ylim(0, 100)
    ax_rate.legend(fontsize=7)
    fig.suptitle("Scaling within model families")
    return _png(fig)


Tables = Analysis | dict[str, Frame]  # an analysis, or the tables of one still being computed
PLOTTERS = ("heatmap", "rate_bars", "model_strategy", "disparity_plot", "scaling_plot")


def _draw(func: str, args: tuple) -> bytes:
    """Draw with the plotting function of this name (the helper process gets names, not code)."""
    if func not in PLOTTERS:
        raise ValueError(f"no plot function {func!r}")
    return globals()[func](*args)


def _columns(frame: Frame, *names: str) -> Frame:
    """The columns of ``frame`` a plot draws (only these travel to a helper process)."""
    return Frame({name: frame[name] for name in names if name in frame}, frame.name)


def _jobs(analysis: Tables, models: list[str], groups_by_language: dict[str, list[str]], limit: float,
          size_order: list[str]) -> list[Job]:
    """(plot name, rough cost, plotting function, its arguments) for every plot the analysis has. The cost
    counts the text artists, which is where matplotlib spends its time (a heatmap draws a number in every
    cell), plus a share per figure and per bar with its error bar (about 2.3 ms of CPU a unit at paper
    scale, fitted on the six plots there)."""
    dev = _columns(analysis["deviations"], "model", "language", "group", "deviation", "significant")
    jobs = [(f"heatmap_{lang}", 40 + len(models) * len(groups), "heatmap", (dev, lang, models, groups, limit))
            for lang, groups in groups_by_language.items()]
    interval = ("rate", "ci_low", "ci_high")
    jobs.append(("strategy", 30 + 2 * len(analysis["by_strategy"]), "rate_bars",
                 (_columns(analysis["by_strategy"], "strategy", *interval), "strategy",
                  "Defense rate by strategy")))
    jobs.append(("model_strategy", 30 + len(analysis["by_model_strategy"]), "model_strategy",
                 (_columns(analysis["by_model_strategy"], "model", "strategy", *interval),)))
    jobs.append(("scenario_category", 30 + 2 * len(analysis["by_scenario_category"]), "rate_bars",
                 (_columns(analysis["by_scenario_category"], "scenario_category", *interval),
                  "scenario_category", "Defense rate by scenario category", True)))
    if len(analysis["disparity"]):
        jobs.append(("disparity", 30 + 2.5 * len(analysis["disparity"]), "disparity_plot",
                     (_columns(analysis["disparity"], "model", "language", "spread", "spread_ci_low",
                               "spread_ci_high"),)))
    if len(analysis["scaling"]):
        jobs.append(("scaling", 60 + len(analysis["scaling"]), "scaling_plot",
                     (_columns(analysis["scaling"], "family", "language", "size_class", "mean_spread",
                               "spread_ci_low", "spread_ci_high", "mean_rate"), size_order)))
    return jobs


def fork_helper() -> Helper | None:
    """The helper the command started (``drawing.prefork``), or one forked now, that imports matplotlib while
    the report loads and analyses and draws the plots once ``start_plots`` sends them; None when drawing in
    another process is not worth it (one CPU)."""
    return drawing.take_preforked() or drawing.fork_helper(_draw)


FORK_NOW = "fork now"  # start_plots' default: a helper forked when the plots are started


def start_plots(analysis: Tables, models: list[str], groups_by_language: dict[str, list[str]],
                limit: float, size_order: list[str], workers: int | None = None,
                helper: Helper | None | str = FORK_NOW) -> Drawing:
    """Start drawing every plot; ``Drawing.finish`` gives them. ``helper``: the one ``fork_helper`` gave
    (None: draw in this process); by default one is forked now with ``workers`` processes (default: one per
    CPU, up to two; 1: none, draw in this process)."""
    jobs = _jobs(analysis, models, groups_by_language, limit, size_order)
    if helper == FORK_NOW:
        helper = drawing.fork_helper(_draw, workers)
    return Drawing(jobs, _draw, helper)


def all_plots(analysis: Analysis, models: list[str], groups_by_language: dict[str, list[str]],
              limit: float, size_order: list[str], workers: int | None = None) -> dict[str, bytes]:
    """Every plot's PNG, by name, in a fixed order (``start_plots``, then ``finish``)."""
    return start_plots(analysis, models, groups_by_language, limit, size_order, workers).finish()
