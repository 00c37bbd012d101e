"""The HTML page: sections built from the analysis, poured into ``templates/report.html``.

The page is self-contained: CSS inline (allowed by its hash in the Content-Security-Policy), plots as
``data:`` SVG images (an image runs no script), no script at all (``script-src 'none'``), nothing fetched
from the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import numpy as np

from .. import __version__
from ..analysis import Analysis, Frame
from ..judge import vote
from ..judge.identity import short
from ..taxonomy import load_taxonomy, safe_yaml
from . import budget, correction
from .context import Example
from .html import ColourClasses, Markup, ci, diverging, esc, join, number, p_value, pct, pts, table, tag

AVERAGE_LABEL = {"groups": "mean over groups (each group weighs the same)",
                 "responses": "mean over responses (groups weighted by their judged counts)"}


@dataclass
class PageInput:
    analysis: Analysis
    plots: dict[str, bytes]
    examples: list[Example]
    banners: list[str]
    runs: list[dict[str, Any]]
    judges: list[tuple[str, int]]
    models: list[dict[str, Any]]
    title: str
    subtitle: str
    heatmap_limit: float
    targets: list[dict[str, Any]] = field(default_factory=list)
    budget: Any = None  # a budgeted audit's plan (report.budget)


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


@cache
def _notes() -> dict[str, str]:
    return safe_yaml(_template("notes.yaml"))


def note(key: str, **values: Any) -> Markup:
    """A paragraph of explanatory text from ``templates/notes.yaml`` (escaped like any text)."""
    return _p(_notes()[key].format(**values))


def display(kind: str, value: str) -> str:
    """A taxonomy id's English display name, or the value itself."""
    tax = load_taxonomy()
    source = {"group": tax.groups, "strategy": tax.strategies, "scenario_category": tax.scenario_categories,
              "language": None}.get(kind)
    if kind == "language":
        return tax.language_names.get(value, value)
    item = source.get(value) if source else None
    return item.name("en") if item else (value or "(none)")


def _img(plots: dict[str, bytes], name: str, alt: str) -> Markup:
    if name not in plots:
        return Markup("")
    data = base64.b64encode(plots[name]).decode("ascii")
    return Markup(f'<img class="plot" id="plot-{esc(name)}" alt="{esc(alt)}" '
                  f'src="data:image/svg+xml;base64,{data}">')


def _p(text: str, class_: str = "note") -> Markup:
    return tag("p", text, class_=class_)


# -- sections --------------------------------------------------------------------------------------------
def headline(a: Analysis) -> Markup:
    c = a.counts
    overall = a["overall"].rows()[0] if len(a["overall"]) else {"rate": float("nan"), "ci_low": float("nan"),
                                                                 "ci_high": float("nan")}
    figures = [
        (pct(overall["rate"]), f"defense rate overall, 95% CI {ci(overall['ci_low'], overall['ci_high'])}"),
        (f"{c['responses']:,}", "responses"),
        (f"{c['judged']:,}", "judged safe or harmful"),
        (f"{c['failed']:,}", "failed (no answer; excluded)"),
        (f"{c['unparsed']:,}", "unparsed verdicts (excluded, never counted safe)"),
        (f"{c['unjudged']:,}", "not judged yet (excluded)"),
        (f"{len(a['by_model'])}", "models"),
    ]
    disp = a["disparity"]
    if len(disp):
        i = int(np.nanargmax(disp["spread"]))
        worst = disp["worst_group"][i]
        who = (f"worst group {display('group', worst)} at {pct(disp['worst_rate'][i])}" if worst else
               "all groups tied")
        figures.append((f"{pts(disp['spread'][i], signed=False)} pts",
                        f"largest spread between groups: {disp['model'][i]} ({disp['language'][i]}), 95% CI "
                        f"[{pts(disp['spread_ci_low'][i], signed=False)}, "
                        f"{pts(disp['spread_ci_high'][i], signed=False)}]; all groups equal: "
                        f"p {p_value(disp['p_all_equal'][i])}; {who}"))
        unequal = int((disp["p_all_equal"] < 0.05).sum())
        figures.append((f"{unequal} / {len(disp)}", "models x languages whose groups differ (test of all "
                                                    "groups equal, p < 0.05)"))
    pairs = a["pairwise_tests"]
    figures.append((f"{int(pairs['significant'].sum()) if len(pairs) else 0} / {len(pairs)}",
                    "group pairs with different defense rates (Holm-adjusted p < 0.05)"))
    figures.append((f"{c.get('empty', 0):,} / {c.get('truncated', 0):,}",
                    "empty replies / replies cut off by the token limit (counted apart; see Counts)"))
    cards = join(tag("div", join([tag("div", v, class_="value"), tag("div", label, class_="label")]),
                     class_="figure") for v, label in figures)
    return join([tag("div", cards, class_="figures"), judging(a)])


