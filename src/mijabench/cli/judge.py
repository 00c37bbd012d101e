"""`mijabench judge [--model JUDGE ...] [--rules]`, `mijabench judge validate | agreement`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..analysis import load_judged
from ..analysis.correction import Correction, corrected_rates
from ..errors import InputError
from ..judge import RULES_JUDGE, TIE_RULE, judge_agreement, judge_responses, validate_judges
from ..judge.identity import short
from ..judge.runner import JUDGE_MAX_TOKENS
from ..judge.validate import VOTE, json_safe, load_human_labels
from ..report.html import ci, pct, pts
from ..run.progress import StageProgress
from .common import ProgressOption, WorkspaceOption, command_group, console, err_console, open_store

app = command_group(help="Judge stored responses; validate judges against human labels; judge agreement.")


@app.callback(invoke_without_command=True)
def judge(
    ctx: typer.Context,
    model: list[str] = typer.Option(
        None, "--model", "-m", help="Judge model string or YAML file (repeat for an ensemble); "
                                    f"'{RULES_JUDGE}' names the rule judge, NAME:TARGET a plugin's judge "
                                    "(docs/plugins.md)."),
    rules: bool = typer.Option(False, "--rules", help=f"Also run the rule-based judge {RULES_JUDGE}."),
    bench: str = typer.Option(None, "--bench", "-b", help="Only responses to this benchmark's items."),
    target_model: list[str] = typer.Option(None, "--target-model", "-t",
                                           help="Only responses of this model (repeatable)."),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1,
                                    help="Requests in flight per judge (default: the backend's)."),
    max_tokens: int = typer.Option(JUDGE_MAX_TOKENS, "--max-tokens", min=16,
                                   help="Length budget of each judge answer."),
    keep_stale: bool = typer.Option(False, "--keep-stale",
                                    help="Keep verdicts from an earlier configuration of a judge (another "
                                         "prompt, phrase list, setting or endpoint) instead of re-judging; "
                                         "reports refuse to mix them."),
    progress_mode: str = ProgressOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Judge every stored answered response not yet judged by each judge (resumable).

    Without --model the rule-based judge runs alone (offline). Failed calls are stored as errors and
    retried by the next run."""
    if ctx.invoked_subcommand is not None:
        return
    judges = list(model or [])
    if rules and RULES_JUDGE not in judges:
        judges.append(RULES_JUDGE)
    if not judges:
        judges = [RULES_JUDGE]
    with open_store(workspace, create=False) as store, StageProgress("judge", err_console,
                                                                            mode=progress_mode) as progress:
        if not model and not rules:  # said once the workspace opened: a bad one is then the only line
            err_console.print(f"no --model given: using the rule-based judge {RULES_JUDGE}")
        result = judge_responses(store, judges, bench=bench, target_models=target_model or None,
                                 concurrency=concurrency, max_tokens=max_tokens, progress=progress,
                                 keep_stale=keep_stale)
    table = Table(title=f"judge run {result.run_id}: {result.responses:,} answered responses")
    for col in ("judge", "already judged", "judged now", "safe", "harmful", "unparsed", "failed", "seconds"):
        table.add_column(col, justify="left" if col == "judge" else "right", no_wrap=col == "judge")
    for s in result.judges:
        table.add_row(s.judge, f"{s.skipped:,}", f"{s.pending:,}", f"{s.safe:,}", f"{s.harmful:,}",
                      f"{s.unparsed:,}", f"{s.failed:,}", f"{s.elapsed_s:.1f}")
    console.print(table)
    if result.missing_items:
        err_console.print(f"{result.missing_items:,} responses skipped: their items are not in the store")
    for s in result.judges:
        if s.stale:
            err_console.print(f"judge {s.judge}: {s.stale:,} verdicts came from an earlier configuration of "
                              f"this judge and were judged again (configuration {short(s.fingerprint)})",
                              highlight=False)
        if s.kept_stale:
            err_console.print(f"judge {s.judge}: kept {s.kept_stale:,} verdicts from an earlier "
                              "configuration (--keep-stale); reports refuse to mix them with new ones",
                              highlight=False)
        if s.aborted:
            err_console.print(f"judge {s.judge} stopped early: {s.aborted}", highlight=False)
    failed = sum(s.failed for s in result.judges)
    if failed:
        err_console.print(f"{failed:,} judge calls failed; run the command again to retry them")


def _fmt(value: float, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def _write_json(out: Path, data: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(data), ensure_ascii=False, indent=2), encoding="utf-8")
    console.print(f"wrote {out}")


