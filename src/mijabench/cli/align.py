"""`mijabench align export | pairs | dpo | evaluate`: the alignment corpus, preference pairs, DPO training and
the re-audit on held-out groups. Logic lives in ``mijabench.align``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ..errors import InputError
from .common import WorkspaceOption, command_group, console, err_console, open_store, warn_content

app = command_group(help="Alignment: judged corpus, preference pairs, DPO training, re-audit.",
                  no_args_is_help=True)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@app.command()
def export(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for corpus.parquet and dataset/."),
    push_to_hub: str = typer.Option(None, "--push-to-hub", help="Also push the dataset to OWNER/NAME on the "
                                    "Hugging Face hub (needs HF_TOKEN and network)."),
    public: bool = typer.Option(False, "--public", help="Make the pushed dataset public (default private)."),
    judge: str = typer.Option(None, "--judge", help="Only these judges' votes (comma-separated names)."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Every judged response with its prompt, item, votes and final verdict, as Parquet and a `datasets`
    dataset (column names of the published MiJaBench-Align corpus where they overlap)."""
    from ..align.corpus import export_corpus

    with open_store(workspace, create=False) as store:
        result = export_corpus(store, out, push_to_hub=push_to_hub, private=not public,
                               judges=list(_csv(judge)) or None)
    console.print(f"{result.rows:,} judged responses -> {result.parquet} and {result.dataset}")
    if result.pushed_to:
        console.print(f"pushed to https://huggingface.co/datasets/{result.pushed_to}")


@app.command()
def pairs(
    out: Path = typer.Option(..., "--out", "-o", help="Pairs folder to write."),
    pairs_per_prompt: int = typer.Option(1, "--pairs-per-prompt", "-k", min=1,
                                         help="Pairs per prompt at most."),
    balance: str = typer.Option(None, "--balance", help="Equal training pairs per 'group' or 'strategy'."),
    max_length: int = typer.Option(None, "--max-length", min=1,
                                   help="Cut chosen/rejected answers to this many characters."),
    max_prompt_length: int = typer.Option(None, "--max-prompt-length", min=1,
                                          help="Leave out prompts longer than this many characters."),
    split: str = typer.Option("leave-groups-out", "--split",
                              help="leave-groups-out | leave-strategies-out | random."),
    holdout_groups: str = typer.Option(None, "--holdout-groups",
                                       help="Groups kept out of training, comma-separated (default: a "
                                            "seeded quarter of those present)."),
    holdout_strategies: str = typer.Option(None, "--holdout-strategies",
                                           help="Strategies kept out of training, comma-separated."),
    eval_fraction: float = typer.Option(0.2, "--eval-fraction",
                                        help="Share of the trainable prompts kept for evaluation."),
    benign_source: Path = typer.Option(None, "--benign-source",
                                       help="ToxiGen annotated.jsonl (or its folder) for English benign "
                                            "controls; default: built-in neutral statements."),
    benign_per_group: int = typer.Option(6, "--benign-per-group", min=0, help="Benign controls per group."),
    chosen_model: str = typer.Option(None, "--chosen-model",
                                     help="Model that writes refusals for prompts no model answered "
                                          "safely (kept only when the rule judge calls them safe)."),
    judge: str = typer.Option(None, "--judge", help="Only these judges' votes (comma-separated names)."),
    seed: int = typer.Option(0, "--seed"),
    workspace: Path = WorkspaceOption,
) -> None:
    """Preference pairs (rejected = judged harmful, chosen = judged safe or a refusal), a held-out split and
    benign controls, from the judged responses in the store."""
    from ..align.pairs import PairOptions
    from ..align.pairsdir import make_pairs

    options = PairOptions(pairs_per_prompt=pairs_per_prompt, balance=balance, max_length=max_length,
                          max_prompt_length=max_prompt_length, split=split,
                          holdout_groups=_csv(holdout_groups), holdout_strategies=_csv(holdout_strategies),
                          eval_fraction=eval_fraction, seed=seed, benign_per_group=benign_per_group)
    with open_store(workspace, create=False) as store:
        pairset = make_pairs(store, out, options, benign_source=benign_source, chosen_model=chosen_model,
                             judges=list(_csv(judge)) or None)
    m, s = pairset.manifest, pairset.split
    console.print(f"{m['train_pairs']:,} training pairs, {m['test_pairs']:,} held-out pairs, "
                  f"{m['eval_prompts']:,} evaluation prompts, {m['benign_controls']:,} benign controls "
                  f"-> {out}")
    console.print(f"chosen answers: {m['chosen_sources']}; split {s['split']}: never in training: groups "
                  f"{', '.join(s['groups_never_in_train']) or 'none'}; strategies "
                  f"{', '.join(s['strategies_never_in_train']) or 'none'}")