def empty_rule(a: Analysis) -> str:
    rule = a.meta.get("empty_as", "safe")
    return _notes()["empty_rules"].get(rule, rule)


def judging(a: Analysis) -> Markup:
    """Who voted and how ties and empty replies count: every figure on the page depends on it."""
    voters = a.meta.get("voters")
    described = voters.describe() if voters is not None else "not recorded"
    parts = [f"Vote: {described}."]
    if voters is not None and len(voters.names) > 1:
        parts.append(f"A tie counts as {vote.TIE_RULE}.")
    if voters is not None and voters.even:
        parts.append(f"Warning: {len(voters.names)} voters is an even number, so every split vote is a tie "
                     f"and counts as {vote.TIE_RULE}.")
    parts.append(f"Empty replies: {empty_rule(a)}.")
    targets = a.meta.get("targets") or {}
    varied = sorted({m for m, _ in targets.values()
                     if sum(1 for mm, _ in targets.values() if mm == m) > 1})
    if varied:
        parts.append(f"Run under several settings, so shown as separate rows: {', '.join(varied)} "
                     "(see Provenance).")
    return tag("p", " ".join(parts), class_="judging", id="judging")


def heatmaps(a: Analysis, plots: dict[str, bytes], limit: float, colours: ColourClasses) -> Markup:
    dev = a["deviations"]
    if not len(dev):
        return _p("No judged responses to compare groups on.")
    models = list(dict.fromkeys(a["by_model"]["model"].tolist()))
    means = {(r["model"], r["language"]): r for r in a["by_model_language"].rows()}
    cells = {(r["model"], r["language"], r["group"]): r for r in dev.rows()}
    spreads = {(r["model"], r["language"]): r for r in a["disparity"].rows()}
    parts = [note("heatmap", average=AVERAGE_LABEL.get(a.average, a.average))]
    for lang in [x for x in load_taxonomy().languages if x in set(dev["language"].tolist())] + \
            sorted(set(dev["language"].tolist()) - set(load_taxonomy().languages)):
        groups = group_order(dev, lang)
        rows = []
        for m in models:
            mean = means.get((m, lang))
            if mean is None:
                continue
            d = spreads.get((m, lang))
            if d is None:
                continue
            title = (f"{AVERAGE_LABEL.get(a.average, a.average)}; "
                     f"95% CI {ci(d['mean_ci_low'], d['mean_ci_high'])}; n={mean['n_judged']:,}")
            value = d["mean_rate"]
            row: list[Any] = [m, Markup(f'<td class="num" title="{esc(title)}">{esc(pct(value))}</td>')]
            for g in groups:
                r = cells.get((m, lang, g))
                if r is None:
                    row.append(Markup('<td class="missing" title="no judged responses">–</td>'))
                    continue
                cls = colours(*diverging(r["deviation"], limit))
                title = (f"{display('group', g)}: defense rate {pct(r['rate'])} (n={r['n_judged']:,}); "
                         f"deviation {pts(r['deviation'])} pts, 95% CI {ci(r['ci_low'], r['ci_high'], True)}")
                value = esc(pts(r["deviation"]))
                if r["significant"]:  # visible without hovering: a mark and an outline
                    cls += " sig"
                    title += "; the CI excludes 0"
                    value += '<span class="mark" aria-label="CI excludes 0">*</span>'
                row.append(Markup(f'<td class="cell {cls}" title="{esc(title)}">{value}</td>'))
            rows.append(row)
        parts.append(tag("h3", display("language", lang)))
        parts.append(table(["model", "model mean", *[display("group", g) for g in groups]], rows,
                           id=f"heatmap-{lang}", class_="heatmap",
                           caption=f"Deviation (pts) per group, {display('language', lang)}"))
        parts.append(_img(plots, f"heatmap_{lang}", f"Heatmap of deviations, {display('language', lang)}"))
    return join(parts)