@app.command()
def validate(
    labels: Path = typer.Option(..., "--labels", "-l", help="Human labels: JSONL or CSV with response_id, "
                                                            "label (safe/harmful), optional annotator."),
    judge_names: list[str] = typer.Option(None, "--judge", "-j", help="Judge to score (repeatable) "
                                                                      "(default: every judge in the store)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the full report as JSON."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Accuracy and Cohen's kappa of each judge and of their vote against human labels, overall, per
    language and per group; the vote's sensitivity and specificity per language and group, and the groups
    whose deviation the judges' errors fake (see `mijabench report --labels`)."""
    if out is not None:
        from ..paths import check_output
        check_output(out, folder=False)
    human = load_human_labels(labels)
    with open_store(workspace, create=False) as store:
        report = validate_judges(store, human, judge_names or None)
        # the vote validated is the one of the judges scored here, even in number or not
        judged = load_judged(store, judges=[j for j in report["judges"] if j != VOTE], allow_even_vote=True)
        correction, no_correction = None, ""
        try:  # every id is known by now (validate_judges checked): only "no decided vote" can be left
            correction = corrected_rates(judged, human, where=f"the responses in {store.path}")
        except InputError as exc:
            no_correction = exc.detail
    console.print(f"{report['responses_labelled']:,} labelled responses from {report['annotations']:,} "
                  f"labels ({report['annotators']} named annotators); "
                  f"{report['ties_dropped']:,} ties dropped. "
                  f"Vote: majority of decided votes, tie -> {TIE_RULE}.")
    table = Table(title="judges against human labels")
    for col in ("judge", "cut", "value", "n", "accuracy", "kappa", "unparsed", "missing", "human safe",
                "judge safe"):
        table.add_column(col, justify="left" if col in ("judge", "cut", "value") else "right",
                         no_wrap=col == "judge")
    for row in report["rows"]:
        table.add_row(row["judge"], row["cut"], row["value"], f"{row['n']:,}", _fmt(row["accuracy"], True),
                      _fmt(row["kappa"]), f"{row['unparsed']:,}", f"{row['missing']:,}",
                      _fmt(row["human_safe_rate"], True), _fmt(row["judge_safe_rate"], True))
    console.print(table)
    if correction is None:
        console.print(f"no correction for judge error: {no_correction}")
    else:
        _print_correction(correction)
        report["correction"] = {"accuracy": correction.accuracy.rows(), "rates": correction.rates.rows()}
    if out:
        _write_json(out, report)


def _print_correction(correction: Correction) -> None:
    table = Table(title="the vote per language and group: sensitivity (safe called safe) and specificity "
                        "(harmful called harmful), 95% CI")
    for col in ("language", "group", "labels safe / harmful", "sensitivity", "specificity", "Youden J"):
        table.add_column(col, justify="left" if col in ("language", "group") else "right")
    for r in correction.accuracy.rows():
        table.add_row(r["language"], r["group"], f"{r['n_labels_safe']:,} / {r['n_labels_harmful']:,}",
                      f"{pct(r['sensitivity'])} {ci(r['sens_ci_low'], r['sens_ci_high'])}",
                      f"{pct(r['specificity'])} {ci(r['spec_ci_low'], r['spec_ci_high'])}",
                      _fmt(r["youden"]) + (" (few labels)" if r["few_labels"] else ""))
    console.print(table)
    flagged = [r for r in correction.rates.rows() if r["flagged"]]
    if not flagged:
        console.print(f"no group's deviation is faked by judge error ({len(correction.rates)} model, "
                      "language and group cells)")
    for r in flagged:
        console.print(Text(f"FLAG {r['model']} {r['language']} {r['group']}: raw deviation "
                           f"{pts(r['raw_deviation'])} pts, corrected {pts(r['corrected_deviation'])} "
                           f"{ci(r['deviation_ci_low'], r['deviation_ci_high'], True)}, judge bias "
                           f"{pts(r['judge_bias'])} {ci(r['bias_ci_low'], r['bias_ci_high'], True)}"))
    if correction.labels_undecided:
        console.print(f"{correction.labels_undecided:,} labelled responses have no safe/harmful vote: "
                      "left out of sensitivity and specificity")


@app.command()
def agreement(
    judge_names: list[str] = typer.Option(None, "--judge", "-j", help="Judges to compare (repeatable) "
                                                                      "(default: every judge in the store)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the figures as JSON."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Agreement between judges: Cohen's kappa for each pair, Krippendorff's alpha for all (nominal;
    unparsed votes count as missing)."""
    with open_store(workspace, create=False) as store:
        report = judge_agreement(store, judge_names or None)
    table = Table(title=f"agreement between {len(report['judges'])} judges "
                        f"({report['responses']:,} judged responses)")
    for col in ("judge A", "judge B", "both decided", "agreement", "kappa"):
        table.add_column(col, justify="left" if col.startswith("judge") else "right")
    for pair in report["pairs"]:
        table.add_row(pair["a"], pair["b"], f"{pair['n']:,}", _fmt(pair["agreement"], True),
                      _fmt(pair["kappa"]))
    console.print(table)
    console.print(f"Krippendorff's alpha (nominal): {_fmt(report['alpha'])} over {report['alpha_units']:,} "
                  "responses with at least two decided votes")
    if out:
        _write_json(out, report)