@app.command()
def dpo(
    pairs_dir: Path = typer.Option(..., "--pairs", help="Pairs folder from `align pairs`."),
    base: str = typer.Option(..., "--base", help="local:smollm2-135m, hf:PATH_OR_ID or a model folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (adapter/, logs, loss.png)."),
    config: Path = typer.Option(None, "--config", help="DPORunConfig YAML (see docs/alignment.md)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Override: stop after this many steps."),
    learning_rate: float = typer.Option(None, "--learning-rate", help="Override the config's learning rate."),
    full: bool = typer.Option(False, "--full", help="Full fine-tuning instead of a LoRA adapter."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train with TRL's DPOTrainer (LoRA by default) on the pairs' training split."""
    from ..align.config import DPORunConfig
    from ..align.train import train_dpo

    overrides = {"max_steps": max_steps, "learning_rate": learning_rate,
                 "full_finetune": True if full else None}
    if config:
        run_config = DPORunConfig.from_yaml(config, **overrides)
    else:
        given = {k: v for k, v in overrides.items() if v is not None}
        run_config = DPORunConfig.from_dict(given, "command line")
    result = train_dpo(pairs_dir, base, out, run_config, progress=not quiet)
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    console.print(f"{result.steps} steps on {result.train_pairs:,} pairs in {result.runtime_s:.1f}s, "
                  f"final loss {loss} -> {result.weights} (curves: {out / 'loss.png'})")


@app.command()
def evaluate(
    base: str = typer.Option(..., "--base", help="The base model trained from."),
    adapter: Path = typer.Option(..., "--adapter", help="Output folder of `align dpo` (or its adapter/)."),
    pairs_dir: Path = typer.Option(..., "--pairs", help="The pairs folder the adapter was trained on."),
    out: Path = typer.Option(None, "--out", "-o", help="Evaluation folder [default: ADAPTER/evaluation]."),
    judge: str = typer.Option("rules", "--judge", help="Judges of the attack answers, comma-separated: "
                              "'rules' and/or model strings. Benign controls always use the rule judge."),
    max_prompts: int = typer.Option(None, "--max-prompts", min=1, help="Evaluation prompts at most."),
    max_benign: int = typer.Option(None, "--max-benign", min=1, help="Benign controls at most."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Longest answer, in tokens."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Generation batch size."),
    margin_pairs: int = typer.Option(32, "--margin-pairs", min=0, help="Pairs scored for margins (0: skip)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Defense per group and strategy (seen vs held-out) and over-refusal per group, before and after
    training, with 95% CIs; an HTML report and a terminal summary."""
    from ..align.evaluate import EvalOptions, evaluate_training
    from ..align.report import terminal_lines

    judges = _csv(judge)
    if not judges:
        raise InputError("name at least one judge", field="--judge")
    options = EvalOptions(judges=judges, max_prompts=max_prompts, max_benign=max_benign,
                          max_new_tokens=max_new_tokens, batch_size=batch_size, margin_pairs=margin_pairs,
                          device=device, seed=seed)
    out = out or Path(adapter) / "evaluation"
    summary = evaluate_training(base, adapter, pairs_dir, out, options)
    for line in terminal_lines(summary):
        console.print(line, highlight=False, markup=False)
    if summary["flags"]["safer_but_over_refusing"]:
        err_console.print(Text.assemble(("flag:", "red"),
                                        " over-refusal doubled while held-out defense rose"))
    warn_content()
    console.print(f"report: {out / 'report.html'} (shows prompts and answers)")