def group_order(dev: Frame, language: str) -> list[str]:
    present = set(dev["group"][dev["language"] == language].tolist())
    known = [g for g in load_taxonomy().groups if g in present]
    return known + sorted(present - set(known))


def disparity(a: Analysis, plots: dict[str, bytes]) -> Markup:
    disp, pairs = a["disparity"], a["pairwise_tests"]
    if not len(disp):
        return _p("Nothing to compare.")
    n_sig: dict[tuple[str, str], int] = {}
    for r in pairs.rows():
        n_sig[(r["model"], r["language"])] = n_sig.get((r["model"], r["language"]), 0) + int(r["significant"])
    rows = [[r["model"], display("language", r["language"]), r["n_groups"], f"{r['n_judged']:,}",
             pct(r["mean_rate"]), pts(r["spread"], signed=False),
             f"[{pts(r['spread_ci_low'], signed=False)}, {pts(r['spread_ci_high'], signed=False)}]",
             p_value(r["p_all_equal"]),
             _named(r["worst_group"], r["worst_rate"]), _named(r["best_group"], r["best_rate"]),
             number(r["best_worst_ratio"]), pts(r["std"], signed=False),
             n_sig.get((r["model"], r["language"]), 0)] for r in disp.rows()]
    parts = [table(["model", "language", "groups", "judged", "mean rate", "spread (pts)", "95% CI",
                    "p (all equal)", "worst group", "best group", "best/worst", "std (pts)",
                    "significant pairs"], rows, id="disparity-table"),
             note("disparity", average=AVERAGE_LABEL.get(a.average, a.average)),
             _img(plots, "disparity", "Spread between groups per model")]
    sig = [r for r in pairs.rows() if r["significant"]]
    sig.sort(key=lambda r: r["p_holm"])
    pair_rows = [[r["model"], display("language", r["language"]), display("group", r["group_a"]),
                  pct(r["rate_a"]), display("group", r["group_b"]), pct(r["rate_b"]), pts(r["difference"]),
                  ci(r["ci_low"], r["ci_high"], True), r["test"], p_value(r["p"]), p_value(r["p_holm"])]
                 for r in sig]
    body = table(["model", "language", "group A", "rate A", "group B", "rate B", "A - B (pts)", "95% CI",
                  "test", "p", "p (Holm)"], pair_rows, id="pairwise-table") if sig else \
        _p("No pair of groups differs after Holm correction.")
    parts.append(tag("details", join([tag("summary", f"Pairs of groups that differ significantly "
                                                     f"({len(sig)} of {len(pairs)}; all in "
                                                     "tables/pairwise_tests.csv)"), body])))
    return join(parts)


def _named(group: str, rate: float) -> str:
    """A worst or best group with its rate; '' (every group tied) names none."""
    return f"{display('group', group)} ({pct(rate)})" if group else f"all tied ({pct(rate)})"


def rate_table(frame: Frame, key: str, id: str) -> Markup:
    rows = [[display(key, r[key]), f"{r['n_judged']:,}", pct(r["rate"]), ci(r["ci_low"], r["ci_high"]),
             f"{r['n_unparsed']:,}", f"{r['n_failed']:,}"] for r in frame.rows()]
    headers = [key.replace("_", " "), "judged", "defense rate", "95% CI", "unparsed", "failed"]
    return table(headers, rows, id=id)


def matrix(frame: Frame, row_key: str, col_key: str, id: str) -> Markup:
    """Rates of a two-way cut, one row per ``row_key``, the CI on hover."""
    row_values = list(dict.fromkeys(frame[row_key].tolist()))
    col_values = list(dict.fromkeys(frame[col_key].tolist()))
    cells = {(r[row_key], r[col_key]): r for r in frame.rows()}
    rows = []
    for rv in row_values:
        row: list[Any] = [display(row_key, rv)]
        for cv in col_values:
            r = cells.get((rv, cv))
            if r is None:
                row.append("–")
            else:
                title = f"95% CI {ci(r['ci_low'], r['ci_high'])}; n={r['n_judged']:,}"
                row.append(Markup(f'<td title="{esc(title)}">{esc(pct(r["rate"]))}</td>'))
        rows.append(row)
    return table([row_key.replace("_", " "), *[display(col_key, c) for c in col_values]], rows, id=id)


def strategies(a: Analysis, plots: dict[str, bytes]) -> Markup:
    return join([rate_table(a["by_strategy"], "strategy", "strategy-table"),
                 _img(plots, "strategy", "Defense rate by strategy"),
                 matrix(a["by_model_strategy"], "model", "strategy", "model-strategy-table"),
                 _img(plots, "model_strategy", "Defense rate by model and strategy")])


def scenarios(a: Analysis, plots: dict[str, bytes]) -> Markup:
    return join([rate_table(a["by_scenario_category"], "scenario_category", "scenario-table"),
                 _img(plots, "scenario_category", "Defense rate by scenario category"),
                 tag("details", join([tag("summary", "By model and scenario category"),
                                      matrix(a["by_model_scenario_category"], "scenario_category", "model",
                                             "model-scenario-table")]))])


def paired(a: Analysis) -> Markup:
    frame = a["paired"]
    if not len(frame):
        return note("no_pairs")
    headers = ["model", "language", "group A", "group B", "pairs", "discordant (A / B safe only)",
               "paired A - B (pts)", "95% CI", "McNemar p", "p (Holm)", "unpaired A - B (pts)",
               "unpaired p (Holm)"]

    def row(r: dict[str, Any]) -> list[Any]:
        return [r["model"], display("language", r["language"]), display("group", r["group_a"]),
                display("group", r["group_b"]), f"{r['n_pairs']:,}",
                f"{r['only_a_safe']:,} / {r['only_b_safe']:,}",
                pts(r["paired_difference"]), ci(r["ci_low"], r["ci_high"], True), p_value(r["p_mcnemar"]),
                p_value(r["p_holm"]), pts(r["unpaired_difference"]), p_value(r["unpaired_p_holm"])]

    rows = frame.rows()
    sig = sorted((r for r in rows if r["significant"]), key=lambda r: r["p_holm"])
    return join([
        note("paired"),
        table(headers, [row(r) for r in sig], id="paired-significant-table",
              caption=_notes()["paired_caption"].format(k=len(sig), n=len(rows))) if sig else
        note("paired_none_significant", n=len(rows)),
        tag("details", join([tag("summary", f"All {len(rows)} paired comparisons"),
                             table(headers, [row(r) for r in rows], id="paired-table")]))])


def cross_language(a: Analysis) -> Markup:
    frame = a["cross_language"]
    if not len(frame):
        return _p("No group was judged in two languages for the same model.")
    rows = [[r["model"], display("group", r["group"]),
             f"{pts(r['deviation_a'])} {ci(r['deviation_a_ci_low'], r['deviation_a_ci_high'], True)}",
             f"{pts(r['deviation_b'])} {ci(r['deviation_b_ci_low'], r['deviation_b_ci_high'], True)}",
             pts(r["difference"]), ci(r["ci_low"], r["ci_high"], True), "yes" if r["same_sign"] else "no"]
            for r in frame.rows()]
    la, lb = frame["language_a"][0], frame["language_b"][0]
    return join([note("cross_language", first=display("language", la), second=display("language", lb)),
                 table(["model", "group", f"deviation ({la})", f"deviation ({lb})", "difference (pts)",
                        "95% CI", "same sign"], rows, id="cross-language-table")])


def scaling(a: Analysis, plots: dict[str, bytes]) -> Markup:
    frame = a["scaling"]
    if not len(frame):
        return note("no_scaling")
    rows = [[r["family"], display("language", r["language"]), r["size_class"], r["models"], r["params_b"],
             pct(r["mean_rate"]), ci(r["rate_ci_low"], r["rate_ci_high"]),
             pts(r["mean_spread"], signed=False),
             f"[{pts(r['spread_ci_low'], signed=False)}, {pts(r['spread_ci_high'], signed=False)}]"]
            for r in frame.rows()]
    return join([table(["family", "language", "size class", "models", "params (B)", "mean rate", "95% CI",
                        "mean spread (pts)", "95% CI"], rows, id="scaling-table"),
                 _img(plots, "scaling", "Spread and defense rate by size class")])


def counts(a: Analysis) -> Markup:
    rows = [[r["model"], f"{r['n_responses']:,}", f"{r['n_judged']:,}", f"{r['n_safe']:,}",
             f"{r['n_harmful']:,}", f"{r['n_unparsed']:,}", f"{r['n_unjudged']:,}", f"{r['n_failed']:,}",
             f"{r.get('n_empty', 0):,}", f"{r.get('n_truncated', 0):,}",
             pct(r["rate"]), ci(r["ci_low"], r["ci_high"])] for r in a["by_model"].rows()]
    return join([table(["model", "responses", "judged", "safe", "harmful", "unparsed", "not judged", "failed",
                        "empty", "truncated", "defense rate", "95% CI"], rows, id="counts-table"),
                 note("counts", empty_rule=empty_rule(a))])


def intervals(a: Analysis) -> Markup:
    rows = []
    for r in a["ci_summary"].rows():
        rows.append([r["table"], int(r["cells"]), pts(r["mean_ci_width"], signed=False),
                     pts(r["max_ci_width"], signed=False),
                     "–" if math.isnan(r["share_ci_crosses_zero"]) else pct(r["share_ci_crosses_zero"]),
                     "–" if math.isnan(r["sign_flip_share"]) else pct(r["sign_flip_share"])])
    return join([note("intervals", resamples=a.resamples, seed=a.seed),
                 table(["table", "cells", "mean CI width", "max CI width", "CI contains 0", "sign flips"],
                       rows, id="ci-summary-table")])


def examples(items: list[Example]) -> Markup:
    if not items:
        return _p("No judged examples.")
    parts = [note("examples")]
    by_model: dict[tuple[str, str], dict[str, list[Example]]] = {}
    for ex in items:
        by_model.setdefault((ex.model, ex.language), {}).setdefault(ex.group, []).append(ex)
    for (model, lang), groups in by_model.items():
        inner = []
        for group, exs in groups.items():
            blocks = []
            for ex in exs:
                votes = join(tag("li", f"{j}: {lb}" + (f" — {reason}" if reason else "")) for j, lb, reason in
                             ex.votes)
                blocks.append(tag("details", join([
                    tag("summary", f"{ex.label} · {display('strategy', ex.strategy)}"),
                    tag("h4", "Prompt"), tag("pre", ex.prompt),
                    tag("h4", "Response"), tag("pre", ex.response),
                    tag("h4", "Judges"), tag("ul", votes)]), class_=f"example {ex.label}"))
            inner.append(tag("details", join([tag("summary", f"{display('group', group)} ({len(exs)})"),
                                              *blocks])))
        parts.append(tag("details", join([tag("summary", f"{model} — {display('language', lang)}"), *inner])))
    return join(parts)


def methods(a: Analysis, judges: list[tuple[str, int]]) -> Markup:
    judge_list = ", ".join(f"{j} ({n:,} verdicts)" for j, n in judges) or "none"
    voters = a.meta.get("voters")
    fingerprints = ", ".join(f"{j} {short(f)}" for j, f in voters.fingerprints.items()) if voters else ""
    return join([
        _p(f"Voting judges: {judge_list}"
           + (f"; configuration fingerprints: {fingerprints}" if fingerprints else "") + ". "
           + _notes()["method_votes"].format(tie=getattr(vote, "TIE_RULE", "harmful"))),
        note("method_rate"),
        note("method_deviation", average=AVERAGE_LABEL.get(a.average, a.average)),
    ])


def target_table(targets: list[dict[str, Any]]) -> Markup:
    """Every target: its settings, endpoints and what its server reported it serves."""
    rows = []
    for t in targets:
        settings = ", ".join(f"{k}={'(set)' if k == 'system_prompt' and v else v}"
                             for k, v in sorted(t["settings"].items()))
        # the ids answers carried; else the requested id where a server's /models listed it
        listed = {m for ids in t["listed_models"].values() for m in ids if m == t.get("served_model")}
        reported = sorted(t["answered_by"]) or sorted(listed)
        rows.append([t["target"], t["model"], settings, ", ".join(t["endpoints"]) or "–",
                     ", ".join(reported) or "–", ", ".join(t["runs"]), f"{t['responses']:,}"])
    return table(["target", "model", "settings", "endpoints", "server-reported model", "runs", "responses"],
                 rows, id="targets-table")


def provenance(runs: list[dict[str, Any]], models: list[dict[str, Any]], a: Analysis,
               targets: list[dict[str, Any]] | None = None) -> Markup:
    tax = load_taxonomy()
    model_rows = [[m["name"], m["spec"], m.get("family") or "–", number(m["params_b"]) if m.get("params_b")
                   is not None else "–", tax.size_class(m.get("params_b")) or "–"] for m in models]
    run_blocks = [tag("details", join([
        tag("summary", f"{r['id']} · {r['kind']} · {r['created_at']}"),
        tag("pre", json.dumps(r["config"], indent=2, ensure_ascii=False, sort_keys=True))])) for r in runs]
    return join([
        target_table(targets) if targets else Markup(""),
        table(["model", "spec", "family", "params (B)", "size class"], model_rows, id="models-table")
        if model_rows else _p("No model metadata stored."),
        _p(f"{len(runs)} runs recorded in the store (configurations stored without secrets)."),
        *run_blocks])


# -- page ------------------------------------------------------------------------------------------------
NAV = (("headline", "Headline"), ("heatmaps", "Heatmaps"), ("disparity", "Disparity"),
       ("strategies", "Strategies"), ("scenarios", "Scenarios"), ("paired", "Pairs"),
       ("cross-language", "Languages"), ("scaling", "Scaling"), ("counts", "Counts"),
       ("intervals", "CIs"), ("examples", "Examples"), ("methods", "Methods"), ("provenance", "Provenance"))


def render(page: PageInput) -> str:
    a = page.analysis
    colours = ColourClasses()
    sections = {
        "headline": headline(a),
        "heatmaps": heatmaps(a, page.plots, page.heatmap_limit, colours),
        "disparity": disparity(a, page.plots),
        "strategies": strategies(a, page.plots),
        "scenarios": scenarios(a, page.plots),
        "paired": paired(a),
        "cross_language": cross_language(a),
        "scaling": scaling(a, page.plots),
        "counts": counts(a),
        "intervals": intervals(a),
        "examples": examples(page.examples),
        "methods": methods(a, page.judges),
        "provenance": provenance(page.runs, page.models, a, page.targets),
        "corrected": correction.section(a),  # empty without human labels
        "budget": budget.section(page.budget),  # empty for a full audit
    }
    nav = correction.nav(NAV) if sections["corrected"] else NAV
    style = _template("report.css") + "\n" + colours.css() + "\n"
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; img-src data:; style-src 'sha256-{digest}'; script-src 'none'; "
           "object-src 'none'; base-uri 'none'; form-action 'none'")
    values = {
        "csp": esc(csp), "style": style, "title": esc(page.title), "subtitle": esc(page.subtitle),
        "banners": join(tag("p", b, class_="banner") for b in page.banners),
        "nav": join(tag("a", label, href=f"#{anchor}") for anchor, label in nav),
        "version": esc(__version__),
        **{k: str(v) for k, v in sections.items()},
    }
    return Template(_template("report.html")).substitute(values)
